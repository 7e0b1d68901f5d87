//===- UnicodeTest.cpp - Tests for the tokenizers' Unicode helpers --------===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#include "Unicode.h"

#include "gtest/gtest.h"

#include <set>

using namespace qlr::tokenizer::unicode;

namespace {

using CPs = std::vector<uint32_t>;

TEST(UnicodeTest, CharClasses) {
  EXPECT_EQ(getCharClass('a'), CharClass::Letter);
  EXPECT_EQ(getCharClass('Z'), CharClass::Letter);
  EXPECT_EQ(getCharClass('7'), CharClass::Number);
  EXPECT_EQ(getCharClass(' '), CharClass::Separator);
  EXPECT_EQ(getCharClass('\n'), CharClass::Control);
  EXPECT_EQ(getCharClass('!'), CharClass::Punctuation);
  EXPECT_EQ(getCharClass('_'), CharClass::Punctuation);
  EXPECT_EQ(getCharClass('$'), CharClass::Symbol);
  EXPECT_EQ(getCharClass('`'), CharClass::Symbol);
  EXPECT_EQ(getCharClass(0xE9), CharClass::Letter);     // é
  EXPECT_EQ(getCharClass(0xAA), CharClass::Letter);     // ª (Lo)
  EXPECT_EQ(getCharClass(0x2B0), CharClass::Letter);    // ʰ (Lm)
  EXPECT_EQ(getCharClass(0x1C5), CharClass::Letter);    // ǅ (Lt)
  EXPECT_EQ(getCharClass(0x301), CharClass::Mark);      // combining acute
  EXPECT_EQ(getCharClass(0x4E2D), CharClass::Letter);   // 中
  EXPECT_EQ(getCharClass(0x663), CharClass::Number);    // ٣ (Nd)
  EXPECT_EQ(getCharClass(0x216B), CharClass::Number);   // Ⅻ (Nl)
  EXPECT_EQ(getCharClass(0xBD), CharClass::Number);     // ½ (No)
  EXPECT_EQ(getCharClass(0xA0), CharClass::Separator);  // no-break space
  EXPECT_EQ(getCharClass(0xAD), CharClass::Control);    // soft hyphen (Cf)
  EXPECT_EQ(getCharClass(0x1F600), CharClass::Symbol);  // 😀
  EXPECT_EQ(getCharClass(0x1D518), CharClass::Letter);  // 𝔘
  EXPECT_EQ(getCharClass(0xE000), CharClass::Control);  // private use
  EXPECT_EQ(getCharClass(0xD800), CharClass::Control);  // surrogate
  EXPECT_EQ(getCharClass(0x378), CharClass::Undefined); // unassigned
  EXPECT_EQ(getCharClass(0x110000), CharClass::Undefined);
  EXPECT_EQ(getCharClass(0xFFFFFFFF), CharClass::Undefined);
  // The tables are Unicode 15.1 like llama.cpp's: CJK Extension I (15.1) is
  // assigned, U+1C89 (16.0) is not.
  EXPECT_EQ(getCharClass(0x2EBF0), CharClass::Letter);
  EXPECT_EQ(getCharClass(0x1C89), CharClass::Undefined);
  EXPECT_STREQ(kUnicodeVersion, "15.1.0");
}

TEST(UnicodeTest, Whitespace) {
  for (uint32_t cp :
       {0x9u, 0xAu, 0xBu, 0xCu, 0xDu, 0x20u, 0x85u, 0xA0u, 0x1680u, 0x2000u,
        0x2005u, 0x200Au, 0x2028u, 0x2029u, 0x202Fu, 0x205Fu, 0x3000u})
    EXPECT_TRUE(isWhitespace(cp)) << cp;
  for (uint32_t cp : {0x0u, 0x1Cu, 0x1Fu, uint32_t('a'), 0x200Bu, 0xFEFFu,
                      0x180Eu, 0x1F600u, 0x110000u})
    EXPECT_FALSE(isWhitespace(cp)) << cp;
}

TEST(UnicodeTest, DecodeValidUtf8) {
  EXPECT_EQ(decodeUtf8(""), CPs{});
  EXPECT_EQ(decodeUtf8("a\xC3\xA9\xE4\xB8\xAD\xF0\x9F\x98\x80"),
            (CPs{'a', 0xE9, 0x4E2D, 0x1F600}));
}

TEST(UnicodeTest, DecodeMalformedUtf8LikeLlamaCpp) {
  // A stray continuation byte, a truncated sequence and an impossible lead
  // byte each become U+FFFD and decoding resumes at the next byte.
  EXPECT_EQ(decodeUtf8("\x80"), CPs{kReplacementChar});
  EXPECT_EQ(decodeUtf8("\xC3"), CPs{kReplacementChar});
  EXPECT_EQ(decodeUtf8("\xE2\x82"
                       "a"),
            (CPs{kReplacementChar, kReplacementChar, 'a'}));
  EXPECT_EQ(decodeUtf8("\xF8\x80"), (CPs{kReplacementChar, kReplacementChar}));
  // Like llama.cpp, overlong forms and values above U+10FFFF decode.
  EXPECT_EQ(decodeUtf8(llvm::StringRef("\xC0\x80", 2)), CPs{0});
  EXPECT_EQ(decodeUtf8("\xF4\x90\x80\x80"), CPs{0x110000});
}

TEST(UnicodeTest, EncodeUtf8RoundTrips) {
  for (uint32_t cp :
       {0x0u, 0x7Fu, 0x80u, 0x7FFu, 0x800u, 0xFFFFu, 0x10000u, 0x10FFFFu}) {
    std::string s;
    appendUtf8(s, cp);
    EXPECT_EQ(decodeUtf8(s), CPs{cp}) << cp;
  }
  std::string s;
  appendUtf8(s, 0x110000);
  EXPECT_EQ(s, "\xEF\xBF\xBD");
}

TEST(UnicodeTest, ByteLevelAlphabet) {
  EXPECT_EQ(byteToUnicode(' '), "\xC4\xA0");  // Ġ U+0120
  EXPECT_EQ(byteToUnicode('\n'), "\xC4\x8A"); // Ċ U+010A
  EXPECT_EQ(byteToUnicode(0), "\xC4\x80");    // Ā U+0100
  EXPECT_EQ(byteToUnicode('a'), "a");
  EXPECT_EQ(byteToUnicode(0xFF), "\xC3\xBF"); // ÿ
  EXPECT_EQ(byteToUnicode(0xAD), "\xC5\x83"); // Ń U+0143, the last one
  std::set<std::string> seen;
  for (unsigned b = 0; b < 256; ++b) {
    llvm::StringRef text = byteToUnicode(b);
    CPs cps = decodeUtf8(text);
    ASSERT_EQ(cps.size(), 1u);
    EXPECT_EQ(unicodeToByte(cps[0]), int(b));
    seen.insert(text.str());
  }
  EXPECT_EQ(seen.size(), 256u);
  EXPECT_EQ(unicodeToByte(' '), -1);
  EXPECT_EQ(unicodeToByte(0x4E2D), -1);
}

} // namespace
