//===- QLRToLinalg.cpp - Lower qlr ops to linalg on tensors -----*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// Lowers every qlr op to linalg/tensor/arith/math on tensors. Arithmetic of
// the normalisations happens in f32 whatever the element type; contractions
// accumulate in the element type of the result.
//
//===----------------------------------------------------------------------===//

#include "qlr/Conversion/Passes.h"
#include "qlr/Dialect/QLR/IR/QLR.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/AffineMap.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mlir::qlr {
#define GEN_PASS_DEF_QLRLOWERTOLINALGPASS
#include "qlr/Conversion/Passes.h.inc"
} // namespace mlir::qlr

using namespace mlir;
using namespace mlir::qlr;

//===----------------------------------------------------------------------===//
// Builders
//===----------------------------------------------------------------------===//

static Value castFloat(OpBuilder &b, Location loc, Value value, Type type) {
  Type from = value.getType();
  if (from == type)
    return value;
  if (from.getIntOrFloatBitWidth() < type.getIntOrFloatBitWidth())
    return arith::ExtFOp::create(b, loc, type, value);
  return arith::TruncFOp::create(b, loc, type, value);
}

/// An empty tensor shaped like `like` with its last dimension replaced by
/// `last` (when given) and element type `elementType`.
static Value emptyLike(OpBuilder &b, Location loc, Value like, Type elementType,
                       std::optional<int64_t> last = std::nullopt) {
  auto type = cast<RankedTensorType>(like.getType());
  SmallVector<OpFoldResult> sizes;
  for (int64_t dim = 0, rank = type.getRank(); dim < rank; ++dim) {
    if (last && dim == rank - 1)
      sizes.push_back(b.getIndexAttr(*last));
    else if (type.isDynamicDim(dim))
      sizes.push_back(tensor::DimOp::create(b, loc, like, dim).getResult());
    else
      sizes.push_back(b.getIndexAttr(type.getDimSize(dim)));
  }
  return tensor::EmptyOp::create(b, loc, sizes, elementType);
}

static Value zeroFilled(OpBuilder &b, Location loc, Value empty) {
  Type elementType = cast<RankedTensorType>(empty.getType()).getElementType();
  Value zero = arith::ConstantOp::create(b, loc, b.getZeroAttr(elementType));
  return linalg::FillOp::create(b, loc, zero, empty).getResult(0);
}

static SmallVector<utils::IteratorType> parallelThen(int64_t parallel,
                                                     int64_t reductions) {
  SmallVector<utils::IteratorType> types(parallel,
                                         utils::IteratorType::parallel);
  types.append(reductions, utils::IteratorType::reduction);
  return types;
}

/// y[..., n] = sum_k x[..., k] * w[n, k] for a float weight `w` [N, K].
static Value buildContraction(OpBuilder &b, Location loc, Value x, Value w) {
  auto xType = cast<RankedTensorType>(x.getType());
  auto wType = cast<RankedTensorType>(w.getType());
  int64_t batch = xType.getRank() - 1;
  MLIRContext *ctx = b.getContext();
  // Loops: the batch dims of x, then n, then k.
  int64_t numLoops = batch + 2;
  AffineExpr n = getAffineDimExpr(batch, ctx),
             k = getAffineDimExpr(batch + 1, ctx);
  SmallVector<AffineExpr> batchDims;
  for (int64_t i = 0; i < batch; ++i)
    batchDims.push_back(getAffineDimExpr(i, ctx));
  SmallVector<AffineExpr> xExprs(batchDims), yExprs(batchDims);
  xExprs.push_back(k);
  yExprs.push_back(n);
  SmallVector<AffineMap> maps = {AffineMap::get(numLoops, 0, xExprs, ctx),
                                 AffineMap::get(numLoops, 0, {n, k}, ctx),
                                 AffineMap::get(numLoops, 0, yExprs, ctx)};
  Type elementType = xType.getElementType();
  Value init = zeroFilled(
      b, loc, emptyLike(b, loc, x, elementType, wType.getDimSize(0)));
  auto generic = linalg::GenericOp::create(
      b, loc, init.getType(), ValueRange{x, w}, ValueRange{init}, maps,
      parallelThen(batch + 1, 1),
      [&](OpBuilder &nb, Location nloc, ValueRange args) {
        // Reassociation lets the reduction over k be vectorised; contraction
        // allows fused multiply-adds.
        auto fm = arith::FastMathFlagsAttr::get(
            nb.getContext(),
            arith::FastMathFlags::reassoc | arith::FastMathFlags::contract);
        Value product = arith::MulFOp::create(nb, nloc, args[0], args[1], fm);
        Value sum = arith::AddFOp::create(nb, nloc, args[2], product, fm);
        linalg::YieldOp::create(nb, nloc, sum);
      });
  generic->setAttr(kContractionAttrName, b.getUnitAttr());
  return generic.getResult(0);
}

