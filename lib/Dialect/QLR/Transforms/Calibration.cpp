//===- Calibration.cpp - Calibration data for the PTQ passes ------*- C++
//-*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#include "Calibration.h"

#include "qlr/Import/LlamaImporter.h"
#include "qlr/Support/Progress.h"
#include "qlr/Tokenizer/Tokenizer.h"

#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/MemoryBuffer.h"

#include <random>

using namespace mlir;
using namespace mlir::qlr;
namespace calib = ::qlr::calibration;

FailureOr<std::vector<int32_t>>
mlir::qlr::getCalibrationTokens(ModuleOp module, StringRef pass,
                                const CalibrationSpec &spec,
                                const ::qlr::calibration::LlamaModel &model) {
  auto error = [&]() { return emitError(module.getLoc()) << pass << ": "; };
  if (spec.source.empty()) {
    error() << "needs calibration data: data=FILE (a text file) or "
               "data=generate (text sampled from the model)";
    return failure();
  }
  if (spec.samples < 1 || spec.seqLen < 2) {
    error() << "samples=" << spec.samples << " seq-len=" << spec.seqLen
            << ": need samples >= 1 and seq-len >= 2";
    return failure();
  }
  int64_t maxSeqLen = model.config().maxSeqLen;
  if (spec.seqLen > maxSeqLen) {
    error() << "seq-len=" << spec.seqLen << " exceeds the model's context of "
            << maxSeqLen << " tokens";
    return failure();
  }
  if (spec.source == "generate") {
    // One step: a line when it took long enough (LlamaModel::generate does
    // not report its own progress).
    ::qlr::Progress progress(pass, "generating calibration text", 1);
    std::vector<int32_t> tokens =
        model.generate(spec.samples, spec.seqLen, spec.seed);
    progress.step(
        llvm::formatv("{0} x {1} tokens", spec.samples, spec.seqLen).str());
    return tokens;
  }

  auto data = readEmbeddedTokenizer(module);
  if (failed(data))
    return failure();
  if (!*data) {
    error() << "data=" << spec.source
            << " needs the tokenizer qlr-import embeds (module attribute "
            << kTokenizerAttrName << "); use data=generate instead";
    return failure();
  }
  auto tokenizer = ::qlr::tokenizer::Tokenizer::create(std::move(**data));
  if (!tokenizer) {
    error() << "the embedded tokenizer is invalid: "
            << llvm::toString(tokenizer.takeError());
    return failure();
  }
  auto file = llvm::MemoryBuffer::getFile(spec.source, /*IsText=*/true);
  if (!file) {
    error() << "cannot read calibration file '" << spec.source
            << "': " << file.getError().message();
    return failure();
  }
  std::vector<int32_t> text =
      (*tokenizer)->encode((*file)->getBuffer(), /*addBos=*/false);
  int64_t count = text.size();
  if (count < spec.seqLen) {
    error() << "calibration file '" << spec.source << "' has " << count
            << " tokens, fewer than seq-len=" << spec.seqLen;
    return failure();
  }
  int64_t vocab = model.config().vocabSize;
  for (int32_t id : text)
    if (id < 0 || id >= vocab) {
      error() << "the embedded tokenizer produced token " << id
              << " outside the model's vocabulary of " << vocab;
      return failure();
    }
  std::mt19937_64 rng(spec.seed);
  std::uniform_int_distribution<int64_t> start(0, count - spec.seqLen);
  std::vector<int32_t> tokens;
  tokens.reserve(spec.samples * spec.seqLen);
  for (int64_t s = 0; s < spec.samples; ++s) {
    int64_t at = start(rng);
    tokens.insert(tokens.end(), text.begin() + at,
                  text.begin() + at + spec.seqLen);
  }
  return tokens;
}

SmallVector<std::pair<std::string, std::vector<float> *>>
mlir::qlr::blockGroupWeights(calib::BlockWeights &block, int64_t i,
                             calib::LinearGroup group) {
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
