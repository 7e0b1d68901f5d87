//===- Driver.cpp - Driver loading, context and sticky errors ---*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// The state is one heap object that is never destroyed: model libraries
// load their GPU modules from global constructors and unload them from global
// destructors, which may run before or after this file's static objects
// would be constructed or destroyed.
//
//===----------------------------------------------------------------------===//

#include "Driver.h"

#include "Allocator.h"

#include <dlfcn.h>

#include <atomic>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>

using namespace qlr::cuda;
using namespace qlr::cuda::api;
using namespace qlr::cuda::detail;

namespace {
/// The ordinal before QLR_CUDA_DEVICE or mgpuSetDefaultDevice chose one.
constexpr int kUnset = INT_MIN;

struct State {
  std::mutex loadMutex;
  std::atomic<LoadedDriver *> driver{nullptr};

  /// Chosen by QLR_CUDA_DEVICE when the driver loads, or by
  /// mgpuSetDefaultDevice.
  std::atomic<int> ordinal{kUnset};
  std::mutex contextMutex;
  std::atomic<CUcontext> contexts[kMaxDevices];

  std::mutex errorMutex;
  std::atomic<bool> errorPending{false};
  std::string error;

  std::mutex registryMutex;
  std::vector<CUmodule> modules;
  std::unordered_map<CUfunction, std::string> functionNames;
  std::atomic<CUfunction> lastLaunched{nullptr};

