//===- ModelRunner.cpp - JIT-run an imported model --------------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#include "qlr/Runtime/ModelRunner.h"
#include "qlr-c/Runtime.h"
#include "qlr/Dialect/QLR/IR/QLR.h"
#include "qlr/Dialect/QLR/Utils/ConstantData.h"
#include "qlr/Import/LlamaImporter.h"
#include "qlr/InitAll.h"
#include "qlr/Numerics/Simd.h"
#include "qlr/Pipelines/Pipelines.h"
#include "qlr/Runtime/Compile.h"
#include "qlr/Runtime/ForwardCall.h"
#include "qlr/Tokenizer/TokenizerData.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/ExecutionEngine/ExecutionEngine.h"
#include "mlir/ExecutionEngine/OptUtils.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/DialectResourceBlobManager.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Support/FileUtilities.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/OpenMP/OpenMPToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Export.h"
#include "llvm/ExecutionEngine/Orc/JITTargetMachineBuilder.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/TargetSelect.h"
#include "llvm/TargetParser/SubtargetFeature.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <elf.h>
#include <mutex>
#include <thread>

using namespace mlir;
using namespace mlir::qlr;
using ::qlr::checkpoint::ModelConfig;

namespace {
/// Collects MLIR diagnostics into a string for llvm::Error messages.
struct DiagnosticCollector {
  explicit DiagnosticCollector(MLIRContext &ctx)
      : handler(&ctx, [this](Diagnostic &diag) {
          llvm::raw_string_ostream os(text);
          if (!text.empty())
            os << "\n";
          os << diag.getLocation() << ": " << diag;
          for (Diagnostic &note : diag.getNotes())
            os << "\n  note: " << note;
          return success();
        }) {}
  std::string text;
  ScopedDiagnosticHandler handler;
};
} // namespace

struct ModelRunner::Impl {
  std::unique_ptr<MLIRContext> context;
  OwningOpRef<ModuleOp> module;
  ModelConfig config;
  std::optional<::qlr::tokenizer::TokenizerData> tokenizer;
  std::unique_ptr<ExecutionEngine> engine;
  void (*forward)(void **) = nullptr;
  std::vector<::qlr::runtime::MemRefDescriptor> weights;
  std::vector<float> kCache, vCache;
  double compileSeconds = 0;
  ::qlr::numerics::SimdLevel simdLevel = ::qlr::numerics::SimdLevel::Portable;
  std::string targetCPU;
  std::string device = "cpu";
  /// A library made by qlr-compile, run through its C interface instead.
  struct Artifact {
    void *handle = nullptr;
    qlr_model *model = nullptr;
    decltype(&qlr_model_close) close = nullptr;
    decltype(&qlr_model_forward) forward = nullptr;
    decltype(&qlr_model_position) position = nullptr;
    decltype(&qlr_model_set_position) setPosition = nullptr;
    decltype(&qlr_last_error) lastError = nullptr;
    ~Artifact() {
      if (model)
        close(model);
      // The library stays loaded: OpenMP worker threads may still run its
      // code while they wind down.
    }
  };
  std::unique_ptr<Artifact> artifact;
};

ModelRunner::ModelRunner(std::unique_ptr<Impl> impl) : impl(std::move(impl)) {}
ModelRunner::~ModelRunner() = default;

const ModelConfig &ModelRunner::config() const { return impl->config; }
const std::optional<::qlr::tokenizer::TokenizerData> &
ModelRunner::tokenizer() const {
  return impl->tokenizer;
}
double ModelRunner::compileSeconds() const { return impl->compileSeconds; }
::qlr::numerics::SimdLevel ModelRunner::simdLevel() const {
  return impl->simdLevel;
}
llvm::StringRef ModelRunner::targetCPU() const { return impl->targetCPU; }

llvm::StringRef ModelRunner::device() const { return impl->device; }

bool ModelRunner::supportsThreads() {
#ifdef QLR_OMP_LIBRARY
  return true;
#else
  return false;
#endif
}

/// Whether `path` is an ELF file (a library made by qlr-compile).
static bool isSharedLibrary(llvm::StringRef path) {
  char magic[4] = {};
  std::FILE *file = std::fopen(path.str().c_str(), "rb");
  if (!file)
    return false;
  size_t n = std::fread(magic, 1, 4, file);
  std::fclose(file);
  return n == 4 && std::memcmp(magic,
                               "\x7f"
                               "ELF",
                               4) == 0;
}

