//===- QLROps.cpp - QLR operations and verifiers ----------------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#include "qlr/Dialect/QLR/IR/QLROps.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/OpImplementation.h"
#include "llvm/ADT/STLExtras.h"

using namespace mlir;
using namespace mlir::qlr;

#define GET_OP_CLASSES
#include "qlr/Dialect/QLR/IR/QLROps.cpp.inc"

std::string mlir::qlr::formatShape(ArrayRef<int64_t> shape) {
  std::string result = "[";
  llvm::raw_string_ostream os(result);
  llvm::interleaveComma(shape, os, [&](int64_t dim) {
    if (ShapedType::isDynamic(dim))
      os << "?";
    else
      os << dim;
  });
  os << "]";
  return result;
}

//===----------------------------------------------------------------------===//
// Storage checks shared by qlr.pack and qlr.quantize
//===----------------------------------------------------------------------===//

/// Explains why dimension `dim` of the scales must be `expected`.
static void explainScaleDim(InFlightDiagnostic &diag, QTensorType type,
                            int64_t dim) {
  FormatAttr format = type.getFormat();
  int64_t rank = type.getRank();
  switch (format.getGranularity()) {
  case Granularity::Tensor:
    return;
  case Granularity::Channel:
    diag << ": one scale per index along channel axis "
         << format.resolveAxis(rank);
    return;
  case Granularity::Group: {
    int64_t axis = format.resolveAxis(rank);
    int64_t extent = type.getShape()[dim];
    if (dim != axis || ShapedType::isDynamic(extent)) {
      diag << ": dimension " << dim << " is not the group axis";
      return;
    }
    diag << ": dimension " << dim << " has ceil(" << extent << " / "
         << format.getGroupSize()
         << ") = " << llvm::divideCeil(extent, format.getGroupSize())
         << " groups";
    if (extent % format.getGroupSize() != 0)
      diag << " (the last one partial)";
    return;
  }
  }
}

/// Verifies scales (and zero points) given for a quantized tensor of `type`.
static LogicalResult
verifyScalesAndZeroPoints(Operation *op, QTensorType type,
                          RankedTensorType scalesType,
                          RankedTensorType zeroPointsType) {
  FormatAttr format = type.getFormat();
  RankedTensorType expected = type.getScalesType();
  if (scalesType.getElementType() != expected.getElementType())
    return op->emitOpError("scales have element type ")
           << scalesType.getElementType() << " but the format's scale type is "
           << expected.getElementType();
  if (scalesType.getShape() != expected.getShape()) {
    InFlightDiagnostic diag = op->emitOpError("scales have shape ")
                              << formatShape(scalesType.getShape())
                              << " but the format needs "
                              << formatShape(expected.getShape());
    if (scalesType.getRank() == expected.getRank()) {
      for (int64_t dim = 0; dim < expected.getRank(); ++dim) {
        if (scalesType.getDimSize(dim) != expected.getDimSize(dim)) {
          explainScaleDim(diag, type, dim);
          break;
        }
      }
    } else if (format.getGranularity() == Granularity::Tensor) {
      diag << ": a per-tensor format has one scale (a rank-0 tensor)";
    }
    return diag;
  }
  if (format.hasZeroPoints() && !zeroPointsType)
    return op->emitOpError("asymmetric format ")
           << format << " requires zero points";
  if (!format.hasZeroPoints() && zeroPointsType)
    return op->emitOpError("symmetric format ")
           << format << " takes no zero points (its zero point is implicit)";
  if (zeroPointsType && zeroPointsType.getShape() != expected.getShape())
    return op->emitOpError("zero points have shape ")
           << formatShape(zeroPointsType.getShape())
           << " but must have the scales' shape "
           << formatShape(expected.getShape());
  return success();
}

//===----------------------------------------------------------------------===//
// PackOp
//===----------------------------------------------------------------------===//

