//===- Format.cpp - Quantization format description -----------------------===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#include "qlr/Numerics/Format.h"

#include "llvm/Support/ErrorHandling.h"

#include <cassert>

using namespace qlr::numerics;

bool qlr::numerics::isCodebook(const QuantFormat &fmt) {
  return !fmt.codebook.empty();
}

unsigned qlr::numerics::zeroPointFractionBits(const QuantFormat &fmt) {
  return fmt.fractionalZeroPoint ? 8 - fmt.bits : 0;
}

unsigned qlr::numerics::maxStoredZeroPoint(const QuantFormat &fmt) {
  return ((1u << fmt.bits) - 1) << zeroPointFractionBits(fmt);
}

int64_t qlr::numerics::numElements(llvm::ArrayRef<int64_t> shape) {
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;
  return n;
}

std::string qlr::numerics::verifyFormat(const QuantFormat &fmt) {
  if (fmt.bits < 2 || fmt.bits > 8)
    return "bits must be in [2, 8], got " + std::to_string(fmt.bits);
  if (isCodebook(fmt) && fmt.codebook.size() != (size_t(1) << fmt.bits))
    return "codebook must have 2^bits = " + std::to_string(1u << fmt.bits) +
           " entries, got " + std::to_string(fmt.codebook.size());
  if (isCodebook(fmt) && !fmt.symmetric)
    return "codebook formats must be symmetric (no zero points)";
  if (fmt.fractionalZeroPoint && fmt.symmetric)
    return "fractional zero points need an asymmetric format";
  if (fmt.granularity == Granularity::Group && fmt.groupSize <= 0)
    return "group size must be positive, got " + std::to_string(fmt.groupSize);
  if (fmt.axis < 0)
    return "axis must be non-negative, got " + std::to_string(fmt.axis);
  return "";
}

std::string qlr::numerics::verifyFormatForShape(const QuantFormat &fmt,
                                                llvm::ArrayRef<int64_t> shape) {
  std::string error = verifyFormat(fmt);
  if (!error.empty())
    return error;
  if (shape.empty())
    return "quantized tensors must have rank >= 1";
  for (int64_t d : shape)
    if (d < 0)
      return "quantized tensors must have static non-negative dimensions";
  if (fmt.granularity != Granularity::Tensor &&
      fmt.axis >= int64_t(shape.size()))
    return "axis " + std::to_string(fmt.axis) + " out of range for rank " +
           std::to_string(shape.size());
  return "";
}

llvm::SmallVector<int64_t>
qlr::numerics::scaleShape(const QuantFormat &fmt,
                          llvm::ArrayRef<int64_t> shape) {
  assert(verifyFormatForShape(fmt, shape).empty() && "invalid format");
  switch (fmt.granularity) {
  case Granularity::Tensor:
    return {};
  case Granularity::Channel:
    return {shape[fmt.axis]};
  case Granularity::Group: {
    llvm::SmallVector<int64_t> result(shape);
    result[fmt.axis] = (shape[fmt.axis] + fmt.groupSize - 1) / fmt.groupSize;
    return result;
  }
  }
  llvm_unreachable("unknown granularity");
}

int64_t qlr::numerics::scaleIndexOf(const QuantFormat &fmt,
                                    llvm::ArrayRef<int64_t> shape,
                                    int64_t linearElementIndex) {
  assert(verifyFormatForShape(fmt, shape).empty() && "invalid format");
  assert(linearElementIndex >= 0 && linearElementIndex < numElements(shape) &&
         "element index out of range");
  if (fmt.granularity == Granularity::Tensor)
    return 0;
  // Split the index into (outer, a, inner) around the axis: the element is
  // at coordinate `a` along the axis.
  int64_t axisSize = shape[fmt.axis];
  int64_t inner = numElements(shape.drop_front(fmt.axis + 1));
  int64_t a = (linearElementIndex / inner) % axisSize;
  if (fmt.granularity == Granularity::Channel)
    return a;
  int64_t outer = linearElementIndex / (inner * axisSize);
  int64_t numGroups = (axisSize + fmt.groupSize - 1) / fmt.groupSize;
  return (outer * numGroups + a / fmt.groupSize) * inner +
         linearElementIndex % inner;
}

void qlr::numerics::forEachScaleIndex(
    const QuantFormat &fmt, llvm::ArrayRef<int64_t> shape,
    llvm::function_ref<void(int64_t, int64_t)> fn) {
  assert(verifyFormatForShape(fmt, shape).empty() && "invalid format");
  if (fmt.granularity == Granularity::Tensor) {
    for (int64_t i = 0, e = numElements(shape); i < e; ++i)
      fn(i, 0);
    return;
  }
  // Walk (outer, a, inner) around the axis as in scaleIndexOf. Channel is
  // the special case of one scale per axis index, shared by all outer and
  // inner positions.
  bool channel = fmt.granularity == Granularity::Channel;
  int64_t axisSize = shape[fmt.axis];
  int64_t outerSize = numElements(shape.take_front(fmt.axis));
  int64_t innerSize = numElements(shape.drop_front(fmt.axis + 1));
  int64_t groupSize = channel ? 1 : fmt.groupSize;
  int64_t numGroups = (axisSize + groupSize - 1) / groupSize;
  int64_t i = 0;
  for (int64_t outer = 0; outer < outerSize; ++outer) {
    for (int64_t a = 0; a < axisSize; ++a) {
      if (channel) {
        for (int64_t inner = 0; inner < innerSize; ++inner)
          fn(i++, a);
        continue;
      }
      int64_t base = (outer * numGroups + a / groupSize) * innerSize;
      for (int64_t inner = 0; inner < innerSize; ++inner)
        fn(i++, base + inner);
    }
  }
}
