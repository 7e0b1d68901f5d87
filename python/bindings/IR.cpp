//===- IR.cpp - Modules, pass pipelines and checkpoint import ---*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// qlr.compiler.Module (parse, print, bytecode, verify, pass pipelines) and
// the checkpoint importer. Every context knows what quant-opt knows: all
// upstream dialects, extensions, passes and LLVM IR translations, plus the
// qlr dialect, passes and pipelines.
//
//===----------------------------------------------------------------------===//

#include "Bindings.h"

#include "qlr/Checkpoint/Checkpoint.h"
#include "qlr/Dialect/QLR/IR/QLR.h"
#include "qlr/Import/LlamaImporter.h"
#include "qlr/InitAll.h"
#include "qlr/Runtime/Compile.h"
#include "qlr/Tokenizer/Tokenizer.h"

#include "mlir/AsmParser/AsmParser.h"
#include "mlir/Bytecode/BytecodeWriter.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/Verifier.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/InitAllPasses.h"
#include "mlir/Interfaces/FunctionInterfaces.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Target/LLVMIR/Dialect/All.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/raw_ostream.h"

#include <nanobind/stl/filesystem.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <mutex>

using namespace mlir;
using namespace ::qlr::python;
using namespace nb::literals;

//===----------------------------------------------------------------------===//
// Diagnostics
//===----------------------------------------------------------------------===//

auto ::qlr::python::formatLocation(Location loc) -> std::string {
  if (auto file = loc->findInstanceOf<FileLineColLoc>())
    return (file.getFilename().getValue() + ":" + llvm::Twine(file.getLine()) +
            ":" + llvm::Twine(file.getColumn()))
        .str();
  if (isa<UnknownLoc>(loc))
    return "";
  std::string text;
  llvm::raw_string_ostream os(text);
  os << loc;
  return text;
}

static const char *severityName(DiagnosticSeverity severity) {
  switch (severity) {
  case DiagnosticSeverity::Error:
    return "error";
  case DiagnosticSeverity::Warning:
    return "warning";
  case DiagnosticSeverity::Note:
    return "note";
  case DiagnosticSeverity::Remark:
    return "remark";
  }
  return "error";
}

DiagnosticCapture::DiagnosticCapture(MLIRContext *context) : context(context) {
  id = context->getDiagEngine().registerHandler([this](Diagnostic &diag) {
    DiagnosticRecord record;
    record.severity = severityName(diag.getSeverity());
    record.location = formatLocation(diag.getLocation());
    record.message = diag.str();
    for (Diagnostic &note : diag.getNotes()) {
      std::string where = formatLocation(note.getLocation());
      record.message +=
          "\n  " + (where.empty() ? "" : where + ": ") + "note: " + note.str();
    }
    records.push_back(std::move(record));
    return success();
  });
}

DiagnosticCapture::~DiagnosticCapture() {
  context->getDiagEngine().eraseHandler(id);
}

std::vector<std::string> DiagnosticCapture::warnings() const {
  std::vector<std::string> result;
  for (const DiagnosticRecord &record : records)
    if (record.severity == "warning" || record.severity == "remark")
      result.push_back((record.location.empty() ? "" : record.location + ": ") +
                       record.severity + ": " + record.message);
  return result;
}

void DiagnosticCapture::fail(const std::string &summary) const {
  throw CompilerError{summary, records};
}

//===----------------------------------------------------------------------===//
// Contexts
//===----------------------------------------------------------------------===//

auto ::qlr::python::createContext() -> std::shared_ptr<MLIRContext> {
  static std::once_flag once;
  std::call_once(once, [] {
    registerAllPasses();
    mlir::qlr::registerQLRPasses();
  });
  DialectRegistry registry;
  // What quant-opt registers, plus what the JIT needs (registerModelDialects
  // adds the LLVM IR translations).
  registerAllDialects(registry);
  registerAllExtensions(registry);
  registerAllToLLVMIRTranslations(registry);
  mlir::qlr::registerQLRDialects(registry);
  mlir::qlr::registerModelDialects(registry);
  auto context = std::make_shared<MLIRContext>(registry);
  context->loadDialect<mlir::qlr::QLRDialect>();
  return context;
}

