//===- RaiseTransformer.cpp - Raise linalg layers to qlr ops ----*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// Recognises the layers of a transformer written in plain linalg/arith/math
// on tensors (as torch-mlir and ONNX frontends emit them) and rewrites them
// into qlr.linear, qlr.rms_norm and qlr.layer_norm.
//
// Linear layers are matched structurally on linalg.matmul and
// linalg.batch_matmul. Normalisations are matched as scalar expressions: a
// `Scalar` stands for one element of a tensor in the iteration space of the
// candidate output, and is looked through block arguments and element-wise
// producers, so that a layer is recognised whatever the grouping of its steps
// into element-wise ops. Products and sums are flattened into factors and
// terms, which makes the matchers independent of operand order and
// association.
//
//===----------------------------------------------------------------------===//

#include "qlr/Dialect/QLR/IR/QLR.h"
#include "qlr/Dialect/QLR/Transforms/Passes.h"

#include "WeightUtils.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/AffineMap.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/Matchers.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "mlir/Transforms/WalkPatternRewriteDriver.h"

#include "llvm/ADT/SetVector.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <optional>

namespace mlir::qlr {
#define GEN_PASS_DEF_QLRRAISETRANSFORMERPASS
#include "qlr/Dialect/QLR/Transforms/Passes.h.inc"
} // namespace mlir::qlr

using namespace mlir;
using namespace mlir::qlr;

/// Upper bound on the scalars one match may visit, so that long chains of
/// element-wise ops cannot make matching expensive.
static constexpr int kVisitBudget = 512;

/// Upper bound on the candidate inputs tried for one normalisation.
static constexpr unsigned kMaxCandidateInputs = 8;

/// Largest integer exponent of `math.powf` / `math.fpowi` that is expanded
/// into repeated factors.
static constexpr int64_t kMaxIntegerExponent = 4;

/// The element types of qlr's float tensors.
static bool isSupportedFloat(Type type) {
  return isa<Float32Type, Float16Type, BFloat16Type>(type);
}

/// A structured op on tensors whose loops are all parallel: each element of
/// a result written through the identity map is what its body yields.
static bool isElementwise(linalg::LinalgOp op) {
  return op.hasPureTensorSemantics() && op.isAllParallelLoops() &&
         op->getNumRegions() == 1 && !op->getRegion(0).empty();
}

/// The value of a floating-point scalar constant, looking through int-to-float
/// conversions and float extensions/truncations of constants.
static std::optional<double> getConstantScalar(Value value) {
  FloatAttr floatAttr;
  if (matchPattern(value, m_Constant(&floatAttr)))
    return floatAttr.getValueAsDouble();
  Operation *def = value.getDefiningOp();
  if (!def)
    return std::nullopt;
  if (isa<arith::SIToFPOp, arith::UIToFPOp>(def)) {
    IntegerAttr intAttr;
    if (!matchPattern(def->getOperand(0), m_Constant(&intAttr)) ||
        intAttr.getValue().getBitWidth() > 64)
      return std::nullopt;
    if (isa<arith::SIToFPOp>(def))
      return double(intAttr.getValue().getSExtValue());
    return double(intAttr.getValue().getZExtValue());
  }
  if (isa<arith::ExtFOp, arith::TruncFOp>(def)) {
    std::optional<double> inner = getConstantScalar(def->getOperand(0));
    auto type = dyn_cast<FloatType>(value.getType());
    if (!inner || !type)
      return std::nullopt;
    APFloat rounded(*inner);
    bool losesInfo;
    rounded.convert(type.getFloatSemantics(), APFloat::rmNearestTiesToEven,
                    &losesInfo);
    return rounded.convertToDouble();
  }
  return std::nullopt;
}

/// The shortest decimal (as a double) denoting the same value as `value` in
/// `type`: a frontend's `1e-5` comes back as 1e-5 rather than as the f32
/// value 9.99999974e-6.
static double getShortestDecimal(double value, FloatType type) {
  const llvm::fltSemantics &semantics = type.getFloatSemantics();
  auto round = [&](double v) {
    APFloat rounded(v);
    bool losesInfo;
    rounded.convert(semantics, APFloat::rmNearestTiesToEven, &losesInfo);
    return rounded;
  };
  APFloat target = round(value);
  for (int digits = 1; digits <= 17; ++digits) {
    char text[32];
    std::snprintf(text, sizeof(text), "%.*e", digits - 1, value);
    double candidate = std::strtod(text, nullptr);
    if (round(candidate).bitwiseIsEqual(target))
      return candidate;
  }
  return value;
}

/// The value of every element of a splat floating-point tensor constant.
static std::optional<double> getSplatConstant(Value tensor) {
  DenseFPElementsAttr attr;
  if (!matchPattern(tensor, m_Constant(&attr)) || !attr.isSplat())
    return std::nullopt;
  return attr.getSplatValue<APFloat>().convertToDouble();
}

//===----------------------------------------------------------------------===//
// Linear layers
//===----------------------------------------------------------------------===//

