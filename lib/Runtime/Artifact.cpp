//===- Artifact.cpp - Compiling a qlr model into a shared library -*- C++ -*-//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// compileArtifact (qlr/Runtime/Compile.h): what qlr-compile and
// qlr.compiler.compile_artifact do. The model is compiled with the JIT's
// steps into an object file; its weights and metadata become read-only data
// (an assembler file with .incbin); the C++ compiler found at configure time
// links them with the runtime archives into the library, which is copied to
// the output path atomically.
//
//===----------------------------------------------------------------------===//

#include "qlr/Import/LlamaImporter.h"
#include "qlr/Numerics/Simd.h"
#include "qlr/Runtime/ArtifactFormat.h"
#include "qlr/Runtime/Compile.h"
#include "qlr/Tokenizer/TokenizerData.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Target/LLVMIR/Export.h"
#include "llvm/ADT/ScopeExit.h"
#include "llvm/IR/IRBuilder.h"
#include "llvm/IR/LegacyPassManager.h"
#include "llvm/IR/Module.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/Regex.h"
#include "llvm/Support/raw_ostream.h"

#include <cstdlib>

using namespace mlir;
using namespace mlir::qlr;
namespace numerics = ::qlr::numerics;

// Where this build put what the library is linked with (CMakeLists.txt).
#ifndef QLR_LINKER_DRIVER
#define QLR_LINKER_DRIVER ""
#endif
#ifndef QLR_OMP_LINK
#define QLR_OMP_LINK ""
#endif

static llvm::Error error(const llvm::Twine &message) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), message);
}

namespace {
/// ArtifactOptions, checked and resolved.
struct Resolved {
  numerics::SimdLevel level;
  bool hostCPU;
  bool cuda;
  bool openmp;
  std::string toolkit;
  std::string linker;
  std::string runtimeArchive, tokenizerArchive, cudaArchive;
};
} // namespace

/// The runtime archive `name`: in `dir` when given and it is there, else
/// where the build put it (`built`).
static std::string findArchive(llvm::StringRef dir, llvm::StringRef name,
                               llvm::StringRef built) {
  if (!dir.empty()) {
    llvm::SmallString<256> path(dir);
    llvm::sys::path::append(path, name);
    if (llvm::sys::fs::exists(path))
      return std::string(path);
  }
  return built.str();
}

