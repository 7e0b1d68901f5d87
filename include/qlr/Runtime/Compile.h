//===- Compile.h - Compiling a qlr model for the CPU ----------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// The steps qlr-run's JIT and qlr-compile share, so that both compile a model
// the same way: weights become arguments of @forward (read in place, never
// copied into the code), qlr-cpu-pipeline lowers the module to the LLVM
// dialect, and LLVM compiles it for one CPU. compileArtifact is the whole of
// qlr-compile (and of qlr.compiler.compile_artifact): a model module in, a
// self-contained shared library with the C interface of qlr-c/Runtime.h out.
//
// @forward's C interface (_mlir_ciface_forward) then takes, in order:
//   tokens  memref<?xi32>          the tokens to run
//   pos     i64                    the position of the first
//   logits  memref<?x?xf32>        [tokens, vocab] output
//   kCache, vCache memref<LxSxHxDxf32>  [layers, maxSeqLen, kvHeads, headDim]
//   one memref per externalized weight, in ExternalWeight order.
//
//===----------------------------------------------------------------------===//

#ifndef QLR_RUNTIME_COMPILE_H
#define QLR_RUNTIME_COMPILE_H

#include "qlr/Numerics/Simd.h"
#include "qlr/Pipelines/Pipelines.h"
#include "qlr/Runtime/Jit.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/Support/LLVM.h"
#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"
#include "llvm/Target/TargetMachine.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace llvm {
class raw_ostream;
} // namespace llvm

namespace mlir {
namespace func {
class FuncOp;
} // namespace func
namespace qlr {

/// Registers the dialects and LLVM IR translations a model needs.
void registerModelDialects(DialectRegistry &registry);

/// Lowers `module` (after externalizeWeights) to the LLVM dialect with
/// qlr-cpu-pipeline for a CPU at `level`; `openmp` runs the kernels' parallel
/// loops on OpenMP. `emulateGPU` uses qlr-gpu-pipeline{emulate=true} instead
/// (the GPU schedule's loop nests on the CPU; `openmp` is ignored).
LogicalResult lowerModelToLLVM(ModuleOp module,
                               ::qlr::numerics::SimdLevel level, bool openmp,
                               bool emulateGPU = false);

/// Lowers `module` (after externalizeWeights) with qlr-gpu-pipeline: the
/// kernels into a gpu.binary, the host code to the LLVM dialect.
LogicalResult lowerModelToGPU(ModuleOp module,
                              const GPUPipelineOptions &options);

//===----------------------------------------------------------------------===//
// Model libraries (qlr-compile)
//===----------------------------------------------------------------------===//

/// What compileArtifact makes and how: qlr-compile's command-line options,
/// with its defaults.
struct ArtifactOptions {
  /// Where the model runs: "cpu" or "cuda" (an NVIDIA GPU: the kernels come
  /// from qlr-gpu-pipeline and are embedded; the library loads the CUDA
  /// driver when it opens and needs no CUDA at link time).
  std::string target = "cpu";
  /// The CPU to compile for: "native" (this machine's, capped by
  /// QLR_MAX_SIMD like the JIT), "x86-64", "x86-64-v3" (AVX2) or
  /// "x86-64-v4" (AVX-512). The library refuses to open below its level.
  std::string cpu = "native";
  /// LLVM optimisation level, 0-3.
  unsigned optLevel = 3;
  /// "openmp" (the kernels' parallel loops on OpenMP threads; the library
  /// then needs libomp), "none" (one thread) or "default" (openmp when this
  /// build found libomp). Ignored for cuda.
  std::string parallel = "default";
  /// Non-empty: write the weights to this file (a bare file name) next to
  /// the library instead of into it; the library maps it at load time.
  std::string weightsFile;
  /// target cuda: the GPU architecture (sm_80, sm_90, ...).
  std::string chip = "sm_90";
  /// target cuda: "cubin" (assembled by the toolkit's ptxas for `chip`) or
  /// "ptx" (compiled by the driver when the library opens).
  std::string gpuBinary = "cubin";
  /// target cuda: the CUDA toolkit to take libdevice and ptxas from; empty:
  /// $CUDA_HOME, $CUDA_PATH, $CUDA_ROOT or /usr/local/cuda.
  std::string cudaToolkit;
  /// Keep the object, metadata and link files (ArtifactResult says where).
  bool keepTemps = false;

  /// How messages name the module ("model.mlirbc", ...).
  std::string moduleName = "the module";
  /// A directory to look for the runtime archives (libQLRArtifactRuntime.a,
  /// libQLRTokenizer.a, libQLRCudaRuntime.a) in first; they are then looked
  /// for where this build put them. qlr-compile passes ../lib next to
  /// itself (an installation's lib/).
  std::string runtimeLibraryDir;
  /// The C/C++ compiler that links the library; empty: $QLR_LINKER, else the
  /// one this build found at configure time.
  std::string linker;
  /// When set, the link command is printed here before it runs.
  llvm::raw_ostream *linkCommandLog = nullptr;
};

/// What compileArtifact made.
struct ArtifactResult {
  /// "<output> for <cpu> (<level>, <threads>), <n> weights (<size> MB[ in
  /// <weights file>])", the line qlr-compile prints (without the time).
  std::string summary;
  /// The LLVM CPU the code was compiled for.
  std::string targetCPU;
  /// Whether the kernels run on OpenMP threads.
  bool openmp = false;
  /// How many weights, and their bytes (with alignment padding).
  size_t weightCount = 0;
  uint64_t weightBytes = 0;
  /// The directory of the intermediate files when keepTemps, else empty.
  std::string tempDirectory;
};

/// Checks `options` without compiling anything: the values, the CUDA
/// toolkit for cuda, the linker and the runtime archives. The errors are
/// qlr-compile's ("--cpu=pentium: use native, x86-64, ...").
llvm::Error checkArtifactOptions(const ArtifactOptions &options);

/// Compiles `module`, a model made by qlr-import (and transformed by
/// quant-opt), ahead of time with the same steps as qlr-run's JIT into a
/// self-contained shared library at `outputPath`: the code, the weights
/// (read-only data, or the sidecar options.weightsFile next to
/// `outputPath`), the configuration, the tokenizer and the C interface of
/// include/qlr-c/Runtime.h; it needs no LLVM or MLIR. `module` is not
/// modified (a clone is compiled); its context needs the dialects of
/// registerModelDialects. The library is linked in a temporary directory
/// and written to `outputPath` atomically (a temporary file renamed into
/// place): on an error no output is left. MLIR diagnostics go to the
/// context's handlers; the returned error says which step failed.
llvm::Expected<ArtifactResult> compileArtifact(ModuleOp module,
                                               const ArtifactOptions &options,
                                               llvm::StringRef outputPath);

} // namespace qlr
} // namespace mlir

#endif // QLR_RUNTIME_COMPILE_H
