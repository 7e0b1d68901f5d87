//===- Jit.cpp - JIT-compiling modules for the host CPU --------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#include "qlr/Runtime/Jit.h"

#include "qlr/Dialect/QLR/IR/QLR.h"
#include "qlr/Dialect/QLR/Utils/CodeKey.h"
#include "qlr/Pipelines/Pipelines.h"

#include "mlir/Bytecode/BytecodeWriter.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Bufferization/IR/Bufferization.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/ExecutionEngine/ExecutionEngine.h"
#include "mlir/ExecutionEngine/OptUtils.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/DialectResourceBlobManager.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/GPU/GPUToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/NVVM/NVVMToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/OpenMP/OpenMPToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Export.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/ExecutionEngine/Orc/JITTargetMachineBuilder.h"
#include "llvm/IR/Module.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/TargetSelect.h"
#include "llvm/TargetParser/SubtargetFeature.h"

#include <chrono>
#include <map>
#include <mutex>

using namespace mlir;
using namespace mlir::qlr;

/// The bytes a dense_resource constant's type says its blob holds.
static int64_t byteSize(DenseResourceElementsAttr attr) {
  auto type = cast<RankedTensorType>(attr.getType());
  return type.getNumElements() * type.getElementTypeBitWidth() / 8;
}

