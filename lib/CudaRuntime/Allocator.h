//===- Allocator.h - Device memory allocation -------------------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// Generated code calls mgpuMemAlloc and mgpuMemFree for every temporary
// buffer of every forward call (about 20 per layer per token), so they must
// be cheap. cuMemAlloc and cuMemFree are not: each takes tens of
// microseconds, and cuMemFree synchronises the device. Where it can, the
// runtime therefore allocates them with the driver's stream-ordered
// allocator: cuMemAllocAsync and cuMemFreeAsync on the stream the generated
// code passes, from the device's default memory pool, whose release
// threshold is set to UINT64_MAX once per device, so that memory freed into
// the pool stays cached there for the next forward call instead of going
// back to the driver at every synchronisation.
//
// The pool's reuse policies stay at their defaults (follow event
// dependencies, opportunistic reuse, internal dependencies), deliberately:
// each forward call runs on a stream of its own, so memory freed on one
// stream is reused by allocations on another, and those policies are what
// make that safe: the pool hands such memory out only when the free is known
// to have completed, or when the allocating stream is (made) ordered after
// it.
//
// Allocations are synchronous (cuMemAlloc and cuMemFree) instead when the
// driver lacks the stream-ordered allocator (it is CUDA 11.2's), when the
// device does not support memory pools (its attribute
// CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED is 0), when setting up the pool
// fails, or when the environment variable QLR_CUDA_ALLOCATOR is "sync" (a
// testing hook, and an escape hatch should the pool misbehave; read when the
// driver loads; "async", the default, allows the pool, and any other value
// makes the driver unusable, with a message that says so). Managed memory
// (host-shared allocations) always comes from cuMemAllocManaged, and the
// buffers of deviceAlloc (long-lived: weights, KV caches) always from
// cuMemAlloc, outside a pool that keeps what it caches.
//
// Frees go by how the memory was allocated: the runtime remembers its
// stream-ordered allocations and frees those with cuMemFreeAsync (on the
// legacy default stream for deviceFree), everything else with cuMemFree.
// Since the pool does not give its cached memory back by itself, a
// synchronous allocation that runs out of memory trims the pool
// (cuMemPoolTrimTo) and tries once more.
//
//===----------------------------------------------------------------------===//

#ifndef QLR_LIB_CUDARUNTIME_ALLOCATOR_H
#define QLR_LIB_CUDARUNTIME_ALLOCATOR_H

#include "CudaApi.h"

namespace qlr::cuda::detail {

/// `bytes` bytes of device memory, in the current context (call after
/// enter()): managed memory when `hostShared`; otherwise stream-ordered on
/// `stream` when `streamOrdered` and the selected device allows it (the
/// first such call per device sets its pool up), else cuMemAlloc. Null, with
/// the sticky error, on failure.
void *allocate(const api::DriverApi &a, uint64_t bytes, api::CUstream stream,
               bool hostShared, bool streamOrdered);

/// Frees memory that allocate() (or the driver) returned: a stream-ordered
/// allocation with cuMemFreeAsync on `stream`, anything else with cuMemFree.
/// A failure other than a driver that has shut down is recorded.
void release(const api::DriverApi &a, void *ptr, api::CUstream stream);

/// Forgets the devices' pools and the stream-ordered allocations (for
/// resetForTesting()).
void resetAllocatorForTesting();

} // namespace qlr::cuda::detail

#endif // QLR_LIB_CUDARUNTIME_ALLOCATOR_H