/// Whether `init` is `linalg.fill` of a floating-point zero into a
/// `tensor.empty`.
static bool isZeroFilledEmpty(Value init) {
  auto fill = init.getDefiningOp<linalg::FillOp>();
  if (!fill || !fill.hasPureTensorSemantics())
    return false;
  return matchPattern(fill.getInputs()[0], m_AnyZeroFloat()) &&
         fill.getOutputs()[0].getDefiningOp<tensor::EmptyOp>();
}

namespace {
/// The role of a dimension of a matrix-product operand.
enum class MatrixDim { Batch, N, K };
} // namespace

/// Looks for a matrix `w [N, K]` such that `b`, whose dimensions have the
/// roles `dims`, reads `w` transposed and broadcast along batch dimensions.
/// Follows structured ops that only move their single input's elements
/// (`linalg.transpose`, `linalg.broadcast`, and generics doing the same).
/// Returns a null value when there is none.
static Value findTransposedWeight(Value b, SmallVector<MatrixDim> dims) {
  for (int hops = 0; hops < 8; ++hops) {
    if (dims.size() == 2 && dims[0] == MatrixDim::N && dims[1] == MatrixDim::K)
      return b;
    auto op = b.getDefiningOp<linalg::LinalgOp>();
    if (!op || !isElementwise(op) || op.getNumDpsInputs() != 1 ||
        op.getNumDpsInits() != 1)
      return Value();
    OpOperand *input = op.getDpsInputOperand(0);
    if (!isa<RankedTensorType>(input->get().getType()))
      return Value();
    Block *body = op.getBlock();
    if (body->getTerminator()->getOperand(0) !=
        op.getMatchingBlockArgument(input))
      return Value();
    AffineMap inputMap = op.getMatchingIndexingMap(input);
    if (!op.getMatchingIndexingMap(op.getDpsInitOperand(0)).isIdentity() ||
        !inputMap.isProjectedPermutation(/*allowZeroInResults=*/false) ||
        inputMap.getNumDims() != dims.size())
      return Value();
    // A loop that does not index the input broadcasts it: only batch
    // dimensions may be broadcast.
    for (unsigned loop = 0, e = dims.size(); loop < e; ++loop)
      if (!inputMap.isFunctionOfDim(loop) && dims[loop] != MatrixDim::Batch)
        return Value();
    SmallVector<MatrixDim> inputDims;
    for (unsigned i = 0, e = inputMap.getNumResults(); i < e; ++i)
      inputDims.push_back(dims[inputMap.getDimPosition(i)]);
    dims = std::move(inputDims);
    b = input->get();
  }
  return Value();
}

/// Rewrites a (batch) matrix product `x·B` with `B = Wᵀ` into qlr.linear.
/// `batch` is the number of batch dimensions (0 or 1).
static LogicalResult raiseMatrixProduct(linalg::LinalgOp op, unsigned batch,
                                        PatternRewriter &rewriter) {
  if (!op.hasPureTensorSemantics() || op.getNumDpsInputs() != 2 ||
      op.getNumDpsInits() != 1 || op->getNumResults() != 1)
    return rewriter.notifyMatchFailure(op, "not a matrix product on tensors");
  Value x = op.getDpsInputOperand(0)->get();
  Value b = op.getDpsInputOperand(1)->get();
  Value init = op.getDpsInitOperand(0)->get();
  auto xType = dyn_cast<RankedTensorType>(x.getType());
  auto bType = dyn_cast<RankedTensorType>(b.getType());
  auto resultType = dyn_cast<RankedTensorType>(op->getResult(0).getType());
  if (!xType || !bType || !resultType)
    return rewriter.notifyMatchFailure(op, "operands are not ranked tensors");
  Type elementType = resultType.getElementType();
  if (!isSupportedFloat(elementType) || xType.getElementType() != elementType ||
      bType.getElementType() != elementType)
    return rewriter.notifyMatchFailure(
        op, "element types differ or are not f32/f16/bf16");

  // Loops: the batch dimensions, then m, n, k.
  MLIRContext *ctx = op->getContext();
  unsigned numLoops = batch + 3;
  SmallVector<AffineExpr> batchExprs;
  for (unsigned i = 0; i < batch; ++i)
    batchExprs.push_back(getAffineDimExpr(i, ctx));
  AffineExpr m = getAffineDimExpr(batch, ctx),
             n = getAffineDimExpr(batch + 1, ctx),
             k = getAffineDimExpr(batch + 2, ctx);
  auto mapOf = [&](AffineExpr first, AffineExpr second) {
    SmallVector<AffineExpr> exprs(batchExprs);
    exprs.push_back(first);
    exprs.push_back(second);
    return AffineMap::get(numLoops, 0, exprs, ctx);
  };
  SmallVector<AffineMap> maps = op.getIndexingMapsArray();
  if (maps.size() != 3 || maps[0] != mapOf(m, k) || maps[2] != mapOf(m, n))
    return rewriter.notifyMatchFailure(op, "not a plain x·B product");
  SmallVector<MatrixDim> bDims(batch, MatrixDim::Batch);
  if (maps[1] == mapOf(k, n))
    bDims.append({MatrixDim::K, MatrixDim::N});
  else if (maps[1] == mapOf(n, k))
    bDims.append({MatrixDim::N, MatrixDim::K});
  else
    return rewriter.notifyMatchFailure(op, "unsupported map of B");

  if (!isZeroFilledEmpty(init))
    return rewriter.notifyMatchFailure(op, "init is not a zero fill");
  Value weight = findTransposedWeight(b, bDims);
  if (!weight)
    return rewriter.notifyMatchFailure(op, "B is not a transposed weight");
  auto weightType = cast<RankedTensorType>(weight.getType());

  // The checks of qlr.linear's verifier.
  int64_t outFeatures = weightType.getDimSize(0);
  int64_t inFeatures = weightType.getDimSize(1);
  int64_t xFeatures = xType.getShape().back();
  if (!ShapedType::isDynamic(inFeatures) && !ShapedType::isDynamic(xFeatures) &&
      inFeatures != xFeatures)
    return rewriter.notifyMatchFailure(op, "feature counts differ");
  SmallVector<int64_t> shape(xType.getShape());
  shape.back() = outFeatures;
  if (RankedTensorType::get(shape, elementType) != resultType)
    return rewriter.notifyMatchFailure(op, "result type does not match");

  auto linear =
      rewriter.replaceOpWithNewOp<LinearOp>(op, resultType, x, weight, Value());
  nameAfterWeight(linear, weight);
  return success();
}

