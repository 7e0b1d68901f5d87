// Batch norms that cannot be folded are refused with a warning naming the
// reason (and a note at the offending op) and stay in place.
// RUN: quant-opt %s --split-input-file --qlr-fold-batchnorm --verify-diagnostics | FileCheck %s
// With strict=true every refusal is an error, the pass fails and nothing is
// rewritten, not even the foldable batch norm of the last case.
// RUN: not quant-opt %s --split-input-file --qlr-fold-batchnorm=strict=true 2>&1 | FileCheck %s --check-prefix=STRICT
// RUN: not quant-opt %s --split-input-file --qlr-fold-batchnorm=strict=true --mlir-print-ir-after-failure 2>&1 | FileCheck %s --check-prefix=UNCHANGED

// STRICT: error: qlr.batch_norm not folded: its mean is not a constant

// CHECK-LABEL: func.func @parameter_not_constant
// CHECK:         qlr.batch_norm
func.func @parameter_not_constant(%x: tensor<8x3xf32>, %mean: tensor<2xf32>) -> tensor<8x2xf32> {
  %w = arith.constant dense<[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]> : tensor<2x3xf32>
  %p = arith.constant dense<[4.0, 9.0]> : tensor<2xf32>
  %l = qlr.linear %x, %w : tensor<8x3xf32>, tensor<2x3xf32> -> tensor<8x2xf32>
  // expected-warning@+1 {{qlr.batch_norm not folded: its mean is not a constant}}
  %y = qlr.batch_norm %l, %p, %p, %mean, %p axis = 1 eps = 0.0
      : tensor<8x2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>
  return %y : tensor<8x2xf32>
}

// -----

// STRICT: error: qlr.batch_norm not folded: variance + eps is not positive for channel 1

// CHECK-LABEL: func.func @negative_variance
// CHECK:         qlr.batch_norm
func.func @negative_variance(%x: tensor<8x3xf32>) -> tensor<8x2xf32> {
  %w = arith.constant dense<[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]> : tensor<2x3xf32>
  %p = arith.constant dense<[4.0, 9.0]> : tensor<2xf32>
  %var = arith.constant dense<[1.0, -1.0]> : tensor<2xf32>
  %l = qlr.linear %x, %w : tensor<8x3xf32>, tensor<2x3xf32> -> tensor<8x2xf32>
  // expected-warning@+1 {{qlr.batch_norm not folded: variance + eps is not positive for channel 1}}
  %y = qlr.batch_norm %l, %p, %p, %p, %var axis = 1 eps = 1.0e-05
      : tensor<8x2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>
  return %y : tensor<8x2xf32>
}

// -----

// STRICT: error: qlr.batch_norm not folded: its input is a block argument

// CHECK-LABEL: func.func @block_argument
// CHECK:         qlr.batch_norm
func.func @block_argument(%x: tensor<8x2xf32>) -> tensor<8x2xf32> {
  %p = arith.constant dense<[4.0, 9.0]> : tensor<2xf32>
  // expected-warning@+1 {{qlr.batch_norm not folded: its input is a block argument, not the result of a qlr.linear, qlr.conv2d or linalg.conv_2d_nchw_fchw}}
  %y = qlr.batch_norm %x, %p, %p, %p, %p axis = 1 eps = 0.0
      : tensor<8x2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>
  return %y : tensor<8x2xf32>
}

// -----

// STRICT: error: qlr.batch_norm not folded: its input is produced by 'arith.addf'

// CHECK-LABEL: func.func @other_producer
// CHECK:         qlr.batch_norm
func.func @other_producer(%x: tensor<8x2xf32>) -> tensor<8x2xf32> {
  %p = arith.constant dense<[4.0, 9.0]> : tensor<2xf32>
  // expected-note@+1 {{the producer}}
  %s = arith.addf %x, %x : tensor<8x2xf32>
  // expected-warning@+1 {{qlr.batch_norm not folded: its input is produced by 'arith.addf', not by a qlr.linear, qlr.conv2d or linalg.conv_2d_nchw_fchw}}
  %y = qlr.batch_norm %s, %p, %p, %p, %p axis = 1 eps = 0.0
      : tensor<8x2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>
  return %y : tensor<8x2xf32>
}

