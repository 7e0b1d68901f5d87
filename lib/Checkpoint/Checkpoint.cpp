//===- Checkpoint.cpp - Format dispatch and the shared checkpoint ---------===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#include "CheckpointImpl.h"

#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/raw_ostream.h"

#include <cmath>
#include <cstring>

using namespace llvm;
using namespace qlr::checkpoint;
using namespace qlr::checkpoint::detail;

//===----------------------------------------------------------------------===//
// Public interface
//===----------------------------------------------------------------------===//

StringRef qlr::checkpoint::stringifyDType(DType type) {
  switch (type) {
  case DType::F32:
    return "F32";
  case DType::F16:
    return "F16";
  case DType::BF16:
    return "BF16";
  case DType::Q8_0:
    return "Q8_0";
  case DType::Q4_0:
    return "Q4_0";
  case DType::Q4_1:
    return "Q4_1";
  }
  return "unknown";
}

Checkpoint::~Checkpoint() = default;

const TensorInfo *Checkpoint::findTensor(StringRef name) const {
  for (const TensorInfo &info : tensors())
    if (info.name == name)
      return &info;
  return nullptr;
}

Expected<std::unique_ptr<Checkpoint>>
qlr::checkpoint::openCheckpoint(StringRef path) {
  sys::fs::file_status status;
  if (std::error_code ec = sys::fs::status(path, status))
    return fileError(path, "cannot open: " + ec.message());
  if (sys::fs::is_directory(status))
    return openHuggingFace(path);

  auto file = MappedFile::open(path);
  if (!file)
    return file.takeError();
  ArrayRef<uint8_t> bytes = (*file)->bytes();
  if (bytes.size() >= 4 && std::memcmp(bytes.data(), "GGUF", 4) == 0)
    return openGGUF(path, std::move(*file));
  return openLlama2c(path, std::move(*file));
}

//===----------------------------------------------------------------------===//
// Errors
//===----------------------------------------------------------------------===//

Error qlr::checkpoint::detail::fileError(StringRef file, const Twine &message) {
  return createStringError(inconvertibleErrorCode(),
                           file + ": " + message.str());
}

std::string qlr::checkpoint::detail::formatNumber(double value) {
  std::string result;
  raw_string_ostream(result) << format("%g", value);
  return result;
}

std::string qlr::checkpoint::detail::formatShape(ArrayRef<int64_t> shape) {
  std::string result;
  raw_string_ostream os(result);
  os << '[';
  interleave(shape, os, ", ");
  os << ']';
  return result;
}

//===----------------------------------------------------------------------===//
// Canonical tensors and config validation
//===----------------------------------------------------------------------===//

Error qlr::checkpoint::detail::forEachCanonicalTensor(
    const ModelConfig &c, function_ref<Error(const CanonicalTensor &)> fn) {
  int64_t qDim = c.numHeads * c.headDim;
  int64_t kvDim = c.numKVHeads * c.headDim;
  auto emit = [&](TensorRole role, int64_t layer, const Twine &name,
                  ArrayRef<int64_t> shape) {
    CanonicalTensor t{role, layer, name.str(), SmallVector<int64_t, 2>(shape)};
    return fn(t);
  };

  if (Error e = emit(TensorRole::TokEmbeddings, -1, "tok_embeddings",
                     {c.vocabSize, c.dim}))
    return e;
  for (int64_t l = 0; l < c.numLayers; ++l) {
    std::string prefix = ("layers." + Twine(l) + ".").str();
    struct Entry {
      TensorRole role;
      const char *suffix;
      int64_t rows, cols; // cols == 0: a vector of `rows` elements.
    } entries[] = {
        {TensorRole::AttentionNorm, "attention_norm", c.dim, 0},
        {TensorRole::WQ, "attention.wq", qDim, c.dim},
        {TensorRole::WK, "attention.wk", kvDim, c.dim},
        {TensorRole::WV, "attention.wv", kvDim, c.dim},
        {TensorRole::WO, "attention.wo", c.dim, qDim},
        {TensorRole::FFNNorm, "ffn_norm", c.dim, 0},
        {TensorRole::W1, "feed_forward.w1", c.hiddenDim, c.dim},
        {TensorRole::W2, "feed_forward.w2", c.dim, c.hiddenDim},
        {TensorRole::W3, "feed_forward.w3", c.hiddenDim, c.dim},
    };
    for (const Entry &e : entries) {
      SmallVector<int64_t, 2> shape{e.rows};
      if (e.cols)
        shape.push_back(e.cols);
      if (Error err = emit(e.role, l, prefix + e.suffix, shape))
        return err;
    }
  }
  if (Error e = emit(TensorRole::Norm, -1, "norm", {c.dim}))
    return e;
  if (!c.tiedEmbeddings)
    if (Error e = emit(TensorRole::Output, -1, "output", {c.vocabSize, c.dim}))
      return e;
  return Error::success();
}

