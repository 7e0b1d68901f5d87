//===- QLRTypes.cpp - QLR types ---------------------------------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#include "qlr/Dialect/QLR/IR/QLR.h"
#include "qlr/Numerics/Packing.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace mlir::qlr;

#define GET_TYPEDEF_CLASSES
#include "qlr/Dialect/QLR/IR/QLRTypes.cpp.inc"

void QLRDialect::registerTypes() {
  addTypes<
#define GET_TYPEDEF_LIST
#include "qlr/Dialect/QLR/IR/QLRTypes.cpp.inc"
      >();
}

static bool isExpressedType(Type type) {
  return type.isF32() || type.isF16() || type.isBF16();
}

/// Parses `DIMS x element-type` as in `576x576xf32`.
static ParseResult parseShapeAndElementType(AsmParser &parser,
                                            SmallVectorImpl<int64_t> &shape,
                                            Type &elementType) {
  return failure(parser.parseDimensionList(shape, /*allowDynamic=*/true,
                                           /*withTrailingX=*/true) ||
                 parser.parseType(elementType));
}

static void printShapeAndElementType(AsmPrinter &printer,
                                     ArrayRef<int64_t> shape,
                                     Type elementType) {
  for (int64_t dim : shape) {
    if (ShapedType::isDynamic(dim))
      printer << "?";
    else
      printer << dim;
    printer << "x";
  }
  printer << elementType;
}

static LogicalResult
verifyShapeAndElementType(function_ref<InFlightDiagnostic()> emitError,
                          ArrayRef<int64_t> shape, Type elementType) {
  // Sizes are computed in int64 (packed bytes are elements * bits / 8), so
  // bound the element count far below where that could overflow.
  constexpr int64_t kMaxElements = int64_t(1) << 56;
  int64_t elements = 1;
  for (int64_t dim : shape) {
    if (ShapedType::isDynamic(dim))
      continue;
    if (dim < 0)
      return emitError() << "dimensions must be non-negative, got " << dim;
    if (dim > kMaxElements || (dim && elements > kMaxElements / dim))
      return emitError() << "tensor has more than 2^56 elements";
    elements *= dim;
  }
  if (!isExpressedType(elementType))
    return emitError() << "element type must be f32, f16 or bf16, got "
                       << elementType;
  return success();
}

//===----------------------------------------------------------------------===//
// QTensorType
//===----------------------------------------------------------------------===//

Type QTensorType::parse(AsmParser &parser) {
  SMLoc loc = parser.getCurrentLocation();
  SmallVector<int64_t> shape;
  Type elementType;
  FormatAttr format;
  if (parser.parseLess() ||
      parseShapeAndElementType(parser, shape, elementType) ||
      parser.parseComma() || parser.parseAttribute(format) ||
      parser.parseGreater())
    return {};
  return getChecked([&] { return parser.emitError(loc); }, parser.getContext(),
                    shape, elementType, format);
}

void QTensorType::print(AsmPrinter &printer) const {
  printer << "<";
  printShapeAndElementType(printer, getShape(), getElementType());
  printer << ", ";
  printer.printAttribute(getFormat());
  printer << ">";
}

LogicalResult QTensorType::verify(function_ref<InFlightDiagnostic()> emitError,
                                  ArrayRef<int64_t> shape, Type elementType,
                                  FormatAttr format) {
  if (failed(verifyShapeAndElementType(emitError, shape, elementType)))
    return failure();
  return format.verifyForRank(emitError, shape.size());
}

RankedTensorType QTensorType::getCodesType() const {
  SmallVector<int64_t> shape(getShape());
  int64_t &last = shape.back();
  if (!ShapedType::isDynamic(last))
    last = numerics::packedRowBytes(last, getFormat().getBits());
  return RankedTensorType::get(shape, IntegerType::get(getContext(), 8));
}

RankedTensorType QTensorType::getScalesType() const {
  return RankedTensorType::get(getFormat().getScaleShape(getShape()),
                               getFormat().getScaleType());
}

RankedTensorType QTensorType::getZeroPointsType() const {
  if (!getFormat().hasZeroPoints())
    return {};
  return RankedTensorType::get(getFormat().getScaleShape(getShape()),
                               IntegerType::get(getContext(), 8));
}

