//===- LowerContractions.cpp - Vectorised linear-layer kernels --*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#include "qlr/Conversion/Passes.h"
#include "qlr/Dialect/QLR/IR/QLR.h"

#include "mlir/Dialect/Affine/Utils.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "mlir/Transforms/RegionUtils.h"

namespace mlir::qlr {
#define GEN_PASS_DEF_QLRLOWERCONTRACTIONSPASS
#include "qlr/Conversion/Passes.h.inc"
} // namespace mlir::qlr

using namespace mlir;

namespace {
/// Emits the body of one kernel y[m, n] += sum_k x[m, k] * w[n, k].
class KernelBuilder {
public:
  KernelBuilder(OpBuilder &b, Location loc, Value x, Value w, Value y,
                int64_t n, int64_t k, int64_t width)
      : b(b), loc(loc), x(x), w(w), y(y), numCols(n), depth(k), width(width),
        vecType(VectorType::get({width}, b.getF32Type())) {}

  void build(int64_t rows, int64_t cols);
  /// Every token against the `cols` weight rows starting at row `wn` of the
  /// weight operand, writing output columns starting at n.
  void emitTokens(Value n, Value wn, int64_t rows, int64_t cols);

  /// The body of a packed-panel function: the weight rows [wn0, wn0 +
  /// panelCols) are copied, transposed, into a [kPanelDepth, panelCols]
  /// stack buffer one chunk of the depth at a time, and `rows` x panelCols
  /// tiles of the output columns [n0, n0 + panelCols) accumulate outer
  /// products of token scalars and panel vectors over the chunk. Nothing is
  /// reduced across vector lanes, and each panel vector loaded serves `rows`
  /// tokens. `panelCols` is a multiple of the vector width.
  void emitPanel(Value n0, Value wn0, int64_t rows, int64_t panelCols);

  /// Depth of a packed-panel chunk: 256 x 32 floats fill 32 KiB of L1.
  static constexpr int64_t kPanelDepth = 256;

private:
  OpBuilder &b;
  Location loc;
  Value x, w, y;
  /// `depth` is ShapedType::kDynamic when K is known only at run time.
  int64_t numCols, depth, width;
  VectorType vecType;

  Value index(int64_t v) { return arith::ConstantIndexOp::create(b, loc, v); }
  Value add(Value a, int64_t c) {
    return c == 0 ? a : arith::AddIOp::create(b, loc, a, index(c)).getResult();
  }
  /// One rows x cols tile at (m, n) over the whole depth, reading weight
  /// rows from wn.
  void emitTile(Value m, Value n, Value wn, int64_t rows, int64_t cols);
};
} // namespace

void KernelBuilder::emitTile(Value m, Value n, Value wn, int64_t rows,
                             int64_t cols) {
  Value zero = arith::ConstantOp::create(
      b, loc, DenseElementsAttr::get(vecType, b.getF32FloatAttr(0.0)));
  SmallVector<Value> init(rows * cols, zero);
  auto accumulate = [&](OpBuilder &nb, Value k, ValueRange accs,
                        bool masked) -> SmallVector<Value> {
    auto read = [&](Value source, Value row) -> Value {
      if (!masked)
        return vector::LoadOp::create(nb, loc, vecType, source,
                                      ValueRange{row, k});
      Value pad = arith::ConstantOp::create(nb, loc, nb.getF32FloatAttr(0.0));
      return vector::TransferReadOp::create(nb, loc, vecType, source,
                                            ValueRange{row, k}, pad,
                                            ArrayRef<bool>{false});
    };
    SmallVector<Value> xs, result(accs.begin(), accs.end());
    for (int64_t i = 0; i < rows; ++i)
      xs.push_back(read(x, add(m, i)));
    for (int64_t j = 0; j < cols; ++j) {
      Value wv = read(w, add(wn, j));
      for (int64_t i = 0; i < rows; ++i)
        result[i * cols + j] =
            vector::FMAOp::create(nb, loc, xs[i], wv, result[i * cols + j]);
    }
    return result;
  };
  // Full vectors over [0, mainDepth), then one masked vector for the rest.
  auto loop = [&](Value from, Value to, ValueRange accs, bool masked) {
    auto forOp = scf::ForOp::create(
        b, loc, from, to, index(width), accs,
        [&](OpBuilder &nb, Location, Value k, ValueRange iterArgs) {
          OpBuilder::InsertionGuard guard(b);
          b.setInsertionPointToStart(nb.getInsertionBlock());
          scf::YieldOp::create(nb, loc, accumulate(b, k, iterArgs, masked));
        });
    return SmallVector<Value>(forOp.getResults());
  };
  SmallVector<Value> accs = init;
  if (!ShapedType::isDynamic(depth)) {
    int64_t mainDepth = depth - depth % width;
    if (mainDepth > 0)
      accs = loop(index(0), index(mainDepth), accs, /*masked=*/false);
    if (mainDepth < depth)
      accs = accumulate(b, index(mainDepth), accs, /*masked=*/true);
  } else {
    // A depth known only at run time (a Gram matrix X^T X over the tokens):
    // the masked step is a loop of zero or one iterations.
    Value total = memref::DimOp::create(b, loc, x, 1);
    Value mainDepth = arith::SubIOp::create(
        b, loc, total, arith::RemUIOp::create(b, loc, total, index(width)));
    accs = loop(index(0), mainDepth, accs, /*masked=*/false);
    accs = loop(mainDepth, total, accs, /*masked=*/true);
  }
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) {
      Value sum = vector::ReductionOp::create(
          b, loc, vector::CombiningKind::ADD, accs[i * cols + j]);
      SmallVector<Value> at = {add(m, i), add(n, j)};
      Value old = memref::LoadOp::create(b, loc, y, at);
      memref::StoreOp::create(b, loc, arith::AddFOp::create(b, loc, old, sum),
                              y, at);
    }
}

