//===- DequantizeWeights.cpp - Compressed weights back to float ---*- C++
//-*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#include "WeightUtils.h"

#include "qlr/Dialect/QLR/Transforms/Passes.h"
#include "qlr/Dialect/QLR/Utils/ConstantData.h"

#include "llvm/ADT/SetVector.h"

namespace mlir::qlr {
#define GEN_PASS_DEF_QLRDEQUANTIZEWEIGHTSPASS
#include "qlr/Dialect/QLR/Transforms/Passes.h.inc"
} // namespace mlir::qlr

using namespace mlir;
using namespace mlir::qlr;

/// The name a decoded weight gets: the resource name of its storage without
/// the `.codes` / `.lora_a` / `.factor_a` suffixes the compressing passes add
/// (a quantized factor is stored as NAME.factor_a.codes).
static std::string baseName(Value storage) {
  if (auto pack = storage.getDefiningOp<PackOp>())
    storage = pack.getCodes();
  auto constant = storage.getDefiningOp<arith::ConstantOp>();
  StringRef key = constant ? resourceKey(constant) : StringRef();
  if (key.empty())
    return "weight";
  key.consume_back(".codes");
  for (StringRef suffix : {".lora_a", ".lora_b", ".factor_a", ".factor_b"})
    if (key.consume_back(suffix))
      break;
  return key.str();
}

/// True when `weight` is built from constants only: a float constant,
/// `qlr.pack` of constants, or `qlr.lowrank` of such values (what
/// decodeWeight can decode).
static bool isConstantWeight(Value weight) {
  if (isa<RankedTensorType>(weight.getType()))
    return bool(getConstantElements(weight));
  if (auto pack = weight.getDefiningOp<PackOp>())
    return llvm::all_of(pack->getOperands(), [](Value operand) {
      return bool(getConstantElements(operand));
    });
  if (auto lowRank = weight.getDefiningOp<LowRankOp>())
    return llvm::all_of(lowRank->getOperands(), isConstantWeight);
  return false;
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
        if (!isConstantWeight(weight))
          continue;
        FailureOr<std::vector<float>> values = decodeWeight(weight);
        if (failed(values))
          return signalPassFailure();
        RankedTensorType type =
            isa<QTensorType>(weight.getType())
                ? cast<QTensorType>(weight.getType()).getExpressedTensorType()
                : cast<LowRankType>(weight.getType()).getExpressedTensorType();
        OpBuilder b(weight.getDefiningOp());
        Value storage = isa<QTensorType>(weight.getType())
                            ? weight.getDefiningOp<PackOp>().getCodes()
                            : weight.getDefiningOp<LowRankOp>().getA();
        replacement = createFloatResource(b, weight.getLoc(), type,
                                          baseName(storage), *values);
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
