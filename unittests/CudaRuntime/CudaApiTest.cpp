//===- CudaApiTest.cpp - CudaApi.h against cuda.h ---------------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// The runtime declares the slice of the driver API it uses itself
// (lib/CudaRuntime/CudaApi.h). Where the CUDA toolkit is installed
// (QLR_HAVE_CUDA_H), this checks those declarations against cuda.h: the
// constants, the structure layouts, and the versioned names that cuda.h maps
// the plain entry points to, which the runtime looks up with dlsym.
//
//===----------------------------------------------------------------------===//

#include "CudaApi.h"

#include "gtest/gtest.h"

#ifdef QLR_HAVE_CUDA_H
#include <cuda.h>

#include <cstddef>

namespace api = qlr::cuda::api;

#define QLR_SAME_VALUE(name) static_assert(api::name == name, #name)
QLR_SAME_VALUE(CUDA_SUCCESS);
QLR_SAME_VALUE(CUDA_ERROR_INVALID_VALUE);
QLR_SAME_VALUE(CUDA_ERROR_OUT_OF_MEMORY);
QLR_SAME_VALUE(CUDA_ERROR_NOT_INITIALIZED);
QLR_SAME_VALUE(CUDA_ERROR_DEINITIALIZED);
QLR_SAME_VALUE(CUDA_ERROR_NO_DEVICE);
QLR_SAME_VALUE(CUDA_ERROR_INVALID_DEVICE);
QLR_SAME_VALUE(CUDA_ERROR_INVALID_IMAGE);
QLR_SAME_VALUE(CUDA_ERROR_INVALID_CONTEXT);
QLR_SAME_VALUE(CUDA_ERROR_INVALID_PTX);
QLR_SAME_VALUE(CUDA_ERROR_INVALID_HANDLE);
QLR_SAME_VALUE(CUDA_ERROR_NOT_FOUND);
QLR_SAME_VALUE(CUDA_ERROR_ILLEGAL_ADDRESS);
QLR_SAME_VALUE(CUDA_ERROR_LAUNCH_FAILED);
QLR_SAME_VALUE(CUDA_ERROR_NOT_SUPPORTED);
QLR_SAME_VALUE(CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT);
QLR_SAME_VALUE(CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE);
QLR_SAME_VALUE(CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH);
QLR_SAME_VALUE(CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE);
QLR_SAME_VALUE(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR);
QLR_SAME_VALUE(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR);
QLR_SAME_VALUE(CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN);
QLR_SAME_VALUE(CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED);
QLR_SAME_VALUE(CU_MEMPOOL_ATTR_RELEASE_THRESHOLD);
QLR_SAME_VALUE(CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES);
QLR_SAME_VALUE(CU_FUNC_ATTRIBUTE_NON_PORTABLE_CLUSTER_SIZE_ALLOWED);
QLR_SAME_VALUE(CU_JIT_ERROR_LOG_BUFFER);
QLR_SAME_VALUE(CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES);
QLR_SAME_VALUE(CU_JIT_OPTIMIZATION_LEVEL);
QLR_SAME_VALUE(CU_STREAM_NON_BLOCKING);
QLR_SAME_VALUE(CU_EVENT_DEFAULT);
QLR_SAME_VALUE(CU_EVENT_DISABLE_TIMING);
QLR_SAME_VALUE(CU_MEM_ATTACH_GLOBAL);
QLR_SAME_VALUE(CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION);
static_assert(api::kNumTensorMapByteDataTypes ==
                  CU_TENSOR_MAP_DATA_TYPE_TFLOAT32_FTZ + 1,
              "whole-byte tensor map data types");
#undef QLR_SAME_VALUE

static_assert(sizeof(api::CUdeviceptr) == sizeof(CUdeviceptr));
static_assert(sizeof(api::CUdevice) == sizeof(CUdevice));
static_assert(sizeof(api::CUresult) == sizeof(CUresult));
static_assert(sizeof(api::CUmemoryPool) == sizeof(CUmemoryPool));

