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

#include "mlir/IR/IRMapping.h"
#include "mlir/IR/Matchers.h"

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

/// The grid mapping of a tile loop with `rank` dimensions: the innermost on
/// block x (the only one without a 65535 limit), then y and z outwards;
/// further dimensions loop inside each block.
SmallVector<gpu::ParallelLoopDimMappingAttr> gridMapping(MLIRContext *context,
                                                         unsigned rank) {
  SmallVector<gpu::ParallelLoopDimMappingAttr> grid(
      rank, mapTo(context, Processor::Sequential));
  const Processor blocks[] = {Processor::BlockX, Processor::BlockY,
                              Processor::BlockZ};
  for (unsigned i = 0; i < std::min(rank, 3u); ++i)
    grid[rank - 1 - i] = mapTo(context, blocks[i]);
  return grid;
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

  SmallVector<gpu::ParallelLoopDimMappingAttr> block(
      rank, mapTo(context, Processor::Sequential));
  block.back() = mapTo(context, Processor::ThreadX);
  if (failed(gpu::setMappingAttr(outer, gridMapping(context, rank))) ||
      failed(gpu::setMappingAttr(inner, block)))
    return outer.emitOpError("could not be mapped to GPU processors");
  return success();
}

/// Threads of a warp: the lanes that share one reduction.
constexpr int64_t kWarpSize = 32;

/// The combiner of a reduction `out = combine(out, f(ins))` that lanes can
/// split: its GPU reduction kind, and the identity each lane starts from.
struct Combiner {
  gpu::AllReduceOperation kind;
  TypedAttr identity;
};

/// Recognises a generic with one reduction loop whose body yields
/// `combine(out, v)` (or `combine(v, out)`) for an associative, commutative
/// float `combine` with the output block argument used nowhere else.
std::optional<Combiner> reductionCombiner(linalg::GenericOp op) {
  if (op.getNumReductionLoops() != 1 || op.getNumDpsInits() != 1)
    return std::nullopt;
  // Each output element is one warp's total: the output must not depend on
  // the reduction loop.
  SmallVector<unsigned> reductionDims;
  op.getReductionDims(reductionDims);
  AffineMap outputMap = op.getMatchingIndexingMap(op.getDpsInitOperand(0));
  if (!outputMap.isProjectedPermutation() ||
      outputMap.isFunctionOfDim(reductionDims.front()))
    return std::nullopt;
  Block &body = op.getRegion().front();
  auto yield = cast<linalg::YieldOp>(body.getTerminator());
  BlockArgument out = body.getArguments().back();
  Operation *combine = yield.getValues()[0].getDefiningOp();
  if (!combine || combine->getNumOperands() != 2 || !out.hasOneUse() ||
      (combine->getOperand(0) != out && combine->getOperand(1) != out))
    return std::nullopt;
  auto type = dyn_cast<FloatType>(out.getType());
  if (!type)
    return std::nullopt;
  Builder b(op.getContext());
  if (isa<arith::AddFOp>(combine))
    return Combiner{gpu::AllReduceOperation::ADD, b.getFloatAttr(type, 0.0)};
  const llvm::fltSemantics &semantics = type.getFloatSemantics();
  if (isa<arith::MaximumFOp>(combine))
    return Combiner{gpu::AllReduceOperation::MAXIMUMF,
                    b.getFloatAttr(type, APFloat::getInf(semantics, true))};
  if (isa<arith::MaxNumFOp>(combine))
    return Combiner{gpu::AllReduceOperation::MAXNUMF,
                    b.getFloatAttr(type, APFloat::getInf(semantics, true))};
  return std::nullopt;
}

/// reductionCombiner for a generic whose reduction loop is the innermost
/// (the form the warp schedule takes).
std::optional<Combiner> splittableReduction(linalg::GenericOp op) {
  if (op.getNumLoops() == 0 ||
      !linalg::isReductionIterator(op.getIteratorTypesArray().back()))
    return std::nullopt;
  return reductionCombiner(op);
}

/// Whether `op`, or an op nested in it, takes `value` as an operand.
bool references(Operation *op, Value value) {
  WalkResult found = op->walk([&](Operation *inner) {
    return llvm::is_contained(inner->getOperands(), value)
               ? WalkResult::interrupt()
               : WalkResult::advance();
  });
  return found.wasInterrupted();
}

