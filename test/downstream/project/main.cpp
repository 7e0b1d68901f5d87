//===- main.cpp - A downstream user of the installed QLR package
//-----------===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// Usage: qlr-downstream FILE.mlir
// Parses FILE with the qlr dialect registered, reads a format through the
// C++ API, runs qlr-convert-qlr-to-quant and prints the result.
//
//===----------------------------------------------------------------------===//

#include "qlr/Conversion/Passes.h"
#include "qlr/Dialect/QLR/IR/QLR.h"
#include "qlr/InitAll.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/Support/raw_ostream.h"

int main(int argc, char **argv) {
  if (argc != 2) {
    llvm::errs() << "usage: qlr-downstream FILE.mlir\n";
    return 2;
  }
  mlir::DialectRegistry registry;
  mlir::qlr::registerQLRDialects(registry);
  registry.insert<mlir::func::FuncDialect>();
  mlir::MLIRContext context(registry);

  mlir::OwningOpRef<mlir::ModuleOp> module =
      mlir::parseSourceFile<mlir::ModuleOp>(argv[1], &context);
  if (!module)
    return 1;

  // Use the dialect's C++ API: report the storage cost of every weight.
  module->walk([](mlir::qlr::PackOp pack) {
    auto type = llvm::cast<mlir::qlr::QTensorType>(pack.getType());
    llvm::outs() << "bits per weight: "
                 << type.getFormat().getBitsPerElement(type.getShape()) << "\n";
  });

  mlir::PassManager pm(&context);
  pm.addPass(mlir::qlr::createQLRConvertQLRToQuantPass());
  if (mlir::failed(pm.run(*module)))
    return 1;
  module->print(llvm::outs());
  return 0;
}