namespace {
/// linalg.matmul of x [M, K] by a transposed weight.
struct RaiseMatmul : public OpRewritePattern<linalg::MatmulOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(linalg::MatmulOp op,
                                PatternRewriter &rewriter) const override {
    return raiseMatrixProduct(op, /*batch=*/0, rewriter);
  }
};

/// linalg.batch_matmul of x [B, M, K] by a transposed weight broadcast along
/// the batch.
struct RaiseBatchMatmul : public OpRewritePattern<linalg::BatchMatmulOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(linalg::BatchMatmulOp op,
                                PatternRewriter &rewriter) const override {
    return raiseMatrixProduct(op, /*batch=*/1, rewriter);
  }
};
} // namespace

//===----------------------------------------------------------------------===//
// Scalar expressions
//===----------------------------------------------------------------------===//

namespace {
/// One element of a computation, in the iteration space of a candidate
/// output of rank `r` (dims d0 ... d{r-1}; the last is the feature dimension
/// that normalisations reduce). Either the element of `value`, a tensor, read
/// through `map` (output dims -> tensor indices), or `value`, a scalar SSA
/// value, in the body of the structured op `owner` whose loops are `map` of
/// the output dims. Scalars from outside any body have no owner.
struct Scalar {
  Value value;
  AffineMap map;
  Operation *owner = nullptr;
  bool isRead = false;

  static Scalar read(Value tensor, AffineMap map) {
    return {tensor, map, nullptr, true};
  }
  static Scalar inBody(Value value, AffineMap map, Operation *owner) {
    return {value, map, owner, false};
  }
  /// Operand `index` of the op defining this (body) scalar.
  Scalar operand(unsigned index) const {
    return inBody(value.getDefiningOp()->getOperand(index), map, owner);
  }
  bool isOpResult() const { return !isRead && value.getDefiningOp(); }
};
} // namespace

/// Looks through one level: a block argument of a structured op's body
/// becomes the element of the matching operand; the element of a result of
/// an element-wise structured op becomes the scalar its body yields.
static std::optional<Scalar> step(const Scalar &s) {
  if (s.isRead) {
    auto result = dyn_cast<OpResult>(s.value);
    if (!result)
      return std::nullopt;
    auto op = dyn_cast<linalg::LinalgOp>(result.getOwner());
    if (!op || !isElementwise(op) || op.getNumLoops() != s.map.getNumResults())
      return std::nullopt;
    OpOperand *init = op.getDpsInitOperand(result.getResultNumber());
    if (!op.getMatchingIndexingMap(init).isIdentity())
      return std::nullopt;
    Value yielded =
        op.getBlock()->getTerminator()->getOperand(result.getResultNumber());
    return Scalar::inBody(yielded, s.map, op);
  }
  auto arg = dyn_cast<BlockArgument>(s.value);
  auto op = dyn_cast_or_null<linalg::LinalgOp>(s.owner);
  if (!arg || !op || arg.getOwner() != op.getBlock() ||
      arg.getArgNumber() >= op->getNumOperands())
    return std::nullopt;
  OpOperand *operand = op.getMatchingOpOperand(arg);
  Value value = operand->get();
  if (!isa<RankedTensorType>(value.getType()))
    return Scalar::inBody(value, AffineMap(), nullptr);
  AffineMap operandMap = op.getMatchingIndexingMap(operand);
  if (operandMap.getNumDims() != s.map.getNumResults())
    return std::nullopt;
  return Scalar::read(value, operandMap.compose(s.map));
}

