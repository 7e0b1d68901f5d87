//===- GPTQ.cpp - GPTQ quantizer and Hessian accumulation -----------------===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// See docs/Quantizers.md for the algorithm as implemented here.
//
//===----------------------------------------------------------------------===//

#include "qlr/Numerics/GPTQ.h"
#include "EigenTypes.h"
#include "qlr/Numerics/FloatFormats.h"

#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/Twine.h"

#include <Eigen/Cholesky>
#include <Eigen/Core>

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstdio>
#include <limits>
#include <numeric>
#include <string>

using namespace qlr::numerics;

using namespace qlr::numerics::detail;

static llvm::Error gptqError(const llvm::Twine &msg) {
  return llvm::createStringError("gptq: " + msg);
}

/// Formats \p v with printf's %g.
static std::string formatDouble(double v) {
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%g", v);
  return buffer;
}

static bool allFinite(llvm::ArrayRef<float> values) {
  return std::all_of(values.begin(), values.end(),
                     [](float v) { return std::isfinite(v); });
}

static bool allFinite(llvm::ArrayRef<double> values) {
  return std::all_of(values.begin(), values.end(),
                     [](double v) { return std::isfinite(v); });
}

//===----------------------------------------------------------------------===//
// HessianAccumulator
//===----------------------------------------------------------------------===//

HessianAccumulator::HessianAccumulator(int64_t k) : k(k), sum(k * k, 0.0) {
  assert(k >= 0 && "negative dimension");
}

void HessianAccumulator::add(const float *rows, int64_t numRows) {
  assert(numRows >= 0 && "negative row count");
  if (numRows == 0 || k == 0) {
    this->numRows += numRows;
    return;
  }
  // Convert in chunks to bound the temporary's size.
  constexpr int64_t kChunkRows = 256;
  Eigen::Map<Eigen::MatrixXd> s(sum.data(), k, k);
  for (int64_t r0 = 0; r0 < numRows; r0 += kChunkRows) {
    int64_t cnt = std::min(kChunkRows, numRows - r0);
    Eigen::MatrixXd x =
        Eigen::Map<const RowMatrixF>(rows + r0 * k, cnt, k).cast<double>();
    s.selfadjointView<Eigen::Lower>().rankUpdate(x.transpose());
  }
  this->numRows += numRows;
}

std::vector<double> HessianAccumulator::hessian() const {
  std::vector<double> h(k * k, 0.0);
  if (numRows == 0)
    return h;
  double factor = 2.0 / double(numRows);
  for (int64_t i = 0; i < k; ++i)
    for (int64_t j = 0; j <= i; ++j) {
      // Lower triangle of the column-major sum: element (i, j) at j * k + i.
      double v = factor * sum[j * k + i];
      h[i * k + j] = v;
      h[j * k + i] = v;
    }
  return h;
}

//===----------------------------------------------------------------------===//
// quantizeGPTQ
//===----------------------------------------------------------------------===//

/// Inverts the lower-triangular matrix \p l in place by recursive 2x2
/// blocking, [A 0; B C]^-1 = [A^-1 0; -C^-1 B A^-1  C^-1], so that almost all
/// work is in triangular matrix products (about k^3 / 3 flops). Only the
/// lower triangle is read and written.
static void invertLowerInPlace(Eigen::Ref<Eigen::MatrixXd> l) {
  int64_t size = l.rows();
  if (size <= 64) {
    Eigen::MatrixXd inv = l.triangularView<Eigen::Lower>().solve(
        Eigen::MatrixXd::Identity(size, size));
    l.triangularView<Eigen::Lower>() = inv;
    return;
  }
  int64_t h = size / 2;
  invertLowerInPlace(l.topLeftCorner(h, h));
  invertLowerInPlace(l.bottomRightCorner(size - h, size - h));
  Eigen::MatrixXd t = l.bottomLeftCorner(size - h, h) *
                      l.topLeftCorner(h, h).triangularView<Eigen::Lower>();
  l.bottomLeftCorner(size - h, h).noalias() =
      -(l.bottomRightCorner(size - h, size - h).triangularView<Eigen::Lower>() *
        t);
}

