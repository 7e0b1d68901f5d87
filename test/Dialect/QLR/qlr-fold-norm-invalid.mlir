// Norms that cannot be folded exactly are refused with a warning naming the
// reason (and a note at the offending op) and left unchanged; the other
// norms are still folded.
// RUN: quant-opt %s --split-input-file --qlr-fold-norm --verify-diagnostics | FileCheck %s

// The norm also feeds an addition: refused, while the other norm of the
// function is folded.
// CHECK-LABEL: func.func @not_a_linear
// CHECK:         %[[G:.*]] = arith.constant dense<[2.000000e+00, 5.000000e-01, -1.000000e+00]>
// CHECK:         qlr.rms_norm %arg0, %[[G]]
// CHECK:         %[[ONES:.*]] = arith.constant dense<1.000000e+00>
// CHECK-NEXT:    qlr.rms_norm %arg0, %[[ONES]]
func.func @not_a_linear(%x: tensor<4x3xf32>) -> (tensor<4x2xf32>, tensor<4x3xf32>, tensor<4x2xf32>) {
  %g = arith.constant dense<[2.0, 0.5, -1.0]> : tensor<3xf32>
  %w = arith.constant dense<[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]> : tensor<2x3xf32>
  %w2 = arith.constant dense<[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]> : tensor<2x3xf32>
  // expected-warning@+1 {{qlr.rms_norm not folded: its result is used by 'arith.addf', which is not a qlr.linear}}
  %n = qlr.rms_norm %x, %g eps = 1.0e-05 : tensor<4x3xf32>, tensor<3xf32>
  %y = qlr.linear %n, %w : tensor<4x3xf32>, tensor<2x3xf32> -> tensor<4x2xf32>
  // expected-note@+1 {{the offending user}}
  %r = arith.addf %n, %x : tensor<4x3xf32>
  %n2 = qlr.rms_norm %x, %g eps = 1.0e-05 : tensor<4x3xf32>, tensor<3xf32>
  %y2 = qlr.linear %n2, %w2 : tensor<4x3xf32>, tensor<2x3xf32> -> tensor<4x2xf32>
  return %y, %r, %y2 : tensor<4x2xf32>, tensor<4x3xf32>, tensor<4x2xf32>
}

// -----

// CHECK-LABEL: func.func @used_as_weight
// CHECK:         arith.constant dense<[2.000000e+00, 5.000000e-01, -1.000000e+00]>
func.func @used_as_weight(%x: tensor<2x3xf32>, %v: tensor<5x3xf32>) -> tensor<5x2xf32> {
  %g = arith.constant dense<[2.0, 0.5, -1.0]> : tensor<3xf32>
  // expected-warning@+1 {{qlr.rms_norm not folded: its result is the weight operand of a qlr.linear, not its input}}
  %n = qlr.rms_norm %x, %g eps = 1.0e-05 : tensor<2x3xf32>, tensor<3xf32>
  // expected-note@+1 {{the offending user}}
  %y = qlr.linear %v, %n : tensor<5x3xf32>, tensor<2x3xf32> -> tensor<5x2xf32>
  return %y : tensor<5x2xf32>
}

// -----

// CHECK-LABEL: func.func @used_as_bias
// CHECK:         arith.constant dense<[2.000000e+00, -1.000000e+00]>
func.func @used_as_bias(%x: tensor<2xf32>, %v: tensor<5x3xf32>, %w: tensor<2x3xf32>) -> tensor<5x2xf32> {
  %g = arith.constant dense<[2.0, -1.0]> : tensor<2xf32>
  // expected-warning@+1 {{qlr.rms_norm not folded: its result is the bias operand of a qlr.linear, not its input}}
  %n = qlr.rms_norm %x, %g eps = 1.0e-05 : tensor<2xf32>, tensor<2xf32>
  // expected-note@+1 {{the offending user}}
  %y = qlr.linear %v, %w, %n : tensor<5x3xf32>, tensor<2x3xf32>, tensor<2xf32> -> tensor<5x2xf32>
  return %y : tensor<5x2xf32>
}

// -----

