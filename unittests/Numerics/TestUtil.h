//===- TestUtil.h - Shared helpers of the numerics tests --------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// Random vectors, norms and element-type conversions used by several
// numerics unit tests.
//
//===----------------------------------------------------------------------===//

#ifndef QLR_UNITTESTS_NUMERICS_TESTUTIL_H
#define QLR_UNITTESTS_NUMERICS_TESTUTIL_H

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

namespace qlr::numerics::test {

using Floats = std::vector<float>;
using Doubles = std::vector<double>;

/// `count` samples of N(mean, sigma^2), drawn in T from `rng`.
template <typename T = double, typename Rng>
std::vector<T> gaussian(size_t count, double mean, double sigma, Rng &rng) {
  std::normal_distribution<T> dist(static_cast<T>(mean), static_cast<T>(sigma));
  std::vector<T> v(count);
  for (T &x : v)
    x = dist(rng);
  return v;
}

/// `count` floats ~ N(0, stddev^2).
inline Floats randomNormal(int64_t count, std::mt19937 &rng,
                           float stddev = 1.0f) {
  return gaussian<float>(count, 0.0, stddev, rng);
}

/// The Euclidean (Frobenius) norm of `v`, summed in double.
template <typename T> double frobenius(const std::vector<T> &v) {
  double sum = 0;
  for (T x : v)
    sum += double(x) * double(x);
  return std::sqrt(sum);
}

/// `v` converted element by element to To.
template <typename To, typename From>
std::vector<To> cast(const std::vector<From> &v) {
  return std::vector<To>(v.begin(), v.end());
}

} // namespace qlr::numerics::test

#endif // QLR_UNITTESTS_NUMERICS_TESTUTIL_H
