//===- QuantizeTest.cpp - Tests for the RTN reference quantizer -----------===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#include "qlr/Numerics/Quantize.h"
#include "qlr/Numerics/Codebook.h"

#include "gtest/gtest.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <random>
#include <tuple>

using namespace qlr::numerics;

namespace {

using Bytes = std::vector<uint8_t>;
using Floats = std::vector<float>;

//===----------------------------------------------------------------------===//
// Independent reference for 2-D matrices
//===----------------------------------------------------------------------===//

enum class Mode { Symmetric, Asymmetric, Codebook };

/// Rounds \p v to the scale type by rounding to a multiple of the target
/// ulp in double (exact power-of-two scaling), ties to even via nearbyint.
float referenceScaleRound(float v, ScaleType t) {
  if (t == ScaleType::F32 || v == 0)
    return v;
  int mantissaBits = t == ScaleType::F16 ? 10 : 7;
  int minNormalExp = t == ScaleType::F16 ? -14 : -126;
  double maxFinite = t == ScaleType::F16 ? 65504.0 : std::ldexp(255.0, 120);
  int exp;
  std::frexp(double(v), &exp);
  int ulpExp = std::max(exp - 1, minNormalExp) - mantissaBits;
  double q = std::ldexp(std::nearbyint(std::ldexp(double(v), -ulpExp)), ulpExp);
  return q > maxFinite ? INFINITY : float(q);
}

/// How a [kRows, kCols] matrix is split into scale groups.
struct Grouping {
  const char *name;
  Granularity granularity;
  int64_t axis;
  int64_t groupSize;
};

constexpr int64_t kRows = 4, kCols = 6;

const Grouping kGroupings[] = {
    {"tensor", Granularity::Tensor, 0, 0},
    {"channel0", Granularity::Channel, 0, 0},
    {"channel1", Granularity::Channel, 1, 0},
    {"group1x2", Granularity::Group, 1, 2},
    {"group1x3", Granularity::Group, 1, 3},
    {"group1x4", Granularity::Group, 1, 4}, // 6 = 4 + 2: partial last group.
    {"group0x3", Granularity::Group, 0, 3}, // 4 = 3 + 1: partial last group.
};

int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

int64_t referenceNumGroups(const Grouping &g) {
  switch (g.granularity) {
  case Granularity::Tensor:
    return 1;
  case Granularity::Channel:
    return g.axis == 0 ? kRows : kCols;
  case Granularity::Group:
    return g.axis == 0 ? ceilDiv(kRows, g.groupSize) * kCols
                       : kRows * ceilDiv(kCols, g.groupSize);
  }
  return 0;
}

int64_t referenceGroupOf(const Grouping &g, int64_t r, int64_t c) {
  switch (g.granularity) {
  case Granularity::Tensor:
    return 0;
  case Granularity::Channel:
    return g.axis == 0 ? r : c;
  case Granularity::Group:
    return g.axis == 0 ? (r / g.groupSize) * kCols + c
                       : r * ceilDiv(kCols, g.groupSize) + c / g.groupSize;
  }
  return 0;
}

int referenceNearest(const Floats &codebook, float v) {
  int best = 0;
  for (int i = 1; i < int(codebook.size()); ++i)
    if (std::fabs(v - codebook[i]) < std::fabs(v - codebook[best]))
      best = i;
  return best;
}

struct Reference {
  Bytes codes;
  Floats scales;
  Bytes zeroPoints;
  Floats values;
};

/// Straightforward RTN: gather each group's members, compute its scale (and
/// zero point) from the closed form, then encode and decode each member.
Reference referenceQuantize(const Floats &x, const Grouping &grouping,
                            Mode mode, unsigned bits, ScaleType scaleType,
                            const Floats &codebook) {
  const int qmax = (1 << bits) - 1;
  int64_t numGroups = referenceNumGroups(grouping);
  std::vector<std::vector<int64_t>> members(numGroups);
  for (int64_t r = 0; r < kRows; ++r)
    for (int64_t c = 0; c < kCols; ++c)
      members[referenceGroupOf(grouping, r, c)].push_back(r * kCols + c);

  Reference ref;
  ref.codes.resize(x.size());
  ref.values.resize(x.size());
  for (const std::vector<int64_t> &group : members) {
    float absMax = 0, lo = 0, hi = 0;
    for (int64_t i : group) {
      absMax = std::max(absMax, std::fabs(x[i]));
      lo = std::min(lo, x[i]);
      hi = std::max(hi, x[i]);
    }
    float s;
    int z = 0;
    switch (mode) {
    case Mode::Symmetric:
      s = referenceScaleRound(2 * absMax / float(qmax), scaleType);
      z = 1 << (bits - 1);
      break;
    case Mode::Asymmetric:
      s = referenceScaleRound((hi - lo) / float(qmax), scaleType);
      z = s == 0 ? 0 : std::clamp(int(std::nearbyint(-lo / s)), 0, qmax);
      ref.zeroPoints.push_back(uint8_t(z));
      break;
    case Mode::Codebook:
      s = referenceScaleRound(absMax, scaleType);
      break;
    }
    ref.scales.push_back(s);
    for (int64_t i : group) {
      int code;
      if (mode == Mode::Codebook) {
        code = referenceNearest(codebook, s == 0 ? 0.0f : x[i] / s);
        ref.values[i] = s * codebook[code];
      } else {
        code =
            s == 0 ? z : std::clamp(int(std::nearbyint(x[i] / s)) + z, 0, qmax);
        ref.values[i] = s * float(code - z);
      }
      ref.codes[i] = uint8_t(code);
    }
  }
  return ref;
}

/// Named input matrices covering signs, zero groups, ties on a 1/16 grid and
/// magnitudes whose f16 scales are subnormal or underflow to zero.
std::vector<std::pair<std::string, Floats>> testMatrices() {
  std::mt19937 rng(7);
  auto uniform = [&](float lo, float hi) {
    Floats m(kRows * kCols);
    std::uniform_real_distribution<float> dist(lo, hi);
    for (float &v : m)
      v = dist(rng);
    return m;
  };
  std::vector<std::pair<std::string, Floats>> result;
  result.push_back({"random", uniform(-2, 2)});
  result.push_back({"positive", uniform(0.5f, 3)});
  result.push_back({"negative", uniform(-3, -0.25f)});
  result.push_back({"large", uniform(-3000, 3000)});

  Floats grid(kRows * kCols);
  std::uniform_int_distribution<int> steps(-20, 20);
  for (int64_t r = 0; r < kRows; ++r)
    for (int64_t c = 0; c < kCols; ++c)
      grid[r * kCols + c] = (r == 1 || c == 2) ? 0.0f : steps(rng) * 0.0625f;
  result.push_back({"grid with zero row and column", grid});

  Floats tiny = uniform(-1e-6f, 1e-6f);
  for (int64_t c = 0; c < kCols; ++c)
    tiny[2 * kCols + c] *= 1e-9f;
  result.push_back({"tiny", tiny});
  return result;
}

using MatrixParam = std::tuple<unsigned, int, Mode, ScaleType>;

class QuantizeMatrixTest : public ::testing::TestWithParam<MatrixParam> {};

TEST_P(QuantizeMatrixTest, MatchesReference) {
  auto [bits, groupingIndex, mode, scaleType] = GetParam();
  const Grouping &grouping = kGroupings[groupingIndex];
  QuantFormat fmt;
  fmt.bits = bits;
  fmt.granularity = grouping.granularity;
  fmt.axis = grouping.axis;
  fmt.groupSize = grouping.groupSize;
  fmt.symmetric = mode != Mode::Asymmetric;
  fmt.scaleType = scaleType;
  if (mode == Mode::Codebook)
    fmt.codebook = normalFloatCodebook(bits);
  const int64_t shape[] = {kRows, kCols};
  ASSERT_EQ(verifyFormatForShape(fmt, shape), "");

  // The reference repeats the library's float operations (max/min, single
  // correctly rounded divisions and products, no sums): exact equality holds
  // on every instruction set.
  for (const auto &[name, x] : testMatrices()) {
    SCOPED_TRACE(name);
    Reference ref =
        referenceQuantize(x, grouping, mode, bits, scaleType, fmt.codebook);
    QuantizedData q = quantizeRTN(x, shape, fmt);
    EXPECT_EQ(q.scales, ref.scales);
    EXPECT_EQ(q.zeroPoints, ref.zeroPoints);
    EXPECT_EQ(q.codes, ref.codes);
    EXPECT_EQ(dequantize(q, shape, fmt), ref.values);
    // Static scales reproduce the same codes.
    EXPECT_EQ(quantizeWithScales(x, shape, fmt, q.scales, q.zeroPoints).codes,
              ref.codes);
  }
}

std::string matrixParamName(const ::testing::TestParamInfo<MatrixParam> &info) {
  auto [bits, groupingIndex, mode, scaleType] = info.param;
  const char *modes[] = {"sym", "asym", "codebook"};
  const char *types[] = {"f32", "f16", "bf16"};
  return "b" + std::to_string(bits) + "_" + kGroupings[groupingIndex].name +
         "_" + modes[int(mode)] + "_" + types[int(scaleType)];
}

INSTANTIATE_TEST_SUITE_P(
    AllFormats, QuantizeMatrixTest,
    ::testing::Combine(
        ::testing::Range(2u, 9u),
        ::testing::Range(0, int(std::size(kGroupings))),
        ::testing::Values(Mode::Symmetric, Mode::Asymmetric, Mode::Codebook),
        ::testing::Values(ScaleType::F32, ScaleType::F16, ScaleType::BF16)),
    matrixParamName);

//===----------------------------------------------------------------------===//
// Hand-computed cases
//===----------------------------------------------------------------------===//

QuantFormat uniformFormat(unsigned bits, bool symmetric = true,
                          ScaleType scaleType = ScaleType::F32) {
  QuantFormat fmt;
  fmt.bits = bits;
  fmt.symmetric = symmetric;
  fmt.scaleType = scaleType;
  return fmt;
}

TEST(QuantizeTest, FourBitSymmetricPerTensor) {
  // a = 1, s = 2/15 (f32: 0.13333334, slightly above 2/15), z = 8. In f32
  // 1/s = 7.4999995, so +-1 round to +-7 (no tie): codes 15 and 1.
  // 0.5/s = 3.7499998 -> 4 -> 12; 0.25/s = 1.8749999 -> 2 -> 10.
  Floats x = {1.0f, -1.0f, 0.5f, 0.25f};
  QuantFormat fmt = uniformFormat(4);
  QuantizedData q = quantizeRTN(x, {4}, fmt);
  ASSERT_EQ(q.scales.size(), 1u);
  EXPECT_EQ(q.scales[0], 2.0f / 15.0f);
  EXPECT_TRUE(q.zeroPoints.empty());
  EXPECT_EQ(q.codes, (Bytes{15, 1, 12, 10}));
  // x^ = s * (c - 8) = {7s, -7s, 4s, 2s}: not equal to x.
  float s = 2.0f / 15.0f;
  Floats expected = {7 * s, -7 * s, 4 * s, 2 * s};
  Floats xhat = dequantize(q, {4}, fmt);
  EXPECT_EQ(xhat, expected);
  EXPECT_NE(xhat, x);
  // 7 * s is one float product: within 4 ulps of the printed decimal.
  EXPECT_FLOAT_EQ(xhat[0], 0.93333334f);
}

TEST(QuantizeTest, ThreeBitPerChannelTiesClippingAndZeroRow) {
  // Rows are channels (axis 0). Row 0: a = 3.5, s = 7/7 = 1, z = 4;
  // 3.5 -> r(3.5) = 4 (tie to even) -> 8, clamped to 7 -> x^ = 3;
  // -2.5 -> r(-2.5) = -2 (tie to even) -> 2 -> x^ = -2.
  // Row 1 is all zero: s = 0, codes = z = 4, x^ = 0.
  Floats x = {3.5f, -2.5f, 0.0f, 0.0f};
  QuantFormat fmt = uniformFormat(3);
  fmt.granularity = Granularity::Channel;
  QuantizedData q = quantizeRTN(x, {2, 2}, fmt);
  EXPECT_EQ(q.scales, (Floats{1.0f, 0.0f}));
  EXPECT_EQ(q.codes, (Bytes{7, 2, 4, 4}));
  EXPECT_EQ(dequantize(q, {2, 2}, fmt), (Floats{3.0f, -2.0f, 0.0f, 0.0f}));
}

TEST(QuantizeTest, TwoBitAsymmetric) {
  // lo = -1, hi = 2, s = 3/3 = 1, z = r(1) = 1. Codes r(x) + 1:
  // -1 -> 0, 0 -> 1, 0.5 -> r(0.5) = 0 (tie to even) -> 1, 2 -> 3.
  Floats x = {-1.0f, 0.0f, 0.5f, 2.0f};
  QuantFormat fmt = uniformFormat(2, /*symmetric=*/false);
  QuantizedData q = quantizeRTN(x, {4}, fmt);
  EXPECT_EQ(q.scales, (Floats{1.0f}));
  EXPECT_EQ(q.zeroPoints, (Bytes{1}));
  EXPECT_EQ(q.codes, (Bytes{0, 1, 1, 3}));
  EXPECT_EQ(dequantize(q, {4}, fmt), (Floats{-1.0f, 0.0f, 0.0f, 2.0f}));

  // All-positive data: lo = min(0, ...) = 0, so z = 0 and s = 3/3 = 1.
  Floats positive = {1.0f, 2.0f, 3.0f};
  q = quantizeRTN(positive, {3}, fmt);
  EXPECT_EQ(q.scales, (Floats{1.0f}));
  EXPECT_EQ(q.zeroPoints, (Bytes{0}));
  EXPECT_EQ(q.codes, (Bytes{1, 2, 3}));
}

TEST(QuantizeTest, AsymmetricPerGroupZeroPoints) {
  // 8-bit asymmetric, groups of 2 along axis 1 of [1, 4]:
  // group 0 {-1, 1.55}: s = 2.55/255 = 0.01 (f32), z = r(1/0.01) = 100;
  // group 1 {0, 5.1}: lo = 0, s = 5.1/255 = 0.02, z = 0.
  Floats x = {-1.0f, 1.55f, 0.0f, 5.1f};
  QuantFormat fmt = uniformFormat(8, /*symmetric=*/false);
  fmt.granularity = Granularity::Group;
  fmt.axis = 1;
  fmt.groupSize = 2;
  QuantizedData q = quantizeRTN(x, {1, 4}, fmt);
  EXPECT_EQ(q.scales, (Floats{(1.55f + 1.0f) / 255, 5.1f / 255}));
  EXPECT_EQ(q.zeroPoints, (Bytes{100, 0}));
  EXPECT_EQ(q.codes, (Bytes{0, 255, 0, 255}));
}

TEST(QuantizeTest, FractionalZeroPoint) {
  // 2 bits, so 6 fraction bits: lo = -0.5, hi = 2.5, s = 3/3 = 1,
  // zs = r(0.5 * 64) = 32, z = 0.5. Codes r(x + 0.5): -0.5 -> 0,
  // 0.25 -> r(0.75) = 1, 1.0 -> r(1.5) = 2 (tie to even), 2.5 -> 3.
  // Decoded s * (c - 0.5): the range's ends are exact, which integer zero
  // points (z = r(0.5) = 0, grid 0 .. 3) cannot give.
  Floats x = {-0.5f, 0.25f, 1.0f, 2.5f};
  QuantFormat fmt = uniformFormat(2, /*symmetric=*/false);
  fmt.fractionalZeroPoint = true;
  QuantizedData q = quantizeRTN(x, {4}, fmt);
  EXPECT_EQ(q.scales, (Floats{1.0f}));
  EXPECT_EQ(q.zeroPoints, (Bytes{32}));
  EXPECT_EQ(q.codes, (Bytes{0, 1, 2, 3}));
  EXPECT_EQ(dequantize(q, {4}, fmt), (Floats{-0.5f, 0.5f, 1.5f, 2.5f}));
  // The same float operations on both sides (255 / 64 is exact).
  EXPECT_FLOAT_EQ(dequantizeOne(3, 0.25f, 255, fmt), 0.25f * (3 - 255 / 64.0f));

  QuantFormat integer = uniformFormat(2, /*symmetric=*/false);
  QuantizedData qi = quantizeRTN(x, {4}, integer);
  EXPECT_EQ(qi.zeroPoints, (Bytes{0}));
  EXPECT_EQ(dequantize(qi, {4}, integer), (Floats{0.0f, 0.0f, 1.0f, 2.0f}));

  // The stored byte saturates at qmax * 2^F (here 3 * 64 = 192).
  EXPECT_EQ(maxStoredZeroPoint(fmt), 192u);
  EXPECT_EQ(zeroPointFractionBits(fmt), 6u);
  QuantizedData negative = quantizeRTN(Floats{-3.0f, -1.0f}, {2}, fmt);
  EXPECT_EQ(negative.zeroPoints, (Bytes{192}));
  EXPECT_EQ(negative.codes, (Bytes{0, 2}));

  // Symmetric formats have no zero point to make fractional.
  QuantFormat bad = uniformFormat(4, /*symmetric=*/true);
  bad.fractionalZeroPoint = true;
  EXPECT_NE(verifyFormat(bad), "");
}

TEST(QuantizeTest, FractionalZeroPointRecoversShiftedGrids) {
  // Groups that already lie on a 4-bit grid with a free offset (the shape of
  // a Q4_1 block: x = d * q + m, q = 0..15) come back to within d / 32 with
  // fractional zero points; integer zero points move the grid by up to d / 2.
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> code(0, 15);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  double fractionalMax = 0, integerMax = 0;
  for (int g = 0; g < 200; ++g) {
    float d = 0.01f + unit(rng), m = -d * (0.5f + 14.0f * unit(rng));
    Floats x(32);
    for (float &v : x)
      v = d * float(code(rng)) + m;
    x[0] = m;             // q = 0 and q = 15 both occur,
    x[1] = d * 15.0f + m; // so the range is [m, m + 15 d].
    QuantFormat fractional = uniformFormat(4, /*symmetric=*/false);
    fractional.fractionalZeroPoint = true;
    QuantFormat integer = uniformFormat(4, /*symmetric=*/false);
    Floats rf = dequantize(quantizeRTN(x, {32}, fractional), {32}, fractional);
    Floats ri = dequantize(quantizeRTN(x, {32}, integer), {32}, integer);
    for (size_t i = 0; i < x.size(); ++i) {
      fractionalMax =
          std::max(fractionalMax, double(std::abs(x[i] - rf[i])) / d);
      integerMax = std::max(integerMax, double(std::abs(x[i] - ri[i])) / d);
    }
  }
  // 4-bit zero points have 4 fraction bits: the grid is off by at most half
  // a step, d / 32. On top of that, each float operation on values up to
  // 30 d (x = d q + m, (hi - lo) / 15, x / s + z, s (c - z)) rounds by <=
  // 30 d * 2^-24 = 1.8e-6 d; five of them: 9e-6 d, which 1e-5 covers.
  EXPECT_LE(fractionalMax, 1.0 / 32 + 1e-5);
  EXPECT_GT(integerMax, 0.4);
}

TEST(QuantizeTest, HalfAndBFloatScales) {
  // 8-bit symmetric, a = 1000: 2000/255 = 7.8431373 rounds to the f16 value
  // 2008 * 2^-8 = 7.84375. 1000/7.84375 = 127.49 -> 127 -> code 255.
  QuantizedData q = quantizeRTN(Floats{1000.0f, -3.0f}, {2},
                                uniformFormat(8, true, ScaleType::F16));
  EXPECT_EQ(q.scales, (Floats{7.84375f}));
  EXPECT_EQ(q.codes, (Bytes{255, 128}));
  EXPECT_EQ(dequantize(q, {2}, uniformFormat(8, true, ScaleType::F16)),
            (Floats{127 * 7.84375f, 0.0f}));

  // 4-bit symmetric, a = 1: 2/15 = 1.0666667 * 2^-3 rounds to the bf16 value
  // 137/128 * 2^-3 = 0.1337890625. 0.5/s = 3.737 -> 4 -> code 12.
  q = quantizeRTN(Floats{1.0f, 0.5f}, {2},
                  uniformFormat(4, true, ScaleType::BF16));
  EXPECT_EQ(q.scales, (Floats{0.1337890625f}));
  EXPECT_EQ(q.codes, (Bytes{15, 12}));
}

TEST(QuantizeTest, ScaleUnderflowGivesZeroScale) {
  // 2e-10/255 is far below the smallest f16 subnormal (5.96e-8): s = 0, the
  // codes are the implicit zero point and everything dequantizes to 0.
  QuantFormat fmt = uniformFormat(8, true, ScaleType::F16);
  QuantizedData q = quantizeRTN(Floats{1e-10f, -1e-10f}, {2}, fmt);
  EXPECT_EQ(q.scales, (Floats{0.0f}));
  EXPECT_EQ(q.codes, (Bytes{128, 128}));
  EXPECT_EQ(dequantize(q, {2}, fmt), (Floats{0.0f, 0.0f}));

  fmt.symmetric = false;
  q = quantizeRTN(Floats{1e-10f, -1e-10f}, {2}, fmt);
  EXPECT_EQ(q.scales, (Floats{0.0f}));
  EXPECT_EQ(q.zeroPoints, (Bytes{0}));
  EXPECT_EQ(q.codes, (Bytes{0, 0}));
}

TEST(QuantizeTest, AllZeroGroup) {
  Floats x(8, 0.0f);
  for (unsigned bits = 2; bits <= 8; ++bits) {
    QuantFormat fmt = uniformFormat(bits);
    QuantizedData q = quantizeRTN(x, {8}, fmt);
    EXPECT_EQ(q.scales, (Floats{0.0f}));
    EXPECT_EQ(q.codes, Bytes(8, uint8_t(1u << (bits - 1))));
    EXPECT_EQ(dequantize(q, {8}, fmt), x);

    fmt.symmetric = false;
    q = quantizeRTN(x, {8}, fmt);
    EXPECT_EQ(q.zeroPoints, (Bytes{0}));
    EXPECT_EQ(q.codes, Bytes(8, 0));
    EXPECT_EQ(dequantize(q, {8}, fmt), x);

    fmt.symmetric = true;
    fmt.codebook = normalFloatCodebook(bits);
    q = quantizeRTN(x, {8}, fmt);
    // The NormalFloat tables hold exactly one 0, at index n/2 - 1.
    EXPECT_EQ(q.codes, Bytes(8, uint8_t((1u << bits) / 2 - 1)));
    EXPECT_EQ(dequantize(q, {8}, fmt), x);
  }
}

TEST(QuantizeTest, NF4PerTensor) {
  // s = max |x| = 2; x/s = {1, -1, 0, 0.5}. 0.5 is nearest to 0.4407 (index
  // 12, distance 0.059) rather than 0.5626 (index 13, distance 0.063).
  QuantFormat fmt;
  fmt.bits = 4;
  fmt.codebook = normalFloatCodebook(4);
  QuantizedData q = quantizeRTN(Floats{2.0f, -2.0f, 0.0f, 1.0f}, {4}, fmt);
  EXPECT_EQ(q.scales, (Floats{2.0f}));
  EXPECT_EQ(q.codes, (Bytes{15, 0, 7, 12}));
  Floats xhat = dequantize(q, {4}, fmt);
  EXPECT_EQ(xhat[0], 2.0f);
  EXPECT_EQ(xhat[1], -2.0f);
  EXPECT_EQ(xhat[2], 0.0f);
  // 2 * NF4[12], our float entry within 1 ulp (3e-8) of bitsandbytes'
  // 0.44070982933044434 (CodebookTest.NF4Table): <= 6e-8; 1e-6 leaves 16x.
  EXPECT_NEAR(xhat[3], 0.8814196586608887, 1e-6);
}

TEST(QuantizeTest, StaticScales) {
  // 4-bit symmetric per row, given scales {0.5, 0.1}; f16 stores 0.1 as
  // 0.0999755859375. Row 0: 1/0.5 = 2 -> 10, -0.26/0.5 = -0.52 -> -1 -> 7,
  // 5/0.5 = 10 -> 18 -> clamped 15. Row 1: 0.1/s = 1.0002 -> 9,
  // -0.3/s = -3.0007 -> 5, 0.05/s = 0.5001 -> 1 -> 9.
  QuantFormat fmt = uniformFormat(4, true, ScaleType::F16);
  fmt.granularity = Granularity::Channel;
  Floats x = {1.0f, -0.26f, 5.0f, 0.1f, -0.3f, 0.05f};
  QuantizedData q = quantizeWithScales(x, {2, 3}, fmt, {0.5f, 0.1f}, {});
  EXPECT_EQ(q.scales, (Floats{0.5f, 0.0999755859375f}));
  EXPECT_EQ(q.codes, (Bytes{10, 7, 15, 9, 5, 9}));

  // 3-bit asymmetric per tensor with s = 1, z = 3: r(x) + 3 clamped to 0..7.
  QuantFormat asym = uniformFormat(3, /*symmetric=*/false);
  q = quantizeWithScales(Floats{-3.0f, -3.5f, 0.0f, 4.4f, 10.0f}, {5}, asym,
                         {1.0f}, {3});
  EXPECT_EQ(q.codes, (Bytes{0, 0, 3, 7, 7}));
  EXPECT_EQ(q.zeroPoints, (Bytes{3}));
  EXPECT_EQ(dequantize(q, {5}, asym), (Floats{-3.0f, -3.0f, 0.0f, 4.0f, 4.0f}));

  // A zero static scale encodes every element as the zero point.
  q = quantizeWithScales(Floats{1.0f, -2.0f}, {2}, asym, {0.0f}, {5});
  EXPECT_EQ(q.codes, (Bytes{5, 5}));
}

TEST(QuantizeTest, PerElementFormulas) {
  QuantFormat sym = uniformFormat(4);
  EXPECT_EQ(dequantizeOne(0, 0.5f, 0, sym), -4.0f);
  EXPECT_EQ(dequantizeOne(15, 0.5f, 0, sym), 3.5f);
  EXPECT_EQ(dequantizeOne(8, 0.5f, 99, sym), 0.0f); // Zero point ignored.
  EXPECT_EQ(quantizeOne(-100.0f, 0.5f, 0, sym), 0);
  EXPECT_EQ(quantizeOne(0.75f, 0.5f, 0, sym), 10); // r(1.5) = 2.

  QuantFormat asym = uniformFormat(8, /*symmetric=*/false);
  EXPECT_EQ(dequantizeOne(10, 0.25f, 12, asym), -0.5f);
  EXPECT_EQ(quantizeOne(-0.5f, 0.25f, 12, asym), 10);

  QuantFormat lut;
  lut.bits = 2;
  lut.codebook = {0.5f, -1.0f, 1.0f, 0.0f};
  EXPECT_EQ(dequantizeOne(1, 3.0f, 0, lut), -3.0f);
  EXPECT_EQ(quantizeOne(1.4f, 3.0f, 0, lut), 0);
  EXPECT_EQ(quantizeOne(5.0f, 0.0f, 0, lut), 3); // s = 0 encodes 0.
}

//===----------------------------------------------------------------------===//
// Properties on random data
//===----------------------------------------------------------------------===//

TEST(QuantizeTest, ErrorBoundInsideGrid) {
  std::mt19937 rng(99);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const int64_t shape[] = {8, 64};
  Floats x(8 * 64);
  for (float &v : x)
    v = normal(rng) * (rng() % 2 ? 1.0f : 0.01f);

  const Grouping groupings[] = {{"tensor", Granularity::Tensor, 0, 0},
                                {"channel0", Granularity::Channel, 0, 0},
                                {"group16", Granularity::Group, 1, 16},
                                {"group10", Granularity::Group, 1, 10}};
  for (unsigned bits = 2; bits <= 8; ++bits) {
    for (const Grouping &g : groupings) {
      for (bool symmetric : {true, false}) {
        for (ScaleType t : {ScaleType::F32, ScaleType::F16, ScaleType::BF16}) {
          QuantFormat fmt = uniformFormat(bits, symmetric, t);
          fmt.granularity = g.granularity;
          fmt.axis = g.axis;
          fmt.groupSize = g.groupSize;
          QuantizedData q = quantizeRTN(x, shape, fmt);
          Floats xhat = dequantize(q, shape, fmt);
          float qmax = float((1u << bits) - 1);
          int64_t inside = 0;
          for (size_t i = 0; i < x.size(); ++i) {
            int64_t sg = scaleIndexOf(fmt, shape, i);
            float s = q.scales[sg];
            float z = symmetric ? float(1u << (bits - 1)) : q.zeroPoints[sg];
            ASSERT_LE(q.codes[i], qmax);
            if (x[i] < -z * s || x[i] > (qmax - z) * s)
              continue;
            ++inside;
            // Half a step, plus the rounding of x / s (|x / s| <= qmax, so
            // <= qmax * 2^-24 steps) and of s (c - z) (<= qmax * 2^-24 s),
            // and of the subtraction here.
            ASSERT_LE(std::fabs(x[i] - xhat[i]),
                      s * (0.5f + (qmax + 1) * 0x1p-23f))
                << "bits " << bits << " " << g.name << " element " << i;
          }
          EXPECT_GT(inside, int64_t(x.size()) / 2);
        }
      }
    }
  }
}

TEST(QuantizeTest, CodebookGroup64NearestPoint) {
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  const int64_t shape[] = {4, 256};
  Floats x(4 * 256);
  for (float &v : x)
    v = normal(rng);

  const Floats userTable = {0.3f,   -0.9f, 0.05f, 1.0f, -0.2f,  0.6f,
                            -0.55f, 0.15f, -1.0f, 0.8f, -0.05f, 0.45f,
                            -0.35f, 0.0f,  -0.7f, 0.25f};
  for (const Floats &table : {normalFloatCodebook(4), userTable}) {
    for (ScaleType t : {ScaleType::F32, ScaleType::F16}) {
      QuantFormat fmt;
      fmt.bits = 4;
      fmt.codebook = table;
      fmt.granularity = Granularity::Group;
      fmt.axis = 1;
      fmt.groupSize = 64;
      fmt.scaleType = t;
      QuantizedData q = quantizeRTN(x, shape, fmt);
      ASSERT_EQ(q.scales.size(), 16u);
      Floats xhat = dequantize(q, shape, fmt);
      for (int64_t r = 0; r < 4; ++r) {
        for (int64_t g = 0; g < 4; ++g) {
          float absMax = 0;
          for (int64_t c = 64 * g; c < 64 * (g + 1); ++c)
            absMax = std::max(absMax, std::fabs(x[r * 256 + c]));
          float s = q.scales[r * 4 + g];
          ASSERT_EQ(s, referenceScaleRound(absMax, t));
          for (int64_t c = 64 * g; c < 64 * (g + 1); ++c) {
            int64_t i = r * 256 + c;
            uint8_t code = q.codes[i];
            ASSERT_EQ(xhat[i], s * table[code]);
            float v = x[i] / s;
            for (float entry : table)
              ASSERT_LE(std::fabs(v - table[code]), std::fabs(v - entry))
                  << "element " << i;
          }
        }
      }
    }
  }
}

#ifndef NDEBUG
TEST(QuantizeDeathTest, PreconditionsAreAsserted) {
  EXPECT_DEATH(quantizeRTN(Floats{NAN}, {1}, uniformFormat(4)), "finite");
  // 2 * 1e7 / 255 overflows f16.
  EXPECT_DEATH(
      quantizeRTN(Floats{1e7f}, {1}, uniformFormat(8, true, ScaleType::F16)),
      "scale");
}
#endif

} // namespace