// -----

// STRICT: error: qlr.batch_norm not folded: its producer 'qlr.linear' has another user 'func.return'

// CHECK-LABEL: func.func @producer_has_other_use
// CHECK:         qlr.batch_norm
func.func @producer_has_other_use(%x: tensor<8x3xf32>) -> (tensor<8x2xf32>, tensor<8x2xf32>) {
  %w = arith.constant dense<[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]> : tensor<2x3xf32>
  %p = arith.constant dense<[4.0, 9.0]> : tensor<2xf32>
  %l = qlr.linear %x, %w : tensor<8x3xf32>, tensor<2x3xf32> -> tensor<8x2xf32>
  // expected-warning@+1 {{qlr.batch_norm not folded: its producer 'qlr.linear' has another user 'func.return' that would see the folded values}}
  %y = qlr.batch_norm %l, %p, %p, %p, %p axis = 1 eps = 0.0
      : tensor<8x2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>
  // expected-note@+1 {{the other user}}
  return %y, %l : tensor<8x2xf32>, tensor<8x2xf32>
}

// -----

// STRICT: error: qlr.batch_norm not folded: its channel axis 1 is not 2, the output features of the 'qlr.linear' producing its input

// CHECK-LABEL: func.func @linear_axis_not_last
// CHECK:         qlr.batch_norm
func.func @linear_axis_not_last(%x: tensor<4x2x3xf32>) -> tensor<4x2x2xf32> {
  %w = arith.constant dense<[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]> : tensor<2x3xf32>
  %p = arith.constant dense<[4.0, 9.0]> : tensor<2xf32>
  // expected-note@+1 {{the producer}}
  %l = qlr.linear %x, %w : tensor<4x2x3xf32>, tensor<2x3xf32> -> tensor<4x2x2xf32>
  // expected-warning@+1 {{qlr.batch_norm not folded: its channel axis 1 is not 2, the output features of the 'qlr.linear' producing its input}}
  %y = qlr.batch_norm %l, %p, %p, %p, %p axis = 1 eps = 0.0
      : tensor<4x2x2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>
  return %y : tensor<4x2x2xf32>
}

// -----

// STRICT: error: qlr.batch_norm not folded: the quantized weight of the 'qlr.linear' producing its input is not built by a qlr.pack in this function

// CHECK-LABEL: func.func @quantized_weight
// CHECK:         qlr.batch_norm
func.func @quantized_weight(%x: tensor<8x3xf32>, %q: !qlr.qtensor<2x3xf32, #qlr.format<int8, channel = 0>>) -> tensor<8x2xf32> {
  %p = arith.constant dense<[4.0, 9.0]> : tensor<2xf32>
  // expected-note@+1 {{the producer}}
  %l = qlr.linear %x, %q : tensor<8x3xf32>, !qlr.qtensor<2x3xf32, #qlr.format<int8, channel = 0>> -> tensor<8x2xf32>
  // expected-warning@+1 {{qlr.batch_norm not folded: the quantized weight of the 'qlr.linear' producing its input is not built by a qlr.pack in this function}}
  %y = qlr.batch_norm %l, %p, %p, %p, %p axis = 1 eps = 0.0
      : tensor<8x2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>
  return %y : tensor<8x2xf32>
}

// -----

// STRICT: error: qlr.batch_norm not folded: the weight of the 'qlr.linear' producing its input is not a constant

