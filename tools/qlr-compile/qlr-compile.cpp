//===- qlr-compile.cpp - Compile a qlr model into a shared library -*- C++ -*-//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
//   qlr-compile model.mlirbc -o model.so [--cpu native|x86-64|x86-64-v3|
//               x86-64-v4] [-O0..3] [--parallel openmp|none]
//               [--weights-file model.weights]
//
// Compiles a model made by qlr-import (and transformed by quant-opt) ahead of
// time, with the same steps as qlr-run's JIT (qlr/Runtime/Compile.h), into a
// self-contained shared library: the code, the weights (page-aligned
// read-only data, or one sidecar file), the configuration, the tokenizer and
// the C interface of include/qlr-c/Runtime.h. The library needs no LLVM or
// MLIR. The output is written to a temporary file and renamed into place.
//
//===----------------------------------------------------------------------===//

#include "qlr/Import/LlamaImporter.h"
#include "qlr/Numerics/Simd.h"
#include "qlr/Runtime/ArtifactFormat.h"
#include "qlr/Runtime/Compile.h"
#include "qlr/Tokenizer/TokenizerData.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/ExecutionEngine/OptUtils.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Target/LLVMIR/Export.h"
#include "llvm/ADT/ScopeExit.h"
#include "llvm/IR/IRBuilder.h"
#include "llvm/IR/LegacyPassManager.h"
#include "llvm/IR/Module.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/WithColor.h"
#include "llvm/Support/raw_ostream.h"

#include <chrono>

using namespace mlir;
namespace cl = llvm::cl;
namespace numerics = ::qlr::numerics;

static cl::OptionCategory category("qlr-compile options");
static cl::opt<std::string> inputPath(cl::Positional, cl::Required,
                                      cl::desc("<model.mlirbc>"),
                                      cl::cat(category));
static cl::opt<std::string> outputPath("o", cl::Required,
                                       cl::desc("Output library (model.so)"),
                                       cl::value_desc("file"),
                                       cl::cat(category));
static cl::opt<std::string>
    cpu("cpu",
        cl::desc("CPU to compile for: native (this machine's CPU model, as "
                 "qlr-run's JIT; capped like it by QLR_MAX_SIMD), x86-64, "
                 "x86-64-v3 (AVX2) or x86-64-v4 "
                 "(AVX-512). The library refuses to open on a CPU below its "
                 "level"),
        cl::init("native"), cl::cat(category));
static cl::opt<unsigned> optLevel("O", cl::desc("LLVM optimisation level 0-3"),
                                  cl::Prefix, cl::init(3), cl::cat(category));
static cl::opt<std::string>
    parallel("parallel",
             cl::desc("openmp: the kernels' parallel loops run on OpenMP "
                      "threads (the library then needs libomp; "
                      "OMP_NUM_THREADS sets how many); none: one thread, no "
                      "dependency. Default: openmp when this build found "
                      "libomp"),
             cl::init("default"), cl::cat(category));
static cl::opt<std::string> weightsFile(
    "weights-file",
    cl::desc("Write the weights to this file instead of into the library; "
             "the library maps it at load time from its own directory "
             "(only the file name is recorded)"),
    cl::value_desc("file"), cl::cat(category));
static cl::opt<bool> keepTemps("keep-temps",
                               cl::desc("Keep the object, metadata and link "
                                        "files (their directory is printed)"),
                               cl::cat(category));
static cl::opt<bool> verbose("v", cl::desc("Print the link command"),
                             cl::cat(category));

/// The runtime archive `name` (libQLRArtifactRuntime.a, libQLRTokenizer.a):
/// in ../lib next to this executable (the build tree's lib/, or an
/// installation's), else where the build put it.
static std::string findArchive(const char *argv0, llvm::StringRef name,
                               llvm::StringRef built) {
  std::string self = llvm::sys::fs::getMainExecutable(
      argv0, reinterpret_cast<void *>(&findArchive));
  llvm::SmallString<256> path(llvm::sys::path::parent_path(self));
  llvm::sys::path::append(path, "..", "lib", name);
  if (llvm::sys::fs::exists(path))
    return std::string(path);
  return built.str();
}

