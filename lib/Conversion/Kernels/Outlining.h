//===- Outlining.h - Moving a run of operations into a function -*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// What qlr-split-functions and qlr-outline-layers share: the values live
// across a cut in a block's operation sequence, and moving consecutive
// top-level operations into a private `no_inline` function called where
// they were.
//
//===----------------------------------------------------------------------===//

#ifndef QLR_LIB_CONVERSION_KERNELS_OUTLINING_H
#define QLR_LIB_CONVERSION_KERNELS_OUTLINING_H

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/SymbolTable.h"
#include "llvm/ADT/STLFunctionalExtras.h"
#include "llvm/ADT/SetVector.h"

#include <vector>

namespace mlir::qlr::outlining {

/// A constant: no operands, no regions, ConstantLike (cheaper to repeat in
/// a piece than to pass into it).
bool isConstant(Operation *op);

/// crossing[i], for i in [0, ops.size()]: the results of ops[0..i) that an
/// op at or after ops[i] (or anything after the last of `ops`) reads, that
/// is, the values a cut before ops[i] must pass on. `ops` are top-level
/// operations of `body` in order (the ones left out, such as constants
/// every piece re-creates, do not count).
std::vector<int64_t> liveAcrossCuts(Block &body, ArrayRef<Operation *> ops);

/// The values consecutive top-level operations `chunk` of `body` read from
/// before it (block arguments included), and the results it defines that
/// are read after it, each in first-use order.
struct ChunkBoundary {
  llvm::SetVector<Value> inputs, outputs;
};
ChunkBoundary chunkBoundary(Block &body, ArrayRef<Operation *> chunk);

/// A chunk moved into a function of its own.
struct OutlinedChunk {
  func::FuncOp callee;
  func::CallOp call;
  /// The values the call passes, in argument order.
  SmallVector<Value> passed;
  /// The values (now in the callee) the call's results replace, in order.
  SmallVector<Value> outputs;
};

/// Moves `chunk` (consecutive top-level operations of `func`'s body) into a
/// new private function named `name` (renamed on a clash), marked
/// `no_inline`, and calls it in the chunk's place. Inputs defined by an op
/// for which `cloneIntoCallee` is true (constants) are cloned into the
/// callee at its start; the other inputs become its arguments.
OutlinedChunk
outlineChunk(func::FuncOp func, ArrayRef<Operation *> chunk, StringRef name,
             llvm::function_ref<bool(Operation *)> cloneIntoCallee,
             SymbolTable &symbols);

} // namespace mlir::qlr::outlining

#endif // QLR_LIB_CONVERSION_KERNELS_OUTLINING_H
