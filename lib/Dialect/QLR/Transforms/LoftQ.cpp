//===- LoftQ.cpp - Quantized plus low-rank weights -----------------*- C++
//-*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// qlr-loftq: a thin adapter over numerics::loftq (lib/Numerics/LowRank.cpp).
//
//===----------------------------------------------------------------------===//

#include "WeightUtils.h"

#include "qlr/Dialect/QLR/Transforms/Passes.h"
#include "qlr/Numerics/LowRank.h"
#include "qlr/Support/Progress.h"

#include "mlir/IR/Threading.h"

namespace mlir::qlr {
#define GEN_PASS_DEF_QLRLOFTQPASS
#include "qlr/Dialect/QLR/Transforms/Passes.h.inc"
} // namespace mlir::qlr

using namespace mlir;
using namespace mlir::qlr;
namespace numerics = ::qlr::numerics;

namespace {
struct QLRLoftQPass : public mlir::qlr::impl::QLRLoftQPassBase<QLRLoftQPass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    StringRef pass = getArgument();
    if (format != "uniform" && format != "nf4" && format != "nf2") {
      emitError(module.getLoc()) << pass << ": unknown format '" << format
                                 << "' (expected uniform, nf4 or nf2)";
      return signalPassFailure();
    }
    if (rank < 1 || iters < 1) {
      emitError(module.getLoc())
          << pass << ": rank=" << int64_t(rank) << " iters=" << int64_t(iters)
          << ": both must be >= 1";
      return signalPassFailure();
    }
    FailureOr<FormatAttr> baseFormat = buildFormatFromOptions(
        module, pass, format.getValue(), bits, /*defaultBits=*/2, groupSize,
        symmetric, zeroPoint.getValue(), scaleType.getValue(), /*table=*/{});
    if (failed(baseFormat))
      return signalPassFailure();
    FailureOr<SmallVector<LinearWeight>> weights = selectLinearWeights(
        module, pass, include, exclude, classifier, *baseFormat);
    if (failed(weights))
      return signalPassFailure();
    for (LinearWeight &weight : *weights) {
      int64_t m = weight.type.getDimSize(0), n = weight.type.getDimSize(1);
      if (rank > std::min(m, n)) {
        weight.linear.emitOpError("rank ")
            << int64_t(rank) << " exceeds min(" << m << ", " << n
            << ") of the weight '" << weight.name << "'";
        return signalPassFailure();
      }
    }

    // The factorizations are independent: compute them in parallel, then
    // rewrite the IR serially.
    numerics::QuantFormat fmt = baseFormat->toNumerics(2);
    SmallVector<LinearWeight *> firsts = distinctWeights(*weights);
    std::vector<std::optional<numerics::LoftQResult>> results(firsts.size());
    std::vector<std::string> problems(firsts.size());
    ::qlr::Progress progress(pass, "weight", firsts.size());
    parallelFor(&getContext(), 0, firsts.size(), [&](size_t index) {
      LinearWeight &weight = *firsts[index];
      auto result =
          numerics::loftq(weight.values, weight.type.getDimSize(0),
                          weight.type.getDimSize(1), fmt, rank, iters);
      if (result)
        results[index] = std::move(*result);
      else
        problems[index] = llvm::toString(result.takeError());
      progress.step(weight.name);
    });
    MLIRContext *ctx = module.getContext();
    DenseMap<Operation *, Value> done;
    for (auto [index, weightPtr] : llvm::enumerate(firsts)) {
      LinearWeight &weight = *weightPtr;
      if (!results[index]) {
        weight.linear.emitOpError("LoftQ failed for '")
            << weight.name << "': " << problems[index];
        return signalPassFailure();
      }
      numerics::LoftQResult &result = *results[index];
      int64_t m = weight.type.getDimSize(0), n = weight.type.getDimSize(1);
      OpBuilder b(weight.constant);
      Location loc = weight.constant.getLoc();
      Type element = weight.type.getElementType();
      int64_t r = result.lowRank.rank;
      Value base = buildPackedWeight(b, loc, weight.name, weight.type,
                                     *baseFormat, result.base);
      Value a =
          createFloatResource(b, loc, RankedTensorType::get({m, r}, element),
                              weight.name + ".lora_a", result.lowRank.a);
      Value bFactor =
          createFloatResource(b, loc, RankedTensorType::get({r, n}, element),
                              weight.name + ".lora_b", result.lowRank.b);
      auto type = LowRankType::get(ctx, weight.type.getShape(), element, r,
                                   *baseFormat, FormatAttr(), FormatAttr());
      done[weight.constant] = LowRankOp::create(b, loc, type, a, bFactor, base);
    }
    replaceLinearWeights(*weights, done);
    numCompressed += weights->size();
  }
};
} // namespace
