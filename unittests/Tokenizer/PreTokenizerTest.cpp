//===- PreTokenizerTest.cpp - Tests for the byte-level pre-tokenizers -----===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// The expected splits were derived from the regexes and llama.cpp's
// matchers by hand; the GPT-2, SmolLM and LLaMA-3 cascades were also checked
// against Hugging Face tokenizers' pre-tokenizers on 3000 random strings.
//
//===----------------------------------------------------------------------===//

#include "PreTokenizer.h"
#include "Unicode.h"

#include "gtest/gtest.h"

#include <random>

using namespace qlr::tokenizer;

namespace {

using Chunks = std::vector<std::string>;

Chunks split(llvm::StringRef text, PreTokenizerKind kind) {
  std::vector<uint32_t> cps = unicode::decodeUtf8(text);
  Chunks chunks;
  size_t start = 0;
  for (size_t len : preTokenize(cps, kind)) {
    std::string s;
    for (size_t i = start; i < start + len; ++i)
      unicode::appendUtf8(s, cps[i]);
    chunks.push_back(s);
    start += len;
  }
  EXPECT_EQ(start, cps.size());
  return chunks;
}

TEST(PreTokenizerTest, Names) {
  auto kindOf = [](llvm::StringRef name) {
    std::optional<PreTokenizerInfo> info = lookupPreTokenizer(name);
    EXPECT_TRUE(info.has_value()) << name.str();
    return info ? info->kind : PreTokenizerKind::Default;
  };
  EXPECT_EQ(kindOf("gpt2"), PreTokenizerKind::GPT2);
  EXPECT_EQ(kindOf("gpt-2"), PreTokenizerKind::GPT2);
  EXPECT_EQ(kindOf("smollm"), PreTokenizerKind::DigitsThenGPT2);
  EXPECT_EQ(kindOf("starcoder"), PreTokenizerKind::DigitsThenGPT2);
  EXPECT_EQ(kindOf("llama-bpe"), PreTokenizerKind::Llama3);
  EXPECT_EQ(kindOf("default"), PreTokenizerKind::Default);
  EXPECT_EQ(kindOf(""), PreTokenizerKind::Default);
  EXPECT_TRUE(lookupPreTokenizer("llama-bpe")->ignoreMerges);
  EXPECT_FALSE(lookupPreTokenizer("dbrx")->ignoreMerges);
  EXPECT_FALSE(lookupPreTokenizer("smollm")->ignoreMerges);
  EXPECT_FALSE(lookupPreTokenizer("qwen2").has_value());
  EXPECT_FALSE(lookupPreTokenizer("nonsense").has_value());
}

TEST(PreTokenizerTest, GPT2) {
  auto gpt2 = [](llvm::StringRef s) {
    return split(s, PreTokenizerKind::GPT2);
  };
  EXPECT_EQ(gpt2(""), Chunks{});
  EXPECT_EQ(gpt2("Hello world"), (Chunks{"Hello", " world"}));
  EXPECT_EQ(gpt2("I'm can't we'll they've he'd she's you're"),
            (Chunks{"I", "'m", " can", "'t", " we", "'ll", " they", "'ve",
                    " he", "'d", " she", "'s", " you", "'re"}));
  // Contractions are case-sensitive in GPT-2.
  EXPECT_EQ(gpt2("'S"), (Chunks{"'", "S"}));
  EXPECT_EQ(gpt2("abc 12345 x2y"), (Chunks{"abc", " 12345", " x", "2", "y"}));
  EXPECT_EQ(gpt2("Hello!!! ...world"),
            (Chunks{"Hello", "!!!", " ...", "world"}));
  // \s+(?!\S): a whitespace run before a word leaves its last space to it.
  EXPECT_EQ(gpt2("a   b"), (Chunks{"a", "  ", " b"}));
  EXPECT_EQ(gpt2("a\n\n b"), (Chunks{"a", "\n\n", " b"}));
  EXPECT_EQ(gpt2("a\nb"), (Chunks{"a", "\n", "b"}));
  EXPECT_EQ(gpt2("a   "), (Chunks{"a", "   "}));
  EXPECT_EQ(gpt2("   a"), (Chunks{"  ", " a"}));
  EXPECT_EQ(
      gpt2("na\xC3\xAFve caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC"),
      (Chunks{"na\xC3\xAFve", " caf\xC3\xA9", " \xE6\x97\xA5\xE6\x9C\xAC"}));
  // Emoji are neither letters nor numbers: a punctuation-like run.
  EXPECT_EQ(gpt2("hi \xF0\x9F\x98\x80\xF0\x9F\x98\x80!"),
            (Chunks{"hi", " \xF0\x9F\x98\x80\xF0\x9F\x98\x80!"}));
  // U+00A0 is whitespace, but only an ASCII space joins the next word.
  EXPECT_EQ(gpt2("a\xC2\xA0\xC2\xA0"
                 "b"),
            (Chunks{"a", "\xC2\xA0", "\xC2\xA0", "b"}));
}

TEST(PreTokenizerTest, SmolLMSplitsEveryDigit) {
  auto smol = [](llvm::StringRef s) {
    return split(s, PreTokenizerKind::DigitsThenGPT2);
  };
  EXPECT_EQ(smol("abc 12345 x"),
            (Chunks{"abc", " ", "1", "2", "3", "4", "5", " x"}));
  EXPECT_EQ(smol("I have 3 cats"), (Chunks{"I", " have", " ", "3", " cats"}));
  // Any \p{N} is a digit here, e.g. Arabic-Indic ones and ½.
  EXPECT_EQ(smol("\xD9\xA3\xD9\xA4\xC2\xBD"),
            (Chunks{"\xD9\xA3", "\xD9\xA4", "\xC2\xBD"}));
  EXPECT_EQ(smol("I'm 12345 years old!!  ok\n\n  bye"),
            (Chunks{"I", "'m", " ", "1", "2", "3", "4", "5", " years", " old",
                    "!!", " ", " ok", "\n\n ", " bye"}));
}

TEST(PreTokenizerTest, Llama3) {
  auto llama3 = [](llvm::StringRef s) {
    return split(s, PreTokenizerKind::Llama3);
  };
  EXPECT_EQ(llama3("Hello world"), (Chunks{"Hello", " world"}));
  // Case-insensitive contractions, numbers in groups of three.
  EXPECT_EQ(llama3("I'M 12345 ok"),
            (Chunks{"I", "'M", " ", "123", "45", " ok"}));
  EXPECT_EQ(llama3("hello\n\nworld"), (Chunks{"hello", "\n\n", "world"}));
  // One non-letter, non-digit character may lead a word.
  EXPECT_EQ(llama3("(a)"), (Chunks{"(a", ")"}));
  EXPECT_EQ(llama3("x!!\n\ny"), (Chunks{"x", "!!\n\n", "y"}));
  EXPECT_EQ(llama3("  \n  hi"), (Chunks{"  \n", " ", " hi"}));
  EXPECT_EQ(llama3("a "), (Chunks{"a", " "}));
}

TEST(PreTokenizerTest, DefaultCascade) {
  auto def = [](llvm::StringRef s) {
    return split(s, PreTokenizerKind::Default);
  };
  EXPECT_EQ(def("Hello, world! 12345"),
            (Chunks{"Hello", ",", " world", "!", " ", "123", "45"}));
  EXPECT_EQ(def("a+b=c"), (Chunks{"a", "+", "b", "=", "c"}));
  // '`' is the one ASCII symbol the first stage leaves to the GPT-2 stage.
  EXPECT_EQ(def("`x`"), (Chunks{"`", "x", "`"}));
  EXPECT_EQ(def("1234567"), (Chunks{"123", "456", "7"}));
  // Only ASCII digits form triples.
  EXPECT_EQ(def("\xD9\xA3\xD9\xA4\xD9\xA5\xD9\xA6"),
            (Chunks{"\xD9\xA3\xD9\xA4\xD9\xA5\xD9\xA6"}));
  // Non-ASCII punctuation (U+00BF ¿) is split out first.
  EXPECT_EQ(def("\xC2\xBFqu\xC3\xA9?"),
            (Chunks{"\xC2\xBF", "qu\xC3\xA9", "?"}));
}

TEST(PreTokenizerTest, ChunksCoverTheTextOnRandomInput) {
  const char *pieces[] = {"a",
                          "Z",
                          " ",
                          "  ",
                          "\n",
                          "\r\n",
                          "\t",
                          "'s",
                          "'",
                          "7",
                          "123",
                          "!",
                          "...",
                          "`",
                          "é",
                          "日",
                          "😀",
                          "\xC2\xA0",
                          "\xE3\x80\x80",
                          "\xD9\xA3",
                          "x",
                          "\xCC\x81"};
  std::mt19937 rng(42);
  for (int iter = 0; iter < 500; ++iter) {
    std::string text;
    for (int n = rng() % 12; n > 0; --n)
      text += pieces[rng() % std::size(pieces)];
    std::vector<uint32_t> cps = unicode::decodeUtf8(text);
    for (PreTokenizerKind kind :
         {PreTokenizerKind::GPT2, PreTokenizerKind::DigitsThenGPT2,
          PreTokenizerKind::Llama3, PreTokenizerKind::Default}) {
      size_t total = 0;
      for (size_t len : preTokenize(cps, kind)) {
        EXPECT_GT(len, 0u);
        total += len;
      }
      EXPECT_EQ(total, cps.size()) << text;
    }
  }
}

} // namespace
