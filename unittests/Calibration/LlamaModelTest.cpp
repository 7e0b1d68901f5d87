//===- LlamaModelTest.cpp - The float32 calibration engine ----------------===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// MLIR-free tests of LlamaModel on small random models: size validation, the
// forwardBlock observer protocol, generation and perplexity. Agreement with
// the compiled IR is checked in ModuleLoaderTest.cpp.
//
//===----------------------------------------------------------------------===//

#include "TestModels.h"

#include "gtest/gtest.h"

#include <cmath>
#include <limits>
#include <random>

using namespace qlr::calibration;
using namespace qlr::calibration::test;

namespace {

LlamaModel makeModel(const LlamaConfig &config, uint64_t seed) {
  auto model = LlamaModel::create(config, randomWeights(config, seed));
  if (!model) {
    ADD_FAILURE() << llvm::toString(model.takeError());
    std::abort();
  }
  return std::move(*model);
}

std::string createError(const LlamaConfig &config, LlamaWeights weights) {
  auto model = LlamaModel::create(config, std::move(weights));
  if (model)
    return "";
  return llvm::toString(model.takeError());
}

TEST(LlamaModelTest, CreateRejectsWrongSizes) {
  LlamaConfig config = smallConfig();
  EXPECT_EQ(createError(config, randomWeights(config, 1)), "");

  LlamaWeights w = randomWeights(config, 1);
  w.blocks[1].wk.pop_back();
  EXPECT_EQ(createError(config, std::move(w)),
            "layers.1.attention.wk has 511 elements, expected 512");

  w = randomWeights(config, 1);
  w.blocks[0].ffnNorm.push_back(1.0f);
  EXPECT_EQ(createError(config, std::move(w)),
            "layers.0.ffn_norm has 33 elements, expected 32");

  w = randomWeights(config, 1);
  w.blocks.pop_back();
  EXPECT_EQ(createError(config, std::move(w)),
            "got 1 blocks for a model of 2 layers");

  w = randomWeights(config, 1);
  w.tokEmbeddings.resize(10);
  EXPECT_NE(createError(config, std::move(w)).find("tok_embeddings has 10"),
            std::string::npos);

  w = randomWeights(config, 1);
  w.output.clear();
  EXPECT_NE(createError(config, std::move(w)).find("output has 0 elements"),
            std::string::npos);

  LlamaConfig tied = config;
  tied.tiedEmbeddings = true;
  EXPECT_EQ(createError(tied, randomWeights(config, 1)),
            "output must be empty when the embeddings are tied");
  EXPECT_EQ(createError(tied, randomWeights(tied, 1)), "");

  LlamaConfig badHeads = config;
  badHeads.kvHeads = 3;
  EXPECT_EQ(createError(badHeads, randomWeights(config, 1)),
            "3 key/value heads do not divide 4 heads");

  LlamaConfig oddHead = config;
  oddHead.headDim = 7;
  EXPECT_NE(createError(oddHead, randomWeights(config, 1)).find("even head"),
            std::string::npos);

  LlamaConfig zero = config;
  zero.layers = 0;
  EXPECT_EQ(createError(zero, LlamaWeights()),
            "model dimensions must be positive");
}

/// A copy of `w` with every element scaled and shifted.
std::vector<float> perturb(const std::vector<float> &w, float shift) {
  std::vector<float> out(w);
  for (auto [i, v] : llvm::enumerate(out))
    v = v * 0.9f + shift * float(int64_t(i % 7) - 3);
  return out;
}

TEST(LlamaModelTest, ObserverOrderInputsAndWeightSwaps) {
  LlamaConfig config = smallConfig();
  LlamaModel model = makeModel(config, 3);
  const int64_t sequences = 3, seqLen = 5, block = 1;
  std::vector<int32_t> tokens = randomTokens(config, sequences * seqLen, 4);
  Activations x = model.embed(tokens, sequences, seqLen);
  x = model.forwardBlock(0, x);
  Activations untouched = model.forwardBlock(block, x);

  BlockWeights original = model.block(block);
  BlockWeights swapped = original;
  swapped.wq = perturb(original.wq, 0.01f);
  swapped.wk = perturb(original.wk, -0.02f);
  swapped.wv = perturb(original.wv, 0.03f);
  swapped.wo = perturb(original.wo, 0.01f);
  swapped.w1 = perturb(original.w1, -0.01f);
  swapped.w3 = perturb(original.w3, 0.02f);
  swapped.w2 = perturb(original.w2, 0.01f);

  std::vector<LinearGroup> order;
  std::vector<Activations> inputs;
  Activations result = model.forwardBlock(
      block, x, [&](LinearGroup group, const Activations &input) {
        order.push_back(group);
        inputs.push_back(input);
        BlockWeights &b = model.block(block);
        switch (group) {
        case LinearGroup::QKV:
          b.wq = swapped.wq;
          b.wk = swapped.wk;
          b.wv = swapped.wv;
          break;
        case LinearGroup::Output:
          b.wo = swapped.wo;
          break;
        case LinearGroup::GateUp:
          b.w1 = swapped.w1;
          b.w3 = swapped.w3;
          break;
        case LinearGroup::Down:
          b.w2 = swapped.w2;
          break;
        }
      });
  ASSERT_EQ(order,
            (std::vector<LinearGroup>{LinearGroup::QKV, LinearGroup::Output,
                                      LinearGroup::GateUp, LinearGroup::Down}));
  int64_t widths[] = {config.dim, config.heads * config.headDim, config.dim,
                      config.hiddenDim};
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(inputs[i].sequences, sequences);
    EXPECT_EQ(inputs[i].seqLen, seqLen);
    EXPECT_EQ(inputs[i].width, widths[i]);
    EXPECT_EQ(int64_t(inputs[i].data.size()), sequences * seqLen * widths[i]);
  }
  // The QKV input is attention_norm(x), recomputed with the same float
  // operations. Summing the squares (in double) in another order can move
  // float(sum), hence inv, by an ulp; with the three float roundings that is
  // <= 4 * 2^-24 * |y| <= 1.5e-6 for |y| <= sqrt(dim) * 1.1 = 6.3 (3 here).
  // 1e-5 leaves 6x.
  for (int64_t r = 0; r < x.rows(); ++r) {
    double sum = 0;
    for (float v : x.row(r))
      sum += double(v) * v;
    float inv = 1.0f / std::sqrt(float(sum) / float(config.dim) +
                                 float(config.normEps));
    for (int64_t c = 0; c < config.dim; ++c)
      EXPECT_NEAR(inputs[0].row(r)[c],
                  x.row(r)[c] * inv * original.attentionNorm[c], 1e-5);
  }
  // The Down input is silu(w1 h) * (w3 h) of the GateUp input h, with the
  // weights swapped in at GateUp. linear() makes the same sgemm calls as the
  // block (same shapes: same results); silu * up is then a few float
  // roundings and an expf (<= 1 ulp apart between libm variants): <= 5 *
  // 2^-24 * |y| ~ 1e-6 for |y| < 3.5 here. 1e-5 leaves 10x.
  int64_t rows = x.rows(), hidden = config.hiddenDim;
  std::vector<float> gate(rows * hidden), up(rows * hidden);
  linear(inputs[2].data, rows, config.dim, swapped.w1, hidden, gate);
  linear(inputs[2].data, rows, config.dim, swapped.w3, hidden, up);
  for (int64_t i = 0; i < rows * hidden; ++i)
    EXPECT_NEAR(inputs[3].data[i], gate[i] / (1 + std::exp(-gate[i])) * up[i],
                1e-5);

