//===- Runtime.cpp - The C interface of compiled QLR models ---*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// Linked by qlr-compile into every model library (whole archive, everything
// hidden but include/qlr-c/Runtime.h). Reads the metadata qlr-compile wrote
// (qlr/Runtime/ArtifactFormat.h), maps the weights, owns the KV cache and
// calls the compiled @forward. No MLIR, no LLVM libraries at run time.
//
// A model compiled with --target cuda runs @forward on an NVIDIA GPU through
// QLRCudaRuntime (qlr/Runtime/CudaDriver.h), which loads the driver at run
// time. Its handle keeps every buffer @forward takes in device memory: the
// weights (one copy per process and weights, shared by the handles that use
// them), the KV cache, the tokens and the logits; the C interface copies
// tokens in and logits out, so that callers see the CPU library's interface.
//
//===----------------------------------------------------------------------===//

#include "qlr-c/Runtime.h"
#include "qlr/Runtime/ArtifactFormat.h"
#include "qlr/Runtime/CudaDriver.h"
#include "qlr/Runtime/ForwardCall.h"
#include "qlr/Tokenizer/Tokenizer.h"

#include "llvm/Support/Error.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <utility>
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

/// A file descriptor, closed with its owner.
struct FileDescriptor {
  int fd = -1;
  ~FileDescriptor() {
    if (fd >= 0)
      close(fd);
  }
};

/// Opens the weights file `path` read-only into `file` and reads its status
/// into `st`; false (with the calling thread's error) on failure.
bool openWeightsFile(const std::string &path, FileDescriptor &file,
                     struct stat &st) {
  file.fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (file.fd < 0)
    return failWith(false, "cannot open the weights file '" + path +
                               "': " + std::strerror(errno));
  if (fstat(file.fd, &st) != 0)
    return failWith(false, "cannot read '" + path + "'");
  return true;
}

/// Maps the first `size` bytes of the open file `fd` (named `path`) into
/// `mapping` (nothing when `size` is 0); false (with the calling thread's
/// error) on failure.
bool mapFile(int fd, const std::string &path, size_t size, Mapping &mapping) {
  mapping.size = size;
  if (size == 0)
    return true;
  void *data = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  if (data == MAP_FAILED)
    return failWith(false,
                    "cannot map '" + path + "': " + std::strerror(errno));
  mapping.data = data;
  return true;
}

/// Checks that `available` bytes of `source` hold every weight of `meta`;
/// false (with the calling thread's error) when one lies outside.
bool checkWeightExtents(const ArtifactMeta &meta, uint64_t available,
                        const std::string &source) {
  for (const qlr::artifact::WeightEntry &w : meta.weights)
    if (w.offset > available || w.bytes > available - w.offset)
      return failWith(false, source + " holds " + std::to_string(available) +
                                 " bytes; the model needs " +
                                 std::to_string(w.offset + w.bytes) +
                                 " (a truncated or foreign weights file)");
  return true;
}

//===----------------------------------------------------------------------===//
// Device memory of models compiled for CUDA
//===----------------------------------------------------------------------===//

/// One allocation in the CUDA device's memory, freed with its owner.
class DeviceBuffer {
public:
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer &) = delete;
  DeviceBuffer &operator=(const DeviceBuffer &) = delete;
  ~DeviceBuffer() { release(); }

  /// Replaces the allocation by one of `bytes` bytes (none for 0); false,
  /// with the CUDA runtime's pending error, when that fails (the buffer is
  /// then empty).
  bool allocate(size_t bytes) {
    release();
    if (bytes == 0)
      return true;
    data = qlr::cuda::deviceAlloc(bytes);
    if (!data)
      return false;
    size = bytes;
    return true;
  }

  /// Frees the allocation.
  void release() {
    qlr::cuda::deviceFree(data);
    data = nullptr;
    size = 0;
  }

  void *get() const { return data; }
  size_t bytes() const { return size; }

private:
  void *data = nullptr;
  size_t size = 0;
};

/// What the handle of a CUDA model keeps on the device, besides the shared
/// weights.
struct DeviceState {
  /// The device, for messages: "CUDA device 0, NVIDIA H100 80GB HBM3
  /// (compute 9.0)".
  std::string where;
  /// The weights: one buffer, which every handle of the same weights holds.
  std::shared_ptr<DeviceBuffer> weights;
  /// [layers, maxSeqLen, kvHeads, headDim] floats each, zeroed at open.
  DeviceBuffer kCache, vCache;
  /// maxSeqLen int32 token ids, the most one call runs.
  DeviceBuffer tokens;
  /// [logitRows, vocab] floats; reallocated when a call needs more rows.
  DeviceBuffer logits;
  int64_t logitRows = 0;
};

