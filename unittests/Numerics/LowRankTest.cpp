//===- LowRankTest.cpp - Tests for SVD, low-rank factors and LoftQ --------===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#include "TestUtil.h"

#include "qlr/Numerics/Codebook.h"
#include "qlr/Numerics/LowRank.h"

#include "gtest/gtest.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <string>

using namespace qlr::numerics;
using namespace qlr::numerics::test;

namespace {

/// Returns W - U diag(s) Vᵀ.
Doubles svdResidual(const Floats &w, const SVD &svd) {
  int64_t m = svd.m, n = svd.n, p = std::min(m, n);
  Doubles r(w.begin(), w.end());
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j)
      for (int64_t l = 0; l < p; ++l)
        r[i * n + j] -= svd.u[i * p + l] * svd.s[l] * svd.vt[l * n + j];
  return r;
}

/// Returns the largest |(MᵀM - I)_ij| for the columns of the row-major
/// rows x cols matrix M (columnsOrthonormal) or |(MMᵀ - I)_ij| for its rows.
double orthonormalityError(const Doubles &mat, int64_t rows, int64_t cols,
                           bool columns) {
  int64_t count = columns ? cols : rows, len = columns ? rows : cols;
  auto at = [&](int64_t vec, int64_t idx) {
    return columns ? mat[idx * cols + vec] : mat[vec * cols + idx];
  };
  double worst = 0;
  for (int64_t a = 0; a < count; ++a)
    for (int64_t b = 0; b < count; ++b) {
      double dot = 0;
      for (int64_t i = 0; i < len; ++i)
        dot += at(a, i) * at(b, i);
      worst = std::max(worst, std::abs(dot - (a == b ? 1.0 : 0.0)));
    }
  return worst;
}

/// W - A·B (in double).
Doubles lowRankResidual(const Floats &w, const LowRankFactors &f, int64_t m,
                        int64_t n) {
  Doubles r(w.begin(), w.end());
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j)
      for (int64_t l = 0; l < f.rank; ++l)
        r[i * n + j] -= double(f.a[i * f.rank + l]) * double(f.b[l * n + j]);
  return r;
}

/// The 8 x 8 Sylvester Hadamard matrix (entries +-1, orthogonal rows and
/// columns of norm sqrt(8)).
double hadamard8(int64_t i, int64_t j) {
  return __builtin_popcountll(uint64_t(i & j)) % 2 ? -1.0 : 1.0;
}

//===----------------------------------------------------------------------===//
// thinSVD
//===----------------------------------------------------------------------===//

class ThinSVDRandomTest
    : public ::testing::TestWithParam<std::pair<int64_t, int64_t>> {};

