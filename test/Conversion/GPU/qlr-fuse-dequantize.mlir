// RUN: quant-opt %s --split-input-file --qlr-lower-to-linalg --qlr-fuse-dequantize | FileCheck %s

// The decoder of a quantized weight disappears into the linear layer: the
// contraction reads the scales as an input and the packed codes inside its
// body, and decodes each weight element where it multiplies it.

// CHECK-LABEL: func.func @int4_group16
// CHECK-SAME: (%[[X:.*]]: tensor<?x32xf32>, %[[CODES:.*]]: tensor<4x16xi8>, %[[SCALES:.*]]: tensor<4x2xf16>)
// CHECK-COUNT-1: linalg.generic
// CHECK-SAME: iterator_types = ["parallel", "parallel", "reduction"]
// CHECK-SAME: ins(%[[X]], %[[SCALES]] : tensor<?x32xf32>, tensor<4x2xf16>)
// CHECK-SAME: {qlr.contraction, qlr.dequantize = #int4_g16_f16}
// CHECK: ^bb0(%[[XV:.*]]: f32, %[[S:.*]]: f16, %[[ACC:.*]]: f32):
// CHECK: tensor.extract %[[CODES]]
// CHECK: arith.shrui
// CHECK: arith.andi
// CHECK: %[[SF:.*]] = arith.extf %[[S]] : f16 to f32
// CHECK: %[[W:.*]] = arith.mulf %[[SF]], %{{.*}} : f32
// CHECK: %[[P:.*]] = arith.mulf %[[XV]], %[[W]]
// CHECK: arith.addf %[[ACC]], %[[P]]
// CHECK-NOT: linalg.generic
func.func @int4_group16(%x: tensor<?x32xf32>, %codes: tensor<4x16xi8>, %scales: tensor<4x2xf16>) -> tensor<?x4xf32> {
  %w = qlr.pack %codes, %scales : tensor<4x16xi8>, tensor<4x2xf16> -> !qlr.qtensor<4x32xf32, #qlr.format<int4, group = 16, scale = f16>>
  %y = qlr.linear %x, %w : tensor<?x32xf32>, !qlr.qtensor<4x32xf32, #qlr.format<int4, group = 16, scale = f16>> -> tensor<?x4xf32>
  return %y : tensor<?x4xf32>
}

// -----

// A decoder read by two linear layers is fused into both; no float weight
// remains.

// CHECK-LABEL: func.func @shared_decoder
// CHECK-NOT: outs(%{{.*}} : tensor<4x32xf32>)
// CHECK: linalg.generic
// CHECK-SAME: {qlr.contraction, qlr.dequantize = #int4_g16}
// CHECK: linalg.generic
// CHECK-SAME: {qlr.contraction, qlr.dequantize = #int4_g16}
// CHECK-NOT: outs(%{{.*}} : tensor<4x32xf32>)
// CHECK: return
func.func @shared_decoder(%x: tensor<?x32xf32>, %codes: tensor<4x16xi8>, %scales: tensor<4x2xf32>) -> (tensor<?x4xf32>, tensor<?x4xf32>) {
  %w = qlr.pack %codes, %scales : tensor<4x16xi8>, tensor<4x2xf32> -> !qlr.qtensor<4x32xf32, #qlr.format<int4, group = 16>>
  %y = qlr.linear %x, %w : tensor<?x32xf32>, !qlr.qtensor<4x32xf32, #qlr.format<int4, group = 16>> -> tensor<?x4xf32>
  %z = qlr.linear %x, %w : tensor<?x32xf32>, !qlr.qtensor<4x32xf32, #qlr.format<int4, group = 16>> -> tensor<?x4xf32>
  return %y, %z : tensor<?x4xf32>, tensor<?x4xf32>
}

// -----

// A float weight has no decoder: the contraction is left alone.

// CHECK-LABEL: func.func @float_weight
// CHECK: linalg.generic
// CHECK-SAME: ins(%{{.*}}, %{{.*}} : tensor<?x32xf32>, tensor<4x32xf32>)
// CHECK-SAME: {qlr.contraction}
func.func @float_weight(%x: tensor<?x32xf32>, %w: tensor<4x32xf32>) -> tensor<?x4xf32> {
  %y = qlr.linear %x, %w : tensor<?x32xf32>, tensor<4x32xf32> -> tensor<?x4xf32>
  return %y : tensor<?x4xf32>
}
