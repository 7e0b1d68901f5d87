// RUN: quant-opt %s --split-input-file --canonicalize | FileCheck %s

!q = !qlr.qtensor<4x64xf32, #qlr.format<int4, group = 32>>

// CHECK-LABEL: func.func @unpack_of_pack
// CHECK-NEXT: return %arg0, %arg1
func.func @unpack_of_pack(%c: tensor<4x32xi8>, %s: tensor<4x2xf32>) -> (tensor<4x32xi8>, tensor<4x2xf32>) {
  %w = qlr.pack %c, %s : tensor<4x32xi8>, tensor<4x2xf32> -> !q
  %c2, %s2 = qlr.unpack %w : !q
  return %c2, %s2 : tensor<4x32xi8>, tensor<4x2xf32>
}

// -----

!q = !qlr.qtensor<4x64xf32, #qlr.format<int4, group = 32>>

// CHECK-LABEL: func.func @pack_of_unpack
// CHECK-NEXT: return %arg0
func.func @pack_of_unpack(%w: !q) -> !q {
  %c, %s = qlr.unpack %w : !q
  %w2 = qlr.pack %c, %s : tensor<4x32xi8>, tensor<4x2xf32> -> !q
  return %w2 : !q
}

// -----

// Repacking with another format is a different tensor: no fold.
// CHECK-LABEL: func.func @pack_of_unpack_other_format
// CHECK: qlr.unpack
// CHECK: qlr.pack
func.func @pack_of_unpack_other_format(%w: !qlr.qtensor<4x64xf32, #qlr.format<int4, group = 32>>)
    -> !qlr.qtensor<4x64xf32, #qlr.format<int4, group = 32, axis = 1>> {
  %c, %s = qlr.unpack %w : !qlr.qtensor<4x64xf32, #qlr.format<int4, group = 32>>
  %w2 = qlr.pack %c, %s : tensor<4x32xi8>, tensor<4x2xf32>
      -> !qlr.qtensor<4x64xf32, #qlr.format<int4, group = 32, axis = 1>>
  return %w2 : !qlr.qtensor<4x64xf32, #qlr.format<int4, group = 32, axis = 1>>
}

// -----

// The compressed weight goes straight into qlr.linear.
// CHECK-LABEL: func.func @linear_of_dequantize
// CHECK-NEXT: %[[Y:.+]] = qlr.linear %arg0, %arg1 : tensor<2x64xf32>, !qlr.qtensor<4x64xf32, #int4_g32> -> tensor<2x4xf32>
// CHECK-NEXT: return %[[Y]]
func.func @linear_of_dequantize(%x: tensor<2x64xf32>,
    %w: !qlr.qtensor<4x64xf32, #qlr.format<int4, group = 32>>) -> tensor<2x4xf32> {
  %d = qlr.dequantize %w : !qlr.qtensor<4x64xf32, #qlr.format<int4, group = 32>> -> tensor<4x64xf32>
  %y = qlr.linear %x, %d : tensor<2x64xf32>, tensor<4x64xf32> -> tensor<2x4xf32>
  return %y : tensor<2x4xf32>
}

// -----

// dequantize(quantize(x)) rounds x to the grid: it must survive.
// CHECK-LABEL: func.func @dequantize_of_quantize_is_not_identity
// CHECK: %[[Q:.+]] = qlr.quantize %arg0
// CHECK: %[[D:.+]] = qlr.dequantize %[[Q]]
// CHECK: return %[[D]]
func.func @dequantize_of_quantize_is_not_identity(%x: tensor<4x64xf32>) -> tensor<4x64xf32> {
  %q = qlr.quantize %x : tensor<4x64xf32> -> !qlr.qtensor<4x64xf32, #qlr.format<int4, group = 32>>
  %d = qlr.dequantize %q : !qlr.qtensor<4x64xf32, #qlr.format<int4, group = 32>> -> tensor<4x64xf32>
  return %d : tensor<4x64xf32>
}

// -----

// Unused qlr ops are pure and disappear.
// CHECK-LABEL: func.func @dead_ops
// CHECK-NEXT: return
func.func @dead_ops(%x: tensor<4x64xf32>, %w: tensor<64xf32>) {
  %q = qlr.quantize %x : tensor<4x64xf32> -> !qlr.qtensor<4x64xf32, #qlr.format<int4, group = 32>>
  %n = qlr.rms_norm %x, %w eps = 1.0e-5 : tensor<4x64xf32>, tensor<64xf32>
  return
}
