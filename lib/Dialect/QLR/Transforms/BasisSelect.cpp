//===- BasisSelect.cpp - Low-rank factors chosen on target data ----------===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// qlr-basis-select: a thin adapter. The arithmetic (scores, rank allocation,
// factors and the least-squares refit) lives in lib/Numerics/BasisSelect.cpp,
// the calibration forward pass in lib/Calibration (LlamaModel). The rules are
// documented in docs/basis-selection.md.
//
//===----------------------------------------------------------------------===//

#include "Calibration.h"
#include "WeightUtils.h"

#include "qlr/Calibration/ModuleLoader.h"
#include "qlr/Dialect/QLR/Transforms/Passes.h"
#include "qlr/Numerics/BasisSelect.h"
#include "qlr/Support/Progress.h"

#include "mlir/IR/Threading.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/Support/Debug.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/FormatVariadic.h"

#include <cmath>
#include <numeric>

#define DEBUG_TYPE "qlr-basis-select"

namespace mlir::qlr {
#define GEN_PASS_DEF_QLRBASISSELECTPASS
#include "qlr/Dialect/QLR/Transforms/Passes.h.inc"
} // namespace mlir::qlr

using namespace mlir;
using namespace mlir::qlr;
namespace numerics = ::qlr::numerics;
namespace calib = ::qlr::calibration;

namespace {
/// What the pass decides for one distinct selected weight.
struct LayerPlan {
  LinearWeight *weight = nullptr;
  int64_t m = 0, n = 0;
  /// Scores of its bases (phase 1 / magnitude), in thinSVD order.
  std::vector<double> scores;
  int64_t rank = 0;
  bool dense = false;
  numerics::LowRankFactors factors;
  /// Set when computing the factors failed.
  std::string problem;
};

struct QLRBasisSelectPass
    : public mlir::qlr::impl::QLRBasisSelectPassBase<QLRBasisSelectPass> {
  using Base::Base;

  void runOnOperation() override;

private:
  bool energy() const { return score == "energy"; }
  bool lsq() const { return refit == "lsq"; }
  LogicalResult checkOptions(ModuleOp module);
  /// Runs the float model over `tokens` block by block; calls
  /// visit(plans, input Hessian, member weights) for every LinearGroup
  /// that feeds a plan, with `plans` and `members` in the group's order.
  /// Reports progress per block as `phase` ("energy scores, block").
  void
  forwardBlocks(StringRef phase, calib::LlamaModel &model,
                ArrayRef<int32_t> tokens, const llvm::StringMap<size_t> &index,
                MutableArrayRef<LayerPlan> plans,
                llvm::function_ref<void(ArrayRef<LayerPlan *>, ArrayRef<double>,
                                        ArrayRef<std::vector<float> *>)>
                    visit);
};
} // namespace

/// `value` as printf's %g writes it (0.75, 1.5, 0).
static std::string formatNumber(double value) {
  std::string text;
  llvm::raw_string_ostream(text) << llvm::format("%g", value);
  return text;
}

LogicalResult QLRBasisSelectPass::checkOptions(ModuleOp module) {
  auto error = [&]() {
    return emitError(module.getLoc()) << getArgument() << ": ";
  };
  if (score != "energy" && score != "magnitude")
    return error() << "unknown score '" << score
                   << "' (expected energy or magnitude)";
  if (refit != "lsq" && refit != "none")
    return error() << "unknown refit '" << refit << "' (expected lsq or none)";
  if (!(ratio > 0.0 && ratio <= 1.0))
    return error() << "ratio=" << formatNumber(ratio) << " must be in (0, 1]";
  if (minRank < 1)
    return error() << "min-rank=" << int64_t(minRank) << " must be >= 1";
  if (rank < 0)
    return error() << "rank=" << int64_t(rank)
                   << " must be >= 0 (0: allocate ranks by ratio)";
  if ((energy() || lsq()) && data.empty()) {
    std::string needs = energy() && lsq() ? "score=energy and refit=lsq"
                        : energy()        ? "score=energy"
                                          : "refit=lsq";
    return error() << needs << (energy() && lsq() ? " need" : " needs")
                   << " target data: data=FILE (a text file) or "
                      "data=generate (text sampled from the model); "
                      "score=magnitude refit=none needs none";
  }
  return success();
}