/// Tokens [0, T) for one block of `cols` weight rows at n: full tiles of
/// `rows` tokens, then one token at a time. The block (cols x K weights)
/// stays in cache while every token passes over it.
void KernelBuilder::emitTokens(Value n, Value wn, int64_t rows, int64_t cols) {
  Value tokens = memref::DimOp::create(b, loc, x, 0);
  Value rem = arith::RemUIOp::create(b, loc, tokens, index(rows));
  Value mainTokens = arith::SubIOp::create(b, loc, tokens, rem);
  auto loop = [&](Value from, Value to, int64_t tileRows) {
    scf::ForOp::create(b, loc, from, to, index(tileRows), ValueRange{},
                       [&](OpBuilder &nb, Location, Value m, ValueRange) {
                         OpBuilder::InsertionGuard guard(b);
                         b.setInsertionPointToStart(nb.getInsertionBlock());
                         emitTile(m, n, wn, tileRows, cols);
                         scf::YieldOp::create(b, loc);
                       });
  };
  loop(index(0), mainTokens, rows);
  loop(mainTokens, tokens, 1);
}

void KernelBuilder::build(int64_t rows, int64_t cols) {
  // Blocks of weight rows are independent: run them in parallel (OpenMP when
  // the pipeline lowers scf.parallel to it). Leftover rows follow.
  int64_t mainCols = numCols - numCols % cols;
  if (mainCols > 0)
    scf::ParallelOp::create(
        b, loc, ValueRange{index(0)}, ValueRange{index(mainCols)},
        ValueRange{index(cols)}, [&](OpBuilder &nb, Location, ValueRange n) {
          OpBuilder::InsertionGuard guard(b);
          b.setInsertionPoint(nb.getInsertionBlock(), nb.getInsertionPoint());
          emitTokens(n[0], n[0], rows, cols);
        });
  if (mainCols < numCols)
    scf::ForOp::create(b, loc, index(mainCols), index(numCols), index(1),
                       ValueRange{},
                       [&](OpBuilder &nb, Location, Value n, ValueRange) {
                         OpBuilder::InsertionGuard guard(b);
                         b.setInsertionPointToStart(nb.getInsertionBlock());
                         emitTokens(n, n, rows, 1);
                         scf::YieldOp::create(b, loc);
                       });
}

void KernelBuilder::emitPanel(Value n0, Value wn0, int64_t rows,
                              int64_t panelCols) {
  int64_t vectors = panelCols / width;
  auto panelType = MemRefType::get({kPanelDepth, panelCols}, b.getF32Type());
  Value panel =
      memref::AllocaOp::create(b, loc, panelType, b.getI64IntegerAttr(64));
  Value tokens = memref::DimOp::create(b, loc, x, 0);
  Value total = ShapedType::isDynamic(depth)
                    ? memref::DimOp::create(b, loc, x, 1).getResult()
                    : index(depth);
  auto forLoop = [&](Value from, Value to, Value step, ValueRange init,
                     function_ref<SmallVector<Value>(Value, ValueRange)> body) {
    auto loop = scf::ForOp::create(
        b, loc, from, to, step, init,
        [&](OpBuilder &nb, Location, Value iv, ValueRange iterArgs) {
          OpBuilder::InsertionGuard guard(b);
          b.setInsertionPointToStart(nb.getInsertionBlock());
          scf::YieldOp::create(b, loc, body(iv, iterArgs));
        });
    return SmallVector<Value>(loop.getResults());
  };
  forLoop(index(0), total, index(kPanelDepth), {}, [&](Value k0, ValueRange) {
    Value chunk = arith::MinUIOp::create(
        b, loc, index(kPanelDepth), arith::SubIOp::create(b, loc, total, k0));
    // Pack: panel[k][j] = w[n0 + j][k0 + k], by width x width blocks
    // transposed in registers (vector.transpose), then element by element
    // for the last k % width columns.
    Value mainChunk = arith::SubIOp::create(
        b, loc, chunk, arith::RemUIOp::create(b, loc, chunk, index(width)));
    auto squareType = VectorType::get({width, width}, b.getF32Type());
    for (int64_t j = 0; j < panelCols; j += width)
      forLoop(index(0), mainChunk, index(width), {}, [&](Value k, ValueRange) {
        Value wk = arith::AddIOp::create(b, loc, k0, k);
        Value square = arith::ConstantOp::create(
            b, loc, DenseElementsAttr::get(squareType, b.getF32FloatAttr(0)));
        for (int64_t r = 0; r < width; ++r) {
          Value row = vector::LoadOp::create(b, loc, vecType, w,
                                             ValueRange{add(wn0, j + r), wk});
          square = vector::InsertOp::create(b, loc, row, square, r);
        }
        Value transposed = vector::TransposeOp::create(b, loc, square,
                                                       ArrayRef<int64_t>{1, 0});
        for (int64_t c = 0; c < width; ++c)
          vector::StoreOp::create(
              b, loc, vector::ExtractOp::create(b, loc, transposed, c), panel,
              ValueRange{add(k, c), index(j)});
        return SmallVector<Value>();
      });
    forLoop(index(0), index(panelCols), index(1), {}, [&](Value j, ValueRange) {
      Value row = arith::AddIOp::create(b, loc, wn0, j);
      forLoop(mainChunk, chunk, index(1), {}, [&](Value k, ValueRange) {
        Value v = memref::LoadOp::create(
            b, loc, w, ValueRange{row, arith::AddIOp::create(b, loc, k0, k)});
        memref::StoreOp::create(b, loc, v, panel, ValueRange{k, j});
        return SmallVector<Value>();
      });
      return SmallVector<Value>();
    });
    // Tiles of `tileRows` tokens x panelCols outputs.
    auto tile = [&](Value m, int64_t tileRows) {
      Value zero = arith::ConstantOp::create(
          b, loc, DenseElementsAttr::get(vecType, b.getF32FloatAttr(0.0)));
      SmallVector<Value> init(tileRows * vectors, zero);
      SmallVector<Value> accs = forLoop(
          index(0), chunk, index(1), init, [&](Value k, ValueRange accs) {
            SmallVector<Value> ws, result(accs.begin(), accs.end());
            for (int64_t v = 0; v < vectors; ++v)
              ws.push_back(vector::LoadOp::create(
                  b, loc, vecType, panel, ValueRange{k, index(v * width)}));
            Value xk = arith::AddIOp::create(b, loc, k0, k);
            for (int64_t i = 0; i < tileRows; ++i) {
              Value xs =
                  memref::LoadOp::create(b, loc, x, ValueRange{add(m, i), xk});
              Value xb = vector::BroadcastOp::create(b, loc, vecType, xs);
              for (int64_t v = 0; v < vectors; ++v)
                result[i * vectors + v] = vector::FMAOp::create(
                    b, loc, xb, ws[v], result[i * vectors + v]);
            }
            return result;
          });
      for (int64_t i = 0; i < tileRows; ++i)
        for (int64_t v = 0; v < vectors; ++v) {
          SmallVector<Value> at = {add(m, i), add(n0, v * width)};
          Value old = vector::LoadOp::create(b, loc, vecType, y, at);
          vector::StoreOp::create(
              b, loc, arith::AddFOp::create(b, loc, old, accs[i * vectors + v]),
              y, at);
        }
    };
    Value mainEnd = arith::SubIOp::create(
        b, loc, tokens, arith::RemUIOp::create(b, loc, tokens, index(rows)));
    forLoop(index(0), mainEnd, index(rows), {}, [&](Value m, ValueRange) {
      tile(m, rows);
      return SmallVector<Value>();
    });
    forLoop(mainEnd, tokens, index(1), {}, [&](Value m, ValueRange) {
      tile(m, 1);
      return SmallVector<Value>();
    });
    return SmallVector<Value>();
  });
}