/// The CUDA runtime's pending error, cleared: why the call that just failed
/// failed.
std::string takeCudaError() {
  std::optional<std::string> error = qlr::cuda::takeError();
  return error ? *error : std::string("an unknown CUDA error");
}

/// `bytes` in MB (10^6 bytes), one decimal.
std::string megabytes(uint64_t bytes) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.1f", double(bytes) / 1e6);
  return text;
}

/// The compute capability of the architecture `chip` ("sm_90", "sm_90a",
/// "sm_100": the last digit is the minor version); false when `chip` has
/// another form.
bool parseChip(const std::string &chip, int &major, int &minor) {
  if (chip.compare(0, 3, "sm_") != 0)
    return false;
  size_t end = chip.size();
  if (end > 3 && chip[end - 1] == 'a')
    --end;
  std::string digits = chip.substr(3, end - 3);
  if (digits.size() < 2 || digits.size() > 4 ||
      digits.find_first_not_of("0123456789") != std::string::npos)
    return false;
  major = std::atoi(digits.substr(0, digits.size() - 1).c_str());
  minor = digits.back() - '0';
  return true;
}

/// Why the library's GPU module did not load, or std::nullopt when it did.
///
/// The library's global constructor loads its kernels (mgpuModuleLoad, or
/// mgpuModuleLoadJIT for PTX) when the library is loaded, and can only leave
/// a failure as the CUDA runtime's pending error. The first call takes that
/// error (so that later device work is not refused) and keeps it: the
/// kernels never load later, so every open reports it.
const std::optional<std::string> &moduleLoadError() {
  static const std::optional<std::string> error = qlr::cuda::takeError();
  return error;
}

/// The value of QLR_WEIGHTS_FILL for a CUDA model, in `fill`: std::nullopt
/// when the variable is unset or empty, else the byte it names, in decimal
/// or in hexadecimal with 0x ("60", "0x3c"). False (with `error`) when it
/// names no byte (0-255).
bool weightsFill(std::optional<uint8_t> &fill, std::string &error) {
  fill.reset();
  const char *env = std::getenv("QLR_WEIGHTS_FILL");
  if (!env || !*env)
    return true;
  std::string text = env;
  bool hex =
      text.size() > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X');
  std::string digits = hex ? text.substr(2) : text;
  unsigned long value = 256;
  if (!digits.empty() && digits.size() <= 8 &&
      digits.find_first_not_of(hex ? "0123456789abcdefABCDEF" : "0123456789") ==
          std::string::npos)
    value = std::strtoul(digits.c_str(), nullptr, hex ? 16 : 10);
  if (value > 255) {
    error = "QLR_WEIGHTS_FILL='" + text +
            "' is not a byte value (0-255, e.g. 0x3c)";
    return false;
  }
  fill = uint8_t(value);
  return true;
}

/// The device weights of this library in use, by what they were made from
/// (sharedDeviceWeights). Never destroyed: handles may outlive static
/// destruction.
struct WeightRegistry {
  std::mutex mutex;
  std::map<std::string, std::weak_ptr<DeviceBuffer>> buffers;
};

WeightRegistry &weightRegistry() {
  static auto *registry = new WeightRegistry();
  return *registry;
}

/// The device weights known by `key`: those a handle of this library already
/// uses, or else those `create()` makes (null, with the calling thread's
/// error, when that fails). The last handle that holds them frees them.
template <typename Create>
std::shared_ptr<DeviceBuffer> sharedDeviceWeights(const std::string &key,
                                                  Create create) {
  WeightRegistry &registry = weightRegistry();
  std::lock_guard<std::mutex> lock(registry.mutex);
  for (auto it = registry.buffers.begin(); it != registry.buffers.end();)
    it = it->second.expired() ? registry.buffers.erase(it) : std::next(it);
  auto found = registry.buffers.find(key);
  if (found != registry.buffers.end())
    if (std::shared_ptr<DeviceBuffer> buffer = found->second.lock())
      return buffer;
  std::shared_ptr<DeviceBuffer> buffer = create();
  if (buffer)
    registry.buffers[key] = buffer;
  return buffer;
}

