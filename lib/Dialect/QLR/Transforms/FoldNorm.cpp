//===- FoldNorm.cpp - Norm weights into the next linears --------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// qlr-fold-norm: for a norm y = n(x)·g + b feeding linears, W·y + c equals
// (W·diag(g))·n(x) + (c + W·b), so g and b move into every consumer and the
// norm keeps unit parameters. All norms are checked before any is rewritten:
// with strict=true a refusal leaves the module untouched.
//
//===----------------------------------------------------------------------===//

#include "WeightUtils.h"

#include "qlr/Dialect/QLR/Transforms/Passes.h"

#include "llvm/ADT/SetVector.h"

namespace mlir::qlr {
#define GEN_PASS_DEF_QLRFOLDNORMPASS
#include "qlr/Dialect/QLR/Transforms/Passes.h.inc"
} // namespace mlir::qlr

using namespace mlir;
using namespace mlir::qlr;

namespace {

/// A linear layer fed by a norm that folding rewrites.
struct Consumer {
  LinearOp linear;
  arith::ConstantOp weight;
  /// The linear's bias, when it has one and the fold changes it.
  arith::ConstantOp bias;
};

/// A norm that can be folded and what the rewrite needs.
struct NormFold {
  Operation *norm;
  OpOperand *weightOperand;
  /// The LayerNorm bias operand; null for RMSNorm.
  OpOperand *biasOperand = nullptr;
  std::vector<double> g, b;
  bool unitWeight = false, zeroBias = true;
  SmallVector<Consumer> consumers;
};

enum class Verdict { Fold, Skip, Refuse, Error };

} // namespace

static StringRef operandRole(LinearOp linear, OpOperand &use) {
  if (&use == &linear.getInputMutable())
    return "input";
  if (&use == &linear.getWeightMutable())
    return "weight";
  return "bias";
}