RankedTensorType QTensorType::getExpressedTensorType() const {
  return RankedTensorType::get(getShape(), getElementType());
}

//===----------------------------------------------------------------------===//
// LowRankType
//===----------------------------------------------------------------------===//

Type LowRankType::parse(AsmParser &parser) {
  SMLoc loc = parser.getCurrentLocation();
  SmallVector<int64_t> shape;
  Type elementType;
  int64_t rank = 0;
  FormatAttr base, aFormat, bFormat;
  if (parser.parseLess() ||
      parseShapeAndElementType(parser, shape, elementType) ||
      parser.parseComma() || parser.parseKeyword("rank") ||
      parser.parseEqual() || parser.parseInteger(rank))
    return {};
  while (succeeded(parser.parseOptionalComma())) {
    SMLoc keyLoc = parser.getCurrentLocation();
    StringRef key;
    if (parser.parseKeyword(&key))
      return {};
    FormatAttr *slot = llvm::StringSwitch<FormatAttr *>(key)
                           .Case("base", &base)
                           .Case("a", &aFormat)
                           .Case("b", &bFormat)
                           .Default(nullptr);
    if (!slot) {
      parser.emitError(keyLoc, "expected 'base', 'a' or 'b', got '")
          << key << "'";
      return {};
    }
    if (*slot) {
      parser.emitError(keyLoc, "'") << key << "' is given twice";
      return {};
    }
    if (parser.parseEqual() || parser.parseAttribute(*slot))
      return {};
  }
  if (parser.parseGreater())
    return {};
  return getChecked([&] { return parser.emitError(loc); }, parser.getContext(),
                    shape, elementType, rank, base, aFormat, bFormat);
}

void LowRankType::print(AsmPrinter &printer) const {
  printer << "<";
  printShapeAndElementType(printer, getShape(), getElementType());
  printer << ", rank = " << getRank();
  auto printFormat = [&](StringRef key, FormatAttr format) {
    if (!format)
      return;
    printer << ", " << key << " = ";
    printer.printAttribute(format);
  };
  printFormat("base", getBase());
  printFormat("a", getAFormat());
  printFormat("b", getBFormat());
  printer << ">";
}

LogicalResult LowRankType::verify(function_ref<InFlightDiagnostic()> emitError,
                                  ArrayRef<int64_t> shape, Type elementType,
                                  int64_t rank, FormatAttr base,
                                  FormatAttr aFormat, FormatAttr bFormat) {
  if (failed(verifyShapeAndElementType(emitError, shape, elementType)))
    return failure();
  if (shape.size() != 2 || ShapedType::isDynamicShape(shape))
    return emitError() << "low-rank weights must be static 2-D matrices";
  int64_t maxRank = std::min(shape[0], shape[1]);
  if (rank < 1 || rank > maxRank)
    return emitError() << "rank must be between 1 and min(" << shape[0] << ", "
                       << shape[1] << ") = " << maxRank << ", got " << rank;
  for (FormatAttr format : {base, aFormat, bFormat})
    if (format && failed(format.verifyForRank(emitError, 2)))
      return failure();
  return success();
}

/// A float tensor of `shape`, or a qtensor of `shape` when `format` is set.
static Type getMaybeQuantizedType(ArrayRef<int64_t> shape, Type elementType,
                                  FormatAttr format) {
  if (format)
    return QTensorType::get(elementType.getContext(), shape, elementType,
                            format);
  return RankedTensorType::get(shape, elementType);
}

Type LowRankType::getAType() const {
  return getMaybeQuantizedType({getShape()[0], getRank()}, getElementType(),
                               getAFormat());
}

Type LowRankType::getBType() const {
  return getMaybeQuantizedType({getRank(), getShape()[1]}, getElementType(),
                               getBFormat());
}

Type LowRankType::getBaseType() const {
  if (!getBase())
    return {};
  return QTensorType::get(getContext(), getShape(), getElementType(),
                          getBase());
}

RankedTensorType LowRankType::getExpressedTensorType() const {
  return RankedTensorType::get(getShape(), getElementType());
}
