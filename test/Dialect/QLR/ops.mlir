// Round trip of every qlr op and type: custom form, generic form, bytecode.
// RUN: quant-opt %s | quant-opt | FileCheck %s
// RUN: quant-opt %s --mlir-print-op-generic | quant-opt | FileCheck %s
// RUN: quant-opt %s -emit-bytecode | quant-opt | FileCheck %s

!w4 = !qlr.qtensor<64x128xf32, #qlr.format<int4, group = 64, scale = f16>>
!w3a = !qlr.qtensor<64x128xf32, #qlr.format<int3, group = 48, asymmetric>>

// CHECK-LABEL: func.func @pack_unpack_symmetric
// CHECK: %[[W:.+]] = qlr.pack %arg0, %arg1 : tensor<64x64xi8>, tensor<64x2xf16> -> !qlr.qtensor<64x128xf32, #int4_g64_f16>
// CHECK: %[[C:.+]], %[[S:.+]] = qlr.unpack %[[W]] : !qlr.qtensor<64x128xf32, #int4_g64_f16>
// CHECK: return %[[C]], %[[S]] : tensor<64x64xi8>, tensor<64x2xf16>
func.func @pack_unpack_symmetric(%codes: tensor<64x64xi8>, %scales: tensor<64x2xf16>)
    -> (tensor<64x64xi8>, tensor<64x2xf16>) {
  %w = qlr.pack %codes, %scales : tensor<64x64xi8>, tensor<64x2xf16> -> !w4
  %c, %s = qlr.unpack %w : !w4
  return %c, %s : tensor<64x64xi8>, tensor<64x2xf16>
}

// A 3-bit row of 128 codes is 48 bytes; groups of 48 leave a partial third.
// CHECK-LABEL: func.func @pack_unpack_asymmetric_partial_group
// CHECK: qlr.pack %arg0, %arg1, %arg2 : tensor<64x48xi8>, tensor<64x3xf32>, tensor<64x3xi8> -> !qlr.qtensor<64x128xf32, #int3_g48_asym>
// CHECK: qlr.unpack %{{.+}} : !qlr.qtensor<64x128xf32, #int3_g48_asym>
func.func @pack_unpack_asymmetric_partial_group(%codes: tensor<64x48xi8>,
    %scales: tensor<64x3xf32>, %zp: tensor<64x3xi8>) -> tensor<64x3xi8> {
  %w = qlr.pack %codes, %scales, %zp
      : tensor<64x48xi8>, tensor<64x3xf32>, tensor<64x3xi8> -> !w3a
  %c, %s, %z = qlr.unpack %w : !w3a
  return %z : tensor<64x3xi8>
}

// CHECK-LABEL: func.func @per_tensor_and_per_channel
// CHECK: qlr.pack %arg0, %arg1 : tensor<4x8xi8>, tensor<f32> -> !qlr.qtensor<4x8xf32, #int8>
// CHECK: qlr.pack %arg0, %arg2 : tensor<4x8xi8>, tensor<4xbf16> -> !qlr.qtensor<4x8xbf16, #int8_c0_bf16>
func.func @per_tensor_and_per_channel(%codes: tensor<4x8xi8>, %s: tensor<f32>,
    %sc: tensor<4xbf16>) {
  %a = qlr.pack %codes, %s : tensor<4x8xi8>, tensor<f32> -> !qlr.qtensor<4x8xf32, #qlr.format<int8>>
  %b = qlr.pack %codes, %sc : tensor<4x8xi8>, tensor<4xbf16>
      -> !qlr.qtensor<4x8xbf16, #qlr.format<int8, channel = 0, scale = bf16>>
  return
}

