//===- QuantizeLinear.cpp - RTN and GPTQ weight quantization ------*- C++
//-*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// qlr-quantize-linear: the pass is a thin adapter. The arithmetic lives in
// lib/Numerics (quantizeRTN, quantizeGPTQ, HessianAccumulator) and the
// calibration forward pass in lib/Calibration (LlamaModel).
//
//===----------------------------------------------------------------------===//

#include "Calibration.h"
#include "WeightUtils.h"

#include "qlr/Calibration/ModuleLoader.h"
#include "qlr/Dialect/QLR/Transforms/Passes.h"
#include "qlr/Numerics/GPTQ.h"

#include "mlir/IR/Threading.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/Support/FormatVariadic.h"

namespace mlir::qlr {
#define GEN_PASS_DEF_QLRQUANTIZELINEARPASS
#include "qlr/Dialect/QLR/Transforms/Passes.h.inc"
} // namespace mlir::qlr

using namespace mlir;
using namespace mlir::qlr;
namespace numerics = ::qlr::numerics;
namespace calib = ::qlr::calibration;

namespace {
/// The canonical names of block `i`'s linears that consume `group`'s input,
/// each with the block weight it lives in.
SmallVector<std::pair<std::string, std::vector<float> *>>
groupWeights(calib::BlockWeights &block, int64_t i, calib::LinearGroup group) {
  std::string prefix = llvm::formatv("layers.{0}.", i).str();
  switch (group) {
  case calib::LinearGroup::QKV:
    return {{prefix + "attention.wq", &block.wq},
            {prefix + "attention.wk", &block.wk},
            {prefix + "attention.wv", &block.wv}};
  case calib::LinearGroup::Output:
    return {{prefix + "attention.wo", &block.wo}};
  case calib::LinearGroup::GateUp:
    return {{prefix + "feed_forward.w1", &block.w1},
            {prefix + "feed_forward.w3", &block.w3}};
  case calib::LinearGroup::Down:
    return {{prefix + "feed_forward.w2", &block.w2}};
  }
  llvm_unreachable("unknown linear group");
}

struct QLRQuantizeLinearPass
    : public mlir::qlr::impl::QLRQuantizeLinearPassBase<QLRQuantizeLinearPass> {
  using Base::Base;

  void runOnOperation() override;

private:
  /// Sequential GPTQ over the transformer blocks; fills `results` for every
  /// selected weight that lives in a block.
  LogicalResult runGPTQ(ModuleOp module, FormatAttr quantFormat,
                        const llvm::StringSet<> &selected,
                        llvm::StringMap<numerics::QuantizedData> &results);
};
} // namespace

LogicalResult QLRQuantizeLinearPass::runGPTQ(
    ModuleOp module, FormatAttr quantFormat, const llvm::StringSet<> &selected,
    llvm::StringMap<numerics::QuantizedData> &results) {
  FailureOr<calib::LlamaModel> model = loadLlamaModel(module);
  if (failed(model))
    return emitError(module.getLoc())
           << getArgument()
           << ": method=gptq calibrates by running the model, which needs a "
              "module made by qlr-import (qlr.model attribute and canonical "
              "weight names)";
  CalibrationSpec spec{calibration, samples, seqLen, seed};
  FailureOr<std::vector<int32_t>> tokens =
      getCalibrationTokens(module, getArgument(), spec, *model);
  if (failed(tokens))
    return failure();
  numerics::GPTQOptions options;
  options.damp = damp;
  options.actOrder = actOrder;
  options.blockSize = blockSize;
  options.clipSearch = clipSearch;
  numerics::QuantFormat fmt = quantFormat.toNumerics(2);

  calib::Activations x = model->embed(*tokens, samples, seqLen);
  std::string problem;
  for (int64_t i = 0, e = model->config().layers; i < e && problem.empty();
       ++i) {
    calib::BlockWeights &block = model->block(i);
    x = model->forwardBlock(
        i, x, [&](calib::LinearGroup group, const calib::Activations &input) {
          auto weights = groupWeights(block, i, group);
          if (!problem.empty() || llvm::none_of(weights, [&](const auto &w) {
                return selected.contains(w.first);
              }))
            return;
          std::vector<double> h = calib::inputHessian(input);
          int64_t k = input.width;
          for (auto &[name, w] : weights) {
            if (!selected.contains(name))
              continue;
            int64_t n = int64_t(w->size()) / k;
            auto q = numerics::quantizeGPTQ(*w, n, k, h, fmt, options);
            if (!q) {
              problem = name + ": " + llvm::toString(q.takeError());
              return;
            }
            // The rest of the block (and the next blocks) must see the
            // quantized weight, exactly as the compiled model decodes it.
            *w = numerics::dequantize(*q, {n, k}, fmt);
            results[name] = std::move(*q);
          }
        });
  }
  if (!problem.empty())
    return emitError(module.getLoc())
           << getArgument() << ": GPTQ failed for " << problem;
  return success();
}

void QLRQuantizeLinearPass::runOnOperation() {
  ModuleOp module = getOperation();
  StringRef pass = getArgument();
  if (method != "rtn" && method != "gptq") {
    emitError(module.getLoc())
        << pass << ": unknown method '" << method << "' (expected rtn or gptq)";
    return signalPassFailure();
  }
  if (method == "gptq" && (damp < 0.0 || blockSize < 1)) {
    emitError(module.getLoc())
        << pass << ": damp must be >= 0 and block-size >= 1";
    return signalPassFailure();
  }
  FailureOr<FormatAttr> quantFormat = buildFormatFromOptions(
      module, pass, format.getValue(), bits,
      /*defaultBits=*/4, groupSize, symmetric, scaleType.getValue(), table);
  if (failed(quantFormat))
    return signalPassFailure();
  FailureOr<SmallVector<LinearWeight>> weights = selectLinearWeights(
      module, pass, include, exclude, classifier, *quantFormat);
  if (failed(weights))
    return signalPassFailure();
  if (weights->empty())
    return;

  llvm::StringMap<numerics::QuantizedData> gptq;
  if (method == "gptq") {
    llvm::StringSet<> selected;
    for (LinearWeight &weight : *weights)
      selected.insert(weight.name);
    if (failed(runGPTQ(module, *quantFormat, selected, gptq)))
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
          << "' is not in a transformer block, so GPTQ has no inputs for it; "
             "quantized with round-to-nearest";
    }
  }
  parallelFor(&getContext(), 0, firsts.size(), [&](size_t index) {
    if (data[index].codes.empty())
      data[index] =
          clipSearch
              ? numerics::quantizeRTNClipSearch(
                    firsts[index]->values, firsts[index]->type.getShape(), fmt)
              : numerics::quantizeRTN(firsts[index]->values,
                                      firsts[index]->type.getShape(), fmt);
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
}