static int fail(const llvm::Twine &message) {
  llvm::WithColor::error(llvm::errs(), "qlr-compile") << message << "\n";
  return 1;
}

/// Adds `void qlr_artifact_forward(void **args)`, which loads each argument
/// of _mlir_ciface_forward from args[i] (a pointer to the argument) and
/// calls it: the runtime can then call a model whatever its weight count.
static llvm::Error addPackedForward(llvm::Module &module) {
  llvm::Function *target = module.getFunction("_mlir_ciface_forward");
  if (!target)
    return llvm::createStringError(
        "the compiled model has no _mlir_ciface_forward");
  llvm::LLVMContext &ctx = module.getContext();
  auto *ptrType = llvm::PointerType::getUnqual(ctx);
  auto *type = llvm::FunctionType::get(llvm::Type::getVoidTy(ctx), {ptrType},
                                       /*isVarArg=*/false);
  auto *packed = llvm::Function::Create(
      type, llvm::GlobalValue::ExternalLinkage, "qlr_artifact_forward", module);
  packed->setVisibility(llvm::GlobalValue::HiddenVisibility);
  llvm::IRBuilder<> builder(llvm::BasicBlock::Create(ctx, "entry", packed));
  llvm::SmallVector<llvm::Value *> args;
  for (auto [i, param] : llvm::enumerate(target->args())) {
    llvm::Value *slot = builder.CreateConstGEP1_64(
        ptrType, packed->getArg(0), i, "arg" + llvm::Twine(i) + ".ptr");
    llvm::Value *pointer = builder.CreateLoad(ptrType, slot);
    args.push_back(builder.CreateLoad(param.getType(), pointer));
  }
  builder.CreateCall(target, args);
  builder.CreateRetVoid();
  return llvm::Error::success();
}

/// The parameter count of a LLaMA-family model of this configuration.
static int64_t parameterCount(const ::qlr::checkpoint::ModelConfig &c) {
  int64_t q = c.numHeads * c.headDim, kv = c.numKVHeads * c.headDim;
  int64_t block =
      c.dim * (q + 2 * kv) + q * c.dim + 3 * c.dim * c.hiddenDim + 2 * c.dim;
  return c.vocabSize * c.dim * (c.tiedEmbeddings ? 1 : 2) +
         c.numLayers * block + c.dim;
}

static llvm::Error writeFile(llvm::StringRef path,
                             llvm::function_ref<void(llvm::raw_ostream &)> fn) {
  std::error_code ec;
  llvm::raw_fd_ostream os(path, ec);
  if (ec)
    return llvm::createStringError(ec, "cannot write %s", path.str().c_str());
  fn(os);
  os.close();
  if (os.has_error())
    return llvm::createStringError(os.error(), "cannot write %s",
                                   path.str().c_str());
  return llvm::Error::success();
}