/// A `linalg.fill` of a fresh buffer with the identity of the splittable
/// reduction that next touches the buffer and only writes it: that
/// reduction can write its results instead of combining them with the
/// fill's, and the fill (a kernel launch of its own) can go. Returns the
/// reduction, or null.
linalg::GenericOp foldableInit(linalg::FillOp fill) {
  if (!fill.hasPureBufferSemantics())
    return nullptr;
  Value buffer = fill.getOutputs()[0];
  APFloat value(0.0);
  if (!buffer.getDefiningOp<memref::AllocOp>() ||
      !matchPattern(fill.getInputs()[0], m_ConstantFloat(&value)))
    return nullptr;
  for (Operation *next = fill->getNextNode(); next;
       next = next->getNextNode()) {
    if (!references(next, buffer))
      continue;
    auto generic = dyn_cast<linalg::GenericOp>(next);
    if (!generic || generic.getDpsInitOperand(0)->get() != buffer ||
        llvm::any_of(generic.getDpsInputOperands(),
                     [&](OpOperand *in) { return in->get() == buffer; }))
      return nullptr;
    std::optional<Combiner> combiner = reductionCombiner(generic);
    if (!combiner || !isa<FloatAttr>(combiner->identity) ||
        cast<FloatAttr>(combiner->identity).getValue().convertToDouble() !=
            value.convertToDouble())
      return nullptr;
    return generic;
  }
  return nullptr;
}

/// The value of `map` at the loop indices `ivs`.
SmallVector<Value> applyMap(OpBuilder &b, Location loc, AffineMap map,
                            ArrayRef<Value> ivs) {
  SmallVector<Value> indices;
  for (AffineExpr expr : map.getResults())
    indices.push_back(affine::AffineApplyOp::create(
        b, loc, AffineMap::get(map.getNumDims(), 0, expr), ivs));
  return indices;
}

/// The body of `op` at loop indices `ivs` (parallel ones, then the
/// reduction's), its output block argument bound to `acc`: loads every
/// input through its indexing map and clones the body. Returns the yielded
/// value.
Value emitElement(OpBuilder &b, Location loc, linalg::GenericOp op,
                  ArrayRef<Value> ivs, Value acc) {
  Block &body = op.getRegion().front();
  IRMapping mapping;
  for (OpOperand *input : op.getDpsInputOperands()) {
    Value source = input->get();
    BlockArgument arg = body.getArgument(input->getOperandNumber());
    if (!isa<MemRefType>(source.getType())) {
      mapping.map(arg, source);
      continue;
    }
    SmallVector<Value> indices =
        applyMap(b, loc, op.getMatchingIndexingMap(input), ivs);
    mapping.map(arg, memref::LoadOp::create(b, loc, source, indices));
  }
  mapping.map(body.getArguments().back(), acc);
  for (Operation &inner : body.without_terminator()) {
    if (auto index = dyn_cast<linalg::IndexOp>(inner)) {
      mapping.map(index.getResult(), ivs[index.getDim()]);
      continue;
    }
    b.clone(inner, mapping);
  }
  auto yield = cast<linalg::YieldOp>(body.getTerminator());
  return mapping.lookupOrDefault(yield.getValues()[0]);
}

/// One lane's partial reductions, one per entry of `tokenIvs` (the
/// parallel indices of the outputs the warp computes): `combine` over the
/// body at (ivs..., k) for k in runs of `elements` consecutive indices,
/// lane `l` taking the runs that start at l * elements,
/// (l + 32) * elements, ... < `extent`, each from the identity. With
/// `elements` > 1 the run is unrolled, so that one lane reads consecutive
/// weights (the bytes of packed codes, one scale for the run); `extent`
/// must then be a multiple of 32 * `elements`. With several outputs the
/// bodies share the loads and decoding that do not depend on them (CSE).
SmallVector<Value> lanePartials(OpBuilder &b, Location loc,
                                linalg::GenericOp op, const Combiner &combiner,
                                ArrayRef<SmallVector<Value>> tokenIvs,
                                Value lane, Value lowerBound, Value extent,
                                int64_t elements) {
  Value identity = arith::ConstantOp::create(b, loc, combiner.identity);
  Value step = arith::ConstantIndexOp::create(b, loc, kWarpSize * elements);
  Value first = lane;
  if (elements > 1)
    first = arith::MulIOp::create(
        b, loc, lane, arith::ConstantIndexOp::create(b, loc, elements));
  Value start = arith::AddIOp::create(b, loc, lowerBound, first);
  Value end = arith::AddIOp::create(b, loc, lowerBound, extent);
  SmallVector<Value> inits(tokenIvs.size(), identity);
  auto loop = scf::ForOp::create(
      b, loc, start, end, step, inits,
      [&](OpBuilder &nb, Location nloc, Value k, ValueRange iterArgs) {
        SmallVector<Value> accs(iterArgs);
        for (int64_t e = 0; e < elements; ++e) {
          Value ke = k;
          if (e > 0)
            ke = arith::AddIOp::create(
                nb, nloc, k, arith::ConstantIndexOp::create(nb, nloc, e));
          for (auto [t, parallelIvs] : llvm::enumerate(tokenIvs)) {
            SmallVector<Value> ivs(parallelIvs);
            ivs.push_back(ke);
            accs[t] = emitElement(nb, nloc, op, ivs, accs[t]);
          }
        }
        scf::YieldOp::create(nb, nloc, accs);
      });
  return SmallVector<Value>(loop.getResults());
}