// CHECK-LABEL: func.func @weight_not_constant
// CHECK:         qlr.batch_norm
func.func @weight_not_constant(%x: tensor<8x3xf32>, %w: tensor<2x3xf32>) -> tensor<8x2xf32> {
  %p = arith.constant dense<[4.0, 9.0]> : tensor<2xf32>
  // expected-note@+1 {{the producer}}
  %l = qlr.linear %x, %w : tensor<8x3xf32>, tensor<2x3xf32> -> tensor<8x2xf32>
  // expected-warning@+1 {{qlr.batch_norm not folded: the weight of the 'qlr.linear' producing its input is not a constant}}
  %y = qlr.batch_norm %l, %p, %p, %p, %p axis = 1 eps = 0.0
      : tensor<8x2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>
  return %y : tensor<8x2xf32>
}

// -----

// STRICT: error: qlr.batch_norm not folded: the weight of the 'qlr.linear' producing its input is also used by 'qlr.linear'

// CHECK-LABEL: func.func @shared_weight
// CHECK:         qlr.batch_norm
func.func @shared_weight(%x: tensor<8x3xf32>) -> (tensor<8x2xf32>, tensor<8x2xf32>) {
  %w = arith.constant dense<[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]> : tensor<2x3xf32>
  %p = arith.constant dense<[4.0, 9.0]> : tensor<2xf32>
  %l = qlr.linear %x, %w : tensor<8x3xf32>, tensor<2x3xf32> -> tensor<8x2xf32>
  // expected-note@+1 {{the other user of the weight}}
  %m = qlr.linear %x, %w : tensor<8x3xf32>, tensor<2x3xf32> -> tensor<8x2xf32>
  // expected-warning@+1 {{qlr.batch_norm not folded: the weight of the 'qlr.linear' producing its input is also used by 'qlr.linear' (a shared weight would change for that user too)}}
  %y = qlr.batch_norm %l, %p, %p, %p, %p axis = 1 eps = 0.0
      : tensor<8x2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>
  return %y, %m : tensor<8x2xf32>, tensor<8x2xf32>
}

// -----

// STRICT: error: qlr.batch_norm not folded: the bias of the 'qlr.linear' producing its input is not a constant

// CHECK-LABEL: func.func @bias_not_constant
// CHECK:         qlr.batch_norm
func.func @bias_not_constant(%x: tensor<8x3xf32>, %c: tensor<2xf32>) -> tensor<8x2xf32> {
  %w = arith.constant dense<[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]> : tensor<2x3xf32>
  %p = arith.constant dense<[4.0, 9.0]> : tensor<2xf32>
  // expected-note@+1 {{the producer}}
  %l = qlr.linear %x, %w, %c : tensor<8x3xf32>, tensor<2x3xf32>, tensor<2xf32> -> tensor<8x2xf32>
  // expected-warning@+1 {{qlr.batch_norm not folded: the bias of the 'qlr.linear' producing its input is not a constant}}
  %y = qlr.batch_norm %l, %p, %p, %p, %p axis = 1 eps = 0.0
      : tensor<8x2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>
  return %y : tensor<8x2xf32>
}

// -----

// STRICT: error: qlr.batch_norm not folded: its channel axis 2 is not 1

// CHECK-LABEL: func.func @conv_axis_not_channels
// CHECK:         qlr.batch_norm
func.func @conv_axis_not_channels(%x: tensor<1x1x3x3xf32>) -> tensor<1x2x2x2xf32> {
  %f = arith.constant dense<1.0> : tensor<2x1x2x2xf32>
  %zero = arith.constant 0.0 : f32
  %empty = tensor.empty() : tensor<1x2x2x2xf32>
  %init = linalg.fill ins(%zero : f32) outs(%empty : tensor<1x2x2x2xf32>) -> tensor<1x2x2x2xf32>
  // expected-note@+1 {{the producer}}
  %conv = linalg.conv_2d_nchw_fchw ins(%x, %f : tensor<1x1x3x3xf32>, tensor<2x1x2x2xf32>)
      outs(%init : tensor<1x2x2x2xf32>) -> tensor<1x2x2x2xf32>
  %p = arith.constant dense<[4.0, 9.0]> : tensor<2xf32>
  // expected-warning@+1 {{qlr.batch_norm not folded: its channel axis 2 is not 1, the output channels of the linalg.conv_2d_nchw_fchw producing its input}}
  %y = qlr.batch_norm %conv, %p, %p, %p, %p axis = 2 eps = 0.0
      : tensor<1x2x2x2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>
  return %y : tensor<1x2x2x2xf32>
}

