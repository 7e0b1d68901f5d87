//===- Llama2cTest.cpp - Tests for the llama2.c checkpoint reader ---------===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#include "TestUtil.h"

#include "llvm/Support/FileSystem.h"

#include "gtest/gtest.h"

#include <cmath>
#include <map>

using namespace llvm;
using namespace qlr::checkpoint;
using namespace qlr::checkpoint::test;

namespace {

struct Llama2cHeader {
  int32_t dim = 8, hidden = 12, layers = 2, heads = 2, kvHeads = 1, vocab = 10,
          seqLen = 4;
};

/// A synthetic llama2.c model: random canonical tensors and the file bytes
/// that hold them.
struct Llama2cModel {
  Llama2cHeader h;
  bool shared = true;
  std::map<std::string, std::vector<float>> tensors;
  std::vector<uint8_t> bytes;
};

Llama2cModel makeModel(const Llama2cHeader &h, bool shared, unsigned seed = 1) {
  Llama2cModel m;
  m.h = h;
  m.shared = shared;
  std::mt19937 rng(seed);
  int64_t headDim = h.dim / h.heads;
  int64_t q = h.heads * headDim, kv = h.kvHeads * headDim;
  ByteWriter w;
  w.i32(h.dim).i32(h.hidden).i32(h.layers).i32(h.heads).i32(h.kvHeads);
  w.i32(shared ? h.vocab : -h.vocab).i32(h.seqLen);
  auto add = [&](const std::string &name, int64_t n) {
    m.tensors[name] = randomFloats(rng, n);
    w.f32s(m.tensors[name]);
  };
  add("tok_embeddings", int64_t(h.vocab) * h.dim);
  struct {
    const char *suffix;
    int64_t size;
  } perLayer[] = {
      {"attention_norm", h.dim},
      {"attention.wq", q * h.dim},
      {"attention.wk", kv * h.dim},
      {"attention.wv", kv * h.dim},
      {"attention.wo", h.dim * q},
      {"ffn_norm", h.dim},
      {"feed_forward.w1", int64_t(h.hidden) * h.dim},
      {"feed_forward.w2", int64_t(h.dim) * h.hidden},
      {"feed_forward.w3", int64_t(h.hidden) * h.dim},
  };
  for (const auto &p : perLayer)
    for (int32_t l = 0; l < h.layers; ++l)
      add("layers." + std::to_string(l) + "." + p.suffix, p.size);
  add("norm", h.dim);
  // freq_cis_real and freq_cis_imag: present in the file, not a tensor.
  w.f32s(randomFloats(rng, 2 * int64_t(h.seqLen) * (headDim / 2)));
  if (!shared)
    add("output", int64_t(h.vocab) * h.dim);
  m.bytes = std::move(w.bytes());
  return m;
}

std::vector<uint8_t> header(int32_t dim, int32_t hidden, int32_t layers,
                            int32_t heads, int32_t kvHeads, int32_t vocab,
                            int32_t seqLen) {
  ByteWriter w;
  w.i32(dim).i32(hidden).i32(layers).i32(heads).i32(kvHeads).i32(vocab);
  w.i32(seqLen);
  return w.bytes();
}

void checkModel(const Checkpoint &ckpt, const Llama2cModel &m) {
  EXPECT_EQ(ckpt.formatName(), "llama2.c");
  const ModelConfig &c = ckpt.config();
  EXPECT_EQ(c.dim, m.h.dim);
  EXPECT_EQ(c.hiddenDim, m.h.hidden);
  EXPECT_EQ(c.numLayers, m.h.layers);
  EXPECT_EQ(c.numHeads, m.h.heads);
  EXPECT_EQ(c.numKVHeads, m.h.kvHeads);
  EXPECT_EQ(c.headDim, m.h.dim / m.h.heads);
  EXPECT_EQ(c.vocabSize, m.h.vocab);
  EXPECT_EQ(c.maxSeqLen, m.h.seqLen);
  EXPECT_EQ(c.normEps, 1e-5f);
  EXPECT_EQ(c.ropeTheta, 10000.0f);
  EXPECT_EQ(c.tiedEmbeddings, m.shared);
  EXPECT_FALSE(ckpt.tokenizer().has_value());

  std::vector<std::string> expected = canonicalNames(m.h.layers, m.shared);
  ASSERT_EQ(ckpt.tensors().size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    const TensorInfo &info = ckpt.tensors()[i];
    EXPECT_EQ(info.name, expected[i]);
    EXPECT_EQ(info.dtype, DType::F32);
    EXPECT_EQ(readAll(ckpt, info.name), m.tensors.at(info.name)) << info.name;
  }
}

TEST(Llama2cTest, ReadsTiedModel) {
  TempDir dir;
  Llama2cModel m = makeModel(Llama2cHeader(), /*shared=*/true);
  writeFile(dir.path("model.bin"), m.bytes);
  std::unique_ptr<Checkpoint> ckpt = openOrFail(dir.path("model.bin"));
  ASSERT_TRUE(ckpt);
  EXPECT_EQ(ckpt->path(), dir.path("model.bin"));
  checkModel(*ckpt, m);

  // Shapes, with GQA (2 heads, 1 KV head, head size 4).
  auto shape = [&](StringRef name) { return ckpt->findTensor(name)->shape; };
  using Shape = std::vector<int64_t>;
  EXPECT_EQ(shape("tok_embeddings"), (Shape{10, 8}));
  EXPECT_EQ(shape("layers.1.attention_norm"), (Shape{8}));
  EXPECT_EQ(shape("layers.1.attention.wq"), (Shape{8, 8}));
  EXPECT_EQ(shape("layers.1.attention.wk"), (Shape{4, 8}));
  EXPECT_EQ(shape("layers.1.attention.wv"), (Shape{4, 8}));
  EXPECT_EQ(shape("layers.1.attention.wo"), (Shape{8, 8}));
  EXPECT_EQ(shape("layers.0.feed_forward.w1"), (Shape{12, 8}));
  EXPECT_EQ(shape("layers.0.feed_forward.w2"), (Shape{8, 12}));
  EXPECT_EQ(shape("layers.0.feed_forward.w3"), (Shape{12, 8}));
  EXPECT_EQ(shape("norm"), (Shape{8}));
  EXPECT_EQ(ckpt->findTensor("output"), nullptr);
}

TEST(Llama2cTest, ReadsUntiedModel) {
  TempDir dir;
  Llama2cHeader h;
  h.layers = 3;
  h.heads = 4;
  h.kvHeads = 2;
  h.dim = 16;
  Llama2cModel m = makeModel(h, /*shared=*/false, /*seed=*/7);
  writeFile(dir.path("untied.bin"), m.bytes);
  std::unique_ptr<Checkpoint> ckpt = openOrFail(dir.path("untied.bin"));
  ASSERT_TRUE(ckpt);
  checkModel(*ckpt, m);
  EXPECT_EQ(ckpt->tensors().back().name, "output");
  EXPECT_EQ(ckpt->findTensor("output")->shape, (std::vector<int64_t>{10, 16}));
}

TEST(Llama2cTest, ReadTensorChecksNameAndSize) {
  TempDir dir;
  Llama2cModel m = makeModel(Llama2cHeader(), true);
  writeFile(dir.path("model.bin"), m.bytes);
  std::unique_ptr<Checkpoint> ckpt = openOrFail(dir.path("model.bin"));
  ASSERT_TRUE(ckpt);
  std::vector<float> buffer(7);
  EXPECT_EQ(toString(ckpt->readTensor("norm", buffer)),
            dir.path("model.bin") +
                ": cannot read tensor 'norm' [8] (8 elements) into a buffer "
                "of 7 elements");
  EXPECT_EQ(toString(ckpt->readTensor("output", buffer)),
            dir.path("model.bin") + ": no tensor named 'output'");
}

TEST(Llama2cTest, Stories260K) {
  const char *path = "/work/shared/models/stories260K.bin";
  if (!sys::fs::exists(path))
    GTEST_SKIP() << path << " is absent; skipping the real llama2.c model";
  std::unique_ptr<Checkpoint> ckpt = openOrFail(path);
  ASSERT_TRUE(ckpt);
  const ModelConfig &c = ckpt->config();
  EXPECT_EQ(c.dim, 64);
  EXPECT_EQ(c.hiddenDim, 172);
  EXPECT_EQ(c.numLayers, 5);
  EXPECT_EQ(c.numHeads, 8);
  EXPECT_EQ(c.numKVHeads, 4);
  EXPECT_EQ(c.headDim, 8);
  EXPECT_EQ(c.vocabSize, 512);
  EXPECT_EQ(c.maxSeqLen, 512);
  EXPECT_TRUE(c.tiedEmbeddings);
  std::vector<std::string> expected = canonicalNames(5, true);
  ASSERT_EQ(ckpt->tensors().size(), expected.size());
  size_t total = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(ckpt->tensors()[i].name, expected[i]);
    std::vector<float> values = readAll(*ckpt, expected[i]);
    total += values.size();
    for (float v : values)
      ASSERT_TRUE(std::isfinite(v)) << expected[i];
  }
  // Every float of the file except the header and freq_cis.
  EXPECT_EQ(total, (1056540u - 28u) / 4 - 2 * 512 * 4);
  EXPECT_EQ(ckpt->findTensor("layers.4.attention.wk")->shape,
            (std::vector<int64_t>{32, 64}));
  // The RMSNorm weights of a trained model are positive-ish, not noise.
  std::vector<float> norm = readAll(*ckpt, "norm");
  float mean = 0;
  for (float v : norm)
    mean += v / norm.size();
  EXPECT_GT(mean, 0.1f);
}

