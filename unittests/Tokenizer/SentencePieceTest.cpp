//===- SentencePieceTest.cpp - Tests for the SentencePiece BPE tokenizer --===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// A hand-made vocabulary with ids derived by hand, and the real LLaMA-2 and
// TinyStories tokenizers from shared/models (skipped when absent; the
// directory can be overridden with QLR_SHARED_MODELS). The expected ids of
// the real tokenizers agree with llama2.c's encoder (run.c, transcribed to
// Python) and with Hugging Face tokenizers on a tokenizer.json derived from
// the same vocabulary.
//
//===----------------------------------------------------------------------===//

#include "qlr/Tokenizer/Tokenizer.h"

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Path.h"

#include "gtest/gtest.h"

#include <cstdlib>
#include <random>

using namespace qlr::tokenizer;

namespace {

using Ids = std::vector<int32_t>;

constexpr const char *kSpace = "\xE2\x96\x81"; // U+2581

std::string sp(llvm::StringRef s) {
  std::string out;
  for (char c : s) {
    if (c == ' ')
      out += kSpace;
    else
      out += c;
  }
  return out;
}

/// <unk> <s> </s>, the 256 byte tokens (ids 3..258), then:
///   259 ▁ (-1)   260 a (-2)   261 b (-3)   262 c (-4)   263 ab (-5)
///   264 bc (-6)  265 cb (-6)  266 ▁a (-10)  267 abc (-7)  268 ▁ab (-20)
///   269 ▁▁ (-30)
TokenizerData toyData() {
  TokenizerData data;
  data.kind = TokenizerKind::SentencePieceBPE;
  data.tokens = {"<unk>", "<s>", "</s>"};
  data.scores = {0, 0, 0};
  for (unsigned b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof(buf), "<0x%02X>", b);
    data.tokens.push_back(buf);
    data.scores.push_back(0);
  }
  std::pair<std::string, float> pieces[] = {
      {sp(" "), -1}, {"a", -2},        {"b", -3},      {"c", -4},
      {"ab", -5},    {"bc", -6},       {"cb", -6},     {sp(" a"), -10},
      {"abc", -7},   {sp(" ab"), -20}, {sp("  "), -30}};
  for (auto &[piece, score] : pieces) {
    data.tokens.push_back(piece);
    data.scores.push_back(score);
  }
  data.unkId = 0;
  data.bosId = 1;
  data.eosId = 2;
  return data;
}

std::unique_ptr<Tokenizer> makeTokenizer(TokenizerData data) {
  auto tok = Tokenizer::create(std::move(data));
  EXPECT_TRUE(bool(tok)) << llvm::toString(tok.takeError());
  return tok ? std::move(*tok) : nullptr;
}

int32_t byteId(uint8_t b) { return 3 + b; }

TEST(SentencePieceTest, MergesByScore) {
  auto tok = makeTokenizer(toyData());
  ASSERT_TRUE(tok);
  EXPECT_EQ(tok->vocabSize(), 270);
  // "▁ab": "ab" (-5) beats "▁a" (-10), then "▁ab" (-20).
  EXPECT_EQ(tok->encode("ab", /*addBos=*/true), (Ids{1, 268}));
  // "▁abc": ab, then abc (-7); "▁abc" is no piece.
  EXPECT_EQ(tok->encode("abc", false), (Ids{259, 267}));
  // "bc" and "cb" tie at -6: the leftmost pair merges first.
  EXPECT_EQ(tok->encode("bcb", false), (Ids{259, 264, 261}));
  // A lone "a" after the space prefix.
  EXPECT_EQ(tok->encode("a", false), (Ids{266}));
  EXPECT_EQ(tok->encode("", true), (Ids{1}));
  EXPECT_EQ(tok->encode("", false), Ids{});
}

