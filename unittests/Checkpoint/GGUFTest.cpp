//===- GGUFTest.cpp - Tests for the GGUF checkpoint reader ----------------===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#include "TestUtil.h"

#include "qlr/Numerics/FloatFormats.h"

#include "gtest/gtest.h"

#include <cmath>
#include <functional>
#include <map>

using namespace llvm;
using namespace qlr::checkpoint;
using namespace qlr::checkpoint::test;
using qlr::tokenizer::TokenizerData;
using qlr::tokenizer::TokenizerKind;

namespace {

//===----------------------------------------------------------------------===//
// A GGUF writer
//===----------------------------------------------------------------------===//

enum : uint32_t {
  U8 = 0,
  I8 = 1,
  U32 = 4,
  I32 = 5,
  F32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  U64 = 10,
};
enum : uint32_t {
  GGML_F32 = 0,
  GGML_F16 = 1,
  GGML_Q4_0 = 2,
  GGML_Q4_1 = 3,
  GGML_Q8_0 = 8,
  GGML_BF16 = 30,
};

struct GGUFTensorSpec {
  std::string name;
  std::vector<uint64_t> ne; ///< Innermost first.
  uint32_t type = GGML_F32;
  std::vector<uint8_t> data;
  std::optional<uint64_t> offsetOverride;
};

class GGUFBuilder {
public:
  uint32_t version = 3;
  uint64_t alignment = 32;
  std::optional<uint64_t> tensorCountOverride, kvCountOverride;
  /// Offsets of the first tensor info and of the data section in the last
  /// build().
  size_t infoStart = 0, dataStart = 0;

  void kv(StringRef key, uint32_t type,
          std::function<void(ByteWriter &)> payload) {
    ByteWriter w;
    payload(w);
    removeKV(key);
    kvs.push_back({key.str(), type, w.bytes()});
  }
  void kvU32(StringRef key, uint32_t v) {
    kv(key, U32, [=](ByteWriter &w) { w.u32(v); });
  }
  void kvF32(StringRef key, float v) {
    kv(key, F32, [=](ByteWriter &w) { w.f32(v); });
  }
  void kvBool(StringRef key, bool v) {
    kv(key, BOOL, [=](ByteWriter &w) { w.u8(v); });
  }
  void kvString(StringRef key, StringRef v) {
    std::string s = v.str();
    kv(key, STRING, [=](ByteWriter &w) { w.str(s); });
  }
  void kvStrings(StringRef key, const std::vector<std::string> &v) {
    kv(key, ARRAY, [=](ByteWriter &w) {
      w.u32(STRING).u64(v.size());
      for (const std::string &s : v)
        w.str(s);
    });
  }
  void kvF32s(StringRef key, const std::vector<float> &v) {
    kv(key, ARRAY, [=](ByteWriter &w) { w.u32(F32).u64(v.size()).f32s(v); });
  }
  void kvI32s(StringRef key, const std::vector<int32_t> &v) {
    kv(key, ARRAY, [=](ByteWriter &w) {
      w.u32(I32).u64(v.size());
      for (int32_t x : v)
        w.i32(x);
    });
  }
  void removeKV(StringRef key) {
    llvm::erase_if(kvs, [&](const KV &e) { return e.key == key; });
  }

  GGUFTensorSpec &tensor(StringRef name, std::vector<uint64_t> ne,
                         uint32_t type, std::vector<uint8_t> data) {
    tensors.push_back({name.str(), std::move(ne), type, std::move(data), {}});
    return tensors.back();
  }
  GGUFTensorSpec &findTensor(StringRef name) {
    for (GGUFTensorSpec &t : tensors)
      if (t.name == name)
        return t;
    ADD_FAILURE() << "no tensor " << name.str();
    return tensors.front();
  }
  void removeTensor(StringRef name) {
    llvm::erase_if(tensors,
                   [&](const GGUFTensorSpec &t) { return t.name == name; });
  }