/// Returns the upper Cholesky factor U of (H + factor * mean(diag H) * I)^-1,
/// i.e. the upper-triangular U with positive diagonal and
/// (H + ...)^-1 = Uᵀ U, retrying with ten times more damping (at most five
/// times) when the factorization fails. With P the reversal permutation and
/// P Hd P = L Lᵀ, U = P L^-1 P.
static llvm::Expected<RowMatrixD> inverseCholeskyUpper(const Eigen::MatrixXd &h,
                                                       double damp) {
  int64_t k = h.rows();
  double meanDiag = h.diagonal().mean();
  Eigen::MatrixXd reversed = h.reverse();
  double factor = damp, lastFactor = damp;
  constexpr int kMaxRetries = 5;
  for (int attempt = 0; attempt <= kMaxRetries; ++attempt) {
    lastFactor = factor;
    Eigen::MatrixXd damped = reversed;
    damped.diagonal().array() += factor * meanDiag;
    Eigen::LLT<Eigen::MatrixXd> llt(damped);
    if (llt.info() == Eigen::Success) {
      Eigen::MatrixXd l = llt.matrixL();
      if ((l.diagonal().array() > 0).all()) {
        invertLowerInPlace(l);
        if (l.allFinite())
          return RowMatrixD(l.reverse());
      }
    }
    factor = factor > 0 ? factor * 10 : 0.01;
  }
  return gptqError(
      "cholesky factorization of the " + llvm::Twine(k) + "x" + llvm::Twine(k) +
      " hessian failed even with damping factor " + formatDouble(lastFactor) +
      " (is it positive semi-definite?)");
}

/// Copies an n x cnt block of doubles to a row-major float vector, failing on
/// non-finite values.
static llvm::Expected<std::vector<float>>
toFloatRowMajor(const Eigen::MatrixXd &block) {
  std::vector<float> out(block.size());
  for (int64_t r = 0; r < block.rows(); ++r)
    for (int64_t c = 0; c < block.cols(); ++c) {
      float v = float(block(r, c));
      if (!std::isfinite(v))
        return gptqError("error compensation produced a non-finite weight "
                         "(ill-conditioned hessian?)");
      out[r * block.cols() + c] = v;
    }
  return out;
}