/// Checks that the ELF file at `path` holds every byte its loadable segments
/// and section headers claim: the dynamic loader maps segments without that
/// check, and a truncated library then crashes the process (SIGBUS) inside
/// dlopen instead of failing.
static llvm::Error checkElfSize(llvm::StringRef path) {
  auto error = [&](const llvm::Twine &what) {
    return llvm::createStringError((path + ": " + what).str());
  };
  auto buffer = llvm::MemoryBuffer::getFile(path, /*IsText=*/false,
                                            /*RequiresNullTerminator=*/false);
  if (!buffer)
    return error("cannot read: " + buffer.getError().message());
  llvm::StringRef bytes = (*buffer)->getBuffer();
  Elf64_Ehdr header;
  if (bytes.size() < sizeof(header))
    return error("not a complete ELF file");
  std::memcpy(&header, bytes.data(), sizeof(header));
  if (header.e_ident[EI_CLASS] != ELFCLASS64 || header.e_machine != EM_X86_64)
    return error("not an x86-64 ELF library");
  uint64_t size = bytes.size();
  uint64_t phEnd =
      header.e_phoff + uint64_t(header.e_phnum) * header.e_phentsize;
  if (header.e_phentsize != sizeof(Elf64_Phdr) || phEnd > size)
    return error("a truncated library (its program headers are missing)");
  for (unsigned i = 0; i < header.e_phnum; ++i) {
    Elf64_Phdr segment;
    std::memcpy(&segment,
                bytes.data() + header.e_phoff + uint64_t(i) * sizeof(segment),
                sizeof(segment));
    if (segment.p_type == PT_LOAD && segment.p_offset + segment.p_filesz > size)
      return error("a truncated library (" + llvm::Twine(size) +
                   " bytes; its segments need " +
                   llvm::Twine(segment.p_offset + segment.p_filesz) + ")");
  }
  return llvm::Error::success();
}

