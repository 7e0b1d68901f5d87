//===- HuggingFaceTest.cpp - Tests for the Hugging Face reader ------------===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#include "TestUtil.h"

#include "qlr/Numerics/FloatFormats.h"

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/raw_ostream.h"

#include "gtest/gtest.h"

#include <map>

using namespace llvm;
using namespace qlr::checkpoint;
using namespace qlr::checkpoint::test;
using qlr::tokenizer::TokenizerData;
using qlr::tokenizer::TokenizerKind;
namespace tok = qlr::tokenizer;

namespace {

//===----------------------------------------------------------------------===//
// A safetensors writer and synthetic models
//===----------------------------------------------------------------------===//

struct STTensor {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> data;
  unsigned shard = 0;
  std::optional<std::pair<int64_t, int64_t>> offsetsOverride;
};

std::string toJSON(json::Value value) {
  std::string text;
  raw_string_ostream(text) << value;
  return text;
}

/// A safetensors file with the given header text and data.
std::vector<uint8_t> rawSafetensors(StringRef header, ArrayRef<uint8_t> data) {
  ByteWriter w;
  w.u64(header.size()).raw(header).raw(data);
  return w.bytes();
}

std::vector<uint8_t> safetensorsFile(ArrayRef<const STTensor *> tensors) {
  json::Object header{{"__metadata__", json::Object{{"format", "pt"}}}};
  std::vector<uint8_t> data;
  for (const STTensor *t : tensors) {
    int64_t begin = data.size();
    data.insert(data.end(), t->data.begin(), t->data.end());
    std::pair<int64_t, int64_t> offsets = t->offsetsOverride.value_or(
        std::make_pair(begin, int64_t(data.size())));
    json::Array shape;
    for (int64_t d : t->shape)
      shape.push_back(d);
    header[t->name] = json::Object{
        {"dtype", t->dtype},
        {"shape", std::move(shape)},
        {"data_offsets", json::Array{offsets.first, offsets.second}}};
  }
  std::string text = toJSON(std::move(header));
  while (text.size() % 8)
    text += ' ';
  return rawSafetensors(text, data);
}

struct HFOptions {
  int64_t dim = 8, hidden = 12, layers = 2, heads = 2, kvHeads = 1, vocab = 10,
          maxPos = 32;
  bool lmHead = true;
  unsigned shards = 1;
  std::string dtype = "F32";
};

struct HFModel {
  HFOptions o;
  json::Object config;
  std::vector<STTensor> tensors;
  std::map<std::string, std::vector<float>> expected; ///< Canonical values.
};

/// Canonical row r of a head is HF row perm(r): q/k heads are stored as
/// [even elements of the pairs; odd elements].
std::vector<float> interleaveRows(ArrayRef<float> hf, int64_t rows,
                                  int64_t cols, int64_t headDim) {
  std::vector<float> out(hf.size());
  for (int64_t h = 0; h < rows / headDim; ++h)
    for (int64_t j = 0; j < headDim / 2; ++j)
      for (int64_t s = 0; s < 2; ++s) {
        int64_t dst = h * headDim + 2 * j + s;
        int64_t src = h * headDim + s * headDim / 2 + j;
        std::copy_n(hf.begin() + src * cols, cols, out.begin() + dst * cols);
      }
  return out;
}

/// Encodes `values` as `dtype` and returns the values the file then holds.
std::vector<float> encode(ArrayRef<float> values, StringRef dtype,
                          std::vector<uint8_t> &bytes) {
  ByteWriter w;
  std::vector<float> stored;
  for (float v : values) {
    if (dtype == "F32") {
      w.f32(v);
      stored.push_back(v);
    } else if (dtype == "F16") {
      uint16_t bits = qlr::numerics::floatToHalfBits(v);
      w.u16(bits);
      stored.push_back(qlr::numerics::halfBitsToFloat(bits));
    } else {
      uint16_t bits = qlr::numerics::floatToBF16Bits(v);
      w.u16(bits);
      stored.push_back(qlr::numerics::bf16BitsToFloat(bits));
    }
  }
  bytes = w.bytes();
  return stored;
}

HFModel makeModel(const HFOptions &o = {}, unsigned seed = 1) {
  HFModel m;
  m.o = o;
  m.config = json::Object{
      {"architectures", json::Array{"LlamaForCausalLM"}},
      {"model_type", "llama"},
      {"hidden_size", o.dim},
      {"intermediate_size", o.hidden},
      {"num_hidden_layers", o.layers},
      {"num_attention_heads", o.heads},
      {"num_key_value_heads", o.kvHeads},
      {"vocab_size", o.vocab},
      {"max_position_embeddings", o.maxPos},
      {"rms_norm_eps", 1e-6},
      {"rope_theta", 500000.0},
      {"tie_word_embeddings", false},
      {"hidden_act", "silu"},
      {"torch_dtype", "float32"},
      {"bos_token_id", 1},
      {"eos_token_id", 2},
  };
  std::mt19937 rng(seed);
  int64_t headDim = o.dim / o.heads;
  int64_t q = o.heads * headDim, kv = o.kvHeads * headDim;
  unsigned count = 0;
  auto add = [&](const std::string &hfName, const std::string &canonical,
                 std::vector<int64_t> shape, bool permute = false) {
    size_t n = 1;
    for (int64_t d : shape)
      n *= d;
    STTensor t{hfName, o.dtype, shape, {}, count++ % o.shards, {}};
    std::vector<float> stored = encode(randomFloats(rng, n), o.dtype, t.data);
    m.expected[canonical] =
        permute ? interleaveRows(stored, shape[0], shape[1], headDim) : stored;
    m.tensors.push_back(std::move(t));
  };
  add("model.embed_tokens.weight", "tok_embeddings", {o.vocab, o.dim});
  for (int64_t l = 0; l < o.layers; ++l) {
    std::string hf = "model.layers." + std::to_string(l) + ".";
    std::string c = "layers." + std::to_string(l) + ".";
    add(hf + "input_layernorm.weight", c + "attention_norm", {o.dim});
    add(hf + "mlp.down_proj.weight", c + "feed_forward.w2", {o.dim, o.hidden});
    add(hf + "mlp.gate_proj.weight", c + "feed_forward.w1", {o.hidden, o.dim});
    add(hf + "mlp.up_proj.weight", c + "feed_forward.w3", {o.hidden, o.dim});
    add(hf + "post_attention_layernorm.weight", c + "ffn_norm", {o.dim});
    add(hf + "self_attn.k_proj.weight", c + "attention.wk", {kv, o.dim}, true);
    add(hf + "self_attn.o_proj.weight", c + "attention.wo", {o.dim, q});
    add(hf + "self_attn.q_proj.weight", c + "attention.wq", {q, o.dim}, true);
    add(hf + "self_attn.v_proj.weight", c + "attention.wv", {kv, o.dim});
  }
  add("model.norm.weight", "norm", {o.dim});
  if (o.lmHead)
    add("lm_head.weight", "output", {o.vocab, o.dim});
  return m;
}

STTensor &findTensor(HFModel &m, StringRef name) {
  for (STTensor &t : m.tensors)
    if (t.name == name)
      return t;
  ADD_FAILURE() << "no tensor " << name.str();
  return m.tensors.front();
}

class HuggingFaceTest : public ::testing::Test {
protected:
  std::string shardName(unsigned i, unsigned n) const {
    return dir.path("model-0000" + std::to_string(i + 1) + "-of-0000" +
                    std::to_string(n) + ".safetensors");
  }
  /// Writes config.json and the shards of `m` into the temporary directory.
  void write(const HFModel &m) {
    writeFile(dir.path("config.json"), toJSON(json::Object(m.config)));
    for (unsigned s = 0; s < m.o.shards; ++s) {
      std::vector<const STTensor *> tensors;
      for (const STTensor &t : m.tensors)
        if (t.shard == s)
          tensors.push_back(&t);
      writeFile(shardName(s, m.o.shards), safetensorsFile(tensors));
    }
  }
  std::unique_ptr<Checkpoint> open(const HFModel &m) {
    write(m);
    return openOrFail(dir.root());
  }
  std::string error(const HFModel &m) {
    write(m);
    return openError(dir.root());
  }
  std::string configError(const HFModel &m) {
    std::string message = error(m);
    std::string prefix = dir.path("config.json") + ": ";
    EXPECT_TRUE(StringRef(message).starts_with(prefix)) << message;
    return message.substr(std::min(message.size(), prefix.size()));
  }
  std::string shardError(const HFModel &m, unsigned shard = 0) {
    std::string message = error(m);
    std::string prefix = shardName(shard, m.o.shards) + ": ";
    EXPECT_TRUE(StringRef(message).starts_with(prefix)) << message;
    return message.substr(std::min(message.size(), prefix.size()));
  }
  TempDir dir;
};

void checkValues(const Checkpoint &ckpt, const HFModel &m, bool tied) {
  std::vector<std::string> names = canonicalNames(m.o.layers, tied);
  ASSERT_EQ(ckpt.tensors().size(), names.size());
  for (size_t i = 0; i < names.size(); ++i) {
    EXPECT_EQ(ckpt.tensors()[i].name, names[i]);
    EXPECT_EQ(readAll(ckpt, names[i]), m.expected.at(names[i])) << names[i];
  }
}

//===----------------------------------------------------------------------===//
// Well-formed checkpoints
//===----------------------------------------------------------------------===//

TEST_F(HuggingFaceTest, ReadsShardedUntiedModel) {
  HFOptions o;
  o.shards = 2;
  HFModel m = makeModel(o);
  std::unique_ptr<Checkpoint> ckpt = open(m);
  ASSERT_TRUE(ckpt);
  EXPECT_EQ(ckpt->formatName(), "safetensors");
  EXPECT_EQ(ckpt->path(), dir.root());
  const ModelConfig &c = ckpt->config();
  EXPECT_EQ(c.dim, 8);
  EXPECT_EQ(c.hiddenDim, 12);
  EXPECT_EQ(c.numLayers, 2);
  EXPECT_EQ(c.numHeads, 2);
  EXPECT_EQ(c.numKVHeads, 1);
  EXPECT_EQ(c.headDim, 4);
  EXPECT_EQ(c.vocabSize, 10);
  EXPECT_EQ(c.maxSeqLen, 32);
  EXPECT_EQ(c.normEps, 1e-6f);
  EXPECT_EQ(c.ropeTheta, 500000.0f);
  EXPECT_FALSE(c.tiedEmbeddings);
  EXPECT_FALSE(ckpt->tokenizer().has_value());
  checkValues(*ckpt, m, /*tied=*/false);
  for (const TensorInfo &t : ckpt->tensors())
    EXPECT_EQ(t.dtype, DType::F32);
  EXPECT_EQ(ckpt->findTensor("layers.0.attention.wk")->shape,
            (std::vector<int64_t>{4, 8}));
  EXPECT_EQ(ckpt->findTensor("output")->shape, (std::vector<int64_t>{10, 8}));
}

TEST_F(HuggingFaceTest, TiedByConfigFlag) {
  HFModel m = makeModel();
  m.config["tie_word_embeddings"] = true;
  std::unique_ptr<Checkpoint> ckpt = open(m);
  ASSERT_TRUE(ckpt);
  EXPECT_TRUE(ckpt->config().tiedEmbeddings);
  checkValues(*ckpt, m, /*tied=*/true);
}

TEST_F(HuggingFaceTest, TiedByMissingLMHead) {
  HFOptions o;
  o.lmHead = false;
  HFModel m = makeModel(o);
  std::unique_ptr<Checkpoint> ckpt = open(m);
  ASSERT_TRUE(ckpt);
  EXPECT_TRUE(ckpt->config().tiedEmbeddings);
  checkValues(*ckpt, m, /*tied=*/true);
}

TEST_F(HuggingFaceTest, PermutesQKRowsToInterleaved) {
  // Row r of q_proj/k_proj/v_proj holds the value r.
  HFModel m = makeModel();
  for (StringRef proj : {"q_proj", "k_proj", "v_proj"}) {
    STTensor &t =
        findTensor(m, ("model.layers.1.self_attn." + proj + ".weight").str());
    std::vector<float> rows;
    for (int64_t r = 0; r < t.shape[0]; ++r)
      rows.insert(rows.end(), t.shape[1], float(r));
    encode(rows, "F32", t.data);
  }
  std::unique_ptr<Checkpoint> ckpt = open(m);
  ASSERT_TRUE(ckpt);
  auto rowValues = [&](StringRef name) {
    std::vector<float> values = readAll(*ckpt, name);
    std::vector<float> rows;
    for (size_t i = 0; i < values.size(); i += 8)
      rows.push_back(values[i]);
    return rows;
  };
  // headDim 4: canonical rows (pair 0 even, pair 0 odd, pair 1 even, ...)
  // come from HF rows 0, 2, 1, 3 of each head.
  EXPECT_EQ(rowValues("layers.1.attention.wq"),
            (std::vector<float>{0, 2, 1, 3, 4, 6, 5, 7}));
  EXPECT_EQ(rowValues("layers.1.attention.wk"),
            (std::vector<float>{0, 2, 1, 3}));
  EXPECT_EQ(rowValues("layers.1.attention.wv"),
            (std::vector<float>{0, 1, 2, 3}));
}

TEST_F(HuggingFaceTest, PermutationWithLargerHeads) {
  HFOptions o;
  o.dim = 16;
  o.heads = 2; // headDim 8.
  o.kvHeads = 2;
  HFModel m = makeModel(o, 5);
  STTensor &t = findTensor(m, "model.layers.0.self_attn.q_proj.weight");
  std::vector<float> rows;
  for (int64_t r = 0; r < 16; ++r)
    rows.insert(rows.end(), 16, float(r));
  encode(rows, "F32", t.data);
  std::unique_ptr<Checkpoint> ckpt = open(m);
  ASSERT_TRUE(ckpt);
  std::vector<float> values = readAll(*ckpt, "layers.0.attention.wq");
  std::vector<float> firstColumn;
  for (int64_t r = 0; r < 16; ++r)
    firstColumn.push_back(values[r * 16]);
  EXPECT_EQ(firstColumn, (std::vector<float>{0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9,
                                             13, 10, 14, 11, 15}));
}

TEST_F(HuggingFaceTest, ReadsF16AndBF16) {
  for (const char *dtype : {"F16", "BF16"}) {
    HFOptions o;
    o.dtype = dtype;
    HFModel m = makeModel(o, 9);
    std::unique_ptr<Checkpoint> ckpt = open(m);
    ASSERT_TRUE(ckpt);
    EXPECT_EQ(ckpt->findTensor("layers.0.attention.wq")->dtype,
              StringRef(dtype) == "F16" ? DType::F16 : DType::BF16);
    checkValues(*ckpt, m, /*tied=*/false);
  }
}

TEST_F(HuggingFaceTest, ConfigDefaults) {
  HFOptions o;
  o.kvHeads = 2;
  HFModel m = makeModel(o);
  m.config.erase("num_key_value_heads");
  m.config.erase("rope_theta");
  m.config.erase("tie_word_embeddings");
  m.config.erase("architectures");
  m.config["rope_scaling"] = nullptr;
  std::unique_ptr<Checkpoint> ckpt = open(m);
  ASSERT_TRUE(ckpt);
  EXPECT_EQ(ckpt->config().numKVHeads, 2);
  EXPECT_EQ(ckpt->config().ropeTheta, 10000.0f);
  EXPECT_FALSE(ckpt->config().tiedEmbeddings);
}

TEST_F(HuggingFaceTest, ExplicitHeadDim) {
  // hidden 8 with 2 heads of 8: q/k/v project to 16.
  HFModel m = makeModel();
  m.config["head_dim"] = 8;
  for (int l = 0; l < 2; ++l) {
    std::string p = "model.layers." + std::to_string(l) + ".self_attn.";
    findTensor(m, p + "q_proj.weight").shape = {16, 8};
    findTensor(m, p + "q_proj.weight").data.resize(16 * 8 * 4);
    findTensor(m, p + "k_proj.weight").shape = {8, 8};
    findTensor(m, p + "k_proj.weight").data.resize(8 * 8 * 4);
    findTensor(m, p + "v_proj.weight").shape = {8, 8};
    findTensor(m, p + "v_proj.weight").data.resize(8 * 8 * 4);
    findTensor(m, p + "o_proj.weight").shape = {8, 16};
    findTensor(m, p + "o_proj.weight").data.resize(8 * 16 * 4);
  }
  std::unique_ptr<Checkpoint> ckpt = open(m);
  ASSERT_TRUE(ckpt);
  EXPECT_EQ(ckpt->config().headDim, 8);
  EXPECT_EQ(ckpt->findTensor("layers.0.attention.wq")->shape,
            (std::vector<int64_t>{16, 8}));
  EXPECT_EQ(ckpt->findTensor("layers.0.attention.wo")->shape,
            (std::vector<int64_t>{8, 16}));
}

//===----------------------------------------------------------------------===//
// Tokenizers
//===----------------------------------------------------------------------===//

// "Ġ" (U+0120) is GPT-2's byte-level space; "▁" (U+2581) SentencePiece's.
const char *const kByteLevelTokenizer = R"({
  "version": "1.0",
  "added_tokens": [
    {"id": 5, "content": "<|endoftext|>", "special": true},
    {"id": 6, "content": "<tool>", "special": false}
  ],
  "normalizer": null,
  "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
    {"type": "Digits", "individual_digits": true},
    {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
     "use_regex": true}]},
  "post_processor": {"type": "ByteLevel", "add_prefix_space": true},
  "decoder": {"type": "ByteLevel", "add_prefix_space": true},
  "model": {"type": "BPE", "dropout": null, "unk_token": null,
    "byte_fallback": false,
    "vocab": {"a": 0, "b": 1, "ab": 2, "\u0120": 3, "\u0120ab": 4,
              "<|endoftext|>": 5},
    "merges": MERGES}
})";

