//===- Differentiate.cpp - Reverse-mode differentiation of tensor IR -----===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// buildGradientFunction and the qlr-differentiate pass
// (include/qlr/Dialect/QLR/Transforms/Differentiate.h describes the method).
//
//===----------------------------------------------------------------------===//

#include "qlr/Dialect/QLR/Transforms/Differentiate.h"

#include "WeightUtils.h"

#include "qlr/Conversion/Passes.h"
#include "qlr/Dialect/QLR/IR/QLR.h"
#include "qlr/Dialect/QLR/Transforms/Passes.h"

#include "mlir/Dialect/Affine/Utils.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Linalg/Transforms/Transforms.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"
#include "mlir/Transforms/RegionUtils.h"

#include "llvm/ADT/DenseSet.h"
#include "llvm/ADT/MapVector.h"
#include "llvm/ADT/SetVector.h"
#include "llvm/ADT/TypeSwitch.h"

#include <cmath>

namespace mlir::qlr {
#define GEN_PASS_DEF_QLRDIFFERENTIATEPASS
#include "qlr/Dialect/QLR/Transforms/Passes.h.inc"
} // namespace mlir::qlr

using namespace mlir;
using namespace mlir::qlr;

namespace {

bool isFloatTensor(Type type) {
  auto tensor = dyn_cast<RankedTensorType>(type);
  return tensor && isa<FloatType>(tensor.getElementType());
}

Value floatConstant(OpBuilder &b, Location loc, Type type, double value) {
  return arith::ConstantOp::create(b, loc, b.getFloatAttr(type, value));
}

/// `v` converted to the float type `to` (extf or truncf).
Value convertFloat(OpBuilder &b, Location loc, Value v, Type to) {
  Type from = v.getType();
  if (from == to)
    return v;
  if (from.getIntOrFloatBitWidth() == to.getIntOrFloatBitWidth())
    // f16 <-> bf16: through f32.
    return arith::TruncFOp::create(
        b, loc, to, arith::ExtFOp::create(b, loc, b.getF32Type(), v));
  if (from.getIntOrFloatBitWidth() < to.getIntOrFloatBitWidth())
    return arith::ExtFOp::create(b, loc, to, v);
  return arith::TruncFOp::create(b, loc, to, v);
}

/// A tensor of zeros shaped like `tensor`.
Value zerosLike(OpBuilder &b, Location loc, Value tensor) {
  auto type = cast<RankedTensorType>(tensor.getType());
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, tensor);
  Value empty = tensor::EmptyOp::create(b, loc, sizes, type.getElementType());
  Value zero =
      arith::ConstantOp::create(b, loc, b.getZeroAttr(type.getElementType()));
  return linalg::FillOp::create(b, loc, zero, empty).getResult(0);
}

/// The values `op` reads: its operands and the values its regions use from
/// above (tensor.extract of a captured tensor in a linalg.generic body).
SmallVector<Value> readValues(Operation *op) {
  SmallVector<Value> values(op->getOperands());
  if (op->getNumRegions()) {
    llvm::SetVector<Value> captured;
    getUsedValuesDefinedAbove(op->getRegions(), captured);
    values.append(captured.begin(), captured.end());
  }
  return values;
}

//===----------------------------------------------------------------------===//
// Forward-mode derivatives of scalar code (linalg.generic bodies)
//===----------------------------------------------------------------------===//

/// Tangents of scalar values with respect to one seed; a missing entry is a
/// zero tangent.
class Tangents {
public:
  /// Tangent 1 for each of `seeds` (the same value read several times).
  Tangents(OpBuilder &b, ArrayRef<Value> seeds) : b(b) {
    OpBuilder::InsertionGuard guard(b);
    for (Value seed : seeds) {
      b.setInsertionPointAfterValue(seed);
      tangents[seed] = floatConstant(b, seed.getLoc(), seed.getType(), 1.0);
    }
  }
  Value lookup(Value v) const { return tangents.lookup(v); }

  /// Adds the tangent of `op`'s result after `op`, from its operands'.
  LogicalResult visit(Operation *op);

private:
  Value add(Location loc, Value x, Value y) {
    if (!x || !y)
      return x ? x : y;
    return arith::AddFOp::create(b, loc, x, y);
  }
  Value mul(Location loc, Value x, Value y) {
    if (!x || !y)
      return nullptr;
    return arith::MulFOp::create(b, loc, x, y);
  }
  Value neg(Location loc, Value x) {
    if (!x)
      return nullptr;
    return arith::NegFOp::create(b, loc, x);
  }
  Value sub(Location loc, Value x, Value y) { return add(loc, x, neg(loc, y)); }
  Value orZero(Location loc, Value tangent, Type type) {
    return tangent ? tangent : floatConstant(b, loc, type, 0.0);
  }
  /// select(c, tx, ty) with zero for the missing one.
  Value select(Location loc, Value c, Value x, Value y, Type type) {
    if (!x && !y)
      return nullptr;
    return arith::SelectOp::create(b, loc, c, orZero(loc, x, type),
                                   orZero(loc, y, type));
  }

  OpBuilder &b;
  DenseMap<Value, Value> tangents;
};

