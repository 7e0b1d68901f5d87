//===- QuantInterop.cpp - qlr <-> upstream quant conversions ----*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// Converts between `!qlr.qtensor` values and upstream `!quant.uniform`
// tensors. The two models differ in one important way: upstream types carry
// their scales and zero points *in the type*, while a qlr quantized tensor
// carries them as tensor operands of `qlr.pack` / `qlr.quantize`. So only
// quantized values whose scales are compile-time constants convert, and only
// through the casts both sides have (pack/scast, quantize/qcast,
// dequantize/dcast). Each pass checks everything first and reports every
// value it cannot convert with its location; it rewrites nothing unless all
// of them convert.
//
// Code mapping: a qlr code is an unsigned integer u in [0, 2^b) with zero
// point z (implicitly 2^(b-1) for symmetric formats): x = s * (u - z).
// Upstream signed storage c in [-2^(b-1), 2^(b-1)) with zero point zq is
// u = c + 2^(b-1), z = zq + 2^(b-1); unsigned storage is u = c, z = zq.
//
//===----------------------------------------------------------------------===//

#include "qlr/Conversion/Passes.h"
#include "qlr/Dialect/QLR/IR/QLR.h"
#include "qlr/Dialect/QLR/Utils/ConstantData.h"
#include "qlr/Numerics/Packing.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Quant/IR/Quant.h"
#include "mlir/Dialect/Quant/IR/QuantTypes.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"
#include "llvm/ADT/SetVector.h"

namespace mlir::qlr {
#define GEN_PASS_DEF_QLRCONVERTQUANTTOQLRPASS
#define GEN_PASS_DEF_QLRCONVERTQLRTOQUANTPASS
#include "qlr/Conversion/Passes.h.inc"
} // namespace mlir::qlr

using namespace mlir;
using namespace mlir::qlr;

/// Scales and zero points of one quantized tensor, in qlr's convention.
struct QuantParams {
  std::vector<float> scales;
  std::vector<uint8_t> zeroPoints; // Empty for symmetric formats.
};

//===----------------------------------------------------------------------===//
// quant -> qlr
//===----------------------------------------------------------------------===//

namespace {
/// The qlr equivalent of a `tensor<... x !quant.uniform<...>>`.
struct QLRFromQuant {
  QTensorType type;
  QuantParams params;
  /// Added to a storage value to get the qlr code (2^(b-1) for signed).
  int64_t codeOffset = 0;
};
} // namespace

