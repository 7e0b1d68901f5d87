//===- ByteLevelBPETest.cpp - Tests for the byte-level BPE tokenizer ------===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// A hand-made vocabulary with ids derived by hand, and (when
// QLR_SMOLLM2_TOKENIZER_JSON names SmolLM2's tokenizer.json) the real
// SmolLM2 vocabulary against ids from Hugging Face tokenizers. With
// QLR_SMOLLM2_REFERENCE=<prefix>, <prefix>.txt is encoded and compared with
// the space-separated ids in <prefix>.ids.
//
//===----------------------------------------------------------------------===//

#include "qlr/Tokenizer/Tokenizer.h"

#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/MemoryBuffer.h"

#include "gtest/gtest.h"

#include <cstdlib>
#include <random>

using namespace qlr::tokenizer;

namespace {

using Ids = std::vector<int32_t>;

/// The GPT-2 alphabet's text for a string's bytes (space -> "Ġ").
std::string bl(llvm::StringRef s) {
  // Bytes that stand for themselves; the rest map to U+0100 + n in order.
  auto printable = [](unsigned b) {
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) ||
           (b >= 0xAE && b <= 0xFF);
  };
  std::string out;
  for (unsigned char c : s) {
    unsigned cp = c;
    if (!printable(c)) {
      cp = 0x100;
      for (unsigned b = 0; b < c; ++b)
        cp += !printable(b);
    }
    if (cp < 0x80) {
      out += char(cp);
    } else {
      out += char(0xC0 | (cp >> 6));
      out += char(0x80 | (cp & 0x3F));
    }
  }
  return out;
}

/// Ids 0..255: the byte b's single-character piece at id b. Then
///   256 Ġt   257 he   258 Ġthe   259 ll   260 hell   261 hello
///   262 <|endoftext|> (control; BOS and EOS)   263 <|im_start|> (control)
///   264 <tool> (user-defined)
/// with merges, in rank order: "Ġ t", "h e", "Ġt he", "l l", "he ll",
/// "hell o".
TokenizerData toyData(llvm::StringRef pre = "gpt2") {
  TokenizerData data;
  data.kind = TokenizerKind::ByteLevelBPE;
  for (unsigned b = 0; b < 256; ++b) {
    char c = char(b);
    data.tokens.push_back(bl(llvm::StringRef(&c, 1)));
  }
  for (const char *piece : {"Ġt", "he", "Ġthe", "ll", "hell", "hello",
                            "<|endoftext|>", "<|im_start|>", "<tool>"})
    data.tokens.push_back(piece);
  data.merges = {"Ġ t", "h e", "Ġt he", "l l", "he ll", "hell o"};
  data.tokenTypes.assign(data.tokens.size(), TokenType::Normal);
  data.tokenTypes[262] = data.tokenTypes[263] = TokenType::Control;
  data.tokenTypes[264] = TokenType::UserDefined;
  data.bosId = data.eosId = 262;
  data.addBos = false;
  data.addSpacePrefix = false;
  data.preTokenizer = pre.str();
  return data;
}

std::unique_ptr<Tokenizer> makeTokenizer(TokenizerData data) {
  auto tok = Tokenizer::create(std::move(data));
  EXPECT_TRUE(bool(tok)) << llvm::toString(tok.takeError());
  return tok ? std::move(*tok) : nullptr;
}

Ids bytesOf(llvm::StringRef s) {
  Ids ids;
  for (unsigned char c : s)
    ids.push_back(c);
  return ids;
}

TEST(ByteLevelBPETest, Alphabet) {
  EXPECT_EQ(bl(" "), "\xC4\xA0");
  EXPECT_EQ(bl("\n"), "\xC4\x8A");
  EXPECT_EQ(bl("a b"), "a\xC4\xA0"
                       "b");
}

