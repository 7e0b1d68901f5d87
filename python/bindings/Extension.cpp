//===- Extension.cpp - The qlr._compiler module -----------------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// Entry point of the nanobind extension behind `qlr.compiler`: the
// CompilerError exception type and its translation from C++, then the IR,
// JIT, model library (compile_artifact) and numerics bindings.
//
//===----------------------------------------------------------------------===//

#include "Bindings.h"

#include "qlr/Numerics/Simd.h"

#include <nanobind/stl/string.h>

using namespace ::qlr::python;

static PyObject *compilerErrorType = nullptr;

/// The text of a CompilerError: the summary, then one line per diagnostic in
/// the usual compiler form "location: severity: message".
static std::string errorText(const CompilerError &error) {
  std::string text = error.summary;
  for (const DiagnosticRecord &record : error.diagnostics) {
    if (!text.empty())
      text += "\n";
    if (!record.location.empty())
      text += record.location + ": ";
    text += record.severity + ": " + record.message;
  }
  return text;
}

static void translateCompilerError(const CompilerError &error) {
  nb::list diagnostics;
  for (const DiagnosticRecord &record : error.diagnostics)
    diagnostics.append(
        nb::make_tuple(record.severity, record.location, record.message));
  nb::object type = nb::borrow(compilerErrorType);
  nb::object instance = type(nb::str(errorText(error).c_str()));
  instance.attr("diagnostics") = diagnostics;
  instance.attr("summary") = nb::str(error.summary.c_str());
  PyErr_SetObject(compilerErrorType, instance.ptr());
}

NB_MODULE(_compiler, m) {
  m.doc() = "QLR's compiler (MLIR parsing and printing, pass pipelines, "
            "checkpoint import, JIT) and numerics library. Use it through "
            "qlr.compiler, which adds the Python-level conveniences.";

  compilerErrorType = PyErr_NewExceptionWithDoc(
      "qlr.compiler.CompilerError",
      "A compiler step failed. str() is the summary followed by every "
      "diagnostic as 'file:line:col: severity: message'; .diagnostics is the "
      "list of (severity, location, message) tuples and .summary the first "
      "line.",
      PyExc_Exception, nullptr);
  m.attr("CompilerError") = nb::borrow(compilerErrorType);
  nb::register_exception_translator([](const std::exception_ptr &p, void *) {
    try {
      std::rethrow_exception(p);
    } catch (const CompilerError &error) {
      translateCompilerError(error);
    }
  });

  m.def(
      "simd_description", []() { return ::qlr::numerics::describeSimd(); },
      "The numerics build kind and the instruction-set level in use (as "
      "`quant-opt --version` prints it).");

  bindIR(m);
  bindJIT(m);
  bindArtifact(m);
  bindNumerics(m);
}