void QLRBasisSelectPass::forwardBlocks(
    StringRef phase, calib::LlamaModel &model, ArrayRef<int32_t> tokens,
    const llvm::StringMap<size_t> &index, MutableArrayRef<LayerPlan> plans,
    llvm::function_ref<void(ArrayRef<LayerPlan *>, ArrayRef<double>,
                            ArrayRef<std::vector<float> *>)>
        visit) {
  // Blocks after the last one holding a plan need not run.
  int64_t layers = model.config().layers, last = -1;
  for (int64_t i = 0; i < layers; ++i)
    for (auto group : {calib::LinearGroup::QKV, calib::LinearGroup::Output,
                       calib::LinearGroup::GateUp, calib::LinearGroup::Down})
      for (auto &member : blockGroupWeights(model.block(i), i, group))
        if (index.contains(member.first))
          last = i;
  calib::Activations x = model.embed(tokens, samples, seqLen);
  ::qlr::Progress progress(getArgument(), phase, last + 1);
  for (int64_t i = 0; i <= last; ++i) {
    calib::BlockWeights &block = model.block(i);
    x = model.forwardBlock(
        i, x, [&](calib::LinearGroup group, const calib::Activations &input) {
          SmallVector<LayerPlan *> todo;
          SmallVector<std::vector<float> *> members;
          for (auto &[name, w] : blockGroupWeights(block, i, group)) {
            auto found = index.find(name);
            if (found == index.end() || plans[found->second].dense)
              continue;
            todo.push_back(&plans[found->second]);
            members.push_back(w);
          }
          if (todo.empty())
            return;
          std::vector<double> gram = calib::inputHessian(input);
          visit(todo, gram, members);
        });
    progress.step(llvm::formatv("layers.{0}", i).str());
  }
}