/// GPTQ's column loop: quantizes the (permuted) working weights \p w0 with
/// the inverse Cholesky factor \p u, writing codes at the original column
/// positions \p perm. Scales come from \p fixed when given; otherwise dynamic
/// groups (Group without act-order) are computed when their first column is
/// reached and everything else up front from \p wz (W with dead columns
/// zeroed).
static llvm::Expected<QuantizedData>
quantizeColumns(const Eigen::MatrixXd &w0, const RowMatrixD &u,
                llvm::ArrayRef<int64_t> perm, llvm::ArrayRef<float> wz,
                const QuantFormat &fmt, const GPTQOptions &options,
                const QuantizedData *fixed) {
  int64_t n = w0.rows(), k = w0.cols();
  Eigen::MatrixXd wcur = w0;
  bool dynamicGroups =
      !fixed && fmt.granularity == Granularity::Group && !options.actOrder;
  int64_t groupSize = fmt.granularity == Granularity::Group ? fmt.groupSize : 0;
  int64_t numGroups = groupSize > 0 ? (k + groupSize - 1) / groupSize : 1;
  QuantizedData result;
  if (fixed) {
    result.scales = fixed->scales;
    result.zeroPoints = fixed->zeroPoints;
  } else if (dynamicGroups) {
    result.scales.assign(n * numGroups, 0.0f);
    if (!fmt.symmetric)
      result.zeroPoints.assign(n * numGroups, 0);
  } else {
    QuantizedData rtn = options.clipSearch
                            ? quantizeRTNClipSearch(wz, {n, k}, fmt)
                            : quantizeRTN(wz, {n, k}, fmt);
    result.scales = std::move(rtn.scales);
    result.zeroPoints = std::move(rtn.zeroPoints);
  }
  result.codes.resize(n * k);
  auto scaleIndex = [&](int64_t row, int64_t originalCol) -> int64_t {
    switch (fmt.granularity) {
    case Granularity::Tensor:
      return 0;
    case Granularity::Channel:
      return row;
    case Granularity::Group:
      return row * numGroups + originalCol / groupSize;
    }
    return 0;
  };
  QuantFormat rowFormat = fmt;
  rowFormat.granularity = Granularity::Channel;
  rowFormat.axis = 0;

  int64_t blockSize = std::min(options.blockSize, k);
  Eigen::MatrixXd err(n, blockSize);
  for (int64_t i1 = 0; i1 < k; i1 += blockSize) {
    int64_t i2 = std::min(i1 + blockSize, k);
    int64_t count = i2 - i1;
    for (int64_t i = 0; i < count; ++i) {
      int64_t col = i1 + i;
      if (dynamicGroups && col % groupSize == 0) {
        // The group's current weights: columns inside this block are up to
        // date; later ones still lack this block's pending updates.
        int64_t width = std::min(groupSize, k - col);
        Eigen::MatrixXd group = wcur.middleCols(col, width);
        int64_t beyond = col + width - i2;
        if (beyond > 0 && i > 0)
          group.rightCols(beyond).noalias() -=
              err.leftCols(i) * u.block(i1, i2, i, beyond);
        llvm::Expected<std::vector<float>> values = toFloatRowMajor(group);
        if (!values)
          return values.takeError();
        QuantizedData rtn =
            options.clipSearch
                ? quantizeRTNClipSearch(*values, {n, width}, rowFormat)
                : quantizeRTN(*values, {n, width}, rowFormat);
        for (int64_t r = 0; r < n; ++r) {
          result.scales[r * numGroups + col / groupSize] = rtn.scales[r];
          if (!fmt.symmetric)
            result.zeroPoints[r * numGroups + col / groupSize] =
                rtn.zeroPoints[r];
        }
      }

      int64_t originalCol = perm[col];
      double d = u(col, col);
      for (int64_t r = 0; r < n; ++r) {
        double x = wcur(r, col);
        float xf = float(x);
        if (!std::isfinite(xf))
          return gptqError("error compensation produced a non-finite weight "
                           "(ill-conditioned hessian?)");
        int64_t si = scaleIndex(r, originalCol);
        float scale = result.scales[si];
        uint8_t zeroPoint = fmt.symmetric ? 0 : result.zeroPoints[si];
        uint8_t code = quantizeOne(xf, scale, zeroPoint, fmt);
        result.codes[r * k + originalCol] = code;
        err(r, i) =
            (x - double(dequantizeOne(code, scale, zeroPoint, fmt))) / d;
      }
      // Eager update of the rest of this block.
      if (col + 1 < i2)
        wcur.middleCols(col + 1, i2 - col - 1).noalias() -=
            err.col(i) * u.row(col).segment(col + 1, i2 - col - 1);
    }
    // Lazy batch update of all later columns.
    if (i2 < k)
      wcur.rightCols(k - i2).noalias() -=
          err.leftCols(count) * u.block(i1, i2, count, k - i2);
  }
  return result;
}