/// Decides whether `norm` can be folded; fills `fold` or `refusal`.
static Verdict analyze(Operation *norm, NormFold &fold, FoldRefusal &refusal) {
  auto refuse = [&](std::string reason, Operation *culprit = nullptr,
                    std::string note = "") {
    refusal = {std::move(reason), culprit, std::move(note)};
    return Verdict::Refuse;
  };
  fold.norm = norm;
  fold.weightOperand = &norm->getOpOperand(1);
  if (auto layerNorm = dyn_cast<LayerNormOp>(norm))
    fold.biasOperand = &layerNorm.getBiasMutable();

  // The norm's parameters.
  auto gConstant = getElementsConstant(fold.weightOperand->get());
  if (!gConstant)
    return refuse("its weight is not a constant",
                  fold.weightOperand->get().getDefiningOp(),
                  "the weight is computed here");
  FailureOr<std::vector<double>> g = readConstantDoubles(gConstant);
  if (failed(g))
    return Verdict::Error;
  fold.g = std::move(*g);
  fold.unitWeight = llvm::all_of(fold.g, [](double v) { return v == 1.0; });
  if (fold.biasOperand) {
    auto bConstant = getElementsConstant(fold.biasOperand->get());
    if (!bConstant)
      return refuse("its bias is not a constant",
                    fold.biasOperand->get().getDefiningOp(),
                    "the bias is computed here");
    FailureOr<std::vector<double>> b = readConstantDoubles(bConstant);
    if (failed(b))
      return Verdict::Error;
    fold.b = std::move(*b);
    fold.zeroBias = llvm::all_of(fold.b, [](double v) { return v == 0.0; });
  }
  // Already unit (or unused: nothing to fold into).
  if ((fold.unitWeight && fold.zeroBias) || norm->use_empty())
    return Verdict::Skip;

  // Every use must be the input of a linear with a float constant weight.
  llvm::SmallPtrSet<Operation *, 8> consumerOps;
  for (OpOperand &use : norm->getResult(0).getUses()) {
    auto linear = dyn_cast<LinearOp>(use.getOwner());
    if (!linear)
      return refuse((Twine("its result is used by '") +
                     use.getOwner()->getName().getStringRef() +
                     "', which is not a qlr.linear")
                        .str(),
                    use.getOwner(), "the offending user");
    if (&use != &linear.getInputMutable())
      return refuse((Twine("its result is the ") + operandRole(linear, use) +
                     " operand of a qlr.linear, not its input")
                        .str(),
                    linear, "the offending user");
    Value weight = linear.getWeight();
    if (isa<QTensorType, LowRankType>(weight.getType())) {
      std::string reason;
      llvm::raw_string_ostream os(reason);
      os << "a qlr.linear it feeds has a "
         << (isa<QTensorType>(weight.getType()) ? "quantized" : "low-rank")
         << " weight " << weight.getType()
         << ", which cannot absorb the norm exactly (fold before compressing)";
      return refuse(reason, linear, "the offending user");
    }
    auto wConstant = getElementsConstant(weight);
    if (!wConstant)
      return refuse("the weight of a qlr.linear it feeds is not a constant",
                    linear, "the offending user");
    Consumer consumer{linear, wConstant, {}};
    if (fold.biasOperand && !fold.zeroBias && linear.getBias()) {
      consumer.bias = getElementsConstant(linear.getBias());
      if (!consumer.bias)
        return refuse("the bias of a qlr.linear it feeds is not a constant",
                      linear, "the offending user");
    }
    fold.consumers.push_back(consumer);
    consumerOps.insert(linear);
  }

  // A weight may be shared only among the linears this norm feeds (which all
  // need the same scaling); any other user would see the folded values too.
  // (A unit weight leaves the weights as they are.)
  for (Consumer &consumer : fold.consumers) {
    if (fold.unitWeight)
      break;
    for (OpOperand &use : consumer.weight->getUses()) {
      auto linear = dyn_cast<LinearOp>(use.getOwner());
      if (linear && consumerOps.contains(linear) &&
          &use == &linear.getWeightMutable())
        continue;
      return refuse((Twine("the weight of a qlr.linear it feeds is also used "
                           "by '") +
                     use.getOwner()->getName().getStringRef() +
                     "' (a shared weight, e.g. tied embeddings, would "
                     "change for that user too)")
                        .str(),
                    use.getOwner(), "the other user of the weight");
    }
  }
  // Fail here rather than half-way through the rewrite when a weight cannot
  // be read (an elided blob).
  llvm::SmallPtrSet<Operation *, 8> checked;
  for (Consumer &consumer : fold.consumers) {
    for (arith::ConstantOp constant : {consumer.weight, consumer.bias})
      if (constant && checked.insert(constant).second &&
          failed(readConstantFloats(constant)))
        return Verdict::Error;
  }
  return Verdict::Fold;
}