// A quantized consumer: the norm stays (quantize after folding). The
// refusal covers the whole norm: its float linear is not folded either.
// CHECK-LABEL: func.func @quantized_consumer
// CHECK:         %[[G:.*]] = arith.constant dense<[2.000000e+00, 5.000000e-01, -1.000000e+00]>
// CHECK:         %[[W:.*]] = arith.constant dense<{{\[\[}}1.000000e+00, 2.000000e+00, 3.000000e+00]]>
// CHECK:         %[[N:.*]] = qlr.rms_norm %arg0, %[[G]]
// CHECK:         qlr.linear %[[N]], %[[W]]
func.func @quantized_consumer(%x: tensor<4x3xf32>, %codes: tensor<2x2xi8>, %scales: tensor<2xf32>) -> (tensor<4x1xf32>, tensor<4x2xf32>) {
  %g = arith.constant dense<[2.0, 0.5, -1.0]> : tensor<3xf32>
  %w = arith.constant dense<[[1.0, 2.0, 3.0]]> : tensor<1x3xf32>
  %q = qlr.pack %codes, %scales : tensor<2x2xi8>, tensor<2xf32> -> !qlr.qtensor<2x3xf32, #qlr.format<int4, channel = 0>>
  // expected-warning@+1 {{qlr.rms_norm not folded: a qlr.linear it feeds has a quantized weight !qlr.qtensor<2x3xf32, #qlr.format<int4, channel = 0>>, which cannot absorb the norm exactly (fold before compressing)}}
  %n = qlr.rms_norm %x, %g eps = 1.0e-05 : tensor<4x3xf32>, tensor<3xf32>
  %a = qlr.linear %n, %w : tensor<4x3xf32>, tensor<1x3xf32> -> tensor<4x1xf32>
  // expected-note@+1 {{the offending user}}
  %b = qlr.linear %n, %q : tensor<4x3xf32>, !qlr.qtensor<2x3xf32, #qlr.format<int4, channel = 0>> -> tensor<4x2xf32>
  return %a, %b : tensor<4x1xf32>, tensor<4x2xf32>
}

// -----

// CHECK-LABEL: func.func @low_rank_consumer
// CHECK:         arith.constant dense<[2.000000e+00, 5.000000e-01, -1.000000e+00]>
func.func @low_rank_consumer(%x: tensor<4x3xf32>, %a: tensor<2x1xf32>, %b: tensor<1x3xf32>) -> tensor<4x2xf32> {
  %g = arith.constant dense<[2.0, 0.5, -1.0]> : tensor<3xf32>
  %w = qlr.lowrank %a, %b : tensor<2x1xf32>, tensor<1x3xf32> -> !qlr.lowrank<2x3xf32, rank = 1>
  // expected-warning@+1 {{a qlr.linear it feeds has a low-rank weight}}
  %n = qlr.rms_norm %x, %g eps = 1.0e-05 : tensor<4x3xf32>, tensor<3xf32>
  // expected-note@+1 {{the offending user}}
  %y = qlr.linear %n, %w : tensor<4x3xf32>, !qlr.lowrank<2x3xf32, rank = 1> -> tensor<4x2xf32>
  return %y : tensor<4x2xf32>
}

// -----

// CHECK-LABEL: func.func @weight_not_constant
// CHECK:         qlr.rms_norm %arg0, %arg1
func.func @weight_not_constant(%x: tensor<4x3xf32>, %g: tensor<3xf32>) -> tensor<4x2xf32> {
  %w = arith.constant dense<[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]> : tensor<2x3xf32>
  // expected-warning@+1 {{qlr.rms_norm not folded: its weight is not a constant}}
  %n = qlr.rms_norm %x, %g eps = 1.0e-05 : tensor<4x3xf32>, tensor<3xf32>
  %y = qlr.linear %n, %w : tensor<4x3xf32>, tensor<2x3xf32> -> tensor<4x2xf32>
  return %y : tensor<4x2xf32>
}

// -----

// A computed norm bias: the note points at its computation.
// CHECK-LABEL: func.func @bias_not_constant
// CHECK:         qlr.layer_norm %arg0, %{{.*}}, %[[B:.*]] eps
func.func @bias_not_constant(%x: tensor<4x3xf32>, %b0: tensor<3xf32>) -> tensor<4x2xf32> {
  %g = arith.constant dense<[2.0, 0.5, -1.0]> : tensor<3xf32>
  %w = arith.constant dense<[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]> : tensor<2x3xf32>
  // expected-note@+1 {{the bias is computed here}}
  %b = arith.addf %b0, %b0 : tensor<3xf32>
  // expected-warning@+1 {{qlr.layer_norm not folded: its bias is not a constant}}
  %n = qlr.layer_norm %x, %g, %b eps = 1.0e-05 : tensor<4x3xf32>, tensor<3xf32>, tensor<3xf32>
  %y = qlr.linear %n, %w : tensor<4x3xf32>, tensor<2x3xf32> -> tensor<4x2xf32>
  return %y : tensor<4x2xf32>
}

// -----

// CHECK-LABEL: func.func @consumer_weight_not_constant
// CHECK:         arith.constant dense<[2.000000e+00, 5.000000e-01, -1.000000e+00]>
func.func @consumer_weight_not_constant(%x: tensor<4x3xf32>, %w: tensor<2x3xf32>) -> tensor<4x2xf32> {
  %g = arith.constant dense<[2.0, 0.5, -1.0]> : tensor<3xf32>
  // expected-warning@+1 {{qlr.rms_norm not folded: the weight of a qlr.linear it feeds is not a constant}}
  %n = qlr.rms_norm %x, %g eps = 1.0e-05 : tensor<4x3xf32>, tensor<3xf32>
  // expected-note@+1 {{the offending user}}
  %y = qlr.linear %n, %w : tensor<4x3xf32>, tensor<2x3xf32> -> tensor<4x2xf32>
  return %y : tensor<4x2xf32>
}

