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
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/RegionUtils.h"

namespace mlir::qlr {
#define GEN_PASS_DEF_QLRGPUDEVICEMEMORYPASS
#include "qlr/Conversion/Passes.h.inc"
} // namespace mlir::qlr

using namespace mlir;

namespace {

/// Whether `op` is in host code (not inside a kernel).
bool onHost(Operation *op) { return !op->getParentOfType<gpu::LaunchOp>(); }

/// Clones the constant-like definitions of values `launch` captures from the
/// host into its body: `memref.get_global` (whose global outlining then
/// copies into the GPU module) and constants.
void sinkConstants(RewriterBase &rewriter, gpu::LaunchOp launch) {
  SetVector<Value> captured;
  getUsedValuesDefinedAbove(launch.getBody(), captured);
  Block &body = launch.getBody().front();
  for (Value value : captured) {
    Operation *def = value.getDefiningOp();
    if (!def || !(isa<memref::GetGlobalOp>(def) ||
                  def->hasTrait<OpTrait::ConstantLike>()))
      continue;
    rewriter.setInsertionPointToStart(&body);
    Operation *copy = rewriter.clone(*def);
    rewriter.replaceUsesWithIf(value, copy->getResult(0), [&](OpOperand &use) {
      return launch->isProperAncestor(use.getOwner());
    });
  }
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
        sinkConstants(rewriter, launch);
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
      } else if (auto copy = dyn_cast<memref::CopyOp>(op)) {
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
