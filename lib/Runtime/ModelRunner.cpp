//===- ModelRunner.cpp - JIT-run an imported model --------------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#include "qlr/Runtime/ModelRunner.h"
#include "qlr/Dialect/QLR/IR/QLR.h"
#include "qlr/Dialect/QLR/Utils/ConstantData.h"
#include "qlr/Import/LlamaImporter.h"
#include "qlr/InitAll.h"
#include "qlr/Numerics/Simd.h"
#include "qlr/Pipelines/Pipelines.h"

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
#include "llvm/ExecutionEngine/Orc/JITTargetMachineBuilder.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/TargetSelect.h"
#include "llvm/TargetParser/SubtargetFeature.h"

#include <chrono>
#include <cstdlib>
#include <mutex>
#include <thread>

using namespace mlir;
using namespace mlir::qlr;
using ::qlr::checkpoint::ModelConfig;

namespace {
/// A memref descriptor of any rank, laid out as StridedMemRefType<T, N>:
/// base pointer, aligned pointer, offset, N sizes, N strides (8 bytes each).
class Descriptor {
public:
  Descriptor(const void *data, llvm::ArrayRef<int64_t> shape)
      : fields(3 + 2 * shape.size()) {
    auto ptr = reinterpret_cast<int64_t>(data);
    fields[0] = fields[1] = ptr;
    fields[2] = 0;
    int64_t stride = 1, rank = shape.size();
    for (int64_t i = rank - 1; i >= 0; --i) {
      fields[3 + i] = shape[i];
      fields[3 + rank + i] = stride;
      stride *= shape[i];
    }
  }
  /// The argument the C interface expects: a pointer to the descriptor.
  void *get() { return fields.data(); }

private:
  std::vector<int64_t> fields;
};

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

/// Weights smaller than this stay constants in the compiled code.
static constexpr size_t kExternalizeBytes = 4096;

/// Turns every large dense_resource constant of `func` into a new trailing
/// argument, so that the JIT reads the weights in place from their resource
/// blobs instead of copying them into LLVM globals. Returns the descriptors
/// of the blobs, in argument order.
/// The bytes a dense_resource constant's type says its blob holds.
static int64_t byteSize(DenseResourceElementsAttr attr) {
  auto type = cast<RankedTensorType>(attr.getType());
  return type.getNumElements() * type.getElementTypeBitWidth() / 8;
}

static FailureOr<std::vector<Descriptor>>
externalizeWeights(func::FuncOp func) {
  std::vector<Descriptor> weights;
  SmallVector<arith::ConstantOp> constants;
  func.walk([&](arith::ConstantOp op) {
    auto attr = dyn_cast<DenseResourceElementsAttr>(op.getValue());
    if (attr && byteSize(attr) >= int64_t(kExternalizeBytes))
      constants.push_back(op);
  });
  Block &entry = func.getBody().front();
  for (arith::ConstantOp op : constants) {
    auto attr = cast<DenseResourceElementsAttr>(op.getValue());
    AsmResourceBlob *blob = attr.getRawHandle().getBlob();
    if (!blob)
      return op.emitOpError("weight '")
             << attr.getRawHandle().getKey() << "' has no data";
    auto type = cast<RankedTensorType>(attr.getType());
    if (int64_t(blob->getData().size()) != byteSize(attr))
      return op.emitOpError("weight '")
             << attr.getRawHandle().getKey() << "' holds "
             << blob->getData().size() << " bytes, not the " << byteSize(attr)
             << " its type needs";
    weights.emplace_back(blob->getData().data(), type.getShape());
    BlockArgument arg = entry.addArgument(type, op.getLoc());
    op.replaceAllUsesWith(arg);
    op.erase();
  }
  func.setType(FunctionType::get(func.getContext(), entry.getArgumentTypes(),
                                 func.getResultTypes()));
  return weights;
}

struct ModelRunner::Impl {
  std::unique_ptr<MLIRContext> context;
  OwningOpRef<ModuleOp> module;
  ModelConfig config;
  std::optional<::qlr::tokenizer::TokenizerData> tokenizer;
  std::unique_ptr<ExecutionEngine> engine;
  void (*forward)(void **) = nullptr;
  std::vector<Descriptor> weights;
  std::vector<float> kCache, vCache;
  double compileSeconds = 0;
  ::qlr::numerics::SimdLevel simdLevel = ::qlr::numerics::SimdLevel::Portable;
  std::string targetCPU;
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

bool ModelRunner::supportsThreads() {
#ifdef QLR_OMP_LIBRARY
  return true;
#else
  return false;
#endif
}

static void initializeNativeTarget() {
  static std::once_flag once;
  std::call_once(once, [] {
    llvm::InitializeNativeTarget();
    llvm::InitializeNativeTargetAsmPrinter();
  });
}

llvm::Expected<std::unique_ptr<ModelRunner>>
ModelRunner::load(llvm::StringRef path, const RunnerOptions &options) {
  auto start = std::chrono::steady_clock::now();
  initializeNativeTarget();
  auto impl = std::make_unique<Impl>();
  DialectRegistry registry;
  registerAllDialects(registry);
  registerAllExtensions(registry);
  registerQLRDialects(registry);
  registerBuiltinDialectTranslation(registry);
  registerLLVMDialectTranslation(registry);
  registerOpenMPDialectTranslation(registry);
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
  impl->weights = std::move(*weights);

  PassManager pm(&ctx, ModuleOp::getOperationName());
  CPUPipelineOptions pipelineOptions;
  unsigned threads =
      options.threads ? options.threads : std::thread::hardware_concurrency();
  pipelineOptions.openmp = supportsThreads() && threads > 1;
  if (pipelineOptions.openmp) {
    // libomp reads OMP_NUM_THREADS when its first parallel region starts.
    setenv("OMP_NUM_THREADS", std::to_string(threads).c_str(),
           /*overwrite=*/1);
  }
  buildCPUPipeline(pm, pipelineOptions);
  if (failed(pm.run(*module)))
    return error("cannot compile the model");

  // Optimise for this machine: without a TargetMachine, LLVM's loop
  // vectoriser has no cost model and leaves the loops scalar.
  // Below the host's own level (QLR_MAX_SIMD, or a portable-numerics
  // build), compile for the psABI level's generic CPU instead.
  auto machineBuilder = llvm::orc::JITTargetMachineBuilder::detectHost();
  if (!machineBuilder)
    return error("cannot describe the host CPU: " +
                 llvm::toString(machineBuilder.takeError()));
  using ::qlr::numerics::SimdLevel;
  SimdLevel level = ::qlr::numerics::simdLevel();
  impl->simdLevel = level;
  if (machineBuilder->getTargetTriple().isX86() &&
      level < ::qlr::numerics::hostSimdLevel()) {
    machineBuilder->setCPU(::qlr::numerics::simdLevelCPU(level).str());
    machineBuilder->getFeatures() = llvm::SubtargetFeatures();
  }
  impl->targetCPU = machineBuilder->getCPU();
  machineBuilder->setCodeGenOptLevel(llvm::CodeGenOptLevel::Aggressive);
  auto targetMachine = machineBuilder->createTargetMachine();
  if (!targetMachine)
    return error("cannot create a target machine: " +
                 llvm::toString(targetMachine.takeError()));
  ExecutionEngineOptions engineOptions;
  llvm::SmallVector<llvm::StringRef, 2> sharedLibs = {QLR_MLIR_C_RUNNER_UTILS};
#ifdef QLR_OMP_LIBRARY
  sharedLibs.push_back(QLR_OMP_LIBRARY);
#endif
  engineOptions.sharedLibPaths = sharedLibs;
  // QLR_PERF_MAP=1: name the JIT's functions for `perf` (/tmp/perf-PID.map).
  engineOptions.enablePerfNotificationListener =
      llvm::StringRef(std::getenv("QLR_PERF_MAP") ? std::getenv("QLR_PERF_MAP")
                                                  : "") == "1";
  engineOptions.transformer = makeOptimizingTransformer(
      options.optLevel, /*sizeLevel=*/0, targetMachine->get());
  auto engine = ExecutionEngine::create(*module, engineOptions,
                                        std::move(*targetMachine));
  if (!engine)
    return error("JIT compilation failed: " +
                 llvm::toString(engine.takeError()));
  impl->engine = std::move(*engine);
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

  int64_t cacheShape[] = {c.numLayers, c.maxSeqLen, c.numKVHeads, c.headDim};
  Descriptor tokenDesc(tokens.data(), {count});
  Descriptor logitDesc(logits.data(), {count, c.vocabSize});
  Descriptor kDesc(impl->kCache.data(), cacheShape);
  Descriptor vDesc(impl->vCache.data(), cacheShape);
  // The packed interface takes a pointer to each argument; memref arguments
  // of the C interface are themselves pointers to descriptors.
  std::vector<void *> values = {tokenDesc.get(), nullptr, logitDesc.get(),
                                kDesc.get(), vDesc.get()};
  for (Descriptor &weight : impl->weights)
    values.push_back(weight.get());
  std::vector<void *> args;
  for (void *&value : values)
    args.push_back(&value);
  args[1] = &pos;
  impl->forward(args.data());
  return llvm::Error::success();
}
