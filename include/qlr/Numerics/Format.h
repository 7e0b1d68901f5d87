//===- Format.h - Quantization format description -----------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// QuantFormat describes how a floating-point tensor is quantized: the code
// width, uniform grid or codebook, and which elements share a scale.
//
// Scale groups. Every element belongs to exactly one scale group; all elements
// of a group share one scale (and, for asymmetric formats, one zero point).
// Scales are stored as a row-major tensor of shape scaleShape(fmt, shape):
//   - Tensor:  one scale for the whole tensor; scale shape [] (rank 0).
//   - Channel: one scale per index along `axis`; scale shape [shape[axis]].
//   - Group:   runs of `groupSize` consecutive elements along `axis` share a
//              scale; scale shape is `shape` with shape[axis] replaced by
//              ceil(shape[axis] / groupSize). The last group along the axis
//              may be partial.
// Element shapes are static: every dimension is a known size >= 0.
//
//===----------------------------------------------------------------------===//

#ifndef QLR_NUMERICS_FORMAT_H
#define QLR_NUMERICS_FORMAT_H

#include "qlr/Numerics/FloatFormats.h"

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/STLFunctionalExtras.h"
#include "llvm/ADT/SmallVector.h"

#include <cstdint>
#include <string>
#include <vector>

namespace qlr::numerics {

/// Which elements share a scale; see the file comment.
enum class Granularity { Tensor, Channel, Group };

/// A quantization format. See verifyFormat for the validity rules.
struct QuantFormat {
  /// Storage bits per code, 2..8.
  unsigned bits = 8;
  /// Empty: uniform (integer grid). Otherwise exactly 2^bits values; code c
  /// stands for codebook[c] * scale. The table need not be sorted.
  std::vector<float> codebook;
  /// Which elements share a scale.
  Granularity granularity = Granularity::Tensor;
  /// Channel: the channel axis (one scale per index along it).
  /// Group: the axis the groups run along.
  int64_t axis = 0;
  /// Group only: number of consecutive elements along `axis` sharing a scale
  /// (> 0). Ignored for the other granularities.
  int64_t groupSize = 0;
  /// False: explicit per-scale zero points (uniform formats only).
  bool symmetric = true;
  /// Asymmetric formats only. False: zero points are integers 0..2^bits - 1.
  /// True: they are fixed-point numbers with 8 - bits fraction bits, stored
  /// in the same byte: z = stored / 2^(8 - bits), stored in
  /// 0 .. (2^bits - 1) * 2^(8 - bits). The grid then sits within 1/2^(9-bits)
  /// of a step of where the range asks for, at no extra storage.
  bool fractionalZeroPoint = false;
  /// The type scales are stored in; computed scales are rounded to it.
  ScaleType scaleType = ScaleType::F32;
};

/// Returns true if \p fmt uses a codebook (lookup table) rather than a
/// uniform integer grid.
bool isCodebook(const QuantFormat &fmt);

/// Fraction bits of the stored zero points: 8 - bits for fractional zero
/// points, 0 otherwise.
unsigned zeroPointFractionBits(const QuantFormat &fmt);

/// The largest stored zero point: (2^bits - 1) * 2^zeroPointFractionBits.
unsigned maxStoredZeroPoint(const QuantFormat &fmt);

/// Returns the number of elements of a tensor of \p shape (1 for rank 0).
int64_t numElements(llvm::ArrayRef<int64_t> shape);

/// Checks the shape-independent validity of \p fmt. Returns "" if valid,
/// otherwise a lower-case diagnostic: bits outside 2..8, a codebook whose size
/// is not 2^bits, an asymmetric codebook format, Group granularity with
/// groupSize <= 0, or a negative axis.
std::string verifyFormat(const QuantFormat &fmt);

/// Checks \p fmt (as verifyFormat) and its applicability to a tensor of
/// \p shape: the rank must be >= 1, every dimension must be >= 0 (static),
/// and for Channel/Group the axis must be < rank. Returns "" if valid,
/// otherwise a lower-case diagnostic.
std::string verifyFormatForShape(const QuantFormat &fmt,
                                 llvm::ArrayRef<int64_t> shape);

/// Returns the shape of the scale (and zero point) tensor for a tensor of
/// \p shape; see the file comment. Requires verifyFormatForShape to pass.
llvm::SmallVector<int64_t> scaleShape(const QuantFormat &fmt,
                                      llvm::ArrayRef<int64_t> shape);

/// Returns the row-major index into the scale tensor of the scale used by the
/// element at row-major index \p linearElementIndex of a tensor of \p shape.
/// Requires verifyFormatForShape to pass and the index to be in range.
int64_t scaleIndexOf(const QuantFormat &fmt, llvm::ArrayRef<int64_t> shape,
                     int64_t linearElementIndex);

/// Calls \p fn(elementIndex, scaleIndex) for every element of a tensor of
/// \p shape in row-major order, with scaleIndex == scaleIndexOf(fmt, shape,
/// elementIndex); a division-free alternative to calling scaleIndexOf per
/// element. Requires verifyFormatForShape to pass.
void forEachScaleIndex(const QuantFormat &fmt, llvm::ArrayRef<int64_t> shape,
                       llvm::function_ref<void(int64_t, int64_t)> fn);

} // namespace qlr::numerics

#endif // QLR_NUMERICS_FORMAT_H