/// Translates a quantized tensor type into a qlr type and parameters, or
/// reports why it is not expressible.
static FailureOr<QLRFromQuant> convertQuantType(RankedTensorType tensorType,
                                                Location loc) {
  MLIRContext *ctx = tensorType.getContext();
  auto quantType = dyn_cast<quant::QuantizedType>(tensorType.getElementType());
  if (!quantType)
    return emitError(loc, "expected a tensor of quantized elements, got ")
           << tensorType;
  auto fail = [&]() {
    return emitError(loc) << "cannot express " << quantType << " in qlr: ";
  };
  Type expressed = quantType.getExpressedType();
  if (!expressed ||
      !(expressed.isF32() || expressed.isF16() || expressed.isBF16()))
    return fail() << "the expressed type must be f32, f16 or bf16 (it "
                     "becomes the scale type)";
  unsigned bits = quantType.getStorageTypeIntegralWidth();
  if (bits < 2 || bits > 8)
    return fail() << "qlr stores 2 to 8 bits per code, not " << bits;
  bool isSigned = quantType.isSigned();
  if (quantType.getStorageTypeMin() !=
          quant::QuantizedType::getDefaultMinimumForInteger(isSigned, bits) ||
      quantType.getStorageTypeMax() !=
          quant::QuantizedType::getDefaultMaximumForInteger(isSigned, bits))
    return fail() << "the narrowed storage range ["
                  << quantType.getStorageTypeMin() << ", "
                  << quantType.getStorageTypeMax()
                  << "] differs from qlr's full " << bits << "-bit range";
  if (!tensorType.hasStaticShape())
    return fail() << "the tensor shape must be static";

  QLRFromQuant result;
  result.codeOffset = isSigned ? int64_t(1) << (bits - 1) : 0;
  Granularity granularity = Granularity::Tensor;
  int64_t axis = 0, groupSize = 0;
  std::vector<double> scales;
  std::vector<int64_t> zeroPoints;
  if (auto uniform = dyn_cast<quant::UniformQuantizedType>(quantType)) {
    scales.push_back(uniform.getScale());
    zeroPoints.push_back(uniform.getZeroPoint());
  } else if (auto perAxis =
                 dyn_cast<quant::UniformQuantizedPerAxisType>(quantType)) {
    granularity = Granularity::Channel;
    axis = perAxis.getQuantizedDimension();
    scales.assign(perAxis.getScales().begin(), perAxis.getScales().end());
    zeroPoints.assign(perAxis.getZeroPoints().begin(),
                      perAxis.getZeroPoints().end());
  } else if (auto subChannel =
                 dyn_cast<quant::UniformQuantizedSubChannelType>(quantType)) {
    granularity = Granularity::Group;
    // qlr groups run along one axis; every other block must be 1 element.
    for (auto [dim, block] : subChannel.getBlockSizeInfo()) {
      if (block == 1)
        continue;
      if (groupSize != 0)
        return fail() << "blocks span more than one axis; qlr groups run "
                         "along a single axis";
      axis = dim;
      groupSize = block;
    }
    if (groupSize == 0) {
      // Every block is a single element: groups of one along the last axis.
      axis = tensorType.getRank() - 1;
      groupSize = 1;
    }
    // Groups along the last axis are spelled with qlr's default axis (-1).
    if (axis == tensorType.getRank() - 1)
      axis = -1;
    for (APFloat scale : subChannel.getScales().getValues<APFloat>())
      scales.push_back(scale.convertToDouble());
    for (APInt zeroPoint : subChannel.getZeroPoints().getValues<APInt>())
      zeroPoints.push_back(zeroPoint.getSExtValue());
  } else {
    return fail() << "only uniform per-tensor, per-axis and sub-channel "
                     "types have qlr equivalents";
  }

  bool symmetric = true;
  int64_t implicitZero = int64_t(1) << (bits - 1), maxCode = (1 << bits) - 1;
  for (int64_t zeroPoint : zeroPoints) {
    int64_t code = zeroPoint + result.codeOffset;
    if (code < 0 || code > maxCode)
      return fail() << "zero point " << zeroPoint
                    << " lies outside the storage range";
    symmetric &= code == implicitZero;
  }
  for (double scale : scales)
    result.params.scales.push_back(static_cast<float>(scale));
  if (!symmetric)
    for (int64_t zeroPoint : zeroPoints)
      result.params.zeroPoints.push_back(
          static_cast<uint8_t>(zeroPoint + result.codeOffset));

  auto format = FormatAttr::getChecked(
      [&] { return emitError(loc); }, ctx, Scheme::Uniform, bits,
      DenseF32ArrayAttr(), granularity,
      granularity == Granularity::Tensor ? 0 : axis, groupSize, symmetric,
      expressed, /*fractionalZeroPoints=*/false);
  if (!format)
    return failure();
  result.type =
      QTensorType::getChecked([&] { return emitError(loc); }, ctx,
                              tensorType.getShape(), expressed, format);
  if (!result.type)
    return failure();
  return result;
}

/// Constants holding `params` with the scale / zero point types of `type`.
static std::pair<Value, Value> createParamConstants(OpBuilder &builder,
                                                    Location loc,
                                                    QTensorType type,
                                                    const QuantParams &params) {
  Value scales =
      createFloatConstant(builder, loc, type.getScalesType(), params.scales);
  Value zeroPoints;
  if (RankedTensorType zeroPointsType = type.getZeroPointsType()) {
    std::vector<int64_t> values(params.zeroPoints.begin(),
                                params.zeroPoints.end());
    zeroPoints = createIntegerConstant(builder, loc, zeroPointsType, values);
  }
  return {scales, zeroPoints};
}