  State() {
    for (std::atomic<CUcontext> &context : contexts)
      context.store(nullptr, std::memory_order_relaxed);
  }
};

State &state() {
  static State *s = new State();
  return *s;
}

template <typename Fn> bool resolve(void *library, const char *name, Fn &fn) {
  fn = reinterpret_cast<Fn>(dlsym(library, name));
  return fn != nullptr;
}

std::string describe(const DriverApi &a, CUresult result) {
  const char *name = nullptr, *text = nullptr;
  if (a.cuGetErrorName && a.cuGetErrorName(result, &name) != CUDA_SUCCESS)
    name = nullptr;
  if (a.cuGetErrorString && a.cuGetErrorString(result, &text) != CUDA_SUCCESS)
    text = nullptr;
  std::string message =
      name ? std::string(name) : "CUDA error " + std::to_string(result);
  if (text)
    message += std::string(" (") + text + ")";
  return message;
}

/// Parses QLR_CUDA_DEVICE; false when it is set but not an ordinal.
bool deviceFromEnvironment(int &ordinal, std::string &error) {
  ordinal = 0;
  const char *env = std::getenv("QLR_CUDA_DEVICE");
  if (!env || !*env)
    return true;
  char *end = nullptr;
  long value = std::strtol(env, &end, 10);
  if (*end || value < 0 || value >= kMaxDevices) {
    error = std::string("QLR_CUDA_DEVICE='") + env +
            "' is not a device ordinal (0 to " +
            std::to_string(kMaxDevices - 1) + ")";
    return false;
  }
  ordinal = static_cast<int>(value);
  return true;
}

/// Parses QLR_CUDA_ALLOCATOR: "sync" forbids the stream-ordered allocator,
/// "async" (the default) allows it; false for anything else.
bool allocatorFromEnvironment(bool &synchronous, std::string &error) {
  synchronous = false;
  const char *env = std::getenv("QLR_CUDA_ALLOCATOR");
  if (!env || !*env || std::strcmp(env, "async") == 0)
    return true;
  if (std::strcmp(env, "sync") == 0) {
    synchronous = true;
    return true;
  }
  error = std::string("QLR_CUDA_ALLOCATOR='") + env +
          "' is not an allocator (sync, or async: the default)";
  return false;
}

/// Opens the driver, resolves the entry points and initialises it.
LoadedDriver *load(State &s) {
  auto *d = new LoadedDriver();
  const char *override = std::getenv("QLR_CUDA_DRIVER");
  bool overridden = override && *override;
  d->path = overridden ? override : "libcuda.so.1";
  void *library = dlopen(d->path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!library) {
    const char *reason = dlerror();
    d->error = d->path + " could not be loaded (" +
               (reason ? reason : "unknown reason") + ")";
    d->error += overridden ? " (the file QLR_CUDA_DRIVER names)"
                           : ": no NVIDIA driver on this machine";
    return d;
  }

  DriverApi &a = d->api;
  const char *missing = nullptr;
  auto require = [&](const char *name, auto &fn) {
    if (!resolve(library, name, fn) && !missing)
      missing = name;
  };
  require("cuInit", a.cuInit);
  require("cuDriverGetVersion", a.cuDriverGetVersion);
  require("cuGetErrorName", a.cuGetErrorName);
  require("cuGetErrorString", a.cuGetErrorString);
  require("cuDeviceGet", a.cuDeviceGet);
  require("cuDeviceGetCount", a.cuDeviceGetCount);
  require("cuDeviceGetName", a.cuDeviceGetName);
  require("cuDeviceGetAttribute", a.cuDeviceGetAttribute);
  require("cuDeviceTotalMem_v2", a.cuDeviceTotalMem);
  require("cuDevicePrimaryCtxRetain", a.cuDevicePrimaryCtxRetain);
  require("cuCtxSetCurrent", a.cuCtxSetCurrent);
  require("cuCtxGetCurrent", a.cuCtxGetCurrent);
  require("cuCtxSynchronize", a.cuCtxSynchronize);
  require("cuModuleLoadData", a.cuModuleLoadData);
  require("cuModuleLoadDataEx", a.cuModuleLoadDataEx);
  require("cuModuleUnload", a.cuModuleUnload);
  require("cuModuleGetFunction", a.cuModuleGetFunction);
  require("cuModuleGetGlobal_v2", a.cuModuleGetGlobal);
  require("cuFuncSetAttribute", a.cuFuncSetAttribute);
  require("cuLaunchKernel", a.cuLaunchKernel);
  require("cuStreamCreate", a.cuStreamCreate);
  require("cuStreamDestroy_v2", a.cuStreamDestroy);
  require("cuStreamSynchronize", a.cuStreamSynchronize);
  require("cuStreamWaitEvent", a.cuStreamWaitEvent);
  require("cuEventCreate", a.cuEventCreate);
  require("cuEventDestroy_v2", a.cuEventDestroy);
  require("cuEventSynchronize", a.cuEventSynchronize);
  require("cuEventRecord", a.cuEventRecord);
  require("cuMemAlloc_v2", a.cuMemAlloc);
  require("cuMemAllocManaged", a.cuMemAllocManaged);
  require("cuMemFree_v2", a.cuMemFree);
  require("cuMemcpy", a.cuMemcpy);
  require("cuMemcpyHtoD_v2", a.cuMemcpyHtoD);
  require("cuMemcpyDtoH_v2", a.cuMemcpyDtoH);
  require("cuMemcpyAsync", a.cuMemcpyAsync);
  require("cuMemsetD16Async", a.cuMemsetD16Async);
  require("cuMemsetD32Async", a.cuMemsetD32Async);
  require("cuMemHostRegister_v2", a.cuMemHostRegister);
  require("cuMemHostUnregister", a.cuMemHostUnregister);
  if (missing) {
    d->error = d->path + " is not a usable CUDA driver: it has no " + missing;
    return d;
  }
  if (!resolve(library, "cuEventElapsedTime_v2", a.cuEventElapsedTime))
    resolve(library, "cuEventElapsedTime", a.cuEventElapsedTime);
  resolve(library, "cuLaunchKernelEx", a.cuLaunchKernelEx);
  resolve(library, "cuTensorMapEncodeTiled", a.cuTensorMapEncodeTiled);
  // The stream-ordered allocator (Allocator.h) is used only with all of its
  // entry points.
  resolve(library, "cuMemAllocAsync", a.cuMemAllocAsync);
  resolve(library, "cuMemFreeAsync", a.cuMemFreeAsync);
  resolve(library, "cuDeviceGetDefaultMemPool", a.cuDeviceGetDefaultMemPool);
  resolve(library, "cuMemPoolSetAttribute", a.cuMemPoolSetAttribute);
  resolve(library, "cuMemPoolTrimTo", a.cuMemPoolTrimTo);
  bool streamOrdered = a.cuMemAllocAsync && a.cuMemFreeAsync &&
                       a.cuDeviceGetDefaultMemPool && a.cuMemPoolSetAttribute &&
                       a.cuMemPoolTrimTo;

  if (CUresult result = a.cuInit(0)) {
    d->error = "cuInit failed: " + describe(a, result);
    if (result == CUDA_ERROR_NO_DEVICE)
      d->error += ": no CUDA device";
    return d;
  }
  if (CUresult result = a.cuDeviceGetCount(&d->deviceCount)) {
    d->error = "cuDeviceGetCount failed: " + describe(a, result);
    return d;
  }
  if (d->deviceCount <= 0) {
    d->error = "no CUDA device";
    return d;
  }
  bool synchronous = false;
  if (!allocatorFromEnvironment(synchronous, d->error))
    return d;
  d->streamOrderedAllocator = streamOrdered && !synchronous;
  // mgpuSetDefaultDevice before the first use wins over the environment.
  if (s.ordinal.load(std::memory_order_acquire) == kUnset) {
    int ordinal = 0;
    if (!deviceFromEnvironment(ordinal, d->error))
      return d;
    int unset = kUnset;
    s.ordinal.compare_exchange_strong(unset, ordinal);
  }
  return d;
}

std::string noSuchDevice(int ordinal, int count) {
  return "CUDA device " + std::to_string(ordinal) +
         " does not exist (the machine has " + std::to_string(count) + ")";
}

/// The selected device's primary context, retained on first use.
CUcontext primaryContext(State &s, const LoadedDriver &d) {
  int ordinal = selectedOrdinal();
  if (ordinal < 0 || ordinal >= d.deviceCount || ordinal >= kMaxDevices) {
    recordError(noSuchDevice(ordinal, d.deviceCount));
    return nullptr;
  }
  if (CUcontext context = s.contexts[ordinal].load(std::memory_order_acquire))
    return context;
  std::lock_guard<std::mutex> lock(s.contextMutex);
  if (CUcontext context = s.contexts[ordinal].load(std::memory_order_acquire))
    return context;
  CUdevice device = 0;
  CUcontext context = nullptr;
  if (!check(d.api.cuDeviceGet(&device, ordinal), "cuDeviceGet") ||
      !check(d.api.cuDevicePrimaryCtxRetain(&context, device),
             "cuDevicePrimaryCtxRetain"))
    return nullptr;
  s.contexts[ordinal].store(context, std::memory_order_release);
  return context;
}
} // namespace

