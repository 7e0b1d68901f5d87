//===- NormTweak.h - Numerics of Norm Tweaking ----------------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// The numerics of Norm Tweaking (Li et al., AAAI 2024, "Norm Tweaking:
// High-performance Low-bit Quantization of Large Language Models"): after a
// LLaMA block's linear weights are quantized, only its two RMSNorm weight
// vectors are re-tuned with Adam so that the block's outputs match those of
// the float block under a channel-wise distribution loss.
//
// This header provides
//   - LlamaBlockBackprop: the forward pass of one LLaMA transformer block
//     with exactly the semantics of calibration::LlamaModel::forwardBlock
//     (see include/qlr/Calibration/LlamaModel.h), and an analytic backward
//     pass that returns the gradients of a loss with respect to the two norm
//     weight vectors (gradients flow through attention, softmax, RoPE, the
//     SwiGLU gate and the residuals; the frozen linear weights get none);
//   - normTweakLoss: the loss and its gradient with respect to the
//     quantized block's outputs;
//   - AdamOptimizer;
//   - stand-alone RMSNorm and LayerNorm with their backward passes.
//
// Everything is templated on the scalar type (float and double are
// instantiated): float is the fast path used by the compiler, double is for
// tests (finite differences). No MLIR, no Eigen in this header.
//
//===----------------------------------------------------------------------===//

#ifndef QLR_NUMERICS_NORMTWEAK_H
#define QLR_NUMERICS_NORMTWEAK_H

#include "qlr/Numerics/Simd.h"

#include "llvm/ADT/ArrayRef.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace qlr::numerics {

//===----------------------------------------------------------------------===//
// LLaMA block forward and backward
//===----------------------------------------------------------------------===//

/// The hyper-parameters of one LLaMA block (as in calibration::LlamaConfig).
struct LlamaBlockShape {
  int64_t dim = 0;       ///< Embedding width.
  int64_t headDim = 0;   ///< Width of one attention head (even).
  int64_t heads = 0;     ///< Query heads.
  int64_t kvHeads = 0;   ///< Key/value heads; divides `heads`.
  int64_t hiddenDim = 0; ///< Feed-forward width.
  double normEps = 1e-5; ///< RMSNorm epsilon (applied in T).
  double ropeTheta = 10000.0;
};

/// The weights of one block. Linear weights are row-major [out, in] as in
/// calibration::BlockWeights: wq [heads*headDim, dim], wk and wv
/// [kvHeads*headDim, dim], wo [dim, heads*headDim], w1 (gate) and w3 (up)
/// [hiddenDim, dim], w2 (down) [dim, hiddenDim]; the norms are [dim].
template <typename T> struct LlamaBlockParams {
  llvm::ArrayRef<T> attentionNorm, ffnNorm;
  llvm::ArrayRef<T> wq, wk, wv, wo, w1, w2, w3;
};

/// Forward and backward pass of one LLaMA block on `sequences` independent
/// causal sequences of `seqLen` tokens each (positions 0 .. seqLen-1):
///
///   h   = rms_norm(x, attentionNorm)      y = x / sqrt(mean(x^2) + eps) * w
///   q,k = rope(h wq^T), rope(h wk^T)      interleaved pairs (2i, 2i+1) of
///                                         each head, angle p*theta^(-2i/E)
///   v   = h wv^T
///   a   = softmax(q k^T / sqrt(E), causal) v    query head j uses key/value
///                                               head j / (heads / kvHeads)
///   x  += a wo^T
///   h   = rms_norm(x, ffnNorm)
///   y   = x + (silu(h w1^T) * (h w3^T)) w2^T
///
/// In float the element-wise steps follow calibration::LlamaModel operation
/// for operation (RMSNorm sums x^2 in double, then works in float; the
/// rotary table is float(cos(p * freq)) with freq computed in double from
/// float(theta)); only the summation order of the matrix products differs,
/// so outputs agree with LlamaModel::forwardBlock to float rounding.
///
/// Thread-safety: an instance is not thread-safe (forward and backward
/// reuse its buffers); distinct instances are independent. With `threads`
/// > 1 each call spawns that many std::threads for the matrix products and
/// the attention heads, and joins them before returning.
///
/// Memory: for R = sequences * seqLen rows the instance holds activations
/// for backward and gradient workspace of about R * (5*dim +
/// 3*heads*headDim + 4*kvHeads*headDim + 4*hiddenDim + 2*heads) values of T
/// (12 MB in float for R = 256 at the SmolLM2-135M shape), plus per thread
/// up to 2 MB of packing buffers (float fast paths) and 2 * 64 * seqLen
/// values of attention scratch. Attention probabilities are not stored (the
/// backward recomputes them from the per-row softmax statistics). Buffers
/// are kept for reuse by later calls.
///
/// Instantiated for float and double.
template <typename T> class LlamaBlockBackprop {
public:
  /// `shape` must have positive sizes, an even headDim and kvHeads dividing
  /// heads (asserted). `threads` >= 1 is the number of threads each call
  /// uses; `maxSimd` caps the instruction set of the float matrix products
  /// (for tests and benchmarks; the default takes the best the CPU has).
  explicit LlamaBlockBackprop(const LlamaBlockShape &shape,
                              unsigned threads = 1,
                              SimdLevel maxSimd = SimdLevel::AVX512);
  ~LlamaBlockBackprop();
  LlamaBlockBackprop(LlamaBlockBackprop &&) noexcept;
  LlamaBlockBackprop &operator=(LlamaBlockBackprop &&) noexcept;

  const LlamaBlockShape &shape() const;
  /// The instruction set the float matrix products use:
  /// min(maxSimd, detectSimdLevel()) (Portable for double).
  SimdLevel simdLevel() const;

  /// y = block(x) for `sequences` independent causal sequences of `seqLen`
  /// rows each: x and y are [sequences * seqLen, dim] row-major (sequence
  /// major, then position) and must not overlap. Keeps what backward needs:
  /// a copy of the two norm weights and of the activations, and references
  /// to the linear weights of `p`, which must stay alive and unchanged
  /// until the last backward of this forward. All sizes are asserted.
  void forward(const LlamaBlockParams<T> &p, llvm::ArrayRef<T> x,
               int64_t sequences, int64_t seqLen, llvm::MutableArrayRef<T> y);

  /// Given dL/dy ([sequences * seqLen, dim]) for the outputs of the last
  /// forward, writes dL/d attentionNorm and dL/d ffnNorm (both [dim]; sums
  /// over all rows, accumulated in double). May be called several times per
  /// forward (e.g. for several losses).
  void backward(llvm::ArrayRef<T> dy, llvm::MutableArrayRef<T> dAttentionNorm,
                llvm::MutableArrayRef<T> dFfnNorm);

private:
  class Impl;
  std::unique_ptr<Impl> impl;
};

