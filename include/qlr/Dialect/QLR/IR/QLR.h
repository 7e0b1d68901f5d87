//===- QLR.h - Umbrella header for the QLR dialect ----------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#ifndef QLR_DIALECT_QLR_IR_QLR_H
#define QLR_DIALECT_QLR_IR_QLR_H

#include "qlr/Dialect/QLR/IR/QLRDialect.h"
#include "qlr/Dialect/QLR/IR/QLROps.h"

#endif // QLR_DIALECT_QLR_IR_QLR_H