LogicalResult Tangents::visit(Operation *op) {
  if (llvm::none_of(readValues(op), [&](Value v) { return tangents.count(v); }))
    return success();
  if (llvm::none_of(op->getResultTypes(),
                    [](Type t) { return isa<FloatType>(t); }))
    return success(); // comparisons, index arithmetic: no tangent
  if (op->getNumResults() != 1 || op->getNumRegions() != 0)
    return op->emitOpError(
        "cannot be differentiated: qlr-differentiate handles scalar ops with "
        "one result and no regions in a linalg.generic body");
  Location loc = op->getLoc();
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointAfter(op);
  Value y = op->getResult(0);
  Type type = y.getType();
  auto t = [&](unsigned i) { return lookup(op->getOperand(i)); };
  auto operand = [&](unsigned i) { return op->getOperand(i); };
  auto constant = [&](double v) { return floatConstant(b, loc, type, v); };
  Value result;
  bool known = true;
  llvm::TypeSwitch<Operation *>(op)
      .Case([&](arith::AddFOp) { result = add(loc, t(0), t(1)); })
      .Case([&](arith::SubFOp) { result = sub(loc, t(0), t(1)); })
      .Case([&](arith::NegFOp) { result = neg(loc, t(0)); })
      .Case([&](arith::MulFOp) {
        result =
            add(loc, mul(loc, t(0), operand(1)), mul(loc, operand(0), t(1)));
      })
      .Case([&](arith::DivFOp) {
        // d(a/b) = (da - y·db) / b
        Value numerator = sub(loc, t(0), mul(loc, y, t(1)));
        result = numerator
                     ? arith::DivFOp::create(b, loc, numerator, operand(1))
                           .getResult()
                     : nullptr;
      })
      .Case<arith::MaximumFOp, arith::MaxNumFOp>([&](Operation *) {
        Value first = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OGE,
                                            operand(0), operand(1));
        result = select(loc, first, t(0), t(1), type);
      })
      .Case<arith::MinimumFOp, arith::MinNumFOp>([&](Operation *) {
        Value first = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OLE,
                                            operand(0), operand(1));
        result = select(loc, first, t(0), t(1), type);
      })
      .Case([&](arith::SelectOp) {
        result = select(loc, operand(0), t(1), t(2), type);
      })
      .Case<arith::ExtFOp, arith::TruncFOp>(
          [&](Operation *) { result = convertFloat(b, loc, t(0), type); })
      .Case([&](math::ExpOp) { result = mul(loc, t(0), y); })
      .Case([&](math::LogOp) {
        result = arith::DivFOp::create(b, loc, t(0), operand(0));
      })
      .Case([&](math::SqrtOp) {
        Value twice = arith::MulFOp::create(b, loc, constant(2.0), y);
        result = arith::DivFOp::create(b, loc, t(0), twice);
      })
      .Case([&](math::RsqrtOp) {
        // d(x^-1/2) = -1/2 · y³ dx
        Value cube = arith::MulFOp::create(
            b, loc, arith::MulFOp::create(b, loc, y, y), y);
        result =
            mul(loc, t(0), arith::MulFOp::create(b, loc, constant(-0.5), cube));
      })
      .Case([&](math::TanhOp) {
        Value square = arith::MulFOp::create(b, loc, y, y);
        result = mul(loc, t(0),
                     arith::SubFOp::create(b, loc, constant(1.0), square));
      })
      .Case([&](math::ErfOp) {
        Value x = operand(0);
        Value gauss = math::ExpOp::create(
            b, loc,
            arith::NegFOp::create(b, loc, arith::MulFOp::create(b, loc, x, x)));
        result = mul(
            loc, t(0),
            arith::MulFOp::create(b, loc, constant(1.1283791670955126), gauss));
      })
      .Case([&](math::SinOp) {
        result = mul(loc, t(0), math::CosOp::create(b, loc, operand(0)));
      })
      .Case([&](math::CosOp) {
        result =
            neg(loc, mul(loc, t(0), math::SinOp::create(b, loc, operand(0))));
      })
      .Case([&](math::AbsFOp) {
        Value positive = arith::CmpFOp::create(
            b, loc, arith::CmpFPredicate::OGE, operand(0), constant(0.0));
        result = select(loc, positive, t(0), neg(loc, t(0)), type);
      })
      .Case([&](math::PowFOp) {
        if (t(1)) {
          known = false;
          return;
        }
        // d(a^c) = c · a^(c-1) da for an exponent c that does not vary.
        Value exponent = operand(1);
        Value lowered = math::PowFOp::create(
            b, loc, operand(0),
            arith::SubFOp::create(b, loc, exponent, constant(1.0)));
        result =
            mul(loc, t(0), arith::MulFOp::create(b, loc, exponent, lowered));
      })
      .Case([&](math::FmaOp) {
        result = add(
            loc,
            add(loc, mul(loc, t(0), operand(1)), mul(loc, operand(0), t(1))),
            t(2));
      })
      .Default([&](Operation *) { known = false; });
  if (!known)
    return op->emitOpError(
        "cannot be differentiated: qlr-differentiate has no derivative for "
        "it (or for a varying exponent)");
  if (result)
    tangents[y] = result;
  return success();
}

//===----------------------------------------------------------------------===//
// linalg.generic
//===----------------------------------------------------------------------===//

