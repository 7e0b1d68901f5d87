//===- Quantize.h - Round-to-nearest reference quantizer ----*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// The round-to-nearest (RTN) reference quantizer: the closed form every other
// quantizer, lowering and runtime kernel is tested against.
//
// For each scale group G (the elements sharing one scale, see Format.h), with
// b = bits, qmax = 2^b - 1 and r(.) = round half to even (std::nearbyint in
// the default rounding mode):
//   - Uniform symmetric: the zero point is implicit, z = 2^(b-1).
//       a = max |x| over G;  s = roundToScaleType(2a / qmax)
//       c = clamp(r(x / s) + z, 0, qmax);  x^ = s * (c - z)
//     (the GPTQ convention: all 2^b levels are used; the grid is
//     [-2^(b-1), 2^(b-1) - 1] * s, so x = +a itself may be clipped).
//   - Uniform asymmetric: z is stored per scale (uint8).
//       lo = min(0, min x), hi = max(0, max x) over G
//       s = roundToScaleType((hi - lo) / qmax);  z = clamp(r(-lo / s), 0, qmax)
//       c = clamp(r(x / s) + z, 0, qmax);  x^ = s * (c - z)
//   - Uniform asymmetric with fractional zero points (F = 8 - b fraction
//     bits): the byte stored is zs, and z = zs / 2^F.
//       lo, hi, s as above;  zs = clamp(r(-lo / s * 2^F), 0, qmax * 2^F)
//       c = clamp(r(x / s + z), 0, qmax);  x^ = s * (c - z)
//   - Codebook cb (symmetric only):
//       s = roundToScaleType(max |x| over G)
//       c = nearestCodebookIndex(cb, x / s);  x^ = s * cb[c]
//   - If s == 0 (an all-zero group, or a scale that underflows the scale
//     type): c = r(z) for uniform formats (RTN picks z = 0 for asymmetric
//     ones), c = nearestCodebookIndex(cb, 0) for codebooks; x^ = 0. No division
//     by zero happens.
//
// Arithmetic is IEEE binary32 throughout, evaluated exactly as written:
// 2a / qmax is (2 * a) / qmax, x / s is a true division (not a multiplication
// by 1 / s), and x^ is one multiplication of s by the float (c - z) or cb[c].
// Inputs must be finite, and every scale must be finite in its scale type
// (e.g. max |x| <= 65504 * qmax / 2 for symmetric f16 scales); both are
// asserted preconditions. For uniform formats |x - x^| <= s / 2 whenever x
// lies inside the grid range [-z * s, (qmax - z) * s].
//
//===----------------------------------------------------------------------===//

#ifndef QLR_NUMERICS_QUANTIZE_H
#define QLR_NUMERICS_QUANTIZE_H

#include "qlr/Numerics/Format.h"

#include "llvm/ADT/ArrayRef.h"

#include <cstdint>
#include <vector>

namespace qlr::numerics {

/// A quantized tensor: codes plus per-group scales and zero points.
struct QuantizedData {
  /// Unpacked codes, one per element, row-major.
  std::vector<uint8_t> codes;
  /// Row-major tensor of scaleShape(fmt, shape), already rounded to the
  /// format's scale type.
  std::vector<float> scales;
  /// Asymmetric formats only: one zero point per scale, same layout as
  /// `scales`. Empty for symmetric and codebook formats.
  std::vector<uint8_t> zeroPoints;
};

/// Returns the code of the single value \p x for scale \p scale (finite,
/// >= 0); the per-element formula of the file comment. \p zeroPoint (the
/// stored byte) is used only by asymmetric formats.
uint8_t quantizeOne(float x, float scale, uint8_t zeroPoint,
                    const QuantFormat &fmt);

/// Returns the dequantized value of \p code for scale \p scale: s * (c - z)
/// for uniform formats (z = 2^(bits-1) when symmetric, \p zeroPoint
/// otherwise, divided by 2^(8-bits) when fractional), s * codebook[c] for
/// codebook formats.
float dequantizeOne(uint8_t code, float scale, uint8_t zeroPoint,
                    const QuantFormat &fmt);

/// Quantizes the row-major tensor \p x of \p shape with round-to-nearest,
/// computing scales (and zero points) from the data as in the file comment.
/// Requires verifyFormatForShape(fmt, shape) to pass.
QuantizedData quantizeRTN(llvm::ArrayRef<float> x,
                          llvm::ArrayRef<int64_t> shape,
                          const QuantFormat &fmt);

/// Round to nearest with a searched clipping range. For each scale group,
/// tries the ranges of quantizeRTN shrunk by the factors
/// p = 1 - i * (1 - minShrink) / steps, i = 0..steps (symmetric and codebook
/// formats: max |x| becomes p * max |x|; asymmetric: lo, hi become p * lo,
/// p * hi), computes scale and zero point from each range exactly as
/// quantizeRTN does, and keeps the one with the smallest sum of squared
/// errors sum (x - x^)^2 over the group (ties: the larger p). p = 1 is always
/// tried, so no group's error exceeds quantizeRTN's. Requires steps >= 0 and
/// 0 < minShrink <= 1. Codes follow the same formula as quantizeRTN.
QuantizedData quantizeRTNClipSearch(llvm::ArrayRef<float> x,
                                    llvm::ArrayRef<int64_t> shape,
                                    const QuantFormat &fmt, int steps = 20,
                                    float minShrink = 0.6f);

/// Quantizes \p x with given (static) scales and zero points, laid out as
/// row-major tensors of scaleShape(fmt, shape). Scales must be finite and
/// >= 0 and are rounded to the scale type first; \p zeroPoints must be
/// empty for symmetric and codebook formats and hold values <=
/// maxStoredZeroPoint(fmt) otherwise. Codes follow the same formula as
/// quantizeRTN.
QuantizedData quantizeWithScales(llvm::ArrayRef<float> x,
                                 llvm::ArrayRef<int64_t> shape,
                                 const QuantFormat &fmt,
                                 llvm::ArrayRef<float> scales,
                                 llvm::ArrayRef<uint8_t> zeroPoints);

/// Returns the row-major dequantized tensor of \p q, applying dequantizeOne
/// to every element with its group's scale and zero point.
std::vector<float> dequantize(const QuantizedData &q,
                              llvm::ArrayRef<int64_t> shape,
                              const QuantFormat &fmt);

} // namespace qlr::numerics

#endif // QLR_NUMERICS_QUANTIZE_H
