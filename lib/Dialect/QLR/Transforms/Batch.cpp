//===- Batch.cpp - A function applied to a batch (vmap)
//--------------------===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// buildBatchedFunction and the qlr-batch pass
// (include/qlr/Dialect/QLR/Transforms/Batch.h describes the method).
//
//===----------------------------------------------------------------------===//

#include "qlr/Dialect/QLR/Transforms/Batch.h"

#include "WeightUtils.h"

#include "qlr/Conversion/Passes.h"
#include "qlr/Dialect/QLR/IR/QLR.h"
#include "qlr/Dialect/QLR/Transforms/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Linalg/Transforms/Transforms.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"
#include "mlir/Transforms/RegionUtils.h"

#include "llvm/ADT/DenseSet.h"
#include "llvm/ADT/SetVector.h"
#include "llvm/ADT/TypeSwitch.h"

namespace mlir::qlr {
#define GEN_PASS_DEF_QLRBATCHPASS
#include "qlr/Dialect/QLR/Transforms/Passes.h.inc"
} // namespace mlir::qlr

using namespace mlir;
using namespace mlir::qlr;

namespace {

RankedTensorType withBatch(Type type, int64_t size) {
  auto tensor = cast<RankedTensorType>(type);
  SmallVector<int64_t> shape{size};
  llvm::append_range(shape, tensor.getShape());
  return RankedTensorType::get(shape, tensor.getElementType(),
                               tensor.getEncoding());
}

/// `map` over one more loop, the new outermost d0; an operand that carries
/// the batch dimension indexes it first.
AffineMap withBatchLoop(AffineMap map, bool batched) {
  AffineMap shifted = map.shiftDims(1);
  if (!batched)
    return shifted;
  SmallVector<AffineExpr> results{getAffineDimExpr(0, map.getContext())};
  llvm::append_range(results, shifted.getResults());
  return AffineMap::get(shifted.getNumDims(), shifted.getNumSymbols(), results,
                        map.getContext());
}

/// `groups` of a reshape between rank `highRank` and a lower rank, with the
/// batch dimension in front (in a group of its own, or, for a reshape to or
/// from rank 0, in the one group of all dimensions).
SmallVector<ReassociationIndices>
withBatchGroup(ArrayRef<ReassociationIndices> groups, int64_t highRank) {
  if (groups.empty()) {
    ReassociationIndices all;
    for (int64_t d = 0; d <= highRank; ++d)
      all.push_back(d);
    return {all};
  }
  SmallVector<ReassociationIndices> result{{0}};
  for (const ReassociationIndices &group : groups) {
    ReassociationIndices shifted;
    for (int64_t d : group)
      shifted.push_back(d + 1);
    result.push_back(shifted);
  }
  return result;
}

/// Rebuilds a (normalised) function body op by op, adding the batch
/// dimension to every value that depends on a batched argument.
class Batcher {
public:
  Batcher(func::FuncOp target, int64_t size)
      : target(target), size(size), builder(target.getContext()) {}

  LogicalResult run(func::FuncOp source, ArrayRef<unsigned> batchedArgs);

private:
  bool isBatched(Value v) const { return batched.contains(v); }
  /// Whether `op` or an op nested in it reads a batched value.
  bool readsBatched(Operation *op) const;
  SmallVector<OpFoldResult> mapped(ArrayRef<OpFoldResult> values) const;
  /// `v` with the batch dimension: itself when batched, else a copy per
  /// batch element (empty tensors and fills are rebuilt batched).
  FailureOr<Value> batchedOf(Value v, Location loc);
  /// `op` over one more outermost parallel loop (the batch); `lookup` gives
  /// the new value of each operand and captured value.
  FailureOr<linalg::GenericOp> batchGeneric(linalg::GenericOp op,
                                            function_ref<Value(Value)> lookup);
  LogicalResult visit(Operation *op);
  /// Clones `op` with its batched operand and result `operand`/0.
  LogicalResult withBatchedOperand(Operation *op, unsigned operand);