/// Element-wise `lhs + rhs` where `rhs` is indexed by the last dim of `lhs`
/// (bias) or has the same shape (`sameShape`).
static Value buildAdd(OpBuilder &b, Location loc, Value lhs, Value rhs,
                      bool sameShape) {
  auto type = cast<RankedTensorType>(lhs.getType());
  int64_t rank = type.getRank();
  MLIRContext *ctx = b.getContext();
  AffineMap identity = AffineMap::getMultiDimIdentityMap(rank, ctx);
  AffineMap rhsMap =
      sameShape ? identity
                : AffineMap::get(rank, 0, getAffineDimExpr(rank - 1, ctx));
  Value init = emptyLike(b, loc, lhs, type.getElementType());
  return linalg::GenericOp::create(
             b, loc, type, ValueRange{lhs, rhs}, ValueRange{init},
             SmallVector<AffineMap>{identity, rhsMap, identity},
             parallelThen(rank, 0),
             [&](OpBuilder &nb, Location nloc, ValueRange args) {
               linalg::YieldOp::create(
                   nb, nloc,
                   arith::AddFOp::create(nb, nloc, args[0], args[1])
                       .getResult());
             })
      .getResult(0);
}

/// The map from the elements of a quantized tensor of `rank` to its scales.
static AffineMap getScaleMap(FormatAttr format, int64_t rank,
                             MLIRContext *ctx) {
  switch (format.getGranularity()) {
  case Granularity::Tensor:
    return AffineMap::get(rank, 0, {}, ctx);
  case Granularity::Channel:
    return AffineMap::get(rank, 0,
                          getAffineDimExpr(format.resolveAxis(rank), ctx));
  case Granularity::Group: {
    int64_t axis = format.resolveAxis(rank);
    SmallVector<AffineExpr> exprs;
    for (int64_t dim = 0; dim < rank; ++dim) {
      AffineExpr expr = getAffineDimExpr(dim, ctx);
      exprs.push_back(dim == axis ? expr.floorDiv(format.getGroupSize())
                                  : expr);
    }
    return AffineMap::get(rank, 0, exprs, ctx);
  }
  }
  llvm_unreachable("unknown granularity");
}