/// How a generic's body makes its yielded value.
struct BodyForm {
  enum Combine { None, Add, Max, Min };
  /// The value to differentiate: the yielded value, or for a reduction the
  /// operand the accumulator is combined with.
  Value value;
  /// The combining op of a reduction (not replayed).
  Operation *combine = nullptr;
  Combine kind = None;
  /// The accumulator block argument is read as an input (parallel loops).
  bool outputIsInput = false;
};

FailureOr<BodyForm> analyseBody(linalg::GenericOp op) {
  if (op.getNumDpsInits() != 1)
    return op.emitOpError("cannot be differentiated: qlr-differentiate "
                          "handles generics with one result");
  Block &body = op.getRegion().front();
  BlockArgument out = body.getArguments().back();
  Value yielded = body.getTerminator()->getOperand(0);
  BodyForm form;
  if (op.getNumReductionLoops() == 0) {
    form.value = yielded;
    form.outputIsInput = !out.use_empty();
    return form;
  }
  Operation *combine = yielded.getDefiningOp();
  auto fail = [&]() {
    return op.emitOpError(
        "cannot be differentiated: a reduction must yield arith.addf, "
        "arith.maximumf or arith.minimumf of its accumulator and a value "
        "that does not read the accumulator");
  };
  if (!combine || combine->getBlock() != &body ||
      combine->getNumOperands() != 2 || !out.hasOneUse())
    return fail();
  BodyForm::Combine kind =
      llvm::TypeSwitch<Operation *, BodyForm::Combine>(combine)
          .Case([](arith::AddFOp) { return BodyForm::Add; })
          .Case<arith::MaximumFOp, arith::MaxNumFOp>(
              [](Operation *) { return BodyForm::Max; })
          .Case<arith::MinimumFOp, arith::MinNumFOp>(
              [](Operation *) { return BodyForm::Min; })
          .Default([](Operation *) { return BodyForm::None; });
  if (kind == BodyForm::None)
    return fail();
  if (combine->getOperand(0) == out)
    form.value = combine->getOperand(1);
  else if (combine->getOperand(1) == out)
    form.value = combine->getOperand(0);
  else
    return fail();
  form.combine = combine;
  form.kind = kind;
  return form;
}

/// Whether `value` (in the body of `op`) depends on `source` (a block
/// argument or a value defined in the body).
bool dependsOn(linalg::GenericOp op, Value value, Value source) {
  if (value == source)
    return true;
  DenseSet<Value> reached = {source};
  for (Operation &inner : op.getRegion().front().without_terminator()) {
    if (llvm::any_of(inner.getOperands(),
                     [&](Value v) { return reached.contains(v); }))
      for (Value result : inner.getResults())
        reached.insert(result);
  }
  return reached.contains(value);
}

/// Builds the adjoints of a generic's active inputs.
class GenericAdjoint {
public:
  GenericAdjoint(OpBuilder &b, linalg::GenericOp op, const BodyForm &form,
                 Value resultAdjoint)
      : b(b), op(op), form(form), adjoint(resultAdjoint), loc(op.getLoc()) {}

  /// The adjoint contribution to the operands `indices` (one value read
  /// through one indexing map; the init's index is the number of inputs),
  /// as a generic when the map is a projected permutation, otherwise by a
  /// scatter loop.
  FailureOr<Value> operandAdjoint(ArrayRef<unsigned> indices);
  /// The adjoint contribution to the captured tensor read by the body's
  /// `extract`.
  FailureOr<Value> gatherAdjoint(tensor::ExtractOp extract);

private:
  Block &body() { return op.getRegion().front(); }
  BlockArgument blockArgument(unsigned index) {
    return body().getArgument(index);
  }
  Value operand(unsigned index) {
    return index < op.getNumDpsInputs() ? op.getDpsInputs()[index]
                                        : op.getDpsInits()[0];
  }
  AffineMap map(unsigned index) { return op.getIndexingMapsArray()[index]; }
  AffineMap outputMap() { return op.getIndexingMapsArray().back(); }

  /// Clones the body (without the terminator and the reduction's combine)
  /// at `b`'s insertion point; `ivs` replace linalg.index when not empty.
  SmallVector<Operation *> replay(IRMapping &mapping, ValueRange ivs);
  /// seedScale · d(form.value)/d(seed) in the replayed body, or null when it
  /// does not depend on the seed.
  FailureOr<Value> contribution(IRMapping &mapping,
                                ArrayRef<Operation *> replayed,
                                ArrayRef<Value> seeds, Value resultAdjoint,
                                Value result);
  /// The replayed block arguments of `indices`.
  SmallVector<Value> seedsOf(IRMapping &mapping, ArrayRef<unsigned> indices) {
    SmallVector<Value> seeds;
    for (unsigned index : indices)
      seeds.push_back(mapping.lookup(blockArgument(index)));
    return seeds;
  }
  FailureOr<Value> operandAdjointByGeneric(ArrayRef<unsigned> indices);
  FailureOr<Value>
  scatterAdjoint(Value target,
                 function_ref<std::pair<SmallVector<Value>, SmallVector<Value>>(
                     OpBuilder &, IRMapping &, ValueRange)>
                     seedsAndIndices);

  OpBuilder &b;
  linalg::GenericOp op;
  const BodyForm &form;
  Value adjoint;
  Location loc;
};