TEST(SentencePieceTest, SpacesBecomeMarkers) {
  auto tok = makeTokenizer(toyData());
  ASSERT_TRUE(tok);
  // " a b": "▁▁a▁b" -> ▁▁ (-30) loses to ▁a (-10): ▁, ▁a, ▁, b.
  EXPECT_EQ(tok->encode(" a b", false), (Ids{259, 266, 259, 261}));
  TokenizerData noPrefix = toyData();
  noPrefix.addSpacePrefix = false;
  auto tok2 = makeTokenizer(std::move(noPrefix));
  ASSERT_TRUE(tok2);
  EXPECT_EQ(tok2->encode("ab", false), (Ids{263}));
  EXPECT_EQ(tok2->decode({263}), "ab");
}

TEST(SentencePieceTest, ByteFallback) {
  auto tok = makeTokenizer(toyData());
  ASSERT_TRUE(tok);
  EXPECT_EQ(tok->encode("z", false), (Ids{259, byteId('z')}));
  // é is not a piece: its two UTF-8 bytes.
  EXPECT_EQ(tok->encode("\xC3\xA9", false),
            (Ids{259, byteId(0xC3), byteId(0xA9)}));
  EXPECT_EQ(tok->encode("a\nb", false), (Ids{266, byteId('\n'), 261}));
  // Malformed UTF-8 survives as raw bytes.
  EXPECT_EQ(tok->encode("\xFF", false), (Ids{259, byteId(0xFF)}));
  EXPECT_EQ(tok->decode(tok->encode("\xFF", true)), "\xFF");
  EXPECT_EQ(tok->tokenType(byteId(7)), TokenType::Byte);
  EXPECT_EQ(tok->decodePiece(5, byteId(0xC3)), "\xC3");
}

TEST(SentencePieceTest, DecodeDropsTheSpacePrefix) {
  auto tok = makeTokenizer(toyData());
  ASSERT_TRUE(tok);
  EXPECT_EQ(tok->decode({1, 268, 259, 261}), "ab b");
  EXPECT_EQ(tok->decode({268, 259, 261}), "ab b");
  // Streaming: only right after BOS (or at the start).
  EXPECT_EQ(tok->decodePiece(1, 268), "ab");
  EXPECT_EQ(tok->decodePiece(-1, 268), "ab");
  EXPECT_EQ(tok->decodePiece(260, 268), " ab");
  // Control and unknown tokens decode to nothing; bad ids too.
  EXPECT_EQ(tok->decodePiece(268, 2), "");
  EXPECT_EQ(tok->decodePiece(268, 0), "");
  EXPECT_EQ(tok->decodePiece(268, 9999), "");
  EXPECT_EQ(tok->decodePiece(268, -5), "");
  EXPECT_EQ(tok->tokenType(0), TokenType::Unknown);
  EXPECT_EQ(tok->tokenType(1), TokenType::Control);
  EXPECT_EQ(tok->tokenType(260), TokenType::Normal);
}

TEST(SentencePieceTest, SpecialTokensInText) {
  auto tok = makeTokenizer(toyData());
  ASSERT_TRUE(tok);
  // Without parseSpecial "</s>" is plain text.
  Ids plain = tok->encode("a</s>", false);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 2), 0);
  // With it, the text after a special token gets the space prefix again.
  EXPECT_EQ(tok->encode("a</s>b", false, /*parseSpecial=*/true),
            (Ids{266, 2, 259, 261}));
  // User-defined tokens are always matched.
  TokenizerData data = toyData();
  data.tokens.push_back("<tool>");
  data.scores.push_back(0);
  data.tokenTypes.assign(data.tokens.size(), TokenType::Normal);
  for (int b = 0; b < 256; ++b)
    data.tokenTypes[byteId(b)] = TokenType::Byte;
  data.tokenTypes[0] = TokenType::Unknown;
  data.tokenTypes[1] = data.tokenTypes[2] = TokenType::Control;
  data.tokenTypes.back() = TokenType::UserDefined;
  auto tok2 = makeTokenizer(std::move(data));
  ASSERT_TRUE(tok2);
  EXPECT_EQ(tok2->encode("a<tool>b", false), (Ids{266, 270, 259, 261}));
  EXPECT_EQ(tok2->decode({266, 270, 259, 261}), "a<tool> b");
}