//===----------------------------------------------------------------------===//
// Malformed files
//===----------------------------------------------------------------------===//

class Llama2cErrorTest : public ::testing::Test {
protected:
  std::string error(ArrayRef<uint8_t> bytes) {
    writeFile(dir.path("bad.bin"), bytes);
    return openError(dir.path("bad.bin"));
  }
  std::string file() const { return dir.path("bad.bin"); }
  TempDir dir;
};

TEST_F(Llama2cErrorTest, MissingFile) {
  std::string message = openError(dir.path("absent.bin"));
  EXPECT_NE(message.find(dir.path("absent.bin") + ": cannot open: "),
            std::string::npos)
      << message;
}

TEST_F(Llama2cErrorTest, EmptyFile) {
  EXPECT_EQ(error({}), file() + ": not a GGUF file, and too small (0 bytes) "
                                "for the 28-byte header of a llama2.c "
                                "checkpoint");
}

TEST_F(Llama2cErrorTest, TruncatedHeader) {
  std::vector<uint8_t> bytes = makeModel(Llama2cHeader(), true).bytes;
  bytes.resize(10);
  EXPECT_EQ(error(bytes), file() + ": not a GGUF file, and too small (10 "
                                   "bytes) for the 28-byte header of a "
                                   "llama2.c checkpoint");
}