std::string byteLevelTokenizer(StringRef merges) {
  std::string text = kByteLevelTokenizer;
  text.replace(text.find("MERGES"), 6, merges.str());
  return text;
}

void checkByteLevel(const TokenizerData &t) {
  EXPECT_EQ(t.kind, TokenizerKind::ByteLevelBPE);
  // The file defines ids 0-6; the rest of the model's vocabulary is padding.
  ASSERT_GE(t.tokens.size(), 7u);
  EXPECT_EQ(std::vector<std::string>(t.tokens.begin(), t.tokens.begin() + 7),
            (std::vector<std::string>{"a", "b", "ab", "\xC4\xA0",
                                      "\xC4\xA0"
                                      "ab",
                                      "<|endoftext|>", "<tool>"}));
  EXPECT_EQ(t.merges, (std::vector<std::string>{"a b", "\xC4\xA0"
                                                       " ab"}));
  ASSERT_GE(t.tokenTypes.size(), 7u);
  EXPECT_EQ(
      std::vector<int32_t>(t.tokenTypes.begin(), t.tokenTypes.begin() + 7),
      (std::vector<int32_t>{tok::Normal, tok::Normal, tok::Normal, tok::Normal,
                            tok::Normal, tok::Control, tok::UserDefined}));
  EXPECT_EQ(t.preTokenizer, "smollm");
}

