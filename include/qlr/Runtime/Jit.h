//===- Jit.h - JIT-compiling modules for the host CPU ----------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// The host-CPU code generation that qlr-run, qlr-compile, the calibrating
// passes and the Python bindings share: a target machine for a SIMD level,
// LLVM's optimisation at a -O level, and JitModule, which lowers functions
// of a module with qlr-cpu-pipeline and calls them on tensors the caller
// owns.
//
// JitModule's calling convention (after qlr-cpu-pipeline):
//  * every argument is a ranked tensor, passed as a memref descriptor with
//    the identity layout; the compiled code never writes into it
//    (`bufferization.writable = false`);
//  * large dense_resource constants become trailing arguments
//    (externalizeWeights) that point at the source module's blobs, which
//    must outlive the JitModule; nothing is copied;
//  * every result is a ranked tensor the compiled code allocates and the
//    caller then owns (returned as a JitBuffer, freed with std::free). The
//    functions must not return an argument, a view of one or a constant:
//    JitModule::compile copies such results into fresh buffers.
//
//===----------------------------------------------------------------------===//

#ifndef QLR_RUNTIME_JIT_H
#define QLR_RUNTIME_JIT_H

#include "qlr/Numerics/Simd.h"
#include "qlr/Pipelines/Pipelines.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/Support/LLVM.h"
#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/CodeGen.h"
#include "llvm/Support/Error.h"
#include "llvm/Target/TargetMachine.h"

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

namespace llvm {
class Module;
} // namespace llvm

namespace mlir {
class DialectRegistry;
class ExecutionEngine;
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

/// The code generator's level for an optimisation level 0-3, the same for
/// the JIT and qlr-compile (their machine code must match).
llvm::CodeGenOptLevel codeGenOptLevel(unsigned optLevel);

/// Sets qlr-cpu-pipeline's options for code that runs at `level`: the
/// kernels' vectors fill one register (16 f32 lanes with AVX-512, 8 below
/// it; a 16-lane kernel on AVX2 needs twice the registers it has and
/// spills).
void configureCPUPipeline(CPUPipelineOptions &options,
                          ::qlr::numerics::SimdLevel level, bool openmp);

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

/// The dialects and LLVM IR translations a model needs on its way from qlr
/// to machine code (upstream's dialects, the qlr dialect, LLVM/OpenMP/GPU
/// translations).
void registerJitDialects(DialectRegistry &registry);

/// How createJitEngine compiles a module for this host.
struct JitEngineOptions {
  unsigned optLevel = 2;
  /// Load LLVM's libomp for the OpenMP-lowered loops (when it was found).
  bool openmp = false;
  /// Name the JIT's functions for `perf` (/tmp/perf-PID.map).
  bool perfListener = false;
  /// Keep the machine code, for ExecutionEngine::dumpToObjectFile.
  bool objectDump = false;
  /// For llvm::Module names and messages.
  std::string name = "qlr-jit";
};

/// Compiles `module` (already in the LLVM dialect) for this host at the
/// SIMD level numerics::simdLevel() selects, optimised exactly as
/// qlr-compile optimises (optimizeModel), with MLIR's C runner utilities
/// (and libomp) loaded. `targetCPU`, when given, receives the CPU the code
/// is for.
llvm::Expected<std::unique_ptr<ExecutionEngine>>
createJitEngine(ModuleOp module, const JitEngineOptions &options,
                std::string *targetCPU = nullptr);

/// A row-major memref descriptor of `shape` over `data`, laid out as MLIR's
/// StridedMemRefType: allocated and aligned pointers, offset, sizes,
/// strides (8 bytes each).
SmallVector<int64_t> rowMajorDescriptor(const void *data,
                                        ArrayRef<int64_t> shape);

/// A tensor the caller owns: contiguous, row-major.
struct JitTensor {
  const void *data = nullptr;
  llvm::SmallVector<int64_t, 4> shape;
};

/// A tensor the compiled code allocated, now owned: contiguous, row-major.
class JitBuffer {
public:
  JitBuffer() = default;
  JitBuffer(void *allocated, void *data, llvm::SmallVector<int64_t, 4> shape)
      : allocated(allocated, &std::free), data(data), shape(std::move(shape)) {}

  template <typename T> const T *as() const {
    return static_cast<const T *>(data);
  }
  llvm::ArrayRef<int64_t> getShape() const { return shape; }
  int64_t numElements() const;
  /// A view for passing this buffer back in as an argument.
  JitTensor tensor() const { return JitTensor{data, shape}; }

private:
  std::unique_ptr<void, void (*)(void *)> allocated{nullptr, &std::free};
  void *data = nullptr;
  llvm::SmallVector<int64_t, 4> shape;
};

struct JitOptions {
  /// LLVM optimisation level (0-3).
  unsigned optLevel = 2;
  /// Run parallel loops on OpenMP threads (when LLVM's libomp was found).
  bool openmp = false;
};

/// Functions of a module compiled for the host CPU. The module is copied
/// into a context of its own (so the caller's context needs no LLVM
/// dialects), lowered with qlr-cpu-pipeline and compiled by
/// mlir::ExecutionEngine.
class JitModule {
public:
  ~JitModule();

  /// Compiles `functions` of `source` (which stays unchanged and must
  /// outlive the result: large weights are read from its blobs in place).
  /// Every function must take and return ranked tensors only. Functions
  /// with equal structuralKey (the layers of a model) are compiled once and
  /// called with their own weights.
  static llvm::Expected<std::unique_ptr<JitModule>>
  compile(ModuleOp source, llvm::ArrayRef<std::string> functions,
          const JitOptions &options = {});

  /// A text equal for two functions of `source` exactly when they compile
  /// to the same code once their large weights are arguments: the generic
  /// form of the function, renamed, with its weights externalized and the
  /// layer names and calibration ids dropped. Empty when `function` is not
  /// a function of `source`.
  static std::string structuralKey(ModuleOp source, llvm::StringRef function);

  /// Calls `function` on `args` (its declared arguments, without the
  /// externalized weights). Checks the count, the ranks and the static
  /// dimensions.
  llvm::Expected<std::vector<JitBuffer>>
  call(llvm::StringRef function, llvm::ArrayRef<JitTensor> args) const;

  /// Seconds spent lowering and compiling.
  double compileSeconds() const;

  /// Whether this build can run the compiled code on several threads.
  static bool supportsThreads();

private:
  struct Impl;
  explicit JitModule(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl;
};

} // namespace qlr
} // namespace mlir

#endif // QLR_RUNTIME_JIT_H