/// Matches the bufferized contraction qlr-lower-to-linalg creates for a
/// linear layer with 2-D input: x [M, K], w [N, K] with N static, y [M, N],
/// f32. K may be dynamic in both x and w (a Gram matrix over the tokens).
static bool isLinearContraction(linalg::GenericOp op) {
  if (!op->hasAttr(mlir::qlr::kContractionAttrName) ||
      !op.hasPureBufferSemantics() || op.getNumDpsInputs() != 2 ||
      op.getNumDpsInits() != 1)
    return false;
  auto x = dyn_cast<MemRefType>(op.getDpsInputs()[0].getType());
  auto w = dyn_cast<MemRefType>(op.getDpsInputs()[1].getType());
  auto y = dyn_cast<MemRefType>(op.getDpsInits()[0].getType());
  if (!x || !w || !y || x.getRank() != 2 || w.getRank() != 2 ||
      y.getRank() != 2 || w.isDynamicDim(0) || !x.getElementType().isF32() ||
      !w.getElementType().isF32() || !y.getElementType().isF32())
    return false;
  // Each operand must have unit stride in its last dimension.
  for (MemRefType type : {x, w, y}) {
    SmallVector<int64_t> strides;
    int64_t offset;
    if (failed(type.getStridesAndOffset(strides, offset)) ||
        strides.back() != 1)
      return false;
  }
  return x.getDimSize(1) == w.getDimSize(1);
}

//===----------------------------------------------------------------------===//
// Fused dequantization
//===----------------------------------------------------------------------===//

namespace {
/// A quantized weight decoded by the `qlr.dequantize` generic of
/// qlr-lower-to-linalg into a buffer that only linear contractions read.
struct Decoder {
  linalg::GenericOp generic;
  memref::AllocOp alloc;
  /// Values the generic's body reads from above: scalar constants (cloned
  /// into the kernel) and everything else (passed to the kernel as
  /// arguments).
  SmallVector<Value> constants, captured;

  /// The kernel operands after x and y: the generic's inputs, then
  /// `captured`.
  SmallVector<Value> getOperands() {
    SmallVector<Value> operands(generic.getDpsInputs());
    llvm::append_range(operands, captured);
    return operands;
  }
};
} // namespace

/// Scalar constants are cloned into the kernel. Buffers, constant ones
/// included (a codebook, or scales too small for qlr-run to externalize),
/// are passed as arguments, so that layers share the kernel.
static bool isClonableConstant(Value value) {
  Operation *def = value.getDefiningOp();
  return def && !isa<ShapedType>(value.getType()) &&
         def->getNumOperands() == 0 && def->getNumRegions() == 0 &&
         def->getNumResults() == 1 && isMemoryEffectFree(def);
}

/// Returns the decoder of `contraction`'s weight if it can be fused into the
/// kernel: the weight is a memref.alloc filled by a tagged, element-wise
/// [N, K] generic (earlier in the same block, not reading its output, only
/// loading from memory) and otherwise only read as the weight of linear
/// contractions or deallocated.
static std::optional<Decoder> matchDecoder(linalg::GenericOp contraction) {
  Value weight = contraction.getDpsInputs()[1];
  auto alloc = weight.getDefiningOp<memref::AllocOp>();
  if (!alloc)
    return std::nullopt;
  linalg::GenericOp generic;
  for (OpOperand &use : weight.getUses()) {
    Operation *user = use.getOwner();
    if (isa<memref::DeallocOp>(user))
      continue;
    auto op = dyn_cast<linalg::GenericOp>(user);
    if (!op)
      return std::nullopt;
    if (op->hasAttr(mlir::qlr::kDequantizeAttrName)) {
      if (generic || !op.isDpsInit(&use))
        return std::nullopt;
      generic = op;
      continue;
    }
    if (!isLinearContraction(op) || use.getOperandNumber() != 1)
      return std::nullopt;
  }
  if (!generic || !generic.hasPureBufferSemantics() ||
      generic.getNumDpsInits() != 1 || generic.getNumLoops() != 2 ||
      generic.getNumReductionLoops() != 0 ||
      !generic.getMatchingIndexingMap(generic.getDpsInitOperand(0))
           .isIdentity() ||
      !generic.getBody()->getArguments().back().use_empty())
    return std::nullopt;
  if (generic->getBlock() != contraction->getBlock() ||
      !generic->isBeforeInBlock(contraction))
    return std::nullopt;
  for (Operation &op : generic.getBody()->without_terminator())
    if (op.getNumRegions() != 0 ||
        !(isMemoryEffectFree(&op) || isa<memref::LoadOp>(op)))
      return std::nullopt;
  Decoder decoder{generic, alloc, {}, {}};
  llvm::SetVector<Value> above;
  getUsedValuesDefinedAbove(generic.getRegion(), above);
  for (Value value : above) {
    if (isClonableConstant(value))
      decoder.constants.push_back(value);
    else
      decoder.captured.push_back(value);
  }
  return decoder;
}