TEST_F(HuggingFaceTest, ByteLevelTokenizerWithPairMerges) {
  // No tokenizer_config.json: BOS/EOS come from config.json's ids.
  HFModel m = makeModel();
  writeFile(dir.path("tokenizer.json"),
            byteLevelTokenizer(R"([["a", "b"], ["\u0120", "ab"]])"));
  std::unique_ptr<Checkpoint> ckpt = open(m);
  ASSERT_TRUE(ckpt);
  const TokenizerData &t = *ckpt->tokenizer();
  checkByteLevel(t);
  EXPECT_EQ(t.bosId, 1);
  EXPECT_EQ(t.eosId, 2);
  EXPECT_EQ(t.unkId, -1);
  EXPECT_FALSE(t.addBos);
}

TEST_F(HuggingFaceTest, ByteLevelTokenizerLlama3Style) {
  // A Split regex then ByteLevel without its regex, and a template that
  // starts with BOS.
  std::string text = byteLevelTokenizer(R"(["a b", "\u0120 ab"])");
  // LLaMA-3's pattern, as JSON.
  std::string regex =
      R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|)"
      R"(\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|)"
      R"(\\s+(?!\\S)|\\s+)";
  std::string pre = R"("pre_tokenizer": {"type": "Sequence", "pretokenizers": [
    {"type": "Split", "pattern": {"Regex": ")" +
                    regex + R"("},
     "behavior": "Isolated", "invert": false},
    {"type": "ByteLevel", "add_prefix_space": false, "use_regex": false}]},
  "post_processor": {"type": "Sequence", "processors": [
    {"type": "ByteLevel"},
    {"type": "TemplateProcessing",
     "single": [{"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}}]}]},)";
  size_t begin = text.find("\"pre_tokenizer\"");
  size_t end = text.find("\"decoder\"");
  text.replace(begin, end - begin, pre);
  HFModel m = makeModel();
  writeFile(dir.path("tokenizer.json"), text);
  std::unique_ptr<Checkpoint> ckpt = open(m);
  ASSERT_TRUE(ckpt);
  const TokenizerData &t = *ckpt->tokenizer();
  EXPECT_EQ(t.preTokenizer, "llama-bpe");
  EXPECT_EQ(t.bosId, 1); // config.json's bos_token_id
}

const char *const kSentencePieceTokenizer = R"({
  "version": "1.0",
  "added_tokens": [
    {"id": 0, "content": "<unk>", "special": true},
    {"id": 1, "content": "<s>", "special": true},
    {"id": 2, "content": "</s>", "special": true}
  ],
  "normalizer": {"type": "Sequence", "normalizers": [
    {"type": "Prepend", "prepend": "\u2581"},
    {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
  "pre_tokenizer": null,
  "post_processor": {"type": "TemplateProcessing",
    "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
               {"Sequence": {"id": "A", "type_id": 0}}]},
  "decoder": {"type": "Sequence", "decoders": [
    {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
    {"type": "ByteFallback"}, {"type": "Fuse"},
    {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
  "model": {"type": "BPE", "dropout": null, "unk_token": "<unk>",
    "fuse_unk": true, "byte_fallback": true,
    "vocab": {"<unk>": 0, "<s>": 1, "</s>": 2, "<0x0A>": 3, "\u2581": 4,
              "a": 5, "b": 6, "\u2581a": 7, "ab": 8, "\u2581ab": 9},
    "merges": ["\u2581 a", "a b", "\u2581a b"]}
})";

TEST_F(HuggingFaceTest, SentencePieceTokenizer) {
  HFModel m = makeModel();
  writeFile(dir.path("tokenizer.json"), kSentencePieceTokenizer);
  writeFile(dir.path("tokenizer_config.json"), R"({
    "add_bos_token": true, "add_eos_token": false,
    "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
    "pad_token": "</s>"
  })");
  std::unique_ptr<Checkpoint> ckpt = open(m);
  ASSERT_TRUE(ckpt);
  const TokenizerData &t = *ckpt->tokenizer();
  EXPECT_EQ(t.kind, TokenizerKind::SentencePieceBPE);
  EXPECT_EQ(t.tokens,
            (std::vector<std::string>{"<unk>", "<s>", "</s>", "<0x0A>",
                                      "\xE2\x96\x81", "a", "b",
                                      "\xE2\x96\x81"
                                      "a",
                                      "ab",
                                      "\xE2\x96\x81"
                                      "ab"}));
  // The piece made by merge r scores -r; pieces no merge makes score 0.
  EXPECT_EQ(t.scores, (std::vector<float>{0, 0, 0, 0, 0, 0, 0, 0, -1, -2}));
  EXPECT_EQ(t.tokenTypes, (std::vector<int32_t>{
                              tok::Unknown, tok::Control, tok::Control,
                              tok::Byte, tok::Normal, tok::Normal, tok::Normal,
                              tok::Normal, tok::Normal, tok::Normal}));
  EXPECT_TRUE(t.merges.empty());
  EXPECT_EQ(t.preTokenizer, "");
  EXPECT_EQ(t.bosId, 1);
  EXPECT_EQ(t.eosId, 2);
  EXPECT_EQ(t.unkId, 0);
  EXPECT_EQ(t.padId, 2);
  EXPECT_TRUE(t.addBos);
  EXPECT_TRUE(t.addSpacePrefix);
}

TEST_F(HuggingFaceTest, SentencePieceMetaspaceTokenizer) {
  // Newer conversions: a Metaspace pre-tokenizer instead of the normalizer,
  // and no tokenizer_config.json (add_bos from the template).
  std::string text = kSentencePieceTokenizer;
  size_t begin = text.find("\"normalizer\"");
  size_t end = text.find("\"post_processor\"");
  text.replace(begin, end - begin,
               R"("normalizer": null,
  "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581",
                    "prepend_scheme": "first", "split": false},
  )");
  HFModel m = makeModel();
  writeFile(dir.path("tokenizer.json"), text);
  std::unique_ptr<Checkpoint> ckpt = open(m);
  ASSERT_TRUE(ckpt);
  const TokenizerData &t = *ckpt->tokenizer();
  EXPECT_EQ(t.kind, TokenizerKind::SentencePieceBPE);
  EXPECT_TRUE(t.addSpacePrefix);
  EXPECT_TRUE(t.addBos);
  EXPECT_EQ(t.bosId, 1);
  EXPECT_EQ(t.eosId, 2);
}

TEST_F(HuggingFaceTest, TokenizerErrors) {
  // tokenizer.json is read by the tokenizer library (its own tests cover the
  // format); here: every error stops the import and names the file.
  HFModel m = makeModel();
  std::string path = dir.path("tokenizer.json");
  auto expectError = [&](StringRef contents, StringRef what) {
    writeFile(path, contents.str());
    std::string message = error(m);
    EXPECT_TRUE(StringRef(message).contains(path)) << message;
    EXPECT_TRUE(StringRef(message).contains(what)) << message;
  };
  expectError("{\"model\": ", "JSON");
  expectError(R"({"model": {"type": "Unigram", "vocab": []}})", "Unigram");
  expectError(R"({"decoder": {"type": "ByteLevel"},
    "model": {"type": "BPE", "vocab": {"a": 0, "b": 99999999},
              "merges": []}})",
              "99999999");
  expectError(R"({"decoder": {"type": "ByteLevel"},
    "model": {"type": "BPE", "vocab": {"a": 0}, "merges": [7]}})",
              "merge");

  // config.json's special ids are checked against the tokenizer.
  writeFile(path, byteLevelTokenizer("[]"));
  m.config["eos_token_id"] = 70000;
  std::string message = error(m);
  EXPECT_TRUE(StringRef(message).contains("eos_token_id")) << message;
}

//===----------------------------------------------------------------------===//
// Malformed checkpoints
//===----------------------------------------------------------------------===//

TEST_F(HuggingFaceTest, MissingConfig) {
  EXPECT_EQ(openError(dir.root()),
            dir.root() + ": not a Hugging Face checkpoint directory: "
                         "config.json is missing");
}

TEST_F(HuggingFaceTest, MalformedConfigJSON) {
  HFModel m = makeModel();
  write(m);
  writeFile(dir.path("config.json"), "{\"hidden_size\": 8,");
  std::string message = openError(dir.root());
  EXPECT_TRUE(StringRef(message).starts_with(dir.path("config.json") +
                                             ": invalid JSON: "))
      << message;
  writeFile(dir.path("config.json"), "[1, 2]");
  EXPECT_EQ(openError(dir.root()),
            dir.path("config.json") +
                ": the top-level JSON value is not an object");
}

TEST_F(HuggingFaceTest, WrongArchitecture) {
  HFModel m = makeModel();
  m.config["model_type"] = "qwen2";
  EXPECT_EQ(configError(m),
            "model_type 'qwen2' is not supported (expected 'llama')");
  m = makeModel();
  m.config.erase("model_type");
  m.config["architectures"] = json::Array{"MistralForCausalLM"};
  EXPECT_EQ(configError(m), "architectures ['MistralForCausalLM'] are not "
                            "supported (expected 'LlamaForCausalLM')");
  m = makeModel();
  m.config.erase("model_type");
  m.config.erase("architectures");
  EXPECT_EQ(configError(m), "neither 'model_type' nor 'architectures' is "
                            "set; expected a LLaMA model");
}

TEST_F(HuggingFaceTest, UnsupportedFeatures) {
  HFModel m = makeModel();
  m.config["rope_scaling"] =
      json::Object{{"rope_type", "llama3"}, {"factor", 8.0}};
  EXPECT_EQ(configError(m), "rope_scaling 'llama3' is not supported");
  m = makeModel();
  m.config["attention_bias"] = true;
  EXPECT_EQ(configError(m),
            "'attention_bias' is set; biases are not supported");
  m = makeModel();
  m.config["hidden_act"] = "gelu";
  EXPECT_EQ(configError(m), "only hidden_act 'silu' is supported");
}

TEST_F(HuggingFaceTest, MissingConfigKey) {
  for (const char *key :
       {"hidden_size", "intermediate_size", "num_hidden_layers",
        "num_attention_heads", "vocab_size", "max_position_embeddings",
        "rms_norm_eps"}) {
    HFModel m = makeModel();
    m.config.erase(key);
    EXPECT_EQ(configError(m), std::string("missing key '") + key + "'");
  }
}

TEST_F(HuggingFaceTest, ConfigKeyOfWrongType) {
  HFModel m = makeModel();
  m.config["hidden_size"] = "8";
  EXPECT_EQ(configError(m), "'hidden_size' must be an integer");
  m = makeModel();
  m.config["rms_norm_eps"] = "tiny";
  EXPECT_EQ(configError(m), "'rms_norm_eps' must be a number");
  m = makeModel();
  m.config["tie_word_embeddings"] = 1;
  EXPECT_EQ(configError(m), "'tie_word_embeddings' must be true or false");
}

TEST_F(HuggingFaceTest, HeadsDoNotDivideHidden) {
  HFModel m = makeModel();
  m.config["num_attention_heads"] = 3;
  EXPECT_EQ(configError(m),
            "num_attention_heads (3) does not divide hidden_size (8)");
}

TEST_F(HuggingFaceTest, KVHeadsDoNotDivideHeads) {
  HFModel m = makeModel();
  m.config["num_key_value_heads"] = 3;
  EXPECT_EQ(configError(m),
            "num_key_value_heads (3) does not divide num_attention_heads (2)");
}

TEST_F(HuggingFaceTest, NonPositiveConfigValues) {
  HFModel m = makeModel();
  m.config["num_hidden_layers"] = -1;
  EXPECT_EQ(configError(m), "num_hidden_layers is -1; it must be between 1 "
                            "and 2147483647");
  m = makeModel();
  m.config["vocab_size"] = 0;
  EXPECT_EQ(configError(m),
            "vocab_size is 0; it must be between 1 and 2147483647");
  m = makeModel();
  m.config["rms_norm_eps"] = 0.0;
  EXPECT_EQ(configError(m),
            "rms_norm_eps is 0; it must be positive and finite");
}

TEST_F(HuggingFaceTest, NoSafetensorsFiles) {
  HFModel m = makeModel();
  writeFile(dir.path("config.json"), toJSON(json::Object(m.config)));
  EXPECT_EQ(openError(dir.root()),
            dir.root() + ": no *.safetensors files in the checkpoint "
                         "directory");
}

TEST_F(HuggingFaceTest, TruncatedSafetensors) {
  HFModel m = makeModel();
  write(m);
  std::string shard = shardName(0, 1);
  writeFile(shard, StringRef("\x10\0\0", 3));
  EXPECT_EQ(openError(dir.root()),
            shard + ": truncated file: the safetensors header length [offset "
                    "0, 8 bytes] extends past the end of the file (3 bytes)");

  ByteWriter w;
  w.u64(1000).raw(StringRef("{}"));
  writeFile(shard, w.bytes());
  EXPECT_EQ(openError(dir.root()),
            shard + ": truncated file: the safetensors JSON header (1000 "
                    "bytes) [offset 8, 1000 bytes] extends past the end of "
                    "the file (10 bytes)");

  // A complete file cut inside its data.
  std::vector<const STTensor *> all;
  for (const STTensor &t : m.tensors)
    all.push_back(&t);
  std::vector<uint8_t> bytes = safetensorsFile(all);
  bytes.resize(bytes.size() - 4);
  writeFile(shard, bytes);
  std::string message = openError(dir.root());
  EXPECT_TRUE(StringRef(message).starts_with(shard + ": tensor '")) << message;
  EXPECT_TRUE(StringRef(message).contains("do not lie inside the data "
                                          "section"))
      << message;
}

TEST_F(HuggingFaceTest, MalformedHeader) {
  HFModel m = makeModel();
  write(m);
  std::string shard = shardName(0, 1);
  writeFile(shard, rawSafetensors("{\"a\": ", {}));
  std::string message = openError(dir.root());
  EXPECT_TRUE(StringRef(message).starts_with(shard + ": invalid JSON header: "))
      << message;
  writeFile(shard, rawSafetensors("[]", {}));
  EXPECT_EQ(openError(dir.root()),
            shard + ": the JSON header is not an object");
  writeFile(shard,
            rawSafetensors(R"({"x": {"dtype": "F32", "shape": [1]}})", {}));
  EXPECT_EQ(openError(dir.root()),
            shard + ": tensor 'x' has no 'data_offsets' [begin, end]");
  writeFile(shard, rawSafetensors(R"({"x": {"shape": [1],
                                          "data_offsets": [0, 4]}})",
                                  {0, 0, 0, 0}));
  EXPECT_EQ(openError(dir.root()),
            shard + ": tensor 'x' has no string 'dtype'");
}

