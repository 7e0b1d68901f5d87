//===- TestModels.h - Random models for the calibration tests -*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#ifndef QLR_UNITTESTS_CALIBRATION_TESTMODELS_H
#define QLR_UNITTESTS_CALIBRATION_TESTMODELS_H

#include "qlr/Calibration/LlamaModel.h"

#include <cmath>
#include <random>

namespace qlr::calibration::test {

/// A small grouped-query model (4 query heads, 2 key/value heads).
inline LlamaConfig smallConfig() {
  LlamaConfig c;
  c.dim = 32;
  c.headDim = 8;
  c.heads = 4;
  c.kvHeads = 2;
  c.hiddenDim = 48;
  c.layers = 2;
  c.vocabSize = 64;
  c.maxSeqLen = 16;
  c.normEps = 1e-5;
  c.ropeTheta = 10000.0;
  c.tiedEmbeddings = false;
  return c;
}

/// Weights uniform in +-sqrt(3 / fan_in), norms in 1 +- 0.1.
inline LlamaWeights randomWeights(const LlamaConfig &c, uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto fill = [&](int64_t rows, int64_t cols) {
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    float bound = std::sqrt(3.0f / float(cols));
    std::vector<float> v(rows * cols);
    for (float &x : v)
      x = dist(rng) * bound;
    return v;
  };
  auto norm = [&](int64_t n) {
    std::uniform_real_distribution<float> dist(0.9f, 1.1f);
    std::vector<float> v(n);
    for (float &x : v)
      x = dist(rng);
    return v;
  };
  int64_t q = c.heads * c.headDim, kv = c.kvHeads * c.headDim;
  LlamaWeights w;
  w.tokEmbeddings = fill(c.vocabSize, c.dim);
  for (int64_t l = 0; l < c.layers; ++l) {
    BlockWeights b;
    b.attentionNorm = norm(c.dim);
    b.wq = fill(q, c.dim);
    b.wk = fill(kv, c.dim);
    b.wv = fill(kv, c.dim);
    b.wo = fill(c.dim, q);
    b.ffnNorm = norm(c.dim);
    b.w1 = fill(c.hiddenDim, c.dim);
    b.w2 = fill(c.dim, c.hiddenDim);
    b.w3 = fill(c.hiddenDim, c.dim);
    w.blocks.push_back(std::move(b));
  }
  w.norm = norm(c.dim);
  if (!c.tiedEmbeddings)
    w.output = fill(c.vocabSize, c.dim);
  return w;
}

/// How far apart, relative to the largest magnitude, two float32
/// evaluations of `blocks` blocks of a model (then the classifier when
/// `logits`) on sequences of `seqLen` tokens may be when they sum in
/// different orders: sgemm calls of other shapes (BLAS blocks them
/// differently), other kernels, SIMD widths, FMA or not. A dot product of
/// length k is off by at most k * 2^-24 * sum |a_i b_i| in any order, and
/// errors add along the chain of dot products an output depends on; per
/// block: dim (q, k, v) + headDim (scores) + seqLen (softmax-weighted values)
/// + heads * headDim (wo) + dim (w1, w3) + hiddenDim (w2); dim more for the
/// classifier. Times 2 for two evaluations, and 2 for sum |a_i b_i|, which
/// for these random weights is about the largest output magnitude. (The
/// worst case: measured differences are ~100x smaller.)
inline double forwardTolerance(const LlamaConfig &c, int64_t seqLen,
                               int64_t blocks, bool logits) {
  int64_t chain = blocks * (c.dim + c.headDim + seqLen + c.heads * c.headDim +
                            c.dim + c.hiddenDim) +
                  (logits ? c.dim : 0);
  return 4.0 * double(chain) * 0x1p-24;
}

/// `count` tokens uniform in [0, vocab).
inline std::vector<int32_t> randomTokens(const LlamaConfig &c, int64_t count,
                                         uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> tokens(count);
  for (int32_t &t : tokens)
    t = int32_t(rng() % uint64_t(c.vocabSize));
  return tokens;
}

} // namespace qlr::calibration::test

#endif // QLR_UNITTESTS_CALIBRATION_TESTMODELS_H
