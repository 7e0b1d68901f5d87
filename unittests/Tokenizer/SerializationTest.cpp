//===- SerializationTest.cpp - Tests for TokenizerData's binary form ------===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#include "qlr/Tokenizer/Tokenizer.h"
#include "qlr/Tokenizer/TokenizerData.h"

#include "llvm/ADT/bit.h"

#include "gtest/gtest.h"

#include <cmath>
#include <limits>

using namespace qlr::tokenizer;

namespace {

using Bytes = std::vector<uint8_t>;

TokenizerData sampleData() {
  TokenizerData data;
  data.kind = TokenizerKind::ByteLevelBPE;
  data.tokens = {"a", "b", "ab", "", "\xC4\xA0", std::string("\0x", 2)};
  data.scores = {0.5f,          -1.0f,
                 -0.0f,         std::numeric_limits<float>::infinity(),
                 std::nanf(""), -3.25f};
  data.tokenTypes = {1, 1, 1, 3, 4, 6};
  data.merges = {"a b"};
  data.preTokenizer = "smollm";
  data.bosId = 3;
  data.eosId = 4;
  data.unkId = -1;
  data.padId = 5;
  data.addBos = false;
  data.addSpacePrefix = true;
  return data;
}

void expectSame(const TokenizerData &a, const TokenizerData &b) {
  EXPECT_EQ(a.kind, b.kind);
  EXPECT_EQ(a.tokens, b.tokens);
  ASSERT_EQ(a.scores.size(), b.scores.size());
  for (size_t i = 0; i < a.scores.size(); ++i)
    EXPECT_EQ(llvm::bit_cast<uint32_t>(a.scores[i]),
              llvm::bit_cast<uint32_t>(b.scores[i]));
  EXPECT_EQ(a.tokenTypes, b.tokenTypes);
  EXPECT_EQ(a.merges, b.merges);
  EXPECT_EQ(a.preTokenizer, b.preTokenizer);
  EXPECT_EQ(a.bosId, b.bosId);
  EXPECT_EQ(a.eosId, b.eosId);
  EXPECT_EQ(a.unkId, b.unkId);
  EXPECT_EQ(a.padId, b.padId);
  EXPECT_EQ(a.addBos, b.addBos);
  EXPECT_EQ(a.addSpacePrefix, b.addSpacePrefix);
}

TEST(SerializationTest, RoundTrip) {
  TokenizerData data = sampleData();
  Bytes bytes = serialize(data);
  auto back = deserialize(bytes);
  ASSERT_TRUE(bool(back)) << llvm::toString(back.takeError());
  expectSame(data, *back);
  // Deterministic.
  EXPECT_EQ(serialize(*back), bytes);

  TokenizerData empty;
  auto emptyBack = deserialize(serialize(empty));
  ASSERT_TRUE(bool(emptyBack)) << llvm::toString(emptyBack.takeError());
  expectSame(empty, *emptyBack);
}

TEST(SerializationTest, GoldenHeader) {
  TokenizerData data;
  data.kind = TokenizerKind::SentencePieceBPE;
  data.tokens = {"x"};
  data.bosId = 0;
  Bytes bytes = serialize(data);
  Bytes expected = {'Q',  'L',  'R',  'T',  'O', 'K', 1, 0, // magic, version 1
                    0,                                      // SentencePiece
                    3,                                      // addBos|prefix
                    0,    0,    0,    0,                    // bosId 0
                    0xFF, 0xFF, 0xFF, 0xFF,                 // eosId -1
                    0xFF, 0xFF, 0xFF, 0xFF,                 // unkId -1
                    0xFF, 0xFF, 0xFF, 0xFF,                 // padId -1
                    1,    0,    0,    0,    1,   0,   0, 0, 'x', // tokens
                    0,    0,    0,    0,                         // scores
                    0,    0,    0,    0,                         // tokenTypes
                    0,    0,    0,    0,                         // merges
                    0,    0,    0,    0};                        // preTokenizer
  EXPECT_EQ(bytes, expected);
}

TEST(SerializationTest, EveryTruncationFails) {
  Bytes bytes = serialize(sampleData());
  for (size_t n = 0; n < bytes.size(); ++n) {
    auto r = deserialize(llvm::ArrayRef(bytes).take_front(n));
    ASSERT_FALSE(bool(r)) << "prefix of " << n << " bytes parsed";
    std::string msg = llvm::toString(r.takeError());
    EXPECT_NE(msg.find("serialized tokenizer"), std::string::npos) << msg;
  }
}

TEST(SerializationTest, CorruptInputFails) {
  Bytes good = serialize(sampleData());
  auto errorOf = [](const Bytes &b) {
    auto r = deserialize(b);
    return r ? std::string() : llvm::toString(r.takeError());
  };

  Bytes b = good;
  b.push_back(0);
  EXPECT_NE(errorOf(b).find("trailing"), std::string::npos);
  b = good;
  b[0] = 'X';
  EXPECT_NE(errorOf(b).find("magic"), std::string::npos);
  b = good;
  b[6] = 2;
  EXPECT_NE(errorOf(b).find("version 2"), std::string::npos);
  b = good;
  b[8] = 7;
  EXPECT_NE(errorOf(b).find("kind"), std::string::npos);
  b = good;
  b[9] = 0x80;
  EXPECT_NE(errorOf(b).find("flags"), std::string::npos);
  // A huge token count is rejected before anything is allocated.
  b = good;
  b[26] = b[27] = b[28] = b[29] = 0xFF;
  EXPECT_NE(errorOf(b).find("count"), std::string::npos);
  // So is a string length running past the end.
  b = good;
  b[30] = 0xF0;
  EXPECT_FALSE(errorOf(b).empty());

  // Flipping any single byte never crashes (it may still parse).
  for (size_t i = 0; i < good.size(); ++i) {
    b = good;
    b[i] ^= 0xA5;
    llvm::consumeError(deserialize(b).takeError());
  }
}

TEST(SerializationTest, DeserializedTokenizerEncodesTheSame) {
  TokenizerData data;
  data.kind = TokenizerKind::SentencePieceBPE;
  data.tokens = {"<unk>", "<s>", "</s>"};
  for (unsigned b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof(buf), "<0x%02X>", b);
    data.tokens.push_back(buf);
  }
  data.tokens.insert(data.tokens.end(),
                     {"\xE2\x96\x81", "h", "i", "hi", "\xE2\x96\x81hi"});
  data.scores.assign(data.tokens.size(), 0.0f);
  data.scores[262] = -1;
  data.scores[263] = -2;
  data.unkId = 0;
  data.bosId = 1;
  data.eosId = 2;
  auto tok = Tokenizer::create(data);
  ASSERT_TRUE(bool(tok)) << llvm::toString(tok.takeError());
  auto back = deserialize(serialize((*tok)->data()));
  ASSERT_TRUE(bool(back)) << llvm::toString(back.takeError());
  auto tok2 = Tokenizer::create(std::move(*back));
  ASSERT_TRUE(bool(tok2)) << llvm::toString(tok2.takeError());
  for (llvm::StringRef s : {"hi", "hi hi!", "\xC3\xA9h"})
    EXPECT_EQ((*tok)->encode(s, true), (*tok2)->encode(s, true));
  EXPECT_EQ((*tok2)->encode("hi", true), (std::vector<int32_t>{1, 263}));
}

} // namespace
