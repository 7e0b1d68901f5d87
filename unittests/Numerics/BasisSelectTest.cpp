//===- BasisSelectTest.cpp - Tests for Basis Selection numerics -----------===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#include "TestUtil.h"

#include "qlr/Numerics/BasisSelect.h"

#include "gtest/gtest.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <random>

using namespace qlr::numerics;
using namespace qlr::numerics::test;

namespace {

/// Row-major product of a (rows x inner) and b (inner x cols).
template <typename T, typename U>
Doubles matmul(const std::vector<T> &a, const std::vector<U> &b, int64_t rows,
               int64_t inner, int64_t cols) {
  Doubles c(rows * cols, 0.0);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t l = 0; l < inner; ++l) {
      double x = a[i * inner + l];
      for (int64_t j = 0; j < cols; ++j)
        c[i * cols + j] += x * double(b[l * cols + j]);
    }
  return c;
}

template <typename T>
Doubles transpose(const std::vector<T> &a, int64_t rows, int64_t cols) {
  Doubles t(rows * cols);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j)
      t[j * rows + i] = a[i * cols + j];
  return t;
}

/// G = XᵀX for X [rows, n].
Doubles gramOf(const Floats &x, int64_t rows, int64_t n) {
  return matmul(transpose(x, rows, n), x, n, rows, n);
}

/// A·B in double.
Doubles product(const LowRankFactors &f, int64_t m, int64_t n) {
  return matmul(f.a, f.b, m, f.rank, n);
}

Doubles minus(Doubles a, const Doubles &b) {
  for (auto [x, y] : llvm::zip_equal(a, b))
    x -= y;
  return a;
}

/// ‖X (W − V)ᵀ‖_F: the output error of approximating W [m, n] by V on the
/// inputs X [rows, n].
double outputError(const Floats &w, const Doubles &approx, const Floats &x,
                   int64_t m, int64_t n, int64_t rows) {
  Doubles diff = minus(Doubles(w.begin(), w.end()), approx);
  return frobenius(matmul(x, transpose(diff, m, n), rows, n, m));
}

/// Column c of A (m x r) and row c of B (r x n) have equal norms: both are
/// sqrt(s) times a unit vector (orthonormal to ~1e-14 in double), each entry
/// rounded to float, so the norms are within 2 * 2^-24 = 1.2e-7 relative;
/// 1e-6 (1 + |a|) leaves 8x (measured 2.4e-8).
void expectBalanced(const LowRankFactors &f, int64_t m, int64_t n) {
  for (int64_t c = 0; c < f.rank; ++c) {
    double a = 0, b = 0;
    for (int64_t i = 0; i < m; ++i)
      a += double(f.a[i * f.rank + c]) * f.a[i * f.rank + c];
    for (int64_t j = 0; j < n; ++j)
      b += double(f.b[c * n + j]) * f.b[c * n + j];
    EXPECT_NEAR(std::sqrt(a), std::sqrt(b), 1e-6 * (1 + std::sqrt(a))) << c;
  }
}

/// Inputs [rows, n] with very different scales along random directions.
Floats anisotropicInputs(int64_t rows, int64_t n, std::mt19937 &rng) {
  Floats z = randomNormal(rows * n, rng);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < n; ++j)
      z[i * n + j] *= float(std::pow(0.6, double(j)));
  Floats mix = randomNormal(n * n, rng);
  Doubles x = matmul(z, mix, rows, n, n);
  return Floats(x.begin(), x.end());
}

/// Inputs [rows, n] spanning a random `dim`-dimensional subspace.
Floats subspaceInputs(int64_t rows, int64_t n, int64_t dim, std::mt19937 &rng) {
  Floats coeffs = randomNormal(rows * dim, rng);
  Floats basis = randomNormal(dim * n, rng);
  Doubles x = matmul(coeffs, basis, rows, dim, n);
  return Floats(x.begin(), x.end());
}

//===----------------------------------------------------------------------===//
// Scores and unrefit factors
//===----------------------------------------------------------------------===//