/// Opens a library made by qlr-compile through its C interface.
static llvm::Error loadArtifact(llvm::StringRef path,
                                const RunnerOptions &options,
                                ModelRunner::Impl &impl) {
  auto error = [&](const llvm::Twine &what) {
    return llvm::createStringError((path + ": " + what).str());
  };
  if (options.threads) {
    // libomp reads OMP_NUM_THREADS when its first parallel region starts.
    setenv("OMP_NUM_THREADS", std::to_string(options.threads).c_str(), 1);
  }
  if (llvm::Error error = checkElfSize(path))
    return error;
  std::string file = path.str();
  if (file.find('/') == std::string::npos)
    file = "./" + file; // dlopen searches the library path otherwise
  void *handle = dlopen(file.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle)
    return error(llvm::Twine("cannot load the library: ") + dlerror());
  auto artifact = std::make_unique<ModelRunner::Impl::Artifact>();
  artifact->handle = handle;
  auto symbol = [&](const char *name) { return dlsym(handle, name); };
  auto abiVersion = reinterpret_cast<decltype(&qlr_runtime_abi_version)>(
      symbol("qlr_runtime_abi_version"));
  if (!abiVersion)
    return error("not a model library made by qlr-compile (no "
                 "qlr_runtime_abi_version)");
  if (abiVersion() != QLR_RUNTIME_ABI_VERSION)
    return error("the library has runtime ABI version " +
                 llvm::Twine(abiVersion()) + "; this qlr-run reads version " +
                 llvm::Twine(QLR_RUNTIME_ABI_VERSION) +
                 ": compile it again with this qlr-compile");
  auto open =
      reinterpret_cast<decltype(&qlr_model_open)>(symbol("qlr_model_open"));
  auto info = reinterpret_cast<decltype(&qlr_model_get_info)>(
      symbol("qlr_model_get_info"));
  auto tokenizerData = reinterpret_cast<decltype(&qlr_model_tokenizer_data)>(
      symbol("qlr_model_tokenizer_data"));
  artifact->close =
      reinterpret_cast<decltype(&qlr_model_close)>(symbol("qlr_model_close"));
  artifact->forward = reinterpret_cast<decltype(&qlr_model_forward)>(
      symbol("qlr_model_forward"));
  artifact->position = reinterpret_cast<decltype(&qlr_model_position)>(
      symbol("qlr_model_position"));
  artifact->setPosition = reinterpret_cast<decltype(&qlr_model_set_position)>(
      symbol("qlr_model_set_position"));
  artifact->lastError =
      reinterpret_cast<decltype(&qlr_last_error)>(symbol("qlr_last_error"));
  if (!open || !info || !tokenizerData || !artifact->close ||
      !artifact->forward || !artifact->position || !artifact->setPosition ||
      !artifact->lastError)
    return error("the library lacks functions of the QLR runtime ABI");
  artifact->model = open(nullptr);
  if (!artifact->model)
    return error(artifact->lastError());
  qlr_model_info modelInfo;
  if (info(artifact->model, &modelInfo) != 0)
    return error(artifact->lastError());
  ModelConfig &c = impl.config;
  c.dim = modelInfo.dim;
  c.hiddenDim = modelInfo.hidden_dim;
  c.numLayers = modelInfo.layers;
  c.numHeads = modelInfo.heads;
  c.numKVHeads = modelInfo.kv_heads;
  c.headDim = modelInfo.head_dim;
  c.vocabSize = modelInfo.vocab_size;
  c.maxSeqLen = modelInfo.context_length;
  impl.targetCPU = modelInfo.target_cpu;
  // Libraries from before qlr_model_device (same ABI version) run on the
  // CPU.
  if (auto device = reinterpret_cast<decltype(&qlr_model_device)>(
          symbol("qlr_model_device")))
    impl.device = device(artifact->model);
  if (auto level = ::qlr::numerics::parseSimdLevel(modelInfo.simd_level))
    impl.simdLevel = *level;
  const void *data = nullptr;
  size_t size = 0;
  if (modelInfo.has_tokenizer &&
      tokenizerData(artifact->model, &data, &size) == 0) {
    auto tokenizer = ::qlr::tokenizer::deserialize(
        llvm::ArrayRef(static_cast<const uint8_t *>(data), size));
    if (!tokenizer)
      return error("the embedded tokenizer is corrupt: " +
                   llvm::toString(tokenizer.takeError()));
    impl.tokenizer = std::move(*tokenizer);
  }
  impl.artifact = std::move(artifact);
  return llvm::Error::success();
}

