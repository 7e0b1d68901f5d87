//===- FoldBatchNorm.cpp - Batch norms into their producers -----*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// qlr-fold-batchnorm: an inference batch norm is y = (x - mean)·s + beta per
// channel, s = scale / sqrt(var + eps). When x = W·v + c (a linear layer) or
// a convolution, scaling the producer's output channels by s and adding the
// shifted bias (c - mean)·s + beta computes y. All batch norms are checked
// before any is rewritten: with strict=true a refusal leaves the module
// untouched.
//
//===----------------------------------------------------------------------===//

#include "WeightUtils.h"

#include "qlr/Dialect/QLR/Transforms/Passes.h"

#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Matchers.h"

#include <cmath>

namespace mlir::qlr {
#define GEN_PASS_DEF_QLRFOLDBATCHNORMPASS
#include "qlr/Dialect/QLR/Transforms/Passes.h.inc"
} // namespace mlir::qlr

using namespace mlir;
using namespace mlir::qlr;

namespace {

/// A batch norm that can be folded into its producer.
struct BatchNormFold {
  BatchNormOp batchNorm;
  /// Per channel: the factor s and the shift -mean·s + beta.
  std::vector<double> factor, shift;
  /// Exactly one of `linear`, `qconv` and `conv` is set.
  LinearOp linear;
  Conv2DOp qconv;
  linalg::Conv2DNchwFchwOp conv;
  /// The float weight or filter; null when it is quantized.
  arith::ConstantOp weight;
  /// A quantized weight: its qlr.pack and the constant of its scales, whose
  /// rows (one per output channel) absorb the factor.
  PackOp pack;
  arith::ConstantOp scales;
  /// The linear's or qlr.conv2d's bias, if it has one.
  arith::ConstantOp bias;
};

enum class Verdict { Fold, Refuse, Error };

} // namespace

/// `value` as the IR prints it.
template <typename T> static std::string printed(T value) {
  std::string text;
  llvm::raw_string_ostream os(text);
  os << value;
  return text;
}