FailureOr<std::vector<ExternalWeight>>
mlir::qlr::externalizeWeights(func::FuncOp func, size_t minBytes) {
  std::vector<ExternalWeight> weights;
  SmallVector<arith::ConstantOp> constants;
  func.walk([&](arith::ConstantOp op) {
    auto attr = dyn_cast<DenseResourceElementsAttr>(op.getValue());
    if (attr && byteSize(attr) >= int64_t(minBytes))
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
    ExternalWeight weight;
    weight.name = attr.getRawHandle().getKey().str();
    weight.data = blob->getData();
    weight.shape.assign(type.getShape().begin(), type.getShape().end());
    weight.elementBits = type.getElementTypeBitWidth();
    weights.push_back(std::move(weight));
    BlockArgument arg = entry.addArgument(type, op.getLoc());
    op.replaceAllUsesWith(arg);
    op.erase();
  }
  func.setType(FunctionType::get(func.getContext(), entry.getArgumentTypes(),
                                 func.getResultTypes()));
  return weights;
}

void mlir::qlr::configureCPUPipeline(CPUPipelineOptions &options,
                                     ::qlr::numerics::SimdLevel level,
                                     bool openmp) {
  options.openmp = openmp;
  options.vectorWidth = level == ::qlr::numerics::SimdLevel::AVX512 ? 16 : 8;
}

llvm::CodeGenOptLevel mlir::qlr::codeGenOptLevel(unsigned optLevel) {
  // -O1..-O3 generate code at LLVM's default level (what MLIR's JIT used
  // before the levels were tied together); -O0 at none.
  return optLevel == 0 ? llvm::CodeGenOptLevel::None
                       : llvm::CodeGenOptLevel::Default;
}

llvm::Expected<std::unique_ptr<llvm::TargetMachine>>
mlir::qlr::createCPUTargetMachine(::qlr::numerics::SimdLevel level,
                                  bool hostCPU, unsigned optLevel, bool pic) {
  static std::once_flag once;
  std::call_once(once, [] {
    llvm::InitializeNativeTarget();
    llvm::InitializeNativeTargetAsmPrinter();
  });
  auto builder = llvm::orc::JITTargetMachineBuilder::detectHost();
  if (!builder)
    return builder.takeError();
  // Below the host's level, or when asked for a generic CPU, compile for the
  // psABI level's generic CPU instead of the host's.
  if (builder->getTargetTriple().isX86() &&
      (!hostCPU || level < ::qlr::numerics::hostSimdLevel())) {
    builder->setCPU(::qlr::numerics::simdLevelCPU(level).str());
    builder->getFeatures() = llvm::SubtargetFeatures();
  }
  builder->setCodeGenOptLevel(codeGenOptLevel(optLevel));
  if (pic)
    builder->setRelocationModel(llvm::Reloc::PIC_);
  auto machine = builder->createTargetMachine();
  if (!machine)
    return machine.takeError();
  return std::move(*machine);
}

llvm::Error mlir::qlr::optimizeModel(llvm::Module &module,
                                     llvm::TargetMachine &machine,
                                     unsigned optLevel) {
  module.setTargetTriple(machine.getTargetTriple());
  module.setDataLayout(machine.createDataLayout());
  return makeOptimizingTransformer(optLevel, /*sizeLevel=*/0,
                                   &machine)(&module);
}

void mlir::qlr::registerJitDialects(DialectRegistry &registry) {
  registerAllDialects(registry);
  registerAllExtensions(registry);
  registry.insert<QLRDialect>();
  registerBuiltinDialectTranslation(registry);
  registerLLVMDialectTranslation(registry);
  registerOpenMPDialectTranslation(registry);
  // GPU models: gpu.binary / gpu.launch_func on the host, NVVM in kernels
  // (serialized by gpu-module-to-binary).
  registerGPUDialectTranslation(registry);
  gpu::registerOffloadingLLVMTranslationInterfaceExternalModels(registry);
  registerNVVMDialectTranslation(registry);
}

SmallVector<int64_t> mlir::qlr::rowMajorDescriptor(const void *data,
                                                   ArrayRef<int64_t> shape) {
  SmallVector<int64_t> fields(3 + 2 * shape.size());
  fields[0] = fields[1] = reinterpret_cast<int64_t>(data);
  int64_t stride = 1;
  for (int64_t i = int64_t(shape.size()) - 1; i >= 0; --i) {
    fields[3 + i] = shape[i];
    fields[3 + shape.size() + i] = stride;
    stride *= shape[i];
  }
  return fields;
}

llvm::Expected<std::unique_ptr<ExecutionEngine>>
mlir::qlr::createJitEngine(ModuleOp module, const JitEngineOptions &options,
                           std::string *targetCPU) {
  // Optimise for this machine: without a TargetMachine, LLVM's loop
  // vectoriser has no cost model and leaves the loops scalar. Below the
  // host's level (QLR_MAX_SIMD, or a portable-numerics build) the level's
  // generic CPU.
  auto machine =
      createCPUTargetMachine(::qlr::numerics::simdLevel(), /*hostCPU=*/true,
                             options.optLevel, /*pic=*/false);
  if (!machine)
    return llvm::createStringError("cannot create a target machine: " +
                                   llvm::toString(machine.takeError()));
  if (targetCPU)
    *targetCPU = (*machine)->getTargetCPU().str();
  ExecutionEngineOptions engineOptions;
  SmallVector<StringRef, 2> sharedLibs = {QLR_MLIR_C_RUNNER_UTILS};
#ifdef QLR_OMP_LIBRARY
  if (options.openmp)
    sharedLibs.push_back(QLR_OMP_LIBRARY);
#endif
  engineOptions.sharedLibPaths = sharedLibs;
  // QLR_PERF_MAP=1 names every JIT's functions for `perf` (the calibrating
  // passes' engines included), not only those that ask for it.
  const char *perfMap = std::getenv("QLR_PERF_MAP");
  engineOptions.enablePerfNotificationListener =
      options.perfListener || (perfMap && StringRef(perfMap) == "1");
  engineOptions.enableObjectDump = options.objectDump;
  // Code generation at the level qlr-compile uses for the same -O, so that
  // the JIT and a compiled library run the same machine code.
  engineOptions.jitCodeGenOptLevel = codeGenOptLevel(options.optLevel);
  // LLVM's optimisation runs on the translated module (optimizeModel, as in
  // qlr-compile). ExecutionEngineOptions::transformer is not used: in this
  // MLIR it left the module unchanged, so the JIT ran unoptimised LLVM IR.
  llvm::TargetMachine *tm = machine->get();
  unsigned optLevel = options.optLevel;
  std::string name = options.name;
  std::string optimizeError;
  auto buildModule =
      [&, tm, optLevel](
          Operation *op,
          llvm::LLVMContext &llvmContext) -> std::unique_ptr<llvm::Module> {
    std::unique_ptr<llvm::Module> llvmModule =
        translateModuleToLLVMIR(op, llvmContext, name);
    if (!llvmModule)
      return nullptr;
    if (llvm::Error error = optimizeModel(*llvmModule, *tm, optLevel)) {
      optimizeError = llvm::toString(std::move(error));
      return nullptr;
    }
    return llvmModule;
  };
  engineOptions.llvmModuleBuilder = buildModule; // a function_ref
  auto engine =
      ExecutionEngine::create(module, engineOptions, std::move(*machine));
  if (!engine)
    return llvm::createStringError(
        "JIT compilation failed: " + llvm::toString(engine.takeError()) +
        (optimizeError.empty() ? "" : ": " + optimizeError));
  return std::move(*engine);
}

//===----------------------------------------------------------------------===//
// JitModule
//===----------------------------------------------------------------------===//

int64_t JitBuffer::numElements() const {
  int64_t count = 1;
  for (int64_t d : shape)
    count *= d;
  return count;
}

namespace {
/// A compiled function's signature.
struct JitSignature {
  /// Declared arguments: their shapes (dynamic dims as ShapedType::kDynamic).
  std::vector<SmallVector<int64_t, 4>> params;
  /// Results: rank and element size in bytes.
  std::vector<std::pair<int64_t, int64_t>> results;
  /// Externalized weights, in argument order after `params`.
  std::vector<ExternalWeight> weights;
  void (*entry)(void **) = nullptr;
};

} // namespace

struct JitModule::Impl {
  std::unique_ptr<MLIRContext> context;
  OwningOpRef<ModuleOp> module;
  std::unique_ptr<ExecutionEngine> engine;
  llvm::StringMap<JitSignature> functions;
  double compileSeconds = 0;
};

JitModule::JitModule(std::unique_ptr<Impl> impl) : impl(std::move(impl)) {}
JitModule::~JitModule() = default;

double JitModule::compileSeconds() const { return impl->compileSeconds; }

std::string JitModule::structuralKey(ModuleOp source, StringRef function) {
  auto func = source.lookupSymbol<func::FuncOp>(function);
  if (!func || func.isExternal())
    return "";
  auto clone = cast<func::FuncOp>(func->clone());
  std::string key;
  if (succeeded(externalizeWeights(clone, /*minBytes=*/0)))
    key = codeKey(clone);
  else
    // Never equal to a printed function: compiled on its own (and the
    // error reported when it is compiled).
    key = "unkeyed function @" + function.str();
  clone->erase();
  return key;
}

bool JitModule::supportsThreads() {
#ifdef QLR_OMP_LIBRARY
  return true;
#else
  return false;
#endif
}

llvm::Expected<std::unique_ptr<JitModule>>
JitModule::compile(ModuleOp source, ArrayRef<std::string> functions,
                   const JitOptions &options) {
  auto start = std::chrono::steady_clock::now();
  auto fail = [](const Twine &message) {
    return llvm::createStringError(message.str());
  };
  auto impl = std::make_unique<Impl>();
  MLIRContext *sourceContext = source.getContext();

  // Prepare a copy in the source's context: only the requested functions,
  // each with a C interface, weights as arguments read in place, arguments
  // read-only and results in buffers of their own.
  OwningOpRef<ModuleOp> copy = source.clone();
  llvm::StringSet<> wanted;
  for (const std::string &name : functions)
    wanted.insert(name);
  for (auto func : llvm::make_early_inc_range(copy->getOps<func::FuncOp>()))
    if (!wanted.contains(func.getSymName()))
      func.erase();
  auto readOnly = StringAttr::get(sourceContext, "bufferization.writable");
  for (const std::string &name : functions) {
    auto func = copy->lookupSymbol<func::FuncOp>(name);
    if (!func || func.isExternal())
      return fail("the module has no function @" + name + " to compile");
    JitSignature signature;
    for (auto [i, type] : llvm::enumerate(func.getArgumentTypes())) {
      auto tensor = dyn_cast<RankedTensorType>(type);
      if (!tensor)
        return fail("@" + name + ": argument " + Twine(i) +
                    " is not a ranked tensor");
      signature.params.emplace_back(tensor.getShape());
      func.setArgAttr(i, readOnly, BoolAttr::get(sourceContext, false));
    }
    for (auto [i, type] : llvm::enumerate(func.getResultTypes())) {
      auto tensor = dyn_cast<RankedTensorType>(type);
      if (!tensor || !tensor.getElementType().isIntOrFloat())
        return fail("@" + name + ": result " + Twine(i) +
                    " is not a ranked tensor of integers or floats");
      signature.results.emplace_back(
          tensor.getRank(),
          llvm::divideCeil(tensor.getElementTypeBitWidth(), 8));
    }
    func->setAttr("llvm.emit_c_interface", UnitAttr::get(sourceContext));
    // Every weight, however small, so that functions that differ only in
    // their weights (a model's layers) compile to the same code.
    FailureOr<std::vector<ExternalWeight>> weights =
        externalizeWeights(func, /*minBytes=*/0);
    if (failed(weights))
      return fail("cannot read the weights of @" + name);
    signature.weights = std::move(*weights);
    impl->functions[name] = std::move(signature);
  }
  // Functions that differ only in their weights (a model's layers) share
  // the code of the first.
  llvm::StringMap<std::string> representativeOf;
  {
    std::map<std::string, std::string> byKey;
    for (const std::string &name : functions) {
      auto func = copy->lookupSymbol<func::FuncOp>(name);
      auto [it, inserted] = byKey.try_emplace(codeKey(func), name);
      if (!inserted) {
        representativeOf[name] = it->second;
        func.erase();
      }
    }
  }

  // Move the copy into a context of its own (which may then load the LLVM
  // dialects and translations) through bytecode; the externalized weights
  // stay where they are.
  std::string bytes;
  {
    llvm::raw_string_ostream os(bytes);
    if (failed(writeBytecodeToFile(*copy, os)))
      return fail("cannot serialize the module to compile");
  }
  copy = nullptr;
  DialectRegistry registry;
  registerJitDialects(registry);
  impl->context = std::make_unique<MLIRContext>(
      registry, sourceContext->isMultithreadingEnabled()
                    ? MLIRContext::Threading::ENABLED
                    : MLIRContext::Threading::DISABLED);
  ParserConfig config(impl->context.get());
  impl->module = parseSourceString<ModuleOp>(bytes, config);
  if (!impl->module)
    return fail("cannot read back the module to compile");

  // Every result in a fresh buffer the caller owns.
  impl->context->loadDialect<bufferization::BufferizationDialect>();
  for (const std::string &name : functions) {
    if (representativeOf.count(name))
      continue;
    auto func = impl->module->lookupSymbol<func::FuncOp>(name);
    func.walk([&](func::ReturnOp ret) {
      OpBuilder b(ret);
      for (OpOperand &operand : ret->getOpOperands()) {
        auto copyOp = bufferization::AllocTensorOp::create(
            b, ret.getLoc(), cast<RankedTensorType>(operand.get().getType()),
            ValueRange(), operand.get(), Value(), Attribute());
        operand.set(copyOp.getResult());
      }
    });
  }

  bool openmp = options.openmp && supportsThreads();
  {
    PassManager pm(impl->context.get(), ModuleOp::getOperationName());
    CPUPipelineOptions pipelineOptions;
    configureCPUPipeline(pipelineOptions, ::qlr::numerics::simdLevel(), openmp);
    buildCPUPipeline(pm, pipelineOptions);
    std::string diagnostics;
    llvm::raw_string_ostream os(diagnostics);
    ScopedDiagnosticHandler handler(impl->context.get(), [&](Diagnostic &d) {
      if (d.getSeverity() == DiagnosticSeverity::Error)
        os << d.getLocation() << ": " << d << "\n";
      return success();
    });
    if (failed(pm.run(*impl->module)))
      return fail("qlr-cpu-pipeline failed: " + diagnostics);
  }

  JitEngineOptions engineOptions;
  engineOptions.optLevel = options.optLevel;
  engineOptions.openmp = openmp;
  auto engine = createJitEngine(*impl->module, engineOptions);
  if (!engine)
    return engine.takeError();
  impl->engine = std::move(*engine);
  for (auto &[name, signature] : impl->functions) {
    auto alias = representativeOf.find(name);
    StringRef compiled = alias == representativeOf.end()
                             ? StringRef(name)
                             : StringRef(alias->second);
    auto entry = impl->engine->lookupPacked(("_mlir_ciface_" + compiled).str());
    if (!entry)
      return fail("the compiled module has no _mlir_ciface_" + name + ": " +
                  llvm::toString(entry.takeError()));
    signature.entry = *entry;
  }
  impl->compileSeconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  return std::unique_ptr<JitModule>(new JitModule(std::move(impl)));
}

llvm::Expected<std::vector<JitBuffer>>
JitModule::call(StringRef function, ArrayRef<JitTensor> args) const {
  auto found = impl->functions.find(function);
  if (found == impl->functions.end())
    return llvm::createStringError("no compiled function @" + function.str());
  const JitSignature &signature = found->second;
  if (args.size() != signature.params.size())
    return llvm::createStringError(
        llvm::formatv("@{0} takes {1} arguments, got {2}", function,
                      signature.params.size(), args.size())
            .str());
  std::vector<SmallVector<int64_t>> descriptors;
  descriptors.reserve(args.size() + signature.weights.size());
  for (auto [i, arg] : llvm::enumerate(args)) {
    ArrayRef<int64_t> declared = signature.params[i];
    bool matches = declared.size() == arg.shape.size();
    for (size_t d = 0; matches && d < declared.size(); ++d)
      matches =
          ShapedType::isDynamic(declared[d]) || declared[d] == arg.shape[d];
    if (!matches)
      return llvm::createStringError(
          llvm::formatv("@{0}: argument {1} has shape {2}, expected {3}",
                        function, i, formatShape(arg.shape),
                        formatShape(declared))
              .str());
    descriptors.push_back(rowMajorDescriptor(arg.data, arg.shape));
  }
  for (const ExternalWeight &weight : signature.weights)
    descriptors.push_back(rowMajorDescriptor(weight.data.data(), weight.shape));

  // The packed C interface: a pointer to the result struct (descriptors
  // back to back, 8-byte fields), then a pointer to each argument's
  // descriptor pointer.
  SmallVector<size_t> offsets;
  size_t fields = 0;
  for (auto [rank, bytes] : signature.results) {
    offsets.push_back(fields);
    fields += 3 + 2 * rank;
  }
  std::vector<int64_t> resultStorage(std::max<size_t>(fields, 1), 0);
  std::vector<void *> pointers;
  pointers.reserve(descriptors.size() + 1);
  std::vector<void *> packed;
  packed.reserve(descriptors.size() + 1);
  if (!signature.results.empty()) {
    pointers.push_back(resultStorage.data());
    packed.push_back(&pointers.back());
  }
  for (SmallVector<int64_t> &desc : descriptors) {
    pointers.push_back(desc.data());
    packed.push_back(&pointers.back());
  }
  signature.entry(packed.data());

  std::vector<JitBuffer> results;
  std::string error;
  for (auto [k, result] : llvm::enumerate(signature.results)) {
    auto [rank, bytes] = result;
    const int64_t *desc = resultStorage.data() + offsets[k];
    SmallVector<int64_t, 4> shape(desc + 3, desc + 3 + rank);
    // Fresh buffers (JitModule::compile copies every result) are row-major.
    int64_t stride = 1;
    for (int64_t d = rank - 1; d >= 0; --d) {
      if (shape[d] != 1 && desc[3 + rank + d] != stride)
        error = "@" + function.str() + " returned a strided buffer";
      stride *= shape[d];
    }
    auto *allocated = reinterpret_cast<void *>(desc[0]);
    auto *data = reinterpret_cast<char *>(desc[1]) + desc[2] * bytes;
    results.emplace_back(allocated, data, std::move(shape));
  }
  if (!error.empty())
    return llvm::createStringError(error);
  return results;
}
