//===- LowRank.cpp - SVD, low-rank factors and LoftQ ----------------------===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// See docs/Quantizers.md for the methods as implemented here.
//
//===----------------------------------------------------------------------===//

#include "qlr/Numerics/LowRank.h"
#include "EigenTypes.h"

#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/Twine.h"

#include <Eigen/Core>
#include <Eigen/Eigenvalues>
#include <Eigen/SVD>

#include <algorithm>
#include <cassert>
#include <cmath>
#include <numeric>

using namespace qlr::numerics;

using namespace qlr::numerics::detail;

static llvm::Error loftqError(const llvm::Twine &msg) {
  return llvm::createStringError("loftq: " + msg);
}

/// Returns the m x n row-major float matrix \p w as a double matrix.
static Eigen::MatrixXd toDouble(llvm::ArrayRef<float> w, int64_t m, int64_t n) {
  assert(int64_t(w.size()) == m * n && "element count mismatch");
  return Eigen::Map<const RowMatrixF>(w.data(), m, n).cast<double>();
}

/// Returns the product of the factors in double precision.
static Eigen::MatrixXd productOf(const LowRankFactors &f, int64_t m,
                                 int64_t n) {
  if (f.rank == 0)
    return Eigen::MatrixXd::Zero(m, n);
  return Eigen::Map<const RowMatrixF>(f.a.data(), m, f.rank).cast<double>() *
         Eigen::Map<const RowMatrixF>(f.b.data(), f.rank, n).cast<double>();
}

SVD qlr::numerics::thinSVD(llvm::ArrayRef<float> w, int64_t m, int64_t n) {
  assert(m >= 0 && n >= 0 && int64_t(w.size()) == m * n &&
         "element count mismatch");
  SVD result;
  result.m = m;
  result.n = n;
  int64_t p = std::min(m, n);
  if (p == 0)
    return result;
  Eigen::BDCSVD<Eigen::MatrixXd> svd(toDouble(w, m, n),
                                     Eigen::ComputeThinU | Eigen::ComputeThinV);
  RowMatrixD u = svd.matrixU();
  RowMatrixD vt = svd.matrixV().transpose();
  result.u.assign(u.data(), u.data() + m * p);
  result.s.assign(svd.singularValues().data(), svd.singularValues().data() + p);
  result.vt.assign(vt.data(), vt.data() + p * n);
  return result;
}

LowRankFactors qlr::numerics::truncatedSVD(llvm::ArrayRef<float> w, int64_t m,
                                           int64_t n, int64_t rank) {
  assert(m >= 0 && n >= 0 && int64_t(w.size()) == m * n &&
         "element count mismatch");
  int64_t r = std::clamp<int64_t>(rank, 0, std::min(m, n));
  LowRankFactors result;
  result.rank = r;
  result.a.assign(m * r, 0.0f);
  result.b.assign(r * n, 0.0f);
  if (r == 0)
    return result;

  // Eigenvectors of the smaller Gram matrix give the singular vectors on that
  // side: V (n x n Gram WᵀW) when n <= m, else U (m x m Gram WWᵀ).
  Eigen::MatrixXd wd = toDouble(w, m, n);
  bool gramOfColumns = n <= m;
  int64_t p = gramOfColumns ? n : m;
  Eigen::MatrixXd gram = Eigen::MatrixXd::Zero(p, p);
  if (gramOfColumns)
    gram.selfadjointView<Eigen::Lower>().rankUpdate(wd.transpose());
  else
    gram.selfadjointView<Eigen::Lower>().rankUpdate(wd);
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eig(gram);
  assert(eig.info() == Eigen::Success && "eigensolver failed");
  // Eigenvalues ascend: the top r eigenvectors are the last r columns.
  Eigen::MatrixXd vecs = eig.eigenvectors().rightCols(r).rowwise().reverse();

  // Project W onto them: W V_r (m x r) or U_rᵀ W (r x n). The singular value
  // is the norm of the projection (a Rayleigh quotient, accurate even where
  // sqrt(eigenvalue) is not).
  Eigen::MatrixXd proj =
      gramOfColumns ? Eigen::MatrixXd(wd * vecs)
                    : Eigen::MatrixXd((vecs.transpose() * wd).transpose());
  Eigen::VectorXd s = proj.colwise().norm().transpose();
  std::vector<int64_t> order(r);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t x, int64_t y) { return s(x) > s(y); });

  for (int64_t i = 0; i < r; ++i) {
    int64_t j = order[i];
    if (!(s(j) > 0))
      continue; // W has rank < r: leave this component zero.
    double root = std::sqrt(s(j));
    // W u_j-side vector = proj.col(j) / root; the Gram-side vector * root.
    Eigen::VectorXd projSide = proj.col(j) / root;
    Eigen::VectorXd gramSide = vecs.col(j) * root;
    const Eigen::VectorXd &aCol = gramOfColumns ? projSide : gramSide;
    const Eigen::VectorXd &bRow = gramOfColumns ? gramSide : projSide;
    for (int64_t row = 0; row < m; ++row)
      result.a[row * r + i] = float(aCol(row));
    for (int64_t col = 0; col < n; ++col)
      result.b[i * n + col] = float(bRow(col));
  }
  return result;
}

