//===- Calibration.h - Calibration data for the PTQ passes --*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// The calibration tokens the self-calibrating passes (qlr-quantize-linear
// method=gptq, qlr-norm-tweak) run the model on: windows of a text file
// tokenized with the module's embedded tokenizer, or text sampled from the
// float model itself.
//
//===----------------------------------------------------------------------===//

#ifndef QLR_LIB_DIALECT_QLR_TRANSFORMS_CALIBRATION_H
#define QLR_LIB_DIALECT_QLR_TRANSFORMS_CALIBRATION_H

#include "qlr/Calibration/LlamaModel.h"

#include "mlir/IR/BuiltinOps.h"

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
};

/// Returns samples x seqLen tokens, row-major. File: `samples` windows of
/// seqLen consecutive tokens at seeded random offsets in the tokenized text
/// (no BOS). generate: LlamaModel::generate with the seed. Reports bad
/// options, a missing or too short file, or a module without an embedded
/// tokenizer at `module`, naming `pass`.
FailureOr<std::vector<int32_t>>
getCalibrationTokens(ModuleOp module, StringRef pass,
                     const CalibrationSpec &spec,
                     const ::qlr::calibration::LlamaModel &model);

/// The canonical names (`layers.I.attention.wq`, ...) of block `i`'s linear
/// layers that consume `group`'s input, each with the member of `block` that
/// holds its weight, in forward order.
SmallVector<std::pair<std::string, std::vector<float> *>>
blockGroupWeights(::qlr::calibration::BlockWeights &block, int64_t i,
                  ::qlr::calibration::LinearGroup group);

} // namespace mlir::qlr

#endif // QLR_LIB_DIALECT_QLR_TRANSFORMS_CALIBRATION_H
