//===- FloatFormats.h - Scale storage float formats ---------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// The floating-point types quantization scales can be stored in, and exact
// bit-level conversions between f32 and the 16-bit formats (IEEE binary16 and
// bfloat16). All narrowing conversions round to nearest, ties to even; the
// implementation is pure integer bit manipulation and does not depend on the
// host's floating-point environment or on compiler half-precision support.
//
//===----------------------------------------------------------------------===//

#ifndef QLR_NUMERICS_FLOATFORMATS_H
#define QLR_NUMERICS_FLOATFORMATS_H

#include <cstdint>

namespace qlr::numerics {

/// The storage type of quantization scales.
enum class ScaleType { F32, F16, BF16 };

/// Converts \p v to IEEE binary16 bits, rounding to nearest, ties to even.
/// Magnitudes that round above 65504 become infinity, results below the
/// smallest normal (2^-14) are rounded to subnormals (or zero), the sign of
/// zero is kept, and NaN maps to a quiet NaN.
uint16_t floatToHalfBits(float v);

/// Converts IEEE binary16 bits to the (exactly representable) float value.
float halfBitsToFloat(uint16_t bits);

/// Converts \p v to bfloat16 bits (the high half of an f32), rounding to
/// nearest, ties to even. Overflow becomes infinity; NaN maps to a quiet NaN.
uint16_t floatToBF16Bits(float v);

/// Converts bfloat16 bits to the (exactly representable) float value.
float bf16BitsToFloat(uint16_t bits);

/// Rounds \p v to the nearest value representable in \p t (ties to even) and
/// returns it as a float. Identity for ScaleType::F32.
float roundToScaleType(float v, ScaleType t);

} // namespace qlr::numerics

#endif // QLR_NUMERICS_FLOATFORMATS_H