TEST(BasisSelectTest, MagnitudeUnrefitIsTruncatedSVD) {
  constexpr int64_t m = 20, n = 12, r = 5;
  std::mt19937 rng(1);
  Floats w = randomNormal(m * n, rng);
  SVD svd = thinSVD(w, m, n);
  std::vector<int64_t> kept = topBases(magnitudeScores(svd), r);
  ASSERT_EQ(kept, (std::vector<int64_t>{0, 1, 2, 3, 4}));
  Doubles values = singularValues(w, m, n);
  ASSERT_EQ(values.size(), svd.s.size());
  // Two backward-stable double SVDs: within a small multiple of p * 2^-53 *
  // s_0 (12 * 1.1e-16 = 1.3e-15 relative to s_0); 1e-12 leaves > 100x.
  for (size_t i = 0; i < values.size(); ++i)
    EXPECT_NEAR(values[i], svd.s[i], 1e-12 * svd.s[0]) << i;
  LowRankFactors f = basisFactors(svd, kept);
  ASSERT_EQ(f.rank, r);
  ASSERT_EQ(int64_t(f.a.size()), m * r);
  ASSERT_EQ(int64_t(f.b.size()), r * n);
  // Eckart–Young: the error is the energy of the dropped singular values.
  double tail = 0;
  for (int64_t i = r; i < n; ++i)
    tail += svd.s[i] * svd.s[i];
  Doubles err = minus(Doubles(w.begin(), w.end()), product(f, m, n));
  // Rounding the factors to float moves A·B by D, |D| <= 2^-23 sqrt(r) s_0
  // = 2.1e-6 (s_0 ~ 7.9), but D is orthogonal to the dropped part E to first
  // order (E's rows and columns are orthogonal to the kept singular
  // vectors), so |E - D| = |E| + O(|D|^2 / |E|): ~1e-12 / |E|, |E| ~ 4.
  // 1e-11 |E| leaves > 20x (measured 2e-16 relative).
  EXPECT_NEAR(frobenius(err), std::sqrt(tail), 1e-11 * std::sqrt(tail));
  // The same matrix as truncatedSVD: both products are within 2.1e-6 of
  // the exact truncation (above), so 1e-5 leaves 2.4x.
  Doubles reference = product(truncatedSVD(w, m, n, r), m, n);
  EXPECT_LT(frobenius(minus(product(f, m, n), reference)), 1e-5);
  expectBalanced(f, m, n);
}

TEST(BasisSelectTest, EnergyScoresMatchDirectComputation) {
  constexpr int64_t m = 10, n = 8, rows = 50;
  std::mt19937 rng(2);
  Floats w = randomNormal(m * n, rng);
  Floats x = anisotropicInputs(rows, n, rng);
  SVD svd = thinSVD(w, m, n);
  Doubles g = gramOf(x, rows, n);
  Doubles scores = energyScores(svd, g);
  ASSERT_EQ(scores.size(), svd.s.size());
  for (size_t i = 0; i < scores.size(); ++i) {
    // σ_i² ‖X v_i‖².
    Doubles vi(svd.vt.begin() + i * n, svd.vt.begin() + (i + 1) * n);
    double xv = frobenius(matmul(x, vi, rows, n, 1));
    double direct = svd.s[i] * svd.s[i] * xv * xv;
    // Both in double: s^2 v^T G v against s^2 |X v|^2, summed differently.
    // With cancellation in v^T G v the difference is <= (n + rows + 2) *
    // 2^-53 * s^2 |v|^T |G| |v| <= 60 * 1.1e-16 * 36 * 400 ~ 1e-10 (|G_ij| <=
    // 50 for these inputs); 1e-9 (1 + score) leaves 10x (measured 4e-16).
    EXPECT_NEAR(scores[i], direct, 1e-9 * (1 + direct)) << i;
  }
  // Scaling G (e.g. the (2/rows) Hessian) does not change the selection.
  Doubles h = g;
  for (double &v : h)
    v *= 2.0 / rows;
  EXPECT_EQ(topBases(energyScores(svd, h), 4), topBases(scores, 4));
  // The data reorders the bases: not simply the top σ.
  EXPECT_NE(topBases(scores, n), topBases(magnitudeScores(svd), n));
}