TEST(SentencePieceTest, Validation) {
  auto errorOf = [](TokenizerData data) {
    auto tok = Tokenizer::create(std::move(data));
    return tok ? std::string() : llvm::toString(tok.takeError());
  };
  TokenizerData d = toyData();
  d.scores.clear();
  EXPECT_NE(errorOf(d).find("score"), std::string::npos);
  d = toyData();
  d.scores.pop_back();
  EXPECT_NE(errorOf(d).find("scores"), std::string::npos);
  d = toyData();
  d.tokens[3 + 0x41] = "A"; // drops <0x41>; the piece "A" stands in.
  EXPECT_EQ(errorOf(d), "");
  d = toyData();
  d.tokens[3 + 0x41] = "<0x41x"; // no byte token for 'A' at all
  EXPECT_NE(errorOf(d).find("<0x41>"), std::string::npos);
  d = toyData();
  d.tokens[260] = "b"; // duplicate
  EXPECT_NE(errorOf(d).find("duplicate"), std::string::npos);
  d = toyData();
  d.bosId = 270;
  EXPECT_NE(errorOf(d).find("BOS"), std::string::npos);
  d = toyData();
  d.tokenTypes.assign(d.tokens.size(), 9);
  EXPECT_NE(errorOf(d).find("token type"), std::string::npos);
  d = toyData();
  d.tokenTypes.assign(d.tokens.size(), TokenType::Normal);
  d.tokenTypes[260] = 0; // GGUF's "undefined"
  {
    auto tok = Tokenizer::create(d);
    ASSERT_TRUE(bool(tok)) << llvm::toString(tok.takeError());
    EXPECT_EQ((*tok)->tokenType(260), TokenType::Unused);
    EXPECT_EQ((*tok)->decodePiece(259, 260), "");
  }
  d.tokenTypes[260] = TokenType::Byte; // "a" is no <0xXX>
  EXPECT_NE(errorOf(d).find("byte token"), std::string::npos);
  EXPECT_NE(errorOf(TokenizerData()).find("empty"), std::string::npos);
}

//===----------------------------------------------------------------------===//
// Real tokenizers
//===----------------------------------------------------------------------===//

std::string modelPath(llvm::StringRef name) {
  const char *dir = std::getenv("QLR_SHARED_MODELS");
  llvm::SmallString<256> path(dir ? dir : "/work/shared/models");
  llvm::sys::path::append(path, name);
  return std::string(path);
}

/// Strings for the decode(encode(s)) == s property.
std::vector<std::string> roundTripStrings() {
  std::vector<std::string> strings = {
      "",
      "Hello world",
      " leading space",
      "trailing space ",
      "  two leading",
      "many     spaces",
      "\n",
      "line one\nline two\n\n",
      "\ttabs\tand\r\ncarriage returns",
      "na\xC3\xAFve caf\xC3\xA9",
      "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E\xE3\x81\xA7\xE3\x81\x99",
      "\xED\x95\x9C\xEA\xB5\xAD\xEC\x96\xB4 \xD0\x9F\xD1\x80\xD0\xB8",
      "emoji \xF0\x9F\xA6\x99\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD "
      "\xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9",
      "digits 1234567890 and 3.14",
      "punctuation!? ... (x) [y] {z} @#$%^&*",
      "\xC2\xA0no-break\xE3\x80\x80ideographic space",
  };
  const char *pieces[] = {"a",
                          "the",
                          " ",
                          "  ",
                          "\n",
                          "\t",
                          "Once",
                          " upon",
                          "7",
                          "42",
                          ",",
                          ".",
                          "!",
                          "\xC3\xA9",
                          "\xE4\xB8\xAD",
                          "\xF0\x9F\x98\x80",
                          "'s",
                          "-",
                          "\"",
                          "\xE2\x80\x94"};
  std::mt19937 rng(7);
  for (int i = 0; i < 300; ++i) {
    std::string s;
    for (int n = rng() % 16; n > 0; --n)
      s += pieces[rng() % std::size(pieces)];
    strings.push_back(s);
  }
  return strings;
}

