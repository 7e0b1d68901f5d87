//===- Serialization.cpp - Binary encoding of TokenizerData ---------------===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#include "qlr/Tokenizer/TokenizerData.h"

#include "llvm/ADT/bit.h"
#include "llvm/Support/Endian.h"

#include <cassert>
#include <cstring>
#include <limits>

using namespace qlr::tokenizer;

namespace {

constexpr char kMagic[6] = {'Q', 'L', 'R', 'T', 'O', 'K'};
constexpr uint16_t kVersion = 1;

enum : uint8_t { kFlagAddBos = 1, kFlagAddSpacePrefix = 2 };

class Writer {
public:
  void bytes(const void *p, size_t n) {
    const auto *b = static_cast<const uint8_t *>(p);
    out.insert(out.end(), b, b + n);
  }
  void u8(uint8_t v) { out.push_back(v); }
  void u16(uint16_t v) {
    uint8_t b[2];
    llvm::support::endian::write16le(b, v);
    bytes(b, 2);
  }
  void u32(uint32_t v) {
    uint8_t b[4];
    llvm::support::endian::write32le(b, v);
    bytes(b, 4);
  }
  void i32(int32_t v) { u32(uint32_t(v)); }
  void f32(float v) { u32(llvm::bit_cast<uint32_t>(v)); }
  void count(size_t n) {
    assert(n <= std::numeric_limits<uint32_t>::max() && "too many entries");
    u32(uint32_t(n));
  }
  void str(const std::string &s) {
    count(s.size());
    bytes(s.data(), s.size());
  }

  std::vector<uint8_t> out;
};

class Reader {
public:
  explicit Reader(llvm::ArrayRef<uint8_t> bytes) : data(bytes) {}

  size_t remaining() const { return data.size() - pos; }

  llvm::Error need(size_t n, llvm::StringRef what) {
    if (n > remaining())
      return llvm::createStringError(
          "serialized tokenizer: truncated at offset %zu reading %s (need "
          "%zu bytes, %zu left)",
          pos, what.str().c_str(), n, remaining());
    return llvm::Error::success();
  }
  llvm::Error u8(uint8_t &v, llvm::StringRef what) {
    if (auto err = need(1, what))
      return err;
    v = data[pos++];
    return llvm::Error::success();
  }
  llvm::Error u16(uint16_t &v, llvm::StringRef what) {
    if (auto err = need(2, what))
      return err;
    v = llvm::support::endian::read16le(data.data() + pos);
    pos += 2;
    return llvm::Error::success();
  }
  llvm::Error u32(uint32_t &v, llvm::StringRef what) {
    if (auto err = need(4, what))
      return err;
    v = llvm::support::endian::read32le(data.data() + pos);
    pos += 4;
    return llvm::Error::success();
  }
  llvm::Error i32(int32_t &v, llvm::StringRef what) {
    uint32_t u;
    if (auto err = u32(u, what))
      return err;
    v = int32_t(u);
    return llvm::Error::success();
  }
  /// An entry count, checked against the bytes left (each entry takes at
  /// least `minEntrySize`) before anything is allocated for it.
  llvm::Error count(uint32_t &n, size_t minEntrySize, llvm::StringRef what) {
    if (auto err = u32(n, what))
      return err;
    if (uint64_t(n) * minEntrySize > remaining())
      return llvm::createStringError(
          "serialized tokenizer: %s count %u at offset %zu exceeds the %zu "
          "bytes left",
          what.str().c_str(), n, pos - 4, remaining());
    return llvm::Error::success();
  }
  llvm::Error str(std::string &s, llvm::StringRef what) {
    uint32_t n;
    if (auto err = count(n, 1, what))
      return err;
    s.assign(reinterpret_cast<const char *>(data.data() + pos), n);
    pos += n;
    return llvm::Error::success();
  }
  llvm::Error strings(std::vector<std::string> &v, llvm::StringRef what) {
    uint32_t n;
    if (auto err = count(n, 4, what))
      return err;
    v.resize(n);
    for (std::string &s : v)
      if (auto err = str(s, what))
        return err;
    return llvm::Error::success();
  }