void QLRBasisSelectPass::runOnOperation() {
  ModuleOp module = getOperation();
  StringRef pass = getArgument();
  MLIRContext *ctx = &getContext();
  if (failed(checkOptions(module)))
    return signalPassFailure();

  FailureOr<LinearFilter> filter =
      LinearFilter::create(module, pass, include, exclude, classifier);
  if (failed(filter))
    return signalPassFailure();
  FailureOr<SmallVector<LinearWeight>> weights =
      collectLinearWeights(module, *filter);
  if (failed(weights))
    return signalPassFailure();
  if (weights->empty())
    return;

  // One plan per distinct constant.
  SmallVector<LinearWeight *> firsts = distinctWeights(*weights);
  std::vector<LayerPlan> plans(firsts.size());
  llvm::StringMap<size_t> index;
  for (auto [i, weight] : llvm::enumerate(firsts)) {
    LayerPlan &plan = plans[i];
    plan.weight = weight;
    plan.m = weight->type.getDimSize(0);
    plan.n = weight->type.getDimSize(1);
    index[weight->name] = i;
    int64_t p = std::min(plan.m, plan.n);
    if (rank > p) {
      emitError(weight->linear.getLoc())
          << pass << ": rank=" << int64_t(rank) << " exceeds min(" << plan.m
          << ", " << plan.n << ") = " << p << " of the weight '" << weight->name
          << "'";
      return signalPassFailure();
    }
    if (!llvm::all_of(weight->values,
                      [](float v) { return std::isfinite(v); })) {
      emitError(weight->linear.getLoc())
          << pass << ": the weight '" << weight->name
          << "' has non-finite values";
      return signalPassFailure();
    }
  }

  // The calibration model and tokens, when the options need data.
  std::optional<calib::LlamaModel> model;
  std::vector<int32_t> tokens;
  if (energy() || lsq()) {
    StringRef needs = energy() ? "score=energy" : "refit=lsq";
    // The loader's own diagnostic becomes part of one error line.
    std::string why;
    FailureOr<calib::LlamaModel> loaded = failure();
    {
      ScopedDiagnosticHandler handler(ctx, [&](Diagnostic &diag) {
        if (why.empty())
          why = diag.str();
        return success();
      });
      loaded = loadLlamaModel(module);
    }
    if (failed(loaded)) {
      emitError(module.getLoc())
          << pass << ": " << needs
          << " runs the model on the target data, which needs a module made "
             "by qlr-import (qlr.model attribute and canonical weight names): "
          << why;
      return signalPassFailure();
    }
    model = std::move(*loaded);
    // Every selected weight must be a block linear: only those have inputs.
    llvm::StringSet<> inBlocks;
    for (int64_t i = 0, e = model->config().layers; i < e; ++i)
      for (auto group : {calib::LinearGroup::QKV, calib::LinearGroup::Output,
                         calib::LinearGroup::GateUp, calib::LinearGroup::Down})
        for (auto &member : blockGroupWeights(model->block(i), i, group))
          inBlocks.insert(member.first);
    for (LayerPlan &plan : plans)
      if (!inBlocks.contains(plan.weight->name)) {
        emitError(plan.weight->linear.getLoc())
            << pass << ": the weight '" << plan.weight->name
            << "' is not a transformer block linear, so " << needs
            << " has no inputs for it; exclude it or use score=magnitude "
               "refit=none";
        return signalPassFailure();
      }
    CalibrationSpec spec{data, samples, seqLen, seed};
    FailureOr<std::vector<int32_t>> calibration =
        getCalibrationTokens(module, pass, spec, *model);
    if (failed(calibration))
      return signalPassFailure();
    tokens = std::move(*calibration);
  }

  // Scores, when they decide something: the allocation (rank=0), or the
  // kept bases without a refit (which otherwise scores on its own inputs).
  if (rank == 0 || (energy() && !lsq())) {
    if (energy()) {
      // Phase 1: the float model's inputs, one block at a time.
      forwardBlocks("energy scores, block", *model, tokens, index, plans,
                    [&](ArrayRef<LayerPlan *> todo, ArrayRef<double> gram,
                        ArrayRef<std::vector<float> *>) {
                      parallelFor(ctx, 0, todo.size(), [&](size_t t) {
                        LayerPlan &plan = *todo[t];
                        numerics::SVD svd = numerics::thinSVD(
                            plan.weight->values, plan.m, plan.n);
                        plan.scores = numerics::energyScores(svd, gram);
                      });
                    });
    } else {
      ::qlr::Progress progress(pass, "singular values, weight", plans.size());
      parallelFor(ctx, 0, plans.size(), [&](size_t i) {
        LayerPlan &plan = plans[i];
        std::vector<double> s =
            numerics::singularValues(plan.weight->values, plan.m, plan.n);
        for (double &v : s)
          v *= v;
        plan.scores = std::move(s);
        progress.step(plan.weight->name);
      });
    }
  }

  // Ranks.
  if (rank > 0) {
    for (LayerPlan &plan : plans)
      plan.rank = rank;
  } else {
    std::vector<numerics::BasisLayer> layers;
    for (LayerPlan &plan : plans)
      layers.push_back({plan.m, plan.n, plan.scores});
    auto allocation = numerics::allocateRanks(layers, ratio, minRank);
    if (!allocation) {
      emitError(module.getLoc())
          << pass << ": " << llvm::toString(allocation.takeError());
      return signalPassFailure();
    }
    for (auto [i, plan] : llvm::enumerate(plans)) {
      plan.rank = allocation->ranks[i];
      plan.dense = allocation->dense[i];
    }
    if (allocation->params > allocation->budget)
      emitWarning(module.getLoc())
          << pass << ": min-rank=" << int64_t(minRank) << " alone keeps "
          << allocation->params << " parameters, more than the budget of "
          << allocation->budget;
    LLVM_DEBUG(llvm::dbgs()
               << pass << ": " << allocation->params
               << " parameters kept, budget " << allocation->budget << "\n");
  }

  // Factors.
  if (lsq()) {
    // Phase 2: each layer refit on its actual inputs, those of the already
    // factorized layers before it; its product A·B replaces W in the model
    // for the rest of the forward.
    forwardBlocks(
        "refit, block", *model, tokens, index, plans,
        [&](ArrayRef<LayerPlan *> todo, ArrayRef<double> gram,
            ArrayRef<std::vector<float> *> members) {
          parallelFor(ctx, 0, todo.size(), [&](size_t t) {
            LayerPlan &plan = *todo[t];
            numerics::SVD svd =
                numerics::thinSVD(plan.weight->values, plan.m, plan.n);
            std::vector<double> scores = energy()
                                             ? numerics::energyScores(svd, gram)
                                             : numerics::magnitudeScores(svd);
            auto f = numerics::refitFactors(
                plan.weight->values, svd, numerics::topBases(scores, plan.rank),
                gram);
            if (f)
              plan.factors = std::move(*f);
            else
              plan.problem = llvm::toString(f.takeError());
            std::vector<float>().swap(plan.weight->values);
          });
          for (auto [plan, w] : llvm::zip_equal(todo, members))
            if (plan->problem.empty())
              *w = numerics::multiplyFactors(plan->factors, plan->m, plan->n);
        });
  } else {
    ::qlr::Progress progress(pass, "factors, weight", plans.size());
    parallelFor(ctx, 0, plans.size(), [&](size_t i) {
      LayerPlan &plan = plans[i];
      if (!plan.dense) {
        numerics::SVD svd =
            numerics::thinSVD(plan.weight->values, plan.m, plan.n);
        std::vector<int64_t> kept(plan.rank);
        if (energy())
          kept = numerics::topBases(plan.scores, plan.rank);
        else
          std::iota(kept.begin(), kept.end(), 0);
        plan.factors = numerics::basisFactors(svd, kept);
        std::vector<float>().swap(plan.weight->values);
      }
      progress.step(plan.weight->name);
    });
  }

  // Rewrite the IR: every non-dense plan becomes qlr.lowrank of two float
  // resources.
  DenseMap<Operation *, Value> done;
  int64_t keptDense = 0;
  for (LayerPlan &plan : plans) {
    LinearWeight &weight = *plan.weight;
    if (plan.dense)
      continue;
    if (!plan.problem.empty()) {
      emitError(weight.linear.getLoc())
          << pass << ": the refit of '" << weight.name
          << "' failed: " << plan.problem;
      return signalPassFailure();
    }
    LLVM_DEBUG(llvm::dbgs()
               << pass << ": " << weight.name << " [" << plan.m << ", "
               << plan.n << "] rank " << plan.rank << "\n");
    OpBuilder b(weight.constant);
    Location loc = weight.constant.getLoc();
    Type element = weight.type.getElementType();
    int64_t r = plan.factors.rank;
    Value a =
        createFloatResource(b, loc, RankedTensorType::get({plan.m, r}, element),
                            weight.name + ".factor_a", plan.factors.a);
    Value bFactor =
        createFloatResource(b, loc, RankedTensorType::get({r, plan.n}, element),
                            weight.name + ".factor_b", plan.factors.b);
    auto type = LowRankType::get(ctx, weight.type.getShape(), element, r,
                                 FormatAttr(), FormatAttr(), FormatAttr());
    done[weight.constant] =
        LowRankOp::create(b, loc, type, a, bFactor, /*base=*/Value());
  }
  SmallVector<LinearWeight> factorized;
  for (LinearWeight &weight : *weights) {
    if (done.contains(weight.constant))
      factorized.push_back(std::move(weight));
    else
      ++keptDense;
  }
  replaceLinearWeights(factorized, done);
  numFactorized += factorized.size();
  numKeptDense += keptDense;
}
