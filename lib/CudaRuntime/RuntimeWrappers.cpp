//===- RuntimeWrappers.cpp - mgpu* functions for generated code -*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// QLR's implementation of the runtime interface that MLIR 22 lowers GPU host
// code to (upstream: mlir/lib/ExecutionEngine/CudaRuntimeWrappers.cpp), over
// the driver that Driver.cpp loads at run time. Every function first goes
// through enter(): while an error is pending, or when there is no usable
// driver, it does nothing and returns null. A failing driver call records
// the sticky error instead of printing it.
//
// Differences from upstream, all deliberate: the context is made current
// rather than pushed and popped around each call; dynamic shared memory is
// opted in only above the 48 KiB default; dense-stride and launch-geometry
// violations become errors instead of assertions or wrapped values; the TMA
// descriptor addresses the memref's first element (aligned pointer plus
// offset; upstream ignores the offset); device memory comes from the
// stream-ordered allocator where the device has it (Allocator.h; upstream
// allocates with cuMemAlloc); and a release call that finds CUDA already
// deinitialised at exit is not an error.
//
//===----------------------------------------------------------------------===//

#include "qlr/Runtime/CudaDriver.h"

#include "Allocator.h"
#include "Driver.h"

#include <climits>

using namespace qlr::cuda::api;
using namespace qlr::cuda::detail;

namespace {
CUdeviceptr devicePtr(const void *ptr) {
  return static_cast<CUdeviceptr>(reinterpret_cast<uintptr_t>(ptr));
}

/// Launch dimensions: each of x, y, z in [1, UINT_MAX].
struct Dims {
  unsigned x, y, z;
};

bool toDims(intptr_t x, intptr_t y, intptr_t z, Dims &dims) {
  auto fits = [](intptr_t v) {
    return v >= 1 && static_cast<uintmax_t>(v) <= UINT_MAX;
  };
  if (!fits(x) || !fits(y) || !fits(z))
    return false;
  dims = {static_cast<unsigned>(x), static_cast<unsigned>(y),
          static_cast<unsigned>(z)};
  return true;
}

std::string str(intptr_t x, intptr_t y, intptr_t z) {
  return std::to_string(x) + "x" + std::to_string(y) + "x" + std::to_string(z);
}

/// " [grid AxBxC, block DxExF, N bytes of dynamic shared memory]".
/// A cluster launch names its cluster first ("cluster AxBxC, ").
std::string launchContext(intptr_t gridX, intptr_t gridY, intptr_t gridZ,
                          intptr_t blockX, intptr_t blockY, intptr_t blockZ,
                          int32_t smem, const std::string &cluster = {}) {
  return " [" + cluster + "grid " + str(gridX, gridY, gridZ) + ", block " +
         str(blockX, blockY, blockZ) + ", " + std::to_string(smem) +
         " bytes of dynamic shared memory]";
}

/// Checks the launch geometry and opts the kernel in to more than 48 KiB of
/// dynamic shared memory where it asks for that; false (with the error
/// recorded) when the launch must not happen.
bool prepareLaunch(const DriverApi &a, const char *call, CUfunction function,
                   intptr_t gridX, intptr_t gridY, intptr_t gridZ,
                   intptr_t blockX, intptr_t blockY, intptr_t blockZ,
                   int32_t smem, Dims &grid, Dims &block) {
  if (!toDims(gridX, gridY, gridZ, grid) ||
      !toDims(blockX, blockY, blockZ, block) || smem < 0) {
    recordError(
        std::string(call) + "(" + functionName(function) +
        ") was not attempted: launch dimensions out of range" +
        launchContext(gridX, gridY, gridZ, blockX, blockY, blockZ, smem));
    return false;
  }
  if (smem > kDefaultMaxDynamicSharedBytes) {
    CUresult result = a.cuFuncSetAttribute(
        function, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, smem);
    if (result != CUDA_SUCCESS) {
      recordFailure(result, "cuFuncSetAttribute(" + functionName(function) +
                                ", MAX_DYNAMIC_SHARED_SIZE_BYTES=" +
                                std::to_string(smem) + ")");
      return false;
    }
  }
  return true;
}

/// The start of a ranked memref descriptor; sizes[rank] and strides[rank]
/// follow.
struct MemRefHeader {
  char *allocated;
  char *aligned;
  int64_t offset;
};

const int64_t *memrefSizes(const void *descriptor) {
  return reinterpret_cast<const int64_t *>(
      static_cast<const MemRefHeader *>(descriptor) + 1);
}

char *memrefStart(const void *descriptor, int64_t elementSizeBytes) {
  const auto *header = static_cast<const MemRefHeader *>(descriptor);
  return header->aligned + header->offset * elementSizeBytes;
}
} // namespace

