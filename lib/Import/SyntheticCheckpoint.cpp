//===- SyntheticCheckpoint.cpp - A random LLaMA for demos/tests -*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#include "qlr/Import/LlamaImporter.h"

#include "llvm/ADT/Hashing.h"
#include "llvm/Support/FormatVariadic.h"

#include <cmath>

using namespace mlir;
using namespace mlir::qlr;
using ::qlr::checkpoint::Checkpoint;
using ::qlr::checkpoint::DType;
using ::qlr::checkpoint::ModelConfig;
using ::qlr::checkpoint::TensorInfo;
using ::qlr::tokenizer::TokenizerData;

namespace {
/// splitmix64: a tiny, well-mixed generator for reproducible weights.
uint64_t splitmix64(uint64_t &state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

class SyntheticCheckpoint : public Checkpoint {
public:
  SyntheticCheckpoint(const ModelConfig &config, uint64_t seed)
      : cfg(config), seed(seed) {
    auto add = [&](std::string name, std::vector<int64_t> shape) {
      infos.push_back({std::move(name), std::move(shape), DType::F32});
    };
    int64_t q = cfg.numHeads * cfg.headDim, kv = cfg.numKVHeads * cfg.headDim;
    add("tok_embeddings", {cfg.vocabSize, cfg.dim});
    for (int64_t l = 0; l < cfg.numLayers; ++l) {
      std::string p = llvm::formatv("layers.{0}.", l).str();
      add(p + "attention_norm", {cfg.dim});
      add(p + "attention.wq", {q, cfg.dim});
      add(p + "attention.wk", {kv, cfg.dim});
      add(p + "attention.wv", {kv, cfg.dim});
      add(p + "attention.wo", {cfg.dim, q});
      add(p + "ffn_norm", {cfg.dim});
      add(p + "feed_forward.w1", {cfg.hiddenDim, cfg.dim});
      add(p + "feed_forward.w2", {cfg.dim, cfg.hiddenDim});
      add(p + "feed_forward.w3", {cfg.hiddenDim, cfg.dim});
    }
    add("norm", {cfg.dim});
    if (!cfg.tiedEmbeddings)
      add("output", {cfg.vocabSize, cfg.dim});

    // A byte-level SentencePiece vocabulary: <unk>, <s>, </s>, the 256 byte
    // tokens, then single printable characters up to the vocabulary size.
    TokenizerData t;
    t.tokens = {"<unk>", "<s>", "</s>"};
    t.tokenTypes = {2, 3, 3};
    for (int byte = 0; byte < 256; ++byte) {
      t.tokens.push_back(llvm::formatv("<0x{0:X-2}>", byte).str());
      t.tokenTypes.push_back(6);
    }
    for (char c = ' '; c <= '~' && int64_t(t.tokens.size()) < cfg.vocabSize;
         ++c) {
      t.tokens.push_back(c == ' ' ? "\xE2\x96\x81" : std::string(1, c));
      t.tokenTypes.push_back(1);
    }
    while (int64_t(t.tokens.size()) < cfg.vocabSize) {
      t.tokens.push_back(llvm::formatv("<unused{0}>", t.tokens.size()).str());
      t.tokenTypes.push_back(5);
    }
    t.tokens.resize(cfg.vocabSize);
    t.tokenTypes.resize(cfg.vocabSize);
    t.scores.assign(cfg.vocabSize, 0.0f);
    t.bosId = 1;
    t.eosId = 2;
    t.unkId = 0;
    tok = std::move(t);
  }

  llvm::StringRef formatName() const override { return "synthetic"; }
  llvm::StringRef path() const override { return "<synthetic>"; }
  const ModelConfig &config() const override { return cfg; }
  llvm::ArrayRef<TensorInfo> tensors() const override { return infos; }
  const std::optional<TokenizerData> &tokenizer() const override { return tok; }

  llvm::Error readTensor(llvm::StringRef name,
                         llvm::MutableArrayRef<float> out) const override {
    const TensorInfo *info = findTensor(name);
    if (!info)
      return llvm::createStringError("<synthetic>: no tensor '%s'",
                                     name.str().c_str());
    uint64_t state = seed ^ llvm::hash_value(name);
    bool isNorm = info->shape.size() == 1;
    // Uniform in [-a, a] with a = sqrt(3 / fan_in): unit-variance outputs.
    double bound = isNorm ? 0.1 : std::sqrt(3.0 / double(info->shape.back()));
    for (float &value : out) {
      double u = double(splitmix64(state) >> 11) * 0x1.0p-53;
      double r = (2.0 * u - 1.0) * bound;
      value = float(isNorm ? 1.0 + r : r);
    }
    return llvm::Error::success();
  }

private:
  ModelConfig cfg;
  uint64_t seed;
  std::vector<TensorInfo> infos;
  std::optional<TokenizerData> tok;
};
} // namespace

std::unique_ptr<Checkpoint>
mlir::qlr::createSyntheticCheckpoint(const ModelConfig &config, uint64_t seed) {
  return std::make_unique<SyntheticCheckpoint>(config, seed);
}