llvm::Expected<QuantizedData>
qlr::numerics::quantizeGPTQ(llvm::ArrayRef<float> w, int64_t n, int64_t k,
                            llvm::ArrayRef<double> hessian,
                            const QuantFormat &fmt,
                            const GPTQOptions &options) {
  // Validation.
  if (n < 0 || k < 0)
    return gptqError("matrix dimensions must be non-negative, got " +
                     llvm::Twine(n) + "x" + llvm::Twine(k));
  if (int64_t(w.size()) != n * k)
    return gptqError("weight has " + llvm::Twine(w.size()) +
                     " elements, expected " + llvm::Twine(n) + "x" +
                     llvm::Twine(k) + " = " + llvm::Twine(n * k));
  if (int64_t(hessian.size()) != k * k)
    return gptqError("hessian has " + llvm::Twine(hessian.size()) +
                     " elements, expected " + llvm::Twine(k) + "x" +
                     llvm::Twine(k) + " = " + llvm::Twine(k * k));
  if (!std::isfinite(options.damp) || options.damp < 0)
    return gptqError("damp must be finite and non-negative, got " +
                     formatDouble(options.damp));
  if (options.refitRounds < 0)
    return gptqError("refit rounds must be non-negative, got " +
                     llvm::Twine(options.refitRounds));
  if (options.blockSize < 1)
    return gptqError("block size must be positive, got " +
                     llvm::Twine(options.blockSize));
  llvm::SmallVector<int64_t, 2> shape{n, k};
  std::string formatError = verifyFormatForShape(fmt, shape);
  if (!formatError.empty())
    return gptqError("invalid format: " + formatError);
  if (fmt.granularity == Granularity::Channel && fmt.axis != 0)
    return gptqError("per-channel scales must be along axis 0 (output "
                     "channels), got axis " +
                     llvm::Twine(fmt.axis));
  if (fmt.granularity == Granularity::Group && fmt.axis != 1)
    return gptqError("groups must run along axis 1 (inputs), got axis " +
                     llvm::Twine(fmt.axis));
  if (!allFinite(w))
    return gptqError("weight contains non-finite values");
  if (!allFinite(hessian))
    return gptqError("hessian contains non-finite values");
  if (n == 0 || k == 0)
    return quantizeRTN(w, shape, fmt);

  // Symmetrized Hessian and double-precision working copy of W (column-major,
  // so that a column is contiguous).
  Eigen::MatrixXd h = Eigen::Map<const RowMatrixD>(hessian.data(), k, k);
  h = (0.5 * (h + h.transpose())).eval();
  Eigen::MatrixXd wcur =
      Eigen::Map<const RowMatrixF>(w.data(), n, k).cast<double>();

  // Dead inputs (always zero): their weights cannot matter; quantize them as
  // zero and make H invertible there.
  std::vector<float> wz(w.begin(), w.end());
  for (int64_t i = 0; i < k; ++i) {
    if (h(i, i) != 0)
      continue;
    h(i, i) = 1;
    wcur.col(i).setZero();
    for (int64_t r = 0; r < n; ++r)
      wz[r * k + i] = 0;
  }

  // Column order: act-order processes the inputs with the largest diag H
  // first (ties keep their original order).
  std::vector<int64_t> perm(k);
  std::iota(perm.begin(), perm.end(), 0);
  if (options.actOrder) {
    std::stable_sort(perm.begin(), perm.end(),
                     [&](int64_t a, int64_t b) { return h(a, a) > h(b, b); });
    Eigen::MatrixXd hp(k, k), wp(n, k);
    for (int64_t j = 0; j < k; ++j) {
      wp.col(j) = wcur.col(perm[j]);
      for (int64_t i = 0; i < k; ++i)
        hp(i, j) = h(perm[i], perm[j]);
    }
    h = std::move(hp);
    wcur = std::move(wp);
  }

  llvm::Expected<RowMatrixD> maybeU = inverseCholeskyUpper(h, options.damp);
  if (!maybeU)
    return maybeU.takeError();
  const RowMatrixD &u = *maybeU;

  llvm::Expected<QuantizedData> result =
      quantizeColumns(wcur, u, perm, wz, fmt, options, /*fixed=*/nullptr);
  if (!result || options.refitRounds == 0)
    return result;

  // Refit rounds: each round but the first lets GPTQ choose new codes for
  // the previous round's scales; every round then refits the scales to the
  // codes. Keep the best result, plain GPTQ included, judged by the errors
  // the refit reports (no extra n x k x k products). Tensor granularity has
  // nothing to refit.
  if (fmt.granularity == Granularity::Tensor)
    return result;
  QuantizedData best = std::move(*result);
  double bestError = std::numeric_limits<double>::infinity();
  QuantizedData current = best;
  for (int64_t round = 0; round < options.refitRounds; ++round) {
    if (round > 0) {
      llvm::Expected<QuantizedData> next =
          quantizeColumns(wcur, u, perm, wz, fmt, options, &current);
      if (!next)
        return next.takeError();
      current = std::move(*next);
    }
    RefitErrors errors;
    llvm::Expected<QuantizedData> refit =
        refitScales(wz, n, k, hessian, fmt, current, options.damp, &errors);
    if (!refit)
      return refit.takeError();
    if (errors.before < bestError) {
      bestError = errors.before;
      best = current;
    }
    current = std::move(*refit);
    if (errors.after < bestError) {
      bestError = errors.after;
      best = current;
    }
  }
  return best;
}

