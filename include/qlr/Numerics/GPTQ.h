//===- GPTQ.h - GPTQ quantizer and Hessian accumulation -------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// GPTQ (Frantar et al. 2022, "GPTQ: Accurate Post-Training Quantization for
// Generative Pre-trained Transformers"): quantizes a linear layer's weight
// W (n x k, rows = output channels, columns = inputs) one input column at a
// time, compensating each column's rounding error on the not yet quantized
// columns through the inverse of the layer-input Hessian H = (2/N) X Xᵀ.
// The result minimises (greedily) the layer-output error
// tr((W - Wq) H (W - Wq)ᵀ) rather than ||W - Wq||.
//
// The exact algorithm (damping, dead columns, lazy block updates, act-order
// and how group scales are chosen) is documented in docs/Quantizers.md.
// Linear algebra is done in double precision; codes, scales and zero points
// follow the RTN conventions of Quantize.h exactly.
//
//===----------------------------------------------------------------------===//

#ifndef QLR_NUMERICS_GPTQ_H
#define QLR_NUMERICS_GPTQ_H

#include "qlr/Numerics/Format.h"
#include "qlr/Numerics/Quantize.h"

#include "llvm/ADT/ArrayRef.h"
#include "llvm/Support/Error.h"

#include <cstdint>
#include <vector>

namespace qlr::numerics {

/// Accumulates GPTQ's Hessian H = (2/N) * sum over rows x of x xᵀ (k x k) of
/// the N input rows seen so far, in double precision.
class HessianAccumulator {
public:
  /// Creates an empty accumulator for inputs of dimension \p k >= 0.
  explicit HessianAccumulator(int64_t k);

  /// Adds \p numRows >= 0 input rows; \p rows is numRows x k, row-major.
  void add(const float *rows, int64_t numRows);

  /// Returns the input dimension k.
  int64_t dim() const { return k; }

  /// Returns the number of rows added so far (N).
  int64_t count() const { return numRows; }

