//===- Passes.h - QLR dialect transformations ---------------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#ifndef QLR_DIALECT_QLR_TRANSFORMS_PASSES_H
#define QLR_DIALECT_QLR_TRANSFORMS_PASSES_H

#include "mlir/IR/PatternMatch.h"
#include "mlir/Pass/Pass.h"

namespace mlir {
class ModuleOp;

namespace qlr {
class QLRDialect;

#define GEN_PASS_DECL
#include "qlr/Dialect/QLR/Transforms/Passes.h.inc"

/// Adds the patterns of qlr-raise-transformer that raise matrix products
/// with a transposed weight, and bias additions after them, to qlr.linear.
void populateRaiseLinearPatterns(RewritePatternSet &patterns);

/// Adds the patterns of qlr-raise-transformer that raise RMSNorm and
/// LayerNorm computations to qlr.rms_norm and qlr.layer_norm.
void populateRaiseNormPatterns(RewritePatternSet &patterns);

/// Adds every pattern of qlr-raise-transformer to `patterns`.
void populateRaiseTransformerPatterns(RewritePatternSet &patterns);

#define GEN_PASS_REGISTRATION
#include "qlr/Dialect/QLR/Transforms/Passes.h.inc"
} // namespace qlr
} // namespace mlir

#endif // QLR_DIALECT_QLR_TRANSFORMS_PASSES_H
