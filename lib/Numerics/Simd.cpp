//===- Simd.cpp - Instruction-set levels of QLR's CPU code ----*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#include "qlr/Numerics/Simd.h"

#include "llvm/ADT/StringSwitch.h"
#include "llvm/ADT/Twine.h"
#include "llvm/Support/ErrorHandling.h"

#include <algorithm>
#include <cstdlib>

using namespace qlr::numerics;

llvm::StringRef qlr::numerics::simdLevelName(SimdLevel level) {
  switch (level) {
  case SimdLevel::Portable:
    return "portable";
  case SimdLevel::AVX2:
    return "avx2";
  case SimdLevel::AVX512:
    return "avx512";
  }
  llvm_unreachable("unknown SIMD level");
}

llvm::StringRef qlr::numerics::simdLevelCPU(SimdLevel level) {
  switch (level) {
  case SimdLevel::Portable:
    return "x86-64";
  case SimdLevel::AVX2:
    return "x86-64-v3";
  case SimdLevel::AVX512:
    return "x86-64-v4";
  }
  llvm_unreachable("unknown SIMD level");
}

std::optional<SimdLevel> qlr::numerics::parseSimdLevel(llvm::StringRef name) {
  std::string lower = name.trim().lower();
  if (lower == "native")
    return hostSimdLevel();
  return llvm::StringSwitch<std::optional<SimdLevel>>(lower)
      .Case("portable", SimdLevel::Portable)
      .Case("avx2", SimdLevel::AVX2)
      .Case("avx512", SimdLevel::AVX512)
      .Default(std::nullopt);
}

SimdLevel qlr::numerics::hostSimdLevel() {
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
  // GCC knows the psABI levels, including the OS's support for the wider
  // registers (XSAVE state), by name.
  static const SimdLevel level = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("x86-64-v4"))
      return SimdLevel::AVX512;
    if (__builtin_cpu_supports("x86-64-v3"))
      return SimdLevel::AVX2;
    return SimdLevel::Portable;
  }();
  return level;
#elif defined(__x86_64__) && defined(__clang__)
  static const SimdLevel level = [] {
    __builtin_cpu_init();
    bool v3 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
              __builtin_cpu_supports("bmi2") && __builtin_cpu_supports("f16c");
    bool v4 = v3 && __builtin_cpu_supports("avx512f") &&
              __builtin_cpu_supports("avx512bw") &&
              __builtin_cpu_supports("avx512cd") &&
              __builtin_cpu_supports("avx512dq") &&
              __builtin_cpu_supports("avx512vl");
    return v4 ? SimdLevel::AVX512 : v3 ? SimdLevel::AVX2 : SimdLevel::Portable;
  }();
  return level;
#else
  return SimdLevel::Portable;
#endif
}

bool qlr::numerics::isPortableNumericsBuild() {
#ifdef QLR_PORTABLE_NUMERICS
  return true;
#else
  return false;
#endif
}

SimdLevel qlr::numerics::simdLevel() {
  static const SimdLevel level = [] {
    SimdLevel cap =
        isPortableNumericsBuild() ? SimdLevel::Portable : SimdLevel::AVX512;
    const char *value = std::getenv("QLR_MAX_SIMD");
    if (value && *value) {
      std::optional<SimdLevel> parsed = parseSimdLevel(value);
      if (!parsed)
        llvm::report_fatal_error(
            llvm::Twine("QLR_MAX_SIMD='") + value +
                "' is not a level: use portable, avx2, avx512 or native",
            /*gen_crash_diag=*/false);
      cap = *parsed;
    }
    return std::min(cap, hostSimdLevel());
  }();
  return level;
}

std::string qlr::numerics::describeSimd() {
  return (llvm::Twine("QLR numerics: ") +
          (isPortableNumericsBuild() ? "portable" : "native") +
          " build; instruction set " + simdLevelName(simdLevel()) + " (host " +
          simdLevelName(hostSimdLevel()) + ")")
      .str();
}
