//===- NormTweakForwardTest.cpp - Norm Tweaking block vs LlamaModel -------===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// The forward pass of numerics::LlamaBlockBackprop (the block Norm Tweaking
// differentiates) against the calibration engine's LlamaModel::forwardBlock
// on random models: both must compute the same block.
//
//===----------------------------------------------------------------------===//

#include "../Numerics/NormTweakTestUtil.h"
#include "TestModels.h"

#include "qlr/Numerics/NormTweak.h"

#include "gtest/gtest.h"

#include <cmath>

using namespace qlr::calibration;
using namespace qlr::calibration::test;
using namespace qlr::numerics;
using namespace qlr::numerics::test;

namespace {

LlamaBlockShape blockShape(const LlamaConfig &c) {
  LlamaBlockShape s;
  s.dim = c.dim;
  s.headDim = c.headDim;
  s.heads = c.heads;
  s.kvHeads = c.kvHeads;
  s.hiddenDim = c.hiddenDim;
  s.normEps = c.normEps;
  s.ropeTheta = c.ropeTheta;
  return s;
}

/// max |a - b| / max |b|.
template <typename T>
double maxRelativeDifference(const std::vector<T> &a,
                             const std::vector<float> &b) {
  EXPECT_EQ(a.size(), b.size());
  double diff = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::abs(double(a[i]) - double(b[i])));
    scale = std::max(scale, std::abs(double(b[i])));
  }
  return diff / scale;
}

/// Runs every block of a random model on `sequences` x `seqLen` random
/// tokens through LlamaModel and through LlamaBlockBackprop (float at every
/// SIMD level, and double), each block on the model's input to it.
void checkModel(const LlamaConfig &config, int64_t sequences, int64_t seqLen,
                uint64_t seed) {
  auto created = LlamaModel::create(config, randomWeights(config, seed));
  ASSERT_TRUE(bool(created)) << llvm::toString(created.takeError());
  LlamaModel model = std::move(*created);
  Activations x = model.embed(
      randomTokens(config, sequences * seqLen, seed + 1), sequences, seqLen);
  LlamaBlockShape shape = blockShape(config);
  // Both compute the block in float32 but in different orders (OpenBLAS
  // against LlamaBlockBackprop's kernels at each SIMD level, or double): one
  // block's worst-case rounding difference, relative to the largest output
  // (4e-5 for 16 tokens, 6e-5 for 90).
  double tolerance = forwardTolerance(config, seqLen, 1, false);
  for (int64_t layer = 0; layer < config.layers; ++layer) {
    SCOPED_TRACE(testing::Message() << "block " << layer);
    Activations expected = model.forwardBlock(layer, x);

    TypedBlock<float> weightsF(model.block(layer));
    for (SimdLevel level :
         {SimdLevel::Portable, SimdLevel::AVX2, SimdLevel::AVX512}) {
      if (level > detectSimdLevel())
        continue;
      SCOPED_TRACE(testing::Message() << "simd level " << int(level));
      LlamaBlockBackprop<float> engine(shape, 1, level);
      std::vector<float> y(x.data.size());
      engine.forward(weightsF.params(), x.data, sequences, seqLen, y);
      EXPECT_LT(maxRelativeDifference(y, expected.data), tolerance);
    }

    TypedBlock<double> weightsD(model.block(layer));
    LlamaBlockBackprop<double> engineD(shape);
    std::vector<double> yD(x.data.size());
    engineD.forward(weightsD.params(), cast<double>(x.data), sequences, seqLen,
                    yD);
    EXPECT_LT(maxRelativeDifference(yD, expected.data), tolerance);
    x = std::move(expected);
  }
}

TEST(NormTweakForwardTest, MatchesLlamaModelForwardBlock) {
  checkModel(smallConfig(), /*sequences=*/3, /*seqLen=*/16, /*seed=*/1);
}

TEST(NormTweakForwardTest, MatchesLlamaModelOnLongSequences) {
  // Longer than one attention query block of LlamaBlockBackprop (64 rows),
  // one key/value head for four query heads, another theta and epsilon.
  LlamaConfig config = smallConfig();
  config.kvHeads = 1;
  config.maxSeqLen = 100;
  config.ropeTheta = 500000.0;
  config.normEps = 1e-6;
  checkModel(config, /*sequences=*/2, /*seqLen=*/90, /*seed=*/2);
}

} // namespace
