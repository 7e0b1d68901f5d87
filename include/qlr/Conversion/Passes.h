//===- Passes.h - QLR conversion passes ---------------------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#ifndef QLR_CONVERSION_PASSES_H
#define QLR_CONVERSION_PASSES_H

#include "mlir/IR/PatternMatch.h"
#include "mlir/Pass/Pass.h"

namespace mlir {
class ModuleOp;
namespace affine {
class AffineDialect;
} // namespace affine
namespace gpu {
class GPUDialect;
} // namespace gpu
namespace arith {
class ArithDialect;
} // namespace arith
namespace quant {
class QuantDialect;
} // namespace quant
namespace linalg {
class LinalgDialect;
} // namespace linalg
namespace math {
class MathDialect;
} // namespace math
namespace tensor {
class TensorDialect;
} // namespace tensor
namespace func {
class FuncDialect;
} // namespace func
namespace memref {
class MemRefDialect;
} // namespace memref
namespace omp {
class OpenMPDialect;
} // namespace omp
namespace scf {
class SCFDialect;
} // namespace scf
namespace vector {
class VectorDialect;
} // namespace vector

namespace qlr {
class QLRDialect;

#define GEN_PASS_DECL
#include "qlr/Conversion/Passes.h.inc"

/// The unit attribute qlr-lower-to-linalg puts on the linalg.generic of a
/// linear layer; qlr-fuse-elementwise and qlr-lower-contractions look for it.
constexpr llvm::StringLiteral kContractionAttrName = "qlr.contraction";

/// The attribute qlr-lower-to-linalg puts on the linalg.generic that decodes
/// a quantized weight; its value is the weight's `#qlr.format`.
/// qlr-lower-contractions fuses such a decoder into the kernel of the
/// contraction that reads its result (docs/Design.md, "Fused
/// dequantization").
constexpr llvm::StringLiteral kDequantizeAttrName = "qlr.dequantize";

/// Adds the patterns of qlr-lower-to-linalg to `patterns`.
void populateQLRToLinalgPatterns(RewritePatternSet &patterns);

/// Adds only the patterns that lower qlr.rms_norm and qlr.layer_norm to
/// linalg (qlr-differentiate differentiates the linalg form).
void populateQLRNormToLinalgPatterns(RewritePatternSet &patterns);

#define GEN_PASS_REGISTRATION
#include "qlr/Conversion/Passes.h.inc"
} // namespace qlr
} // namespace mlir

#endif // QLR_CONVERSION_PASSES_H