double qlr::numerics::hessianWeightedError(llvm::ArrayRef<float> w,
                                           llvm::ArrayRef<float> wq, int64_t n,
                                           int64_t k,
                                           llvm::ArrayRef<double> hessian) {
  assert(int64_t(w.size()) == n * k && int64_t(wq.size()) == n * k &&
         "weight size mismatch");
  assert(int64_t(hessian.size()) == k * k && "hessian size mismatch");
  if (n == 0 || k == 0)
    return 0.0;
  Eigen::MatrixXd diff =
      Eigen::Map<const RowMatrixF>(w.data(), n, k).cast<double>() -
      Eigen::Map<const RowMatrixF>(wq.data(), n, k).cast<double>();
  Eigen::Map<const RowMatrixD> h(hessian.data(), k, k);
  Eigen::MatrixXd dh = diff * h;
  return dh.cwiseProduct(diff).sum();
}

std::vector<double>
qlr::numerics::projectHessian(llvm::ArrayRef<double> hessian,
                              llvm::ArrayRef<float> b, int64_t r, int64_t k) {
  assert(int64_t(hessian.size()) == k * k && "hessian size mismatch");
  assert(int64_t(b.size()) == r * k && "factor size mismatch");
  std::vector<double> result(r * r, 0.0);
  if (r == 0 || k == 0)
    return result;
  Eigen::Map<const RowMatrixD> h(hessian.data(), k, k);
  Eigen::MatrixXd bd =
      Eigen::Map<const RowMatrixF>(b.data(), r, k).cast<double>();
  Eigen::Map<RowMatrixD>(result.data(), r, r) = bd * h * bd.transpose();
  return result;
}

//===----------------------------------------------------------------------===//
// refitScales
//===----------------------------------------------------------------------===//

