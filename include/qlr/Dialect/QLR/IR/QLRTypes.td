//===- QLRTypes.td - QLR type definitions ------------------*- tablegen -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#ifndef QLR_DIALECT_QLR_IR_QLRTYPES_TD
#define QLR_DIALECT_QLR_IR_QLRTYPES_TD

include "qlr/Dialect/QLR/IR/QLRAttrs.td"

def QLR_QTensorType : QLR_Type<"QTensor", "qtensor"> {
  let summary = "A quantized tensor: logical shape, expressed type and format";
  let description = [{
    A tensor whose values are stored as codes plus scales (and zero points)
    as described by its `#qlr.format`. The element type is the *expressed*
    type: what `qlr.dequantize` produces. The storage is three ordinary
    tensors tied together by `qlr.pack`:

    * codes: `tensor<d0 x ... x ceil(dn * bits / 8) x i8>`, each row (the
      innermost dimension) packed as a little-endian bit stream (see
      docs/Design.md);
    * scales: one per group, of the format's scale type;
    * zero points (asymmetric formats only): `i8` holding `0 .. 2^bits - 1`,
      same shape as the scales.

    Example: `!qlr.qtensor<576x576xf32, #qlr.format<int4, group = 64, scale = f16>>`
    has codes `tensor<576x288xi8>` and scales `tensor<576x9xf16>`.
  }];
  let parameters = (ins
    ArrayRefParameter<"int64_t">:$shape,
    "::mlir::Type":$elementType,
    "::mlir::qlr::FormatAttr":$format
  );
  let hasCustomAssemblyFormat = 1;
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    int64_t getRank() const { return getShape().size(); }
    bool hasStaticShape() const {
      return ::mlir::ShapedType::isStaticShape(getShape());
    }
    /// The tensor of packed codes that `qlr.pack` takes.
    ::mlir::RankedTensorType getCodesType() const;
    /// The tensor of scales that `qlr.pack` takes.
    ::mlir::RankedTensorType getScalesType() const;
    /// The tensor of zero points, or null for symmetric formats.
    ::mlir::RankedTensorType getZeroPointsType() const;
    /// The float tensor `qlr.dequantize` produces.
    ::mlir::RankedTensorType getExpressedTensorType() const;
  }];
}

def QLR_LowRankType : QLR_Type<"LowRank", "lowrank"> {
  let summary = "A weight written as low-rank factors, optionally on a quantized base";
  let description = [{
    A matrix `W` of shape `m x n` represented as `A·B` with `A: m x r` and
    `B: r x n`, or, with a `base` format, as `Q + A·B` where `Q` is a
    quantized `m x n` tensor (the LoftQ form). The factors are float tensors
    of the element type unless `a`/`b` give them a quantization format.

    Examples:

    ```mlir
    !qlr.lowrank<1536x576xf32, rank = 96>
    !qlr.lowrank<1536x576xf32, rank = 16, base = #qlr.format<nf2, group = 64>>
    !qlr.lowrank<64x64xf32, rank = 8, a = #qlr.format<int8, channel = 0>>
    ```
  }];
  let parameters = (ins
    ArrayRefParameter<"int64_t">:$shape,
    "::mlir::Type":$elementType,
    "int64_t":$rank,
    OptionalParameter<"::mlir::qlr::FormatAttr">:$base,
    OptionalParameter<"::mlir::qlr::FormatAttr">:$aFormat,
    OptionalParameter<"::mlir::qlr::FormatAttr">:$bFormat
  );
  let hasCustomAssemblyFormat = 1;
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    /// Type of the `A` factor (m x r): a float tensor or a qtensor.
    ::mlir::Type getAType() const;
    /// Type of the `B` factor (r x n): a float tensor or a qtensor.
    ::mlir::Type getBType() const;
    /// Type of the quantized base, or null when there is none.
    ::mlir::Type getBaseType() const;
    /// The float tensor `qlr.dequantize` produces.
    ::mlir::RankedTensorType getExpressedTensorType() const;
  }];
}

def QLR_QTensor : Type<CPred<"::llvm::isa<::mlir::qlr::QTensorType>($_self)">,
                       "quantized tensor", "::mlir::qlr::QTensorType">;
def QLR_LowRank : Type<CPred<"::llvm::isa<::mlir::qlr::LowRankType>($_self)">,
                       "low-rank weight", "::mlir::qlr::LowRankType">;
def QLR_FloatElement : AnyTypeOf<[F32, F16, BF16]>;
def QLR_FloatTensor : RankedTensorOf<[F32, F16, BF16]>;
def QLR_CompressedWeight : AnyTypeOf<[QLR_QTensor, QLR_LowRank],
                                     "quantized or low-rank weight">;
def QLR_Weight : AnyTypeOf<[QLR_FloatTensor, QLR_QTensor, QLR_LowRank],
    "float, quantized or low-rank weight">;

#endif // QLR_DIALECT_QLR_IR_QLRTYPES_TD