/// Decodes the quantized tensor built by `pack` into a float tensor,
/// following the packed layout and decoding rules of docs/Design.md.
static FailureOr<Value> buildDequantize(OpBuilder &b, Location loc,
                                        PackOp pack) {
  auto type = cast<QTensorType>(pack.getType());
  if (!type.hasStaticShape())
    return pack.emitOpError("lowering needs a static shape, got ") << type;
  FormatAttr format = type.getFormat();
  MLIRContext *ctx = b.getContext();
  int64_t rank = type.getRank();
  unsigned bits = format.getBits();
  int64_t rowBytes = type.getCodesType().getShape().back();
  Type f32 = b.getF32Type(), i32 = b.getI32Type();
  Type elementType = type.getElementType();

  Value table;
  if (format.isCodebook()) {
    SmallVector<float> codebook = format.getCodebook();
    auto tableType = RankedTensorType::get({int64_t(codebook.size())}, f32);
    table = arith::ConstantOp::create(
        b, loc, DenseElementsAttr::get(tableType, ArrayRef<float>(codebook)));
  }

  AffineMap identity = AffineMap::getMultiDimIdentityMap(rank, ctx);
  AffineMap scaleMap = getScaleMap(format, rank, ctx);
  // A single scale (and zero point) is read in the body: as an input with a
  // constant map, canonicalization would inline it and rebuild the op without
  // its qlr.dequantize tag.
  bool perTensor = format.getGranularity() == Granularity::Tensor;
  SmallVector<Value> inputs;
  SmallVector<AffineMap> maps;
  if (!perTensor) {
    inputs.push_back(pack.getScales());
    maps.push_back(scaleMap);
    if (Value zeroPoints = pack.getZeroPoints()) {
      inputs.push_back(zeroPoints);
      maps.push_back(scaleMap);
    }
  }
  maps.push_back(identity);
  Value init = tensor::EmptyOp::create(b, loc, type.getShape(), elementType);
  Value codes = pack.getCodes();
  auto generic = linalg::GenericOp::create(
      b, loc, init.getType(), inputs, ValueRange{init}, maps,
      parallelThen(rank, 0),
      [&](OpBuilder &nb, Location nloc, ValueRange args) {
        auto constI32 = [&](int64_t v) -> Value {
          return arith::ConstantIntOp::create(nb, nloc, i32, v);
        };
        auto constIndex = [&](int64_t v) -> Value {
          return arith::ConstantIndexOp::create(nb, nloc, v);
        };
        // Bit position of this code within its row.
        SmallVector<Value> indices;
        for (int64_t dim = 0; dim < rank; ++dim)
          indices.push_back(linalg::IndexOp::create(nb, nloc, dim));
        Value bitPos =
            arith::MulIOp::create(nb, nloc, indices.back(), constIndex(bits));
        Value byteIdx = arith::ShRUIOp::create(nb, nloc, bitPos, constIndex(3));
        Value shift = arith::IndexCastOp::create(
            nb, nloc, i32,
            arith::AndIOp::create(nb, nloc, bitPos, constIndex(7)));
        auto loadByte = [&](Value index) -> Value {
          SmallVector<Value> at(indices.begin(), indices.end() - 1);
          at.push_back(index);
          Value byte = tensor::ExtractOp::create(nb, nloc, codes, at);
          return arith::ExtUIOp::create(nb, nloc, i32, byte);
        };
        Value word = loadByte(byteIdx);
        if (8 % bits != 0) {
          // The code may straddle into the next byte; at the end of a row
          // that byte is not needed, so clamp the index instead of reading
          // past the row.
          Value next = arith::MinUIOp::create(
              nb, nloc, arith::AddIOp::create(nb, nloc, byteIdx, constIndex(1)),
              constIndex(rowBytes - 1));
          Value high =
              arith::ShLIOp::create(nb, nloc, loadByte(next), constI32(8));
          word = arith::OrIOp::create(nb, nloc, word, high);
        }
        Value code = arith::AndIOp::create(
            nb, nloc, arith::ShRUIOp::create(nb, nloc, word, shift),
            constI32((1 << bits) - 1));
        Value scaleValue =
            perTensor ? tensor::ExtractOp::create(nb, nloc, pack.getScales(),
                                                  ValueRange{})
                            .getResult()
                      : args[0];
        Value scale = castFloat(nb, nloc, scaleValue, f32);
        Value value;
        if (format.isCodebook()) {
          Value entry = tensor::ExtractOp::create(
              nb, nloc, table,
              ValueRange{arith::IndexCastOp::create(nb, nloc, nb.getIndexType(),
                                                    code)});
          value = arith::MulFOp::create(nb, nloc, scale, entry);
        } else {
          Value zero = constI32(1 << (bits - 1));
          if (Value zeroPoints = pack.getZeroPoints()) {
            Value stored = perTensor ? tensor::ExtractOp::create(
                                           nb, nloc, zeroPoints, ValueRange{})
                                           .getResult()
                                     : args[1];
            zero = arith::ExtUIOp::create(nb, nloc, i32, stored);
          }
          // Fractional zero points have F fraction bits: c - zs / 2^F is
          // (c * 2^F - zs) / 2^F, an exact integer difference scaled by an
          // exact power of two.
          unsigned fractionBits = format.getZeroPointFractionBits();
          Value shiftedCode =
              fractionBits == 0 ? code
                                : arith::ShLIOp::create(nb, nloc, code,
                                                        constI32(fractionBits));
          Value centered = arith::SIToFPOp::create(
              nb, nloc, f32,
              arith::SubIOp::create(nb, nloc, shiftedCode, zero));
          if (fractionBits != 0)
            centered = arith::MulFOp::create(
                nb, nloc, centered,
                arith::ConstantOp::create(
                    nb, nloc, nb.getF32FloatAttr(1.0 / (1 << fractionBits))));
          value = arith::MulFOp::create(nb, nloc, scale, centered);
        }
        linalg::YieldOp::create(nb, nloc,
                                castFloat(nb, nloc, value, elementType));
      });
  // Lets qlr-lower-contractions decode the weight inside the kernel.
  generic->setAttr(kDequantizeAttrName, format);
  return generic.getResult(0);
}