/// If `s` is the element of a sum over the feature dimension of an output of
/// rank `rank`, returns the summand, in that output's iteration space. The
/// sum is a structured op whose loops are the output's (the last one a
/// reduction), whose init is zero and whose body adds the summand to the
/// accumulator; `s` reads it through the op's output map: the output's rows,
/// with or without the reduced unit dimension (`(d0, d1) -> (d0)` or
/// `(d0, d1) -> (d0, 0)`).
static std::optional<Scalar> getSummand(const Scalar &s, int64_t rank) {
  if (!s.isRead || s.map.getNumDims() != rank)
    return std::nullopt;
  auto result = dyn_cast<OpResult>(s.value);
  if (!result)
    return std::nullopt;
  auto op = dyn_cast<linalg::LinalgOp>(result.getOwner());
  if (!op || !op.hasPureTensorSemantics() || op.getNumDpsInits() != 1 ||
      op.getNumLoops() != rank || op->getNumRegions() != 1 ||
      op->getRegion(0).empty())
    return std::nullopt;
  SmallVector<utils::IteratorType> iterators = op.getIteratorTypesArray();
  for (int64_t loop = 0; loop < rank; ++loop)
    if (iterators[loop] != (loop == rank - 1 ? utils::IteratorType::reduction
                                             : utils::IteratorType::parallel))
      return std::nullopt;
  OpOperand *init = op.getDpsInitOperand(0);
  AffineMap outputMap = op.getMatchingIndexingMap(init);
  if (outputMap != s.map)
    return std::nullopt;
  int64_t nextRow = 0;
  for (AffineExpr expr : outputMap.getResults()) {
    if (auto dim = dyn_cast<AffineDimExpr>(expr)) {
      if (dim.getPosition() != nextRow++)
        return std::nullopt;
      continue;
    }
    auto constant = dyn_cast<AffineConstantExpr>(expr);
    if (!constant || constant.getValue() != 0)
      return std::nullopt;
  }
  if (nextRow != rank - 1)
    return std::nullopt;

  Block *body = op.getBlock();
  BlockArgument acc = op.getRegionOutputArgs()[0];
  auto add =
      body->getTerminator()->getOperand(0).getDefiningOp<arith::AddFOp>();
  if (!add || add->getBlock() != body || !acc.hasOneUse())
    return std::nullopt;
  Value summand;
  if (add.getLhs() == acc)
    summand = add.getRhs();
  else if (add.getRhs() == acc)
    summand = add.getLhs();
  else
    return std::nullopt;

  // The accumulator starts at zero.
  std::optional<Scalar> initElement = Scalar::read(init->get(), outputMap);
  std::optional<double> initValue;
  for (int hops = 0; initElement && hops < 8 && !initValue; ++hops) {
    initValue = initElement->isRead ? getSplatConstant(initElement->value)
                                    : getConstantScalar(initElement->value);
    initElement = step(*initElement);
  }
  if (!initValue || *initValue != 0.0)
    return std::nullopt;
  return Scalar::inBody(
      summand, AffineMap::getMultiDimIdentityMap(rank, op->getContext()), op);
}

namespace {
/// What a scalar turns out to be once looked through.
struct Leaf {
  enum class Kind {
    /// A floating-point constant.
    Constant,
    /// The input `x` of the layer, read through the identity map.
    Input,
    /// A 1-D tensor of one element per feature, read through
    /// `(..., c) -> (c)`: a weight or bias.
    Param,
    /// A sum over the feature dimension.
    Sum,
    /// The result of an op in a body (or outside of one).
    Op,
    /// Anything else.
    Opaque
  };
  Kind kind = Kind::Opaque;
  /// The scalar where classification stopped.
  Scalar at;
  double constant = 0.0;
  Value param;
  std::optional<Scalar> summand;
};

/// A leaf of a flattened product with its (integer) exponent.
struct Factor {
  Leaf leaf;
  int64_t exponent;
};

/// Takes apart the scalar expressions computing an output of type
/// `outputType` from an input `x` (a tensor of that type read through the
/// identity map), and matches them against the pieces of a layer. Every
/// query spends from one budget; once it is spent, scalars classify as
/// opaque and nothing more matches.
class ExprMatcher {
public:
  ExprMatcher(RankedTensorType outputType, Value x)
      : rank(outputType.getRank()), channels(outputType.getShape().back()),
        elementType(outputType.getElementType()), x(x) {
    int precision = APFloat::semanticsPrecision(
        cast<FloatType>(elementType).getFloatSemantics());
    tolerance = std::ldexp(1.0, 1 - precision);
  }

  /// Classifies `s`, looking through block arguments and element-wise
  /// producers until it is a constant, the input, a parameter, a sum or an
  /// op result.
  Leaf classify(Scalar s) {
    Leaf leaf;
    while (spend()) {
      leaf.at = s;
      // The input and the parameters first: they may be splat constants.
      if (isInput(s)) {
        leaf.kind = Leaf::Kind::Input;
        return leaf;
      }
      if (Value param = getParam(s)) {
        leaf.kind = Leaf::Kind::Param;
        leaf.param = param;
        return leaf;
      }
      std::optional<double> constant =
          s.isRead ? getSplatConstant(s.value) : getConstantScalar(s.value);
      if (constant) {
        leaf.kind = Leaf::Kind::Constant;
        leaf.constant = *constant;
        return leaf;
      }
      if ((leaf.summand = getSummand(s, rank))) {
        leaf.kind = Leaf::Kind::Sum;
        return leaf;
      }
      if (s.isOpResult()) {
        leaf.kind = Leaf::Kind::Op;
        return leaf;
      }
      std::optional<Scalar> next = step(s);
      if (!next)
        break;
      s = *next;
    }
    leaf.kind = Leaf::Kind::Opaque;
    return leaf;
  }

