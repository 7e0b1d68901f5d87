//===- CudaRuntimeTest.cpp - QLRCudaRuntime without a GPU -------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// The runtime against a driver that cannot be loaded, and against the fake
// driver (FakeDriver.h) that QLR_CUDA_DRIVER points it at. One test runs on
// the real driver where the machine has one.
//
//===----------------------------------------------------------------------===//

#include "qlr/Runtime/CudaDriver.h"

#include "Driver.h"
#include "FakeDriver.h"
#include "FakeDriverControl.h"

#include "gtest/gtest.h"

#include <dlfcn.h>

#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

using namespace qlr;

namespace {
/// Whether `text` starts with / contains `part`, for EXPECT_TRUE.
::testing::AssertionResult startsWith(const std::string &text,
                                      const std::string &part) {
  if (text.compare(0, part.size(), part) == 0)
    return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "'" << text << "' does not start with '" << part << "'";
}
::testing::AssertionResult contains(const std::string &text,
                                    const std::string &part) {
  if (text.find(part) != std::string::npos)
    return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "'" << text << "' does not contain '" << part << "'";
}

/// Points the runtime at `driverPath` (null: the real libcuda.so.1) and
/// forgets the previously loaded driver, error and modules.
void useDriver(const char *driverPath) {
  if (driverPath)
    setenv("QLR_CUDA_DRIVER", driverPath, 1);
  else
    unsetenv("QLR_CUDA_DRIVER");
  cuda::detail::resetForTesting();
}

using qlr::testing::pendingError;

//===----------------------------------------------------------------------===//
// No driver
//===----------------------------------------------------------------------===//

constexpr const char *kMissingDriver = "/nonexistent/qlr-test/libcuda.so.1";

TEST(CudaRuntimeNoDriverTest, AvailableNamesTheFile) {
  useDriver(kMissingDriver);
  std::string why;
  EXPECT_FALSE(cuda::available(why));
  EXPECT_TRUE(
      startsWith(why, std::string(kMissingDriver) + " could not be loaded ("));
  EXPECT_TRUE(contains(why, "QLR_CUDA_DRIVER"));
  EXPECT_FALSE(cuda::deviceInfo(why));
  // A query is not an error of the generated code.
  EXPECT_FALSE(cuda::hasError());
}

TEST(CudaRuntimeNoDriverTest, EveryFunctionIsANoOp) {
  useDriver(kMissingDriver);
  char image[] = "qlr-fake-module\n";
  std::vector<uint32_t> host(16, 7), other(16, 9);
  void *args[] = {host.data()};
  struct {
    void *allocated, *aligned;
    int64_t offset, sizes[1], strides[1];
  } memref = {host.data(), host.data(), 0, {16}, {1}};
  int64_t box[] = {16};

  EXPECT_EQ(mgpuModuleLoad(image, sizeof(image)), nullptr);
  EXPECT_EQ(mgpuModuleLoadJIT(image, 2), nullptr);
  mgpuModuleUnload(reinterpret_cast<void *>(0x10));
  EXPECT_EQ(mgpuModuleGetFunction(nullptr, "k"), nullptr);
  mgpuLaunchKernel(nullptr, 1, 1, 1, 1, 1, 1, 0, nullptr, args, nullptr, 1);
  mgpuLaunchClusterKernel(nullptr, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, nullptr, args,
                          nullptr);
  EXPECT_EQ(mgpuStreamCreate(), nullptr);
  mgpuStreamDestroy(reinterpret_cast<void *>(0x10));
  mgpuStreamSynchronize(nullptr);
  mgpuStreamWaitEvent(nullptr, nullptr);
  EXPECT_EQ(mgpuEventCreate(), nullptr);
  mgpuEventDestroy(reinterpret_cast<void *>(0x10));
  mgpuEventSynchronize(nullptr);
  mgpuEventRecord(nullptr, nullptr);
  EXPECT_EQ(mgpuMemAlloc(64, nullptr, 0), nullptr);
  EXPECT_EQ(mgpuMemAlloc(64, nullptr, 1), nullptr);
  mgpuMemFree(reinterpret_cast<void *>(0x10), nullptr);
  mgpuMemcpy(host.data(), other.data(), 64, nullptr);
  mgpuMemset16(host.data(), 1, 16, nullptr);
  mgpuMemset32(host.data(), 1, 16, nullptr);
  mgpuMemHostRegisterMemRef(1, &memref, 4);
  mgpuMemHostUnregisterMemRef(1, &memref, 4);
  mgpuSetDefaultDevice(0);
  EXPECT_EQ(mgpuTensorMapEncodeTiledMemref(1, &memref, 2, 0, 0, 0, 0, box),
            nullptr);
  EXPECT_EQ(host, std::vector<uint32_t>(16, 7));

  EXPECT_EQ(cuda::deviceAlloc(16), nullptr);
  cuda::deviceFree(reinterpret_cast<void *>(0x10));
  EXPECT_FALSE(cuda::copyToDevice(host.data(), other.data(), 64));
  EXPECT_FALSE(cuda::copyToHost(host.data(), other.data(), 64));
  EXPECT_FALSE(cuda::synchronize());
  EXPECT_EQ(cuda::createTimingEvent(), nullptr);
  EXPECT_FALSE(cuda::elapsedMilliseconds(nullptr, nullptr));
  EXPECT_EQ(cuda::moduleGlobal("qlr_test_global"), nullptr);

  std::optional<std::string> error = cuda::takeError();
  ASSERT_TRUE(error);
  EXPECT_TRUE(startsWith(*error, std::string(kMissingDriver) +
                                     " could not be loaded ("));
  EXPECT_FALSE(cuda::takeError());
  // Still no driver: the next call says so again.
  EXPECT_EQ(mgpuStreamCreate(), nullptr);
  EXPECT_TRUE(contains(pendingError(), "could not be loaded"));
}

TEST(CudaRuntimeNoDriverTest, LibraryWithoutTheEntryPoints) {
  useDriver("libc.so.6");
  std::string why;
  EXPECT_FALSE(cuda::available(why));
  EXPECT_EQ(why, "libc.so.6 is not a usable CUDA driver: it has no cuInit");
}

/// libcuda.so.1 itself: the reason where there is no driver; a round trip
/// through device memory where there is a GPU.
TEST(CudaRuntimeNoDriverTest, RealDriverIfPresent) {
  useDriver(nullptr);
  std::string why;
  if (!cuda::available(why)) {
    EXPECT_TRUE(startsWith(why, "libcuda.so.1"));
    GTEST_SKIP() << why;
  }
  std::optional<cuda::DeviceInfo> info = cuda::deviceInfo(why);
  ASSERT_TRUE(info) << why;
  EXPECT_FALSE(info->name.empty());
  EXPECT_GT(info->computeMajor, 0);
  EXPECT_GT(info->totalMemoryBytes, 0u);
  std::vector<float> host = {1, 2, 3, 4}, back(4);
  void *device = cuda::deviceAlloc(sizeof(float) * host.size());
  ASSERT_NE(device, nullptr) << pendingError();
  EXPECT_TRUE(cuda::copyToDevice(device, host.data(), 16));
  EXPECT_TRUE(cuda::copyToHost(back.data(), device, 16));
  cuda::deviceFree(device);
  EXPECT_EQ(back, host);
  // Through a temporary of the generated code's kind (stream-ordered where
  // the device has memory pools).
  std::vector<float> again(4);
  void *stream = mgpuStreamCreate();
  void *temporary = mgpuMemAlloc(sizeof(float) * host.size(), stream, 0);
  ASSERT_NE(temporary, nullptr) << pendingError();
  mgpuMemcpy(temporary, host.data(), 16, stream);
  mgpuMemcpy(again.data(), temporary, 16, stream);
  mgpuMemFree(temporary, stream);
  mgpuStreamSynchronize(stream);
  mgpuStreamDestroy(stream);
  EXPECT_EQ(again, host);
  EXPECT_FALSE(cuda::hasError()) << pendingError();
}

//===----------------------------------------------------------------------===//
// The fake driver
//===----------------------------------------------------------------------===//

constexpr char kImage[] = "qlr-fake-module\n"
                          "global qlr_test_global 16\n"
                          "kernel qlr_kernel_3 8 4\n";

class CudaRuntimeFakeDriverTest : public ::testing::Test {
protected:
  void SetUp() override {
    unsetenv("QLR_CUDA_DEVICE");
    unsetenv("QLR_CUDA_ALLOCATOR");
    unsetenv("QLR_FAKE_CUDA_HIDE");
    useDriver(QLR_FAKE_CUDA_DRIVER);
    ASSERT_NE(FAKE(qlrFakeReset), nullptr) << dlerror();
    FAKE(qlrFakeReset)();
  }
  void TearDown() override {
    EXPECT_FALSE(cuda::hasError()) << pendingError();
    FAKE(qlrFakeReset)();
    unsetenv("QLR_CUDA_DEVICE");
    unsetenv("QLR_CUDA_ALLOCATOR");
    unsetenv("QLR_FAKE_CUDA_HIDE");
  }