// Rank-3 tensor grouped along the middle axis, and a dynamic leading dim.
// CHECK-LABEL: func.func @group_along_axis_and_dynamic
// CHECK: qlr.pack %arg0, %arg1 : tensor<2x10x3xi8>, tensor<2x3x6xf32> -> !qlr.qtensor<2x10x6xf32, #int4_g4_a1>
// CHECK: qlr.quantize %arg2 : tensor<?x64xf32> -> !qlr.qtensor<?x64xf32, #int8_g32>
func.func @group_along_axis_and_dynamic(%codes: tensor<2x10x3xi8>,
    %s: tensor<2x3x6xf32>, %x: tensor<?x64xf32>) {
  %a = qlr.pack %codes, %s : tensor<2x10x3xi8>, tensor<2x3x6xf32>
      -> !qlr.qtensor<2x10x6xf32, #qlr.format<int4, group = 4, axis = 1>>
  %b = qlr.quantize %x : tensor<?x64xf32> -> !qlr.qtensor<?x64xf32, #qlr.format<int8, group = 32>>
  return
}

// CHECK-LABEL: func.func @quantize_dequantize
// CHECK: %[[Q:.+]] = qlr.quantize %arg0 : tensor<4x64xf32> -> !qlr.qtensor<4x64xf32, #int8_c0>
// CHECK: %[[R:.+]] = qlr.quantize %arg0 scales(%arg1 : tensor<4xf32>) : tensor<4x64xf32> -> !qlr.qtensor<4x64xf32, #int8_c0>
// CHECK: %[[A:.+]] = qlr.quantize %arg0 scales(%arg1 : tensor<4xf32>) zero_points(%arg2 : tensor<4xi8>) : tensor<4x64xf32> -> !qlr.qtensor<4x64xf32, #int5_c0_asym>
// CHECK: qlr.dequantize %[[Q]] : !qlr.qtensor<4x64xf32, #int8_c0> -> tensor<4x64xf32>
// CHECK: qlr.dequantize %[[A]] : !qlr.qtensor<4x64xf32, #int5_c0_asym> -> tensor<4x64xf32>
func.func @quantize_dequantize(%x: tensor<4x64xf32>, %s: tensor<4xf32>,
    %z: tensor<4xi8>) -> (tensor<4x64xf32>, tensor<4x64xf32>) {
  %q = qlr.quantize %x : tensor<4x64xf32> -> !qlr.qtensor<4x64xf32, #qlr.format<int8, channel = 0>>
  %r = qlr.quantize %x scales(%s : tensor<4xf32>) : tensor<4x64xf32>
      -> !qlr.qtensor<4x64xf32, #qlr.format<int8, channel = 0>>
  %a = qlr.quantize %x scales(%s : tensor<4xf32>) zero_points(%z : tensor<4xi8>)
      : tensor<4x64xf32> -> !qlr.qtensor<4x64xf32, #qlr.format<int5, channel = 0, asymmetric>>
  %d = qlr.dequantize %q : !qlr.qtensor<4x64xf32, #qlr.format<int8, channel = 0>> -> tensor<4x64xf32>
  %e = qlr.dequantize %a : !qlr.qtensor<4x64xf32, #qlr.format<int5, channel = 0, asymmetric>> -> tensor<4x64xf32>
  return %d, %e : tensor<4x64xf32>, tensor<4x64xf32>
}

// CHECK-LABEL: func.func @codebooks
// CHECK: !qlr.qtensor<8x64xf32, #nf4_g64_f16>
// CHECK: !qlr.qtensor<8x64xf32, #nf2_g64>
// CHECK: !qlr.qtensor<8x64xf32, #lut2_g32>
func.func @codebooks(%x: tensor<8x64xf32>) {
  %a = qlr.quantize %x : tensor<8x64xf32> -> !qlr.qtensor<8x64xf32, #qlr.format<nf4, group = 64, scale = f16>>
  %b = qlr.quantize %x : tensor<8x64xf32> -> !qlr.qtensor<8x64xf32, #qlr.format<nf2, group = 64>>
  %c = qlr.quantize %x : tensor<8x64xf32>
      -> !qlr.qtensor<8x64xf32, #qlr.format<lut2 [-1.0, -0.25, 0.25, 1.0], group = 32>>
  return
}

