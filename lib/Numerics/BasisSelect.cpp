//===- BasisSelect.cpp - Data-aware low-rank bases (Basis Selection) ------===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// See docs/basis-selection.md for the rules implemented here.
//
//===----------------------------------------------------------------------===//

#include "qlr/Numerics/BasisSelect.h"
#include "EigenTypes.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/Twine.h"
#include "llvm/Support/FormatVariadic.h"

#include <Eigen/Cholesky>
#include <Eigen/Core>
#include <Eigen/SVD>

#include <algorithm>
#include <cassert>
#include <cmath>
#include <numeric>
#include <queue>

using namespace qlr::numerics;
using namespace qlr::numerics::detail;

static llvm::Error basisError(const llvm::Twine &msg) {
  return llvm::createStringError("basis selection: " + msg);
}

std::vector<double> qlr::numerics::singularValues(llvm::ArrayRef<float> w,
                                                  int64_t m, int64_t n) {
  assert(m >= 0 && n >= 0 && int64_t(w.size()) == m * n &&
         "element count mismatch");
  if (std::min(m, n) == 0)
    return {};
  Eigen::BDCSVD<Eigen::MatrixXd> svd(
      Eigen::Map<const RowMatrixF>(w.data(), m, n).cast<double>().eval());
  const Eigen::VectorXd &s = svd.singularValues();
  return std::vector<double>(s.data(), s.data() + s.size());
}

std::vector<double> qlr::numerics::magnitudeScores(const SVD &svd) {
  std::vector<double> scores(svd.s.size());
  for (auto [score, s] : llvm::zip_equal(scores, svd.s))
    score = s * s;
  return scores;
}

std::vector<double> qlr::numerics::energyScores(const SVD &svd,
                                                llvm::ArrayRef<double> gram) {
  int64_t n = svd.n, p = svd.s.size();
  assert(int64_t(gram.size()) == n * n && "Gram matrix size mismatch");
  std::vector<double> scores(p, 0.0);
  if (p == 0)
    return scores;
  Eigen::Map<const RowMatrixD> vt(svd.vt.data(), p, n);
  Eigen::Map<const RowMatrixD> g(gram.data(), n, n);
  // Row i of Vᵀ G dotted with row i of Vᵀ: v_iᵀ G v_i.
  RowMatrixD vtG = vt * g;
  Eigen::VectorXd quad = vtG.cwiseProduct(vt).rowwise().sum();
  for (int64_t i = 0; i < p; ++i)
    scores[i] = std::max(0.0, svd.s[i] * svd.s[i] * quad(i));
  return scores;
}

std::vector<int64_t> qlr::numerics::topBases(llvm::ArrayRef<double> scores,
                                             int64_t count) {
  std::vector<int64_t> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t x, int64_t y) { return scores[x] > scores[y]; });
  order.resize(std::clamp<int64_t>(count, 0, scores.size()));
  return order;
}

int64_t qlr::numerics::breakEvenRank(int64_t m, int64_t n) {
  assert(m > 0 && n > 0 && "break-even of an empty matrix");
  return m * n / (m + n);
}

