//===- BasisSelect.cpp - Low-rank factors chosen on target data ----------===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// qlr-basis-select: a thin adapter. The arithmetic (scores, rank allocation,
// factors and the least-squares refit) lives in lib/Numerics/BasisSelect.cpp,
// the calibration runs the module's own IR (runStagedCalibration). The rules
// are documented in docs/basis-selection.md.
//
//===----------------------------------------------------------------------===//

#include "Calibration.h"
#include "WeightUtils.h"

#include "qlr/Calibration/Stages.h"
#include "qlr/Dialect/QLR/Transforms/Passes.h"
#include "qlr/Numerics/BasisSelect.h"
#include "qlr/Support/Progress.h"

#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
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

/// The compiled stages (runStages compiles them on its first call) and the
/// plan of each calibrated linear, for both phases of one run.
struct StageCache {
  std::unique_ptr<StagedCalibration> staged;
  DenseMap<Operation *, size_t> planOfCopy;
};

struct QLRBasisSelectPass
    : public mlir::qlr::impl::QLRBasisSelectPassBase<QLRBasisSelectPass> {
  using Base::Base;

  void runOnOperation() override;

private:
  bool energy() const { return score == "energy"; }
  bool lsq() const { return refit == "lsq"; }
  LogicalResult checkOptions(ModuleOp module);
  /// Runs the module's calibrated function over the target data in stages
  /// (runStagedCalibration); calls visit(plans, input Hessian, member
  /// weights) for every set of linears that read one value and feed a
  /// plan, with `plans` and `members` in program order. `members` are the
  /// weights the later stages run with: visit may replace them.
  LogicalResult
  runStages(CalibrationRun &run, StageCache &cache,
            const DenseMap<Operation *, size_t> &planOf,
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

LogicalResult QLRBasisSelectPass::runStages(
    CalibrationRun &run, StageCache &cache,
    const DenseMap<Operation *, size_t> &planOf,
    MutableArrayRef<LayerPlan> plans,
    llvm::function_ref<void(ArrayRef<LayerPlan *>, ArrayRef<double>,
                            ArrayRef<std::vector<float> *>)>
        visit) {
  // The stages are compiled once for both phases: every selected weight is
  // a target, and the layers the allocation kept dense run with their own
  // weights.
  std::unique_ptr<StagedCalibration> &staged = cache.staged;
  DenseMap<Operation *, size_t> &planOfCopy = cache.planOfCopy;
  if (!staged) {
    std::vector<CalibrationTarget> targets;
    for (auto &[copy, original] : run.originals) {
      auto found = planOf.find(original.getWeight().getDefiningOp());
      if (found == planOf.end())
        continue;
      targets.push_back({cast<LinearOp>(copy)});
      planOfCopy[copy] = found->second;
    }
    llvm::sort(targets,
               [](const CalibrationTarget &x, const CalibrationTarget &y) {
                 return x.linear->isBeforeInBlock(y.linear);
               });
    StagedCalibrationOptions options;
    options.pass = getArgument().str();
    FailureOr<std::unique_ptr<StagedCalibration>> compiled =
        StagedCalibration::compile(run.function, targets, options);
    if (failed(compiled))
      return failure();
    staged = std::move(*compiled);
  }
  auto callback = [&](unsigned, unsigned, MutableArrayRef<CalibrationTap> taps,
                      DenseMap<Operation *, std::vector<float>> &current) {
    for (CalibrationTap &tap : taps) {
      std::vector<double> gram = tap.hessian();
      SmallVector<LayerPlan *> todo;
      SmallVector<std::vector<float> *> members;
      for (LinearOp linear : tap.linears) {
        LayerPlan &plan = plans[planOfCopy.lookup(linear)];
        std::vector<float> &w = current[linear];
        w = plan.weight->values;
        if (plan.dense)
          continue;
        todo.push_back(&plan);
        members.push_back(&w);
      }
      if (!todo.empty())
        visit(todo, gram, members);
    }
    return success();
  };
  return staged->run(run.samples, callback);
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
  for (auto [i, weight] : llvm::enumerate(firsts)) {
    LayerPlan &plan = plans[i];
    plan.weight = weight;
    plan.m = weight->type.getDimSize(0);
    plan.n = weight->type.getDimSize(1);
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

  // The calibration run, when the options need data: every selected weight
  // must get inputs from it.
  std::unique_ptr<CalibrationRun> run;
  StageCache cache;
  DenseMap<Operation *, size_t> planOf;
  for (auto [i, plan] : llvm::enumerate(plans))
    planOf[plan.weight->constant] = i;
  if (energy() || lsq()) {
    StringRef needs = energy() ? "score=energy" : "refit=lsq";
    CalibrationSpec spec{data, samples, seqLen, seed};
    FailureOr<std::unique_ptr<CalibrationRun>> prepared =
        prepareCalibrationRun(module, pass, spec, entry);
    if (failed(prepared))
      return signalPassFailure();
    run = std::move(*prepared);
    DenseMap<Operation *, int64_t> calibrated;
    for (auto &[copy, original] : run->originals)
      ++calibrated[original.getWeight().getDefiningOp()];
    for (LayerPlan &plan : plans)
      if (calibrated.lookup(plan.weight->constant) != 1) {
        emitError(plan.weight->linear.getLoc())
            << pass << ": the weight '" << plan.weight->name
            << "' is not read by exactly one linear of the calibrated "
               "function, so "
            << needs
            << " has no inputs for it; exclude it or use score=magnitude "
               "refit=none";
        return signalPassFailure();
      }
  }

  // Scores, when they decide something: the allocation (rank=0), or the
  // kept bases without a refit (which otherwise scores on its own inputs).
  if (rank == 0 || (energy() && !lsq())) {
    if (energy()) {
      // Phase 1: the float model's inputs, stage by stage.
      if (failed(runStages(
              *run, cache, planOf, plans,
              [&](ArrayRef<LayerPlan *> todo, ArrayRef<double> gram,
                  ArrayRef<std::vector<float> *>) {
                parallelFor(ctx, 0, todo.size(), [&](size_t t) {
                  LayerPlan &plan = *todo[t];
                  numerics::SVD svd =
                      numerics::thinSVD(plan.weight->values, plan.m, plan.n);
                  plan.scores = numerics::energyScores(svd, gram);
                });
              })))
        return signalPassFailure();
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
    LogicalResult refitted = runStages(
        *run, cache, planOf, plans,
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
    if (failed(refitted))
      return signalPassFailure();
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
