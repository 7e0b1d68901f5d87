//===- qlr-import.cpp - Import a checkpoint into a qlr module ---*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
//   qlr-import MODEL.gguf -o model.mlirbc
//   qlr-import stories.bin --tokenizer tok.bin -o model.mlirbc
//   qlr-import hf-model-dir/ -o model.mlirbc
//   qlr-import --synthetic -o tiny.mlirbc
//   qlr-import --synthetic --synthetic-config=llama2-7b \
//       --synthetic-quantize=int4,group=128,scale=f16 -o llama2-7b-w4.mlirbc
//   qlr-import MODEL -o model.mlir --elide-weights      (readable text)
//
// The output is written to a temporary file and renamed into place, so a
// failed import never leaves a partial file behind.
//
//===----------------------------------------------------------------------===//

#include "qlr/Checkpoint/Checkpoint.h"
#include "qlr/Dialect/QLR/IR/QLR.h"
#include "qlr/Import/LlamaImporter.h"
#include "qlr/Tokenizer/Tokenizer.h"

#include "mlir/AsmParser/AsmParser.h"
#include "mlir/Bytecode/BytecodeWriter.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Verifier.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/WithColor.h"
#include "llvm/Support/raw_ostream.h"

using namespace mlir;
namespace cl = llvm::cl;
using ::qlr::checkpoint::ModelConfig;

static cl::OptionCategory importCategory("qlr-import options");

static cl::opt<std::string>
    inputPath(cl::Positional,
              cl::desc("<checkpoint: .gguf | llama2.c .bin | "
                       "Hugging Face directory>"),
              cl::cat(importCategory));
static cl::opt<std::string> outputPath("o", cl::desc("Output file"),
                                       cl::value_desc("file"), cl::Required,
                                       cl::cat(importCategory));
static cl::opt<std::string>
    tokenizerPath("tokenizer",
                  cl::desc("Tokenizer to embed (llama2.c tokenizer.bin or HF "
                           "tokenizer.json); overrides the checkpoint's own"),
                  cl::value_desc("file"), cl::cat(importCategory));
static cl::opt<int64_t> maxSeqLen(
    "max-seq-len",
    cl::desc("Rows of the KV cache, the longest context qlr-run can use "
             "(default: the model's context length)"),
    cl::init(0), cl::cat(importCategory));
enum class EmitKind { Auto, Bytecode, Text };
static cl::opt<EmitKind>
    emit("emit", cl::desc("Output format"), cl::init(EmitKind::Auto),
         cl::values(clEnumValN(EmitKind::Auto, "auto",
                               "text for *.mlir, bytecode otherwise (default)"),
                    clEnumValN(EmitKind::Bytecode, "bytecode", "MLIR bytecode"),
                    clEnumValN(EmitKind::Text, "text", "MLIR text")),
         cl::cat(importCategory));
static cl::opt<bool> elideWeights(
    "elide-weights",
    cl::desc("Text output only: leave the weight blobs out, for reading (the "
             "result cannot be run)"),
    cl::init(false), cl::cat(importCategory));
static cl::opt<bool> synthetic(
    "synthetic",
    cl::desc("Import a small LLaMA with random weights instead of a file"),
    cl::init(false), cl::cat(importCategory));
static cl::opt<uint64_t> seed("seed", cl::desc("Seed for --synthetic"),
                              cl::init(0), cl::cat(importCategory));
static cl::opt<std::string> syntheticConfigName(
    "synthetic-config",
    cl::desc("--synthetic: the model's shape: tiny (2 layers of width 64, "
             "the default), llama2-7b or llama3-8b (random weights in the "
             "shapes of those models)"),
    cl::init("tiny"), cl::cat(importCategory));
static cl::opt<int64_t> syntheticLayers(
    "synthetic-layers",
    cl::desc("--synthetic: this many layers instead of the configuration's "
             "(0: the configuration's)"),
    cl::init(0), cl::cat(importCategory));
static cl::opt<std::string> syntheticQuantize(
    "synthetic-quantize",
    cl::desc("--synthetic: write every linear weight but the classifier "
             "directly as random codes and scales of this #qlr.format (its "
             "body, e.g. int4,group=128,scale=f16), never as float: a "
             "7B-shaped quantized model without 28 GB of float weights"),
    cl::value_desc("format"), cl::init(""), cl::cat(importCategory));

static int fail(const llvm::Twine &message) {
  llvm::WithColor::error(llvm::errs(), "qlr-import") << message << "\n";
  return 1;
}

