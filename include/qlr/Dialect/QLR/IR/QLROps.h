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

#define GET_OP_CLASSES
#include "qlr/Dialect/QLR/IR/QLROps.h.inc"

#endif // QLR_DIALECT_QLR_IR_QLROPS_H