// CHECK-LABEL: func.func @lowrank_forms
// CHECK: %[[L:.+]] = qlr.lowrank %arg0, %arg1 : tensor<96x8xf32>, tensor<8x64xf32> -> !qlr.lowrank<96x64xf32, rank = 8>
// CHECK: %[[Q:.+]] = qlr.lowrank %arg0, %arg1 base %arg2 : tensor<96x8xf32>, tensor<8x64xf32>, !qlr.qtensor<96x64xf32, #nf2_g64> -> !qlr.lowrank<96x64xf32, rank = 8, base = #nf2_g64>
// CHECK: qlr.lowrank %arg3, %arg1 : !qlr.qtensor<96x8xf32, #int8_c0>, tensor<8x64xf32> -> !qlr.lowrank<96x64xf32, rank = 8, a = #int8_c0>
// CHECK: qlr.dequantize %[[Q]] : !qlr.lowrank<96x64xf32, rank = 8, base = #nf2_g64> -> tensor<96x64xf32>
// CHECK: qlr.linear %arg4, %[[L]] : tensor<3x64xf32>, !qlr.lowrank<96x64xf32, rank = 8> -> tensor<3x96xf32>
func.func @lowrank_forms(%a: tensor<96x8xf32>, %b: tensor<8x64xf32>,
    %q: !qlr.qtensor<96x64xf32, #qlr.format<nf2, group = 64>>,
    %qa: !qlr.qtensor<96x8xf32, #qlr.format<int8, channel = 0>>,
    %x: tensor<3x64xf32>) -> (tensor<96x64xf32>, tensor<3x96xf32>) {
  %l = qlr.lowrank %a, %b : tensor<96x8xf32>, tensor<8x64xf32> -> !qlr.lowrank<96x64xf32, rank = 8>
  %lq = qlr.lowrank %a, %b base %q : tensor<96x8xf32>, tensor<8x64xf32>,
      !qlr.qtensor<96x64xf32, #qlr.format<nf2, group = 64>>
      -> !qlr.lowrank<96x64xf32, rank = 8, base = #qlr.format<nf2, group = 64>>
  %la = qlr.lowrank %qa, %b : !qlr.qtensor<96x8xf32, #qlr.format<int8, channel = 0>>, tensor<8x64xf32>
      -> !qlr.lowrank<96x64xf32, rank = 8, a = #qlr.format<int8, channel = 0>>
  %d = qlr.dequantize %lq : !qlr.lowrank<96x64xf32, rank = 8, base = #qlr.format<nf2, group = 64>> -> tensor<96x64xf32>
  %y = qlr.linear %x, %l : tensor<3x64xf32>, !qlr.lowrank<96x64xf32, rank = 8> -> tensor<3x96xf32>
  return %d, %y : tensor<96x64xf32>, tensor<3x96xf32>
}

// CHECK-LABEL: func.func @linear_forms
// CHECK: qlr.linear %arg0, %arg1, %arg2 : tensor<?x7x128xf32>, tensor<64x128xf32>, tensor<64xf32> -> tensor<?x7x64xf32>
// CHECK: qlr.linear %arg3, %arg4 : tensor<128xf32>, !qlr.qtensor<64x128xf32, #int4_g64_f16> -> tensor<64xf32>
func.func @linear_forms(%x: tensor<?x7x128xf32>, %w: tensor<64x128xf32>, %b: tensor<64xf32>,
    %v: tensor<128xf32>, %q: !w4) -> (tensor<?x7x64xf32>, tensor<64xf32>) {
  %y = qlr.linear %x, %w, %b : tensor<?x7x128xf32>, tensor<64x128xf32>, tensor<64xf32> -> tensor<?x7x64xf32>
  %z = qlr.linear %v, %q : tensor<128xf32>, !w4 -> tensor<64xf32>
  return %y, %z : tensor<?x7x64xf32>, tensor<64xf32>
}

