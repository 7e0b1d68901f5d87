//===- TestUtil.cpp - Helpers for the checkpoint reader tests -------------===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#include "TestUtil.h"

#include "llvm/ADT/SmallString.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/raw_ostream.h"

#include "gtest/gtest.h"

#include <cstring>

using namespace llvm;
using namespace qlr::checkpoint;
using namespace qlr::checkpoint::test;

TempDir::TempDir() {
  SmallString<128> created;
  std::error_code ec =
      sys::fs::createUniqueDirectory("qlr-checkpoint-test", created);
  EXPECT_FALSE(ec) << "cannot create a temporary directory: " << ec.message();
  dir = created.str().str();
}

TempDir::~TempDir() { sys::fs::remove_directories(dir); }

std::string TempDir::path(StringRef name) const {
  SmallString<128> result(dir);
  sys::path::append(result, name);
  return result.str().str();
}

ByteWriter &ByteWriter::u8(uint8_t v) {
  data.push_back(v);
  return *this;
}

ByteWriter &ByteWriter::u16(uint16_t v) {
  for (unsigned i = 0; i < 2; ++i)
    data.push_back(uint8_t(v >> (8 * i)));
  return *this;
}

ByteWriter &ByteWriter::u32(uint32_t v) {
  for (unsigned i = 0; i < 4; ++i)
    data.push_back(uint8_t(v >> (8 * i)));
  return *this;
}

ByteWriter &ByteWriter::u64(uint64_t v) {
  for (unsigned i = 0; i < 8; ++i)
    data.push_back(uint8_t(v >> (8 * i)));
  return *this;
}

ByteWriter &ByteWriter::f32(float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, 4);
  return u32(bits);
}

ByteWriter &ByteWriter::f32s(ArrayRef<float> values) {
  for (float v : values)
    f32(v);
  return *this;
}

ByteWriter &ByteWriter::str(StringRef s) {
  u64(s.size());
  return raw(s);
}

ByteWriter &ByteWriter::raw(ArrayRef<uint8_t> bytes) {
  data.insert(data.end(), bytes.begin(), bytes.end());
  return *this;
}

ByteWriter &ByteWriter::raw(StringRef bytes) {
  data.insert(data.end(), bytes.begin(), bytes.end());
  return *this;
}

ByteWriter &ByteWriter::pad(uint64_t alignment) {
  while (data.size() % alignment)
    data.push_back(0);
  return *this;
}

void qlr::checkpoint::test::writeFile(const std::string &path,
                                      ArrayRef<uint8_t> bytes) {
  writeFile(path, StringRef(reinterpret_cast<const char *>(bytes.data()),
                            bytes.size()));
}

void qlr::checkpoint::test::writeFile(const std::string &path, StringRef text) {
  std::error_code ec;
  raw_fd_ostream os(path, ec);
  ASSERT_FALSE(ec) << "cannot write " << path << ": " << ec.message();
  os << text;
}

std::vector<float> qlr::checkpoint::test::randomFloats(std::mt19937 &rng,
                                                       size_t n) {
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> values(n);
  for (float &v : values)
    v = dist(rng);
  return values;
}

std::unique_ptr<Checkpoint> qlr::checkpoint::test::openOrFail(StringRef path) {
  Expected<std::unique_ptr<Checkpoint>> checkpoint = openCheckpoint(path);
  if (!checkpoint) {
    ADD_FAILURE() << "cannot open " << path.str() << ": "
                  << toString(checkpoint.takeError());
    return nullptr;
  }
  return std::move(*checkpoint);
}

std::string qlr::checkpoint::test::openError(StringRef path) {
  Expected<std::unique_ptr<Checkpoint>> checkpoint = openCheckpoint(path);
  if (checkpoint) {
    ADD_FAILURE() << path.str() << " opened, but an error was expected";
    return "";
  }
  return toString(checkpoint.takeError());
}

std::vector<float> qlr::checkpoint::test::readAll(const Checkpoint &checkpoint,
                                                  StringRef name) {
  const TensorInfo *info = checkpoint.findTensor(name);
  if (!info) {
    ADD_FAILURE() << "no tensor " << name.str();
    return {};
  }
  size_t n = 1;
  for (int64_t d : info->shape)
    n *= d;
  std::vector<float> values(n);
  if (Error e = checkpoint.readTensor(name, values))
    ADD_FAILURE() << "reading " << name.str() << ": " << toString(std::move(e));
  return values;
}

std::vector<std::string>
qlr::checkpoint::test::canonicalNames(int64_t numLayers, bool tied) {
  std::vector<std::string> names = {"tok_embeddings"};
  for (int64_t l = 0; l < numLayers; ++l)
    for (const char *suffix :
         {"attention_norm", "attention.wq", "attention.wk", "attention.wv",
          "attention.wo", "ffn_norm", "feed_forward.w1", "feed_forward.w2",
          "feed_forward.w3"})
      names.push_back("layers." + std::to_string(l) + "." + suffix);
  names.push_back("norm");
  if (!tied)
    names.push_back("output");
  return names;
}
