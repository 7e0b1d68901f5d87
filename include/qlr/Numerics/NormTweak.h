//===- NormTweak.h - Numerics of Norm Tweaking ----------------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// The numerics of Norm Tweaking (Li et al., AAAI 2024, "Norm Tweaking:
// High-performance Low-bit Quantization of Large Language Models"): after a
// block's linear weights are quantized, only its norm weights are re-tuned
// with Adam so that the block's outputs match those of the float block under
// a channel-wise distribution loss. qlr-norm-tweak gets the gradients of the
// network from the IR (qlr-differentiate); this header provides
//   - normTweakLoss: the loss and its gradient with respect to the
//     quantized block's outputs (float and double are instantiated);
//   - AdamOptimizer.
//
//===----------------------------------------------------------------------===//

#ifndef QLR_NUMERICS_NORMTWEAK_H
#define QLR_NUMERICS_NORMTWEAK_H

#include "llvm/ADT/ArrayRef.h"

#include <cstddef>
#include <cstdint>
#include <vector>

namespace qlr::numerics {

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

} // namespace qlr::numerics

#endif // QLR_NUMERICS_NORMTWEAK_H