TEST_P(ThinSVDRandomTest, ReconstructsAndIsOrthonormal) {
  auto [m, n] = GetParam();
  int64_t p = std::min(m, n);
  std::mt19937 rng(unsigned(m * 100 + n));
  Floats w = randomNormal(m * n, rng);
  SVD svd = thinSVD(w, m, n);
  ASSERT_EQ(svd.m, m);
  ASSERT_EQ(svd.n, n);
  ASSERT_EQ(int64_t(svd.u.size()), m * p);
  ASSERT_EQ(int64_t(svd.s.size()), p);
  ASSERT_EQ(int64_t(svd.vt.size()), p * n);
  // A backward-stable double SVD (in any order, SIMD width or FMA) leaves
  // residuals and orthonormality errors of a modest multiple of p * 2^-53
  // (<= 40 * 1.1e-16 = 4.4e-15) relative; 1e-12 leaves > 100x.
  EXPECT_LT(frobenius(svdResidual(w, svd)), 1e-12 * frobenius(w));
  EXPECT_LT(orthonormalityError(svd.u, m, p, /*columns=*/true), 1e-12);
  EXPECT_LT(orthonormalityError(svd.vt, p, n, /*columns=*/false), 1e-12);
  for (int64_t i = 0; i < p; ++i) {
    EXPECT_GE(svd.s[i], 0.0);
    if (i > 0) {
      EXPECT_GE(svd.s[i - 1], svd.s[i]);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, ThinSVDRandomTest,
    ::testing::Values(std::make_pair(30, 12), std::make_pair(12, 30),
                      std::make_pair(17, 17), std::make_pair(1, 5),
                      std::make_pair(5, 1), std::make_pair(96, 40)));

TEST(ThinSVDTest, KnownSingularValuesWide) {
  // W = diag(d) H8[0:6, :]: orthogonal rows, exactly representable in float;
  // singular values sqrt(8) |d| (one of them zero).
  constexpr int64_t m = 6, n = 8;
  const double d[m] = {3, -1, 0.5, 2, 0, 1.25};
  Floats w(m * n);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j)
      w[i * n + j] = float(d[i] * hadamard8(i, j));
  SVD svd = thinSVD(w, m, n);
  // |W| = 8.7: singular values and residual within a small multiple of 6 *
  // 2^-53 * 8.7 = 6e-15 (backward stability); 1e-13 leaves > 10x.
  const double expected[] = {3, 2, 1.25, 1, 0.5, 0};
  ASSERT_EQ(svd.s.size(), 6u);
  for (int64_t i = 0; i < m; ++i)
    EXPECT_NEAR(svd.s[i], std::sqrt(8.0) * expected[i], 1e-13) << i;
  EXPECT_LT(frobenius(svdResidual(w, svd)), 1e-13);
  EXPECT_LT(orthonormalityError(svd.u, m, m, true), 1e-12);
  EXPECT_LT(orthonormalityError(svd.vt, m, n, false), 1e-12);
}

TEST(ThinSVDTest, KnownSingularValuesTall) {
  // W = H8[:, {1, 3, 4, 6}] diag(d): orthogonal columns.
  constexpr int64_t m = 8, n = 4;
  const int64_t cols[n] = {1, 3, 4, 6};
  const double d[n] = {0.25, 4, -2, 1};
  Floats w(m * n);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j)
      w[i * n + j] = float(hadamard8(i, cols[j]) * d[j]);
  SVD svd = thinSVD(w, m, n);
  // As in KnownSingularValuesWide (|W| = 13).
  const double expected[] = {4, 2, 1, 0.25};
  for (int64_t i = 0; i < n; ++i)
    EXPECT_NEAR(svd.s[i], std::sqrt(8.0) * expected[i], 1e-13) << i;
  // The right singular vectors are the standard basis vectors (up to sign):
  // v_0 = +-e_1 (d = 4).
  EXPECT_NEAR(std::abs(svd.vt[0 * n + 1]), 1.0, 1e-13);
  EXPECT_LT(frobenius(svdResidual(w, svd)), 1e-13);
  EXPECT_LT(orthonormalityError(svd.u, m, n, true), 1e-12);
}

TEST(ThinSVDTest, ZeroAndEmpty) {
  SVD zero = thinSVD(Floats(12, 0.0f), 3, 4);
  EXPECT_EQ(zero.s, Doubles(3, 0.0));
  EXPECT_LT(orthonormalityError(zero.u, 3, 3, true), 1e-12);
  SVD empty = thinSVD({}, 0, 4);
  EXPECT_EQ(empty.n, 4);
  EXPECT_TRUE(empty.s.empty() && empty.u.empty() && empty.vt.empty());
}

//===----------------------------------------------------------------------===//
// truncatedSVD
//===----------------------------------------------------------------------===//

class TruncatedSVDTest
    : public ::testing::TestWithParam<std::pair<int64_t, int64_t>> {};

