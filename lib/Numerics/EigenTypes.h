//===- EigenTypes.h - Eigen matrix types of lib/Numerics ----*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// Private to lib/Numerics: the row-major Eigen matrices the GPTQ and
// low-rank code work on (public headers never expose Eigen).
//
//===----------------------------------------------------------------------===//

#ifndef QLR_LIB_NUMERICS_EIGENTYPES_H
#define QLR_LIB_NUMERICS_EIGENTYPES_H

#include <Eigen/Dense>

namespace qlr::numerics::detail {
using RowMatrixF =
    Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using RowMatrixD =
    Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
} // namespace qlr::numerics::detail

#endif // QLR_LIB_NUMERICS_EIGENTYPES_H
