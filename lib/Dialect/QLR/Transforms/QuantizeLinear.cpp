//===- QuantizeLinear.cpp - RTN and GPTQ weight quantization ------*- C++
//-*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// qlr-quantize-linear: the pass is a thin adapter. The arithmetic lives in
// lib/Numerics (quantizeRTN, quantizeGPTQ, HessianAccumulator); GPTQ's
// statistics come from running the module's own stages
// (lib/Calibration/Stages.cpp).
//
//===----------------------------------------------------------------------===//

#include "Calibration.h"
#include "WeightUtils.h"

#include "qlr/Calibration/Stages.h"
#include "qlr/Dialect/QLR/Transforms/Passes.h"
#include "qlr/Numerics/GPTQ.h"
#include "qlr/Numerics/LowRank.h"
#include "qlr/Support/Progress.h"

#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Threading.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/Support/FormatVariadic.h"

#include <map>

namespace mlir::qlr {
#define GEN_PASS_DEF_QLRQUANTIZELINEARPASS
#include "qlr/Dialect/QLR/Transforms/Passes.h.inc"
} // namespace mlir::qlr

using namespace mlir;
using namespace mlir::qlr;
namespace numerics = ::qlr::numerics;

namespace {
/// A selected `qlr.linear` whose weight is `qlr.lowrank` of two float
/// constants without a base (what qlr-basis-select writes): each factor is
/// quantized like a weight of its own, A [N, r] in groups along r and
/// B [r, K] in groups along K.
struct LowRankLinear {
  LowRankOp lowRank;
  /// The weight's name: factor A's resource key without `.factor_a`.
  std::string name;
  /// The factors (LinearWeight::linear is the first linear using them).
  LinearWeight a, b;
  /// The quantized factors (filled by GPTQ, else by RTN).
  numerics::QuantizedData qa, qb;
};

/// Collects, in program order, the distinct low-rank weights of float
/// factors whose name `filter` accepts and checks that `format` fits both
/// factors. Fails after reporting a problem.
FailureOr<std::vector<LowRankLinear>>
collectLowRankLinears(ModuleOp module, const LinearFilter &filter,
                      FormatAttr format) {
  std::vector<LowRankLinear> result;
  llvm::SmallPtrSet<Operation *, 16> seen;
  WalkResult walk = module.walk([&](LinearOp linear) {
    auto lowRank = linear.getWeight().getDefiningOp<LowRankOp>();
    if (!lowRank || lowRank.getBase() || !seen.insert(lowRank).second)
      return WalkResult::advance();
    auto readFactor = [&](Value factor, LinearWeight &out) {
      auto constant = factor.getDefiningOp<arith::ConstantOp>();
      auto type = dyn_cast<RankedTensorType>(factor.getType());
      if (!constant || !type || !type.hasStaticShape())
        return false;
      out.linear = linear;
      out.constant = constant;
      out.type = type;
      out.name = resourceKey(constant).str();
      return true;
    };
    LowRankLinear entry;
    entry.lowRank = lowRank;
    if (!readFactor(lowRank.getA(), entry.a) ||
        !readFactor(lowRank.getB(), entry.b))
      return WalkResult::advance();
    StringRef name = entry.a.name;
    if (!name.consume_back(".factor_a") && !name.consume_back(".lora_a"))
      name = "";
    entry.name =
        name.empty() ? "lowrank" + std::to_string(result.size()) : name.str();
    if (auto layer = linear->getAttrOfType<StringAttr>(kLayerNameAttrName))
      entry.name = layer.str();
    if (entry.a.name.empty())
      entry.a.name = entry.name + ".factor_a";
    if (entry.b.name.empty())
      entry.b.name = entry.name + ".factor_b";
    if (!filter.accepts(entry.name, linear))
      return WalkResult::advance();
    for (LinearWeight *factor : {&entry.a, &entry.b}) {
      if (failed(checkFormatFits(linear, format, factor->type)))
        return WalkResult::interrupt();
      FailureOr<std::vector<float>> values =
          decodeWeight(factor->constant.getResult());
      if (failed(values))
        return WalkResult::interrupt();
      factor->values = std::move(*values);
    }
    result.push_back(std::move(entry));
    return WalkResult::advance();
  });
  if (walk.wasInterrupted())
    return failure();
  return result;
}

struct QLRQuantizeLinearPass
    : public mlir::qlr::impl::QLRQuantizeLinearPassBase<QLRQuantizeLinearPass> {
  using Base::Base;

  void runOnOperation() override;

private:
  /// Quantizes the factors of `lowRanks` (RTN for those GPTQ did not cover)
  /// and rewrites each low-rank weight to quantized factors.
  LogicalResult quantizeLowRankFactors(MutableArrayRef<LowRankLinear> lowRanks,
                                       FormatAttr quantFormat);
  /// Sequential GPTQ over the transformer blocks; fills `results` for every
  /// selected float
  /// weight that lives in a block, and the quantized factors of every
  /// low-rank weight in `lowRanks` that does.
  LogicalResult runGPTQ(ModuleOp module, FormatAttr quantFormat,
                        const DenseMap<Operation *, std::string> &selected,
                        llvm::StringMap<numerics::QuantizedData> &results,
                        const llvm::StringMap<LowRankLinear *> &lowRanks);
};
} // namespace

