//===- QLRBase.td - QLR dialect definition -----------------*- tablegen -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#ifndef QLR_DIALECT_QLR_IR_QLRBASE_TD
#define QLR_DIALECT_QLR_IR_QLRBASE_TD

include "mlir/IR/OpBase.td"
include "mlir/IR/AttrTypeBase.td"
include "mlir/IR/EnumAttr.td"

def QLR_Dialect : Dialect {
  let name = "qlr";
  let cppNamespace = "::mlir::qlr";
  let summary = "Quantized and low-rank tensors for compressing transformers";
  let description = [{
    The `qlr` dialect models the weights of compressed transformer models and
    the few layer-level operations that compression passes rewrite.

    * `#qlr.format<...>` states, once, everything a consumer needs to decode a
      quantized tensor: a uniform integer grid of 2-8 bits or a codebook
      (NormalFloat `nf2`..`nf8`, or an arbitrary lookup table), the
      granularity of the scales (per tensor, per channel, or per group of
      consecutive elements along one axis), symmetric or asymmetric (explicit
      zero points), and the element type of the scales.
    * `!qlr.qtensor<shape x type, format>` is a quantized tensor. It has no
      storage of its own: `qlr.pack` ties ordinary tensors (packed codes,
      scales, zero points) into one, so large constants stay
      `dense_resource` blobs.
    * `!qlr.lowrank<...>` is a weight written as two thin factors `A·B`,
      optionally on top of a quantized base `Q + A·B` (LoftQ).
    * `qlr.linear` computes `y = x·Wᵀ (+ b)` for any of these weights;
      `qlr.rms_norm`, `qlr.layer_norm` and `qlr.batch_norm` are the
      normalisation layers that norm tweaking tunes and folding removes.
    * The discardable attribute `qlr.name = "layers.0.attention.wq"` names a
      layer after its tensor in the checkpoint. `qlr-import` sets it on every
      linear layer and norm (`qlr-raise-transformer` from the weight's
      resource name). Passes that rewrite a weight keep the layer and its
      name, select layers by it (`include=`/`exclude=`) and name the
      constants they write after it (`NAME.codes`, `NAME.tweaked`, ...),
      whatever the weight's constant is called by then.

    Example:

    ```mlir
    %w = qlr.pack %codes, %scales
        : tensor<64x32xi8>, tensor<64x1xf16>
          -> !qlr.qtensor<64x64xf32, #qlr.format<int4, group = 64, scale = f16>>
    %y = qlr.linear %x, %w : tensor<8x64xf32>,
        !qlr.qtensor<64x64xf32, #qlr.format<int4, group = 64, scale = f16>>
        -> tensor<8x64xf32>
    ```
  }];
  let useDefaultAttributePrinterParser = 1;
  let useDefaultTypePrinterParser = 1;
  let hasCanonicalizer = 0;
  let hasOperationAttrVerify = 1;
  let extraClassDeclaration = [{
    void registerAttributes();
    void registerTypes();
  }];
}

class QLR_Attr<string name, string attrMnemonic, list<Trait> traits = []>
    : AttrDef<QLR_Dialect, name, traits> {
  let mnemonic = attrMnemonic;
}

class QLR_Type<string name, string typeMnemonic, list<Trait> traits = []>
    : TypeDef<QLR_Dialect, name, traits> {
  let mnemonic = typeMnemonic;
}

class QLR_Op<string mnemonic, list<Trait> traits = []>
    : Op<QLR_Dialect, mnemonic, traits>;

//===----------------------------------------------------------------------===//
// Enums
//===----------------------------------------------------------------------===//

def QLR_SchemeUniform : I32EnumAttrCase<"Uniform", 0, "int">;
def QLR_SchemeNormalFloat : I32EnumAttrCase<"NormalFloat", 1, "nf">;
def QLR_SchemeLookupTable : I32EnumAttrCase<"LookupTable", 2, "lut">;
def QLR_Scheme : I32EnumAttr<"Scheme",
    "how codes map to values: a uniform integer grid or a codebook",
    [QLR_SchemeUniform, QLR_SchemeNormalFloat, QLR_SchemeLookupTable]> {
  let cppNamespace = "::mlir::qlr";
  let genSpecializedAttr = 0;
}

def QLR_GranularityTensor : I32EnumAttrCase<"Tensor", 0, "tensor">;
def QLR_GranularityChannel : I32EnumAttrCase<"Channel", 1, "channel">;
def QLR_GranularityGroup : I32EnumAttrCase<"Group", 2, "group">;
def QLR_Granularity : I32EnumAttr<"Granularity",
    "which elements share one scale (and zero point)",
    [QLR_GranularityTensor, QLR_GranularityChannel, QLR_GranularityGroup]> {
  let cppNamespace = "::mlir::qlr";
  let genSpecializedAttr = 0;
}

#endif // QLR_DIALECT_QLR_IR_QLRBASE_TD
