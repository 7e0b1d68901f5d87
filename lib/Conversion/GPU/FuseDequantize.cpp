//===- FuseDequantize.cpp - Decoders into linear layers ---------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// Fuses the element-wise decoder of a quantized weight into the linear-layer
// contractions and the convolutions that read it, with upstream element-wise
// fusion, so that a kernel decodes each weight element in registers where it
// multiplies it and the float weight is never materialised.
//
//===----------------------------------------------------------------------===//

#include "qlr/Conversion/Passes.h"

#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Linalg/Transforms/Transforms.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/PatternMatch.h"
#include "llvm/ADT/SmallBitVector.h"

namespace mlir::qlr {
#define GEN_PASS_DEF_QLRFUSEDEQUANTIZEPASS
#include "qlr/Conversion/Passes.h.inc"
} // namespace mlir::qlr

using namespace mlir;

namespace {

/// The decoder generic feeding `operand`, when there is one.
static linalg::GenericOp getDecoder(OpOperand &operand) {
  auto decoder = operand.get().getDefiningOp<linalg::GenericOp>();
  if (!decoder || !decoder->hasAttr(mlir::qlr::kDequantizeAttrName))
    return {};
  return decoder;
}

/// The loops of `op` that only `fused`'s indexing map gives a range to (as
/// a plain dimension): a convolution's filter is the only operand indexed
/// by the kernel window loops alone, so fusing its producer away would
/// leave those loops without a size.
static SmallVector<unsigned> loopsOnlySizedBy(linalg::GenericOp op,
                                              OpOperand &fused) {
  llvm::SmallBitVector sized(op.getNumLoops());
  for (OpOperand &operand : op->getOpOperands()) {
    if (&operand == &fused)
      continue;
    for (AffineExpr expr : op.getMatchingIndexingMap(&operand).getResults())
      if (auto dim = dyn_cast<AffineDimExpr>(expr))
        sized.set(dim.getPosition());
  }
  SmallVector<unsigned> loops;
  for (AffineExpr expr : op.getMatchingIndexingMap(&fused).getResults())
    if (auto dim = dyn_cast<AffineDimExpr>(expr);
        dim && !sized.test(dim.getPosition()))
      loops.push_back(dim.getPosition());
  return loops;
}

/// Rebuilds `op` with one more input: an `i8` tensor.empty indexed by
/// `loops` with the sizes the fused operand gives them. Its body never
/// reads it; it only keeps those loop ranges once the float weight is gone
/// (a few bytes: the kernel window, not the weight). Returns the new op, or
/// failure for dynamic sizes.
static FailureOr<linalg::GenericOp>
addLoopSizeOperand(RewriterBase &rewriter, linalg::GenericOp op,
                   OpOperand &fused, ArrayRef<unsigned> loops) {
  MLIRContext *ctx = op.getContext();
  auto type = cast<RankedTensorType>(fused.get().getType());
  AffineMap map = op.getMatchingIndexingMap(&fused);
  SmallVector<int64_t> shape;
  SmallVector<AffineExpr> exprs;
  for (unsigned loop : loops) {
    for (auto [position, expr] : llvm::enumerate(map.getResults()))
      if (auto dim = dyn_cast<AffineDimExpr>(expr);
          dim && dim.getPosition() == loop) {
        shape.push_back(type.getDimSize(position));
        break;
      }
    if (ShapedType::isDynamic(shape.back()))
      return failure();
    exprs.push_back(getAffineDimExpr(loop, ctx));
  }
  Location loc = op.getLoc();
  rewriter.setInsertionPoint(op);
  Type i8 = rewriter.getI8Type();
  Value sizes = tensor::EmptyOp::create(rewriter, loc, shape, i8);
  unsigned numInputs = op.getNumDpsInputs();
  SmallVector<Value> inputs(op.getDpsInputs());
  inputs.push_back(sizes);
  SmallVector<AffineMap> maps = op.getIndexingMapsArray();
  maps.insert(maps.begin() + numInputs,
              AffineMap::get(op.getNumLoops(), 0, exprs, ctx));
  auto rebuilt = linalg::GenericOp::create(rewriter, loc, op.getResultTypes(),
                                           inputs, op.getDpsInits(), maps,
                                           op.getIteratorTypesArray());
  rebuilt->setDiscardableAttrs(op->getDiscardableAttrDictionary());
  rewriter.inlineRegionBefore(op.getRegion(), rebuilt.getRegion(),
                              rebuilt.getRegion().end());
  rebuilt.getRegion().front().insertArgument(numInputs, i8, loc);
  rewriter.replaceOp(op, rebuilt.getResults());
  return rebuilt;
}

struct QLRFuseDequantizePass
    : public mlir::qlr::impl::QLRFuseDequantizePassBase<QLRFuseDequantizePass> {
  using Base::Base;

  void runOnOperation() override {
    IRRewriter rewriter(&getContext());
    // Every linalg op reading a decoded weight, except the linear-layer
    // contractions when those are left to the CPU kernels. Collect first:
    // fusion replaces the consumer.
    SmallVector<linalg::LinalgOp> candidates;
    getOperation().walk([&](linalg::LinalgOp op) {
      if (op->hasAttr(mlir::qlr::kDequantizeAttrName))
        return; // A decoder itself.
      if (!contractions && op->hasAttr(mlir::qlr::kContractionAttrName))
        return;
      if (llvm::any_of(op.getDpsInputOperands(),
                       [](OpOperand *input) { return getDecoder(*input); }))
        candidates.push_back(op);
    });
    for (linalg::LinalgOp candidate : candidates) {
      // Named ops (the convolutions) become generics first: element-wise
      // fusion works on generics.
      linalg::GenericOp consumer =
          dyn_cast<linalg::GenericOp>(candidate.getOperation());
      if (!consumer) {
        rewriter.setInsertionPoint(candidate);
        FailureOr<linalg::GenericOp> generic =
            linalg::generalizeNamedOp(rewriter, candidate);
        if (failed(generic)) {
          candidate->emitOpError("could not be generalized to fuse the "
                                 "decoder of its quantized weight");
          return signalPassFailure();
        }
        consumer = *generic;
      }
      for (unsigned index = 0, e = consumer.getNumDpsInputs(); index < e;
           ++index) {
        OpOperand *input = consumer.getDpsInputOperand(index);
        linalg::GenericOp decoder = getDecoder(*input);
        if (!decoder)
          continue;
        SmallVector<unsigned> unsized = loopsOnlySizedBy(consumer, *input);
        if (!unsized.empty()) {
          FailureOr<linalg::GenericOp> rebuilt =
              addLoopSizeOperand(rewriter, consumer, *input, unsized);
          if (failed(rebuilt))
            break; // Dynamic kernel sizes: leave the decoder unfused.
          consumer = *rebuilt;
          input = consumer.getDpsInputOperand(index);
        }
        if (!linalg::areElementwiseOpsFusable(input))
          continue;
        // A decoder read elsewhere too gets a private copy, so fusion never
        // has to keep the float weight as an extra result.
        if (!decoder->hasOneUse()) {
          rewriter.setInsertionPoint(decoder);
          Operation *copy = rewriter.clone(*decoder);
          input->set(copy->getResult(0));
          decoder = cast<linalg::GenericOp>(copy);
        }
        rewriter.setInsertionPoint(consumer);
        FailureOr<linalg::ElementwiseOpFusionResult> fused =
            linalg::fuseElementwiseOps(rewriter, input);
        if (failed(fused)) {
          consumer.emitOpError(
              "could not fuse the decoder of its quantized weight");
          return signalPassFailure();
        }
        // Keep the tags: later passes recognise the linear layer by them.
        Operation *fusedOp = fused->fusedOp;
        if (consumer->hasAttr(mlir::qlr::kContractionAttrName))
          fusedOp->setAttr(mlir::qlr::kContractionAttrName,
                           rewriter.getUnitAttr());
        fusedOp->setAttr(mlir::qlr::kDequantizeAttrName,
                         decoder->getAttr(mlir::qlr::kDequantizeAttrName));
        for (auto [original, replacement] : fused->replacements)
          rewriter.replaceAllUsesExcept(original, replacement, fusedOp);
        rewriter.eraseOp(consumer);
        rewriter.eraseOp(decoder);
        // A contraction or convolution reads one weight; its other inputs
        // are float.
        break;
      }
    }
  }
};

} // namespace