//===----------------------------------------------------------------------===//
// Modules and launches
//===----------------------------------------------------------------------===//

extern "C" void *mgpuModuleLoad(void *data, size_t /*gpuBlobSize*/) {
  const DriverApi *a = enter();
  if (!a)
    return nullptr;
  CUmodule module = nullptr;
  if (!check(a->cuModuleLoadData(&module, data), "cuModuleLoadData"))
    return nullptr;
  addModule(module);
  return module;
}

extern "C" void *mgpuModuleLoadJIT(void *data, int32_t optLevel) {
  const DriverApi *a = enter();
  if (!a)
    return nullptr;
  char log[4096] = {};
  int options[] = {CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES,
                   CU_JIT_OPTIMIZATION_LEVEL};
  void *values[] = {log, reinterpret_cast<void *>(uintptr_t{sizeof(log)}),
                    reinterpret_cast<void *>(static_cast<intptr_t>(optLevel))};
  CUmodule module = nullptr;
  CUresult result = a->cuModuleLoadDataEx(&module, data, 3, options, values);
  if (result != CUDA_SUCCESS) {
    log[sizeof(log) - 1] = '\0';
    recordFailure(result,
                  "cuModuleLoadDataEx(PTX, O" + std::to_string(optLevel) + ")",
                  *log ? std::string(": ") + log : std::string());
    return nullptr;
  }
  addModule(module);
  return module;
}

extern "C" void mgpuModuleUnload(void *module) {
  if (!module)
    return;
  const DriverApi *a = enter();
  if (!a)
    return;
  removeModule(static_cast<CUmodule>(module));
  releaseFailed(a->cuModuleUnload(static_cast<CUmodule>(module)),
                "cuModuleUnload");
}

extern "C" void *mgpuModuleGetFunction(void *module, const char *name) {
  const DriverApi *a = enter();
  if (!a)
    return nullptr;
  CUfunction function = nullptr;
  CUresult result =
      a->cuModuleGetFunction(&function, static_cast<CUmodule>(module), name);
  if (result != CUDA_SUCCESS) {
    recordFailure(result, std::string("cuModuleGetFunction(") +
                              (name ? name : "<null>") + ")");
    return nullptr;
  }
  nameFunction(function, name);
  return function;
}

extern "C" void mgpuLaunchKernel(void *function, intptr_t gridX, intptr_t gridY,
                                 intptr_t gridZ, intptr_t blockX,
                                 intptr_t blockY, intptr_t blockZ, int32_t smem,
                                 void *stream, void **params, void **extra,
                                 size_t /*paramsCount*/) {
  const DriverApi *a = enter();
  if (!a)
    return;
  auto *fn = static_cast<CUfunction>(function);
  Dims grid, block;
  if (!prepareLaunch(*a, "cuLaunchKernel", fn, gridX, gridY, gridZ, blockX,
                     blockY, blockZ, smem, grid, block))
    return;
  noteLaunch(fn);
  CUresult result =
      a->cuLaunchKernel(fn, grid.x, grid.y, grid.z, block.x, block.y, block.z,
                        static_cast<unsigned>(smem),
                        static_cast<CUstream>(stream), params, extra);
  if (result != CUDA_SUCCESS)
    recordFailure(
        result, "cuLaunchKernel(" + functionName(fn) + ")",
        launchContext(gridX, gridY, gridZ, blockX, blockY, blockZ, smem));
}