TEST(BasisSelectTest, TopBasesOrdersByScoreThenIndex) {
  Doubles scores = {1.0, 3.0, 2.0, 3.0, 0.0};
  EXPECT_EQ(topBases(scores, 3), (std::vector<int64_t>{1, 3, 2}));
  EXPECT_EQ(topBases(scores, 9).size(), 5u);
  EXPECT_TRUE(topBases(scores, 0).empty());
}

//===----------------------------------------------------------------------===//
// Least-squares refit
//===----------------------------------------------------------------------===//

TEST(BasisSelectTest, LsqRefitBeatsUnrefitAndSolvesNormalEquations) {
  constexpr int64_t m = 16, n = 12, rows = 40, r = 4;
  std::mt19937 rng(3);
  Floats w = randomNormal(m * n, rng);
  Floats x = anisotropicInputs(rows, n, rng);
  SVD svd = thinSVD(w, m, n);
  Doubles g = gramOf(x, rows, n);
  for (std::vector<int64_t> kept :
       {topBases(energyScores(svd, g), r), topBases(magnitudeScores(svd), r)}) {
    LowRankFactors unrefit = basisFactors(svd, kept);
    auto refit = refitFactors(w, svd, kept, g);
    ASSERT_TRUE(bool(refit)) << llvm::toString(refit.takeError());
    ASSERT_EQ(refit->rank, r);
    double before = outputError(w, product(unrefit, m, n), x, m, n, rows);
    double after = outputError(w, product(*refit, m, n), x, m, n, rows);
    // The refit is optimal in exact arithmetic; float factors move either
    // error by ~2^-23 sqrt(r) relative (2.4e-7): 1e-6 leaves 4x (the refit
    // here is far better: after <= 0.35 before).
    EXPECT_LE(after, before * (1 + 1e-6));

    // Independently: A = W G V_K (V_Kᵀ G V_K)⁻¹, product A V_Kᵀ.
    Doubles vk(n * r);
    for (int64_t c = 0; c < r; ++c)
      for (int64_t j = 0; j < n; ++j)
        vk[j * r + c] = svd.vt[kept[c] * n + j];
    Doubles gv = matmul(g, vk, n, n, r);
    Doubles mat = matmul(transpose(vk, n, r), gv, r, n, r);
    Doubles rhsT = transpose(matmul(w, gv, m, n, r), m, r);   // r x m
    Doubles a = transpose(solveDense(mat, rhsT, r, m), r, m); // m x r
    Doubles expected = matmul(a, transpose(vk, n, r), m, r, n);
    Doubles got = product(*refit, m, n);
    // The refit's float factors: <= 2^-23 sqrt(r) = 2.4e-7 relative; the two
    // double solves (LLT against Gaussian elimination) agree to cond(M) *
    // 2^-53 with cond(M) < 1e6 here: < 1e-10. 1e-5 leaves 40x (measured
    // 3.5e-8).
    EXPECT_LT(frobenius(minus(got, expected)), 1e-5 * frobenius(expected));
    // The refit product keeps B's row space: it is rebalanced, not changed.
    expectBalanced(*refit, m, n);
  }
}

