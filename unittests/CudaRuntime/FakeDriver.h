//===- FakeDriver.h - Controls of the fake CUDA driver ----------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// libqlr_fake_cuda.so implements the driver entry points QLRCudaRuntime
// loads (lib/CudaRuntime/CudaApi.h) over host memory, so that the runtime can
// be tested on machines without a GPU: "device" memory is malloc'ed, copies
// are memcpy, streams and events are plain objects, and launches are
// recorded, not run. The tests point QLR_CUDA_DRIVER at it and reach these
// controls with dlsym.
//
// A module image is null-terminated text: the line "qlr-fake-module", then
// "global <name> <bytes>" (zero-filled device memory) and
// "kernel <name> <param bytes>..." (one size, at most 8, per parameter)
// lines. An image that starts with "qlr-fake-bad-ptx" fails to JIT with an
// error log. Real GPU binaries load too, so that compiled models run on the
// fake (their kernels are recorded, not run): a cubin (ELF; its kernels are
// its global functions, with unknown parameters) must be for the fake
// device's major compute capability and no newer minor one, else
// CUDA_ERROR_NO_BINARY_FOR_GPU; PTX (its kernels are its `.entry`
// functions, with their parameters) must target no newer architecture than
// the device, else the JIT fails with CUDA_ERROR_INVALID_PTX and a log.
//
// The device reports compute capability 9.0, and its name is
// "QLR Fake GPU <ordinal>".
//
// The stream-ordered allocator (cuMemAllocAsync, cuMemFreeAsync,
// cuDeviceGetDefaultMemPool, cuMemPoolSetAttribute, cuMemPoolTrimTo) is
// modelled as far as the runtime relies on it: each device has a default
// pool that keeps the memory freed into it until a trim gives it back, or a
// stream, event or context synchronisation gives back what exceeds the
// pool's release threshold (the one pool attribute modelled; the reuse
// policies are accepted and ignored); cuMemFreeAsync takes only
// stream-ordered allocations. Device memory is unlimited unless
// qlrFakeSetMemoryCapacity limits it, counting what the pools hold. These
// five entry points can be hidden, as if the driver were older than CUDA
// 11.2: they are GNU indirect functions, which dlsym finds only while they
// are not hidden.
//
// Environment variables, read when the driver is first called, reach the
// controls from processes that cannot call them (the lit tests run model
// libraries through the C runner):
//
//   QLR_FAKE_CUDA_COMPUTE=<major>.<minor>  the compute capability (9.0)
//   QLR_FAKE_CUDA_FAIL=<entry>=<CUresult>[,...]  qlrFakeInjectFailure for
//                                          each pair, e.g.
//                                          cuLaunchKernel=700
//   QLR_FAKE_CUDA_MEMORY_POOLS=0           the devices do not support memory
//                                          pools, as with
//                                          qlrFakeSetMemoryPoolsSupported(0)
//   QLR_FAKE_CUDA_HIDE=<entry>[,...]       hides those of the stream-ordered
//                                          allocator's entry points (read at
//                                          each dlsym of them)
//   QLR_FAKE_CUDA_REPORT=<file>            at exit, writes what the process
//                                          did to <file>: "launches <n>",
//                                          then "kernel <name> <launches>"
//                                          per kernel by name, "module loads
//                                          <n>", "live allocations <n>" (of
//                                          every kind), "stream-ordered
//                                          allocations <n>" (successful
//                                          cuMemAllocAsync calls) and "pool
//                                          <ordinal> release threshold <n>"
//                                          for each pool whose threshold was
//                                          set
//
// Every entry point that works on memory, modules, streams, events or
// launches fails with CUDA_ERROR_INVALID_CONTEXT unless the calling thread
// has a current context.
//
//===----------------------------------------------------------------------===//

#ifndef QLR_UNITTESTS_CUDARUNTIME_FAKEDRIVER_H
#define QLR_UNITTESTS_CUDARUNTIME_FAKEDRIVER_H