/// `weight` as a float tensor: a quantized weight built by `qlr.pack` in
/// this function is decoded by a `qlr.dequantize` (lowered, and fused where
/// it can be, later); a float weight is returned as it is. Fails when the
/// storage of a quantized weight is not visible.
static FailureOr<Value> decodedWeight(OpBuilder &b, Location loc,
                                      Value weight) {
  auto qtensor = dyn_cast<QTensorType>(weight.getType());
  if (!qtensor)
    return weight;
  if (!weight.getDefiningOp<PackOp>())
    return failure();
  return DequantizeOp::create(b, loc, qtensor.getExpressedTensorType(), weight)
      .getResult();
}

//===----------------------------------------------------------------------===//
// Patterns
//===----------------------------------------------------------------------===//

namespace {
/// qlr.dequantize of a packed tensor or of a low-rank weight.
struct LowerDequantize : public OpRewritePattern<DequantizeOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(DequantizeOp op,
                                PatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    if (auto pack = op.getInput().getDefiningOp<PackOp>()) {
      FailureOr<Value> value = buildDequantize(rewriter, loc, pack);
      if (failed(value))
        return failure();
      rewriter.replaceOp(op, *value);
      return success();
    }
    auto lowRank = op.getInput().getDefiningOp<LowRankOp>();
    if (!lowRank)
      return rewriter.notifyMatchFailure(op, "storage is not visible");
    // A·B = contraction of A [m, r] with Bᵀ [n, r].
    auto toFloat = [&](Value v) -> Value {
      if (auto q = dyn_cast<QTensorType>(v.getType()))
        return DequantizeOp::create(rewriter, loc, q.getExpressedTensorType(),
                                    v);
      return v;
    };
    Value a = toFloat(lowRank.getA()), b = toFloat(lowRank.getB());
    auto bType = cast<RankedTensorType>(b.getType());
    Value bT =
        linalg::TransposeOp::create(
            rewriter, loc, b,
            tensor::EmptyOp::create(
                rewriter, loc,
                ArrayRef<int64_t>{bType.getDimSize(1), bType.getDimSize(0)},
                bType.getElementType()),
            ArrayRef<int64_t>{1, 0})
            .getResult()[0];
    Value product = buildContraction(rewriter, loc, a, bT);
    if (Value base = lowRank.getBase())
      product = buildAdd(rewriter, loc, product, toFloat(base),
                         /*sameShape=*/true);
    rewriter.replaceOp(op, product);
    return success();
  }
};

/// qlr.linear: float weights become a contraction; quantized weights are
/// decoded first; low-rank weights become two thin linears.
struct LowerLinear : public OpRewritePattern<LinearOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(LinearOp op,
                                PatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value x = op.getInput(), weight = op.getWeight();
    Value result;
    if (auto lowRank = weight.getDefiningOp<LowRankOp>()) {
      // y = x·(A·B)ᵀ = (x·Bᵀ)·Aᵀ (+ x·Qᵀ).
      auto linear = [&](Value in, Value w) -> Value {
        auto wType = cast<RankedTensorType>(
            isa<QTensorType>(w.getType())
                ? cast<QTensorType>(w.getType()).getExpressedTensorType()
                : w.getType());
        auto inType = cast<RankedTensorType>(in.getType());
        SmallVector<int64_t> shape(inType.getShape());
        shape.back() = wType.getDimSize(0);
        return LinearOp::create(
            rewriter, loc,
            RankedTensorType::get(shape, inType.getElementType()), in, w,
            Value());
      };
      result = linear(linear(x, lowRank.getB()), lowRank.getA());
      if (Value base = lowRank.getBase())
        result = buildAdd(rewriter, loc, result, linear(x, base),
                          /*sameShape=*/true);
    } else if (isa<LowRankType>(weight.getType())) {
      return rewriter.notifyMatchFailure(op, "low-rank storage not visible");
    } else {
      FailureOr<Value> decoded = decodedWeight(rewriter, loc, weight);
      if (failed(decoded))
        return rewriter.notifyMatchFailure(op, "storage is not visible");
      result = buildContraction(rewriter, loc, x, *decoded);
    }
    if (Value bias = op.getBias())
      result = buildAdd(rewriter, loc, result, bias, /*sameShape=*/false);
    rewriter.replaceOp(op, result);
    return success();
  }
};

