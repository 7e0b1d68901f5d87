//===- QLRAttrs.cpp - QLR attributes ----------------------------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#include "qlr/Dialect/QLR/IR/QLR.h"
#include "qlr/Numerics/Codebook.h"
#include "qlr/Numerics/Packing.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace mlir::qlr;

#include "qlr/Dialect/QLR/IR/QLREnums.cpp.inc"

#define GET_ATTRDEF_CLASSES
#include "qlr/Dialect/QLR/IR/QLRAttrs.cpp.inc"

void QLRDialect::registerAttributes() {
  addAttributes<
#define GET_ATTRDEF_LIST
#include "qlr/Dialect/QLR/IR/QLRAttrs.cpp.inc"
      >();
}

static constexpr unsigned kMinBits = 2;
static constexpr unsigned kMaxBits = 8;

static bool isScaleType(Type type) {
  return type.isF32() || type.isF16() || type.isBF16();
}

//===----------------------------------------------------------------------===//
// Parsing and printing
//===----------------------------------------------------------------------===//

Attribute FormatAttr::parse(AsmParser &parser, Type) {
  MLIRContext *ctx = parser.getContext();
  SMLoc loc = parser.getCurrentLocation();
  if (parser.parseLess())
    return {};

  // Scheme and bits: `int4`, `nf4`, `lut2 [...]`.
  SMLoc schemeLoc = parser.getCurrentLocation();
  StringRef keyword;
  if (parser.parseKeyword(&keyword))
    return {};
  Scheme scheme;
  StringRef digits;
  if (keyword.consume_front("int"))
    scheme = Scheme::Uniform;
  else if (keyword.consume_front("nf"))
    scheme = Scheme::NormalFloat;
  else if (keyword.consume_front("lut"))
    scheme = Scheme::LookupTable;
  else {
    parser.emitError(schemeLoc, "expected a scheme 'intN', 'nfN' or 'lutN' "
                                "(N = storage bits), got '")
        << keyword << "'";
    return {};
  }
  digits = keyword;
  unsigned bits = 0;
  if (digits.empty() || digits.getAsInteger(10, bits)) {
    parser.emitError(schemeLoc, "expected the number of storage bits after "
                                "the scheme, as in 'int4'");
    return {};
  }

  DenseF32ArrayAttr table;
  if (scheme == Scheme::LookupTable) {
    SmallVector<float> values;
    if (parser.parseCommaSeparatedList(
            AsmParser::Delimiter::Square,
            [&]() -> ParseResult {
              double value;
              if (parser.parseFloat(value))
                return failure();
              values.push_back(static_cast<float>(value));
              return success();
            },
            " in the lookup table"))
      return {};
    table = DenseF32ArrayAttr::get(ctx, values);
  }

  Granularity granularity = Granularity::Tensor;
  int64_t axis = 0, groupSize = 0;
  bool symmetric = true, fractional = false, sawAxis = false, sawScale = false;
  Type scaleType = Float32Type::get(ctx);
  while (succeeded(parser.parseOptionalComma())) {
    SMLoc optionLoc = parser.getCurrentLocation();
    StringRef option;
    if (parser.parseKeyword(&option))
      return {};
    auto duplicate = [&]() {
      parser.emitError(optionLoc, "'") << option << "' is given twice";
      return Attribute();
    };
    if (option == "channel" || option == "group") {
      if (granularity != Granularity::Tensor) {
        parser.emitError(optionLoc,
                         "'channel' and 'group' may appear only once and not "
                         "together");
        return {};
      }
      int64_t value;
      if (parser.parseEqual() || parser.parseInteger(value))
        return {};
      if (option == "channel") {
        granularity = Granularity::Channel;
        axis = value;
      } else {
        granularity = Granularity::Group;
        groupSize = value;
        if (!sawAxis)
          axis = -1;
      }
    } else if (option == "axis") {
      if (sawAxis)
        return duplicate();
      sawAxis = true;
      if (parser.parseEqual() || parser.parseInteger(axis))
        return {};
    } else if (option == "asymmetric") {
      if (!symmetric)
        return duplicate();
      symmetric = false;
      if (succeeded(parser.parseOptionalEqual())) {
        SMLoc kindLoc = parser.getCurrentLocation();
        StringRef kind;
        if (parser.parseKeyword(&kind))
          return {};
        if (kind != "fractional" && kind != "integer") {
          parser.emitError(kindLoc, "expected 'fractional' or 'integer' zero "
                                    "points after 'asymmetric =', got '")
              << kind << "'";
          return {};
        }
        fractional = kind == "fractional";
      }
    } else if (option == "scale") {
      if (sawScale)
        return duplicate();
      sawScale = true;
      if (parser.parseEqual() || parser.parseType(scaleType))
        return {};
    } else {
      parser.emitError(optionLoc, "unknown format option '")
          << option
          << "'; expected 'channel', 'group', 'axis', 'asymmetric' or 'scale'";
      return {};
    }
  }
  if (sawAxis && granularity != Granularity::Group) {
    parser.emitError(loc, "'axis' applies to 'group' formats only; a "
                          "per-channel format names its axis as 'channel = N'");
    return {};
  }
  if (parser.parseGreater())
    return {};
  return getChecked([&] { return parser.emitError(loc); }, ctx, scheme, bits,
                    table, granularity, axis, groupSize, symmetric, scaleType,
                    fractional);
}

