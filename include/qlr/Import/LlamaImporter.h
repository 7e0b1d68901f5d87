//===- LlamaImporter.h - Checkpoint -> qlr module -----------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// Builds the qlr module of a LLaMA-family model from a checkpoint:
//
//   module attributes {qlr.model = {...config...},
//                      qlr.tokenizer = dense_resource<tokenizer> :
//                      tensor<Nxi8>} {
//     func.func @forward(%tokens: tensor<?xi32>, %pos: index,
//                        %logits: tensor<?xVxf32> {bufferization.writable},
//                        %k_cache: tensor<LxSxKVxDxf32>
//                        {bufferization.writable}, %v_cache:
//                        tensor<LxSxKVxDxf32> {bufferization.writable})
//         -> (tensor<?xVxf32>, tensor<LxSxKVxDxf32>, tensor<LxSxKVxDxf32>)
//   }
//
// `@forward` runs T tokens at positions pos .. pos+T-1: it writes their keys
// and values into the caches, attends to cache rows 0 .. pos+T-1 (causally)
// and writes the T rows of logits. A window from position 0 is a prefill; a
// single token at pos is a decode step. Linear layers and norms are
// qlr.linear / qlr.rms_norm; embedding lookup, rotary embeddings and
// attention are linalg on tensors. Every weight is a dense_resource blob
// named after its canonical tensor name.
//
//===----------------------------------------------------------------------===//

#ifndef QLR_IMPORT_LLAMAIMPORTER_H
#define QLR_IMPORT_LLAMAIMPORTER_H

#include "qlr/Checkpoint/Checkpoint.h"
#include "qlr/Dialect/QLR/Utils/ModelInterface.h"
#include "qlr/Tokenizer/TokenizerData.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"

#include <memory>
#include <optional>

namespace mlir::qlr {

class FormatAttr;

struct ImportOptions {
  /// Rows of the KV cache (longest context qlr-run can use); 0 = the
  /// model's own maximum.
  int64_t maxSeqLen = 0;
};

/// Builds the module for `checkpoint`, embedding `tokenizer` when given.
/// Reads one tensor at a time straight into its resource blob.
FailureOr<OwningOpRef<ModuleOp>>
importLlama(MLIRContext *context,
            const ::qlr::checkpoint::Checkpoint &checkpoint,
            const ::qlr::tokenizer::TokenizerData *tokenizer,
            const ImportOptions &options);

/// A checkpoint of random weights (fixed `seed`) for `config`, with a
/// byte-level SentencePiece tokenizer: for demos and tests without a model.
/// With `skipLinearWeights`, reading a linear layer's weight (the attention
/// and feed-forward matrices, not the embedding or the classifier) leaves
/// the caller's buffer untouched, its contents unspecified: for
/// quantizeSyntheticWeights, which replaces those weights, so that a
/// 7B-shaped import never writes (or, in fresh pages, commits) the float
/// matrices.
std::unique_ptr<::qlr::checkpoint::Checkpoint>
createSyntheticCheckpoint(const ::qlr::checkpoint::ModelConfig &config,
                          uint64_t seed, bool skipLinearWeights = false);

/// The shapes `qlr-import --synthetic-config` names: "tiny" (2 layers of
/// width 64, vocabulary 512, tied embeddings: the test model), "llama2-7b"
/// (32 x 4096, feed-forward 11008, 32 heads, vocabulary 32000) and
/// "llama3-8b" (32 x 4096, feed-forward 14336, 32 heads over 8 KV heads,
/// vocabulary 128256, RoPE theta 500000). std::nullopt for another name.
std::optional<::qlr::checkpoint::ModelConfig>
syntheticConfig(llvm::StringRef name);

/// The names syntheticConfig knows, for messages ("tiny, llama2-7b, ...").
llvm::StringRef syntheticConfigNames();

/// Replaces the float weight of every qlr.linear of `module` except the
/// classifier (weights named output, lm_head or tok_embeddings, which stay
/// float as qlr-quantize-linear leaves them) by a `qlr.pack` of random
/// codes, scales and zero points in `format` (resources NAME.codes,
/// NAME.scales, NAME.zero_points, as qlr-quantize-linear names them), drawn
/// from `seed` and the weight's name. Scales are chosen so that decoded
/// weights have variance 1/K, like the float synthetic weights. The float
/// constants are erased and their blobs released. Fails (with a diagnostic)
/// when `format` does not fit a weight.
LogicalResult quantizeSyntheticWeights(ModuleOp module, FormatAttr format,
                                       uint64_t seed);

/// Reads the model configuration back from a module built by importLlama.
FailureOr<::qlr::checkpoint::ModelConfig> readModelConfig(ModuleOp module);

} // namespace mlir::qlr

#endif // QLR_IMPORT_LLAMAIMPORTER_H