  // Same result as a model that had the swapped weights from the start
  // (the same code on the same inputs and weights: bit-identical).
  LlamaWeights weights = model.weights();
  weights.blocks[block] = swapped;
  auto fresh = LlamaModel::create(config, std::move(weights));
  ASSERT_TRUE(bool(fresh)) << llvm::toString(fresh.takeError());
  Activations expected = fresh->forwardBlock(block, x);
  EXPECT_EQ(result.data, expected.data);
  EXPECT_NE(result.data, untouched.data);
  // The swaps stayed in the model.
  EXPECT_EQ(model.block(block).w2, swapped.w2);
}

TEST(LlamaModelTest, SequencesAreIndependentAndCausal) {
  LlamaConfig config = smallConfig();
  LlamaModel model = makeModel(config, 5);
  std::vector<int32_t> tokens = randomTokens(config, 2 * 6, 6);
  Activations both = model.forward(tokens, 2, 6);
  // Fewer rows are other sgemm shapes, which may sum in another order: the
  // rows agree to forwardTolerance (8e-5) of the largest magnitude; a leak
  // between sequences or positions would be O(1).
  float largest = 0;
  for (float v : both.data)
    largest = std::max(largest, std::fabs(v));
  double tolerance =
      forwardTolerance(config, 6, config.layers, false) * largest;
  // The second sequence alone gives the same rows.
  Activations second =
      model.forward(llvm::ArrayRef(tokens).drop_front(6), 1, 6);
  for (int64_t r = 0; r < 6; ++r)
    for (int64_t c = 0; c < config.dim; ++c)
      EXPECT_NEAR(both.row(6 + r)[c], second.row(r)[c], tolerance);
  // A prefix of the first sequence gives its first rows (causality).
  Activations prefix =
      model.forward(llvm::ArrayRef(tokens).take_front(4), 1, 4);
  for (int64_t r = 0; r < 4; ++r)
    for (int64_t c = 0; c < config.dim; ++c)
      EXPECT_NEAR(both.row(r)[c], prefix.row(r)[c], tolerance);
}

