//===- DequantizeWeights.cpp - Compressed weights back to float ---*- C++
//-*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#include "WeightUtils.h"

#include "qlr/Dialect/QLR/Transforms/Passes.h"
#include "qlr/Dialect/QLR/Utils/ConstantData.h"
#include "qlr/Numerics/Packing.h"

#include "mlir/IR/DialectResourceBlobManager.h"

#include "llvm/ADT/SetVector.h"

namespace mlir::qlr {
#define GEN_PASS_DEF_QLRDEQUANTIZEWEIGHTSPASS
#include "qlr/Dialect/QLR/Transforms/Passes.h.inc"
} // namespace mlir::qlr

using namespace mlir;
using namespace mlir::qlr;
namespace numerics = ::qlr::numerics;

/// The name a decoded weight gets: the resource name of its storage without
/// the `.codes` / `.lora_a` suffix the compressing passes add.
static std::string baseName(Value storage) {
  auto constant = storage.getDefiningOp<arith::ConstantOp>();
  if (!constant)
    return "weight";
  auto resource = dyn_cast<DenseResourceElementsAttr>(constant.getValue());
  if (!resource)
    return "weight";
  StringRef key = resource.getRawHandle().getKey();
  for (StringRef suffix : {".codes", ".lora_a", ".lora_b", ".scales"})
    if (key.consume_back(suffix))
      break;
  return key.str();
}

/// Decodes a weight built from constants: a float constant, `qlr.pack` of
/// constants, or `qlr.lowrank` of those. Returns std::nullopt (without a
/// diagnostic) when the storage is not constant, failure when a constant
/// cannot be read.
static FailureOr<std::optional<std::vector<float>>> decode(Value weight) {
  using Result = std::optional<std::vector<float>>;
  if (isa<RankedTensorType>(weight.getType())) {
    ElementsAttr elements = getConstantElements(weight);
    if (!elements)
      return Result();
    auto values = readFloats(elements, weight.getLoc());
    if (failed(values))
      return failure();
    return Result(std::move(*values));
  }
  if (auto pack = weight.getDefiningOp<PackOp>()) {
    auto type = cast<QTensorType>(pack.getType());
    ElementsAttr codes = getConstantElements(pack.getCodes());
    ElementsAttr scales = getConstantElements(pack.getScales());
    ElementsAttr zeroPoints;
    if (pack.getZeroPoints())
      zeroPoints = getConstantElements(pack.getZeroPoints());
    if (!codes || !scales || (pack.getZeroPoints() && !zeroPoints) ||
        !type.hasStaticShape())
      return Result();
    auto codeBytes = readBytes(codes, pack.getLoc());
    auto scaleValues = readFloats(scales, pack.getLoc());
    if (failed(codeBytes) || failed(scaleValues))
      return failure();
    numerics::QuantizedData data;
    data.codes = numerics::unpackCodes(*codeBytes, type.getShape(),
                                       type.getFormat().getBits());
    data.scales = std::move(*scaleValues);
    if (zeroPoints) {
      auto zp = readBytes(zeroPoints, pack.getLoc());
      if (failed(zp))
        return failure();
      data.zeroPoints = std::move(*zp);
    }
    numerics::QuantFormat fmt = type.getFormat().toNumerics(type.getRank());
    return Result(numerics::dequantize(data, type.getShape(), fmt));
  }
  if (auto lowRank = weight.getDefiningOp<LowRankOp>()) {
    auto type = cast<LowRankType>(lowRank.getType());
    auto a = decode(lowRank.getA());
    auto b = decode(lowRank.getB());
    if (failed(a) || failed(b))
      return failure();
    if (!*a || !*b || !ShapedType::isStaticShape(type.getShape()))
      return Result();
    int64_t m = type.getShape()[0], n = type.getShape()[1], r = type.getRank();
    std::vector<float> w(m * n, 0.0f);
    if (Value base = lowRank.getBase()) {
      auto q = decode(base);
      if (failed(q))
        return failure();
      if (!*q)
        return Result();
      w = std::move(**q);
    }
    const std::vector<float> &av = **a, &bv = **b;
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double sum = 0.0;
        for (int64_t l = 0; l < r; ++l)
          sum += double(av[i * r + l]) * bv[l * n + j];
        w[i * n + j] += float(sum);
      }
    return Result(std::move(w));
  }
  return Result();
}

namespace {
struct QLRDequantizeWeightsPass
    : public mlir::qlr::impl::QLRDequantizeWeightsPassBase<
          QLRDequantizeWeightsPass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    // Users of compressed weights: the weight operand of qlr.linear and the
    // input of qlr.dequantize.
    SmallVector<OpOperand *> uses;
    module.walk([&](Operation *op) {
      if (auto linear = dyn_cast<LinearOp>(op)) {
        if (!isa<RankedTensorType>(linear.getWeight().getType()))
          uses.push_back(&linear.getWeightMutable());
      } else if (auto dequantize = dyn_cast<DequantizeOp>(op)) {
        uses.push_back(&dequantize.getInputMutable());
      }
    });
    DenseMap<Value, Value> decoded;
    SmallVector<Operation *> maybeDead;
    for (OpOperand *use : uses) {
      Value weight = use->get();
      Value &replacement = decoded[weight];
      if (!replacement) {
        auto values = decode(weight);
        if (failed(values))
          return signalPassFailure();
        if (!*values)
          continue;
        RankedTensorType type =
            isa<QTensorType>(weight.getType())
                ? cast<QTensorType>(weight.getType()).getExpressedTensorType()
                : cast<LowRankType>(weight.getType()).getExpressedTensorType();
        OpBuilder b(weight.getDefiningOp());
        Value storage = isa<QTensorType>(weight.getType())
                            ? weight.getDefiningOp<PackOp>().getCodes()
                            : weight.getDefiningOp<LowRankOp>().getA();
        replacement = createFloatResource(b, weight.getLoc(), type,
                                          baseName(storage), **values);
        maybeDead.push_back(weight.getDefiningOp());
        ++numDequantized;
      }
      if (auto dequantize = dyn_cast<DequantizeOp>(use->getOwner())) {
        dequantize.replaceAllUsesWith(replacement);
        dequantize.erase();
      } else {
        use->set(replacement);
      }
    }
    // Erase the storage nothing uses any more, then what it was built from.
    llvm::SetVector<Operation *> worklist(maybeDead.begin(), maybeDead.end());
    while (!worklist.empty()) {
      Operation *op = worklist.pop_back_val();
      if (!op->use_empty())
        continue;
      for (Value operand : op->getOperands())
        if (Operation *def = operand.getDefiningOp())
          if (isa<PackOp, LowRankOp, arith::ConstantOp>(def))
            worklist.insert(def);
      op->erase();
    }
  }
};
} // namespace
