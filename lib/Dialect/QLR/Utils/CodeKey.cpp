//===- CodeKey.cpp - Functions that compile to the same code --------------===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#include "qlr/Dialect/QLR/Utils/CodeKey.h"

#include "qlr/Dialect/QLR/IR/QLRDialect.h"

#include "llvm/Support/raw_ostream.h"

using namespace mlir;

void mlir::qlr::removeCodeNeutralAttrs(Operation *root) {
  static constexpr llvm::StringLiteral kCodeNeutralAttrs[] = {
      kLayerNameAttrName, "qlr.calibration_id"};
  root->walk([](Operation *op) {
    for (StringRef name : kCodeNeutralAttrs)
      op->removeAttr(name);
  });
}

std::string mlir::qlr::codeKey(func::FuncOp func) {
  auto clone = cast<func::FuncOp>(func->clone());
  removeCodeNeutralAttrs(clone);
  clone.setSymName("__qlr_code_key");
  std::string key;
  llvm::raw_string_ostream os(key);
  clone->print(os, OpPrintingFlags().printGenericOpForm().useLocalScope());
  clone->erase();
  return key;
}