#define QLR_SAME_FIELD(type, field)                                            \
  static_assert(offsetof(api::type, field) == offsetof(type, field),           \
                #type "::" #field)
static_assert(sizeof(api::CUlaunchAttribute) == sizeof(CUlaunchAttribute));
QLR_SAME_FIELD(CUlaunchAttribute, id);
QLR_SAME_FIELD(CUlaunchAttribute, value);
QLR_SAME_FIELD(CUlaunchAttribute, value.clusterDim.z);
static_assert(sizeof(api::CUlaunchConfig) == sizeof(CUlaunchConfig));
QLR_SAME_FIELD(CUlaunchConfig, gridDimZ);
QLR_SAME_FIELD(CUlaunchConfig, blockDimZ);
QLR_SAME_FIELD(CUlaunchConfig, sharedMemBytes);
QLR_SAME_FIELD(CUlaunchConfig, hStream);
QLR_SAME_FIELD(CUlaunchConfig, attrs);
QLR_SAME_FIELD(CUlaunchConfig, numAttrs);
static_assert(sizeof(api::CUtensorMap) == sizeof(CUtensorMap));
// cuda.h over-aligns to 128 where the compiler allows; the driver needs 64.
static_assert(alignof(api::CUtensorMap) >= 64);
#undef QLR_SAME_FIELD

namespace {
#define QLR_EXPANDED_NAME(name) QLR_STRINGIFY(name)
#define QLR_STRINGIFY(name) #name

/// The names Driver.cpp resolves are the ones cuda.h calls (with the legacy
/// default stream).
TEST(CudaApiTest, VersionedEntryPointNames) {
  EXPECT_STREQ(QLR_EXPANDED_NAME(cuDeviceTotalMem), "cuDeviceTotalMem_v2");
  EXPECT_STREQ(QLR_EXPANDED_NAME(cuModuleGetGlobal), "cuModuleGetGlobal_v2");
  EXPECT_STREQ(QLR_EXPANDED_NAME(cuMemAlloc), "cuMemAlloc_v2");
  EXPECT_STREQ(QLR_EXPANDED_NAME(cuMemFree), "cuMemFree_v2");
  EXPECT_STREQ(QLR_EXPANDED_NAME(cuMemcpyHtoD), "cuMemcpyHtoD_v2");
  EXPECT_STREQ(QLR_EXPANDED_NAME(cuMemcpyDtoH), "cuMemcpyDtoH_v2");
  EXPECT_STREQ(QLR_EXPANDED_NAME(cuStreamDestroy), "cuStreamDestroy_v2");
  EXPECT_STREQ(QLR_EXPANDED_NAME(cuEventDestroy), "cuEventDestroy_v2");
  EXPECT_STREQ(QLR_EXPANDED_NAME(cuMemHostRegister), "cuMemHostRegister_v2");
  EXPECT_STREQ(QLR_EXPANDED_NAME(cuEventElapsedTime), "cuEventElapsedTime_v2");
  EXPECT_STREQ(QLR_EXPANDED_NAME(cuMemcpy), "cuMemcpy");
  EXPECT_STREQ(QLR_EXPANDED_NAME(cuMemcpyAsync), "cuMemcpyAsync");
  EXPECT_STREQ(QLR_EXPANDED_NAME(cuMemsetD16Async), "cuMemsetD16Async");
  EXPECT_STREQ(QLR_EXPANDED_NAME(cuMemsetD32Async), "cuMemsetD32Async");
  EXPECT_STREQ(QLR_EXPANDED_NAME(cuStreamWaitEvent), "cuStreamWaitEvent");
  EXPECT_STREQ(QLR_EXPANDED_NAME(cuEventRecord), "cuEventRecord");
  EXPECT_STREQ(QLR_EXPANDED_NAME(cuLaunchKernelEx), "cuLaunchKernelEx");
  EXPECT_STREQ(QLR_EXPANDED_NAME(cuLaunchKernel), "cuLaunchKernel");
  EXPECT_STREQ(QLR_EXPANDED_NAME(cuStreamSynchronize), "cuStreamSynchronize");
  EXPECT_STREQ(QLR_EXPANDED_NAME(cuModuleLoadDataEx), "cuModuleLoadDataEx");
  EXPECT_STREQ(QLR_EXPANDED_NAME(cuMemAllocAsync), "cuMemAllocAsync");
  EXPECT_STREQ(QLR_EXPANDED_NAME(cuMemFreeAsync), "cuMemFreeAsync");
  EXPECT_STREQ(QLR_EXPANDED_NAME(cuDeviceGetDefaultMemPool),
               "cuDeviceGetDefaultMemPool");
  EXPECT_STREQ(QLR_EXPANDED_NAME(cuMemPoolSetAttribute),
               "cuMemPoolSetAttribute");
  EXPECT_STREQ(QLR_EXPANDED_NAME(cuMemPoolTrimTo), "cuMemPoolTrimTo");
}
} // namespace

#else

TEST(CudaApiTest, VersionedEntryPointNames) {
  GTEST_SKIP() << "cuda.h was not found at configure time";
}

#endif // QLR_HAVE_CUDA_H
