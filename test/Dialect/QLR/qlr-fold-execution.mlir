// Folding preserves the function: the same program runs unfolded and after
// qlr-fold-norm + qlr-fold-batchnorm, and both must print the same numbers.
// The CHECK lines are the exact results, computed in double, cut to as many
// digits as float rounding cannot change: every printed value stays inside
// its CHECK prefix as long as it is within 2 (k + 4) * 2^-24 * sum |terms| of
// the exact result (k = 4 or 8 products per output, plus the norm; any
// order, FMA or not, folded or not), and the cut leaves at least 1.5 times
// that margin. The third RUN line makes sure the second one really ran
// folded code.
// RUN: quant-opt %s --qlr-cpu-pipeline | mlir-runner -e main -entry-point-result=void -shared-libs=%mlir_runner_utils,%mlir_c_runner_utils | FileCheck %s
// RUN: quant-opt %s --qlr-fold-norm=strict=true --qlr-fold-batchnorm=strict=true --qlr-cpu-pipeline | mlir-runner -e main -entry-point-result=void -shared-libs=%mlir_runner_utils,%mlir_c_runner_utils | FileCheck %s
// RUN: quant-opt %s --qlr-fold-norm=strict=true --qlr-fold-batchnorm=strict=true | FileCheck %s --check-prefix=FOLDED

// FOLDED-LABEL: func.func @main
// FOLDED:       %[[G:.*]] = arith.constant dense<1.000000e+00> : tensor<4xf32>
// FOLDED-NEXT:  qlr.rms_norm %{{.*}}, %[[G]] eps
// FOLDED:       %[[GL:.*]] = arith.constant dense<1.000000e+00> : tensor<4xf32>
// FOLDED-NEXT:  %[[BL:.*]] = arith.constant dense<0.000000e+00> : tensor<4xf32>
// FOLDED-NEXT:  qlr.layer_norm %{{.*}}, %[[GL]], %[[BL]] eps
// FOLDED-NOT:   qlr.batch_norm
// FOLDED:       linalg.conv_2d_nchw_fchw
// FOLDED-NEXT:  arith.constant
// FOLDED-NEXT:  tensor.empty
// FOLDED-NEXT:  linalg.broadcast
// FOLDED-NEXT:  linalg.add
// FOLDED-NOT:   qlr.batch_norm

func.func private @printMemrefF32(memref<*xf32>) attributes {llvm.emit_c_interface}

func.func @print2(%t: tensor<2x3xf32>) {
  %m = bufferization.to_buffer %t : tensor<2x3xf32> to memref<2x3xf32>
  %u = memref.cast %m : memref<2x3xf32> to memref<*xf32>
  call @printMemrefF32(%u) : (memref<*xf32>) -> ()
  return
}