TEST_F(Llama2cErrorTest, TruncatedData) {
  std::vector<uint8_t> full = makeModel(Llama2cHeader(), false).bytes;
  // At the end of the header, inside the embeddings, in the middle, and
  // inside the untied classifier at the end.
  for (size_t size :
       {size_t(28), size_t(100), full.size() / 2, full.size() - 4}) {
    std::vector<uint8_t> bytes(full.begin(), full.begin() + size);
    EXPECT_EQ(error(bytes),
              file() +
                  ": the llama2.c header (dim 8, hidden_dim 12, n_layers 2, "
                  "n_heads 2, n_kv_heads 1, vocab_size -10, seq_len 4) "
                  "implies a file of " +
                  std::to_string(full.size()) + " bytes, but the file has " +
                  std::to_string(size) + " bytes");
  }
}

TEST_F(Llama2cErrorTest, TrailingBytes) {
  std::vector<uint8_t> bytes = makeModel(Llama2cHeader(), true).bytes;
  size_t expected = bytes.size();
  bytes.push_back(0);
  std::string message = error(bytes);
  EXPECT_NE(message.find("implies a file of " + std::to_string(expected) +
                         " bytes, but the file has " +
                         std::to_string(expected + 1) + " bytes"),
            std::string::npos)
      << message;
}