namespace {
double groupSquaredError(const Floats &x, const Floats &y, int64_t from,
                         int64_t to) {
  double sum = 0.0;
  for (int64_t i = from; i < to; ++i)
    sum += double(x[i] - y[i]) * double(x[i] - y[i]);
  return sum;
}

QuantFormat groupFormat(unsigned bits, bool symmetric, int64_t group) {
  QuantFormat fmt;
  fmt.bits = bits;
  fmt.granularity = Granularity::Group;
  fmt.axis = 1;
  fmt.groupSize = group;
  fmt.symmetric = symmetric;
  return fmt;
}
} // namespace

// int2 symmetric has the levels -2s, -s, 0, s. The full range of this group
// gives s = 2 * 8 / 3, so the +-3 values land on +-s = +-5.33 (error 2.33
// each); s = 4 (p = 0.75) represents -8 exactly and puts them 1 away. The
// search must find a smaller scale, and the result must be exactly
// quantizeWithScales with that scale.
TEST(QuantizeClipSearchTest, ClipsAnOutlier) {
  Floats x = {-8.0f, 3.0f, -3.0f, 3.2f, -2.9f, 3.0f, -3.0f, 2.9f};
  QuantFormat fmt = groupFormat(2, true, 8);
  QuantizedData full = quantizeRTN(x, {1, 8}, fmt);
  QuantizedData clipped = quantizeRTNClipSearch(x, {1, 8}, fmt, 20, 0.1f);
  // The same float operations (2 * 8 / 3).
  EXPECT_FLOAT_EQ(full.scales[0], 16.0f / 3.0f);
  EXPECT_LT(clipped.scales[0], full.scales[0]);
  Floats a = dequantize(full, {1, 8}, fmt),
         b = dequantize(clipped, {1, 8}, fmt);
  EXPECT_LT(groupSquaredError(x, b, 0, 8), groupSquaredError(x, a, 0, 8));
  QuantizedData again = quantizeWithScales(x, {1, 8}, fmt, clipped.scales, {});
  EXPECT_EQ(again.codes, clipped.codes);
  // Among the candidates p = 1 - i * 0.9 / 20 the chosen one is the best:
  // check it against every candidate scale directly. The candidate scales
  // are computed with the same float operations as quantizeRTNClipSearch
  // (0.9f is 1 - 0.1f rounded), and both sum the same exact squares of float
  // differences in double in the same order: the comparison is exact.
  for (int i = 0; i <= 20; ++i) {
    float p = 1.0f - float(i) * 0.9f / 20.0f;
    float s = 2.0f * (p * 8.0f) / 3.0f;
    QuantizedData q = quantizeWithScales(x, {1, 8}, fmt, {s}, {});
    EXPECT_LE(groupSquaredError(x, b, 0, 8),
              groupSquaredError(x, dequantize(q, {1, 8}, fmt), 0, 8))
        << "p = " << p;
  }
}

