//===- Codebook.h - Codebooks for lookup-table quantization -*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// Codebook (lookup table) construction and nearest-entry search.
//
// NormalFloat codebooks. normalFloatCodebook(bits) builds the n = 2^bits entry
// "NormalFloat" table (for bits = 4 this is the NF4 table) as follows, with
// o = 0.9677083 and Q = normalQuantile, all in double precision:
//   - positive part: P_i = Q(o + (0.5 - o) * i / (n/2)) for i = 0 .. n/2 - 1
//     (n/2 values: linspace from o towards 0.5 with n/2 + 1 points, the last
//     point, 0.5, dropped);
//   - negative part: N_i = -Q(o + (0.5 - o) * i / (n/2 - 1)) for
//     i = 0 .. n/2 - 2 (n/2 - 1 values);
//   - plus 0.
// All values are divided by the largest one, Q(o), converted to float and
// sorted ascending. The result has exactly n values in [-1, 1] and contains
// -1, 0 and 1; it is asymmetric (one more positive than negative value).
//
//===----------------------------------------------------------------------===//

#ifndef QLR_NUMERICS_CODEBOOK_H
#define QLR_NUMERICS_CODEBOOK_H

#include "llvm/ADT/ArrayRef.h"

#include <cstdint>
#include <vector>

namespace qlr::numerics {

/// Returns the quantile function (inverse CDF) of the standard normal
/// distribution at \p p, for 0 < p < 1 (asserted). Accurate to about 1e-15
/// relative for normal (non-subnormal) doubles min(p, 1 - p); near p = 1 the
/// attainable accuracy is limited by the spacing of doubles around 1.
double normalQuantile(double p);

/// Returns the NormalFloat codebook for 2 <= \p bits <= 8; see the file
/// comment for the exact construction.
std::vector<float> normalFloatCodebook(unsigned bits);

/// Returns the index i minimizing |v - codebook[i]| (computed in float), the
/// lowest such index on ties. The codebook need not be sorted; it must be
/// non-empty with at most 256 entries, and \p v must not be NaN.
uint8_t nearestCodebookIndex(llvm::ArrayRef<float> codebook, float v);

} // namespace qlr::numerics

#endif // QLR_NUMERICS_CODEBOOK_H
