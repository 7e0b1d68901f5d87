//===- NormTweak.cpp - Tune norm weights after quantization ---*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// qlr-norm-tweak: Norm Tweaking (Li et al., AAAI 2024) by running the IR.
// The calibrated function of the quantized module and of the float
// `reference` are cut into stages at the inputs of the norms that feed
// later norms (the residual stream of a pre-norm network); each stage is
// outlined into a function of its own, its gradient with respect to the
// stage's norm weights is built by qlr-differentiate, and everything is
// compiled once (CompiledFunctions). The host loop runs the stages in order,
// tunes each stage's norms with Adam on the paper's loss and writes the kept
// weights back.
//
//===----------------------------------------------------------------------===//

#include "Calibration.h"
#include "WeightUtils.h"

#include "qlr/Calibration/Stages.h"
#include "qlr/Dialect/QLR/Transforms/Differentiate.h"
#include "qlr/Dialect/QLR/Transforms/Passes.h"
#include "qlr/Numerics/NormTweak.h"
#include "qlr/Support/Progress.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/IR/Threading.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Transforms/RegionUtils.h"

#include "llvm/ADT/DenseSet.h"
#include "llvm/ADT/SetVector.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <cmath>
#include <mutex>
#include <utility>

namespace mlir::qlr {
#define GEN_PASS_DEF_QLRNORMTWEAKPASS
#include "qlr/Dialect/QLR/Transforms/Passes.h.inc"
} // namespace mlir::qlr

using namespace mlir;
using namespace mlir::qlr;
namespace numerics = ::qlr::numerics;