extern "C" void mgpuLaunchClusterKernel(void *function, intptr_t clusterX,
                                        intptr_t clusterY, intptr_t clusterZ,
                                        intptr_t gridX, intptr_t gridY,
                                        intptr_t gridZ, intptr_t blockX,
                                        intptr_t blockY, intptr_t blockZ,
                                        int32_t smem, void *stream,
                                        void **params, void **extra) {
  const DriverApi *a = enter();
  if (!a)
    return;
  auto *fn = static_cast<CUfunction>(function);
  if (!a->cuLaunchKernelEx) {
    recordError("cuLaunchKernelEx(" + functionName(fn) +
                ") is not in this driver: thread block clusters need CUDA "
                "11.8 or newer");
    return;
  }
  Dims cluster, grid, block;
  if (!toDims(clusterX, clusterY, clusterZ, cluster)) {
    recordError("cuLaunchKernelEx(" + functionName(fn) +
                ") was not attempted: cluster dimensions " +
                str(clusterX, clusterY, clusterZ) + " out of range");
    return;
  }
  if (!prepareLaunch(*a, "cuLaunchKernelEx", fn, gridX, gridY, gridZ, blockX,
                     blockY, blockZ, smem, grid, block))
    return;
  // More than 8 blocks per cluster is a non-portable size.
  if (uint64_t{cluster.x} * cluster.y * cluster.z > 8) {
    CUresult result = a->cuFuncSetAttribute(
        fn, CU_FUNC_ATTRIBUTE_NON_PORTABLE_CLUSTER_SIZE_ALLOWED, 1);
    if (result != CUDA_SUCCESS) {
      recordFailure(result, "cuFuncSetAttribute(" + functionName(fn) +
                                ", NON_PORTABLE_CLUSTER_SIZE_ALLOWED)");
      return;
    }
  }
  CUlaunchAttribute attribute = {};
  attribute.id = CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION;
  attribute.value.clusterDim.x = cluster.x;
  attribute.value.clusterDim.y = cluster.y;
  attribute.value.clusterDim.z = cluster.z;
  CUlaunchConfig config = {};
  config.gridDimX = grid.x;
  config.gridDimY = grid.y;
  config.gridDimZ = grid.z;
  config.blockDimX = block.x;
  config.blockDimY = block.y;
  config.blockDimZ = block.z;
  config.sharedMemBytes = static_cast<unsigned>(smem);
  config.hStream = static_cast<CUstream>(stream);
  config.attrs = &attribute;
  config.numAttrs = 1;
  noteLaunch(fn);
  CUresult result = a->cuLaunchKernelEx(&config, fn, params, extra);
  if (result != CUDA_SUCCESS)
    recordFailure(
        result, "cuLaunchKernelEx(" + functionName(fn) + ")",
        launchContext(gridX, gridY, gridZ, blockX, blockY, blockZ, smem,
                      "cluster " + str(clusterX, clusterY, clusterZ) + ", "));
}

//===----------------------------------------------------------------------===//
// Streams and events
//===----------------------------------------------------------------------===//

extern "C" void *mgpuStreamCreate() {
  const DriverApi *a = enter();
  if (!a)
    return nullptr;
  CUstream stream = nullptr;
  if (!check(a->cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING),
             "cuStreamCreate"))
    return nullptr;
  return stream;
}

extern "C" void mgpuStreamDestroy(void *stream) {
  if (!stream)
    return;
  if (const DriverApi *a = enter())
    releaseFailed(a->cuStreamDestroy(static_cast<CUstream>(stream)),
                  "cuStreamDestroy");
}

extern "C" void mgpuStreamSynchronize(void *stream) {
  const DriverApi *a = enter();
  if (!a)
    return;
  CUresult result = a->cuStreamSynchronize(static_cast<CUstream>(stream));
  if (result != CUDA_SUCCESS)
    recordFailure(result, "cuStreamSynchronize", lastLaunchContext());
}

extern "C" void mgpuStreamWaitEvent(void *stream, void *event) {
  if (const DriverApi *a = enter())
    check(a->cuStreamWaitEvent(static_cast<CUstream>(stream),
                               static_cast<CUevent>(event), /*flags=*/0),
          "cuStreamWaitEvent");
}