// -----

// The LayerNorm bias has to be added to the linear's bias, which is
// computed.
// CHECK-LABEL: func.func @consumer_bias_not_constant
// CHECK:         arith.constant dense<[2.000000e+00, 5.000000e-01, -1.000000e+00]>
func.func @consumer_bias_not_constant(%x: tensor<4x3xf32>, %c: tensor<2xf32>) -> tensor<4x2xf32> {
  %g = arith.constant dense<[2.0, 0.5, -1.0]> : tensor<3xf32>
  %b = arith.constant dense<[1.0, 0.0, 2.0]> : tensor<3xf32>
  %w = arith.constant dense<[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]> : tensor<2x3xf32>
  // expected-warning@+1 {{qlr.layer_norm not folded: the bias of a qlr.linear it feeds is not a constant}}
  %n = qlr.layer_norm %x, %g, %b eps = 1.0e-05 : tensor<4x3xf32>, tensor<3xf32>, tensor<3xf32>
  // expected-note@+1 {{the offending user}}
  %y = qlr.linear %n, %w, %c : tensor<4x3xf32>, tensor<2x3xf32>, tensor<2xf32> -> tensor<4x2xf32>
  return %y : tensor<4x2xf32>
}

// -----

// Tied embeddings: the final norm feeds the classifier, whose weight is also
// the embedding table.
// CHECK-LABEL: func.func @tied_embeddings
// CHECK:         %[[W:.*]] = arith.constant dense<{{\[\[}}1.000000e+00, 2.000000e+00, 3.000000e+00]
// CHECK:         tensor.gather %[[W]]
// CHECK:         qlr.linear %{{.*}}, %[[W]]
func.func @tied_embeddings(%x: tensor<4x3xf32>, %ids: tensor<4x1xindex>) -> (tensor<4x1x3xf32>, tensor<4x2xf32>) {
  %g = arith.constant dense<[2.0, 0.5, -1.0]> : tensor<3xf32>
  %w = arith.constant dense<[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]> : tensor<2x3xf32>
  // expected-note@+1 {{the other user of the weight}}
  %e = tensor.gather %w[%ids] gather_dims([0]) : (tensor<2x3xf32>, tensor<4x1xindex>) -> tensor<4x1x3xf32>
  // expected-warning@+1 {{qlr.rms_norm not folded: the weight of a qlr.linear it feeds is also used by 'tensor.gather' (a shared weight, e.g. tied embeddings, would change for that user too)}}
  %n = qlr.rms_norm %x, %g eps = 1.0e-05 : tensor<4x3xf32>, tensor<3xf32>
  %y = qlr.linear %n, %w : tensor<4x3xf32>, tensor<2x3xf32> -> tensor<4x2xf32>
  return %e, %y : tensor<4x1x3xf32>, tensor<4x2xf32>
}

// -----

// One weight used by linears after two different norms: neither folds.
// CHECK-LABEL: func.func @weight_shared_across_norms
// CHECK-NOT:     dense<1.000000e+00>
func.func @weight_shared_across_norms(%x: tensor<4x3xf32>) -> (tensor<4x2xf32>, tensor<4x2xf32>) {
  %g = arith.constant dense<[2.0, 0.5, -1.0]> : tensor<3xf32>
  %h = arith.constant dense<[1.0, 3.0, 1.0]> : tensor<3xf32>
  %w = arith.constant dense<[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]> : tensor<2x3xf32>
  // expected-warning@+1 {{the weight of a qlr.linear it feeds is also used by 'qlr.linear'}}
  %n = qlr.rms_norm %x, %g eps = 1.0e-05 : tensor<4x3xf32>, tensor<3xf32>
  // expected-note@+1 {{the other user of the weight}}
  %y = qlr.linear %n, %w : tensor<4x3xf32>, tensor<2x3xf32> -> tensor<4x2xf32>
  // expected-warning@+1 {{the weight of a qlr.linear it feeds is also used by 'qlr.linear'}}
  %m = qlr.rms_norm %x, %h eps = 1.0e-05 : tensor<4x3xf32>, tensor<3xf32>
  // expected-note@+1 {{the other user of the weight}}
  %z = qlr.linear %m, %w : tensor<4x3xf32>, tensor<2x3xf32> -> tensor<4x2xf32>
  return %y, %z : tensor<4x2xf32>, tensor<4x2xf32>
}