/// True when `a` and `b` decode the same way (same body, constants and
/// operand types), so one kernel serves both.
static bool isSameDecoder(Decoder &a, Decoder &b) {
  if (a.constants.size() != b.constants.size() ||
      a.captured.size() != b.captured.size() ||
      a.generic->getNumOperands() != b.generic->getNumOperands())
    return false;
  DenseMap<Value, Value> same;
  for (auto [l, r] : llvm::zip(a.constants, b.constants)) {
    if (!OperationEquivalence::isEquivalentTo(
            l.getDefiningOp(), r.getDefiningOp(),
            OperationEquivalence::IgnoreLocations))
      return false;
    same[l] = r;
  }
  for (auto [l, r] : llvm::zip(a.captured, b.captured)) {
    if (l.getType() != r.getType())
      return false;
    same[l] = r;
  }
  for (auto [l, r] :
       llvm::zip(a.generic->getOperands(), b.generic->getOperands())) {
    if (l.getType() != r.getType())
      return false;
    same[l] = r;
  }
  return OperationEquivalence::isEquivalentTo(
      a.generic, b.generic,
      [&](Value l, Value r) { return success(l == r || same.lookup(l) == r); },
      [&](Value l, Value r) { same[l] = r; },
      OperationEquivalence::IgnoreLocations);
}

namespace {
/// How to decode `width` consecutive codes of a row with vector operations:
/// byte-aligned widths (8, 4, 2 bits) whose scale and zero point are the same
/// for the whole chunk.
struct VectorPlan {
  unsigned bits;
  bool codebook;
  /// Fraction bits of the stored zero points (`asymmetric = fractional`).
  unsigned zeroPointFractionBits;
  /// The packed codes [N, ceil(K * bits / 8)], the codebook (if any), the
  /// scales and the zero points (if any): inputs of the generic or values it
  /// captures. Scales and zero points are read at `scaleMap` (n, k).
  Value codes, table, scales, zeroPoints;
  AffineMap scaleMap;
};
} // namespace

/// True when the map from (n, k) to scales is constant over `width`
/// consecutive k starting at a multiple of `width`.
static bool isChunkInvariant(AffineMap map, int64_t width) {
  for (AffineExpr expr : map.getResults()) {
    if (!expr.isFunctionOfDim(1))
      continue;
    auto div = dyn_cast<AffineBinaryOpExpr>(expr);
    if (!div || div.getKind() != AffineExprKind::FloorDiv ||
        div.getLHS() != getAffineDimExpr(1, map.getContext()))
      return false;
    auto group = dyn_cast<AffineConstantExpr>(div.getRHS());
    if (!group || group.getValue() <= 0 || group.getValue() % width != 0)
      return false;
  }
  return true;
}

static bool isScaleType(Type type) {
  return isa<Float32Type, Float16Type, BFloat16Type>(type);
}

/// Recognises the decoders qlr-lower-to-linalg builds for the formats the
/// vector decoder handles: scales (and zero points) are inputs 0 (and 1) of
/// the generic, or rank-0 buffers its body loads (one scale per tensor).
static std::optional<VectorPlan> planVectorDecode(Decoder &decoder,
                                                  int64_t width) {
  linalg::GenericOp generic = decoder.generic;
  auto format = dyn_cast_or_null<mlir::qlr::FormatAttr>(
      generic->getAttr(mlir::qlr::kDequantizeAttrName));
  if (!format)
    return std::nullopt;
  unsigned bits = format.getBits();
  if ((bits != 2 && bits != 4 && bits != 8) || (width * bits) % 8 != 0)
    return std::nullopt;
  VectorPlan plan{bits,
                  format.isCodebook(),
                  format.getZeroPointFractionBits(),
                  Value(),
                  Value(),
                  Value(),
                  Value(),
                  AffineMap()};
  int64_t numInputs = generic.getNumDpsInputs();
  if (numInputs > 0) {
    if (numInputs != (format.hasZeroPoints() ? 2 : 1))
      return std::nullopt;
    OpOperand *scales = generic.getDpsInputOperand(0);
    plan.scales = scales->get();
    plan.scaleMap = generic.getMatchingIndexingMap(scales);
    if (numInputs == 2) {
      OpOperand *zeroPoints = generic.getDpsInputOperand(1);
      if (generic.getMatchingIndexingMap(zeroPoints) != plan.scaleMap)
        return std::nullopt;
      plan.zeroPoints = zeroPoints->get();
    }
  } else {
    plan.scaleMap = AffineMap::get(2, 0, {}, generic.getContext());
  }
  // The memrefs the body loads from: the codes (i8, rank 2, unit innermost
  // stride), the codebook (f32, rank 1) and a single scale and zero point
  // (rank 0).
  for (Operation &op : generic.getBody()->without_terminator()) {
    auto load = dyn_cast<memref::LoadOp>(op);
    if (!load)
      continue;
    Value memref = load.getMemRef();
    MemRefType type = load.getMemRefType();
    Type element = type.getElementType();
    auto setOnce = [&](Value &slot) {
      if (slot && slot != memref)
        return false;
      slot = memref;
      return true;
    };
    bool ok = false;
    if (type.getRank() == 2 && element.isInteger(8)) {
      SmallVector<int64_t> strides;
      int64_t offset;
      ok = succeeded(type.getStridesAndOffset(strides, offset)) &&
           strides.back() == 1 && setOnce(plan.codes);
    } else if (plan.codebook && type.getRank() == 1 && element.isF32() &&
               type.hasStaticShape() &&
               type.getDimSize(0) == (int64_t(1) << bits)) {
      ok = setOnce(plan.table);
    } else if (numInputs == 0 && type.getRank() == 0 && isScaleType(element)) {
      ok = setOnce(plan.scales);
    } else if (numInputs == 0 && type.getRank() == 0 && element.isInteger(8)) {
      ok = setOnce(plan.zeroPoints);
    }
    if (!ok)
      return std::nullopt;
  }
  if (!plan.codes || !plan.scales || plan.codebook != bool(plan.table) ||
      format.hasZeroPoints() != bool(plan.zeroPoints) ||
      !isScaleType(cast<MemRefType>(plan.scales.getType()).getElementType()) ||
      (plan.zeroPoints && !cast<MemRefType>(plan.zeroPoints.getType())
                               .getElementType()
                               .isInteger(8)) ||
      !isChunkInvariant(plan.scaleMap, width))
    return std::nullopt;
  return plan;
}