TEST(BasisSelectTest, LowDimensionalInputsStructured) {
  // W = Σ σ_i u_i v_iᵀ whose three weakest bases span the inputs: energy
  // keeps exactly those and reproduces W X; magnitude keeps three bases the
  // inputs never excite.
  constexpr int64_t m = 8, n = 8, rows = 30, r = 3;
  auto hadamard = [](int64_t i, int64_t j) {
    return (__builtin_popcountll(uint64_t(i & j)) % 2 ? -1.0 : 1.0) /
           std::sqrt(8.0);
  };
  Floats w(m * n, 0.0f);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double v = 0;
      for (int64_t b = 0; b < 8; ++b)
        v += (8 - b) * hadamard(i, (b * 3) % 8) * hadamard(b, j);
      w[i * n + j] = float(v);
    }
  std::mt19937 rng(4);
  Floats coeffs = randomNormal(rows * 3, rng);
  Floats x(rows * n);
  for (int64_t t = 0; t < rows; ++t)
    for (int64_t j = 0; j < n; ++j)
      x[t * n + j] = float(coeffs[t * 3] * hadamard(5, j) +
                           coeffs[t * 3 + 1] * hadamard(6, j) +
                           coeffs[t * 3 + 2] * hadamard(7, j));
  SVD svd = thinSVD(w, m, n);
  Doubles g = gramOf(x, rows, n);
  std::vector<int64_t> energy = topBases(energyScores(svd, g), r);
  std::sort(energy.begin(), energy.end());
  EXPECT_EQ(energy, (std::vector<int64_t>{5, 6, 7}));
  Doubles wx = matmul(x, transpose(w, m, n), rows, n, m);
  double scale = frobenius(wx);
  // Tolerances below: the inputs lie in the span of the three weakest bases
  // up to their float rounding (2^-24 |X|), and the float factors move A·B
  // by <= 2^-23 sqrt(3) s_0 = 1.6e-6 (s_0 = 8); relative to |W X^T| (the
  // excited singular values are 1..3) both stay below ~2e-6. 1e-5 leaves
  // 5x (measured <= 7e-8).
  for (bool lsq : {false, true}) {
    LowRankFactors f = basisFactors(svd, energy);
    if (lsq) {
      auto refit = refitFactors(w, svd, energy, g);
      ASSERT_TRUE(bool(refit)) << llvm::toString(refit.takeError());
      f = std::move(*refit);
    }
    EXPECT_LT(outputError(w, product(f, m, n), x, m, n, rows), 1e-5 * scale)
        << "lsq=" << lsq;
  }
  std::vector<int64_t> magnitude = topBases(magnitudeScores(svd), r);
  LowRankFactors plain = basisFactors(svd, magnitude);
  EXPECT_NEAR(outputError(w, product(plain, m, n), x, m, n, rows), scale,
              1e-5 * scale);
  // The refit cannot help either (V_Kᵀ G V_K = 0): it keeps W V_K. Both
  // products are float factors of the same rank-3 matrix: <= 2 * 1.6e-6
  // apart. 1e-5 leaves 3x (measured 0).
  auto refit = refitFactors(w, svd, magnitude, g);
  ASSERT_TRUE(bool(refit)) << llvm::toString(refit.takeError());
  EXPECT_LT(frobenius(minus(product(*refit, m, n), product(plain, m, n))),
            1e-5);
}

TEST(BasisSelectTest, LowDimensionalInputsGeneric) {
  // Inputs in a random 3-dimensional subspace: energy selection with the
  // least-squares refit reproduces W X at rank 3; plain truncated SVD does
  // not.
  constexpr int64_t m = 14, n = 10, rows = 25, r = 3;
  std::mt19937 rng(5);
  Floats w = randomNormal(m * n, rng);
  Floats x = subspaceInputs(rows, n, 3, rng);
  SVD svd = thinSVD(w, m, n);
  Doubles g = gramOf(x, rows, n);
  double scale = frobenius(matmul(x, transpose(w, m, n), rows, n, m));
  auto refit = refitFactors(w, svd, topBases(energyScores(svd, g), r), g);
  ASSERT_TRUE(bool(refit)) << llvm::toString(refit.takeError());
  // Exact in exact arithmetic; the inputs leave their subspace by their
  // float rounding (2^-24) and the float factors add <= 2^-23 sqrt(3) s_0
  // |X| (~1e-6 of scale here). 1e-5 leaves > 2x (measured 4e-8).
  EXPECT_LT(outputError(w, product(*refit, m, n), x, m, n, rows), 1e-5 * scale);
  LowRankFactors plain = basisFactors(svd, topBases(magnitudeScores(svd), r));
  // A property (measured 0.49 scale), not a rounding bound.
  EXPECT_GT(outputError(w, product(plain, m, n), x, m, n, rows), 0.05 * scale);

  // Rank 5 > the input dimension: M is singular, the damped solve still fits
  // the outputs and stays finite.
  auto wide = refitFactors(w, svd, topBases(energyScores(svd, g), 5), g);
  ASSERT_TRUE(bool(wide)) << llvm::toString(wide.takeError());
  // The damping (lambda = 1e-6 mean(diag G)) biases the fit by about
  // lambda / (the smallest excited eigenvalue of G) ~ 1e-6 * 10 / 3, plus
  // the float factors (~1e-6): 1e-4 leaves > 10x (measured 1.1e-7).
  EXPECT_LT(outputError(w, product(*wide, m, n), x, m, n, rows), 1e-4 * scale);
  for (float v : wide->a)
    ASSERT_TRUE(std::isfinite(v));
}