LogicalResult PackOp::verify() {
  auto type = cast<QTensorType>(getType());
  RankedTensorType codesType = getCodes().getType();
  RankedTensorType expected = type.getCodesType();
  if (codesType.getRank() != expected.getRank())
    return emitOpError("codes must have rank ")
           << expected.getRank() << " like the quantized tensor, got rank "
           << codesType.getRank();
  for (int64_t dim = 0, rank = expected.getRank(); dim < rank; ++dim) {
    int64_t got = codesType.getDimSize(dim), want = expected.getDimSize(dim);
    if (got == want)
      continue;
    InFlightDiagnostic diag = emitOpError("codes dimension ")
                              << dim << " is " << formatShape({got})
                              << " but must be " << formatShape({want});
    if (dim == rank - 1 && !ShapedType::isDynamic(want))
      diag << ": rows of " << type.getShape().back() << " "
           << type.getFormat().getBits() << "-bit codes pack into " << want
           << " bytes";
    return diag;
  }
  return verifyScalesAndZeroPoints(*this, type, getScales().getType(),
                                   getZeroPoints() ? getZeroPoints().getType()
                                                   : RankedTensorType());
}

//===----------------------------------------------------------------------===//
// UnpackOp
//===----------------------------------------------------------------------===//

LogicalResult
UnpackOp::inferReturnTypes(MLIRContext *, std::optional<Location> location,
                           ValueRange operands, DictionaryAttr attributes,
                           OpaqueProperties properties, RegionRange regions,
                           SmallVectorImpl<Type> &inferredReturnTypes) {
  UnpackOp::Adaptor adaptor(operands, attributes, properties, regions);
  auto type = dyn_cast<QTensorType>(adaptor.getInput().getType());
  if (!type)
    return emitOptionalError(location, "expected a quantized tensor");
  inferredReturnTypes.push_back(type.getCodesType());
  inferredReturnTypes.push_back(type.getScalesType());
  if (RankedTensorType zeroPoints = type.getZeroPointsType())
    inferredReturnTypes.push_back(zeroPoints);
  return success();
}

//===----------------------------------------------------------------------===//
// QuantizeOp
//===----------------------------------------------------------------------===//

LogicalResult QuantizeOp::verify() {
  auto type = cast<QTensorType>(getType());
  if (getInput().getType() != type.getExpressedTensorType())
    return emitOpError("input type ")
           << getInput().getType()
           << " does not match the quantized tensor's expressed type "
           << type.getExpressedTensorType();
  if (!getScales()) {
    if (getZeroPoints())
      return emitOpError("zero points are given without scales");
    return success();
  }
  return verifyScalesAndZeroPoints(*this, type, getScales().getType(),
                                   getZeroPoints() ? getZeroPoints().getType()
                                                   : RankedTensorType());
}

//===----------------------------------------------------------------------===//
// DequantizeOp
//===----------------------------------------------------------------------===//

RankedTensorType mlir::qlr::getExpressedTensorType(Type type) {
  if (auto qtensor = dyn_cast<QTensorType>(type))
    return qtensor.getExpressedTensorType();
  if (auto lowRank = dyn_cast<LowRankType>(type))
    return lowRank.getExpressedTensorType();
  return dyn_cast<RankedTensorType>(type);
}

LogicalResult DequantizeOp::verify() {
  RankedTensorType expected = getExpressedTensorType(getInput().getType());
  if (getType() != expected)
    return emitOpError("result type ")
           << getType() << " must be the input's expressed type " << expected;
  return success();
}

//===----------------------------------------------------------------------===//
// LowRankOp
//===----------------------------------------------------------------------===//

LogicalResult LowRankOp::verify() {
  auto type = cast<LowRankType>(getType());
  auto check = [&](StringRef name, Type got, Type want) -> LogicalResult {
    if (got == want)
      return success();
    return emitOpError() << name << " has type " << got << " but the result "
                         << type << " needs " << want;
  };
  if (failed(check("factor A", getA().getType(), type.getAType())) ||
      failed(check("factor B", getB().getType(), type.getBType())))
    return failure();
  if (type.getBase() && !getBase())
    return emitOpError("result type ") << type << " needs a quantized base";
  if (!type.getBase() && getBase())
    return emitOpError("a base is given but the result type ")
           << type << " has none";
  if (getBase())
    return check("base", getBase().getType(), type.getBaseType());
  return success();
}

//===----------------------------------------------------------------------===//
// LinearOp
//===----------------------------------------------------------------------===//