llvm::Expected<RankAllocation>
qlr::numerics::allocateRanks(llvm::ArrayRef<BasisLayer> layers, double ratio,
                             int64_t minRank) {
  if (!(ratio > 0.0 && ratio <= 1.0))
    return basisError("ratio must be in (0, 1], got " +
                      llvm::formatv("{0}", ratio).str());
  if (minRank < 1)
    return basisError("min-rank must be at least 1, got " +
                      llvm::Twine(minRank));

  // Per layer: its shares in descending order and their suffix sums (the
  // share a dense step gains).
  struct Layer {
    int64_t m, n, cost, breakEven;
    std::vector<double> shares, rest;
  };
  std::vector<Layer> info;
  info.reserve(layers.size());
  int64_t total = 0;
  for (auto [index, layer] : llvm::enumerate(layers)) {
    int64_t p = std::min(layer.m, layer.n);
    if (layer.m < 1 || layer.n < 1)
      return basisError("layer " + llvm::Twine(index) + " has shape " +
                        llvm::Twine(layer.m) + "x" + llvm::Twine(layer.n));
    if (int64_t(layer.scores.size()) != p)
      return basisError("layer " + llvm::Twine(index) + " has " +
                        llvm::Twine(layer.scores.size()) +
                        " scores, expected min(m, n) = " + llvm::Twine(p));
    Layer l{
        layer.m, layer.n, layer.m + layer.n, breakEvenRank(layer.m, layer.n),
        {},      {}};
    l.shares.assign(layer.scores.begin(), layer.scores.end());
    for (double s : l.shares)
      if (!(s >= 0.0) || !std::isfinite(s))
        return basisError("layer " + llvm::Twine(index) +
                          " has a negative or non-finite score");
    std::sort(l.shares.begin(), l.shares.end(), std::greater<double>());
    double sum = std::accumulate(l.shares.begin(), l.shares.end(), 0.0);
    for (double &s : l.shares)
      s = sum > 0.0 ? s / sum : 0.0;
    l.rest.assign(p + 1, 0.0);
    for (int64_t i = p - 1; i >= 0; --i)
      l.rest[i] = l.rest[i + 1] + l.shares[i];
    total += layer.m * layer.n;
    info.push_back(std::move(l));
  }

  RankAllocation result;
  result.budget =
      ratio >= 1.0 ? total : int64_t(std::floor(ratio * double(total)));
  result.ranks.assign(info.size(), 0);
  result.dense.assign(info.size(), false);
  for (auto [index, l] : llvm::enumerate(info)) {
    int64_t r = std::min<int64_t>(minRank, l.shares.size());
    result.ranks[index] = r;
    result.dense[index] = r >= l.breakEven;
    result.params += result.dense[index] ? l.m * l.n : r * l.cost;
  }

  // A layer's next step: its gain / cost, gain and cost.
  struct Step {
    double priority, gain;
    int64_t cost, layer;
  };
  auto nextStep = [&](int64_t index) {
    const Layer &l = info[index];
    int64_t r = result.ranks[index];
    Step step;
    step.layer = index;
    if (r + 1 < l.breakEven) {
      step.gain = l.shares[r];
      step.cost = l.cost;
    } else {
      step.gain = l.rest[r];
      step.cost = l.m * l.n - r * l.cost;
    }
    step.priority = step.gain / double(step.cost);
    return step;
  };
  // Largest priority first; equal priorities: lower layer index first.
  auto later = [](const Step &x, const Step &y) {
    if (x.priority != y.priority)
      return x.priority < y.priority;
    return x.layer > y.layer;
  };
  std::priority_queue<Step, std::vector<Step>, decltype(later)> queue(later);
  for (int64_t index = 0, e = info.size(); index < e; ++index)
    if (!result.dense[index])
      queue.push(nextStep(index));
  while (!queue.empty()) {
    Step step = queue.top();
    queue.pop();
    if (!(step.gain > 0.0) || result.params + step.cost > result.budget)
      continue; // This layer stops here.
    result.params += step.cost;
    int64_t index = step.layer;
    if (++result.ranks[index] >= info[index].breakEven)
      result.dense[index] = true;
    else
      queue.push(nextStep(index));
  }
  return result;
}

LowRankFactors qlr::numerics::basisFactors(const SVD &svd,
                                           llvm::ArrayRef<int64_t> kept) {
  int64_t m = svd.m, n = svd.n, p = svd.s.size(), r = kept.size();
  LowRankFactors f;
  f.rank = r;
  f.a.assign(m * r, 0.0f);
  f.b.assign(r * n, 0.0f);
  for (auto [col, k] : llvm::enumerate(kept)) {
    assert(k >= 0 && k < p && "kept basis index out of range");
    (void)p;
    double root = std::sqrt(svd.s[k]);
    for (int64_t i = 0; i < m; ++i)
      f.a[i * r + col] = float(svd.u[i * p + k] * root);
    for (int64_t j = 0; j < n; ++j)
      f.b[col * n + j] = float(svd.vt[k * n + j] * root);
  }
  return f;
}