/// Copies the first `bytes` bytes of the weights at `data` into a new device
/// buffer on `where`; null (with the calling thread's error) on failure.
std::shared_ptr<DeviceBuffer> uploadWeights(const void *data, uint64_t bytes,
                                            const std::string &where) {
  auto buffer = std::make_shared<DeviceBuffer>();
  if (!buffer->allocate(bytes) ||
      !qlr::cuda::copyToDevice(buffer->get(), data, bytes))
    return failWith<std::shared_ptr<DeviceBuffer>>(
        nullptr, "cannot copy the weights (" + megabytes(bytes) + " MB) to " +
                     where + ": " + takeCudaError());
  return buffer;
}

} // namespace

struct qlr_model {
  const ArtifactMeta *meta = nullptr;
  std::unique_ptr<Mapping> sidecar;
  /// Descriptors of the weights in argument order: into the mapping, or
  /// into the device weights of a CUDA model.
  std::vector<qlr::runtime::MemRefDescriptor> weights;
  std::vector<float> kCache, vCache;
  int64_t position = 0;
  std::unique_ptr<qlr::tokenizer::Tokenizer> tokenizer;
  /// What qlr_model_device() returns.
  std::string device = "cpu";
  /// The device buffers of a CUDA model; null for a CPU model.
  std::unique_ptr<DeviceState> gpu;
};

