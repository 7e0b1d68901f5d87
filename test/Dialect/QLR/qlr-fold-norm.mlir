// qlr-fold-norm moves the norm weight g (and the LayerNorm bias b) into the
// linears the norm feeds: W' = W·diag(g), c' = c + W·b. With the weight
// W = [[1, 2, 3], [4, 5, 6]] used throughout, g = [2, 0.5, -1] gives
// W' = [[2, 1, -3], [8, 2.5, -6]] and b = [1, 0, 2] gives W·b = [7, 16].
// RUN: quant-opt %s --split-input-file --qlr-fold-norm --verify-diagnostics | FileCheck %s

// The old constants are erased.
// CHECK-LABEL: func.func @rms_norm
// CHECK-NEXT:    %[[W:.*]] = arith.constant dense<{{\[\[}}2.000000e+00, 1.000000e+00, -3.000000e+00], [8.000000e+00, 2.500000e+00, -6.000000e+00]]> : tensor<2x3xf32>
// CHECK-NEXT:    %[[ONES:.*]] = arith.constant dense<1.000000e+00> : tensor<3xf32>
// CHECK-NEXT:    %[[N:.*]] = qlr.rms_norm %arg0, %[[ONES]] eps = 1.000000e-05
// CHECK-NEXT:    %[[Y:.*]] = qlr.linear %[[N]], %[[W]] : tensor<?x3xf32>, tensor<2x3xf32> -> tensor<?x2xf32>
// CHECK-NEXT:    return %[[Y]]
func.func @rms_norm(%x: tensor<?x3xf32>) -> tensor<?x2xf32> {
  %g = arith.constant dense<[2.0, 0.5, -1.0]> : tensor<3xf32>
  %w = arith.constant dense<[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]> : tensor<2x3xf32>
  %n = qlr.rms_norm %x, %g eps = 1.0e-05 : tensor<?x3xf32>, tensor<3xf32>
  %y = qlr.linear %n, %w : tensor<?x3xf32>, tensor<2x3xf32> -> tensor<?x2xf32>
  return %y : tensor<?x2xf32>
}

// -----

// c' = [0.5, -1] + [7, 16].
// CHECK-LABEL: func.func @layer_norm_with_bias
// CHECK-NEXT:    %[[W:.*]] = arith.constant dense<{{\[\[}}2.000000e+00, 1.000000e+00, -3.000000e+00], [8.000000e+00, 2.500000e+00, -6.000000e+00]]> : tensor<2x3xf32>
// CHECK-NEXT:    %[[ONES:.*]] = arith.constant dense<1.000000e+00> : tensor<3xf32>
// CHECK-NEXT:    %[[ZEROS:.*]] = arith.constant dense<0.000000e+00> : tensor<3xf32>
// CHECK-NEXT:    %[[N:.*]] = qlr.layer_norm %arg0, %[[ONES]], %[[ZEROS]] eps
// CHECK-NEXT:    %[[C:.*]] = arith.constant dense<[7.500000e+00, 1.500000e+01]> : tensor<2xf32>
// CHECK-NEXT:    %[[Y:.*]] = qlr.linear %[[N]], %[[W]], %[[C]] : tensor<4x3xf32>, tensor<2x3xf32>, tensor<2xf32> -> tensor<4x2xf32>
// CHECK-NEXT:    return %[[Y]]
func.func @layer_norm_with_bias(%x: tensor<4x3xf32>) -> tensor<4x2xf32> {
  %g = arith.constant dense<[2.0, 0.5, -1.0]> : tensor<3xf32>
  %b = arith.constant dense<[1.0, 0.0, 2.0]> : tensor<3xf32>
  %w = arith.constant dense<[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]> : tensor<2x3xf32>
  %c = arith.constant dense<[0.5, -1.0]> : tensor<2xf32>
  %n = qlr.layer_norm %x, %g, %b eps = 1.0e-05 : tensor<4x3xf32>, tensor<3xf32>, tensor<3xf32>
  %y = qlr.linear %n, %w, %c : tensor<4x3xf32>, tensor<2x3xf32>, tensor<2xf32> -> tensor<4x2xf32>
  return %y : tensor<4x2xf32>
}

// -----

