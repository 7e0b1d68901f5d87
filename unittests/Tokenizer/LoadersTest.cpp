//===- LoadersTest.cpp - Tests for the tokenizer file readers -------------===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#include "qlr/Tokenizer/Tokenizer.h"

#include "llvm/ADT/SmallString.h"
#include "llvm/Support/Endian.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/raw_ostream.h"

#include "gtest/gtest.h"

using namespace qlr::tokenizer;

namespace {

using Ids = std::vector<int32_t>;

constexpr const char *kSpace = "\xE2\x96\x81"; // U+2581

/// A scratch directory, removed with its files at the end of the test.
class LoadersTest : public ::testing::Test {
protected:
  void SetUp() override {
    ASSERT_FALSE(llvm::sys::fs::createUniqueDirectory("qlr-tokenizer", dir));
  }
  void TearDown() override {
    for (const std::string &f : files)
      llvm::sys::fs::remove(f);
    llvm::sys::fs::remove(dir);
  }

  std::string write(llvm::StringRef name, llvm::StringRef contents) {
    llvm::SmallString<256> path = dir;
    llvm::sys::path::append(path, name);
    std::error_code ec;
    llvm::raw_fd_ostream os(path, ec);
    EXPECT_FALSE(ec) << ec.message();
    os << contents;
    files.push_back(std::string(path));
    return std::string(path);
  }

  llvm::SmallString<256> dir;
  std::vector<std::string> files;
};

/// A llama2.c tokenizer.bin: <unk>, "\n<s>\n", "\n</s>\n", the 256 byte
/// tokens, then the given pieces (with plain spaces, as llama2.c stores
/// them).
std::string
llama2cFile(std::vector<std::pair<std::string, float>> extra = {
                {" ", -1}, {"h", -2}, {"i", -3}, {"hi", -4}, {" hi", -5}}) {
  std::vector<std::pair<std::string, float>> tokens = {
      {"<unk>", 0}, {"\n<s>\n", 0}, {"\n</s>\n", 0}};
  for (unsigned b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof(buf), "<0x%02X>", b);
    tokens.push_back({buf, 0});
  }
  tokens.insert(tokens.end(), extra.begin(), extra.end());
  std::string out;
  auto put32 = [&](uint32_t v) {
    char b[4];
    llvm::support::endian::write32le(b, v);
    out.append(b, 4);
  };
  put32(7);
  for (auto &[piece, score] : tokens) {
    put32(llvm::bit_cast<uint32_t>(score));
    put32(piece.size());
    out += piece;
  }
  return out;
}

TEST_F(LoadersTest, Llama2c) {
  std::string path = write("tokenizer.bin", llama2cFile());
  auto data = loadLlama2cTokenizer(path, 264);
  ASSERT_TRUE(bool(data)) << llvm::toString(data.takeError());
  EXPECT_EQ(data->kind, TokenizerKind::SentencePieceBPE);
  ASSERT_EQ(data->tokens.size(), 264u);
  EXPECT_EQ(data->tokens[1], "<s>");
  EXPECT_EQ(data->tokens[2], "</s>");
  EXPECT_EQ(data->tokens[259], kSpace);
  EXPECT_EQ(data->tokens[263], std::string(kSpace) + "hi");
  EXPECT_EQ(data->scores[263], -5.0f);
  EXPECT_EQ(data->tokenTypes[0], TokenType::Unknown);
  EXPECT_EQ(data->tokenTypes[1], TokenType::Control);
  EXPECT_EQ(data->tokenTypes[13], TokenType::Byte);
  EXPECT_EQ(data->tokenTypes[260], TokenType::Normal);
  EXPECT_EQ(data->bosId, 1);
  EXPECT_EQ(data->eosId, 2);
  EXPECT_EQ(data->unkId, 0);
  EXPECT_TRUE(data->addBos);
  EXPECT_TRUE(data->addSpacePrefix);

  auto tok = Tokenizer::create(std::move(*data));
  ASSERT_TRUE(bool(tok)) << llvm::toString(tok.takeError());
  EXPECT_EQ((*tok)->encode("hi hi", true), (Ids{1, 263, 263}));
  EXPECT_EQ((*tok)->decode({1, 263, 263}), "hi hi");

  // vocabSize <= 0 reads the whole file; a smaller one stops early.
  auto all = loadLlama2cTokenizer(path, 0);
  ASSERT_TRUE(bool(all)) << llvm::toString(all.takeError());
  EXPECT_EQ(all->tokens.size(), 264u);
  auto some = loadLlama2cTokenizer(path, 100);
  ASSERT_TRUE(bool(some)) << llvm::toString(some.takeError());
  EXPECT_EQ(some->tokens.size(), 100u);
}

