// With strict=true a refusal is an error and the pass fails. Every norm is
// checked before any is rewritten, so a failing run changes nothing: the
// foldable norm below keeps its weight as well.
// RUN: quant-opt %s --qlr-fold-norm=strict=true --verify-diagnostics
// RUN: not quant-opt %s --qlr-fold-norm=strict=true --mlir-print-ir-after-failure 2>&1 | FileCheck %s

// CHECK:      error: qlr.rms_norm not folded: its result is used by 'arith.addf', which is not a qlr.linear
// CHECK:      note: the offending user
// CHECK:      error: qlr.layer_norm not folded: the weight of a qlr.linear it feeds is not a constant
// CHECK:      IR Dump After QLRFoldNormPass Failed
// CHECK-LABEL: func.func @strict
// CHECK-DAG:    %[[G:.*]] = arith.constant dense<[2.000000e+00, 5.000000e-01, -1.000000e+00]> : tensor<3xf32>
// CHECK-DAG:    %[[W:.*]] = arith.constant dense<{{\[\[}}1.000000e+00, 2.000000e+00, 3.000000e+00], [4.000000e+00, 5.000000e+00, 6.000000e+00]]> : tensor<2x3xf32>
// CHECK:        %[[N:.*]] = qlr.rms_norm %arg0, %[[G]]
// CHECK-NEXT:   qlr.linear %[[N]], %[[W]]
// CHECK-NOT:    dense<1.000000e+00>
func.func @strict(%x: tensor<4x3xf32>, %v: tensor<2x3xf32>) -> (tensor<4x2xf32>, tensor<4x3xf32>, tensor<4x2xf32>, tensor<4x2xf32>) {
  %g = arith.constant dense<[2.0, 0.5, -1.0]> : tensor<3xf32>
  %b = arith.constant dense<[1.0, 0.0, 2.0]> : tensor<3xf32>
  %w = arith.constant dense<[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]> : tensor<2x3xf32>
  %n = qlr.rms_norm %x, %g eps = 1.0e-05 : tensor<4x3xf32>, tensor<3xf32>
  %y = qlr.linear %n, %w : tensor<4x3xf32>, tensor<2x3xf32> -> tensor<4x2xf32>
  // expected-error@+1 {{qlr.rms_norm not folded: its result is used by 'arith.addf', which is not a qlr.linear}}
  %m = qlr.rms_norm %x, %g eps = 1.0e-05 : tensor<4x3xf32>, tensor<3xf32>
  // expected-note@+1 {{the offending user}}
  %r = arith.addf %m, %x : tensor<4x3xf32>
  // expected-error@+1 {{qlr.layer_norm not folded: the weight of a qlr.linear it feeds is not a constant}}
  %l = qlr.layer_norm %x, %g, %b eps = 1.0e-05 : tensor<4x3xf32>, tensor<3xf32>, tensor<3xf32>
  // expected-note@+1 {{the offending user}}
  %z = qlr.linear %l, %v : tensor<4x3xf32>, tensor<2x3xf32> -> tensor<4x2xf32>
  return %y, %r, %z, %y : tensor<4x2xf32>, tensor<4x3xf32>, tensor<4x2xf32>, tensor<4x2xf32>
}