/// Erases `op` and then any constant that fed it and is now unused.
static void eraseWithDeadConstants(Operation *op) {
  llvm::SetVector<Operation *> feeders;
  for (Value operand : op->getOperands())
    if (Operation *def = operand.getDefiningOp();
        def && def->hasTrait<OpTrait::ConstantLike>())
      feeders.insert(def);
  op->erase();
  for (Operation *def : feeders)
    if (def->use_empty())
      def->erase();
}

/// Returns true when `value` has a quantized element type.
static bool isQuantTensor(Value value) {
  auto tensorType = dyn_cast<RankedTensorType>(value.getType());
  return tensorType && isa<quant::QuantizedType>(tensorType.getElementType());
}

namespace {
struct QLRConvertQuantToQLRPass
    : public mlir::qlr::impl::QLRConvertQuantToQLRPassBase<
          QLRConvertQuantToQLRPass> {
  void runOnOperation() override;
};
} // namespace

void QLRConvertQuantToQLRPass::runOnOperation() {
  ModuleOp module = getOperation();

  // Check: every quantized value is made by a convertible cast and used only
  // by quant.dcast, and its type is expressible.
  bool ok = true;
  SmallVector<Operation *> producers;
  DenseMap<Value, QLRFromQuant> converted;
  auto checkValue = [&](Value value, Location loc) {
    auto info = convertQuantType(cast<RankedTensorType>(value.getType()), loc);
    if (failed(info)) {
      ok = false;
      return;
    }
    for (OpOperand &use : value.getUses()) {
      if (isa<quant::DequantizeCastOp>(use.getOwner()))
        continue;
      InFlightDiagnostic diag = use.getOwner()->emitOpError()
                                << "uses a quantized tensor in a way qlr "
                                   "cannot express; only quant.dcast can "
                                   "consume one";
      diag.attachNote(loc) << "the quantized tensor is defined here";
      ok = false;
    }
    converted.try_emplace(value, std::move(*info));
  };
  module.walk([&](Operation *op) {
    for (Region &region : op->getRegions())
      for (Block &block : region)
        for (BlockArgument arg : block.getArguments())
          if (isQuantTensor(arg)) {
            emitError(arg.getLoc())
                << "a quantized block or function argument has its scales "
                   "only in its type; qlr quantized tensors carry them as "
                   "values, so it cannot be converted";
            ok = false;
          }
    for (Value result : op->getResults()) {
      if (!isQuantTensor(result))
        continue;
      if (auto scast = dyn_cast<quant::StorageCastOp>(op)) {
        if (!getConstantElements(scast.getInput())) {
          op->emitOpError("converts only from a constant: qlr.pack takes "
                          "packed codes, which are computed at compile "
                          "time");
          ok = false;
          continue;
        }
      } else if (!isa<quant::QuantizeCastOp>(op)) {
        op->emitOpError("produces a quantized tensor that qlr cannot "
                        "express; only quant.scast and quant.qcast convert");
        ok = false;
        continue;
      }
      producers.push_back(op);
      checkValue(result, op->getLoc());
    }
  });
  if (!ok)
    return signalPassFailure();

  // Rewrite producers, then the dequantize casts that use them.
  OpBuilder builder(module.getContext());
  for (Operation *op : producers) {
    Value result = op->getResult(0);
    const QLRFromQuant &info = converted.find(result)->second;
    Location loc = op->getLoc();
    builder.setInsertionPoint(op);
    auto [scales, zeroPoints] =
        createParamConstants(builder, loc, info.type, info.params);
    Value replacement;
    if (auto scast = dyn_cast<quant::StorageCastOp>(op)) {
      auto storageType = cast<RankedTensorType>(scast.getInput().getType());
      bool isSigned =
          cast<quant::QuantizedType>(
              cast<RankedTensorType>(result.getType()).getElementType())
              .isSigned();
      auto values =
          readIntegers(getConstantElements(scast.getInput()), isSigned, loc);
      if (failed(values))
        return signalPassFailure();
      std::vector<uint8_t> codes;
      codes.reserve(values->size());
      for (int64_t value : *values)
        codes.push_back(static_cast<uint8_t>(value + info.codeOffset));
      std::vector<uint8_t> packed = numerics::packCodes(
          codes, storageType.getShape(), info.type.getFormat().getBits());
      std::vector<int64_t> packedValues(packed.begin(), packed.end());
      Value codesConstant = createIntegerConstant(
          builder, loc, info.type.getCodesType(), packedValues);
      replacement = PackOp::create(builder, loc, info.type, codesConstant,
                                   scales, zeroPoints);
    } else {
      auto qcast = cast<quant::QuantizeCastOp>(op);
      replacement = QuantizeOp::create(builder, loc, info.type,
                                       qcast.getInput(), scales, zeroPoints);
    }
    for (OpOperand &use : llvm::make_early_inc_range(result.getUses())) {
      auto dcast = cast<quant::DequantizeCastOp>(use.getOwner());
      builder.setInsertionPoint(dcast);
      Value dequantized = DequantizeOp::create(builder, dcast.getLoc(),
                                               dcast.getType(), replacement);
      dcast.replaceAllUsesWith(dequantized);
      dcast.erase();
    }
    eraseWithDeadConstants(op);
  }
}

