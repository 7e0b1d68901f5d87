//===- LlamaImporter.cpp - Checkpoint -> qlr module -------------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#include "qlr/Import/LlamaImporter.h"
#include "qlr/Dialect/QLR/IR/QLR.h"
#include "qlr/Dialect/QLR/Utils/ConstantData.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/AsmState.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/DialectResourceBlobManager.h"
#include "llvm/ADT/StringExtras.h"

#include <cmath>
#include <limits>

using namespace mlir;
using namespace mlir::qlr;
using ::qlr::checkpoint::Checkpoint;
using ::qlr::checkpoint::ModelConfig;
using ::qlr::checkpoint::TensorInfo;

namespace {
/// Emits the body of @forward. Shapes: T tokens (dynamic), D model width,
/// H query heads, KV key/value heads, G = H / KV, E head dim, S cache rows.
class LlamaBuilder {
public:
  LlamaBuilder(OpBuilder &b, Location loc, const Checkpoint &checkpoint,
               int64_t cacheRows)
      : b(b), loc(loc), checkpoint(checkpoint), cfg(checkpoint.config()),
        cacheRows(cacheRows) {}

  LogicalResult build(func::FuncOp func);

private:
  OpBuilder &b;
  Location loc;
  const Checkpoint &checkpoint;
  const ModelConfig &cfg;
  int64_t cacheRows;
  Value tokens, pos, numTokens, cosTable, sinTable;

  Type f32() { return b.getF32Type(); }
  Value cst(double v) {
    return arith::ConstantOp::create(b, loc, b.getF32FloatAttr(v));
  }
  RankedTensorType tensorType(ArrayRef<int64_t> shape) {
    return RankedTensorType::get(shape, f32());
  }
  /// An empty [T, width...] tensor.
  Value emptyRows(ArrayRef<int64_t> rest) {
    SmallVector<int64_t> shape = {ShapedType::kDynamic};
    shape.append(rest.begin(), rest.end());
    return tensor::EmptyOp::create(b, loc, tensorType(shape),
                                   ValueRange{numTokens});
  }
  AffineExpr dim(unsigned i) { return b.getAffineDimExpr(i); }
  AffineMap map(unsigned numDims, ArrayRef<AffineExpr> exprs) {
    return AffineMap::get(numDims, 0, exprs, b.getContext());
  }
  Value generic(TypeRange results, ValueRange inputs, ValueRange outputs,
                ArrayRef<AffineMap> maps,
                ArrayRef<utils::IteratorType> iterators,
                function_ref<void(OpBuilder &, Location, ValueRange)> body) {
    return linalg::GenericOp::create(b, loc, results, inputs, outputs, maps,
                                     iterators, body)
        .getResult(0);
  }

  FailureOr<Value> weight(StringRef name);
  FailureOr<Value> constantFromFloats(StringRef name, ArrayRef<int64_t> shape,
                                      ArrayRef<float> values);
  /// The layers, named after their weights in the checkpoint (qlr.name).
  Value rmsNorm(Value x, Value w, StringRef name);
  Value linear(Value x, Value w, StringRef name);
  Value rope(Value x, int64_t heads);
  Value attention(Value q, Value keys, Value values);
  Value swiglu(Value gate, Value up);
  /// Reassociation and contraction for sums whose order does not matter.
  static arith::FastMathFlagsAttr fastMath(OpBuilder &nb) {
    return arith::FastMathFlagsAttr::get(nb.getContext(),
                                         arith::FastMathFlags::reassoc |
                                             arith::FastMathFlags::contract);
  }
  /// A tensor of `type` (dynamic sizes `sizes`) filled with `value`.
  Value filled(RankedTensorType type, ValueRange sizes, Value value) {
    Value empty = tensor::EmptyOp::create(b, loc, type, sizes);
    return linalg::FillOp::create(b, loc, value, empty).getResult(0);
  }
  /// The body of a multiply-accumulate contraction: out += lhs * rhs.
  static void multiplyAccumulate(OpBuilder &nb, Location l, ValueRange a) {
    Value prod = arith::MulFOp::create(nb, l, a[0], a[1], fastMath(nb));
    linalg::YieldOp::create(
        nb, l,
        arith::AddFOp::create(nb, l, a[2], prod, fastMath(nb)).getResult());
  }
  Value add(Value a, Value c) { return arith::AddFOp::create(b, loc, a, c); }
};
} // namespace