llvm::Expected<QuantizedData>
qlr::numerics::refitScales(llvm::ArrayRef<float> w, int64_t n, int64_t k,
                           llvm::ArrayRef<double> hessian,
                           const QuantFormat &fmt, const QuantizedData &q,
                           double damp, RefitErrors *errors) {
  if (n < 0 || k < 0 || int64_t(w.size()) != n * k ||
      int64_t(hessian.size()) != k * k || int64_t(q.codes.size()) != n * k)
    return gptqError(
        "refitScales: weight, hessian or code sizes do not match " +
        llvm::Twine(n) + "x" + llvm::Twine(k));
  std::string formatError = verifyFormatForShape(fmt, {n, k});
  if (!formatError.empty())
    return gptqError("invalid format: " + formatError);
  if (fmt.granularity == Granularity::Tensor || n == 0 || k == 0)
    return q;
  if (fmt.granularity == Granularity::Group && fmt.axis != 1)
    return gptqError("groups must run along axis 1 (inputs), got axis " +
                     llvm::Twine(fmt.axis));
  if (fmt.granularity == Granularity::Channel && fmt.axis != 0)
    return gptqError("per-channel scales must be along axis 0, got axis " +
                     llvm::Twine(fmt.axis));
  int64_t groupSize = fmt.granularity == Granularity::Group ? fmt.groupSize : k;
  int64_t numGroups = (k + groupSize - 1) / groupSize;
  if (int64_t(q.scales.size()) != n * numGroups ||
      (!fmt.symmetric && int64_t(q.zeroPoints.size()) != n * numGroups))
    return gptqError("refitScales: expected " + llvm::Twine(n * numGroups) +
                     " scales (and zero points)");
  bool withOffsets = !fmt.symmetric && !isCodebook(fmt);
  auto groupStart = [&](int64_t g) { return g * groupSize; };
  auto groupWidth = [&](int64_t g) {
    return std::min(groupSize, k - g * groupSize);
  };

  Eigen::MatrixXd h = Eigen::Map<const RowMatrixD>(hessian.data(), k, k);
  h = (0.5 * (h + h.transpose())).eval();
  h.diagonal().array() += damp * h.diagonal().mean();
  Eigen::MatrixXd wd =
      Eigen::Map<const RowMatrixF>(w.data(), n, k).cast<double>();
  // e: the code values at scale 1 and zero point 0.
  Eigen::MatrixXd e(n, k);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t j = 0; j < k; ++j)
      e(r, j) = dequantizeOne(q.codes[r * k + j], 1.0f, 0, fmt);
  Eigen::MatrixXd hw = wd * h; // (W H), H symmetric.

  // Per-row normal equations. For groups g, g2: mss = sum e_j H_jl e_l,
  // msm = sum e_j H_jl, mmm = sum H_jl over j in g, l in g2.
  int64_t gg = numGroups * numGroups;
  std::vector<double> mss(n * gg), msm(n * gg);
  for (int64_t g = 0; g < numGroups; ++g) {
    int64_t s0 = groupStart(g), wdt = groupWidth(g);
    Eigen::MatrixXd p = e.middleCols(s0, wdt) * h.middleRows(s0, wdt);
    for (int64_t r = 0; r < n; ++r)
      for (int64_t g2 = 0; g2 < numGroups; ++g2) {
        int64_t t0 = groupStart(g2), wdt2 = groupWidth(g2);
        auto pr = p.row(r).segment(t0, wdt2);
        mss[r * gg + g * numGroups + g2] = pr.dot(e.row(r).segment(t0, wdt2));
        msm[r * gg + g * numGroups + g2] = pr.sum();
      }
  }
  Eigen::MatrixXd mmm(numGroups, numGroups);
  for (int64_t g = 0; g < numGroups; ++g)
    for (int64_t g2 = 0; g2 < numGroups; ++g2)
      mmm(g, g2) =
          h.block(groupStart(g), groupStart(g2), groupWidth(g), groupWidth(g2))
              .sum();

  QuantizedData out = q;
  double totalBefore = 0, totalAfter = 0;
  double zeroStep = std::ldexp(1.0, -int(zeroPointFractionBits(fmt)));
  double maxStored = double(maxStoredZeroPoint(fmt));
  for (int64_t r = 0; r < n; ++r) {
    Eigen::Map<const RowMatrixD> rss(&mss[r * gg], numGroups, numGroups);
    Eigen::Map<const RowMatrixD> rsm(&msm[r * gg], numGroups, numGroups);
    Eigen::VectorXd bs(numGroups), bm(numGroups);
    for (int64_t g = 0; g < numGroups; ++g) {
      auto seg = hw.row(r).segment(groupStart(g), groupWidth(g));
      bs(g) = seg.dot(e.row(r).segment(groupStart(g), groupWidth(g)));
      bm(g) = seg.sum();
    }
    double whw = hw.row(r).dot(wd.row(r));
    // The row's error for scales s and zero points z (both per group):
    // W H Wᵀ - 2 sᵀ b' + sᵀ M' s with the zero points folded into M', b'.
    auto foldZero = [&](const Eigen::VectorXd &z, Eigen::MatrixXd &m,
                        Eigen::VectorXd &b) {
      m = rss;
      b = bs;
      if (!withOffsets)
        return;
      for (int64_t g = 0; g < numGroups; ++g) {
        b(g) -= z(g) * bm(g);
        for (int64_t g2 = 0; g2 < numGroups; ++g2)
          m(g, g2) += -z(g2) * rsm(g, g2) - z(g) * rsm(g2, g) +
                      z(g) * z(g2) * mmm(g, g2);
      }
    };
    auto rowError = [&](const Eigen::VectorXd &s, const Eigen::VectorXd &z) {
      Eigen::MatrixXd m;
      Eigen::VectorXd b;
      foldZero(z, m, b);
      return whw - 2 * s.dot(b) + s.dot(m * s);
    };
    Eigen::VectorXd oldS(numGroups), oldZ = Eigen::VectorXd::Zero(numGroups);
    for (int64_t g = 0; g < numGroups; ++g) {
      oldS(g) = q.scales[r * numGroups + g];
      if (withOffsets)
        oldZ(g) = q.zeroPoints[r * numGroups + g] * zeroStep;
    }
    // A tiny ridge towards the old values keeps singular systems (a group
    // whose codes are all equal) solvable without moving their scales.
    auto ridgeSolve = [&](Eigen::MatrixXd m, Eigen::VectorXd b,
                          const Eigen::VectorXd &old) -> Eigen::VectorXd {
      double ridge = 1e-9 * std::max(m.diagonal().cwiseAbs().maxCoeff(),
                                     std::numeric_limits<double>::min());
      m.diagonal().array() += ridge;
      b += ridge * old;
      return m.ldlt().solve(b);
    };
    Eigen::VectorXd z = oldZ;
    if (withOffsets) {
      // Joint solve for (s, m), then z = -m / s on the stored grid.
      Eigen::MatrixXd m(2 * numGroups, 2 * numGroups);
      m.topLeftCorner(numGroups, numGroups) = rss;
      m.topRightCorner(numGroups, numGroups) = rsm;
      m.bottomLeftCorner(numGroups, numGroups) = rsm.transpose();
      m.bottomRightCorner(numGroups, numGroups) = mmm;
      Eigen::VectorXd b(2 * numGroups), old(2 * numGroups);
      b << bs, bm;
      old << oldS, -oldS.cwiseProduct(oldZ);
      Eigen::VectorXd theta = ridgeSolve(m, b, old);
      for (int64_t g = 0; g < numGroups; ++g) {
        double s = theta(g);
        if (!(s > 0) || !std::isfinite(theta(numGroups + g)))
          continue;
        double stored = std::nearbyint(-theta(numGroups + g) / s / zeroStep);
        z(g) = std::clamp(stored, 0.0, maxStored) * zeroStep;
      }
    }
    Eigen::MatrixXd m;
    Eigen::VectorXd b;
    foldZero(z, m, b);
    Eigen::VectorXd s = ridgeSolve(m, b, oldS);
    bool valid = true;
    for (int64_t g = 0; g < numGroups && valid; ++g) {
      float rounded = roundToScaleType(float(s(g)), fmt.scaleType);
      valid = std::isfinite(rounded) && rounded >= 0;
      s(g) = rounded;
    }
    double before = rowError(oldS, oldZ);
    double after = valid ? rowError(s, z) : before;
    totalBefore += before;
    if (!(after < before)) { // also when the new scales are invalid
      totalAfter += before;
      continue;
    }
    totalAfter += after;
    for (int64_t g = 0; g < numGroups; ++g) {
      out.scales[r * numGroups + g] = float(s(g));
      if (withOffsets)
        out.zeroPoints[r * numGroups + g] =
            uint8_t(std::lround(z(g) / zeroStep));
    }
  }
  if (errors)
    *errors = {totalBefore, totalAfter};
  return out;
}

