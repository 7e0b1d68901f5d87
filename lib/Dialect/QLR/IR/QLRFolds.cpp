//===- QLRFolds.cpp - QLR folders and canonicalizations ---------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// Only rewrites that are exact belong here. In particular
// `qlr.dequantize(qlr.quantize(x))` is *not* `x` and is never folded.
//
//===----------------------------------------------------------------------===//

#include "qlr/Dialect/QLR/IR/QLROps.h"

#include "mlir/IR/Matchers.h"
#include "mlir/IR/PatternMatch.h"

using namespace mlir;
using namespace mlir::qlr;

/// pack(unpack(q)) -> q, when every storage operand comes from the same
/// unpack of a value of the result type.
OpFoldResult PackOp::fold(FoldAdaptor) {
  auto unpack = getCodes().getDefiningOp<UnpackOp>();
  if (!unpack || unpack.getInput().getType() != getType() ||
      getCodes() != unpack.getCodes() || getScales() != unpack.getScales() ||
      getZeroPoints() != unpack.getZeroPoints())
    return {};
  return unpack.getInput();
}

/// unpack(pack(codes, scales, zp)) -> codes, scales, zp.
LogicalResult UnpackOp::fold(FoldAdaptor,
                             SmallVectorImpl<OpFoldResult> &results) {
  auto pack = getInput().getDefiningOp<PackOp>();
  if (!pack)
    return failure();
  results.push_back(pack.getCodes());
  results.push_back(pack.getScales());
  if (Value zeroPoints = pack.getZeroPoints())
    results.push_back(zeroPoints);
  return success();
}

namespace {
/// linear(x, dequantize(w)) -> linear(x, w): qlr.linear decodes a compressed
/// weight exactly as qlr.dequantize does, and keeping the weight compressed
/// lets lowerings fuse the decoding into the matrix product.
struct FuseDequantizeIntoLinear : public OpRewritePattern<LinearOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(LinearOp op,
                                PatternRewriter &rewriter) const override {
    auto dequantize = op.getWeight().getDefiningOp<DequantizeOp>();
    if (!dequantize)
      return rewriter.notifyMatchFailure(op, "weight is not dequantized");
    rewriter.modifyOpInPlace(
        op, [&] { op.getWeightMutable().assign(dequantize.getInput()); });
    return success();
  }
};
} // namespace

void LinearOp::getCanonicalizationPatterns(RewritePatternSet &results,
                                           MLIRContext *context) {
  results.add<FuseDequantizeIntoLinear>(context);
}
