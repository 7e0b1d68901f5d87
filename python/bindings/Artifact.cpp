//===- Artifact.cpp - compile_artifact: model libraries ---------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// qlr.compiler.compile_artifact: mlir::qlr::compileArtifact
// (qlr/Runtime/Compile.h), the library behind qlr-compile, run in this
// process on a clone of the module.
//
//===----------------------------------------------------------------------===//

#include "Bindings.h"

#include "qlr/Runtime/Compile.h"

#include <nanobind/stl/filesystem.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>

using namespace mlir;
using namespace ::qlr::python;
using namespace nb::literals;

/// Compiles `self` into the library `outputPath`; returns the directory of
/// the intermediate files when `keepTemps`, else None.
static std::optional<std::string> compileArtifact(
    Module &self, const std::filesystem::path &outputPath,
    const std::string &cpu, int64_t optLevel, const std::string &parallel,
    std::optional<std::string> weightsFile, const std::string &target,
    std::optional<std::string> chip, std::optional<std::string> gpuBinary,
    std::optional<std::filesystem::path> cudaToolkit, bool keepTemps,
    std::optional<std::filesystem::path> runtimeLibraryDir) {
  mlir::qlr::ArtifactOptions options;
  options.target = target;
  options.cpu = cpu;
  if (optLevel < 0 || optLevel > 3)
    throw CompilerError{"-O" + std::to_string(optLevel) +
                            ": the optimisation level must be 0-3",
                        {}};
  options.optLevel = unsigned(optLevel);
  options.parallel = parallel;
  if (weightsFile)
    options.weightsFile = *weightsFile;
  if (chip)
    options.chip = *chip;
  if (gpuBinary)
    options.gpuBinary = *gpuBinary;
  if (cudaToolkit)
    options.cudaToolkit = cudaToolkit->string();
  options.keepTemps = keepTemps;
  if (runtimeLibraryDir)
    options.runtimeLibraryDir = runtimeLibraryDir->string();
  std::string output = outputPath.string();

  // The context stays alive, and the module unchanged, whatever Python does
  // meanwhile: compileArtifact compiles a clone of `module`, which this call
  // owns, with the GIL released.
  std::shared_ptr<MLIRContext> context = self.context;
  OwningOpRef<ModuleOp> module = self.module->clone();
  DiagnosticCapture diagnostics(context.get());
  llvm::Expected<mlir::qlr::ArtifactResult> result =
      [&]() -> llvm::Expected<mlir::qlr::ArtifactResult> {
    nb::gil_scoped_release release;
    return mlir::qlr::compileArtifact(*module, options, output);
  }();
  if (!result)
    diagnostics.fail(llvm::toString(result.takeError()));
  if (result->tempDirectory.empty())
    return std::nullopt;
  return result->tempDirectory;
}

void ::qlr::python::bindArtifact(nb::module_ &m) {
  m.def("_compile_artifact", &compileArtifact, "module"_a, "output_path"_a,
        "cpu"_a = "native", "opt_level"_a = 3, "parallel"_a = "default",
        "weights_file"_a = nb::none(), "target"_a = "cpu",
        "chip"_a = nb::none(), "gpu_binary"_a = nb::none(),
        "cuda_toolkit"_a = nb::none(), "keep_temps"_a = false,
        "runtime_library_dir"_a = nb::none(),
        "mlir::qlr::compileArtifact (qlr-compile's library) on a clone of "
        "`module`; use qlr.compiler.compile_artifact. Returns the kept "
        "temporary directory with keep_temps, else None. Raises "
        "CompilerError.");
}
