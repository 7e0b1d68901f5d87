//===- FuseDequantize.cpp - Decoders into linear layers ---------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// Fuses the element-wise decoder of a quantized weight into the linear-layer
// contractions that read it, with upstream element-wise fusion, so that a GPU
// kernel decodes each weight element in registers where it multiplies it.
//
//===----------------------------------------------------------------------===//

#include "qlr/Conversion/Passes.h"

#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Linalg/Transforms/Transforms.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/PatternMatch.h"

namespace mlir::qlr {
#define GEN_PASS_DEF_QLRFUSEDEQUANTIZEPASS
#include "qlr/Conversion/Passes.h.inc"
} // namespace mlir::qlr

using namespace mlir;

namespace {

struct QLRFuseDequantizePass
    : public mlir::qlr::impl::QLRFuseDequantizePassBase<QLRFuseDequantizePass> {
  void runOnOperation() override {
    // Collect first: fusion replaces the contraction.
    SmallVector<linalg::GenericOp> contractions;
    getOperation().walk([&](linalg::GenericOp op) {
      if (op->hasAttr(mlir::qlr::kContractionAttrName))
        contractions.push_back(op);
    });
    IRRewriter rewriter(&getContext());
    for (linalg::GenericOp contraction : contractions) {
      for (OpOperand *input : contraction.getDpsInputOperands()) {
        auto decoder = input->get().getDefiningOp<linalg::GenericOp>();
        if (!decoder || !decoder->hasAttr(mlir::qlr::kDequantizeAttrName))
          continue;
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
        rewriter.setInsertionPoint(contraction);
        FailureOr<linalg::ElementwiseOpFusionResult> fused =
            linalg::fuseElementwiseOps(rewriter, input);
        if (failed(fused)) {
          contraction.emitOpError(
              "could not fuse the decoder of its quantized weight");
          return signalPassFailure();
        }
        // Keep the tags: later passes recognise the linear layer by them.
        Operation *fusedOp = fused->fusedOp;
        fusedOp->setAttr(mlir::qlr::kContractionAttrName,
                         rewriter.getUnitAttr());
        fusedOp->setAttr(mlir::qlr::kDequantizeAttrName,
                         decoder->getAttr(mlir::qlr::kDequantizeAttrName));
        for (auto [original, replacement] : fused->replacements)
          rewriter.replaceAllUsesExcept(original, replacement, fusedOp);
        rewriter.eraseOp(contraction);
        rewriter.eraseOp(decoder);
        // A contraction reads one weight; its other inputs are float.
        break;
      }
    }
  }
};

} // namespace
