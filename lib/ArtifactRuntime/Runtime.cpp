//===- Runtime.cpp - The C interface of compiled QLR models ---*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// Linked by qlr-compile into every model library (whole archive, everything
// hidden but include/qlr-c/Runtime.h). Reads the metadata qlr-compile wrote
// (qlr/Runtime/ArtifactFormat.h), maps the weights, owns the KV cache and
// calls the compiled @forward. No MLIR, no LLVM libraries at run time.
//
//===----------------------------------------------------------------------===//

#include "qlr-c/Runtime.h"
#include "qlr/Runtime/ArtifactFormat.h"
#include "qlr/Runtime/ForwardCall.h"
#include "qlr/Tokenizer/Tokenizer.h"

#include "llvm/Support/Error.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

// Defined by qlr-compile in the same library (hidden).
extern "C" {
extern const uint8_t qlr_artifact_meta[], qlr_artifact_meta_end[];
extern const uint8_t qlr_artifact_weights[], qlr_artifact_weights_end[];
void qlr_artifact_forward(void **args);
}

using qlr::artifact::ArtifactMeta;

namespace {

thread_local std::string lastError;

/// Records `message` as the calling thread's last error; returns `result`.
template <typename T> T failWith(T result, std::string message) {
  lastError = std::move(message);
  return result;
}

/// The psABI level this CPU supports (0 x86-64, 1 v3, 2 v4).
uint32_t cpuLevel() {
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("x86-64-v4"))
    return 2;
  if (__builtin_cpu_supports("x86-64-v3"))
    return 1;
#endif
  return 0;
}

const char *levelName(uint32_t level) {
  static const char *names[] = {"portable", "avx2", "avx512"};
  return level < 3 ? names[level] : "unknown";
}

const char *levelCPU(uint32_t level) {
  static const char *names[] = {"x86-64", "x86-64-v3 (AVX2)",
                                "x86-64-v4 (AVX-512)"};
  return level < 3 ? names[level] : "an unknown CPU level";
}

/// The library's metadata, parsed once.
const ArtifactMeta *libraryMeta() {
  static ArtifactMeta meta;
  static std::string error;
  static bool ok = qlr::artifact::readMeta(
      qlr_artifact_meta, size_t(qlr_artifact_meta_end - qlr_artifact_meta),
      meta, error);
  if (!ok)
    return failWith<const ArtifactMeta *>(nullptr, error);
  return &meta;
}

/// The directory of this library (for the sidecar weights).
std::string libraryDirectory() {
  Dl_info info;
  if (!dladdr(reinterpret_cast<void *>(&qlr_runtime_abi_version), &info) ||
      !info.dli_fname)
    return ".";
  std::string path = info.dli_fname;
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

/// A read-only mapping of a whole file.
struct Mapping {
  void *data = nullptr;
  size_t size = 0;
  ~Mapping() {
    if (data)
      munmap(data, size);
  }
};

} // namespace

struct qlr_model {
  const ArtifactMeta *meta = nullptr;
  std::unique_ptr<Mapping> sidecar;
  std::vector<qlr::runtime::MemRefDescriptor> weights;
  std::vector<float> kCache, vCache;
  int64_t position = 0;
  std::unique_ptr<qlr::tokenizer::Tokenizer> tokenizer;
};

