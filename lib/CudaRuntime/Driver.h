//===- Driver.h - Driver loading, context and sticky errors -----*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// The process-wide state behind QLRCudaRuntime: the driver, loaded once with
// dlopen; the primary context of the selected device, made current on the
// calling thread; the sticky error; and the registry of loaded modules and
// kernel names that error messages and moduleGlobal() use.
//
//===----------------------------------------------------------------------===//

#ifndef QLR_LIB_CUDARUNTIME_DRIVER_H
#define QLR_LIB_CUDARUNTIME_DRIVER_H

#include "CudaApi.h"

#include <string>
#include <vector>

namespace qlr::cuda::detail {

/// Device ordinals the runtime keeps a primary context for.
constexpr int kMaxDevices = 64;

/// The driver as loaded: the entry points, or why it cannot be used.
struct LoadedDriver {
  api::DriverApi api = {};
  /// Empty when the driver loaded, initialised and has a device.
  std::string error;
  int deviceCount = 0;
  /// The library file that was opened (libcuda.so.1 or QLR_CUDA_DRIVER).
  std::string path;
  /// Whether mgpuMemAlloc may use the stream-ordered allocator (Allocator.h):
  /// the driver has its entry points and QLR_CUDA_ALLOCATOR is not "sync".
  /// Each device must support memory pools too.
  bool streamOrderedAllocator = false;
};

/// The driver, loaded and initialised (cuInit) on first use.
const LoadedDriver &driver();

/// Entry to every operation: null when an error is pending or the driver is
/// unusable (recording why); otherwise the driver's entry points, with the
/// selected device's primary context current on this thread.
const api::DriverApi *enter();

/// Whether the driver is usable and the selected device exists; otherwise
/// why not. Records nothing.
bool usable(std::string &why);

/// The selected device ordinal (0 before the driver has loaded, unless
/// mgpuSetDefaultDevice chose one).
int selectedOrdinal();
void selectOrdinal(int ordinal);

/// Records `message` as the sticky error unless one is pending.
void recordError(const std::string &message);
/// Records "<call> failed: <NAME> (<description>)<context>".
void recordFailure(api::CUresult result, const std::string &call,
                   const std::string &context = {});
/// Whether `result` is success; otherwise records the failure of `call`.
inline bool check(api::CUresult result, const char *call) {
  if (result == api::CUDA_SUCCESS)
    return true;
  recordFailure(result, call);
  return false;
}
/// Whether a release call (a free, unload or destroy) failed, recording the
/// failure; a driver that has shut down already (model libraries release
/// their resources from global destructors) is not a failure.
inline bool releaseFailed(api::CUresult result, const char *call) {
  if (result == api::CUDA_SUCCESS || result == api::CUDA_ERROR_DEINITIALIZED)
    return false;
  recordFailure(result, call);
  return true;
}
/// "CUDA_ERROR_X (description)", or "CUDA error <n>" for a code the driver
/// does not name.
std::string describe(api::CUresult result);

bool hasError();
/// The pending error, cleared; empty when there was none.
bool takeError(std::string &message);

/// The modules loaded through mgpuModuleLoad/mgpuModuleLoadJIT, oldest first.
void addModule(api::CUmodule module);
void removeModule(api::CUmodule module);
std::vector<api::CUmodule> modules();

/// Kernel names by handle (from mgpuModuleGetFunction), for error messages.
void nameFunction(api::CUfunction function, const char *name);
/// The name of `function`, or "<unknown kernel>".
std::string functionName(api::CUfunction function);
/// Remembers the last kernel launched, which asynchronous errors (reported
/// by a later synchronisation) most likely come from.
void noteLaunch(api::CUfunction function);
/// " (the last kernel launched was <name>)", or empty before any launch.
std::string lastLaunchContext();

/// Forgets everything (driver, contexts, error, registry, allocator state) so
/// that the next call loads the driver again, with the environment as it is
/// then. The previous driver library stays mapped. For the unit tests only:
/// not thread-safe against concurrent calls into the runtime.
void resetForTesting();

} // namespace qlr::cuda::detail

#endif // QLR_LIB_CUDARUNTIME_DRIVER_H