// Never worse than the full range, group by group, for every kind of format;
// steps = 0 is exactly quantizeRTN.
TEST(QuantizeClipSearchTest, NeverWorseThanRTN) {
  std::mt19937 rng(11);
  std::student_t_distribution<float> heavy(3.0f);
  const int64_t rows = 7, cols = 40, group = 16;
  Floats x(rows * cols);
  for (float &v : x)
    v = heavy(rng);
  std::vector<QuantFormat> formats = {
      groupFormat(2, true, group), groupFormat(3, false, group),
      groupFormat(4, true, group), groupFormat(8, false, group)};
  QuantFormat nf = groupFormat(4, true, group);
  nf.codebook = normalFloatCodebook(4);
  formats.push_back(nf);
  for (const QuantFormat &fmt : formats) {
    Floats rtn =
        dequantize(quantizeRTN(x, {rows, cols}, fmt), {rows, cols}, fmt);
    QuantizedData searched = quantizeRTNClipSearch(x, {rows, cols}, fmt);
    Floats clipped = dequantize(searched, {rows, cols}, fmt);
    double totalRtn = 0, totalClipped = 0;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t g0 = 0; g0 < cols; g0 += group) {
        int64_t from = r * cols + g0,
                to = r * cols + std::min(g0 + group, cols);
        double e0 = groupSquaredError(x, rtn, from, to);
        double e1 = groupSquaredError(x, clipped, from, to);
        // Exact: the search keeps the smallest of these very sums (same
        // squares of float differences, same order), and p = 1 is RTN.
        EXPECT_LE(e1, e0) << "bits " << fmt.bits << " row " << r;
        totalRtn += e0;
        totalClipped += e1;
      }
    // Heavy tails: at low bit widths the search must actually help (strict:
    // a property of the data, not a rounding bound).
    if (fmt.bits <= 4) {
      EXPECT_LT(totalClipped, totalRtn) << "bits " << fmt.bits;
    }
    QuantizedData none = quantizeRTNClipSearch(x, {rows, cols}, fmt, 0);
    QuantizedData plain = quantizeRTN(x, {rows, cols}, fmt);
    EXPECT_EQ(none.codes, plain.codes);
    EXPECT_EQ(none.scales, plain.scales);
    EXPECT_EQ(none.zeroPoints, plain.zeroPoints);
  }
}