#include <cstddef>
#include <cstdint>

/// One recorded kernel launch.
struct QlrFakeLaunch {
  char kernel[64];
  unsigned grid[3], block[3];
  /// 0x0x0 for cuLaunchKernel.
  unsigned cluster[3];
  unsigned sharedMemBytes;
  void *stream;
  /// The kernel's parameter count (from its module) and the first eight
  /// parameters' values, zero-extended.
  int numParams;
  uint64_t params[8];
  /// CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES and
  /// NON_PORTABLE_CLUSTER_SIZE_ALLOWED as set on the kernel at launch time.
  int maxDynamicSharedBytes;
  int nonPortableClusterSizeAllowed;
  /// Whether `extra` was null.
  bool extraWasNull;
};

/// The arguments of the last cuTensorMapEncodeTiled.
struct QlrFakeTensorMap {
  int dataType;
  uint32_t rank;
  void *globalAddress;
  uint64_t globalDim[5], globalStrides[4];
  uint32_t boxDim[5], elementStrides[5];
  int interleave, swizzle, l2Promotion, oobFill;
};

extern "C" {
/// Makes every later call of the entry point `name` (its exported name, e.g.
/// "cuMemAlloc_v2") return `result`, without doing anything; 0 restores it.
void qlrFakeInjectFailure(const char *name, int result);
/// How many times `name` was called since the last reset.
int qlrFakeCallCount(const char *name);
/// Clears failures, counts, records, the device count (back to 1), the
/// compute capability (back to 9.0), the memory capacity (unlimited), memory
/// pool support (on), hidden entry points, and the pools' release thresholds
/// (0) and cached memory; allocations and modules stay.
void qlrFakeReset();
/// The number of devices cuDeviceGetCount reports.
void qlrFakeSetDeviceCount(int count);
/// The compute capability every device reports (and loads binaries for).
void qlrFakeSetComputeCapability(int major, int minor);

int qlrFakeLaunchCount();
/// The launch at `index` (0 is the oldest); false when there is none.
bool qlrFakeGetLaunch(int index, QlrFakeLaunch *launch);
bool qlrFakeGetTensorMap(QlrFakeTensorMap *map);

/// The optimisation level of the last JIT load, or -1.
int qlrFakeLastJitOptLevel();
/// Flags of the last stream and event created, and of the last managed
/// allocation.
unsigned qlrFakeLastStreamFlags();
unsigned qlrFakeLastEventFlags();
unsigned qlrFakeLastManagedFlags();
/// Live allocations (cuMemAlloc, cuMemAllocManaged and cuMemAllocAsync) and
/// modules.
int qlrFakeLiveAllocations();
int qlrFakeLiveModules();
/// The size of the page-locked range that starts at `ptr`, or 0.
size_t qlrFakeRegisteredBytes(const void *ptr);
/// Hides (or shows again, `hide` 0) one of the stream-ordered allocator's
/// entry points from later lookups; 0 for an entry point that cannot be
/// hidden.
int qlrFakeHideEntryPoint(const char *name, int hide);
/// CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED of every device (1); without
/// them, the pool entry points fail with CUDA_ERROR_NOT_SUPPORTED.
void qlrFakeSetMemoryPoolsSupported(int supported);
/// Limits the device memory of all devices together (0: unlimited).
void qlrFakeSetMemoryCapacity(size_t bytes);
/// The device memory that allocations and pools hold, all devices together.
size_t qlrFakeDeviceBytesInUse();
/// The release threshold of device `ordinal`'s default pool, and the bytes
/// it holds (allocated from it, or freed into it and cached).
uint64_t qlrFakePoolReleaseThreshold(int ordinal);
size_t qlrFakePoolReservedBytes(int ordinal);
/// The calling thread's current context.
void *qlrFakeCurrentContext();
/// The primary context of device `ordinal`.
void *qlrFakePrimaryContext(int ordinal);
}

#endif // QLR_UNITTESTS_CUDARUNTIME_FAKEDRIVER_H