namespace {
/// Emits the decoding of weight rows into a scratch buffer inside a kernel.
/// `mapping` maps the decoder's inputs, captured values and constants to
/// values of the kernel.
class DecodeBuilder {
public:
  DecodeBuilder(OpBuilder &b, Location loc, Decoder &decoder,
                const IRMapping &mapping, int64_t depth, int64_t width)
      : b(b), loc(loc), decoder(decoder), mapping(mapping), depth(depth),
        width(width), plan(planVectorDecode(decoder, width)) {}

  /// scratch[r, k] = W[row0 + r, k] for r < numRows, k < K.
  void build(Value row0, int64_t numRows, Value scratch);

private:
  OpBuilder &b;
  Location loc;
  Decoder &decoder;
  const IRMapping &mapping;
  int64_t depth, width;
  std::optional<VectorPlan> plan;

  Value index(int64_t v) { return arith::ConstantIndexOp::create(b, loc, v); }
  /// Loads input `i` of the generic at its indexing map applied to (row, k).
  Value loadInput(int64_t i, Value row, Value k);
  /// One element, by cloning the generic's body.
  void emitScalar(Value row, Value k, Value r, Value scratch);
  /// `width` elements at a multiple-of-width k, following `plan`.
  void emitVector(Value row, Value k, Value r, Value scratch);
};
} // namespace

Value DecodeBuilder::loadInput(int64_t i, Value row, Value k) {
  OpOperand *input = decoder.generic.getDpsInputOperand(i);
  AffineMap map = decoder.generic.getMatchingIndexingMap(input);
  std::optional<SmallVector<Value, 8>> indices =
      affine::expandAffineMap(b, loc, map, ValueRange{row, k});
  assert(indices && "indexing maps have no symbols");
  return memref::LoadOp::create(b, loc, mapping.lookup(input->get()), *indices);
}

void DecodeBuilder::emitScalar(Value row, Value k, Value r, Value scratch) {
  linalg::GenericOp generic = decoder.generic;
  IRMapping local = mapping;
  Block *body = generic.getBody();
  for (int64_t i = 0, e = generic.getNumDpsInputs(); i < e; ++i)
    local.map(body->getArgument(i), loadInput(i, row, k));
  for (Operation &op : *body) {
    if (auto indexOp = dyn_cast<linalg::IndexOp>(op)) {
      local.map(indexOp.getResult(), indexOp.getDim() == 0 ? row : k);
    } else if (auto yield = dyn_cast<linalg::YieldOp>(op)) {
      memref::StoreOp::create(b, loc, local.lookup(yield.getValues()[0]),
                              scratch, ValueRange{r, k});
    } else {
      b.clone(op, local);
    }
  }
}

void DecodeBuilder::emitVector(Value row, Value k, Value r, Value scratch) {
  Type f32 = b.getF32Type(), i8 = b.getI8Type();
  auto vec = [&](int64_t lanes, Type element) {
    return VectorType::get({lanes}, element);
  };
  auto splat = [&](VectorType type, Attribute value) -> Value {
    return arith::ConstantOp::create(b, loc,
                                     DenseElementsAttr::get(type, value));
  };
  unsigned bits = plan->bits;
  int64_t perByte = 8 / bits, numBytes = width / perByte;
  // Byte `k / perByte` of the row starts this chunk: bit k * bits.
  Value byteIdx = arith::DivUIOp::create(b, loc, k, index(perByte));
  Value bytes = vector::LoadOp::create(b, loc, vec(numBytes, i8),
                                       mapping.lookup(plan->codes),
                                       ValueRange{row, byteIdx});
  // Unpack: the j-th field of every byte, then interleave the fields so that
  // code c of byte i lands in lane i * perByte + c (little-endian order).
  SmallVector<Value> fields;
  for (unsigned j = 0; j < unsigned(perByte); ++j) {
    Value field = bytes;
    if (j > 0)
      field = arith::ShRUIOp::create(
          b, loc, field,
          splat(vec(numBytes, i8), b.getIntegerAttr(i8, j * bits)));
    if (bits < 8 && j + 1 < unsigned(perByte))
      field = arith::AndIOp::create(
          b, loc, field,
          splat(vec(numBytes, i8), b.getIntegerAttr(i8, (1 << bits) - 1)));
    fields.push_back(field);
  }
  // interleave(f0, f1) for 4 bits; interleave(interleave(f0, f2),
  // interleave(f1, f3)) for 2 bits.
  while (fields.size() > 1) {
    size_t half = fields.size() / 2;
    SmallVector<Value> next;
    for (size_t j = 0; j < half; ++j)
      next.push_back(
          vector::InterleaveOp::create(b, loc, fields[j], fields[j + half]));
    fields = std::move(next);
  }
  Value codes = fields.front();
  VectorType vecType = vec(width, f32);
  auto loadScale = [&](Value source) -> Value {
    std::optional<SmallVector<Value, 8>> indices =
        affine::expandAffineMap(b, loc, plan->scaleMap, ValueRange{row, k});
    return memref::LoadOp::create(b, loc, mapping.lookup(source), *indices);
  };
  Value scale = loadScale(plan->scales);
  if (scale.getType() != f32)
    scale = arith::ExtFOp::create(b, loc, f32, scale);
  scale = vector::BroadcastOp::create(b, loc, vecType, scale);
  Value value;
  if (plan->codebook) {
    Value indices =
        arith::ExtUIOp::create(b, loc, vec(width, b.getI32Type()), codes);
    Value mask = splat(vec(width, b.getI1Type()), b.getBoolAttr(true));
    Value pass = splat(vecType, b.getF32FloatAttr(0.0));
    Value entries =
        vector::GatherOp::create(b, loc, vecType, mapping.lookup(plan->table),
                                 ValueRange{index(0)}, indices, mask, pass);
    value = arith::MulFOp::create(b, loc, scale, entries);
  } else {
    Value zero;
    if (plan->zeroPoints) {
      Value stored =
          arith::UIToFPOp::create(b, loc, f32, loadScale(plan->zeroPoints));
      // Fractional zero points: zs / 2^F, exact in f32.
      if (unsigned fractionBits = plan->zeroPointFractionBits)
        stored = arith::MulFOp::create(
            b, loc, stored,
            arith::ConstantOp::create(
                b, loc, b.getF32FloatAttr(1.0 / (1 << fractionBits))));
      zero = vector::BroadcastOp::create(b, loc, vecType, stored);
    } else
      zero = splat(vecType, b.getF32FloatAttr(double(1 << (bits - 1))));
    // Exact in f32 for codes below 2^24: the same value as the scalar
    // decoder's integer subtraction.
    Value centered = arith::SubFOp::create(
        b, loc, arith::UIToFPOp::create(b, loc, vecType, codes), zero);
    value = arith::MulFOp::create(b, loc, scale, centered);
  }
  vector::StoreOp::create(b, loc, value, scratch, ValueRange{r, k});
}

