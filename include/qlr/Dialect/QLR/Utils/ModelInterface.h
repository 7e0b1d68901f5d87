//===- ModelInterface.h - What a model module carries -------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// The parts of a model module that tools and passes read besides its code:
// the names of the module attributes qlr-import writes, the entry function
// qlr-run calls, and the embedded tokenizer. Kept apart from the importer so
// that passes can read them without linking it.
//
//===----------------------------------------------------------------------===//

#ifndef QLR_DIALECT_QLR_UTILS_MODELINTERFACE_H
#define QLR_DIALECT_QLR_UTILS_MODELINTERFACE_H

#include "qlr/Tokenizer/TokenizerData.h"

#include "mlir/IR/BuiltinOps.h"
#include "llvm/ADT/StringRef.h"

#include <optional>

namespace mlir::qlr {

/// The names of the module attributes the importer writes.
constexpr llvm::StringLiteral kModelAttrName = "qlr.model";
constexpr llvm::StringLiteral kTokenizerAttrName = "qlr.tokenizer";
/// The function qlr-run, qlr-compile and data=generate call:
/// (tokens, position, logits, caches...) -> (logits, caches...).
constexpr llvm::StringLiteral kForwardFuncName = "forward";

/// The tokenizer qlr-import embedded (the `qlr.tokenizer` module attribute),
/// or std::nullopt when the module has none. An unreadable or corrupt blob
/// is reported at the module's location and fails.
FailureOr<std::optional<::qlr::tokenizer::TokenizerData>>
readEmbeddedTokenizer(ModuleOp module);

} // namespace mlir::qlr

#endif // QLR_DIALECT_QLR_UTILS_MODELINTERFACE_H