/// Builds a reduction over the last dimension of `x` (f32 accumulator):
/// out[...] = sum_c f(x[..., c], extra[...]).
static Value buildLastDimReduction(
    OpBuilder &b, Location loc, Value x, ValueRange extra,
    function_ref<Value(OpBuilder &, Location, Value, ValueRange)> term) {
  auto type = cast<RankedTensorType>(x.getType());
  int64_t rank = type.getRank();
  MLIRContext *ctx = b.getContext();
  Type f32 = b.getF32Type();
  SmallVector<OpFoldResult> sizes;
  SmallVector<AffineExpr> outer;
  for (int64_t dim = 0; dim < rank - 1; ++dim) {
    outer.push_back(getAffineDimExpr(dim, ctx));
    if (type.isDynamicDim(dim))
      sizes.push_back(tensor::DimOp::create(b, loc, x, dim).getResult());
    else
      sizes.push_back(b.getIndexAttr(type.getDimSize(dim)));
  }
  AffineMap outerMap = AffineMap::get(rank, 0, outer, ctx);
  Value init = zeroFilled(b, loc, tensor::EmptyOp::create(b, loc, sizes, f32));
  SmallVector<Value> inputs = {x};
  inputs.append(extra.begin(), extra.end());
  SmallVector<AffineMap> maps = {AffineMap::getMultiDimIdentityMap(rank, ctx)};
  maps.append(extra.size(), outerMap);
  maps.push_back(outerMap);
  return linalg::GenericOp::create(
             b, loc, init.getType(), inputs, ValueRange{init}, maps,
             parallelThen(rank - 1, 1),
             [&](OpBuilder &nb, Location nloc, ValueRange args) {
               Value value = castFloat(nb, nloc, args[0], f32);
               Value t = term(nb, nloc, value, args.drop_front().drop_back());
               linalg::YieldOp::create(
                   nb, nloc,
                   arith::AddFOp::create(nb, nloc, args.back(), t).getResult());
             })
      .getResult(0);
}

/// y = f(x[..., c], stats[...], params[c]) element-wise, in f32.
static Value buildNormalize(
    OpBuilder &b, Location loc, Value x, ValueRange stats, ValueRange params,
    function_ref<Value(OpBuilder &, Location, Value, ValueRange, ValueRange)>
        body) {
  auto type = cast<RankedTensorType>(x.getType());
  int64_t rank = type.getRank();
  MLIRContext *ctx = b.getContext();
  SmallVector<AffineExpr> outer;
  for (int64_t dim = 0; dim < rank - 1; ++dim)
    outer.push_back(getAffineDimExpr(dim, ctx));
  AffineMap identity = AffineMap::getMultiDimIdentityMap(rank, ctx);
  AffineMap outerMap = AffineMap::get(rank, 0, outer, ctx);
  AffineMap lastMap = AffineMap::get(rank, 0, getAffineDimExpr(rank - 1, ctx));
  SmallVector<Value> inputs = {x};
  inputs.append(stats.begin(), stats.end());
  inputs.append(params.begin(), params.end());
  SmallVector<AffineMap> maps = {identity};
  maps.append(stats.size(), outerMap);
  maps.append(params.size(), lastMap);
  maps.push_back(identity);
  Value init = emptyLike(b, loc, x, type.getElementType());
  Type f32 = b.getF32Type();
  return linalg::GenericOp::create(
             b, loc, type, inputs, ValueRange{init}, maps,
             parallelThen(rank, 0),
             [&](OpBuilder &nb, Location nloc, ValueRange args) {
               Value value = castFloat(nb, nloc, args[0], f32);
               SmallVector<Value> statValues(args.slice(1, stats.size()));
               SmallVector<Value> paramValues;
               for (Value p : args.slice(1 + stats.size(), params.size()))
                 paramValues.push_back(castFloat(nb, nloc, p, f32));
               Value result = body(nb, nloc, value, statValues, paramValues);
               linalg::YieldOp::create(
                   nb, nloc,
                   castFloat(nb, nloc, result, type.getElementType()));
             })
      .getResult(0);
}

static Value constF32(OpBuilder &b, Location loc, double value) {
  return arith::ConstantOp::create(b, loc, b.getF32FloatAttr(value));
}