func.func @main() {
  %x = arith.constant dense<[[1.0, 2.0, 3.0, 4.0], [-1.0, 0.5, 2.0, -3.0]]> : tensor<2x4xf32>
  %w = arith.constant dense<[[1.0, -2.0, 0.5, 3.0], [0.25, 1.0, -1.0, 2.0], [-3.0, 0.5, 2.0, 1.0]]> : tensor<3x4xf32>
  %c = arith.constant dense<[0.5, -1.0, 2.0]> : tensor<3xf32>

  // RMSNorm -> linear.
  // CHECK:      [3.2863{{[0-9]*}}, 6.9834{{[0-9]*}}, 0.1825{{[0-9]*}}]
  // CHECK-NEXT: [-9.006{{[0-9]*}}, -3.245{{[0-9]*}}, -3.4437{{[0-9]*}}]
  %g = arith.constant dense<[0.5, 2.0, -1.0, 1.5]> : tensor<4xf32>
  %rms = qlr.rms_norm %x, %g eps = 1.0e-05 : tensor<2x4xf32>, tensor<4xf32>
  %y1 = qlr.linear %rms, %w : tensor<2x4xf32>, tensor<3x4xf32> -> tensor<2x3xf32>
  call @print2(%y1) : (tensor<2x3xf32>) -> ()

  // LayerNorm -> two linears, one with a bias and one without.
  // CHECK:      [-3.6926{{[0-9]*}}, -6.1902{{[0-9]*}}, -0.5978{{[0-9]*}}]
  // CHECK-NEXT: [-3.8500{{[0-9]*}}, 0.9836{{[0-9]*}}, 5.111{{[0-9]*}}]
  // CHECK:      [12.89{{[0-9]*}}, 3.1568{{[0-9]*}}, 0.930{{[0-9]*}}]
  // CHECK-NEXT: [10.216{{[0-9]*}}, 3.324{{[0-9]*}}, 1.2551{{[0-9]*}}]
  %gl = arith.constant dense<[1.5, -0.5, 2.0, 0.75]> : tensor<4xf32>
  %bl = arith.constant dense<[0.25, -1.0, 0.5, 2.0]> : tensor<4xf32>
  %ln = qlr.layer_norm %x, %gl, %bl eps = 1.0e-05 : tensor<2x4xf32>, tensor<4xf32>, tensor<4xf32>
  %w2 = arith.constant dense<[[2.0, 1.0, -1.0, 0.5], [0.5, 0.5, 1.5, -2.0], [1.0, -1.0, 1.0, -1.0]]> : tensor<3x4xf32>
  %y2 = qlr.linear %ln, %w2, %c : tensor<2x4xf32>, tensor<3x4xf32>, tensor<3xf32> -> tensor<2x3xf32>
  call @print2(%y2) : (tensor<2x3xf32>) -> ()
  %w3 = arith.constant dense<[[1.0, 2.0, 3.0, 4.0], [-1.0, 0.0, 1.0, 0.0], [0.5, 0.5, 0.5, 0.5]]> : tensor<3x4xf32>
  %y3 = qlr.linear %ln, %w3 : tensor<2x4xf32>, tensor<3x4xf32> -> tensor<2x3xf32>
  call @print2(%y3) : (tensor<2x3xf32>) -> ()

  // Linear -> BatchNorm over the features.
  // CHECK:      [3.9996{{[0-9]*}}, 1.9920{{[0-9]*}}, -4.80{{[0-9]*}}]
  // CHECK-NEXT: [1.4999{{[0-9]*}}, -7.7385{{[0-9]*}}, -6.9227{{[0-9]*}}]
  %w4 = arith.constant dense<[[1.0, -1.0, 2.0, 0.0], [0.5, 1.5, -0.5, 1.0], [2.0, 0.0, 1.0, -1.0]]> : tensor<3x4xf32>
  %l = qlr.linear %x, %w4, %c : tensor<2x4xf32>, tensor<3x4xf32>, tensor<3xf32> -> tensor<2x3xf32>
  %s = arith.constant dense<[2.0, 0.5, -1.5]> : tensor<3xf32>
  %beta = arith.constant dense<[1.0, -2.0, 0.5]> : tensor<3xf32>
  %mean = arith.constant dense<[2.5, 1.0, -2.0]> : tensor<3xf32>
  %var = arith.constant dense<[4.0, 0.25, 2.0]> : tensor<3xf32>
  %bn = qlr.batch_norm %l, %s, %beta, %mean, %var axis = 1 eps = 1.0e-03
      : tensor<2x3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>
  call @print2(%bn) : (tensor<2x3xf32>) -> ()

  // Convolution -> BatchNorm over the output channels.
  // CHECK:      [12.622{{[0-9]*}}, 0.8749{{[0-9]*}}]
  // CHECK-NEXT: [-0.8746{{[0-9]*}}, -0.8746{{[0-9]*}}]
  // CHECK-NEXT: [1.288{{[0-9]*}}, -5.635{{[0-9]*}}]
  // CHECK-NEXT: [2.8751{{[0-9]*}}, -0.8751{{[0-9]*}}]
  %img = arith.constant dense<[[[[1.0, 2.0, 0.0], [-1.0, 3.0, 1.0], [2.0, 0.5, -2.0]],
                                [[0.0, 1.0, 1.0], [2.0, -1.0, 0.5], [1.0, 1.0, 3.0]]]]> : tensor<1x2x3x3xf32>
  %filter = arith.constant dense<[[[[1.0, 0.5], [-1.0, 2.0]], [[0.0, 1.0], [1.0, -0.5]]],
                                  [[[2.0, -1.0], [0.5, 0.5]], [[1.0, 1.0], [-2.0, 0.0]]]]> : tensor<2x2x2x2xf32>
  %zero = arith.constant 0.0 : f32
  %empty = tensor.empty() : tensor<1x2x2x2xf32>
  %init = linalg.fill ins(%zero : f32) outs(%empty : tensor<1x2x2x2xf32>) -> tensor<1x2x2x2xf32>
  %conv = linalg.conv_2d_nchw_fchw ins(%img, %filter : tensor<1x2x3x3xf32>, tensor<2x2x2x2xf32>)
      outs(%init : tensor<1x2x2x2xf32>) -> tensor<1x2x2x2xf32>
  %cs = arith.constant dense<[1.5, -0.5]> : tensor<2xf32>
  %cb = arith.constant dense<[0.625, 1.0]> : tensor<2xf32>
  %cm = arith.constant dense<[0.5, -1.5]> : tensor<2xf32>
  %cv = arith.constant dense<[2.25, 0.75]> : tensor<2xf32>
  %cbn = qlr.batch_norm %conv, %cs, %cb, %cm, %cv axis = 1 eps = 1.0e-03
      : tensor<1x2x2x2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>
  %cm4 = bufferization.to_buffer %cbn : tensor<1x2x2x2xf32> to memref<1x2x2x2xf32>
  %cu = memref.cast %cm4 : memref<1x2x2x2xf32> to memref<*xf32>
  call @printMemrefF32(%cu) : (memref<*xf32>) -> ()
  return
}