TEST(LlamaModelTest, GenerateIsDeterministicAndGreedyFirst) {
  LlamaConfig config = smallConfig();
  LlamaModel model = makeModel(config, 7);
  const int64_t sequences = 4, seqLen = 12, greedy = 4;
  std::vector<int32_t> a = model.generate(sequences, seqLen, 42, greedy);
  std::vector<int32_t> b = model.generate(sequences, seqLen, 42, greedy);
  std::vector<int32_t> c = model.generate(sequences, seqLen, 43, greedy);
  ASSERT_EQ(int64_t(a.size()), sequences * seqLen);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  for (int32_t token : a) {
    EXPECT_GE(token, 0);
    EXPECT_LT(token, config.vocabSize);
  }
  // Token 0 comes straight from the seeded generator.
  std::mt19937_64 rng(42);
  for (int64_t s = 0; s < sequences; ++s)
    EXPECT_EQ(a[s * seqLen], int32_t(rng() % uint64_t(config.vocabSize)));

  // Tokens 1 .. greedy are the argmax of the logits of a full (prefill)
  // forward of the generated text, which also checks the KV-cache decoder
  // against the prefill path. The decoder's logits come from other sgemm
  // shapes and dot products in another order: they agree to
  // forwardTolerance of the largest logit, so a position decides the argmax
  // only where the top two logits are further apart than that.
  int64_t vocab = config.vocabSize;
  double relative = forwardTolerance(config, seqLen, config.layers, true);
  int64_t checked = 0;
  // The prefill argmax of `row`, or -1 when the top two are too close.
  auto decidedArgmax = [&](const float *row) {
    int64_t best = std::max_element(row, row + vocab) - row;
    float second = -std::numeric_limits<float>::infinity(), largest = 0;
    for (int64_t v = 0; v < vocab; ++v) {
      if (v != best)
        second = std::max(second, row[v]);
      largest = std::max(largest, std::fabs(row[v]));
    }
    if (row[best] - second <= relative * largest)
      return int32_t(-1);
    ++checked;
    return int32_t(best);
  };
  std::vector<float> logits = model.logits(model.forward(a, sequences, seqLen));
  bool sampledDiffers = false;
  for (int64_t s = 0; s < sequences; ++s)
    for (int64_t p = 0; p + 1 < seqLen; ++p) {
      const float *row = logits.data() + (s * seqLen + p) * vocab;
      int32_t best = int32_t(std::max_element(row, row + vocab) - row);
      if (p < greedy) {
        int32_t decided = decidedArgmax(row);
        if (decided >= 0) {
          EXPECT_EQ(a[s * seqLen + p + 1], decided)
              << "sequence " << s << " pos " << p + 1;
        }
      } else {
        sampledDiffers |= a[s * seqLen + p + 1] != best;
      }
    }
  EXPECT_TRUE(sampledDiffers) << "sampling never left the argmax";

  // Temperature 0 is greedy everywhere.
  std::vector<int32_t> g = model.generate(2, seqLen, 9, 0, 0.0);
  std::vector<float> gLogits = model.logits(model.forward(g, 2, seqLen));
  for (int64_t s = 0; s < 2; ++s)
    for (int64_t p = 0; p + 1 < seqLen; ++p) {
      int32_t decided =
          decidedArgmax(gLogits.data() + (s * seqLen + p) * vocab);
      if (decided >= 0) {
        EXPECT_EQ(g[s * seqLen + p + 1], decided);
      }
    }
  // Near-ties are rare: almost every greedy position was checked.
  EXPECT_GE(checked, (sequences * greedy + 2 * (seqLen - 1)) * 9 / 10);
}

