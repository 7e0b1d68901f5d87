//===- QLROps.td - QLR operation definitions ---------------*- tablegen -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#ifndef QLR_DIALECT_QLR_IR_QLROPS_TD
#define QLR_DIALECT_QLR_IR_QLROPS_TD

include "qlr/Dialect/QLR/IR/QLRTypes.td"
include "mlir/Interfaces/InferTypeOpInterface.td"
include "mlir/Interfaces/SideEffectInterfaces.td"

//===----------------------------------------------------------------------===//
// Storage
//===----------------------------------------------------------------------===//

def QLR_PackOp : QLR_Op<"pack", [Pure]> {
  let summary = "Ties packed codes, scales and zero points into a quantized tensor";
  let description = [{
    Builds a `!qlr.qtensor` from its storage. The operand types must be
    exactly the ones the result type implies: codes
    `tensor<d0 x ... x ceil(dn * bits / 8) x i8>`, scales with one element
    per group of the format's scale type, and zero points (`i8`, same shape
    as the scales) exactly when the format is asymmetric.

    ```mlir
    %w = qlr.pack %codes, %scales, %zp
        : tensor<64x48xi8>, tensor<64x2xf16>, tensor<64x2xi8>
          -> !qlr.qtensor<64x128xf32, #qlr.format<int3, group = 64, asymmetric, scale = f16>>
    ```
  }];
  let arguments = (ins
    RankedTensorOf<[I8]>:$codes,
    RankedTensorOf<[F32, F16, BF16]>:$scales,
    Optional<RankedTensorOf<[I8]>>:$zero_points
  );
  let results = (outs QLR_QTensor:$result);
  let assemblyFormat = [{
    $codes `,` $scales (`,` $zero_points^)? attr-dict `:` type($codes) `,`
    type($scales) (`,` type($zero_points)^)? `->` qualified(type($result))
  }];
  let hasVerifier = 1;
  let hasFolder = 1;
}

def QLR_UnpackOp : QLR_Op<"unpack", [Pure,
    DeclareOpInterfaceMethods<InferTypeOpInterface>]> {
  let summary = "Returns the storage tensors of a quantized tensor";
  let description = [{
    The inverse of `qlr.pack`: the packed codes, the scales and, for
    asymmetric formats, the zero points. Result types follow from the
    operand type.

    ```mlir
    %codes, %scales = qlr.unpack %w : !qlr.qtensor<64x64xf32, #qlr.format<int4, group = 32>>
    ```
  }];
  let arguments = (ins QLR_QTensor:$input);
  let results = (outs
    RankedTensorOf<[I8]>:$codes,
    RankedTensorOf<[F32, F16, BF16]>:$scales,
    Optional<RankedTensorOf<[I8]>>:$zero_points
  );
  let assemblyFormat = "$input attr-dict `:` qualified(type($input))";
  let hasFolder = 1;
}

//===----------------------------------------------------------------------===//
// Conversions between float and quantized tensors
//===----------------------------------------------------------------------===//

def QLR_QuantizeOp : QLR_Op<"quantize", [Pure, AttrSizedOperandSegments]> {
  let summary = "Quantizes a float tensor (round to nearest)";
  let description = [{
    Rounds every element to the nearest representable value of the result's
    format. Without `scales`, the scales (and zero points) are computed from
    the data of each group by the format's rule (absmax for symmetric grids
    and codebooks, min/max for asymmetric grids; see docs/Design.md). With
    `scales` (and `zero_points` for asymmetric formats), those are used.

    ```mlir
    %q = qlr.quantize %x : tensor<4x64xf32>
        -> !qlr.qtensor<4x64xf32, #qlr.format<int8, channel = 0>>
    %r = qlr.quantize %x scales(%s : tensor<4xf32>) : tensor<4x64xf32>
        -> !qlr.qtensor<4x64xf32, #qlr.format<int8, channel = 0>>
    ```

    `qlr.dequantize(qlr.quantize(x))` is not `x`: it is `x` rounded to the
    grid, and is never folded away.
  }];
  let arguments = (ins
    QLR_FloatTensor:$input,
    Optional<RankedTensorOf<[F32, F16, BF16]>>:$scales,
    Optional<RankedTensorOf<[I8]>>:$zero_points
  );
  let results = (outs QLR_QTensor:$result);
  let assemblyFormat = [{
    $input (`scales` `(` $scales^ `:` type($scales) `)`)?
    (`zero_points` `(` $zero_points^ `:` type($zero_points) `)`)?
    attr-dict `:` type($input) `->` qualified(type($result))
  }];
  let hasVerifier = 1;
}

