//===- Simd.h - Instruction-set levels of QLR's CPU code ------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// QLR's CPU code chooses between instruction-set levels at run time: the
// norm-tweak matrix kernels, the calibration engine's hot loops, the OpenBLAS
// kernels it loads, and the code the JIT (qlr-run) generates. All of them ask
// simdLevel() which level they may use, so one setting caps them all:
//
//   QLR_MAX_SIMD=portable   baseline x86-64 (SSE2) everywhere
//   QLR_MAX_SIMD=avx2       at most x86-64-v3 (AVX2, FMA, F16C, BMI2)
//   QLR_MAX_SIMD=avx512     at most x86-64-v4 (AVX-512 F/BW/CD/DQ/VL)
//   QLR_MAX_SIMD=native     the best level the CPU supports
//
// The cap never raises the level above what the CPU supports. Unset or empty,
// it is `native`, except in portable-numerics builds (QLR_NATIVE_NUMERICS=OFF),
// where it is `portable` so that results are the same on every x86-64 CPU.
// The test suite uses the cap to run every level the host can run.
//
//===----------------------------------------------------------------------===//

#ifndef QLR_NUMERICS_SIMD_H
#define QLR_NUMERICS_SIMD_H

#include "llvm/ADT/StringRef.h"

#include <optional>
#include <string>

namespace qlr::numerics {

/// Instruction-set levels, in increasing order. On x86-64 they are the
/// psABI micro-architecture levels x86-64 (v1), x86-64-v3 and x86-64-v4.
enum class SimdLevel { Portable, AVX2, AVX512 };

/// "portable", "avx2" or "avx512".
llvm::StringRef simdLevelName(SimdLevel level);

/// The psABI name of the level's CPU: "x86-64", "x86-64-v3" or "x86-64-v4".
llvm::StringRef simdLevelCPU(SimdLevel level);

/// Parses a level name as QLR_MAX_SIMD takes it (simdLevelName's spellings,
/// case-insensitive); `native` gives hostSimdLevel(). std::nullopt when the
/// name is none of them.
std::optional<SimdLevel> parseSimdLevel(llvm::StringRef name);

/// The best level the running CPU and OS support; Portable on hosts other
/// than x86-64.
SimdLevel hostSimdLevel();

/// The level QLR's run-time dispatch uses: hostSimdLevel() capped by
/// QLR_MAX_SIMD (read once, at the first call). An unknown QLR_MAX_SIMD value
/// is a fatal error that names the accepted values.
SimdLevel simdLevel();

/// True when lib/Numerics was compiled for the baseline target
/// (QLR_NATIVE_NUMERICS=OFF): the build whose results do not depend on the
/// CPU when simdLevel() is Portable.
bool isPortableNumericsBuild();

/// One line for tools' --version: the build kind and the levels, e.g.
/// "QLR numerics: native build; instruction set avx2 (host avx2)".
std::string describeSimd();

/// Kept for existing callers: the same as simdLevel().
inline SimdLevel detectSimdLevel() { return simdLevel(); }

} // namespace qlr::numerics

#endif // QLR_NUMERICS_SIMD_H