extern "C" void *mgpuEventCreate() {
  const DriverApi *a = enter();
  if (!a)
    return nullptr;
  CUevent event = nullptr;
  if (!check(a->cuEventCreate(&event, CU_EVENT_DISABLE_TIMING),
             "cuEventCreate"))
    return nullptr;
  return event;
}

extern "C" void mgpuEventDestroy(void *event) {
  if (!event)
    return;
  if (const DriverApi *a = enter())
    releaseFailed(a->cuEventDestroy(static_cast<CUevent>(event)),
                  "cuEventDestroy");
}

extern "C" void mgpuEventSynchronize(void *event) {
  const DriverApi *a = enter();
  if (!a)
    return;
  CUresult result = a->cuEventSynchronize(static_cast<CUevent>(event));
  if (result != CUDA_SUCCESS)
    recordFailure(result, "cuEventSynchronize", lastLaunchContext());
}

extern "C" void mgpuEventRecord(void *event, void *stream) {
  if (const DriverApi *a = enter())
    check(a->cuEventRecord(static_cast<CUevent>(event),
                           static_cast<CUstream>(stream)),
          "cuEventRecord");
}

//===----------------------------------------------------------------------===//
// Memory
//===----------------------------------------------------------------------===//

extern "C" void *mgpuMemAlloc(uint64_t sizeBytes, void *stream,
                              uint32_t isHostShared) {
  const DriverApi *a = enter();
  if (!a)
    return nullptr;
  return allocate(*a, sizeBytes, static_cast<CUstream>(stream),
                  /*hostShared=*/(isHostShared & 0xff) != 0,
                  /*streamOrdered=*/true);
}

extern "C" void mgpuMemFree(void *ptr, void *stream) {
  if (!ptr)
    return;
  if (const DriverApi *a = enter())
    release(*a, ptr, static_cast<CUstream>(stream));
}

extern "C" void mgpuMemcpy(void *dst, void *src, size_t sizeBytes,
                           void *stream) {
  const DriverApi *a = enter();
  if (!a || sizeBytes == 0)
    return;
  CUresult result = a->cuMemcpyAsync(devicePtr(dst), devicePtr(src), sizeBytes,
                                     static_cast<CUstream>(stream));
  if (result != CUDA_SUCCESS)
    recordFailure(result,
                  "cuMemcpyAsync(" + std::to_string(sizeBytes) + " bytes)",
                  lastLaunchContext());
}

extern "C" void mgpuMemset16(void *dst, uint32_t value, size_t count,
                             void *stream) {
  const DriverApi *a = enter();
  if (!a || count == 0)
    return;
  check(a->cuMemsetD16Async(devicePtr(dst), static_cast<uint16_t>(value), count,
                            static_cast<CUstream>(stream)),
        "cuMemsetD16Async");
}

extern "C" void mgpuMemset32(void *dst, uint32_t value, size_t count,
                             void *stream) {
  const DriverApi *a = enter();
  if (!a || count == 0)
    return;
  check(a->cuMemsetD32Async(devicePtr(dst), value, count,
                            static_cast<CUstream>(stream)),
        "cuMemsetD32Async");
}

extern "C" void mgpuMemHostRegisterMemRef(int64_t rank, void *descriptor,
                                          int64_t elementSizeBytes) {
  const DriverApi *a = enter();
  if (!a)
    return;
  // Only dense row-major memrefs: the strides must be the running products
  // of the sizes.
  const int64_t *sizes = memrefSizes(descriptor);
  const int64_t *strides = sizes + rank;
  int64_t elements = 1;
  for (int64_t i = rank - 1; i >= 0; --i) {
    if (sizes[i] != 1 && strides[i] != elements) {
      recordError("mgpuMemHostRegisterMemRef: only dense memrefs can be "
                  "registered (dimension " +
                  std::to_string(i) + " has stride " +
                  std::to_string(strides[i]) + ", not " +
                  std::to_string(elements) + ")");
      return;
    }
    elements *= sizes[i];
  }
  if (elements == 0)
    return;
  size_t bytes = static_cast<size_t>(elements * elementSizeBytes);
  check(a->cuMemHostRegister(memrefStart(descriptor, elementSizeBytes), bytes,
                             /*flags=*/0),
        "cuMemHostRegister");
}