class RealSentencePieceTest : public ::testing::Test {
protected:
  std::unique_ptr<Tokenizer> load(llvm::StringRef name, int64_t vocabSize) {
    std::string path = modelPath(name);
    if (!llvm::sys::fs::exists(path))
      return nullptr;
    auto data = loadLlama2cTokenizer(path, vocabSize);
    EXPECT_TRUE(bool(data)) << llvm::toString(data.takeError());
    if (!data)
      return nullptr;
    return makeTokenizer(std::move(*data));
  }
};

TEST_F(RealSentencePieceTest, Llama2) {
  auto tok = load("tokenizer.bin", 32000);
  if (!tok)
    GTEST_SKIP() << "the LLaMA-2 tokenizer " << modelPath("tokenizer.bin")
                 << " is not available";
  EXPECT_EQ(tok->vocabSize(), 32000);
  EXPECT_EQ(tok->bosId(), 1);
  EXPECT_EQ(tok->eosId(), 2);
  EXPECT_TRUE(tok->addsBosByDefault());
  EXPECT_EQ(tok->pieceId("<0x0A>"), 13);
  EXPECT_EQ(tok->pieceId(sp(" Hello")), 15043);
  EXPECT_EQ(tok->tokenType(13), TokenType::Byte);

  EXPECT_EQ(tok->encode("Hello world", true), (Ids{1, 15043, 3186}));
  // "\n" is the prefix space, then the byte token <0x0A>.
  EXPECT_EQ(tok->encode("\n", true), (Ids{1, 29871, 13}));
  EXPECT_EQ(tok->encode("I believe the meaning of life is", true),
            (Ids{1, 306, 4658, 278, 6593, 310, 2834, 338}));
  EXPECT_EQ(tok->encode("Once upon a time, there was a little girl named "
                        "Lily.",
                        true),
            (Ids{1, 9038, 2501, 263, 931, 29892, 727, 471, 263, 2217, 7826,
                 4257, 365, 2354, 29889}));
  EXPECT_EQ(tok->encode("  two  spaces ", true),
            (Ids{1, 259, 1023, 29871, 8162, 29871}));
  EXPECT_EQ(
      tok->encode("na\xC3\xAFve caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC", true),
      (Ids{1, 1055, 30085, 345, 274, 28059, 29871, 30325, 30346}));
  // 🦙 is no piece: its four bytes.
  EXPECT_EQ(tok->encode("\xF0\x9F\xA6\x99", true),
            (Ids{1, 29871, 243, 162, 169, 156}));

  EXPECT_EQ(tok->decodePiece(1, 15043), "Hello");
  EXPECT_EQ(tok->decodePiece(15043, 3186), " world");
  EXPECT_EQ(tok->decodePiece(3186, 13), "\n");
  EXPECT_EQ(tok->decodePiece(3186, 2), "");

  for (const std::string &s : roundTripStrings()) {
    EXPECT_EQ(tok->decode(tok->encode(s, true)), s);
    EXPECT_EQ(tok->decode(tok->encode(s, false)), s);
  }
}

TEST_F(RealSentencePieceTest, TinyStories512) {
  auto tok = load("tok512.bin", 512);
  if (!tok)
    GTEST_SKIP() << "the 512-token tokenizer " << modelPath("tok512.bin")
                 << " is not available";
  EXPECT_EQ(tok->vocabSize(), 512);
  EXPECT_EQ(tok->encode("Once upon a time, there was a little girl named "
                        "Lily.",
                        true),
            (Ids{1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421,
                 395, 317, 426}));
  EXPECT_EQ(
      tok->encode("  two  spaces ", true),
      (Ids{1, 410, 410, 259, 424, 414, 410, 262, 427, 412, 331, 419, 410}));
  EXPECT_EQ(tok->encode("\xF0\x9F\xA6\x99", true),
            (Ids{1, 410, 243, 162, 169, 156}));
  for (const std::string &s : roundTripStrings())
    EXPECT_EQ(tok->decode(tok->encode(s, true)), s);
}

} // namespace
