//===- MergeKernels.cpp - One GPU module, shared kernels --------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// Moves the kernels gpu-kernel-outlining put into one gpu.module each into a
// single module and keeps one copy of identical kernels.
//
//===----------------------------------------------------------------------===//

#include "qlr/Conversion/Passes.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OperationSupport.h"
#include "mlir/IR/SymbolTable.h"

namespace mlir::qlr {
#define GEN_PASS_DEF_QLRGPUMERGEKERNELSPASS
#include "qlr/Conversion/Passes.h.inc"
} // namespace mlir::qlr

using namespace mlir;

namespace {

constexpr llvm::StringLiteral kMergedModuleName = "qlr_kernels";

/// Whether two kernels compute the same thing: same type, the same
/// attributes but their names, and equivalent bodies.
bool sameKernel(gpu::GPUFuncOp a, gpu::GPUFuncOp b) {
  if (a.getFunctionType() != b.getFunctionType())
    return false;
  NamedAttrList attrsA(a->getAttrDictionary()), attrsB(b->getAttrDictionary());
  attrsA.erase(SymbolTable::getSymbolAttrName());
  attrsB.erase(SymbolTable::getSymbolAttrName());
  if (attrsA.getDictionary(a.getContext()) !=
      attrsB.getDictionary(b.getContext()))
    return false;
  return OperationEquivalence::isRegionEquivalentTo(
      &a.getBody(), &b.getBody(), OperationEquivalence::IgnoreLocations);
}

struct QLRGPUMergeKernelsPass
    : public mlir::qlr::impl::QLRGPUMergeKernelsPassBase<
          QLRGPUMergeKernelsPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    SmallVector<gpu::GPUModuleOp> gpuModules(module.getOps<gpu::GPUModuleOp>());
    if (gpuModules.empty())
      return;
    // Every module must target the same devices to share a binary.
    for (gpu::GPUModuleOp gpuModule : gpuModules) {
      if (gpuModule.getTargetsAttr() != gpuModules.front().getTargetsAttr()) {
        gpuModule.emitOpError("targets other devices than ")
            << gpuModules.front().getName() << "; cannot merge them";
        return signalPassFailure();
      }
    }

    OpBuilder builder(gpuModules.front());
    auto merged =
        gpu::GPUModuleOp::create(builder, module.getLoc(), kMergedModuleName);
    merged->setAttrs(gpuModules.front()->getAttrDictionary());
    merged.setName(kMergedModuleName);
    SymbolTable table(merged);

    SmallVector<gpu::GPUFuncOp> kept;
    // (old module, old kernel) -> new reference.
    DenseMap<std::pair<StringAttr, StringAttr>, SymbolRefAttr> renamed;
    for (gpu::GPUModuleOp gpuModule : gpuModules) {
      for (Operation &op : llvm::make_early_inc_range(
               gpuModule.getBody()->without_terminator())) {
        auto kernel = dyn_cast<gpu::GPUFuncOp>(op);
        if (!kernel) {
          // A global or helper function: one copy per name.
          auto symbol = dyn_cast<SymbolOpInterface>(op);
          if (Operation *existing =
                  symbol ? table.lookup(symbol.getNameAttr()) : nullptr) {
            // Outlining copies host symbols, whose names are unique: the
            // same name must be the same definition.
            if (!OperationEquivalence::isEquivalentTo(
                    existing, &op, OperationEquivalence::IgnoreLocations)) {
              op.emitOpError("has the name of a different definition in "
                             "another GPU module; cannot merge them");
              return signalPassFailure();
            }
            continue;
          }
          op.moveBefore(merged.getBody(), merged.getBody()->end());
          if (symbol)
            table.insert(&op);
          continue;
        }
        auto key =
            std::make_pair(gpuModule.getNameAttr(), kernel.getNameAttr());
        auto same = llvm::find_if(
            kept, [&](gpu::GPUFuncOp k) { return sameKernel(k, kernel); });
        if (same == kept.end()) {
          kernel->moveBefore(merged.getBody(), merged.getBody()->end());
          table.insert(kernel); // Renames on a clash.
          kept.push_back(kernel);
          same = std::prev(kept.end());
        }
        renamed[key] =
            SymbolRefAttr::get(merged.getNameAttr(),
                               {FlatSymbolRefAttr::get((*same).getNameAttr())});
      }
    }

    module.walk([&](gpu::LaunchFuncOp launch) {
      SymbolRefAttr kernel = launch.getKernel();
      auto it =
          renamed.find({kernel.getRootReference(), kernel.getLeafReference()});
      if (it != renamed.end())
        launch.setKernelAttr(it->second);
    });
    for (gpu::GPUModuleOp gpuModule : gpuModules)
      gpuModule.erase();
  }
};

} // namespace
