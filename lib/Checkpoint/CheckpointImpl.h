//===- CheckpointImpl.h - Shared checkpoint reader pieces -------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// Private to lib/Checkpoint. Every reader parses its format into a
// MappedCheckpoint: the model config, the canonical tensor list, and for each
// tensor where its bytes lie in one of the memory-mapped files. Reading a
// tensor then only dequantizes those bytes.
//
//===----------------------------------------------------------------------===//

#ifndef QLR_LIB_CHECKPOINT_CHECKPOINTIMPL_H
#define QLR_LIB_CHECKPOINT_CHECKPOINTIMPL_H

#include "qlr/Checkpoint/Checkpoint.h"

#include "llvm/ADT/STLFunctionalExtras.h"
#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/Twine.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

namespace qlr::checkpoint::detail {

//===----------------------------------------------------------------------===//
// Errors
//===----------------------------------------------------------------------===//

/// Returns the error "<file>: <message>".
llvm::Error fileError(llvm::StringRef file, const llvm::Twine &message);

/// Formats a floating-point value as printf's "%g" does.
std::string formatNumber(double value);

/// Formats a shape as "[a, b, c]".
std::string formatShape(llvm::ArrayRef<int64_t> shape);

//===----------------------------------------------------------------------===//
// Memory-mapped files and bounds-checked reading
//===----------------------------------------------------------------------===//

/// A read-only view of a whole file, memory-mapped by the operating system
/// (small files may be read into memory instead).
class MappedFile {
public:
  /// Opens `path`; the error names the file and the system's reason.
  static llvm::Expected<std::unique_ptr<MappedFile>> open(llvm::StringRef path);

  llvm::StringRef path() const { return filePath; }
  llvm::ArrayRef<uint8_t> bytes() const {
    return {reinterpret_cast<const uint8_t *>(buffer->getBufferStart()),
            buffer->getBufferSize()};
  }
  uint64_t size() const { return buffer->getBufferSize(); }

private:
  MappedFile(std::string path, std::unique_ptr<llvm::MemoryBuffer> buffer)
      : filePath(std::move(path)), buffer(std::move(buffer)) {}

  std::string filePath;
  std::unique_ptr<llvm::MemoryBuffer> buffer;
};

/// A little-endian cursor over a byte range that never reads past its end:
/// every read either succeeds or returns an error naming the file, what was
/// being read, the offset and the file size.
class ByteReader {
public:
  ByteReader(llvm::StringRef file, llvm::ArrayRef<uint8_t> data,
             uint64_t offset = 0)
      : file(file), data(data), pos(offset) {}

  uint64_t offset() const { return pos; }
  uint64_t remaining() const {
    return pos <= data.size() ? data.size() - pos : 0;
  }
  llvm::StringRef fileName() const { return file; }