TEST_F(HuggingFaceTest, UnknownDtype) {
  HFModel m = makeModel();
  STTensor &t = findTensor(m, "model.layers.0.self_attn.q_proj.weight");
  t.dtype = "I8";
  t.data.resize(64);
  EXPECT_EQ(shardError(m), "tensor 'model.layers.0.self_attn.q_proj.weight' "
                           "has dtype 'I8', which is not supported "
                           "(supported: F32, F16, BF16)");
  m = makeModel();
  findTensor(m, "model.norm.weight").dtype = "Q4_K";
  EXPECT_EQ(shardError(m), "tensor 'model.norm.weight' has dtype 'Q4_K', "
                           "which is not supported (supported: F32, F16, "
                           "BF16)");
}

TEST_F(HuggingFaceTest, DataOffsetsOutOfRange) {
  HFModel m = makeModel();
  findTensor(m, "model.norm.weight").offsetsOverride = {0, 1 << 20};
  std::string message = shardError(m);
  EXPECT_TRUE(StringRef(message).starts_with(
      "tensor 'model.norm.weight' data_offsets [0, 1048576] do not lie "
      "inside the data section ("))
      << message;
  findTensor(m, "model.norm.weight").offsetsOverride = {32, 0};
  message = shardError(m);
  EXPECT_TRUE(StringRef(message).starts_with(
      "tensor 'model.norm.weight' data_offsets [32, 0] do not lie inside"))
      << message;
  findTensor(m, "model.norm.weight").offsetsOverride = {-32, 0};
  message = shardError(m);
  EXPECT_TRUE(StringRef(message).starts_with(
      "tensor 'model.norm.weight' data_offsets [-32, 0] do not lie inside"))
      << message;
}