TEST_F(LoadersTest, Llama2cErrorsNameTheFile) {
  std::string full = llama2cFile();
  std::string path = write("cut.bin", llvm::StringRef(full).drop_back(3));
  auto tooMany = loadLlama2cTokenizer(path, 264);
  ASSERT_FALSE(bool(tooMany));
  std::string msg = llvm::toString(tooMany.takeError());
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("token 263"), std::string::npos) << msg;
  auto whole = loadLlama2cTokenizer(path, 0);
  EXPECT_FALSE(bool(whole));
  llvm::consumeError(whole.takeError());

  auto missing = loadLlama2cTokenizer(dir.str().str() + "/nope.bin", 10);
  ASSERT_FALSE(bool(missing));
  EXPECT_NE(llvm::toString(missing.takeError()).find("nope.bin"),
            std::string::npos);
  auto empty = loadLlama2cTokenizer(write("empty.bin", ""), 0);
  EXPECT_FALSE(bool(empty));
  llvm::consumeError(empty.takeError());
}

TEST_F(LoadersTest, DispatchByContent) {
  std::string bin = write("tok.model", llama2cFile());
  auto data = loadTokenizerFile(bin, 264);
  ASSERT_TRUE(bool(data)) << llvm::toString(data.takeError());
  EXPECT_EQ(data->kind, TokenizerKind::SentencePieceBPE);
  EXPECT_EQ(data->tokens.size(), 264u);
  // A llama2.c file whose max_token_length (123) starts with '{' is no JSON.
  std::string braced = llama2cFile();
  braced[0] = '{';
  auto data2 = loadTokenizerFile(write("tok2.model", braced), 264);
  ASSERT_TRUE(bool(data2)) << llvm::toString(data2.takeError());
  EXPECT_EQ(data2->tokens.size(), 264u);
}

/// A byte-level tokenizer.json over the 256 byte pieces plus "Ġt", "he",
/// "Ġthe" and an added "<|endoftext|>".
std::string byteLevelJson(llvm::StringRef preTokenizer,
                          llvm::StringRef mergesJson = R"(["Ġ t", "h e",
                                                          "Ġt he"])") {
  auto printable = [](unsigned b) {
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) ||
           (b >= 0xAE && b <= 0xFF);
  };
  std::string vocab;
  unsigned next = 256;
  for (unsigned b = 0; b < 256; ++b) {
    unsigned cp = printable(b) ? b : next++;
    std::string piece;
    if (cp < 0x80) {
      piece += char(cp);
    } else {
      piece += char(0xC0 | (cp >> 6));
      piece += char(0x80 | (cp & 0x3F));
    }
    if (piece == "\"" || piece == "\\")
      piece = "\\" + piece;
    vocab += "\"" + piece + "\": " + std::to_string(b) + ", ";
  }
  vocab += R"("Ġt": 256, "he": 257, "Ġthe": 258)";
  return (R"({"version": "1.0",
  "added_tokens": [{"id": 259, "content": "<|endoftext|>", "special": true}],
  "normalizer": null,
  "pre_tokenizer": )" +
          preTokenizer + R"(,
  "decoder": {"type": "ByteLevel", "add_prefix_space": true},
  "model": {"type": "BPE", "vocab": {)" +
          vocab + R"(}, "merges": )" + mergesJson + "}}")
      .str();
}

constexpr const char *kByteLevel =
    R"({"type": "ByteLevel", "add_prefix_space": false, "use_regex": true})";

