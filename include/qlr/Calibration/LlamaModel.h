//===- LlamaModel.h - Float32 LLaMA engine for calibration --*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// An MLIR-free float32 implementation of the LLaMA-family model that
// qlr-import builds (lib/Import/LlamaImporter.cpp), for calibrating
// quantizers: it runs a batch of independent token sequences block by block,
// shows every linear layer's input to an observer (GPTQ Hessians) and lets
// the caller swap in quantized weights between the layers of a block
// (sequential GPTQ), or change the norm weights (norm tweaking).
//
// Semantics match the importer's IR:
//   h   = rms_norm(x, attention_norm)      y = x / sqrt(mean(x^2) + eps) * w
//   q,k = rope(h wq^T), rope(h wk^T)       interleaved pairs (2i, 2i+1) of
//                                          each head, angle p * theta^(-2i/E)
//   v   = h wv^T
//   a   = softmax(q k^T / sqrt(E), causal) v   query head j uses key/value
//                                              head j / (heads / kvHeads)
//   x  += a wo^T
//   h   = rms_norm(x, ffn_norm)
//   x  += (silu(h w1^T) * (h w3^T)) w2^T
// and logits = rms_norm(x, norm) output^T (tok_embeddings when tied).
//
// Linear layers and the classifier are OpenBLAS sgemm calls; attention and
// the element-wise steps run on std::thread workers (one per core).
//
//===----------------------------------------------------------------------===//

#ifndef QLR_CALIBRATION_LLAMAMODEL_H
#define QLR_CALIBRATION_LLAMAMODEL_H

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/STLFunctionalExtras.h"
#include "llvm/Support/Error.h"

#include <cstdint>
#include <vector>

namespace qlr::calibration {

/// The model hyper-parameters (the importer's `qlr.model` attribute).
struct LlamaConfig {
  int64_t dim = 0;       ///< Embedding width.
  int64_t headDim = 0;   ///< Width of one attention head (even).
  int64_t heads = 0;     ///< Query heads.
  int64_t kvHeads = 0;   ///< Key/value heads; divides `heads`.
  int64_t hiddenDim = 0; ///< Feed-forward width.
  int64_t layers = 0;
  int64_t vocabSize = 0;
  int64_t maxSeqLen = 0; ///< Longest sequence (rotary table rows).
  double normEps = 1e-5; ///< RMSNorm epsilon (applied in float32).
  double ropeTheta = 10000.0;
  bool tiedEmbeddings = false; ///< The classifier is `tok_embeddings`.
};

/// The weights of one transformer block. Linear weights are [out, in]
/// row-major (PyTorch layout): wq [heads*headDim, dim], wk and wv
/// [kvHeads*headDim, dim], wo [dim, heads*headDim], w1 (gate) and w3 (up)
/// [hiddenDim, dim], w2 (down) [dim, hiddenDim]; norms are [dim].
struct BlockWeights {
  std::vector<float> attentionNorm, ffnNorm, wq, wk, wv, wo, w1, w2, w3;
};

/// All weights: tokEmbeddings [vocab, dim], norm [dim], output [vocab, dim]
/// (empty when the embeddings are tied).
struct LlamaWeights {
  std::vector<float> tokEmbeddings;
  std::vector<BlockWeights> blocks;
  std::vector<float> norm;
  std::vector<float> output;
};

/// `sequences` independent sequences of `seqLen` tokens; `data` is
/// [sequences * seqLen, width] row-major (sequence-major, then position).
struct Activations {
  int64_t sequences = 0, seqLen = 0, width = 0;
  std::vector<float> data;