int main(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
  cl::HideUnrelatedOptions(category);
  cl::ParseCommandLineOptions(
      argc, argv,
      "qlr-compile: compile a qlr model ahead of time into a shared library "
      "with the C interface of qlr-c/Runtime.h\n");
  auto start = std::chrono::steady_clock::now();

  // The target.
  numerics::SimdLevel level;
  bool hostCPU = cpu == "native";
  if (hostCPU) {
    // What qlr-run's JIT would compile for here: the host's level, capped by
    // QLR_MAX_SIMD.
    level = numerics::simdLevel();
  } else if (cpu == "x86-64") {
    level = numerics::SimdLevel::Portable;
  } else if (cpu == "x86-64-v3") {
    level = numerics::SimdLevel::AVX2;
  } else if (cpu == "x86-64-v4") {
    level = numerics::SimdLevel::AVX512;
  } else {
    return fail("--cpu=" + cpu +
                ": use native, x86-64, x86-64-v3 or x86-64-v4");
  }
  if (optLevel > 3)
    return fail(llvm::formatv("-O{0}: the optimisation level must be 0-3",
                              unsigned(optLevel)));
#ifdef QLR_OMP_LIBRARY
  bool haveOpenMP = true;
#else
  bool haveOpenMP = false;
#endif
  bool openmp;
  if (parallel == "default")
    openmp = haveOpenMP;
  else if (parallel == "openmp" || parallel == "none")
    openmp = parallel == "openmp";
  else
    return fail("--parallel=" + parallel + ": use openmp or none");
  if (openmp && !haveOpenMP)
    return fail("--parallel=openmp: this build found no OpenMP runtime "
                "(libomp); use --parallel=none");
  if (!weightsFile.empty() &&
      llvm::sys::path::filename(weightsFile) != weightsFile)
    return fail("--weights-file=" + weightsFile +
                ": give a file name; the file is written next to the "
                "library and found there at load time");
  std::string linker = QLR_LINKER_DRIVER;
  if (const char *override = std::getenv("QLR_LINKER"))
    linker = override;
  if (linker.empty() || !llvm::sys::fs::can_execute(linker))
    return fail("no linker driver: this build found none at configure time "
                "(a C++ compiler such as c++); set QLR_LINKER to one");

  std::string runtimeArchive = findArchive(argv[0], "libQLRArtifactRuntime.a",
                                           QLR_ARTIFACT_RUNTIME_LIBRARY);
  std::string tokenizerArchive =
      findArchive(argv[0], "libQLRTokenizer.a", QLR_TOKENIZER_LIBRARY);
  for (const std::string &archive : {runtimeArchive, tokenizerArchive})
    if (!llvm::sys::fs::exists(archive))
      return fail("cannot find the runtime archive " + archive +
                  " (looked in ../lib next to qlr-compile, then in the build "
                  "tree)");

  // The model, compiled exactly as qlr-run's JIT compiles it.
  DialectRegistry registry;
  mlir::qlr::registerModelDialects(registry);
  MLIRContext context(registry);
  ParserConfig parserConfig(&context);
  OwningOpRef<ModuleOp> module =
      parseSourceFile<ModuleOp>(inputPath, parserConfig);
  if (!module)
    return fail("cannot load " + inputPath);
  auto config = mlir::qlr::readModelConfig(*module);
  if (failed(config))
    return fail(inputPath + " is not a model made by qlr-import");
  auto tokenizer = mlir::qlr::readEmbeddedTokenizer(*module);
  if (failed(tokenizer))
    return fail("cannot read the tokenizer embedded in " + inputPath);
  auto forward =
      module->lookupSymbol<func::FuncOp>(mlir::qlr::kForwardFuncName);
  if (!forward)
    return fail(inputPath + " has no @forward function");
  auto weights = mlir::qlr::externalizeWeights(forward);
  if (failed(weights))
    return fail("cannot read the weights of " + inputPath);
  if (failed(mlir::qlr::lowerModelToLLVM(*module, openmp)))
    return fail("cannot lower " + inputPath + " to the LLVM dialect");

  auto machine = mlir::qlr::createCPUTargetMachine(level, hostCPU, optLevel,
                                                   /*pic=*/true);
  if (!machine)
    return fail("cannot create a target machine: " +
                llvm::toString(machine.takeError()));
  llvm::LLVMContext llvmContext;
  std::unique_ptr<llvm::Module> llvmModule =
      translateModuleToLLVMIR(*module, llvmContext, "qlr-model");
  if (!llvmModule)
    return fail("cannot translate the model to LLVM IR");
  // The same LLVM optimisation as the JIT's, on the same module; the entry
  // point and the visibility changes come after it, so that they cannot
  // change what the optimiser does to the model's code.
  if (llvm::Error error =
          mlir::qlr::optimizeModel(*llvmModule, **machine, optLevel))
    return fail("LLVM optimisation failed: " +
                llvm::toString(std::move(error)));
  if (llvm::Error error = addPackedForward(*llvmModule))
    return fail(llvm::toString(std::move(error)));
  // Only the packed entry point leaves the object; the runtime calls it.
  for (llvm::Function &function : *llvmModule)
    if (!function.isDeclaration() && !function.hasLocalLinkage() &&
        function.getName() != "qlr_artifact_forward")
      function.setVisibility(llvm::GlobalValue::HiddenVisibility);

  // Everything the link needs goes into a temporary directory.
  llvm::SmallString<128> temp;
  if (std::error_code ec =
          llvm::sys::fs::createUniqueDirectory("qlr-compile", temp))
    return fail("cannot create a temporary directory: " + ec.message());
  llvm::scope_exit cleanup([&] {
    if (!keepTemps)
      llvm::sys::fs::remove_directories(temp);
  });
  auto tempFile = [&](llvm::StringRef name) {
    llvm::SmallString<128> path(temp);
    llvm::sys::path::append(path, name);
    return std::string(path);
  };

  std::string objectPath = tempFile("model.o");
  {
    std::error_code ec;
    llvm::raw_fd_ostream os(objectPath, ec);
    if (ec)
      return fail("cannot write " + objectPath + ": " + ec.message());
    llvm::legacy::PassManager pm;
    if ((*machine)->addPassesToEmitFile(pm, os, nullptr,
                                        llvm::CodeGenFileType::ObjectFile))
      return fail("this target cannot emit object files");
    pm.run(*llvmModule);
    os.close();
    if (os.has_error())
      return fail("cannot write " + objectPath);
  }

  // Weights: one blob, each weight 64-byte aligned.
  ::qlr::artifact::ArtifactMeta meta;
  const auto &c = *config;
  meta.vocabSize = c.vocabSize;
  meta.maxSeqLen = c.maxSeqLen;
  meta.layers = c.numLayers;
  meta.dim = c.dim;
  meta.hiddenDim = c.hiddenDim;
  meta.heads = c.numHeads;
  meta.kvHeads = c.numKVHeads;
  meta.headDim = c.headDim;
  meta.parameters = parameterCount(c);
  meta.simdLevel = uint32_t(level);
  meta.openmp = openmp;
  meta.targetCPU = (*machine)->getTargetCPU().str();
  meta.weightsFile = weightsFile;
  uint64_t offset = 0;
  for (const mlir::qlr::ExternalWeight &weight : *weights) {
    offset = llvm::alignTo(offset, ::qlr::artifact::kWeightAlignment);
    meta.weights.push_back(
        {offset, weight.data.size(),
         std::vector<int64_t>(weight.shape.begin(), weight.shape.end())});
    offset += weight.data.size();
    meta.weightBytes += int64_t(weight.data.size());
  }
  uint64_t blobSize = offset;
  if (*tokenizer)
    meta.tokenizer = ::qlr::tokenizer::serialize(**tokenizer);

  auto writeWeights = [&](llvm::raw_ostream &os) {
    uint64_t at = 0;
    for (auto [weight, entry] : llvm::zip(*weights, meta.weights)) {
      os.write_zeros(entry.offset - at);
      os.write(weight.data.data(), weight.data.size());
      at = entry.offset + entry.bytes;
    }
  };
  std::string metaPath = tempFile("meta.bin");
  std::vector<uint8_t> metaBytes = ::qlr::artifact::writeMeta(meta);
  if (llvm::Error error = writeFile(metaPath, [&](llvm::raw_ostream &os) {
        os.write(reinterpret_cast<const char *>(metaBytes.data()),
                 metaBytes.size());
      }))
    return fail(llvm::toString(std::move(error)));
  std::string weightsPath = tempFile("weights.bin");
  if (llvm::Error error = writeFile(weightsPath, writeWeights))
    return fail(llvm::toString(std::move(error)));

  // The blobs, as read-only data of the library.
  std::string asmPath = tempFile("blobs.S");
  if (llvm::Error error = writeFile(asmPath, [&](llvm::raw_ostream &os) {
        auto blob = [&](llvm::StringRef name, llvm::StringRef file,
                        uint64_t align) {
          os << "  .section .rodata." << name << ",\"a\",@progbits\n"
             << "  .balign " << align << "\n"
             << "  .globl " << name << "\n  .hidden " << name << "\n"
             << name << ":\n";
          if (!file.empty())
            os << "  .incbin \"" << file << "\"\n";
          os << "  .globl " << name << "_end\n  .hidden " << name << "_end\n"
             << name << "_end:\n";
        };
        blob("qlr_artifact_meta", metaPath, 16);
        blob("qlr_artifact_weights", weightsFile.empty() ? weightsPath : "",
             ::qlr::artifact::kBlobAlignment);
        os << "  .section .note.GNU-stack,\"\",@progbits\n";
      }))
    return fail(llvm::toString(std::move(error)));
  std::string exportsPath = tempFile("exports.map");
  if (llvm::Error error = writeFile(exportsPath, [&](llvm::raw_ostream &os) {
        os << "{\n  global:\n    qlr_runtime_abi_version;\n"
              "    qlr_last_error;\n    qlr_model_*;\n    qlr_token*;\n"
              "    qlr_detokenize;\n  local: *;\n};\n";
      }))
    return fail(llvm::toString(std::move(error)));

  // Link: the library, then rename it into place.
  std::string linked = tempFile("model.so");
  std::vector<std::string> command = {linker,
                                      "-shared",
                                      "-o",
                                      linked,
                                      objectPath,
                                      asmPath,
                                      "-Wl,--version-script=" + exportsPath,
                                      "-Wl,--gc-sections",
                                      "-Wl,-z,noexecstack",
                                      "-Wl,-z,max-page-size=4096",
                                      "-Wl,--whole-archive",
                                      runtimeArchive,
                                      "-Wl,--no-whole-archive",
                                      tokenizerArchive};
  for (llvm::StringRef lib : llvm::split(QLR_ARTIFACT_LINK_LIBRARIES, '|'))
    if (!lib.empty())
      command.push_back(lib.str());
  if (openmp)
    command.push_back(QLR_OMP_LINK);
  command.push_back("-lm");
  command.push_back("-lpthread");
  std::vector<llvm::StringRef> commandRefs(command.begin(), command.end());
  if (verbose) {
    for (llvm::StringRef word : commandRefs)
      llvm::errs() << word << " ";
    llvm::errs() << "\n";
  }
  std::string message;
  int rc = llvm::sys::ExecuteAndWait(linker, commandRefs, std::nullopt, {}, 0,
                                     0, &message);
  if (rc != 0)
    return fail(
        "linking the library failed (" + linker + "): " +
        (message.empty() ? "exit code " + std::to_string(rc) : message) +
        "; rerun with -v --keep-temps to see the command");

  if (!weightsFile.empty()) {
    llvm::SmallString<128> sidecar(outputPath);
    llvm::sys::path::remove_filename(sidecar);
    llvm::sys::path::append(sidecar, weightsFile);
    if (llvm::Error error = llvm::writeToOutput(
            sidecar, [&](llvm::raw_ostream &os) -> llvm::Error {
              writeWeights(os);
              return llvm::Error::success();
            }))
      return fail(llvm::toString(std::move(error)));
  }
  if (llvm::Error error = llvm::writeToOutput(
          outputPath, [&](llvm::raw_ostream &os) -> llvm::Error {
            auto buffer = llvm::MemoryBuffer::getFile(linked);
            if (!buffer)
              return llvm::createStringError(buffer.getError(),
                                             "cannot read the linked library");
            os << (*buffer)->getBuffer();
            return llvm::Error::success();
          }))
    return fail(llvm::toString(std::move(error)));
  if (keepTemps)
    llvm::errs() << "qlr-compile: kept " << temp << "\n";
  llvm::errs() << llvm::formatv(
      "qlr-compile: {0} for {1} ({2}, {3}), {4} weights ({5:F1} MB{6}) in "
      "{7:F1} s\n",
      outputPath, meta.targetCPU, numerics::simdLevelName(level),
      openmp ? "OpenMP threads" : "1 thread", meta.weights.size(),
      double(blobSize) / 1e6, weightsFile.empty() ? "" : " in " + weightsFile,
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count());
  return 0;
}