// CHECK-LABEL: func.func @norms
// CHECK: qlr.rms_norm %arg0, %arg1 eps = 1.000000e-05 : tensor<2x5x64xf32>, tensor<64xf32>
// CHECK: qlr.layer_norm %arg0, %arg1, %arg1 eps = 9.9999999999999998E-13 : tensor<2x5x64xf32>, tensor<64xf32>, tensor<64xf32>
// CHECK: qlr.batch_norm %arg2, %arg3, %arg3, %arg3, %arg3 axis = 1 eps = 1.000000e-03 : tensor<8x16x4x4xf16>, tensor<16xf16>, tensor<16xf16>, tensor<16xf16>, tensor<16xf16>
func.func @norms(%x: tensor<2x5x64xf32>, %w: tensor<64xf32>, %img: tensor<8x16x4x4xf16>,
    %p: tensor<16xf16>) {
  %a = qlr.rms_norm %x, %w eps = 1.0e-5 : tensor<2x5x64xf32>, tensor<64xf32>
  %b = qlr.layer_norm %x, %w, %w eps = 1.0e-12 : tensor<2x5x64xf32>, tensor<64xf32>, tensor<64xf32>
  %c = qlr.batch_norm %img, %p, %p, %p, %p axis = 1 eps = 1.0e-3
      : tensor<8x16x4x4xf16>, tensor<16xf16>, tensor<16xf16>, tensor<16xf16>, tensor<16xf16>
  return
}

// Weights as resource blobs: the standard form for real models.
// CHECK-LABEL: func.func @resource_weights
// CHECK: arith.constant dense_resource<w_codes> : tensor<2x2xi8>
// CHECK: arith.constant dense_resource<w_scales> : tensor<2xf32>
func.func @resource_weights(%x: tensor<1x4xf32>) -> tensor<1x2xf32> {
  %codes = arith.constant dense_resource<w_codes> : tensor<2x2xi8>
  %scales = arith.constant dense_resource<w_scales> : tensor<2xf32>
  %w = qlr.pack %codes, %scales : tensor<2x2xi8>, tensor<2xf32>
      -> !qlr.qtensor<2x4xf32, #qlr.format<int4, channel = 0>>
  %y = qlr.linear %x, %w : tensor<1x4xf32>, !qlr.qtensor<2x4xf32, #qlr.format<int4, channel = 0>> -> tensor<1x2xf32>
  return %y : tensor<1x2xf32>
}

{-#
  dialect_resources: {
    builtin: {
      w_codes: "0x0100000098BA7654",
      w_scales: "0x040000000000803F0000003F"
    }
  }
#-}

// CHECK-LABEL: func.func @conv2d_float
// CHECK: qlr.conv2d %arg0, %arg1 : tensor<?x3x8x8xf32>, tensor<16x3x3x3xf32> -> tensor<?x16x6x6xf32>
func.func @conv2d_float(%x: tensor<?x3x8x8xf32>, %w: tensor<16x3x3x3xf32>) -> tensor<?x16x6x6xf32> {
  %y = qlr.conv2d %x, %w : tensor<?x3x8x8xf32>, tensor<16x3x3x3xf32> -> tensor<?x16x6x6xf32>
  return %y : tensor<?x16x6x6xf32>
}

// CHECK-LABEL: func.func @conv2d_depthwise_quantized
// CHECK: qlr.conv2d %arg0, %{{.*}}, %arg3 {groups = 8 : i64, padding = array<i64: 1, 1, 1, 1>, strides = array<i64: 2, 2>} : tensor<?x8x8x8xf32>, !qlr.qtensor<8x1x3x3xf32, #{{.*}}>, tensor<8xf32> -> tensor<?x8x4x4xf32>
func.func @conv2d_depthwise_quantized(%x: tensor<?x8x8x8xf32>, %codes: tensor<8x1x3x2xi8>, %s: tensor<8xf32>, %b: tensor<8xf32>) -> tensor<?x8x4x4xf32> {
  %w = qlr.pack %codes, %s : tensor<8x1x3x2xi8>, tensor<8xf32> -> !qlr.qtensor<8x1x3x3xf32, #qlr.format<int4, channel = 0>>
  %y = qlr.conv2d %x, %w, %b {strides = array<i64: 2, 2>, padding = array<i64: 1, 1, 1, 1>, groups = 8 : i64}
      : tensor<?x8x8x8xf32>, !qlr.qtensor<8x1x3x3xf32, #qlr.format<int4, channel = 0>>, tensor<8xf32> -> tensor<?x8x4x4xf32>
  return %y : tensor<?x8x4x4xf32>
}
