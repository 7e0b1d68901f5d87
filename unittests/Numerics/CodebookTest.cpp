//===- CodebookTest.cpp - Tests for codebooks -----------------------------===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#include "qlr/Numerics/Codebook.h"

#include "gtest/gtest.h"

#include <algorithm>
#include <cmath>

using namespace qlr::numerics;

namespace {

void expectRelativelyNear(double actual, double expected, double tolerance) {
  EXPECT_NEAR(actual, expected, tolerance * std::fabs(expected))
      << "expected " << expected;
}

TEST(CodebookTest, NormalQuantileKnownValues) {
  // Reference values computed with 50-digit arithmetic. normalQuantile is
  // scalar double code (no reordering); its error comes from erfc/erf/exp/
  // log (glibc: < 1-2 ulp, whichever variant the CPU selects) divided by
  // the density, a few 1e-16 relative for |z| < 10: 1e-14 leaves > 10x. At
  // p = 1e-300 and 0.999 (1 - p rounded), 1e-13.
  expectRelativelyNear(normalQuantile(0.975), 1.9599639845400542355, 1e-14);
  expectRelativelyNear(normalQuantile(0.025), -1.9599639845400542355, 1e-14);
  expectRelativelyNear(normalQuantile(1e-10), -6.3613409024040562047, 1e-14);
  expectRelativelyNear(normalQuantile(1e-20), -9.2623400897984075737, 1e-14);
  expectRelativelyNear(normalQuantile(1e-300), -37.047096299361199237, 1e-13);
  expectRelativelyNear(normalQuantile(0.8413447460685429), 1.0, 1e-14);
  expectRelativelyNear(normalQuantile(0.02275013194817921), -2.0, 1e-14);
  expectRelativelyNear(normalQuantile(0.6), 0.2533471031357997988, 1e-14);
  expectRelativelyNear(normalQuantile(0.3), -0.52440051270804078404, 1e-14);
  expectRelativelyNear(normalQuantile(0.25), -0.6744897501960817432, 1e-14);
  expectRelativelyNear(normalQuantile(0.2), -0.84162123357291420518, 1e-14);
  expectRelativelyNear(normalQuantile(0.999), 3.0902323061678135415, 1e-13);
  // Near the center the result is still accurate relative to its size.
  // The reference is for p = 0.5 + 1e-7 exactly; the double 0.5000001 is
  // 5.3e-10 (relative to 1e-7) below it, which 1e-9 covers with 2x.
  expectRelativelyNear(normalQuantile(0.5000001), 2.5066282746310267518e-7,
                       1e-9);
  // The exact answer is 0; the Halley steps stop at the rounding of erf
  // near 0 (< 1e-16).
  EXPECT_NEAR(normalQuantile(0.5), 0.0, 1e-15);
}

TEST(CodebookTest, NormalQuantileSymmetryAndInverse) {
  for (double p = 1e-12; p < 0.5; p *= 1.7) {
    double z = normalQuantile(p);
    // Exact mirror symmetry for p > 0.5, where 1 - p is exact.
    double upper = 1.0 - p;
    EXPECT_EQ(normalQuantile(upper), -normalQuantile(1.0 - upper))
        << "p = " << p;
    // Phi(z) = 0.5 * erfc(-z / sqrt(2)) recovers p. Relative to p, an ulp
    // of z (<= 9e-16 at |z| ~ 7) moves Phi by |z| * 9e-16 ~ 6e-15, plus
    // erfc's own error and the rounding of -z / sqrt(2) (~5e-15 at 7):
    // < 1.5e-14; 1e-13 leaves 7x.
    EXPECT_NEAR(0.5 * std::erfc(-z / std::sqrt(2.0)), p, 1e-13 * p)
        << "p = " << p;
  }
  // Monotonic on a fine grid.
  double previous = normalQuantile(0.0005);
  for (double p = 0.001; p < 1.0; p += 0.0005) {
    double z = normalQuantile(p);
    EXPECT_GT(z, previous) << "p = " << p;
    previous = z;
  }
}

TEST(CodebookTest, NF4Table) {
  const double nf4[] = {-1.0,
                        -0.6961928009986877,
                        -0.5250730514526367,
                        -0.39491748809814453,
                        -0.28444138169288635,
                        -0.18477343022823334,
                        -0.09105003625154495,
                        0.0,
                        0.07958029955625534,
                        0.16093020141124725,
                        0.24611230194568634,
                        0.33791524171829224,
                        0.44070982933044434,
                        0.5626170039176941,
                        0.7229568362236023,
                        1.0};
  std::vector<float> table = normalFloatCodebook(4);
  ASSERT_EQ(table.size(), 16u);
  for (size_t i = 0; i < 16; ++i)
    // The reference is bitsandbytes' table (scipy's quantiles rounded to
    // float); ours may round to the neighbouring float: <= 1 ulp = 6e-8 at
    // 0.5-1. 1e-6 leaves 8x.
    EXPECT_NEAR(table[i], nf4[i], 1e-6) << "entry " << i;
}

TEST(CodebookTest, NF2Table) {
  // n = 4: positive part Q(o), Q(o + (0.5 - o) / 2); negative part -Q(o).
  const double o = 0.9677083;
  std::vector<float> table = normalFloatCodebook(2);
  ASSERT_EQ(table.size(), 4u);
  EXPECT_EQ(table[0], -1.0f);
  EXPECT_EQ(table[1], 0.0f);
  // The same double arithmetic as normalFloatCodebook: bit-identical.
  EXPECT_EQ(table[2],
            float(normalQuantile(o + (0.5 - o) / 2) / normalQuantile(o)));
  // The value rounded to 4 digits (0.33791...): 1e-4 covers the rounding.
  EXPECT_NEAR(table[2], 0.3379, 1e-4);
  EXPECT_EQ(table[3], 1.0f);
}

TEST(CodebookTest, NormalFloatTableShape) {
  for (unsigned bits = 2; bits <= 8; ++bits) {
    SCOPED_TRACE("bits " + std::to_string(bits));
    std::vector<float> table = normalFloatCodebook(bits);
    size_t n = size_t(1) << bits;
    ASSERT_EQ(table.size(), n);
    EXPECT_EQ(table.front(), -1.0f);
    EXPECT_EQ(table.back(), 1.0f);
    EXPECT_TRUE(std::is_sorted(table.begin(), table.end()));
    EXPECT_EQ(std::adjacent_find(table.begin(), table.end()), table.end());
    EXPECT_EQ(std::count(table.begin(), table.end(), 0.0f), 1);
    // n/2 - 1 negative values, zero, n/2 positive values.
    EXPECT_EQ(table[n / 2 - 1], 0.0f);
  }
}

TEST(CodebookTest, NearestCodebookIndex) {
  const float sorted[] = {-1.0f, 0.0f, 1.0f, 2.0f};
  EXPECT_EQ(nearestCodebookIndex(sorted, -5.0f), 0);
  EXPECT_EQ(nearestCodebookIndex(sorted, -0.4f), 1);
  EXPECT_EQ(nearestCodebookIndex(sorted, 0.6f), 2);
  EXPECT_EQ(nearestCodebookIndex(sorted, 7.0f), 3);
  // Ties go to the lower index.
  EXPECT_EQ(nearestCodebookIndex(sorted, -0.5f), 0);
  EXPECT_EQ(nearestCodebookIndex(sorted, 0.5f), 1);
  EXPECT_EQ(nearestCodebookIndex(sorted, 1.5f), 2);

  // Unsorted user table; ties still go to the lower index.
  const float unsorted[] = {2.0f, -1.0f, 1.0f, 0.0f, 1.0f};
  EXPECT_EQ(nearestCodebookIndex(unsorted, 0.5f), 2);
  EXPECT_EQ(nearestCodebookIndex(unsorted, 1.0f), 2);
  EXPECT_EQ(nearestCodebookIndex(unsorted, -0.5f), 1);
  EXPECT_EQ(nearestCodebookIndex(unsorted, 1.6f), 0);
  EXPECT_EQ(nearestCodebookIndex(unsorted, -100.0f), 1);
  EXPECT_EQ(nearestCodebookIndex(unsorted, 0.1f), 3);
}

} // namespace
