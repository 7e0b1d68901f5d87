//===- CudaDriver.cpp - The C++ interface of the CUDA runtime ---*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#include "qlr/Runtime/CudaDriver.h"

#include "Allocator.h"
#include "Driver.h"

using namespace qlr::cuda;
using namespace qlr::cuda::api;
using namespace qlr::cuda::detail;

namespace {
CUdeviceptr devicePtr(const void *ptr) {
  return static_cast<CUdeviceptr>(reinterpret_cast<uintptr_t>(ptr));
}

std::string bytes(size_t count) { return std::to_string(count) + " bytes"; }
} // namespace

bool qlr::cuda::available(std::string &why) { return usable(why); }

std::optional<DeviceInfo> qlr::cuda::deviceInfo(std::string &why) {
  if (!usable(why))
    return std::nullopt;
  const DriverApi &a = driver().api;
  auto failed = [&](CUresult result, const std::string &call) {
    why = call + " failed: " + describe(result);
    return std::nullopt;
  };
  DeviceInfo info;
  info.ordinal = selectedOrdinal();
  CUdevice device = 0;
  if (CUresult result = a.cuDeviceGet(&device, info.ordinal))
    return failed(result, "cuDeviceGet");
  char name[256] = {};
  if (CUresult result = a.cuDeviceGetName(name, sizeof(name) - 1, device))
    return failed(result, "cuDeviceGetName");
  info.name = name;
  struct {
    int attribute;
    int *value;
  } attributes[] = {
      {CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, &info.computeMajor},
      {CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, &info.computeMinor},
      {CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, &info.multiprocessorCount},
      {CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE, &info.memoryClockKHz},
      {CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH, &info.memoryBusWidthBits},
      {CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE, &info.l2CacheBytes},
      {CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
       &info.maxSharedMemoryPerBlockOptin},
  };
  for (const auto &query : attributes)
    if (CUresult result =
            a.cuDeviceGetAttribute(query.value, query.attribute, device))
      return failed(result, "cuDeviceGetAttribute(" +
                                std::to_string(query.attribute) + ")");
  if (CUresult result = a.cuDeviceTotalMem(&info.totalMemoryBytes, device))
    return failed(result, "cuDeviceTotalMem");
  if (CUresult result = a.cuDriverGetVersion(&info.driverVersion))
    return failed(result, "cuDriverGetVersion");
  return info;
}

// Synchronous: these buffers live long, and stay out of the memory pool
// (Allocator.h).
void *qlr::cuda::deviceAlloc(size_t bytes) {
  const DriverApi *a = enter();
  if (!a)
    return nullptr;
  return allocate(*a, bytes, /*stream=*/nullptr, /*hostShared=*/false,
                  /*streamOrdered=*/false);
}

void qlr::cuda::deviceFree(void *ptr) {
  if (!ptr)
    return;
  if (const DriverApi *a = enter())
    release(*a, ptr, /*stream=*/nullptr);
}

bool qlr::cuda::copyToDevice(void *dst, const void *src, size_t count) {
  const DriverApi *a = enter();
  if (!a)
    return false;
  if (count == 0)
    return true;
  CUresult result = a->cuMemcpyHtoD(devicePtr(dst), src, count);
  if (result == CUDA_SUCCESS)
    return true;
  recordFailure(result, "cuMemcpyHtoD(" + bytes(count) + ")",
                lastLaunchContext());
  return false;
}

bool qlr::cuda::copyToHost(void *dst, const void *src, size_t count) {
  const DriverApi *a = enter();
  if (!a)
    return false;
  if (count == 0)
    return true;
  CUresult result = a->cuMemcpyDtoH(dst, devicePtr(src), count);
  if (result == CUDA_SUCCESS)
    return true;
  recordFailure(result, "cuMemcpyDtoH(" + bytes(count) + ")",
                lastLaunchContext());
  return false;
}

bool qlr::cuda::synchronize() {
  const DriverApi *a = enter();
  if (!a)
    return false;
  CUresult result = a->cuCtxSynchronize();
  if (result == CUDA_SUCCESS)
    return true;
  recordFailure(result, "cuCtxSynchronize", lastLaunchContext());
  return false;
}

void *qlr::cuda::createTimingEvent() {
  const DriverApi *a = enter();
  if (!a)
    return nullptr;
  CUevent event = nullptr;
  if (!check(a->cuEventCreate(&event, CU_EVENT_DEFAULT), "cuEventCreate"))
    return nullptr;
  return event;
}

std::optional<float> qlr::cuda::elapsedMilliseconds(void *start, void *end) {
  const DriverApi *a = enter();
  if (!a)
    return std::nullopt;
  if (!a->cuEventElapsedTime) {
    recordError("cuEventElapsedTime is not in this driver");
    return std::nullopt;
  }
  CUresult result = a->cuEventSynchronize(static_cast<CUevent>(end));
  if (result != CUDA_SUCCESS) {
    recordFailure(result, "cuEventSynchronize", lastLaunchContext());
    return std::nullopt;
  }
  float milliseconds = 0;
  if (!check(a->cuEventElapsedTime(&milliseconds, static_cast<CUevent>(start),
                                   static_cast<CUevent>(end)),
             "cuEventElapsedTime"))
    return std::nullopt;
  return milliseconds;
}

void *qlr::cuda::moduleGlobal(const char *name, size_t *bytes) {
  const DriverApi *a = enter();
  if (!a)
    return nullptr;
  for (CUmodule module : modules()) {
    CUdeviceptr ptr = 0;
    size_t size = 0;
    CUresult result = a->cuModuleGetGlobal(&ptr, &size, module, name);
    if (result == CUDA_ERROR_NOT_FOUND)
      continue;
    if (result != CUDA_SUCCESS) {
      recordFailure(result, std::string("cuModuleGetGlobal(") + name + ")");
      return nullptr;
    }
    if (bytes)
      *bytes = size;
    return reinterpret_cast<void *>(static_cast<uintptr_t>(ptr));
  }
  return nullptr;
}

bool qlr::cuda::hasError() { return detail::hasError(); }

std::optional<std::string> qlr::cuda::takeError() {
  std::string message;
  if (!detail::takeError(message))
    return std::nullopt;
  return message;
}
