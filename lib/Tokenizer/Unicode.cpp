//===- Unicode.cpp - Code point classes and UTF-8 helpers -----------------===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#include "Unicode.h"

#include <algorithm>
#include <array>

using namespace qlr::tokenizer;
using namespace qlr::tokenizer::unicode;

namespace {

/// Bit set in a BmpTable entry for White_Space code points; the low three
/// bits hold the CharClass.
constexpr uint8_t kWhitespaceBit = 0x8;

CharClass lookupClassRange(uint32_t cp) {
  // The entry with the largest first code point <= cp.
  const uint32_t *end = kClassRanges + kNumClassRanges;
  const uint32_t *it = std::upper_bound(kClassRanges, end, (cp << 3) | 7);
  return CharClass(*(it - 1) & 7);
}

/// Class and whitespace bit of every code point of the Basic Multilingual
/// Plane, so that the common case is one load.
struct BmpTable {
  std::array<uint8_t, 0x10000> entries;
  BmpTable() {
    for (size_t r = 0; r < kNumClassRanges; ++r) {
      uint32_t first = kClassRanges[r] >> 3;
      if (first >= entries.size())
        break;
      uint32_t last = r + 1 < kNumClassRanges ? kClassRanges[r + 1] >> 3
                                              : kMaxCodePoint + 1;
      last = std::min<uint32_t>(last, entries.size());
      std::fill(entries.begin() + first, entries.begin() + last,
                uint8_t(kClassRanges[r] & 7));
    }
    for (size_t i = 0; i < kNumWhiteSpace; ++i)
      entries[kWhiteSpace[i]] |= kWhitespaceBit;
  }
};

const BmpTable &getBmpTable() {
  static const BmpTable table;
  return table;
}

struct ByteLevelAlphabet {
  std::array<std::string, 256> byteToText;
  /// Indexed by code point; every mapped code point is below 0x200.
  std::array<int16_t, 0x200> cpToByte;
  ByteLevelAlphabet() {
    cpToByte.fill(-1);
    auto isPrintable = [](unsigned b) {
      return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) ||
             (b >= 0xAE && b <= 0xFF);
    };
    unsigned next = 256;
    for (unsigned b = 0; b < 256; ++b) {
      uint32_t cp = isPrintable(b) ? b : next++;
      appendUtf8(byteToText[b], cp);
      cpToByte[cp] = int16_t(b);
    }
  }
};

const ByteLevelAlphabet &getByteLevelAlphabet() {
  static const ByteLevelAlphabet alphabet;
  return alphabet;
}

} // namespace

CharClass qlr::tokenizer::unicode::getCharClass(uint32_t cp) {
  if (cp < 0x10000)
    return CharClass(getBmpTable().entries[cp] & 7);
  if (cp > kMaxCodePoint)
    return CharClass::Undefined;
  return lookupClassRange(cp);
}

bool qlr::tokenizer::unicode::isWhitespace(uint32_t cp) {
  return cp < 0x10000 && (getBmpTable().entries[cp] & kWhitespaceBit);
}

std::vector<uint32_t>
qlr::tokenizer::unicode::decodeUtf8(llvm::StringRef text) {
  std::vector<uint32_t> cps;
  cps.reserve(text.size());
  const auto *s = reinterpret_cast<const uint8_t *>(text.data());
  size_t n = text.size();
  auto isCont = [&](size_t i) { return i < n && (s[i] & 0xC0) == 0x80; };
  size_t i = 0;
  while (i < n) {
    uint8_t c = s[i];
    if (!(c & 0x80)) {
      cps.push_back(c);
      i += 1;
    } else if (!(c & 0x40)) {
      cps.push_back(kReplacementChar);
      i += 1;
    } else if (!(c & 0x20)) {
      if (isCont(i + 1)) {
        cps.push_back(uint32_t(c & 0x1F) << 6 | (s[i + 1] & 0x3F));
        i += 2;
      } else {
        cps.push_back(kReplacementChar);
        i += 1;
      }
    } else if (!(c & 0x10)) {
      if (isCont(i + 1) && isCont(i + 2)) {
        cps.push_back(uint32_t(c & 0x0F) << 12 |
                      uint32_t(s[i + 1] & 0x3F) << 6 | (s[i + 2] & 0x3F));
        i += 3;
      } else {
        cps.push_back(kReplacementChar);
        i += 1;
      }
    } else if (!(c & 0x08)) {
      if (isCont(i + 1) && isCont(i + 2) && isCont(i + 3)) {
        cps.push_back(uint32_t(c & 0x07) << 18 |
                      uint32_t(s[i + 1] & 0x3F) << 12 |
                      uint32_t(s[i + 2] & 0x3F) << 6 | (s[i + 3] & 0x3F));
        i += 4;
      } else {
        cps.push_back(kReplacementChar);
        i += 1;
      }
    } else {
      cps.push_back(kReplacementChar);
      i += 1;
    }
  }
  return cps;
}

void qlr::tokenizer::unicode::appendUtf8(std::string &out, uint32_t cp) {
  if (cp > kMaxCodePoint)
    cp = kReplacementChar;
  if (cp < 0x80) {
    out.push_back(char(cp));
  } else if (cp < 0x800) {
    out.push_back(char(0xC0 | (cp >> 6)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(char(0xE0 | (cp >> 12)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(char(0xF0 | (cp >> 18)));
    out.push_back(char(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  }
}

llvm::StringRef qlr::tokenizer::unicode::byteToUnicode(uint8_t b) {
  return getByteLevelAlphabet().byteToText[b];
}

int qlr::tokenizer::unicode::unicodeToByte(uint32_t cp) {
  const auto &map = getByteLevelAlphabet().cpToByte;
  return cp < map.size() ? map[cp] : -1;
}
