//===- TestUtil.h - Shared helpers of the numerics tests --------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// Random vectors, norms, element-type conversions and a dense linear solve
// used by several numerics unit tests.
//
//===----------------------------------------------------------------------===//

#ifndef QLR_UNITTESTS_NUMERICS_TESTUTIL_H
#define QLR_UNITTESTS_NUMERICS_TESTUTIL_H

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>
#include <utility>
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

/// Solves the r x r system M X = R (row-major; R is r x cols) by Gaussian
/// elimination with partial pivoting.
inline Doubles solveDense(Doubles mat, Doubles rhs, int64_t r,
                          int64_t cols = 1) {
  for (int64_t k = 0; k < r; ++k) {
    int64_t pivot = k;
    for (int64_t i = k + 1; i < r; ++i)
      if (std::abs(mat[i * r + k]) > std::abs(mat[pivot * r + k]))
        pivot = i;
    for (int64_t j = 0; j < r; ++j)
      std::swap(mat[k * r + j], mat[pivot * r + j]);
    for (int64_t j = 0; j < cols; ++j)
      std::swap(rhs[k * cols + j], rhs[pivot * cols + j]);
    for (int64_t i = k + 1; i < r; ++i) {
      double f = mat[i * r + k] / mat[k * r + k];
      for (int64_t j = k; j < r; ++j)
        mat[i * r + j] -= f * mat[k * r + j];
      for (int64_t j = 0; j < cols; ++j)
        rhs[i * cols + j] -= f * rhs[k * cols + j];
    }
  }
  Doubles out(r * cols);
  for (int64_t i = r - 1; i >= 0; --i)
    for (int64_t j = 0; j < cols; ++j) {
      double v = rhs[i * cols + j];
      for (int64_t l = i + 1; l < r; ++l)
        v -= mat[i * r + l] * out[l * cols + j];
      out[i * cols + j] = v / mat[i * r + i];
    }
  return out;
}

} // namespace qlr::numerics::test

#endif // QLR_UNITTESTS_NUMERICS_TESTUTIL_H