void DecodeBuilder::build(Value row0, int64_t numRows, Value scratch) {
  int64_t vectorDepth = plan ? depth - depth % width : 0;
  auto loop = [&](Value from, Value to, Value step,
                  function_ref<void(Value)> bodyFn) {
    scf::ForOp::create(b, loc, from, to, step, ValueRange{},
                       [&](OpBuilder &nb, Location, Value iv, ValueRange) {
                         OpBuilder::InsertionGuard guard(b);
                         b.setInsertionPointToStart(nb.getInsertionBlock());
                         bodyFn(iv);
                         scf::YieldOp::create(b, loc);
                       });
  };
  loop(index(0), index(numRows), index(1), [&](Value r) {
    Value row = arith::AddIOp::create(b, loc, row0, r);
    if (vectorDepth > 0)
      loop(index(0), index(vectorDepth), index(width),
           [&](Value k) { emitVector(row, k, r, scratch); });
    if (vectorDepth < depth)
      loop(index(vectorDepth), index(depth), index(1),
           [&](Value k) { emitScalar(row, k, r, scratch); });
  });
}

namespace {
/// Builds the kernel of a contraction with a fused decoder:
///
///   kernel(x, y, decoder operands...):
///     scf.parallel over blocks of `cols` weight rows: call block(n, ...)
///     leftover rows one by one: call row(n, ...)
///   block(n, x, y, decoder operands...):
///     scratch = memref.alloca [cols, K]
///     decode weight rows n .. n + cols into scratch
///     the register tiles of every token against scratch
///
/// The scratch buffer lives on the stack of a function of its own: a call
/// is an allocation scope whose body may hold loops.
class FusedKernelBuilder {
public:
  FusedKernelBuilder(ModuleOp module, SymbolTable &symbols, Decoder &decoder,
                     int64_t n, int64_t k, int64_t width, int64_t rows,
                     int64_t cols, int64_t packedMinTokens, int64_t panelRows,
                     int64_t panelCols)
      : module(module), symbols(symbols), decoder(decoder), n(n), k(k),
        width(width), rows(rows), cols(cols), packedMinTokens(packedMinTokens),
        panelRows(panelRows), panelCols(panelCols) {}

  func::FuncOp build(StringRef name, TypeRange types);

private:
  ModuleOp module;
  SymbolTable &symbols;
  Decoder &decoder;
  int64_t n, k, width, rows, cols;
  int64_t packedMinTokens, panelRows, panelCols;

  /// A function (row0, x, y, decoder operands...) that decodes weight rows
  /// [row0, row0 + blockRows) into a stack buffer and runs every token
  /// against them: dot-product tiles, or (`panel`) a packed panel of
  /// blockRows = panelCols rows.
  func::FuncOp buildBlock(StringRef name, TypeRange types, int64_t blockRows,
                          bool panel = false);
};
} // namespace

func::FuncOp FusedKernelBuilder::buildBlock(StringRef name, TypeRange types,
                                            int64_t blockRows, bool panel) {
  Location loc = decoder.generic.getLoc();
  OpBuilder b(module.getBodyRegion());
  SmallVector<Type> argTypes = {b.getIndexType()};
  llvm::append_range(argTypes, types);
  auto func =
      func::FuncOp::create(b, loc, name, b.getFunctionType(argTypes, {}));
  func.setPrivate();
  symbols.insert(func);
  Block *body = func.addEntryBlock();
  b.setInsertionPointToStart(body);
  IRMapping mapping;
  for (Value constant : decoder.constants)
    b.clone(*constant.getDefiningOp(), mapping);
  mapping.map(decoder.getOperands(), body->getArguments().drop_front(3));
  auto scratchType = MemRefType::get({blockRows, k}, b.getF32Type());
  Value scratch =
      memref::AllocaOp::create(b, loc, scratchType, b.getI64IntegerAttr(64));
  Value row0 = body->getArgument(0);
  DecodeBuilder(b, loc, decoder, mapping, k, width)
      .build(row0, blockRows, scratch);
  KernelBuilder kernel(b, loc, body->getArgument(1), scratch,
                       body->getArgument(2), n, k, width);
  Value zero = arith::ConstantIndexOp::create(b, loc, 0);
  if (panel)
    kernel.emitPanel(row0, zero, panelRows, blockRows);
  else
    kernel.emitTokens(row0, zero, rows, blockRows);
  func::ReturnOp::create(b, loc);
  return func;
}