TEST(BasisSelectTest, RefitWithoutDataKeepsUnrefitProduct) {
  constexpr int64_t m = 9, n = 7;
  std::mt19937 rng(6);
  Floats w = randomNormal(m * n, rng);
  SVD svd = thinSVD(w, m, n);
  std::vector<int64_t> kept = {0, 2, 3};
  auto refit = refitFactors(w, svd, kept, Doubles(n * n, 0.0));
  ASSERT_TRUE(bool(refit)) << llvm::toString(refit.takeError());
  // Both are float factors of W V_K V_K^T: each within 2^-23 sqrt(3) s_0 =
  // 1.2e-6 (s_0 ~ 5.6) of it. 1e-5 leaves 4x (measured 0).
  EXPECT_LT(frobenius(minus(product(*refit, m, n),
                            product(basisFactors(svd, kept), m, n))),
            1e-5);
}

TEST(BasisSelectTest, RefitRejectsBadArguments) {
  constexpr int64_t m = 4, n = 3;
  Floats w(m * n, 1.0f);
  SVD svd = thinSVD(w, m, n);
  Doubles g(n * n, 0.0);
  auto message = [](llvm::Expected<LowRankFactors> e) {
    EXPECT_FALSE(bool(e));
    return e ? std::string() : llvm::toString(e.takeError());
  };
  EXPECT_NE(message(refitFactors(w, svd, {0, 0}, g)).find("repeated"),
            std::string::npos);
  EXPECT_NE(message(refitFactors(w, svd, {3}, g)).find("index 3"),
            std::string::npos);
  EXPECT_NE(message(refitFactors(w, svd, {0}, Doubles(4))).find("Gram"),
            std::string::npos);
  EXPECT_NE(message(refitFactors(Floats(5), svd, {0}, g)).find("weight"),
            std::string::npos);
}

//===----------------------------------------------------------------------===//
// Rank allocation
//===----------------------------------------------------------------------===//

TEST(BasisSelectTest, BreakEvenRank) {
  EXPECT_EQ(breakEvenRank(8, 8), 4);
  EXPECT_EQ(breakEvenRank(16, 16), 8);
  EXPECT_EQ(breakEvenRank(1536, 576), 418);
  EXPECT_EQ(breakEvenRank(1, 9), 0);
}

TEST(BasisSelectTest, AllocationPrefersSlowlyDecayingSpectrum) {
  // Two 16 x 16 layers (a basis costs 32, break-even 8): one with a flat
  // spectrum (every basis 1/16 of its layer), one dominated by one basis
  // (the others 1/115 each). Budget 256 = 8 bases: after min-rank 1 each,
  // all 6 remaining go to the flat layer.
  Doubles flat(16, 1.0), spiked(16, 1.0);
  spiked[3] = 100.0;
  BasisLayer layers[] = {{16, 16, spiked}, {16, 16, flat}};
  auto alloc = allocateRanks(layers, 0.5, 1);
  ASSERT_TRUE(bool(alloc)) << llvm::toString(alloc.takeError());
  EXPECT_EQ(alloc->budget, 256);
  EXPECT_EQ(alloc->ranks, (std::vector<int64_t>{1, 7}));
  EXPECT_EQ(alloc->dense, (std::vector<bool>{false, false}));
  EXPECT_EQ(alloc->params, 256);
}

