//===- Calibration.h - Calibration data for the PTQ passes --*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// The calibration tokens the self-calibrating passes (qlr-quantize-linear
// method=gptq, qlr-norm-tweak) run the model on: windows of a text file
// tokenized with the module's embedded tokenizer, text sampled from the
// module itself, or the entry function's arguments from NumPy files.
//
//===----------------------------------------------------------------------===//

#ifndef QLR_LIB_DIALECT_QLR_TRANSFORMS_CALIBRATION_H
#define QLR_LIB_DIALECT_QLR_TRANSFORMS_CALIBRATION_H

#include "qlr/Dialect/QLR/IR/QLR.h"
#include "qlr/Runtime/Jit.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/IRMapping.h"

#include <string>
#include <vector>

namespace mlir::qlr {

/// Where calibration tokens come from (the passes' shared options).
struct CalibrationSpec {
  /// A text file, or "generate".
  std::string source;
  int64_t samples = 32;
  int64_t seqLen = 256;
  uint64_t seed = 0;
  /// Token sequences chosen already (samples x seqLen, for example sampled
  /// from the float model for a quantized one): used instead of `source`.
  std::vector<int32_t> tokens;
};

/// data=generate: `spec.samples` sequences of `spec.seqLen` tokens
/// ([samples, seqLen] row-major) sampled from the module's own @forward (the
/// interface qlr-import gives it), decoded in lockstep by its batched form
/// (qlr-batch). Token 0 of each sequence is uniform over the vocabulary
/// (std::mt19937_64(spec.seed)() % vocab, sequences in order), tokens 1-4
/// are the argmax of the logits (lowest index on ties), later ones are
/// sampled from softmax(logits), one draw per sequence and step.
/// Deterministic for a seed. Reports a module without a usable @forward at
/// `module`, naming `pass`.
FailureOr<std::vector<int32_t>>
generateCalibrationTokens(ModuleOp module, StringRef pass,
                          const CalibrationSpec &spec);

/// What a pass that calibrates by running the module (runStagedCalibration)
/// runs: a copy of the entry function, specialized to the calibration data,
/// and the samples (one JitTensor per argument of the copy).
/// Tags a linear of a calibration copy with its index in the original.
constexpr llvm::StringLiteral kCalibrationIdAttr = "qlr.calibration_id";

struct CalibrationRun {
  /// Holds `function`; shares the original module's context and blobs.
  OwningOpRef<ModuleOp> module;
  func::FuncOp function;
  /// The copies of the original's linears in `function` -> the originals
  /// (those canonicalization removed are not calibrated).
  DenseMap<Operation *, LinearOp> originals;
  /// With `keepResults`: the copies of the original's qlr.rms_norm and
  /// qlr.layer_norm ops -> the originals.
  DenseMap<Operation *, Operation *> normOriginals;
  /// Scratch: the original's ops -> their copies, while preparing.
  IRMapping mapping;
  std::vector<std::vector<JitTensor>> samples;
  /// The data the samples point into.
  std::vector<std::vector<char>> storage;
  /// For messages: "32 x 256 tokens of FILE", "16 samples of FILE".
  std::string description;
};

/// Prepares a run of `entry` (empty: @forward, or the module's only public
/// function) on `spec`'s data:
///  * a text file or `generate`: token sequences of `spec.seqLen`; the
///    entry's first argument takes the tokens (a 1-D integer tensor), scalar
///    arguments are 0 and other tensor arguments zeros (dynamic dimensions
///    `spec.seqLen`): for qlr-import's @forward, a prefill from position 0
///    with empty caches;
///  * a .npy file (one-argument functions) or a .npz archive (one array per
///    argument, in argument order, or named arg0, arg1, ...): every array's
///    first dimension indexes the samples (the first `spec.samples`), the
///    rest is the argument's shape.
/// The copy returns nothing, so that only what the calibrated linears need
/// remains after canonicalization; with `keepResults` it keeps the entry's
/// floating-point tensor results (a language model's logits) and maps its
/// norms to the originals.
FailureOr<std::unique_ptr<CalibrationRun>>
prepareCalibrationRun(ModuleOp module, StringRef pass,
                      const CalibrationSpec &spec, StringRef entry,
                      bool keepResults = false);

} // namespace mlir::qlr

#endif // QLR_LIB_DIALECT_QLR_TRANSFORMS_CALIBRATION_H
