//===- Checkpoint.h - Read model checkpoints ----------------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// MLIR-free readers for LLaMA-family checkpoints: llama2.c `.bin`, GGUF, and
// Hugging Face directories (config.json + *.safetensors). Every reader
// presents the same canonical view:
//
//   tok_embeddings                     [vocab, dim]
//   layers.N.attention_norm            [dim]
//   layers.N.attention.wq              [heads * headDim, dim]
//   layers.N.attention.wk              [kvHeads * headDim, dim]
//   layers.N.attention.wv              [kvHeads * headDim, dim]
//   layers.N.attention.wo              [dim, heads * headDim]
//   layers.N.ffn_norm                  [dim]
//   layers.N.feed_forward.w1 (gate)    [hidden, dim]
//   layers.N.feed_forward.w2 (down)    [dim, hidden]
//   layers.N.feed_forward.w3 (up)      [hidden, dim]
//   norm                               [dim]
//   output                             [vocab, dim]   (absent when tied)
//
// Shapes are row-major with PyTorch's [out, in] layout for linear weights.
// Rotary embeddings use the interleaved convention (pairs 2i, 2i+1 of each
// head, as llama2.c, Meta and GGUF store them); readers of Hugging Face
// checkpoints, whose q/k projections are permuted for the rotate-half
// convention, permute those rows back. Tensors are read (and dequantized:
// F16, BF16, Q8_0, Q4_0, Q4_1) into float32 one at a time from a
// memory-mapped file.
//
//===----------------------------------------------------------------------===//

#ifndef QLR_CHECKPOINT_CHECKPOINT_H
#define QLR_CHECKPOINT_CHECKPOINT_H

#include "qlr/Tokenizer/TokenizerData.h"

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace qlr::checkpoint {

struct ModelConfig {
  int64_t dim = 0;       ///< Embedding width.
  int64_t hiddenDim = 0; ///< Feed-forward width.
  int64_t numLayers = 0;
  int64_t numHeads = 0;
  int64_t numKVHeads = 0; ///< Grouped-query attention: divides numHeads.
  int64_t headDim = 0;    ///< Usually dim / numHeads.
  int64_t vocabSize = 0;
  int64_t maxSeqLen = 0; ///< Context length the model was trained for.
  float normEps = 1e-5f; ///< RMSNorm epsilon.
  float ropeTheta = 10000.0f;
  bool tiedEmbeddings = false; ///< `output` reuses `tok_embeddings`.
};

/// The storage type of a tensor in the file (before dequantization).
enum class DType { F32, F16, BF16, Q8_0, Q4_0, Q4_1 };
llvm::StringRef stringifyDType(DType type);

struct TensorInfo {
  std::string name;           ///< Canonical name (see the file comment).
  std::vector<int64_t> shape; ///< Canonical row-major shape.
  DType dtype = DType::F32;
};

class Checkpoint {
public:
  virtual ~Checkpoint();

  /// "llama2.c", "gguf" or "safetensors".
  virtual llvm::StringRef formatName() const = 0;
  /// The path given to openCheckpoint.
  virtual llvm::StringRef path() const = 0;
  virtual const ModelConfig &config() const = 0;
  /// Every tensor, in the canonical order of the file comment.
  virtual llvm::ArrayRef<TensorInfo> tensors() const = 0;
  /// The tokenizer stored with the checkpoint (GGUF metadata, HF
  /// tokenizer.json); none for llama2.c files.
  virtual const std::optional<tokenizer::TokenizerData> &tokenizer() const = 0;
  /// Reads one tensor, dequantized to float32, into `out` (whose size must
  /// be the tensor's element count).
  virtual llvm::Error readTensor(llvm::StringRef name,
                                 llvm::MutableArrayRef<float> out) const = 0;

  /// The info of tensor `name`, or null.
  const TensorInfo *findTensor(llvm::StringRef name) const;
};

/// Opens a checkpoint: a directory is a Hugging Face checkpoint, a file
/// starting with the GGUF magic is GGUF, anything else is tried as llama2.c.
/// Errors name the file and what is wrong (truncated data, header/size
/// mismatch, unknown dtype, missing tensor or config key, ...).
llvm::Expected<std::unique_ptr<Checkpoint>>
openCheckpoint(llvm::StringRef path);

} // namespace qlr::checkpoint

#endif // QLR_CHECKPOINT_CHECKPOINT_H
