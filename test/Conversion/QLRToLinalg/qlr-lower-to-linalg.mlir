// RUN: quant-opt %s --split-input-file --qlr-lower-to-linalg | FileCheck %s

// A float linear is one contraction over k with the weight in [N, K] layout.
// CHECK-DAG: #[[$X:.+]] = affine_map<(d0, d1, d2, d3) -> (d0, d1, d3)>
// CHECK-DAG: #[[$W:.+]] = affine_map<(d0, d1, d2, d3) -> (d2, d3)>
// CHECK-DAG: #[[$Y:.+]] = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2)>
// CHECK-LABEL: func.func @linear_float
// CHECK: %[[FILL:.+]] = linalg.fill
// CHECK: linalg.generic {indexing_maps = [#[[$X]], #[[$W]], #[[$Y]]], iterator_types = ["parallel", "parallel", "parallel", "reduction"]}
// CHECK-SAME: ins(%arg0, %arg1 : tensor<?x7x64xf32>, tensor<32x64xf32>) outs(%[[FILL]] : tensor<?x7x32xf32>) attrs = {qlr.contraction}
// CHECK: arith.mulf
// CHECK: arith.addf
// CHECK-NOT: qlr.
func.func @linear_float(%x: tensor<?x7x64xf32>, %w: tensor<32x64xf32>) -> tensor<?x7x32xf32> {
  %y = qlr.linear %x, %w : tensor<?x7x64xf32>, tensor<32x64xf32> -> tensor<?x7x32xf32>
  return %y : tensor<?x7x32xf32>
}

// -----

// Low-rank: two thin contractions (x·Bᵀ then ·Aᵀ); A·B is never formed.
// CHECK-LABEL: func.func @linear_lowrank
// CHECK: %[[U:.+]] = linalg.generic {{.+}} ins(%arg0, %arg2 : tensor<5x64xf32>, tensor<4x64xf32>) outs(%{{.+}} : tensor<5x4xf32>) attrs = {qlr.contraction}
// CHECK: linalg.generic {{.+}} ins(%[[U]], %arg1 : tensor<5x4xf32>, tensor<96x4xf32>) outs(%{{.+}} : tensor<5x96xf32>) attrs = {qlr.contraction}
// CHECK-NOT: tensor<96x64xf32>
func.func @linear_lowrank(%x: tensor<5x64xf32>, %a: tensor<96x4xf32>, %b: tensor<4x64xf32>) -> tensor<5x96xf32> {
  %w = qlr.lowrank %a, %b : tensor<96x4xf32>, tensor<4x64xf32> -> !qlr.lowrank<96x64xf32, rank = 4>
  %y = qlr.linear %x, %w : tensor<5x64xf32>, !qlr.lowrank<96x64xf32, rank = 4> -> tensor<5x96xf32>
  return %y : tensor<5x96xf32>
}

// -----

// Group scales are indexed with floordiv; asymmetric zero points share the map.
// CHECK-DAG: #[[$S:.+]] = affine_map<(d0, d1) -> (d0, d1 floordiv 32)>
// CHECK-LABEL: func.func @dequantize_group
// CHECK: linalg.generic {indexing_maps = [#[[$S]], #[[$S]], #{{.+}}]
// CHECK-SAME: ins(%arg1, %arg2 : tensor<8x3xf16>, tensor<8x3xi8>)
// CHECK: linalg.index 1
// CHECK: tensor.extract %arg0
// CHECK: arith.extf
func.func @dequantize_group(%c: tensor<8x36xi8>, %s: tensor<8x3xf16>, %z: tensor<8x3xi8>) -> tensor<8x72xf32> {
  %q = qlr.pack %c, %s, %z : tensor<8x36xi8>, tensor<8x3xf16>, tensor<8x3xi8>
      -> !qlr.qtensor<8x72xf32, #qlr.format<int4, group = 32, asymmetric, scale = f16>>
  %d = qlr.dequantize %q : !qlr.qtensor<8x72xf32, #qlr.format<int4, group = 32, asymmetric, scale = f16>> -> tensor<8x72xf32>
  return %d : tensor<8x72xf32>
}

// -----