LogicalResult LinearOp::verify() {
  RankedTensorType weightType = getExpressedTensorType(getWeight().getType());
  if (weightType.getRank() != 2)
    return emitOpError("weight must be a 2-D [N, K] matrix, got shape ")
           << formatShape(weightType.getShape());
  RankedTensorType inputType = getInput().getType();
  if (inputType.getRank() < 1)
    return emitOpError("input must have rank 1 or more");
  Type elementType = inputType.getElementType();
  if (weightType.getElementType() != elementType)
    return emitOpError("weight element type ")
           << weightType.getElementType()
           << " does not match the input element type " << elementType;
  int64_t outFeatures = weightType.getDimSize(0);
  int64_t inFeatures = weightType.getDimSize(1);
  int64_t inputFeatures = inputType.getShape().back();
  if (!ShapedType::isDynamic(inputFeatures) &&
      !ShapedType::isDynamic(inFeatures) && inputFeatures != inFeatures)
    return emitOpError("input has ")
           << inputFeatures << " features (last dimension) but the weight "
           << formatShape(weightType.getShape()) << " takes " << inFeatures;
  if (Value bias = getBias()) {
    auto biasType = cast<RankedTensorType>(bias.getType());
    if (biasType.getRank() != 1 || biasType.getElementType() != elementType ||
        (!ShapedType::isDynamic(outFeatures) &&
         biasType.getDimSize(0) != outFeatures))
      return emitOpError("bias must be a 1-D tensor of ")
             << outFeatures << " " << elementType << " (one per output "
             << "feature), got " << biasType;
  }
  SmallVector<int64_t> resultShape(inputType.getShape());
  resultShape.back() = outFeatures;
  auto expected = RankedTensorType::get(resultShape, elementType);
  if (getType() != expected)
    return emitOpError("result type ")
           << getType() << " does not match the expected " << expected;
  return success();
}

LogicalResult Conv2DOp::verify() {
  RankedTensorType inputType = getInput().getType();
  if (inputType.getRank() != 4)
    return emitOpError("input must be a 4-D [N, C, H, W] tensor, got shape ")
           << formatShape(inputType.getShape());
  RankedTensorType weightType = getExpressedTensorType(getWeight().getType());
  if (weightType.getRank() != 4)
    return emitOpError("weight must be a 4-D [F, C / groups, KH, KW] tensor, "
                       "got shape ")
           << formatShape(weightType.getShape());
  Type elementType = inputType.getElementType();
  if (weightType.getElementType() != elementType)
    return emitOpError("weight element type ")
           << weightType.getElementType()
           << " does not match the input element type " << elementType;
  auto checkPair = [&](StringRef name, ArrayRef<int64_t> values, size_t count,
                       int64_t minimum) -> LogicalResult {
    if (values.size() != count)
      return emitOpError() << name << " must have " << count << " values, got "
                           << values.size();
    for (int64_t v : values)
      if (v < minimum)
        return emitOpError()
               << name << " must be " << minimum << " or more, got " << v;
    return success();
  };
  if (failed(checkPair("strides", getStrides(), 2, 1)) ||
      failed(checkPair("padding", getPadding(), 4, 0)) ||
      failed(checkPair("dilations", getDilations(), 2, 1)))
    return failure();
  int64_t groups = getGroups();
  if (groups < 1)
    return emitOpError("groups must be 1 or more, got ") << groups;
  int64_t channels = inputType.getDimSize(1);
  int64_t filters = weightType.getDimSize(0);
  int64_t perGroup = weightType.getDimSize(1);
  if (!ShapedType::isDynamic(channels) && channels % groups != 0)
    return emitOpError("input channels (")
           << channels << ") are not divisible by groups (" << groups << ")";
  if (!ShapedType::isDynamic(filters) && filters % groups != 0)
    return emitOpError("output channels (")
           << filters << ") are not divisible by groups (" << groups << ")";
  if (!ShapedType::isDynamic(channels) && !ShapedType::isDynamic(perGroup) &&
      perGroup * groups != channels)
    return emitOpError("weight ")
           << formatShape(weightType.getShape()) << " takes " << perGroup
           << " channels per group, but the input has " << channels
           << " channels in " << groups << " group(s)";
  if (Value bias = getBias()) {
    auto biasType = cast<RankedTensorType>(bias.getType());
    if (biasType.getRank() != 1 || biasType.getElementType() != elementType ||
        (!ShapedType::isDynamic(filters) && biasType.getDimSize(0) != filters))
      return emitOpError("bias must be a 1-D tensor of ")
             << filters << " " << elementType << " (one per output "
             << "channel), got " << biasType;
  }
  SmallVector<int64_t> resultShape = {inputType.getDimSize(0), filters};
  for (int i = 0; i < 2; ++i) {
    int64_t size = inputType.getDimSize(2 + i);
    int64_t kernel = weightType.getDimSize(2 + i);
    if (ShapedType::isDynamic(size) || ShapedType::isDynamic(kernel)) {
      resultShape.push_back(ShapedType::kDynamic);
      continue;
    }
    int64_t padded = size + getPadding()[i] + getPadding()[i + 2];
    int64_t extent = getDilations()[i] * (kernel - 1) + 1;
    if (padded < extent)
      return emitOpError("the ")
             << (i == 0 ? "height" : "width") << " after padding (" << padded
             << ") is smaller than the dilated kernel (" << extent << ")";
    resultShape.push_back((padded - extent) / getStrides()[i] + 1);
  }
  auto expected = RankedTensorType::get(resultShape, elementType);
  auto resultType = getType();
  bool compatible =
      resultType.getRank() == 4 && resultType.getElementType() == elementType;
  for (int64_t i = 0; compatible && i < 4; ++i)
    compatible = ShapedType::isDynamic(resultShape[i])
                     ? true
                     : resultType.getDimSize(i) == resultShape[i];
  if (!compatible)
    return emitOpError("result type ")
           << resultType << " does not match the expected " << expected;
  return success();
}