TEST(ByteLevelBPETest, MergesByRank) {
  auto tok = makeTokenizer(toyData());
  ASSERT_TRUE(tok);
  EXPECT_FALSE(tok->addsBosByDefault());
  // "hello": he (1), ll (3), hell (4), hello (5); " the": Ġt (0), he (1),
  // Ġthe (2).
  EXPECT_EQ(tok->encode("hello the", false), (Ids{261, 258}));
  EXPECT_EQ(tok->encode("hello the", true), (Ids{262, 261, 258}));
  // "lll": both "l l" pairs rank 3; the leftmost merges.
  EXPECT_EQ(tok->encode("lll", false), (Ids{259, 'l'}));
  // Merges stay within pre-tokenizer chunks: "he" + "llo" are split by the
  // space in "he llo".
  EXPECT_EQ(tok->encode("he llo", false), (Ids{257, ' ', 259, 'o'}));
  // Unmerged bytes, including each byte of a multi-byte character.
  EXPECT_EQ(tok->encode("x\xC3\xA9", false), bytesOf("x\xC3\xA9"));
  EXPECT_EQ(tok->encode("", false), Ids{});
}

TEST(ByteLevelBPETest, SpecialTokens) {
  auto tok = makeTokenizer(toyData());
  ASSERT_TRUE(tok);
  // Control tokens are text unless parseSpecial.
  EXPECT_EQ(tok->encode("a<|im_start|>b", false), bytesOf("a<|im_start|>b"));
  EXPECT_EQ(tok->encode("a<|im_start|>b", false, /*parseSpecial=*/true),
            (Ids{'a', 263, 'b'}));
  // The longer of two overlapping special tokens wins.
  EXPECT_EQ(tok->encode("<|endoftext|><|im_start|>", false, true),
            (Ids{262, 263}));
  // User-defined tokens are always matched.
  EXPECT_EQ(tok->encode("x<tool>y", false), (Ids{'x', 264, 'y'}));
  EXPECT_EQ(tok->decode({'x', 264, 'y'}), "x<tool>y");
  EXPECT_EQ(tok->decode({262, 261, 263, 258}), "hello the");
}

TEST(ByteLevelBPETest, Decode) {
  auto tok = makeTokenizer(toyData());
  ASSERT_TRUE(tok);
  EXPECT_EQ(tok->decodePiece(-1, 258), " the");
  EXPECT_EQ(tok->decodePiece(262, 258), " the"); // no space stripping
  EXPECT_EQ(tok->decodePiece(0, 0xC3), "\xC3");
  EXPECT_EQ(tok->decodePiece(0, 262), "");
  EXPECT_EQ(tok->decodePiece(0, 265), "");
}

TEST(ByteLevelBPETest, RoundTrip) {
  auto tok = makeTokenizer(toyData());
  ASSERT_TRUE(tok);
  const char *pieces[] = {"hello",
                          " the",
                          " ",
                          "  ",
                          "\n",
                          "\r\n",
                          "\t",
                          "lll",
                          "I'm",
                          "42",
                          "!?",
                          "...",
                          "\xC3\xA9",
                          "\xE6\x97\xA5\xE6\x9C\xAC",
                          "\xF0\x9F\x98\x80",
                          "\xC2\xA0",
                          "'s",
                          "`"};
  std::mt19937 rng(1);
  for (int i = 0; i < 300; ++i) {
    std::string s;
    for (int n = rng() % 14; n > 0; --n)
      s += pieces[rng() % std::size(pieces)];
    for (llvm::StringRef pre : {"gpt2", "smollm", "llama-bpe", "default"}) {
      auto t = makeTokenizer(toyData(pre));
      ASSERT_TRUE(t);
      EXPECT_EQ(t->decode(t->encode(s, true)), s) << pre.str();
    }
  }
}

TEST(ByteLevelBPETest, Validation) {
  auto errorOf = [](TokenizerData data) {
    auto tok = Tokenizer::create(std::move(data));
    return tok ? std::string() : llvm::toString(tok.takeError());
  };
  TokenizerData d = toyData();
  d.merges.push_back("hello");
  EXPECT_NE(errorOf(d).find("not of the form"), std::string::npos);
  d = toyData();
  d.merges.push_back("t h");
  EXPECT_NE(errorOf(d).find("\"th\", which is not a token"), std::string::npos);
  d = toyData();
  d.merges.push_back("q z");
  EXPECT_NE(errorOf(d).find("not a token"), std::string::npos);
  d = toyData("qwen2");
  EXPECT_NE(errorOf(d).find("pre-tokenizer \"qwen2\""), std::string::npos);
  d = toyData();
  d.tokenTypes.pop_back();
  EXPECT_NE(errorOf(d).find("token types"), std::string::npos);
  // Repeated merges are fine (the first rank counts).
  d = toyData();
  d.merges.push_back("h e");
  EXPECT_EQ(errorOf(d), "");
}