namespace {

//===----------------------------------------------------------------------===//
// Stages
//===----------------------------------------------------------------------===//

/// A stage: from one cut of the residual stream to the next, with the norms
/// it tunes.
struct NormStage {
  Value from, to;
  /// The tuned norms (ops of the calibrated function), in program order, and
  /// whether each one's part of the stage contains attention.
  SmallVector<Operation *> norms;
  SmallVector<bool> attention;
};

struct NormStagePlan {
  /// The first cut (input of the first tuned norm), the last one, and the
  /// function's first floating-point result (a language model's logits).
  Value first, last, output;
  std::vector<NormStage> stages;
};

bool isFloatTensor(Type type) {
  auto tensor = dyn_cast<RankedTensorType>(type);
  return tensor && isa<FloatType>(tensor.getElementType());
}

/// The ops `to` needs, stopping at `from` and at the function's arguments,
/// in program order; `args` receives the argument numbers read.
SmallVector<Operation *> backwardSlice(func::FuncOp function, Value from,
                                       Value to,
                                       llvm::SetVector<unsigned> &args) {
  llvm::DenseSet<Operation *> needed;
  llvm::DenseSet<Value> seen;
  SmallVector<Value> work = {to};
  Block &body = function.getBody().front();
  while (!work.empty()) {
    Value value = work.pop_back_val();
    if (value == from || !seen.insert(value).second)
      continue;
    if (auto arg = dyn_cast<BlockArgument>(value)) {
      if (arg.getOwner() == &body)
        args.insert(arg.getArgNumber());
      continue;
    }
    Operation *def = value.getDefiningOp();
    if (needed.insert(def).second)
      forEachUsedValue(def, [&](Value used) { work.push_back(used); });
  }
  SmallVector<Operation *> ordered;
  for (Operation &op : body.without_terminator())
    if (needed.contains(&op))
      ordered.push_back(&op);
  return ordered;
}

/// Whether `ops` hold the max reduction of a softmax (attention).
bool hasAttention(ArrayRef<Operation *> ops) {
  return llvm::any_of(ops, [](Operation *op) {
    auto generic = dyn_cast<linalg::GenericOp>(op);
    if (!generic || generic.getNumReductionLoops() == 0)
      return false;
    Value yielded = generic.getRegion().front().getTerminator()->getOperand(0);
    return isa_and_nonnull<arith::MaximumFOp, arith::MaxNumFOp>(
        yielded.getDefiningOp());
  });
}

Value normInput(Operation *norm) { return norm->getOperand(0); }
Value normWeight(Operation *norm) { return norm->getOperand(1); }

/// Plans the stages of `function` (single block): the tuned norms are those
/// with a constant weight whose output reaches another norm; the cuts are
/// their inputs and, at the end, the input of the first norm after them
/// that is not tuned (or the output). A stage starts at the first tuned norm
/// and at every norm whose part of the network contains attention, so a
/// pre-norm transformer gets one stage per block; without attention anywhere
/// every norm is a stage.
FailureOr<NormStagePlan> planNormStages(func::FuncOp function, StringRef pass) {
  NormStagePlan plan;
  Block &body = function.getBody().front();
  for (Value result : body.getTerminator()->getOperands())
    if (isFloatTensor(result.getType())) {
      plan.output = result;
      break;
    }
  if (!plan.output)
    return function.emitOpError()
           << pass << ": returns no floating-point tensor to tune towards";

  SmallVector<Operation *> norms;
  for (Operation &op : body.without_terminator())
    if (isa<RMSNormOp, LayerNormOp>(op))
      norms.push_back(&op);
  // Which norms each norm's output reaches.
  DenseMap<Operation *, unsigned> index;
  for (auto [i, norm] : llvm::enumerate(norms))
    index[norm] = i;
  SmallVector<bool> tuned(norms.size(), false);
  SmallVector<int> firstReached(norms.size(), -1);
  for (auto [i, norm] : llvm::enumerate(norms)) {
    llvm::DenseSet<Operation *> reached;
    SmallVector<Operation *> work = {norm};
    int first = -1;
    while (!work.empty()) {
      Operation *op = work.pop_back_val();
      for (Value result : op->getResults())
        for (OpOperand &use : result.getUses()) {
          Operation *user = use.getOwner();
          while (user->getBlock() != &body)
            user = user->getParentOp();
          if (!reached.insert(user).second)
            continue;
          if (auto found = index.find(user); found != index.end())
            if (first < 0 || int(found->second) < first)
              first = found->second;
          work.push_back(user);
        }
    }
    firstReached[i] = first;
    tuned[i] = first >= 0 && getElementsConstant(normWeight(norm));
  }
  SmallVector<Operation *> units;
  for (auto [i, norm] : llvm::enumerate(norms))
    if (tuned[i])
      units.push_back(norm);
  if (units.empty())
    return function.emitOpError()
           << pass << ": found no norm to tune (a qlr.rms_norm or "
           << "qlr.layer_norm with a constant weight whose output reaches "
              "another norm)";
  // The host loop reads activations, logits and norm weights as f32.
  auto isF32 = [](Value v) {
    return cast<ShapedType>(v.getType()).getElementType().isF32();
  };
  for (Operation *unit : units)
    if (!isF32(normInput(unit)) || !isF32(normWeight(unit)))
      return unit->emitOpError()
             << pass << ": tunes f32 norms on f32 activations; this norm's "
             << "input and weight are " << normInput(unit).getType() << " and "
             << normWeight(unit).getType();
  if (!isF32(plan.output))
    return function.emitOpError()
           << pass << ": needs an f32 result (the logits), not "
           << plan.output.getType();
  // Two tuned norms reading one value (a parallel residual block) do not
  // cut the network in order.
  for (auto [k, unit] : llvm::enumerate(units))
    for (Operation *other : ArrayRef<Operation *>(units).drop_front(k + 1))
      if (normInput(other) == normInput(unit))
        return other->emitOpError()
               << pass << ": reads the same value as the norm at "
               << unit->getLoc()
               << "; norms side by side (a parallel residual block) do not "
                  "cut the network into stages";
  Operation *lastUnit = units.back();
  int after = firstReached[index[lastUnit]];
  Value end = plan.output;
  for (size_t j = after; j < norms.size(); ++j)
    if (!tuned[j]) {
      end = normInput(norms[j]);
      break;
    }

  plan.first = normInput(units.front());
  plan.last = end;
  SmallVector<bool> attention;
  for (auto [k, unit] : llvm::enumerate(units)) {
    Value to = k + 1 < units.size() ? normInput(units[k + 1]) : end;
    llvm::SetVector<unsigned> args;
    attention.push_back(
        hasAttention(backwardSlice(function, normInput(unit), to, args)));
  }
  // Without attention anywhere, every norm is a stage of its own.
  bool anyAttention = llvm::is_contained(attention, true);
  for (auto [k, unit] : llvm::enumerate(units)) {
    Value to = k + 1 < units.size() ? normInput(units[k + 1]) : end;
    if (plan.stages.empty() || attention[k] || !anyAttention)
      plan.stages.push_back(NormStage{normInput(unit), to, {}, {}});
    NormStage &stage = plan.stages.back();
    stage.to = to;
    stage.norms.push_back(unit);
    stage.attention.push_back(attention[k]);
  }
  return plan;
}

/// Outlines the ops that compute `to` from `from` (null: from the function's
/// arguments only) into `@name(from, <arguments read>, <weights of params>)
/// -> to` at `b`. Fails with a located error when an activation (a float
/// tensor computed from the arguments) is already in `claimed`: then `from`
/// is not a cut of the network (a later layer reads an earlier activation
/// some other way).
FailureOr<func::FuncOp> outlineSlice(OpBuilder &b, StringRef name,
                                     func::FuncOp function, Value from,
                                     Value to, ArrayRef<Operation *> params,
                                     const llvm::DenseSet<Value> &activations,
                                     llvm::DenseSet<Operation *> &claimed,
                                     SmallVector<unsigned> &argNumbers,
                                     StringRef pass) {
  llvm::SetVector<unsigned> args;
  SmallVector<Operation *> ops = backwardSlice(function, from, to, args);
  for (Operation *op : ops) {
    bool activation = llvm::any_of(op->getResults(), [&](Value v) {
      return activations.contains(v) && isFloatTensor(v.getType());
    });
    if (!activation)
      continue;
    if (!claimed.insert(op).second)
      return op->emitOpError()
             << pass << ": the stage up to the norm at " << to.getLoc()
             << " recomputes this activation, which an earlier stage "
                "computes: the norms' inputs do not cut the network into "
                "stages (a later layer reads an earlier activation around "
                "the residual stream)";
  }
  argNumbers.assign(args.begin(), args.end());
  llvm::sort(argNumbers);

  SmallVector<Type> inputs;
  if (from)
    inputs.push_back(from.getType());
  for (unsigned arg : argNumbers)
    inputs.push_back(function.getArgument(arg).getType());
  for (Operation *norm : params)
    inputs.push_back(normWeight(norm).getType());
  MLIRContext *context = function.getContext();
  auto stage =
      func::FuncOp::create(b, function.getLoc(), name,
                           FunctionType::get(context, inputs, {to.getType()}));
  Block *entry = stage.addEntryBlock();
  OpBuilder inner = OpBuilder::atBlockBegin(entry);
  IRMapping map;
  unsigned next = 0;
  if (from)
    map.map(from, entry->getArgument(next++));
  for (unsigned arg : argNumbers)
    map.map(function.getArgument(arg), entry->getArgument(next++));
  for (Operation *op : ops) {
    Operation *clone = inner.clone(*op, map);
    if (auto found = llvm::find(params, op); found != params.end())
      clone->setOperand(1, entry->getArgument(next + (found - params.begin())));
  }
  func::ReturnOp::create(inner, function.getLoc(), map.lookup(to));
  return stage;
}

/// The float tensors of `function` computed from the contents of its
/// arguments (sizes read with tensor.dim do not count).
llvm::DenseSet<Value> activationsOf(func::FuncOp function) {
  llvm::DenseSet<Value> dependent;
  Block &body = function.getBody().front();
  for (BlockArgument arg : body.getArguments())
    dependent.insert(arg);
  for (Operation &op : body.without_terminator()) {
    if (isa<tensor::DimOp, tensor::EmptyOp>(op))
      continue;
    bool reads = false;
    forEachUsedValue(&op, [&](Value v) { reads |= dependent.contains(v); });
    if (reads)
      for (Value result : op.getResults())
        dependent.insert(result);
  }
  return dependent;
}

/// The stage functions of one model: @NAME_head (arguments -> first cut),
/// @NAME_stage_K (cut K, arguments, norm weights -> cut K + 1), and
/// @NAME_tail (last cut, arguments -> output); with gradients,
/// @NAME_stage_K_grad (cut K, arguments, norm weights, d cut K + 1 -> d norm
/// weights) from qlr-differentiate.
struct StageFunctions {
  OwningOpRef<ModuleOp> module;
  std::string prefix;
  SmallVector<unsigned> headArgs, tailArgs;
  std::vector<SmallVector<unsigned>> stageArgs;
  bool hasTail = false;