// -----

// STRICT: error: qlr.batch_norm not folded: the init of the linalg.conv_2d_nchw_fchw producing its input is not a linalg.fill of 0.0

// CHECK-LABEL: func.func @conv_init_not_zero
// CHECK:         qlr.batch_norm
func.func @conv_init_not_zero(%x: tensor<1x1x3x3xf32>) -> tensor<1x2x2x2xf32> {
  %f = arith.constant dense<1.0> : tensor<2x1x2x2xf32>
  %one = arith.constant 1.0 : f32
  %empty = tensor.empty() : tensor<1x2x2x2xf32>
  %init = linalg.fill ins(%one : f32) outs(%empty : tensor<1x2x2x2xf32>) -> tensor<1x2x2x2xf32>
  // expected-note@+1 {{the producer}}
  %conv = linalg.conv_2d_nchw_fchw ins(%x, %f : tensor<1x1x3x3xf32>, tensor<2x1x2x2xf32>)
      outs(%init : tensor<1x2x2x2xf32>) -> tensor<1x2x2x2xf32>
  %p = arith.constant dense<[4.0, 9.0]> : tensor<2xf32>
  // expected-warning@+1 {{qlr.batch_norm not folded: the init of the linalg.conv_2d_nchw_fchw producing its input is not a linalg.fill of 0.0 (the bias would be counted twice)}}
  %y = qlr.batch_norm %conv, %p, %p, %p, %p axis = 1 eps = 0.0
      : tensor<1x2x2x2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>
  return %y : tensor<1x2x2x2xf32>
}

// -----

// STRICT: error: qlr.batch_norm not folded: the filter of the 'linalg.conv_2d_nchw_fchw' producing its input is not a constant

// CHECK-LABEL: func.func @conv_filter_not_constant
// CHECK:         qlr.batch_norm
func.func @conv_filter_not_constant(%x: tensor<1x1x3x3xf32>, %f: tensor<2x1x2x2xf32>) -> tensor<1x2x2x2xf32> {
  %zero = arith.constant 0.0 : f32
  %empty = tensor.empty() : tensor<1x2x2x2xf32>
  %init = linalg.fill ins(%zero : f32) outs(%empty : tensor<1x2x2x2xf32>) -> tensor<1x2x2x2xf32>
  // expected-note@+1 {{the producer}}
  %conv = linalg.conv_2d_nchw_fchw ins(%x, %f : tensor<1x1x3x3xf32>, tensor<2x1x2x2xf32>)
      outs(%init : tensor<1x2x2x2xf32>) -> tensor<1x2x2x2xf32>
  %p = arith.constant dense<[4.0, 9.0]> : tensor<2xf32>
  // expected-warning@+1 {{qlr.batch_norm not folded: the filter of the 'linalg.conv_2d_nchw_fchw' producing its input is not a constant}}
  %y = qlr.batch_norm %conv, %p, %p, %p, %p axis = 1 eps = 0.0
      : tensor<1x2x2x2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>
  return %y : tensor<1x2x2x2xf32>
}

// -----

// A refused batch norm does not stop a foldable one in the same function
// (except with strict=true, which fails before rewriting anything).
// STRICT: error: qlr.batch_norm not folded: its input is a block argument
// UNCHANGED-LABEL: func.func @mixed
// UNCHANGED:         qlr.linear
// UNCHANGED-NEXT:    qlr.batch_norm
// UNCHANGED-NEXT:    qlr.batch_norm