LogicalResult QLRQuantizeLinearPass::runGPTQ(
    ModuleOp module, FormatAttr quantFormat,
    const DenseMap<Operation *, std::string> &selected,
    llvm::StringMap<numerics::QuantizedData> &results,
    const llvm::StringMap<LowRankLinear *> &lowRanks) {
  CalibrationSpec spec{data, samples, seqLen, seed};
  FailureOr<std::unique_ptr<CalibrationRun>> run =
      prepareCalibrationRun(module, getArgument(), spec, entry);
  if (failed(run))
    return failure();

  // The targets: linears of the calibrated function whose weight is a
  // selected float constant (or a low-rank weight) used by no other linear.
  // Each runs with its original weight as f32 [N, K] until GPTQ replaces it.
  DenseMap<Value, unsigned> uses;
  module.walk([&](LinearOp linear) { ++uses[linear.getWeight()]; });
  std::vector<CalibrationTarget> targets;
  DenseMap<Operation *, std::string> names;
  DenseMap<Operation *, std::vector<float>> weights;
  for (auto &[copy, original] : (*run)->originals) {
    Value weight = original.getWeight();
    if (uses[weight] != 1)
      continue;
    std::string name;
    std::vector<float> values;
    if (auto lowRank = weight.getDefiningOp<LowRankOp>()) {
      for (auto &entry : lowRanks)
        if (entry.second->lowRank == lowRank)
          name = entry.first().str();
      if (name.empty())
        continue;
      LowRankLinear *l = lowRanks.lookup(name);
      numerics::LowRankFactors f;
      f.rank = l->b.type.getDimSize(0);
      f.a = l->a.values;
      f.b = l->b.values;
      values = numerics::multiplyFactors(f, l->a.type.getDimSize(0),
                                         l->b.type.getDimSize(1));
    } else if (auto constant = weight.getDefiningOp<arith::ConstantOp>()) {
      auto found = selected.find(constant);
      if (found == selected.end())
        continue;
      name = found->second;
      FailureOr<std::vector<float>> decoded = decodeWeight(weight);
      if (failed(decoded))
        return failure();
      values = std::move(*decoded);
    } else {
      continue;
    }
    targets.push_back({cast<LinearOp>(copy)});
    names[copy] = name;
    weights[copy] = std::move(values);
  }
  // Program order, for deterministic stages and messages.
  llvm::sort(targets,
             [](const CalibrationTarget &x, const CalibrationTarget &y) {
               return x.linear->isBeforeInBlock(y.linear);
             });
  if (targets.empty())
    return success();

  numerics::GPTQOptions options;
  options.damp = damp;
  options.actOrder = actOrder;
  options.blockSize = blockSize;
  options.clipSearch = clipSearch;
  options.refitRounds = refitScales;
  numerics::QuantFormat fmt = quantFormat.toNumerics(2);

  StagedCalibrationOptions stageOptions;
  stageOptions.floatStream = floatTarget;
  stageOptions.pass = getArgument().str();
  auto callback =
      [&](unsigned level, unsigned levels, MutableArrayRef<CalibrationTap> taps,
          DenseMap<Operation *, std::vector<float>> &current) -> LogicalResult {
    for (CalibrationTap &tap : taps) {
      int64_t k = tap.width;
      std::vector<double> h = tap.hessian(), cross = tap.crossHessian();
      for (LinearOp linear : tap.linears) {
        const std::string &name = names[linear];
        std::vector<float> &w = current[linear];
        if (w.empty())
          w = weights[linear];
        auto failGPTQ = [&](llvm::Error error) {
          return linear.emitOpError("GPTQ failed for weight '")
                 << name << "': " << llvm::toString(std::move(error));
        };
        if (LowRankLinear *lowRank = lowRanks.lookup(name)) {
          // y = A (B x): B sees the layer's inputs, A sees B's outputs,
          // whose Hessian is Bq H Bqᵀ once B is quantized.
          numerics::LowRankFactors f;
          int64_t n = lowRank->a.type.getDimSize(0);
          f.rank = lowRank->b.type.getDimSize(0);
          auto qb = numerics::quantizeGPTQ(lowRank->b.values, f.rank, k, h, fmt,
                                           options);
          if (!qb)
            return failGPTQ(qb.takeError());
          f.b = numerics::dequantize(*qb, {f.rank, k}, fmt);
          std::vector<double> hA = numerics::projectHessian(h, f.b, f.rank, k);
          auto qa = numerics::quantizeGPTQ(lowRank->a.values, n, f.rank, hA,
                                           fmt, options);
          if (!qa)
            return failGPTQ(qa.takeError());
          f.a = numerics::dequantize(*qa, {n, f.rank}, fmt);
          w = numerics::multiplyFactors(f, n, k);
          lowRank->qa = std::move(*qa);
          lowRank->qb = std::move(*qb);
          continue;
        }
        int64_t n = int64_t(w.size()) / k;
        std::vector<float> target;
        if (floatTarget) {
          auto t = numerics::floatTargetWeights(w, n, k, h, cross, damp);
          if (!t)
            return failGPTQ(t.takeError());
          target = std::move(*t);
        }
        auto q = numerics::quantizeGPTQ(floatTarget ? target : w, n, k, h, fmt,
                                        options);
        if (!q)
          return failGPTQ(q.takeError());
        // Later stages see the weight exactly as the compiled model decodes
        // it.
        w = numerics::dequantize(*q, {n, k}, fmt);
        results[name] = std::move(*q);
      }
    }
    return success();
  };
  return runStagedCalibration((*run)->function, targets, (*run)->samples,
                              stageOptions, callback);
}