  func::FuncOp target;
  int64_t size;
  OpBuilder builder;
  OpFoldResult batchSize;
  IRMapping mapping;
  llvm::DenseSet<Value> batched;
  DenseMap<Value, Value> broadcasts;
};

bool Batcher::readsBatched(Operation *op) const {
  auto walk = op->walk([&](Operation *nested) {
    for (Value operand : nested->getOperands()) {
      if (nested != op &&
          op->isAncestor(operand.getParentBlock()->getParentOp()))
        continue;
      Value mappedValue = mapping.lookupOrNull(operand);
      if (mappedValue && isBatched(mappedValue))
        return WalkResult::interrupt();
    }
    return WalkResult::advance();
  });
  return walk.wasInterrupted();
}

SmallVector<OpFoldResult> Batcher::mapped(ArrayRef<OpFoldResult> values) const {
  SmallVector<OpFoldResult> result;
  for (OpFoldResult value : values) {
    if (auto v = dyn_cast<Value>(value))
      result.push_back(mapping.lookup(v));
    else
      result.push_back(value);
  }
  return result;
}

FailureOr<Value> Batcher::batchedOf(Value v, Location loc) {
  if (isBatched(v))
    return v;
  if (Value known = broadcasts.lookup(v))
    return known;
  auto type = dyn_cast<RankedTensorType>(v.getType());
  if (!type)
    return emitError(loc) << "cannot give a value of type " << v.getType()
                          << " a batch dimension: not a ranked tensor";
  Value result;
  if (auto empty = v.getDefiningOp<tensor::EmptyOp>()) {
    SmallVector<OpFoldResult> sizes{batchSize};
    llvm::append_range(sizes, empty.getMixedSizes());
    result =
        tensor::EmptyOp::create(builder, loc, sizes, type.getElementType());
  } else if (auto generic = v.getDefiningOp<linalg::GenericOp>();
             generic && generic.getNumDpsInits() == 1 &&
             llvm::none_of(
                 generic.getDpsInputs(),
                 [](Value in) { return isa<ShapedType>(in.getType()); }) &&
             llvm::none_of(
                 generic.getBody()->getOperations(),
                 [](Operation &op) { return isa<tensor::ExtractOp>(op); })) {
    // A fill or an index computation: cheaper to recompute per element than
    // to copy.
    FailureOr<linalg::GenericOp> rebuilt =
        batchGeneric(generic, [](Value x) { return x; });
    if (failed(rebuilt))
      return failure();
    result = rebuilt->getResult(0);
  } else {
    SmallVector<OpFoldResult> sizes{batchSize};
    llvm::append_range(sizes, tensor::getMixedSizes(builder, loc, v));
    Value init =
        tensor::EmptyOp::create(builder, loc, sizes, type.getElementType());
    result =
        linalg::BroadcastOp::create(builder, loc, v, init, ArrayRef<int64_t>{0})
            ->getResult(0);
  }
  batched.insert(result);
  broadcasts[v] = result;
  return result;
}

FailureOr<linalg::GenericOp>
Batcher::batchGeneric(linalg::GenericOp op, function_ref<Value(Value)> lookup) {
  Location loc = op.getLoc();
  SmallVector<Value> inputs, inits;
  SmallVector<AffineMap> maps;
  for (OpOperand *input : op.getDpsInputOperands()) {
    Value v = lookup(input->get());
    inputs.push_back(v);
    maps.push_back(
        withBatchLoop(op.getMatchingIndexingMap(input), isBatched(v)));
  }
  for (OpOperand &init : op.getDpsInitsMutable()) {
    FailureOr<Value> v = batchedOf(lookup(init.get()), loc);
    if (failed(v))
      return failure();
    inits.push_back(*v);
    maps.push_back(withBatchLoop(op.getMatchingIndexingMap(&init), true));
  }
  SmallVector<utils::IteratorType> iterators{utils::IteratorType::parallel};
  llvm::append_range(iterators, op.getIteratorTypesArray());

  // Values the body reads from above: gathers of batched tensors read the
  // batch element of the new loop.
  llvm::SetVector<Value> captured;
  getUsedValuesDefinedAbove(op.getRegion(), captured);
  IRMapping body;
  for (Value v : captured)
    body.map(v, lookup(v));

  LogicalResult status = success();
  auto generic = linalg::GenericOp::create(
      builder, loc, ValueRange(inits).getTypes(), inputs, inits, maps,
      iterators, [&](OpBuilder &b, Location, ValueRange args) {
        for (auto [old, now] : llvm::zip(op.getBody()->getArguments(), args))
          body.map(old, now);
        for (Operation &inner : op.getBody()->getOperations()) {
          if (auto index = dyn_cast<linalg::IndexOp>(inner)) {
            body.map(
                index.getResult(),
                linalg::IndexOp::create(b, index.getLoc(), index.getDim() + 1));
            continue;
          }
          auto extract = dyn_cast<tensor::ExtractOp>(inner);
          if (extract && isBatched(body.lookup(extract.getTensor()))) {
            SmallVector<Value> indices{
                linalg::IndexOp::create(b, extract.getLoc(), 0)};
            for (Value index : extract.getIndices())
              indices.push_back(body.lookup(index));
            body.map(extract.getResult(),
                     tensor::ExtractOp::create(b, extract.getLoc(),
                                               body.lookup(extract.getTensor()),
                                               indices));
            continue;
          }
          for (Value operand : inner.getOperands())
            if (isBatched(body.lookupOrDefault(operand))) {
              status = inner.emitOpError(
                  "cannot be batched: it reads a batched tensor inside a "
                  "linalg.generic other than by tensor.extract");
              return;
            }
          // Nested regions are copied as they are: they must not read
          // batched values (linalg.index cannot appear in them).
          bool readsBatchedValue = false;
          for (Region &region : inner.getRegions())
            region.walk([&](Operation *nested) {
              for (Value operand : nested->getOperands())
                readsBatchedValue |= isBatched(body.lookupOrDefault(operand));
            });
          if (readsBatchedValue) {
            status = inner.emitOpError(
                "cannot be batched: its regions read a batched value inside a "
                "linalg.generic");
            return;
          }
          b.clone(inner, body);
        }
      });
  if (failed(status)) {
    generic->erase();
    return failure();
  }
  generic->setDiscardableAttrs(op->getDiscardableAttrDictionary());
  for (Value result : generic.getResults())
    batched.insert(result);
  return generic;
}

LogicalResult Batcher::withBatchedOperand(Operation *op, unsigned operand) {
  for (auto [i, value] : llvm::enumerate(op->getOperands()))
    if (i != operand && isBatched(mapping.lookup(value)))
      return op->emitOpError("cannot be batched: operand #")
             << i << " is batched, and only operand #" << operand
             << " may carry the batch dimension";
  FailureOr<Value> input =
      batchedOf(mapping.lookup(op->getOperand(operand)), op->getLoc());
  if (failed(input))
    return failure();
  Operation *clone = builder.clone(*op, mapping);
  clone->setOperand(operand, *input);
  clone->getResult(0).setType(withBatch(op->getResult(0).getType(), size));
  batched.insert(clone->getResult(0));
  return success();
}

LogicalResult Batcher::visit(Operation *op) {
  if (!readsBatched(op)) {
    builder.clone(*op, mapping);
    return success();
  }
  Location loc = op->getLoc();
  auto prepend = [&](OpFoldResult first, ArrayRef<OpFoldResult> rest) {
    SmallVector<OpFoldResult> result{first};
    llvm::append_range(result, mapped(rest));
    return result;
  };
  auto mapResult = [&](Value old, Value now) {
    mapping.map(old, now);
    if (isa<RankedTensorType>(now.getType()) &&
        cast<RankedTensorType>(now.getType()).getRank() ==
            cast<RankedTensorType>(old.getType()).getRank() + 1)
      batched.insert(now);
  };
  OpFoldResult zero = builder.getIndexAttr(0), one = builder.getIndexAttr(1);
  return TypeSwitch<Operation *, LogicalResult>(op)
      .Case([&](linalg::GenericOp generic) -> LogicalResult {
        FailureOr<linalg::GenericOp> rebuilt =
            batchGeneric(generic, [&](Value v) { return mapping.lookup(v); });
        if (failed(rebuilt))
          return failure();
        mapping.map(generic.getResults(), rebuilt->getResults());
        return success();
      })
      .Case([&](LinearOp linear) -> LogicalResult {
        Value weight = mapping.lookup(linear.getWeight());
        Value bias =
            linear.getBias() ? mapping.lookup(linear.getBias()) : Value();
        if (isBatched(weight))
          return linear.emitOpError(
              "cannot be batched: its weight is batched (qlr.linear's weight "
              "must be shared by the batch)");
        bool biasPerElement = bias && isBatched(bias);
        FailureOr<Value> input =
            batchedOf(mapping.lookup(linear.getInput()), loc);
        if (failed(input))
          return failure();
        auto type = withBatch(linear.getType(), size);
        int64_t rank = type.getRank();
        // The batch and the rows as one dimension: the contraction kernels
        // take matrices, and the weight is then read once for the batch.
        SmallVector<ReassociationIndices> groups(2);
        for (int64_t d = 0; d + 1 < rank; ++d)
          groups[0].push_back(d);
        groups[1].push_back(rank - 1);
        // Not when two of them are dynamic: MLIR 22's
        // expand-strided-metadata crashes on the memref.expand_shape that
        // would split them again; qlr.linear then takes [B, ..., K] as it is.
        auto inputType = cast<RankedTensorType>(input->getType());
        bool flatten =
            rank > 2 && llvm::count_if(inputType.getShape().drop_back(),
                                       ShapedType::isDynamic) <= 1;
        Value rows = *input;
        if (flatten)
          rows = tensor::CollapseShapeOp::create(builder, loc, rows, groups);
        SmallVector<int64_t> productShape(
            cast<RankedTensorType>(rows.getType()).getShape().drop_back());
        productShape.push_back(type.getShape().back());
        auto productType =
            RankedTensorType::get(productShape, type.getElementType());
        Operation *product =
            LinearOp::create(builder, loc, productType, rows, weight,
                             biasPerElement ? Value() : bias);
        product->setDiscardableAttrs(linear->getDiscardableAttrDictionary());
        Value result = product->getResult(0);
        if (flatten) {
          SmallVector<OpFoldResult> shape =
              tensor::getMixedSizes(builder, loc, *input);
          shape.back() = tensor::getMixedSize(builder, loc, result, 1);
          result = tensor::ExpandShapeOp::create(builder, loc, type, result,
                                                 groups, shape);
        }
        if (biasPerElement) {
          // A bias per batch element: added after the product.
          MLIRContext *ctx = builder.getContext();
          AffineMap identity = builder.getMultiDimIdentityMap(rank);
          AffineMap perElement = AffineMap::get(
              rank, 0,
              {getAffineDimExpr(0, ctx), getAffineDimExpr(rank - 1, ctx)}, ctx);
          SmallVector<utils::IteratorType> parallel(
              rank, utils::IteratorType::parallel);
          result =
              linalg::GenericOp::create(
                  builder, loc, TypeRange{type}, ValueRange{result, bias},
                  ValueRange{result},
                  ArrayRef<AffineMap>{identity, perElement, identity}, parallel,
                  [&](OpBuilder &b, Location at, ValueRange args) {
                    Value b0 = args[1];
                    auto to = cast<FloatType>(args[0].getType());
                    auto from = cast<FloatType>(b0.getType());
                    if (from != to && from.getWidth() >= to.getWidth()) {
                      // Narrow, or between f16 and bf16: through f32.
                      if (from.getWidth() == to.getWidth())
                        b0 = arith::ExtFOp::create(b, at, b.getF32Type(), b0);
                      b0 = arith::TruncFOp::create(b, at, to, b0);
                    } else if (from != to) {
                      b0 = arith::ExtFOp::create(b, at, to, b0);
                    }
                    linalg::YieldOp::create(
                        b, at,
                        ValueRange{arith::AddFOp::create(b, at, args[0], b0)});
                  })
                  .getResult(0);
        }
        mapResult(linear.getResult(), result);
        return success();
      })
      .Case<RMSNormOp, LayerNormOp>(
          [&](Operation *op) { return withBatchedOperand(op, 0); })
      .Case([&](BatchNormOp norm) -> LogicalResult {
        if (failed(withBatchedOperand(norm, 0)))
          return failure();
        auto clone = mapping.lookup(norm.getResult()).getDefiningOp();
        clone->setAttr(norm.getAxisAttrName(),
                       builder.getI64IntegerAttr(norm.getAxis() + 1));
        return success();
      })
      .Case([&](tensor::CastOp cast) -> LogicalResult {
        auto now = tensor::CastOp::create(builder, loc,
                                          withBatch(cast.getType(), size),
                                          mapping.lookup(cast.getSource()));
        mapResult(cast.getResult(), now);
        return success();
      })
      .Case([&](tensor::ExpandShapeOp expand) -> LogicalResult {
        auto now = tensor::ExpandShapeOp::create(
            builder, loc, withBatch(expand.getResultType(), size),
            mapping.lookup(expand.getSrc()),
            withBatchGroup(expand.getReassociationIndices(),
                           expand.getResultType().getRank()),
            prepend(batchSize, expand.getMixedOutputShape()));
        mapResult(expand.getResult(), now);
        return success();
      })
      .Case([&](tensor::CollapseShapeOp collapse) -> LogicalResult {
        auto now = tensor::CollapseShapeOp::create(
            builder, loc, withBatch(collapse.getResultType(), size),
            mapping.lookup(collapse.getSrc()),
            withBatchGroup(collapse.getReassociationIndices(),
                           collapse.getSrcType().getRank()));
        mapResult(collapse.getResult(), now);
        return success();
      })
      .Case([&](tensor::ExtractSliceOp slice) -> LogicalResult {
        auto now = tensor::ExtractSliceOp::create(
            builder, loc, withBatch(slice.getResultType(), size),
            mapping.lookup(slice.getSource()),
            prepend(zero, slice.getMixedOffsets()),
            prepend(batchSize, slice.getMixedSizes()),
            prepend(one, slice.getMixedStrides()));
        mapResult(slice.getResult(), now);
        return success();
      })
      .Case([&](tensor::InsertSliceOp slice) -> LogicalResult {
        FailureOr<Value> source =
            batchedOf(mapping.lookup(slice.getSource()), loc);
        if (failed(source))
          return failure();
        FailureOr<Value> dest = batchedOf(mapping.lookup(slice.getDest()), loc);
        if (failed(dest))
          return failure();
        auto now = tensor::InsertSliceOp::create(
            builder, loc, *source, *dest,
            prepend(zero, slice.getMixedOffsets()),
            prepend(batchSize, slice.getMixedSizes()),
            prepend(one, slice.getMixedStrides()));
        mapResult(slice.getResult(), now);
        return success();
      })
      .Case([&](tensor::DimOp dim) -> LogicalResult {
        Value shifted;
        if (std::optional<int64_t> index = dim.getConstantIndex())
          shifted = arith::ConstantIndexOp::create(builder, loc, *index + 1);
        else
          shifted = arith::AddIOp::create(
              builder, loc, mapping.lookup(dim.getIndex()),
              arith::ConstantIndexOp::create(builder, loc, 1));
        mapping.map(dim.getResult(),
                    tensor::DimOp::create(
                        builder, loc, mapping.lookup(dim.getSource()), shifted)
                        .getResult());
        return success();
      })
      .Case([&](tensor::ExtractOp) -> LogicalResult {
        return op->emitOpError(
            "cannot be batched: it reads one element of a batched tensor "
            "outside a linalg.generic (the batch would need a scalar per "
            "element)");
      })
      .Default([&](Operation *op) -> LogicalResult {
        return op->emitOpError(
            "cannot be batched: it reads a batched value, and qlr-batch "
            "knows linalg.generic, qlr.linear, the qlr norms and tensor "
            "reshapes, slices, casts and dims");
      });
}

LogicalResult Batcher::run(func::FuncOp source,
                           ArrayRef<unsigned> batchedArgs) {
  Block &from = source.getBody().front();
  Block *to = target.addEntryBlock();
  builder.setInsertionPointToStart(to);
  for (auto [old, now] : llvm::zip(from.getArguments(), to->getArguments()))
    mapping.map(old, now);
  for (unsigned index : batchedArgs)
    batched.insert(to->getArgument(index));
  if (ShapedType::isDynamic(size))
    batchSize = tensor::DimOp::create(builder, source.getLoc(),
                                      to->getArgument(batchedArgs.front()), 0)
                    .getResult();
  else
    batchSize = builder.getIndexAttr(size);

  for (Operation &op : from.without_terminator())
    if (failed(visit(&op)))
      return failure();
  Operation *terminator = from.getTerminator();
  SmallVector<Value> results;
  for (Value value : terminator->getOperands()) {
    FailureOr<Value> result =
        batchedOf(mapping.lookup(value), terminator->getLoc());
    if (failed(result))
      return failure();
    results.push_back(*result);
  }
  func::ReturnOp::create(builder, terminator->getLoc(), results);

  // The shared copies that only batched ops needed (empty tensors, fills).
  SmallVector<Operation *> ops;
  for (Operation &op : to->without_terminator())
    ops.push_back(&op);
  for (Operation *op : llvm::reverse(ops))
    if (isOpTriviallyDead(op))
      op->erase();
  return success();
}

/// Named linalg ops generalized and element-wise arith on tensors as
/// linalg.generic, so that the batcher sees few kinds of ops; norms whose
/// weights depend on a batched argument lowered to linalg.
LogicalResult normalize(func::FuncOp function, ArrayRef<unsigned> batchedArgs) {
  RewritePatternSet patterns(function.getContext());
  linalg::populateLinalgNamedOpsGeneralizationPatterns(patterns);
  linalg::populateElementwiseToLinalgConversionPatterns(patterns);
  GreedyRewriteConfig config;
  config.enableFolding(false);
  if (failed(applyPatternsGreedily(function, std::move(patterns), config)))
    return failure();

  Block &body = function.getBody().front();
  llvm::DenseSet<Value> depends;
  for (unsigned index : batchedArgs)
    depends.insert(body.getArgument(index));
  SmallVector<Operation *> norms;
  for (Operation &op : body) {
    bool reads = false;
    op.walk([&](Operation *nested) {
      for (Value operand : nested->getOperands())
        reads |= depends.contains(operand);
    });
    if (!reads)
      continue;
    depends.insert(op.result_begin(), op.result_end());
    if (isa<RMSNormOp, LayerNormOp, BatchNormOp>(op) &&
        llvm::any_of(op.getOperands().drop_front(),
                     [&](Value v) { return depends.contains(v); }))
      norms.push_back(&op);
  }
  if (norms.empty())
    return success();
  RewritePatternSet lowering(function.getContext());
  populateQLRNormToLinalgPatterns(lowering);
  linalg::populateLinalgNamedOpsGeneralizationPatterns(lowering);
  linalg::populateElementwiseToLinalgConversionPatterns(lowering);
  GreedyRewriteConfig opConfig;
  opConfig.enableFolding(false);
  opConfig.setStrictness(GreedyRewriteStrictness::ExistingAndNewOps);
  return applyOpPatternsGreedily(norms, std::move(lowering), opConfig);
}

} // namespace