static llvm::Expected<Resolved> resolve(const ArtifactOptions &options) {
  Resolved r;
  const std::string &cpu = options.cpu;
  r.hostCPU = cpu == "native";
  if (r.hostCPU) {
    // What qlr-run's JIT would compile for here: the host's level, capped by
    // QLR_MAX_SIMD.
    r.level = numerics::simdLevel();
  } else if (cpu == "x86-64") {
    r.level = numerics::SimdLevel::Portable;
  } else if (cpu == "x86-64-v3") {
    r.level = numerics::SimdLevel::AVX2;
  } else if (cpu == "x86-64-v4") {
    r.level = numerics::SimdLevel::AVX512;
  } else {
    return error("--cpu=" + cpu +
                 ": use native, x86-64, x86-64-v3 or x86-64-v4");
  }
  r.cuda = options.target == "cuda";
  if (!r.cuda && options.target != "cpu")
    return error("--target=" + options.target + ": use cpu or cuda");
  static const llvm::Regex chipPattern("^sm_[0-9]+a?$");
  if (r.cuda && !chipPattern.match(options.chip))
    return error("--chip=" + options.chip +
                 ": give an NVIDIA architecture such as "
                 "sm_80 or sm_90");
  if (r.cuda && options.gpuBinary != "cubin" && options.gpuBinary != "ptx")
    return error("--gpu-binary=" + options.gpuBinary + ": use cubin or ptx");
  if (r.cuda) {
    r.toolkit = findCUDAToolkit(options.cudaToolkit);
    if (r.toolkit.empty())
      return error(
          (options.cudaToolkit.empty()
               ? llvm::Twine("no CUDA toolkit found ($CUDA_HOME, $CUDA_PATH, "
                             "$CUDA_ROOT, /usr/local/cuda)")
               : llvm::Twine("--cuda-toolkit=" + options.cudaToolkit)) +
          ": --target=cuda needs its libdevice "
          "(nvvm/libdevice/libdevice.10.bc) for the kernels' math functions");
    llvm::SmallString<128> ptxas(r.toolkit);
    llvm::sys::path::append(ptxas, "bin", "ptxas");
    if (options.gpuBinary == "cubin" && !llvm::sys::fs::can_execute(ptxas))
      return error("--gpu-binary=cubin needs " + ptxas +
                   "; use --gpu-binary=ptx to let the driver compile the "
                   "kernels");
  }
  if (options.optLevel > 3)
    return error(llvm::formatv("-O{0}: the optimisation level must be 0-3",
                               options.optLevel));
#ifdef QLR_OMP_LIBRARY
  bool haveOpenMP = true;
#else
  bool haveOpenMP = false;
#endif
  if (options.parallel == "default")
    r.openmp = haveOpenMP;
  else if (options.parallel == "openmp" || options.parallel == "none")
    r.openmp = options.parallel == "openmp";
  else
    return error("--parallel=" + options.parallel + ": use openmp or none");
  if (r.openmp && !haveOpenMP)
    return error("--parallel=openmp: this build found no OpenMP runtime "
                 "(libomp); use --parallel=none");
  if (r.cuda)
    r.openmp = false; // The host code only launches kernels.
  const std::string &weightsFile = options.weightsFile;
  if (!weightsFile.empty() &&
      llvm::sys::path::filename(weightsFile) != weightsFile)
    return error("--weights-file=" + weightsFile +
                 ": give a file name; the file is written next to the "
                 "library and found there at load time");
  r.linker = options.linker;
  if (r.linker.empty()) {
    r.linker = QLR_LINKER_DRIVER;
    if (const char *override = std::getenv("QLR_LINKER"))
      r.linker = override;
  }
  if (r.linker.empty() || !llvm::sys::fs::can_execute(r.linker))
    return error("no linker driver: this build found none at configure time "
                 "(a C++ compiler such as c++); set QLR_LINKER to one");

  llvm::StringRef dir = options.runtimeLibraryDir;
  r.runtimeArchive =
      findArchive(dir, "libQLRArtifactRuntime.a", QLR_ARTIFACT_RUNTIME_LIBRARY);
  r.tokenizerArchive =
      findArchive(dir, "libQLRTokenizer.a", QLR_TOKENIZER_LIBRARY);
  r.cudaArchive =
      findArchive(dir, "libQLRCudaRuntime.a", QLR_CUDA_RUNTIME_LIBRARY);
  for (const std::string &archive :
       {r.runtimeArchive, r.tokenizerArchive, r.cudaArchive})
    if (!llvm::sys::fs::exists(archive))
      return error("cannot find the runtime archive " + archive +
                   " (looked in " + (dir.empty() ? "" : dir + ", then in ") +
                   "the build tree)");
  return r;
}

llvm::Error mlir::qlr::checkArtifactOptions(const ArtifactOptions &options) {
  return resolve(options).takeError();
}