TEST(BasisSelectTest, AllocationTurnsDenseAtBreakEven) {
  // 8 x 8: bases cost 16, break-even 4; reaching it stores the dense 64.
  Doubles flat(8, 1.0);
  BasisLayer layer[] = {{8, 8, flat}};
  auto full = allocateRanks(layer, 1.0, 1);
  ASSERT_TRUE(bool(full)) << llvm::toString(full.takeError());
  EXPECT_EQ(full->ranks, (std::vector<int64_t>{4}));
  EXPECT_EQ(full->dense, (std::vector<bool>{true}));
  EXPECT_EQ(full->params, 64);
  // 48 parameters: three bases; the dense step (16 more) does not fit.
  auto partial = allocateRanks(layer, 0.75, 1);
  ASSERT_TRUE(bool(partial)) << llvm::toString(partial.takeError());
  EXPECT_EQ(partial->ranks, (std::vector<int64_t>{3}));
  EXPECT_EQ(partial->dense, (std::vector<bool>{false}));
  EXPECT_EQ(partial->params, 48);
}

TEST(BasisSelectTest, AllocationSkipsZeroScores) {
  // A rank-2 weight: the remaining bases (and the dense step) gain nothing.
  Doubles scores = {5.0, 3.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
  BasisLayer layer[] = {{8, 8, scores}};
  auto alloc = allocateRanks(layer, 1.0, 1);
  ASSERT_TRUE(bool(alloc)) << llvm::toString(alloc.takeError());
  EXPECT_EQ(alloc->ranks, (std::vector<int64_t>{2}));
  EXPECT_EQ(alloc->dense, (std::vector<bool>{false}));
  EXPECT_EQ(alloc->params, 32);
}

TEST(BasisSelectTest, AllocationMinRank) {
  Doubles flat(16, 1.0);
  BasisLayer layers[] = {{16, 16, flat}, {16, 16, flat}};
  // min-rank beats the budget (51 < 2 * 3 * 32).
  auto over = allocateRanks(layers, 0.1, 3);
  ASSERT_TRUE(bool(over)) << llvm::toString(over.takeError());
  EXPECT_EQ(over->budget, 51);
  EXPECT_EQ(over->ranks, (std::vector<int64_t>{3, 3}));
  EXPECT_EQ(over->params, 192);
  // min-rank at the break-even: dense from the start.
  auto dense = allocateRanks(layers, 0.5, 8);
  ASSERT_TRUE(bool(dense)) << llvm::toString(dense.takeError());
  EXPECT_EQ(dense->dense, (std::vector<bool>{true, true}));
  EXPECT_EQ(dense->params, 512);
}

TEST(BasisSelectTest, AllocationMatchesBruteForceOptimum) {
  // Equal basis costs (m + n = 48), decreasing shares and budgets that keep
  // every layer well below its break-even: the optimum keeps the globally
  // largest shares, which greedy must find. Compared against exhaustive
  // search.
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> uniform(0.2, 1.0);
  const int64_t shapes[][2] = {{16, 32}, {24, 24}, {12, 36}, {20, 28}};
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<Doubles> scores;
    std::vector<BasisLayer> layers;
    for (auto &shape : shapes) {
      Doubles s(std::min(shape[0], shape[1]));
      double decay = uniform(rng), v = 1.0;
      for (double &x : s) {
        x = v * uniform(rng);
        v *= decay;
      }
      scores.push_back(s);
    }
    for (auto [shape, s] : llvm::zip_equal(shapes, scores))
      layers.push_back({shape[0], shape[1], s});
    int64_t total = 0;
    for (auto &shape : shapes)
      total += shape[0] * shape[1];
    // 4 .. 8 bases of 48 parameters.
    int64_t bases = 4 + trial % 5;
    double ratio = (48.0 * bases + 0.5) / double(total);
    auto alloc = allocateRanks(layers, ratio, 1);
    ASSERT_TRUE(bool(alloc)) << llvm::toString(alloc.takeError());
    EXPECT_LE(alloc->params, alloc->budget);

    // Shares and gains.
    auto gain = [&](size_t layer, int64_t r) {
      Doubles s = scores[layer];
      std::sort(s.begin(), s.end(), std::greater<double>());
      double sum = std::accumulate(s.begin(), s.end(), 0.0);
      return std::accumulate(s.begin(), s.begin() + r, 0.0) / sum;
    };
    double best = 0;
    std::vector<int64_t> r(4, 1);
    std::function<void(size_t, int64_t)> search = [&](size_t l, int64_t left) {
      if (l == r.size()) {
        double g = 0;
        for (size_t i = 0; i < r.size(); ++i)
          g += gain(i, r[i]);
        best = std::max(best, g);
        return;
      }
      int64_t b = breakEvenRank(shapes[l][0], shapes[l][1]);
      for (r[l] = 1; r[l] < b && r[l] <= left; ++r[l])
        search(l + 1, left - r[l]);
      r[l] = 1;
    };
    search(0, bases);
    double got = 0;
    for (size_t i = 0; i < r.size(); ++i) {
      ASSERT_FALSE(alloc->dense[i]);
      got += gain(i, alloc->ranks[i]);
    }
    // The same gain() sums on both sides: equal when greedy finds an
    // optimum; 1e-12 only absorbs a tie between allocations whose sums of
    // four gains (each a ratio of sums of < 40 doubles) round differently
    // (< 1e-14).
    EXPECT_NEAR(got, best, 1e-12) << "trial " << trial;
    EXPECT_EQ(alloc->params, 48 * bases);
  }
}