SmallVector<Operation *> GenericAdjoint::replay(IRMapping &mapping,
                                                ValueRange ivs) {
  SmallVector<Operation *> replayed;
  for (Operation &inner : body().without_terminator()) {
    if (&inner == form.combine)
      continue;
    if (auto index = dyn_cast<linalg::IndexOp>(inner); index && !ivs.empty()) {
      mapping.map(index.getResult(), ivs[index.getDim()]);
      continue;
    }
    replayed.push_back(b.clone(inner, mapping));
  }
  return replayed;
}

FailureOr<Value> GenericAdjoint::contribution(IRMapping &mapping,
                                              ArrayRef<Operation *> replayed,
                                              ArrayRef<Value> seeds,
                                              Value resultAdjoint,
                                              Value result) {
  Tangents tangents(b, seeds);
  for (Operation *inner : replayed)
    if (failed(tangents.visit(inner)))
      return failure();
  Value value = mapping.lookupOrDefault(form.value);
  Value tangent = tangents.lookup(value);
  if (!tangent)
    return Value();
  Type type = value.getType();
  Value scale = convertFloat(b, loc, resultAdjoint, type);
  if (form.kind == BodyForm::Max || form.kind == BodyForm::Min) {
    // Only the elements equal to the reduced value receive its adjoint.
    Value reached =
        arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OEQ, value,
                              convertFloat(b, loc, result, type));
    scale = arith::SelectOp::create(b, loc, reached, scale,
                                    floatConstant(b, loc, type, 0.0));
  }
  return arith::MulFOp::create(b, loc, scale, tangent,
                               arith::FastMathFlags::contract)
      .getResult();
}

FailureOr<Value> GenericAdjoint::operandAdjoint(ArrayRef<unsigned> indices) {
  AffineMap indexMap = map(indices.front());
  if (indexMap.isProjectedPermutation())
    return operandAdjointByGeneric(indices);
  return scatterAdjoint(
      operand(indices.front()),
      [&](OpBuilder &nb, IRMapping &mapping, ValueRange ivs) {
        SmallVector<Value> position;
        for (AffineExpr expr : indexMap.getResults())
          position.push_back(
              affine::expandAffineExpr(nb, loc, expr, ivs, ValueRange{}));
        return std::make_pair(seedsOf(mapping, indices), position);
      });
}

FailureOr<Value> GenericAdjoint::gatherAdjoint(tensor::ExtractOp extract) {
  return scatterAdjoint(
      extract.getTensor(), [&](OpBuilder &, IRMapping &mapping, ValueRange) {
        SmallVector<Value> indices;
        for (Value i : extract.getIndices())
          indices.push_back(mapping.lookupOrDefault(i));
        return std::make_pair(
            SmallVector<Value>{mapping.lookup(extract.getResult())}, indices);
      });
}

FailureOr<Value>
GenericAdjoint::operandAdjointByGeneric(ArrayRef<unsigned> indices) {
  unsigned index = indices.front();
  unsigned numInputs = op.getNumDpsInputs();
  bool minMax = form.kind == BodyForm::Max || form.kind == BodyForm::Min;
  SmallVector<Value> inputs(op.getDpsInputs());
  SmallVector<AffineMap> maps;
  for (unsigned i = 0; i < numInputs; ++i)
    maps.push_back(map(i));
  if (form.outputIsInput) {
    inputs.push_back(op.getDpsInits()[0]);
    maps.push_back(outputMap());
  }
  inputs.push_back(adjoint);
  maps.push_back(outputMap());
  if (minMax) {
    inputs.push_back(op->getResult(0));
    maps.push_back(outputMap());
  }
  // Without reductions the result's element at each point is the yielded
  // value. When that value's tangent rule reads it (exp, sqrt, rsqrt, tanh,
  // a quotient), the adjoint reads the result instead of replaying the op
  // (softmax's exp, for example): bit for bit the same value, one
  // transcendental fewer per element.
  Operation *yielder = form.value.getDefiningOp();
  bool readsResult = form.kind == BodyForm::None &&
                     outputMap().isPermutation() &&
                     isa_and_present<math::ExpOp, math::SqrtOp, math::RsqrtOp,
                                     math::TanhOp, arith::DivFOp>(yielder) &&
                     yielder->getBlock() == &body();
  if (readsResult) {
    inputs.push_back(op->getResult(0));
    maps.push_back(outputMap());
  }
  Value target = operand(index);
  AffineMap targetMap = map(index);
  maps.push_back(targetMap);
  SmallVector<utils::IteratorType> iterators;
  for (unsigned d = 0; d < op.getNumLoops(); ++d)
    iterators.push_back(targetMap.isFunctionOfDim(d)
                            ? utils::IteratorType::parallel
                            : utils::IteratorType::reduction);
  // Without reduction loops every element is written once: the body yields
  // its contribution and never reads the init (elementwise fusion would
  // otherwise carry the accumulation into a consumer's reduction loops).
  bool reduces = llvm::is_contained(iterators, utils::IteratorType::reduction);
  Type element = cast<RankedTensorType>(target.getType()).getElementType();
  Value init = reduces
                   ? zerosLike(b, loc, target)
                   : tensor::EmptyOp::create(
                         b, loc, tensor::getMixedSizes(b, loc, target), element)
                         .getResult();
  LogicalResult status = success();
  bool depends = true;
  auto generic = linalg::GenericOp::create(
      b, loc, target.getType(), inputs, ValueRange{init}, maps, iterators,
      [&](OpBuilder &nb, Location, ValueRange args) {
        OpBuilder::InsertionGuard guard(b);
        b.setInsertionPoint(nb.getInsertionBlock(), nb.getInsertionPoint());
        IRMapping mapping;
        for (unsigned i = 0; i < numInputs; ++i)
          mapping.map(blockArgument(i), args[i]);
        unsigned next = numInputs;
        if (form.outputIsInput)
          mapping.map(blockArgument(numInputs), args[next++]);
        Value resultAdjoint = args[next++];
        Value result = minMax ? args[next++] : Value();
        Value primal = readsResult ? args[next++] : Value();
        Value accumulator = args.back();
        SmallVector<Operation *> replayed = replay(mapping, {});
        FailureOr<Value> c =
            contribution(mapping, replayed, seedsOf(mapping, indices),
                         resultAdjoint, result);
        if (primal && succeeded(c)) {
          Operation *replayedYielder =
              mapping.lookup(form.value).getDefiningOp();
          replayedYielder->getResult(0).replaceAllUsesWith(primal);
          replayedYielder->erase();
        }
        Value sum = accumulator;
        if (failed(c))
          status = failure();
        else if (!*c)
          depends = false;
        else if (reduces)
          // Reassociable, so that LLVM vectorizes the reduction loops.
          sum = arith::AddFOp::create(
              b, loc, accumulator, convertFloat(b, loc, *c, element),
              arith::FastMathFlags::reassoc | arith::FastMathFlags::contract);
        else
          sum = convertFloat(b, loc, *c, element);
        linalg::YieldOp::create(b, loc, sum);
      });
  if (failed(status)) {
    generic->erase();
    return failure();
  }
  if (!depends) {
    generic->erase();
    return Value();
  }
  return generic.getResult(0);
}

