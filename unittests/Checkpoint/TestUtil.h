//===- TestUtil.h - Helpers for the checkpoint reader tests -----*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// Tiny writers for building checkpoint files byte by byte in a temporary
// directory, and shorthands for opening them.
//
//===----------------------------------------------------------------------===//

#ifndef QLR_UNITTESTS_CHECKPOINT_TESTUTIL_H
#define QLR_UNITTESTS_CHECKPOINT_TESTUTIL_H

#include "qlr/Checkpoint/Checkpoint.h"

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/StringRef.h"

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace qlr::checkpoint::test {

/// A fresh directory, removed with its contents on destruction.
class TempDir {
public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir &) = delete;
  TempDir &operator=(const TempDir &) = delete;

  const std::string &root() const { return dir; }
  /// `root()/name`.
  std::string path(llvm::StringRef name) const;

private:
  std::string dir;
};

/// Appends little-endian values to a byte vector.
class ByteWriter {
public:
  ByteWriter &u8(uint8_t v);
  ByteWriter &u16(uint16_t v);
  ByteWriter &u32(uint32_t v);
  ByteWriter &u64(uint64_t v);
  ByteWriter &i32(int32_t v) { return u32(uint32_t(v)); }
  ByteWriter &f32(float v);
  ByteWriter &f32s(llvm::ArrayRef<float> values);
  /// A GGUF string: uint64 length, then the bytes.
  ByteWriter &str(llvm::StringRef s);
  ByteWriter &raw(llvm::ArrayRef<uint8_t> bytes);
  ByteWriter &raw(llvm::StringRef bytes);
  /// Zero bytes up to a multiple of `alignment`.
  ByteWriter &pad(uint64_t alignment);

  size_t size() const { return data.size(); }
  std::vector<uint8_t> &bytes() { return data; }
  const std::vector<uint8_t> &bytes() const { return data; }

private:
  std::vector<uint8_t> data;
};

void writeFile(const std::string &path, llvm::ArrayRef<uint8_t> bytes);
void writeFile(const std::string &path, llvm::StringRef text);

/// Uniform random floats in [-1, 1).
std::vector<float> randomFloats(std::mt19937 &rng, size_t n);

/// Opens `path`; on failure records a test failure and returns null.
std::unique_ptr<Checkpoint> openOrFail(llvm::StringRef path);
/// Opens `path`, which must fail; returns the error message (or records a
/// test failure and returns "" if it opened).
std::string openError(llvm::StringRef path);
/// Reads tensor `name` of `checkpoint`, recording a failure on error.
std::vector<float> readAll(const Checkpoint &checkpoint, llvm::StringRef name);

/// The canonical tensor names for a config, in canonical order.
std::vector<std::string> canonicalNames(int64_t numLayers, bool tied);

} // namespace qlr::checkpoint::test

#endif // QLR_UNITTESTS_CHECKPOINT_TESTUTIL_H