//===----------------------------------------------------------------------===//
// Module
//===----------------------------------------------------------------------===//

/// Parses MLIR text or bytecode held by `buffer`. The source manager is
/// shared with the parser so that resource blobs of bytecode may keep
/// pointing into the buffer instead of being copied.
static Module parseBuffer(std::unique_ptr<llvm::MemoryBuffer> buffer,
                          const std::string &name) {
  Module result;
  result.context = createContext();
  DiagnosticCapture diagnostics(result.context.get());
  auto sourceMgr = std::make_shared<llvm::SourceMgr>();
  sourceMgr->AddNewSourceBuffer(std::move(buffer), llvm::SMLoc());
  ParserConfig config(result.context.get());
  result.module = parseSourceFile<ModuleOp>(sourceMgr, config);
  if (!result.module)
    diagnostics.fail("cannot parse " + name);
  return result;
}

static Module parseModule(nb::handle data, const std::string &name) {
  const char *bytes;
  size_t size;
  std::string text;
  if (nb::isinstance<nb::str>(data)) {
    text = nb::cast<std::string>(data);
    bytes = text.data();
    size = text.size();
  } else if (nb::isinstance<nb::bytes>(data)) {
    auto b = nb::borrow<nb::bytes>(data);
    bytes = b.c_str();
    size = b.size();
  } else {
    throw nb::type_error("Module.parse takes str (MLIR text) or bytes (MLIR "
                         "text or bytecode)");
  }
  // Bytecode resources must be aligned in memory; copy into an aligned,
  // owned buffer.
  std::unique_ptr<llvm::WritableMemoryBuffer> buffer =
      llvm::WritableMemoryBuffer::getNewUninitMemBuffer(size, name,
                                                        llvm::Align(64));
  if (!buffer)
    throw std::bad_alloc();
  if (size)
    std::memcpy(buffer->getBufferStart(), bytes, size);
  return parseBuffer(std::move(buffer), name);
}

static Module loadModule(const std::filesystem::path &path) {
  auto buffer = llvm::MemoryBuffer::getFile(path.string(), /*IsText=*/false,
                                            /*RequiresNullTerminator=*/false);
  if (!buffer)
    throw CompilerError{"cannot read " + path.string() + ": " +
                            buffer.getError().message(),
                        {}};
  return parseBuffer(std::move(*buffer), path.string());
}

static std::string printModule(Module &self,
                               std::optional<int64_t> largeElementsLimit,
                               bool generic, bool debugInfo) {
  OpPrintingFlags flags;
  if (largeElementsLimit) {
    flags.elideLargeElementsAttrs(*largeElementsLimit);
    flags.elideLargeResourceString(*largeElementsLimit);
  }
  if (generic)
    flags.printGenericOpForm();
  if (debugInfo)
    flags.enableDebugInfo();
  std::string text;
  llvm::raw_string_ostream os(text);
  self.module->print(os, flags);
  return text;
}

static std::string bytecodeOf(Module &self) {
  DiagnosticCapture diagnostics(self.context.get());
  std::string data;
  llvm::raw_string_ostream os(data);
  if (failed(writeBytecodeToFile(*self.module, os)))
    diagnostics.fail("cannot write the module as bytecode");
  os.flush();
  return data;
}

