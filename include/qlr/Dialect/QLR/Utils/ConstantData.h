//===- ConstantData.h - Read and write constant tensors -----*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// Passes read weights out of constants (`arith.constant dense<...>` or
// `dense_resource<...>` blobs) and write new ones. These helpers hide the
// difference between the two storage forms.
//
//===----------------------------------------------------------------------===//

#ifndef QLR_DIALECT_QLR_UTILS_CONSTANTDATA_H
#define QLR_DIALECT_QLR_UTILS_CONSTANTDATA_H

#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/Value.h"
#include "llvm/ADT/ArrayRef.h"

#include <cstdint>
#include <vector>

namespace mlir {
class OpBuilder;
namespace qlr {

/// The constant elements `value` is defined by (any constant-like op), or
/// null when it is not a constant.
ElementsAttr getConstantElements(Value value);

/// Reads a constant float tensor (f32, f16 or bf16; dense, splat or
/// dense_resource) as floats. Fails with a diagnostic at `loc` when the
/// elements cannot be read (for example an elided resource blob).
FailureOr<std::vector<float>> readFloats(ElementsAttr elements, Location loc);

/// Reads a constant i8 tensor (dense, splat or dense_resource) as bytes.
FailureOr<std::vector<uint8_t>> readBytes(ElementsAttr elements, Location loc);

/// Reads a constant integer tensor of any width as int64 values, sign- or
/// zero-extended according to `isSigned`.
FailureOr<std::vector<int64_t>> readIntegers(ElementsAttr elements,
                                             bool isSigned, Location loc);

/// Builds an `arith.constant` of `type` (f32/f16/bf16 elements) from floats
/// (rounded to the element type).
Value createFloatConstant(OpBuilder &builder, Location loc,
                          RankedTensorType type, ArrayRef<float> values);

/// Builds an `arith.constant` of `type` (integer elements of any width) from
/// integer values.
Value createIntegerConstant(OpBuilder &builder, Location loc,
                            RankedTensorType type, ArrayRef<int64_t> values);

} // namespace qlr
} // namespace mlir

#endif // QLR_DIALECT_QLR_UTILS_CONSTANTDATA_H
