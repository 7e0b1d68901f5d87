//===- BasisSelect.h - Data-aware low-rank bases (Basis Selection) -*- C++
//-*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// The arithmetic of Basis Selection (arXiv 2405.15877): a weight
// W (m x n, rows = outputs, columns = inputs) is written through its SVD
// W = Σ_i σ_i u_i v_iᵀ; each basis u_i v_iᵀ gets a score, a global parameter
// budget decides how many bases every layer keeps, and the kept bases become
// two thin factors A (m x r), B (r x n), optionally refit by least squares on
// the layer's outputs.
//
// The layer inputs enter only through their Gram matrix G = XᵀX (n x n, X the
// [rows, n] inputs); any positive multiple of it (e.g. GPTQ's Hessian
// (2/rows) XᵀX) gives the same selection and refit.
//
// The exact rules are documented in docs/basis-selection.md.
//
//===----------------------------------------------------------------------===//

#ifndef QLR_NUMERICS_BASISSELECT_H
#define QLR_NUMERICS_BASISSELECT_H

#include "qlr/Numerics/LowRank.h"

#include "llvm/ADT/ArrayRef.h"
#include "llvm/Support/Error.h"

#include <cstdint>
#include <vector>

namespace qlr::numerics {

/// The singular values of \p w (\p m x \p n, row-major), in descending
/// order, computed in double without singular vectors (cheaper than
/// thinSVD; the values agree with thinSVD's to rounding).
std::vector<double> singularValues(llvm::ArrayRef<float> w, int64_t m,
                                   int64_t n);

/// Magnitude scores s_i = σ_i² of the p = min(m, n) bases of \p svd (plain
/// truncated SVD order).
std::vector<double> magnitudeScores(const SVD &svd);

/// Energy scores s_i = σ_i² · v_iᵀ G v_i = σ_i² ‖X v_i‖² of the bases of
/// \p svd: the energy basis i contributes to the layer outputs X Wᵀ.
/// \p gram is G (svd.n x svd.n, row-major, symmetric). Scores are clamped
/// at 0 (G is positive semi-definite; rounding may make v_iᵀ G v_i
/// slightly negative).
std::vector<double> energyScores(const SVD &svd, llvm::ArrayRef<double> gram);

/// The indices of the \p count highest of \p scores (count clamped to
/// [0, scores.size()]), in descending score order; equal scores keep the
/// lower index first.
std::vector<int64_t> topBases(llvm::ArrayRef<double> scores, int64_t count);

/// The rank at and above which a factorized m x n layer stores no fewer
/// parameters than the dense one: floor(m·n / (m + n)).
int64_t breakEvenRank(int64_t m, int64_t n);

/// One layer taking part in a rank allocation.
struct BasisLayer {
  int64_t m = 0, n = 0;
  /// The scores of its min(m, n) bases, in any order (non-negative).
  llvm::ArrayRef<double> scores;
};

/// The outcome of allocateRanks.
struct RankAllocation {
  /// Bases kept by each layer (its highest-scoring ones); for a dense layer
  /// its break-even rank or more (the layer stays unfactorized).
  std::vector<int64_t> ranks;
  /// True where the layer stays dense (rank reached the break-even).
  std::vector<bool> dense;
  /// floor(ratio · Σ m·n).
  int64_t budget = 0;
  /// Parameters the allocation stores: Σ (dense ? m·n : rank·(m + n)).
  /// Exceeds `budget` only when min-rank alone does.
  int64_t params = 0;
};

/// Allocates ranks to \p layers under the budget floor(ratio · Σ m·n):
///
///  * every layer starts at r = min(minRank, min(m, n)) bases (dense if that
///    reaches breakEvenRank(m, n)), even when that exceeds the budget;
///  * a layer's score shares are its sorted scores divided by their sum
///    (all 0 when the sum is 0); its next step either keeps one more basis
///    (gain: the next share, cost: m + n parameters) or, when r + 1 reaches
///    the break-even b, turns the layer dense (gain: every share not yet
///    kept, cost: m·n − r·(m + n));
///  * repeatedly, the step with the largest gain / cost over all layers
///    (ties: lower layer index) is taken if it fits in the remaining budget
///    and its gain is positive; otherwise that layer takes no more steps.
///
/// Returns an error when ratio is not in (0, 1], minRank < 1, a layer has
/// non-positive dimensions, a score count other than min(m, n), or a
/// negative or non-finite score.
llvm::Expected<RankAllocation> allocateRanks(llvm::ArrayRef<BasisLayer> layers,
                                             double ratio, int64_t minRank);

/// The unrefit factors of the bases \p kept (indices into svd.s, in the
/// column order of A): A = U_K Σ_K^{1/2}, B = Σ_K^{1/2} V_Kᵀ, balanced so
/// that column i of A and row i of B have the same norm √σ_i. kept must
/// hold distinct valid indices.
LowRankFactors basisFactors(const SVD &svd, llvm::ArrayRef<int64_t> kept);

/// Options of refitFactors. With g = trace(G) / n (the mean input energy
/// per direction):
struct RefitOptions {
  /// M = V_Kᵀ G V_K is ill-conditioned when its Cholesky factorization
  /// L Lᵀ fails or min(diag L)² < minPivot · max(max(diag L)², g); it is then
  /// damped.
  double minPivot = 1e-10;
  /// The damping of an ill-conditioned M: λ = damp · g.
  double damp = 1e-6;
};

/// Least-squares refit of the kept bases on the layer outputs: with B's row
/// space fixed to V_K (the kept right singular vectors of \p w = \p svd),
/// minimises ‖X (W − A V_Kᵀ)ᵀ‖_F, i.e. tr((W − A V_Kᵀ) G (W − A V_Kᵀ)ᵀ):
///   A = W G V_K (V_Kᵀ G V_K)⁻¹.
/// An ill-conditioned M = V_Kᵀ G V_K is regularised by solving with G + λI
/// instead of G (a ridge pulling A towards the unrefit W V_K, so directions
/// the inputs never excite keep A = W V_K); when G is 0, A = W V_K.
/// The pair (A, V_Kᵀ) is then rebalanced by the r x r transform from the
/// thin SVD A = P Λ Qᵀ: A' = P Λ^{1/2}, B' = Λ^{1/2} Qᵀ V_Kᵀ (the SVD of the
/// product A V_Kᵀ, so A'·B' = A·V_Kᵀ and the factors have equal column/row
/// norms). \p w is svd.m x svd.n row-major, \p gram svd.n x svd.n.
/// Returns an error on size mismatches, invalid indices in \p kept, or
/// non-finite results.
llvm::Expected<LowRankFactors> refitFactors(llvm::ArrayRef<float> w,
                                            const SVD &svd,
                                            llvm::ArrayRef<int64_t> kept,
                                            llvm::ArrayRef<double> gram,
                                            const RefitOptions &options = {});

} // namespace qlr::numerics

#endif // QLR_NUMERICS_BASISSELECT_H