FailureOr<Value> GenericAdjoint::scatterAdjoint(
    Value target,
    function_ref<std::pair<SmallVector<Value>, SmallVector<Value>>(
        OpBuilder &, IRMapping &, ValueRange)>
        seedsAndIndices) {
  bool minMax = form.kind == BodyForm::Max || form.kind == BodyForm::Min;
  SmallVector<Range> ranges =
      cast<linalg::LinalgOp>(op.getOperation()).createLoopRanges(b, loc);
  SmallVector<Value> lbs, ubs, steps;
  for (Range &range : ranges) {
    lbs.push_back(getValueOrCreateConstantIndexOp(b, loc, range.offset));
    ubs.push_back(getValueOrCreateConstantIndexOp(b, loc, range.size));
    steps.push_back(getValueOrCreateConstantIndexOp(b, loc, range.stride));
  }
  Value init = zerosLike(b, loc, target);
  Type element = cast<RankedTensorType>(target.getType()).getElementType();
  unsigned numInputs = op.getNumDpsInputs();
  LogicalResult status = success();
  auto extractAt = [&](OpBuilder &nb, Value tensor, AffineMap indexMap,
                       ValueRange ivs) -> Value {
    SmallVector<Value> indices;
    for (AffineExpr expr : indexMap.getResults())
      indices.push_back(
          affine::expandAffineExpr(nb, loc, expr, ivs, ValueRange{}));
    return tensor::ExtractOp::create(nb, loc, tensor, indices);
  };
  scf::LoopNest nest = scf::buildLoopNest(
      b, loc, lbs, ubs, steps, ValueRange{init},
      [&](OpBuilder &nb, Location, ValueRange ivs,
          ValueRange iterArgs) -> scf::ValueVector {
        OpBuilder::InsertionGuard guard(b);
        b.setInsertionPoint(nb.getInsertionBlock(), nb.getInsertionPoint());
        IRMapping mapping;
        for (unsigned i = 0; i < numInputs; ++i) {
          Value input = op.getDpsInputs()[i];
          mapping.map(blockArgument(i), isa<RankedTensorType>(input.getType())
                                            ? extractAt(b, input, map(i), ivs)
                                            : input);
        }
        if (form.outputIsInput)
          mapping.map(blockArgument(numInputs),
                      extractAt(b, op.getDpsInits()[0], outputMap(), ivs));
        Value resultAdjoint = extractAt(b, adjoint, outputMap(), ivs);
        Value result =
            minMax ? extractAt(b, op->getResult(0), outputMap(), ivs) : Value();
        SmallVector<Operation *> replayed = replay(mapping, ivs);
        auto [seeds, indices] = seedsAndIndices(b, mapping, ivs);
        FailureOr<Value> c =
            contribution(mapping, replayed, seeds, resultAdjoint, result);
        Value accumulator = iterArgs[0];
        if (failed(c)) {
          status = failure();
        } else if (*c) {
          Value old = tensor::ExtractOp::create(b, loc, accumulator, indices);
          Value sum = arith::AddFOp::create(b, loc, old,
                                            convertFloat(b, loc, *c, element));
          accumulator =
              tensor::InsertOp::create(b, loc, sum, accumulator, indices);
        }
        return {accumulator};
      });
  if (failed(status))
    return failure();
  return nest.results[0];
}

//===----------------------------------------------------------------------===//
// The reverse sweep
//===----------------------------------------------------------------------===//

class ReverseSweep {
public:
  ReverseSweep(func::FuncOp function) : function(function) {}

