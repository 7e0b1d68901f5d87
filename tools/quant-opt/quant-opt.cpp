//===- quant-opt.cpp - The QLR optimizer driver -----------------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// Works like mlir-opt: every upstream dialect, extension and pass is
// registered, plus the qlr dialect and all `qlr-*` passes.
//
//===----------------------------------------------------------------------===//

#include "qlr/InitAll.h"

#include "mlir/IR/DialectRegistry.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/InitAllPasses.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"

int main(int argc, char **argv) {
  mlir::DialectRegistry registry;
  mlir::registerAllDialects(registry);
  mlir::registerAllExtensions(registry);
  mlir::qlr::registerQLRDialects(registry);
  mlir::registerAllPasses();
  mlir::qlr::registerQLRPasses();
  return mlir::asMainReturnCode(mlir::MlirOptMain(
      argc, argv,
      "QLR optimizer driver: the qlr dialect and passes on top of every "
      "upstream MLIR dialect and pass\n",
      registry));
}
