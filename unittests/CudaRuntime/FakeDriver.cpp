//===- FakeDriver.cpp - A CUDA driver over host memory ----------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// See FakeDriver.h. Only what QLRCudaRuntime calls, with the signatures of
// lib/CudaRuntime/CudaApi.h; every entry point counts its calls and returns
// an injected failure first. Images are read as far as the fake needs: the
// symbol table and architecture of a cubin, the `.target` and `.entry`
// declarations of PTX.
//
//===----------------------------------------------------------------------===//

#include "FakeDriver.h"

#include "CudaApi.h"

#include <elf.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

using namespace qlr::cuda::api;

namespace {
/// Not in CudaApi.h: the runtime never names it.
constexpr CUresult CUDA_ERROR_NO_BINARY_FOR_GPU = 209;

struct Kernel {
  std::string name;
  std::vector<size_t> paramBytes;
  int maxDynamicSharedBytes = 0;
  int nonPortableClusterSizeAllowed = 0;
};

struct Module {
  std::map<std::string, std::vector<char>> globals;
  std::map<std::string, Kernel> kernels;
};

struct Stream {
  unsigned flags;
};

struct Event {
  unsigned flags;
  int recordedAt = -1;
};

/// A context is a tag: its address is its identity.
struct Context {
  int ordinal;
};

constexpr int kMaxDevices = 8;
Context primaryContexts[kMaxDevices] = {{0}, {1}, {2}, {3}, {4}, {5}, {6}, {7}};
thread_local CUcontext currentContext = nullptr;

/// The default memory pools, tags like the contexts.
struct PoolTag {
  int ordinal;
};
PoolTag poolTags[kMaxDevices] = {{0}, {1}, {2}, {3}, {4}, {5}, {6}, {7}};

/// The device ordinal of a pool handle, or -1.
int poolOrdinal(CUmemoryPool pool) {
  for (int i = 0; i < kMaxDevices; ++i)
    if (reinterpret_cast<CUmemoryPool>(&poolTags[i]) == pool)
      return i;
  return -1;
}

/// A device allocation; `pool` is the device ordinal of the pool a
/// stream-ordered allocation came from, -1 for the others.
struct Allocation {
  size_t bytes;
  int pool;
};

/// The bookkeeping of a default memory pool: the bytes allocated from it
/// (`used`) and the bytes it holds from the device (`reserved`: used, and
/// freed but cached).
struct Pool {
  uint64_t releaseThreshold = 0;
  size_t used = 0, reserved = 0;
};

constexpr int kDefaultComputeMajor = 9, kDefaultComputeMinor = 0;

void writeReport();

struct Fake {
  std::mutex mutex;
  std::map<std::string, int> failures, calls;
  int deviceCount = 1;
  int computeMajor = kDefaultComputeMajor, computeMinor = kDefaultComputeMinor;
  std::vector<QlrFakeLaunch> launches;
  QlrFakeTensorMap tensorMap = {};
  bool haveTensorMap = false;
  int lastJitOptLevel = -1;
  unsigned lastStreamFlags = 0, lastEventFlags = 0, lastManagedFlags = 0;
  std::map<void *, Allocation> allocations;
  /// Device memory: the bytes of the live allocations that are not from a
  /// pool, the pools, and the capacity (0: unlimited).
  size_t synchronousBytes = 0;
  Pool pools[kMaxDevices];
  size_t capacity = 0;
  /// CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED.
  bool memoryPools = true;
  /// Successful cuMemAllocAsync calls.
  int streamOrderedAllocations = 0;
  std::set<Module *> modules;
  std::map<const void *, size_t> registered;
  int clock = 0;
  /// QLR_FAKE_CUDA_REPORT.
  std::string reportPath;

