//===- Compile.h - Compiling a qlr model for the CPU ----------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// The steps qlr-run's JIT and qlr-compile share, so that both compile a model
// the same way: weights become arguments of @forward (read in place, never
// copied into the code), qlr-cpu-pipeline lowers the module to the LLVM
// dialect, and LLVM compiles it for one CPU.
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

#include "mlir/IR/BuiltinOps.h"
#include "mlir/Support/LLVM.h"
#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"
#include "llvm/Target/TargetMachine.h"

#include <memory>
#include <string>
#include <vector>

namespace mlir {
namespace func {
class FuncOp;
} // namespace func
namespace qlr {

/// A weight that @forward takes as an argument: its bytes (in the module's
/// resource blob) and its shape.
struct ExternalWeight {
  std::string name;
  llvm::ArrayRef<char> data;
  llvm::SmallVector<int64_t> shape;
  unsigned elementBits = 0;
};

/// Weights smaller than this stay constants in code compiled for the CPU.
constexpr size_t kExternalizeBytes = 4096;

/// Turns every dense_resource constant of `func` of at least `minBytes`
/// into a new trailing argument and returns the weights in argument order.
FailureOr<std::vector<ExternalWeight>>
externalizeWeights(func::FuncOp func, size_t minBytes = kExternalizeBytes);

/// Registers the dialects and LLVM IR translations a model needs.
void registerModelDialects(DialectRegistry &registry);

/// Lowers `module` (after externalizeWeights) to the LLVM dialect with
/// qlr-cpu-pipeline; `openmp` runs the kernels' parallel loops on OpenMP.
/// `emulateGPU` uses qlr-gpu-pipeline{emulate=true} instead (the GPU
/// schedule's loop nests on the CPU; `openmp` is ignored).
LogicalResult lowerModelToLLVM(ModuleOp module, bool openmp,
                               bool emulateGPU = false);

/// Lowers `module` (after externalizeWeights) with qlr-gpu-pipeline: the
/// kernels into a gpu.binary, the host code to the LLVM dialect.
LogicalResult lowerModelToGPU(ModuleOp module,
                              const GPUPipelineOptions &options);

/// The code generator's level for an optimisation level 0-3, the same for
/// the JIT and qlr-compile (their machine code must match).
llvm::CodeGenOptLevel codeGenOptLevel(unsigned optLevel);

/// A TargetMachine for x86-64 at `level`: the host CPU when `level` is the
/// host's (and `hostCPU`), else the level's generic CPU (x86-64,
/// x86-64-v3, x86-64-v4). `pic` for code that goes into a shared library.
llvm::Expected<std::unique_ptr<llvm::TargetMachine>>
createCPUTargetMachine(::qlr::numerics::SimdLevel level, bool hostCPU,
                       unsigned optLevel, bool pic);

/// Sets `module`'s triple and data layout from `machine` and runs LLVM's
/// default optimisation pipeline for `optLevel` (0-3) on it, with `machine`'s
/// cost model. The JIT and qlr-compile both call this on the translated
/// model, so that they generate the same code.
llvm::Error optimizeModel(llvm::Module &module, llvm::TargetMachine &machine,
                          unsigned optLevel);

} // namespace qlr
} // namespace mlir

#endif // QLR_RUNTIME_COMPILE_H
