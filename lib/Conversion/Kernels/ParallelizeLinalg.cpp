//===- ParallelizeLinalg.cpp - Linalg ops across the OpenMP threads -------===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// qlr-parallelize-linalg tiles the linalg ops left after the contraction
// kernels along one parallel dimension into scf.parallel chunks, one per
// OpenMP thread; qlr-serialize-single-chunks keeps a one-chunk loop on the
// calling thread once it is an omp.parallel.
//
//===----------------------------------------------------------------------===//

#include "qlr/Conversion/Passes.h"

#include "mlir/Dialect/Affine/IR/AffineOps.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Linalg/Transforms/Transforms.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/OpenMP/OpenMPDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/PatternMatch.h"

namespace mlir::qlr {
#define GEN_PASS_DEF_QLRPARALLELIZELINALGPASS
#define GEN_PASS_DEF_QLRSERIALIZESINGLECHUNKSPASS
#include "qlr/Conversion/Passes.h.inc"
} // namespace mlir::qlr

using namespace mlir;

namespace {

constexpr StringLiteral kMaxThreadsFunction = "omp_get_max_threads";

/// The loop of `op` to cut, or nothing: the outermost parallel loop with a
/// dynamic size, else the parallel loop with the largest static size (at
/// least 2).
std::optional<unsigned> chooseLoop(linalg::LinalgOp op) {
  SmallVector<int64_t> ranges = op.getStaticLoopRanges();
  SmallVector<utils::IteratorType> iterators = op.getIteratorTypesArray();
  std::optional<unsigned> best;
  for (auto [d, range] : llvm::enumerate(ranges)) {
    if (iterators[d] != utils::IteratorType::parallel)
      continue;
    if (ShapedType::isDynamic(range))
      return d;
    if (range >= 2 && (!best || range > ranges[*best]))
      best = d;
  }
  return best;
}

/// Iterations of `op` per step of loop `loop`: the product of the other
/// loops' static sizes (dynamic ones counted as 1).
int64_t otherWork(linalg::LinalgOp op, unsigned loop) {
  int64_t work = 1;
  for (auto [d, range] : llvm::enumerate(op.getStaticLoopRanges()))
    if (d != loop && !ShapedType::isDynamic(range))
      work = work > (int64_t(1) << 40) / std::max<int64_t>(range, 1)
                 ? (int64_t(1) << 40)
                 : work * range;
  return work;
}

bool insideParallelLoop(Operation *op) {
  return op->getParentOfType<scf::ParallelOp>() ||
         op->getParentOfType<scf::ForallOp>() ||
         op->getParentOfType<omp::ParallelOp>();
}

struct QLRParallelizeLinalgPass
    : public mlir::qlr::impl::QLRParallelizeLinalgPassBase<
          QLRParallelizeLinalgPass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    if (minWork < 1) {
      module.emitError() << "qlr-parallelize-linalg: min-work="
                         << int64_t(minWork) << " must be at least 1";
      return signalPassFailure();
    }
    SmallVector<std::pair<linalg::LinalgOp, unsigned>> candidates;
    module.walk([&](linalg::LinalgOp op) {
      if (!op.hasPureBufferSemantics() || op.getNumLoops() == 0 ||
          insideParallelLoop(op))
        return;
      std::optional<unsigned> loop = chooseLoop(op);
      if (!loop)
        return;
      int64_t range = op.getStaticLoopRanges()[*loop];
      int64_t rest = otherWork(op, *loop);
      // A static op below min-work iterations stays whole.
      if (!ShapedType::isDynamic(range) && range * rest < minWork)
        return;
      candidates.push_back({op, *loop});
    });
    if (candidates.empty())
      return;

    // int32 omp_get_max_threads(void), from the OpenMP runtime the JIT and
    // the artifacts load with openmp on.
    OpBuilder top = OpBuilder::atBlockBegin(module.getBody());
    auto threadsType = FunctionType::get(&getContext(), {},
                                         {IntegerType::get(&getContext(), 32)});
    auto declared = module.lookupSymbol<func::FuncOp>(kMaxThreadsFunction);
    if (declared && declared.getFunctionType() != threadsType) {
      declared.emitOpError()
          << "qlr-parallelize-linalg: @" << kMaxThreadsFunction
          << " is declared with another type";
      return signalPassFailure();
    }
    if (!declared) {
      declared = func::FuncOp::create(top, module.getLoc(), kMaxThreadsFunction,
                                      threadsType);
      declared.setPrivate();
    }

