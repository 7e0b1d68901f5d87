//===- FloatFormats.cpp - Scale storage float formats ---------------------===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#include "qlr/Numerics/FloatFormats.h"

#include "llvm/Support/ErrorHandling.h"

#include <cstring>

using namespace qlr::numerics;

static uint32_t floatBits(float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof(bits));
  return bits;
}

static float bitsFloat(uint32_t bits) {
  float v;
  std::memcpy(&v, &bits, sizeof(v));
  return v;
}

/// Shifts \p value right by \p shift (1..31) bits, rounding to nearest with
/// ties to even.
static uint32_t shiftRightRoundEven(uint32_t value, unsigned shift) {
  uint32_t result = value >> shift;
  uint32_t rest = value & ((1u << shift) - 1);
  uint32_t half = 1u << (shift - 1);
  if (rest > half || (rest == half && (result & 1)))
    ++result;
  return result;
}

uint16_t qlr::numerics::floatToHalfBits(float v) {
  uint32_t bits = floatBits(v);
  uint16_t sign = (bits >> 16) & 0x8000;
  uint32_t magnitude = bits & 0x7fffffff;

  if (magnitude > 0x7f800000) // NaN: keep the top payload bits, force quiet.
    return sign | 0x7e00 | ((magnitude >> 13) & 0x3ff);
  // 65520 = 65504 + half an ulp is a tie to the even neighbour, infinity.
  if (magnitude >= 0x477ff000)
    return sign | 0x7c00;
  if (magnitude >= 0x38800000) {
    // Normal result: rebias the exponent (127 -> 15) and round the low 13
    // mantissa bits away. A mantissa carry correctly bumps the exponent.
    return sign | shiftRightRoundEven(magnitude - (112u << 23), 13);
  }
  // Subnormal result m * 2^-24. Anything up to 2^-25 (a tie) rounds to zero;
  // above that the input is a normal float, (1.mantissa) * 2^(E-127), and
  // m = significand >> (126 - E) with 14 <= 126 - E <= 24.
  if (magnitude <= 0x33000000)
    return sign;
  uint32_t exponent = magnitude >> 23;
  uint32_t significand = (magnitude & 0x7fffff) | 0x800000;
  return sign | shiftRightRoundEven(significand, 126 - exponent);
}

float qlr::numerics::halfBitsToFloat(uint16_t bits) {
  uint32_t sign = uint32_t(bits & 0x8000) << 16;
  uint32_t exponent = (bits >> 10) & 0x1f;
  uint32_t mantissa = bits & 0x3ff;

  if (exponent == 0x1f) // Infinity or NaN.
    return bitsFloat(sign | 0x7f800000 | (mantissa << 13));
  if (exponent != 0)
    return bitsFloat(sign | ((exponent + 112) << 23) | (mantissa << 13));
  if (mantissa == 0)
    return bitsFloat(sign);
  // Subnormal: normalize so the leading one becomes the implicit bit.
  int32_t floatExponent = 113; // Biased f32 exponent of 2^-14.
  while (!(mantissa & 0x400)) {
    mantissa <<= 1;
    --floatExponent;
  }
  return bitsFloat(sign | (uint32_t(floatExponent) << 23) |
                   ((mantissa & 0x3ff) << 13));
}

uint16_t qlr::numerics::floatToBF16Bits(float v) {
  uint32_t bits = floatBits(v);
  if ((bits & 0x7fffffff) > 0x7f800000) // NaN: force quiet.
    return (bits >> 16) | 0x0040;
  // Round to nearest even on the low 16 bits; carries propagate into the
  // exponent, so overflow correctly produces infinity.
  return (bits + 0x7fff + ((bits >> 16) & 1)) >> 16;
}

float qlr::numerics::bf16BitsToFloat(uint16_t bits) {
  return bitsFloat(uint32_t(bits) << 16);
}

float qlr::numerics::roundToScaleType(float v, ScaleType t) {
  switch (t) {
  case ScaleType::F32:
    return v;
  case ScaleType::F16:
    return halfBitsToFloat(floatToHalfBits(v));
  case ScaleType::BF16:
    return bf16BitsToFloat(floatToBF16Bits(v));
  }
  llvm_unreachable("unknown scale type");
}