  std::vector<uint8_t> build() {
    ByteWriter w;
    w.raw(StringRef("GGUF")).u32(version);
    w.u64(tensorCountOverride.value_or(tensors.size()));
    w.u64(kvCountOverride.value_or(kvs.size()));
    for (const KV &e : kvs)
      w.str(e.key).u32(e.type).raw(e.payload);
    infoStart = w.size();
    uint64_t offset = 0;
    std::vector<uint64_t> offsets;
    for (const GGUFTensorSpec &t : tensors) {
      offsets.push_back(offset);
      w.str(t.name).u32(t.ne.size());
      for (uint64_t d : t.ne)
        w.u64(d);
      w.u32(t.type).u64(t.offsetOverride.value_or(offset));
      offset += (t.data.size() + alignment - 1) / alignment * alignment;
    }
    w.pad(alignment);
    dataStart = w.size();
    for (size_t i = 0; i < tensors.size(); ++i) {
      w.raw(tensors[i].data);
      w.pad(alignment);
    }
    return w.bytes();
  }

private:
  struct KV {
    std::string key;
    uint32_t type;
    std::vector<uint8_t> payload;
  };
  std::vector<KV> kvs;
  std::vector<GGUFTensorSpec> tensors;
};

std::vector<uint8_t> f32Bytes(ArrayRef<float> values) {
  ByteWriter w;
  w.f32s(values);
  return w.bytes();
}

/// The GGUF name of a canonical tensor (written independently of the
/// reader's table).
std::string ggufName(StringRef canonical) {
  if (canonical == "tok_embeddings")
    return "token_embd.weight";
  if (canonical == "norm")
    return "output_norm.weight";
  if (canonical == "output")
    return "output.weight";
  auto [layer, rest] = canonical.drop_front(strlen("layers.")).split('.');
  static const std::map<std::string, std::string> names = {
      {"attention_norm", "attn_norm"}, {"attention.wq", "attn_q"},
      {"attention.wk", "attn_k"},      {"attention.wv", "attn_v"},
      {"attention.wo", "attn_output"}, {"ffn_norm", "ffn_norm"},
      {"feed_forward.w1", "ffn_gate"}, {"feed_forward.w2", "ffn_down"},
      {"feed_forward.w3", "ffn_up"},
  };
  return "blk." + layer.str() + "." + names.at(rest.str()) + ".weight";
}

struct ModelOptions {
  uint32_t dim = 8, hidden = 12, layers = 2, heads = 2, kvHeads = 1, vocab = 6,
           context = 16;
  bool tied = true;
};

/// A llama GGUF model with random F32 tensors, a small SentencePiece
/// tokenizer, and the canonical values it holds.
struct GGUFModel {
  ModelOptions o;
  GGUFBuilder b;
  std::map<std::string, std::vector<float>> expected;
  std::map<std::string, std::vector<int64_t>> shapes;
};

GGUFModel makeModel(const ModelOptions &o = {}, unsigned seed = 1) {
  GGUFModel m;
  m.o = o;
  std::mt19937 rng(seed);
  GGUFBuilder &b = m.b;
  b.kvString("general.architecture", "llama");
  b.kvString("general.name", "synthetic");
  b.kvU32("llama.embedding_length", o.dim);
  b.kvU32("llama.feed_forward_length", o.hidden);
  b.kvU32("llama.block_count", o.layers);
  b.kvU32("llama.attention.head_count", o.heads);
  b.kvU32("llama.attention.head_count_kv", o.kvHeads);
  b.kvU32("llama.context_length", o.context);
  b.kvF32("llama.attention.layer_norm_rms_epsilon", 1e-6f);
  b.kvF32("llama.rope.freq_base", 500000.0f);
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
  while (tokens.size() < o.vocab)
    tokens.push_back("\xE2\x96\x81t" + std::to_string(tokens.size()));
  b.kvString("tokenizer.ggml.model", "llama");
  b.kvStrings("tokenizer.ggml.tokens", tokens);

  uint64_t headDim = o.dim / o.heads;
  uint64_t q = o.heads * headDim, kv = o.kvHeads * headDim;
  auto add = [&](const std::string &canonical, std::vector<int64_t> shape) {
    size_t n = 1;
    for (int64_t d : shape)
      n *= d;
    m.expected[canonical] = randomFloats(rng, n);
    m.shapes[canonical] = shape;
    std::vector<uint64_t> ne(shape.rbegin(), shape.rend());
    b.tensor(ggufName(canonical), ne, GGML_F32,
             f32Bytes(m.expected[canonical]));
  };
  // llama.cpp's file order, which differs from the canonical order.
  add("tok_embeddings", {o.vocab, o.dim});
  for (uint32_t l = 0; l < o.layers; ++l) {
    std::string p = "layers." + std::to_string(l) + ".";
    add(p + "attention_norm", {o.dim});
    add(p + "feed_forward.w2", {o.dim, o.hidden});
    add(p + "feed_forward.w1", {o.hidden, o.dim});
    add(p + "feed_forward.w3", {o.hidden, o.dim});
    add(p + "ffn_norm", {o.dim});
    add(p + "attention.wk", {int64_t(kv), o.dim});
    add(p + "attention.wo", {o.dim, int64_t(q)});
    add(p + "attention.wq", {int64_t(q), o.dim});
    add(p + "attention.wv", {int64_t(kv), o.dim});
  }
  add("norm", {o.dim});
  if (!o.tied)
    add("output", {o.vocab, o.dim});
  return m;
}

void checkValues(const Checkpoint &ckpt, const GGUFModel &m) {
  std::vector<std::string> names = canonicalNames(m.o.layers, m.o.tied);
  ASSERT_EQ(ckpt.tensors().size(), names.size());
  for (size_t i = 0; i < names.size(); ++i) {
    const TensorInfo &info = ckpt.tensors()[i];
    EXPECT_EQ(info.name, names[i]);
    EXPECT_EQ(info.shape, m.shapes.at(names[i])) << names[i];
    EXPECT_EQ(info.dtype, DType::F32);
    EXPECT_EQ(readAll(ckpt, names[i]), m.expected.at(names[i])) << names[i];
  }
}

class GGUFTest : public ::testing::Test {
protected:
  std::string write(GGUFBuilder &b, StringRef name = "model.gguf") {
    std::string path = dir.path(name);
    writeFile(path, b.build());
    return path;
  }
  std::unique_ptr<Checkpoint> open(GGUFBuilder &b) {
    return openOrFail(write(b));
  }
  /// The error opening `b`, without the "<path>: " prefix.
  std::string error(GGUFBuilder &b) {
    std::string path = write(b);
    std::string message = openError(path);
    if (!StringRef(message).starts_with(path + ": ")) {
      ADD_FAILURE() << "the error does not start with the path: " << message;
      return message;
    }
    return message.substr(path.size() + 2);
  }
  std::string error(ArrayRef<uint8_t> bytes) {
    std::string path = dir.path("model.gguf");
    writeFile(path, bytes);
    std::string message = openError(path);
    EXPECT_TRUE(StringRef(message).starts_with(path + ": ")) << message;
    return message.substr(std::min(message.size(), path.size() + 2));
  }
  TempDir dir;
};

//===----------------------------------------------------------------------===//
// Well-formed files
//===----------------------------------------------------------------------===//

TEST_F(GGUFTest, ReadsTiedGQAModel) {
  GGUFModel m = makeModel();
  std::unique_ptr<Checkpoint> ckpt = open(m.b);
  ASSERT_TRUE(ckpt);
  EXPECT_EQ(ckpt->formatName(), "gguf");
  const ModelConfig &c = ckpt->config();
  EXPECT_EQ(c.dim, 8);
  EXPECT_EQ(c.hiddenDim, 12);
  EXPECT_EQ(c.numLayers, 2);
  EXPECT_EQ(c.numHeads, 2);
  EXPECT_EQ(c.numKVHeads, 1);
  EXPECT_EQ(c.headDim, 4);
  EXPECT_EQ(c.vocabSize, 6);
  EXPECT_EQ(c.maxSeqLen, 16);
  EXPECT_EQ(c.normEps, 1e-6f);
  EXPECT_EQ(c.ropeTheta, 500000.0f);
  EXPECT_TRUE(c.tiedEmbeddings);
  checkValues(*ckpt, m);
  EXPECT_EQ(ckpt->findTensor("layers.1.attention.wk")->shape,
            (std::vector<int64_t>{4, 8}));
  EXPECT_EQ(ckpt->findTensor("output"), nullptr);
}

TEST_F(GGUFTest, ReadsUntiedModel) {
  ModelOptions o;
  o.tied = false;
  o.layers = 3;
  o.heads = 4;
  o.kvHeads = 4;
  GGUFModel m = makeModel(o, 3);
  std::unique_ptr<Checkpoint> ckpt = open(m.b);
  ASSERT_TRUE(ckpt);
  EXPECT_FALSE(ckpt->config().tiedEmbeddings);
  EXPECT_EQ(ckpt->config().numKVHeads, 4);
  checkValues(*ckpt, m);
  EXPECT_EQ(ckpt->tensors().back().name, "output");
}

TEST_F(GGUFTest, DefaultsAndOptionalKeys) {
  ModelOptions o;
  o.kvHeads = o.heads;
  GGUFModel m = makeModel(o);
  m.b.removeKV("llama.attention.head_count_kv");
  m.b.removeKV("llama.rope.freq_base");
  std::unique_ptr<Checkpoint> ckpt = open(m.b);
  ASSERT_TRUE(ckpt);
  EXPECT_EQ(ckpt->config().numKVHeads, 2);
  EXPECT_EQ(ckpt->config().ropeTheta, 10000.0f);
}

TEST_F(GGUFTest, VersionTwoWithAlignment) {
  GGUFModel m = makeModel();
  m.b.version = 2;
  m.b.alignment = 64;
  m.b.kvU32("general.alignment", 64);
  std::unique_ptr<Checkpoint> ckpt = open(m.b);
  ASSERT_TRUE(ckpt);
  checkValues(*ckpt, m);
}

TEST_F(GGUFTest, HeadDimFromRopeDimensionCount) {
  // heads * headDim need not equal dim.
  GGUFModel m = makeModel();
  m.b.kvU32("llama.rope.dimension_count", 8);
  for (uint32_t l = 0; l < 2; ++l) {
    std::string p = "blk." + std::to_string(l) + ".";
    m.b.findTensor(p + "attn_q.weight") = {p + "attn_q.weight",
                                           {8, 16},
                                           GGML_F32,
                                           f32Bytes(std::vector<float>(128)),
                                           {}};
    m.b.findTensor(p + "attn_k.weight") = {p + "attn_k.weight",
                                           {8, 8},
                                           GGML_F32,
                                           f32Bytes(std::vector<float>(64)),
                                           {}};
    m.b.findTensor(p + "attn_v.weight") = {p + "attn_v.weight",
                                           {8, 8},
                                           GGML_F32,
                                           f32Bytes(std::vector<float>(64)),
                                           {}};
    m.b.findTensor(p +
                   "attn_output.weight") = {p + "attn_output.weight",
                                            {16, 8},
                                            GGML_F32,
                                            f32Bytes(std::vector<float>(128)),
                                            {}};
  }
  std::unique_ptr<Checkpoint> ckpt = open(m.b);
  ASSERT_TRUE(ckpt);
  EXPECT_EQ(ckpt->config().headDim, 8);
  EXPECT_EQ(ckpt->findTensor("layers.0.attention.wq")->shape,
            (std::vector<int64_t>{16, 8}));
  EXPECT_EQ(ckpt->findTensor("layers.0.attention.wo")->shape,
            (std::vector<int64_t>{8, 16}));
}

//===----------------------------------------------------------------------===//
// Dequantization
//===----------------------------------------------------------------------===//

uint16_t half(float v) { return qlr::numerics::floatToHalfBits(v); }

/// A model with dim 32 whose first tensors use every supported type.
struct QuantModel {
  GGUFModel m;
  std::vector<uint8_t> q8, q40, q41, f16, bf16;
};

QuantModel makeQuantModel() {
  ModelOptions o;
  o.dim = 32;
  o.hidden = 32;
  o.layers = 1;
  o.heads = 4;
  o.kvHeads = 2; // headDim 8, kv rows 16.
  o.vocab = 4;
  QuantModel qm{makeModel(o), {}, {}, {}, {}, {}};
  GGUFBuilder &b = qm.m.b;

  // Q8_0 [4, 32]: block k has d = 0.5 (k + 1) and q[i] = i - 16 + k.
  ByteWriter q8;
  for (int k = 0; k < 4; ++k) {
    q8.u16(half(0.5f * (k + 1)));
    for (int i = 0; i < 32; ++i)
      q8.u8(uint8_t(int8_t(i - 16 + k)));
  }
  // Q4_0 [32, 32]: d = 2 for even blocks, -0.5 for odd ones;
  // qs[i] = ((i + k) & 15) | (15 - i) << 4.
  ByteWriter q40;
  for (int k = 0; k < 32; ++k) {
    q40.u16(k % 2 ? 0xB800 : 0x4000);
    for (int i = 0; i < 16; ++i)
      q40.u8(uint8_t(((i + k) & 15) | (15 - i) << 4));
  }
  // Q4_1 [16, 32]: d = 0.25 (k + 1), m = -1; qs[i] = (15 - i) | i << 4.
  ByteWriter q41;
  for (int k = 0; k < 16; ++k) {
    q41.u16(half(0.25f * (k + 1))).u16(0xBC00);
    for (int i = 0; i < 16; ++i)
      q41.u8(uint8_t((15 - i) | i << 4));
  }
  // F16 [32] and BF16 [16, 32] cycle through a few special values.
  const uint16_t f16Bits[] = {0x3C00, 0xC000, 0x7BFF, 0x0001,
                              0x3555, 0x8000, 0x0400, 0xFBFF};
  ByteWriter f16;
  for (int i = 0; i < 32; ++i)
    f16.u16(f16Bits[i % 8]);
  const uint16_t bf16Bits[] = {0x3F80, 0xC040, 0x4049, 0x0000,
                               0x7F7F, 0x0001, 0xBF00, 0x4120};
  ByteWriter bf16;
  for (int i = 0; i < 16 * 32; ++i)
    bf16.u16(bf16Bits[i % 8]);

  b.findTensor("token_embd.weight") = {
      "token_embd.weight", {32, 4}, GGML_Q8_0, q8.bytes(), {}};
  b.findTensor("blk.0.attn_q.weight") = {
      "blk.0.attn_q.weight", {32, 32}, GGML_Q4_0, q40.bytes(), {}};
  b.findTensor("blk.0.attn_k.weight") = {
      "blk.0.attn_k.weight", {32, 16}, GGML_Q4_1, q41.bytes(), {}};
  b.findTensor("blk.0.attn_norm.weight") = {
      "blk.0.attn_norm.weight", {32}, GGML_F16, f16.bytes(), {}};
  b.findTensor("blk.0.attn_v.weight") = {
      "blk.0.attn_v.weight", {32, 16}, GGML_BF16, bf16.bytes(), {}};
  return qm;
}

TEST_F(GGUFTest, DequantizesEveryType) {
  QuantModel qm = makeQuantModel();
  std::unique_ptr<Checkpoint> ckpt = open(qm.m.b);
  ASSERT_TRUE(ckpt);
  auto dtype = [&](StringRef name) { return ckpt->findTensor(name)->dtype; };
  EXPECT_EQ(dtype("tok_embeddings"), DType::Q8_0);
  EXPECT_EQ(dtype("layers.0.attention.wq"), DType::Q4_0);
  EXPECT_EQ(dtype("layers.0.attention.wk"), DType::Q4_1);
  EXPECT_EQ(dtype("layers.0.attention_norm"), DType::F16);
  EXPECT_EQ(dtype("layers.0.attention.wv"), DType::BF16);
  EXPECT_EQ(dtype("layers.0.attention.wo"), DType::F32);
  EXPECT_EQ(stringifyDType(DType::Q4_1), "Q4_1");

  // Q8_0: x = d * q.
  std::vector<float> q8 = readAll(*ckpt, "tok_embeddings");
  ASSERT_EQ(q8.size(), 128u);
  EXPECT_EQ(q8[0], -8.0f); // d = 0.5, q = -16
  EXPECT_EQ(q8[1], -7.5f);
  EXPECT_EQ(q8[16], 0.0f);
  EXPECT_EQ(q8[31], 7.5f);
  EXPECT_EQ(q8[3 * 32 + 0], -26.0f); // d = 2, q = -13
  EXPECT_EQ(q8[3 * 32 + 31], 36.0f); // d = 2, q = 18
  for (int k = 0; k < 4; ++k)
    for (int i = 0; i < 32; ++i)
      EXPECT_EQ(q8[k * 32 + i], 0.5f * (k + 1) * (i - 16 + k));

  // Q4_0: low nibbles are elements 0..15, high nibbles 16..31; x = d (c - 8).
  std::vector<float> q40 = readAll(*ckpt, "layers.0.attention.wq");
  ASSERT_EQ(q40.size(), 1024u);
  EXPECT_EQ(q40[0], -16.0f);     // d = 2, c = 0
  EXPECT_EQ(q40[15], 14.0f);     // c = 15
  EXPECT_EQ(q40[16], 14.0f);     // high nibble of qs[0] = 15
  EXPECT_EQ(q40[31], -16.0f);    // high nibble of qs[15] = 0
  EXPECT_EQ(q40[32 + 0], 3.5f);  // d = -0.5, c = 1
  EXPECT_EQ(q40[32 + 15], 4.0f); // c = 0
  EXPECT_EQ(q40[32 + 16], -3.5f);
  for (int k = 0; k < 32; ++k) {
    float d = k % 2 ? -0.5f : 2.0f;
    for (int i = 0; i < 16; ++i) {
      EXPECT_EQ(q40[k * 32 + i], d * (((i + k) & 15) - 8));
      EXPECT_EQ(q40[k * 32 + 16 + i], d * ((15 - i) - 8));
    }
  }

  // Q4_1: x = d c + m.
  std::vector<float> q41 = readAll(*ckpt, "layers.0.attention.wk");
  ASSERT_EQ(q41.size(), 512u);
  EXPECT_EQ(q41[0], 2.75f); // 0.25 * 15 - 1
  EXPECT_EQ(q41[15], -1.0f);
  EXPECT_EQ(q41[16], -1.0f);
  EXPECT_EQ(q41[31], 2.75f);
  EXPECT_EQ(q41[32 + 0], 6.5f); // 0.5 * 15 - 1
  for (int k = 0; k < 16; ++k) {
    float d = 0.25f * (k + 1);
    for (int i = 0; i < 16; ++i) {
      EXPECT_EQ(q41[k * 32 + i], d * (15 - i) - 1.0f);
      EXPECT_EQ(q41[k * 32 + 16 + i], d * i - 1.0f);
    }
  }

  const float f16Values[] = {1.0f,
                             -2.0f,
                             65504.0f,
                             std::ldexp(1.0f, -24), // Smallest subnormal.
                             1365.0f / 4096.0f,
                             -0.0f,
                             std::ldexp(1.0f, -14), // Smallest normal.
                             -65504.0f};
  std::vector<float> f16 = readAll(*ckpt, "layers.0.attention_norm");
  for (int i = 0; i < 32; ++i)
    EXPECT_EQ(f16[i], f16Values[i % 8]) << i;
  EXPECT_TRUE(std::signbit(f16[5]));

  const float bf16Values[] = {1.0f,
                              -3.0f,
                              3.140625f,
                              0.0f,
                              std::ldexp(255.0f, 120), // Largest finite.
                              std::ldexp(1.0f, -133),  // Smallest subnormal.
                              -0.5f,
                              10.0f};
  std::vector<float> bf16 = readAll(*ckpt, "layers.0.attention.wv");
  for (int i = 0; i < 16 * 32; ++i)
    EXPECT_EQ(bf16[i], bf16Values[i % 8]) << i;

  // The F32 tensors around them are untouched.
  EXPECT_EQ(readAll(*ckpt, "layers.0.attention.wo"),
            qm.m.expected.at("layers.0.attention.wo"));
  EXPECT_EQ(readAll(*ckpt, "norm"), qm.m.expected.at("norm"));
}

//===----------------------------------------------------------------------===//
// Tokenizers
//===----------------------------------------------------------------------===//

TEST_F(GGUFTest, SentencePieceTokenizer) {
  GGUFModel m = makeModel();
  m.b.kvF32s("tokenizer.ggml.scores", {0, 0, 0, -1.5f, -2.5f, -3.5f});
  m.b.kvI32s("tokenizer.ggml.token_type", {2, 3, 3, 1, 1, 6});
  std::unique_ptr<Checkpoint> ckpt = open(m.b);
  ASSERT_TRUE(ckpt);
  ASSERT_TRUE(ckpt->tokenizer().has_value());
  const TokenizerData &t = *ckpt->tokenizer();
  EXPECT_EQ(t.kind, TokenizerKind::SentencePieceBPE);
  EXPECT_EQ(t.tokens,
            (std::vector<std::string>{"<unk>", "<s>", "</s>", "\xE2\x96\x81t3",
                                      "\xE2\x96\x81t4", "\xE2\x96\x81t5"}));
  EXPECT_EQ(t.scores, (std::vector<float>{0, 0, 0, -1.5f, -2.5f, -3.5f}));
  EXPECT_EQ(t.tokenTypes, (std::vector<int32_t>{2, 3, 3, 1, 1, 6}));
  EXPECT_TRUE(t.merges.empty());
  EXPECT_EQ(t.preTokenizer, "");
  // llama.cpp's defaults for "llama" when the keys are absent.
  EXPECT_EQ(t.bosId, 1);
  EXPECT_EQ(t.eosId, 2);
  EXPECT_EQ(t.unkId, 0);
  EXPECT_EQ(t.padId, -1);
  EXPECT_TRUE(t.addBos);
  EXPECT_TRUE(t.addSpacePrefix);
}

TEST_F(GGUFTest, SentencePieceTokenizerExplicitKeys) {
  GGUFModel m = makeModel();
  m.b.kvU32("tokenizer.ggml.bos_token_id", 2);
  m.b.kvU32("tokenizer.ggml.eos_token_id", 1);
  m.b.kvU32("tokenizer.ggml.unknown_token_id", 5);
  m.b.kvU32("tokenizer.ggml.padding_token_id", 0);
  m.b.kvBool("tokenizer.ggml.add_bos_token", false);
  m.b.kvBool("tokenizer.ggml.add_space_prefix", false);
  std::unique_ptr<Checkpoint> ckpt = open(m.b);
  ASSERT_TRUE(ckpt);
  const TokenizerData &t = *ckpt->tokenizer();
  EXPECT_EQ(t.bosId, 2);
  EXPECT_EQ(t.eosId, 1);
  EXPECT_EQ(t.unkId, 5);
  EXPECT_EQ(t.padId, 0);
  EXPECT_FALSE(t.addBos);
  EXPECT_FALSE(t.addSpacePrefix);
}

GGUFModel makeGPT2Model() {
  GGUFModel m = makeModel();
  m.b.kvString("tokenizer.ggml.model", "gpt2");
  m.b.kvStrings("tokenizer.ggml.tokens",
                {"<|endoftext|>", "a", "b", "ab", "\xC4\xA0",
                 "\xC4\xA0"
                 "ab"});
  m.b.kvI32s("tokenizer.ggml.token_type", {3, 1, 1, 1, 1, 1});
  m.b.kvStrings("tokenizer.ggml.merges", {"a b", "\xC4\xA0"
                                                 " ab"});
  m.b.kvString("tokenizer.ggml.pre", "smollm");
  m.b.kvU32("tokenizer.ggml.bos_token_id", 0);
  m.b.kvU32("tokenizer.ggml.eos_token_id", 0);
  return m;
}

TEST_F(GGUFTest, ByteLevelTokenizer) {
  GGUFModel m = makeGPT2Model();
  std::unique_ptr<Checkpoint> ckpt = open(m.b);
  ASSERT_TRUE(ckpt);
  const TokenizerData &t = *ckpt->tokenizer();
  EXPECT_EQ(t.kind, TokenizerKind::ByteLevelBPE);
  EXPECT_EQ(t.tokens.size(), 6u);
  EXPECT_EQ(t.tokens[5], "\xC4\xA0"
                         "ab");
  EXPECT_EQ(t.merges, (std::vector<std::string>{"a b", "\xC4\xA0"
                                                       " ab"}));
  EXPECT_TRUE(t.scores.empty());
  EXPECT_EQ(t.tokenTypes, (std::vector<int32_t>{3, 1, 1, 1, 1, 1}));
  EXPECT_EQ(t.preTokenizer, "smollm");
  EXPECT_EQ(t.bosId, 0);
  EXPECT_EQ(t.eosId, 0);
  EXPECT_EQ(t.unkId, -1);
  EXPECT_EQ(t.padId, -1);
  // llama.cpp does not add BOS for byte-level BPE by default.
  EXPECT_FALSE(t.addBos);
  EXPECT_FALSE(t.addSpacePrefix);
}

TEST_F(GGUFTest, ByteLevelTokenizerLlama3Defaults) {
  GGUFModel m = makeGPT2Model();
  m.b.kvString("tokenizer.ggml.pre", "llama-bpe");
  std::unique_ptr<Checkpoint> ckpt = open(m.b);
  ASSERT_TRUE(ckpt);
  EXPECT_TRUE(ckpt->tokenizer()->addBos);
  m.b.kvBool("tokenizer.ggml.add_bos_token", false);
  ckpt = openOrFail(write(m.b, "explicit.gguf"));
  ASSERT_TRUE(ckpt);
  EXPECT_FALSE(ckpt->tokenizer()->addBos);
}

TEST_F(GGUFTest, NoTokenizer) {
  GGUFModel m = makeModel();
  m.b.removeKV("tokenizer.ggml.model");
  m.b.removeKV("tokenizer.ggml.tokens");
  m.b.kvU32("llama.vocab_size", 6);
  std::unique_ptr<Checkpoint> ckpt = open(m.b);
  ASSERT_TRUE(ckpt);
  EXPECT_FALSE(ckpt->tokenizer().has_value());
  EXPECT_EQ(ckpt->config().vocabSize, 6);
}

//===----------------------------------------------------------------------===//
// Malformed files
//===----------------------------------------------------------------------===//

TEST_F(GGUFTest, UnsupportedVersion) {
  GGUFModel m = makeModel();
  m.b.version = 1;
  EXPECT_EQ(error(m.b), "unsupported GGUF version 1 (supported: 2 and 3)");
  m.b.version = 4;
  EXPECT_EQ(error(m.b), "unsupported GGUF version 4 (supported: 2 and 3)");
}

TEST_F(GGUFTest, BigEndianVersion) {
  GGUFModel m = makeModel();
  m.b.version = 0x03000000;
  EXPECT_EQ(error(m.b), "GGUF version field is 50331648; this looks like a "
                        "big-endian GGUF file, which is not supported");
}

TEST_F(GGUFTest, TruncatedHeader) {
  GGUFModel m = makeModel();
  std::vector<uint8_t> bytes = m.b.build();
  EXPECT_EQ(error(ArrayRef(bytes).take_front(4)),
            "truncated file: the GGUF version [offset 4, 4 bytes] extends "
            "past the end of the file (4 bytes)");
  EXPECT_EQ(error(ArrayRef(bytes).take_front(6)),
            "truncated file: the GGUF version [offset 4, 4 bytes] extends "
            "past the end of the file (6 bytes)");
  EXPECT_EQ(error(ArrayRef(bytes).take_front(20)),
            "truncated file: the metadata key/value count [offset 16, 8 "
            "bytes] extends past the end of the file (20 bytes)");
  EXPECT_EQ(error(ArrayRef(bytes).take_front(40)),
            "the header claims 12 metadata key/value pairs, more than the "
            "file (40 bytes) can hold");
}

TEST_F(GGUFTest, TruncatedMetadata) {
  GGUFModel m = makeModel();
  std::vector<uint8_t> bytes = m.b.build();
  // The first value is the string "llama" of general.architecture; make its
  // length run past the end of the file.
  size_t lengthOffset = 24 + 8 + strlen("general.architecture") + 4;
  ASSERT_EQ(bytes[lengthOffset], 5);
  bytes[lengthOffset + 5] = 1; // 2^40 bytes.
  EXPECT_EQ(error(bytes),
            "truncated file: the value of metadata key 'general.architecture' "
            "(1099511627781 bytes) [offset " +
                std::to_string(lengthOffset + 8) +
                ", 1099511627781 bytes] extends past the end of the file (" +
                std::to_string(bytes.size()) + " bytes)");
}

TEST_F(GGUFTest, TruncatedTensorInfos) {
  GGUFModel m = makeModel();
  std::vector<uint8_t> bytes = m.b.build();
  size_t cut = m.b.infoStart + 8 + strlen("token_embd.weight") + 4 + 3;
  std::string message = error(ArrayRef(bytes).take_front(cut));
  EXPECT_EQ(message, "truncated file: dimension 0 of tensor "
                     "'token_embd.weight' [offset " +
                         std::to_string(cut - 3) +
                         ", 8 bytes] extends past the end of the file (" +
                         std::to_string(cut) + " bytes)");
}

TEST_F(GGUFTest, TruncatedData) {
  GGUFModel m = makeModel();
  std::vector<uint8_t> bytes = m.b.build();
  // The embeddings (6 x 8 floats) are the first tensor of the data section.
  size_t cut = m.b.dataStart + 100;
  EXPECT_EQ(error(ArrayRef(bytes).take_front(cut)),
            "tensor 'token_embd.weight' data [offset " +
                std::to_string(m.b.dataStart) +
                ", 192 bytes] extends past the end of the file (" +
                std::to_string(cut) + " bytes)");
}

TEST_F(GGUFTest, UnknownGGMLType) {
  GGUFModel m = makeModel();
  m.b.findTensor("blk.1.attn_q.weight").type = 12;
  EXPECT_EQ(error(m.b), "tensor 'blk.1.attn_q.weight' has ggml type 12 "
                        "(Q4_K), which is not supported (supported: F32, F16, "
                        "BF16, Q8_0, Q4_0, Q4_1)");
  m.b.findTensor("blk.1.attn_q.weight").type = 1000;
  EXPECT_EQ(error(m.b), "tensor 'blk.1.attn_q.weight' has ggml type 1000, "
                        "which is not supported (supported: F32, F16, BF16, "
                        "Q8_0, Q4_0, Q4_1)");
}

TEST_F(GGUFTest, QuantizedRowNotWholeBlocks) {
  GGUFModel m = makeModel(); // dim 8: rows of 8 elements.
  GGUFTensorSpec &t = m.b.findTensor("blk.0.attn_q.weight");
  t.type = GGML_Q8_0;
  t.data.resize(34);
  EXPECT_EQ(error(m.b), "tensor 'blk.0.attn_q.weight' has type Q8_0, but its "
                        "row length 8 is not a multiple of the block size "
                        "32");
}

TEST_F(GGUFTest, TensorDataOutOfRange) {
  GGUFModel m = makeModel();
  m.b.findTensor("blk.0.ffn_up.weight").offsetOverride = 1 << 20;
  std::vector<uint8_t> bytes = m.b.build();
  EXPECT_EQ(error(bytes), "tensor 'blk.0.ffn_up.weight' data [offset " +
                              std::to_string(m.b.dataStart + (1 << 20)) +
                              ", 384 bytes] extends past the end of the "
                              "file (" +
                              std::to_string(bytes.size()) + " bytes)");
}

TEST_F(GGUFTest, TensorOffsetOverflows) {
  GGUFModel m = makeModel();
  m.b.findTensor("blk.0.ffn_up.weight").offsetOverride = ~uint64_t(31);
  std::vector<uint8_t> bytes = m.b.build();
  EXPECT_EQ(error(bytes),
            "tensor 'blk.0.ffn_up.weight' data [offset overflow, 384 bytes] "
            "extends past the end of the file (" +
                std::to_string(bytes.size()) + " bytes)");
}

TEST_F(GGUFTest, MisalignedTensorOffset) {
  GGUFModel m = makeModel();
  m.b.findTensor("blk.0.ffn_up.weight").offsetOverride = 4;
  EXPECT_EQ(error(m.b), "tensor 'blk.0.ffn_up.weight' data offset 4 is not a "
                        "multiple of the alignment 32");
}

TEST_F(GGUFTest, BadAlignment) {
  GGUFModel m = makeModel();
  m.b.kvU32("general.alignment", 24);
  EXPECT_EQ(error(m.b), "general.alignment is 24; it must be a power of two");
}

TEST_F(GGUFTest, MissingTensor) {
  GGUFModel m = makeModel();
  m.b.removeTensor("blk.1.ffn_down.weight");
  EXPECT_EQ(error(m.b), "missing tensor 'blk.1.ffn_down.weight' "
                        "(layers.1.feed_forward.w2)");
}

TEST_F(GGUFTest, TensorShapeMismatch) {
  GGUFModel m = makeModel();
  m.b.findTensor("blk.0.attn_output.weight").ne = {4, 16};
  EXPECT_EQ(error(m.b), "tensor 'blk.0.attn_output.weight' has shape [16, 4] "
                        "(ne [4, 16]), but the config implies [8, 8] for "
                        "layers.0.attention.wo");
}

TEST_F(GGUFTest, MissingConfigKey) {
  for (StringRef key :
       {"llama.embedding_length", "llama.feed_forward_length",
        "llama.block_count", "llama.attention.head_count",
        "llama.context_length", "llama.attention.layer_norm_rms_epsilon",
        "general.architecture"}) {
    GGUFModel m = makeModel();
    m.b.removeKV(key);
    EXPECT_EQ(error(m.b), ("missing metadata key '" + key + "'").str());
  }
}

TEST_F(GGUFTest, MissingVocabularySize) {
  GGUFModel m = makeModel();
  m.b.removeKV("tokenizer.ggml.model");
  m.b.removeKV("tokenizer.ggml.tokens");
  EXPECT_EQ(error(m.b), "missing metadata key 'tokenizer.ggml.tokens' (or "
                        "'llama.vocab_size'), which gives the vocabulary "
                        "size");
}

TEST_F(GGUFTest, ConfigKeyOfWrongType) {
  GGUFModel m = makeModel();
  m.b.kvString("llama.block_count", "two");
  EXPECT_EQ(error(m.b), "metadata key 'llama.block_count' has type string; "
                        "expected an integer");
  m = makeModel();
  m.b.kvString("llama.attention.layer_norm_rms_epsilon", "small");
  EXPECT_EQ(error(m.b), "metadata key 'llama.attention.layer_norm_rms_epsilon' "
                        "has type string; expected a number");
}

TEST_F(GGUFTest, WrongArchitecture) {
  GGUFModel m = makeModel();
  m.b.kvString("general.architecture", "qwen2");
  EXPECT_EQ(error(m.b), "architecture 'qwen2' is not supported "
                        "(general.architecture must be 'llama')");
}

TEST_F(GGUFTest, HeadsDoNotDivideDim) {
  GGUFModel m = makeModel();
  m.b.kvU32("llama.attention.head_count", 3);
  m.b.kvU32("llama.attention.head_count_kv", 3);
  EXPECT_EQ(error(m.b), "llama.attention.head_count (3) does not divide "
                        "llama.embedding_length (8)");
}

TEST_F(GGUFTest, KVHeadsDoNotDivideHeads) {
  GGUFModel m = makeModel();
  m.b.kvU32("llama.attention.head_count_kv", 3);
  EXPECT_EQ(error(m.b), "llama.attention.head_count_kv (3) does not divide "
                        "llama.attention.head_count (2)");
}

TEST_F(GGUFTest, ZeroConfigValue) {
  GGUFModel m = makeModel();
  m.b.kvU32("llama.block_count", 0);
  EXPECT_EQ(error(m.b), "llama.block_count is 0; it must be between 1 and "
                        "2147483647");
  m = makeModel();
  m.b.kv("llama.context_length", I32, [](ByteWriter &w) { w.i32(-5); });
  EXPECT_EQ(error(m.b), "llama.context_length is -5; it must be between 1 "
                        "and 2147483647");
}

TEST_F(GGUFTest, HugeConfigValue) {
  GGUFModel m = makeModel();
  m.b.kv("llama.block_count", U64,
         [](ByteWriter &w) { w.u64(uint64_t(1) << 40); });
  EXPECT_EQ(error(m.b), "llama.block_count is 1099511627776; it must be "
                        "between 1 and 2147483647");
  m.b.kv("llama.block_count", U64, [](ByteWriter &w) { w.u64(~uint64_t(0)); });
  EXPECT_EQ(error(m.b), "metadata key 'llama.block_count' is too large "
                        "(18446744073709551615)");
}

TEST_F(GGUFTest, EmptyVocabulary) {
  GGUFModel m = makeModel();
  m.b.kvStrings("tokenizer.ggml.tokens", {});
  EXPECT_EQ(error(m.b), "the length of tokenizer.ggml.tokens is 0; it must be "
                        "between 1 and 2147483647");
}

TEST_F(GGUFTest, ZeroTensorDimension) {
  GGUFModel m = makeModel();
  m.b.findTensor("output_norm.weight").ne = {0};
  EXPECT_EQ(error(m.b),
            "tensor 'output_norm.weight' has invalid dimension ne[0] = 0");
}

TEST_F(GGUFTest, OverflowingTensorDimensions) {
  GGUFModel m = makeModel();
  m.b.findTensor("output_norm.weight").ne = {uint64_t(1) << 32, uint64_t(1)
                                                                    << 32};
  EXPECT_EQ(error(m.b), "tensor 'output_norm.weight' has invalid dimension "
                        "ne[1] = 4294967296 (the element count overflows)");
}

TEST_F(GGUFTest, TooManyDimensions) {
  GGUFModel m = makeModel();
  m.b.findTensor("output_norm.weight").ne = {8, 1, 1, 1, 1};
  EXPECT_EQ(error(m.b), "tensor 'output_norm.weight' has 5 dimensions; GGUF "
                        "tensors have 1 to 4");
}

TEST_F(GGUFTest, ImpossibleCounts) {
  GGUFModel m = makeModel();
  m.b.kvCountOverride = uint64_t(1) << 62;
  std::vector<uint8_t> bytes = m.b.build();
  EXPECT_EQ(error(bytes), "the header claims 4611686018427387904 metadata "
                          "key/value pairs, more than the file (" +
                              std::to_string(bytes.size()) +
                              " bytes) can "
                              "hold");
  m.b.kvCountOverride.reset();
  m.b.tensorCountOverride = ~uint64_t(0);
  bytes = m.b.build();
  EXPECT_EQ(error(bytes), "the header claims 18446744073709551615 tensors, "
                          "more than the file (" +
                              std::to_string(bytes.size()) +
                              " bytes) can "
                              "hold");
}

TEST_F(GGUFTest, HugeArrays) {
  GGUFModel m = makeModel();
  m.b.kv("huge.array", ARRAY,
         [](ByteWriter &w) { w.u32(U32).u64(uint64_t(1) << 62); });
  EXPECT_EQ(error(m.b), "the value of metadata key 'huge.array': "
                        "4611686018427387904 elements of type uint32 "
                        "overflow 64 bits");
  m = makeModel();
  m.b.kv("huge.array", ARRAY,
         [](ByteWriter &w) { w.u32(STRING).u64(uint64_t(1) << 40); });
  std::string message = error(m.b);
  EXPECT_TRUE(StringRef(message).starts_with(
      "truncated file: the value of metadata key 'huge.array' claims "
      "1099511627776 elements, more than the remaining"))
      << message;
}

TEST_F(GGUFTest, UnknownValueType) {
  GGUFModel m = makeModel();
  m.b.kv("odd.key", 13, [](ByteWriter &w) { w.u32(0); });
  EXPECT_EQ(error(m.b),
            "the value of metadata key 'odd.key' has unknown value type 13");
}

TEST_F(GGUFTest, DuplicateKeyAndTensor) {
  GGUFModel m = makeModel();
  m.b.kvU32("x", 1);
  m.b.kv("y", U32, [](ByteWriter &w) { w.u32(1); });
  // Rename "y" to "x" by writing the raw KV list twice under the same key.
  m.b.kvCountOverride.reset();
  std::vector<uint8_t> bytes = m.b.build();
  std::string needle = std::string("\x01\0\0\0\0\0\0\0y", 9);
  auto it =
      std::search(bytes.begin(), bytes.end(), needle.begin(), needle.end());
  ASSERT_NE(it, bytes.end());
  *(it + 8) = 'x';
  EXPECT_EQ(error(bytes), "duplicate metadata key 'x'");

  m = makeModel();
  m.b.tensor("norm.extra", {8}, GGML_F32, f32Bytes(std::vector<float>(8)));
  m.b.findTensor("norm.extra").name = "output_norm.weight";
  EXPECT_EQ(error(m.b), "duplicate tensor name 'output_norm.weight'");
}

TEST_F(GGUFTest, TokenizerErrors) {
  GGUFModel m = makeModel();
  m.b.kvString("tokenizer.ggml.model", "bert");
  EXPECT_EQ(error(m.b), "tokenizer model 'bert' (tokenizer.ggml.model) is not "
                        "supported (expected 'llama' or 'gpt2')");
  m = makeModel();
  m.b.kvF32s("tokenizer.ggml.scores", {0, 0, 0});
  EXPECT_EQ(error(m.b), "metadata key 'tokenizer.ggml.scores' has 3 elements, "
                        "but tokenizer.ggml.tokens has 6");
  m = makeModel();
  m.b.kvU32("tokenizer.ggml.bos_token_id", 6);
  EXPECT_EQ(error(m.b), "metadata key 'tokenizer.ggml.bos_token_id' is 6, not "
                        "a token id (there are 6 tokens)");
  m = makeGPT2Model();
  m.b.removeKV("tokenizer.ggml.merges");
  EXPECT_EQ(error(m.b), "missing metadata key 'tokenizer.ggml.merges', "
                        "required by the 'gpt2' tokenizer model");
  m = makeModel();
  m.b.kvU32("tokenizer.ggml.tokens", 6);
  EXPECT_EQ(error(m.b), "metadata key 'tokenizer.ggml.tokens' has type "
                        "uint32; expected an array of strings");
  m = makeModel();
  m.b.kvF32s("tokenizer.ggml.token_type", {1, 1, 1, 1, 1, 1});
  EXPECT_EQ(error(m.b), "metadata key 'tokenizer.ggml.token_type' has type "
                        "array of float32; expected an array of int32");
}

TEST_F(GGUFTest, RopeScalingIsRejected) {
  GGUFModel m = makeModel();
  m.b.kvString("llama.rope.scaling.type", "linear");
  EXPECT_EQ(error(m.b), "rope scaling 'linear' (llama.rope.scaling.type) is "
                        "not supported");
  m = makeModel();
  m.b.tensor("rope_freqs.weight", {2}, GGML_F32, f32Bytes({1, 1}));
  EXPECT_EQ(error(m.b), "tensor 'rope_freqs.weight' (LLaMA-3.1-style rope "
                        "frequency scaling) is not supported");
}

} // namespace