  /// Returns H = (2/N) * sum x xᵀ as a k x k row-major (symmetric) matrix;
  /// all zeros when no row was added.
  std::vector<double> hessian() const;

private:
  int64_t k;
  int64_t numRows = 0;
  /// Lower triangle (column-major k x k) of sum x xᵀ; the strict upper
  /// triangle is unused.
  std::vector<double> sum;
};

/// Options of quantizeGPTQ.
struct GPTQOptions {
  /// Relative damping: damp * mean(diag H) is added to diag H (>= 0).
  double damp = 0.01;
  /// Quantize columns in order of descending diag H ("act-order"); group
  /// scales are then static (computed from the unmodified weights).
  bool actOrder = false;
  /// Columns per lazy batch update (>= 1); does not change the result beyond
  /// floating-point rounding.
  int64_t blockSize = 128;
  /// Choose each scale (and zero point) with quantizeRTNClipSearch instead of
  /// quantizeRTN's min/max rule.
  bool clipSearch = false;
  /// Scale refit rounds (>= 0). Each round refits every row's scales (and
  /// zero points) to its codes with refitScales and, from the second round
  /// on, first lets GPTQ choose new codes for the previous round's scales.
  /// The result with the smallest error in the refit's metric (H damped by
  /// `damp`, as reported by refitScales, at no extra cost) is returned, so
  /// refitting never makes that error worse than plain GPTQ.
  int64_t refitRounds = 0;
};

/// Quantizes \p w (\p n x \p k, row-major; rows are output channels, columns
/// inputs) with GPTQ given the k x k row-major Hessian \p hessian (only its
/// lower triangle is read by the factorization; it should be symmetric
/// positive semi-definite). \p fmt must be valid for shape {n, k} with
/// Granularity Tensor, Channel with axis 0, or Group with axis 1 (groups along
/// k; a partial last group is allowed); uniform symmetric, uniform asymmetric
/// and codebook formats are supported. Returns the layout of quantizeRTN for
/// shape {n, k}: unpacked codes, scales rounded to fmt.scaleType and, for
/// asymmetric formats, zero points. Returns an error for invalid options, an
/// unsupported format or axis, mismatched sizes, non-finite inputs, or a
/// Hessian whose Cholesky factorization fails even after more damping.
llvm::Expected<QuantizedData> quantizeGPTQ(llvm::ArrayRef<float> w, int64_t n,
                                           int64_t k,
                                           llvm::ArrayRef<double> hessian,
                                           const QuantFormat &fmt,
                                           const GPTQOptions &options = {});

/// Returns tr((W - Wq) H (W - Wq)ᵀ) for \p w and \p wq (both \p n x \p k,
/// row-major) and the k x k row-major \p hessian: the layer-output error GPTQ
/// minimises, equal to (2/N) ||(W - Wq) Xᵀ||_F^2 when H was accumulated from
/// the N x k inputs X. Computed in double precision.
double hessianWeightedError(llvm::ArrayRef<float> w, llvm::ArrayRef<float> wq,
                            int64_t n, int64_t k,
                            llvm::ArrayRef<double> hessian);

/// Returns B H Bᵀ (\p r x \p r, row-major) for B (\p r x \p k, row-major) and
/// the k x k row-major \p hessian: the Hessian of the inputs B x of the
/// second factor of a product A·B applied to inputs x with Hessian H.
/// Computed in double.
std::vector<double> projectHessian(llvm::ArrayRef<double> hessian,
                                   llvm::ArrayRef<float> b, int64_t r,
                                   int64_t k);

/// The weight GPTQ should aim at when the layer's inputs in the quantized
/// model (Xq, N x k) differ from those in the float model (Xf): the
/// minimiser of ||Xf Wᵀ - Xq Wtᵀ||_F (asymmetric calibration, as GPTAQ,
/// Li et al. 2025), regularised as
///   Wt = W + W (C - H) (H + damp * mean(diag H) * I)^-1
/// with H = (2/N) Xqᵀ Xq (\p hessian) and C = (2/N) Xfᵀ Xq (\p cross), both
/// k x k row-major, so that Wt = W when Xf = Xq. Since
/// ||Xf Wᵀ - Xq Qᵀ||² = ||Xq (Wt - Q)ᵀ||² + const for every Q (without
/// damping), GPTQ on Wt with H minimises the error against the float model's
/// outputs. \p w is n x k row-major. Returns an error for mismatched sizes,
/// non-finite values or a damped H that is not positive definite.
llvm::Expected<std::vector<float>>
floatTargetWeights(llvm::ArrayRef<float> w, int64_t n, int64_t k,
                   llvm::ArrayRef<double> hessian, llvm::ArrayRef<double> cross,
                   double damp);

/// Refits the scales (and, for asymmetric formats, zero points) of \p q, the
/// quantization of \p w (\p n x \p k, row-major) in format \p fmt, with its
/// codes held fixed, to minimise the layer-output error
/// tr((W - Wq) Hd (W - Wq)ᵀ) for Hd = \p hessian + damp * mean(diag) * I.
/// With e_j the code's value at scale 1 (c - 2^(bits-1), c or codebook[c]),
/// Wq_rj = s_g e_j + m_g (m_g = -s_g z_g; m_g = 0 for symmetric and codebook
/// formats) is linear in the row's 2G (or G) unknowns, so each row is one
/// small least-squares problem in the Hd metric. Asymmetric formats then
/// round z_g = -m_g / s_g to the stored zero-point grid and solve for the
/// scales again with the zero points fixed. Scales are rounded to the scale
/// type; a row whose error would not go down keeps its old scales. Tensor
/// granularity is returned unchanged. Returns an error for mismatched sizes.
///
/// When \p errors is given, it receives tr((W - Wq) Hd (W - Wq)ᵀ) for \p q
/// (`before`) and for the result (`after`), from the per-row normal
/// equations the refit solves anyway (for Tensor granularity both are left
/// at -1: nothing is computed).
struct RefitErrors {
  double before = -1;
  double after = -1;
};
llvm::Expected<QuantizedData>
refitScales(llvm::ArrayRef<float> w, int64_t n, int64_t k,
            llvm::ArrayRef<double> hessian, const QuantFormat &fmt,
            const QuantizedData &q, double damp = 0.0,
            RefitErrors *errors = nullptr);

} // namespace qlr::numerics

#endif // QLR_NUMERICS_GPTQ_H