FailureOr<Value> LlamaBuilder::weight(StringRef name) {
  const TensorInfo *info = checkpoint.findTensor(name);
  if (!info)
    return emitError(loc, "checkpoint '")
           << checkpoint.path() << "' has no tensor '" << name << "'";
  int64_t count = 1;
  for (int64_t d : info->shape)
    count *= d;
  AsmResourceBlob blob = HeapAsmResourceBlob::allocate(
      count * sizeof(float), alignof(float), /*dataIsMutable=*/true);
  MutableArrayRef<char> bytes = blob.getMutableData();
  MutableArrayRef<float> data(reinterpret_cast<float *>(bytes.data()), count);
  if (llvm::Error error = checkpoint.readTensor(name, data))
    return emitError(loc) << llvm::toString(std::move(error));
  auto type = tensorType(info->shape);
  auto attr = DenseResourceElementsAttr::get(type, name, std::move(blob));
  return arith::ConstantOp::create(b, loc, type, attr).getResult();
}

FailureOr<Value> LlamaBuilder::constantFromFloats(StringRef name,
                                                  ArrayRef<int64_t> shape,
                                                  ArrayRef<float> values) {
  auto type = tensorType(shape);
  auto attr = DenseResourceElementsAttr::get(
      type, name, HeapAsmResourceBlob::allocateAndCopyInferAlign(values));
  return arith::ConstantOp::create(b, loc, type, attr).getResult();
}

Value LlamaBuilder::rmsNorm(Value x, Value w, StringRef name) {
  auto norm =
      RMSNormOp::create(b, loc, x, w, b.getF64FloatAttr(double(cfg.normEps)));
  norm->setAttr(kLayerNameAttrName, b.getStringAttr(name));
  return norm;
}

Value LlamaBuilder::linear(Value x, Value w, StringRef name) {
  auto wType = cast<RankedTensorType>(w.getType());
  auto xType = cast<RankedTensorType>(x.getType());
  SmallVector<int64_t> shape(xType.getShape());
  shape.back() = wType.getDimSize(0);
  auto linear = LinearOp::create(b, loc, tensorType(shape), x, w, Value());
  linear->setAttr(kLayerNameAttrName, b.getStringAttr(name));
  return linear;
}

/// Interleaved rotary embedding of x [T, heads*E] at positions pos + t:
/// (x[2i], x[2i+1]) -> (x0 cos - x1 sin, x0 sin + x1 cos).
Value LlamaBuilder::rope(Value x, int64_t heads) {
  int64_t width = heads * cfg.headDim, headDim = cfg.headDim;
  Value init = emptyRows({width});
  AffineMap identity = map(2, {dim(0), dim(1)});
  return generic(
      init.getType(), x, init, {identity, identity},
      {utils::IteratorType::parallel, utils::IteratorType::parallel},
      [&](OpBuilder &nb, Location l, ValueRange args) {
        auto c = [&](int64_t v) -> Value {
          return arith::ConstantIndexOp::create(nb, l, v);
        };
        Value t = linalg::IndexOp::create(nb, l, 0);
        Value j = linalg::IndexOp::create(nb, l, 1);
        Value p = arith::AddIOp::create(nb, l, pos, t);
        Value inHead = arith::RemUIOp::create(nb, l, j, c(headDim));
        Value pair = arith::DivUIOp::create(nb, l, inHead, c(2));
        Value odd = arith::RemUIOp::create(nb, l, j, c(2));
        Value isOdd =
            arith::CmpIOp::create(nb, l, arith::CmpIPredicate::ne, odd, c(0));
        // The other element of the pair: j + 1 for even j, j - 1 for odd.
        Value partnerIdx = arith::SelectOp::create(
            nb, l, isOdd, arith::SubIOp::create(nb, l, j, c(1)),
            arith::AddIOp::create(nb, l, j, c(1)));
        Value partner =
            tensor::ExtractOp::create(nb, l, x, ValueRange{t, partnerIdx});
        Value cos =
            tensor::ExtractOp::create(nb, l, cosTable, ValueRange{p, pair});
        Value sin =
            tensor::ExtractOp::create(nb, l, sinTable, ValueRange{p, pair});
        Value self = args[0];
        // even: self*cos - partner*sin; odd: partner*sin + self*cos.
        Value selfCos = arith::MulFOp::create(nb, l, self, cos);
        Value partnerSin = arith::MulFOp::create(nb, l, partner, sin);
        Value even = arith::SubFOp::create(nb, l, selfCos, partnerSin);
        Value oddValue = arith::AddFOp::create(nb, l, partnerSin, selfCos);
        Value out = arith::SelectOp::create(nb, l, isOdd, oddValue, even);
        linalg::YieldOp::create(nb, l, out);
      });
}