struct LowerRMSNorm : public OpRewritePattern<RMSNormOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(RMSNormOp op,
                                PatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value x = op.getInput();
    int64_t channels = op.getInput().getType().getShape().back();
    if (ShapedType::isDynamic(channels))
      return rewriter.notifyMatchFailure(op, "dynamic feature dimension");
    Value sumSquares = buildLastDimReduction(
        rewriter, loc, x, {},
        [](OpBuilder &b, Location l, Value v, ValueRange) -> Value {
          return arith::MulFOp::create(b, l, v, v);
        });
    double epsilon = op.getEpsilon().convertToDouble();
    Value y = buildNormalize(
        rewriter, loc, x, sumSquares, op.getWeight(),
        [&](OpBuilder &b, Location l, Value v, ValueRange stats,
            ValueRange params) -> Value {
          Value mean =
              arith::DivFOp::create(b, l, stats[0], constF32(b, l, channels));
          Value inv = math::RsqrtOp::create(
              b, l, arith::AddFOp::create(b, l, mean, constF32(b, l, epsilon)));
          return arith::MulFOp::create(
              b, l, arith::MulFOp::create(b, l, v, inv), params[0]);
        });
    rewriter.replaceOp(op, y);
    return success();
  }
};

struct LowerLayerNorm : public OpRewritePattern<LayerNormOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(LayerNormOp op,
                                PatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value x = op.getInput();
    int64_t channels = op.getInput().getType().getShape().back();
    if (ShapedType::isDynamic(channels))
      return rewriter.notifyMatchFailure(op, "dynamic feature dimension");
    Value sum = buildLastDimReduction(
        rewriter, loc, x, {},
        [](OpBuilder &, Location, Value v, ValueRange) { return v; });
    // Variance about the mean (two passes: numerically safer than E[x²]-μ²).
    Value squares = buildLastDimReduction(
        rewriter, loc, x, sum,
        [&](OpBuilder &b, Location l, Value v, ValueRange stats) -> Value {
          Value mean =
              arith::DivFOp::create(b, l, stats[0], constF32(b, l, channels));
          Value d = arith::SubFOp::create(b, l, v, mean);
          return arith::MulFOp::create(b, l, d, d);
        });
    double epsilon = op.getEpsilon().convertToDouble();
    Value y = buildNormalize(
        rewriter, loc, x, ValueRange{sum, squares},
        ValueRange{op.getWeight(), op.getBias()},
        [&](OpBuilder &b, Location l, Value v, ValueRange stats,
            ValueRange params) -> Value {
          Value n = constF32(b, l, channels);
          Value mean = arith::DivFOp::create(b, l, stats[0], n);
          Value var = arith::DivFOp::create(b, l, stats[1], n);
          Value inv = math::RsqrtOp::create(
              b, l, arith::AddFOp::create(b, l, var, constF32(b, l, epsilon)));
          Value normed = arith::MulFOp::create(
              b, l, arith::SubFOp::create(b, l, v, mean), inv);
          return arith::AddFOp::create(
              b, l, arith::MulFOp::create(b, l, normed, params[0]), params[1]);
        });
    rewriter.replaceOp(op, y);
    return success();
  }
};

struct LowerBatchNorm : public OpRewritePattern<BatchNormOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(BatchNormOp op,
                                PatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value x = op.getInput();
    auto type = op.getInput().getType();
    int64_t rank = type.getRank();
    MLIRContext *ctx = rewriter.getContext();
    AffineMap identity = AffineMap::getMultiDimIdentityMap(rank, ctx);
    AffineMap channelMap =
        AffineMap::get(rank, 0, getAffineDimExpr(op.getAxis(), ctx));
    Value init = emptyLike(rewriter, loc, x, type.getElementType());
    double epsilon = op.getEpsilon().convertToDouble();
    Type f32 = rewriter.getF32Type();
    Value y =
        linalg::GenericOp::create(
            rewriter, loc, type,
            ValueRange{x, op.getScale(), op.getBias(), op.getMean(),
                       op.getVariance()},
            ValueRange{init},
            SmallVector<AffineMap>{identity, channelMap, channelMap, channelMap,
                                   channelMap, identity},
            parallelThen(rank, 0),
            [&](OpBuilder &b, Location l, ValueRange args) {
              SmallVector<Value> v;
              for (Value arg : args.drop_back())
                v.push_back(castFloat(b, l, arg, f32));
              Value inv = math::RsqrtOp::create(
                  b, l,
                  arith::AddFOp::create(b, l, v[4], constF32(b, l, epsilon)));
              Value normed = arith::MulFOp::create(
                  b, l, arith::SubFOp::create(b, l, v[0], v[3]), inv);
              Value out = arith::AddFOp::create(
                  b, l, arith::MulFOp::create(b, l, normed, v[1]), v[2]);
              linalg::YieldOp::create(
                  b, l, castFloat(b, l, out, type.getElementType()));
            })
            .getResult(0);
    rewriter.replaceOp(op, y);
    return success();
  }
};

