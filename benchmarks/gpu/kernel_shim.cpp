//===- kernel_shim.cpp - Entry points of the kernel benchmark ---*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// Linked into the kernel benchmark's library (benchmarks/gpu/kernel_cases.py
// build) next to the generated `_mlir_ciface_linear_*` functions and
// QLRCudaRuntime, so that Python (ctypes) can read what the generated code
// cannot report itself: the runtime's sticky error, whether a driver and
// device are there, and the device's theoretical memory bandwidth.
//
//===----------------------------------------------------------------------===//

#include "qlr/Runtime/CudaDriver.h"

#include <cstring>
#include <string>

#define QLRBENCH_API extern "C" __attribute__((visibility("default")))

namespace {
/// Copies `text` into `buffer` (NUL-terminated, truncated to `capacity`).
void copyOut(const std::string &text, char *buffer, size_t capacity) {
  if (!buffer || capacity == 0)
    return;
  size_t n = text.size() < capacity - 1 ? text.size() : capacity - 1;
  std::memcpy(buffer, text.data(), n);
  buffer[n] = '\0';
}
} // namespace

/// 1 and the pending error in `buffer` (cleared), or 0 when none is pending.
QLRBENCH_API int qlrbench_take_error(char *buffer, size_t capacity) {
  std::optional<std::string> error = qlr::cuda::takeError();
  if (!error)
    return 0;
  copyOut(*error, buffer, capacity);
  return 1;
}

/// 1 when the driver loads and the device exists; else 0 and why in
/// `buffer`.
QLRBENCH_API int qlrbench_available(char *buffer, size_t capacity) {
  std::string why;
  if (qlr::cuda::available(why))
    return 1;
  copyOut(why, buffer, capacity);
  return 0;
}

/// The device's theoretical peak bandwidth in GB/s (memory clock x bus
/// width), its name in `name`, SM count and L2 bytes; -1 when unknown.
QLRBENCH_API double qlrbench_device(char *name, size_t capacity,
                                    int *multiprocessors, int *l2Bytes) {
  std::string why;
  std::optional<qlr::cuda::DeviceInfo> info = qlr::cuda::deviceInfo(why);
  if (!info) {
    copyOut(why, name, capacity);
    return -1.0;
  }
  copyOut(info->name, name, capacity);
  if (multiprocessors)
    *multiprocessors = info->multiprocessorCount;
  if (l2Bytes)
    *l2Bytes = info->l2CacheBytes;
  return info->peakBandwidthGBps();
}

/// cuCtxSynchronize in the runtime's context: 1 on success, 0 on failure
/// (the error is then pending).
QLRBENCH_API int qlrbench_synchronize() {
  return qlr::cuda::synchronize() ? 1 : 0;
}