  /// Differentiates the (single-block) body, seeded by `cotangents` for the
  /// returned values `returned`; `wrt` are the arguments of interest.
  LogicalResult run(ArrayRef<BlockArgument> wrt, ArrayRef<Value> returned,
                    ArrayRef<Value> cotangents, Operation *terminator);
  /// The adjoint of `v` (zeros when it has none).
  Value adjointOrZeros(Value v);

private:
  bool isActive(Value v) const {
    return varied.contains(v) && useful.contains(v);
  }
  void accumulate(Value v, Value contribution);
  LogicalResult visit(Operation *op);
  LogicalResult visitGeneric(linalg::GenericOp op, Value adjoint);
  LogicalResult visitLinear(LinearOp op, Value adjoint);

  func::FuncOp function;
  OpBuilder b{function.getContext()};
  DenseSet<Value> varied, useful;
  DenseMap<Value, Value> adjoints;
};

void ReverseSweep::accumulate(Value v, Value contribution) {
  if (!contribution || !isActive(v))
    return;
  Value &slot = adjoints[v];
  slot =
      slot
          ? arith::AddFOp::create(b, v.getLoc(), slot, contribution).getResult()
          : contribution;
}

Value ReverseSweep::adjointOrZeros(Value v) {
  if (Value adjoint = adjoints.lookup(v))
    return adjoint;
  return zerosLike(b, v.getLoc(), v);
}

LogicalResult ReverseSweep::run(ArrayRef<BlockArgument> wrt,
                                ArrayRef<Value> returned,
                                ArrayRef<Value> cotangents,
                                Operation *terminator) {
  Block &block = function.getBody().front();
  // Activity: varied values depend on a wrt argument, useful values are
  // ones a differentiated result depends on.
  for (BlockArgument arg : wrt)
    varied.insert(arg);
  // Only floating-point values (and tensors of them) carry derivatives:
  // sizes and indices computed from a varied tensor do not vary.
  for (Operation &op : block.without_terminator())
    if (llvm::any_of(readValues(&op),
                     [&](Value v) { return varied.contains(v); }))
      for (Value result : op.getResults())
        if (!getElementTypeOrSelf(result.getType()).isIntOrIndex())
          varied.insert(result);
  for (Value v : returned)
    useful.insert(v);
  for (Operation &op : llvm::reverse(block.without_terminator()))
    if (llvm::any_of(op.getResults(),
                     [&](Value v) { return useful.contains(v); }))
      for (Value v : readValues(&op))
        useful.insert(v);

  b.setInsertionPoint(terminator);
  for (auto [value, cotangent] : llvm::zip_equal(returned, cotangents))
    accumulate(value, cotangent);
  SmallVector<Operation *> ops;
  for (Operation &op : block.without_terminator())
    ops.push_back(&op);
  for (Operation *op : llvm::reverse(ops)) {
    if (llvm::none_of(op->getResults(),
                      [&](Value v) { return adjoints.count(v); }))
      continue;
    if (llvm::none_of(readValues(op), [&](Value v) { return isActive(v); }))
      continue;
    if (failed(visit(op)))
      return failure();
  }
  return success();
}

LogicalResult ReverseSweep::visit(Operation *op) {
  Location loc = op->getLoc();
  Value adjoint =
      op->getNumResults() ? adjointOrZeros(op->getResult(0)) : Value();
  return llvm::TypeSwitch<Operation *, LogicalResult>(op)
      .Case([&](linalg::GenericOp generic) {
        return visitGeneric(generic, adjoint);
      })
      .Case([&](LinearOp linear) { return visitLinear(linear, adjoint); })
      .Case([&](tensor::ExpandShapeOp expand) {
        accumulate(expand.getSrc(), tensor::CollapseShapeOp::create(
                                        b, loc, expand.getSrcType(), adjoint,
                                        expand.getReassociationIndices()));
        return success();
      })
      .Case([&](tensor::CollapseShapeOp collapse) {
        Value src = collapse.getSrc();
        accumulate(src, tensor::ExpandShapeOp::create(
                            b, loc, src.getType(), adjoint,
                            collapse.getReassociationIndices(),
                            tensor::getMixedSizes(b, loc, src)));
        return success();
      })
      .Case([&](tensor::CastOp cast) {
        accumulate(cast.getSource(),
                   tensor::CastOp::create(b, loc, cast.getSource().getType(),
                                          adjoint));
        return success();
      })
      .Case([&](tensor::ExtractSliceOp slice) {
        Value source = slice.getSource();
        accumulate(source, tensor::InsertSliceOp::create(
                               b, loc, adjoint, zerosLike(b, loc, source),
                               slice.getMixedOffsets(), slice.getMixedSizes(),
                               slice.getMixedStrides()));
        return success();
      })
      .Case([&](tensor::InsertSliceOp insert) {
        Value source = insert.getSource();
        if (isActive(source))
          accumulate(source,
                     tensor::ExtractSliceOp::create(
                         b, loc, insert.getSourceType(), adjoint,
                         insert.getMixedOffsets(), insert.getMixedSizes(),
                         insert.getMixedStrides()));
        if (isActive(insert.getDest()))
          accumulate(insert.getDest(),
                     tensor::InsertSliceOp::create(
                         b, loc, zerosLike(b, loc, source), adjoint,
                         insert.getMixedOffsets(), insert.getMixedSizes(),
                         insert.getMixedStrides()));
        return success();
      })
      .Default([&](Operation *) {
        return op->emitOpError(
            "cannot be differentiated: qlr-differentiate has no adjoint for "
            "this op, and a differentiated result depends on its operands");
      });
}

