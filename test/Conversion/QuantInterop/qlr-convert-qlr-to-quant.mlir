// RUN: quant-opt %s --split-input-file --qlr-convert-qlr-to-quant | FileCheck %s
// RUN: quant-opt %s --split-input-file --qlr-convert-qlr-to-quant="signed-storage=false" | FileCheck %s --check-prefix=UNSIGNED

// Codes 8, 9, 10, 11 / 6, 7, 4, 5 packed two per byte (low nibble first):
// 0x98 0xBA / 0x76 0x54. Symmetric int4 has zero point 8, so the signed
// storage values are the codes minus 8.
// CHECK-LABEL: func.func @per_channel_int4
// CHECK: %[[C:.+]] = arith.constant dense<{{\[}}[0, 1, 2, 3], [-2, -1, -4, -3]]> : tensor<2x4xi4>
// CHECK: %[[Q:.+]] = quant.scast %[[C]] : tensor<2x4xi4> to tensor<2x4x!quant.uniform<i4:f32:0, {1.000000e+00,5.000000e-01}>>
// CHECK: %[[D:.+]] = quant.dcast %[[Q]] : tensor<2x4x!quant.uniform<i4:f32:0, {1.000000e+00,5.000000e-01}>> to tensor<2x4xf32>
// CHECK: %[[W:.+]] = quant.dcast %[[Q]]
// CHECK: %[[Y:.+]] = qlr.linear %arg0, %[[W]] : tensor<3x4xf32>, tensor<2x4xf32> -> tensor<3x2xf32>
// CHECK: return %[[D]], %[[Y]]
// CHECK-NOT: qlr.pack
// UNSIGNED-LABEL: func.func @per_channel_int4
// UNSIGNED: arith.constant dense<{{\[}}[-8, -7, -6, -5], [6, 7, 4, 5]]> : tensor<2x4xi4>
// UNSIGNED: quant.scast %{{.+}} : tensor<2x4xi4> to tensor<2x4x!quant.uniform<u4:f32:0, {1.000000e+00:8,5.000000e-01:8}>>
func.func @per_channel_int4(%x: tensor<3x4xf32>) -> (tensor<2x4xf32>, tensor<3x2xf32>) {
  %codes = arith.constant dense<[[-104, -70], [118, 84]]> : tensor<2x2xi8>
  %scales = arith.constant dense<[1.0, 0.5]> : tensor<2xf32>
  %w = qlr.pack %codes, %scales : tensor<2x2xi8>, tensor<2xf32> -> !qlr.qtensor<2x4xf32, #qlr.format<int4, channel = 0>>
  %d = qlr.dequantize %w : !qlr.qtensor<2x4xf32, #qlr.format<int4, channel = 0>> -> tensor<2x4xf32>
  %y = qlr.linear %x, %w : tensor<3x4xf32>, !qlr.qtensor<2x4xf32, #qlr.format<int4, channel = 0>> -> tensor<3x2xf32>
  return %d, %y : tensor<2x4xf32>, tensor<3x2xf32>
}

// -----

// Asymmetric formats always get unsigned storage with their zero points.
// CHECK-LABEL: func.func @asymmetric_per_tensor
// CHECK: %[[C:.+]] = arith.constant dense<[0, 1, -1, 127]> : tensor<4xi8>
// CHECK: quant.scast %[[C]] : tensor<4xi8> to tensor<4x!quant.uniform<u8:f32, 2.500000e-01:3>>
func.func @asymmetric_per_tensor() -> tensor<4xf32> {
  %codes = arith.constant dense<[0, 1, -1, 127]> : tensor<4xi8>
  %scales = arith.constant dense<0.25> : tensor<f16>
  %zp = arith.constant dense<3> : tensor<i8>
  %w = qlr.pack %codes, %scales, %zp : tensor<4xi8>, tensor<f16>, tensor<i8>
      -> !qlr.qtensor<4xf32, #qlr.format<int8, asymmetric, scale = f16>>
  %d = qlr.dequantize %w : !qlr.qtensor<4xf32, #qlr.format<int8, asymmetric, scale = f16>> -> tensor<4xf32>
  return %d : tensor<4xf32>
}

// -----

// CHECK-LABEL: func.func @group_int4_to_sub_channel
// CHECK: quant.scast %{{.+}} : tensor<2x4xi4> to tensor<2x4x!quant.uniform<i4:f32:{0:1, 1:2}, {{\{\{}}1.000000e+00, 2.000000e+00}, {5.000000e-01, 2.500000e-01}}>>
func.func @group_int4_to_sub_channel() -> tensor<2x4xf32> {
  %codes = arith.constant dense<[[-104, -70], [118, 84]]> : tensor<2x2xi8>
  %scales = arith.constant dense<[[1.0, 2.0], [0.5, 0.25]]> : tensor<2x2xf32>
  %w = qlr.pack %codes, %scales : tensor<2x2xi8>, tensor<2x2xf32> -> !qlr.qtensor<2x4xf32, #qlr.format<int4, group = 2>>
  %d = qlr.dequantize %w : !qlr.qtensor<2x4xf32, #qlr.format<int4, group = 2>> -> tensor<2x4xf32>
  return %d : tensor<2x4xf32>
}

// -----

// CHECK-LABEL: func.func @quantize_with_constant_scales
// CHECK: %[[Q:.+]] = quant.qcast %arg0 : tensor<2x4xf32> to tensor<2x4x!quant.uniform<i8:f32:0, {0.10000000149011612,0.20000000298023224}>>
// CHECK: quant.dcast %[[Q]]
// CHECK-NOT: arith.constant
func.func @quantize_with_constant_scales(%x: tensor<2x4xf32>) -> tensor<2x4xf32> {
  %scales = arith.constant dense<[0.1, 0.2]> : tensor<2xf32>
  %q = qlr.quantize %x scales(%scales : tensor<2xf32>) : tensor<2x4xf32> -> !qlr.qtensor<2x4xf32, #qlr.format<int8, channel = 0>>
  %d = qlr.dequantize %q : !qlr.qtensor<2x4xf32, #qlr.format<int8, channel = 0>> -> tensor<2x4xf32>
  return %d : tensor<2x4xf32>
}

// -----

// Weights stored as resource blobs convert too (codes 0x21 = codes 1, 2).
// CHECK-LABEL: func.func @resource_blobs
// CHECK: arith.constant dense<{{\[}}[-7, -6]]> : tensor<1x2xi4>
// CHECK: !quant.uniform<i4:f32, 5.000000e-01>
func.func @resource_blobs() -> tensor<1x2xf32> {
  %codes = arith.constant dense_resource<codes> : tensor<1x1xi8>
  %scales = arith.constant dense_resource<scales> : tensor<f32>
  %w = qlr.pack %codes, %scales : tensor<1x1xi8>, tensor<f32> -> !qlr.qtensor<1x2xf32, #qlr.format<int4>>
  %d = qlr.dequantize %w : !qlr.qtensor<1x2xf32, #qlr.format<int4>> -> tensor<1x2xf32>
  return %d : tensor<1x2xf32>
}

{-#
  dialect_resources: {
    builtin: {
      codes: "0x0100000021",
      scales: "0x040000000000003F"
    }
  }
#-}
