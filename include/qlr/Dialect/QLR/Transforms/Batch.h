//===- Batch.h - A function applied to a batch (vmap) ----------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// Batching of a function on tensors: given `f(args...) -> (results...)`,
// builds
//
//   f_batched(args'...) -> (results'...)
//
// where every argument chosen as batched, and every result, has a new leading
// dimension of size B, and f_batched(args')[b] = f(args'[b]) for each b (the
// other arguments are shared by the whole batch). This is what lets one
// compiled call serve many independent inputs: the weights of qlr.linear are
// read once for all of them, as in batched text generation.
//
// How. The body is first brought to a small op set (named linalg ops
// generalized, element-wise arith on tensors turned into linalg.generic);
// then every op is rebuilt in order. Ops that read no batched value are
// copied. The others get the batch dimension:
//
//  * linalg.generic: a new outermost parallel loop; batched operands index
//    it, shared inputs do not; the outputs become batched (shared inits are
//    broadcast, tensor.empty and fills of them are rebuilt with the extra
//    dimension); linalg.index shifts by one; tensor.extract of a batched
//    tensor captured from above (a gather) reads the loop's batch element.
//  * qlr.linear, qlr.rms_norm, qlr.layer_norm take leading dimensions as
//    they are (the weight must be shared); qlr.batch_norm's axis shifts.
//  * tensor.expand_shape/collapse_shape/extract_slice/insert_slice/cast/dim:
//    the leading dimension is added to their shapes and indices.
//
// Anything else that reads a batched value is a located error.
//
//===----------------------------------------------------------------------===//

#ifndef QLR_DIALECT_QLR_TRANSFORMS_BATCH_H
#define QLR_DIALECT_QLR_TRANSFORMS_BATCH_H

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Support/LLVM.h"

namespace mlir::qlr {

/// Builds the batched form of `function` (see above) and inserts it after
/// `function` under the name `name`: the arguments in `batched` (ranked
/// tensors) and every result (ranked tensors) get a leading dimension of
/// `batchSize` elements (ShapedType::kDynamic for `?`). Emits located errors
/// and fails, leaving the module as it was, when `function` has more than
/// one block, an argument or result is not a ranked tensor, or an op that
/// reads a batched value cannot be batched.
FailureOr<func::FuncOp> buildBatchedFunction(func::FuncOp function,
                                             ArrayRef<unsigned> batched,
                                             int64_t batchSize, StringRef name);

} // namespace mlir::qlr

#endif // QLR_DIALECT_QLR_TRANSFORMS_BATCH_H