/// Causal grouped-query attention. q: [T, H*E]; keys, values: [P, KV, E]
/// with P = pos + T cache rows. Returns [T, H*E].
Value LlamaBuilder::attention(Value q, Value keys, Value values) {
  int64_t kv = cfg.numKVHeads, g = cfg.numHeads / cfg.numKVHeads;
  int64_t e = cfg.headDim;
  using IT = utils::IteratorType;
  IT par = IT::parallel, red = IT::reduction;
  Value zero = cst(0.0), negInf = cst(-std::numeric_limits<double>::infinity());
  // q as [T, KV, G, E].
  SmallVector<OpFoldResult> qShape = {numTokens, b.getIndexAttr(kv),
                                      b.getIndexAttr(g), b.getIndexAttr(e)};
  Value q4 = tensor::ExpandShapeOp::create(
      b, loc, tensorType({ShapedType::kDynamic, kv, g, e}), q,
      SmallVector<ReassociationIndices>{{0}, {1, 2, 3}}, qShape);
  Value rows = tensor::DimOp::create(b, loc, keys, 0);

  // keysT[kv, e, s] = k[s, kv, e]: the cache rows laid out along s, so that
  // the scores below run a unit-stride loop over s innermost.
  auto keysTType = tensorType({kv, e, ShapedType::kDynamic});
  Value keysTInit =
      tensor::EmptyOp::create(b, loc, keysTType, ValueRange{rows});
  Value keysT = linalg::TransposeOp::create(b, loc, keys, keysTInit,
                                            ArrayRef<int64_t>{1, 2, 0})
                    .getResult()[0];

  // scores[kv, g, t, s] = sum_e q[t, kv, g, e] * k[s, kv, e] / sqrt(E)
  auto scoresType =
      tensorType({kv, g, ShapedType::kDynamic, ShapedType::kDynamic});
  Value scoresInit = filled(scoresType, {numTokens, rows}, zero);
  // Loops (kv, g, t, e, s): the innermost loop is a vectorisable
  // scores[.., s] += q * keysT[.., s] with unit stride.
  Value scores = generic(scoresType, ValueRange{q4, keysT}, scoresInit,
                         {map(5, {dim(2), dim(0), dim(1), dim(3)}),
                          map(5, {dim(0), dim(3), dim(4)}),
                          map(5, {dim(0), dim(1), dim(2), dim(4)})},
                         {par, par, par, red, par}, multiplyAccumulate);

  // Causal mask and scale, then max over s.
  double scale = 1.0 / std::sqrt(double(e));
  auto statsType = tensorType({kv, g, ShapedType::kDynamic});
  auto isVisible = [&](OpBuilder &nb, Location l) -> Value {
    Value t = linalg::IndexOp::create(nb, l, 2);
    Value s = linalg::IndexOp::create(nb, l, 3);
    Value limit = arith::AddIOp::create(nb, l, pos, t);
    return arith::CmpIOp::create(nb, l, arith::CmpIPredicate::ule, s, limit);
  };
  AffineMap full = map(4, {dim(0), dim(1), dim(2), dim(3)});
  AffineMap stats = map(4, {dim(0), dim(1), dim(2)});
  Value maxInit = filled(statsType, {numTokens}, negInf);
  Value maxima = generic(
      statsType, scores, maxInit, {full, stats}, {par, par, par, red},
      [&](OpBuilder &nb, Location l, ValueRange a) {
        Value v = arith::MulFOp::create(
            nb, l, a[0],
            arith::ConstantOp::create(nb, l, nb.getF32FloatAttr(scale)));
        Value masked = arith::SelectOp::create(
            nb, l, isVisible(nb, l), v,
            arith::ConstantOp::create(
                nb, l,
                nb.getF32FloatAttr(-std::numeric_limits<float>::infinity())));
        linalg::YieldOp::create(
            nb, l, arith::MaximumFOp::create(nb, l, a[1], masked).getResult());
      });
  // weights = exp(visible ? score*scale - max : -inf); and their sum. The
  // mask goes inside the exp: a hidden score can exceed the row's maximum
  // by far more than exp's range, and exp(-inf) is exactly 0 and cheap.
  Value expInit =
      tensor::EmptyOp::create(b, loc, scoresType, ValueRange{numTokens, rows});
  Value weights = generic(
      scoresType, ValueRange{scores, maxima}, expInit, {full, stats, full},
      {par, par, par, par}, [&](OpBuilder &nb, Location l, ValueRange a) {
        Value v = arith::MulFOp::create(
            nb, l, a[0],
            arith::ConstantOp::create(nb, l, nb.getF32FloatAttr(scale)));
        Value shifted = arith::SelectOp::create(
            nb, l, isVisible(nb, l), arith::SubFOp::create(nb, l, v, a[1]),
            arith::ConstantOp::create(
                nb, l,
                nb.getF32FloatAttr(-std::numeric_limits<float>::infinity())));
        linalg::YieldOp::create(
            nb, l, math::ExpOp::create(nb, l, shifted).getResult());
      });
  Value sumInit = filled(statsType, {numTokens}, zero);
  Value sums = generic(
      statsType, weights, sumInit, {full, stats}, {par, par, par, red},
      [&](OpBuilder &nb, Location l, ValueRange a) {
        linalg::YieldOp::create(
            nb, l,
            arith::AddFOp::create(nb, l, a[0], a[1], fastMath(nb)).getResult());
      });

  // out[t, kv, g, e] = sum_s weights[kv, g, t, s] * v[s, kv, e] / sum
  auto outType = tensorType({ShapedType::kDynamic, kv, g, e});
  Value outInit = filled(outType, {numTokens}, zero);
  // dims: t=0, kv=1, g=2, s=3, e=4
  Value weighted = generic(
      outType, ValueRange{weights, values}, outInit,
      // Loops (t, kv, g, s, e): the unit-stride e innermost and parallel,
      // so the innermost loop is a plain vectorisable multiply-add.
      {map(5, {dim(1), dim(2), dim(0), dim(3)}),
       map(5, {dim(3), dim(1), dim(4)}),
       map(5, {dim(0), dim(1), dim(2), dim(4)})},
      {par, par, par, red, par}, multiplyAccumulate);
  Value normInit =
      tensor::EmptyOp::create(b, loc, outType, ValueRange{numTokens});
  Value normalized = generic(
      outType, ValueRange{weighted, sums}, normInit,
      {map(4, {dim(0), dim(1), dim(2), dim(3)}),
       map(4, {dim(1), dim(2), dim(0)}),
       map(4, {dim(0), dim(1), dim(2), dim(3)})},
      {par, par, par, par}, [&](OpBuilder &nb, Location l, ValueRange a) {
        linalg::YieldOp::create(
            nb, l, arith::DivFOp::create(nb, l, a[0], a[1]).getResult());
      });
  return tensor::CollapseShapeOp::create(
      b, loc, tensorType({ShapedType::kDynamic, kv * g * e}), normalized,
      SmallVector<ReassociationIndices>{{0}, {1, 2, 3}});
}