TEST_F(LoadersTest, HuggingFaceByteLevel) {
  std::string path = write("tokenizer.json", byteLevelJson(kByteLevel));
  auto data = loadTokenizerFile(path, 0);
  ASSERT_TRUE(bool(data)) << llvm::toString(data.takeError());
  EXPECT_EQ(data->kind, TokenizerKind::ByteLevelBPE);
  EXPECT_EQ(data->preTokenizer, "gpt2");
  EXPECT_EQ(data->tokens.size(), 260u);
  EXPECT_EQ(data->merges, (std::vector<std::string>{"Ġ t", "h e", "Ġt he"}));
  EXPECT_EQ(data->tokenTypes[259], TokenType::Control);
  EXPECT_EQ(data->tokenTypes[258], TokenType::Normal);
  // No tokenizer_config.json: GPT-2's <|endoftext|> convention, no BOS.
  EXPECT_EQ(data->bosId, 259);
  EXPECT_EQ(data->eosId, 259);
  EXPECT_FALSE(data->addBos);
  auto tok = Tokenizer::create(std::move(*data));
  ASSERT_TRUE(bool(tok)) << llvm::toString(tok.takeError());
  EXPECT_EQ((*tok)->encode("he the", false), (Ids{257, 258}));

  // The directory works too, and vocabSize pads with unused tokens.
  auto padded = loadTokenizerFile(dir, 300);
  ASSERT_TRUE(bool(padded)) << llvm::toString(padded.takeError());
  ASSERT_EQ(padded->tokens.size(), 300u);
  EXPECT_EQ(padded->tokens[299], "[PAD299]");
  EXPECT_EQ(padded->tokenTypes[299], TokenType::Unused);
  auto tooSmall = loadTokenizerFile(path, 100);
  ASSERT_FALSE(bool(tooSmall));
  EXPECT_NE(llvm::toString(tooSmall.takeError()).find("beyond"),
            std::string::npos);
}

TEST_F(LoadersTest, HuggingFaceTokenizerConfig) {
  std::string path = write("tokenizer.json", byteLevelJson(kByteLevel));
  write("tokenizer_config.json", R"({"add_bos_token": true,
      "bos_token": {"content": "<|endoftext|>"}, "eos_token": "he",
      "pad_token": null})");
  auto data = loadTokenizerFile(path, 0);
  ASSERT_TRUE(bool(data)) << llvm::toString(data.takeError());
  EXPECT_EQ(data->bosId, 259);
  EXPECT_EQ(data->eosId, 257);
  EXPECT_EQ(data->padId, -1);
  EXPECT_TRUE(data->addBos);
}

TEST_F(LoadersTest, HuggingFacePreTokenizerNames) {
  auto preOf = [&](llvm::StringRef pre) -> std::string {
    std::string path = write("tokenizer.json", byteLevelJson(pre));
    auto data = loadTokenizerFile(path, 0);
    if (!data)
      return "error: " + llvm::toString(data.takeError());
    return data->preTokenizer;
  };
  EXPECT_EQ(preOf(kByteLevel), "gpt2");
  EXPECT_EQ(preOf(R"({"type": "Sequence", "pretokenizers": [
      {"type": "Digits", "individual_digits": true},
      {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true}]})"),
            "smollm");
  EXPECT_EQ(preOf(R"({"type": "Sequence", "pretokenizers": [
      {"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
       "behavior": "Isolated", "invert": false},
      {"type": "ByteLevel", "add_prefix_space": false, "use_regex": false}]})"),
            "llama-bpe");
  EXPECT_EQ(preOf(R"({"type": "Sequence", "pretokenizers": [
      {"type": "Split", "pattern": {"Regex": "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"}},
      {"type": "ByteLevel", "use_regex": false}]})"),
            "gpt2");
  std::string unknown = preOf(R"({"type": "Sequence", "pretokenizers": [
      {"type": "Split", "pattern": {"Regex": "\\p{N}"}},
      {"type": "ByteLevel", "use_regex": false}]})");
  EXPECT_NE(unknown.find("unsupported pre-tokenizer regex"), std::string::npos)
      << unknown;
  std::string noRegex = preOf(R"({"type": "ByteLevel", "use_regex": false})");
  EXPECT_NE(noRegex.find("without a splitting regex"), std::string::npos)
      << noRegex;
  std::string whitespace = preOf(R"({"type": "Sequence", "pretokenizers": [
      {"type": "Whitespace"}, {"type": "ByteLevel"}]})");
  EXPECT_NE(whitespace.find("\"Whitespace\""), std::string::npos) << whitespace;
}

