//===- NormTweak.cpp - Numerics of Norm Tweaking --------------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// The Norm Tweaking losses and Adam. The gradients of the network come from
// the IR (qlr-differentiate), not from here.
//
//===----------------------------------------------------------------------===//

#include "qlr/Numerics/NormTweak.h"

#include <algorithm>
#include <cassert>
#include <cmath>

using namespace qlr::numerics;
using llvm::ArrayRef;
using llvm::MutableArrayRef;

namespace {
template <typename T> int sign(T x) { return (x > 0) - (x < 0); }
} // namespace

template <typename T>
double qlr::numerics::normTweakLoss(NormTweakLoss kind, ArrayRef<T> yq,
                                    ArrayRef<T> yf, int64_t rows,
                                    int64_t channels, MutableArrayRef<T> grad) {
  assert(rows >= 1 && channels >= 1 && "loss shape");
  assert(int64_t(yq.size()) == rows * channels &&
         int64_t(yf.size()) == rows * channels && "loss input size");
  assert((grad.empty() || int64_t(grad.size()) == rows * channels) &&
         "loss gradient size");
  double n = double(rows);
  if (kind == NormTweakLoss::MeanSquared) {
    double count = n * double(channels), sum = 0;
    for (int64_t i = 0; i < rows * channels; ++i) {
      double d = double(yq[i]) - double(yf[i]);
      sum += d * d;
      if (!grad.empty())
        grad[i] = T(2.0 * d / count);
    }
    return sum / count;
  }

  // Channel means, then biased variances (two passes, in double).
  std::vector<double> muq(channels, 0.0), muf(channels, 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < channels; ++c) {
      muq[c] += double(yq[r * channels + c]);
      muf[c] += double(yf[r * channels + c]);
    }
  for (int64_t c = 0; c < channels; ++c) {
    muq[c] /= n;
    muf[c] /= n;
  }
  std::vector<double> varq(channels, 0.0), varf(channels, 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < channels; ++c) {
      double dq = double(yq[r * channels + c]) - muq[c];
      double df = double(yf[r * channels + c]) - muf[c];
      varq[c] += dq * dq;
      varf[c] += df * df;
    }
  double loss = 0;
  std::vector<double> meanSign(channels), varSign(channels);
  for (int64_t c = 0; c < channels; ++c) {
    varq[c] /= n;
    varf[c] /= n;
    loss += std::abs(muf[c] - muq[c]) + std::abs(varf[c] - varq[c]);
    meanSign[c] = double(sign(muq[c] - muf[c]));
    varSign[c] = double(sign(varq[c] - varf[c]));
  }
  double inverse = 1.0 / (n * double(channels));
  if (!grad.empty())
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < channels; ++c) {
        double centered = double(yq[r * channels + c]) - muq[c];
        grad[r * channels + c] =
            T((meanSign[c] + 2.0 * varSign[c] * centered) * inverse);
      }
  return loss / double(channels);
}

template double qlr::numerics::normTweakLoss<float>(NormTweakLoss,
                                                    ArrayRef<float>,
                                                    ArrayRef<float>, int64_t,
                                                    int64_t,
                                                    MutableArrayRef<float>);
template double qlr::numerics::normTweakLoss<double>(NormTweakLoss,
                                                     ArrayRef<double>,
                                                     ArrayRef<double>, int64_t,
                                                     int64_t,
                                                     MutableArrayRef<double>);

//===----------------------------------------------------------------------===//
// Adam
//===----------------------------------------------------------------------===//

AdamOptimizer::AdamOptimizer(size_t size, double lr, double beta1, double beta2,
                             double eps)
    : lr(lr), beta1(beta1), beta2(beta2), eps(eps), m(size, 0.0), v(size, 0.0) {
  assert(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1 && eps >= 0 &&
         "Adam hyper-parameters");
}

void AdamOptimizer::step(MutableArrayRef<float> params, ArrayRef<float> grad) {
  assert(params.size() == m.size() && grad.size() == m.size() &&
         "Adam parameter count");
  ++t;
  double correction1 = 1.0 - std::pow(beta1, double(t));
  double correction2 = 1.0 - std::pow(beta2, double(t));
  for (size_t i = 0; i < m.size(); ++i) {
    double g = grad[i];
    m[i] = beta1 * m[i] + (1.0 - beta1) * g;
    v[i] = beta2 * v[i] + (1.0 - beta2) * g * g;
    double mHat = m[i] / correction1, vHat = v[i] / correction2;
    params[i] = float(double(params[i]) - lr * mHat / (std::sqrt(vHat) + eps));
  }
}