TEST(LlamaModelTest, PerplexityIsExpMeanNll) {
  LlamaConfig config = smallConfig();
  config.tiedEmbeddings = true;
  LlamaModel model = makeModel(config, 11);
  const int64_t sequences = 2, seqLen = 7;
  std::vector<int32_t> tokens = randomTokens(config, sequences * seqLen, 12);
  // The float32 logits computed as perplexity() computes them: the same
  // forward, then one sequence at a time (a classifier sgemm of seqLen rows).
  // All rows at once would be another sgemm shape, which BLAS may block
  // differently: its logits may differ in the last bits, and this test
  // checks only the double-precision reduction.
  Activations hidden = model.forward(tokens, sequences, seqLen);
  double nll = 0;
  int64_t vocab = config.vocabSize;
  for (int64_t s = 0; s < sequences; ++s) {
    Activations one;
    one.sequences = 1;
    one.seqLen = seqLen;
    one.width = config.dim;
    one.data.assign(hidden.data.begin() + s * seqLen * config.dim,
                    hidden.data.begin() + (s + 1) * seqLen * config.dim);
    std::vector<float> logits = model.logits(one);
    for (int64_t t = 0; t + 1 < seqLen; ++t) {
      const float *row = logits.data() + t * vocab;
      double sum = 0;
      for (int64_t v = 0; v < vocab; ++v)
        sum += std::exp(double(row[v]));
      nll += std::log(sum) - row[tokens[s * seqLen + t + 1]];
    }
  }
  double expected = std::exp(nll / double(sequences * (seqLen - 1)));
  // Same float logits on both sides; only the double arithmetic differs
  // (perplexity() subtracts the row maximum first). Per token, the sum of 64
  // exponentials is off by at most ~66 * 2^-53 relative and the log by that
  // plus an ulp of |nll| < 16: ~1.2e-14 absolute; the mean NLL likewise, and
  // exp turns it into a relative error of ppl. Both sides: < 3e-14
  // relative; 1e-12 leaves > 30x.
  EXPECT_NEAR(model.perplexity(tokens, sequences, seqLen), expected,
              1e-12 * expected);
  // A random model is close to uniform: perplexity near the vocabulary
  // size, far from 1.
  EXPECT_GT(expected, 0.2 * vocab);
}

/// Checks `got` against (2/n) Σ a bᵀ, the cross covariance of a [n, wa] and
/// b [n, wb] summed in double. The reference is exact to double precision
/// (float products are exact in double). The float sum of n products is off
/// by at most n * 2^-24 * sum |a_i b_j| in any order; the scaling by 2/n is
/// done in double.
void expectMatchesDefinition(const Activations &a, const Activations &b,
                             const std::vector<double> &got) {
  ASSERT_EQ(got.size(), size_t(a.width * b.width));
  for (int64_t i = 0; i < a.width; ++i)
    for (int64_t j = 0; j < b.width; ++j) {
      double expected = 0.0, magnitude = 0.0;
      for (int64_t r = 0; r < a.rows(); ++r) {
        double product =
            double(a.data[r * a.width + i]) * b.data[r * b.width + j];
        expected += product;
        magnitude += std::fabs(product);
      }
      expected *= 2.0 / double(a.rows());
      magnitude *= 2.0 / double(a.rows());
      EXPECT_NEAR(got[i * b.width + j], expected,
                  double(a.rows()) * 0x1p-24 * magnitude)
          << i << ", " << j;
    }
}

} // namespace

// inputHessian (one float sgemm) against the definition (2/n) Σ x xᵀ summed in
// double, on rows with a non-zero mean so cancellation would show.
TEST(LlamaModelTest, InputHessianMatchesDefinition) {
  Activations x;
  x.sequences = 3;
  x.seqLen = 37;
  x.width = 19;
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.5f, 1.0f);
  for (int64_t i = 0; i < x.rows() * x.width; ++i)
    x.data.push_back(normal(rng));
  expectMatchesDefinition(x, x, inputHessian(x));
  Activations empty;
  empty.width = 4;
  EXPECT_EQ(inputHessian(empty), std::vector<double>(16, 0.0));
}

// crossCovariance against the definition (2/n) Σ a bᵀ, with different widths,
// and equal to inputHessian when both sides are the same activations.
TEST(LlamaModelTest, CrossCovarianceMatchesDefinition) {
  std::mt19937 rng(6);
  std::normal_distribution<float> normal(0.3f, 1.0f);
  auto make = [&](int64_t width) {
    Activations x;
    x.sequences = 2;
    x.seqLen = 29;
    x.width = width;
    for (int64_t i = 0; i < x.rows() * x.width; ++i)
      x.data.push_back(normal(rng));
    return x;
  };
  Activations a = make(7), b = make(11);
  expectMatchesDefinition(a, b, crossCovariance(a, b));
  // The same sgemm on the same data: bit-identical.
  EXPECT_EQ(crossCovariance(a, a), inputHessian(a));
}