TEST(ByteLevelBPETest, LlamaBpeIgnoresMergesForWholePieces) {
  // With ignore_merges a chunk that is a piece is emitted whole even if no
  // merge path reaches it.
  TokenizerData d = toyData("llama-bpe");
  d.tokens.push_back("xyz");
  d.tokenTypes.push_back(TokenType::Normal);
  auto tok = makeTokenizer(d);
  ASSERT_TRUE(tok);
  EXPECT_EQ(tok->encode("xyz", false), (Ids{265}));
  d.preTokenizer = "gpt2";
  auto tok2 = makeTokenizer(d);
  ASSERT_TRUE(tok2);
  EXPECT_EQ(tok2->encode("xyz", false), bytesOf("xyz"));
}

//===----------------------------------------------------------------------===//
// SmolLM2
//===----------------------------------------------------------------------===//

TEST(SmolLM2Test, MatchesHuggingFaceTokenizers) {
  const char *path = std::getenv("QLR_SMOLLM2_TOKENIZER_JSON");
  if (!path)
    GTEST_SKIP() << "set QLR_SMOLLM2_TOKENIZER_JSON to SmolLM2's "
                    "tokenizer.json to run";
  auto data = loadTokenizerFile(path, 49152);
  ASSERT_TRUE(bool(data)) << llvm::toString(data.takeError());
  EXPECT_EQ(data->preTokenizer, "smollm");
  auto tok = makeTokenizer(std::move(*data));
  ASSERT_TRUE(tok);
  EXPECT_EQ(tok->vocabSize(), 49152);

  // Ids from Hugging Face tokenizers (encode(s, add_special_tokens=False)).
  EXPECT_EQ(tok->encode("Hello world", false), (Ids{19556, 905}));
  EXPECT_EQ(tok->encode("I'm 12345 years old!!  ok\n\n  bye", false),
            (Ids{57, 5248, 216, 33, 34, 35, 36, 37, 929, 1573, 10095, 216,
                 10907, 8866, 411, 85}));
  EXPECT_EQ(tok->encode("<|im_start|>user\nHi!<|im_end|>\n", false,
                        /*parseSpecial=*/true),
            (Ids{1, 4093, 198, 26843, 17, 2, 198}));
  EXPECT_EQ(tok->encode("na\xC3\xAFve caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC"
                        "\xE8\xAA\x9E \xF0\x9F\x98\x80",
                        false),
            (Ids{3546, 46494, 37366, 17097, 241, 115, 40993, 179, 120, 248,
                 40303, 218}));
  EXPECT_EQ(tok->encode("  leading and trailing  ", false),
            (Ids{216, 2899, 284, 35079, 256}));
  EXPECT_EQ(tok->encode("Once upon a time, there was a little girl named "
                        "Lily. She was 3 years old.",
                        false),
            (Ids{6403, 1980,  253, 655,  28,  665, 436, 253, 1838, 8180,
                 3365, 14176, 30,  2306, 436, 216, 35,  929, 1573, 30}));

  const char *reference = std::getenv("QLR_SMOLLM2_REFERENCE");
  if (!reference)
    return;
  auto text = llvm::MemoryBuffer::getFile(std::string(reference) + ".txt");
  auto idsText = llvm::MemoryBuffer::getFile(std::string(reference) + ".ids");
  ASSERT_TRUE(text && idsText) << "cannot read " << reference << ".txt/.ids";
  Ids expected;
  llvm::SmallVector<llvm::StringRef> fields;
  llvm::SplitString((*idsText)->getBuffer(), fields);
  for (llvm::StringRef f : fields)
    expected.push_back(std::stoi(f.str()));
  Ids ids = tok->encode((*text)->getBuffer(), false);
  ASSERT_EQ(ids.size(), expected.size());
  size_t mismatches = 0;
  for (size_t i = 0; i < ids.size(); ++i)
    mismatches += ids[i] != expected[i];
  EXPECT_EQ(mismatches, 0u);
  EXPECT_EQ(tok->decode(ids), (*text)->getBuffer());
}

} // namespace
