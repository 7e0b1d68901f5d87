//===- ArtifactFormat.h - What qlr-compile puts in a model library -*- C++ -*-//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// The private contract between qlr-compile and the runtime it links into
// every model library (lib/ArtifactRuntime). Header-only and MLIR-free. A
// library holds, besides the runtime:
//
//   qlr_artifact_forward(void **args)   @forward's C interface, packed: one
//                                       pointer per argument (Compile.h)
//   qlr_artifact_meta[_end]             the metadata below
//   qlr_artifact_weights[_end]          the weights, page-aligned (empty with
//                                       a sidecar file)
//
// Metadata, little-endian: the magic "QLRMETA\0", u32 format version, then
// the fields of ArtifactMeta in declaration order; strings and byte arrays
// are a u64 length and the bytes; a weight is u64 offset, u64 bytes, u32
// rank and rank i64 dimensions.
//
//===----------------------------------------------------------------------===//

#ifndef QLR_RUNTIME_ARTIFACTFORMAT_H
#define QLR_RUNTIME_ARTIFACTFORMAT_H

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace qlr::artifact {

constexpr char kMetaMagic[8] = {'Q', 'L', 'R', 'M', 'E', 'T', 'A', '\0'};
constexpr uint32_t kMetaVersion = 2;
/// Alignment of each weight inside the weights blob (and of the blob: a
/// page, so that the loader maps it).
constexpr uint64_t kWeightAlignment = 64;
constexpr uint64_t kBlobAlignment = 4096;

struct WeightEntry {
  uint64_t offset = 0, bytes = 0;
  std::vector<int64_t> shape;
};

struct ArtifactMeta {
  int64_t vocabSize = 0, maxSeqLen = 0, layers = 0, dim = 0, hiddenDim = 0,
          heads = 0, kvHeads = 0, headDim = 0, parameters = 0, weightBytes = 0;
  uint32_t simdLevel = 0; ///< qlr::numerics::SimdLevel
  uint32_t openmp = 0;
  std::string targetCPU;
  /// File name of the sidecar weights (next to the library), or empty when
  /// the weights are inside the library.
  std::string weightsFile;
  std::vector<WeightEntry> weights;
  std::vector<uint8_t> tokenizer; ///< Serialized TokenizerData, or empty.
  /// Where @forward runs. kDeviceCUDA: its kernels are in a GPU binary in
  /// the library, every buffer @forward takes (weights, tokens, logits, KV
  /// cache) must be in device memory, and the library calls the CUDA driver
  /// through QLRCudaRuntime.
  uint32_t device = 0;
  /// The GPU the kernels were compiled for ("sm_90"), kDeviceCUDA only.
  std::string gpuChip;
};

constexpr uint32_t kDeviceCPU = 0;
constexpr uint32_t kDeviceCUDA = 1;

namespace detail {
inline void put(std::vector<uint8_t> &out, const void *p, size_t n) {
  auto *b = static_cast<const uint8_t *>(p);
  out.insert(out.end(), b, b + n);
}
template <typename T> void putInt(std::vector<uint8_t> &out, T v) {
  uint8_t bytes[sizeof(T)];
  for (size_t i = 0; i < sizeof(T); ++i)
    bytes[i] = uint8_t(uint64_t(v) >> (8 * i));
  put(out, bytes, sizeof(T));
}
inline void putBytes(std::vector<uint8_t> &out, const void *p, uint64_t n) {
  putInt<uint64_t>(out, n);
  put(out, p, n);
}

/// Reads what writeMeta wrote; every read is bounds-checked.
class Reader {
public:
  Reader(const uint8_t *p, size_t n) : p(p), end(p + n) {}
  bool ok() const { return good; }
  template <typename T> T getInt() {
    T v = 0;
    if (!need(sizeof(T)))
      return v;
    uint64_t u = 0;
    for (size_t i = 0; i < sizeof(T); ++i)
      u |= uint64_t(p[i]) << (8 * i);
    p += sizeof(T);
    std::memcpy(&v, &u, sizeof(T));
    return v;
  }
  bool getBytes(std::vector<uint8_t> &out) {
    uint64_t n = getInt<uint64_t>();
    if (!need(n))
      return false;
    out.assign(p, p + n);
    p += n;
    return true;
  }
  bool getString(std::string &out) {
    std::vector<uint8_t> bytes;
    if (!getBytes(bytes))
      return false;
    out.assign(bytes.begin(), bytes.end());
    return true;
  }
  bool need(uint64_t n) {
    if (!good || uint64_t(end - p) < n)
      good = false;
    return good;
  }
  const uint8_t *p, *end;
  bool good = true;
};
} // namespace detail

inline std::vector<uint8_t> writeMeta(const ArtifactMeta &m) {
  using namespace detail;
  std::vector<uint8_t> out;
  put(out, kMetaMagic, sizeof(kMetaMagic));
  putInt<uint32_t>(out, kMetaVersion);
  for (int64_t v : {m.vocabSize, m.maxSeqLen, m.layers, m.dim, m.hiddenDim,
                    m.heads, m.kvHeads, m.headDim, m.parameters, m.weightBytes})
    putInt<int64_t>(out, v);
  putInt<uint32_t>(out, m.simdLevel);
  putInt<uint32_t>(out, m.openmp);
  putBytes(out, m.targetCPU.data(), m.targetCPU.size());
  putBytes(out, m.weightsFile.data(), m.weightsFile.size());
  putInt<uint64_t>(out, m.weights.size());
  for (const WeightEntry &w : m.weights) {
    putInt<uint64_t>(out, w.offset);
    putInt<uint64_t>(out, w.bytes);
    putInt<uint32_t>(out, uint32_t(w.shape.size()));
    for (int64_t d : w.shape)
      putInt<int64_t>(out, d);
  }
  putBytes(out, m.tokenizer.data(), m.tokenizer.size());
  putInt<uint32_t>(out, m.device);
  putBytes(out, m.gpuChip.data(), m.gpuChip.size());
  return out;
}

/// Parses metadata; false (with `error` set) when it is not metadata of
/// this format version or is cut short.
inline bool readMeta(const uint8_t *data, size_t size, ArtifactMeta &m,
                     std::string &error) {
  using namespace detail;
  if (size < sizeof(kMetaMagic) ||
      std::memcmp(data, kMetaMagic, sizeof(kMetaMagic)) != 0) {
    error = "no QLR model metadata";
    return false;
  }
  Reader r(data + sizeof(kMetaMagic), size - sizeof(kMetaMagic));
  uint32_t version = r.getInt<uint32_t>();
  if (r.ok() && version != kMetaVersion) {
    error = "model metadata version " + std::to_string(version) +
            ", this runtime reads version " + std::to_string(kMetaVersion);
    return false;
  }
  for (int64_t *v :
       {&m.vocabSize, &m.maxSeqLen, &m.layers, &m.dim, &m.hiddenDim, &m.heads,
        &m.kvHeads, &m.headDim, &m.parameters, &m.weightBytes})
    *v = r.getInt<int64_t>();
  m.simdLevel = r.getInt<uint32_t>();
  m.openmp = r.getInt<uint32_t>();
  r.getString(m.targetCPU);
  r.getString(m.weightsFile);
  uint64_t count = r.getInt<uint64_t>();
  if (r.ok() && count > size)
    r.good = false;
  for (uint64_t i = 0; r.ok() && i < count; ++i) {
    WeightEntry w;
    w.offset = r.getInt<uint64_t>();
    w.bytes = r.getInt<uint64_t>();
    uint32_t rank = r.getInt<uint32_t>();
    if (rank > 8)
      r.good = false;
    for (uint32_t d = 0; r.ok() && d < rank; ++d)
      w.shape.push_back(r.getInt<int64_t>());
    m.weights.push_back(std::move(w));
  }
  r.getBytes(m.tokenizer);
  m.device = r.getInt<uint32_t>();
  r.getString(m.gpuChip);
  if (r.ok() && m.device > kDeviceCUDA)
    r.good = false;
  if (!r.ok()) {
    error = "the model metadata is truncated or corrupt";
    return false;
  }
  return true;
}

} // namespace qlr::artifact

#endif // QLR_RUNTIME_ARTIFACTFORMAT_H
