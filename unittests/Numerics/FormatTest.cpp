//===- FormatTest.cpp - Tests for quantization format helpers -------------===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#include "qlr/Numerics/Format.h"

#include "gtest/gtest.h"

#include <cctype>

using namespace qlr::numerics;

namespace {

QuantFormat makeFormat(Granularity granularity, int64_t axis = 0,
                       int64_t groupSize = 0) {
  QuantFormat fmt;
  fmt.granularity = granularity;
  fmt.axis = axis;
  fmt.groupSize = groupSize;
  return fmt;
}

/// Expects a non-empty, lower-case diagnostic containing \p substring.
void expectError(const std::string &error, const std::string &substring) {
  ASSERT_FALSE(error.empty());
  EXPECT_TRUE(std::islower(static_cast<unsigned char>(error[0]))) << error;
  EXPECT_NE(error.find(substring), std::string::npos) << error;
}

TEST(FormatTest, NumElements) {
  EXPECT_EQ(numElements({}), 1);
  EXPECT_EQ(numElements({7}), 7);
  EXPECT_EQ(numElements({2, 3, 4}), 24);
  EXPECT_EQ(numElements({5, 0, 3}), 0);
}

TEST(FormatTest, IsCodebook) {
  QuantFormat fmt;
  EXPECT_FALSE(isCodebook(fmt));
  fmt.bits = 2;
  fmt.codebook = {-1, 0, 0.5, 1};
  EXPECT_TRUE(isCodebook(fmt));
}

TEST(FormatTest, VerifyFormatAcceptsValidFormats) {
  for (unsigned bits = 2; bits <= 8; ++bits) {
    QuantFormat fmt;
    fmt.bits = bits;
    EXPECT_EQ(verifyFormat(fmt), "");
    fmt.symmetric = false;
    EXPECT_EQ(verifyFormat(fmt), "");
    fmt.symmetric = true;
    fmt.codebook.assign(size_t(1) << bits, 0.0f);
    EXPECT_EQ(verifyFormat(fmt), "");
  }
  EXPECT_EQ(verifyFormat(makeFormat(Granularity::Group, 3, 128)), "");
  EXPECT_EQ(verifyFormat(makeFormat(Granularity::Channel, 1)), "");
}

TEST(FormatTest, VerifyFormatRejectsInvalidFormats) {
  QuantFormat fmt;
  fmt.bits = 1;
  expectError(verifyFormat(fmt), "bits");
  fmt.bits = 9;
  expectError(verifyFormat(fmt), "bits");
  fmt.bits = 0;
  expectError(verifyFormat(fmt), "bits");

  fmt = QuantFormat();
  fmt.bits = 4;
  fmt.codebook.assign(15, 0.0f);
  expectError(verifyFormat(fmt), "codebook");
  fmt.codebook.assign(17, 0.0f);
  expectError(verifyFormat(fmt), "codebook");

  fmt.codebook.assign(16, 0.0f);
  fmt.symmetric = false;
  expectError(verifyFormat(fmt), "symmetric");

  expectError(verifyFormat(makeFormat(Granularity::Group, 0, 0)), "group");
  expectError(verifyFormat(makeFormat(Granularity::Group, 0, -4)), "group");
  expectError(verifyFormat(makeFormat(Granularity::Channel, -1)), "axis");
  expectError(verifyFormat(makeFormat(Granularity::Tensor, -1)), "axis");
}

TEST(FormatTest, VerifyFormatForShape) {
  EXPECT_EQ(verifyFormatForShape(QuantFormat(), {4}), "");
  EXPECT_EQ(verifyFormatForShape(QuantFormat(), {4, 0}), "");
  expectError(verifyFormatForShape(QuantFormat(), {}), "rank");
  expectError(verifyFormatForShape(QuantFormat(), {4, -1}), "dimensions");

  EXPECT_EQ(verifyFormatForShape(makeFormat(Granularity::Channel, 1), {4, 8}),
            "");
  expectError(verifyFormatForShape(makeFormat(Granularity::Channel, 2), {4, 8}),
              "axis");
  EXPECT_EQ(
      verifyFormatForShape(makeFormat(Granularity::Group, 2, 5), {2, 3, 7}),
      "");
  expectError(
      verifyFormatForShape(makeFormat(Granularity::Group, 3, 5), {2, 3, 7}),
      "axis");
  // The axis is irrelevant for per-tensor formats.
  EXPECT_EQ(verifyFormatForShape(makeFormat(Granularity::Tensor, 5), {4, 8}),
            "");
  // Shape-independent errors are reported too.
  QuantFormat bad;
  bad.bits = 12;
  expectError(verifyFormatForShape(bad, {4}), "bits");
}

TEST(FormatTest, ScaleShape) {
  EXPECT_TRUE(scaleShape(QuantFormat(), {4, 8}).empty());
  EXPECT_EQ(scaleShape(makeFormat(Granularity::Channel, 0), {4, 8}),
            (llvm::SmallVector<int64_t>{4}));
  EXPECT_EQ(scaleShape(makeFormat(Granularity::Channel, 1), {4, 8}),
            (llvm::SmallVector<int64_t>{8}));
  EXPECT_EQ(scaleShape(makeFormat(Granularity::Group, 1, 4), {4, 8}),
            (llvm::SmallVector<int64_t>{4, 2}));
  // Partial last group: ceil(10 / 4) = 3.
  EXPECT_EQ(scaleShape(makeFormat(Granularity::Group, 1, 4), {4, 10}),
            (llvm::SmallVector<int64_t>{4, 3}));
  EXPECT_EQ(scaleShape(makeFormat(Granularity::Group, 0, 3), {7, 2, 5}),
            (llvm::SmallVector<int64_t>{3, 2, 5}));
  EXPECT_EQ(scaleShape(makeFormat(Granularity::Group, 0, 64), {7}),
            (llvm::SmallVector<int64_t>{1}));
}

/// Brute-force scale index: unravel the element index into coordinates,
/// divide the axis coordinate by the group size and ravel in the scale shape.
int64_t bruteForceScaleIndex(const QuantFormat &fmt,
                             llvm::ArrayRef<int64_t> shape, int64_t index) {
  llvm::SmallVector<int64_t> coords(shape.size());
  for (size_t d = shape.size(); d-- > 0;) {
    coords[d] = index % shape[d];
    index /= shape[d];
  }
  switch (fmt.granularity) {
  case Granularity::Tensor:
    return 0;
  case Granularity::Channel:
    return coords[fmt.axis];
  case Granularity::Group: {
    coords[fmt.axis] /= fmt.groupSize;
    int64_t result = 0;
    for (size_t d = 0; d < shape.size(); ++d) {
      int64_t extent = shape[d];
      if (int64_t(d) == fmt.axis)
        extent = (extent + fmt.groupSize - 1) / fmt.groupSize;
      result = result * extent + coords[d];
    }
    return result;
  }
  }
  return -1;
}

TEST(FormatTest, ScaleIndexOfMatchesBruteForce) {
  const llvm::SmallVector<int64_t> shapes[] = {{9}, {4, 6}, {3, 5, 7}};
  for (llvm::ArrayRef<int64_t> shape : shapes) {
    for (int64_t axis = 0; axis < int64_t(shape.size()); ++axis) {
      std::vector<QuantFormat> formats = {
          makeFormat(Granularity::Tensor),
          makeFormat(Granularity::Channel, axis),
          makeFormat(Granularity::Group, axis, 1),
          makeFormat(Granularity::Group, axis, 2),
          makeFormat(Granularity::Group, axis, 3),
          makeFormat(Granularity::Group, axis, 100)};
      for (const QuantFormat &fmt : formats) {
        int64_t numScales = numElements(scaleShape(fmt, shape));
        for (int64_t i = 0; i < numElements(shape); ++i) {
          int64_t expected = bruteForceScaleIndex(fmt, shape, i);
          ASSERT_EQ(scaleIndexOf(fmt, shape, i), expected)
              << "rank " << shape.size() << " axis " << axis << " element "
              << i;
          ASSERT_LT(expected, numScales);
        }
        int64_t next = 0;
        forEachScaleIndex(fmt, shape, [&](int64_t i, int64_t scaleIndex) {
          ASSERT_EQ(i, next++);
          ASSERT_EQ(scaleIndex, bruteForceScaleIndex(fmt, shape, i))
              << "rank " << shape.size() << " axis " << axis << " element "
              << i;
        });
        EXPECT_EQ(next, numElements(shape));
      }
    }
  }
}

TEST(FormatTest, ForEachScaleIndexOnEmptyTensor) {
  int64_t calls = 0;
  forEachScaleIndex(makeFormat(Granularity::Group, 1, 2), {3, 0, 4},
                    [&](int64_t, int64_t) { ++calls; });
  forEachScaleIndex(QuantFormat(), {0}, [&](int64_t, int64_t) { ++calls; });
  EXPECT_EQ(calls, 0);
}

TEST(FormatTest, ScaleIndexOfHandWritten) {
  // [2, 5] grouped by 2 along axis 1: groups {0,1}, {2,3}, {4} per row.
  QuantFormat fmt = makeFormat(Granularity::Group, 1, 2);
  const int64_t expected[] = {0, 0, 1, 1, 2, 3, 3, 4, 4, 5};
  for (int64_t i = 0; i < 10; ++i)
    EXPECT_EQ(scaleIndexOf(fmt, {2, 5}, i), expected[i]) << i;
  // Per-channel along axis 0 of [3, 2]: one scale per row.
  QuantFormat channel = makeFormat(Granularity::Channel, 0);
  const int64_t rows[] = {0, 0, 1, 1, 2, 2};
  for (int64_t i = 0; i < 6; ++i)
    EXPECT_EQ(scaleIndexOf(channel, {3, 2}, i), rows[i]) << i;
}

} // namespace