static void saveModule(Module &self, const std::filesystem::path &path,
                       std::optional<bool> bytecode) {
  std::string file = path.string();
  bool text =
      bytecode ? !*bytecode : llvm::sys::path::extension(file) == ".mlir";
  DiagnosticCapture diagnostics(self.context.get());
  bool wroteBytecode = true;
  // writeToOutput streams into FILE.temp-stream-XXXXXX and renames it over
  // FILE only when the callback succeeds: never a half-written FILE.
  llvm::Error error =
      llvm::writeToOutput(file, [&](llvm::raw_ostream &os) -> llvm::Error {
        if (text) {
          self.module->print(os);
          return llvm::Error::success();
        }
        if (failed(writeBytecodeToFile(*self.module, os))) {
          wroteBytecode = false;
          return llvm::createStringError("cannot write bytecode");
        }
        return llvm::Error::success();
      });
  if (error) {
    std::string message = llvm::toString(std::move(error));
    if (!wroteBytecode)
      diagnostics.fail("cannot write " + file + ": " + message);
    throw CompilerError{"cannot write " + file + ": " + message,
                        diagnostics.records};
  }
}

static void verifyModule(Module &self) {
  DiagnosticCapture diagnostics(self.context.get());
  if (failed(verify(*self.module)))
    diagnostics.fail("the module does not verify");
}

static std::vector<std::string> runPipeline(Module &self,
                                            const std::string &pipeline) {
  MLIRContext *context = self.context.get();
  DiagnosticCapture diagnostics(context);
  std::string parseErrors;
  llvm::raw_string_ostream errorStream(parseErrors);
  FailureOr<OpPassManager> parsed = parsePassPipeline(pipeline, errorStream);
  if (failed(parsed)) {
    errorStream.flush();
    throw CompilerError{
        "invalid pass pipeline '" + pipeline + "'",
        {{"error", "", llvm::StringRef(parseErrors).trim().str()}}};
  }
  PassManager pm(context, parsed->getOpAnchorName(), parsed->getNesting());
  static_cast<OpPassManager &>(pm) = std::move(*parsed);
  // Run on a copy: a failing pipeline leaves the module as it was.
  OwningOpRef<ModuleOp> copy = self.module->clone();
  if (failed(pm.run(*copy)))
    diagnostics.fail("pass pipeline '" + pipeline + "' failed");
  self.module = std::move(copy);
  return diagnostics.warnings();
}

static std::vector<std::string> functionNames(Module &self) {
  std::vector<std::string> names;
  for (Operation &op : self.module->getBody()->getOperations())
    if (auto function = dyn_cast<FunctionOpInterface>(op))
      names.push_back(function.getName().str());
  return names;
}

static nb::object modelConfig(Module &self) {
  DiagnosticCapture diagnostics(self.context.get());
  if (!(*self.module)->hasAttr(mlir::qlr::kModelAttrName))
    return nb::none();
  auto config = mlir::qlr::readModelConfig(*self.module);
  if (failed(config))
    diagnostics.fail("cannot read the module's qlr.model configuration");
  nb::dict d;
  d["dim"] = config->dim;
  d["hidden_dim"] = config->hiddenDim;
  d["layers"] = config->numLayers;
  d["heads"] = config->numHeads;
  d["kv_heads"] = config->numKVHeads;
  d["head_dim"] = config->headDim;
  d["vocab_size"] = config->vocabSize;
  d["max_seq_len"] = config->maxSeqLen;
  d["norm_eps"] = config->normEps;
  d["rope_theta"] = config->ropeTheta;
  d["tied_embeddings"] = config->tiedEmbeddings;
  return d;
}

//===----------------------------------------------------------------------===//
// Import
//===----------------------------------------------------------------------===//