/// Decides whether `op` can be folded; fills `fold` or `refusal`.
static Verdict analyze(BatchNormOp op, BatchNormFold &fold,
                       FoldRefusal &refusal) {
  auto refuse = [&](const Twine &reason, Operation *culprit = nullptr,
                    StringRef note = "") {
    refusal = {reason.str(), culprit, note.str()};
    return Verdict::Refuse;
  };
  fold.batchNorm = op;

  // The statistics.
  std::vector<float> params[4];
  std::pair<StringRef, Value> operands[] = {{"scale", op.getScale()},
                                            {"bias", op.getBias()},
                                            {"mean", op.getMean()},
                                            {"variance", op.getVariance()}};
  for (auto [index, operand] : llvm::enumerate(operands)) {
    arith::ConstantOp constant = getElementsConstant(operand.second);
    if (!constant)
      return refuse(Twine("its ") + operand.first + " is not a constant",
                    operand.second.getDefiningOp(),
                    "the parameter is computed here");
    FailureOr<std::vector<float>> values = readConstantFloats(constant);
    if (failed(values))
      return Verdict::Error;
    params[index] = std::move(*values);
  }
  double epsilon = op.getEpsilon().convertToDouble();
  size_t channels = params[0].size();
  fold.factor.resize(channels);
  fold.shift.resize(channels);
  for (size_t c = 0; c < channels; ++c) {
    double denominator = double(params[3][c]) + epsilon;
    if (!(denominator > 0.0))
      return refuse(Twine("variance + eps is not positive for channel ") +
                    Twine(c));
    fold.factor[c] = double(params[0][c]) / std::sqrt(denominator);
    fold.shift[c] =
        double(params[1][c]) - double(params[2][c]) * fold.factor[c];
  }

  // The producer.
  Value input = op.getInput();
  Operation *producer = input.getDefiningOp();
  if (!producer)
    return refuse("its input is a block argument, not the result of a "
                  "qlr.linear, qlr.conv2d or linalg.conv_2d_nchw_fchw");
  if (!isa<LinearOp, Conv2DOp, linalg::Conv2DNchwFchwOp>(producer))
    return refuse(Twine("its input is produced by '") +
                      producer->getName().getStringRef() +
                      "', not by a qlr.linear, qlr.conv2d or "
                      "linalg.conv_2d_nchw_fchw",
                  producer, "the producer");
  for (Operation *user : input.getUsers())
    if (user != op)
      return refuse(
          Twine("its producer '") + producer->getName().getStringRef() +
              "' has another user '" + user->getName().getStringRef() +
              "' that would see the folded values",
          user, "the other user");
  int64_t rank = op.getInput().getType().getRank();
  int64_t axis = op.getAxis();

  Value weight;
  StringRef weightRole;
  if (isa<LinearOp, Conv2DOp>(producer)) {
    fold.linear = dyn_cast<LinearOp>(producer);
    fold.qconv = dyn_cast<Conv2DOp>(producer);
    int64_t channelAxis = fold.linear ? rank - 1 : 1;
    if (axis != channelAxis)
      return refuse(Twine("its channel axis ") + Twine(axis) + " is not " +
                        Twine(channelAxis) + ", the output " +
                        (fold.linear ? "features" : "channels") + " of the '" +
                        producer->getName().getStringRef() +
                        "' producing its input",
                    producer, "the producer");
    weight = producer->getOperand(1);
    weightRole = fold.linear ? "weight" : "filter";
    if (isa<LowRankType>(weight.getType()))
      return refuse(Twine("the '") + producer->getName().getStringRef() +
                        "' producing its input has a low-rank weight, which "
                        "cannot absorb the batch norm exactly (fold before "
                        "compressing)",
                    producer, "the producer");
    Value bias = fold.linear ? fold.linear.getBias() : fold.qconv.getBias();
    if (bias) {
      fold.bias = getElementsConstant(bias);
      if (!fold.bias)
        return refuse(Twine("the bias of the '") +
                          producer->getName().getStringRef() +
                          "' producing its input is not a constant",
                      producer, "the producer");
    }
    if (auto qtype = dyn_cast<QTensorType>(weight.getType())) {
      // w = s_row · decode(code): scaling every scale of an output channel
      // scales that channel, codes unchanged.
      FormatAttr format = qtype.getFormat();
      int64_t scaleAxis = format.getAxis() < 0
                              ? format.getAxis() + qtype.getRank()
                              : format.getAxis();
      bool perOutputChannel =
          (format.getGranularity() == Granularity::Channel && scaleAxis == 0) ||
          (format.getGranularity() == Granularity::Group && scaleAxis != 0);
      if (!perOutputChannel)
        return refuse(Twine("the quantized ") + weightRole + " of the '" +
                          producer->getName().getStringRef() +
                          "' producing its input does not have its own "
                          "scales per output channel (" +
                          printed(format) + ")",
                      producer, "the producer");
      if (!format.getScaleType().isF32())
        return refuse(Twine("the quantized ") + weightRole + " of the '" +
                          producer->getName().getStringRef() +
                          "' producing its input has " +
                          printed(format.getScaleType()) +
                          " scales, which would be rounded; fold into f32 "
                          "scales (scale = f32)",
                      producer, "the producer");
      fold.pack = weight.getDefiningOp<PackOp>();
      if (!fold.pack)
        return refuse(Twine("the quantized ") + weightRole + " of the '" +
                          producer->getName().getStringRef() +
                          "' producing its input is not built by a qlr.pack "
                          "in this function",
                      producer, "the producer");
      fold.scales = getElementsConstant(fold.pack.getScales());
      if (!fold.scales)
        return refuse("the scales of the quantized weight are not a constant",
                      fold.pack, "the qlr.pack");
      for (OpOperand &use : fold.pack->getUses())
        if (use.getOwner() != producer || use.getOperandNumber() != 1)
          return refuse(Twine("the quantized ") + weightRole +
                            " is also used "
                            "by '" +
                            use.getOwner()->getName().getStringRef() +
                            "' (a shared weight would change for that user "
                            "too)",
                        use.getOwner(), "the other user of the weight");
      if (!fold.scales->hasOneUse())
        return refuse("the scales of the quantized weight are shared with "
                      "another op",
                      fold.pack, "the qlr.pack");
      for (arith::ConstantOp constant : {fold.scales, fold.bias})
        if (constant && failed(readConstantFloats(constant)))
          return Verdict::Error;
      return Verdict::Fold;
    }
  } else {
    fold.conv = cast<linalg::Conv2DNchwFchwOp>(producer);
    if (axis != 1)
      return refuse(Twine("its channel axis ") + Twine(axis) +
                        " is not 1, the output channels of the "
                        "linalg.conv_2d_nchw_fchw producing its input",
                    producer, "the producer");
    weight = fold.conv.getInputs()[1];
    weightRole = "filter";
    Value init = fold.conv.getOutputs()[0];
    auto fill = init.getDefiningOp<linalg::FillOp>();
    if (!fill || !matchPattern(fill.getInputs()[0], m_AnyZeroFloat()))
      return refuse("the init of the linalg.conv_2d_nchw_fchw producing its "
                    "input is not a linalg.fill of 0.0 (the bias would be "
                    "counted twice)",
                    producer, "the producer");
  }
  fold.weight = getElementsConstant(weight);
  if (!fold.weight)
    return refuse(Twine("the ") + weightRole + " of the '" +
                      producer->getName().getStringRef() +
                      "' producing its input is not a constant",
                  producer, "the producer");
  if (!isa<FloatType>(cast<ShapedType>(fold.weight.getType()).getElementType()))
    return refuse(Twine("the ") + weightRole + " of the '" +
                      producer->getName().getStringRef() +
                      "' producing its input is not a float constant",
                  producer, "the producer");
  // Every producer takes the weight as operand 1.
  for (OpOperand &use : fold.weight->getUses())
    if (use.getOwner() != producer || use.getOperandNumber() != 1)
      return refuse(Twine("the ") + weightRole + " of the '" +
                        producer->getName().getStringRef() +
                        "' producing its input is also used by '" +
                        use.getOwner()->getName().getStringRef() +
                        "' (a shared weight would change for that user too)",
                    use.getOwner(), "the other user of the weight");
  // Fail here rather than half-way through the rewrite when a weight cannot
  // be read (an elided blob).
  for (arith::ConstantOp constant : {fold.weight, fold.bias})
    if (constant && failed(readConstantFloats(constant)))
      return Verdict::Error;
  return Verdict::Fold;
}