TEST(BasisSelectTest, AllocationRespectsBudget) {
  std::mt19937 rng(8);
  std::uniform_int_distribution<int64_t> dim(1, 40);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<Doubles> scores;
    std::vector<std::pair<int64_t, int64_t>> shapes;
    for (int l = 0; l < 5; ++l) {
      int64_t m = dim(rng), n = dim(rng);
      Doubles s(std::min(m, n));
      for (double &x : s)
        x = std::pow(uniform(rng), 3.0);
      scores.push_back(s);
      shapes.push_back({m, n});
    }
    std::vector<BasisLayer> layers;
    for (size_t l = 0; l < shapes.size(); ++l)
      layers.push_back({shapes[l].first, shapes[l].second, scores[l]});
    double ratio = 0.05 + 0.95 * uniform(rng);
    auto alloc = allocateRanks(layers, ratio, 1);
    ASSERT_TRUE(bool(alloc)) << llvm::toString(alloc.takeError());
    int64_t params = 0, floor = 0;
    for (size_t l = 0; l < shapes.size(); ++l) {
      auto [m, n] = shapes[l];
      int64_t b = breakEvenRank(m, n);
      EXPECT_GE(alloc->ranks[l], 1);
      EXPECT_LE(alloc->ranks[l], std::min(m, n));
      EXPECT_EQ(alloc->dense[l], alloc->ranks[l] >= b);
      params += alloc->dense[l] ? m * n : alloc->ranks[l] * (m + n);
      floor += b <= 1 ? m * n : m + n;
    }
    EXPECT_EQ(params, alloc->params);
    if (floor <= alloc->budget) {
      EXPECT_LE(alloc->params, alloc->budget) << "trial " << trial;
    }
  }
}

TEST(BasisSelectTest, AllocationRejectsBadArguments) {
  Doubles s(4, 1.0), three(3, 1.0), negative = {1.0, -1.0, 0.0, 0.0};
  BasisLayer good[] = {{4, 6, s}};
  for (double ratio : {0.0, -0.5, 1.5, std::nan("")}) {
    auto alloc = allocateRanks(good, ratio, 1);
    ASSERT_FALSE(bool(alloc));
    EXPECT_NE(llvm::toString(alloc.takeError()).find("ratio"),
              std::string::npos);
  }
  auto minRank = allocateRanks(good, 0.5, 0);
  ASSERT_FALSE(bool(minRank));
  EXPECT_NE(llvm::toString(minRank.takeError()).find("min-rank"),
            std::string::npos);
  BasisLayer wrongCount[] = {{4, 6, three}};
  auto count = allocateRanks(wrongCount, 0.5, 1);
  ASSERT_FALSE(bool(count));
  llvm::consumeError(count.takeError());
  BasisLayer negativeScore[] = {{4, 6, negative}};
  auto neg = allocateRanks(negativeScore, 0.5, 1);
  ASSERT_FALSE(bool(neg));
  llvm::consumeError(neg.takeError());
}

} // namespace