  static void inject(const char *entryPoint, int result) {
    FAKE(qlrFakeInjectFailure)(entryPoint, result);
  }
  static int calls(const char *entryPoint) {
    return FAKE(qlrFakeCallCount)(entryPoint);
  }
  static QlrFakeLaunch launch(int index) {
    QlrFakeLaunch record = {};
    EXPECT_TRUE(FAKE(qlrFakeGetLaunch)(index, &record));
    return record;
  }
  /// Loads kImage and looks up qlr_kernel_3.
  void loadKernel() {
    module = mgpuModuleLoad(const_cast<char *>(kImage), sizeof(kImage));
    ASSERT_NE(module, nullptr) << pendingError();
    kernel = mgpuModuleGetFunction(module, "qlr_kernel_3");
    ASSERT_NE(kernel, nullptr) << pendingError();
  }

  void *module = nullptr, *kernel = nullptr;
  void *pointerArg = reinterpret_cast<void *>(uintptr_t{0x1234});
  int32_t intArg = 77;
  void *args[2] = {&pointerArg, &intArg};
};

TEST_F(CudaRuntimeFakeDriverTest, DeviceInfo) {
  std::string why;
  ASSERT_TRUE(cuda::available(why)) << why;
  std::optional<cuda::DeviceInfo> info = cuda::deviceInfo(why);
  ASSERT_TRUE(info) << why;
  EXPECT_EQ(info->ordinal, 0);
  EXPECT_EQ(info->name, "QLR Fake GPU 0");
  EXPECT_EQ(info->computeMajor, 9);
  EXPECT_EQ(info->computeMinor, 0);
  EXPECT_EQ(info->multiprocessorCount, 132);
  EXPECT_EQ(info->memoryClockKHz, 2619000);
  EXPECT_EQ(info->memoryBusWidthBits, 5120);
  // 2 x 2.619 GHz x 640 bytes.
  EXPECT_NEAR(info->peakBandwidthGBps(), 3352.32, 1e-6);
  EXPECT_EQ(info->totalMemoryBytes, size_t{80} << 30);
  EXPECT_EQ(info->maxSharedMemoryPerBlockOptin, 232448);
  EXPECT_EQ(info->driverVersion, 13000);
}

TEST_F(CudaRuntimeFakeDriverTest, MemoryRoundTrip) {
  int live = FAKE(qlrFakeLiveAllocations)();
  std::vector<uint8_t> host(64), back(64, 0);
  for (size_t i = 0; i < host.size(); ++i)
    host[i] = static_cast<uint8_t>(3 * i + 1);

  void *stream = mgpuStreamCreate();
  void *device = mgpuMemAlloc(host.size(), stream, 0);
  ASSERT_NE(device, nullptr) << pendingError();
  EXPECT_EQ(FAKE(qlrFakeLiveAllocations)(), live + 1);
  mgpuMemcpy(device, host.data(), host.size(), stream);
  mgpuMemcpy(back.data(), device, back.size(), stream);
  mgpuStreamSynchronize(stream);
  EXPECT_EQ(back, host);

  // Only the low 16 bits of the value count, whatever is above them.
  std::vector<uint16_t> halves(32);
  mgpuMemset16(device, 0xabcd1234u, halves.size(), stream);
  ASSERT_TRUE(cuda::copyToHost(halves.data(), device, 64));
  EXPECT_EQ(halves, std::vector<uint16_t>(32, 0x1234));
  std::vector<uint32_t> words(16);
  mgpuMemset32(device, 0xdeadbeefu, words.size(), stream);
  ASSERT_TRUE(cuda::copyToHost(words.data(), device, 64));
  EXPECT_EQ(words, std::vector<uint32_t>(16, 0xdeadbeefu));

  mgpuMemFree(device, stream);
  mgpuStreamDestroy(stream);
  EXPECT_EQ(FAKE(qlrFakeLiveAllocations)(), live);

  // The C++ interface.
  void *buffer = cuda::deviceAlloc(64);
  ASSERT_NE(buffer, nullptr);
  std::fill(back.begin(), back.end(), 0);
  EXPECT_TRUE(cuda::copyToDevice(buffer, host.data(), 64));
  EXPECT_TRUE(cuda::copyToHost(back.data(), buffer, 64));
  EXPECT_TRUE(cuda::synchronize());
  EXPECT_EQ(back, host);
  cuda::deviceFree(buffer);
  EXPECT_EQ(FAKE(qlrFakeLiveAllocations)(), live);
}

TEST_F(CudaRuntimeFakeDriverTest, HostSharedAllocationIsManaged) {
  void *shared = mgpuMemAlloc(32, nullptr, 1);
  ASSERT_NE(shared, nullptr);
  EXPECT_EQ(calls("cuMemAllocManaged"), 1);
  EXPECT_EQ(FAKE(qlrFakeLastManagedFlags)(), 0x1u); // CU_MEM_ATTACH_GLOBAL
  // The flag is an i8: bits above the low byte are not part of it.
  void *plain = mgpuMemAlloc(32, nullptr, 0x100);
  ASSERT_NE(plain, nullptr);
  EXPECT_EQ(calls("cuMemAllocManaged"), 1);
  EXPECT_EQ(calls("cuMemAllocAsync"), 1);
  // Managed memory is not stream-ordered: it is freed with cuMemFree.
  mgpuMemFree(shared, nullptr);
  mgpuMemFree(plain, nullptr);
  EXPECT_EQ(calls("cuMemFree_v2"), 1);
  EXPECT_EQ(calls("cuMemFreeAsync"), 1);
}

//===----------------------------------------------------------------------===//
// The stream-ordered allocator
//===----------------------------------------------------------------------===//

constexpr uint64_t kKeepEverything = UINT64_MAX;

TEST_F(CudaRuntimeFakeDriverTest, TemporariesAreStreamOrdered) {
  int live = FAKE(qlrFakeLiveAllocations)();
  size_t pooled = FAKE(qlrFakePoolReservedBytes)(0);
  void *stream = mgpuStreamCreate(), *other = mgpuStreamCreate();
  void *first = mgpuMemAlloc(64, stream, 0);
  void *second = mgpuMemAlloc(128, stream, 0);
  ASSERT_NE(first, nullptr) << pendingError();
  ASSERT_NE(second, nullptr) << pendingError();
  EXPECT_EQ(calls("cuMemAllocAsync"), 2);
  EXPECT_EQ(calls("cuMemAlloc_v2"), 0);
  EXPECT_EQ(FAKE(qlrFakeLiveAllocations)(), live + 2);
  // The default pool, set up once: it keeps what is freed into it.
  EXPECT_EQ(calls("cuDeviceGetDefaultMemPool"), 1);
  EXPECT_EQ(calls("cuMemPoolSetAttribute"), 1);
  EXPECT_EQ(FAKE(qlrFakePoolReleaseThreshold)(0), kKeepEverything);
  EXPECT_EQ(FAKE(qlrFakePoolReservedBytes)(0), pooled + 192);

  // Freed in stream order, on any stream.
  mgpuMemFree(first, stream);
  mgpuMemFree(second, other);
  EXPECT_EQ(calls("cuMemFreeAsync"), 2);
  EXPECT_EQ(calls("cuMemFree_v2"), 0);
  EXPECT_EQ(FAKE(qlrFakeLiveAllocations)(), live);
  // A synchronisation does not give the freed memory back, and the next
  // allocations reuse it.
  mgpuStreamSynchronize(stream);
  EXPECT_TRUE(cuda::synchronize());
  EXPECT_EQ(FAKE(qlrFakePoolReservedBytes)(0), pooled + 192);
  void *third = mgpuMemAlloc(128, other, 0);
  ASSERT_NE(third, nullptr) << pendingError();
  EXPECT_EQ(FAKE(qlrFakePoolReservedBytes)(0), pooled + 192);
  mgpuMemFree(third, other);
  EXPECT_EQ(calls("cuMemPoolSetAttribute"), 1);

  // The C++ interface stays synchronous (long-lived buffers).
  void *buffer = cuda::deviceAlloc(256);
  ASSERT_NE(buffer, nullptr) << pendingError();
  EXPECT_EQ(calls("cuMemAlloc_v2"), 1);
  EXPECT_EQ(FAKE(qlrFakePoolReservedBytes)(0), pooled + 192);
  cuda::deviceFree(buffer);
  EXPECT_EQ(calls("cuMemFree_v2"), 1);
  EXPECT_EQ(calls("cuMemFreeAsync"), 3);
  EXPECT_EQ(FAKE(qlrFakeLiveAllocations)(), live);
  mgpuStreamDestroy(stream);
  mgpuStreamDestroy(other);
}

TEST_F(CudaRuntimeFakeDriverTest, EachDeviceSetsUpItsPoolOnce) {
  FAKE(qlrFakeSetDeviceCount)(2);
  useDriver(QLR_FAKE_CUDA_DRIVER);
  std::vector<std::thread> workers;
  for (int i = 0; i < 4; ++i)
    workers.emplace_back([] {
      for (int j = 0; j < 50; ++j)
        mgpuMemFree(mgpuMemAlloc(16 + j, nullptr, 0), nullptr);
    });
  for (std::thread &worker : workers)
    worker.join();
  EXPECT_EQ(calls("cuMemAllocAsync"), 200);
  EXPECT_EQ(calls("cuMemFreeAsync"), 200);
  EXPECT_EQ(calls("cuMemPoolSetAttribute"), 1);
  EXPECT_EQ(FAKE(qlrFakePoolReleaseThreshold)(1), 0u);

  mgpuSetDefaultDevice(1);
  mgpuMemFree(mgpuMemAlloc(16, nullptr, 0), nullptr);
  EXPECT_EQ(calls("cuMemPoolSetAttribute"), 2);
  EXPECT_EQ(FAKE(qlrFakePoolReleaseThreshold)(1), kKeepEverything);

  // Loading the driver again sets the pools up again.
  useDriver(QLR_FAKE_CUDA_DRIVER);
  mgpuMemFree(mgpuMemAlloc(16, nullptr, 0), nullptr);
  EXPECT_EQ(calls("cuMemPoolSetAttribute"), 3);
}

TEST_F(CudaRuntimeFakeDriverTest, SynchronousWhenTheEnvironmentSaysSo) {
  setenv("QLR_CUDA_ALLOCATOR", "sync", 1);
  useDriver(QLR_FAKE_CUDA_DRIVER);
  void *buffer = mgpuMemAlloc(64, nullptr, 0);
  ASSERT_NE(buffer, nullptr) << pendingError();
  mgpuMemFree(buffer, nullptr);
  EXPECT_EQ(calls("cuMemAlloc_v2"), 1);
  EXPECT_EQ(calls("cuMemFree_v2"), 1);
  EXPECT_EQ(calls("cuMemAllocAsync"), 0);
  EXPECT_EQ(calls("cuMemFreeAsync"), 0);
  // The pool is not touched.
  EXPECT_EQ(calls("cuDeviceGetDefaultMemPool"), 0);
  EXPECT_EQ(calls("cuMemPoolSetAttribute"), 0);

  setenv("QLR_CUDA_ALLOCATOR", "async", 1);
  useDriver(QLR_FAKE_CUDA_DRIVER);
  mgpuMemFree(mgpuMemAlloc(64, nullptr, 0), nullptr);
  EXPECT_EQ(calls("cuMemAllocAsync"), 1);

  setenv("QLR_CUDA_ALLOCATOR", "fast", 1);
  useDriver(QLR_FAKE_CUDA_DRIVER);
  std::string why;
  EXPECT_FALSE(cuda::available(why));
  EXPECT_EQ(why, "QLR_CUDA_ALLOCATOR='fast' is not an allocator (sync, or "
                 "async: the default)");
}

TEST_F(CudaRuntimeFakeDriverTest, SynchronousWithoutTheEntryPoints) {
  EXPECT_EQ(FAKE(qlrFakeHideEntryPoint)("cuMemAlloc_v2", 1), 0);
  int expectedSynchronous = 0;
  // Without any one of them, as a driver older than CUDA 11.2 is.
  for (const char *entryPoint :
       {"cuMemAllocAsync", "cuMemFreeAsync", "cuDeviceGetDefaultMemPool",
        "cuMemPoolSetAttribute", "cuMemPoolTrimTo"}) {
    ASSERT_EQ(FAKE(qlrFakeHideEntryPoint)(entryPoint, 1), 1) << entryPoint;
    useDriver(QLR_FAKE_CUDA_DRIVER);
    void *buffer = mgpuMemAlloc(64, nullptr, 0);
    ASSERT_NE(buffer, nullptr) << pendingError();
    mgpuMemFree(buffer, nullptr);
    ++expectedSynchronous;
    EXPECT_EQ(calls("cuMemAlloc_v2"), expectedSynchronous) << entryPoint;
    EXPECT_EQ(calls("cuMemFree_v2"), expectedSynchronous) << entryPoint;
    EXPECT_EQ(calls("cuMemAllocAsync"), 0) << entryPoint;
    FAKE(qlrFakeHideEntryPoint)(entryPoint, 0);
  }
  // Hidden through the environment.
  setenv("QLR_FAKE_CUDA_HIDE", "cuMemPoolTrimTo,cuMemAllocAsync", 1);
  useDriver(QLR_FAKE_CUDA_DRIVER);
  mgpuMemFree(mgpuMemAlloc(64, nullptr, 0), nullptr);
  EXPECT_EQ(calls("cuMemAlloc_v2"), expectedSynchronous + 1);
  EXPECT_EQ(calls("cuMemAllocAsync"), 0);
  // Shown again.
  unsetenv("QLR_FAKE_CUDA_HIDE");
  useDriver(QLR_FAKE_CUDA_DRIVER);
  mgpuMemFree(mgpuMemAlloc(64, nullptr, 0), nullptr);
  EXPECT_EQ(calls("cuMemAllocAsync"), 1);
}

TEST_F(CudaRuntimeFakeDriverTest, SynchronousWithoutMemoryPools) {
  FAKE(qlrFakeSetMemoryPoolsSupported)(0);
  void *buffer = mgpuMemAlloc(64, nullptr, 0);
  ASSERT_NE(buffer, nullptr) << pendingError();
  mgpuMemFree(buffer, nullptr);
  EXPECT_EQ(calls("cuMemAlloc_v2"), 1);
  EXPECT_EQ(calls("cuMemFree_v2"), 1);
  EXPECT_EQ(calls("cuMemAllocAsync"), 0);
  EXPECT_EQ(calls("cuDeviceGetDefaultMemPool"), 0);
}

TEST_F(CudaRuntimeFakeDriverTest, SynchronousWhenThePoolCannotBeSetUp) {
  inject("cuMemPoolSetAttribute", 1); // CUDA_ERROR_INVALID_VALUE
  void *buffer = mgpuMemAlloc(64, nullptr, 0);
  ASSERT_NE(buffer, nullptr) << pendingError();
  mgpuMemFree(buffer, nullptr);
  EXPECT_EQ(calls("cuMemAlloc_v2"), 1);
  EXPECT_EQ(calls("cuMemAllocAsync"), 0);
  // Decided once.
  inject("cuMemPoolSetAttribute", 0);
  mgpuMemFree(mgpuMemAlloc(64, nullptr, 0), nullptr);
  EXPECT_EQ(calls("cuMemAlloc_v2"), 2);
  EXPECT_EQ(calls("cuMemPoolSetAttribute"), 1);
}

TEST_F(CudaRuntimeFakeDriverTest, StreamOrderedFailuresAreSticky) {
  void *stream = mgpuStreamCreate();
  inject("cuMemAllocAsync", 2); // CUDA_ERROR_OUT_OF_MEMORY
  EXPECT_EQ(mgpuMemAlloc(503040, stream, 0), nullptr);
  EXPECT_TRUE(cuda::hasError());
  // Later calls do nothing; the first error stays.
  inject("cuMemAllocAsync", 0);
  EXPECT_EQ(mgpuMemAlloc(16, stream, 0), nullptr);
  EXPECT_EQ(cuda::deviceAlloc(16), nullptr);
  EXPECT_EQ(calls("cuMemAllocAsync"), 1);
  EXPECT_EQ(calls("cuMemAlloc_v2"), 0);
  EXPECT_EQ(pendingError(), "cuMemAllocAsync(503040 bytes) failed: "
                            "CUDA_ERROR_OUT_OF_MEMORY (out of memory)");

  void *buffer = mgpuMemAlloc(16, stream, 0);
  ASSERT_NE(buffer, nullptr) << pendingError();
  inject("cuMemFreeAsync", 700); // CUDA_ERROR_ILLEGAL_ADDRESS
  mgpuMemFree(buffer, stream);
  EXPECT_EQ(pendingError(), "cuMemFreeAsync failed: CUDA_ERROR_ILLEGAL_ADDRESS "
                            "(an illegal memory access was encountered)");
  // A driver that has shut down already is not an error.
  inject("cuMemFreeAsync", 4); // CUDA_ERROR_DEINITIALIZED
  buffer = mgpuMemAlloc(16, stream, 0);
  mgpuMemFree(buffer, stream);
  EXPECT_FALSE(cuda::hasError());
  mgpuStreamDestroy(stream);
}

TEST_F(CudaRuntimeFakeDriverTest, OutOfMemoryTrimsThePool) {
  constexpr size_t kMiB = 1 << 20;
  // 1 MiB more than earlier tests left allocated.
  FAKE(qlrFakeSetMemoryCapacity)(FAKE(qlrFakeDeviceBytesInUse)() + kMiB);
  size_t pooled = FAKE(qlrFakePoolReservedBytes)(0);
  // No pool yet: nothing to trim.
  EXPECT_EQ(cuda::deviceAlloc(2 * kMiB), nullptr);
  EXPECT_EQ(pendingError(), "cuMemAlloc(2097152 bytes) failed: "
                            "CUDA_ERROR_OUT_OF_MEMORY (out of memory)");
  EXPECT_EQ(calls("cuMemPoolTrimTo"), 0);

  // The pool keeps 768 KiB that a temporary freed into it.
  void *stream = mgpuStreamCreate();
  mgpuMemFree(mgpuMemAlloc(768 * 1024, stream, 0), stream);
  mgpuStreamSynchronize(stream);
  EXPECT_EQ(FAKE(qlrFakePoolReservedBytes)(0), pooled + 768 * 1024);
  // A synchronous allocation that needs them gets them.
  void *buffer = cuda::deviceAlloc(512 * 1024);
  ASSERT_NE(buffer, nullptr) << pendingError();
  EXPECT_EQ(calls("cuMemPoolTrimTo"), 1);
  EXPECT_EQ(calls("cuMemAlloc_v2"), 3);
  EXPECT_EQ(FAKE(qlrFakePoolReservedBytes)(0), pooled);
  // Memory that is not there is not.
  EXPECT_EQ(cuda::deviceAlloc(kMiB), nullptr);
  EXPECT_EQ(pendingError(), "cuMemAlloc(1048576 bytes) failed: "
                            "CUDA_ERROR_OUT_OF_MEMORY (out of memory)");
  EXPECT_EQ(calls("cuMemPoolTrimTo"), 2);
  cuda::deviceFree(buffer);
  mgpuStreamDestroy(stream);
}

TEST_F(CudaRuntimeFakeDriverTest, ModuleLaunchPassesEverythingThrough) {
  int liveModules = FAKE(qlrFakeLiveModules)();
  loadKernel();
  EXPECT_EQ(FAKE(qlrFakeLiveModules)(), liveModules + 1);
  void *stream = mgpuStreamCreate();
  ASSERT_NE(stream, nullptr);
  EXPECT_EQ(FAKE(qlrFakeLastStreamFlags)(), 0x1u); // CU_STREAM_NON_BLOCKING

  mgpuLaunchKernel(kernel, 4, 2, 1, 128, 1, 1, 1024, stream, args, nullptr, 2);
  // Above 48 KiB of dynamic shared memory the kernel is opted in first.
  mgpuLaunchKernel(kernel, 1, 1, 1, 32, 2, 3, 100000, stream, args, nullptr, 2);
  mgpuStreamSynchronize(stream);
  mgpuStreamDestroy(stream);
  ASSERT_EQ(FAKE(qlrFakeLaunchCount)(), 2) << pendingError();

  QlrFakeLaunch first = launch(0);
  EXPECT_STREQ(first.kernel, "qlr_kernel_3");
  EXPECT_EQ(first.grid[0], 4u);
  EXPECT_EQ(first.grid[1], 2u);
  EXPECT_EQ(first.grid[2], 1u);
  EXPECT_EQ(first.block[0], 128u);
  EXPECT_EQ(first.block[1], 1u);
  EXPECT_EQ(first.block[2], 1u);
  EXPECT_EQ(first.cluster[0], 0u);
  EXPECT_EQ(first.sharedMemBytes, 1024u);
  EXPECT_EQ(first.stream, stream);
  EXPECT_EQ(first.numParams, 2);
  EXPECT_EQ(first.params[0], 0x1234u);
  EXPECT_EQ(first.params[1], 77u);
  EXPECT_TRUE(first.extraWasNull);
  EXPECT_EQ(first.maxDynamicSharedBytes, 0);

  QlrFakeLaunch second = launch(1);
  EXPECT_EQ(second.block[1], 2u);
  EXPECT_EQ(second.block[2], 3u);
  EXPECT_EQ(second.sharedMemBytes, 100000u);
  EXPECT_EQ(second.maxDynamicSharedBytes, 100000);

  mgpuModuleUnload(module);
  EXPECT_EQ(FAKE(qlrFakeLiveModules)(), liveModules);
}

TEST_F(CudaRuntimeFakeDriverTest, ClusterLaunch) {
  loadKernel();
  mgpuLaunchClusterKernel(kernel, 2, 1, 1, 8, 1, 1, 64, 1, 1, 256, nullptr,
                          args, nullptr);
  // More than 8 blocks per cluster needs the non-portable opt-in.
  mgpuLaunchClusterKernel(kernel, 16, 1, 1, 32, 1, 1, 64, 1, 1, 0, nullptr,
                          args, nullptr);
  ASSERT_EQ(FAKE(qlrFakeLaunchCount)(), 2) << pendingError();
  QlrFakeLaunch first = launch(0), second = launch(1);
  EXPECT_EQ(first.cluster[0], 2u);
  EXPECT_EQ(first.cluster[1], 1u);
  EXPECT_EQ(first.grid[0], 8u);
  EXPECT_EQ(first.block[0], 64u);
  EXPECT_EQ(first.sharedMemBytes, 256u);
  EXPECT_EQ(first.params[1], 77u);
  EXPECT_EQ(first.nonPortableClusterSizeAllowed, 0);
  EXPECT_EQ(second.cluster[0], 16u);
  EXPECT_EQ(second.nonPortableClusterSizeAllowed, 1);
  mgpuModuleUnload(module);
}

TEST_F(CudaRuntimeFakeDriverTest, ModuleGlobal) {
  loadKernel();
  size_t bytes = 0;
  void *global = cuda::moduleGlobal("qlr_test_global", &bytes);
  ASSERT_NE(global, nullptr) << pendingError();
  EXPECT_EQ(bytes, 16u);
  const char text[16] = "device global";
  char back[16] = {};
  EXPECT_TRUE(cuda::copyToDevice(global, text, sizeof(text)));
  EXPECT_TRUE(cuda::copyToHost(back, global, sizeof(back)));
  EXPECT_STREQ(back, text);
  // Not defined anywhere: null, and not an error.
  EXPECT_EQ(cuda::moduleGlobal("qlr_no_such_global"), nullptr);
  EXPECT_FALSE(cuda::hasError());
  // Gone with its module.
  mgpuModuleUnload(module);
  EXPECT_EQ(cuda::moduleGlobal("qlr_test_global"), nullptr);
}

TEST_F(CudaRuntimeFakeDriverTest, JitLoad) {
  void *jitModule = mgpuModuleLoadJIT(const_cast<char *>(kImage), 3);
  ASSERT_NE(jitModule, nullptr) << pendingError();
  EXPECT_EQ(FAKE(qlrFakeLastJitOptLevel)(), 3);
  EXPECT_NE(cuda::moduleGlobal("qlr_test_global"), nullptr);
  mgpuModuleUnload(jitModule);

  char bad[] = "qlr-fake-bad-ptx";
  EXPECT_EQ(mgpuModuleLoadJIT(bad, 2), nullptr);
  EXPECT_EQ(pendingError(),
            "cuModuleLoadDataEx(PTX, O2) failed: CUDA_ERROR_INVALID_PTX (a PTX "
            "JIT compilation failed): ptxas fatal: syntax error in line 1");
}

TEST_F(CudaRuntimeFakeDriverTest, StreamsAndEvents) {
  void *stream = mgpuStreamCreate(), *other = mgpuStreamCreate();
  void *event = mgpuEventCreate();
  ASSERT_NE(event, nullptr);
  EXPECT_EQ(FAKE(qlrFakeLastEventFlags)(), 0x2u); // CU_EVENT_DISABLE_TIMING
  mgpuEventRecord(event, stream);
  mgpuStreamWaitEvent(other, event);
  mgpuEventSynchronize(event);
  mgpuEventDestroy(event);
  mgpuStreamDestroy(stream);
  mgpuStreamDestroy(other);
  for (const char *entryPoint : {"cuEventRecord", "cuStreamWaitEvent",
                                 "cuEventSynchronize", "cuEventDestroy_v2"})
    EXPECT_EQ(calls(entryPoint), 1) << entryPoint;
  EXPECT_EQ(calls("cuStreamDestroy_v2"), 2);

  void *start = cuda::createTimingEvent(), *end = cuda::createTimingEvent();
  EXPECT_EQ(FAKE(qlrFakeLastEventFlags)(), 0x0u);
  mgpuEventRecord(start, nullptr);
  mgpuEventRecord(end, nullptr);
  std::optional<float> ms = cuda::elapsedMilliseconds(start, end);
  ASSERT_TRUE(ms) << pendingError();
  EXPECT_FLOAT_EQ(*ms, 1.5f);
  mgpuEventDestroy(start);
  mgpuEventDestroy(end);
}

TEST_F(CudaRuntimeFakeDriverTest, InjectedFailureIsSticky) {
  loadKernel();
  inject("cuLaunchKernel", 700); // CUDA_ERROR_ILLEGAL_ADDRESS
  mgpuLaunchKernel(kernel, 4, 2, 1, 128, 1, 1, 0, nullptr, args, nullptr, 2);
  EXPECT_TRUE(cuda::hasError());

  // Later calls do nothing and return null; the first error stays.
  inject("cuLaunchKernel", 0);
  mgpuLaunchKernel(kernel, 1, 1, 1, 1, 1, 1, 0, nullptr, args, nullptr, 2);
  EXPECT_EQ(mgpuMemAlloc(16, nullptr, 0), nullptr);
  EXPECT_EQ(mgpuModuleLoad(const_cast<char *>(kImage), sizeof(kImage)),
            nullptr);
  EXPECT_EQ(mgpuStreamCreate(), nullptr);
  EXPECT_EQ(cuda::moduleGlobal("qlr_test_global"), nullptr);
  EXPECT_EQ(calls("cuLaunchKernel"), 1);
  EXPECT_EQ(calls("cuMemAlloc_v2"), 0);
  EXPECT_EQ(calls("cuMemAllocAsync"), 0);
  EXPECT_EQ(calls("cuModuleLoadData"), 1);
  EXPECT_EQ(calls("cuStreamCreate"), 0);
  EXPECT_EQ(FAKE(qlrFakeLaunchCount)(), 0);

  std::optional<std::string> error = cuda::takeError();
  ASSERT_TRUE(error);
  EXPECT_EQ(*error, "cuLaunchKernel(qlr_kernel_3) failed: "
                    "CUDA_ERROR_ILLEGAL_ADDRESS (an illegal memory access was "
                    "encountered) [grid 4x2x1, block 128x1x1, 0 bytes of "
                    "dynamic shared memory]");
  EXPECT_FALSE(cuda::takeError());
  EXPECT_FALSE(cuda::hasError());

  // Cleared: calls work again.
  mgpuLaunchKernel(kernel, 1, 1, 1, 1, 1, 1, 0, nullptr, args, nullptr, 2);
  EXPECT_EQ(FAKE(qlrFakeLaunchCount)(), 1);
  void *buffer = mgpuMemAlloc(16, nullptr, 0);
  EXPECT_NE(buffer, nullptr);
  mgpuMemFree(buffer, nullptr);
  mgpuModuleUnload(module);
}

TEST_F(CudaRuntimeFakeDriverTest, FailuresNameTheCall) {
  inject("cuMemAlloc_v2", 2); // CUDA_ERROR_OUT_OF_MEMORY
  EXPECT_EQ(cuda::deviceAlloc(1 << 20), nullptr);
  EXPECT_EQ(pendingError(), "cuMemAlloc(1048576 bytes) failed: "
                            "CUDA_ERROR_OUT_OF_MEMORY (out of memory)");
  inject("cuMemAlloc_v2", 0);

  EXPECT_EQ(mgpuModuleLoad(const_cast<char *>("not an image"), 13), nullptr);
  EXPECT_EQ(pendingError(), "cuModuleLoadData failed: CUDA_ERROR_INVALID_IMAGE "
                            "(device kernel image is invalid)");

  loadKernel();
  EXPECT_EQ(mgpuModuleGetFunction(module, "qlr_missing_kernel"), nullptr);
  EXPECT_EQ(pendingError(), "cuModuleGetFunction(qlr_missing_kernel) failed: "
                            "CUDA_ERROR_NOT_FOUND (named symbol not found)");

  // An error code the driver cannot name.
  inject("cuStreamCreate", 12345);
  EXPECT_EQ(mgpuStreamCreate(), nullptr);
  EXPECT_EQ(pendingError(), "cuStreamCreate failed: CUDA error 12345");
  inject("cuStreamCreate", 0);

  // Launch geometry the driver cannot take is not passed on.
  mgpuLaunchKernel(kernel, -1, 1, 1, 1, 1, 1, 0, nullptr, args, nullptr, 2);
  EXPECT_EQ(pendingError(),
            "cuLaunchKernel(qlr_kernel_3) was not attempted: launch "
            "dimensions out of range [grid -1x1x1, block 1x1x1, 0 bytes of "
            "dynamic shared memory]");
  EXPECT_EQ(calls("cuLaunchKernel"), 0);
  mgpuModuleUnload(module);
}

TEST_F(CudaRuntimeFakeDriverTest, AsynchronousErrorNamesTheLastKernel) {
  loadKernel();
  mgpuLaunchKernel(kernel, 1, 1, 1, 32, 1, 1, 0, nullptr, args, nullptr, 2);
  inject("cuStreamSynchronize", 700);
  mgpuStreamSynchronize(nullptr);
  EXPECT_EQ(pendingError(),
            "cuStreamSynchronize failed: CUDA_ERROR_ILLEGAL_ADDRESS (an "
            "illegal memory access was encountered) (the last kernel launched "
            "was qlr_kernel_3)");
  mgpuModuleUnload(module);
}

TEST_F(CudaRuntimeFakeDriverTest, ReleaseAfterDriverShutdownIsQuiet) {
  loadKernel();
  inject("cuModuleUnload", 4); // CUDA_ERROR_DEINITIALIZED
  mgpuModuleUnload(module);
  EXPECT_FALSE(cuda::hasError());
  inject("cuModuleUnload", 0);
  // Null handles are not passed on.
  mgpuModuleUnload(nullptr);
  mgpuMemFree(nullptr, nullptr);
  mgpuStreamDestroy(nullptr);
  mgpuEventDestroy(nullptr);
  EXPECT_EQ(calls("cuMemFree_v2"), 0);
  EXPECT_EQ(calls("cuMemFreeAsync"), 0);
  EXPECT_EQ(calls("cuStreamDestroy_v2"), 0);
  EXPECT_EQ(calls("cuEventDestroy_v2"), 0);
}

TEST_F(CudaRuntimeFakeDriverTest, ContextIsCurrentOnEveryThread) {
  void *buffer = nullptr, *context = nullptr;
  std::thread worker([&] {
    buffer = mgpuMemAlloc(16, nullptr, 0);
    context = FAKE(qlrFakeCurrentContext)();
  });
  worker.join();
  EXPECT_NE(buffer, nullptr) << pendingError();
  EXPECT_EQ(context, FAKE(qlrFakePrimaryContext)(0));
  mgpuMemFree(buffer, nullptr);
  EXPECT_EQ(calls("cuDevicePrimaryCtxRetain"), 1);
}

TEST_F(CudaRuntimeFakeDriverTest, DeviceSelection) {
  FAKE(qlrFakeSetDeviceCount)(2);
  setenv("QLR_CUDA_DEVICE", "1", 1);
  useDriver(QLR_FAKE_CUDA_DRIVER);
  std::string why;
  std::optional<cuda::DeviceInfo> info = cuda::deviceInfo(why);
  ASSERT_TRUE(info) << why;
  EXPECT_EQ(info->ordinal, 1);
  EXPECT_EQ(info->name, "QLR Fake GPU 1");
  void *buffer = mgpuMemAlloc(16, nullptr, 0);
  EXPECT_EQ(FAKE(qlrFakeCurrentContext)(), FAKE(qlrFakePrimaryContext)(1));
  mgpuMemFree(buffer, nullptr);

  // mgpuSetDefaultDevice switches the device of later calls.
  mgpuSetDefaultDevice(0);
  buffer = mgpuMemAlloc(16, nullptr, 0);
  EXPECT_EQ(FAKE(qlrFakeCurrentContext)(), FAKE(qlrFakePrimaryContext)(0));
  mgpuMemFree(buffer, nullptr);
  mgpuSetDefaultDevice(5);
  EXPECT_EQ(mgpuMemAlloc(16, nullptr, 0), nullptr);
  EXPECT_EQ(pendingError(), "CUDA device 5 does not exist (the machine has 2)");

  setenv("QLR_CUDA_DEVICE", "7", 1);
  useDriver(QLR_FAKE_CUDA_DRIVER);
  EXPECT_FALSE(cuda::available(why));
  EXPECT_EQ(why, "CUDA device 7 does not exist (the machine has 2)");

  setenv("QLR_CUDA_DEVICE", "gpu1", 1);
  useDriver(QLR_FAKE_CUDA_DRIVER);
  EXPECT_FALSE(cuda::available(why));
  EXPECT_EQ(why, "QLR_CUDA_DEVICE='gpu1' is not a device ordinal (0 to 63)");
}

TEST_F(CudaRuntimeFakeDriverTest, NoDevice) {
  FAKE(qlrFakeSetDeviceCount)(0);
  std::string why;
  EXPECT_FALSE(cuda::available(why));
  EXPECT_EQ(why, "no CUDA device");

  FAKE(qlrFakeSetDeviceCount)(1);
  inject("cuInit", 100); // CUDA_ERROR_NO_DEVICE
  useDriver(QLR_FAKE_CUDA_DRIVER);
  EXPECT_FALSE(cuda::available(why));
  EXPECT_EQ(why, "cuInit failed: CUDA_ERROR_NO_DEVICE (no CUDA-capable device "
                 "is detected): no CUDA device");
  EXPECT_EQ(mgpuStreamCreate(), nullptr);
  EXPECT_EQ(pendingError(), why);
}

TEST_F(CudaRuntimeFakeDriverTest, HostRegisterMemRef) {
  std::vector<float> host(16);
  // A 3x4 view at offset 2 of a dense row-major buffer.
  struct {
    void *allocated, *aligned;
    int64_t offset, sizes[2], strides[2];
  } memref = {host.data(), host.data(), 2, {3, 4}, {4, 1}};
  mgpuMemHostRegisterMemRef(2, &memref, sizeof(float));
  EXPECT_EQ(FAKE(qlrFakeRegisteredBytes)(host.data() + 2), 48u)
      << pendingError();
  mgpuMemHostUnregisterMemRef(2, &memref, sizeof(float));
  EXPECT_EQ(FAKE(qlrFakeRegisteredBytes)(host.data() + 2), 0u);

  memref.strides[0] = 8;
  mgpuMemHostRegisterMemRef(2, &memref, sizeof(float));
  EXPECT_EQ(pendingError(), "mgpuMemHostRegisterMemRef: only dense memrefs "
                            "can be registered (dimension 0 has stride 8, "
                            "not 4)");
  EXPECT_EQ(calls("cuMemHostRegister_v2"), 1);
}

TEST_F(CudaRuntimeFakeDriverTest, TensorMapDescriptor) {
  std::vector<uint16_t> host(128 * 64 + 8);
  // f16 128x64 at offset 8, box 32x64 (outermost first).
  struct {
    void *allocated, *aligned;
    int64_t offset, sizes[2], strides[2];
  } memref = {host.data(), host.data(), 8, {128, 64}, {64, 1}};
  int64_t box[] = {32, 64};
  void *descriptor = mgpuTensorMapEncodeTiledMemref(
      2, &memref, /*FLOAT16=*/6, /*interleave=*/0, /*swizzle=*/3,
      /*l2Promotion=*/1, /*oobFill=*/0, box);
  ASSERT_NE(descriptor, nullptr) << pendingError();

  QlrFakeTensorMap map = {};
  ASSERT_TRUE(FAKE(qlrFakeGetTensorMap)(&map));
  EXPECT_EQ(map.dataType, 6);
  EXPECT_EQ(map.rank, 2u);
  EXPECT_EQ(map.globalAddress, host.data() + 8);
  EXPECT_EQ(map.globalDim[0], 64u);
  EXPECT_EQ(map.globalDim[1], 128u);
  EXPECT_EQ(map.globalStrides[0], 128u);
  EXPECT_EQ(map.boxDim[0], 64u);
  EXPECT_EQ(map.boxDim[1], 32u);
  EXPECT_EQ(map.elementStrides[0], 1u);
  EXPECT_EQ(map.swizzle, 3);
  EXPECT_EQ(map.l2Promotion, 1);

  // The descriptor was copied to device memory.
  uint64_t words[16] = {};
  ASSERT_TRUE(cuda::copyToHost(words, descriptor, sizeof(words)));
  EXPECT_EQ(words[0], 0x7e5au);
  EXPECT_EQ(words[3], reinterpret_cast<uintptr_t>(host.data() + 8));
  mgpuMemFree(descriptor, nullptr);

  EXPECT_EQ(mgpuTensorMapEncodeTiledMemref(6, &memref, 6, 0, 0, 0, 0, box),
            nullptr);
  EXPECT_TRUE(startsWith(pendingError(),
                         "cuTensorMapEncodeTiled was not attempted: rank 6"));
}
} // namespace