  /// Flattens the product `s` raised to `exponent` into `factors` and the
  /// product of its constants (multiplied into `constant`). Products,
  /// quotients, negations and integer powers are expanded.
  void flattenProduct(const Scalar &s, int64_t exponent,
                      SmallVectorImpl<Factor> &factors, double &constant) {
    Leaf leaf = classify(s);
    if (leaf.kind == Leaf::Kind::Constant) {
      constant *= std::pow(leaf.constant, double(exponent));
      return;
    }
    Operation *op =
        leaf.kind == Leaf::Kind::Op ? leaf.at.value.getDefiningOp() : nullptr;
    if (isa_and_nonnull<arith::MulFOp, arith::DivFOp>(op)) {
      flattenProduct(leaf.at.operand(0), exponent, factors, constant);
      flattenProduct(leaf.at.operand(1),
                     isa<arith::DivFOp>(op) ? -exponent : exponent, factors,
                     constant);
      return;
    }
    if (isa_and_nonnull<arith::NegFOp>(op)) {
      if (exponent % 2 != 0)
        constant = -constant;
      flattenProduct(leaf.at.operand(0), exponent, factors, constant);
      return;
    }
    if (std::optional<int64_t> power = getIntegerPower(leaf)) {
      flattenProduct(leaf.at.operand(0), exponent * *power, factors, constant);
      return;
    }
    factors.push_back({leaf, exponent});
  }

  /// Flattens the sum `s` into `terms` and the sum of its constants (added
  /// to `constant`). Only additions are expanded.
  void flattenSum(const Scalar &s, SmallVectorImpl<Leaf> &terms,
                  double &constant) {
    Leaf leaf = classify(s);
    if (leaf.kind == Leaf::Kind::Constant) {
      constant += leaf.constant;
      return;
    }
    if (leaf.kind == Leaf::Kind::Op &&
        isa<arith::AddFOp>(leaf.at.value.getDefiningOp())) {
      flattenSum(leaf.at.operand(0), terms, constant);
      flattenSum(leaf.at.operand(1), terms, constant);
      return;
    }
    terms.push_back(leaf);
  }

  /// Whether `s` is the mean over the features of a summand: a sum times
  /// constants whose product is 1/C (constants inside the sum count too),
  /// where the other factors of the summand satisfy `isSummand`.
  bool isMean(const Scalar &s, function_ref<bool(ArrayRef<Factor>)> isSummand) {
    SmallVector<Factor> outer;
    double scale = 1.0;
    flattenProduct(s, 1, outer, scale);
    if (outer.size() != 1 || outer[0].leaf.kind != Leaf::Kind::Sum ||
        outer[0].exponent != 1)
      return false;
    SmallVector<Factor> inner;
    flattenProduct(*outer[0].leaf.summand, 1, inner, scale);
    return isClose(scale * double(channels), 1.0) && isSummand(inner);
  }

  /// `mean(x)`.
  bool isMeanOfInput(const Scalar &s) {
    return isMean(s, [&](ArrayRef<Factor> factors) {
      return factors.size() == 1 && factors[0].leaf.kind == Leaf::Kind::Input &&
             factors[0].exponent == 1;
    });
  }

  /// `x - mean(x)`.
  bool isCentered(const Leaf &leaf) {
    if (leaf.kind != Leaf::Kind::Op ||
        !isa<arith::SubFOp>(leaf.at.value.getDefiningOp()))
      return false;
    return classify(leaf.at.operand(0)).kind == Leaf::Kind::Input &&
           isMeanOfInput(leaf.at.operand(1));
  }

  /// `mean(x²)`.
  bool isMeanSquare(const Scalar &s) {
    return isMean(s, [&](ArrayRef<Factor> factors) {
      int64_t power = 0;
      for (const Factor &factor : factors) {
        if (factor.leaf.kind != Leaf::Kind::Input)
          return false;
        power += factor.exponent;
      }
      return !factors.empty() && power == 2;
    });
  }

  /// `mean((x - mean(x))²)`, the biased variance.
  bool isVariance(const Scalar &s) {
    return isMean(s, [&](ArrayRef<Factor> factors) {
      int64_t power = 0;
      for (const Factor &factor : factors) {
        if (!isCentered(factor.leaf))
          return false;
        power += factor.exponent;
      }
      return !factors.empty() && power == 2;
    });
  }

  /// If `factor` is `rsqrt(v + eps)` (or `1 / sqrt(v + eps)`, or
  /// `(v + eps)^-0.5`) with `isStatistic(v)` and a constant `eps`, returns
  /// `eps`.
  std::optional<double>
  getInverseStdEpsilon(const Factor &factor,
                       function_ref<bool(const Scalar &)> isStatistic) {
    if (factor.leaf.kind != Leaf::Kind::Op)
      return std::nullopt;
    Operation *op = factor.leaf.at.value.getDefiningOp();
    bool isInverse = false;
    if (isa<math::RsqrtOp>(op))
      isInverse = factor.exponent == 1;
    else if (isa<math::SqrtOp>(op))
      isInverse = factor.exponent == -1;
    else if (isa<math::PowFOp>(op)) {
      std::optional<double> power = getConstant(factor.leaf.at.operand(1));
      isInverse = power && *power * double(factor.exponent) == -0.5;
    }
    if (!isInverse)
      return std::nullopt;
    SmallVector<Leaf> terms;
    double epsilon = 0.0;
    flattenSum(factor.leaf.at.operand(0), terms, epsilon);
    if (terms.size() != 1 || !isStatistic(terms[0].at) ||
        !std::isfinite(epsilon) || epsilon < 0.0)
      return std::nullopt;
    return epsilon;
  }