const LoadedDriver &qlr::cuda::detail::driver() {
  State &s = state();
  if (LoadedDriver *d = s.driver.load(std::memory_order_acquire))
    return *d;
  std::lock_guard<std::mutex> lock(s.loadMutex);
  if (!s.driver.load(std::memory_order_acquire))
    s.driver.store(load(s), std::memory_order_release);
  return *s.driver.load(std::memory_order_acquire);
}

const DriverApi *qlr::cuda::detail::enter() {
  State &s = state();
  if (s.errorPending.load(std::memory_order_acquire))
    return nullptr;
  const LoadedDriver &d = driver();
  if (!d.error.empty()) {
    recordError(d.error);
    return nullptr;
  }
  CUcontext context = primaryContext(s, d);
  if (!context)
    return nullptr;
  CUcontext current = nullptr;
  if (!check(d.api.cuCtxGetCurrent(&current), "cuCtxGetCurrent"))
    return nullptr;
  if (current != context &&
      !check(d.api.cuCtxSetCurrent(context), "cuCtxSetCurrent"))
    return nullptr;
  return &d.api;
}

bool qlr::cuda::detail::usable(std::string &why) {
  const LoadedDriver &d = driver();
  if (!d.error.empty()) {
    why = d.error;
    return false;
  }
  int ordinal = selectedOrdinal();
  if (ordinal < 0 || ordinal >= d.deviceCount || ordinal >= kMaxDevices) {
    why = noSuchDevice(ordinal, d.deviceCount);
    return false;
  }
  return true;
}

