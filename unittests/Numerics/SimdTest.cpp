//===- SimdTest.cpp - Instruction-set levels and QLR_MAX_SIMD -------------===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#include "qlr/Numerics/Simd.h"

#include "gtest/gtest.h"

#include <algorithm>
#include <cstdlib>

using namespace qlr::numerics;

namespace {

TEST(SimdTest, NamesRoundTrip) {
  for (SimdLevel level :
       {SimdLevel::Portable, SimdLevel::AVX2, SimdLevel::AVX512}) {
    std::optional<SimdLevel> parsed = parseSimdLevel(simdLevelName(level));
    ASSERT_TRUE(parsed.has_value()) << simdLevelName(level).str();
    EXPECT_EQ(*parsed, level);
  }
  EXPECT_EQ(simdLevelCPU(SimdLevel::Portable), "x86-64");
  EXPECT_EQ(simdLevelCPU(SimdLevel::AVX2), "x86-64-v3");
  EXPECT_EQ(simdLevelCPU(SimdLevel::AVX512), "x86-64-v4");
}

TEST(SimdTest, ParsingIsCaseInsensitiveAndRejectsUnknownNames) {
  EXPECT_EQ(parseSimdLevel("AVX2"), SimdLevel::AVX2);
  EXPECT_EQ(parseSimdLevel(" Portable "), SimdLevel::Portable);
  EXPECT_EQ(parseSimdLevel("native"), hostSimdLevel());
  EXPECT_FALSE(parseSimdLevel("sse9").has_value());
  EXPECT_FALSE(parseSimdLevel("").has_value());
  EXPECT_FALSE(parseSimdLevel("avx").has_value());
}

// The level in use is the host's, capped by QLR_MAX_SIMD (scripts/test.sh
// runs this binary once per level the host supports), and by Portable in a
// portable-numerics build when the variable is unset.
TEST(SimdTest, LevelIsTheHostsCappedByTheEnvironment) {
  SimdLevel cap =
      isPortableNumericsBuild() ? SimdLevel::Portable : SimdLevel::AVX512;
  const char *value = std::getenv("QLR_MAX_SIMD");
  if (value && *value) {
    std::optional<SimdLevel> parsed = parseSimdLevel(value);
    ASSERT_TRUE(parsed.has_value()) << value;
    cap = *parsed;
  }
  EXPECT_EQ(simdLevel(), std::min(cap, hostSimdLevel()));
  EXPECT_EQ(detectSimdLevel(), simdLevel());
  std::string line = describeSimd();
  std::string expected = "instruction set " + simdLevelName(simdLevel()).str();
  EXPECT_NE(line.find(expected), std::string::npos) << line;
}

} // namespace