  std::string head() const { return prefix + "_head"; }
  std::string tail() const { return prefix + "_tail"; }
  std::string stage(size_t k) const {
    return prefix + "_stage_" + std::to_string(k);
  }
  std::string gradient(size_t k) const { return stage(k) + "_grad"; }
};

FailureOr<StageFunctions> outlineStages(func::FuncOp function,
                                        const NormStagePlan &plan,
                                        StringRef prefix, bool gradients,
                                        StringRef pass) {
  StageFunctions result;
  result.prefix = prefix.str();
  result.module = ModuleOp::create(function.getLoc());
  OpBuilder b = OpBuilder::atBlockEnd(result.module->getBody());
  llvm::DenseSet<Value> activations = activationsOf(function);
  llvm::DenseSet<Operation *> claimed;
  if (failed(outlineSlice(b, result.head(), function, Value(), plan.first, {},
                          activations, claimed, result.headArgs, pass)))
    return failure();
  for (auto [k, stage] : llvm::enumerate(plan.stages)) {
    result.stageArgs.emplace_back();
    FailureOr<func::FuncOp> outlined =
        outlineSlice(b, result.stage(k), function, stage.from, stage.to,
                     gradients ? ArrayRef<Operation *>(stage.norms)
                               : ArrayRef<Operation *>(),
                     activations, claimed, result.stageArgs.back(), pass);
    if (failed(outlined))
      return failure();
    if (gradients) {
      unsigned numArgs = outlined->getNumArguments();
      SmallVector<unsigned> wrt;
      for (unsigned i = numArgs - stage.norms.size(); i < numArgs; ++i)
        wrt.push_back(i);
      if (failed(buildGradientFunction(*outlined, wrt, result.gradient(k))))
        return failure();
    }
  }
  result.hasTail = plan.last != plan.output;
  if (result.hasTail &&
      failed(outlineSlice(b, result.tail(), function, plan.last, plan.output,
                          {}, activations, claimed, result.tailArgs, pass)))
    return failure();
  if (failed(verify(*result.module)))
    return function.emitOpError()
           << pass << ": internal error: the outlined stages do not verify";
  return result;
}

std::vector<std::string> functionNames(const StageFunctions &functions,
                                       size_t stages, bool gradients) {
  std::vector<std::string> names = {functions.head()};
  for (size_t k = 0; k < stages; ++k) {
    names.push_back(functions.stage(k));
    if (gradients)
      names.push_back(functions.gradient(k));
  }
  if (functions.hasTail)
    names.push_back(functions.tail());
  return names;
}

//===----------------------------------------------------------------------===//
// The pass
//===----------------------------------------------------------------------===//

/// What happened to one stage.
struct StageReport {
  double before = 0, after = 0;
  bool kept = false;
};

/// The model-level check (see the pass description).
struct ModelGuard {
  bool checked = false, kept = true;
  double klBefore = 0, klAfter = 0;
  double perplexityBefore = 0, perplexityAfter = 0;
};

/// The log-softmax of one row of logits, in double.
void logSoftmax(ArrayRef<float> logits, std::vector<double> &out) {
  out.resize(logits.size());
  double maximum = *std::max_element(logits.begin(), logits.end());
  double sum = 0;
  for (float v : logits)
    sum += std::exp(double(v) - maximum);
  double logSum = maximum + std::log(sum);
  for (auto [o, v] : llvm::zip_equal(out, logits))
    o = double(v) - logSum;
}

/// The narrowest code width among the compressed weights of `module`
/// (quantized tensors, quantized low-rank bases and factors); 32 if none.
unsigned narrowestCodeWidth(ModuleOp module) {
  unsigned bits = 32;
  auto visit = [&](FormatAttr format) {
    if (format)
      bits = std::min(bits, format.getBits());
  };
  module.walk([&](Operation *op) {
    for (Type type : op->getResultTypes()) {
      if (auto quantized = dyn_cast<QTensorType>(type)) {
        visit(quantized.getFormat());
      } else if (auto lowRank = dyn_cast<LowRankType>(type)) {
        visit(lowRank.getBase());
        visit(lowRank.getAFormat());
        visit(lowRank.getBFormat());
      }
    }
  });
  return bits;
}

/// [rows, channels] of a buffer: the product of all dimensions but the last,
/// and the last.
std::pair<int64_t, int64_t> rowsAndChannels(ArrayRef<int64_t> shape) {
  int64_t rows = 1;
  for (int64_t d : shape.drop_back())
    rows *= d;
  return {rows, shape.empty() ? 1 : shape.back()};
}

/// The arguments of an outlined stage for one sample: the activations at
/// its start cut (when it has one), the sample's function arguments it
/// reads (`args`), then the weights of `norms`.
std::vector<JitTensor> stageArguments(const JitBuffer *input,
                                      ArrayRef<JitTensor> sample,
                                      ArrayRef<unsigned> args,
                                      ArrayRef<std::vector<float> *> weights,
                                      ArrayRef<Operation *> norms) {
  std::vector<JitTensor> result;
  if (input)
    result.push_back(input->tensor());
  for (unsigned arg : args)
    result.push_back(sample[arg]);
  for (auto [values, norm] : llvm::zip_equal(weights, norms))
    result.push_back(JitTensor{
        values->data(),
        SmallVector<int64_t, 4>(
            cast<RankedTensorType>(normWeight(norm).getType()).getShape())});
  return result;
}

/// One model's activations at a cut, one buffer per sample.
using Activations = std::vector<JitBuffer>;

struct QLRNormTweakPass
    : public mlir::qlr::impl::QLRNormTweakPassBase<QLRNormTweakPass> {
  using Base::Base;

  void runOnOperation() override;

private:
  double learningRate = 0;
  numerics::NormTweakLoss kind = numerics::NormTweakLoss::Distribution;

  LogicalResult checkOptions(ModuleOp module);
  /// Runs `fn(s)` for every sample, in parallel unless `serial` (functions
  /// that run on the OpenMP threads themselves); the first error wins.
  LogicalResult forEachSample(size_t samples,
                              function_ref<llvm::Error(size_t)> fn,
                              bool serial);
  /// Calls `name` of `compiled` on every sample: the previous activations
  /// (if any), the sample's arguments `args`, then `extra`.
  FailureOr<Activations> runAll(const CompiledFunctions &compiled,
                                StringRef name, const Activations *input,
                                ArrayRef<unsigned> args,
                                ArrayRef<std::vector<JitTensor>> samples,
                                ArrayRef<std::vector<float> *> extra,
                                ArrayRef<Operation *> norms);
  double totalLoss(const Activations &q, const Activations &f);
  /// Writes the tuned (`tuned[stage][norm]`) norm weights of the kept
  /// stages into the module.
  LogicalResult writeBack(const CalibrationRun &run, const NormStagePlan &plan,
                          ArrayRef<StageReport> reports,
                          ArrayRef<std::vector<std::vector<float>>> gammas,
                          ArrayRef<SmallVector<bool>> tuned);
  LogicalResult writeReport(ModuleOp module, ArrayRef<StageReport> reports,
                            const ModelGuard &guard);
};
} // namespace