  llvm::ArrayRef<uint8_t> data;
  size_t pos = 0;
};

} // namespace

std::vector<uint8_t> qlr::tokenizer::serialize(const TokenizerData &data) {
  Writer w;
  w.bytes(kMagic, sizeof(kMagic));
  w.u16(kVersion);
  w.u8(uint8_t(data.kind));
  w.u8((data.addBos ? kFlagAddBos : 0) |
       (data.addSpacePrefix ? kFlagAddSpacePrefix : 0));
  w.i32(data.bosId);
  w.i32(data.eosId);
  w.i32(data.unkId);
  w.i32(data.padId);
  w.count(data.tokens.size());
  for (const std::string &t : data.tokens)
    w.str(t);
  w.count(data.scores.size());
  for (float s : data.scores)
    w.f32(s);
  w.count(data.tokenTypes.size());
  for (int32_t t : data.tokenTypes)
    w.i32(t);
  w.count(data.merges.size());
  for (const std::string &m : data.merges)
    w.str(m);
  w.str(data.preTokenizer);
  return std::move(w.out);
}

llvm::Expected<TokenizerData>
qlr::tokenizer::deserialize(llvm::ArrayRef<uint8_t> bytes) {
  Reader r(bytes);
  TokenizerData data;

  if (auto err = r.need(sizeof(kMagic), "the magic"))
    return std::move(err);
  if (std::memcmp(bytes.data(), kMagic, sizeof(kMagic)) != 0)
    return llvm::createStringError(
        "serialized tokenizer: bad magic (expected \"QLRTOK\")");
  r.pos += sizeof(kMagic);
  uint16_t version;
  if (auto err = r.u16(version, "the version"))
    return std::move(err);
  if (version != kVersion)
    return llvm::createStringError(
        "serialized tokenizer: unsupported version %u (expected %u)",
        unsigned(version), unsigned(kVersion));

  uint8_t kind, flags;
  if (auto err = r.u8(kind, "the kind"))
    return std::move(err);
  if (kind > uint8_t(TokenizerKind::ByteLevelBPE))
    return llvm::createStringError("serialized tokenizer: unknown kind %u",
                                   unsigned(kind));
  data.kind = TokenizerKind(kind);
  if (auto err = r.u8(flags, "the flags"))
    return std::move(err);
  if (flags & ~(kFlagAddBos | kFlagAddSpacePrefix))
    return llvm::createStringError("serialized tokenizer: unknown flags 0x%x",
                                   unsigned(flags));
  data.addBos = flags & kFlagAddBos;
  data.addSpacePrefix = flags & kFlagAddSpacePrefix;

  for (auto [id, name] :
       {std::pair{&data.bosId, "bosId"}, std::pair{&data.eosId, "eosId"},
        std::pair{&data.unkId, "unkId"}, std::pair{&data.padId, "padId"}})
    if (auto err = r.i32(*id, name))
      return std::move(err);

  if (auto err = r.strings(data.tokens, "tokens"))
    return std::move(err);

  uint32_t n;
  if (auto err = r.count(n, 4, "scores"))
    return std::move(err);
  data.scores.resize(n);
  for (float &s : data.scores) {
    uint32_t bits;
    if (auto err = r.u32(bits, "scores"))
      return std::move(err);
    s = llvm::bit_cast<float>(bits);
  }

  if (auto err = r.count(n, 4, "tokenTypes"))
    return std::move(err);
  data.tokenTypes.resize(n);
  for (int32_t &t : data.tokenTypes)
    if (auto err = r.i32(t, "tokenTypes"))
      return std::move(err);

  if (auto err = r.strings(data.merges, "merges"))
    return std::move(err);
  if (auto err = r.str(data.preTokenizer, "preTokenizer"))
    return std::move(err);

  if (r.remaining() != 0)
    return llvm::createStringError(
        "serialized tokenizer: %zu trailing bytes after offset %zu",
        r.remaining(), r.pos);
  return data;
}