namespace {

/// Opens the CUDA model `model` (its metadata set) on the CUDA device, with
/// the weights at `weightsPath`, or null for the library's own; false (with
/// the calling thread's error) when it cannot run there.
///
/// Checks, in this order, that the driver loads and the device exists, that
/// the device's compute capability is at least the chip's, and that the
/// library's kernels loaded; then copies the weights to the device (once per
/// process for the same weights: the embedded ones, or a file by device,
/// inode, size and modification time) and releases their host mapping, and
/// allocates the zeroed KV cache and the token buffer there.
///
/// QLR_WEIGHTS_FILL=<byte> (decimal, or hexadecimal with 0x: "0x3c"; unset
/// or empty: off) reads no weights at all, neither the library's nor a file
/// (a sidecar need not exist, `weightsPath` is not opened): the device
/// weights, as many bytes as the furthest weight's end rounded up to 4, are
/// that byte repeated (mgpuMemset32 on the default stream). For timing the
/// kernels of a model whose weights are not at hand; the logits mean
/// nothing. Handles with the same byte share one buffer. A value that is not
/// a byte (0-255) fails the open. CPU models ignore the variable.
bool openOnDevice(qlr_model &model, const char *weightsPath) {
  const ArtifactMeta &m = *model.meta;
  std::string compiled =
      "this model runs on an NVIDIA GPU (compiled for " + m.gpuChip + "): ";
  std::string why;
  if (!qlr::cuda::available(why))
    return failWith(false, compiled + why);
  std::optional<qlr::cuda::DeviceInfo> info = qlr::cuda::deviceInfo(why);
  if (!info)
    return failWith(false, compiled + why);
  std::string compute = std::to_string(info->computeMajor) + "." +
                        std::to_string(info->computeMinor);
  std::string where = "CUDA device " + std::to_string(info->ordinal) + ", " +
                      info->name + " (compute " + compute + ")";
  int chipMajor = 0, chipMinor = 0;
  bool knownChip = parseChip(m.gpuChip, chipMajor, chipMinor);
  if (knownChip && std::make_pair(info->computeMajor, info->computeMinor) <
                       std::make_pair(chipMajor, chipMinor))
    return failWith(false, compiled + where +
                               " is older: compile the model for it with "
                               "qlr-compile --target cuda --chip sm_" +
                               std::to_string(info->computeMajor) +
                               std::to_string(info->computeMinor));
  if (const std::optional<std::string> &loadError = moduleLoadError()) {
    // A cubin runs only on devices of its major compute capability; the
    // driver says only that it has no binary for the device.
    std::string hint;
    if (knownChip && loadError->rfind("cuModuleLoadData failed", 0) == 0 &&
        info->computeMajor != chipMajor)
      hint = " (a cubin for " + m.gpuChip + " runs only on compute " +
             std::to_string(chipMajor) +
             ".x devices: compile the model with --chip sm_" +
             std::to_string(info->computeMajor) +
             std::to_string(info->computeMinor) +
             ", or with --gpu-binary ptx for the driver to compile its "
             "kernels)";
    return failWith(false, compiled + "its kernels did not load on " + where +
                               hint + ": " + *loadError);
  }
  model.device =
      "cuda " + m.gpuChip + ": " + info->name + " (compute " + compute +
      (info->ordinal != 0 ? ", device " + std::to_string(info->ordinal)
                          : std::string()) +
      ")";
  auto gpu = std::make_unique<DeviceState>();
  gpu->where = where;

  // The weights.
  std::optional<uint8_t> fill;
  if (!weightsFill(fill, why))
    return failWith(false, why);
  if (fill) {
    uint64_t extent = 0;
    for (const qlr::artifact::WeightEntry &w : m.weights) {
      uint64_t most = std::numeric_limits<uint64_t>::max() - 3;
      if (w.offset > most || w.bytes > most - w.offset)
        return failWith(false, "the model metadata is truncated or corrupt");
      extent = std::max(extent, w.offset + w.bytes);
    }
    uint64_t bytes = (extent + 3) / 4 * 4;
    uint8_t byte = *fill;
    gpu->weights = sharedDeviceWeights(
        "fill:" + std::to_string(byte), [&]() -> std::shared_ptr<DeviceBuffer> {
          auto buffer = std::make_shared<DeviceBuffer>();
          bool ok = buffer->allocate(bytes);
          if (ok && bytes > 0) {
            mgpuMemset32(buffer->get(), uint32_t(byte) * 0x01010101u, bytes / 4,
                         /*stream=*/nullptr);
            ok = qlr::cuda::synchronize();
          }
          if (!ok)
            return failWith<std::shared_ptr<DeviceBuffer>>(
                nullptr, "cannot fill the weights (" + megabytes(bytes) +
                             " MB) on " + where + ": " + takeCudaError());
          return buffer;
        });
  } else {
    uint64_t extent = 0;
    for (const qlr::artifact::WeightEntry &w : m.weights)
      extent = std::max(extent, w.offset + w.bytes);
    if (weightsPath || !m.weightsFile.empty()) {
      std::string path =
          weightsPath ? weightsPath : libraryDirectory() + "/" + m.weightsFile;
      FileDescriptor file;
      struct stat st;
      if (!openWeightsFile(path, file, st) ||
          !checkWeightExtents(m, uint64_t(st.st_size), "'" + path + "'"))
        return false;
      std::string key = std::to_string(uint64_t(st.st_dev)) + ":" +
                        std::to_string(uint64_t(st.st_ino)) + ":" +
                        std::to_string(uint64_t(st.st_size)) + ":" +
                        std::to_string(int64_t(st.st_mtim.tv_sec)) + "." +
                        std::to_string(int64_t(st.st_mtim.tv_nsec));
      gpu->weights =
          sharedDeviceWeights(key, [&]() -> std::shared_ptr<DeviceBuffer> {
            // The host mapping lives only as long as the upload.
            Mapping mapping;
            if (!mapFile(file.fd, path, size_t(st.st_size), mapping))
              return nullptr;
            return uploadWeights(mapping.data, extent, where);
          });
    } else {
      uint64_t available =
          uint64_t(qlr_artifact_weights_end - qlr_artifact_weights);
      if (!checkWeightExtents(m, available, "the weights inside the library"))
        return false;
      gpu->weights = sharedDeviceWeights("library", [&]() {
        return uploadWeights(qlr_artifact_weights, extent, where);
      });
    }
  }
  if (!gpu->weights)
    return false;
  auto *base = static_cast<uint8_t *>(gpu->weights->get());
  for (const qlr::artifact::WeightEntry &w : m.weights)
    model.weights.emplace_back(base + w.offset, w.shape);

  // The KV cache, zeroed, and the token buffer.
  size_t cacheSize = size_t(m.layers) * size_t(m.maxSeqLen) *
                     size_t(m.kvHeads) * size_t(m.headDim);
  size_t cacheBytes = cacheSize * sizeof(float);
  if (!gpu->kCache.allocate(cacheBytes) || !gpu->vCache.allocate(cacheBytes))
    return failWith(false, "cannot allocate the KV cache (2 x " +
                               megabytes(cacheBytes) + " MB) on " + where +
                               ": " + takeCudaError());
  if (cacheSize > 0) {
    mgpuMemset32(gpu->kCache.get(), 0, cacheSize, /*stream=*/nullptr);
    mgpuMemset32(gpu->vCache.get(), 0, cacheSize, /*stream=*/nullptr);
  }
  if (!qlr::cuda::synchronize())
    return failWith(false, "cannot clear the KV cache on " + where + ": " +
                               takeCudaError());
  size_t tokenBytes = size_t(m.maxSeqLen) * sizeof(int32_t);
  if (!gpu->tokens.allocate(tokenBytes))
    return failWith(false, "cannot allocate the token buffer (" +
                               std::to_string(tokenBytes) + " bytes) on " +
                               where + ": " + takeCudaError());
  model.gpu = std::move(gpu);
  return true;
}

/// Runs `count` tokens of the CUDA model `model` at its position (the
/// arguments checked): copies the tokens to the device, runs @forward on
/// the device buffers, waits for it and copies the logits back. 0, or -1
/// (with the calling thread's error, the position unchanged) on failure.
int forwardOnDevice(qlr_model &model, const int32_t *tokens, int64_t count,
                    float *logits) {
  const ArtifactMeta &m = *model.meta;
  DeviceState &gpu = *model.gpu;
  size_t logitBytes = size_t(count) * size_t(m.vocabSize) * sizeof(float);
  if (count > gpu.logitRows) {
    gpu.logitRows = 0;
    if (!gpu.logits.allocate(logitBytes))
      return failWith(-1, "cannot allocate " + megabytes(logitBytes) +
                              " MB of GPU memory for the logits of " +
                              std::to_string(count) +
                              " tokens: " + takeCudaError());
    gpu.logitRows = count;
  }
  // A host-to-device copy may return before the data arrives, and the
  // generated code's streams do not wait for the default stream.
  if (!qlr::cuda::copyToDevice(gpu.tokens.get(), tokens,
                               size_t(count) * sizeof(int32_t)) ||
      !qlr::cuda::synchronize())
    return failWith(-1,
                    "cannot copy the tokens to the GPU: " + takeCudaError());
  qlr::runtime::callForward(
      qlr_artifact_forward, static_cast<const int32_t *>(gpu.tokens.get()),
      count, model.position, static_cast<float *>(gpu.logits.get()),
      m.vocabSize, static_cast<float *>(gpu.kCache.get()),
      static_cast<float *>(gpu.vCache.get()),
      {m.layers, m.maxSeqLen, m.kvHeads, m.headDim}, model.weights);
  // The generated code cannot check the driver's results: the failure of
  // any of its calls is the pending error, which names the kernel.
  if (!qlr::cuda::synchronize() || qlr::cuda::hasError())
    return failWith(-1, "the forward pass on the GPU failed (positions " +
                            std::to_string(model.position) + ".." +
                            std::to_string(model.position + count - 1) +
                            "): " + takeCudaError());
  if (!qlr::cuda::copyToHost(logits, gpu.logits.get(), logitBytes))
    return failWith(-1,
                    "cannot copy the logits from the GPU: " + takeCudaError());
  model.position += count;
  return 0;
}

} // namespace

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
  if (meta->device == qlr::artifact::kDeviceCUDA) {
    if (!openOnDevice(*model, weightsPath))
      return nullptr;
  } else {
    const uint8_t *base = qlr_artifact_weights;
    uint64_t available =
        uint64_t(qlr_artifact_weights_end - qlr_artifact_weights);
    std::string source = "the weights inside the library";
    if (weightsPath || !meta->weightsFile.empty()) {
      std::string path = weightsPath
                             ? weightsPath
                             : libraryDirectory() + "/" + meta->weightsFile;
      FileDescriptor file;
      struct stat st;
      if (!openWeightsFile(path, file, st))
        return nullptr;
      model->sidecar = std::make_unique<Mapping>();
      if (!mapFile(file.fd, path, size_t(st.st_size), *model->sidecar))
        return nullptr;
      base = static_cast<const uint8_t *>(model->sidecar->data);
      available = model->sidecar->size;
      source = "'" + path + "'";
    }
    if (!checkWeightExtents(*meta, available, source))
      return nullptr;
    for (const qlr::artifact::WeightEntry &w : meta->weights)
      model->weights.emplace_back(base + w.offset, w.shape);

    size_t cacheSize = size_t(meta->layers) * size_t(meta->maxSeqLen) *
                       size_t(meta->kvHeads) * size_t(meta->headDim);
    model->kCache.assign(cacheSize, 0.0f);
    model->vCache.assign(cacheSize, 0.0f);
  }

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

const char *qlr_model_device(const qlr_model *model) {
  return model ? model->device.c_str()
               : failWith<const char *>(nullptr, "null model");
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
  if (model->gpu)
    return forwardOnDevice(*model, tokens, count, logits);
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