llvm::Expected<LowRankFactors> qlr::numerics::refitFactors(
    llvm::ArrayRef<float> w, const SVD &svd, llvm::ArrayRef<int64_t> kept,
    llvm::ArrayRef<double> gram, const RefitOptions &options) {
  int64_t m = svd.m, n = svd.n, p = svd.s.size(), r = kept.size();
  if (int64_t(w.size()) != m * n)
    return basisError("weight has " + llvm::Twine(w.size()) +
                      " elements, expected " + llvm::Twine(m) + "x" +
                      llvm::Twine(n));
  if (int64_t(gram.size()) != n * n)
    return basisError("Gram matrix has " + llvm::Twine(gram.size()) +
                      " elements, expected " + llvm::Twine(n) + "x" +
                      llvm::Twine(n));
  std::vector<bool> seen(p, false);
  for (int64_t k : kept) {
    if (k < 0 || k >= p || seen[k])
      return basisError("invalid or repeated basis index " + llvm::Twine(k));
    seen[k] = true;
  }
  LowRankFactors f;
  f.rank = r;
  if (r == 0)
    return f;

  Eigen::MatrixXd wd =
      Eigen::Map<const RowMatrixF>(w.data(), m, n).cast<double>();
  Eigen::Map<const RowMatrixD> g(gram.data(), n, n);
  Eigen::Map<const RowMatrixD> vt(svd.vt.data(), p, n);
  Eigen::MatrixXd vk(n, r); // V_K, n x r.
  for (int64_t c = 0; c < r; ++c)
    vk.col(c) = vt.row(kept[c]).transpose();

  Eigen::MatrixXd gv = g * vk;                 // G V_K, n x r.
  Eigen::MatrixXd mat = vk.transpose() * gv;   // M = V_Kᵀ G V_K, r x r.
  mat = 0.5 * (mat + mat.transpose()).eval();  // Exactly symmetric.
  Eigen::MatrixXd rhs = (wd * gv).transpose(); // (W G V_K)ᵀ, r x m.
  Eigen::MatrixXd aT;                          // Aᵀ, r x m.

  // Input energy per direction: the scale M's pivots and λ are measured in.
  double mean = g.trace() / double(n);
  auto wellConditioned = [&](const Eigen::LLT<Eigen::MatrixXd> &llt) {
    if (llt.info() != Eigen::Success)
      return false;
    Eigen::VectorXd d = Eigen::MatrixXd(llt.matrixL()).diagonal();
    double lo = d.minCoeff(), hi = d.maxCoeff();
    return lo > 0.0 && lo * lo >= options.minPivot * std::max(hi * hi, mean);
  };
  Eigen::LLT<Eigen::MatrixXd> llt(mat);
  if (wellConditioned(llt)) {
    aT = llt.solve(rhs);
  } else if (mean > 0.0 && std::isfinite(mean)) {
    // Solve with G + λI: M + λI and W (G + λI) V_K.
    double lambda = options.damp * mean;
    Eigen::MatrixXd damped = mat;
    damped.diagonal().array() += lambda;
    Eigen::MatrixXd wv = wd * vk; // W V_K, m x r.
    Eigen::LLT<Eigen::MatrixXd> dampedLLT(damped);
    if (dampedLLT.info() != Eigen::Success)
      return basisError("the damped least-squares system is not positive "
                        "definite");
    aT = dampedLLT.solve(rhs + lambda * wv.transpose());
  } else {
    // No input energy at all: keep W V_K.
    aT = (wd * vk).transpose();
  }

  // Rebalance: A = P Λ Qᵀ gives A V_Kᵀ = (P Λ^{1/2}) (Λ^{1/2} Qᵀ V_Kᵀ).
  Eigen::MatrixXd a = aT.transpose();
  Eigen::BDCSVD<Eigen::MatrixXd> svdA(a, Eigen::ComputeThinU |
                                             Eigen::ComputeThinV);
  Eigen::VectorXd root = svdA.singularValues().cwiseSqrt();
  Eigen::MatrixXd aOut = svdA.matrixU() * root.asDiagonal(); // m x r.
  Eigen::MatrixXd bOut =
      root.asDiagonal() * (vk * svdA.matrixV()).transpose(); // r x n.
  if (!aOut.allFinite() || !bOut.allFinite())
    return basisError("the least-squares refit is not finite");
  RowMatrixF aF = aOut.cast<float>(), bF = bOut.cast<float>();
  f.a.assign(aF.data(), aF.data() + m * r);
  f.b.assign(bF.data(), bF.data() + r * n);
  return f;
}