void FormatAttr::print(AsmPrinter &printer) const {
  printer << "<" << stringifyScheme(getScheme()) << getBits();
  if (DenseF32ArrayAttr table = getTable()) {
    printer << " [";
    llvm::interleaveComma(table.asArrayRef(), printer, [&](float value) {
      printer.printFloat(APFloat(value));
    });
    printer << "]";
  }
  switch (getGranularity()) {
  case Granularity::Tensor:
    break;
  case Granularity::Channel:
    printer << ", channel = " << getAxis();
    break;
  case Granularity::Group:
    printer << ", group = " << getGroupSize();
    if (getAxis() != -1)
      printer << ", axis = " << getAxis();
    break;
  }
  if (!getSymmetric())
    printer << ", asymmetric";
  if (getFractionalZeroPoints())
    printer << " = fractional";
  if (!getScaleType().isF32())
    printer << ", scale = " << getScaleType();
  printer << ">";
}

//===----------------------------------------------------------------------===//
// Verification and helpers
//===----------------------------------------------------------------------===//

LogicalResult FormatAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                                 Scheme scheme, unsigned bits,
                                 DenseF32ArrayAttr table,
                                 Granularity granularity, int64_t axis,
                                 int64_t groupSize, bool symmetric,
                                 Type scaleType, bool fractionalZeroPoints) {
  if (bits < kMinBits || bits > kMaxBits)
    return emitError() << "storage bits must be between " << kMinBits << " and "
                       << kMaxBits << ", got " << bits;
  if (scheme == Scheme::LookupTable) {
    if (!table)
      return emitError() << "a lookup-table format needs its table of values";
    int64_t expected = int64_t(1) << bits;
    if (int64_t(table.size()) != expected)
      return emitError() << "lookup table has " << table.size()
                         << " values but 'lut" << bits << "' needs 2^" << bits
                         << " = " << expected;
    for (float value : table.asArrayRef())
      if (!std::isfinite(value))
        return emitError() << "lookup table values must be finite";
  } else if (table) {
    return emitError() << "only 'lut' formats carry a table of values";
  }
  if (scheme != Scheme::Uniform && !symmetric)
    return emitError() << "'asymmetric' applies to uniform 'int' grids only; "
                          "codebook formats scale each group by its largest "
                          "magnitude";
  if (fractionalZeroPoints && symmetric)
    return emitError() << "fractional zero points need an asymmetric format";
  if (granularity == Granularity::Group && groupSize <= 0)
    return emitError() << "group size must be positive, got " << groupSize;
  if (granularity != Granularity::Group && groupSize != 0)
    return emitError() << "only 'group' formats have a group size";
  if (granularity == Granularity::Tensor && axis != 0)
    return emitError() << "per-tensor formats have no axis";
  if (!isScaleType(scaleType))
    return emitError() << "scale type must be f32, f16 or bf16, got "
                       << scaleType;
  return success();
}

