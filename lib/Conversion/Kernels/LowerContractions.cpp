//===- LowerContractions.cpp - Vectorised linear-layer kernels --*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#include "qlr/Conversion/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/SymbolTable.h"

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

private:
  OpBuilder &b;
  Location loc;
  Value x, w, y;
  int64_t numCols, depth, width;
  VectorType vecType;

  Value index(int64_t v) { return arith::ConstantIndexOp::create(b, loc, v); }
  Value add(Value a, int64_t c) {
    return c == 0 ? a : arith::AddIOp::create(b, loc, a, index(c)).getResult();
  }
  /// One rows x cols tile at (m, n) over the whole depth.
  void emitTile(Value m, Value n, int64_t rows, int64_t cols);
  /// Every token against the `cols` weight rows starting at n.
  void emitTokens(Value n, int64_t rows, int64_t cols);
};
} // namespace

void KernelBuilder::emitTile(Value m, Value n, int64_t rows, int64_t cols) {
  int64_t mainDepth = depth - depth % width;
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
      Value wv = read(w, add(n, j));
      for (int64_t i = 0; i < rows; ++i)
        result[i * cols + j] =
            vector::FMAOp::create(nb, loc, xs[i], wv, result[i * cols + j]);
    }
    return result;
  };
  SmallVector<Value> accs = init;
  if (mainDepth > 0) {
    auto loop = scf::ForOp::create(
        b, loc, index(0), index(mainDepth), index(width), init,
        [&](OpBuilder &nb, Location, Value k, ValueRange iterArgs) {
          OpBuilder::InsertionGuard guard(b);
          b.setInsertionPointToStart(nb.getInsertionBlock());
          scf::YieldOp::create(nb, loc, accumulate(b, k, iterArgs, false));
        });
    accs.assign(loop.getResults().begin(), loop.getResults().end());
  }
  if (mainDepth < depth)
    accs = accumulate(b, index(mainDepth), accs, /*masked=*/true);
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
void KernelBuilder::emitTokens(Value n, int64_t rows, int64_t cols) {
  Value tokens = memref::DimOp::create(b, loc, x, 0);
  Value rem = arith::RemUIOp::create(b, loc, tokens, index(rows));
  Value mainTokens = arith::SubIOp::create(b, loc, tokens, rem);
  auto loop = [&](Value from, Value to, int64_t tileRows) {
    scf::ForOp::create(b, loc, from, to, index(tileRows), ValueRange{},
                       [&](OpBuilder &nb, Location, Value m, ValueRange) {
                         OpBuilder::InsertionGuard guard(b);
                         b.setInsertionPointToStart(nb.getInsertionBlock());
                         emitTile(m, n, tileRows, cols);
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
          emitTokens(n[0], rows, cols);
        });
  if (mainCols < numCols)
    scf::ForOp::create(b, loc, index(mainCols), index(numCols), index(1),
                       ValueRange{},
                       [&](OpBuilder &nb, Location, Value n, ValueRange) {
                         OpBuilder::InsertionGuard guard(b);
                         b.setInsertionPointToStart(nb.getInsertionBlock());
                         emitTokens(n, rows, 1);
                         scf::YieldOp::create(b, loc);
                       });
}

/// Matches the bufferized contraction qlr-lower-to-linalg creates for a
/// linear layer with 2-D input: x [M, K], w [N, K] static, y [M, N], f32.
static bool isLinearContraction(linalg::GenericOp op) {
  if (!op->hasAttr(mlir::qlr::kContractionAttrName) ||
      !op.hasPureBufferSemantics() || op.getNumDpsInputs() != 2 ||
      op.getNumDpsInits() != 1)
    return false;
  auto x = dyn_cast<MemRefType>(op.getDpsInputs()[0].getType());
  auto w = dyn_cast<MemRefType>(op.getDpsInputs()[1].getType());
  auto y = dyn_cast<MemRefType>(op.getDpsInits()[0].getType());
  if (!x || !w || !y || x.getRank() != 2 || w.getRank() != 2 ||
      y.getRank() != 2 || !w.hasStaticShape() || !x.getElementType().isF32() ||
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

namespace {
struct QLRLowerContractionsPass
    : public mlir::qlr::impl::QLRLowerContractionsPassBase<
          QLRLowerContractionsPass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    if (vectorWidth < 1 || rows < 1 || cols < 1) {
      module.emitError("qlr-lower-contractions: vector-width, rows and cols "
                       "must be positive");
      return signalPassFailure();
    }
    SmallVector<linalg::GenericOp> contractions;
    module.walk([&](linalg::GenericOp op) {
      if (isLinearContraction(op))
        contractions.push_back(op);
    });
    SymbolTable symbols(module);
    llvm::StringMap<func::FuncOp> kernels;
    MLIRContext *ctx = module.getContext();
    Type f32 = Float32Type::get(ctx);
    for (linalg::GenericOp op : contractions) {
      auto w = cast<MemRefType>(op.getDpsInputs()[1].getType());
      int64_t n = w.getDimSize(0), k = w.getDimSize(1);
      // Kernel operands: unit innermost stride, everything else dynamic.
      auto layout = StridedLayoutAttr::get(ctx, ShapedType::kDynamic,
                                           {ShapedType::kDynamic, 1});
      auto xType = MemRefType::get({ShapedType::kDynamic, k}, f32, layout);
      auto wType = MemRefType::get({n, k}, f32, layout);
      auto yType = MemRefType::get({ShapedType::kDynamic, n}, f32, layout);
      std::string name = ("qlr_contraction_" + Twine(n) + "x" + Twine(k)).str();
      func::FuncOp &kernel = kernels[name];
      if (!kernel) {
        OpBuilder b(module.getBodyRegion());
        kernel = func::FuncOp::create(
            b, op.getLoc(), name, b.getFunctionType({xType, wType, yType}, {}));
        kernel.setPrivate();
        symbols.insert(kernel);
        Block *body = kernel.addEntryBlock();
        b.setInsertionPointToStart(body);
        KernelBuilder(b, op.getLoc(), body->getArgument(0),
                      body->getArgument(1), body->getArgument(2), n, k,
                      vectorWidth)
            .build(rows, cols);
        func::ReturnOp::create(b, op.getLoc());
      }
      OpBuilder b(op);
      // Named arrays: the ranges below must outlive the loop.
      Value operands[] = {op.getDpsInputs()[0], op.getDpsInputs()[1],
                          op.getDpsInits()[0]};
      Type types[] = {xType, wType, yType};
      SmallVector<Value> args;
      for (auto [value, type] : llvm::zip(operands, types))
        args.push_back(value.getType() == type
                           ? value
                           : memref::CastOp::create(b, op.getLoc(), type, value)
                                 .getResult());
      func::CallOp::create(b, op.getLoc(), kernel, args);
      op.erase();
    }
  }
};
} // namespace