llvm::Expected<std::unique_ptr<ModelRunner>>
ModelRunner::load(llvm::StringRef path, const RunnerOptions &options) {
  auto start = std::chrono::steady_clock::now();
  auto impl = std::make_unique<Impl>();
  if (isSharedLibrary(path)) {
    if (llvm::Error error = loadArtifact(path, options, *impl))
      return std::move(error);
    impl->compileSeconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
            .count();
    return std::unique_ptr<ModelRunner>(new ModelRunner(std::move(impl)));
  }
  DialectRegistry registry;
  registerModelDialects(registry);
  impl->context = std::make_unique<MLIRContext>(registry);
  MLIRContext &ctx = *impl->context;
  DiagnosticCollector diagnostics(ctx);
  auto error = [&](const llvm::Twine &what) {
    std::string message = (path + ": " + what).str();
    if (!diagnostics.text.empty())
      message += "\n" + diagnostics.text;
    return llvm::createStringError(message);
  };

  ParserConfig parserConfig(&ctx);
  OwningOpRef<ModuleOp> module = parseSourceFile<ModuleOp>(path, parserConfig);
  if (!module)
    return error("cannot load the model");
  auto config = readModelConfig(*module);
  if (failed(config))
    return error("not a model made by qlr-import");
  impl->config = *config;

  auto tokenizer = readEmbeddedTokenizer(*module);
  if (failed(tokenizer))
    return error("cannot load the embedded tokenizer");
  impl->tokenizer = std::move(*tokenizer);
  if (!options.compile)
    return std::unique_ptr<ModelRunner>(new ModelRunner(std::move(impl)));

  auto forward = module->lookupSymbol<func::FuncOp>(kForwardFuncName);
  if (!forward)
    return error("the module has no @forward function");
  auto weights = externalizeWeights(forward);
  if (failed(weights))
    return error("cannot read the weights");
  for (const ExternalWeight &weight : *weights)
    impl->weights.emplace_back(weight.data.data(), weight.shape);

  unsigned threads =
      options.threads ? options.threads : std::thread::hardware_concurrency();
  bool openmp = supportsThreads() && threads > 1;
  if (openmp) {
    // libomp reads OMP_NUM_THREADS when its first parallel region starts.
    setenv("OMP_NUM_THREADS", std::to_string(threads).c_str(),
           /*overwrite=*/1);
  }
  if (options.emulateGPU)
    openmp = false;
  ::qlr::numerics::SimdLevel level = ::qlr::numerics::simdLevel();
  if (failed(lowerModelToLLVM(*module, level, openmp, options.emulateGPU)))
    return error("cannot compile the model");

  JitEngineOptions engineOptions;
  engineOptions.optLevel = options.optLevel;
  engineOptions.openmp = true;
  engineOptions.name = "qlr-model";
  // QLR_JIT_OBJECT=FILE: write the JIT's machine code to FILE (to compare it
  // with a qlr-compile'd library's).
  const char *objectDump = std::getenv("QLR_JIT_OBJECT");
  engineOptions.objectDump = objectDump && *objectDump;
  auto engine = createJitEngine(*module, engineOptions, &impl->targetCPU);
  if (!engine)
    return error(llvm::toString(engine.takeError()));
  impl->simdLevel = level;
  impl->engine = std::move(*engine);
  if (engineOptions.objectDump)
    impl->engine->dumpToObjectFile(objectDump);
  auto symbol = impl->engine->lookupPacked("_mlir_ciface_forward");
  if (!symbol)
    return error("the compiled model has no @forward: " +
                 llvm::toString(symbol.takeError()));
  impl->forward = *symbol;
  // The weights' resource blobs must outlive the engine.
  impl->module = std::move(module);

  const ModelConfig &c = impl->config;
  size_t cacheSize =
      size_t(c.numLayers) * c.maxSeqLen * c.numKVHeads * c.headDim;
  impl->kCache.assign(cacheSize, 0.0f);
  impl->vCache.assign(cacheSize, 0.0f);
  impl->compileSeconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  return std::unique_ptr<ModelRunner>(new ModelRunner(std::move(impl)));
}

llvm::Error ModelRunner::forward(llvm::ArrayRef<int32_t> tokens, int64_t pos,
                                 llvm::MutableArrayRef<float> logits) {
  const ModelConfig &c = impl->config;
  if (Impl::Artifact *artifact = impl->artifact.get()) {
    if (int64_t(logits.size()) != int64_t(tokens.size()) * c.vocabSize)
      return llvm::createStringError("logits buffer has the wrong size");
    if (pos != artifact->position(artifact->model) &&
        artifact->setPosition(artifact->model, pos) != 0)
      return llvm::createStringError(artifact->lastError());
    if (artifact->forward(artifact->model, tokens.data(),
                          int64_t(tokens.size()), logits.data()) != 0)
      return llvm::createStringError(artifact->lastError());
    return llvm::Error::success();
  }
  if (!impl->forward)
    return llvm::createStringError("the model was loaded without compiling");
  int64_t count = tokens.size();
  if (count == 0)
    return llvm::createStringError("no tokens to run");
  if (pos < 0 || pos + count > c.maxSeqLen)
    return llvm::createStringError(
        "positions %lld..%lld exceed the model's %lld cache rows",
        (long long)pos, (long long)(pos + count - 1), (long long)c.maxSeqLen);
  for (int32_t token : tokens)
    if (token < 0 || token >= c.vocabSize)
      return llvm::createStringError("token id %d is outside the vocabulary "
                                     "of %lld",
                                     token, (long long)c.vocabSize);
  if (int64_t(logits.size()) != count * c.vocabSize)
    return llvm::createStringError("logits buffer has the wrong size");

  ::qlr::runtime::callForward(
      impl->forward, tokens.data(), count, pos, logits.data(), c.vocabSize,
      impl->kCache.data(), impl->vCache.data(),
      {c.numLayers, c.maxSeqLen, c.numKVHeads, c.headDim}, impl->weights);
  return llvm::Error::success();
}