  /// Rows of `data`: sequences * seqLen.
  int64_t rows() const { return sequences * seqLen; }
  /// Row `r` of `data`.
  llvm::ArrayRef<float> row(int64_t r) const {
    return llvm::ArrayRef<float>(data).slice(r * width, width);
  }
};

/// The inputs of a block's linear layers, in forward order.
enum class LinearGroup {
  QKV,    ///< wq, wk, wv; input: attention_norm output [rows, dim].
  Output, ///< wo; input: attention mix [rows, heads*headDim].
  GateUp, ///< w1, w3; input: ffn_norm output [rows, dim].
  Down,   ///< w2; input: silu(w1 x) * (w3 x) [rows, hiddenDim].
};

/// Returns "qkv", "output", "gate_up" or "down".
llvm::StringRef stringifyLinearGroup(LinearGroup group);

/// y = x W^T for x [rows, in] and W [out, in] row-major: y is [rows, out].
/// Uses OpenBLAS sgemm.
void linear(llvm::ArrayRef<float> x, int64_t rows, int64_t in,
            llvm::ArrayRef<float> w, int64_t out,
            llvm::MutableArrayRef<float> y);

/// GPTQ's Hessian of a linear layer's inputs: (2 / rows) * xᵀx for the
/// rows x of `x` ([rows, width]), as a row-major [width, width] double
/// matrix. One sgemm in float (the products are summed in float, as GPTQ's
/// reference implementation does); all zeros when there are no rows.
std::vector<double> inputHessian(const Activations &x);

/// (2 / rows) * aᵀb for activations `a` [rows, wa] and `b` [rows, wb] with
/// the same rows, as a row-major [wa, wb] double matrix: with a = b it is
/// inputHessian(a). One sgemm in float; all zeros when there are no rows.
std::vector<double> crossCovariance(const Activations &a, const Activations &b);

class LlamaModel {
public:
  /// Validates the configuration and every weight's size against it;
  /// returns an error naming the first mismatch.
  static llvm::Expected<LlamaModel> create(LlamaConfig config,
                                           LlamaWeights weights);

  const LlamaConfig &config() const { return cfg; }
  /// The weights of block `i`, mutable so that callers can swap in quantized
  /// (dequantized) weights or tweaked norms. Sizes must stay unchanged.
  BlockWeights &block(int64_t i);
  const LlamaWeights &weights() const { return w; }
  /// Moves the weights out (the model is unusable afterwards).
  LlamaWeights takeWeights() && { return std::move(w); }

  /// Embeds `sequences * seqLen` tokens (each in [0, vocab)): [rows, dim].
  Activations embed(llvm::ArrayRef<int32_t> tokens, int64_t sequences,
                    int64_t seqLen) const;

  /// Runs block `i` on `x` [rows, dim] (causal attention within each
  /// sequence, positions 0 .. seqLen-1; seqLen <= maxSeqLen) and returns the
  /// block's output [rows, dim]. Before each LinearGroup is applied, calls
  /// observer(group, input) if set; the observer may modify block(i)'s
  /// weights of that group (or any later part of the block), and the forward
  /// then uses the modified weights.
  Activations forwardBlock(
      int64_t i, const Activations &x,
      llvm::function_ref<void(LinearGroup, const Activations &)> observer =
          nullptr);

  /// Embedding and every block: the final hidden states [rows, dim] (before
  /// the final norm).
  Activations forward(llvm::ArrayRef<int32_t> tokens, int64_t sequences,
                      int64_t seqLen) const;

  /// Final norm then classifier: [rows, vocab] row-major.
  std::vector<float> logits(const Activations &x) const;

  /// Self-generated calibration text (the Norm Tweaking recipe): `sequences`
  /// samples of `seqLen` tokens ([sequences, seqLen] row-major), decoded in
  /// lockstep as one batch with a KV cache. Token 0 of each sequence is
  /// uniform in [0, vocab) (std::mt19937_64(seed)() % vocab, sequences in
  /// order); tokens 1 .. greedyTokens are the argmax of the logits (lowest
  /// index on ties); later tokens are sampled from softmax(logits /
  /// temperature) with one draw per sequence per step (temperature <= 0
  /// means argmax). Deterministic for a given seed (and thread count-free).
  std::vector<int32_t> generate(int64_t sequences, int64_t seqLen,
                                uint64_t seed, int64_t greedyTokens = 4,
                                double temperature = 1.0) const;

  /// exp(mean negative log-likelihood) of each sequence's next-token
  /// predictions, averaged over all sequences * (seqLen - 1) predicted
  /// positions (seqLen >= 2).
  double perplexity(llvm::ArrayRef<int32_t> tokens, int64_t sequences,
                    int64_t seqLen) const;

private:
  LlamaModel(LlamaConfig config, LlamaWeights weights);

  /// The classifier matrix [vocab, dim].
  llvm::ArrayRef<float> classifier() const;
  /// Logits of `rows` normalized hidden rows of `x` starting at `first`.
  void logitsRows(const Activations &x, int64_t first, int64_t rows,
                  llvm::MutableArrayRef<float> out) const;

  LlamaConfig cfg;
  LlamaWeights w;
  /// cos / sin of position p, pair i at [p * headDim/2 + i], p < maxSeqLen.
  std::vector<float> ropeCos, ropeSin;
};

} // namespace qlr::calibration

#endif // QLR_CALIBRATION_LLAMAMODEL_H
