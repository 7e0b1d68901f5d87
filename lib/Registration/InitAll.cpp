//===- InitAll.cpp - Register every QLR dialect and pass --------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#include "qlr/InitAll.h"
#include "qlr/Conversion/Passes.h"
#include "qlr/Dialect/QLR/IR/QLR.h"
#include "qlr/Dialect/QLR/Transforms/Passes.h"
#include "qlr/Pipelines/Pipelines.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Quant/IR/Quant.h"
#include "mlir/IR/DialectRegistry.h"

void mlir::qlr::registerQLRDialects(DialectRegistry &registry) {
  registry.insert<QLRDialect, arith::ArithDialect, quant::QuantDialect>();
}

void mlir::qlr::registerQLRPasses() {
  registerQLRConversionPasses();
  registerQLRTransformsPasses();
  registerQLRPipelines();
}