/// silu(gate) * up, element-wise on [T, hidden].
Value LlamaBuilder::swiglu(Value gate, Value up) {
  Value init = emptyRows({cfg.hiddenDim});
  AffineMap identity = map(2, {dim(0), dim(1)});
  return generic(
      init.getType(), ValueRange{gate, up}, init,
      {identity, identity, identity},
      {utils::IteratorType::parallel, utils::IteratorType::parallel},
      [&](OpBuilder &nb, Location l, ValueRange a) {
        Value one = arith::ConstantOp::create(nb, l, nb.getF32FloatAttr(1.0));
        Value e =
            math::ExpOp::create(nb, l, arith::NegFOp::create(nb, l, a[0]));
        Value silu = arith::DivFOp::create(
            nb, l, a[0], arith::AddFOp::create(nb, l, one, e));
        linalg::YieldOp::create(
            nb, l, arith::MulFOp::create(nb, l, silu, a[1]).getResult());
      });
}

LogicalResult LlamaBuilder::build(func::FuncOp func) {
  Block *entry = func.addEntryBlock();
  b.setInsertionPointToStart(entry);
  tokens = entry->getArgument(0);
  pos = entry->getArgument(1);
  Value logitsOut = entry->getArgument(2);
  Value kCache = entry->getArgument(3), vCache = entry->getArgument(4);
  numTokens = tensor::DimOp::create(b, loc, tokens, 0);
  int64_t d = cfg.dim, e = cfg.headDim, kv = cfg.numKVHeads;

  // Rotary tables [S, E/2] for positions 0 .. S-1.
  std::vector<float> cosValues, sinValues;
  for (int64_t p = 0; p < cacheRows; ++p)
    for (int64_t i = 0; i < e / 2; ++i) {
      double freq = std::pow(double(cfg.ropeTheta), -2.0 * i / double(e));
      cosValues.push_back(float(std::cos(p * freq)));
      sinValues.push_back(float(std::sin(p * freq)));
    }
  auto cosOr = constantFromFloats("rope.cos", {cacheRows, e / 2}, cosValues);
  auto sinOr = constantFromFloats("rope.sin", {cacheRows, e / 2}, sinValues);
  if (failed(cosOr) || failed(sinOr))
    return failure();
  cosTable = *cosOr;
  sinTable = *sinOr;

  // Embedding lookup: x[t, c] = emb[tokens[t], c].
  auto embedding = weight("tok_embeddings");
  if (failed(embedding))
    return failure();
  Value embeddingTable = *embedding;
  Value xInit = emptyRows({d});
  Value x = generic(
      xInit.getType(), tokens, xInit,
      {map(2, {dim(0)}), map(2, {dim(0), dim(1)})},
      {utils::IteratorType::parallel, utils::IteratorType::parallel},
      [&](OpBuilder &nb, Location l, ValueRange a) {
        Value row = arith::IndexCastOp::create(nb, l, nb.getIndexType(), a[0]);
        Value c = linalg::IndexOp::create(nb, l, 1);
        linalg::YieldOp::create(
            nb, l,
            tensor::ExtractOp::create(nb, l, embeddingTable, ValueRange{row, c})
                .getResult());
      });

  Value rows = arith::AddIOp::create(b, loc, pos, numTokens);
  for (int64_t layer = 0; layer < cfg.numLayers; ++layer) {
    std::string prefix = "layers." + std::to_string(layer) + ".";
    auto w = [&](StringRef name) { return weight(prefix + name.str()); };
    auto name = [&](StringRef suffix) { return prefix + suffix.str(); };
    auto attnNorm = w("attention_norm"), wq = w("attention.wq"),
         wk = w("attention.wk"), wv = w("attention.wv"), wo = w("attention.wo"),
         ffnNorm = w("ffn_norm"), w1 = w("feed_forward.w1"),
         w2 = w("feed_forward.w2"), w3 = w("feed_forward.w3");
    for (auto *v : {&attnNorm, &wq, &wk, &wv, &wo, &ffnNorm, &w1, &w2, &w3})
      if (failed(*v))
        return failure();

    Value h = rmsNorm(x, *attnNorm, name("attention_norm"));
    Value q = rope(linear(h, *wq, name("attention.wq")), cfg.numHeads);
    Value k = rope(linear(h, *wk, name("attention.wk")), kv);
    Value v = linear(h, *wv, name("attention.wv"));
    // Write this window's keys/values into cache rows pos .. pos+T-1.
    auto rowsType = tensorType({ShapedType::kDynamic, kv, e});
    SmallVector<OpFoldResult> kvShape = {numTokens, b.getIndexAttr(kv),
                                         b.getIndexAttr(e)};
    auto reassoc = SmallVector<ReassociationIndices>{{0}, {1, 2}};
    Value k3 =
        tensor::ExpandShapeOp::create(b, loc, rowsType, k, reassoc, kvShape);
    Value v3 =
        tensor::ExpandShapeOp::create(b, loc, rowsType, v, reassoc, kvShape);
    SmallVector<OpFoldResult> offsets = {b.getIndexAttr(layer), pos,
                                         b.getIndexAttr(0), b.getIndexAttr(0)};
    SmallVector<OpFoldResult> sizes = {b.getIndexAttr(1), numTokens,
                                       b.getIndexAttr(kv), b.getIndexAttr(e)};
    SmallVector<OpFoldResult> strides(4, b.getIndexAttr(1));
    kCache = tensor::InsertSliceOp::create(b, loc, k3, kCache, offsets, sizes,
                                           strides);
    vCache = tensor::InsertSliceOp::create(b, loc, v3, vCache, offsets, sizes,
                                           strides);
    // Attend to rows 0 .. pos+T-1 of this layer.
    SmallVector<OpFoldResult> readOffsets = {
        b.getIndexAttr(layer), b.getIndexAttr(0), b.getIndexAttr(0),
        b.getIndexAttr(0)};
    SmallVector<OpFoldResult> readSizes = {
        b.getIndexAttr(1), rows, b.getIndexAttr(kv), b.getIndexAttr(e)};
    Value keys = tensor::ExtractSliceOp::create(
        b, loc, rowsType, kCache, readOffsets, readSizes, strides);
    Value values = tensor::ExtractSliceOp::create(
        b, loc, rowsType, vCache, readOffsets, readSizes, strides);
    x = add(x, linear(attention(q, keys, values), *wo, name("attention.wo")));

    Value h2 = rmsNorm(x, *ffnNorm, name("ffn_norm"));
    x = add(x, linear(swiglu(linear(h2, *w1, name("feed_forward.w1")),
                             linear(h2, *w3, name("feed_forward.w3"))),
                      *w2, name("feed_forward.w2")));
  }

  auto finalNorm = weight("norm");
  if (failed(finalNorm))
    return failure();
  Value classifier = embeddingTable;
  if (!cfg.tiedEmbeddings) {
    auto output = weight("output");
    if (failed(output))
      return failure();
    classifier = *output;
  }
  // The classifier is the layer `output` even when its weight is the
  // embedding table (tied).
  Value logits = linear(rmsNorm(x, *finalNorm, "norm"), classifier, "output");
  SmallVector<OpFoldResult> outOffsets = {b.getIndexAttr(0), b.getIndexAttr(0)};
  SmallVector<OpFoldResult> outSizes = {numTokens,
                                        b.getIndexAttr(cfg.vocabSize)};
  SmallVector<OpFoldResult> outStrides(2, b.getIndexAttr(1));
  Value written = tensor::InsertSliceOp::create(
      b, loc, logits, logitsOut, outOffsets, outSizes, outStrides);
  func::ReturnOp::create(b, loc, ValueRange{written, kCache, vCache});
  return success();
}

