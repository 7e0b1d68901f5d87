//===- Allocator.cpp - Device memory allocation -----------------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// See Allocator.h. Like Driver.cpp's, the state is one heap object that is
// never destroyed (model libraries free memory from global destructors).
//
//===----------------------------------------------------------------------===//

#include "Allocator.h"

#include "Driver.h"

#include <atomic>
#include <mutex>
#include <unordered_set>

using namespace qlr::cuda::api;
using namespace qlr::cuda::detail;

namespace {
/// How a device allocates for mgpuMemAlloc.
enum Mode : int { kUndecided, kSynchronous, kStreamOrdered };

struct Device {
  std::atomic<int> mode{kUndecided};
  /// The default memory pool, when the mode is kStreamOrdered (written
  /// before the mode is).
  CUmemoryPool pool = nullptr;
};

struct State {
  std::mutex setupMutex;
  Device devices[kMaxDevices];

  /// The live stream-ordered allocations.
  std::mutex allocationsMutex;
  std::unordered_set<CUdeviceptr> streamOrdered;
};

State &state() {
  static State *s = new State();
  return *s;
}

CUdeviceptr devicePtr(const void *ptr) {
  return static_cast<CUdeviceptr>(reinterpret_cast<uintptr_t>(ptr));
}

void *hostPtr(CUdeviceptr ptr) {
  return reinterpret_cast<void *>(static_cast<uintptr_t>(ptr));
}

std::string bytes(uint64_t count) {
  return "(" + std::to_string(count) + " bytes)";
}

/// Whether device `ordinal` can allocate stream-ordered: it supports memory
/// pools, and its default pool, which cuMemAllocAsync allocates from, keeps
/// the memory freed into it (release threshold UINT64_MAX). Failures are not
/// errors: the device allocates synchronously then.
Mode setUp(const LoadedDriver &d, int ordinal, CUmemoryPool &pool) {
  if (!d.streamOrderedAllocator)
    return kSynchronous;
  const DriverApi &a = d.api;
  CUdevice device = 0;
  int supported = 0;
  if (a.cuDeviceGet(&device, ordinal) != CUDA_SUCCESS ||
      a.cuDeviceGetAttribute(&supported,
                             CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED,
                             device) != CUDA_SUCCESS ||
      !supported)
    return kSynchronous;
  // The reuse policies keep their defaults (Allocator.h).
  CUmemoryPool defaultPool = nullptr;
  uint64_t threshold = UINT64_MAX;
  if (a.cuDeviceGetDefaultMemPool(&defaultPool, device) != CUDA_SUCCESS ||
      a.cuMemPoolSetAttribute(defaultPool, CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
                              &threshold) != CUDA_SUCCESS)
    return kSynchronous;
  pool = defaultPool;
  return kStreamOrdered;
}

/// The selected device's pool when it allocates stream-ordered, else null.
/// An undecided device is set up when `decide`, else taken as synchronous.
CUmemoryPool streamOrderedPool(bool decide) {
  int ordinal = selectedOrdinal();
  if (ordinal < 0 || ordinal >= kMaxDevices)
    return nullptr;
  State &s = state();
  Device &device = s.devices[ordinal];
  int mode = device.mode.load(std::memory_order_acquire);
  if (mode == kUndecided && decide) {
    std::lock_guard<std::mutex> lock(s.setupMutex);
    mode = device.mode.load(std::memory_order_acquire);
    if (mode == kUndecided) {
      mode = setUp(driver(), ordinal, device.pool);
      device.mode.store(mode, std::memory_order_release);
    }
  }
  return mode == kStreamOrdered ? device.pool : nullptr;
}

/// Whether `ptr` was a stream-ordered allocation, which it no longer is.
bool forgetStreamOrdered(CUdeviceptr ptr) {
  State &s = state();
  std::lock_guard<std::mutex> lock(s.allocationsMutex);
  return s.streamOrdered.erase(ptr) != 0;
}
} // namespace

void *qlr::cuda::detail::allocate(const DriverApi &a, uint64_t size,
                                  CUstream stream, bool hostShared,
                                  bool streamOrdered) {
  CUdeviceptr ptr = 0;
  if (hostShared) {
    CUresult result = a.cuMemAllocManaged(&ptr, size, CU_MEM_ATTACH_GLOBAL);
    if (result != CUDA_SUCCESS) {
      recordFailure(result, "cuMemAllocManaged" + bytes(size));
      return nullptr;
    }
    return hostPtr(ptr);
  }
  if (streamOrdered && streamOrderedPool(/*decide=*/true)) {
    CUresult result = a.cuMemAllocAsync(&ptr, size, stream);
    if (result != CUDA_SUCCESS) {
      recordFailure(result, "cuMemAllocAsync" + bytes(size));
      return nullptr;
    }
    if (ptr) {
      State &s = state();
      std::lock_guard<std::mutex> lock(s.allocationsMutex);
      s.streamOrdered.insert(ptr);
    }
    return hostPtr(ptr);
  }
  CUresult result = a.cuMemAlloc(&ptr, size);
  if (result == CUDA_ERROR_OUT_OF_MEMORY) {
    // The pool may hold memory that earlier stream-ordered allocations freed
    // into it: give it back to the driver and try again.
    if (CUmemoryPool pool = streamOrderedPool(/*decide=*/false))
      if (a.cuMemPoolTrimTo(pool, 0) == CUDA_SUCCESS)
        result = a.cuMemAlloc(&ptr, size);
  }
  if (result != CUDA_SUCCESS) {
    recordFailure(result, "cuMemAlloc" + bytes(size));
    return nullptr;
  }
  return hostPtr(ptr);
}

void qlr::cuda::detail::release(const DriverApi &a, void *ptr,
                                CUstream stream) {
  if (!ptr)
    return;
  CUdeviceptr device = devicePtr(ptr);
  if (forgetStreamOrdered(device))
    releaseFailed(a.cuMemFreeAsync(device, stream), "cuMemFreeAsync");
  else
    releaseFailed(a.cuMemFree(device), "cuMemFree");
}

void qlr::cuda::detail::resetAllocatorForTesting() {
  State &s = state();
  {
    std::lock_guard<std::mutex> lock(s.setupMutex);
    for (Device &device : s.devices) {
      device.pool = nullptr;
      device.mode.store(kUndecided);
    }
  }
  std::lock_guard<std::mutex> lock(s.allocationsMutex);
  s.streamOrdered.clear();
}