TEST_P(TruncatedSVDTest, EckartYoungError) {
  auto [m, n] = GetParam();
  int64_t p = std::min(m, n);
  std::mt19937 rng(unsigned(7 * m + n));
  Floats w = randomNormal(m * n, rng);
  SVD svd = thinSVD(w, m, n);
  double norm = frobenius(w);
  for (int64_t rank :
       {int64_t(0), int64_t(1), int64_t(3), int64_t(10), p, p + 5}) {
    LowRankFactors f = truncatedSVD(w, m, n, rank);
    int64_t r = std::min(rank, p);
    ASSERT_EQ(f.rank, r);
    ASSERT_EQ(int64_t(f.a.size()), m * r);
    ASSERT_EQ(int64_t(f.b.size()), r * n);
    double dropped = 0;
    for (int64_t i = r; i < p; ++i)
      dropped += svd.s[i] * svd.s[i];
    double err = frobenius(lowRankResidual(w, f, m, n));
    // The factors are floats: each entry rounds by <= 2^-24 relative, so A·B
    // moves by <= 2^-24 (|A|_F |B|_2 + |A|_2 |B|_F) = 2^-23 sqrt(s_0 sum s_i)
    // <= 2^-23 sqrt(p) s_0, and the error norm by as much: 6.7e-6 for 40 x
    // 25 (s_0 ~ 11.3, |W| ~ 32), 3.8e-6 for 16 x 16 (s_0 ~ 8, |W| ~ 16).
    // 1e-6 |W| leaves >= 4x.
    EXPECT_NEAR(err, std::sqrt(dropped), 1e-6 * norm) << "rank " << rank;
    // Balanced split: ||A[:, i]|| = ||B[i, :]|| = sqrt(s_i).
    for (int64_t i = 0; i < r; ++i) {
      double aNorm = 0, bNorm = 0;
      for (int64_t row = 0; row < m; ++row)
        aNorm += double(f.a[row * r + i]) * f.a[row * r + i];
      for (int64_t col = 0; col < n; ++col)
        bNorm += double(f.b[i * n + col]) * f.b[i * n + col];
      // Unit singular vectors (to ~1e-14) scaled by sqrt(s_i), each entry
      // rounded to float: the norms are within 2^-24 = 6e-8 relative. 1e-6
      // leaves 16x.
      EXPECT_NEAR(std::sqrt(aNorm), std::sqrt(svd.s[i]),
                  1e-6 * std::sqrt(svd.s[i]));
      EXPECT_NEAR(std::sqrt(bNorm), std::sqrt(svd.s[i]),
                  1e-6 * std::sqrt(svd.s[i]));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, TruncatedSVDTest,
                         ::testing::Values(std::make_pair(40, 25),
                                           std::make_pair(25, 40),
                                           std::make_pair(16, 16)));

TEST(TruncatedSVDTest, RecoversLowRankMatrixAndHandlesRankDeficiency) {
  constexpr int64_t m = 30, n = 20, trueRank = 3;
  std::mt19937 rng(9);
  Floats x = randomNormal(m * trueRank, rng),
         y = randomNormal(trueRank * n, rng);
  Floats w(m * n, 0.0f);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double acc = 0;
      for (int64_t l = 0; l < trueRank; ++l)
        acc += double(x[i * trueRank + l]) * y[l * n + j];
      w[i * n + j] = float(acc);
    }
  for (int64_t rank : {trueRank, int64_t(6)}) {
    LowRankFactors f = truncatedSVD(w, m, n, rank);
    // W is exactly rank 3 up to its own float rounding (2^-24 |W|); the
    // float factors add <= 2^-23 sqrt(r) s_0 <= 2^-23 sqrt(3) |W| = 2e-7
    // |W| (rank 6: the extra components are of the size of W's rounding).
    // 1e-6 leaves > 3x.
    EXPECT_LT(frobenius(lowRankResidual(w, f, m, n)), 1e-6 * frobenius(w));
    for (float v : f.a)
      EXPECT_TRUE(std::isfinite(v));
    for (float v : f.b)
      EXPECT_TRUE(std::isfinite(v));
  }
  LowRankFactors zero = truncatedSVD(Floats(m * n, 0.0f), m, n, 2);
  EXPECT_EQ(zero.rank, 2);
  EXPECT_EQ(zero.a, Floats(m * 2, 0.0f));
  EXPECT_EQ(zero.b, Floats(2 * n, 0.0f));
}

TEST(TruncatedSVDTest, MultiplyFactors) {
  LowRankFactors f;
  f.rank = 2;
  f.a = {1, 2, 3, 4, 5, 6};    // 3 x 2
  f.b = {1, 0, -1, 2, 0.5, 1}; // 2 x 3
  Floats expected = {5, 1, 1, 11, 2, 1, 17, 3, 1};
  EXPECT_EQ(multiplyFactors(f, 3, 3), expected);
}

//===----------------------------------------------------------------------===//
// LoftQ
//===----------------------------------------------------------------------===//

QuantFormat groupFormat(unsigned bits, bool symmetric, bool normalFloat) {
  QuantFormat fmt;
  fmt.bits = bits;
  fmt.granularity = Granularity::Group;
  fmt.axis = 1;
  fmt.groupSize = 16;
  fmt.symmetric = symmetric;
  if (normalFloat)
    fmt.codebook = normalFloatCodebook(bits);
  return fmt;
}

/// A weight-like matrix: Gaussian with a few large outliers and a decaying
/// low-rank component.
Floats weightLike(int64_t m, int64_t n, unsigned seed) {
  std::mt19937 rng(seed);
  Floats w = randomNormal(m * n, rng, 0.02f);
  Floats x = randomNormal(m * 4, rng), y = randomNormal(4 * n, rng);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j)
      for (int64_t l = 0; l < 4; ++l)
        w[i * n + j] += 0.01f / float(l + 1) * x[i * 4 + l] * y[l * n + j];
  std::uniform_int_distribution<int64_t> pick(0, m * n - 1);
  for (int i = 0; i < 10; ++i)
    w[pick(rng)] *= 8.0f;
  return w;
}