//===----------------------------------------------------------------------===//
// Loss and optimizer
//===----------------------------------------------------------------------===//

/// The losses between the quantized block's outputs yq and the float
/// block's outputs yf, both [rows, C] row-major.
enum class NormTweakLoss {
  /// The paper's channel-wise distribution loss:
  /// L = 1/C sum_c ( |muf_c - muq_c| + |varf_c - varq_c| ), with mu_c the
  /// mean and var_c the biased variance of channel c over the rows.
  Distribution,
  /// L = mean over rows x C of (yq - yf)^2.
  MeanSquared,
};

/// Returns the loss `kind` between `yq` and `yf` ([rows, channels]
/// row-major, rows >= 1), accumulated in double. If `grad` is non-empty
/// ([rows, channels]), writes dL/dyq into it; sign(0) is taken as 0 (the
/// subgradient at ties of the Distribution loss). Instantiated for float and
/// double.
template <typename T>
double normTweakLoss(NormTweakLoss kind, llvm::ArrayRef<T> yq,
                     llvm::ArrayRef<T> yf, int64_t rows, int64_t channels,
                     llvm::MutableArrayRef<T> grad);

/// Adam (Kingma & Ba 2015) with bias correction, on float parameters with
/// double state. Step t (1-based) does, per parameter,
///   m = beta1 m + (1 - beta1) g,   v = beta2 v + (1 - beta2) g^2,
///   p -= lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps).
/// So the first step moves every parameter by lr * g / (|g| + eps).
class AdamOptimizer {
public:
  /// State for `size` parameters, all moments zero.
  AdamOptimizer(size_t size, double lr, double beta1 = 0.9,
                double beta2 = 0.999, double eps = 1e-8);

  /// One update of `params` with gradient `grad` (both of the constructor's
  /// size, asserted).
  void step(llvm::MutableArrayRef<float> params, llvm::ArrayRef<float> grad);

  /// Steps taken so far.
  int64_t steps() const { return t; }
  double learningRate() const { return lr; }
  void setLearningRate(double value) { lr = value; }

private:
  double lr, beta1, beta2, eps;
  int64_t t = 0;
  std::vector<double> m, v;
};

//===----------------------------------------------------------------------===//
// Stand-alone norms (instantiated for float and double)
//===----------------------------------------------------------------------===//

/// RMSNorm over the last dimension: y = x / sqrt(mean(x^2) + eps) * w for x
/// and y [rows, C] row-major and w [C]. The sum of squares is accumulated in
/// double, the rest is computed in T (in float exactly as LlamaModel does).
template <typename T>
void rmsNormForward(llvm::ArrayRef<T> x, int64_t rows, int64_t C,
                    llvm::ArrayRef<T> w, double eps,
                    llvm::MutableArrayRef<T> y);

/// The backward of rmsNormForward: given dL/dy, writes dL/dx ([rows, C])
/// and dL/dw ([C], summed over rows in double). Either output may be empty
/// to skip it.
template <typename T>
void rmsNormBackward(llvm::ArrayRef<T> x, int64_t rows, int64_t C,
                     llvm::ArrayRef<T> w, double eps, llvm::ArrayRef<T> dy,
                     llvm::MutableArrayRef<T> dx, llvm::MutableArrayRef<T> dw);

/// LayerNorm over the last dimension: y = (x - mu) / sqrt(var + eps) * gamma
/// + beta, with mu and the biased variance var of each row (computed in
/// double); x, y [rows, C], gamma, beta [C].
template <typename T>
void layerNormForward(llvm::ArrayRef<T> x, int64_t rows, int64_t C,
                      llvm::ArrayRef<T> gamma, llvm::ArrayRef<T> beta,
                      double eps, llvm::MutableArrayRef<T> y);

/// The backward of layerNormForward: given dL/dy, writes dL/dx ([rows, C]),
/// dL/dgamma and dL/dbeta ([C], summed over rows in double). Any output may
/// be empty to skip it. (beta does not enter the gradients; it is taken for
/// symmetry with the forward.)
template <typename T>
void layerNormBackward(llvm::ArrayRef<T> x, int64_t rows, int64_t C,
                       llvm::ArrayRef<T> gamma, llvm::ArrayRef<T> beta,
                       double eps, llvm::ArrayRef<T> dy,
                       llvm::MutableArrayRef<T> dx,
                       llvm::MutableArrayRef<T> dgamma,
                       llvm::MutableArrayRef<T> dbeta);

} // namespace qlr::numerics

#endif // QLR_NUMERICS_NORMTWEAK_H
