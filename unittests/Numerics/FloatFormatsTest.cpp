//===- FloatFormatsTest.cpp - Tests for f16/bf16 conversions --------------===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#include "qlr/Numerics/FloatFormats.h"

#include "gtest/gtest.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

using namespace qlr::numerics;

namespace {

uint32_t bitsOf(float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof(bits));
  return bits;
}

float floatOf(uint32_t bits) {
  float v;
  std::memcpy(&v, &bits, sizeof(v));
  return v;
}

/// Independent reference: rounds |v| to a multiple of the target format's
/// ulp in double (exact, since the scaling is by powers of two), ties to
/// even via nearbyint. `mantissaBits` excludes the implicit bit.
float referenceRound(float v, int mantissaBits, int minNormalExp,
                     double maxFinite) {
  if (std::isnan(v) || std::isinf(v) || v == 0)
    return v;
  int exp;
  std::frexp(double(v), &exp); // |v| = m * 2^exp, m in [0.5, 1).
  int ulpExp = std::max(exp - 1, minNormalExp) - mantissaBits;
  double q = std::ldexp(std::nearbyint(std::ldexp(double(v), -ulpExp)), ulpExp);
  if (std::fabs(q) > maxFinite)
    q = std::copysign(std::numeric_limits<double>::infinity(), q);
  return float(q);
}

float referenceHalf(float v) { return referenceRound(v, 10, -14, 65504.0); }

float referenceBF16(float v) {
  return referenceRound(v, 7, -126, std::ldexp(255.0, 120));
}