  /// Whether `value` is within the element type's precision of `expected`.
  bool isClose(double value, double expected) const {
    return std::abs(value - expected) <= tolerance * std::abs(expected);
  }

private:
  bool spend() { return --budget >= 0; }

  bool isInput(const Scalar &s) const {
    return x && s.isRead && s.value == x && s.map.getNumDims() == rank &&
           s.map.isIdentity();
  }

  /// The 1-D tensor of `channels` elements `s` reads through `(..., c) ->
  /// (c)`, if it does.
  Value getParam(const Scalar &s) const {
    if (!s.isRead || s.value == x || s.map.getNumDims() != rank ||
        s.map.getNumResults() != 1 ||
        s.map.getResult(0) != getAffineDimExpr(rank - 1, s.map.getContext()))
      return Value();
    auto type = dyn_cast<RankedTensorType>(s.value.getType());
    if (!type || type.getRank() != 1 || type.getElementType() != elementType ||
        type.getDimSize(0) != channels)
      return Value();
    return s.value;
  }

  /// The constant value of `s`, looking through it.
  std::optional<double> getConstant(const Scalar &s) {
    Leaf leaf = classify(s);
    if (leaf.kind != Leaf::Kind::Constant)
      return std::nullopt;
    return leaf.constant;
  }

  /// If `leaf` is `powf(a, n)` or `fpowi(a, n)` for a small non-zero integer
  /// constant `n`, returns `n`.
  std::optional<int64_t> getIntegerPower(const Leaf &leaf) {
    if (leaf.kind != Leaf::Kind::Op)
      return std::nullopt;
    Operation *op = leaf.at.value.getDefiningOp();
    std::optional<double> power;
    if (isa<math::PowFOp>(op)) {
      power = getConstant(leaf.at.operand(1));
    } else if (isa<math::FPowIOp>(op)) {
      IntegerAttr attr;
      if (matchPattern(op->getOperand(1), m_Constant(&attr)) &&
          attr.getValue().getBitWidth() <= 64)
        power = double(attr.getValue().getSExtValue());
    }
    if (!power || *power != std::trunc(*power) || *power == 0.0 ||
        std::abs(*power) > double(kMaxIntegerExponent))
      return std::nullopt;
    return int64_t(*power);
  }

  int64_t rank;
  int64_t channels;
  Type elementType;
  Value x;
  double tolerance;
  int budget = kVisitBudget;
};
} // namespace

/// Collects, nearest first, the summands of the sums over the feature
/// dimension that `s` depends on, and the tensors of type `inputType` read
/// through the identity map anywhere below those sums: the candidate inputs
/// of a normalisation producing `s`.
static void collectCandidateInputs(const Scalar &s, RankedTensorType inputType,
                                   bool belowSum,
                                   llvm::SetVector<Operation *> &sums,
                                   llvm::SetVector<Value> &inputs,
                                   int &budget) {
  int64_t rank = inputType.getRank();
  for (Scalar cur = s; --budget >= 0;) {
    if (belowSum && cur.isRead && cur.value.getType() == inputType &&
        cur.map.getNumDims() == rank && cur.map.isIdentity())
      inputs.insert(cur.value);
    if (std::optional<Scalar> summand = getSummand(cur, rank)) {
      if (sums.insert(summand->owner))
        collectCandidateInputs(*summand, inputType, /*belowSum=*/true, sums,
                               inputs, budget);
      return;
    }
    if (cur.isOpResult()) {
      Operation *op = cur.value.getDefiningOp();
      for (unsigned i = 0, e = op->getNumOperands(); i < e; ++i)
        collectCandidateInputs(cur.operand(i), inputType, belowSum, sums,
                               inputs, budget);
      return;
    }
    std::optional<Scalar> next = step(cur);
    if (!next)
      return;
    cur = *next;
  }
}

//===----------------------------------------------------------------------===//
// Normalisation layers
//===----------------------------------------------------------------------===//

namespace {
/// The operands of a recognised normalisation.
struct NormMatch {
  Value input;
  Value weight;
  Value bias; // Null for RMSNorm.
  double epsilon;
};
} // namespace