/// Combines two partial results with `combiner`.
Value combine(OpBuilder &b, Location loc, const Combiner &combiner, Value lhs,
              Value rhs) {
  switch (combiner.kind) {
  case gpu::AllReduceOperation::ADD:
    return arith::AddFOp::create(b, loc, lhs, rhs);
  case gpu::AllReduceOperation::MAXIMUMF:
    return arith::MaximumFOp::create(b, loc, lhs, rhs);
  case gpu::AllReduceOperation::MAXNUMF:
    return arith::MaxNumFOp::create(b, loc, lhs, rhs);
  default:
    llvm_unreachable("reductionCombiner returns add, maximumf or maxnumf");
  }
}

/// Distributes a splittable reduction: one warp per output element, its 32
/// lanes summing interleaved elements of the reduction (consecutive lanes
/// read consecutive elements), a warp reduction combining the lanes, and
/// lane 0 writing the result. `warps` outputs along the innermost parallel
/// dimension share a block. With `lanesInSequence` (CPU emulation) the
/// lanes' partial results are combined by a sequential loop instead of the
/// warp reduction, which only a GPU can run.
LogicalResult distributeReduction(RewriterBase &rewriter, linalg::GenericOp op,
                                  const Combiner &combiner, int64_t warps,
                                  int64_t laneElements, int64_t tokensPerWarp,
                                  bool lanesInSequence, bool overwrite) {
  MLIRContext *context = op.getContext();
  Location loc = op.getLoc();
  rewriter.setInsertionPoint(op);
  SmallVector<Range> ranges =
      cast<linalg::LinalgOp>(op.getOperation()).createLoopRanges(rewriter, loc);
  unsigned rank = op.getNumLoops() - 1; // Parallel loops, outermost first.
  SmallVector<Value> lbs, ubs, steps;
  for (unsigned i = 0; i < rank; ++i) {
    lbs.push_back(
        getValueOrCreateConstantIndexOp(rewriter, loc, ranges[i].offset));
    ubs.push_back(
        getValueOrCreateConstantIndexOp(rewriter, loc, ranges[i].size));
    steps.push_back(arith::ConstantIndexOp::create(rewriter, loc,
                                                   i + 1 == rank ? warps : 1));
  }
  Value reductionLb =
      getValueOrCreateConstantIndexOp(rewriter, loc, ranges.back().offset);
  Value reductionSize =
      getValueOrCreateConstantIndexOp(rewriter, loc, ranges.back().size);
  // Runs of consecutive elements per lane only where they tile the
  // reduction exactly (no guard inside the run).
  std::optional<int64_t> staticSize = getConstantIntValue(ranges.back().size);
  if (!staticSize || *staticSize % (kWarpSize * laneElements) != 0)
    laneElements = 1;
  Value zero = arith::ConstantIndexOp::create(rewriter, loc, 0);
  Value one = arith::ConstantIndexOp::create(rewriter, loc, 1);
  Value warpCount = arith::ConstantIndexOp::create(rewriter, loc, warps);
  Value laneCount = arith::ConstantIndexOp::create(rewriter, loc, kWarpSize);
  Value output = op.getDpsInitOperand(0)->get();
  AffineMap outputMap = op.getMatchingIndexingMap(op.getDpsInitOperand(0));

  // The parallel dimension whose outputs a warp may compute several of:
  // the one outside the warps' (tokens, for a linear layer), when some
  // input does not depend on it (the weight), so that they share its loads.
  int64_t tokenDim = -1;
  if (tokensPerWarp > 1 && rank >= 2) {
    unsigned dim = rank - 2;
    if (llvm::any_of(op.getDpsInputOperands(), [&](OpOperand *in) {
          return isa<MemRefType>(in->get().getType()) &&
                 !op.getMatchingIndexingMap(in).isFunctionOfDim(dim);
        }))
      tokenDim = dim;
  }

  // The loop nest computing `tokens` outputs along tokenDim per warp.
  auto emitNest = [&](int64_t tokens) -> LogicalResult {
    SmallVector<Value> gridSteps(steps);
    if (tokens > 1)
      gridSteps[tokenDim] =
          arith::ConstantIndexOp::create(rewriter, loc, tokens);
    auto grid = scf::ParallelOp::create(rewriter, loc, lbs, ubs, gridSteps);
    OpBuilder::InsertionGuard guard(rewriter);
    rewriter.setInsertionPointToStart(grid.getBody());
    SmallVector<Value> innerUbs = {warpCount};
    if (!lanesInSequence)
      innerUbs.push_back(laneCount);
    auto block = scf::ParallelOp::create(
        rewriter, loc, SmallVector<Value>(innerUbs.size(), zero), innerUbs,
        SmallVector<Value>(innerUbs.size(), one));
    rewriter.setInsertionPointToStart(block.getBody());
    Value warp = block.getInductionVars()[0];
    SmallVector<Value> ivs(grid.getInductionVars());
    ivs.back() = arith::AddIOp::create(rewriter, loc, ivs.back(), warp);
    // The whole warp takes this branch or skips it, as the warp reduction
    // needs.
    Value inside = arith::CmpIOp::create(
        rewriter, loc, arith::CmpIPredicate::ult, ivs.back(), ubs.back());
    auto ifInside = scf::IfOp::create(rewriter, loc, inside);
    rewriter.setInsertionPointToStart(&ifInside.getThenRegion().front());
    // Each output's indices; past the end of tokenDim, clamped to its last
    // index (computed again, never stored).
    SmallVector<SmallVector<Value>> tokenIvs;
    SmallVector<Value> valid;
    for (int64_t t = 0; t < tokens; ++t) {
      SmallVector<Value> token(ivs);
      if (t > 0) {
        Value index = arith::AddIOp::create(
            rewriter, loc, ivs[tokenDim],
            arith::ConstantIndexOp::create(rewriter, loc, t));
        Value last = arith::SubIOp::create(rewriter, loc, ubs[tokenDim], one);
        token[tokenDim] = arith::MinUIOp::create(rewriter, loc, index, last);
        valid.push_back(arith::CmpIOp::create(
            rewriter, loc, arith::CmpIPredicate::ult, index, ubs[tokenDim]));
      } else {
        valid.push_back(arith::ConstantIntOp::create(rewriter, loc, 1, 1));
      }
      tokenIvs.push_back(token);
    }
    SmallVector<Value> totals;
    Value isWriter;
    if (lanesInSequence) {
      Value identity =
          arith::ConstantOp::create(rewriter, loc, combiner.identity);
      auto lanes = scf::ForOp::create(
          rewriter, loc, zero, laneCount, one,
          SmallVector<Value>(tokens, identity),
          [&](OpBuilder &b, Location l, Value lane, ValueRange accs) {
            SmallVector<Value> partials =
                lanePartials(b, l, op, combiner, tokenIvs, lane, reductionLb,
                             reductionSize, laneElements);
            SmallVector<Value> next;
            for (auto [acc, partial] : llvm::zip(accs, partials))
              next.push_back(combine(b, l, combiner, acc, partial));
            scf::YieldOp::create(b, l, next);
          });
      totals.assign(lanes.getResults().begin(), lanes.getResults().end());
      isWriter = arith::ConstantIntOp::create(rewriter, loc, 1, 1);
    } else {
      Value lane = block.getInductionVars()[1];
      for (Value partial :
           lanePartials(rewriter, loc, op, combiner, tokenIvs, lane,
                        reductionLb, reductionSize, laneElements))
        totals.push_back(gpu::SubgroupReduceOp::create(
            rewriter, loc, partial, combiner.kind, /*uniform=*/true));
      isWriter = arith::CmpIOp::create(rewriter, loc, arith::CmpIPredicate::eq,
                                       lane, zero);
    }
    for (auto [token, total, isValid] : llvm::zip(tokenIvs, totals, valid)) {
      Value write = arith::AndIOp::create(rewriter, loc, isWriter, isValid);
      auto ifWriter = scf::IfOp::create(rewriter, loc, write);
      OpBuilder::InsertionGuard writeGuard(rewriter);
      rewriter.setInsertionPointToStart(&ifWriter.getThenRegion().front());
      SmallVector<Value> outIvs(token);
      outIvs.push_back(zero); // The output does not depend on the reduction.
      SmallVector<Value> indices = applyMap(rewriter, loc, outputMap, outIvs);
      Value result = total;
      if (!overwrite) {
        Value old = memref::LoadOp::create(rewriter, loc, output, indices);
        result = combine(rewriter, loc, combiner, old, total);
      }
      memref::StoreOp::create(rewriter, loc, result, output, indices);
    }

    // Grid: as for element-wise work. Block: warps on y, lanes on x.
    SmallVector<gpu::ParallelLoopDimMappingAttr> blockMapping = {mapTo(
        context, lanesInSequence ? Processor::ThreadX : Processor::ThreadY)};
    if (!lanesInSequence)
      blockMapping.push_back(mapTo(context, Processor::ThreadX));
    if (failed(gpu::setMappingAttr(grid, gridMapping(context, rank))) ||
        failed(gpu::setMappingAttr(block, blockMapping)))
      return op.emitOpError("could not be mapped to GPU processors");
    return success();
  };

  if (tokenDim < 0) {
    if (failed(emitNest(1)))
      return failure();
  } else if (std::optional<int64_t> extent =
                 getConstantIntValue(ranges[tokenDim].size)) {
    // Known at compile time: one nest.
    if (failed(emitNest(*extent >= tokensPerWarp ? tokensPerWarp : 1)))
      return failure();
  } else {
    // Decoding runs one token, prefill many: choose when the kernel runs.
    Value enough = arith::CmpIOp::create(
        rewriter, loc, arith::CmpIPredicate::uge, ubs[tokenDim],
        arith::ConstantIndexOp::create(rewriter, loc, tokensPerWarp));
    auto choice = scf::IfOp::create(rewriter, loc, enough,
                                    /*withElseRegion=*/true);
    OpBuilder::InsertionGuard guard(rewriter);
    rewriter.setInsertionPointToStart(&choice.getThenRegion().front());
    if (failed(emitNest(tokensPerWarp)))
      return failure();
    rewriter.setInsertionPointToStart(&choice.getElseRegion().front());
    if (failed(emitNest(1)))
      return failure();
  }
  rewriter.eraseOp(op);
  return success();
}

