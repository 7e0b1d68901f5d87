//===- NormTweak.cpp - Tune norm weights after quantization ---*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// qlr-norm-tweak: Norm Tweaking (Li et al., AAAI 2024) as a pass. The float
// model (the `reference` module) and the quantized model (this module, its
// compressed weights decoded) run side by side through the calibration
// engine (lib/Calibration); each block's RMSNorm weights are tuned with Adam
// on the block backward of lib/Numerics/NormTweak. The pass only reads and
// writes the IR: loading, the block loop and writing the tweaked weights
// back.
//
//===----------------------------------------------------------------------===//

#include "Calibration.h"
#include "WeightUtils.h"

#include "qlr/Calibration/ModuleLoader.h"
#include "qlr/Dialect/QLR/Transforms/Passes.h"
#include "qlr/Numerics/NormTweak.h"
#include "qlr/Support/Progress.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/Parser/Parser.h"

#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <cmath>
#include <thread>
#include <utility>

namespace mlir::qlr {
#define GEN_PASS_DEF_QLRNORMTWEAKPASS
#include "qlr/Dialect/QLR/Transforms/Passes.h.inc"
} // namespace mlir::qlr

using namespace mlir;
using namespace mlir::qlr;
namespace numerics = ::qlr::numerics;
namespace calib = ::qlr::calibration;

