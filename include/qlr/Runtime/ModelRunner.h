//===- ModelRunner.h - JIT-run an imported model ------------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// Loads a module made by qlr-import (possibly transformed by quant-opt),
// compiles it for the host CPU with qlr-cpu-pipeline and MLIR's
// ExecutionEngine, and runs its @forward function with a KV cache it owns.
//
//===----------------------------------------------------------------------===//

#ifndef QLR_RUNTIME_MODELRUNNER_H
#define QLR_RUNTIME_MODELRUNNER_H

#include "qlr/Checkpoint/Checkpoint.h"
#include "qlr/Numerics/Simd.h"
#include "qlr/Tokenizer/TokenizerData.h"

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <memory>
#include <optional>

namespace mlir::qlr {

struct RunnerOptions {
  /// LLVM optimisation level for the JIT (0-3).
  unsigned optLevel = 3;
  /// Threads for parallel loops; 0 = one per core. Needs libomp (see
  /// ModelRunner::supportsThreads); otherwise everything runs on one thread.
  unsigned threads = 0;
  /// Compile the model. Without it only the configuration and tokenizer are
  /// read (fast), and forward() fails.
  bool compile = true;
  /// Compile with qlr-gpu-pipeline{emulate=true}: the GPU kernels' loop
  /// nests (decoders fused, one thread's work per innermost iteration) run
  /// on the CPU, one after the other. Slow; checks the GPU schedule without
  /// a GPU.
  bool emulateGPU = false;
};

class ModelRunner {
public:
  /// Parses `path` (bytecode or text), compiles it and allocates the cache.
  static llvm::Expected<std::unique_ptr<ModelRunner>>
  load(llvm::StringRef path, const RunnerOptions &options = {});
  ~ModelRunner();

  const ::qlr::checkpoint::ModelConfig &config() const;
  /// The tokenizer embedded by qlr-import, if any.
  const std::optional<::qlr::tokenizer::TokenizerData> &tokenizer() const;
  /// Seconds spent parsing and compiling.
  double compileSeconds() const;
  /// The instruction-set level the model was compiled for:
  /// ::qlr::numerics::simdLevel(), i.e. the host's capped by QLR_MAX_SIMD.
  ::qlr::numerics::SimdLevel simdLevel() const;
  /// The CPU the JIT compiled for: the host's name (e.g. "znver3") at the
  /// host's level, else the level's generic CPU ("x86-64-v3", "x86-64").
  /// Empty when the model was not compiled.
  llvm::StringRef targetCPU() const;
  /// Where the model runs: "cpu" for the JIT and CPU libraries, e.g.
  /// "cuda sm_90: NVIDIA H100 80GB HBM3 (compute 9.0)" for a CUDA library
  /// (qlr_model_device).
  llvm::StringRef device() const;
  /// Whether this build can run on several threads (found libomp).
  static bool supportsThreads();

  /// Runs `tokens` at positions pos .. pos+T-1 (keys/values of positions
  /// before pos come from earlier calls) and writes T rows of logits
  /// [T, vocab] into `logits`.
  llvm::Error forward(llvm::ArrayRef<int32_t> tokens, int64_t pos,
                      llvm::MutableArrayRef<float> logits);

  struct Impl;

private:
  explicit ModelRunner(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl;
};

} // namespace mlir::qlr

#endif // QLR_RUNTIME_MODELRUNNER_H