LogicalResult ReverseSweep::visitGeneric(linalg::GenericOp op, Value adjoint) {
  FailureOr<BodyForm> form = analyseBody(op);
  if (failed(form))
    return failure();
  for (Value input : op.getDpsInputs())
    if (isActive(input) && !isa<RankedTensorType>(input.getType()))
      return op.emitOpError("cannot be differentiated: a scalar input "
                            "depends on a differentiated argument");
  GenericAdjoint generic(b, op, *form, adjoint);
  unsigned numInputs = op.getNumDpsInputs();
  // Inputs that read one value through one map share an adjoint generic.
  SmallVector<AffineMap> maps = op.getIndexingMapsArray();
  llvm::MapVector<std::pair<Value, AffineMap>, SmallVector<unsigned>> groups;
  for (unsigned i = 0; i < numInputs; ++i) {
    Value input = op.getDpsInputs()[i];
    if (isActive(input) &&
        dependsOn(op, form->value, op.getRegion().getArgument(i)))
      groups[{input, maps[i]}].push_back(i);
  }
  for (auto &[key, indices] : groups) {
    FailureOr<Value> contribution = generic.operandAdjoint(indices);
    if (failed(contribution))
      return failure();
    accumulate(key.first, *contribution);
  }
  Value init = op.getDpsInits()[0];
  if (isActive(init)) {
    if (form->outputIsInput) {
      FailureOr<Value> contribution = generic.operandAdjoint({numInputs});
      if (failed(contribution))
        return failure();
      accumulate(init, *contribution);
    } else if (form->kind == BodyForm::Add) {
      accumulate(init, adjoint);
    } else if (form->kind != BodyForm::None) {
      return op.emitOpError("cannot be differentiated: the initial value "
                            "of a max/min reduction depends on a "
                            "differentiated argument");
    }
  }
  // Scalars the body reads from above cannot carry an adjoint.
  llvm::SetVector<Value> captured;
  getUsedValuesDefinedAbove(op.getRegion(), captured);
  for (Value value : captured)
    if (isActive(value) && !isa<RankedTensorType>(value.getType()))
      return op.emitOpError("cannot be differentiated: its body reads a "
                            "scalar from above that depends on a "
                            "differentiated argument");
  // Tensors the body gathers from.
  SmallVector<tensor::ExtractOp> gathers;
  op.getRegion().walk([&](tensor::ExtractOp extract) {
    Value tensor = extract.getTensor();
    if (tensor.getParentRegion() != &op.getRegion() && isActive(tensor) &&
        dependsOn(op, form->value, extract.getResult()))
      gathers.push_back(extract);
  });
  for (tensor::ExtractOp extract : gathers) {
    FailureOr<Value> contribution = generic.gatherAdjoint(extract);
    if (failed(contribution))
      return failure();
    accumulate(extract.getTensor(), *contribution);
  }
  return success();
}

LogicalResult ReverseSweep::visitLinear(LinearOp op, Value adjoint) {
  Location loc = op.getLoc();
  if (isActive(op.getWeight()))
    return op.emitOpError(
        "cannot be differentiated with respect to its weight: "
        "qlr-differentiate differentiates a linear's input and bias");
  auto inputType = cast<RankedTensorType>(op.getInput().getType());
  int64_t rank = inputType.getRank();
  MLIRContext *ctx = op.getContext();
  auto dim = [&](int64_t d) { return getAffineDimExpr(d, ctx); };

  if (isActive(op.getInput())) {
    Value weight = op.getWeight();
    if (!isa<RankedTensorType>(weight.getType()))
      weight = DequantizeOp::create(
          b, loc, getExpressedTensorType(weight.getType()), weight);
    // dx = dy · W, a linear layer with the weight Wᵀ [K, N], so that the
    // product runs in the same contraction kernels as the forward one.
    auto weightType = cast<RankedTensorType>(weight.getType());
    SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, weight);
    Value empty = tensor::EmptyOp::create(b, loc, {sizes[1], sizes[0]},
                                          weightType.getElementType());
    Value transposed = linalg::TransposeOp::create(b, loc, weight, empty,
                                                   ArrayRef<int64_t>{1, 0})
                           ->getResult(0);
    Value product =
        LinearOp::create(b, loc, inputType, adjoint, transposed, Value());
    accumulate(op.getInput(), product);
  }

  if (Value bias = op.getBias(); bias && isActive(bias)) {
    // db[n] = Σ_{batch} dy[..., n]; loops (batch..., n).
    auto biasType = cast<RankedTensorType>(bias.getType());
    AffineMap dyMap = AffineMap::getMultiDimIdentityMap(rank, ctx);
    AffineMap dbMap = AffineMap::get(rank, 0, {dim(rank - 1)}, ctx);
    SmallVector<utils::IteratorType> iterators(rank - 1,
                                               utils::IteratorType::reduction);
    iterators.push_back(utils::IteratorType::parallel);
    Type element = biasType.getElementType();
    Value init = zerosLike(b, loc, bias);
    auto sum = linalg::GenericOp::create(
        b, loc, biasType, ValueRange{adjoint}, ValueRange{init},
        ArrayRef<AffineMap>{dyMap, dbMap}, iterators,
        [&](OpBuilder &nb, Location nloc, ValueRange args) {
          linalg::YieldOp::create(
              nb, nloc,
              arith::AddFOp::create(nb, nloc, args[1],
                                    convertFloat(nb, nloc, args[0], element))
                  .getResult());
        });
    accumulate(bias, sum.getResult(0));
  }
  return success();
}

