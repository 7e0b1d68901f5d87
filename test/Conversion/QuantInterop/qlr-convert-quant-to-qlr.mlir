// RUN: quant-opt %s --split-input-file --qlr-convert-quant-to-qlr | FileCheck %s
// The two conversions are inverses on expressible IR:
// RUN: quant-opt %s --split-input-file --qlr-convert-quant-to-qlr --qlr-convert-qlr-to-quant | FileCheck %s --check-prefix=BACK

!per_axis = tensor<2x4x!quant.uniform<i4:f32:0, {1.0, 0.5}>>

// Signed storage value c is code c + 8 for 4 bits: 8, 9, 10, 11 and 6, 7, 4,
// 5, packed low nibble first into 0x98 0xBA 0x76 0x54.
// CHECK-LABEL: func.func @per_axis_constant
// CHECK-DAG: %[[S:.+]] = arith.constant dense<[1.000000e+00, 5.000000e-01]> : tensor<2xf32>
// CHECK-DAG: %[[C:.+]] = arith.constant dense<{{\[}}[-104, -70], [118, 84]]> : tensor<2x2xi8>
// CHECK: %[[W:.+]] = qlr.pack %[[C]], %[[S]] : tensor<2x2xi8>, tensor<2xf32> -> !qlr.qtensor<2x4xf32, #int4_c0>
// CHECK: qlr.dequantize %[[W]] : !qlr.qtensor<2x4xf32, #int4_c0> -> tensor<2x4xf32>
// CHECK-NOT: quant.
// BACK-LABEL: func.func @per_axis_constant
// BACK: arith.constant dense<{{\[}}[0, 1, 2, 3], [-2, -1, -4, -3]]> : tensor<2x4xi4>
// BACK: quant.scast %{{.+}} : tensor<2x4xi4> to tensor<2x4x!quant.uniform<i4:f32:0, {1.000000e+00,5.000000e-01}>>
func.func @per_axis_constant() -> tensor<2x4xf32> {
  %c = arith.constant dense<[[0, 1, 2, 3], [-2, -1, -4, -3]]> : tensor<2x4xi4>
  %q = quant.scast %c : tensor<2x4xi4> to !per_axis
  %d = quant.dcast %q : !per_axis to tensor<2x4xf32>
  return %d : tensor<2x4xf32>
}

// -----

// Unsigned storage with a zero point that is not 2^(b-1) is asymmetric.
// CHECK-LABEL: func.func @per_tensor_asymmetric_qcast
// CHECK-DAG: %[[S:.+]] = arith.constant dense<2.500000e-01> : tensor<f16>
// CHECK-DAG: %[[Z:.+]] = arith.constant dense<3> : tensor<i8>
// CHECK: %[[Q:.+]] = qlr.quantize %arg0 scales(%[[S]] : tensor<f16>) zero_points(%[[Z]] : tensor<i8>) : tensor<4xf16> -> !qlr.qtensor<4xf16, #int8_asym_f16>
// CHECK: qlr.dequantize %[[Q]]
// BACK-LABEL: func.func @per_tensor_asymmetric_qcast
// BACK: quant.qcast %arg0 : tensor<4xf16> to tensor<4x!quant.uniform<u8:f16, 2.500000e-01:3>>
func.func @per_tensor_asymmetric_qcast(%x: tensor<4xf16>) -> tensor<4xf16> {
  %q = quant.qcast %x : tensor<4xf16> to tensor<4x!quant.uniform<u8:f16, 0.25:3>>
  %d = quant.dcast %q : tensor<4x!quant.uniform<u8:f16, 0.25:3>> to tensor<4xf16>
  return %d : tensor<4xf16>
}

// -----

// Sub-channel blocks along the last axis are groups; along axis 0, an
// explicit group axis.
// CHECK-LABEL: func.func @sub_channel
// CHECK: !qlr.qtensor<2x4xf32, #int4_g2>
// CHECK: !qlr.qtensor<4x2xf32, #int4_g2_a0>
func.func @sub_channel(%x: tensor<2x4xf32>, %y: tensor<4x2xf32>) -> (tensor<2x4xf32>, tensor<4x2xf32>) {
  %q = quant.qcast %x : tensor<2x4xf32> to tensor<2x4x!quant.uniform<i4:f32:{0:1, 1:2}, {{1.0, 2.0}, {0.5, 0.25}}>>
  %d = quant.dcast %q : tensor<2x4x!quant.uniform<i4:f32:{0:1, 1:2}, {{1.0, 2.0}, {0.5, 0.25}}>> to tensor<2x4xf32>
  %r = quant.qcast %y : tensor<4x2xf32> to tensor<4x2x!quant.uniform<i4:f32:{0:2, 1:1}, {{1.0, 2.0}, {0.5, 0.25}}>>
  %e = quant.dcast %r : tensor<4x2x!quant.uniform<i4:f32:{0:2, 1:1}, {{1.0, 2.0}, {0.5, 0.25}}>> to tensor<4x2xf32>
  return %d, %e : tensor<2x4xf32>, tensor<4x2xf32>
}