LogicalResult QLRNormTweakPass::checkOptions(ModuleOp module) {
  StringRef pass = getArgument();
  auto error = [&]() -> InFlightDiagnostic {
    return emitError(module.getLoc()) << pass << ": ";
  };
  if (reference.empty())
    return error() << "needs the float model the quantized one was made "
                      "from: reference=FILE (the module before quantization)";
  if (!(lr >= 0.0) || !std::isfinite(double(lr)))
    return error() << "lr=" << double(lr)
                   << ": must be > 0 (or 0 for the default)";
  if (iters < 1)
    return error() << "iters=" << int64_t(iters) << ": must be >= 1";
  if (loss != "dist" && loss != "mse")
    return error() << "unknown loss '" << loss << "' (expected dist or mse)";
  if (norms != "all" && norms != "attn" && norms != "ffn")
    return error() << "unknown norms '" << norms
                   << "' (expected all, attn or ffn)";
  return success();
}

LogicalResult QLRNormTweakPass::forEachSample(
    size_t samples, function_ref<llvm::Error(size_t)> fn, bool serial) {
  std::mutex mutex;
  std::string error;
  auto body = [&](size_t s) {
    if (llvm::Error e = fn(s)) {
      std::lock_guard<std::mutex> lock(mutex);
      if (error.empty())
        error = llvm::toString(std::move(e));
      else
        llvm::consumeError(std::move(e));
    }
  };
  if (serial)
    for (size_t s = 0; s < samples && error.empty(); ++s)
      body(s);
  else
    parallelFor(&getContext(), 0, samples, body);
  if (error.empty())
    return success();
  return emitError(getOperation().getLoc())
         << getArgument() << ": running a stage failed: " << error;
}

