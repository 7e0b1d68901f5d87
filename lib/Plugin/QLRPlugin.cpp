//===- QLRPlugin.cpp - qlr as an mlir-opt dialect/pass plugin ---*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// One shared library that stock mlir-opt loads as both kinds of plugin:
//
//   mlir-opt --load-dialect-plugin=QLRPlugin.so \
//            --load-pass-plugin=QLRPlugin.so in.mlir --qlr-convert-qlr-to-quant
//
// It links the shared libMLIR.so, like Debian's mlir-opt, so that both use
// the same dialect and pass registries.
//
//===----------------------------------------------------------------------===//

#include "qlr/InitAll.h"

#include "mlir/IR/DialectRegistry.h"
#include "mlir/Tools/Plugins/DialectPlugin.h"
#include "mlir/Tools/Plugins/PassPlugin.h"
#include "llvm/Config/llvm-config.h"
#include "llvm/Support/Compiler.h"

extern "C" LLVM_ATTRIBUTE_WEAK mlir::DialectPluginLibraryInfo
mlirGetDialectPluginInfo() {
  return {MLIR_PLUGIN_API_VERSION, "QLR", LLVM_VERSION_STRING,
          [](mlir::DialectRegistry *registry) {
            mlir::qlr::registerQLRDialects(*registry);
          }};
}

extern "C" LLVM_ATTRIBUTE_WEAK mlir::PassPluginLibraryInfo
mlirGetPassPluginInfo() {
  return {MLIR_PLUGIN_API_VERSION, "QLRPasses", LLVM_VERSION_STRING,
          []() { mlir::qlr::registerQLRPasses(); }};
}