void QLRQuantizeLinearPass::runOnOperation() {
  ModuleOp module = getOperation();
  StringRef pass = getArgument();
  if (method != "rtn" && method != "gptq") {
    emitError(module.getLoc())
        << pass << ": unknown method '" << method << "' (expected rtn or gptq)";
    return signalPassFailure();
  }
  if (method == "gptq" && (damp < 0.0 || blockSize < 1 || refitScales < 0)) {
    emitError(module.getLoc())
        << pass << ": damp and refit-scales must be >= 0 and block-size >= 1";
    return signalPassFailure();
  }
  if (method != "gptq" && (refitScales.hasValue() || floatTarget.hasValue())) {
    emitError(module.getLoc())
        << pass << ": refit-scales and float-target need method=gptq (they "
        << "use the calibration Hessians)";
    return signalPassFailure();
  }
  FailureOr<FormatAttr> quantFormat =
      buildFormatFromOptions(module, pass, format.getValue(), bits,
                             /*defaultBits=*/4, groupSize, symmetric,
                             zeroPoint.getValue(), scaleType.getValue(), table);
  if (failed(quantFormat))
    return signalPassFailure();
  FailureOr<LinearFilter> filter =
      LinearFilter::create(module, pass, include, exclude, classifier);
  if (failed(filter))
    return signalPassFailure();
  FailureOr<SmallVector<LinearWeight>> weights =
      selectLinearWeights(module, *filter, *quantFormat);
  if (failed(weights))
    return signalPassFailure();
  FailureOr<std::vector<LowRankLinear>> lowRanks =
      collectLowRankLinears(module, *filter, *quantFormat);
  if (failed(lowRanks))
    return signalPassFailure();
  if (weights->empty() && lowRanks->empty())
    return;

  llvm::StringMap<numerics::QuantizedData> gptq;
  if (method == "gptq") {
    DenseMap<Operation *, std::string> selected;
    for (LinearWeight &weight : *weights)
      selected[weight.constant] = weight.name;
    llvm::StringMap<LowRankLinear *> lowRankByName;
    for (LowRankLinear &lowRank : *lowRanks)
      lowRankByName[lowRank.name] = &lowRank;
    if (failed(runGPTQ(module, *quantFormat, selected, gptq, lowRankByName)))
      return signalPassFailure();
  }

  // One quantized weight per constant, even when several linears share it.
  // Round-to-nearest runs for the weights GPTQ did not cover, in parallel
  // (each weight is independent); the IR is then rewritten serially.
  numerics::QuantFormat fmt = quantFormat->toNumerics(2);
  SmallVector<LinearWeight *> firsts = distinctWeights(*weights);
  std::vector<numerics::QuantizedData> data(firsts.size());
  for (auto [index, weight] : llvm::enumerate(firsts)) {
    auto found = gptq.find(weight->name);
    if (found != gptq.end()) {
      data[index] = std::move(found->second);
    } else if (method == "gptq") {
      weight->linear.emitWarning()
          << "weight '" << weight->name
          << "' gets no calibration inputs (its linear is not reached by "
             "the calibrated function, or shares the weight); quantized "
             "with round-to-nearest";
    }
  }
  SmallVector<size_t> rtn;
  for (size_t index = 0; index < firsts.size(); ++index)
    if (data[index].codes.empty())
      rtn.push_back(index);
  ::qlr::Progress progress(
      pass, clipSearch ? "rtn (clip search), weight" : "rtn, weight",
      rtn.size());
  parallelFor(&getContext(), 0, rtn.size(), [&](size_t todo) {
    size_t index = rtn[todo];
    const LinearWeight &weight = *firsts[index];
    data[index] =
        clipSearch
            ? numerics::quantizeRTNClipSearch(weight.values,
                                              weight.type.getShape(), fmt)
            : numerics::quantizeRTN(weight.values, weight.type.getShape(), fmt);
    progress.step(weight.name);
  });
  DenseMap<Operation *, Value> done;
  for (auto [index, weight] : llvm::enumerate(firsts)) {
    OpBuilder b(weight->constant);
    done[weight->constant] =
        buildPackedWeight(b, weight->constant.getLoc(), weight->name,
                          weight->type, *quantFormat, data[index]);
  }
  replaceLinearWeights(*weights, done);
  numQuantized += weights->size();
  if (failed(quantizeLowRankFactors(*lowRanks, *quantFormat)))
    return signalPassFailure();
}