// A linear without a bias gets one: c' = W·b.
// CHECK-LABEL: func.func @layer_norm_creates_bias
// CHECK-NEXT:    %[[W:.*]] = arith.constant dense<{{\[\[}}2.000000e+00, 1.000000e+00, -3.000000e+00], [8.000000e+00, 2.500000e+00, -6.000000e+00]]> : tensor<2x3xf32>
// CHECK-NEXT:    %[[ONES:.*]] = arith.constant dense<1.000000e+00> : tensor<3xf32>
// CHECK-NEXT:    %[[ZEROS:.*]] = arith.constant dense<0.000000e+00> : tensor<3xf32>
// CHECK-NEXT:    %[[N:.*]] = qlr.layer_norm %arg0, %[[ONES]], %[[ZEROS]] eps
// CHECK-NEXT:    %[[C:.*]] = arith.constant dense<[7.000000e+00, 1.600000e+01]> : tensor<2xf32>
// CHECK-NEXT:    qlr.linear %[[N]], %[[W]], %[[C]] : tensor<4x3xf32>, tensor<2x3xf32>, tensor<2xf32> -> tensor<4x2xf32>
func.func @layer_norm_creates_bias(%x: tensor<4x3xf32>) -> tensor<4x2xf32> {
  %g = arith.constant dense<[2.0, 0.5, -1.0]> : tensor<3xf32>
  %b = arith.constant dense<[1.0, 0.0, 2.0]> : tensor<3xf32>
  %w = arith.constant dense<[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]> : tensor<2x3xf32>
  %n = qlr.layer_norm %x, %g, %b eps = 1.0e-05 : tensor<4x3xf32>, tensor<3xf32>, tensor<3xf32>
  %y = qlr.linear %n, %w : tensor<4x3xf32>, tensor<2x3xf32> -> tensor<4x2xf32>
  return %y : tensor<4x2xf32>
}

// -----

// A unit-weight LayerNorm with a bias: only the bias moves; the weights and
// the norm's (already unit) weight constant stay.
// CHECK-LABEL: func.func @layer_norm_bias_only
// CHECK-NEXT:    %[[ONES:.*]] = arith.constant dense<1.000000e+00> : tensor<3xf32>
// CHECK-NEXT:    %[[W:.*]] = arith.constant dense<{{\[\[}}1.000000e+00, 2.000000e+00, 3.000000e+00], [4.000000e+00, 5.000000e+00, 6.000000e+00]]> : tensor<2x3xf32>
// CHECK-NEXT:    %[[ZEROS:.*]] = arith.constant dense<0.000000e+00> : tensor<3xf32>
// CHECK-NEXT:    %[[N:.*]] = qlr.layer_norm %arg0, %[[ONES]], %[[ZEROS]] eps
// CHECK-NEXT:    %[[C:.*]] = arith.constant dense<[7.000000e+00, 1.600000e+01]> : tensor<2xf32>
// CHECK-NEXT:    qlr.linear %[[N]], %[[W]], %[[C]]
func.func @layer_norm_bias_only(%x: tensor<4x3xf32>) -> tensor<4x2xf32> {
  %g = arith.constant dense<1.0> : tensor<3xf32>
  %b = arith.constant dense<[1.0, 0.0, 2.0]> : tensor<3xf32>
  %w = arith.constant dense<[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]> : tensor<2x3xf32>
  %n = qlr.layer_norm %x, %g, %b eps = 1.0e-05 : tensor<4x3xf32>, tensor<3xf32>, tensor<3xf32>
  %y = qlr.linear %n, %w : tensor<4x3xf32>, tensor<2x3xf32> -> tensor<4x2xf32>
  return %y : tensor<4x2xf32>
}

// -----

// A norm feeding three linears (query/key/value-like), two of which share a
// weight: each distinct weight is scaled once.
// CHECK-LABEL: func.func @three_linears
// CHECK-NEXT:    %[[W:.*]] = arith.constant dense<{{\[\[}}2.000000e+00, 1.000000e+00, -3.000000e+00], [8.000000e+00, 2.500000e+00, -6.000000e+00]]> : tensor<2x3xf32>
// CHECK-NEXT:    %[[V:.*]] = arith.constant dense<{{\[\[}}2.000000e+00, 5.000000e-01, -1.000000e+00]]> : tensor<1x3xf32>
// CHECK-NEXT:    %[[ONES:.*]] = arith.constant dense<1.000000e+00> : tensor<3xf32>
// CHECK-NEXT:    %[[N:.*]] = qlr.rms_norm %arg0, %[[ONES]]
// CHECK-NEXT:    qlr.linear %[[N]], %[[W]] :
// CHECK-NEXT:    qlr.linear %[[N]], %[[V]] :
// CHECK-NEXT:    qlr.linear %[[N]], %[[W]] :
func.func @three_linears(%x: tensor<4x3xf32>) -> (tensor<4x2xf32>, tensor<4x1xf32>, tensor<4x2xf32>) {
  %g = arith.constant dense<[2.0, 0.5, -1.0]> : tensor<3xf32>
  %w = arith.constant dense<[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]> : tensor<2x3xf32>
  %v = arith.constant dense<1.0> : tensor<1x3xf32>
  %n = qlr.rms_norm %x, %g eps = 1.0e-05 : tensor<4x3xf32>, tensor<3xf32>
  %q = qlr.linear %n, %w : tensor<4x3xf32>, tensor<2x3xf32> -> tensor<4x2xf32>
  %k = qlr.linear %n, %v : tensor<4x3xf32>, tensor<1x3xf32> -> tensor<4x1xf32>
  %r = qlr.linear %n, %w : tensor<4x3xf32>, tensor<2x3xf32> -> tensor<4x2xf32>
  return %q, %k, %r : tensor<4x2xf32>, tensor<4x1xf32>, tensor<4x2xf32>
}

