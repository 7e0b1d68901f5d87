//===- ApproximateMath.cpp - Vectorisable exp for the CPU -------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#include "qlr/Conversion/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Math/Transforms/Passes.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/TypeUtilities.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

#include <limits>

namespace mlir::qlr {
#define GEN_PASS_DEF_QLRAPPROXIMATEMATHPASS
#include "qlr/Conversion/Passes.h.inc"
} // namespace mlir::qlr

using namespace mlir;

/// Replaces `op` by selects around a fresh math.exp of the same operand,
/// which is returned: upstream's approximation clamps its input to
/// [-87.8, 88.8], so without them exp(-inf) would be 1e-38 instead of 0,
/// exp(+inf) finite and exp(NaN) a number.
static math::ExpOp guardSpecialValues(math::ExpOp op) {
  OpBuilder b(op);
  Location loc = op.getLoc();
  Value x = op.getOperand();
  Type type = x.getType();
  auto constant = [&](float value) -> Value {
    auto attr = b.getF32FloatAttr(value);
    if (auto vector = dyn_cast<VectorType>(type))
      return arith::ConstantOp::create(b, loc,
                                       DenseElementsAttr::get(vector, attr));
    return arith::ConstantOp::create(b, loc, attr);
  };
  auto exp = math::ExpOp::create(b, loc, x, op.getFastmathAttr());
  // Below ln(FLT_MIN) the result would be denormal: flushed to 0. Above
  // ln(FLT_MAX) it overflows.
  Value tiny = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OLT, x,
                                     constant(-87.33654f));
  Value huge = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OGT, x,
                                     constant(88.72283f));
  Value nan = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::UNO, x, x);
  Value result = arith::SelectOp::create(b, loc, tiny, constant(0.0f), exp);
  result = arith::SelectOp::create(
      b, loc, huge, constant(std::numeric_limits<float>::infinity()), result);
  result = arith::SelectOp::create(b, loc, nan, x, result);
  op.replaceAllUsesWith(result);
  op.erase();
  return exp;
}

namespace {
struct QLRApproximateMathPass
    : public mlir::qlr::impl::QLRApproximateMathPassBase<
          QLRApproximateMathPass> {
  void runOnOperation() override {
    SmallVector<math::ExpOp> exps;
    // Scalars and vectors: the patterns (and the selects) do not apply to
    // tensors, which the pipeline has turned into loops by then.
    getOperation()->walk([&](math::ExpOp op) {
      Type type = op.getType();
      if ((isa<FloatType>(type) || isa<VectorType>(type)) &&
          getElementTypeOrSelf(type).isF32())
        exps.push_back(op);
    });
    if (exps.empty())
      return;
    // Only the exps and what their rewrites create: a greedy rewrite of the
    // whole module would also fold and simplify everything else.
    SmallVector<Operation *> ops;
    for (math::ExpOp op : exps)
      ops.push_back(guardSpecialValues(op));
    RewritePatternSet patterns(&getContext());
    populateMathPolynomialApproximationPatterns(patterns, [](StringRef name) {
      return name == math::ExpOp::getOperationName();
    });
    GreedyRewriteConfig config;
    config.setStrictness(GreedyRewriteStrictness::ExistingAndNewOps);
    config.enableFolding(false);
    if (failed(applyOpPatternsGreedily(ops, std::move(patterns), config)))
      signalPassFailure();
  }
};
} // namespace