//===----------------------------------------------------------------------===//
// qlr -> quant
//===----------------------------------------------------------------------===//

/// The upstream element type for a qlr quantized tensor with constant
/// parameters, or a diagnostic explaining why there is none.
static FailureOr<quant::QuantizedType> buildQuantType(QTensorType type,
                                                      const QuantParams &params,
                                                      bool signedStorage,
                                                      Location loc) {
  FormatAttr format = type.getFormat();
  auto fail = [&]() {
    return emitError(loc) << "cannot express " << type
                          << " as !quant.uniform: ";
  };
  if (format.isCodebook())
    return fail() << "its codebook format has no upstream equivalent; only "
                     "uniform integer grids do";
  if (format.getFractionalZeroPoints())
    return fail() << "its zero points are fractional (asymmetric = "
                     "fractional); upstream zero points are integers";
  if (!type.hasStaticShape())
    return fail() << "the shape must be static";
  unsigned bits = format.getBits();
  bool isSigned = signedStorage && format.getSymmetric();
  int64_t offset = isSigned ? int64_t(1) << (bits - 1) : 0;
  int64_t implicitZero = int64_t(1) << (bits - 1);
  MLIRContext *ctx = type.getContext();
  Type storageType = IntegerType::get(ctx, bits);
  Type expressedType = type.getElementType();
  unsigned flags = isSigned ? quant::QuantizationFlags::Signed : 0;
  int64_t storageMin =
      quant::QuantizedType::getDefaultMinimumForInteger(isSigned, bits);
  int64_t storageMax =
      quant::QuantizedType::getDefaultMaximumForInteger(isSigned, bits);
  std::vector<double> scales(params.scales.begin(), params.scales.end());
  std::vector<int64_t> zeroPoints;
  for (size_t i = 0; i < scales.size(); ++i) {
    int64_t zero =
        params.zeroPoints.empty() ? implicitZero : params.zeroPoints[i];
    zeroPoints.push_back(zero - offset);
  }
  auto emit = [&] { return emitError(loc); };
  int64_t rank = type.getRank();
  switch (format.getGranularity()) {
  case Granularity::Tensor:
    return cast<quant::QuantizedType>(quant::UniformQuantizedType::getChecked(
        emit, flags, storageType, expressedType, scales[0], zeroPoints[0],
        storageMin, storageMax));
  case Granularity::Channel:
    return cast<quant::QuantizedType>(
        quant::UniformQuantizedPerAxisType::getChecked(
            emit, flags, storageType, expressedType, scales, zeroPoints,
            format.resolveAxis(rank), storageMin, storageMax));
  case Granularity::Group: {
    int64_t axis = format.resolveAxis(rank);
    int64_t extent = type.getShape()[axis];
    if (extent % format.getGroupSize() != 0)
      return fail() << "group size " << format.getGroupSize()
                    << " does not divide dimension " << axis << " (" << extent
                    << "); upstream sub-channel types need whole blocks";
    SmallVector<int64_t> scaleShape = format.getScaleShape(type.getShape());
    auto scalesAttr =
        DenseElementsAttr::get(RankedTensorType::get(scaleShape, expressedType),
                               ArrayRef<float>(params.scales));
    SmallVector<APInt> zeroValues;
    for (int64_t zero : zeroPoints)
      zeroValues.push_back(APInt(bits, zero, /*isSigned=*/true,
                                 /*implicitTrunc=*/true));
    auto zerosAttr = DenseElementsAttr::get(
        RankedTensorType::get(scaleShape, storageType), zeroValues);
    SmallVector<int32_t> dims;
    SmallVector<int64_t> blocks;
    for (int64_t dim = 0; dim < rank; ++dim) {
      dims.push_back(dim);
      blocks.push_back(dim == axis ? format.getGroupSize() : 1);
    }
    return cast<quant::QuantizedType>(
        quant::UniformQuantizedSubChannelType::getChecked(
            emit, flags, storageType, expressedType, scalesAttr, zerosAttr,
            dims, blocks, storageMin, storageMax));
  }
  }
  llvm_unreachable("unknown granularity");
}

