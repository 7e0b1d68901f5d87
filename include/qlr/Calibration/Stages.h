//===- Stages.h - Sequential calibration by running the IR -----*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// Calibration that executes the module being transformed: the linears to
// calibrate ("targets") split a function into stages by data dependence,
// each stage is outlined into a function of its own that also returns the
// statistics of the targets' inputs (XᵀX, computed in the compiled code), the
// stages are compiled once by qlr-cpu-pipeline (JitModule) and run in order
// on every calibration sample. Between stages a callback replaces the next
// targets' weights (for example by their GPTQ quantization), so later
// stages see the earlier ones as they will be after the pass: sequential
// calibration on any graph, with no second implementation of the model.
//
// Stages. A target's level is 1 + the highest level among the targets its
// operands depend on (0 when none): in a LLaMA block q/k/v have one level,
// the attention output the next, gate/up the next, down the next. Segment s
// computes every needed op whose operands depend on targets of level <= s
// and on at least one of level s (targets of level s run in segment s, with
// their replaced weights); at its end the inputs of the level s + 1 targets
// are complete. Only ops that the targets' inputs depend on run (never the
// classifier, say). Values one segment makes and a later one reads are kept
// per sample on the host ("boundary values"); constants and scalars computed
// from the function's arguments are recomputed where needed.
//
// Limits (each reported as a located error): the function has one block;
// boundary values are ranked tensors; memory effects (memref ops, calls)
// are not allowed in the needed ops; the targets' inputs are f32.
//
//===----------------------------------------------------------------------===//

#ifndef QLR_CALIBRATION_STAGES_H
#define QLR_CALIBRATION_STAGES_H

#include "qlr/Dialect/QLR/IR/QLR.h"
#include "qlr/Runtime/Jit.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/STLFunctionalExtras.h"
#include "llvm/ADT/StringMap.h"

#include <string>
#include <vector>

namespace mlir::qlr {

/// A target to calibrate. Its weight must be [N, K] (float, quantized or
/// low-rank); the callback gives it f32 weights [N, K].
struct CalibrationTarget {
  LinearOp linear;
};

/// The inputs of a set of targets that read the same value, accumulated over
/// every row of every sample.
struct CalibrationTap {
  /// The input value (in the calibrated function) and its width K.
  Value input;
  int64_t width = 0;
  /// The targets reading it, in program order.
  SmallVector<LinearOp> linears;
  /// Σ xᵀx over the rows x of the input as the stages so far compute it
  /// (K x K, row-major, double).
  std::vector<double> gram;
  /// With a float stream: Σ x_fᵀ x over the same rows, x_f the input in the
  /// float model (the original weights everywhere).
  std::vector<double> cross;
  /// How many rows (the product of all dimensions but the last, summed over
  /// the samples).
  int64_t rows = 0;

  /// GPTQ's Hessian H = (2/rows) · Σ xᵀx (all zeros without rows).
  std::vector<double> hessian() const { return scaled(gram); }
  /// (2/rows) · Σ x_fᵀ x, the float-target cross term.
  std::vector<double> crossHessian() const { return scaled(cross); }

private:
  std::vector<double> scaled(const std::vector<double> &sum) const {
    double scale = rows ? 2.0 / double(rows) : 0.0;
    std::vector<double> result(sum.size());
    for (size_t i = 0; i < sum.size(); ++i)
      result[i] = sum[i] * scale;
    return result;
  }
};

struct StagedCalibrationOptions {
  /// Also run the function with its original weights ("float stream") and
  /// accumulate CalibrationTap::cross.
  bool floatStream = false;
  JitOptions jit;
  /// For progress lines and errors ("qlr-quantize-linear").
  std::string pass = "calibration";
};

/// Called after each segment with the taps it completed (targets of level
/// `level`, 1-based, of `levels`). It must store in `weights` the f32 [N, K]
/// weights every target in `taps` runs with from now on (row-major).
using StageCallback = llvm::function_ref<LogicalResult(
    unsigned level, unsigned levels, MutableArrayRef<CalibrationTap> taps,
    llvm::DenseMap<Operation *, std::vector<float>> &weights)>;

/// Calls `fn` on every value `op` reads: its operands and the values its
/// regions use from outside (tensors a linalg.generic body reads with
/// tensor.extract, say).
void forEachUsedValue(Operation *op, llvm::function_ref<void(Value)> fn);

/// Functions of one module compiled for the host into several JitModules
/// side by side (one module per thread of the context: LLVM compiles a
/// module on one thread). Functions that differ only in their weights (the
/// layers of a model; JitModule::structuralKey) are compiled once.
class CompiledFunctions {
public:
  /// Compiles `names` of `module` (which must outlive the result) on the
  /// threads of the module's context (one after the other when it has
  /// threading disabled); reports failures at `anchor`. `pass` names the
  /// progress line, which counts the functions as `noun`.
  static FailureOr<CompiledFunctions>
  compile(Operation *anchor, ModuleOp module, ArrayRef<std::string> names,
          const JitOptions &options, StringRef pass, StringRef noun = "stages");
  /// Calls `name` (see JitModule::call).
  llvm::Expected<std::vector<JitBuffer>> call(StringRef name,
                                              ArrayRef<JitTensor> args) const;
  /// Whether the functions run on the OpenMP threads themselves (callers
  /// then run them one at a time).
  bool threaded() const { return isThreaded; }

private:
  bool isThreaded = false;
  std::vector<std::unique_ptr<JitModule>> modules;
  llvm::StringMap<unsigned> moduleOf;
};

/// The stages of a function, planned and compiled once, to run on
/// calibration data any number of times.
class StagedCalibration {
public:
  ~StagedCalibration();
  /// Plans and compiles the stages of `targets` in `function` (one block,
  /// tensor arguments). Emits located errors and fails when the function
  /// cannot be split or compiled.
  static FailureOr<std::unique_ptr<StagedCalibration>>
  compile(func::FuncOp function, ArrayRef<CalibrationTarget> targets,
          const StagedCalibrationOptions &options);
  /// Runs the stages on `samples` (one JitTensor per argument of the
  /// function each), calling `callback` after each.
  LogicalResult run(ArrayRef<std::vector<JitTensor>> samples,
                    StageCallback callback);
  unsigned numLevels() const;

private:
  struct Impl;
  explicit StagedCalibration(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl;
};

/// Calibrates `targets` of `function` (one block, tensor arguments) on
/// `samples`, each one JitTensor per argument of `function`. Emits located
/// errors and fails when the function cannot be split or run.
LogicalResult runStagedCalibration(func::FuncOp function,
                                   ArrayRef<CalibrationTarget> targets,
                                   ArrayRef<std::vector<JitTensor>> samples,
                                   const StagedCalibrationOptions &options,
                                   StageCallback callback);

} // namespace mlir::qlr

#endif // QLR_CALIBRATION_STAGES_H