/// What qlr-import does after opening the checkpoint: the tokenizer (the
/// checkpoint's own or `tokenizerPath`, validated against the vocabulary),
/// importLlama, optional random quantized weights, verification.
static Module importFrom(Module result,
                         const ::qlr::checkpoint::Checkpoint &checkpoint,
                         std::optional<std::string> tokenizerPath,
                         std::optional<int64_t> maxSeqLen,
                         mlir::qlr::FormatAttr quantizeFormat, uint64_t seed,
                         DiagnosticCapture &diagnostics) {
  std::optional<::qlr::tokenizer::TokenizerData> tokenizer =
      checkpoint.tokenizer();
  if (tokenizerPath) {
    auto loaded = ::qlr::tokenizer::loadTokenizerFile(
        *tokenizerPath, checkpoint.config().vocabSize);
    if (!loaded)
      throw CompilerError{llvm::toString(loaded.takeError()), {}};
    tokenizer = std::move(*loaded);
  }
  if (tokenizer) {
    auto check = ::qlr::tokenizer::Tokenizer::create(*tokenizer);
    if (!check)
      throw CompilerError{llvm::toString(check.takeError()), {}};
    if ((*check)->vocabSize() != checkpoint.config().vocabSize)
      throw CompilerError{"the tokenizer has " +
                              std::to_string((*check)->vocabSize()) +
                              " tokens but the model's vocabulary has " +
                              std::to_string(checkpoint.config().vocabSize),
                          {}};
  }
  mlir::qlr::ImportOptions options;
  if (maxSeqLen) {
    if (*maxSeqLen < 0)
      throw nb::value_error("max_seq_len must be positive");
    options.maxSeqLen = *maxSeqLen;
  }
  auto module =
      mlir::qlr::importLlama(result.context.get(), checkpoint,
                             tokenizer ? &*tokenizer : nullptr, options);
  if (failed(module))
    diagnostics.fail("cannot import " + checkpoint.path().str());
  if (quantizeFormat && failed(mlir::qlr::quantizeSyntheticWeights(
                            **module, quantizeFormat, seed)))
    diagnostics.fail("cannot quantize the synthetic weights");
  if (failed(verify(**module)))
    diagnostics.fail("internal error: the imported module does not verify");
  result.module = std::move(*module);
  return result;
}

static Module importCheckpoint(const std::filesystem::path &path,
                               std::optional<std::string> tokenizerPath,
                               std::optional<int64_t> maxSeqLen) {
  Module result;
  result.context = createContext();
  DiagnosticCapture diagnostics(result.context.get());
  auto opened = ::qlr::checkpoint::openCheckpoint(path.string());
  if (!opened)
    throw CompilerError{llvm::toString(opened.takeError()), {}};
  return importFrom(std::move(result), **opened, std::move(tokenizerPath),
                    maxSeqLen, {}, 0, diagnostics);
}

static Module importSynthetic(const std::string &configName, uint64_t seed,
                              int64_t layers,
                              std::optional<std::string> quantize,
                              std::optional<int64_t> maxSeqLen) {
  Module result;
  result.context = createContext();
  DiagnosticCapture diagnostics(result.context.get());
  std::optional<::qlr::checkpoint::ModelConfig> config =
      mlir::qlr::syntheticConfig(configName);
  if (!config)
    throw nb::value_error(("config='" + configName + "': use one of " +
                           mlir::qlr::syntheticConfigNames().str())
                              .c_str());
  if (layers < 0)
    throw nb::value_error("layers must be 0 (the configuration's) or more");
  if (layers > 0)
    config->numLayers = layers;
  mlir::qlr::FormatAttr format;
  if (quantize) {
    std::string text = *quantize;
    if (!llvm::StringRef(text).starts_with("#"))
      text = "#qlr.format<" + text + ">";
    format = llvm::dyn_cast_or_null<mlir::qlr::FormatAttr>(
        parseAttribute(text, result.context.get()));
    if (!format)
      diagnostics.fail("quantize='" + *quantize +
                       "' is not a #qlr.format (or its body, e.g. "
                       "'int4, group = 32, scale = f16')");
  }
  auto checkpoint = mlir::qlr::createSyntheticCheckpoint(
      *config, seed, /*skipLinearWeights=*/bool(format));
  return importFrom(std::move(result), *checkpoint, std::nullopt, maxSeqLen,
                    format, seed, diagnostics);
}

//===----------------------------------------------------------------------===//
// Bindings
//===----------------------------------------------------------------------===//