/// Reads the constant scales (and zero points) given to `op`.
static FailureOr<QuantParams> readParams(Operation *op, Value scales,
                                         Value zeroPoints) {
  QuantParams params;
  ElementsAttr scaleElements = getConstantElements(scales);
  if (!scales || !scaleElements)
    return op->emitOpError("has non-constant scales; !quant.uniform types need "
                           "them at compile time"),
           failure();
  auto scaleValues = readFloats(scaleElements, op->getLoc());
  if (failed(scaleValues))
    return failure();
  params.scales = std::move(*scaleValues);
  if (zeroPoints) {
    ElementsAttr zeroElements = getConstantElements(zeroPoints);
    if (!zeroElements)
      return op->emitOpError("has non-constant zero points; !quant.uniform "
                             "types need them at compile time"),
             failure();
    auto zeroValues = readBytes(zeroElements, op->getLoc());
    if (failed(zeroValues))
      return failure();
    params.zeroPoints = std::move(*zeroValues);
  }
  return params;
}

namespace {
struct QLRConvertQLRToQuantPass
    : public mlir::qlr::impl::QLRConvertQLRToQuantPassBase<
          QLRConvertQLRToQuantPass> {
  using Base::Base;
  void runOnOperation() override;
};
} // namespace

void QLRConvertQLRToQuantPass::runOnOperation() {
  ModuleOp module = getOperation();
  bool ok = true;
  struct Conversion {
    Operation *op;
    RankedTensorType quantTensorType;
  };
  SmallVector<Conversion> conversions;
  module.walk([&](Operation *op) {
    for (Region &region : op->getRegions())
      for (Block &block : region)
        for (BlockArgument arg : block.getArguments())
          if (isa<QTensorType>(arg.getType())) {
            emitError(arg.getLoc())
                << "a quantized block or function argument carries its "
                   "scales at run time; !quant.uniform needs them in the "
                   "type, so it cannot be converted";
            ok = false;
          }
    if (!isa<PackOp, QuantizeOp>(op)) {
      for (Value result : op->getResults())
        if (isa<QTensorType>(result.getType())) {
          op->emitOpError("produces a quantized tensor that !quant.uniform "
                          "cannot express");
          ok = false;
        }
      return;
    }
    auto type = cast<QTensorType>(op->getResult(0).getType());
    FailureOr<QuantParams> params = failure();
    if (auto pack = dyn_cast<PackOp>(op)) {
      if (!getConstantElements(pack.getCodes())) {
        op->emitOpError("has non-constant codes; only constant codes can be "
                        "unpacked into upstream storage at compile time");
        ok = false;
        return;
      }
      params = readParams(op, pack.getScales(), pack.getZeroPoints());
    } else {
      auto quantize = cast<QuantizeOp>(op);
      if (!quantize.getScales()) {
        op->emitOpError("computes its scales from the data at run time; "
                        "!quant.uniform types need them at compile time");
        ok = false;
        return;
      }
      params = readParams(op, quantize.getScales(), quantize.getZeroPoints());
    }
    if (failed(params)) {
      ok = false;
      return;
    }
    auto quantType = buildQuantType(type, *params, signedStorage, op->getLoc());
    if (failed(quantType)) {
      ok = false;
      return;
    }
    for (OpOperand &use : op->getResult(0).getUses()) {
      Operation *user = use.getOwner();
      if (isa<DequantizeOp>(user))
        continue;
      if (auto linear = dyn_cast<LinearOp>(user);
          linear && use.get() == linear.getWeight())
        continue;
      InFlightDiagnostic diag = user->emitOpError()
                                << "uses a quantized tensor in a way "
                                   "!quant.uniform cannot express; only "
                                   "qlr.dequantize and the weight of "
                                   "qlr.linear convert";
      diag.attachNote(op->getLoc()) << "the quantized tensor is defined here";
      ok = false;
    }
    conversions.push_back(
        {op, RankedTensorType::get(type.getShape(), *quantType)});
  });
  if (!ok)
    return signalPassFailure();

  OpBuilder builder(module.getContext());
  for (auto [op, quantTensorType] : conversions) {
    Location loc = op->getLoc();
    auto type = cast<QTensorType>(op->getResult(0).getType());
    builder.setInsertionPoint(op);
    Value replacement;
    if (auto pack = dyn_cast<PackOp>(op)) {
      auto quantType =
          cast<quant::QuantizedType>(quantTensorType.getElementType());
      auto packed = readBytes(getConstantElements(pack.getCodes()), loc);
      if (failed(packed))
        return signalPassFailure();
      std::vector<uint8_t> codes = numerics::unpackCodes(
          *packed, type.getShape(), type.getFormat().getBits());
      int64_t offset = quantType.isSigned()
                           ? int64_t(1) << (type.getFormat().getBits() - 1)
                           : 0;
      std::vector<int64_t> storage;
      storage.reserve(codes.size());
      for (uint8_t code : codes)
        storage.push_back(int64_t(code) - offset);
      auto storageType =
          RankedTensorType::get(type.getShape(), quantType.getStorageType());
      Value storageConstant =
          createIntegerConstant(builder, loc, storageType, storage);
      replacement = quant::StorageCastOp::create(builder, loc, quantTensorType,
                                                 storageConstant);
    } else {
      auto quantize = cast<QuantizeOp>(op);
      replacement = quant::QuantizeCastOp::create(builder, loc, quantTensorType,
                                                  quantize.getInput());
    }
    Value result = op->getResult(0);
    for (OpOperand &use : llvm::make_early_inc_range(result.getUses())) {
      Operation *user = use.getOwner();
      builder.setInsertionPoint(user);
      Value dequantized = quant::DequantizeCastOp::create(
          builder, user->getLoc(), type.getExpressedTensorType(), replacement);
      if (auto dequantize = dyn_cast<DequantizeOp>(user)) {
        dequantize.replaceAllUsesWith(dequantized);
        dequantize.erase();
      } else {
        use.set(dequantized);
      }
    }
    eraseWithDeadConstants(op);
  }
}