//===----------------------------------------------------------------------===//
// floatTargetWeights
//===----------------------------------------------------------------------===//

llvm::Expected<std::vector<float>>
qlr::numerics::floatTargetWeights(llvm::ArrayRef<float> w, int64_t n, int64_t k,
                                  llvm::ArrayRef<double> hessian,
                                  llvm::ArrayRef<double> cross, double damp) {
  if (n < 0 || k < 0 || int64_t(w.size()) != n * k ||
      int64_t(hessian.size()) != k * k || int64_t(cross.size()) != k * k)
    return gptqError("floatTargetWeights: weight, hessian or cross "
                     "covariance sizes do not match " +
                     llvm::Twine(n) + "x" + llvm::Twine(k));
  if (!allFinite(w) || !allFinite(hessian) || !allFinite(cross))
    return gptqError("floatTargetWeights: non-finite input");
  if (!std::isfinite(damp) || damp < 0)
    return gptqError("damp must be finite and non-negative, got " +
                     formatDouble(damp));
  if (n == 0 || k == 0)
    return std::vector<float>(w.begin(), w.end());
  Eigen::MatrixXd h = Eigen::Map<const RowMatrixD>(hessian.data(), k, k);
  h = (0.5 * (h + h.transpose())).eval();
  Eigen::MatrixXd d = Eigen::Map<const RowMatrixD>(cross.data(), k, k) - h;
  double meanDiag = h.diagonal().mean();
  h.diagonal().array() += damp * meanDiag;
  // Dead inputs (zero in the quantized model): no correction can use them.
  for (int64_t i = 0; i < k; ++i)
    if (h(i, i) <= 0)
      h(i, i) = 1;
  Eigen::LLT<Eigen::MatrixXd> llt(h);
  if (llt.info() != Eigen::Success)
    return gptqError("floatTargetWeights: the damped hessian is not positive "
                     "definite");
  Eigen::MatrixXd wd =
      Eigen::Map<const RowMatrixF>(w.data(), n, k).cast<double>();
  // Wt = W + (W D) Hd^-1 = W + (Hd^-1 (W D)ᵀ)ᵀ with Hd symmetric.
  Eigen::MatrixXd rhs = (wd * d).transpose();
  Eigen::MatrixXd correction = llt.solve(rhs).transpose();
  std::vector<float> out(n * k);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < k; ++c) {
      float v = float(wd(r, c) + correction(r, c));
      if (!std::isfinite(v))
        return gptqError("floatTargetWeights: non-finite result");
      out[r * k + c] = v;
    }
  return out;
}