void ::qlr::python::bindIR(nb::module_ &m) {
  nb::class_<Module>(
      m, "Module",
      "An MLIR module (builtin.module) in its own context, with every "
      "upstream dialect and the qlr dialect available. Create one with "
      "Module.parse, Module.load or import_checkpoint.")
      .def_static("parse", &parseModule, "data"_a, "name"_a = "<string>",
                  "Parses MLIR text (str or bytes) or MLIR bytecode (bytes). "
                  "`name` is the file name diagnostics show. Raises "
                  "CompilerError with the located parse errors.")
      .def_static("load", &loadModule, "path"_a,
                  "Reads a .mlir (text) or .mlirbc (bytecode) file; the "
                  "format is detected from the contents. Raises "
                  "CompilerError.")
      .def(
          "__str__",
          [](Module &self) {
            return printModule(self, std::nullopt, false, false);
          },
          "The module as MLIR text.")
      .def("to_text", &printModule, "large_elements_limit"_a = nb::none(),
           "generic"_a = false, "debug_info"_a = false,
           "The module as MLIR text. large_elements_limit: print elements "
           "attributes and resource blobs with more elements (bytes) than "
           "this as elided placeholders (for reading; such text cannot be "
           "parsed back into the same weights). generic: the generic op "
           "form. debug_info: print locations.")
      .def(
          "to_bytecode",
          [](Module &self) {
            std::string data = bytecodeOf(self);
            return nb::bytes(data.data(), data.size());
          },
          "The module as MLIR bytecode (resource blobs stay binary).")
      .def("save", &saveModule, "path"_a, "bytecode"_a = nb::none(),
           "Writes the module to `path`: MLIR text when the name ends in "
           ".mlir, bytecode otherwise (or as `bytecode` says). The file is "
           "written to a temporary name and renamed into place, so `path` "
           "is never left half-written.")
      .def("verify", &verifyModule,
           "Runs the MLIR verifier; raises CompilerError with the located "
           "diagnostics when the module is invalid.")
      .def("run_pipeline", &runPipeline, "pipeline"_a,
           "Runs a textual pass pipeline, as quant-opt --pass-pipeline takes "
           "it (e.g. 'builtin.module(qlr-fold-batchnorm,canonicalize)'), on "
           "the module in place. Returns the warnings the passes emitted. "
           "Raises CompilerError, with the located diagnostics, when the "
           "pipeline does not parse or a pass fails; the module is then "
           "left unchanged.")
      .def(
          "clone",
          [](Module &self) {
            Module copy;
            copy.context = self.context;
            copy.module = self.module->clone();
            return copy;
          },
          "A deep copy of the module (in the same context; resource blobs "
          "are shared, not copied).")
      .def_prop_ro("functions", &functionNames,
                   "The names of the module's top-level functions "
                   "(func.func, llvm.func, ...), in order.")
      .def_prop_ro("model_config", &modelConfig,
                   "The model configuration qlr-import wrote (qlr.model), as "
                   "a dict, or None for a module without one.");

  m.def("import_checkpoint", &importCheckpoint, "path"_a,
        "tokenizer"_a = nb::none(), "max_seq_len"_a = nb::none(),
        "Imports a LLaMA-family checkpoint (GGUF file, llama2.c .bin, or "
        "Hugging Face directory) into a qlr module, with the same library "
        "code as qlr-import. tokenizer: a tokenizer file to embed (llama2.c "
        "tokenizer.bin or tokenizer.json) instead of the checkpoint's own. "
        "max_seq_len: rows of the KV cache (default: the model's context "
        "length). Raises CompilerError for unreadable or invalid "
        "checkpoints.");
  m.def("import_synthetic", &importSynthetic, "config"_a = "tiny", "seed"_a = 0,
        "layers"_a = 0, "quantize"_a = nb::none(), "max_seq_len"_a = nb::none(),
        "A model with random weights, as qlr-import --synthetic makes it: "
        "config 'tiny' (2 layers of width 64, vocabulary 512), 'llama2-7b' "
        "or 'llama3-8b'; layers > 0 overrides the layer count; quantize: a "
        "#qlr.format (or its body) in which every linear weight but the "
        "classifier is written directly as random codes and scales.");
}
