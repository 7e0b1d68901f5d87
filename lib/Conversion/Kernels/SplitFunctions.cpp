//===- SplitFunctions.cpp - Split long functions into calls -----*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// A 30-layer model's @forward is one function with thousands of loops in a
// row, and several LLVM analyses walk dominator chains back to the entry for
// every loop, so compile time grows with the square of the function's
// length. This pass cuts the body into consecutive pieces of a bounded
// number of operations, at the points where the fewest values are live, each
// moved into its own private function (marked no_inline so LLVM does not
// glue them back together) and replaced by a call.
//
//===----------------------------------------------------------------------===//

#include "Outlining.h"

#include "qlr/Conversion/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Interfaces/ViewLikeInterface.h"
#include "llvm/ADT/DenseSet.h"
#include "llvm/ADT/SetVector.h"

namespace mlir::qlr {
#define GEN_PASS_DEF_QLRSPLITFUNCTIONSPASS
#include "qlr/Conversion/Passes.h.inc"
} // namespace mlir::qlr

using namespace mlir;
namespace outlining = mlir::qlr::outlining;

namespace {
/// Operations cheaper to repeat in a piece than to pass into it: constants
/// and references to globals (their values stay visible to LLVM).
bool isRematerializable(Operation *op) {
  return outlining::isConstant(op) || isa_and_present<memref::GetGlobalOp>(op);
}

struct QLRSplitFunctionsPass
    : public mlir::qlr::impl::QLRSplitFunctionsPassBase<QLRSplitFunctionsPass> {
  using Base::Base;

  void runOnOperation() override {
    if (opsPerFunction < 1) {
      mlir::emitError(getOperation().getLoc(),
                      "qlr-split-functions: ops-per-function must be at "
                      "least 1, got ")
          << int64_t(opsPerFunction);
      return signalPassFailure();
    }
    ModuleOp module = getOperation();
    rootOverride.clear();
    SymbolTable symbols(module);
    SmallVector<func::FuncOp> funcs(module.getOps<func::FuncOp>());
    for (func::FuncOp func : funcs)
      if (!func.isExternal() && func.getBody().hasOneBlock())
        split(func, symbols);
  }

  void split(func::FuncOp func, SymbolTable &symbols) {
    Block &body = func.getBody().front();
    // Constants and global references stay in this function (first, so they
    // dominate every call); each piece clones the ones it uses.
    SmallVector<Operation *> ops, kept;
    for (Operation &op : body.without_terminator())
      (isRematerializable(&op) ? kept : ops).push_back(&op);
    int64_t n = ops.size();
    if (n <= opsPerFunction)
      return;
    for (Operation *op : llvm::reverse(kept))
      op->moveBefore(&body.front());
    // crossing[i]: the arguments and results a cut before op i would need
    // (values every piece re-creates, such as constants, do not count).
    std::vector<int64_t> crossing = outlining::liveAcrossCuts(body, ops);
    // Pieces of opsPerFunction / 2 .. 3 * opsPerFunction / 2 operations, each
    // cut where the fewest values cross it (between layers, typically).
    SmallVector<int64_t> cuts = {0};
    int64_t lo = std::max<int64_t>(1, opsPerFunction / 2);
    int64_t hi = std::max<int64_t>(lo, opsPerFunction + opsPerFunction / 2);
    while (n - cuts.back() > hi) {
      int64_t best = cuts.back() + lo;
      for (int64_t i = best; i <= cuts.back() + hi; ++i)
        if (crossing[i] < crossing[best])
          best = i;
      cuts.push_back(best);
    }
    cuts.push_back(n);
    for (size_t p = 0; p + 1 < cuts.size(); ++p)
      outline(func, ArrayRef(ops).slice(cuts[p], cuts[p + 1] - cuts[p]), p,
              symbols);
  }

  /// The buffer a memref value views: through view-like ops and through the
  /// results of pieces already outlined (back to the value they return).
  Value rootOf(Value v) const {
    while (true) {
      if (auto it = rootOverride.find(v); it != rootOverride.end())
        v = it->second;
      else if (auto view = v.getDefiningOp<ViewLikeOpInterface>())
        v = view.getViewSource();
      else
        return v;
    }
  }

  llvm::DenseMap<Value, Value> rootOverride;

  void outline(func::FuncOp func, ArrayRef<Operation *> chunk, int piece,
               SymbolTable &symbols) {
    outlining::OutlinedChunk outlined = outlining::outlineChunk(
        func, chunk, (func.getSymName() + "_part" + Twine(piece)).str(),
        isRematerializable, symbols);
    // A passed buffer that no other argument can reach (its root is an
    // allocation of this function, not shared with another argument) is
    // noalias, as it was to LLVM before the split: without that LLVM could
    // no longer vectorise the reductions and loops that write one buffer
    // while reading another.
    SmallVector<Value> roots;
    llvm::DenseMap<Value, int> rootCount;
    for (Value v : outlined.passed) {
      roots.push_back(isa<BaseMemRefType>(v.getType()) ? rootOf(v) : Value());
      if (roots.back())
        ++rootCount[roots.back()];
    }
    for (auto [index, root] : llvm::enumerate(roots)) {
      if (root && rootCount[root] == 1 &&
          isa_and_present<memref::AllocOp, memref::AllocaOp>(
              root.getDefiningOp()))
        outlined.callee.setArgAttr(index, "llvm.noalias",
                                   UnitAttr::get(func.getContext()));
    }
    for (auto [result, value] :
         llvm::zip(outlined.call.getResults(), outlined.outputs))
      rootOverride[result] = rootOf(value);
  }
};
} // namespace
