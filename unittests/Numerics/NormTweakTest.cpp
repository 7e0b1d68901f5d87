//===- NormTweakTest.cpp - Norm Tweaking numerics -------------------------===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// The Norm Tweaking losses against closed forms and central finite
// differences, and Adam. The network's gradients come from qlr-differentiate
// (test/python/test_differentiate.py checks them against finite
// differences).
//
//===----------------------------------------------------------------------===//

#include "TestUtil.h"

#include "qlr/Numerics/NormTweak.h"

#include "gtest/gtest.h"

#include <cmath>
#include <functional>
#include <random>

using namespace qlr::numerics;
using namespace qlr::numerics::test;

namespace {

/// ||a - b|| / ||b||.
template <typename A, typename B>
double relativeError(const std::vector<A> &a, const std::vector<B> &b) {
  EXPECT_EQ(a.size(), b.size());
  double diff = 0, norm = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    double d = double(a[i]) - double(b[i]);
    diff += d * d;
    norm += double(b[i]) * double(b[i]);
  }
  return std::sqrt(diff / std::max(norm, 1e-300));
}

/// Central differences of L(v) = sum(y(v) * r) with respect to each entry of
/// v.
std::vector<double> numericGradient(std::vector<double> &v,
                                    const std::function<double()> &loss) {
  std::vector<double> g(v.size());
  const double step = 1e-6;
  for (size_t i = 0; i < v.size(); ++i) {
    double saved = v[i];
    v[i] = saved + step;
    double plus = loss();
    v[i] = saved - step;
    double minus = loss();
    v[i] = saved;
    g[i] = (plus - minus) / (2 * step);
  }
  return g;
}

//===----------------------------------------------------------------------===//
// Losses
//===----------------------------------------------------------------------===//

TEST(NormTweakTest, LossValuesMatchClosedForm) {
  // Channel 0: yq = 1, 3, 5 (mean 3, variance 8/3), yf = 0, 0, 3 (mean 1,
  // variance 2). Channel 1: yq = 2, 4, 9 (mean 5, variance 26/3), yf = 0.
  std::vector<double> yq = {1, 2, 3, 4, 5, 9};
  std::vector<double> yf = {0, 0, 0, 0, 3, 0};
  std::vector<double> grad(6);
  double distribution =
      normTweakLoss<double>(NormTweakLoss::Distribution, yq, yf, 3, 2, grad);
  // Small integers: the sums are exact; about ten roundings of values < 16
  // remain (the divisions by 3, the squared deviations from 5/3 and 20/3):
  // <= 10 * 2^-53 * 16 ~ 2e-14. 1e-13 leaves 5x. The gradients are single
  // roundings of values < 2 (< 3e-16).
  EXPECT_NEAR(distribution, ((2 + 2.0 / 3) + (5 + 26.0 / 3)) / 2, 1e-13);
  // (sign(dmu) + 2 sign(dvar) (yq - muq)) / (rows * C).
  std::vector<double> expected = {(1 - 4) / 6.0, (1 - 6) / 6.0, 1 / 6.0,
                                  (1 - 2) / 6.0, (1 + 4) / 6.0, (1 + 8) / 6.0};
  for (size_t i = 0; i < 6; ++i)
    EXPECT_NEAR(grad[i], expected[i], 1e-14);

  // An exact integer sum divided by 6: one rounding.
  double mse =
      normTweakLoss<double>(NormTweakLoss::MeanSquared, yq, yf, 3, 2, grad);
  EXPECT_NEAR(mse, (1 + 4 + 9 + 16 + 4 + 81) / 6.0, 1e-14);
  for (size_t i = 0; i < 6; ++i)
    EXPECT_NEAR(grad[i], 2 * (yq[i] - yf[i]) / 6.0, 1e-14);

  // Equal distributions: zero loss and (sign(0) = 0) zero gradient.
  EXPECT_EQ(
      normTweakLoss<double>(NormTweakLoss::Distribution, yq, yq, 3, 2, grad),
      0.0);
  for (double g : grad)
    EXPECT_EQ(g, 0.0);
  // Float agrees (the inputs are exact in float and the loss is computed in
  // double either way: the same arithmetic); no gradient requested.
  EXPECT_NEAR(normTweakLoss<float>(NormTweakLoss::Distribution, cast<float>(yq),
                                   cast<float>(yf), 3, 2, {}),
              distribution, 1e-12);
}