std::vector<float> qlr::numerics::multiplyFactors(const LowRankFactors &f,
                                                  int64_t m, int64_t n) {
  assert(int64_t(f.a.size()) == m * f.rank &&
         int64_t(f.b.size()) == f.rank * n && "factor size mismatch");
  RowMatrixF product = productOf(f, m, n).cast<float>();
  return std::vector<float>(product.data(), product.data() + m * n);
}

llvm::Expected<LoftQResult> qlr::numerics::loftq(llvm::ArrayRef<float> w,
                                                 int64_t m, int64_t n,
                                                 const QuantFormat &fmt,
                                                 int64_t rank, int64_t iters) {
  if (m < 0 || n < 0)
    return loftqError("matrix dimensions must be non-negative, got " +
                      llvm::Twine(m) + "x" + llvm::Twine(n));
  if (int64_t(w.size()) != m * n)
    return loftqError("weight has " + llvm::Twine(w.size()) +
                      " elements, expected " + llvm::Twine(m) + "x" +
                      llvm::Twine(n) + " = " + llvm::Twine(m * n));
  if (iters < 1)
    return loftqError("iteration count must be at least 1, got " +
                      llvm::Twine(iters));
  if (rank < 1)
    return loftqError("rank must be at least 1, got " + llvm::Twine(rank));
  llvm::SmallVector<int64_t, 2> shape{m, n};
  std::string formatError = verifyFormatForShape(fmt, shape);
  if (!formatError.empty())
    return loftqError("invalid format: " + formatError);
  if (!std::all_of(w.begin(), w.end(),
                   [](float v) { return std::isfinite(v); }))
    return loftqError("weight contains non-finite values");

  Eigen::MatrixXd wd = toDouble(w, m, n);
  LoftQResult result;
  std::vector<float> target(w.begin(), w.end());
  for (int64_t it = 0; it < iters; ++it) {
    if (it > 0) {
      // target = W - A·B.
      RowMatrixF t = (wd - productOf(result.lowRank, m, n)).cast<float>();
      target.assign(t.data(), t.data() + m * n);
    }
    result.base = quantizeRTN(target, shape, fmt);
    Eigen::MatrixXd deq = toDouble(dequantize(result.base, shape, fmt), m, n);
    RowMatrixF residual = (wd - deq).cast<float>();
    result.lowRank =
        truncatedSVD(llvm::ArrayRef<float>(residual.data(), m * n), m, n, rank);
    result.errors.push_back(
        (wd - deq - productOf(result.lowRank, m, n)).norm());
  }
  return result;
}