FailureOr<Activations> QLRNormTweakPass::runAll(
    const CompiledFunctions &compiled, StringRef name, const Activations *input,
    ArrayRef<unsigned> args, ArrayRef<std::vector<JitTensor>> samples,
    ArrayRef<std::vector<float> *> extra, ArrayRef<Operation *> norms) {
  Activations out(samples.size());
  LogicalResult status = forEachSample(
      samples.size(),
      [&](size_t s) -> llvm::Error {
        std::vector<JitTensor> callArgs = stageArguments(
            input ? &(*input)[s] : nullptr, samples[s], args, extra, norms);
        auto results = compiled.call(name, callArgs);
        if (!results)
          return results.takeError();
        out[s] = std::move(results->front());
        return llvm::Error::success();
      },
      compiled.threaded());
  if (failed(status))
    return failure();
  return out;
}

double QLRNormTweakPass::totalLoss(const Activations &q, const Activations &f) {
  // Over all rows of all samples at once, as the paper's statistics are.
  std::vector<float> yq, yf;
  int64_t rows = 0, channels = 1;
  for (auto [a, b] : llvm::zip_equal(q, f)) {
    auto [r, c] = rowsAndChannels(a.getShape());
    yq.insert(yq.end(), a.as<float>(), a.as<float>() + r * c);
    yf.insert(yf.end(), b.as<float>(), b.as<float>() + r * c);
    rows += r;
    channels = c;
  }
  if (rows == 0)
    return 0;
  return numerics::normTweakLoss<float>(kind, yq, yf, rows, channels, {});
}

LogicalResult
QLRNormTweakPass::writeBack(const CalibrationRun &run,
                            const NormStagePlan &plan,
                            ArrayRef<StageReport> reports,
                            ArrayRef<std::vector<std::vector<float>>> gammas,
                            ArrayRef<SmallVector<bool>> tuned) {
  for (const NormStage &stage : plan.stages)
    for (Operation *norm : stage.norms)
      if (!run.normOriginals.lookup(norm))
        return emitError(getOperation().getLoc())
               << getArgument()
               << ": internal error: a tuned norm has no original";
  for (auto [k, stage] : llvm::enumerate(plan.stages)) {
    if (!reports[k].kept)
      continue;
    for (auto [n, norm] : llvm::enumerate(stage.norms)) {
      if (!tuned[k][n])
        continue;
      Operation *original = run.normOriginals.lookup(norm);
      if (!original)
        return emitError(getOperation().getLoc())
               << getArgument()
               << ": internal error: a tuned norm has no original";
      Value old = normWeight(original);
      std::string name = layerName(original, old);
      if (name.empty())
        name = llvm::formatv("norm.{0}.{1}", k, n).str();
      OpBuilder b(original);
      auto type = cast<RankedTensorType>(old.getType());
      original->setOperand(1, createFloatResource(b, original->getLoc(), type,
                                                  name + ".tweaked",
                                                  gammas[k][n]));
      if (Operation *def = old.getDefiningOp(); def && def->use_empty())
        def->erase();
    }
  }
  return success();
}

LogicalResult QLRNormTweakPass::writeReport(ModuleOp module,
                                            ArrayRef<StageReport> reports,
                                            const ModelGuard &guard) {
  if (report.empty())
    return success();
  llvm::json::Array blocks;
  for (auto [i, r] : llvm::enumerate(reports))
    blocks.push_back(llvm::json::Object{{"block", int64_t(i)},
                                        {"loss_before", r.before},
                                        {"loss_after", r.after},
                                        {"kept", r.kept}});
  llvm::json::Object root{
      {"pass", getArgument()},       {"loss", loss.getValue()},
      {"lr", learningRate},          {"iters", int64_t(iters)},
      {"norms", norms.getValue()},   {"data", data.getValue()},
      {"samples", int64_t(samples)}, {"seq_len", int64_t(seqLen)},
      {"seed", int64_t(seed)},       {"blocks", std::move(blocks)}};
  if (guard.checked)
    root["model_guard"] = llvm::json::Object{
        {"calibration_kl_before", guard.klBefore},
        {"calibration_kl_after", guard.klAfter},
        {"calibration_perplexity_before", guard.perplexityBefore},
        {"calibration_perplexity_after", guard.perplexityAfter},
        {"kept", guard.kept}};
  llvm::Error error =
      llvm::writeToOutput(report.getValue(), [&](llvm::raw_ostream &os) {
        os << llvm::formatv("{0:2}", llvm::json::Value(std::move(root)))
           << "\n";
        return llvm::Error::success();
      });
  if (error)
    return emitError(module.getLoc())
           << getArgument() << ": cannot write report=" << report << ": "
           << llvm::toString(std::move(error));
  return success();
}

