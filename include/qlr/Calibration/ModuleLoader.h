//===- ModuleLoader.h - LlamaModel from an imported module --*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// Builds the float32 calibration engine (LlamaModel.h) from a module made by
// qlr-import, possibly after weight passes rewrote some of its weights.
//
//===----------------------------------------------------------------------===//

#ifndef QLR_CALIBRATION_MODULELOADER_H
#define QLR_CALIBRATION_MODULELOADER_H

#include "qlr/Calibration/LlamaModel.h"

#include "mlir/IR/BuiltinOps.h"

namespace mlir::qlr {

/// Reads the `qlr.model` configuration of an imported module.
FailureOr<::qlr::calibration::LlamaConfig> readLlamaConfig(ModuleOp module);

/// Decodes a weight value to row-major floats: a float constant (dense,
/// splat or dense_resource; f32, f16 or bf16), a `qlr.pack` of constants
/// (dequantized with qlr::numerics::dequantize), a `qlr.lowrank` of such
/// factors (A·B, plus the base), or a `qlr.dequantize` of any of these.
/// Emits an error located at the defining op on anything else.
FailureOr<std::vector<float>> decodeWeight(Value weight);

/// Reads the `qlr.model` config and every weight of an imported module.
///
/// Each canonical weight NAME (tok_embeddings, layers.N.attention.wq, ...,
/// norm, output) is found by its resource name: compressed forms first
/// (resources NAME.codes / NAME.scales / NAME.zero_points tied by qlr.pack,
/// or NAME.lora_a / NAME.lora_b (qlr-loftq) and NAME.factor_a /
/// NAME.factor_b (qlr-basis-select) tied by qlr.lowrank, whose decoded value
/// is used), then the float constant NAME. Constants without a usable name
/// (inline `dense<...>`) are found by position: the @forward function's
/// qlr.rms_norm and qlr.linear ops in the importer's order (7 linears and 2
/// norms per layer, then the final norm and the classifier).
///
/// When the embeddings are tied but the classifier weight was compressed
/// (tok_embeddings.codes exists), the float tok_embeddings constant stays
/// the embedding table and the decoded classifier becomes `output`, with
/// tiedEmbeddings = false.
///
/// Emits a located error and returns failure on anything missing or
/// malformed.
FailureOr<::qlr::calibration::LlamaModel> loadLlamaModel(ModuleOp module);

} // namespace mlir::qlr

#endif // QLR_CALIBRATION_MODULELOADER_H