struct QLRGPUDistributePass
    : public mlir::qlr::impl::QLRGPUDistributePassBase<QLRGPUDistributePass> {
  using Base::Base;

  void runOnOperation() override {
    if (laneElements < 1 || laneElements > 64 ||
        !llvm::isPowerOf2_64(laneElements)) {
      getOperation().emitError("qlr-gpu-distribute: lane-elements must be a "
                               "power of two from 1 to 64, not ")
          << static_cast<int64_t>(laneElements);
      return signalPassFailure();
    }
    if (tokensPerWarp < 1 || tokensPerWarp > 32) {
      getOperation().emitError("qlr-gpu-distribute: tokens-per-warp must be "
                               "from 1 to 32, not ")
          << static_cast<int64_t>(tokensPerWarp);
      return signalPassFailure();
    }
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
    // Fills that only initialise a warp reduction's output with its
    // identity: the reduction writes its results instead.
    DenseSet<Operation *> foldedFills, overwriting;
    if (warpReductions) {
      for (Operation *op : work)
        if (auto fill = dyn_cast<linalg::FillOp>(op))
          if (linalg::GenericOp reduction = foldableInit(fill)) {
            foldedFills.insert(fill);
            overwriting.insert(reduction);
          }
    }
    for (Operation *op : work) {
      if (foldedFills.contains(op)) {
        rewriter.eraseOp(op);
        continue;
      }
      bool overwrite = overwriting.contains(op);
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
      auto generic = dyn_cast<linalg::GenericOp>(linalgOp->getOperation());
      if (generic && warpReductions) {
        if (std::optional<Combiner> combiner = splittableReduction(generic)) {
          if (failed(distributeReduction(
                  rewriter, generic, *combiner, blockSize / kWarpSize,
                  laneElements, tokensPerWarp, lanesInSequence, overwrite)))
            return failure();
          continue;
        }
      }
      if (overwrite)
        return op->emitOpError("lost the fill of its output: its reduction "
                               "is not splittable after all");
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
    // Only top-level ops become kernels: one inside host control flow would
    // stay on the host, reading device memory.
    WalkResult nested = func.walk([](Operation *op) {
      if (!isa<linalg::LinalgOp, memref::CopyOp>(op))
        return WalkResult::advance();
      op->emitOpError("is nested in host control flow; only linalg ops and "
                      "copies at a function's top level become GPU kernels");
      return WalkResult::interrupt();
    });
    return failure(nested.wasInterrupted());
  }
};

} // namespace
