//===- CudaDriver.h - The CUDA runtime of GPU-compiled models ---*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// QLRCudaRuntime (lib/CudaRuntime) is the host runtime that GPU-compiled
// models link. It has two faces:
//
//  * the `mgpu*` functions that MLIR 22's `gpu-to-llvm` conversion and GPU
//    offloading translation emit calls to (upstream implements them in
//    libmlir_cuda_runtime, which links libcuda; this one loads the driver
//    with dlopen at run time, so nothing links against CUDA);
//  * the C++ interface below (namespace qlr::cuda), for the runtime around
//    the generated code: is there a usable GPU, what is it, device buffers,
//    and the error the generated code could not check.
//
// The driver is `libcuda.so.1`, or the file named by the environment variable
// QLR_CUDA_DRIVER (a testing hook: the unit tests point it at a fake driver).
// Work runs in the primary context of device 0, or of the ordinal in
// QLR_CUDA_DEVICE; the context is made current on every thread that calls in.
//
// Errors are sticky: generated code cannot check return values, so the first
// failing driver call records a message ("cuLaunchKernel(qlr_kernel_3)
// failed: CUDA_ERROR_ILLEGAL_ADDRESS (an illegal memory access was
// encountered)") and every later call is a no-op that returns null, until
// takeError() hands the message out and clears it.
//
//===----------------------------------------------------------------------===//

#ifndef QLR_RUNTIME_CUDADRIVER_H
#define QLR_RUNTIME_CUDADRIVER_H

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace qlr::cuda {

/// What the runtime needs to know about the device it runs on.
struct DeviceInfo {
  /// The device ordinal (QLR_CUDA_DEVICE or mgpuSetDefaultDevice; default 0).
  int ordinal = 0;
  /// The marketing name, e.g. "NVIDIA H100 80GB HBM3".
  std::string name;
  /// Compute capability, e.g. 9.0 for sm_90.
  int computeMajor = 0, computeMinor = 0;
  int multiprocessorCount = 0;
  /// Peak memory clock in kHz and global memory bus width in bits (0 where
  /// the driver does not report them).
  int memoryClockKHz = 0;
  int memoryBusWidthBits = 0;
  int l2CacheBytes = 0;
  /// The most shared memory one block can opt in to.
  int maxSharedMemoryPerBlockOptin = 0;
  size_t totalMemoryBytes = 0;
  /// The driver's CUDA version, e.g. 13000 for 13.0.
  int driverVersion = 0;

  /// Theoretical peak global-memory bandwidth in GB/s (10^9 bytes/s): double
  /// data rate x memory clock x bus width; 0 when either is unknown.
  double peakBandwidthGBps() const {
    return 2.0 * memoryClockKHz * 1e3 * (memoryBusWidthBits / 8.0) / 1e9;
  }
};

/// Whether the driver loads and initialises and the selected device exists.
/// Otherwise sets `why` to a sentence, e.g. "libcuda.so.1 could not be loaded
/// (<dlerror>): no NVIDIA driver on this machine" or "no CUDA device". Does
/// not touch the sticky error.
bool available(std::string &why);

/// The selected device's properties; std::nullopt (with `why`) when
/// available() is false or a query fails.
std::optional<DeviceInfo> deviceInfo(std::string &why);

/// cuMemAlloc in the runtime's context; null (and the sticky error) on
/// failure or while an error is pending.
void *deviceAlloc(size_t bytes);
/// cuMemFree; null is a no-op.
void deviceFree(void *ptr);
/// Synchronous host-to-device and device-to-host copies; false (and the
/// sticky error) on failure or while an error is pending.
bool copyToDevice(void *dst, const void *src, size_t bytes);
bool copyToHost(void *dst, const void *src, size_t bytes);
/// Waits for all work in the runtime's context (cuCtxSynchronize); false
/// (and the sticky error) when that work failed.
bool synchronize();

/// An event that records timestamps (mgpuEventCreate's do not); release it
/// with mgpuEventDestroy, record it with mgpuEventRecord.
void *createTimingEvent();
/// Milliseconds between two recorded timing events (cuEventElapsedTime),
/// waiting for `end` first; std::nullopt (and the sticky error) on failure.
std::optional<float> elapsedMilliseconds(void *start, void *end);

/// The device address of the global `name` in the first module loaded
/// through mgpuModuleLoad/mgpuModuleLoadJIT (and not unloaded) that defines
/// it, and its size in `bytes` when that is not null. Null when no module
/// defines it (not an error) or while an error is pending.
void *moduleGlobal(const char *name, size_t *bytes = nullptr);

/// Whether an error is pending.
bool hasError();
/// The pending error, cleared; std::nullopt when there is none.
std::optional<std::string> takeError();

} // namespace qlr::cuda

//===----------------------------------------------------------------------===//
// The functions generated code calls
//===----------------------------------------------------------------------===//
//
// Exactly the non-sparse functions MLIR 22 (LLVM 22.1) emits calls to: from
// `gpu-to-llvm` (mlir/lib/Conversion/GPUCommon/GPUToLLVMConversion.cpp), from
// the translation of gpu.binary and gpu.launch_func to LLVM IR
// (mlir/lib/Target/LLVMIR/Dialect/GPU/SelectObjectAttr.cpp) and from
// `convert-nvgpu-to-nvvm` (nvgpu.tma.create.descriptor). The CUDA handles
// are opaque pointers here. Integer widths follow the emitted declarations;
// where the IR passes an i8 or i16 without an extension attribute
// (mgpuMemAlloc's flag, mgpuMemset16's value), the parameter is declared
// 32 bits wide and truncated, so the register bits above the value, which
// the caller leaves unspecified, cannot leak in.