int qlr::cuda::detail::selectedOrdinal() {
  int ordinal = state().ordinal.load(std::memory_order_acquire);
  return ordinal == kUnset ? 0 : ordinal;
}

void qlr::cuda::detail::selectOrdinal(int ordinal) {
  state().ordinal.store(ordinal, std::memory_order_release);
}

void qlr::cuda::detail::recordError(const std::string &message) {
  State &s = state();
  std::lock_guard<std::mutex> lock(s.errorMutex);
  if (s.errorPending.load(std::memory_order_relaxed))
    return;
  s.error = message;
  s.errorPending.store(true, std::memory_order_release);
}

void qlr::cuda::detail::recordFailure(CUresult result, const std::string &call,
                                      const std::string &context) {
  recordError(call + " failed: " + describe(result) + context);
}

std::string qlr::cuda::detail::describe(CUresult result) {
  return ::describe(driver().api, result);
}

bool qlr::cuda::detail::hasError() {
  return state().errorPending.load(std::memory_order_acquire);
}

bool qlr::cuda::detail::takeError(std::string &message) {
  State &s = state();
  std::lock_guard<std::mutex> lock(s.errorMutex);
  if (!s.errorPending.load(std::memory_order_relaxed))
    return false;
  message = std::move(s.error);
  s.error.clear();
  s.errorPending.store(false, std::memory_order_release);
  return true;
}

void qlr::cuda::detail::addModule(CUmodule module) {
  State &s = state();
  std::lock_guard<std::mutex> lock(s.registryMutex);
  s.modules.push_back(module);
}

void qlr::cuda::detail::removeModule(CUmodule module) {
  State &s = state();
  std::lock_guard<std::mutex> lock(s.registryMutex);
  for (auto it = s.modules.begin(); it != s.modules.end(); ++it) {
    if (*it == module) {
      s.modules.erase(it);
      return;
    }
  }
}

std::vector<CUmodule> qlr::cuda::detail::modules() {
  State &s = state();
  std::lock_guard<std::mutex> lock(s.registryMutex);
  return s.modules;
}

void qlr::cuda::detail::nameFunction(CUfunction function, const char *name) {
  State &s = state();
  std::lock_guard<std::mutex> lock(s.registryMutex);
  std::string &entry = s.functionNames[function];
  if (entry != name)
    entry = name;
}

std::string qlr::cuda::detail::functionName(CUfunction function) {
  State &s = state();
  std::lock_guard<std::mutex> lock(s.registryMutex);
  auto it = s.functionNames.find(function);
  return it == s.functionNames.end() ? "<unknown kernel>" : it->second;
}

void qlr::cuda::detail::noteLaunch(CUfunction function) {
  state().lastLaunched.store(function, std::memory_order_relaxed);
}

std::string qlr::cuda::detail::lastLaunchContext() {
  CUfunction function = state().lastLaunched.load(std::memory_order_relaxed);
  if (!function)
    return {};
  return " (the last kernel launched was " + functionName(function) + ")";
}

void qlr::cuda::detail::resetForTesting() {
  State &s = state();
  resetAllocatorForTesting();
  delete s.driver.exchange(nullptr);
  s.ordinal.store(kUnset);
  for (std::atomic<CUcontext> &context : s.contexts)
    context.store(nullptr);
  std::string ignored;
  takeError(ignored);
  std::lock_guard<std::mutex> lock(s.registryMutex);
  s.modules.clear();
  s.functionNames.clear();
  s.lastLaunched.store(nullptr);
}
