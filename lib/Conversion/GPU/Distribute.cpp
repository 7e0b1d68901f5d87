//===- Distribute.cpp - linalg on buffers to mapped loop nests --*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// Turns each top-level linalg op of a host function into an scf.parallel
// nest tiled into blocks of threads and annotated with the GPU processors
// its loops run on; upstream convert-parallel-loops-to-gpu makes kernels of
// them.
//
//===----------------------------------------------------------------------===//

#include "qlr/Conversion/Passes.h"

#include "mlir/Dialect/Affine/IR/AffineOps.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/GPU/Transforms/ParallelLoopMapper.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Linalg/Transforms/Transforms.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/SCF/Transforms/Transforms.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/PatternMatch.h"

#include "llvm/Support/MathExtras.h"

namespace mlir::qlr {
#define GEN_PASS_DEF_QLRGPUDISTRIBUTEPASS
#include "qlr/Conversion/Passes.h.inc"
} // namespace mlir::qlr

using namespace mlir;

namespace {

using gpu::Processor;

/// The permutation that moves `op`'s reduction loops after its parallel
/// loops, keeping the order within each group; empty if they already are.
SmallVector<unsigned> reductionsLast(linalg::GenericOp op) {
  SmallVector<unsigned> parallel, reduction;
  for (auto [i, type] : llvm::enumerate(op.getIteratorTypesArray()))
    (linalg::isParallelIterator(type) ? parallel : reduction).push_back(i);
  SmallVector<unsigned> order = parallel;
  order.append(reduction);
  for (auto [i, loop] : llvm::enumerate(order))
    if (i != loop)
      return order;
  return {};
}

/// Brings `op` into the form linalgOpToParallelLoops turns into a single
/// scf.parallel: a generic whose reduction loops are innermost. Returns the
/// op to convert.
FailureOr<linalg::LinalgOp> normalize(RewriterBase &rewriter,
                                      linalg::LinalgOp op) {
  bool hasReduction = op.getNumReductionLoops() > 0;
  if (!hasReduction)
    return op;
  auto generic = dyn_cast<linalg::GenericOp>(op.getOperation());
  if (!generic) {
    FailureOr<linalg::GenericOp> generalized =
        linalg::generalizeNamedOp(rewriter, op);
    if (failed(generalized))
      return op.emitOpError("cannot be generalized for GPU distribution");
    generic = *generalized;
  }
  SmallVector<unsigned> order = reductionsLast(generic);
  if (order.empty())
    return cast<linalg::LinalgOp>(generic.getOperation());
  FailureOr<linalg::GenericOp> interchanged =
      linalg::interchangeGenericOp(rewriter, generic, order);
  if (failed(interchanged))
    return generic.emitOpError("cannot move its reductions innermost");
  return cast<linalg::LinalgOp>(interchanged->getOperation());
}

/// Threads per block for an innermost dimension of `extent` elements
/// (ShapedType::kDynamic when unknown).
int64_t threadsFor(int64_t extent, int64_t blockSize) {
  if (ShapedType::isDynamic(extent) || extent >= blockSize)
    return blockSize;
  return llvm::alignTo(std::max<int64_t>(extent, 1), 32);
}

gpu::ParallelLoopDimMappingAttr mapTo(MLIRContext *context,
                                      Processor processor) {
  AffineMap identity = AffineMap::getMultiDimIdentityMap(1, context);
  return gpu::ParallelLoopDimMappingAttr::get(context, processor, identity,
                                              identity);
}

/// Tiles `loop` into blocks of threads and annotates both loops.
LogicalResult tileAndMap(scf::ParallelOp loop, int64_t blockSize) {
  MLIRContext *context = loop.getContext();
  unsigned rank = loop.getNumLoops();
  std::optional<int64_t> lower =
      getConstantIntValue(loop.getLowerBound().back());
  std::optional<int64_t> upper =
      getConstantIntValue(loop.getUpperBound().back());
  std::optional<int64_t> step = getConstantIntValue(loop.getStep().back());
  int64_t extent = ShapedType::kDynamic;
  if (lower && upper && step && *step > 0)
    extent = llvm::divideCeil(std::max<int64_t>(*upper - *lower, 0), *step);
  int64_t threads = threadsFor(extent, blockSize);
  SmallVector<int64_t> tileSizes(rank, 1);
  tileSizes.back() = threads;
  auto [outer, inner] =
      scf::tileParallelLoop(loop, tileSizes, /*noMinMaxBounds=*/true);

  // Grid: innermost dimension on x (the only one without a 65535 limit),
  // then y and z outwards; further dimensions loop inside each block.
  SmallVector<gpu::ParallelLoopDimMappingAttr> grid(
      rank, mapTo(context, Processor::Sequential));
  const Processor blocks[] = {Processor::BlockX, Processor::BlockY,
                              Processor::BlockZ};
  for (unsigned i = 0; i < std::min(rank, 3u); ++i)
    grid[rank - 1 - i] = mapTo(context, blocks[i]);
  SmallVector<gpu::ParallelLoopDimMappingAttr> block(
      rank, mapTo(context, Processor::Sequential));
  block.back() = mapTo(context, Processor::ThreadX);
  if (failed(gpu::setMappingAttr(outer, grid)) ||
      failed(gpu::setMappingAttr(inner, block)))
    return outer.emitOpError("could not be mapped to GPU processors");
  return success();
}

struct QLRGPUDistributePass
    : public mlir::qlr::impl::QLRGPUDistributePassBase<QLRGPUDistributePass> {
  using Base::Base;

  void runOnOperation() override {
    if (blockSize < 32 || blockSize > 1024 || blockSize % 32 != 0) {
      getOperation().emitError("qlr-gpu-distribute: block-size must be a "
                               "multiple of 32 between 32 and 1024, not ")
          << static_cast<int64_t>(blockSize);
      return signalPassFailure();
    }
    IRRewriter rewriter(&getContext());
    WalkResult result = getOperation().walk([&](func::FuncOp func) {
      if (failed(distribute(rewriter, func)))
        return WalkResult::interrupt();
      return WalkResult::advance();
    });
    if (result.wasInterrupted())
      signalPassFailure();
  }

  /// Distributes the linalg ops and copies directly in `func`'s body (not
  /// nested in loops the program already has).
  LogicalResult distribute(RewriterBase &rewriter, func::FuncOp func) {
    if (func.isExternal())
      return success();
    SmallVector<Operation *> work;
    for (Block &block : func.getBody())
      for (Operation &op : block)
        if (isa<linalg::LinalgOp, memref::CopyOp>(op))
          work.push_back(&op);
    for (Operation *op : work) {
      rewriter.setInsertionPoint(op);
      if (auto copy = dyn_cast<memref::CopyOp>(op))
        op = rewriter.replaceOpWithNewOp<linalg::CopyOp>(copy, copy.getSource(),
                                                         copy.getTarget());
      FailureOr<linalg::LinalgOp> linalgOp =
          normalize(rewriter, cast<linalg::LinalgOp>(op));
      if (failed(linalgOp))
        return failure();
      if (!linalgOp->hasPureBufferSemantics())
        return linalgOp->emitOpError(
            "must be bufferized before GPU distribution");
      if (linalgOp->getNumParallelLoops() == 0)
        return linalgOp->emitOpError(
            "has no parallel loop to distribute over GPU threads");
      rewriter.setInsertionPoint(*linalgOp);
      FailureOr<linalg::LinalgLoops> loops =
          linalg::linalgOpToParallelLoops(rewriter, *linalgOp);
      if (failed(loops) || loops->empty())
        return linalgOp->emitOpError("could not be converted to loops");
      auto parallel = dyn_cast<scf::ParallelOp>(loops->front());
      if (!parallel ||
          parallel.getNumLoops() != linalgOp->getNumParallelLoops())
        return linalgOp->emitOpError(
            "did not become a single parallel loop over its parallel "
            "dimensions");
      rewriter.eraseOp(*linalgOp);
      if (failed(tileAndMap(parallel, blockSize)))
        return failure();
    }
    return success();
  }
};

} // namespace