namespace {
/// What happened to one block.
struct BlockReport {
  double before = 0, after = 0;
  bool kept = false;
};

/// The model-level check, on the calibration tokens, without and with the
/// tweaks the blocks kept: the mean KL divergence of the quantized model's
/// next-token distributions from the float model's (the decision) and the
/// quantized model's perplexity (reported).
struct ModelGuard {
  bool checked = false, kept = true;
  double klBefore = 0, klAfter = 0;
  double perplexityBefore = 0, perplexityAfter = 0;
};

/// Next-token statistics of a quantized model's final hidden states against
/// the float model's, over all positions that predict a next token.
struct LogitComparison {
  double kl = 0;         ///< mean KL(p_float || p_quantized), nats
  double perplexity = 0; ///< exp(mean NLL) of the quantized model
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

/// Compares two states of `quantized` (final hidden states `hqA`, `hqB`;
/// only block norms may differ between them, so one classifier serves both)
/// with `floatModel` (`hf`), one sequence at a time, so that only one
/// sequence's logits are alive and the float logits are computed once; one
/// `progress` step per sequence.
std::pair<LogitComparison, LogitComparison>
compareLogits(const calib::LlamaModel &quantized, const calib::Activations &hqA,
              const calib::Activations &hqB,
              const calib::LlamaModel &floatModel, const calib::Activations &hf,
              ArrayRef<int32_t> tokens, ::qlr::Progress &progress) {
  int64_t seqLen = hqA.seqLen, width = hqA.width;
  int64_t vocab = quantized.config().vocabSize;
  auto slice = [&](const calib::Activations &x, int64_t s) {
    calib::Activations one{1, seqLen, width, {}};
    ArrayRef<float> rows =
        ArrayRef<float>(x.data).slice(s * seqLen * width, seqLen * width);
    one.data.assign(rows.begin(), rows.end());
    return one;
  };
  double kl[2] = {0, 0}, nll[2] = {0, 0};
  std::vector<double> logQ, logF;
  for (int64_t s = 0; s < hqA.sequences; ++s) {
    std::vector<float> lf = floatModel.logits(slice(hf, s));
    const calib::Activations *states[2] = {&hqA, &hqB};
    for (int which = 0; which < 2; ++which) {
      std::vector<float> lq = quantized.logits(slice(*states[which], s));
      for (int64_t t = 0; t + 1 < seqLen; ++t) {
        logSoftmax(ArrayRef<float>(lq).slice(t * vocab, vocab), logQ);
        logSoftmax(ArrayRef<float>(lf).slice(t * vocab, vocab), logF);
        for (int64_t v = 0; v < vocab; ++v)
          kl[which] += std::exp(logF[v]) * (logF[v] - logQ[v]);
        nll[which] -= logQ[tokens[s * seqLen + t + 1]];
      }
    }
    progress.step();
  }
  double positions = double(hqA.sequences * (seqLen - 1));
  return {{kl[0] / positions, std::exp(nll[0] / positions)},
          {kl[1] / positions, std::exp(nll[1] / positions)}};
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

/// The loss of `yq` against `yf` over all their rows.
double fullLoss(numerics::NormTweakLoss kind, const calib::Activations &yq,
                const calib::Activations &yf) {
  return numerics::normTweakLoss<float>(kind, yq.data, yf.data, yq.rows(),
                                        yq.width, {});
}

struct QLRNormTweakPass
    : public mlir::qlr::impl::QLRNormTweakPassBase<QLRNormTweakPass> {
  using Base::Base;

  void runOnOperation() override;

private:
  /// The learning rate in use: `lr`, or the default for `module`.
  double learningRate = 0;

  /// Checks the options; reports the first problem at `module`.
  LogicalResult checkOptions(ModuleOp module);
  /// Parses `reference` in its own context (its weights must not live on in
  /// this module's context) and loads its float model.
  FailureOr<calib::LlamaModel> loadReference(ModuleOp module);
  /// Tunes block `i`'s norms of `quantized` so that its outputs on `xq`
  /// match `yf`; returns the block's outputs with the norms it keeps.
  calib::Activations tweakBlock(calib::LlamaModel &quantized, int64_t i,
                                const calib::Activations &xq,
                                const calib::Activations &yf,
                                numerics::NormTweakLoss kind,
                                BlockReport &report);
  /// Replaces the norm constants of the blocks that changed.
  LogicalResult writeBack(ModuleOp module, const calib::LlamaModel &quantized,
                          ArrayRef<BlockReport> reports);
  /// Writes the per-block losses to `report` (atomically).
  LogicalResult writeReport(ModuleOp module, ArrayRef<BlockReport> reports,
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
                      "from: reference=FILE (qlr-import's output)";
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

FailureOr<calib::LlamaModel> QLRNormTweakPass::loadReference(ModuleOp module) {
  MLIRContext context(getContext().getDialectRegistry(),
                      MLIRContext::Threading::DISABLED);
  context.loadAllAvailableDialects();
  std::string messages;
  llvm::raw_string_ostream os(messages);
  ScopedDiagnosticHandler handler(&context, [&](Diagnostic &diag) {
    os << "\n  " << diag.getLocation() << ": " << diag;
    return success();
  });
  ParserConfig config(&context);
  OwningOpRef<ModuleOp> parsed =
      parseSourceFile<ModuleOp>(reference.getValue(), config);
  if (!parsed)
    return emitError(module.getLoc())
           << getArgument() << ": cannot read reference=" << reference
           << messages;
  FailureOr<calib::LlamaModel> model = loadLlamaModel(*parsed);
  if (failed(model))
    return emitError(module.getLoc())
           << getArgument() << ": reference=" << reference
           << " is not a model made by qlr-import" << messages;
  return model;
}

calib::Activations QLRNormTweakPass::tweakBlock(calib::LlamaModel &quantized,
                                                int64_t i,
                                                const calib::Activations &xq,
                                                const calib::Activations &yf,
                                                numerics::NormTweakLoss kind,
                                                BlockReport &report) {
  const calib::LlamaConfig &cfg = quantized.config();
  calib::BlockWeights &block = quantized.block(i);
  calib::Activations before = quantized.forwardBlock(i, xq);
  report.before = fullLoss(kind, before, yf);

  numerics::LlamaBlockShape shape{cfg.dim,      cfg.headDim,   cfg.heads,
                                  cfg.kvHeads,  cfg.hiddenDim, cfg.normEps,
                                  cfg.ropeTheta};
  numerics::LlamaBlockBackprop<float> backprop(
      shape, std::max(1u, std::thread::hardware_concurrency()));
  std::vector<float> attention = block.attentionNorm, ffn = block.ffnNorm;
  const std::vector<float> originalAttention = attention, originalFfn = ffn;
  bool tuneAttention = norms != "ffn", tuneFfn = norms != "attn";
  numerics::AdamOptimizer adamAttention(attention.size(), learningRate);
  numerics::AdamOptimizer adamFfn(ffn.size(), learningRate);

  int64_t seqLen = xq.seqLen, dim = xq.width, rows = seqLen;
  std::vector<float> y(rows * dim), grad(rows * dim);
  std::vector<float> gradAttention(dim), gradFfn(dim);
  for (int64_t epoch = 0; epoch < iters; ++epoch) {
    for (int64_t s = 0; s < xq.sequences; ++s) {
      ArrayRef<float> x =
          ArrayRef<float>(xq.data).slice(s * rows * dim, rows * dim);
      ArrayRef<float> target =
          ArrayRef<float>(yf.data).slice(s * rows * dim, rows * dim);
      numerics::LlamaBlockParams<float> params{attention, ffn,      block.wq,
                                               block.wk,  block.wv, block.wo,
                                               block.w1,  block.w2, block.w3};
      backprop.forward(params, x, /*sequences=*/1, seqLen, y);
      numerics::normTweakLoss<float>(kind, y, target, rows, dim, grad);
      backprop.backward(grad, gradAttention, gradFfn);
      if (tuneAttention)
        adamAttention.step(attention, gradAttention);
      if (tuneFfn)
        adamFfn.step(ffn, gradFfn);
    }
  }

  block.attentionNorm = attention;
  block.ffnNorm = ffn;
  calib::Activations after = quantized.forwardBlock(i, xq);
  report.after = fullLoss(kind, after, yf);
  report.kept = report.after < report.before;
  if (report.kept)
    return after;
  block.attentionNorm = originalAttention;
  block.ffnNorm = originalFfn;
  return before;
}

LogicalResult QLRNormTweakPass::writeBack(ModuleOp module,
                                          const calib::LlamaModel &quantized,
                                          ArrayRef<BlockReport> reports) {
  // The importer's @forward has two RMSNorms per block (attention, then
  // feed-forward) and the final one; loadLlamaModel already relied on that.
  auto forward = module.lookupSymbol<func::FuncOp>("forward");
  SmallVector<RMSNormOp> normOps;
  if (forward)
    forward.walk([&](RMSNormOp op) { normOps.push_back(op); });
  int64_t layers = quantized.config().layers;
  if (int64_t(normOps.size()) != 2 * layers + 1)
    return emitError(module.getLoc())
           << getArgument() << ": expected " << 2 * layers + 1
           << " qlr.rms_norm ops in @forward (two per block and the final "
              "norm), found "
           << normOps.size();
  auto replace = [&](RMSNormOp op, StringRef canonical,
                     ArrayRef<float> values) {
    Value old = op.getWeight();
    std::string name = canonical.str();
    if (auto constant = old.getDefiningOp<arith::ConstantOp>())
      if (StringRef key = resourceKey(constant); !key.empty())
        name = key.str();
    OpBuilder b(op);
    auto type = cast<RankedTensorType>(old.getType());
    op.getWeightMutable().assign(
        createFloatResource(b, op.getLoc(), type, name + ".tweaked", values));
    if (Operation *def = old.getDefiningOp(); def && def->use_empty())
      def->erase();
  };
  for (int64_t i = 0; i < layers; ++i) {
    if (!reports[i].kept)
      continue;
    const calib::BlockWeights &block = quantized.weights().blocks[i];
    std::string prefix = llvm::formatv("layers.{0}.", i).str();
    if (norms != "ffn")
      replace(normOps[2 * i], prefix + "attention_norm", block.attentionNorm);
    if (norms != "attn")
      replace(normOps[2 * i + 1], prefix + "ffn_norm", block.ffnNorm);
  }
  return success();
}

LogicalResult QLRNormTweakPass::writeReport(ModuleOp module,
                                            ArrayRef<BlockReport> reports,
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
  if (failed(checkOptions(module)))
    return signalPassFailure();
  // At 4 bits and more the blocks are close to float and the step that
  // helps most at 2-3 bits overshoots (docs/norm-tweak.md).
  learningRate = lr != 0.0                         ? double(lr)
                 : narrowestCodeWidth(module) <= 3 ? 5e-4
                                                   : 1e-4;
  FailureOr<calib::LlamaModel> quantized = loadLlamaModel(module);
  if (failed(quantized)) {
    emitError(module.getLoc())
        << getArgument()
        << ": needs a module made by qlr-import (qlr.model attribute and "
           "canonical weight names), possibly compressed by earlier passes";
    return signalPassFailure();
  }
  FailureOr<calib::LlamaModel> floatModel = loadReference(module);
  if (failed(floatModel))
    return signalPassFailure();
  const calib::LlamaConfig &qc = quantized->config(),
                           &fc = floatModel->config();
  if (qc.dim != fc.dim || qc.layers != fc.layers || qc.heads != fc.heads ||
      qc.kvHeads != fc.kvHeads || qc.hiddenDim != fc.hiddenDim ||
      qc.vocabSize != fc.vocabSize || qc.headDim != fc.headDim) {
    emitError(module.getLoc())
        << getArgument() << ": reference=" << reference
        << " is a different model (dim " << fc.dim << ", " << fc.layers
        << " layers) than the module (dim " << qc.dim << ", " << qc.layers
        << " layers)";
    return signalPassFailure();
  }

  // The float model generates the calibration text (data=generate), as the
  // paper does.
  CalibrationSpec spec{data, samples, seqLen, seed};
  FailureOr<std::vector<int32_t>> tokens =
      getCalibrationTokens(module, getArgument(), spec, *floatModel);
  if (failed(tokens))
    return signalPassFailure();

  numerics::NormTweakLoss kind = loss == "mse"
                                     ? numerics::NormTweakLoss::MeanSquared
                                     : numerics::NormTweakLoss::Distribution;
  calib::Activations xf = floatModel->embed(*tokens, samples, seqLen);
  calib::Activations xq = quantized->embed(*tokens, samples, seqLen);
  std::vector<BlockReport> reports(qc.layers);
  std::vector<calib::BlockWeights> original;
  if (modelGuard)
    for (int64_t i = 0; i < qc.layers; ++i)
      original.push_back(
          {quantized->block(i).attentionNorm, quantized->block(i).ffnNorm});
  {
    ::qlr::Progress progress(getArgument(), "block", qc.layers);
    for (int64_t i = 0; i < qc.layers; ++i) {
      calib::Activations yf = floatModel->forwardBlock(i, xf);
      xq = tweakBlock(*quantized, i, xq, yf, kind, reports[i]);
      xf = std::move(yf);
      progress.step(llvm::formatv("layers.{0}", i).str());
    }
  }

  // The per-block guard protects each block's loss, not the model: keep the
  // tweaked norms only if the quantized model's next-token distributions on
  // the calibration text also move closer to the float model's. (xq and xf
  // are now the final hidden states with the kept tweaks and of the float
  // model.)
  ModelGuard guard;
  auto swapNorms = [&] {
    for (int64_t i = 0; i < qc.layers; ++i) {
      std::swap(quantized->block(i).attentionNorm, original[i].attentionNorm);
      std::swap(quantized->block(i).ffnNorm, original[i].ffnNorm);
    }
  };
  if (modelGuard && llvm::any_of(reports, [](auto &r) { return r.kept; })) {
    guard.checked = true;
    // The untweaked model's hidden states; the final norm and classifier
    // are not tweaked, so both states share them.
    swapNorms();
    calib::Activations untweaked = quantized->forward(*tokens, samples, seqLen);
    swapNorms();
    ::qlr::Progress progress(getArgument(), "model guard, sequence", samples);
    auto [after, before] = compareLogits(*quantized, xq, untweaked, *floatModel,
                                         xf, *tokens, progress);
    guard.klAfter = after.kl;
    guard.klBefore = before.kl;
    guard.perplexityAfter = after.perplexity;
    guard.perplexityBefore = before.perplexity;
    guard.kept = guard.klAfter < guard.klBefore;
    if (!guard.kept) {
      swapNorms();
      for (BlockReport &r : reports)
        r.kept = false;
    }
  }
  for (const BlockReport &r : reports) {
    if (r.kept)
      ++numTweaked;
    else
      ++numRejected;
  }

  if (failed(writeBack(module, *quantized, reports)) ||
      failed(writeReport(module, reports, guard)))
    return signalPassFailure();
}
