//===- Codebook.cpp - Codebooks for lookup-table quantization -------------===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#include "qlr/Numerics/Codebook.h"

#include <algorithm>
#include <cassert>
#include <cmath>

using namespace qlr::numerics;

double qlr::numerics::normalQuantile(double p) {
  assert(p > 0 && p < 1 && "normalQuantile requires 0 < p < 1");
  // Solve Phi(z) = q in the lower half, q = min(p, 1 - p) <= 0.5, z <= 0, and
  // mirror the result for the upper half (1 - p is exact for p >= 0.5).
  double q = p > 0.5 ? 1.0 - p : p;

  // Initial guess: Abramowitz & Stegun 26.2.23, absolute error < 4.5e-4.
  double t = std::sqrt(-2.0 * std::log(q));
  double z = -(t - (2.515517 + t * (0.802853 + t * 0.010328)) /
                       (1.0 + t * (1.432788 + t * (0.189269 + t * 0.001308))));

  // Halley steps on f(z) = Phi(z) - q, with f' = phi(z), f'' = -z phi(z).
  // Convergence is cubic, so four steps reach full double precision. The
  // residual is formed from erfc in the tail and from erf near the center,
  // where 0.5 - q is exact, so it is accurate relative to the result.
  const double invSqrt2 = 0.70710678118654752440;
  const double invSqrt2Pi = 0.39894228040143267794;
  for (int step = 0; step < 4; ++step) {
    double residual = q < 0.25 ? 0.5 * std::erfc(-z * invSqrt2) - q
                               : 0.5 * std::erf(z * invSqrt2) + (0.5 - q);
    double u = residual / (invSqrt2Pi * std::exp(-0.5 * z * z));
    z -= u / (1.0 + 0.5 * z * u);
  }
  return p > 0.5 ? -z : z;
}

std::vector<float> qlr::numerics::normalFloatCodebook(unsigned bits) {
  assert(bits >= 2 && bits <= 8 && "bits must be in [2, 8]");
  const double offset = 0.9677083;
  unsigned half = (1u << bits) / 2;

  std::vector<double> values;
  for (unsigned i = 0; i < half; ++i)
    values.push_back(normalQuantile(offset + (0.5 - offset) * i / half));
  for (unsigned i = 0; i + 1 < half; ++i)
    values.push_back(-normalQuantile(offset + (0.5 - offset) * i / (half - 1)));
  values.push_back(0.0);
  std::sort(values.begin(), values.end());

  double largest = normalQuantile(offset);
  std::vector<float> codebook;
  for (double v : values)
    codebook.push_back(float(v / largest));
  return codebook;
}

uint8_t qlr::numerics::nearestCodebookIndex(llvm::ArrayRef<float> codebook,
                                            float v) {
  assert(!codebook.empty() && codebook.size() <= 256 &&
         "codebook must have 1..256 entries");
  size_t best = 0;
  float bestDistance = std::fabs(v - codebook[0]);
  for (size_t i = 1; i < codebook.size(); ++i) {
    float distance = std::fabs(v - codebook[i]);
    if (distance < bestDistance) {
      best = i;
      bestDistance = distance;
    }
  }
  return uint8_t(best);
}