TEST_F(HuggingFaceTest, DataOffsetsDoNotMatchShape) {
  HFModel m = makeModel();
  findTensor(m, "model.norm.weight").offsetsOverride = {0, 12};
  EXPECT_EQ(shardError(m), "tensor 'model.norm.weight' has 12 bytes of data, "
                           "but its shape [8] and dtype F32 need 32 bytes");
}

TEST_F(HuggingFaceTest, OverflowingShape) {
  HFModel m = makeModel();
  findTensor(m, "model.norm.weight").shape = {int64_t(1) << 40, int64_t(1)
                                                                    << 40};
  EXPECT_EQ(shardError(m), "tensor 'model.norm.weight' has an invalid shape "
                           "(each dimension must be a non-negative integer "
                           "and the element count must fit in 63 bits)");
  findTensor(m, "model.norm.weight").shape = {-8};
  EXPECT_EQ(shardError(m), "tensor 'model.norm.weight' has an invalid shape "
                           "(each dimension must be a non-negative integer "
                           "and the element count must fit in 63 bits)");
}

TEST_F(HuggingFaceTest, MissingTensor) {
  HFModel m = makeModel();
  llvm::erase_if(m.tensors, [](const STTensor &t) {
    return t.name == "model.layers.1.mlp.up_proj.weight";
  });
  EXPECT_EQ(error(m), dir.root() +
                          ": missing tensor 'model.layers.1.mlp.up_proj."
                          "weight' (layers.1.feed_forward.w3) in the "
                          "*.safetensors files");
}

TEST_F(HuggingFaceTest, TensorShapeMismatch) {
  HFModel m = makeModel();
  findTensor(m, "model.layers.0.mlp.down_proj.weight").shape = {12, 8};
  EXPECT_EQ(shardError(m), "tensor 'model.layers.0.mlp.down_proj.weight' has "
                           "shape [12, 8], but config.json implies [8, 12]");
}

TEST_F(HuggingFaceTest, DuplicateTensorAcrossShards) {
  HFOptions o;
  o.shards = 2;
  HFModel m = makeModel(o);
  STTensor copy = findTensor(m, "model.norm.weight");
  copy.shard = 1 - copy.shard;
  unsigned first = std::min(copy.shard, 1 - copy.shard);
  m.tensors.push_back(copy);
  std::string message = error(m);
  EXPECT_EQ(message, shardName(1, 2) +
                         ": tensor 'model.norm.weight' also "
                         "appears in " +
                         shardName(first, 2));
}

} // namespace