/// `y = x * rsqrt(mean(x²) + eps) * w`.
static std::optional<NormMatch> matchRMSNorm(ExprMatcher &m, const Scalar &y,
                                             Value x) {
  SmallVector<Factor> factors;
  double scale = 1.0;
  m.flattenProduct(y, 1, factors, scale);
  if (!m.isClose(scale, 1.0))
    return std::nullopt;
  NormMatch match{x, Value(), Value(), 0.0};
  bool seenInput = false, seenInverseStd = false;
  for (const Factor &factor : factors) {
    if (!seenInput && factor.leaf.kind == Leaf::Kind::Input &&
        factor.exponent == 1) {
      seenInput = true;
      continue;
    }
    if (!match.weight && factor.leaf.kind == Leaf::Kind::Param &&
        factor.exponent == 1) {
      match.weight = factor.leaf.param;
      continue;
    }
    if (!seenInverseStd) {
      if (std::optional<double> epsilon = m.getInverseStdEpsilon(
              factor, [&](const Scalar &v) { return m.isMeanSquare(v); })) {
        seenInverseStd = true;
        match.epsilon = *epsilon;
        continue;
      }
    }
    return std::nullopt;
  }
  if (!seenInput || !match.weight || !seenInverseStd)
    return std::nullopt;
  return match;
}

/// `y = (x - mean(x)) * rsqrt(var(x) + eps) * w + b`.
static std::optional<NormMatch> matchLayerNorm(ExprMatcher &m, const Scalar &y,
                                               Value x) {
  SmallVector<Leaf> terms;
  double offset = 0.0;
  m.flattenSum(y, terms, offset);
  if (offset != 0.0 || terms.size() != 2)
    return std::nullopt;
  NormMatch match{x, Value(), Value(), 0.0};
  const Leaf *scaled = nullptr;
  for (const Leaf &term : terms) {
    if (!match.bias && term.kind == Leaf::Kind::Param)
      match.bias = term.param;
    else
      scaled = &term;
  }
  if (!match.bias || !scaled)
    return std::nullopt;

  SmallVector<Factor> factors;
  double scale = 1.0;
  m.flattenProduct(scaled->at, 1, factors, scale);
  if (!m.isClose(scale, 1.0))
    return std::nullopt;
  bool seenCentered = false, seenInverseStd = false;
  for (const Factor &factor : factors) {
    if (!match.weight && factor.leaf.kind == Leaf::Kind::Param &&
        factor.exponent == 1) {
      match.weight = factor.leaf.param;
      continue;
    }
    if (!seenCentered && factor.exponent == 1 && m.isCentered(factor.leaf)) {
      seenCentered = true;
      continue;
    }
    if (!seenInverseStd) {
      if (std::optional<double> epsilon = m.getInverseStdEpsilon(
              factor, [&](const Scalar &v) { return m.isVariance(v); })) {
        seenInverseStd = true;
        match.epsilon = *epsilon;
        continue;
      }
    }
    return std::nullopt;
  }
  if (!match.weight || !seenCentered || !seenInverseStd)
    return std::nullopt;
  return match;
}

/// If `op` is element-wise with one result, written through the identity
/// map, of a float type with a static feature dimension, returns that type.
static RankedTensorType getElementwiseResultType(linalg::LinalgOp op) {
  if (!isElementwise(op) || op->getNumResults() != 1 ||
      !op.getMatchingIndexingMap(op.getDpsInitOperand(0)).isIdentity())
    return nullptr;
  auto type = dyn_cast<RankedTensorType>(op->getResult(0).getType());
  if (!type || type.getRank() < 1 || !isSupportedFloat(type.getElementType()) ||
      ShapedType::isDynamic(type.getShape().back()))
    return nullptr;
  return type;
}

/// The scalar an element-wise op yields, in its own iteration space.
static Scalar getYielded(linalg::LinalgOp op) {
  return Scalar::inBody(
      op.getBlock()->getTerminator()->getOperand(0),
      AffineMap::getMultiDimIdentityMap(op.getNumLoops(), op->getContext()),
      op);
}

/// Matches the normalisation, if any, whose last element-wise op is `op`.
/// With `layerNormOnly`, only LayerNorm is tried.
static std::optional<NormMatch> matchNorm(linalg::LinalgOp op,
                                          bool layerNormOnly = false) {
  RankedTensorType type = getElementwiseResultType(op);
  if (!type)
    return std::nullopt;
  Scalar y = getYielded(op);
  llvm::SetVector<Operation *> sums;
  llvm::SetVector<Value> inputs;
  int budget = kVisitBudget;
  collectCandidateInputs(y, type, /*belowSum=*/false, sums, inputs, budget);
  for (Value x : inputs.getArrayRef().take_front(kMaxCandidateInputs)) {
    if (!layerNormOnly) {
      ExprMatcher matcher(type, x);
      if (std::optional<NormMatch> match = matchRMSNorm(matcher, y, x))
        return match;
    }
    ExprMatcher matcher(type, x);
    if (std::optional<NormMatch> match = matchLayerNorm(matcher, y, x))
      return match;
  }
  return std::nullopt;
}

/// Whether the result of `op` feeds, through at most `depth` single uses, the
/// last op of a LayerNorm: `(x - mean) * rsqrt(var + eps) * w` is, on its
/// own, an RMSNorm of `x - mean`, which must not be raised before the bias
/// addition that completes the LayerNorm is seen.
static bool feedsLayerNorm(Operation *op, int depth = 2) {
  for (; depth > 0; --depth) {
    if (op->getNumResults() != 1 || !op->getResult(0).hasOneUse())
      return false;
    op = *op->getResult(0).getUsers().begin();
    auto user = dyn_cast<linalg::LinalgOp>(op);
    if (user && matchNorm(user, /*layerNormOnly=*/true))
      return true;
  }
  return false;
}

