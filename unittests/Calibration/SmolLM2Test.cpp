//===- SmolLM2Test.cpp - The engine on SmolLM2-135M -----------------------===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// Runs the calibration engine on SmolLM2-135M-Instruct imported by qlr-import
// when QLR_SMOLLM2_MLIRBC names the module:
//
//   qlr-import SmolLM2-135M-Instruct.Q4_1.gguf -o smol.mlirbc
//   QLR_SMOLLM2_MLIRBC=smol.mlirbc QLRCalibrationTests \
//       --gtest_filter='SmolLM2*'
//
// It checks the logits against the JIT, and prints the time of a calibration
// forward (64 x 256 tokens through every block) and of generate(32, 128).
//
//===----------------------------------------------------------------------===//

#include "qlr/Calibration/ModuleLoader.h"
#include "qlr/InitAll.h"
#include "qlr/Runtime/ModelRunner.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Parser/Parser.h"

#include "gtest/gtest.h"

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <random>

using namespace mlir;
using namespace mlir::qlr;
using ::qlr::calibration::Activations;
using ::qlr::calibration::LlamaModel;

namespace {

double secondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
      .count();
}

TEST(SmolLM2Test, ForwardGenerateAndJitAgreement) {
  const char *path = std::getenv("QLR_SMOLLM2_MLIRBC");
  if (!path || !*path)
    GTEST_SKIP() << "set QLR_SMOLLM2_MLIRBC to SmolLM2-135M imported by "
                    "qlr-import to run this test";

  DialectRegistry registry;
  registerQLRDialects(registry);
  MLIRContext context(registry);
  context.loadDialect<arith::ArithDialect, func::FuncDialect,
                      linalg::LinalgDialect, math::MathDialect,
                      tensor::TensorDialect>();
  auto start = std::chrono::steady_clock::now();
  OwningOpRef<ModuleOp> module =
      parseSourceFile<ModuleOp>(path, ParserConfig(&context));
  ASSERT_TRUE(module) << "cannot parse " << path;
  FailureOr<LlamaModel> loaded = loadLlamaModel(*module);
  ASSERT_TRUE(succeeded(loaded));
  LlamaModel model = std::move(*loaded);
  std::cout << "load: " << secondsSince(start) << " s\n";
  module = {};
  const auto &c = model.config();
  EXPECT_EQ(c.dim, 576);
  EXPECT_EQ(c.layers, 30);
  EXPECT_EQ(c.heads, 9);
  EXPECT_EQ(c.kvHeads, 3);
  EXPECT_EQ(c.hiddenDim, 1536);
  EXPECT_EQ(c.vocabSize, 49152);
  EXPECT_TRUE(c.tiedEmbeddings);

  // Logits of a short text against the compiled module.
  {
    std::vector<int32_t> tokens = {1,   504,  3458, 282, 4649, 314, 1300, 30,
                                   378, 2701, 3555, 17,  3458, 314, 260,  8};
    int64_t t = tokens.size();
    RunnerOptions options;
    auto runner = ModelRunner::load(path, options);
    ASSERT_TRUE(bool(runner)) << llvm::toString(runner.takeError());
    std::vector<float> expected(t * c.vocabSize);
    ASSERT_FALSE(bool((*runner)->forward(tokens, 0, expected)));
    std::vector<float> actual = model.logits(model.forward(tokens, 1, t));
    double maxDiff = 0, maxRef = 0;
    for (size_t i = 0; i < actual.size(); ++i) {
      maxDiff = std::max(maxDiff, std::abs(double(actual[i]) - expected[i]));
      maxRef = std::max(maxRef, std::abs(double(expected[i])));
    }
    std::cout << "engine vs JIT: max |diff| " << maxDiff << ", max |logit| "
              << maxRef << "\n";
    // Two float32 evaluations that sum in different orders. The worst-case
    // bound of forwardTolerance (TestModels.h: 4 * (30 * 3344 + 576) *
    // 2^-24 = 2.4e-2) is too loose to test anything at 30 layers; rounding
    // errors of different operations are independent and add like the
    // square root of the chain length (Higham's probabilistic bound): 4 *
    // sqrt(1e5) * 2^-24 = 7.5e-5. 1e-4 leaves 1.3x over that; measured 4e-6
    // (docs/Calibration.md). A wrong operation moves the logits by O(1).
    EXPECT_LT(maxDiff / maxRef, 1e-4);
  }

  // A calibration forward: 64 sequences of 256 tokens through every block.
  const int64_t sequences = 64, seqLen = 256;
  std::mt19937_64 rng(1);
  std::vector<int32_t> tokens(sequences * seqLen);
  for (int32_t &token : tokens)
    token = int32_t(rng() % uint64_t(c.vocabSize));
  start = std::chrono::steady_clock::now();
  Activations x = model.embed(tokens, sequences, seqLen);
  for (int64_t i = 0; i < c.layers; ++i)
    x = model.forwardBlock(i, x);
  double forwardSeconds = secondsSince(start);
  std::cout << "forward " << sequences << "x" << seqLen << " through "
            << c.layers << " blocks: " << forwardSeconds << " s ("
            << forwardSeconds / c.layers * 1000 << " ms per block)\n";
  for (float v : x.data)
    ASSERT_TRUE(std::isfinite(v));

  // Self-generated calibration text.
  start = std::chrono::steady_clock::now();
  std::vector<int32_t> text = model.generate(32, 128, 7);
  double generateSeconds = secondsSince(start);
  std::cout << "generate(32, 128): " << generateSeconds << " s ("
            << 32.0 * 127 / generateSeconds << " tokens/s)\n";

  // The model finds its own text far more likely than random tokens.
  double own =
      model.perplexity(llvm::ArrayRef(text).take_front(8 * 128), 8, 128);
  double random =
      model.perplexity(llvm::ArrayRef(tokens).take_front(8 * 128), 8, 128);
  std::cout << "perplexity: generated " << own << ", random " << random << "\n";
  // A property of the model, not a rounding bound: the two perplexities
  // differ by orders of magnitude, rounding moves them by ~1e-5 relative.
  EXPECT_LT(own * 20, random);
}

} // namespace