Error qlr::checkpoint::detail::validateConfig(StringRef file,
                                              const ModelConfig &c,
                                              const ConfigFieldNames &names) {
  std::pair<int64_t, StringRef> fields[] = {
      {c.dim, names.dim},
      {c.hiddenDim, names.hiddenDim},
      {c.numLayers, names.numLayers},
      {c.numHeads, names.numHeads},
      {c.numKVHeads, names.numKVHeads},
      {c.headDim, names.headDim},
      {c.vocabSize, names.vocabSize},
      {c.maxSeqLen, names.maxSeqLen},
  };
  for (auto [value, name] : fields)
    if (value < 1 || value > kMaxConfigValue)
      return fileError(file, name + " is " + Twine(value) +
                                 "; it must be between 1 and " +
                                 Twine(kMaxConfigValue));
  if (c.numHeads % c.numKVHeads != 0)
    return fileError(file, names.numKVHeads + " (" + Twine(c.numKVHeads) +
                               ") does not divide " + names.numHeads + " (" +
                               Twine(c.numHeads) + ")");
  if (c.headDim % 2 != 0)
    return fileError(file, names.headDim + " (" + Twine(c.headDim) +
                               ") is odd; rotary embeddings rotate pairs");
  if (!(c.normEps > 0.0f) || !std::isfinite(c.normEps))
    return fileError(file, names.normEps + " is " + formatNumber(c.normEps) +
                               "; it must be positive and finite");
  if (!(c.ropeTheta > 0.0f) || !std::isfinite(c.ropeTheta))
    return fileError(file, names.ropeTheta + " is " +
                               formatNumber(c.ropeTheta) +
                               "; it must be positive and finite");
  return Error::success();
}

//===----------------------------------------------------------------------===//
// MappedCheckpoint
//===----------------------------------------------------------------------===//

unsigned MappedCheckpoint::addFile(std::unique_ptr<MappedFile> file) {
  files.push_back(std::move(file));
  return files.size() - 1;
}

void MappedCheckpoint::addTensor(TensorInfo info, TensorSource source) {
  index[info.name] = infos.size();
  infos.push_back(std::move(info));
  sources.push_back(source);
}

Error MappedCheckpoint::readTensor(StringRef name,
                                   MutableArrayRef<float> out) const {
  auto it = index.find(name);
  if (it == index.end())
    return fileError(checkpointPath, "no tensor named '" + name + "'");
  const TensorInfo &info = infos[it->second];
  const TensorSource &source = sources[it->second];

  uint64_t numElements = 1;
  for (int64_t d : info.shape)
    numElements *= uint64_t(d); // Bounded by the file size at open time.
  if (out.size() != numElements)
    return fileError(checkpointPath, "cannot read tensor '" + name + "' " +
                                         formatShape(info.shape) + " (" +
                                         Twine(numElements) +
                                         " elements) into a buffer of " +
                                         Twine(out.size()) + " elements");

  const uint8_t *data = files[source.file]->bytes().data() + source.offset;
  if (!source.permuteHeadDim) {
    dequantize(info.dtype, data, numElements, out.data());
    return Error::success();
  }

  // Hugging Face stores each q/k head as [first halves of the pairs; second
  // halves]; interleave them again: canonical row 2j+s of a head is row
  // s*headDim/2 + j of that head in the file.
  int64_t headDim = source.permuteHeadDim;
  uint64_t rows = info.shape[0], cols = info.shape[1];
  uint64_t rowBytes = *storageBytes(info.dtype, cols);
  for (uint64_t r = 0; r < rows; ++r) {
    uint64_t head = r / headDim, within = r % headDim;
    uint64_t src = head * headDim + (within % 2) * (headDim / 2) + within / 2;
    dequantize(info.dtype, data + src * rowBytes, cols, out.data() + r * cols);
  }
  return Error::success();
}