/// Brings `function`'s body to the op set the sweep knows: norms lowered to
/// linalg, named linalg ops generalized, element-wise arith on tensors as
/// linalg.generic.
LogicalResult normalize(func::FuncOp function) {
  RewritePatternSet patterns(function.getContext());
  populateQLRNormToLinalgPatterns(patterns);
  linalg::populateLinalgNamedOpsGeneralizationPatterns(patterns);
  linalg::populateElementwiseToLinalgConversionPatterns(patterns);
  GreedyRewriteConfig config;
  config.enableFolding(false);
  return applyPatternsGreedily(function, std::move(patterns), config);
}

} // namespace

FailureOr<func::FuncOp> mlir::qlr::buildGradientFunction(func::FuncOp function,
                                                         ArrayRef<unsigned> wrt,
                                                         StringRef name) {
  if (!function.getBody().hasOneBlock())
    return function.emitOpError("cannot be differentiated: qlr-differentiate "
                                "needs a function body with one block");
  FunctionType type = function.getFunctionType();
  for (unsigned index : wrt) {
    if (index >= type.getNumInputs())
      return function.emitOpError("has no argument #")
             << index << " to differentiate with respect to (it has "
             << type.getNumInputs() << ")";
    if (!isFloatTensor(type.getInput(index)))
      return function.emitOpError("cannot be differentiated with respect to "
                                  "argument #")
             << index << " of type " << type.getInput(index)
             << ": not a floating-point ranked tensor";
  }
  auto module = function->getParentOfType<ModuleOp>();
  if (module && SymbolTable::lookupSymbolIn(module, name))
    return function.emitOpError("cannot write its gradient as @")
           << name << ": the module already has a symbol of that name";

  OpBuilder builder(function);
  builder.setInsertionPointAfter(function);
  auto gradient = cast<func::FuncOp>(builder.clone(*function));
  gradient.setSymName(name);
  auto fail = [&]() -> FailureOr<func::FuncOp> {
    gradient->erase();
    return failure();
  };
  if (failed(normalize(gradient)))
    return fail();

  Block &block = gradient.getBody().front();
  Operation *terminator = block.getTerminator();
  SmallVector<Value> returned, cotangents;
  for (auto [i, value] : llvm::enumerate(terminator->getOperands())) {
    if (!isFloatTensor(value.getType()))
      continue;
    returned.push_back(value);
    cotangents.push_back(
        gradient.getBody().addArgument(type.getResult(i), function.getLoc()));
  }
  SmallVector<BlockArgument> wrtArgs;
  for (unsigned index : wrt)
    wrtArgs.push_back(block.getArgument(index));

  ReverseSweep sweep(gradient);
  if (failed(sweep.run(wrtArgs, returned, cotangents, terminator)))
    return fail();
  OpBuilder tail(terminator);
  SmallVector<Value> gradients;
  SmallVector<Type> resultTypes;
  for (BlockArgument arg : wrtArgs) {
    gradients.push_back(sweep.adjointOrZeros(arg));
    resultTypes.push_back(arg.getType());
  }
  func::ReturnOp::create(tail, terminator->getLoc(), gradients);
  terminator->erase();

  // The new signature: the original arguments, then the cotangents.
  SmallVector<Type> argTypes(block.getArgumentTypes());
  SmallVector<DictionaryAttr> argAttrs;
  function.getAllArgAttrs(argAttrs);
  argAttrs.resize(argTypes.size(), DictionaryAttr::get(function.getContext()));
  gradient.setType(
      FunctionType::get(function.getContext(), argTypes, resultTypes));
  gradient.setAllArgAttrs(argAttrs);
  gradient.removeResAttrsAttr();

  // The primal ops no result needs any more.
  SmallVector<Operation *> primal;
  for (Operation &op : block.without_terminator())
    primal.push_back(&op);
  for (Operation *op : llvm::reverse(primal))
    if (isOpTriviallyDead(op))
      op->erase();
  if (failed(verify(gradient)))
    return fail();
  return gradient;
}

namespace {
struct QLRDifferentiatePass
    : public mlir::qlr::impl::QLRDifferentiatePassBase<QLRDifferentiatePass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    FailureOr<func::FuncOp> target =
        lookupFunctionOption(module, getArgument(), function, "differentiate");
    if (failed(target))
      return signalPassFailure();
    SmallVector<unsigned> indices(wrt.begin(), wrt.end());
    if (indices.empty())
      for (auto [i, type] :
           llvm::enumerate(target->getFunctionType().getInputs()))
        if (isFloatTensor(type))
          indices.push_back(i);
    if (indices.empty()) {
      target->emitOpError("has no floating-point tensor argument to "
                          "differentiate with respect to");
      return signalPassFailure();
    }
    std::string gradientName =
        name.empty() ? (function + "_grad") : std::string(name);
    if (failed(buildGradientFunction(*target, indices, gradientName)))
      signalPassFailure();
  }
};
} // namespace