// -----

// Weights stored as resources get resources named after them: W
// [[1, 2], [3, 4]] with g = [2, -1] gives [[2, -2], [6, -4]]; b = [1, 1]
// gives the new bias W·b = [3, 7], named after the weight.
// (f32 little endian: 2 = 00000040, -2 = 000000C0, 6 = 0000C040,
// -4 = 000080C0, 3 = 00004040, 7 = 0000E040). The old blob is gone.
// CHECK-LABEL: func.func @resources
// CHECK:         %[[W:.*]] = arith.constant dense_resource<layers.0.wq.weight.folded> : tensor<2x2xf32>
// CHECK:         %[[C:.*]] = arith.constant dense_resource<layers.0.wq.bias.folded> : tensor<2xf32>
// CHECK-NEXT:    qlr.linear %{{.*}}, %[[W]], %[[C]]
// CHECK:         builtin: {
// CHECK-NEXT:      layers.0.wq.weight.folded: "0x0400000000000040000000C00000C040000080C0",
// CHECK-NEXT:      layers.0.wq.bias.folded: "0x04000000000040400000E040"
// CHECK-NEXT:    }
func.func @resources(%x: tensor<4x2xf32>) -> tensor<4x2xf32> {
  %g = arith.constant dense<[2.0, -1.0]> : tensor<2xf32>
  %b = arith.constant dense<1.0> : tensor<2xf32>
  %w = arith.constant dense_resource<layers.0.wq.weight> : tensor<2x2xf32>
  %n = qlr.layer_norm %x, %g, %b eps = 1.0e-05 : tensor<4x2xf32>, tensor<2xf32>, tensor<2xf32>
  %y = qlr.linear %n, %w : tensor<4x2xf32>, tensor<2x2xf32> -> tensor<4x2xf32>
  return %y : tensor<4x2xf32>
}

{-#
  dialect_resources: {
    builtin: {
      "layers.0.wq.weight": "0x040000000000803F000000400000404000008040"
    }
  }
#-}

// -----

// Half-precision weights are computed in double and rounded once:
// 0.0999755859375 (f16 0.1) · 3 lies exactly between two f16 values and
// rounds to the even one, 0.2998046875.
// CHECK-LABEL: func.func @f16
// CHECK-NEXT:    arith.constant dense<{{\[\[}}7.500000e-01, 2.998050e-01]]> : tensor<1x2xf16>
// CHECK-NEXT:    arith.constant dense<1.000000e+00> : tensor<2xf16>
func.func @f16(%x: tensor<4x2xf16>) -> tensor<4x1xf16> {
  %g = arith.constant dense<[0.5, 3.0]> : tensor<2xf16>
  %w = arith.constant dense<[[1.5, 0.1]]> : tensor<1x2xf16>
  %n = qlr.rms_norm %x, %g eps = 1.0e-05 : tensor<4x2xf16>, tensor<2xf16>
  %y = qlr.linear %n, %w : tensor<4x2xf16>, tensor<1x2xf16> -> tensor<4x1xf16>
  return %y : tensor<4x1xf16>
}

// -----

// Norms already at unit weight (and zero bias) are left alone without a
// word, whatever their users are: here a quantized linear, which a norm with
// a real weight could not be folded into.
// CHECK-LABEL: func.func @unit
// CHECK-DAG:     %[[ONES:.*]] = arith.constant dense<1.000000e+00> : tensor<64xf32>
// CHECK-DAG:     %[[ZEROS:.*]] = arith.constant dense<0.000000e+00> : tensor<64xf32>
// CHECK:         qlr.rms_norm %arg0, %[[ONES]]
// CHECK:         qlr.layer_norm %arg0, %[[ONES]], %[[ZEROS]]
func.func @unit(%x: tensor<4x64xf32>, %q: !qlr.qtensor<8x64xf32, #qlr.format<int4, group = 32>>) -> (tensor<4x8xf32>, tensor<4x64xf32>) {
  %ones = arith.constant dense<1.0> : tensor<64xf32>
  %zeros = arith.constant dense<0.0> : tensor<64xf32>
  %n = qlr.rms_norm %x, %ones eps = 1.0e-05 : tensor<4x64xf32>, tensor<64xf32>
  %y = qlr.linear %n, %q : tensor<4x64xf32>, !qlr.qtensor<8x64xf32, #qlr.format<int4, group = 32>> -> tensor<4x8xf32>
  %l = qlr.layer_norm %x, %ones, %zeros eps = 1.0e-05 : tensor<4x64xf32>, tensor<64xf32>, tensor<64xf32>
  return %y, %l : tensor<4x8xf32>, tensor<4x64xf32>
}