/// qlr.conv2d: zero padding with tensor.pad, then upstream's named
/// convolution for one group, or a generic convolution for grouped and
/// depthwise ones; a quantized filter is decoded first (qlr-fuse-dequantize
/// fuses the decoder into the convolution).
struct LowerConv2D : public OpRewritePattern<Conv2DOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(Conv2DOp op,
                                PatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value x = op.getInput();
    FailureOr<Value> decoded = decodedWeight(rewriter, loc, op.getWeight());
    if (failed(decoded))
      return rewriter.notifyMatchFailure(op, "storage is not visible");
    Value weight = *decoded;
    auto xType = cast<RankedTensorType>(x.getType());
    auto wType = cast<RankedTensorType>(weight.getType());
    RankedTensorType resultType = op.getType();
    for (int64_t dim = 1; dim < 4; ++dim)
      if (xType.isDynamicDim(dim) || resultType.isDynamicDim(dim))
        return rewriter.notifyMatchFailure(op, "dynamic channel or spatial "
                                               "dimension");
    if (!wType.hasStaticShape())
      return rewriter.notifyMatchFailure(op, "dynamic filter shape");
    Type elementType = xType.getElementType();

    ArrayRef<int64_t> padding = op.getPadding();
    if (llvm::any_of(padding, [](int64_t p) { return p != 0; })) {
      SmallVector<OpFoldResult> low = {
          rewriter.getIndexAttr(0), rewriter.getIndexAttr(0),
          rewriter.getIndexAttr(padding[0]), rewriter.getIndexAttr(padding[1])};
      SmallVector<OpFoldResult> high = {
          rewriter.getIndexAttr(0), rewriter.getIndexAttr(0),
          rewriter.getIndexAttr(padding[2]), rewriter.getIndexAttr(padding[3])};
      SmallVector<int64_t> paddedShape(xType.getShape());
      paddedShape[2] += padding[0] + padding[2];
      paddedShape[3] += padding[1] + padding[3];
      Value zero = arith::ConstantOp::create(rewriter, loc,
                                             rewriter.getZeroAttr(elementType));
      x = tensor::PadOp::create(rewriter, loc,
                                RankedTensorType::get(paddedShape, elementType),
                                x, low, high, zero);
    }
    auto pairAttr = [&](ArrayRef<int64_t> values) {
      return rewriter.getI64TensorAttr(values);
    };
    DenseIntElementsAttr strides = pairAttr(op.getStrides());
    DenseIntElementsAttr dilations = pairAttr(op.getDilations());
    // The batch size of the result, for dynamic batches.
    SmallVector<OpFoldResult> outSizes;
    for (int64_t dim = 0; dim < 4; ++dim)
      outSizes.push_back(
          resultType.isDynamicDim(dim)
              ? OpFoldResult(
                    tensor::DimOp::create(rewriter, loc, x, dim).getResult())
              : OpFoldResult(
                    rewriter.getIndexAttr(resultType.getDimSize(dim))));
    int64_t groups = op.getGroups();
    int64_t filters = wType.getDimSize(0);
    Value result;
    if (groups == 1) {
      Value init = zeroFilled(
          rewriter, loc,
          tensor::EmptyOp::create(rewriter, loc, outSizes, elementType));
      result = linalg::Conv2DNchwFchwOp::create(
                   rewriter, loc, TypeRange{init.getType()},
                   ValueRange{x, weight}, ValueRange{init}, strides, dilations)
                   .getResult(0);
    } else {
      // Grouped and depthwise: a generic over (n, f, oh, ow, c, kh, kw) that
      // reads the filter in its own [F, C/G, KH, KW] layout (a projected
      // permutation, so a decoder can be fused into it) and the input
      // channel (f / (F/G)) * (C/G) + c of the output channel's group.
      MLIRContext *ctx = rewriter.getContext();
      int64_t filtersPerGroup = filters / groups;
      int64_t channelsPerGroup = wType.getDimSize(1);
      AffineExpr n = getAffineDimExpr(0, ctx), f = getAffineDimExpr(1, ctx),
                 oh = getAffineDimExpr(2, ctx), ow = getAffineDimExpr(3, ctx),
                 c = getAffineDimExpr(4, ctx), kh = getAffineDimExpr(5, ctx),
                 kw = getAffineDimExpr(6, ctx);
      ArrayRef<int64_t> stride = op.getStrides(), dilation = op.getDilations();
      SmallVector<AffineMap> maps = {
          AffineMap::get(7, 0,
                         {n, f.floorDiv(filtersPerGroup) * channelsPerGroup + c,
                          oh * stride[0] + kh * dilation[0],
                          ow * stride[1] + kw * dilation[1]},
                         ctx),
          AffineMap::get(7, 0, {f, c, kh, kw}, ctx),
          AffineMap::get(7, 0, {n, f, oh, ow}, ctx)};
      Value init = zeroFilled(
          rewriter, loc,
          tensor::EmptyOp::create(rewriter, loc, outSizes, elementType));
      result =
          linalg::GenericOp::create(
              rewriter, loc, init.getType(), ValueRange{x, weight},
              ValueRange{init}, maps, parallelThen(4, 3),
              [&](OpBuilder &b, Location l, ValueRange args) {
                Value product = arith::MulFOp::create(b, l, args[0], args[1]);
                linalg::YieldOp::create(
                    b, l,
                    arith::AddFOp::create(b, l, args[2], product).getResult());
              })
              .getResult(0);
    }
    if (Value bias = op.getBias()) {
      // result[n, f, h, w] + bias[f].
      MLIRContext *ctx = rewriter.getContext();
      AffineMap identity = AffineMap::getMultiDimIdentityMap(4, ctx);
      AffineMap channelMap = AffineMap::get(4, 0, getAffineDimExpr(1, ctx));
      Value init =
          tensor::EmptyOp::create(rewriter, loc, outSizes, elementType);
      result =
          linalg::GenericOp::create(
              rewriter, loc, init.getType(), ValueRange{result, bias},
              ValueRange{init},
              SmallVector<AffineMap>{identity, channelMap, identity},
              parallelThen(4, 0),
              [&](OpBuilder &b, Location l, ValueRange args) {
                linalg::YieldOp::create(
                    b, l,
                    arith::AddFOp::create(b, l, args[0], args[1]).getResult());
              })
              .getResult(0);
    }
    if (result.getType() != resultType)
      result = tensor::CastOp::create(rewriter, loc, resultType, result);
    rewriter.replaceOp(op, result);
    return success();
  }
};