LogicalResult QLRQuantizeLinearPass::quantizeLowRankFactors(
    MutableArrayRef<LowRankLinear> lowRanks, FormatAttr quantFormat) {
  numerics::QuantFormat fmt = quantFormat.toNumerics(2);
  for (LowRankLinear &lowRank : lowRanks) {
    if (lowRank.qa.codes.empty() && method == "gptq")
      lowRank.lowRank.emitWarning()
          << "low-rank weight '" << lowRank.name
          << "' gets no calibration inputs (its linear is not reached by "
             "the calibrated function); its factors are quantized with "
             "round-to-nearest";
  }
  parallelFor(&getContext(), 0, 2 * lowRanks.size(), [&](size_t index) {
    LowRankLinear &lowRank = lowRanks[index / 2];
    bool isA = index % 2 == 0;
    numerics::QuantizedData &out = isA ? lowRank.qa : lowRank.qb;
    const LinearWeight &factor = isA ? lowRank.a : lowRank.b;
    if (out.codes.empty())
      out = clipSearch ? numerics::quantizeRTNClipSearch(
                             factor.values, factor.type.getShape(), fmt)
                       : numerics::quantizeRTN(factor.values,
                                               factor.type.getShape(), fmt);
  });
  for (LowRankLinear &lowRank : lowRanks) {
    LowRankOp old = lowRank.lowRank;
    OpBuilder b(old);
    Location loc = old.getLoc();
    Value a = buildPackedWeight(b, loc, lowRank.a.name, lowRank.a.type,
                                quantFormat, lowRank.qa);
    Value bFactor = buildPackedWeight(b, loc, lowRank.b.name, lowRank.b.type,
                                      quantFormat, lowRank.qb);
    auto oldType = cast<LowRankType>(old.getType());
    auto type =
        LowRankType::get(old.getContext(), oldType.getShape(),
                         oldType.getElementType(), oldType.getRank(),
                         /*base=*/FormatAttr(), quantFormat, quantFormat);
    auto replacement = LowRankOp::create(b, loc, type, a, bFactor, Value());
    old.getResult().replaceAllUsesWith(replacement.getResult());
    // The linears keep their result types; only the weight type changed.
    old.erase();
    for (LinearWeight *factor : {&lowRank.a, &lowRank.b})
      if (factor->constant->use_empty())
        factor->constant->erase();
    ++numQuantized;
  }
  return success();
}