/// Scales output channel `row / rowSize` of `constant` by `factor`, into a
/// new constant next to the old one.
static Value scaleRows(arith::ConstantOp constant, ArrayRef<double> factor) {
  auto type = cast<RankedTensorType>(constant.getType());
  Type element = type.getElementType();
  std::vector<float> values = *readConstantFloats(constant);
  int64_t rows = type.getDimSize(0);
  int64_t rowSize = type.getNumElements() / rows;
  for (int64_t row = 0; row < rows; ++row)
    for (int64_t i = 0; i < rowSize; ++i) {
      float &v = values[row * rowSize + i];
      v = roundToFloatType(double(v) * factor[row], element);
    }
  OpBuilder b(constant);
  return createFloatConstantLike(b, constant.getLoc(), constant, type,
                                 foldedName(resourceKey(constant)), values);
}

static void rewrite(BatchNormFold &fold) {
  BatchNormOp op = fold.batchNorm;
  Type element = op.getType().getElementType();
  int64_t channels = fold.factor.size();
  auto biasType = RankedTensorType::get({channels}, element);

  // The new bias: (c - mean)·s + beta = c·s + shift.
  std::vector<double> c(channels, 0.0);
  if (fold.bias) {
    std::vector<float> old = *readConstantFloats(fold.bias);
    c.assign(old.begin(), old.end());
  }
  std::vector<float> biasValues(channels);
  for (int64_t i = 0; i < channels; ++i)
    biasValues[i] =
        roundToFloatType(c[i] * fold.factor[i] + fold.shift[i], element);
  arith::ConstantOp weightConstant = fold.weight ? fold.weight : fold.scales;
  arith::ConstantOp like = fold.bias ? fold.bias : weightConstant;
  // A quantized weight is named by its scales, NAME.scales.
  StringRef weightKey = resourceKey(weightConstant);
  if (fold.pack)
    weightKey.consume_back(".scales");
  std::string biasName = fold.bias ? foldedName(resourceKey(fold.bias))
                                   : createdBiasName(weightKey);

  // A float weight is scaled row by row; a quantized one through its
  // scales, codes unchanged.
  Value weight;
  if (fold.pack) {
    fold.pack.getScalesMutable().assign(scaleRows(fold.scales, fold.factor));
    weight = fold.pack.getResult();
  } else {
    weight = scaleRows(fold.weight, fold.factor);
  }
  Value result;
  if (fold.linear || fold.qconv) {
    Operation *producer =
        fold.linear ? fold.linear.getOperation() : fold.qconv.getOperation();
    OpBuilder b(producer);
    Value bias = createFloatConstantLike(b, producer->getLoc(), like, biasType,
                                         biasName, biasValues);
    producer->setOperand(1, weight);
    if (fold.linear) {
      fold.linear.getBiasMutable().assign(bias);
      result = fold.linear.getResult();
    } else {
      fold.qconv.getBiasMutable().assign(bias);
      result = fold.qconv.getResult();
    }
  } else {
    linalg::Conv2DNchwFchwOp conv = fold.conv;
    conv.getInputsMutable()[1].set(weight);
    result = conv.getResult(0);
    if (llvm::any_of(biasValues, [](float v) { return v != 0.0f; })) {
      // result + broadcast(bias) along the batch and spatial dimensions.
      OpBuilder b(op);
      Location loc = op.getLoc();
      Value bias =
          createFloatConstantLike(b, loc, like, biasType, biasName, biasValues);
      Value empty = tensor::EmptyOp::create(
          b, loc, tensor::getMixedSizes(b, loc, result), element);
      Value broadcast = linalg::BroadcastOp::create(b, loc, bias, empty,
                                                    ArrayRef<int64_t>{0, 2, 3})
                            .getResult()[0];
      result = linalg::AddOp::create(b, loc, ValueRange{result, broadcast},
                                     ValueRange{empty})
                   .getResult(0);
    }
  }
  op.getResult().replaceAllUsesWith(result);

  // Erase the batch norm and what only it (or the old weights) used.
  SmallVector<Operation *> maybeDead = {fold.weight, fold.bias, fold.scales};
  for (Value operand : op->getOperands().drop_front())
    maybeDead.push_back(operand.getDefiningOp());
  op.erase();
  // (One constant may appear several times: look at each once.)
  llvm::SmallPtrSet<Operation *, 8> seen;
  for (Operation *dead : maybeDead)
    if (dead && seen.insert(dead).second && dead->use_empty())
      dead->erase();
}

namespace {
struct QLRFoldBatchNormPass
    : public mlir::qlr::impl::QLRFoldBatchNormPassBase<QLRFoldBatchNormPass> {
  using Base::Base;

  void runOnOperation() override {
    SmallVector<BatchNormOp> batchNorms;
    getOperation().walk([&](BatchNormOp op) { batchNorms.push_back(op); });

    SmallVector<BatchNormFold> folds;
    bool refused = false;
    for (BatchNormOp op : batchNorms) {
      BatchNormFold fold;
      FoldRefusal refusal;
      switch (analyze(op, fold, refusal)) {
      case Verdict::Error:
        return signalPassFailure();
      case Verdict::Fold:
        folds.push_back(std::move(fold));
        continue;
      case Verdict::Refuse:
        refused = true;
        reportFoldRefusal(op, refusal, strict);
        continue;
      }
    }
    if (strict && refused)
      return signalPassFailure();
    for (BatchNormFold &fold : folds)
      rewrite(fold);
    numFolded += folds.size();
  }
};
} // namespace
