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