FailureOr<func::FuncOp>
mlir::qlr::buildBatchedFunction(func::FuncOp function,
                                ArrayRef<unsigned> batchedArgs,
                                int64_t batchSize, StringRef name) {
  if (!function.getBody().hasOneBlock())
    return function.emitOpError("cannot be batched: qlr-batch needs a "
                                "function body with one block");
  if (!ShapedType::isDynamic(batchSize) && batchSize < 1)
    return function.emitOpError("cannot be batched with ")
           << batchSize << " elements: the batch size must be at least 1";
  FunctionType type = function.getFunctionType();
  if (batchedArgs.empty())
    return function.emitOpError("cannot be batched: no argument is batched");
  llvm::DenseSet<unsigned> seen;
  for (unsigned index : batchedArgs) {
    if (index >= type.getNumInputs())
      return function.emitOpError("has no argument #")
             << index << " to batch (it has " << type.getNumInputs() << ")";
    if (!isa<RankedTensorType>(type.getInput(index)))
      return function.emitOpError("cannot batch argument #")
             << index << " of type " << type.getInput(index)
             << ": not a ranked tensor";
    if (!seen.insert(index).second)
      return function.emitOpError("argument #")
             << index << " is named twice in the batched arguments";
  }
  for (auto [i, result] : llvm::enumerate(type.getResults()))
    if (!isa<RankedTensorType>(result))
      return function.emitOpError("cannot be batched: result #")
             << i << " has type " << result << ", not a ranked tensor";
  auto module = function->getParentOfType<ModuleOp>();
  if (module && SymbolTable::lookupSymbolIn(module, name))
    return function.emitOpError("cannot write its batched form as @")
           << name << ": the module already has a symbol of that name";

  SmallVector<Type> inputs(type.getInputs());
  for (unsigned index : batchedArgs)
    inputs[index] = withBatch(inputs[index], batchSize);
  SmallVector<Type> results;
  for (Type result : type.getResults())
    results.push_back(withBatch(result, batchSize));

  OpBuilder builder(function);
  builder.setInsertionPointAfter(function);
  auto work = cast<func::FuncOp>(builder.clone(*function));
  auto fail = [&](func::FuncOp target) -> FailureOr<func::FuncOp> {
    if (target)
      target->erase();
    work->erase();
    return failure();
  };
  if (failed(normalize(work, batchedArgs)))
    return fail(nullptr);
  auto target = func::FuncOp::create(
      builder, function.getLoc(), name,
      FunctionType::get(function.getContext(), inputs, results));
  target->setDiscardableAttrs(function->getDiscardableAttrDictionary());
  SmallVector<DictionaryAttr> argAttrs;
  function.getAllArgAttrs(argAttrs);
  target.setAllArgAttrs(argAttrs);
  target.setVisibility(function.getVisibility());

  Batcher batcher(target, batchSize);
  if (failed(batcher.run(work, batchedArgs)))
    return fail(target);
  work->erase();
  if (failed(verify(target))) {
    target->erase();
    return failure();
  }
  return target;
}

namespace {
struct QLRBatchPass : public mlir::qlr::impl::QLRBatchPassBase<QLRBatchPass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    FailureOr<func::FuncOp> target =
        lookupFunctionOption(module, getArgument(), function, "batch");
    if (failed(target))
      return signalPassFailure();
    if (size < 0) {
      emitError(module.getLoc())
          << getArgument() << ": size=" << int64_t(size)
          << " is not a batch size (a positive number, or 0 for a dynamic "
             "batch)";
      return signalPassFailure();
    }
    SmallVector<unsigned> indices(arguments.begin(), arguments.end());
    if (indices.empty())
      for (auto [i, type] :
           llvm::enumerate(target->getFunctionType().getInputs()))
        if (isa<RankedTensorType>(type))
          indices.push_back(i);
    std::string batchedName =
        name.empty() ? (function + "_batched") : std::string(name);
    if (failed(buildBatchedFunction(*target, indices,
                                    size == 0 ? ShapedType::kDynamic : size,
                                    batchedName)))
      signalPassFailure();
  }
};
} // namespace