func::FuncOp FusedKernelBuilder::build(StringRef name, TypeRange types) {
  Location loc = decoder.generic.getLoc();
  OpBuilder b(module.getBodyRegion());
  auto kernel =
      func::FuncOp::create(b, loc, name, b.getFunctionType(types, {}));
  kernel.setPrivate();
  symbols.insert(kernel);
  StringRef kernelName = kernel.getSymName();
  // Many tokens: panels of decoded rows first, then the rows left over as
  // below. Few tokens: blocks of `cols` rows, then rows one at a time.
  int64_t panelEnd = packedMinTokens > 0 ? n - n % panelCols : 0;
  func::FuncOp panel, block, tail;
  if (panelEnd > 0)
    panel = buildBlock((kernelName + "_panel").str(), types, panelCols,
                       /*panel=*/true);
  if (n >= cols)
    block = buildBlock((kernelName + "_block").str(), types, cols);
  if (n % cols != 0 || (n - panelEnd) % cols != 0)
    tail = buildBlock((kernelName + "_row").str(), types, 1);
  Block *body = kernel.addEntryBlock();
  b.setInsertionPointToStart(body);
  auto index = [&](OpBuilder &nb, int64_t v) -> Value {
    return arith::ConstantIndexOp::create(nb, loc, v);
  };
  auto call = [&](OpBuilder &nb, func::FuncOp callee, Value row) {
    SmallVector<Value> args = {row};
    llvm::append_range(args, body->getArguments());
    func::CallOp::create(nb, loc, callee, args);
  };
  // Rows [from, n) in parallel blocks of `cols`, then one at a time.
  auto dotRows = [&](OpBuilder &nb, int64_t from) {
    int64_t mainRows = from + (n - from) - (n - from) % cols;
    if (mainRows > from)
      scf::ParallelOp::create(nb, loc, ValueRange{index(nb, from)},
                              ValueRange{index(nb, mainRows)},
                              ValueRange{index(nb, cols)},
                              [&](OpBuilder &pb, Location, ValueRange ivs) {
                                call(pb, block, ivs[0]);
                              });
    if (mainRows < n)
      scf::ForOp::create(nb, loc, index(nb, mainRows), index(nb, n),
                         index(nb, 1), ValueRange{},
                         [&](OpBuilder &fb, Location, Value iv, ValueRange) {
                           call(fb, tail, iv);
                           scf::YieldOp::create(fb, loc);
                         });
  };
  if (panel) {
    Value tokens = memref::DimOp::create(b, loc, body->getArgument(0), 0);
    Value many = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::uge,
                                       tokens, index(b, packedMinTokens));
    scf::IfOp::create(
        b, loc, many,
        [&](OpBuilder &nb, Location) {
          scf::ParallelOp::create(nb, loc, ValueRange{index(nb, 0)},
                                  ValueRange{index(nb, panelEnd)},
                                  ValueRange{index(nb, panelCols)},
                                  [&](OpBuilder &pb, Location, ValueRange ivs) {
                                    call(pb, panel, ivs[0]);
                                  });
          dotRows(nb, panelEnd);
          scf::YieldOp::create(nb, loc);
        },
        [&](OpBuilder &nb, Location) {
          dotRows(nb, 0);
          scf::YieldOp::create(nb, loc);
        });
  } else {
    dotRows(b, 0);
  }
  func::ReturnOp::create(b, loc);
  return kernel;
}

namespace {
struct QLRLowerContractionsPass
    : public mlir::qlr::impl::QLRLowerContractionsPassBase<
          QLRLowerContractionsPass> {
  using Base::Base;

  /// The kernel of a float weight [n, k]: packed panels when there are at
  /// least `packedMinTokens` tokens (prefill, calibration, Gram matrices),
  /// the register-tiled dot products otherwise (decoding).
  func::FuncOp buildFloatKernel(ModuleOp module, SymbolTable &symbols,
                                Location loc, StringRef name,
                                ArrayRef<Type> types, int64_t n, int64_t k) {
    OpBuilder b(module.getBodyRegion());
    auto makeFunc = [&](StringRef funcName, ArrayRef<Type> argTypes) {
      auto func = func::FuncOp::create(b, loc, funcName,
                                       b.getFunctionType(argTypes, {}));
      func.setPrivate();
      symbols.insert(func);
      return func;
    };
    int64_t panelCols = panelVectors * vectorWidth;
    int64_t mainCols = packedMinTokens > 0 ? n - n % panelCols : 0;
    func::FuncOp panel;
    if (mainCols > 0) {
      // A function per panel: its stack buffer is freed when it returns,
      // also when the panels run on OpenMP threads.
      SmallVector<Type> panelTypes = {b.getIndexType()};
      llvm::append_range(panelTypes, types);
      panel = makeFunc((name + "_panel").str(), panelTypes);
      Block *body = panel.addEntryBlock();
      OpBuilder pb = OpBuilder::atBlockBegin(body);
      KernelBuilder(pb, loc, body->getArgument(1), body->getArgument(2),
                    body->getArgument(3), n, k, vectorWidth)
          .emitPanel(body->getArgument(0), body->getArgument(0), panelRows,
                     panelCols);
      func::ReturnOp::create(pb, loc);
    }
    func::FuncOp kernel = makeFunc(name, types);
    Block *body = kernel.addEntryBlock();
    b.setInsertionPointToStart(body);
    Value x = body->getArgument(0), w = body->getArgument(1),
          y = body->getArgument(2);
    auto dot = [&](OpBuilder &nb) {
      KernelBuilder(nb, loc, x, w, y, n, k, vectorWidth).build(rows, cols);
    };
    if (!panel) {
      dot(b);
      func::ReturnOp::create(b, loc);
      return kernel;
    }
    auto index = [&](OpBuilder &nb, int64_t v) -> Value {
      return arith::ConstantIndexOp::create(nb, loc, v);
    };
    Value tokens = memref::DimOp::create(b, loc, x, 0);
    Value many = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::uge,
                                       tokens, index(b, packedMinTokens));
    scf::IfOp::create(
        b, loc, many,
        [&](OpBuilder &nb, Location) {
          scf::ParallelOp::create(
              nb, loc, ValueRange{index(nb, 0)},
              ValueRange{index(nb, mainCols)}, ValueRange{index(nb, panelCols)},
              [&](OpBuilder &pb, Location, ValueRange ivs) {
                func::CallOp::create(pb, loc, panel,
                                     ValueRange{ivs[0], x, w, y});
              });
          // Weight rows past the last full panel: one at a time.
          if (mainCols < n) {
            scf::ForOp::create(
                nb, loc, index(nb, mainCols), index(nb, n), index(nb, 1),
                ValueRange{},
                [&](OpBuilder &fb, Location, Value row, ValueRange) {
                  KernelBuilder(fb, loc, x, w, y, n, k, vectorWidth)
                      .emitTokens(row, row, rows, 1);
                  scf::YieldOp::create(fb, loc);
                });
          }
          scf::YieldOp::create(nb, loc);
        },
        [&](OpBuilder &nb, Location) {
          dot(nb);
          scf::YieldOp::create(nb, loc);
        });
    func::ReturnOp::create(b, loc);
    return kernel;
  }

