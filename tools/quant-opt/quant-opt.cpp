//===- quant-opt.cpp - The QLR optimizer driver -----------------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// Works like mlir-opt: every upstream dialect, extension and pass is
// registered, plus the qlr dialect and all `qlr-*` passes.
//
// Unlike mlir-opt, `-o FILE` is written to a temporary file next to FILE and
// renamed over it only when every pass succeeded: a failed, interrupted or
// killed run never leaves a partial or empty FILE (an existing FILE is kept
// as it was).
//
//===----------------------------------------------------------------------===//

#include "qlr/InitAll.h"
#include "qlr/Numerics/Simd.h"
#include "qlr/Support/Progress.h"

#include "mlir/IR/DialectRegistry.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/InitAllPasses.h"
#include "mlir/Support/FileUtilities.h"
#include "mlir/Target/LLVMIR/Dialect/All.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Process.h"
#include "llvm/Support/ToolOutputFile.h"
#include "llvm/Support/WithColor.h"
#include "llvm/Support/raw_ostream.h"

#include <cstdio>

using namespace mlir;

int main(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
  DialectRegistry registry;
  registerAllDialects(registry);
  registerAllExtensions(registry);
  // gpu-module-to-binary translates GPU modules to LLVM IR.
  registerAllToLLVMIRTranslations(registry);
  mlir::qlr::registerQLRDialects(registry);
  registerAllPasses();
  mlir::qlr::registerQLRPasses();
  ::qlr::registerProgressCLOptions();
  llvm::cl::AddExtraVersionPrinter([](llvm::raw_ostream &os) {
    os << "  " << ::qlr::numerics::describeSimd() << "\n";
  });
  auto [inputFilename, outputFilename] = registerAndParseCLIOptions(
      argc, argv,
      "QLR optimizer driver: the qlr dialect and passes on top of every "
      "upstream MLIR dialect and pass\n",
      registry);

  MlirOptMainConfig config = MlirOptMainConfig::createFromCLOptions();
  // --show-dialects and --list-passes print and return before any input is
  // read.
  if (config.shouldShowDialects() || config.shouldListPasses())
    return asMainReturnCode(
        MlirOptMain(llvm::outs(), /*buffer=*/nullptr, registry, config));

  if (inputFilename == "-" &&
      llvm::sys::Process::FileDescriptorIsDisplayed(fileno(stdin)))
    llvm::errs() << "(processing input from stdin now, hit ctrl-c/ctrl-d to "
                    "interrupt)\n";
  std::string errorMessage;
  std::unique_ptr<llvm::MemoryBuffer> input =
      openInputFile(inputFilename, &errorMessage);
  if (!input) {
    llvm::WithColor::error(llvm::errs(), "quant-opt") << errorMessage << "\n";
    return EXIT_FAILURE;
  }

  // writeToOutput streams into "<output>.temp-stream-XXXXXX" (removed on
  // failure and on SIGINT/SIGTERM) and renames it into place on success;
  // "-" is standard output.
  bool ran = false, passed = false;
  llvm::Error written = llvm::writeToOutput(
      outputFilename, [&](llvm::raw_ostream &os) -> llvm::Error {
        ran = true;
        passed = succeeded(MlirOptMain(os, std::move(input), registry, config));
        if (!passed)
          return llvm::make_error<llvm::StringError>(
              "", llvm::inconvertibleErrorCode());
        return llvm::Error::success();
      });
  if (ran && !passed) {
    // The diagnostics have said why.
    llvm::consumeError(std::move(written));
    return EXIT_FAILURE;
  }
  if (written) {
    llvm::WithColor::error(llvm::errs(), "quant-opt")
        << "cannot write the output: " << llvm::toString(std::move(written))
        << "\n";
    return EXIT_FAILURE;
  }
  return EXIT_SUCCESS;
}