// CHECK-LABEL: func.func @mixed
// CHECK:         qlr.linear %arg0, %{{.*}}, %{{.*}} :
// CHECK-NEXT:    qlr.batch_norm %arg1
func.func @mixed(%x: tensor<8x3xf32>, %v: tensor<8x2xf32>) -> (tensor<8x2xf32>, tensor<8x2xf32>) {
  %w = arith.constant dense<[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]> : tensor<2x3xf32>
  %p = arith.constant dense<[4.0, 9.0]> : tensor<2xf32>
  %l = qlr.linear %x, %w : tensor<8x3xf32>, tensor<2x3xf32> -> tensor<8x2xf32>
  %y = qlr.batch_norm %l, %p, %p, %p, %p axis = 1 eps = 0.0
      : tensor<8x2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>
  // expected-warning@+1 {{its input is a block argument}}
  %z = qlr.batch_norm %v, %p, %p, %p, %p axis = 1 eps = 0.0
      : tensor<8x2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>
  return %y, %z : tensor<8x2xf32>, tensor<8x2xf32>
}

// -----

// STRICT: error: qlr.batch_norm not folded: the quantized weight of the 'qlr.linear' producing its input has f16 scales, which would be rounded; fold into f32 scales (scale = f32)

// CHECK-LABEL: func.func @quantized_f16_scales
// CHECK:         qlr.batch_norm
func.func @quantized_f16_scales(%x: tensor<8x3xf32>) -> tensor<8x2xf32> {
  %c = arith.constant dense<[[1, 2, 3], [4, 5, 6]]> : tensor<2x3xi8>
  %s = arith.constant dense<[0.5, 0.25]> : tensor<2xf16>
  %q = qlr.pack %c, %s : tensor<2x3xi8>, tensor<2xf16> -> !qlr.qtensor<2x3xf32, #qlr.format<int8, channel = 0, scale = f16>>
  %p = arith.constant dense<[4.0, 9.0]> : tensor<2xf32>
  // expected-note@+1 {{the producer}}
  %l = qlr.linear %x, %q : tensor<8x3xf32>, !qlr.qtensor<2x3xf32, #qlr.format<int8, channel = 0, scale = f16>> -> tensor<8x2xf32>
  // expected-warning@+1 {{qlr.batch_norm not folded: the quantized weight of the 'qlr.linear' producing its input has f16 scales, which would be rounded; fold into f32 scales (scale = f32)}}
  %y = qlr.batch_norm %l, %p, %p, %p, %p axis = 1 eps = 0.0
      : tensor<8x2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>
  return %y : tensor<8x2xf32>
}

// -----

// STRICT: error: qlr.batch_norm not folded: the quantized filter of the 'qlr.conv2d' producing its input does not have its own scales per output channel (#qlr.format<int4>)

// CHECK-LABEL: func.func @quantized_per_tensor
// CHECK:         qlr.batch_norm
func.func @quantized_per_tensor(%x: tensor<1x1x3x3xf32>) -> tensor<1x2x2x2xf32> {
  %c = arith.constant dense<0> : tensor<2x1x2x1xi8>
  %s = arith.constant dense<0.5> : tensor<f32>
  %q = qlr.pack %c, %s : tensor<2x1x2x1xi8>, tensor<f32> -> !qlr.qtensor<2x1x2x2xf32, #qlr.format<int4>>
  %p = arith.constant dense<[4.0, 9.0]> : tensor<2xf32>
  // expected-note@+1 {{the producer}}
  %l = qlr.conv2d %x, %q : tensor<1x1x3x3xf32>, !qlr.qtensor<2x1x2x2xf32, #qlr.format<int4>> -> tensor<1x2x2x2xf32>
  // expected-warning@+1 {{qlr.batch_norm not folded: the quantized filter of the 'qlr.conv2d' producing its input does not have its own scales per output channel (#qlr.format<int4>)}}
  %y = qlr.batch_norm %l, %p, %p, %p, %p axis = 1 eps = 0.0
      : tensor<1x2x2x2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>
  return %y : tensor<1x2x2x2xf32>
}