TEST_F(Llama2cErrorTest, UntiedHeaderOnTiedData) {
  // The sign of vocab_size decides whether wcls follows: flipping it makes
  // the file too short.
  Llama2cModel m = makeModel(Llama2cHeader(), true);
  m.bytes[20] = uint8_t(-10);
  m.bytes[21] = m.bytes[22] = m.bytes[23] = 0xFF;
  std::string message = error(m.bytes);
  EXPECT_NE(message.find("vocab_size -10"), std::string::npos) << message;
  EXPECT_NE(message.find("implies a file of " +
                         std::to_string(m.bytes.size() + 10 * 8 * 4)),
            std::string::npos)
      << message;
}

TEST_F(Llama2cErrorTest, HeadsDoNotDivideDim) {
  EXPECT_EQ(error(header(8, 12, 2, 3, 1, 10, 4)),
            file() + ": llama2.c header (dim 8, hidden_dim 12, n_layers 2, "
                     "n_heads 3, n_kv_heads 1, vocab_size 10, seq_len 4): "
                     "n_heads (3) does not divide dim (8)");
}

TEST_F(Llama2cErrorTest, KVHeadsDoNotDivideHeads) {
  EXPECT_EQ(error(header(8, 12, 2, 4, 3, 10, 4)),
            file() + ": llama2.c header field n_kv_heads (3) does not divide "
                     "llama2.c header field n_heads (4)");
}

TEST_F(Llama2cErrorTest, OddHeadSize) {
  EXPECT_EQ(error(header(6, 12, 2, 2, 1, 10, 4)),
            file() + ": the head size dim / n_heads (3) is odd; rotary "
                     "embeddings rotate pairs");
}

TEST_F(Llama2cErrorTest, NegativeDim) {
  EXPECT_EQ(error(header(-8, 12, 2, 2, 1, 10, 4)),
            file() + ": llama2.c header field dim is -8; it must be between "
                     "1 and 2147483647");
}

TEST_F(Llama2cErrorTest, ZeroLayers) {
  EXPECT_EQ(error(header(8, 12, 0, 2, 1, 10, 4)),
            file() + ": llama2.c header field n_layers is 0; it must be "
                     "between 1 and 2147483647");
}

TEST_F(Llama2cErrorTest, ZeroHeads) {
  EXPECT_EQ(error(header(8, 12, 2, 0, 1, 10, 4)),
            file() + ": llama2.c header field n_heads is 0; it must be "
                     "between 1 and 2147483647");
}

TEST_F(Llama2cErrorTest, MinimumVocab) {
  // |INT32_MIN| does not fit in int32.
  EXPECT_EQ(error(header(8, 12, 2, 2, 1, INT32_MIN, 4)),
            file() + ": llama2.c header field vocab_size (absolute value) is "
                     "2147483648; it must be between 1 and 2147483647");
}

TEST_F(Llama2cErrorTest, OverflowingSizes) {
  int32_t big = 2147483644; // Even head size with 2 heads.
  std::string message = error(header(big, big, big, 2, 2, big, big));
  EXPECT_NE(message.find("overflow 64 bits"), std::string::npos) << message;
}

TEST_F(Llama2cErrorTest, HugeButNotOverflowing) {
  // About 2^60 bytes of tensors in a 28-byte file.
  std::string message = error(header(1 << 28, 2, 1, 2, 2, 1 << 28, 2));
  EXPECT_NE(message.find("but the file has 28 bytes"), std::string::npos)
      << message;
}

TEST_F(Llama2cErrorTest, NewerExportVersion) {
  ByteWriter w;
  w.raw(StringRef("24ka")).i32(2); // 0x616b3432 little-endian, version 2.
  w.pad(256);
  EXPECT_EQ(error(w.bytes()),
            file() + ": llama2.c export version 2 (magic 'ak42') is not "
                     "supported; only the legacy version 0 format is");
}

TEST_F(Llama2cErrorTest, NotGGUFMagic) {
  // "GGUX" is not the GGUF magic, so the file is tried as llama2.c.
  ByteWriter w;
  w.raw(StringRef("GGUX")).u32(3).u64(0).u64(0);
  w.pad(64);
  std::string message = error(w.bytes());
  EXPECT_NE(message.find(file() + ": "), std::string::npos) << message;
  EXPECT_NE(message.find("llama2.c header"), std::string::npos) << message;
}

} // namespace