TEST(FloatFormatsTest, KnownHalfValues) {
  EXPECT_EQ(floatToHalfBits(1.0f), 0x3c00);
  EXPECT_EQ(floatToHalfBits(-2.0f), 0xc000);
  EXPECT_EQ(floatToHalfBits(65504.0f), 0x7bff);
  EXPECT_EQ(floatToHalfBits(6.1035156e-05f), 0x0400);
  EXPECT_EQ(floatToHalfBits(5.9604645e-08f), 0x0001);
  EXPECT_EQ(floatToHalfBits(0.0f), 0x0000);
  EXPECT_EQ(floatToHalfBits(-0.0f), 0x8000);
  EXPECT_EQ(floatToHalfBits(std::numeric_limits<float>::infinity()), 0x7c00);
  EXPECT_EQ(floatToHalfBits(-std::numeric_limits<float>::infinity()), 0xfc00);

  EXPECT_EQ(halfBitsToFloat(0x3c00), 1.0f);
  EXPECT_EQ(halfBitsToFloat(0x7bff), 65504.0f);
  EXPECT_EQ(halfBitsToFloat(0x0400), std::ldexp(1.0f, -14));
  EXPECT_EQ(halfBitsToFloat(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(halfBitsToFloat(0x03ff), std::ldexp(1023.0f, -24));
  EXPECT_EQ(halfBitsToFloat(0x3555), 0.333251953125f);
  EXPECT_EQ(halfBitsToFloat(0xfc00), -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::signbit(halfBitsToFloat(0x8000)));
}

TEST(FloatFormatsTest, HalfRoundingTiesAndOverflow) {
  // 1 + 2^-11 is halfway between 0x3c00 (even) and 0x3c01.
  EXPECT_EQ(floatToHalfBits(1.0f + std::ldexp(1.0f, -11)), 0x3c00);
  // 1 + 3 * 2^-11 is halfway between 0x3c01 and 0x3c02 (even).
  EXPECT_EQ(floatToHalfBits(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);
  // Just above the tie rounds up.
  EXPECT_EQ(
      floatToHalfBits(1.0f + std::ldexp(1.0f, -11) + std::ldexp(1.0f, -20)),
      0x3c01);
  // 65520 is halfway between 65504 (odd mantissa) and 65536 = infinity.
  EXPECT_EQ(floatToHalfBits(65520.0f), 0x7c00);
  EXPECT_EQ(floatToHalfBits(std::nextafter(65520.0f, 0.0f)), 0x7bff);
  EXPECT_EQ(floatToHalfBits(-65520.0f), 0xfc00);
  EXPECT_EQ(floatToHalfBits(1e6f), 0x7c00);
  EXPECT_EQ(floatToHalfBits(std::numeric_limits<float>::max()), 0x7c00);
  // Subnormal ties: 2^-25 is halfway between 0 (even) and 2^-24.
  EXPECT_EQ(floatToHalfBits(std::ldexp(1.0f, -25)), 0x0000);
  EXPECT_EQ(floatToHalfBits(std::nextafter(std::ldexp(1.0f, -25), 1.0f)),
            0x0001);
  EXPECT_EQ(floatToHalfBits(-std::ldexp(1.0f, -26)), 0x8000);
  // 1.5 * 2^-24 is halfway between 0x0001 and 0x0002 (even).
  EXPECT_EQ(floatToHalfBits(3 * std::ldexp(1.0f, -25)), 0x0002);
  // 1023.5 * 2^-24 is halfway between 0x03ff and 0x0400 (the smallest normal).
  EXPECT_EQ(floatToHalfBits(std::ldexp(1023.5f, -24)), 0x0400);
  // Float subnormals flush to a signed zero.
  EXPECT_EQ(floatToHalfBits(std::numeric_limits<float>::denorm_min()), 0);
}

TEST(FloatFormatsTest, KnownBF16Values) {
  EXPECT_EQ(floatToBF16Bits(1.0f), 0x3f80);
  // 1/3 = 0x3eaaaaab; the dropped half 0xaaab is above the tie.
  EXPECT_EQ(floatToBF16Bits(1.0f / 3.0f), 0x3eab);
  EXPECT_EQ(bf16BitsToFloat(0x3eab), 0.333984375f);
  // Ties to even: 0x3f808000 -> 0x3f80, 0x3f818000 -> 0x3f82.
  EXPECT_EQ(floatToBF16Bits(floatOf(0x3f808000)), 0x3f80);
  EXPECT_EQ(floatToBF16Bits(floatOf(0x3f818000)), 0x3f82);
  EXPECT_EQ(floatToBF16Bits(floatOf(0x3f808001)), 0x3f81);
  // Overflow: FLT_MAX is above the tie between 0x7f7f and infinity.
  EXPECT_EQ(floatToBF16Bits(std::numeric_limits<float>::max()), 0x7f80);
  EXPECT_EQ(floatToBF16Bits(floatOf(0x7f7f7fff)), 0x7f7f);
  EXPECT_EQ(floatToBF16Bits(-std::numeric_limits<float>::infinity()), 0xff80);
  EXPECT_EQ(floatToBF16Bits(-0.0f), 0x8000);
  EXPECT_EQ(bf16BitsToFloat(0x0001), std::ldexp(1.0f, -133));
}

TEST(FloatFormatsTest, NaNStaysNaN) {
  float nan = std::numeric_limits<float>::quiet_NaN();
  float signalingNaN = floatOf(0x7f800001); // Payload only in low bits.
  for (float v : {nan, -nan, signalingNaN}) {
    uint16_t half = floatToHalfBits(v);
    EXPECT_EQ(half & 0x7c00, 0x7c00);
    EXPECT_NE(half & 0x03ff, 0);
    uint16_t bf16 = floatToBF16Bits(v);
    EXPECT_EQ(bf16 & 0x7f80, 0x7f80);
    EXPECT_NE(bf16 & 0x007f, 0);
    EXPECT_TRUE(std::isnan(roundToScaleType(v, ScaleType::F16)));
    EXPECT_TRUE(std::isnan(roundToScaleType(v, ScaleType::BF16)));
    EXPECT_TRUE(std::isnan(roundToScaleType(v, ScaleType::F32)));
  }
  EXPECT_TRUE(std::isnan(halfBitsToFloat(0x7e00)));
  EXPECT_TRUE(std::isnan(halfBitsToFloat(0xfc01)));
  EXPECT_TRUE(std::isnan(bf16BitsToFloat(0x7fc0)));
}

TEST(FloatFormatsTest, RoundToScaleType) {
  EXPECT_EQ(roundToScaleType(0.1f, ScaleType::F32), 0.1f);
  EXPECT_EQ(roundToScaleType(0.1f, ScaleType::F16), 0.0999755859375f);
  EXPECT_EQ(roundToScaleType(0.1f, ScaleType::BF16), 0.10009765625f);
  EXPECT_EQ(roundToScaleType(1e5f, ScaleType::F16),
            std::numeric_limits<float>::infinity());
  EXPECT_EQ(roundToScaleType(1e5f, ScaleType::BF16), 99840.0f);
}

TEST(FloatFormatsTest, ExhaustiveHalfRoundTrip) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    float v = halfBitsToFloat(uint16_t(h));
    if (std::isnan(v))
      continue;
    ASSERT_EQ(floatToHalfBits(v), h) << "half bits " << h;
    ASSERT_EQ(roundToScaleType(v, ScaleType::F16), v) << "half bits " << h;
    ASSERT_EQ(referenceHalf(v), v) << "half bits " << h;
  }
}

TEST(FloatFormatsTest, ExhaustiveBF16RoundTrip) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    float v = bf16BitsToFloat(uint16_t(h));
    ASSERT_EQ(bitsOf(v), h << 16);
    if (std::isnan(v))
      continue;
    ASSERT_EQ(floatToBF16Bits(v), h) << "bf16 bits " << h;
    ASSERT_EQ(roundToScaleType(v, ScaleType::BF16), v) << "bf16 bits " << h;
  }
}