SmallVector<float> FormatAttr::getCodebook() const {
  switch (getScheme()) {
  case Scheme::Uniform:
    return {};
  case Scheme::NormalFloat: {
    std::vector<float> values = numerics::normalFloatCodebook(getBits());
    return SmallVector<float>(values.begin(), values.end());
  }
  case Scheme::LookupTable:
    return SmallVector<float>(getTable().asArrayRef());
  }
  llvm_unreachable("unknown scheme");
}

int64_t FormatAttr::resolveAxis(int64_t rank) const {
  int64_t axis = getAxis();
  return axis < 0 ? axis + rank : axis;
}

LogicalResult
FormatAttr::verifyForRank(function_ref<InFlightDiagnostic()> emitError,
                          int64_t rank) const {
  if (rank < 1)
    return emitError() << "quantized tensors must have rank 1 or more";
  if (getGranularity() == Granularity::Tensor)
    return success();
  int64_t axis = resolveAxis(rank);
  if (axis < 0 || axis >= rank)
    return emitError() << (getGranularity() == Granularity::Channel
                               ? "channel axis "
                               : "group axis ")
                       << getAxis() << " is out of range for a rank-" << rank
                       << " tensor";
  return success();
}

SmallVector<int64_t> FormatAttr::getScaleShape(ArrayRef<int64_t> shape) const {
  int64_t rank = shape.size();
  switch (getGranularity()) {
  case Granularity::Tensor:
    return {};
  case Granularity::Channel:
    return {shape[resolveAxis(rank)]};
  case Granularity::Group: {
    SmallVector<int64_t> result(shape);
    int64_t axis = resolveAxis(rank);
    if (!ShapedType::isDynamic(result[axis]))
      result[axis] = llvm::divideCeil(result[axis], getGroupSize());
    return result;
  }
  }
  llvm_unreachable("unknown granularity");
}

static numerics::ScaleType toNumericsScaleType(Type type) {
  if (type.isF16())
    return numerics::ScaleType::F16;
  if (type.isBF16())
    return numerics::ScaleType::BF16;
  return numerics::ScaleType::F32;
}

numerics::QuantFormat FormatAttr::toNumerics(int64_t rank) const {
  numerics::QuantFormat format;
  format.bits = getBits();
  SmallVector<float> codebook = getCodebook();
  format.codebook.assign(codebook.begin(), codebook.end());
  format.granularity = static_cast<numerics::Granularity>(getGranularity());
  format.axis = getGranularity() == Granularity::Tensor ? 0 : resolveAxis(rank);
  format.groupSize = getGroupSize();
  format.symmetric = getSymmetric();
  format.fractionalZeroPoint = getFractionalZeroPoints();
  format.scaleType = toNumericsScaleType(getScaleType());
  return format;
}

double FormatAttr::getBitsPerElement(ArrayRef<int64_t> shape) const {
  int64_t elements = numerics::numElements(shape);
  if (elements == 0)
    return 0.0;
  int64_t codeBytes =
      numerics::numElements(numerics::packedShape(shape, getBits()));
  int64_t scales = numerics::numElements(getScaleShape(shape));
  int64_t perScaleBits =
      getScaleType().getIntOrFloatBitWidth() + (hasZeroPoints() ? 8 : 0);
  return double(codeBytes * 8 + scales * perScaleBits) / double(elements);
}

std::string FormatAttr::getAliasName() const {
  std::string name;
  llvm::raw_string_ostream os(name);
  os << stringifyScheme(getScheme()) << getBits();
  if (getGranularity() == Granularity::Channel)
    os << "_c" << (getAxis() < 0 ? "m" : "") << std::abs(getAxis());
  if (getGranularity() == Granularity::Group) {
    os << "_g" << getGroupSize();
    if (getAxis() != -1)
      os << "_a" << (getAxis() < 0 ? "m" : "") << std::abs(getAxis());
  }
  if (!getSymmetric())
    os << (getFractionalZeroPoints() ? "_asymf" : "_asym");
  if (!getScaleType().isF32())
    os << "_" << getScaleType();
  return name;
}

static_assert(static_cast<int>(Granularity::Tensor) ==
                      static_cast<int>(numerics::Granularity::Tensor) &&
                  static_cast<int>(Granularity::Channel) ==
                      static_cast<int>(numerics::Granularity::Channel) &&
                  static_cast<int>(Granularity::Group) ==
                      static_cast<int>(numerics::Granularity::Group),
              "dialect and numerics granularities must agree");