//===----------------------------------------------------------------------===//
// Normalisation layers
//===----------------------------------------------------------------------===//

/// Checks the epsilon attribute and that every parameter is a 1-D tensor of
/// `channels` elements of the input's element type.
static LogicalResult
verifyNormParameters(Operation *op, APFloat epsilon, Type elementType,
                     int64_t channels, StringRef what,
                     ArrayRef<std::pair<StringRef, Value>> parameters) {
  if (epsilon.isNegative() || !epsilon.isFinite())
    return op->emitOpError("epsilon must be finite and non-negative, got ")
           << epsilon.convertToDouble();
  for (auto [name, value] : parameters) {
    auto type = cast<RankedTensorType>(value.getType());
    if (type.getElementType() != elementType)
      return op->emitOpError()
             << name << " element type " << type.getElementType()
             << " does not match the input element type " << elementType;
    int64_t size = type.getDimSize(0);
    if (!ShapedType::isDynamic(size) && !ShapedType::isDynamic(channels) &&
        size != channels)
      return op->emitOpError()
             << name << " has " << size << " elements but the input has "
             << channels << " " << what;
  }
  return success();
}

LogicalResult RMSNormOp::verify() {
  RankedTensorType type = getInput().getType();
  if (type.getRank() < 1)
    return emitOpError("input must have rank 1 or more");
  return verifyNormParameters(*this, getEpsilonAttr().getValue(),
                              type.getElementType(), type.getShape().back(),
                              "features (last dimension)",
                              {{"weight", getWeight()}});
}

LogicalResult LayerNormOp::verify() {
  RankedTensorType type = getInput().getType();
  if (type.getRank() < 1)
    return emitOpError("input must have rank 1 or more");
  return verifyNormParameters(*this, getEpsilonAttr().getValue(),
                              type.getElementType(), type.getShape().back(),
                              "features (last dimension)",
                              {{"weight", getWeight()}, {"bias", getBias()}});
}

LogicalResult BatchNormOp::verify() {
  RankedTensorType type = getInput().getType();
  int64_t axis = getAxis();
  if (axis < 0 || axis >= type.getRank())
    return emitOpError("channel axis ")
           << axis << " is out of range for a rank-" << type.getRank()
           << " input";
  return verifyNormParameters(*this, getEpsilonAttr().getValue(),
                              type.getElementType(), type.getDimSize(axis),
                              "channels along the axis",
                              {{"scale", getScale()},
                               {"bias", getBias()},
                               {"mean", getMean()},
                               {"variance", getVariance()}});
}