TEST_F(LoadersTest, HuggingFaceSentencePiece) {
  // LLaMA-style: Prepend + Replace normalizer, byte fallback, merges as
  // pairs; ids 3..258 are the byte tokens.
  std::string vocab = R"("<unk>": 0, "<s>": 1, "</s>": 2, )";
  for (unsigned b = 0; b < 256; ++b) {
    char buf[16];
    std::snprintf(buf, sizeof(buf), "\"<0x%02X>\": %u, ", b, 3 + b);
    vocab += buf;
  }
  vocab += R"("▁": 259, "h": 260, "i": 261, "hi": 262, "▁hi": 263)";
  std::string json = R"({
  "added_tokens": [{"id": 0, "content": "<unk>", "special": true},
                   {"id": 1, "content": "<s>", "special": true},
                   {"id": 2, "content": "</s>", "special": true}],
  "normalizer": {"type": "Sequence", "normalizers": [
      {"type": "Prepend", "prepend": "▁"},
      {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
  "pre_tokenizer": null,
  "post_processor": {"type": "TemplateProcessing",
      "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                 {"Sequence": {"id": "A", "type_id": 0}}]},
  "decoder": {"type": "Sequence", "decoders": [{"type": "ByteFallback"}]},
  "model": {"type": "BPE", "byte_fallback": true, "unk_token": "<unk>",
            "vocab": {)" +
                     vocab + R"(}, "merges": [["h", "i"], ["▁", "hi"]]}})";
  std::string path = write("tokenizer.json", json);
  auto data = loadTokenizerFile(path, 0);
  ASSERT_TRUE(bool(data)) << llvm::toString(data.takeError());
  EXPECT_EQ(data->kind, TokenizerKind::SentencePieceBPE);
  EXPECT_TRUE(data->addSpacePrefix);
  EXPECT_TRUE(data->addBos);
  EXPECT_EQ(data->bosId, 1);
  EXPECT_EQ(data->eosId, 2);
  EXPECT_EQ(data->unkId, 0);
  EXPECT_EQ(data->tokenTypes[0], TokenType::Unknown);
  EXPECT_EQ(data->tokenTypes[1], TokenType::Control);
  EXPECT_EQ(data->tokenTypes[13], TokenType::Byte);
  EXPECT_TRUE(data->merges.empty());
  // Scores: minus the rank of the merge that makes the piece.
  EXPECT_EQ(data->scores[262], -0.0f);
  EXPECT_EQ(data->scores[263], -1.0f);
  EXPECT_EQ(data->scores[260], 0.0f);
  auto tok = Tokenizer::create(std::move(*data));
  ASSERT_TRUE(bool(tok)) << llvm::toString(tok.takeError());
  EXPECT_EQ((*tok)->encode("hi hi", true), (Ids{1, 263, 263}));
}

TEST_F(LoadersTest, HuggingFaceErrorsNameTheFile) {
  auto errorOf = [&](llvm::StringRef contents) {
    std::string path = write("tokenizer.json", contents);
    auto data = loadTokenizerFile(path, 0);
    if (data)
      return std::string();
    std::string msg = llvm::toString(data.takeError());
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    return msg;
  };
  EXPECT_NE(errorOf("{ not json").find("invalid JSON"), std::string::npos);
  EXPECT_NE(
      errorOf(R"({"model": {"type": "Unigram", "vocab": []}})").find("Unigram"),
      std::string::npos);
  EXPECT_NE(errorOf(R"({"model": {"type": "BPE"}})").find("vocab"),
            std::string::npos);
  EXPECT_NE(errorOf(R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 0}},
                        "pre_tokenizer": {"type": "ByteLevel"}})")
                .find("used twice"),
            std::string::npos);
  EXPECT_NE(errorOf(R"({"model": {"type": "BPE", "vocab": {"a": 0}}})")
                .find("neither byte-level nor SentencePiece"),
            std::string::npos);
  EXPECT_NE(errorOf(byteLevelJson(kByteLevel, R"(["Ġt"])"))
                .find("not \"left right\""),
            std::string::npos);
}

} // namespace
