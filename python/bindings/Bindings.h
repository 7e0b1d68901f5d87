//===- Bindings.h - Shared pieces of the qlr._compiler extension -*- C++
//-*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// The extension is a thin nanobind layer over QLR's C++ API. Errors never
// cross into Python as C++ exceptions of QLR or LLVM: MLIR diagnostics are
// collected while a call runs (DiagnosticCapture) and turned into a
// CompilerError (qlr.compiler.CompilerError) that carries them.
//
//===----------------------------------------------------------------------===//

#ifndef QLR_PYTHON_BINDINGS_BINDINGS_H
#define QLR_PYTHON_BINDINGS_BINDINGS_H

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/OwningOpRef.h"

#include <nanobind/nanobind.h>

#include <memory>
#include <string>
#include <vector>

namespace qlr::python {

namespace nb = nanobind;

/// One diagnostic: severity ("error", "warning", "note", "remark"), location
/// ("file:line:col", or MLIR's printed location when it has no file) and
/// message (notes attached to it follow on their own lines).
struct DiagnosticRecord {
  std::string severity;
  std::string location;
  std::string message;
};

/// Thrown by the extension's C++ code and translated into a Python
/// CompilerError with `.diagnostics`.
struct CompilerError {
  std::string summary;
  std::vector<DiagnosticRecord> diagnostics;
};

/// "file:line:col" for `loc` (the first file location it contains), else
/// MLIR's printed form of it.
std::string formatLocation(mlir::Location loc);

/// Collects every diagnostic emitted in `context` while it lives, instead of
/// printing them.
class DiagnosticCapture {
public:
  explicit DiagnosticCapture(mlir::MLIRContext *context);
  ~DiagnosticCapture();
  std::vector<DiagnosticRecord> records;

  /// The warnings (and remarks) collected, as "location: warning: message".
  std::vector<std::string> warnings() const;
  /// Throws a CompilerError whose message is `summary` followed by every
  /// collected diagnostic.
  [[noreturn]] void fail(const std::string &summary) const;

private:
  mlir::MLIRContext *context;
  mlir::DiagnosticEngine::HandlerID id;
};

/// A context with every dialect and LLVM translation quant-opt and the JIT
/// know; passes and pipelines are registered once per process.
std::shared_ptr<mlir::MLIRContext> createContext();

/// A module with the context it lives in (shared with JIT functions made
/// from it).
struct Module {
  std::shared_ptr<mlir::MLIRContext> context;
  mlir::OwningOpRef<mlir::ModuleOp> module;
};

void bindArtifact(nb::module_ &m);
void bindIR(nb::module_ &m);
void bindJIT(nb::module_ &m);
void bindNumerics(nb::module_ &m);

} // namespace qlr::python

#endif // QLR_PYTHON_BINDINGS_BINDINGS_H