extern "C" void mgpuMemHostUnregisterMemRef(int64_t rank, void *descriptor,
                                            int64_t elementSizeBytes) {
  const DriverApi *a = enter();
  if (!a)
    return;
  const int64_t *sizes = memrefSizes(descriptor);
  for (int64_t i = 0; i < rank; ++i)
    if (sizes[i] == 0)
      return; // Nothing was registered.
  releaseFailed(
      a->cuMemHostUnregister(memrefStart(descriptor, elementSizeBytes)),
      "cuMemHostUnregister");
}

extern "C" void mgpuSetDefaultDevice(int32_t device) { selectOrdinal(device); }

//===----------------------------------------------------------------------===//
// TMA descriptors (nvgpu.tma.create.descriptor)
//===----------------------------------------------------------------------===//

extern "C" void *
mgpuTensorMapEncodeTiledMemref(int64_t tensorRank, void *rankedDescriptor,
                               int64_t tensorDataType, int64_t interleave,
                               int64_t swizzle, int64_t l2Promotion,
                               int64_t oobFill, int64_t *inputBoxDims) {
  const DriverApi *a = enter();
  if (!a)
    return nullptr;
  if (!a->cuTensorMapEncodeTiled) {
    recordError("cuTensorMapEncodeTiled is not in this driver: TMA "
                "descriptors need CUDA 12 or newer");
    return nullptr;
  }
  if (tensorRank < 1 || tensorRank > 5 || tensorDataType < 0 ||
      tensorDataType >= kNumTensorMapByteDataTypes) {
    recordError("cuTensorMapEncodeTiled was not attempted: rank " +
                std::to_string(tensorRank) + " and data type " +
                std::to_string(tensorDataType) +
                " are not a supported rank (1 to 5) and element type");
    return nullptr;
  }
  // Bytes per element of each CUtensorMapDataType, UINT8 ... TFLOAT32_FTZ.
  static constexpr int64_t elementBytes[kNumTensorMapByteDataTypes] = {
      1, 2, 4, 4, 8, 8, 2, 4, 8, 2, 4, 4, 4};
  int64_t elementSize = elementBytes[tensorDataType];
  const int64_t *sizes = memrefSizes(rankedDescriptor);
  const int64_t *strides = sizes + tensorRank;
  // The driver wants the innermost dimension first and the strides of the
  // outer dimensions in bytes.
  uint64_t globalDim[5] = {1, 1, 1, 1, 1}, globalStrides[5] = {0, 0, 0, 0, 0};
  uint32_t boxDim[5] = {1, 1, 1, 1, 1}, elementStrides[5] = {1, 1, 1, 1, 1};
  for (int64_t i = 0; i < tensorRank; ++i) {
    globalDim[i] = static_cast<uint64_t>(sizes[tensorRank - 1 - i]);
    boxDim[i] = static_cast<uint32_t>(inputBoxDims[tensorRank - 1 - i]);
  }
  for (int64_t i = 0; i + 1 < tensorRank; ++i)
    globalStrides[i] =
        static_cast<uint64_t>(strides[tensorRank - 2 - i] * elementSize);

  CUtensorMap map = {};
  CUresult result = a->cuTensorMapEncodeTiled(
      &map, static_cast<int>(tensorDataType), static_cast<uint32_t>(tensorRank),
      memrefStart(rankedDescriptor, elementSize), globalDim, globalStrides,
      boxDim, elementStrides, static_cast<int>(interleave),
      static_cast<int>(swizzle), static_cast<int>(l2Promotion),
      static_cast<int>(oobFill));
  if (result != CUDA_SUCCESS) {
    recordFailure(result, "cuTensorMapEncodeTiled");
    return nullptr;
  }
  CUdeviceptr deviceMap = 0;
  if (!check(a->cuMemAlloc(&deviceMap, sizeof(map)), "cuMemAlloc"))
    return nullptr;
  if (!check(a->cuMemcpyHtoD(deviceMap, &map, sizeof(map)), "cuMemcpyHtoD")) {
    a->cuMemFree(deviceMap);
    return nullptr;
  }
  return reinterpret_cast<void *>(static_cast<uintptr_t>(deviceMap));
}
