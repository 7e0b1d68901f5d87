//===- FakeDriverControl.h - Reaching the fake driver from tests -*- C++ -*-=//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// The helpers the CUDA runtime's tests share: the fake driver's controls,
// looked up in the library the runtime loads, and the pending error.
//
//===----------------------------------------------------------------------===//

#ifndef QLR_UNITTESTS_CUDARUNTIME_FAKEDRIVERCONTROL_H
#define QLR_UNITTESTS_CUDARUNTIME_FAKEDRIVERCONTROL_H

#include "qlr/Runtime/CudaDriver.h"

#include <dlfcn.h>

#include <string>

namespace qlr::testing {

/// A control of the fake driver, looked up in the library the runtime loads
/// (dlopen returns the same handle).
template <typename Fn> Fn control(const char *name) {
  static void *library = dlopen(QLR_FAKE_CUDA_DRIVER, RTLD_NOW | RTLD_LOCAL);
  if (!library)
    return nullptr;
  return reinterpret_cast<Fn>(dlsym(library, name));
}

/// The runtime's pending error, taken, or "<none>".
inline std::string pendingError() {
  return qlr::cuda::takeError().value_or("<none>");
}

} // namespace qlr::testing

#define FAKE(name) ::qlr::testing::control<decltype(&name)>(#name)

#endif // QLR_UNITTESTS_CUDARUNTIME_FAKEDRIVERCONTROL_H