/// Checks every midpoint between adjacent finite values of a 16-bit format
/// (and the floats just beside it) rounds to the correct neighbour.
template <typename ToBits, typename FromBits>
void checkAllMidpoints(ToBits toBits, FromBits fromBits, uint16_t maxFinite,
                       float overflowTie) {
  for (uint32_t sign : {0u, 0x8000u}) {
    for (uint32_t h = 0; h <= maxFinite; ++h) {
      uint16_t lo = uint16_t(sign | h), hi = uint16_t(sign | (h + 1));
      float a = fromBits(lo);
      float mid = h == maxFinite ? (sign ? -overflowTie : overflowTie)
                                 : a + (fromBits(hi) - a) / 2;
      uint16_t even = (h % 2 == 0) ? lo : hi;
      ASSERT_EQ(toBits(mid), even) << "between bits " << lo << " and " << hi;
      ASSERT_EQ(toBits(std::nextafter(mid, 0.0f)), lo);
      ASSERT_EQ(toBits(std::nextafter(mid, 2 * mid)), hi);
    }
  }
}

TEST(FloatFormatsTest, ExhaustiveHalfMidpoints) {
  checkAllMidpoints(floatToHalfBits, halfBitsToFloat, 0x7bff, 65520.0f);
}

TEST(FloatFormatsTest, ExhaustiveBF16Midpoints) {
  checkAllMidpoints(floatToBF16Bits, bf16BitsToFloat, 0x7f7f,
                    floatOf(0x7f7f8000));
}

TEST(FloatFormatsTest, MatchesReferenceOnSampledFloats) {
  std::mt19937 rng(42);
  auto check = [](uint32_t bits) {
    float v = floatOf(bits);
    if (std::isnan(v))
      return;
    ASSERT_EQ(bitsOf(roundToScaleType(v, ScaleType::F16)),
              bitsOf(referenceHalf(v)))
        << "float bits " << bits;
    ASSERT_EQ(bitsOf(roundToScaleType(v, ScaleType::BF16)),
              bitsOf(referenceBF16(v)))
        << "float bits " << bits;
  };
  // A stride through all float bit patterns plus random patterns.
  for (uint64_t bits = 0; bits < (uint64_t(1) << 32); bits += 4099)
    check(uint32_t(bits));
  for (int i = 0; i < 1000000; ++i)
    check(rng());
}

} // namespace