  void runOnOperation() override {
    ModuleOp module = getOperation();
    if (vectorWidth < 1 || rows < 1 || cols < 1 || panelRows < 1 ||
        panelVectors < 1 || packedMinTokens < 0) {
      module.emitError("qlr-lower-contractions: vector-width, rows, cols, "
                       "panel-rows and panel-vectors must be positive and "
                       "packed-min-tokens not negative");
      return signalPassFailure();
    }
    SmallVector<linalg::GenericOp> contractions;
    module.walk([&](linalg::GenericOp op) {
      if (isLinearContraction(op))
        contractions.push_back(op);
    });
    SymbolTable symbols(module);
    llvm::StringMap<func::FuncOp> kernels;
    // Fused kernels by name, each with the decoder it was built from.
    llvm::StringMap<SmallVector<std::pair<Decoder, func::FuncOp>>> fusedKernels;
    // Decoders to erase once every contraction reading them is lowered.
    llvm::SetVector<Operation *> fusedGenerics;
    SmallVector<Decoder> decoders;
    MLIRContext *ctx = module.getContext();
    Type f32 = Float32Type::get(ctx);
    for (linalg::GenericOp op : contractions) {
      auto w = cast<MemRefType>(op.getDpsInputs()[1].getType());
      int64_t n = w.getDimSize(0), k = w.getDimSize(1);
      bool dynamicDepth = ShapedType::isDynamic(k);
      // Kernel operands: unit innermost stride, everything else dynamic.
      auto layout = StridedLayoutAttr::get(ctx, ShapedType::kDynamic,
                                           {ShapedType::kDynamic, 1});
      auto xType = MemRefType::get({ShapedType::kDynamic, k}, f32, layout);
      auto wType = MemRefType::get({n, k}, f32, layout);
      auto yType = MemRefType::get({ShapedType::kDynamic, n}, f32, layout);
      std::string name = ("qlr_contraction_" + Twine(n) + "x" +
                          (dynamicDepth ? Twine("dyn") : Twine(k)))
                             .str();
      OpBuilder b(op);
      auto castTo = [&](Value value, Type type) -> Value {
        return value.getType() == type
                   ? value
                   : memref::CastOp::create(b, op.getLoc(), type, value)
                         .getResult();
      };

      std::optional<Decoder> decoder;
      if (!dynamicDepth)
        decoder = matchDecoder(op);
      if (decoder) {
        // The kernel decodes the weight block by block: x, y, then what the
        // decoder reads.
        SmallVector<Value> args = {castTo(op.getDpsInputs()[0], xType),
                                   castTo(op.getDpsInits()[0], yType)};
        llvm::append_range(args, decoder->getOperands());
        if (auto format = dyn_cast<mlir::qlr::FormatAttr>(
                decoder->generic->getAttr(mlir::qlr::kDequantizeAttrName)))
          name += "_" + format.getAliasName();
        else
          name += "_dequantize";
        func::FuncOp kernel;
        auto &candidates = fusedKernels[name];
        for (auto &[other, func] : candidates)
          if (isSameDecoder(other, *decoder)) {
            kernel = func;
            break;
          }
        if (!kernel) {
          kernel = FusedKernelBuilder(module, symbols, *decoder, n, k,
                                      vectorWidth, rows, cols, packedMinTokens,
                                      panelRows, panelVectors * vectorWidth)
                       .build(name, ValueRange(args).getTypes());
          candidates.emplace_back(*decoder, kernel);
        }
        func::CallOp::create(b, op.getLoc(), kernel, args);
        op.erase();
        if (fusedGenerics.insert(decoder->generic))
          decoders.push_back(*decoder);
        continue;
      }

      func::FuncOp &kernel = kernels[name];
      if (!kernel)
        kernel = buildFloatKernel(module, symbols, op.getLoc(), name,
                                  {xType, wType, yType}, n, k);
      func::CallOp::create(b, op.getLoc(), kernel,
                           ValueRange{castTo(op.getDpsInputs()[0], xType),
                                      castTo(op.getDpsInputs()[1], wType),
                                      castTo(op.getDpsInits()[0], yType)});
      op.erase();
    }
    // The float weights of fused decoders are no longer needed.
    for (Decoder &decoder : decoders) {
      Value weight = decoder.alloc.getResult();
      decoder.generic.erase();
      for (Operation *user : llvm::make_early_inc_range(weight.getUsers()))
        user->erase();
      decoder.alloc.erase();
    }
  }
};
} // namespace