/// Checks the configuration before building anything.
static LogicalResult verifyConfig(const Checkpoint &checkpoint, Location loc) {
  const ModelConfig &c = checkpoint.config();
  auto fail = [&]() { return emitError(loc) << checkpoint.path() << ": "; };
  if (c.dim <= 0 || c.hiddenDim <= 0 || c.numLayers <= 0 || c.numHeads <= 0 ||
      c.numKVHeads <= 0 || c.vocabSize <= 0 || c.headDim <= 0)
    return fail() << "model dimensions must be positive";
  if (c.numHeads % c.numKVHeads != 0)
    return fail() << c.numKVHeads << " key/value heads do not divide "
                  << c.numHeads << " heads";
  if (c.headDim % 2 != 0)
    return fail() << "rotary embeddings need an even head dimension, got "
                  << c.headDim;
  return success();
}

FailureOr<OwningOpRef<ModuleOp>>
mlir::qlr::importLlama(MLIRContext *context, const Checkpoint &checkpoint,
                       const ::qlr::tokenizer::TokenizerData *tokenizer,
                       const ImportOptions &options) {
  context->loadDialect<QLRDialect, arith::ArithDialect, func::FuncDialect,
                       linalg::LinalgDialect, math::MathDialect,
                       tensor::TensorDialect>();
  Location loc = FileLineColLoc::get(context, checkpoint.path(), 0, 0);
  if (failed(verifyConfig(checkpoint, loc)))
    return failure();
  const ModelConfig &cfg = checkpoint.config();
  int64_t cacheRows = options.maxSeqLen > 0 ? options.maxSeqLen : cfg.maxSeqLen;
  if (cacheRows <= 0)
    return emitError(loc, "the context length is unknown; pass a maximum "
                          "sequence length");

  OwningOpRef<ModuleOp> module = ModuleOp::create(loc);
  OpBuilder b(context);
  auto i64 = [&](int64_t v) { return b.getI64IntegerAttr(v); };
  NamedAttrList config;
  config.append("dim", i64(cfg.dim));
  config.append("hidden_dim", i64(cfg.hiddenDim));
  config.append("layers", i64(cfg.numLayers));
  config.append("heads", i64(cfg.numHeads));
  config.append("kv_heads", i64(cfg.numKVHeads));
  config.append("head_dim", i64(cfg.headDim));
  config.append("vocab_size", i64(cfg.vocabSize));
  config.append("max_seq_len", i64(cacheRows));
  config.append("norm_eps", b.getF64FloatAttr(cfg.normEps));
  config.append("rope_theta", b.getF64FloatAttr(cfg.ropeTheta));
  config.append("tied_embeddings", b.getBoolAttr(cfg.tiedEmbeddings));
  config.append("source", b.getStringAttr(checkpoint.formatName()));
  (*module)->setAttr(kModelAttrName, b.getDictionaryAttr(config));
  if (tokenizer) {
    std::vector<uint8_t> bytes = ::qlr::tokenizer::serialize(*tokenizer);
    auto type = RankedTensorType::get({int64_t(bytes.size())}, b.getI8Type());
    (*module)->setAttr(kTokenizerAttrName,
                       DenseResourceElementsAttr::get(
                           type, "tokenizer",
                           HeapAsmResourceBlob::allocateAndCopyInferAlign(
                               ArrayRef<uint8_t>(bytes))));
  }

  Type f32 = b.getF32Type();
  int64_t dyn = ShapedType::kDynamic;
  auto cacheType = RankedTensorType::get(
      {cfg.numLayers, cacheRows, cfg.numKVHeads, cfg.headDim}, f32);
  auto logitsType = RankedTensorType::get({dyn, cfg.vocabSize}, f32);
  auto funcType =
      b.getFunctionType({RankedTensorType::get({dyn}, b.getI32Type()),
                         b.getIndexType(), logitsType, cacheType, cacheType},
                        {logitsType, cacheType, cacheType});
  b.setInsertionPointToEnd(module->getBody());
  auto func = func::FuncOp::create(b, loc, kForwardFuncName, funcType);
  func->setAttr("llvm.emit_c_interface", b.getUnitAttr());
  for (unsigned arg : {2u, 3u, 4u})
    func.setArgAttr(arg, "bufferization.writable", b.getBoolAttr(true));

  OpBuilder bodyBuilder(context);
  LlamaBuilder builder(bodyBuilder, loc, checkpoint, cacheRows);
  if (failed(builder.build(func)))
    return failure();
  return module;
}