// RMSNorm: a sum-of-squares reduction, then rsqrt scaling.
// CHECK-LABEL: func.func @rms_norm
// CHECK: %[[SS:.+]] = linalg.generic {{.+}} iterator_types = ["parallel", "reduction"]
// CHECK: linalg.generic {{.+}} ins(%arg0, %[[SS]], %arg1 : tensor<?x64xf32>, tensor<?xf32>, tensor<64xf32>)
// CHECK: math.rsqrt
func.func @rms_norm(%x: tensor<?x64xf32>, %w: tensor<64xf32>) -> tensor<?x64xf32> {
  %y = qlr.rms_norm %x, %w eps = 1.0e-5 : tensor<?x64xf32>, tensor<64xf32>
  return %y : tensor<?x64xf32>
}

// -----

// One group: zero padding, then upstream's named convolution into a zero
// accumulator, then the bias along the channel dimension.
// CHECK-LABEL: func.func @conv2d_one_group
// CHECK:       %[[PAD:.*]] = tensor.pad %arg0 low[0, 0, 1, 0] high[0, 0, 1, 1]
// CHECK:       tensor.yield %{{.*}} : f32
// CHECK:       %[[DIM:.*]] = tensor.dim %[[PAD]], %c0
// CHECK:       %[[E:.*]] = tensor.empty(%[[DIM]]) : tensor<?x16x4x4xf32>
// CHECK:       %[[Z:.*]] = linalg.fill ins(%{{.*}} : f32) outs(%[[E]]
// CHECK:       %[[C:.*]] = linalg.conv_2d_nchw_fchw {dilations = dense<1> : tensor<2xi64>, strides = dense<2> : tensor<2xi64>} ins(%[[PAD]], %arg1 : tensor<?x3x10x9xf32>, tensor<16x3x3x3xf32>) outs(%[[Z]] : tensor<?x16x4x4xf32>)
// CHECK:       linalg.generic {{.*}} ins(%[[C]], %arg2 : tensor<?x16x4x4xf32>, tensor<16xf32>)
// CHECK:       arith.addf
func.func @conv2d_one_group(%x: tensor<?x3x8x8xf32>, %w: tensor<16x3x3x3xf32>, %b: tensor<16xf32>) -> tensor<?x16x4x4xf32> {
  %y = qlr.conv2d %x, %w, %b {strides = array<i64: 2, 2>, padding = array<i64: 1, 0, 1, 1>}
      : tensor<?x3x8x8xf32>, tensor<16x3x3x3xf32>, tensor<16xf32> -> tensor<?x16x4x4xf32>
  return %y : tensor<?x16x4x4xf32>
}

// -----

// Depthwise with a quantized filter: the filter is decoded (a tagged
// element-wise generic), then a generic convolution reads it in its own
// [F, C/G, KH, KW] layout and the input channel of the output channel's
// group: (f floordiv 1) * 1 + c.
// CHECK-DAG:   #[[IN:.*]] = affine_map<(d0, d1, d2, d3, d4, d5, d6) -> (d0, d1 + d4, d2 + d5, d3 + d6)>
// CHECK-DAG:   #[[FILTER:.*]] = affine_map<(d0, d1, d2, d3, d4, d5, d6) -> (d1, d4, d5, d6)>
// CHECK-DAG:   #[[OUT:.*]] = affine_map<(d0, d1, d2, d3, d4, d5, d6) -> (d0, d1, d2, d3)>
// CHECK-LABEL: func.func @conv2d_depthwise_quantized
// CHECK:       %[[W:.*]] = linalg.generic {{.*}} attrs = {qlr.dequantize = #int4_c0}
// CHECK:       linalg.generic {indexing_maps = [#[[IN]], #[[FILTER]], #[[OUT]]], iterator_types = ["parallel", "parallel", "parallel", "parallel", "reduction", "reduction", "reduction"]} ins(%arg0, %[[W]] : tensor<2x8x6x6xf32>, tensor<8x1x3x3xf32>)
func.func @conv2d_depthwise_quantized(%x: tensor<2x8x6x6xf32>, %codes: tensor<8x1x3x2xi8>, %s: tensor<8xf32>) -> tensor<2x8x4x4xf32> {
  %w = qlr.pack %codes, %s : tensor<8x1x3x2xi8>, tensor<8xf32> -> !qlr.qtensor<8x1x3x3xf32, #qlr.format<int4, channel = 0>>
  %y = qlr.conv2d %x, %w {groups = 8 : i64}
      : tensor<2x8x6x6xf32>, !qlr.qtensor<8x1x3x3xf32, #qlr.format<int4, channel = 0>> -> tensor<2x8x4x4xf32>
  return %y : tensor<2x8x4x4xf32>
}
