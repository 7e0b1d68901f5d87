//===- QLROps.h - QLR operations ----------------------------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#ifndef QLR_DIALECT_QLR_IR_QLROPS_H
#define QLR_DIALECT_QLR_IR_QLROPS_H

#include "qlr/Dialect/QLR/IR/QLRDialect.h"

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/Interfaces/InferTypeOpInterface.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#include <string>

#define GET_OP_CLASSES
#include "qlr/Dialect/QLR/IR/QLROps.h.inc"

namespace mlir::qlr {
/// Prints a shape as `[576, 9]` (`?` for dynamic dimensions), as the qlr
/// verifiers and passes write shapes in their messages.
std::string formatShape(ArrayRef<int64_t> shape);

/// The float tensor type a weight decodes to: the expressed type of a
/// !qlr.qtensor or !qlr.lowrank, a ranked tensor type itself, else null.
RankedTensorType getExpressedTensorType(Type type);
} // namespace mlir::qlr

#endif // QLR_DIALECT_QLR_IR_QLROPS_H