namespace {
/// The last element-wise op of an RMSNorm or LayerNorm computation.
struct RaiseNorm : public OpInterfaceRewritePattern<linalg::LinalgOp> {
  using OpInterfaceRewritePattern::OpInterfaceRewritePattern;

  LogicalResult matchAndRewrite(linalg::LinalgOp op,
                                PatternRewriter &rewriter) const override {
    std::optional<NormMatch> match = matchNorm(op);
    if (!match)
      return rewriter.notifyMatchFailure(op, "no normalisation recognised");
    if (!match->bias && feedsLayerNorm(op))
      return rewriter.notifyMatchFailure(op, "part of a LayerNorm");
    auto elementType = cast<FloatType>(
        cast<ShapedType>(op->getResult(0).getType()).getElementType());
    FloatAttr epsilon = rewriter.getF64FloatAttr(
        getShortestDecimal(match->epsilon, elementType));
    Operation *norm;
    if (match->bias)
      norm = rewriter.replaceOpWithNewOp<LayerNormOp>(
          op, match->input, match->weight, match->bias, epsilon);
    else
      norm = rewriter.replaceOpWithNewOp<RMSNormOp>(op, match->input,
                                                    match->weight, epsilon);
    nameAfterWeight(norm, match->weight);
    return success();
  }
};

/// `linear(x, w) + b` with `b [N]` broadcast along the rows becomes
/// `linear(x, w, b)`.
struct FoldBiasIntoLinear : public OpInterfaceRewritePattern<linalg::LinalgOp> {
  using OpInterfaceRewritePattern::OpInterfaceRewritePattern;

  LogicalResult matchAndRewrite(linalg::LinalgOp op,
                                PatternRewriter &rewriter) const override {
    RankedTensorType type = getElementwiseResultType(op);
    if (!type)
      return rewriter.notifyMatchFailure(op, "not a float element-wise op");
    Scalar y = getYielded(op);
    for (OpOperand *operand : op.getDpsInputOperands()) {
      auto linear = operand->get().getDefiningOp<LinearOp>();
      if (!linear || linear.getBias() || linear.getType() != type ||
          !linear->hasOneUse())
        continue;
      ExprMatcher matcher(type, linear.getResult());
      SmallVector<Leaf> terms;
      double offset = 0.0;
      matcher.flattenSum(y, terms, offset);
      if (offset != 0.0 || terms.size() != 2)
        continue;
      Value bias;
      bool seenLinear = false;
      for (const Leaf &term : terms) {
        if (term.kind == Leaf::Kind::Input)
          seenLinear = true;
        else if (term.kind == Leaf::Kind::Param)
          bias = term.param;
      }
      if (!seenLinear || !bias)
        continue;
      auto withBias = rewriter.replaceOpWithNewOp<LinearOp>(
          op, type, linear.getInput(), linear.getWeight(), bias);
      withBias->setDiscardableAttrs(linear->getDiscardableAttrDictionary());
      return success();
    }
    return rewriter.notifyMatchFailure(op, "not a bias addition");
  }
};

/// Collects the producers of the operands of every erased op (and of the ops
/// nested in it): the ops that may have become dead through a rewrite.
struct DeadProducerTracker : public RewriterBase::Listener {
  void notifyOperationErased(Operation *op) override {
    candidates.remove(op);
    for (Value operand : op->getOperands())
      if (Operation *producer = operand.getDefiningOp())
        candidates.insert(producer);
  }

  llvm::SetVector<Operation *> candidates;
};

struct QLRRaiseTransformerPass
    : public mlir::qlr::impl::QLRRaiseTransformerPassBase<
          QLRRaiseTransformerPass> {
  using Base::Base;

  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    if (linears)
      populateRaiseLinearPatterns(patterns);
    if (norms)
      populateRaiseNormPatterns(patterns);
    // One walk in program order suffices: a layer's producers come before
    // the op that roots it, and a bias addition after the product it adds
    // to. Unlike the greedy driver, the walk neither folds nor erases the
    // surrounding IR; only the ops that raising left unused are erased.
    DeadProducerTracker tracker;
    walkAndApplyPatterns(getOperation(), std::move(patterns), &tracker);
    IRRewriter rewriter(&getContext());
    rewriter.setListener(&tracker);
    while (!tracker.candidates.empty()) {
      Operation *op = tracker.candidates.pop_back_val();
      if (isOpTriviallyDead(op))
        rewriter.eraseOp(op);
    }
  }
};
} // namespace

void mlir::qlr::populateRaiseLinearPatterns(RewritePatternSet &patterns) {
  patterns.add<FoldBiasIntoLinear, RaiseBatchMatmul, RaiseMatmul>(
      patterns.getContext());
}

void mlir::qlr::populateRaiseNormPatterns(RewritePatternSet &patterns) {
  patterns.add<RaiseNorm>(patterns.getContext());
}

void mlir::qlr::populateRaiseTransformerPatterns(RewritePatternSet &patterns) {
  populateRaiseLinearPatterns(patterns);
  populateRaiseNormPatterns(patterns);
}
