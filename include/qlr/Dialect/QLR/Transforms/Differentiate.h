//===- Differentiate.h - Reverse-mode differentiation of tensor IR -*- C++
//-*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// Reverse-mode automatic differentiation of a function on tensors: given
// `f(args...) -> (results...)`, builds the vector-Jacobian product
//
//   f_grad(args..., dy_0, ..., dy_{m-1}) -> (dL/d arg_i for i in wrt)
//
// where L = Σ_r <dy_r, y_r> over the floating-point tensor results y_r of f
// (one cotangent argument each, in result order). The gradient function is
// ordinary tensor IR (linalg.generic, tensor and qlr ops, scf.for for
// scatters), so the pipeline that compiles f compiles it too.
//
// How. The body is first brought to a small op set: qlr.rms_norm and
// qlr.layer_norm are lowered to linalg, named linalg ops are generalized and
// element-wise arith ops on tensors become linalg.generic. Values that
// depend on a `wrt` argument and that a result depends on are active; the
// ops that define them are visited in reverse and each adds the adjoints of
// its active operands:
//
//  * linalg.generic: for each active input, a generic over the same
//    iteration space replays the body, differentiates the yielded value with
//    respect to that input in forward mode (scalar tangents), scales it by
//    the result's adjoint and reduces over the loops the input's indexing
//    map does not use. Reductions must combine the accumulator with
//    arith.addf, arith.maximumf or arith.minimumf. Inputs with an indexing
//    map that is not a projected permutation, and tensors the body reads
//    with tensor.extract (a gather, as in RoPE), get their adjoint by a
//    scatter: an scf.for nest over the iteration space.
//  * qlr.linear: adjoints of the input (a contraction with the decoded
//    weight) and of the bias. The weight must be inactive.
//  * tensor.expand_shape/collapse_shape/extract_slice/insert_slice/cast:
//    their linear transposes.
//
// Anything else with an active operand is reported as a located error.
//
//===----------------------------------------------------------------------===//

#ifndef QLR_DIALECT_QLR_TRANSFORMS_DIFFERENTIATE_H
#define QLR_DIALECT_QLR_TRANSFORMS_DIFFERENTIATE_H

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Support/LLVM.h"

namespace mlir::qlr {

/// Builds the gradient function of `function` with respect to its arguments
/// `wrt` (floating-point ranked tensors) and inserts it after `function`
/// under the name `name`. Emits located errors and fails (leaving the module
/// as it was) when `function` has more than one block, an argument in `wrt`
/// is not a floating-point ranked tensor, or an active op cannot be
/// differentiated.
FailureOr<func::FuncOp> buildGradientFunction(func::FuncOp function,
                                              ArrayRef<unsigned> wrt,
                                              StringRef name);

} // namespace mlir::qlr

#endif // QLR_DIALECT_QLR_TRANSFORMS_DIFFERENTIATE_H