    IRRewriter rewriter(&getContext());
    for (auto [op, loop] : candidates) {
      unsigned numLoops = op.getNumLoops();
      unsigned chosen = loop;
      int64_t work = minWork;
      linalg::LinalgTilingOptions options;
      options.setLoopType(linalg::LinalgTilingLoopType::ParallelLoops);
      options.setTileSizeComputationFunction(
          [&, chosen, work,
           numLoops](OpBuilder &b, Operation *target) -> SmallVector<Value, 4> {
            Location loc = target->getLoc();
            Value zero = arith::ConstantIndexOp::create(b, loc, 0);
            Value one = arith::ConstantIndexOp::create(b, loc, 1);
            SmallVector<Value, 4> sizes(numLoops, zero);
            // chunk = max(ceildiv(size, threads), ceildiv(min-work, rest)),
            // rest the iterations of the other loops (at run time).
            SmallVector<Range> ranges =
                cast<linalg::LinalgOp>(target).createLoopRanges(b, loc);
            Value size =
                getValueOrCreateConstantIndexOp(b, loc, ranges[chosen].size);
            Value rest = one;
            for (auto [d, range] : llvm::enumerate(ranges))
              if (d != chosen)
                rest = arith::MulIOp::create(
                    b, loc, rest,
                    getValueOrCreateConstantIndexOp(b, loc, range.size));
            rest = arith::MaxSIOp::create(b, loc, rest, one);
            Value minChunk = arith::CeilDivSIOp::create(
                b, loc, arith::ConstantIndexOp::create(b, loc, work), rest);
            Value threads = func::CallOp::create(b, loc, declared, ValueRange{})
                                .getResult(0);
            Value threadsIndex =
                arith::IndexCastOp::create(b, loc, b.getIndexType(), threads);
            threadsIndex = arith::MaxSIOp::create(b, loc, threadsIndex, one);
            Value perThread =
                arith::CeilDivSIOp::create(b, loc, size, threadsIndex);
            sizes[chosen] = arith::MaxSIOp::create(b, loc, perThread, minChunk);
            return sizes;
          });
      rewriter.setInsertionPoint(op);
      FailureOr<linalg::TiledLinalgOp> tiled =
          linalg::tileLinalgOp(rewriter, op, options);
      if (failed(tiled)) {
        op.emitOpError("qlr-parallelize-linalg: cannot tile it");
        return signalPassFailure();
      }
      rewriter.eraseOp(op);
    }
  }
};

struct QLRSerializeSingleChunksPass
    : public mlir::qlr::impl::QLRSerializeSingleChunksPassBase<
          QLRSerializeSingleChunksPass> {
  void runOnOperation() override {
    getOperation().walk([](omp::ParallelOp parallel) {
      if (parallel.getIfExpr())
        return;
      Block &body = parallel.getRegion().front();
      omp::WsloopOp wsloop;
      for (Operation &op : body.without_terminator()) {
        if (auto loop = dyn_cast<omp::WsloopOp>(op)) {
          if (wsloop)
            return;
          wsloop = loop;
        } else if (!isMemoryEffectFree(&op)) {
          return;
        }
      }
      if (!wsloop)
        return;
      auto nest = dyn_cast<omp::LoopNestOp>(wsloop.getWrappedLoop());
      if (!nest || nest.getLoopLowerBounds().size() != 1)
        return;
      Value lb = nest.getLoopLowerBounds()[0],
            ub = nest.getLoopUpperBounds()[0], step = nest.getLoopSteps()[0];
      for (Value v : {lb, ub, step})
        if (parallel->isAncestor(v.getParentRegion()->getParentOp()))
          return;
      OpBuilder b(parallel);
      Location loc = parallel.getLoc();
      Value extent = arith::SubIOp::create(b, loc, ub, lb);
      Value several = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sgt,
                                            extent, step);
      parallel.getIfExprMutable().assign(several);
    });
  }
};

} // namespace
