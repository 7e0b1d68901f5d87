//===- QLRDialect.h - QLR dialect, attributes and types -----*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#ifndef QLR_DIALECT_QLR_IR_QLRDIALECT_H
#define QLR_DIALECT_QLR_IR_QLRDIALECT_H

#include "qlr/Numerics/Format.h"

#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Dialect.h"

namespace mlir::qlr {
/// The MLIR-free numerics library (lib/Numerics), reachable as
/// `numerics::` from dialect code.
namespace numerics = ::qlr::numerics;

/// The discardable attribute that names a layer (a `qlr.linear` or a norm)
/// after its tensor in the checkpoint, e.g. `qlr.name =
/// "layers.0.attention.wq"`: weight passes select and name what they write
/// by it, whatever the weight's constant is called.
constexpr llvm::StringLiteral kLayerNameAttrName = "qlr.name";
} // namespace mlir::qlr

#include "qlr/Dialect/QLR/IR/QLRDialect.h.inc"
#include "qlr/Dialect/QLR/IR/QLREnums.h.inc"

#define GET_ATTRDEF_CLASSES
#include "qlr/Dialect/QLR/IR/QLRAttrs.h.inc"

#define GET_TYPEDEF_CLASSES
#include "qlr/Dialect/QLR/IR/QLRTypes.h.inc"

#endif // QLR_DIALECT_QLR_IR_QLRDIALECT_H
