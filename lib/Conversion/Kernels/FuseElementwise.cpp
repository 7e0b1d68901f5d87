//===- FuseElementwise.cpp - Element-wise fusion around linears -*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#include "qlr/Conversion/Passes.h"

#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Linalg/Transforms/Transforms.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mlir::qlr {
#define GEN_PASS_DEF_QLRFUSEELEMENTWISEPASS
#include "qlr/Conversion/Passes.h.inc"
} // namespace mlir::qlr

using namespace mlir;

namespace {
struct QLRFuseElementwisePass
    : public mlir::qlr::impl::QLRFuseElementwisePassBase<
          QLRFuseElementwisePass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    linalg::ControlFusionFn control = [](OpOperand *fused) {
      Operation *consumer = fused->getOwner();
      if (consumer->hasAttr(mlir::qlr::kContractionAttrName))
        return false;
      // A producer that reads its init (`out + ...`) cannot be fused: the
      // fused op keeps the producer's result as an output over the
      // consumer's loops, and every extra iteration (a reduction loop, or a
      // broadcast read) would apply the producer's update again.
      auto producer = fused->get().getDefiningOp<linalg::LinalgOp>();
      return !producer ||
             llvm::none_of(producer.getDpsInitsMutable(), [&](OpOperand &init) {
               return producer.payloadUsesValueFromOperand(&init);
             });
    };
    linalg::populateElementwiseOpsFusionPatterns(patterns, control);
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};
} // namespace