struct QLRLowerToLinalgPass
    : public mlir::qlr::impl::QLRLowerToLinalgPassBase<QLRLowerToLinalgPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    RewritePatternSet patterns(&getContext());
    populateQLRToLinalgPatterns(patterns);
    if (failed(applyPatternsGreedily(module, std::move(patterns))))
      return signalPassFailure();
    // Whatever is left could not be lowered: say why, op by op.
    WalkResult result = module.walk([](Operation *op) {
      if (!isa<QLRDialect>(op->getDialect()))
        return WalkResult::advance();
      if (isa<PackOp, LowRankOp>(op))
        op->emitOpError(
            "is still used after lowering; its consumers must be "
            "qlr.linear, qlr.conv2d or qlr.dequantize in the same function");
      else if (isa<QuantizeOp>(op))
        op->emitOpError("has no lowering yet (run-time quantization)");
      else if (isa<LinearOp, Conv2DOp, DequantizeOp>(op))
        op->emitOpError("cannot be lowered: the storage of its weight is not "
                        "built by qlr.pack / qlr.lowrank in this function");
      else
        op->emitOpError("cannot be lowered: ")
            << "its shapes are not supported (dynamic feature dimension?)";
      return WalkResult::interrupt();
    });
    if (result.wasInterrupted())
      signalPassFailure();
  }
};
} // namespace

void mlir::qlr::populateQLRToLinalgPatterns(RewritePatternSet &patterns) {
  patterns.add<LowerBatchNorm, LowerConv2D, LowerDequantize, LowerLayerNorm,
               LowerLinear, LowerRMSNorm>(patterns.getContext());
}

void mlir::qlr::populateQLRNormToLinalgPatterns(RewritePatternSet &patterns) {
  patterns.add<LowerLayerNorm, LowerRMSNorm>(patterns.getContext());
}