FailureOr<ModelConfig> mlir::qlr::readModelConfig(ModuleOp module) {
  // Errors are located at the module but do not print it: a model module
  // holds hundreds of megabytes of weights.
  Location loc = module.getLoc();
  auto dict = module->getAttrOfType<DictionaryAttr>(kModelAttrName);
  if (!dict)
    return emitError(loc, "not a QLR model: no '")
           << kModelAttrName << "' attribute (was it made by qlr-import?)";
  ModelConfig c;
  bool ok = true;
  auto lacks = [&](StringRef kind, StringRef key) {
    emitError(loc, "model attribute lacks ") << kind << " '" << key << "'";
    ok = false;
  };
  auto getInt = [&](StringRef key, int64_t &out) {
    if (auto attr = dict.getAs<IntegerAttr>(key))
      out = attr.getInt();
    else
      lacks("integer", key);
  };
  auto getFloat = [&](StringRef key, float &out) {
    if (auto attr = dict.getAs<FloatAttr>(key))
      out = attr.getValueAsDouble();
    else
      lacks("float", key);
  };
  getInt("dim", c.dim);
  getInt("hidden_dim", c.hiddenDim);
  getInt("layers", c.numLayers);
  getInt("heads", c.numHeads);
  getInt("kv_heads", c.numKVHeads);
  getInt("head_dim", c.headDim);
  getInt("vocab_size", c.vocabSize);
  getInt("max_seq_len", c.maxSeqLen);
  getFloat("norm_eps", c.normEps);
  getFloat("rope_theta", c.ropeTheta);
  if (auto tied = dict.getAs<BoolAttr>("tied_embeddings"))
    c.tiedEmbeddings = tied.getValue();
  else
    lacks("bool", "tied_embeddings");
  if (!ok)
    return failure();
  return c;
}