void QLRNormTweakPass::runOnOperation() {
  ModuleOp module = getOperation();
  StringRef pass = getArgument();
  if (failed(checkOptions(module)))
    return signalPassFailure();
  // At 4 bits and more the blocks are close to float and the step that
  // helps most at 2-3 bits overshoots (docs/norm-tweak.md).
  learningRate = lr != 0.0                         ? double(lr)
                 : narrowestCodeWidth(module) <= 3 ? 5e-4
                                                   : 1e-4;
  kind = loss == "mse" ? numerics::NormTweakLoss::MeanSquared
                       : numerics::NormTweakLoss::Distribution;

  // The float model, in a context of its own (its weights must not live on
  // in this module's context).
  MLIRContext floatContext(getContext().getDialectRegistry(),
                           MLIRContext::Threading::DISABLED);
  // It compiles its stages on this context's threads.
  if (getContext().isMultithreadingEnabled())
    floatContext.setThreadPool(getContext().getThreadPool());
  floatContext.loadAllAvailableDialects();
  std::string messages;
  llvm::raw_string_ostream os(messages);
  ScopedDiagnosticHandler handler(&floatContext, [&](Diagnostic &diag) {
    os << "\n  " << diag.getLocation() << ": " << diag;
    return success();
  });
  ParserConfig config(&floatContext);
  OwningOpRef<ModuleOp> floatModule =
      parseSourceFile<ModuleOp>(reference.getValue(), config);
  if (!floatModule) {
    emitError(module.getLoc())
        << pass << ": cannot read reference=" << reference << messages;
    return signalPassFailure();
  }

  // The calibration runs: the quantized model's first (so that a module the
  // pass cannot tune is reported before any text is generated), on
  // placeholder tokens; then the float model's, which with data=generate
  // samples the text; its tokens then replace the placeholders.
  bool tokenData =
      !StringRef(data).ends_with(".npz") && !StringRef(data).ends_with(".npy");
  CalibrationSpec spec{data, samples, seqLen, seed, {}};
  CalibrationSpec placeholder = spec;
  if (tokenData && samples >= 1 && seqLen >= 1)
    placeholder.tokens.assign(size_t(samples) * seqLen, 0);
  FailureOr<std::unique_ptr<CalibrationRun>> quantRun = prepareCalibrationRun(
      module, pass, placeholder, "", /*keepResults=*/true);
  if (failed(quantRun))
    return signalPassFailure();
  FailureOr<NormStagePlan> qplan = planNormStages((*quantRun)->function, pass);
  if (failed(qplan))
    return signalPassFailure();
  FailureOr<std::unique_ptr<CalibrationRun>> floatRun =
      prepareCalibrationRun(*floatModule, pass, spec, "", /*keepResults=*/true);
  if (failed(floatRun)) {
    emitError(module.getLoc()) << pass << ": reference=" << reference
                               << " cannot be calibrated" << messages;
    return signalPassFailure();
  }
  CalibrationRun &qrun = **quantRun, &frun = **floatRun;
  if (tokenData) {
    const std::vector<char> &bytes = frun.storage.front();
    std::vector<char> &target = qrun.storage.front();
    if (bytes.size() != target.size()) {
      emitError(module.getLoc())
          << pass << ": internal error: the two models got different token "
          << "counts";
      return signalPassFailure();
    }
    std::copy(bytes.begin(), bytes.end(), target.begin());
    spec.tokens.assign(
        reinterpret_cast<const int32_t *>(bytes.data()),
        reinterpret_cast<const int32_t *>(bytes.data() + bytes.size()));
  }
  FailureOr<NormStagePlan> fplan = planNormStages(frun.function, pass);
  if (failed(fplan)) {
    emitError(module.getLoc()) << pass << ": reference=" << reference
                               << " cannot be split into stages" << messages;
    return signalPassFailure();
  }
  size_t numStages = qplan->stages.size();
  // The two models live in different contexts: compare types as text.
  auto text = [](Value value) {
    std::string printed;
    llvm::raw_string_ostream os(printed);
    os << value.getType();
    return printed;
  };
  bool sameShape = fplan->stages.size() == numStages &&
                   text(fplan->first) == text(qplan->first);
  for (size_t k = 0; sameShape && k < numStages; ++k)
    sameShape =
        fplan->stages[k].norms.size() == qplan->stages[k].norms.size() &&
        text(fplan->stages[k].to) == text(qplan->stages[k].to);
  if (!sameShape) {
    emitError(module.getLoc())
        << pass << ": reference=" << reference
        << " is a different model: " << fplan->stages.size()
        << " stages of tuned norms against " << numStages << " in the module";
    return signalPassFailure();
  }

  FailureOr<StageFunctions> qfunctions = outlineStages(
      qrun.function, *qplan, "__qlr_nt_q", /*gradients=*/true, pass);
  if (failed(qfunctions))
    return signalPassFailure();
  FailureOr<StageFunctions> ffunctions = outlineStages(
      frun.function, *fplan, "__qlr_nt_f", /*gradients=*/false, pass);
  if (failed(ffunctions)) {
    emitError(module.getLoc())
        << pass << ": reference=" << reference << messages;
    return signalPassFailure();
  }
  // The training loop runs one sample at a time: the quantized model's
  // functions use the cores through OpenMP (the kernels, and the large
  // linalg ops in chunks). The float model's run only over all samples at
  // once, which is parallel across samples.
  JitOptions threaded;
  threaded.openmp =
      getContext().isMultithreadingEnabled() && JitModule::supportsThreads();
  FailureOr<CompiledFunctions> qcompiled = CompiledFunctions::compile(
      module, *qfunctions->module, functionNames(*qfunctions, numStages, true),
      threaded, pass, "functions of the quantized model");
  if (failed(qcompiled))
    return signalPassFailure();
  FailureOr<CompiledFunctions> fcompiled = CompiledFunctions::compile(
      module, *ffunctions->module, functionNames(*ffunctions, numStages, false),
      {}, pass, "functions of the float model");
  if (failed(fcompiled))
    return signalPassFailure();

  // The norm weights as the quantized model has them.
  std::vector<std::vector<std::vector<float>>> gammas(numStages);
  for (auto [k, stage] : llvm::enumerate(qplan->stages))
    for (Operation *norm : stage.norms) {
      FailureOr<std::vector<float>> values =
          readConstantFloats(getElementsConstant(normWeight(norm)));
      if (failed(values)) {
        norm->emitOpError() << pass << ": cannot read its weight";
        return signalPassFailure();
      }
      gammas[k].push_back(std::move(*values));
    }
  const std::vector<std::vector<std::vector<float>>> original = gammas;
  auto pointers = [](std::vector<std::vector<float>> &g) {
    SmallVector<std::vector<float> *> p;
    for (std::vector<float> &v : g)
      p.push_back(&v);
    return p;
  };

  ArrayRef<std::vector<JitTensor>> qsamples = qrun.samples;
  ArrayRef<std::vector<JitTensor>> fsamples = frun.samples;
  size_t numSamples = qsamples.size();
  FailureOr<Activations> xq = runAll(*qcompiled, qfunctions->head(), nullptr,
                                     qfunctions->headArgs, qsamples, {}, {});
  FailureOr<Activations> xf = runAll(*fcompiled, ffunctions->head(), nullptr,
                                     ffunctions->headArgs, fsamples, {}, {});
  if (failed(xq) || failed(xf))
    return signalPassFailure();

  std::vector<StageReport> reports(numStages);
  std::vector<SmallVector<bool>> tunedNorms(numStages);
  {
    ::qlr::Progress progress(pass, "stage", numStages);
    for (size_t k = 0; k < numStages; ++k) {
      const NormStage &stage = qplan->stages[k];
      SmallVector<std::vector<float> *> params = pointers(gammas[k]);
      FailureOr<Activations> yf =
          runAll(*fcompiled, ffunctions->stage(k), &*xf,
                 ffunctions->stageArgs[k], fsamples, {}, {});
      FailureOr<Activations> before =
          runAll(*qcompiled, qfunctions->stage(k), &*xq,
                 qfunctions->stageArgs[k], qsamples, params, stage.norms);
      if (failed(yf) || failed(before))
        return signalPassFailure();
      StageReport &r = reports[k];
      r.before = totalLoss(*before, *yf);

      // Which of the stage's norms this run tunes.
      SmallVector<bool> &tune = tunedNorms[k];
      for (bool attention : stage.attention)
        tune.push_back(norms == "all" || (norms == "attn") == attention);
      std::vector<numerics::AdamOptimizer> adams;
      for (std::vector<float> &g : gammas[k])
        adams.emplace_back(g.size(), learningRate);
      for (int64_t epoch = 0; epoch < iters; ++epoch) {
        for (size_t s = 0; s < numSamples; ++s) {
          std::vector<JitTensor> args =
              stageArguments(&(*xq)[s], qsamples[s], qfunctions->stageArgs[k],
                             params, stage.norms);
          auto y = qcompiled->call(qfunctions->stage(k), args);
          if (!y) {
            emitError(module.getLoc())
                << pass << ": running stage " << k
                << " failed: " << llvm::toString(y.takeError());
            return signalPassFailure();
          }
          const JitBuffer &yq = y->front();
          auto [rows, channels] = rowsAndChannels(yq.getShape());
          std::vector<float> grad(rows * channels);
          numerics::normTweakLoss<float>(
              kind, ArrayRef<float>(yq.as<float>(), rows * channels),
              ArrayRef<float>((*yf)[s].as<float>(), rows * channels), rows,
              channels, grad);
          args.push_back(
              JitTensor{grad.data(), SmallVector<int64_t, 4>(yq.getShape())});
          auto grads = qcompiled->call(qfunctions->gradient(k), args);
          if (!grads) {
            emitError(module.getLoc())
                << pass << ": running the gradient of stage " << k
                << " failed: " << llvm::toString(grads.takeError());
            return signalPassFailure();
          }
          for (auto [n, g] : llvm::enumerate(gammas[k])) {
            if (!tune[n])
              continue;
            adams[n].step(g, ArrayRef<float>((*grads)[n].as<float>(),
                                             (*grads)[n].numElements()));
          }
        }
      }
      FailureOr<Activations> after =
          runAll(*qcompiled, qfunctions->stage(k), &*xq,
                 qfunctions->stageArgs[k], qsamples, params, stage.norms);
      if (failed(after))
        return signalPassFailure();
      r.after = totalLoss(*after, *yf);
      r.kept = r.after < r.before;
      if (r.kept) {
        xq = std::move(after);
      } else {
        gammas[k] = original[k];
        xq = std::move(before);
      }
      xf = std::move(yf);
      progress.step(llvm::formatv("{0} norm{1}", stage.norms.size(),
                                  stage.norms.size() == 1 ? "" : "s")
                        .str());
    }
  }

  // The per-stage check protects each stage's loss, not the model: keep
  // the tweaked norms only if the quantized model's next-token
  // distributions on the calibration tokens also move closer to the float
  // model's. Needs token data and the logits (a tail).
  ModelGuard guard;
  bool anyKept = llvm::any_of(reports, [](auto &r) { return r.kept; });
  if (modelGuard && anyKept && tokenData && qfunctions->hasTail &&
      ffunctions->hasTail && qrun.samples.front().size() == 1) {
    guard.checked = true;
    // The untweaked model's final activations.
    std::vector<std::vector<std::vector<float>>> untouched = original;
    FailureOr<Activations> xu = runAll(*qcompiled, qfunctions->head(), nullptr,
                                       qfunctions->headArgs, qsamples, {}, {});
    for (size_t k = 0; succeeded(xu) && k < numStages; ++k)
      xu = runAll(*qcompiled, qfunctions->stage(k), &*xu,
                  qfunctions->stageArgs[k], qsamples, pointers(untouched[k]),
                  qplan->stages[k].norms);
    if (failed(xu))
      return signalPassFailure();
    // Per sample, in parallel; summed in sample order (deterministic).
    ::qlr::Progress progress(pass, "model guard, sequence", numSamples);
    struct SampleStats {
      double kl[2] = {0, 0}, nll[2] = {0, 0};
      int64_t positions = 0;
    };
    std::vector<SampleStats> stats(numSamples);
    const int32_t *tokens = spec.tokens.data();
    std::mutex progressMutex;
    LogicalResult compared = forEachSample(
        numSamples,
        [&](size_t s) -> llvm::Error {
          std::vector<JitTensor> fargs = stageArguments(
              &(*xf)[s], fsamples[s], ffunctions->tailArgs, {}, {});
          auto lf = fcompiled->call(ffunctions->tail(), fargs);
          if (!lf)
            return lf.takeError();
          const Activations *states[2] = {&*xq, &*xu};
          for (int which = 0; which < 2; ++which) {
            std::vector<JitTensor> qargs =
                stageArguments(&(*states[which])[s], qsamples[s],
                               qfunctions->tailArgs, {}, {});
            auto lq = qcompiled->call(qfunctions->tail(), qargs);
            if (!lq)
              return lq.takeError();
            auto [rows, vocab] = rowsAndChannels(lq->front().getShape());
            const float *q = lq->front().as<float>();
            const float *f = lf->front().as<float>();
            // Each position's KL and NLL on the context's threads (the
            // samples may run one at a time), summed in position order.
            int64_t positions = std::max<int64_t>(rows - 1, 0);
            std::vector<double> rowKl(positions, 0.0), rowNll(positions, 0.0);
            parallelFor(&getContext(), 0, positions, [&](size_t t) {
              std::vector<double> logQ, logF;
              logSoftmax(ArrayRef<float>(q + t * vocab, vocab), logQ);
              logSoftmax(ArrayRef<float>(f + t * vocab, vocab), logF);
              double kl = 0;
              for (int64_t v = 0; v < vocab; ++v)
                kl += std::exp(logF[v]) * (logF[v] - logQ[v]);
              rowKl[t] = kl;
              int32_t next = tokens[s * seqLen + t + 1];
              if (next >= 0 && next < vocab)
                rowNll[t] = -logQ[next];
            });
            for (int64_t t = 0; t < positions; ++t) {
              stats[s].kl[which] += rowKl[t];
              stats[s].nll[which] += rowNll[t];
            }
            if (which == 0)
              stats[s].positions = positions;
          }
          std::lock_guard<std::mutex> lock(progressMutex);
          progress.step();
          return llvm::Error::success();
        },
        qcompiled->threaded());
    if (failed(compared))
      return signalPassFailure();
    double kl[2] = {0, 0}, nll[2] = {0, 0};
    int64_t positions = 0;
    for (const SampleStats &sample : stats) {
      for (int which = 0; which < 2; ++which) {
        kl[which] += sample.kl[which];
        nll[which] += sample.nll[which];
      }
      positions += sample.positions;
    }
    // Logits of one position only: nothing predicts a next token.
    if (positions == 0)
      guard.checked = false;
    double n = double(std::max<int64_t>(1, positions));
    guard.klAfter = kl[0] / n;
    guard.klBefore = kl[1] / n;
    guard.perplexityAfter = std::exp(nll[0] / n);
    guard.perplexityBefore = std::exp(nll[1] / n);
    guard.kept = !guard.checked || guard.klAfter < guard.klBefore;
    if (!guard.kept)
      for (StageReport &r : reports)
        r.kept = false;
  }
  for (const StageReport &r : reports) {
    if (r.kept)
      ++numTweaked;
    else
      ++numRejected;
  }

  if (failed(writeBack(qrun, *qplan, reports, gammas, tunedNorms)) ||
      failed(writeReport(module, reports, guard)))
    return signalPassFailure();
}