extern "C" {

uint32_t qlr_runtime_abi_version(void) { return QLR_RUNTIME_ABI_VERSION; }

const char *qlr_last_error(void) { return lastError.c_str(); }

qlr_model *qlr_model_open(const char *weightsPath) {
  const ArtifactMeta *meta = libraryMeta();
  if (!meta)
    return nullptr;
  uint32_t have = cpuLevel();
  if (meta->simdLevel > have)
    return failWith<qlr_model *>(
        nullptr, std::string("this model was compiled for ") +
                     levelCPU(meta->simdLevel) + " (" + meta->targetCPU +
                     "); this CPU runs only " + levelCPU(have) +
                     ": compile it with qlr-compile --cpu=" +
                     (have == 1 ? "x86-64-v3" : "x86-64"));

  auto model = std::make_unique<qlr_model>();
  model->meta = meta;
  const uint8_t *base = qlr_artifact_weights;
  uint64_t available =
      uint64_t(qlr_artifact_weights_end - qlr_artifact_weights);
  std::string source = "the weights inside the library";
  if (weightsPath || !meta->weightsFile.empty()) {
    std::string path = weightsPath
                           ? weightsPath
                           : libraryDirectory() + "/" + meta->weightsFile;
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
      return failWith<qlr_model *>(nullptr, "cannot open the weights file '" +
                                                path +
                                                "': " + std::strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
      close(fd);
      return failWith<qlr_model *>(nullptr, "cannot read '" + path + "'");
    }
    model->sidecar = std::make_unique<Mapping>();
    model->sidecar->size = size_t(st.st_size);
    if (st.st_size > 0) {
      void *data =
          mmap(nullptr, size_t(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
      if (data == MAP_FAILED) {
        close(fd);
        return failWith<qlr_model *>(nullptr, "cannot map '" + path +
                                                  "': " + std::strerror(errno));
      }
      model->sidecar->data = data;
    }
    close(fd);
    base = static_cast<const uint8_t *>(model->sidecar->data);
    available = model->sidecar->size;
    source = "'" + path + "'";
  }
  for (const qlr::artifact::WeightEntry &w : meta->weights) {
    if (w.offset > available || w.bytes > available - w.offset)
      return failWith<qlr_model *>(
          nullptr, source + " holds " + std::to_string(available) +
                       " bytes; the model needs " +
                       std::to_string(w.offset + w.bytes) +
                       " (a truncated or foreign weights file)");
    model->weights.emplace_back(base + w.offset, w.shape);
  }

  size_t cacheSize = size_t(meta->layers) * size_t(meta->maxSeqLen) *
                     size_t(meta->kvHeads) * size_t(meta->headDim);
  model->kCache.assign(cacheSize, 0.0f);
  model->vCache.assign(cacheSize, 0.0f);

  if (!meta->tokenizer.empty()) {
    auto data = qlr::tokenizer::deserialize(meta->tokenizer);
    if (!data)
      return failWith<qlr_model *>(nullptr,
                                   "the embedded tokenizer is corrupt: " +
                                       llvm::toString(data.takeError()));
    auto tokenizer = qlr::tokenizer::Tokenizer::create(std::move(*data));
    if (!tokenizer)
      return failWith<qlr_model *>(nullptr,
                                   "the embedded tokenizer is invalid: " +
                                       llvm::toString(tokenizer.takeError()));
    model->tokenizer = std::move(*tokenizer);
  }
  lastError.clear();
  return model.release();
}

void qlr_model_close(qlr_model *model) { delete model; }

int qlr_model_get_info(const qlr_model *model, qlr_model_info *info) {
  if (!model || !info)
    return failWith(-1, "qlr_model_get_info: null argument");
  const ArtifactMeta &m = *model->meta;
  info->vocab_size = m.vocabSize;
  info->context_length = m.maxSeqLen;
  info->layers = m.layers;
  info->dim = m.dim;
  info->hidden_dim = m.hiddenDim;
  info->heads = m.heads;
  info->kv_heads = m.kvHeads;
  info->head_dim = m.headDim;
  info->parameters = m.parameters;
  info->weight_bytes = m.weightBytes;
  info->bits_per_weight =
      m.parameters > 0 ? 8.0 * double(m.weightBytes) / double(m.parameters)
                       : 0.0;
  info->target_cpu = m.targetCPU.c_str();
  info->simd_level = levelName(m.simdLevel);
  info->threads = m.openmp ? 0 : 1;
  info->has_tokenizer = model->tokenizer != nullptr;
  return 0;
}

int64_t qlr_model_position(const qlr_model *model) {
  return model ? model->position : failWith<int64_t>(-1, "null model");
}

int qlr_model_set_position(qlr_model *model, int64_t position) {
  if (!model)
    return failWith(-1, "null model");
  if (position < 0 || position > model->position)
    return failWith(-1, "position " + std::to_string(position) +
                            " is outside 0.." +
                            std::to_string(model->position));
  model->position = position;
  return 0;
}

int qlr_model_forward(qlr_model *model, const int32_t *tokens, int64_t count,
                      float *logits) {
  if (!model || !tokens || !logits)
    return failWith(-1, "qlr_model_forward: null argument");
  const ArtifactMeta &m = *model->meta;
  if (count <= 0)
    return failWith(-1, "qlr_model_forward: no tokens to run");
  if (count > m.maxSeqLen - model->position)
    return failWith(-1, "positions " + std::to_string(model->position) + ".." +
                            std::to_string(model->position + count - 1) +
                            " exceed the model's context of " +
                            std::to_string(m.maxSeqLen));
  for (int64_t i = 0; i < count; ++i)
    if (tokens[i] < 0 || tokens[i] >= m.vocabSize)
      return failWith(-1, "token id " + std::to_string(tokens[i]) +
                              " is outside the vocabulary of " +
                              std::to_string(m.vocabSize));
  qlr::runtime::callForward(
      qlr_artifact_forward, tokens, count, model->position, logits, m.vocabSize,
      model->kCache.data(), model->vCache.data(),
      {m.layers, m.maxSeqLen, m.kvHeads, m.headDim}, model->weights);
  model->position += count;
  return 0;
}

int64_t qlr_tokenize(const qlr_model *model, const char *text, int64_t length,
                     int add_bos, int32_t *ids, int64_t capacity) {
  if (!model || !text)
    return failWith<int64_t>(-1, "qlr_tokenize: null argument");
  if (!model->tokenizer)
    return failWith<int64_t>(-1, "this model has no tokenizer");
  size_t size = length < 0 ? std::strlen(text) : size_t(length);
  std::vector<int32_t> result =
      model->tokenizer->encode(llvm::StringRef(text, size), add_bos != 0);
  for (int64_t i = 0; i < int64_t(result.size()) && i < capacity; ++i)
    ids[i] = result[i];
  return int64_t(result.size());
}

int64_t qlr_detokenize(const qlr_model *model, const int32_t *ids,
                       int64_t count, char *text, int64_t capacity) {
  if (!model || (!ids && count > 0))
    return failWith<int64_t>(-1, "qlr_detokenize: null argument");
  if (!model->tokenizer)
    return failWith<int64_t>(-1, "this model has no tokenizer");
  for (int64_t i = 0; i < count; ++i)
    if (ids[i] < 0 || ids[i] >= model->meta->vocabSize)
      return failWith<int64_t>(-1, "token id " + std::to_string(ids[i]) +
                                       " is outside the vocabulary");
  std::string result =
      model->tokenizer->decode(llvm::ArrayRef<int32_t>(ids, size_t(count)));
  if (text && capacity > 0) {
    size_t n = std::min<size_t>(result.size(), size_t(capacity - 1));
    std::memcpy(text, result.data(), n);
    text[n] = '\0';
  }
  return int64_t(result.size());
}

int32_t qlr_token_bos(const qlr_model *model) {
  return model && model->tokenizer ? model->tokenizer->bosId() : -1;
}

int32_t qlr_token_eos(const qlr_model *model) {
  return model && model->tokenizer ? model->tokenizer->eosId() : -1;
}

int qlr_token_adds_bos(const qlr_model *model) {
  return model && model->tokenizer && model->tokenizer->addsBosByDefault() &&
                 model->tokenizer->bosId() >= 0
             ? 1
             : 0;
}

int qlr_model_tokenizer_data(const qlr_model *model, const void **data,
                             size_t *size) {
  if (!model || !data || !size)
    return failWith(-1, "qlr_model_tokenizer_data: null argument");
  if (model->meta->tokenizer.empty())
    return failWith(-1, "this model has no tokenizer");
  *data = model->meta->tokenizer.data();
  *size = model->meta->tokenizer.size();
  return 0;
}

} // extern "C"