LoftQResult loftqOrDie(const Floats &w, int64_t m, int64_t n,
                       const QuantFormat &fmt, int64_t rank, int64_t iters) {
  llvm::Expected<LoftQResult> r = loftq(w, m, n, fmt, rank, iters);
  if (!r) {
    ADD_FAILURE() << llvm::toString(r.takeError());
    return {};
  }
  return std::move(*r);
}

double rtnError(const Floats &w, int64_t m, int64_t n, const QuantFormat &fmt) {
  Floats deq = dequantize(quantizeRTN(w, {m, n}, fmt), {m, n}, fmt);
  Doubles diff(w.size());
  for (size_t i = 0; i < w.size(); ++i)
    diff[i] = double(w[i]) - double(deq[i]);
  return frobenius(diff);
}

/// ||W - dequantize(Q) - A·B||_F recomputed from a result.
double loftqError(const Floats &w, int64_t m, int64_t n, const QuantFormat &fmt,
                  const LoftQResult &r) {
  Floats deq = dequantize(r.base, {m, n}, fmt);
  Doubles residual = lowRankResidual(w, r.lowRank, m, n);
  for (size_t i = 0; i < w.size(); ++i)
    residual[i] -= double(deq[i]);
  return frobenius(residual);
}

struct LoftQCase {
  const char *name;
  QuantFormat fmt;
  /// Whether further iterations are expected to help on the test data. With
  /// the symmetric integer grid ([-2^(b-1), 2^(b-1) - 1] * s, which clips
  /// +max|x|) the alternation drifts at higher ranks: A·B keeps absorbing
  /// the one-sided clipping error and the error after 5 iterations can
  /// exceed the one after the first (see docs/Quantizers.md).
  bool iterationsHelp;
};

void PrintTo(const LoftQCase &c, std::ostream *os) { *os << c.name; }

class LoftQTest : public ::testing::TestWithParam<LoftQCase> {};

TEST_P(LoftQTest, BeatsRTNAndErrorsAreConsistent) {
  const QuantFormat &fmt = GetParam().fmt;
  constexpr int64_t m = 96, n = 64, rank = 8, iters = 5;
  Floats w = weightLike(m, n, 41);
  double rtn = rtnError(w, m, n, fmt);
  LoftQResult r = loftqOrDie(w, m, n, fmt, rank, iters);
  ASSERT_EQ(int64_t(r.errors.size()), iters);
  EXPECT_EQ(r.lowRank.rank, rank);
  // Properties of the algorithm with wide margins (rank 8 removes a large
  // part of the error), not rounding bounds.
  for (double e : r.errors) {
    EXPECT_TRUE(std::isfinite(e));
    EXPECT_LT(e, rtn);
  }
  if (GetParam().iterationsHelp) {
    EXPECT_LT(r.errors.back(), r.errors.front());
  }
  // The reported error is that of the returned Q, A, B: the same double
  // quantity (float products are exact in double) summed in another order:
  // per entry <= (8 + 2) * 2^-53 (|W| + |Q| + |A||B|), and |W| < 20 |W - Q -
  // A B| even at 4 bits: <= 7e-14 relative. 1e-12 leaves > 10x.
  EXPECT_NEAR(r.errors.back(), loftqError(w, m, n, fmt, r),
              1e-12 * r.errors.back());
  // The first iteration is RTN plus the best rank-r fit of its residual.
  Floats deq = dequantize(quantizeRTN(w, {m, n}, fmt), {m, n}, fmt);
  Floats residual(w.size());
  for (size_t i = 0; i < w.size(); ++i)
    residual[i] = float(double(w[i]) - double(deq[i]));
  double firstExpected = frobenius(
      lowRankResidual(residual, truncatedSVD(residual, m, n, rank), m, n));
  // Same residual and factors as loftq's first iteration; loftq measures
  // against W - Q in double, this against the residual rounded to float:
  // <= 2^-24 |R| with |R| < 2 |R - A B| here: 1.2e-7 relative. 1e-5 leaves
  // 80x.
  EXPECT_NEAR(r.errors.front(), firstExpected, 1e-5 * firstExpected);
}