  /// Applies the QLR_FAKE_CUDA_* variables (FakeDriver.h).
  Fake() {
    if (const char *compute = std::getenv("QLR_FAKE_CUDA_COMPUTE")) {
      int major = 0, minor = 0;
      if (std::sscanf(compute, "%d.%d", &major, &minor) == 2) {
        computeMajor = major;
        computeMinor = minor;
      }
    }
    if (const char *fail = std::getenv("QLR_FAKE_CUDA_FAIL")) {
      std::istringstream list(fail);
      std::string pair;
      while (std::getline(list, pair, ',')) {
        size_t equals = pair.find('=');
        if (equals != std::string::npos)
          failures[pair.substr(0, equals)] =
              std::atoi(pair.c_str() + equals + 1);
      }
    }
    if (const char *supported = std::getenv("QLR_FAKE_CUDA_MEMORY_POOLS"))
      memoryPools = std::atoi(supported) != 0;
    if (const char *report = std::getenv("QLR_FAKE_CUDA_REPORT")) {
      reportPath = report;
      if (!reportPath.empty())
        std::atexit(writeReport);
    }
  }
};

Fake &fake() {
  static Fake *f = new Fake();
  return *f;
}

/// Writes the QLR_FAKE_CUDA_REPORT file (at exit).
void writeReport() {
  Fake &f = fake();
  std::lock_guard<std::mutex> lock(f.mutex);
  std::map<std::string, int> perKernel;
  for (const QlrFakeLaunch &launch : f.launches)
    ++perKernel[launch.kernel];
  std::ofstream out(f.reportPath);
  out << "launches " << f.launches.size() << "\n";
  for (const auto &[kernel, count] : perKernel)
    out << "kernel " << kernel << " " << count << "\n";
  out << "module loads "
      << f.calls["cuModuleLoadData"] + f.calls["cuModuleLoadDataEx"] << "\n";
  out << "live allocations " << f.allocations.size() << "\n";
  out << "stream-ordered allocations " << f.streamOrderedAllocations << "\n";
  for (int i = 0; i < kMaxDevices; ++i)
    if (f.pools[i].releaseThreshold)
      out << "pool " << i << " release threshold "
          << f.pools[i].releaseThreshold << "\n";
}

/// Counts the call of `name` and returns its injected failure, if any.
CUresult called(const char *name) {
  Fake &f = fake();
  std::lock_guard<std::mutex> lock(f.mutex);
  ++f.calls[name];
  auto it = f.failures.find(name);
  return it == f.failures.end() ? CUDA_SUCCESS : it->second;
}

/// Entry: count, inject; then require a current context where asked.
#define FAKE_ENTRY(name)                                                       \
  if (CUresult injected = called(name))                                        \
  return injected
#define FAKE_ENTRY_IN_CONTEXT(name)                                            \
  FAKE_ENTRY(name);                                                            \
  if (!currentContext)                                                         \
  return CUDA_ERROR_INVALID_CONTEXT

void *hostPtr(CUdeviceptr ptr) {
  return reinterpret_cast<void *>(static_cast<uintptr_t>(ptr));
}

CUdeviceptr devicePtr(const void *ptr) {
  return static_cast<CUdeviceptr>(reinterpret_cast<uintptr_t>(ptr));
}

/// The compute capability devices report, as in "sm_90": 90.
int deviceArchitecture() {
  Fake &f = fake();
  std::lock_guard<std::mutex> lock(f.mutex);
  return f.computeMajor * 10 + f.computeMinor;
}

/// Reads the kernels of a cubin (its global functions) into `m`; CUDA
/// errors for an image that is not one, or is for another architecture.
CUresult readCubin(const char *image, Module &m) {
  Elf64_Ehdr header;
  std::memcpy(&header, image, sizeof(header));
  if (header.e_ident[EI_CLASS] != ELFCLASS64 || header.e_machine != EM_CUDA ||
      header.e_shentsize != sizeof(Elf64_Shdr))
    return CUDA_ERROR_INVALID_IMAGE;
  // The flags name the architecture in their second byte from ELF ABI
  // version 8 on (what the CUDA 13 ptxas writes), in their low byte before.
  unsigned architecture = header.e_ident[EI_ABIVERSION] >= 8
                              ? (header.e_flags >> 8) & 0xff
                              : header.e_flags & 0xff;
  int device = deviceArchitecture();
  if (int(architecture) / 10 != device / 10 ||
      int(architecture) % 10 > device % 10)
    return CUDA_ERROR_NO_BINARY_FOR_GPU;
  auto section = [&](unsigned index) {
    Elf64_Shdr shdr;
    std::memcpy(&shdr, image + header.e_shoff + index * sizeof(Elf64_Shdr),
                sizeof(shdr));
    return shdr;
  };
  for (unsigned i = 0; i < header.e_shnum; ++i) {
    Elf64_Shdr symtab = section(i);
    if (symtab.sh_type != SHT_SYMTAB || symtab.sh_entsize != sizeof(Elf64_Sym))
      continue;
    Elf64_Shdr strtab = section(symtab.sh_link);
    for (size_t j = 0; j < symtab.sh_size / sizeof(Elf64_Sym); ++j) {
      Elf64_Sym symbol;
      std::memcpy(&symbol, image + symtab.sh_offset + j * sizeof(Elf64_Sym),
                  sizeof(symbol));
      if (ELF64_ST_TYPE(symbol.st_info) != STT_FUNC ||
          ELF64_ST_BIND(symbol.st_info) != STB_GLOBAL)
        continue;
      std::string name = image + strtab.sh_offset + symbol.st_name;
      m.kernels[name].name = name;
    }
  }
  return CUDA_SUCCESS;
}

/// The bytes of a PTX parameter declaration such as ".param .u64 .ptr
/// .align 1 k_param_0" or ".param .align 8 .b8 k_param_1[16]", at most 8.
size_t ptxParamBytes(const std::string &declaration) {
  std::istringstream words(declaration);
  std::string word, last;
  size_t bytes = 8;
  while (words >> word) {
    int bits = 0;
    if (word.size() > 2 && word[0] == '.' && std::strchr("usbf", word[1]) &&
        std::sscanf(word.c_str() + 2, "%d", &bits) == 1)
      bytes = size_t(bits) / 8;
    last = word;
  }
  size_t bracket = last.find('[');
  if (bracket != std::string::npos)
    bytes *= std::strtoul(last.c_str() + bracket + 1, nullptr, 10);
  return bytes > 8 ? 8 : bytes;
}

/// Reads the kernels of PTX (its `.entry` functions and their parameters)
/// into `m`; CUDA_ERROR_INVALID_PTX, with `log`, when it targets a newer
/// architecture than the device's.
CUresult readPtx(const std::string &ptx, Module &m, std::string &log) {
  size_t target = ptx.find(".target sm_");
  int architecture = 0;
  if (target != std::string::npos &&
      std::sscanf(ptx.c_str() + target, ".target sm_%d", &architecture) == 1 &&
      architecture > deviceArchitecture()) {
    log = "ptxas fatal   : SM version specified by .target is higher than "
          "default SM version assumed";
    return CUDA_ERROR_INVALID_PTX;
  }
  for (size_t at = ptx.find(".entry "); at != std::string::npos;
       at = ptx.find(".entry ", at + 1)) {
    size_t begin = at + 7, end = begin;
    while (end < ptx.size() &&
           (std::isalnum(static_cast<unsigned char>(ptx[end])) ||
            ptx[end] == '_' || ptx[end] == '$'))
      ++end;
    Kernel &kernel = m.kernels[ptx.substr(begin, end - begin)];
    kernel.name = ptx.substr(begin, end - begin);
    size_t open = ptx.find_first_not_of(" \t\n", end);
    if (open == std::string::npos || ptx[open] != '(')
      continue;
    size_t close = ptx.find(')', open);
    std::istringstream params(ptx.substr(open + 1, close - open - 1));
    std::string param;
    while (std::getline(params, param, ','))
      if (param.find(".param") != std::string::npos)
        kernel.paramBytes.push_back(ptxParamBytes(param));
  }
  return CUDA_SUCCESS;
}

/// Loads a fake-module text, a cubin or PTX; `log` receives a JIT error.
CUresult loadModule(CUmodule *module, const void *image,
                    std::string *log = nullptr) {
  if (!module || !image)
    return CUDA_ERROR_INVALID_VALUE;
  const char *bytes = static_cast<const char *>(image);
  if (std::strncmp(bytes, ELFMAG, SELFMAG) == 0 ||
      std::strstr(bytes, ".entry ")) {
    auto *m = new Module();
    std::string ignored;
    CUresult result = std::strncmp(bytes, ELFMAG, SELFMAG) == 0
                          ? readCubin(bytes, *m)
                          : readPtx(bytes, *m, log ? *log : ignored);
    if (result != CUDA_SUCCESS) {
      delete m;
      return result;
    }
    Fake &f = fake();
    std::lock_guard<std::mutex> lock(f.mutex);
    f.modules.insert(m);
    *module = reinterpret_cast<CUmodule>(m);
    return CUDA_SUCCESS;
  }
  std::istringstream text(bytes);
  std::string line;
  if (!std::getline(text, line) || line != "qlr-fake-module")
    return CUDA_ERROR_INVALID_IMAGE;
  auto *m = new Module();
  while (std::getline(text, line)) {
    std::istringstream words(line);
    std::string kind, name;
    words >> kind >> name;
    if (kind == "global") {
      size_t bytes = 0;
      words >> bytes;
      m->globals[name].assign(bytes, 0);
    } else if (kind == "kernel") {
      Kernel &kernel = m->kernels[name];
      kernel.name = name;
      size_t bytes = 0;
      while (words >> bytes)
        kernel.paramBytes.push_back(bytes);
    } else if (!kind.empty()) {
      delete m;
      return CUDA_ERROR_INVALID_IMAGE;
    }
  }
  Fake &f = fake();
  std::lock_guard<std::mutex> lock(f.mutex);
  f.modules.insert(m);
  *module = reinterpret_cast<CUmodule>(m);
  return CUDA_SUCCESS;
}

CUresult recordLaunch(CUfunction function, const unsigned grid[3],
                      const unsigned block[3], const unsigned cluster[3],
                      unsigned sharedMemBytes, CUstream stream, void **params,
                      void **extra) {
  if (!function)
    return CUDA_ERROR_INVALID_HANDLE;
  for (int i = 0; i < 3; ++i)
    if (grid[i] == 0 || block[i] == 0)
      return CUDA_ERROR_INVALID_VALUE;
  auto *kernel = reinterpret_cast<Kernel *>(function);
  QlrFakeLaunch launch = {};
  std::strncpy(launch.kernel, kernel->name.c_str(), sizeof(launch.kernel) - 1);
  for (int i = 0; i < 3; ++i) {
    launch.grid[i] = grid[i];
    launch.block[i] = block[i];
    launch.cluster[i] = cluster ? cluster[i] : 0;
  }
  launch.sharedMemBytes = sharedMemBytes;
  launch.stream = stream;
  launch.numParams = static_cast<int>(kernel->paramBytes.size());
  for (size_t i = 0; i < kernel->paramBytes.size() && i < 8; ++i)
    std::memcpy(&launch.params[i], params[i], kernel->paramBytes[i]);
  launch.maxDynamicSharedBytes = kernel->maxDynamicSharedBytes;
  launch.nonPortableClusterSizeAllowed = kernel->nonPortableClusterSizeAllowed;
  launch.extraWasNull = extra == nullptr;
  Fake &f = fake();
  std::lock_guard<std::mutex> lock(f.mutex);
  f.launches.push_back(launch);
  return CUDA_SUCCESS;
}

struct ErrorText {
  CUresult code;
  const char *name, *text;
};
constexpr ErrorText errorTexts[] = {
    {CUDA_SUCCESS, "CUDA_SUCCESS", "no error"},
    {CUDA_ERROR_INVALID_VALUE, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
    {CUDA_ERROR_OUT_OF_MEMORY, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
    {CUDA_ERROR_NOT_INITIALIZED, "CUDA_ERROR_NOT_INITIALIZED",
     "initialization error"},
    {CUDA_ERROR_DEINITIALIZED, "CUDA_ERROR_DEINITIALIZED",
     "driver shutting down"},
    {CUDA_ERROR_NO_DEVICE, "CUDA_ERROR_NO_DEVICE",
     "no CUDA-capable device is detected"},
    {CUDA_ERROR_INVALID_DEVICE, "CUDA_ERROR_INVALID_DEVICE",
     "invalid device ordinal"},
    {CUDA_ERROR_INVALID_IMAGE, "CUDA_ERROR_INVALID_IMAGE",
     "device kernel image is invalid"},
    {CUDA_ERROR_NO_BINARY_FOR_GPU, "CUDA_ERROR_NO_BINARY_FOR_GPU",
     "no kernel image is available for execution on the device"},
    {CUDA_ERROR_INVALID_CONTEXT, "CUDA_ERROR_INVALID_CONTEXT",
     "invalid device context"},
    {CUDA_ERROR_INVALID_PTX, "CUDA_ERROR_INVALID_PTX",
     "a PTX JIT compilation failed"},
    {CUDA_ERROR_INVALID_HANDLE, "CUDA_ERROR_INVALID_HANDLE",
     "invalid resource handle"},
    {CUDA_ERROR_NOT_FOUND, "CUDA_ERROR_NOT_FOUND", "named symbol not found"},
    {CUDA_ERROR_ILLEGAL_ADDRESS, "CUDA_ERROR_ILLEGAL_ADDRESS",
     "an illegal memory access was encountered"},
    {CUDA_ERROR_LAUNCH_FAILED, "CUDA_ERROR_LAUNCH_FAILED",
     "unspecified launch failure"},
    {CUDA_ERROR_NOT_SUPPORTED, "CUDA_ERROR_NOT_SUPPORTED",
     "operation not supported"},
};

int deviceCount() {
  Fake &f = fake();
  std::lock_guard<std::mutex> lock(f.mutex);
  return f.deviceCount;
}

/// Device memory the allocations and the pools hold (the mutex held).
size_t deviceBytesInUse(const Fake &f) {
  size_t bytes = f.synchronousBytes;
  for (const Pool &pool : f.pools)
    bytes += pool.reserved;
  return bytes;
}

/// Allocates `bytes` bytes, from the pool of device `pool` when that is not
/// -1 (reusing what the pool caches, growing it for the rest); out of memory
/// beyond the capacity.
CUresult allocate(CUdeviceptr *ptr, size_t bytes, int pool = -1) {
  if (bytes == 0)
    return CUDA_ERROR_INVALID_VALUE;
  Fake &f = fake();
  std::lock_guard<std::mutex> lock(f.mutex);
  size_t growth = bytes;
  if (pool >= 0) {
    const Pool &p = f.pools[pool];
    growth = p.used + bytes > p.reserved ? p.used + bytes - p.reserved : 0;
  }
  if (f.capacity && deviceBytesInUse(f) + growth > f.capacity)
    return CUDA_ERROR_OUT_OF_MEMORY;
  void *memory = std::calloc(1, bytes);
  if (!memory)
    return CUDA_ERROR_OUT_OF_MEMORY;
  if (pool >= 0) {
    Pool &p = f.pools[pool];
    p.used += bytes;
    p.reserved = std::max(p.reserved, p.used);
  } else {
    f.synchronousBytes += bytes;
  }
  f.allocations[memory] = {bytes, pool};
  *ptr = devicePtr(memory);
  return CUDA_SUCCESS;
}

/// Frees an allocation (only a stream-ordered one when `streamOrdered`);
/// what came from a pool stays reserved by it.
CUresult deallocate(CUdeviceptr ptr, bool streamOrdered) {
  Fake &f = fake();
  std::lock_guard<std::mutex> lock(f.mutex);
  auto it = f.allocations.find(hostPtr(ptr));
  if (it == f.allocations.end() || (streamOrdered && it->second.pool < 0))
    return CUDA_ERROR_INVALID_VALUE;
  if (it->second.pool >= 0)
    f.pools[it->second.pool].used -= it->second.bytes;
  else
    f.synchronousBytes -= it->second.bytes;
  f.allocations.erase(it);
  std::free(hostPtr(ptr));
  return CUDA_SUCCESS;
}

/// At a synchronisation, each pool gives back what it holds above its
/// release threshold.
void releasePools() {
  Fake &f = fake();
  std::lock_guard<std::mutex> lock(f.mutex);
  for (Pool &pool : f.pools)
    if (pool.reserved > pool.releaseThreshold)
      pool.reserved =
          std::max(pool.used, static_cast<size_t>(pool.releaseThreshold));
}

/// The device ordinal of the current context (call with one current).
int currentOrdinal() {
  return reinterpret_cast<const Context *>(currentContext)->ordinal;
}

//===----------------------------------------------------------------------===//
// Hideable entry points
//===----------------------------------------------------------------------===//
//
// These are GNU indirect functions: dlsym calls their resolver at each
// lookup, which returns null, as if the driver did not have them, while they
// are hidden.

constexpr const char *kHideable[] = {
    "cuMemAllocAsync", "cuMemFreeAsync", "cuDeviceGetDefaultMemPool",
    "cuMemPoolSetAttribute", "cuMemPoolTrimTo"};
constexpr int kNumHideable = sizeof(kHideable) / sizeof(kHideable[0]);
/// Hidden by qlrFakeHideEntryPoint (constant-initialised: resolvers may run
/// early).
std::atomic<bool> hiddenByControl[kNumHideable];

int hideableIndex(const char *name) {
  for (int i = 0; i < kNumHideable; ++i)
    if (std::strcmp(kHideable[i], name) == 0)
      return i;
  return -1;
}

/// Whether the comma-separated `list` names `name`.
bool listed(const char *list, const char *name) {
  size_t length = std::strlen(name);
  for (const char *at = list; *at;) {
    const char *end = std::strchr(at, ',');
    size_t itemLength = end ? static_cast<size_t>(end - at) : std::strlen(at);
    if (itemLength == length && std::strncmp(at, name, length) == 0)
      return true;
    if (!end)
      break;
    at = end + 1;
  }
  return false;
}

bool hidden(int index) {
  if (index < 0)
    return false;
  if (hiddenByControl[index].load())
    return true;
  const char *list = std::getenv("QLR_FAKE_CUDA_HIDE");
  return list && listed(list, kHideable[index]);
}

const ErrorText *findError(CUresult code) {
  for (const ErrorText &error : errorTexts)
    if (error.code == code)
      return &error;
  return nullptr;
}
} // namespace

//===----------------------------------------------------------------------===//
// Driver entry points
//===----------------------------------------------------------------------===//

extern "C" {
CUresult cuInit(unsigned flags) {
  FAKE_ENTRY("cuInit");
  return flags == 0 ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

CUresult cuDriverGetVersion(int *version) {
  FAKE_ENTRY("cuDriverGetVersion");
  *version = 13000;
  return CUDA_SUCCESS;
}

CUresult cuGetErrorName(CUresult error, const char **name) {
  const ErrorText *text = findError(error);
  *name = text ? text->name : nullptr;
  return text ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

CUresult cuGetErrorString(CUresult error, const char **string) {
  const ErrorText *text = findError(error);
  *string = text ? text->text : nullptr;
  return text ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

CUresult cuDeviceGetCount(int *count) {
  FAKE_ENTRY("cuDeviceGetCount");
  *count = deviceCount();
  return CUDA_SUCCESS;
}

CUresult cuDeviceGet(CUdevice *device, int ordinal) {
  FAKE_ENTRY("cuDeviceGet");
  if (ordinal < 0 || ordinal >= deviceCount() || ordinal >= kMaxDevices)
    return CUDA_ERROR_INVALID_DEVICE;
  *device = ordinal;
  return CUDA_SUCCESS;
}

CUresult cuDeviceGetName(char *name, int length, CUdevice device) {
  FAKE_ENTRY("cuDeviceGetName");
  std::string text = "QLR Fake GPU " + std::to_string(device);
  std::strncpy(name, text.c_str(), static_cast<size_t>(length));
  return CUDA_SUCCESS;
}

CUresult cuDeviceGetAttribute(int *value, int attribute, CUdevice /*device*/) {
  FAKE_ENTRY("cuDeviceGetAttribute");
  switch (attribute) {
  case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR:
    *value = deviceArchitecture() / 10;
    return CUDA_SUCCESS;
  case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR:
    *value = deviceArchitecture() % 10;
    return CUDA_SUCCESS;
  case CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT:
    *value = 132;
    return CUDA_SUCCESS;
  case CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE:
    *value = 2619000;
    return CUDA_SUCCESS;
  case CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH:
    *value = 5120;
    return CUDA_SUCCESS;
  case CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE:
    *value = 50 << 20;
    return CUDA_SUCCESS;
  case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN:
    *value = 232448;
    return CUDA_SUCCESS;
  case CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED: {
    Fake &f = fake();
    std::lock_guard<std::mutex> lock(f.mutex);
    *value = f.memoryPools ? 1 : 0;
    return CUDA_SUCCESS;
  }
  default:
    return CUDA_ERROR_INVALID_VALUE;
  }
}

CUresult cuDeviceTotalMem_v2(size_t *bytes, CUdevice /*device*/) {
  FAKE_ENTRY("cuDeviceTotalMem_v2");
  *bytes = size_t{80} << 30;
  return CUDA_SUCCESS;
}

CUresult cuDevicePrimaryCtxRetain(CUcontext *context, CUdevice device) {
  FAKE_ENTRY("cuDevicePrimaryCtxRetain");
  if (device < 0 || device >= kMaxDevices)
    return CUDA_ERROR_INVALID_DEVICE;
  *context = reinterpret_cast<CUcontext>(&primaryContexts[device]);
  return CUDA_SUCCESS;
}

CUresult cuCtxSetCurrent(CUcontext context) {
  FAKE_ENTRY("cuCtxSetCurrent");
  currentContext = context;
  return CUDA_SUCCESS;
}

CUresult cuCtxGetCurrent(CUcontext *context) {
  FAKE_ENTRY("cuCtxGetCurrent");
  *context = currentContext;
  return CUDA_SUCCESS;
}

CUresult cuCtxSynchronize() {
  FAKE_ENTRY_IN_CONTEXT("cuCtxSynchronize");
  releasePools();
  return CUDA_SUCCESS;
}

CUresult cuModuleLoadData(CUmodule *module, const void *image) {
  FAKE_ENTRY_IN_CONTEXT("cuModuleLoadData");
  return loadModule(module, image);
}

CUresult cuModuleLoadDataEx(CUmodule *module, const void *image,
                            unsigned numOptions, int *options,
                            void **optionValues) {
  FAKE_ENTRY_IN_CONTEXT("cuModuleLoadDataEx");
  char *log = nullptr;
  size_t logBytes = 0;
  for (unsigned i = 0; i < numOptions; ++i) {
    auto value = reinterpret_cast<uintptr_t>(optionValues[i]);
    if (options[i] == CU_JIT_ERROR_LOG_BUFFER)
      log = static_cast<char *>(optionValues[i]);
    else if (options[i] == CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES)
      logBytes = value;
    else if (options[i] == CU_JIT_OPTIMIZATION_LEVEL) {
      Fake &f = fake();
      std::lock_guard<std::mutex> lock(f.mutex);
      f.lastJitOptLevel = static_cast<int>(value);
    }
  }
  if (image && std::strncmp(static_cast<const char *>(image),
                            "qlr-fake-bad-ptx", 16) == 0) {
    if (log && logBytes)
      std::snprintf(log, logBytes, "ptxas fatal: syntax error in line 1");
    return CUDA_ERROR_INVALID_PTX;
  }
  std::string jitLog;
  CUresult result = loadModule(module, image, &jitLog);
  if (!jitLog.empty() && log && logBytes)
    std::snprintf(log, logBytes, "%s", jitLog.c_str());
  return result;
}

CUresult cuModuleUnload(CUmodule module) {
  FAKE_ENTRY("cuModuleUnload");
  Fake &f = fake();
  std::lock_guard<std::mutex> lock(f.mutex);
  auto *m = reinterpret_cast<Module *>(module);
  if (!f.modules.erase(m))
    return CUDA_ERROR_INVALID_HANDLE;
  delete m;
  return CUDA_SUCCESS;
}

CUresult cuModuleGetFunction(CUfunction *function, CUmodule module,
                             const char *name) {
  FAKE_ENTRY_IN_CONTEXT("cuModuleGetFunction");
  auto *m = reinterpret_cast<Module *>(module);
  if (!m)
    return CUDA_ERROR_INVALID_HANDLE;
  auto it = m->kernels.find(name);
  if (it == m->kernels.end())
    return CUDA_ERROR_NOT_FOUND;
  *function = reinterpret_cast<CUfunction>(&it->second);
  return CUDA_SUCCESS;
}

CUresult cuModuleGetGlobal_v2(CUdeviceptr *ptr, size_t *bytes, CUmodule module,
                              const char *name) {
  FAKE_ENTRY_IN_CONTEXT("cuModuleGetGlobal_v2");
  auto *m = reinterpret_cast<Module *>(module);
  if (!m)
    return CUDA_ERROR_INVALID_HANDLE;
  auto it = m->globals.find(name);
  if (it == m->globals.end())
    return CUDA_ERROR_NOT_FOUND;
  *ptr = devicePtr(it->second.data());
  *bytes = it->second.size();
  return CUDA_SUCCESS;
}

CUresult cuFuncSetAttribute(CUfunction function, int attribute, int value) {
  FAKE_ENTRY_IN_CONTEXT("cuFuncSetAttribute");
  auto *kernel = reinterpret_cast<Kernel *>(function);
  if (attribute == CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES)
    kernel->maxDynamicSharedBytes = value;
  else if (attribute == CU_FUNC_ATTRIBUTE_NON_PORTABLE_CLUSTER_SIZE_ALLOWED)
    kernel->nonPortableClusterSizeAllowed = value;
  else
    return CUDA_ERROR_INVALID_VALUE;
  return CUDA_SUCCESS;
}

CUresult cuLaunchKernel(CUfunction function, unsigned gridX, unsigned gridY,
                        unsigned gridZ, unsigned blockX, unsigned blockY,
                        unsigned blockZ, unsigned sharedMemBytes,
                        CUstream stream, void **params, void **extra) {
  FAKE_ENTRY_IN_CONTEXT("cuLaunchKernel");
  unsigned grid[3] = {gridX, gridY, gridZ};
  unsigned block[3] = {blockX, blockY, blockZ};
  return recordLaunch(function, grid, block, nullptr, sharedMemBytes, stream,
                      params, extra);
}

CUresult cuLaunchKernelEx(const CUlaunchConfig *config, CUfunction function,
                          void **params, void **extra) {
  FAKE_ENTRY_IN_CONTEXT("cuLaunchKernelEx");
  unsigned grid[3] = {config->gridDimX, config->gridDimY, config->gridDimZ};
  unsigned block[3] = {config->blockDimX, config->blockDimY, config->blockDimZ};
  unsigned cluster[3] = {1, 1, 1};
  for (unsigned i = 0; i < config->numAttrs; ++i) {
    const CUlaunchAttribute &attribute = config->attrs[i];
    if (attribute.id != CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION)
      return CUDA_ERROR_NOT_SUPPORTED;
    cluster[0] = attribute.value.clusterDim.x;
    cluster[1] = attribute.value.clusterDim.y;
    cluster[2] = attribute.value.clusterDim.z;
  }
  return recordLaunch(function, grid, block, cluster, config->sharedMemBytes,
                      config->hStream, params, extra);
}

CUresult cuStreamCreate(CUstream *stream, unsigned flags) {
  FAKE_ENTRY_IN_CONTEXT("cuStreamCreate");
  *stream = reinterpret_cast<CUstream>(new Stream{flags});
  Fake &f = fake();
  std::lock_guard<std::mutex> lock(f.mutex);
  f.lastStreamFlags = flags;
  return CUDA_SUCCESS;
}

CUresult cuStreamDestroy_v2(CUstream stream) {
  FAKE_ENTRY("cuStreamDestroy_v2");
  delete reinterpret_cast<Stream *>(stream);
  return CUDA_SUCCESS;
}

CUresult cuStreamSynchronize(CUstream /*stream*/) {
  FAKE_ENTRY("cuStreamSynchronize");
  releasePools();
  return CUDA_SUCCESS;
}

CUresult cuStreamWaitEvent(CUstream /*stream*/, CUevent event, unsigned flags) {
  FAKE_ENTRY("cuStreamWaitEvent");
  return event && flags == 0 ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

CUresult cuEventCreate(CUevent *event, unsigned flags) {
  FAKE_ENTRY_IN_CONTEXT("cuEventCreate");
  *event = reinterpret_cast<CUevent>(new Event{flags});
  Fake &f = fake();
  std::lock_guard<std::mutex> lock(f.mutex);
  f.lastEventFlags = flags;
  return CUDA_SUCCESS;
}

CUresult cuEventDestroy_v2(CUevent event) {
  FAKE_ENTRY("cuEventDestroy_v2");
  delete reinterpret_cast<Event *>(event);
  return CUDA_SUCCESS;
}

CUresult cuEventSynchronize(CUevent event) {
  FAKE_ENTRY("cuEventSynchronize");
  if (!event)
    return CUDA_ERROR_INVALID_HANDLE;
  releasePools();
  return CUDA_SUCCESS;
}

CUresult cuEventRecord(CUevent event, CUstream /*stream*/) {
  FAKE_ENTRY("cuEventRecord");
  if (!event)
    return CUDA_ERROR_INVALID_HANDLE;
  Fake &f = fake();
  std::lock_guard<std::mutex> lock(f.mutex);
  reinterpret_cast<Event *>(event)->recordedAt = f.clock++;
  return CUDA_SUCCESS;
}

/// Each record between two events counts as 1.5 ms.
CUresult cuEventElapsedTime_v2(float *milliseconds, CUevent start,
                               CUevent end) {
  FAKE_ENTRY("cuEventElapsedTime_v2");
  auto *s = reinterpret_cast<Event *>(start);
  auto *e = reinterpret_cast<Event *>(end);
  if (!s || !e || (s->flags | e->flags) & CU_EVENT_DISABLE_TIMING)
    return CUDA_ERROR_INVALID_HANDLE;
  if (s->recordedAt < 0 || e->recordedAt < 0)
    return CUDA_ERROR_INVALID_HANDLE;
  *milliseconds = 1.5f * static_cast<float>(e->recordedAt - s->recordedAt);
  return CUDA_SUCCESS;
}

CUresult cuMemAlloc_v2(CUdeviceptr *ptr, size_t bytes) {
  FAKE_ENTRY_IN_CONTEXT("cuMemAlloc_v2");
  return allocate(ptr, bytes);
}

CUresult cuMemAllocManaged(CUdeviceptr *ptr, size_t bytes, unsigned flags) {
  FAKE_ENTRY_IN_CONTEXT("cuMemAllocManaged");
  if (CUresult result = allocate(ptr, bytes))
    return result;
  Fake &f = fake();
  std::lock_guard<std::mutex> lock(f.mutex);
  f.lastManagedFlags = flags;
  return CUDA_SUCCESS;
}

/// Any allocation, a stream-ordered one too (as the driver's: back into its
/// pool).
CUresult cuMemFree_v2(CUdeviceptr ptr) {
  FAKE_ENTRY_IN_CONTEXT("cuMemFree_v2");
  return deallocate(ptr, /*streamOrdered=*/false);
}

CUresult cuMemcpy(CUdeviceptr dst, CUdeviceptr src, size_t bytes) {
  FAKE_ENTRY_IN_CONTEXT("cuMemcpy");
  std::memcpy(hostPtr(dst), hostPtr(src), bytes);
  return CUDA_SUCCESS;
}

CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void *src, size_t bytes) {
  FAKE_ENTRY_IN_CONTEXT("cuMemcpyHtoD_v2");
  std::memcpy(hostPtr(dst), src, bytes);
  return CUDA_SUCCESS;
}

CUresult cuMemcpyDtoH_v2(void *dst, CUdeviceptr src, size_t bytes) {
  FAKE_ENTRY_IN_CONTEXT("cuMemcpyDtoH_v2");
  std::memcpy(dst, hostPtr(src), bytes);
  return CUDA_SUCCESS;
}

CUresult cuMemcpyAsync(CUdeviceptr dst, CUdeviceptr src, size_t bytes,
                       CUstream /*stream*/) {
  FAKE_ENTRY_IN_CONTEXT("cuMemcpyAsync");
  std::memcpy(hostPtr(dst), hostPtr(src), bytes);
  return CUDA_SUCCESS;
}

CUresult cuMemsetD16Async(CUdeviceptr dst, unsigned short value, size_t count,
                          CUstream /*stream*/) {
  FAKE_ENTRY_IN_CONTEXT("cuMemsetD16Async");
  auto *words = static_cast<uint16_t *>(hostPtr(dst));
  for (size_t i = 0; i < count; ++i)
    words[i] = value;
  return CUDA_SUCCESS;
}

CUresult cuMemsetD32Async(CUdeviceptr dst, unsigned value, size_t count,
                          CUstream /*stream*/) {
  FAKE_ENTRY_IN_CONTEXT("cuMemsetD32Async");
  auto *words = static_cast<uint32_t *>(hostPtr(dst));
  for (size_t i = 0; i < count; ++i)
    words[i] = value;
  return CUDA_SUCCESS;
}

CUresult cuMemHostRegister_v2(void *ptr, size_t bytes, unsigned /*flags*/) {
  FAKE_ENTRY_IN_CONTEXT("cuMemHostRegister_v2");
  Fake &f = fake();
  std::lock_guard<std::mutex> lock(f.mutex);
  if (!ptr || bytes == 0 || !f.registered.emplace(ptr, bytes).second)
    return CUDA_ERROR_INVALID_VALUE;
  return CUDA_SUCCESS;
}

CUresult cuMemHostUnregister(void *ptr) {
  FAKE_ENTRY_IN_CONTEXT("cuMemHostUnregister");
  Fake &f = fake();
  std::lock_guard<std::mutex> lock(f.mutex);
  return f.registered.erase(ptr) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

/// Records the arguments and writes a recognisable descriptor: 0x7e5a in
/// the first word, then the data type, rank and global address.
CUresult cuTensorMapEncodeTiled(CUtensorMap *map, int dataType, uint32_t rank,
                                void *globalAddress, const uint64_t *globalDim,
                                const uint64_t *globalStrides,
                                const uint32_t *boxDim,
                                const uint32_t *elementStrides, int interleave,
                                int swizzle, int l2Promotion, int oobFill) {
  FAKE_ENTRY("cuTensorMapEncodeTiled");
  if (rank < 1 || rank > 5)
    return CUDA_ERROR_INVALID_VALUE;
  QlrFakeTensorMap record = {};
  record.dataType = dataType;
  record.rank = rank;
  record.globalAddress = globalAddress;
  for (uint32_t i = 0; i < rank; ++i) {
    record.globalDim[i] = globalDim[i];
    record.boxDim[i] = boxDim[i];
    record.elementStrides[i] = elementStrides[i];
    if (i + 1 < rank)
      record.globalStrides[i] = globalStrides[i];
  }
  record.interleave = interleave;
  record.swizzle = swizzle;
  record.l2Promotion = l2Promotion;
  record.oobFill = oobFill;
  *map = CUtensorMap{};
  map->opaque[0] = 0x7e5a;
  map->opaque[1] = static_cast<uint64_t>(dataType);
  map->opaque[2] = rank;
  map->opaque[3] = reinterpret_cast<uintptr_t>(globalAddress);
  Fake &f = fake();
  std::lock_guard<std::mutex> lock(f.mutex);
  f.tensorMap = record;
  f.haveTensorMap = true;
  return CUDA_SUCCESS;
}

//===----------------------------------------------------------------------===//
// The stream-ordered allocator (hideable)
//===----------------------------------------------------------------------===//

static CUresult fakeMemAllocAsync(CUdeviceptr *ptr, size_t bytes,
                                  CUstream /*stream*/) {
  FAKE_ENTRY_IN_CONTEXT("cuMemAllocAsync");
  Fake &f = fake();
  {
    std::lock_guard<std::mutex> lock(f.mutex);
    if (!f.memoryPools)
      return CUDA_ERROR_NOT_SUPPORTED;
  }
  if (CUresult result = allocate(ptr, bytes, currentOrdinal()))
    return result;
  std::lock_guard<std::mutex> lock(f.mutex);
  ++f.streamOrderedAllocations;
  return CUDA_SUCCESS;
}

/// Only stream-ordered allocations (stricter than the driver).
static CUresult fakeMemFreeAsync(CUdeviceptr ptr, CUstream /*stream*/) {
  FAKE_ENTRY_IN_CONTEXT("cuMemFreeAsync");
  return deallocate(ptr, /*streamOrdered=*/true);
}

static CUresult fakeDeviceGetDefaultMemPool(CUmemoryPool *pool,
                                            CUdevice device) {
  FAKE_ENTRY("cuDeviceGetDefaultMemPool");
  if (device < 0 || device >= deviceCount() || device >= kMaxDevices)
    return CUDA_ERROR_INVALID_DEVICE;
  Fake &f = fake();
  std::lock_guard<std::mutex> lock(f.mutex);
  if (!f.memoryPools)
    return CUDA_ERROR_NOT_SUPPORTED;
  *pool = reinterpret_cast<CUmemoryPool>(&poolTags[device]);
  return CUDA_SUCCESS;
}

/// The release threshold (a cuuint64_t) is recorded; the reuse policies
/// (CUmemPool_attribute 1 to 3, ints) are accepted and ignored.
static CUresult fakeMemPoolSetAttribute(CUmemoryPool pool, int attribute,
                                        void *value) {
  FAKE_ENTRY("cuMemPoolSetAttribute");
  int ordinal = poolOrdinal(pool);
  if (ordinal < 0 || !value)
    return CUDA_ERROR_INVALID_VALUE;
  if (attribute >= 1 && attribute <= 3)
    return CUDA_SUCCESS;
  if (attribute != CU_MEMPOOL_ATTR_RELEASE_THRESHOLD)
    return CUDA_ERROR_INVALID_VALUE;
  Fake &f = fake();
  std::lock_guard<std::mutex> lock(f.mutex);
  f.pools[ordinal].releaseThreshold = *static_cast<const uint64_t *>(value);
  return CUDA_SUCCESS;
}

static CUresult fakeMemPoolTrimTo(CUmemoryPool pool, size_t minBytesToKeep) {
  FAKE_ENTRY("cuMemPoolTrimTo");
  int ordinal = poolOrdinal(pool);
  if (ordinal < 0)
    return CUDA_ERROR_INVALID_VALUE;
  Fake &f = fake();
  std::lock_guard<std::mutex> lock(f.mutex);
  Pool &p = f.pools[ordinal];
  if (p.reserved > minBytesToKeep)
    p.reserved = std::max(p.used, minBytesToKeep);
  return CUDA_SUCCESS;
}

/// Exports `name` as an indirect function whose resolver returns `impl`, or
/// null while `name` is hidden.
#define FAKE_HIDEABLE(name, impl)                                              \
  [[gnu::visibility("hidden")]] decltype(&impl) qlrFakeResolve_##name() {      \
    return hidden(hideableIndex(#name)) ? nullptr : &impl;                     \
  }                                                                            \
  decltype(impl) name __attribute__((ifunc("qlrFakeResolve_" #name)))

FAKE_HIDEABLE(cuMemAllocAsync, fakeMemAllocAsync);
FAKE_HIDEABLE(cuMemFreeAsync, fakeMemFreeAsync);
FAKE_HIDEABLE(cuDeviceGetDefaultMemPool, fakeDeviceGetDefaultMemPool);
FAKE_HIDEABLE(cuMemPoolSetAttribute, fakeMemPoolSetAttribute);
FAKE_HIDEABLE(cuMemPoolTrimTo, fakeMemPoolTrimTo);
#undef FAKE_HIDEABLE

//===----------------------------------------------------------------------===//
// Controls
//===----------------------------------------------------------------------===//

void qlrFakeInjectFailure(const char *name, int result) {
  Fake &f = fake();
  std::lock_guard<std::mutex> lock(f.mutex);
  if (result == CUDA_SUCCESS)
    f.failures.erase(name);
  else
    f.failures[name] = result;
}

int qlrFakeCallCount(const char *name) {
  Fake &f = fake();
  std::lock_guard<std::mutex> lock(f.mutex);
  auto it = f.calls.find(name);
  return it == f.calls.end() ? 0 : it->second;
}

void qlrFakeReset() {
  Fake &f = fake();
  std::lock_guard<std::mutex> lock(f.mutex);
  f.failures.clear();
  f.calls.clear();
  f.deviceCount = 1;
  f.computeMajor = kDefaultComputeMajor;
  f.computeMinor = kDefaultComputeMinor;
  f.launches.clear();
  f.haveTensorMap = false;
  f.lastJitOptLevel = -1;
  f.lastStreamFlags = f.lastEventFlags = f.lastManagedFlags = 0;
  f.capacity = 0;
  f.memoryPools = true;
  f.streamOrderedAllocations = 0;
  for (Pool &pool : f.pools) {
    pool.releaseThreshold = 0;
    pool.reserved = pool.used;
  }
  for (std::atomic<bool> &flag : hiddenByControl)
    flag.store(false);
}

int qlrFakeHideEntryPoint(const char *name, int hide) {
  int index = hideableIndex(name);
  if (index < 0)
    return 0;
  hiddenByControl[index].store(hide != 0);
  return 1;
}

void qlrFakeSetMemoryPoolsSupported(int supported) {
  Fake &f = fake();
  std::lock_guard<std::mutex> lock(f.mutex);
  f.memoryPools = supported != 0;
}

void qlrFakeSetMemoryCapacity(size_t bytes) {
  Fake &f = fake();
  std::lock_guard<std::mutex> lock(f.mutex);
  f.capacity = bytes;
}

uint64_t qlrFakePoolReleaseThreshold(int ordinal) {
  Fake &f = fake();
  std::lock_guard<std::mutex> lock(f.mutex);
  return ordinal >= 0 && ordinal < kMaxDevices
             ? f.pools[ordinal].releaseThreshold
             : 0;
}

size_t qlrFakeDeviceBytesInUse() {
  Fake &f = fake();
  std::lock_guard<std::mutex> lock(f.mutex);
  return deviceBytesInUse(f);
}

size_t qlrFakePoolReservedBytes(int ordinal) {
  Fake &f = fake();
  std::lock_guard<std::mutex> lock(f.mutex);
  return ordinal >= 0 && ordinal < kMaxDevices ? f.pools[ordinal].reserved : 0;
}

void qlrFakeSetDeviceCount(int count) {
  Fake &f = fake();
  std::lock_guard<std::mutex> lock(f.mutex);
  f.deviceCount = count;
}

void qlrFakeSetComputeCapability(int major, int minor) {
  Fake &f = fake();
  std::lock_guard<std::mutex> lock(f.mutex);
  f.computeMajor = major;
  f.computeMinor = minor;
}

int qlrFakeLaunchCount() {
  Fake &f = fake();
  std::lock_guard<std::mutex> lock(f.mutex);
  return static_cast<int>(f.launches.size());
}

bool qlrFakeGetLaunch(int index, QlrFakeLaunch *launch) {
  Fake &f = fake();
  std::lock_guard<std::mutex> lock(f.mutex);
  if (index < 0 || index >= static_cast<int>(f.launches.size()))
    return false;
  *launch = f.launches[index];
  return true;
}

bool qlrFakeGetTensorMap(QlrFakeTensorMap *map) {
  Fake &f = fake();
  std::lock_guard<std::mutex> lock(f.mutex);
  if (f.haveTensorMap)
    *map = f.tensorMap;
  return f.haveTensorMap;
}

int qlrFakeLastJitOptLevel() {
  Fake &f = fake();
  std::lock_guard<std::mutex> lock(f.mutex);
  return f.lastJitOptLevel;
}

unsigned qlrFakeLastStreamFlags() {
  Fake &f = fake();
  std::lock_guard<std::mutex> lock(f.mutex);
  return f.lastStreamFlags;
}

unsigned qlrFakeLastEventFlags() {
  Fake &f = fake();
  std::lock_guard<std::mutex> lock(f.mutex);
  return f.lastEventFlags;
}

unsigned qlrFakeLastManagedFlags() {
  Fake &f = fake();
  std::lock_guard<std::mutex> lock(f.mutex);
  return f.lastManagedFlags;
}

int qlrFakeLiveAllocations() {
  Fake &f = fake();
  std::lock_guard<std::mutex> lock(f.mutex);
  return static_cast<int>(f.allocations.size());
}

int qlrFakeLiveModules() {
  Fake &f = fake();
  std::lock_guard<std::mutex> lock(f.mutex);
  return static_cast<int>(f.modules.size());
}

size_t qlrFakeRegisteredBytes(const void *ptr) {
  Fake &f = fake();
  std::lock_guard<std::mutex> lock(f.mutex);
  auto it = f.registered.find(ptr);
  return it == f.registered.end() ? 0 : it->second;
}

void *qlrFakeCurrentContext() { return currentContext; }

void *qlrFakePrimaryContext(int ordinal) {
  return ordinal >= 0 && ordinal < kMaxDevices ? &primaryContexts[ordinal]
                                               : nullptr;
}
} // extern "C"