TEST(NormTweakTest, LossGradientsMatchFiniteDifferences) {
  int64_t rows = 6, C = 5;
  std::mt19937_64 rng(31);
  // Continuous random data: no ties in the means or variances.
  std::vector<double> yq = gaussian(rows * C, 0, 1, rng);
  std::vector<double> yf = gaussian(rows * C, 0.2, 1.5, rng);
  for (NormTweakLoss kind :
       {NormTweakLoss::Distribution, NormTweakLoss::MeanSquared}) {
    std::vector<double> grad(rows * C);
    normTweakLoss<double>(kind, yq, yf, rows, C, grad);
    std::vector<double> numeric = numericGradient(
        yq, [&] { return normTweakLoss<double>(kind, yq, yf, rows, C, {}); });
    // h = 1e-6 on a loss of 30 terms of size < 10: rounding <= 30 * 2^-53 *
    // 10 / (2h) ~ 2e-8 against derivatives of size ~0.1-1 (the losses are
    // piecewise quadratic: no truncation error away from the kinks, which
    // continuous random data keeps far more than h away).
    EXPECT_LT(relativeError(grad, numeric), 1e-7);
  }
}

//===----------------------------------------------------------------------===//
// Adam
//===----------------------------------------------------------------------===//

TEST(NormTweakTest, AdamFirstStepMovesByLearningRate) {
  double lr = 1e-3;
  std::vector<float> params = {1.0f, -2.0f, 0.5f, 3.0f, 0.0f, 7.0f};
  std::vector<float> grad = {1e-3f, -1e3f, 0.25f, -4.0f, 2.0f, 0.0f};
  std::vector<float> before = params;
  AdamOptimizer adam(params.size(), lr);
  adam.step(params, grad);
  EXPECT_EQ(adam.steps(), 1);
  for (size_t i = 0; i < params.size(); ++i) {
    double sign = (grad[i] > 0) - (grad[i] < 0);
    // |g| / (|g| + eps) differs from 1 by at most 1e-5 here; float rounding
    // of the parameter is below 1e-6.
    EXPECT_NEAR(double(params[i]), double(before[i]) - lr * sign, 2e-6)
        << "parameter " << i;
  }
}

TEST(NormTweakTest, AdamConvergesOnConvexQuadratic) {
  // f(p) = sum_i a_i (p_i - c_i)^2 with curvatures over four decades.
  std::vector<double> a = {0.01, 0.1, 1, 10, 100}, c = {1, -2, 3, 0.5, -1};
  std::vector<float> p(5, 0.0f), grad(5);
  auto f = [&] {
    double s = 0;
    for (size_t i = 0; i < p.size(); ++i)
      s += a[i] * (p[i] - c[i]) * (p[i] - c[i]);
    return s;
  };
  double initial = f();
  AdamOptimizer adam(p.size(), 0.1);
  for (int step = 0; step < 2000; ++step) {
    if (step == 1000)
      adam.setLearningRate(0.01);
    for (size_t i = 0; i < p.size(); ++i)
      grad[i] = float(2 * a[i] * (p[i] - c[i]));
    adam.step(p, grad);
  }
  // Optimisation outcomes, not rounding bounds: float rounding of p (< 3e-7)
  // is far below both.
  EXPECT_LT(f(), 1e-6 * initial);
  for (size_t i = 0; i < p.size(); ++i)
    EXPECT_NEAR(p[i], c[i], 2e-2);
}

} // namespace