def QLR_DequantizeOp : QLR_Op<"dequantize", [Pure]> {
  let summary = "Decodes a quantized or low-rank weight into a float tensor";
  let description = [{
    For a `!qlr.qtensor`, applies the format's decoding rule to every code.
    For a `!qlr.lowrank`, materialises `A·B` (plus the dequantized base for
    the LoftQ form). The result type is the operand's expressed tensor type.

    ```mlir
    %f = qlr.dequantize %w : !qlr.qtensor<64x64xf32, #qlr.format<nf4, group = 64>>
        -> tensor<64x64xf32>
    ```
  }];
  let arguments = (ins QLR_CompressedWeight:$input);
  let results = (outs QLR_FloatTensor:$result);
  let assemblyFormat = [{
    $input attr-dict `:` qualified(type($input)) `->` type($result)
  }];
  let hasVerifier = 1;
}

def QLR_LowRankOp : QLR_Op<"lowrank", [Pure]> {
  let summary = "Builds a low-rank (or quantized + low-rank) weight";
  let description = [{
    Ties the factors `A (m x r)` and `B (r x n)` and, for the LoftQ form, a
    quantized base `Q (m x n)` into one weight `Q + A·B`. Each factor is a
    float tensor or a `!qlr.qtensor` as the result type states.

    ```mlir
    %w = qlr.lowrank %a, %b base %q : tensor<1536x16xf32>, tensor<16x576xf32>,
        !qlr.qtensor<1536x576xf32, #qlr.format<nf2, group = 64>>
        -> !qlr.lowrank<1536x576xf32, rank = 16, base = #qlr.format<nf2, group = 64>>
    ```
  }];
  let arguments = (ins
    AnyTypeOf<[QLR_FloatTensor, QLR_QTensor]>:$a,
    AnyTypeOf<[QLR_FloatTensor, QLR_QTensor]>:$b,
    Optional<QLR_QTensor>:$base
  );
  let results = (outs QLR_LowRank:$result);
  let assemblyFormat = [{
    $a `,` $b (`base` $base^)? attr-dict `:` qualified(type($a)) `,`
    qualified(type($b)) (`,` qualified(type($base))^)? `->` qualified(type($result))
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Layers
//===----------------------------------------------------------------------===//

def QLR_LinearOp : QLR_Op<"linear", [Pure]> {
  let summary = "Fully connected layer: y = x·Wᵀ (+ b)";
  let description = [{
    `x` has shape `[..., K]`, the weight `W` has shape `[N, K]` (PyTorch's
    `nn.Linear` layout) and may be a float tensor, a `!qlr.qtensor`, or a
    `!qlr.lowrank`; the optional bias has shape `[N]`; the result has shape
    `[..., N]`. A compressed weight is decoded as by `qlr.dequantize`, so
    lowerings may fuse the decoding into the matrix product.

    ```mlir
    %y = qlr.linear %x, %w, %b : tensor<?x576xf32>, tensor<1536x576xf32>,
        tensor<1536xf32> -> tensor<?x1536xf32>
    ```
  }];
  let arguments = (ins
    QLR_FloatTensor:$input,
    QLR_Weight:$weight,
    Optional<RankedTensorOf<[F32, F16, BF16]>>:$bias
  );
  let results = (outs QLR_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $weight (`,` $bias^)? attr-dict `:` type($input) `,`
    qualified(type($weight)) (`,` type($bias)^)? `->` type($result)
  }];
  let hasVerifier = 1;
  let hasCanonicalizer = 1;
}

def QLR_Conv2DOp : QLR_Op<"conv2d", [Pure]> {
  let summary = "2-D convolution (NCHW): y = conv(x, W) (+ b)";
  let description = [{
    `x` has shape `[N, C, H, W]`, the weight `W` has shape
    `[F, C / groups, KH, KW]` (PyTorch's `nn.Conv2d` layout) and may be a
    float tensor or a `!qlr.qtensor` (decoded as by `qlr.dequantize`, so
    lowerings may fuse the decoding into the convolution); the optional bias
    has shape `[F]`. The result is `[N, F, OH, OW]` with
    `OH = (H + top + bottom - dilation * (KH - 1) - 1) / stride + 1` (and
    likewise for `OW`). `padding` is `[top, left, bottom, right]` (zeros);
    `groups` splits the channels into that many independent convolutions
    (`groups = C = F` is a depthwise convolution). The attributes default to
    strides 1, no padding, dilations 1 and one group.

    ```mlir
    %y = qlr.conv2d %x, %w, %b {strides = array<i64: 2, 2>,
        padding = array<i64: 1, 1, 1, 1>, groups = 8 : i64}
        : tensor<?x8x8x8xf32>,
          !qlr.qtensor<8x1x3x3xf32, #qlr.format<int4, channel = 0>>,
          tensor<8xf32> -> tensor<?x8x4x4xf32>
    ```
  }];
  let arguments = (ins
    QLR_FloatTensor:$input,
    AnyTypeOf<[QLR_FloatTensor, QLR_QTensor],
              "float tensor or quantized tensor">:$weight,
    Optional<RankedTensorOf<[F32, F16, BF16]>>:$bias,
    DefaultValuedAttr<DenseI64ArrayAttr, "{1, 1}">:$strides,
    DefaultValuedAttr<DenseI64ArrayAttr, "{0, 0, 0, 0}">:$padding,
    DefaultValuedAttr<DenseI64ArrayAttr, "{1, 1}">:$dilations,
    DefaultValuedAttr<I64Attr, "1">:$groups
  );
  let results = (outs QLR_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $weight (`,` $bias^)? attr-dict `:` type($input) `,`
    qualified(type($weight)) (`,` type($bias)^)? `->` type($result)
  }];
  let hasVerifier = 1;
}

class QLR_NormOp<string mnemonic, list<Trait> traits = []>
    : QLR_Op<mnemonic, !listconcat(traits,
          [Pure, AllTypesMatch<["input", "result"]>])> {
  let results = (outs QLR_FloatTensor:$result);
  let hasVerifier = 1;
}

def QLR_RMSNormOp : QLR_NormOp<"rms_norm"> {
  let summary = "RMS normalisation over the last dimension";
  let description = [{
    `y = x / sqrt(mean(x², last axis) + epsilon) * weight`, where `weight`
    has the size of the last dimension (LLaMA's RMSNorm).

    ```mlir
    %y = qlr.rms_norm %x, %w eps = 1.000000e-05 : tensor<?x576xf32>, tensor<576xf32>
    ```
  }];
  let arguments = (ins
    QLR_FloatTensor:$input,
    1DTensorOf<[F32, F16, BF16]>:$weight,
    F64Attr:$epsilon
  );
  let assemblyFormat = [{
    $input `,` $weight `eps` `=` $epsilon attr-dict `:` type($input) `,`
    type($weight)
  }];
}

def QLR_LayerNormOp : QLR_NormOp<"layer_norm"> {
  let summary = "Layer normalisation over the last dimension";
  let description = [{
    `y = (x - mean) / sqrt(var + epsilon) * weight + bias`, with the mean and
    (biased) variance taken over the last dimension; `weight` and `bias` have
    the size of the last dimension.

    ```mlir
    %y = qlr.layer_norm %x, %g, %b eps = 9.999999e-13
        : tensor<?x384xf32>, tensor<384xf32>, tensor<384xf32>
    ```
  }];
  let arguments = (ins
    QLR_FloatTensor:$input,
    1DTensorOf<[F32, F16, BF16]>:$weight,
    1DTensorOf<[F32, F16, BF16]>:$bias,
    F64Attr:$epsilon
  );
  let assemblyFormat = [{
    $input `,` $weight `,` $bias `eps` `=` $epsilon attr-dict `:`
    type($input) `,` type($weight) `,` type($bias)
  }];
}

def QLR_BatchNormOp : QLR_NormOp<"batch_norm"> {
  let summary = "Batch normalisation in inference form";
  let description = [{
    `y = (x - mean) / sqrt(variance + epsilon) * scale + bias`, with the
    statistics fixed (inference form) and indexed along the channel `axis`
    (1 for NCHW and `[batch, channels]` layouts). All four parameter tensors
    have the size of that axis. This form exists to be folded into the
    preceding linear layer or convolution.

    ```mlir
    %y = qlr.batch_norm %x, %scale, %bias, %mean, %var axis = 1 eps = 1.000000e-05
        : tensor<8x16x4x4xf32>, tensor<16xf32>, tensor<16xf32>, tensor<16xf32>,
          tensor<16xf32>
    ```
  }];
  let arguments = (ins
    QLR_FloatTensor:$input,
    1DTensorOf<[F32, F16, BF16]>:$scale,
    1DTensorOf<[F32, F16, BF16]>:$bias,
    1DTensorOf<[F32, F16, BF16]>:$mean,
    1DTensorOf<[F32, F16, BF16]>:$variance,
    I64Attr:$axis,
    F64Attr:$epsilon
  );
  let assemblyFormat = [{
    $input `,` $scale `,` $bias `,` $mean `,` $variance `axis` `=` $axis
    `eps` `=` $epsilon attr-dict `:` type($input) `,` type($scale) `,`
    type($bias) `,` type($mean) `,` type($variance)
  }];
}

#endif // QLR_DIALECT_QLR_IR_QLROPS_TD