int main(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
  cl::HideUnrelatedOptions(importCategory);
  cl::ParseCommandLineOptions(
      argc, argv,
      "qlr-import: turn a LLaMA-family checkpoint into a qlr module\n");

  DialectRegistry registry;
  MLIRContext context(registry);
  context.loadDialect<mlir::qlr::QLRDialect>();

  bool syntheticOptions = syntheticConfigName.getNumOccurrences() ||
                          syntheticLayers.getNumOccurrences() ||
                          syntheticQuantize.getNumOccurrences();
  if (syntheticOptions && !synthetic)
    return fail("--synthetic-config, --synthetic-layers and "
                "--synthetic-quantize need --synthetic");
  mlir::qlr::FormatAttr quantizeFormat;
  if (!syntheticQuantize.empty()) {
    Attribute parsed =
        parseAttribute("#qlr.format<" + syntheticQuantize + ">", &context);
    quantizeFormat = llvm::dyn_cast_or_null<mlir::qlr::FormatAttr>(parsed);
    if (!quantizeFormat)
      return fail("--synthetic-quantize=" + syntheticQuantize +
                  ": not the body of a #qlr.format (e.g. "
                  "int4,group=128,scale=f16)");
  }

  std::unique_ptr<::qlr::checkpoint::Checkpoint> checkpoint;
  if (synthetic) {
    if (!inputPath.empty())
      return fail("--synthetic takes no input file");
    std::optional<ModelConfig> config =
        mlir::qlr::syntheticConfig(syntheticConfigName);
    if (!config)
      return fail("--synthetic-config=" + syntheticConfigName +
                  ": use one of " + mlir::qlr::syntheticConfigNames());
    if (syntheticLayers < 0)
      return fail("--synthetic-layers must be 0 or more");
    if (syntheticLayers > 0)
      config->numLayers = syntheticLayers;
    checkpoint = mlir::qlr::createSyntheticCheckpoint(
        *config, seed, /*skipLinearWeights=*/bool(quantizeFormat));
  } else {
    if (inputPath.empty())
      return fail("no checkpoint given (or pass --synthetic)");
    auto opened = ::qlr::checkpoint::openCheckpoint(inputPath);
    if (!opened)
      return fail(llvm::toString(opened.takeError()));
    checkpoint = std::move(*opened);
  }

  std::optional<::qlr::tokenizer::TokenizerData> tokenizer =
      checkpoint->tokenizer();
  if (!tokenizerPath.empty()) {
    auto loaded = ::qlr::tokenizer::loadTokenizerFile(
        tokenizerPath, checkpoint->config().vocabSize);
    if (!loaded)
      return fail(llvm::toString(loaded.takeError()));
    tokenizer = std::move(*loaded);
  }
  if (tokenizer) {
    // Validate now rather than when the model is run.
    auto check = ::qlr::tokenizer::Tokenizer::create(*tokenizer);
    if (!check)
      return fail(llvm::toString(check.takeError()));
    if ((*check)->vocabSize() != checkpoint->config().vocabSize)
      return fail(llvm::Twine("the tokenizer has ") +
                  llvm::Twine((*check)->vocabSize()) +
                  " tokens but the model's vocabulary has " +
                  llvm::Twine(checkpoint->config().vocabSize));
  }

  mlir::qlr::ImportOptions options;
  options.maxSeqLen = maxSeqLen;
  auto module = mlir::qlr::importLlama(
      &context, *checkpoint, tokenizer ? &*tokenizer : nullptr, options);
  if (failed(module))
    return 1;
  if (quantizeFormat && failed(mlir::qlr::quantizeSyntheticWeights(
                            **module, quantizeFormat, seed)))
    return 1;
  if (failed(verify(**module)))
    return fail("internal error: the imported module does not verify");

  bool text = emit == EmitKind::Text ||
              (emit == EmitKind::Auto &&
               llvm::sys::path::extension(outputPath) == ".mlir");
  if (elideWeights && !text)
    return fail("--elide-weights applies to text output only");
  llvm::Error written = llvm::writeToOutput(
      outputPath, [&](llvm::raw_ostream &os) -> llvm::Error {
        if (text) {
          OpPrintingFlags flags;
          if (elideWeights)
            flags.elideLargeResourceString(64);
          (*module)->print(os, flags);
          return llvm::Error::success();
        }
        if (failed(writeBytecodeToFile(**module, os)))
          return llvm::createStringError("cannot write bytecode");
        return llvm::Error::success();
      });
  if (written)
    return fail(llvm::toString(std::move(written)));
  return 0;
}