/// Adds `void qlr_artifact_forward(void **args)`, which loads each argument
/// of _mlir_ciface_forward from args[i] (a pointer to the argument) and
/// calls it: the runtime can then call a model whatever its weight count.
static llvm::Error addPackedForward(llvm::Module &module) {
  llvm::Function *target = module.getFunction("_mlir_ciface_forward");
  if (!target)
    return error("the compiled model has no _mlir_ciface_forward");
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

llvm::Expected<ArtifactResult>
mlir::qlr::compileArtifact(ModuleOp original, const ArtifactOptions &options,
                           llvm::StringRef outputPath) {
  llvm::Expected<Resolved> resolved = resolve(options);
  if (!resolved)
    return resolved.takeError();
  const Resolved &r = *resolved;
  const std::string &name = options.moduleName;
  const std::string &weightsFile = options.weightsFile;

  // The model, compiled exactly as qlr-run's JIT compiles it, from a clone:
  // the caller's module stays as it is (the clone shares its resource blobs,
  // which the weights below point into).
  OwningOpRef<ModuleOp> module = original.clone();
  auto config = readModelConfig(*module);
  if (failed(config))
    return error(name + " is not a model made by qlr-import");
  auto tokenizer = readEmbeddedTokenizer(*module);
  if (failed(tokenizer))
    return error("cannot read the tokenizer embedded in " + name);
  auto forward = module->lookupSymbol<func::FuncOp>(kForwardFuncName);
  if (!forward)
    return error(name + " has no @forward function");
  // On the GPU every weight is a device buffer the runtime fills, small
  // ones included (a constant left in the code would be a host address).
  auto weights = externalizeWeights(forward, r.cuda ? 0 : kExternalizeBytes);
  if (failed(weights))
    return error("cannot read the weights of " + name);
  if (r.cuda) {
    GPUPipelineOptions gpuOptions;
    gpuOptions.chip = options.chip;
    gpuOptions.format = options.gpuBinary == "cubin" ? "bin" : "isa";
    gpuOptions.toolkit = r.toolkit;
    if (failed(lowerModelToGPU(*module, gpuOptions)))
      return error("cannot compile " + name + " for the GPU");
  } else if (failed(lowerModelToLLVM(*module, r.level, r.openmp))) {
    return error("cannot lower " + name + " to the LLVM dialect");
  }

  auto machine = createCPUTargetMachine(r.level, r.hostCPU, options.optLevel,
                                        /*pic=*/true);
  if (!machine)
    return error("cannot create a target machine: " +
                 llvm::toString(machine.takeError()));
  llvm::LLVMContext llvmContext;
  std::unique_ptr<llvm::Module> llvmModule =
      translateModuleToLLVMIR(*module, llvmContext, "qlr-model");
  if (!llvmModule)
    return error("cannot translate the model to LLVM IR");
  // The same LLVM optimisation as the JIT's, on the same module; the entry
  // point and the visibility changes come after it, so that they cannot
  // change what the optimiser does to the model's code.
  if (llvm::Error err = optimizeModel(*llvmModule, **machine, options.optLevel))
    return error("LLVM optimisation failed: " + llvm::toString(std::move(err)));
  if (llvm::Error err = addPackedForward(*llvmModule))
    return std::move(err);
  // Only the packed entry point leaves the object; the runtime calls it.
  for (llvm::Function &function : *llvmModule)
    if (!function.isDeclaration() && !function.hasLocalLinkage() &&
        function.getName() != "qlr_artifact_forward")
      function.setVisibility(llvm::GlobalValue::HiddenVisibility);

  // Everything the link needs goes into a temporary directory.
  llvm::SmallString<128> temp;
  if (std::error_code ec =
          llvm::sys::fs::createUniqueDirectory("qlr-compile", temp))
    return error("cannot create a temporary directory: " + ec.message());
  llvm::scope_exit cleanup([&] {
    if (!options.keepTemps)
      llvm::sys::fs::remove_directories(temp);
  });
  auto tempFile = [&](llvm::StringRef file) {
    llvm::SmallString<128> path(temp);
    llvm::sys::path::append(path, file);
    return std::string(path);
  };

  std::string objectPath = tempFile("model.o");
  {
    std::error_code ec;
    llvm::raw_fd_ostream os(objectPath, ec);
    if (ec)
      return error("cannot write " + objectPath + ": " + ec.message());
    llvm::legacy::PassManager pm;
    if ((*machine)->addPassesToEmitFile(pm, os, nullptr,
                                        llvm::CodeGenFileType::ObjectFile))
      return error("this target cannot emit object files");
    pm.run(*llvmModule);
    os.close();
    if (os.has_error())
      return error("cannot write " + objectPath);
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
  meta.simdLevel = uint32_t(r.level);
  meta.openmp = r.openmp;
  meta.targetCPU = (*machine)->getTargetCPU().str();
  meta.weightsFile = weightsFile;
  if (r.cuda) {
    meta.device = ::qlr::artifact::kDeviceCUDA;
    meta.gpuChip = options.chip;
  }
  uint64_t offset = 0;
  for (const ExternalWeight &weight : *weights) {
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
  if (llvm::Error err = writeFile(metaPath, [&](llvm::raw_ostream &os) {
        os.write(reinterpret_cast<const char *>(metaBytes.data()),
                 metaBytes.size());
      }))
    return std::move(err);
  std::string weightsPath = tempFile("weights.bin");
  if (llvm::Error err = writeFile(weightsPath, writeWeights))
    return std::move(err);

  // The blobs, as read-only data of the library.
  std::string asmPath = tempFile("blobs.S");
  if (llvm::Error err = writeFile(asmPath, [&](llvm::raw_ostream &os) {
        auto blob = [&](llvm::StringRef symbol, llvm::StringRef file,
                        uint64_t align) {
          os << "  .section .rodata." << symbol << ",\"a\",@progbits\n"
             << "  .balign " << align << "\n"
             << "  .globl " << symbol << "\n  .hidden " << symbol << "\n"
             << symbol << ":\n";
          if (!file.empty())
            os << "  .incbin \"" << file << "\"\n";
          os << "  .globl " << symbol << "_end\n  .hidden " << symbol
             << "_end\n"
             << symbol << "_end:\n";
        };
        blob("qlr_artifact_meta", metaPath, 16);
        blob("qlr_artifact_weights", weightsFile.empty() ? weightsPath : "",
             ::qlr::artifact::kBlobAlignment);
        os << "  .section .note.GNU-stack,\"\",@progbits\n";
      }))
    return std::move(err);
  std::string exportsPath = tempFile("exports.map");
  if (llvm::Error err = writeFile(exportsPath, [&](llvm::raw_ostream &os) {
        os << "{\n  global:\n    qlr_runtime_abi_version;\n"
              "    qlr_last_error;\n    qlr_model_*;\n    qlr_token*;\n"
              "    qlr_detokenize;\n  local: *;\n};\n";
      }))
    return std::move(err);

  // Link: the library, then copy it into place.
  std::string linked = tempFile("model.so");
  std::vector<std::string> command = {r.linker,
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
                                      r.runtimeArchive,
                                      "-Wl,--no-whole-archive",
                                      r.tokenizerArchive,
                                      r.cudaArchive};
  for (llvm::StringRef lib : llvm::split(QLR_ARTIFACT_LINK_LIBRARIES, '|'))
    if (!lib.empty())
      command.push_back(lib.str());
  if (r.openmp)
    command.push_back(QLR_OMP_LINK);
  command.push_back("-lm");
  command.push_back("-lpthread");
  command.push_back("-ldl");
  std::vector<llvm::StringRef> commandRefs(command.begin(), command.end());
  if (options.linkCommandLog) {
    for (llvm::StringRef word : commandRefs)
      *options.linkCommandLog << word << " ";
    *options.linkCommandLog << "\n";
    options.linkCommandLog->flush();
  }
  std::string message;
  int rc = llvm::sys::ExecuteAndWait(r.linker, commandRefs, std::nullopt, {}, 0,
                                     0, &message);
  if (rc != 0)
    return error(
        "linking the library failed (" + r.linker + "): " +
        (message.empty() ? "exit code " + std::to_string(rc) : message) +
        "; rerun with -v --keep-temps to see the command");

  // The sidecar first, then the library; each written to a temporary file
  // and renamed into place. Without the library, no sidecar is left either.
  llvm::SmallString<128> sidecar;
  if (!weightsFile.empty()) {
    sidecar = outputPath;
    llvm::sys::path::remove_filename(sidecar);
    llvm::sys::path::append(sidecar, weightsFile);
    if (llvm::Error err = llvm::writeToOutput(
            sidecar, [&](llvm::raw_ostream &os) -> llvm::Error {
              writeWeights(os);
              return llvm::Error::success();
            }))
      return std::move(err);
  }
  if (llvm::Error err = llvm::writeToOutput(
          outputPath, [&](llvm::raw_ostream &os) -> llvm::Error {
            auto buffer = llvm::MemoryBuffer::getFile(linked);
            if (!buffer)
              return llvm::createStringError(buffer.getError(),
                                             "cannot read the linked library");
            os << (*buffer)->getBuffer();
            return llvm::Error::success();
          })) {
    if (!sidecar.empty())
      llvm::sys::fs::remove(sidecar);
    return std::move(err);
  }

  ArtifactResult result;
  result.targetCPU = meta.targetCPU;
  result.openmp = r.openmp;
  result.weightCount = meta.weights.size();
  result.weightBytes = blobSize;
  if (options.keepTemps)
    result.tempDirectory = std::string(temp);
  result.summary = llvm::formatv(
      "{0} for {1} ({2}, {3}), {4} weights ({5:F1} MB{6})", outputPath,
      r.cuda ? "CUDA " + options.chip + " (" + options.gpuBinary + ")"
             : meta.targetCPU,
      r.cuda ? "host " + meta.targetCPU
             : std::string(numerics::simdLevelName(r.level)),
      r.cuda     ? "kernels on the GPU"
      : r.openmp ? "OpenMP threads"
                 : "1 thread",
      meta.weights.size(), double(blobSize) / 1e6,
      weightsFile.empty() ? "" : " in " + weightsFile);
  return result;
}
