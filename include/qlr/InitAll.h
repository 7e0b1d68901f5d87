//===- InitAll.h - Register every QLR dialect and pass ------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#ifndef QLR_INITALL_H
#define QLR_INITALL_H

namespace mlir {
class DialectRegistry;

namespace qlr {
/// Adds the qlr dialect (and the dialects its passes create) to `registry`.
void registerQLRDialects(DialectRegistry &registry);

/// Registers every `qlr-*` pass with the global pass registry, so that they
/// can be named on the command line and in pass pipeline strings.
void registerQLRPasses();
} // namespace qlr
} // namespace mlir

#endif // QLR_INITALL_H
