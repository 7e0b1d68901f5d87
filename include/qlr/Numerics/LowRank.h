//===- LowRank.h - SVD, low-rank factors and LoftQ ------------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// Dense singular value decompositions of float matrices (computed in double
// precision), best low-rank approximations, and LoftQ (Li et al. 2024,
// "LoftQ: LoRA-Fine-Tuning-Aware Quantization for Large Language Models"):
// W ≈ dequantize(Q) + A·B with Q quantized and A·B of low rank.
//
// The methods and their costs are documented in docs/Quantizers.md.
//
//===----------------------------------------------------------------------===//

#ifndef QLR_NUMERICS_LOWRANK_H
#define QLR_NUMERICS_LOWRANK_H

#include "qlr/Numerics/Format.h"
#include "qlr/Numerics/Quantize.h"

#include "llvm/ADT/ArrayRef.h"
#include "llvm/Support/Error.h"

#include <cstdint>
#include <vector>

namespace qlr::numerics {

/// A rank-r factorization A·B of an m x n matrix.
struct LowRankFactors {
  /// r.
  int64_t rank = 0;
  /// m x r, row-major.
  std::vector<float> a;
  /// r x n, row-major.
  std::vector<float> b;
};

/// A thin SVD W = U diag(s) Vᵀ of an m x n matrix, with p = min(m, n).
struct SVD {
  int64_t m = 0, n = 0;
  /// m x p, row-major, orthonormal columns.
  std::vector<double> u;
  /// p singular values, non-negative, in descending order.
  std::vector<double> s;
  /// p x n, row-major, orthonormal rows.
  std::vector<double> vt;
};

/// Returns the thin SVD of \p w (\p m x \p n, row-major, finite), computed in
/// double precision with divide-and-conquer bidiagonal SVD (Eigen's BDCSVD).
SVD thinSVD(llvm::ArrayRef<float> w, int64_t m, int64_t n);

/// Returns the best rank-r approximation of \p w (\p m x \p n, row-major,
/// finite) in the Frobenius and spectral norms (Eckart–Young), with
/// r = clamp(\p rank, 0, min(m, n)), split evenly between the factors:
/// A = U_r diag(sqrt s_r), B = diag(sqrt s_r) V_rᵀ (so A and B have equal
/// column/row norms, good for quantizing them later). Uses the eigenvectors
/// of the smaller Gram matrix (WᵀW or WWᵀ) in double precision; see
/// docs/Quantizers.md for the accuracy this gives.
LowRankFactors truncatedSVD(llvm::ArrayRef<float> w, int64_t m, int64_t n,
                            int64_t rank);

/// Returns the row-major m x n product \p f.a · \p f.b (in double, rounded to
/// float).
std::vector<float> multiplyFactors(const LowRankFactors &f, int64_t m,
                                   int64_t n);

/// The result of loftq.
struct LoftQResult {
  /// Q in the format passed to loftq, for shape {m, n}.
  QuantizedData base;
  /// W ≈ dequantize(Q) + A·B.
  LowRankFactors lowRank;
  /// ||W - dequantize(Q_t) - A_t·B_t||_F after each iteration t (size iters).
  std::vector<double> errors;
};

/// LoftQ: with A·B = 0, repeats \p iters times
///   Q = quantizeRTN(W - A·B, fmt);  A, B = truncatedSVD(W - dequantize(Q),
///   rank)
/// and returns the last Q, A, B. \p w is \p m x \p n, row-major and finite;
/// \p fmt must be valid for shape {m, n}. Returns an error if iters < 1,
/// rank < 1, the sizes do not match, the format is invalid, or \p w is not
/// finite. A rank above min(m, n) is clamped.
llvm::Expected<LoftQResult> loftq(llvm::ArrayRef<float> w, int64_t m, int64_t n,
                                  const QuantFormat &fmt, int64_t rank,
                                  int64_t iters);

} // namespace qlr::numerics

#endif // QLR_NUMERICS_LOWRANK_H