  /// Moves to `offset`, which must be at most the size of the data.
  llvm::Error seek(uint64_t offset, const llvm::Twine &what);
  /// Returns the next `n` bytes and advances past them.
  llvm::Error readBytes(uint64_t n, const llvm::Twine &what,
                        llvm::ArrayRef<uint8_t> &out);
  llvm::Error readU8(uint8_t &v, const llvm::Twine &what);
  llvm::Error readU16(uint16_t &v, const llvm::Twine &what);
  llvm::Error readU32(uint32_t &v, const llvm::Twine &what);
  llvm::Error readU64(uint64_t &v, const llvm::Twine &what);

private:
  llvm::StringRef file;
  llvm::ArrayRef<uint8_t> data;
  uint64_t pos;
};

//===----------------------------------------------------------------------===//
// Storage types
//===----------------------------------------------------------------------===//

/// Elements per block of a block-quantized type (1 for plain floats).
uint64_t blockElements(DType type);
/// Bytes per block of `type` (the element size for plain floats).
uint64_t blockBytes(DType type);
/// The number of bytes `numElements` elements of `type` occupy, or nullopt if
/// `numElements` is not a whole number of blocks or the size overflows.
std::optional<uint64_t> storageBytes(DType type, uint64_t numElements);
/// Decodes `numElements` elements (a whole number of blocks) stored as
/// `type` at `src` into float32 at `dst`. `src` needs no alignment.
void dequantize(DType type, const uint8_t *src, uint64_t numElements,
                float *dst);

//===----------------------------------------------------------------------===//
// Canonical tensors and config validation
//===----------------------------------------------------------------------===//

enum class TensorRole {
  TokEmbeddings,
  AttentionNorm,
  WQ,
  WK,
  WV,
  WO,
  FFNNorm,
  W1,
  W2,
  W3,
  Norm,
  Output,
};

struct CanonicalTensor {
  TensorRole role;
  int64_t layer; ///< -1 for tensors outside the layers.
  std::string name;
  llvm::SmallVector<int64_t, 2> shape;
};

/// Calls `fn` for every canonical tensor implied by `config` (a validated
/// config), in the canonical order; `output` only when the embeddings are not
/// tied. Stops at, and returns, the first error `fn` returns.
llvm::Error forEachCanonicalTensor(
    const ModelConfig &config,
    llvm::function_ref<llvm::Error(const CanonicalTensor &)> fn);

/// How a format names the config fields, for error messages.
struct ConfigFieldNames {
  llvm::StringRef dim, hiddenDim, numLayers, numHeads, numKVHeads, headDim,
      vocabSize, maxSeqLen, normEps, ropeTheta;
};

/// The largest value accepted for any integer config field. Keeping every
/// field below 2^31 makes the product of any two fields fit in int64_t.
constexpr int64_t kMaxConfigValue = (int64_t(1) << 31) - 1;

/// Checks that every integer field is in [1, kMaxConfigValue], that the KV
/// heads divide the heads, that the head dimension is even (RoPE rotates
/// pairs) and that the epsilon and theta are positive and finite.
llvm::Error validateConfig(llvm::StringRef file, const ModelConfig &config,
                           const ConfigFieldNames &names);

//===----------------------------------------------------------------------===//
// The checkpoint shared by all readers
//===----------------------------------------------------------------------===//

/// Where the bytes of one tensor lie.
struct TensorSource {
  unsigned file = 0;     ///< Index into MappedCheckpoint's files.
  uint64_t offset = 0;   ///< Byte offset of the data in that file.
  uint64_t numBytes = 0; ///< storageBytes(dtype, element count).
  /// Non-zero: the rows are Hugging Face rotate-half q/k rows with this head
  /// dimension and are permuted back to the interleaved order on read.
  int64_t permuteHeadDim = 0;
};

class MappedCheckpoint final : public Checkpoint {
public:
  MappedCheckpoint(llvm::StringRef format, llvm::StringRef path)
      : format(format), checkpointPath(path.str()) {}

  llvm::StringRef formatName() const override { return format; }
  llvm::StringRef path() const override { return checkpointPath; }
  const ModelConfig &config() const override { return modelConfig; }
  llvm::ArrayRef<TensorInfo> tensors() const override { return infos; }
  const std::optional<tokenizer::TokenizerData> &tokenizer() const override {
    return tokenizerData;
  }
  llvm::Error readTensor(llvm::StringRef name,
                         llvm::MutableArrayRef<float> out) const override;

  ModelConfig &mutableConfig() { return modelConfig; }
  std::optional<tokenizer::TokenizerData> &mutableTokenizer() {
    return tokenizerData;
  }
  /// Keeps `file` alive for the checkpoint's lifetime; returns its index.
  unsigned addFile(std::unique_ptr<MappedFile> file);
  const MappedFile &file(unsigned index) const { return *files[index]; }
  /// Adds a tensor whose source range the caller has bounds-checked against
  /// its file and whose size matches its shape and dtype.
  void addTensor(TensorInfo info, TensorSource source);

private:
  llvm::StringRef format;
  std::string checkpointPath;
  ModelConfig modelConfig;
  std::vector<TensorInfo> infos;
  std::vector<TensorSource> sources;
  llvm::StringMap<unsigned> index;
  std::optional<tokenizer::TokenizerData> tokenizerData;
  std::vector<std::unique_ptr<MappedFile>> files;
};

//===----------------------------------------------------------------------===//
// Readers
//===----------------------------------------------------------------------===//

llvm::Expected<std::unique_ptr<Checkpoint>>
openLlama2c(llvm::StringRef path, std::unique_ptr<MappedFile> file);
llvm::Expected<std::unique_ptr<Checkpoint>>
openGGUF(llvm::StringRef path, std::unique_ptr<MappedFile> file);
llvm::Expected<std::unique_ptr<Checkpoint>>
openHuggingFace(llvm::StringRef directory);

} // namespace qlr::checkpoint::detail

#endif // QLR_LIB_CHECKPOINT_CHECKPOINTIMPL_H