/// Rewrites the consumers of `fold` and resets the norm's parameters; adds
/// the constants that may have become unused to `maybeDead`.
static void rewrite(NormFold &fold, llvm::SetVector<Operation *> &maybeDead) {
  // Folded weights, one per distinct constant; folded biases, one per
  // (weight, bias) pair.
  DenseMap<Operation *, Value> newWeights;
  DenseMap<std::pair<Operation *, Operation *>, Value> newBiases;
  bool foldBias = fold.biasOperand && !fold.zeroBias;
  for (Consumer &consumer : fold.consumers) {
    arith::ConstantOp wConstant = consumer.weight;
    auto type = cast<RankedTensorType>(wConstant.getType());
    Type element = type.getElementType();
    int64_t n = type.getDimSize(0), k = type.getDimSize(1);
    LinearOp linear = consumer.linear;
    // The weight's values, read at most once per consumer (analyze checked
    // that they can be read).
    std::vector<float> w;
    auto weightValues = [&]() -> ArrayRef<float> {
      if (w.empty())
        w = *readConstantFloats(wConstant);
      return w;
    };

    if (foldBias) {
      auto key = std::make_pair(wConstant.getOperation(),
                                consumer.bias ? consumer.bias.getOperation()
                                              : nullptr);
      Value &bias = newBiases[key];
      if (!bias) {
        std::vector<double> c(n, 0.0);
        if (consumer.bias) {
          std::vector<float> oldBias = *readConstantFloats(consumer.bias);
          c.assign(oldBias.begin(), oldBias.end());
        }
        ArrayRef<float> oldWeight = weightValues();
        std::vector<float> values(n);
        for (int64_t row = 0; row < n; ++row) {
          double sum = c[row];
          for (int64_t col = 0; col < k; ++col)
            sum += double(oldWeight[row * k + col]) * fold.b[col];
          values[row] = roundToFloatType(sum, element);
        }
        OpBuilder b(linear);
        auto biasType = RankedTensorType::get({n}, element);
        std::string name = consumer.bias
                               ? foldedName(resourceKey(consumer.bias))
                               : createdBiasName(resourceKey(wConstant));
        bias = createFloatConstantLike(
            b, linear.getLoc(), consumer.bias ? consumer.bias : wConstant,
            biasType, name, values);
      }
      if (consumer.bias)
        maybeDead.insert(consumer.bias);
      linear.getBiasMutable().assign(bias);
    }

    if (!fold.unitWeight) {
      Value &weight = newWeights[wConstant];
      if (!weight) {
        ArrayRef<float> oldWeight = weightValues();
        std::vector<float> values(oldWeight.size());
        for (int64_t row = 0; row < n; ++row)
          for (int64_t col = 0; col < k; ++col)
            values[row * k + col] = roundToFloatType(
                double(oldWeight[row * k + col]) * fold.g[col], element);
        OpBuilder b(wConstant);
        weight =
            createFloatConstantLike(b, wConstant.getLoc(), wConstant, type,
                                    foldedName(resourceKey(wConstant)), values);
        maybeDead.insert(wConstant);
      }
      linear.getWeightMutable().assign(weight);
    }
  }

  // Unit parameters for the norm.
  OpBuilder b(fold.norm);
  auto setSplat = [&](OpOperand *operand, double value) {
    Value old = operand->get();
    auto type = cast<RankedTensorType>(old.getType());
    auto attr = DenseElementsAttr::get(
        type, FloatAttr::get(type.getElementType(), value).getValue());
    operand->set(arith::ConstantOp::create(b, fold.norm->getLoc(), attr));
    maybeDead.insert(old.getDefiningOp());
  };
  if (!fold.unitWeight)
    setSplat(fold.weightOperand, 1.0);
  if (foldBias)
    setSplat(fold.biasOperand, 0.0);
}

namespace {
struct QLRFoldNormPass
    : public mlir::qlr::impl::QLRFoldNormPassBase<QLRFoldNormPass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    SmallVector<Operation *> norms;
    module.walk([&](Operation *op) {
      if (isa<RMSNormOp, LayerNormOp>(op))
        norms.push_back(op);
    });

    SmallVector<NormFold> folds;
    bool refused = false;
    for (Operation *norm : norms) {
      NormFold fold;
      FoldRefusal refusal;
      switch (analyze(norm, fold, refusal)) {
      case Verdict::Error:
        return signalPassFailure();
      case Verdict::Skip:
        continue;
      case Verdict::Fold:
        folds.push_back(std::move(fold));
        continue;
      case Verdict::Refuse:
        refused = true;
        reportFoldRefusal(norm, refusal, strict);
        continue;
      }
    }
    if (strict && refused)
      return signalPassFailure();

    llvm::SetVector<Operation *> maybeDead;
    for (NormFold &fold : folds)
      rewrite(fold, maybeDead);
    for (Operation *op : maybeDead)
      if (op && op->use_empty())
        op->erase();
    numFolded += folds.size();
  }
};
} // namespace