TEST_P(LoftQTest, ErrorDecreasesWithRank) {
  const QuantFormat &fmt = GetParam().fmt;
  constexpr int64_t m = 96, n = 64;
  Floats w = weightLike(m, n, 43);
  // With a single iteration Q is RTN's for every rank, so this checks
  // Eckart–Young on the residual; see LoftQCase for the symmetric grids.
  int64_t iters = GetParam().iterationsHelp ? 5 : 1;
  double previous = rtnError(w, m, n, fmt);
  for (int64_t rank : {2, 4, 8, 16}) {
    LoftQResult r = loftqOrDie(w, m, n, fmt, rank, iters);
    // A property (Eckart-Young), not a rounding bound: each rank step
    // removes far more than rounding (~1e-7 relative) can add.
    EXPECT_LT(r.errors.back(), previous) << "rank " << rank;
    previous = r.errors.back();
  }
}

INSTANTIATE_TEST_SUITE_P(
    Formats, LoftQTest,
    ::testing::Values(
        LoftQCase{"int2_sym", groupFormat(2, true, false), false},
        LoftQCase{"int3_sym", groupFormat(3, true, false), false},
        LoftQCase{"int2_asym", groupFormat(2, false, false), true},
        LoftQCase{"int3_asym", groupFormat(3, false, false), true},
        LoftQCase{"int4_asym", groupFormat(4, false, false), true},
        LoftQCase{"nf2", groupFormat(2, true, true), true},
        LoftQCase{"nf3", groupFormat(3, true, true), true},
        LoftQCase{"nf4", groupFormat(4, true, true), true}),
    [](const ::testing::TestParamInfo<LoftQCase> &info) {
      return std::string(info.param.name);
    });

TEST(LoftQSingleTest, OneIterationIsRTNPlusSVD) {
  constexpr int64_t m = 40, n = 32, rank = 4;
  Floats w = weightLike(m, n, 47);
  QuantFormat fmt = groupFormat(3, true, false);
  LoftQResult r = loftqOrDie(w, m, n, fmt, rank, 1);
  QuantizedData rtn = quantizeRTN(w, {m, n}, fmt);
  EXPECT_EQ(r.base.codes, rtn.codes);
  EXPECT_EQ(r.base.scales, rtn.scales);
  // Wide matrix (m < n) path too.
  QuantFormat asym = groupFormat(2, false, false);
  LoftQResult wide = loftqOrDie(w, n, m, asym, rank, 3);
  EXPECT_LT(wide.errors.back(), rtnError(w, n, m, asym));
}

TEST(LoftQSingleTest, InvalidInputs) {
  Floats w(12, 0.5f);
  QuantFormat fmt = groupFormat(2, true, false);
  auto errorOf = [&](const Floats &weights, int64_t m, int64_t n,
                     const QuantFormat &f, int64_t rank, int64_t iters) {
    llvm::Expected<LoftQResult> r = loftq(weights, m, n, f, rank, iters);
    return r ? std::string() : llvm::toString(r.takeError());
  };
  EXPECT_EQ(errorOf(w, 3, 4, fmt, 2, 1), "");
  EXPECT_EQ(errorOf(w, 3, 4, fmt, 0, 1),
            "loftq: rank must be at least 1, got 0");
  EXPECT_EQ(errorOf(w, 3, 4, fmt, 2, 0),
            "loftq: iteration count must be at least 1, got 0");
  EXPECT_EQ(errorOf(w, 3, 5, fmt, 2, 1),
            "loftq: weight has 12 elements, expected 3x5 = 15");
  QuantFormat bad = fmt;
  bad.bits = 1;
  EXPECT_NE(errorOf(w, 3, 4, bad, 2, 1).find("loftq: invalid format"),
            std::string::npos);
  Floats nan = w;
  nan[3] = NAN;
  EXPECT_EQ(errorOf(nan, 3, 4, fmt, 2, 1),
            "loftq: weight contains non-finite values");
}

} // namespace
