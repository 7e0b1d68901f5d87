//===- DropArgumentResults.cpp - Drop results that return an argument ----===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#include "qlr/Conversion/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/Interfaces/CallInterfaces.h"
#include "llvm/ADT/BitVector.h"

namespace mlir::qlr {
#define GEN_PASS_DEF_QLRDROPARGUMENTRESULTSPASS
#include "qlr/Conversion/Passes.h.inc"
} // namespace mlir::qlr

using namespace mlir;

namespace {
struct QLRDropArgumentResultsPass
    : public mlir::qlr::impl::QLRDropArgumentResultsPassBase<
          QLRDropArgumentResultsPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    // Functions called from inside the module keep their signature: their
    // call sites would need rewriting (drop-equivalent-buffer-results does
    // that for private functions).
    llvm::DenseSet<StringRef> called;
    module.walk([&](CallOpInterface call) {
      if (auto symbol =
              dyn_cast_if_present<SymbolRefAttr>(call.getCallableForCallee()))
        called.insert(symbol.getLeafReference());
    });
    for (auto func : module.getOps<func::FuncOp>()) {
      if (func.isExternal() || called.contains(func.getSymName()) ||
          !func.getBody().hasOneBlock())
        continue;
      auto ret = cast<func::ReturnOp>(func.getBody().front().getTerminator());
      llvm::BitVector drop(ret.getNumOperands());
      for (auto [index, value] : llvm::enumerate(ret.getOperands())) {
        auto arg = dyn_cast<BlockArgument>(value);
        drop[index] = arg && arg.getOwner() == &func.getBody().front() &&
                      isa<BaseMemRefType>(arg.getType());
      }
      if (drop.none())
        continue;
      SmallVector<Value> kept;
      for (auto [index, value] : llvm::enumerate(ret.getOperands()))
        if (!drop[index])
          kept.push_back(value);
      ret->setOperands(kept);
      if (failed(func.eraseResults(drop)))
        return signalPassFailure();
    }
  }
};
} // namespace
