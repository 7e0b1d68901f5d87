//===- PackingTest.cpp - Tests for bit packing of codes -------------------===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#include "qlr/Numerics/Packing.h"

#include "gtest/gtest.h"

#include <random>

using namespace qlr::numerics;

namespace {

using Bytes = std::vector<uint8_t>;

/// Slow reference packer, written directly from the layout definition: bit
/// i of code j of a row is bit k = j*b + i of the row, which is bit k mod 8
/// of byte k / 8 of that row.
Bytes referencePack(const Bytes &codes, llvm::ArrayRef<int64_t> shape,
                    unsigned bits) {
  int64_t rowLength = shape.back();
  int64_t rows = 1;
  for (int64_t d : shape.drop_back())
    rows *= d;
  int64_t rowBytes = (rowLength * bits + 7) / 8;
  Bytes packed(rows * rowBytes, 0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < rowLength; ++j)
      for (unsigned i = 0; i < bits; ++i)
        if ((codes[r * rowLength + j] >> i) & 1) {
          int64_t k = j * bits + i;
          packed[r * rowBytes + k / 8] |= uint8_t(1u << (k % 8));
        }
  return packed;
}

Bytes randomCodes(std::mt19937 &rng, size_t n, unsigned bits) {
  Bytes codes(n);
  for (uint8_t &c : codes)
    c = uint8_t(rng() & ((1u << bits) - 1));
  return codes;
}

TEST(PackingTest, PackedRowBytesAndShape) {
  EXPECT_EQ(packedRowBytes(0, 4), 0);
  EXPECT_EQ(packedRowBytes(1, 2), 1);
  EXPECT_EQ(packedRowBytes(4, 2), 1);
  EXPECT_EQ(packedRowBytes(5, 2), 2);
  EXPECT_EQ(packedRowBytes(8, 3), 3);
  EXPECT_EQ(packedRowBytes(9, 3), 4);
  EXPECT_EQ(packedRowBytes(3, 5), 2);
  EXPECT_EQ(packedRowBytes(576, 4), 288);
  EXPECT_EQ(packedRowBytes(7, 8), 7);
  EXPECT_EQ(packedShape({10}, 4), (llvm::SmallVector<int64_t>{5}));
  EXPECT_EQ(packedShape({2, 3, 9}, 3), (llvm::SmallVector<int64_t>{2, 3, 4}));
  EXPECT_EQ(packedShape({4, 33}, 7), (llvm::SmallVector<int64_t>{4, 29}));
}

TEST(PackingTest, GoldenBytes) {
  struct Case {
    unsigned bits;
    Bytes codes;
    Bytes expected;
  };
  const Case cases[] = {
      // b=2: byte = c0 | c1<<2 | c2<<4 | c3<<6 = 1 | 8 | 48 | 0 = 0x39; the
      // fifth code starts a new byte, 3 with zero padding.
      {2, {1, 2, 3, 0, 3}, {0x39, 0x03}},
      // b=3: byte0 = c0 | c1<<3 | (c2 & 3)<<6 = 1 | 16 | 192 = 0xd1,
      // byte1 = c2>>2 | c3<<1 | c4<<4 | (c5 & 1)<<7 = 0 | 8 | 80 | 0 = 0x58,
      // byte2 = c5>>1 | c6<<2 | c7<<5 = 3 | 28 | 0 = 0x1f.
      {3, {1, 2, 3, 4, 5, 6, 7, 0}, {0xd1, 0x58, 0x1f}},
      // b=3, 3 codes = 9 bits: byte0 = 7 | 7<<3 | (7 & 3)<<6 = 0xff,
      // byte1 = 7>>2 = 0x01 with 7 zero padding bits.
      {3, {7, 7, 7}, {0xff, 0x01}},
      // b=4: byte = c0 | c1<<4.
      {4, {0x1, 0xa, 0xf, 0x3, 0x7}, {0xa1, 0x3f, 0x07}},
      // b=5: byte0 = 31 | (1 & 7)<<5 = 0x3f,
      // byte1 = 1>>3 | 16<<2 | (5 & 1)<<7 = 0xc0, byte2 = 5>>1 = 0x02.
      {5, {31, 1, 16, 5}, {0x3f, 0xc0, 0x02}},
      // b=6: byte0 = 63 | (0 & 3)<<6 = 0x3f, byte1 = 0>>2 | (1 & 15)<<4 = 0x10,
      // byte2 = 1>>4 | 42<<2 = 0xa8.
      {6, {63, 0, 1, 42}, {0x3f, 0x10, 0xa8}},
      // b=7: byte0 = 0x55 | (0x7f & 1)<<7 = 0xd5, byte1 = 0x7f>>1 | (3 & 3)<<6
      // = 0xff, byte2 = 3>>2 = 0x00.
      {7, {0x55, 0x7f, 3}, {0xd5, 0xff, 0x00}},
      // b=8: byte = c0.
      {8, {0, 255, 17}, {0, 255, 17}},
  };
  for (const Case &c : cases) {
    SCOPED_TRACE("bits " + std::to_string(c.bits));
    Bytes packed(c.expected.size(), 0xee);
    packRow(c.codes, c.bits, packed);
    EXPECT_EQ(packed, c.expected);
    EXPECT_EQ(referencePack(c.codes, {int64_t(c.codes.size())}, c.bits),
              c.expected);
    Bytes unpacked(c.codes.size());
    unpackRow(c.expected, c.bits, unpacked);
    EXPECT_EQ(unpacked, c.codes);
  }
}

TEST(PackingTest, RowsArePackedIndependently) {
  // [2, 3] at b=3: each row of 9 bits takes 2 bytes; row 1 starts at a fresh
  // byte. Row 0 {7, 7, 7} -> {0xff, 0x01}; row 1 {0, 0, 1} puts code 2 at
  // bits 6..8 -> {0x40, 0x00}.
  Bytes codes = {7, 7, 7, 0, 0, 1};
  Bytes expected = {0xff, 0x01, 0x40, 0x00};
  EXPECT_EQ(packCodes(codes, {2, 3}, 3), expected);
  EXPECT_EQ(unpackCodes(expected, {2, 3}, 3), codes);
  EXPECT_FALSE(hasNonZeroPadding(expected, {2, 3}, 3));
}

TEST(PackingTest, RandomRoundTripAgainstReference) {
  std::mt19937 rng(1234);
  const int64_t rowLengths[] = {1, 2, 3, 5, 7, 8, 9, 31, 33, 576};
  for (unsigned bits = 2; bits <= 8; ++bits) {
    for (int64_t n : rowLengths) {
      const llvm::SmallVector<int64_t> shapes[] = {{n}, {3, n}, {2, 3, n}};
      for (llvm::ArrayRef<int64_t> shape : shapes) {
        SCOPED_TRACE("bits " + std::to_string(bits) + " rank " +
                     std::to_string(shape.size()) + " row " +
                     std::to_string(n));
        int64_t count = 1;
        for (int64_t d : shape)
          count *= d;
        Bytes codes = randomCodes(rng, count, bits);
        Bytes packed = packCodes(codes, shape, bits);
        llvm::SmallVector<int64_t> packedDims = packedShape(shape, bits);
        int64_t packedCount = 1;
        for (int64_t d : packedDims)
          packedCount *= d;
        ASSERT_EQ(int64_t(packed.size()), packedCount);
        ASSERT_EQ(packed, referencePack(codes, shape, bits));
        ASSERT_EQ(unpackCodes(packed, shape, bits), codes);
        ASSERT_FALSE(hasNonZeroPadding(packed, shape, bits));
      }
    }
  }
}

TEST(PackingTest, AllCodeValuesAtEveryPosition) {
  // Every code value at every bit offset modulo 8 (positions 0..7).
  for (unsigned bits = 2; bits <= 8; ++bits) {
    for (unsigned value = 0; value < (1u << bits); ++value) {
      for (size_t pos = 0; pos < 8; ++pos) {
        Bytes codes(9, 0);
        codes[pos] = uint8_t(value);
        Bytes packed(packedRowBytes(9, bits));
        packRow(codes, bits, packed);
        ASSERT_EQ(packed, referencePack(codes, {9}, bits));
        Bytes unpacked(9);
        unpackRow(packed, bits, unpacked);
        ASSERT_EQ(unpacked, codes);
      }
    }
  }
}

TEST(PackingTest, PaddingDetectionAndIgnoredOnUnpack) {
  for (unsigned bits = 2; bits <= 8; ++bits) {
    for (int64_t n : {1, 3, 5, 7}) {
      llvm::SmallVector<int64_t> shape = {2, n};
      unsigned usedBits = (n * bits) % 8;
      Bytes codes(2 * n, uint8_t((1u << bits) - 1));
      Bytes packed = packCodes(codes, shape, bits);
      EXPECT_FALSE(hasNonZeroPadding(packed, shape, bits));
      if (usedBits == 0)
        continue;
      // Set the top padding bit of the second row's last byte.
      packed.back() |= 0x80;
      EXPECT_TRUE(hasNonZeroPadding(packed, shape, bits));
      EXPECT_EQ(unpackCodes(packed, shape, bits), codes);
    }
  }
  // No padding exists when rows fill whole bytes.
  EXPECT_FALSE(hasNonZeroPadding({0xff, 0xff}, {2, 2}, 4));
}

TEST(PackingTest, EmptyRows) {
  EXPECT_TRUE(packCodes({}, {3, 0}, 4).empty());
  EXPECT_TRUE(unpackCodes({}, {3, 0}, 4).empty());
  EXPECT_TRUE(packCodes({}, {0, 5}, 3).empty());
  EXPECT_FALSE(hasNonZeroPadding({}, {3, 0}, 5));
}

#ifndef NDEBUG
TEST(PackingDeathTest, CodeTooWide) {
  Bytes codes = {4};
  Bytes out(1);
  EXPECT_DEATH(packRow(codes, 2, out), "does not fit");
}
#endif

} // namespace
