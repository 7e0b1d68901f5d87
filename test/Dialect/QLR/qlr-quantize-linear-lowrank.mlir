// RUN: quant-opt %s -split-input-file --qlr-quantize-linear="bits=8 group-size=2 symmetric=false scale-type=f32" | FileCheck %s
// RUN: quant-opt %s -split-input-file --qlr-quantize-linear="bits=8 group-size=2 symmetric=false scale-type=f32" --qlr-dequantize-weights | FileCheck %s --check-prefix=ROUND
// RUN: quant-opt %s -split-input-file --qlr-quantize-linear="bits=4 exclude=lowrank*" | FileCheck %s --check-prefix=EXCLUDE

// Low-rank weights of float factors (what qlr-basis-select writes) get both
// factors quantized: A [N, r] in groups along r, B [r, K] along K.

// CHECK-LABEL: func.func @lowrank
// CHECK:         %[[AC:.*]] = arith.constant dense_resource<lowrank0.factor_a.codes> : tensor<3x2xi8>
// CHECK:         %[[A:.*]] = qlr.pack %[[AC]], {{.*}} -> !qlr.qtensor<3x2xf32, #int8_g2_asym>
// CHECK:         %[[BC:.*]] = arith.constant dense_resource<lowrank0.factor_b.codes> : tensor<2x4xi8>
// CHECK:         %[[B:.*]] = qlr.pack %[[BC]], {{.*}} -> !qlr.qtensor<2x4xf32, #int8_g2_asym>
// CHECK:         %[[W:.*]] = qlr.lowrank %[[A]], %[[B]] : !qlr.qtensor<3x2xf32, #int8_g2_asym>, !qlr.qtensor<2x4xf32, #int8_g2_asym> -> !qlr.lowrank<3x4xf32, rank = 2, a = #int8_g2_asym, b = #int8_g2_asym>
// CHECK:         qlr.linear %{{.*}}, %[[W]] : tensor<?x4xf32>, !qlr.lowrank<3x4xf32, rank = 2, a = #int8_g2_asym, b = #int8_g2_asym> -> tensor<?x3xf32>
// CHECK-NOT:     tensor<3x2xf32>

// qlr-dequantize-weights decodes both factors and multiplies them into one
// float weight named after the factors.
// ROUND-LABEL: func.func @lowrank
// ROUND:         arith.constant dense_resource<lowrank0> : tensor<3x4xf32>
// ROUND-NOT:     qlr.lowrank
// EXCLUDE-LABEL: func.func @lowrank
// EXCLUDE:         qlr.lowrank %{{.*}}, %{{.*}} : tensor<3x2xf32>, tensor<2x4xf32> -> !qlr.lowrank<3x4xf32, rank = 2>
func.func @lowrank(%x: tensor<?x4xf32>) -> tensor<?x3xf32> {
  %a = arith.constant dense<[[1.0, -2.0], [0.5, 0.25], [-1.0, 3.0]]> : tensor<3x2xf32>
  %b = arith.constant dense<[[1.0, 0.0, -1.0, 2.0], [0.0, 1.0, 4.0, -4.0]]> : tensor<2x4xf32>
  %w = qlr.lowrank %a, %b : tensor<3x2xf32>, tensor<2x4xf32> -> !qlr.lowrank<3x4xf32, rank = 2>
  %y = qlr.linear %x, %w : tensor<?x4xf32>, !qlr.lowrank<3x4xf32, rank = 2> -> tensor<?x3xf32>
  return %y : tensor<?x3xf32>
}

// -----

// A LoftQ weight (quantized base plus float factors) is left alone.
// CHECK-LABEL: func.func @loftq_untouched
// CHECK:         qlr.lowrank %{{.*}}, %{{.*}} base %{{.*}} : tensor<4x1xf32>, tensor<1x4xf32>, !qlr.qtensor<4x4xf32, #int4> -> !qlr.lowrank<4x4xf32, rank = 1, base = #int4>
func.func @loftq_untouched(%x: tensor<?x4xf32>) -> tensor<?x4xf32> {
  %a = arith.constant dense<1.0> : tensor<4x1xf32>
  %b = arith.constant dense<0.5> : tensor<1x4xf32>
  %codes = arith.constant dense<8> : tensor<4x2xi8>
  %scales = arith.constant dense<1.0> : tensor<f32>
  %q = qlr.pack %codes, %scales : tensor<4x2xi8>, tensor<f32> -> !qlr.qtensor<4x4xf32, #qlr.format<int4>>
  %w = qlr.lowrank %a, %b base %q : tensor<4x1xf32>, tensor<1x4xf32>, !qlr.qtensor<4x4xf32, #qlr.format<int4>> -> !qlr.lowrank<4x4xf32, rank = 1, base = #qlr.format<int4>>
  %y = qlr.linear %x, %w : tensor<?x4xf32>, !qlr.lowrank<4x4xf32, rank = 1, base = #qlr.format<int4>> -> tensor<?x4xf32>
  return %y : tensor<?x4xf32>
}
