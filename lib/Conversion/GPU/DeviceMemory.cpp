//===- DeviceMemory.cpp - A GPU model's buffers in device memory -*- C++ -*-=//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// After convert-parallel-loops-to-gpu, the host code of a GPU model computes
// sizes, allocates buffers and launches kernels. This pass allocates those
// buffers in device memory, turns host copies into device copies and sinks
// the constants kernels read into the kernels.
//
//===----------------------------------------------------------------------===//

#include "qlr/Conversion/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Interfaces/ViewLikeInterface.h"
#include "mlir/Transforms/RegionUtils.h"

namespace mlir::qlr {
#define GEN_PASS_DEF_QLRGPUDEVICEMEMORYPASS
#include "qlr/Conversion/Passes.h.inc"
} // namespace mlir::qlr

using namespace mlir;

namespace {

/// Whether `op` is in host code (not inside a kernel).
bool onHost(Operation *op) { return !op->getParentOfType<gpu::LaunchOp>(); }

/// The chain of view-like ops (subviews, reshapes, casts) from a
/// `memref.get_global` to `value`, root first; empty when `value` is not a
/// view of a global.
SmallVector<Operation *> globalViewChain(Value value) {
  SmallVector<Operation *> chain;
  while (Operation *def = value.getDefiningOp()) {
    chain.push_back(def);
    if (isa<memref::GetGlobalOp>(def))
      return SmallVector<Operation *>(llvm::reverse(chain));
    auto view = dyn_cast<ViewLikeOpInterface>(def);
    if (!view)
      break;
    value = view.getViewSource();
  }
  return {};
}

/// Clones into `launch`'s body the definitions of the values it captures
/// from the host that must not be host addresses: constants, and views of
/// constant globals (the `memref.get_global` and the views; outlining then
/// copies the global into the GPU module, loaded with it). Fails on a view
/// of a mutable global, whose host and device copies would diverge.
LogicalResult sinkConstants(RewriterBase &rewriter, gpu::LaunchOp launch) {
  SetVector<Value> captured;
  getUsedValuesDefinedAbove(launch.getBody(), captured);
  Block &body = launch.getBody().front();
  auto inKernel = [&](OpOperand &use) {
    return launch->isProperAncestor(use.getOwner());
  };
  for (Value value : captured) {
    Operation *def = value.getDefiningOp();
    if (!def)
      continue;
    if (def->hasTrait<OpTrait::ConstantLike>()) {
      rewriter.setInsertionPointToStart(&body);
      rewriter.replaceUsesWithIf(value, rewriter.clone(*def)->getResult(0),
                                 inKernel);
      continue;
    }
    SmallVector<Operation *> chain = globalViewChain(value);
    if (chain.empty())
      continue;
    auto get = cast<memref::GetGlobalOp>(chain.front());
    auto global = SymbolTable::lookupNearestSymbolFrom<memref::GlobalOp>(
        get, get.getNameAttr());
    if (!global || !global.getConstant())
      return get.emitOpError("reads the mutable global ")
             << get.getNameAttr()
             << " in a GPU kernel: a GPU model's globals must be constant "
                "(the kernel would read a copy the host does not see)";
    // Operands of the views other than their sources (dynamic offsets and
    // sizes) stay host values the kernel receives as arguments.
    rewriter.setInsertionPointToStart(&body);
    IRMapping mapping;
    for (Operation *op : chain)
      rewriter.clone(*op, mapping);
    rewriter.replaceUsesWithIf(value, mapping.lookup(value), inKernel);
  }
  return success();
}

struct QLRGPUDeviceMemoryPass
    : public mlir::qlr::impl::QLRGPUDeviceMemoryPassBase<
          QLRGPUDeviceMemoryPass> {
  void runOnOperation() override {
    IRRewriter rewriter(&getContext());
    SmallVector<Operation *> hostOps;
    getOperation().walk([&](Operation *op) {
      if (op->getParentOfType<gpu::GPUModuleOp>())
        return;
      if (isa<memref::AllocOp, memref::DeallocOp, memref::CopyOp,
              memref::LoadOp, memref::StoreOp, memref::AllocaOp, gpu::LaunchOp>(
              op) &&
          (isa<gpu::LaunchOp>(op) || onHost(op)))
        hostOps.push_back(op);
    });
    for (Operation *op : hostOps) {
      rewriter.setInsertionPoint(op);
      if (auto launch = dyn_cast<gpu::LaunchOp>(op)) {
        if (failed(sinkConstants(rewriter, launch)))
          return signalPassFailure();
      } else if (auto alloc = dyn_cast<memref::AllocOp>(op)) {
        // gpu.alloc aligns to the device's allocation granularity (256
        // bytes or more), which covers any alignment bufferization asks.
        auto device = gpu::AllocOp::create(
            rewriter, alloc.getLoc(), alloc.getType(), /*asyncToken=*/Type(),
            /*asyncDependencies=*/ValueRange(), alloc.getDynamicSizes(),
            alloc.getSymbolOperands(), /*hostShared=*/false);
        rewriter.replaceOp(alloc, device.getMemref());
      } else if (auto dealloc = dyn_cast<memref::DeallocOp>(op)) {
        gpu::DeallocOp::create(rewriter, dealloc.getLoc(),
                               /*asyncToken=*/Type(), ValueRange(),
                               dealloc.getMemref());
        rewriter.eraseOp(dealloc);
      } else if (isa<memref::AllocaOp>(op)) {
        op->emitOpError("allocates host stack memory, but a GPU model's "
                        "buffers are in device memory");
        return signalPassFailure();
      } else if (auto copy = dyn_cast<memref::CopyOp>(op)) {
        // The driver copies contiguous bytes only.
        for (Value buffer : {copy.getSource(), copy.getTarget()}) {
          auto type = cast<MemRefType>(buffer.getType());
          if (!type.getLayout().isIdentity()) {
            copy.emitOpError("copies a strided view in host code (")
                << type
                << "): only whole buffers can be copied on the device "
                   "from the host";
            return signalPassFailure();
          }
        }
        gpu::MemcpyOp::create(rewriter, copy.getLoc(), /*asyncToken=*/Type(),
                              ValueRange(), copy.getTarget(), copy.getSource());
        rewriter.eraseOp(copy);
      } else {
        op->emitOpError("reads or writes a buffer's elements in host code, "
                        "but a GPU model's buffers are in device memory");
        return signalPassFailure();
      }
    }
  }
};

} // namespace
