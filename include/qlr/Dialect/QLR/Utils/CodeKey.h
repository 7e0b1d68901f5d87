//===- CodeKey.h - Functions that compile to the same code -----*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// What the JIT (JitModule, which compiles a model's equal layers once) and
// qlr-outline-layers (which keeps one function for a model's equal layers)
// compare functions by.
//
//===----------------------------------------------------------------------===//

#ifndef QLR_DIALECT_QLR_UTILS_CODEKEY_H
#define QLR_DIALECT_QLR_UTILS_CODEKEY_H

#include "mlir/Dialect/Func/IR/FuncOps.h"

#include <string>

namespace mlir::qlr {

/// Removes from `root` and the ops nested in it the discardable attributes
/// that name or number an op without changing the code compiled for it
/// (qlr-import's layer names, `qlr.name`, and the calibration ids the
/// calibrating passes put on the linears they tap, `qlr.calibration_id`).
void removeCodeNeutralAttrs(Operation *root);

/// A text equal for two functions exactly when they compile to the same
/// code: the generic form of `func` under a fixed name, without
/// code-neutral attributes. `func` is left unchanged.
std::string codeKey(func::FuncOp func);

} // namespace mlir::qlr

#endif // QLR_DIALECT_QLR_UTILS_CODEKEY_H
