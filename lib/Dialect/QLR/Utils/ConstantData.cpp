//===- ConstantData.cpp - Read and write constant tensors -------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#include "qlr/Dialect/QLR/Utils/ConstantData.h"
#include "qlr/Numerics/FloatFormats.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/DialectResourceBlobManager.h"
#include "mlir/IR/Matchers.h"

#include <cstring>

using namespace mlir;
using namespace mlir::qlr;

ElementsAttr mlir::qlr::getConstantElements(Value value) {
  ElementsAttr elements;
  if (value && matchPattern(value, m_Constant(&elements)))
    return elements;
  return {};
}

/// The raw little-endian bytes behind `elements` and whether they hold a
/// single splatted element. Fails for elided resources and for element types
/// whose storage is not byte-addressable.
static FailureOr<std::pair<ArrayRef<char>, bool>>
getRawData(ElementsAttr elements, Location loc) {
  if (auto dense = dyn_cast<DenseElementsAttr>(elements))
    return std::make_pair(dense.getRawData(), dense.isSplat());
  if (auto resource = dyn_cast<DenseResourceElementsAttr>(elements)) {
    AsmResourceBlob *blob = resource.getRawHandle().getBlob();
    if (!blob)
      return emitError(loc, "the data of resource '")
             << resource.getRawHandle().getKey()
             << "' is not available (was it elided?)";
    return std::make_pair(blob->getData(), false);
  }
  return emitError(loc, "unsupported constant storage ") << elements;
}

FailureOr<std::vector<float>> mlir::qlr::readFloats(ElementsAttr elements,
                                                    Location loc) {
  Type elementType = elements.getElementType();
  unsigned width = elementType.getIntOrFloatBitWidth();
  if (!elementType.isF32() && !elementType.isF16() && !elementType.isBF16())
    return emitError(loc, "expected f32, f16 or bf16 constant, got ")
           << elementType;
  auto raw = getRawData(elements, loc);
  if (failed(raw))
    return failure();
  auto [data, isSplat] = *raw;
  int64_t count = elements.getNumElements();
  size_t bytes = width / 8;
  if (data.size() != (isSplat ? 1 : count) * bytes)
    return emitError(loc, "constant holds ")
           << data.size() << " bytes, expected " << count * bytes;
  std::vector<float> result(count);
  for (int64_t i = 0; i < count; ++i) {
    const char *p = data.data() + (isSplat ? 0 : i) * bytes;
    if (elementType.isF32()) {
      std::memcpy(&result[i], p, 4);
      continue;
    }
    uint16_t bits;
    std::memcpy(&bits, p, 2);
    result[i] = elementType.isF16() ? ::qlr::numerics::halfBitsToFloat(bits)
                                    : ::qlr::numerics::bf16BitsToFloat(bits);
  }
  return result;
}

FailureOr<std::vector<uint8_t>> mlir::qlr::readBytes(ElementsAttr elements,
                                                     Location loc) {
  if (!elements.getElementType().isInteger(8))
    return emitError(loc, "expected an i8 constant, got ")
           << elements.getElementType();
  auto raw = getRawData(elements, loc);
  if (failed(raw))
    return failure();
  auto [data, isSplat] = *raw;
  int64_t count = elements.getNumElements();
  if (data.size() != size_t(isSplat ? 1 : count))
    return emitError(loc, "constant holds ")
           << data.size() << " bytes, expected " << count;
  if (isSplat)
    return std::vector<uint8_t>(count, static_cast<uint8_t>(data[0]));
  return std::vector<uint8_t>(data.begin(), data.end());
}

FailureOr<std::vector<int64_t>>
mlir::qlr::readIntegers(ElementsAttr elements, bool isSigned, Location loc) {
  if (!elements.getElementType().isInteger())
    return emitError(loc, "expected an integer constant, got ")
           << elements.getElementType();
  if (auto dense = dyn_cast<DenseIntElementsAttr>(elements)) {
    std::vector<int64_t> result;
    result.reserve(dense.getNumElements());
    for (const APInt &value : dense.getValues<APInt>())
      result.push_back(isSigned ? value.getSExtValue() : value.getZExtValue());
    return result;
  }
  if (elements.getElementType().isInteger(8)) {
    auto bytes = readBytes(elements, loc);
    if (failed(bytes))
      return failure();
    std::vector<int64_t> result;
    result.reserve(bytes->size());
    for (uint8_t byte : *bytes)
      result.push_back(isSigned ? int64_t(int8_t(byte)) : int64_t(byte));
    return result;
  }
  return emitError(loc, "unsupported integer constant storage ") << elements;
}

Value mlir::qlr::createFloatConstant(OpBuilder &builder, Location loc,
                                     RankedTensorType type,
                                     ArrayRef<float> values) {
  Type elementType = type.getElementType();
  SmallVector<APFloat> converted;
  converted.reserve(values.size());
  for (float value : values) {
    APFloat apValue(value);
    bool losesInfo;
    apValue.convert(cast<FloatType>(elementType).getFloatSemantics(),
                    APFloat::rmNearestTiesToEven, &losesInfo);
    converted.push_back(apValue);
  }
  auto attr = DenseElementsAttr::get(type, converted);
  return arith::ConstantOp::create(builder, loc, type, attr);
}

Value mlir::qlr::createIntegerConstant(OpBuilder &builder, Location loc,
                                       RankedTensorType type,
                                       ArrayRef<int64_t> values) {
  unsigned width = type.getElementTypeBitWidth();
  SmallVector<APInt> converted;
  converted.reserve(values.size());
  for (int64_t value : values)
    converted.push_back(APInt(width, value, /*isSigned=*/true,
                              /*implicitTrunc=*/true));
  auto attr = DenseElementsAttr::get(type, converted);
  return arith::ConstantOp::create(builder, loc, type, attr);
}
