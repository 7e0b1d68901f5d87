//===- LowerSubgroupReduce.cpp - Warp reductions to shuffles ----*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// Expands the float warp reductions qlr-gpu-distribute creates into xor
// shuffles with upstream's patterns, because NVVM lowers only integer
// gpu.subgroup_reduce (to redux.sync).
//
//===----------------------------------------------------------------------===//

#include "qlr/Conversion/Passes.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/GPU/Transforms/Passes.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mlir::qlr {
#define GEN_PASS_DEF_QLRGPULOWERSUBGROUPREDUCEPASS
#include "qlr/Conversion/Passes.h.inc"
} // namespace mlir::qlr

using namespace mlir;

namespace {

/// NVIDIA warps have 32 lanes; shuffles move 32 bits.
constexpr unsigned kWarpSize = 32, kShuffleBits = 32;

struct QLRGPULowerSubgroupReducePass
    : public mlir::qlr::impl::QLRGPULowerSubgroupReducePassBase<
          QLRGPULowerSubgroupReducePass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    populateGpuBreakDownSubgroupReducePatterns(patterns, kShuffleBits);
    populateGpuLowerSubgroupReduceToShufflePatterns(patterns, kWarpSize,
                                                    kShuffleBits);
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      return signalPassFailure();
    WalkResult left = getOperation().walk([](gpu::SubgroupReduceOp op) {
      op.emitOpError("could not be lowered to shuffles");
      return WalkResult::interrupt();
    });
    if (left.wasInterrupted())
      signalPassFailure();
  }
};

} // namespace