extern "C" {
#define QLR_MGPU_API __attribute__((visibility("default")))

/// Loads a cubin or fatbin (cuModuleLoadData); null on failure.
QLR_MGPU_API void *mgpuModuleLoad(void *data, size_t gpuBlobSize);
/// JIT-compiles null-terminated PTX at `optLevel` (cuModuleLoadDataEx); the
/// JIT's error log goes into the sticky error.
QLR_MGPU_API void *mgpuModuleLoadJIT(void *data, int32_t optLevel);
QLR_MGPU_API void mgpuModuleUnload(void *module);
QLR_MGPU_API void *mgpuModuleGetFunction(void *module, const char *name);
/// cuLaunchKernel; dynamic shared memory above 48 KiB is opted in first.
/// `paramsCount` (the number of entries in `params`) is informational.
QLR_MGPU_API void mgpuLaunchKernel(void *function, intptr_t gridX,
                                   intptr_t gridY, intptr_t gridZ,
                                   intptr_t blockX, intptr_t blockY,
                                   intptr_t blockZ, int32_t smem, void *stream,
                                   void **params, void **extra,
                                   size_t paramsCount);
/// cuLaunchKernelEx with a cluster-dimension attribute.
QLR_MGPU_API void mgpuLaunchClusterKernel(void *function, intptr_t clusterX,
                                          intptr_t clusterY, intptr_t clusterZ,
                                          intptr_t gridX, intptr_t gridY,
                                          intptr_t gridZ, intptr_t blockX,
                                          intptr_t blockY, intptr_t blockZ,
                                          int32_t smem, void *stream,
                                          void **params, void **extra);
/// A non-blocking stream.
QLR_MGPU_API void *mgpuStreamCreate();
QLR_MGPU_API void mgpuStreamDestroy(void *stream);
QLR_MGPU_API void mgpuStreamSynchronize(void *stream);
QLR_MGPU_API void mgpuStreamWaitEvent(void *stream, void *event);
/// An event without timing (CU_EVENT_DISABLE_TIMING).
QLR_MGPU_API void *mgpuEventCreate();
QLR_MGPU_API void mgpuEventDestroy(void *event);
QLR_MGPU_API void mgpuEventSynchronize(void *event);
QLR_MGPU_API void mgpuEventRecord(void *event, void *stream);
/// cuMemAlloc, or cuMemAllocManaged when the low byte of `isHostShared` is
/// non-zero (`gpu.alloc host_shared`). A device allocation is stream-ordered
/// instead where the device supports memory pools and QLR_CUDA_ALLOCATOR is
/// not "sync": cuMemAllocAsync on `stream` from the device's default pool,
/// which keeps freed memory cached, and mgpuMemFree frees it with
/// cuMemFreeAsync on its stream (lib/CudaRuntime/Allocator.h).
QLR_MGPU_API void *mgpuMemAlloc(uint64_t sizeBytes, void *stream,
                                uint32_t isHostShared);
QLR_MGPU_API void mgpuMemFree(void *ptr, void *stream);
/// cuMemcpyAsync (unified addressing: either side may be host memory).
QLR_MGPU_API void mgpuMemcpy(void *dst, void *src, size_t sizeBytes,
                             void *stream);
/// cuMemsetD16Async with the low 16 bits of `value`.
QLR_MGPU_API void mgpuMemset16(void *dst, uint32_t value, size_t count,
                               void *stream);
QLR_MGPU_API void mgpuMemset32(void *dst, uint32_t value, size_t count,
                               void *stream);
/// Page-locks the dense memref behind a ranked descriptor
/// {allocated, aligned, offset, sizes[rank], strides[rank]}
/// (cuMemHostRegister) and unregisters it again.
QLR_MGPU_API void mgpuMemHostRegisterMemRef(int64_t rank, void *descriptor,
                                            int64_t elementSizeBytes);
QLR_MGPU_API void mgpuMemHostUnregisterMemRef(int64_t rank, void *descriptor,
                                              int64_t elementSizeBytes);
/// Selects the device later calls use (its primary context is retained on
/// first use).
QLR_MGPU_API void mgpuSetDefaultDevice(int32_t device);
/// Encodes a TMA descriptor (cuTensorMapEncodeTiled) for the memref behind
/// a ranked descriptor and returns a device copy of it. The enum operands
/// are CUtensorMap{DataType,Interleave,Swizzle,L2promotion,FloatOOBfill}.
QLR_MGPU_API void *
mgpuTensorMapEncodeTiledMemref(int64_t tensorRank, void *rankedDescriptor,
                               int64_t tensorDataType, int64_t interleave,
                               int64_t swizzle, int64_t l2Promotion,
                               int64_t oobFill, int64_t *inputBoxDims);

#undef QLR_MGPU_API
} // extern "C"

#endif // QLR_RUNTIME_CUDADRIVER_H
