// qlr-fold-batchnorm folds y = (x - mean)·s + beta, s = scale / sqrt(var +
// eps), into the linear layer or convolution producing x. Throughout: scale
// [4, -3], var + eps = [4, 9] (s = [2, -1]), mean [0.5, 2], beta [1, -1].
// RUN: quant-opt %s --split-input-file --qlr-fold-batchnorm --verify-diagnostics | FileCheck %s

// W' = diag(s)·W; the new bias is (0 - mean)·s + beta = [0, 1].
// CHECK-LABEL: func.func @linear
// CHECK-NEXT:    %[[W:.*]] = arith.constant dense<{{\[\[}}2.000000e+00, 4.000000e+00, 6.000000e+00], [-4.000000e+00, -5.000000e+00, -6.000000e+00]]> : tensor<2x3xf32>
// CHECK-NEXT:    %[[C:.*]] = arith.constant dense<[0.000000e+00, 1.000000e+00]> : tensor<2xf32>
// CHECK-NEXT:    %[[Y:.*]] = qlr.linear %arg0, %[[W]], %[[C]] : tensor<8x3xf32>, tensor<2x3xf32>, tensor<2xf32> -> tensor<8x2xf32>
// CHECK-NEXT:    return %[[Y]]
func.func @linear(%x: tensor<8x3xf32>) -> tensor<8x2xf32> {
  %w = arith.constant dense<[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]> : tensor<2x3xf32>
  %scale = arith.constant dense<[4.0, -3.0]> : tensor<2xf32>
  %beta = arith.constant dense<[1.0, -1.0]> : tensor<2xf32>
  %mean = arith.constant dense<[0.5, 2.0]> : tensor<2xf32>
  %var = arith.constant dense<[3.5, 8.5]> : tensor<2xf32>
  %l = qlr.linear %x, %w : tensor<8x3xf32>, tensor<2x3xf32> -> tensor<8x2xf32>
  %y = qlr.batch_norm %l, %scale, %beta, %mean, %var axis = 1 eps = 5.0e-01
      : tensor<8x2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>
  return %y : tensor<8x2xf32>
}

// -----

// With the linear's bias c = [0.5, 1]: (c - mean)·s + beta = [1, 0]. The
// channel axis is the last one of a rank-3 result.
// CHECK-LABEL: func.func @linear_with_bias
// CHECK-NEXT:    %[[W:.*]] = arith.constant dense<{{\[\[}}2.000000e+00, 4.000000e+00, 6.000000e+00], [-4.000000e+00, -5.000000e+00, -6.000000e+00]]> : tensor<2x3xf32>
// CHECK-NEXT:    %[[C:.*]] = arith.constant dense<[1.000000e+00, 0.000000e+00]> : tensor<2xf32>
// CHECK-NEXT:    %[[Y:.*]] = qlr.linear %arg0, %[[W]], %[[C]] : tensor<2x?x3xf32>, tensor<2x3xf32>, tensor<2xf32> -> tensor<2x?x2xf32>
// CHECK-NEXT:    return %[[Y]]
func.func @linear_with_bias(%x: tensor<2x?x3xf32>) -> tensor<2x?x2xf32> {
  %w = arith.constant dense<[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]> : tensor<2x3xf32>
  %c = arith.constant dense<[0.5, 1.0]> : tensor<2xf32>
  %scale = arith.constant dense<[4.0, -3.0]> : tensor<2xf32>
  %beta = arith.constant dense<[1.0, -1.0]> : tensor<2xf32>
  %mean = arith.constant dense<[0.5, 2.0]> : tensor<2xf32>
  %var = arith.constant dense<[4.0, 9.0]> : tensor<2xf32>
  %l = qlr.linear %x, %w, %c : tensor<2x?x3xf32>, tensor<2x3xf32>, tensor<2xf32> -> tensor<2x?x2xf32>
  %y = qlr.batch_norm %l, %scale, %beta, %mean, %var axis = 2 eps = 0.0
      : tensor<2x?x2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>
  return %y : tensor<2x?x2xf32>
}

// -----

// Resource weights give resources named after them: W = [[1, 2], [3, 4]]
// becomes [[2, 4], [-3, -4]] (f32 little endian 00000040 00008040 000040C0
// 000080C0) and the new bias [0, 1] (00000000 0000803F).
// CHECK-LABEL: func.func @resources
// CHECK-NEXT:    %[[W:.*]] = arith.constant dense_resource<fc1.weight.folded> : tensor<2x2xf32>
// CHECK-NEXT:    %[[C:.*]] = arith.constant dense_resource<fc1.bias.folded> : tensor<2xf32>
// CHECK-NEXT:    qlr.linear %arg0, %[[W]], %[[C]]
// CHECK:         builtin: {
// CHECK-NEXT:      fc1.weight.folded: "0x040000000000004000008040000040C0000080C0",
// CHECK-NEXT:      fc1.bias.folded: "0x04000000000000000000803F"
// CHECK-NEXT:    }
func.func @resources(%x: tensor<8x2xf32>) -> tensor<8x2xf32> {
  %w = arith.constant dense_resource<fc1.weight> : tensor<2x2xf32>
  %scale = arith.constant dense<[4.0, -3.0]> : tensor<2xf32>
  %beta = arith.constant dense<[1.0, -1.0]> : tensor<2xf32>
  %mean = arith.constant dense<[0.5, 2.0]> : tensor<2xf32>
  %var = arith.constant dense<[4.0, 9.0]> : tensor<2xf32>
  %l = qlr.linear %x, %w : tensor<8x2xf32>, tensor<2x2xf32> -> tensor<8x2xf32>
  %y = qlr.batch_norm %l, %scale, %beta, %mean, %var axis = 1 eps = 0.0
      : tensor<8x2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>
  return %y : tensor<8x2xf32>
}

{-#
  dialect_resources: {
    builtin: {
      "fc1.weight": "0x040000000000803F000000400000404000008040"
    }
  }
#-}

// -----

// A convolution: the filter's output channels are scaled by s = [2, -1]
// and the bias [0, 1] is broadcast over the batch and spatial dimensions
// and added after it.
// CHECK-LABEL: func.func @conv
// CHECK:         %[[F:.*]] = arith.constant dense<{{\[\[\[\[}}2.000000e+00, 4.000000e+00], [6.000000e+00, 8.000000e+00]]], {{\[\[\[}}-1.000000e+00, -0.000000e+00], [1.000000e+00, -2.000000e+00]]]]> : tensor<2x1x2x2xf32>
// CHECK:         %[[INIT:.*]] = linalg.fill
// CHECK-NEXT:    %[[CONV:.*]] = linalg.conv_2d_nchw_fchw ins(%arg0, %[[F]] : tensor<?x1x3x3xf32>, tensor<2x1x2x2xf32>) outs(%[[INIT]] : tensor<?x2x2x2xf32>)
// CHECK-NEXT:    %[[C:.*]] = arith.constant dense<[0.000000e+00, 1.000000e+00]> : tensor<2xf32>
// CHECK-NEXT:    %[[ZERO:.*]] = arith.constant 0 : index
// CHECK-NEXT:    %[[N:.*]] = tensor.dim %[[CONV]], %[[ZERO]] : tensor<?x2x2x2xf32>
// CHECK-NEXT:    %[[E:.*]] = tensor.empty(%[[N]]) : tensor<?x2x2x2xf32>
// CHECK-NEXT:    %[[B:.*]] = linalg.broadcast ins(%[[C]] : tensor<2xf32>) outs(%[[E]] : tensor<?x2x2x2xf32>) dimensions = [0, 2, 3]
// CHECK-NEXT:    %[[Y:.*]] = linalg.add ins(%[[CONV]], %[[B]] : tensor<?x2x2x2xf32>, tensor<?x2x2x2xf32>) outs(%[[E]] : tensor<?x2x2x2xf32>) -> tensor<?x2x2x2xf32>
// CHECK-NEXT:    return %[[Y]]
func.func @conv(%x: tensor<?x1x3x3xf32>) -> tensor<?x2x2x2xf32> {
  %f = arith.constant dense<[[[[1.0, 2.0], [3.0, 4.0]]], [[[1.0, 0.0], [-1.0, 2.0]]]]> : tensor<2x1x2x2xf32>
  %zero = arith.constant 0.0 : f32
  %c0 = arith.constant 0 : index
  %n = tensor.dim %x, %c0 : tensor<?x1x3x3xf32>
  %empty = tensor.empty(%n) : tensor<?x2x2x2xf32>
  %init = linalg.fill ins(%zero : f32) outs(%empty : tensor<?x2x2x2xf32>) -> tensor<?x2x2x2xf32>
  %conv = linalg.conv_2d_nchw_fchw ins(%x, %f : tensor<?x1x3x3xf32>, tensor<2x1x2x2xf32>)
      outs(%init : tensor<?x2x2x2xf32>) -> tensor<?x2x2x2xf32>
  %scale = arith.constant dense<[4.0, -3.0]> : tensor<2xf32>
  %beta = arith.constant dense<[1.0, -1.0]> : tensor<2xf32>
  %mean = arith.constant dense<[0.5, 2.0]> : tensor<2xf32>
  %var = arith.constant dense<[4.0, 9.0]> : tensor<2xf32>
  %y = qlr.batch_norm %conv, %scale, %beta, %mean, %var axis = 1 eps = 0.0
      : tensor<?x2x2x2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>
  return %y : tensor<?x2x2x2xf32>
}

// -----

// A batch norm that only scales (mean and beta zero) adds no bias.
// CHECK-LABEL: func.func @conv_scale_only
// CHECK:         %[[CONV:.*]] = linalg.conv_2d_nchw_fchw
// CHECK-NEXT:    return %[[CONV]]
func.func @conv_scale_only(%x: tensor<1x1x3x3xf32>) -> tensor<1x2x2x2xf32> {
  %f = arith.constant dense<1.0> : tensor<2x1x2x2xf32>
  %zero = arith.constant 0.0 : f32
  %empty = tensor.empty() : tensor<1x2x2x2xf32>
  %init = linalg.fill ins(%zero : f32) outs(%empty : tensor<1x2x2x2xf32>) -> tensor<1x2x2x2xf32>
  %conv = linalg.conv_2d_nchw_fchw ins(%x, %f : tensor<1x1x3x3xf32>, tensor<2x1x2x2xf32>)
      outs(%init : tensor<1x2x2x2xf32>) -> tensor<1x2x2x2xf32>
  %scale = arith.constant dense<[4.0, -3.0]> : tensor<2xf32>
  %zeros = arith.constant dense<0.0> : tensor<2xf32>
  %var = arith.constant dense<[4.0, 9.0]> : tensor<2xf32>
  %y = qlr.batch_norm %conv, %scale, %zeros, %zeros, %var axis = 1 eps = 0.0
      : tensor<1x2x2x2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>
  return %y : tensor<1x2x2x2xf32>
}

// -----

// A quantized filter absorbs the factor s = scale / sqrt(var + eps) = [2, 3]
// through its per-channel scales ([0.5, 2.0] -> [1.0, 6.0]); the codes stay
// as they are and the shift (beta - mean * s = [-1.5, -2.5]) becomes the
// qlr.conv2d's bias.
// CHECK-LABEL: func.func @conv2d_quantized
// CHECK-DAG:   %[[C:.*]] = arith.constant dense<{{\[}}{{\[}}{{\[}}{{\[}}18], [52]]], {{\[}}{{\[}}[-86], [119]]]]> : tensor<2x1x2x1xi8>
// CHECK-DAG:   %[[S:.*]] = arith.constant dense<[1.000000e+00, 6.000000e+00]> : tensor<2xf32>
// CHECK:       %[[Q:.*]] = qlr.pack %[[C]], %[[S]]
// CHECK:       %[[B:.*]] = arith.constant dense<[-1.500000e+00, -2.500000e+00]> : tensor<2xf32>
// CHECK:       %[[Y:.*]] = qlr.conv2d %arg0, %[[Q]], %[[B]] {groups = 2 : i64}
// CHECK-NOT:   qlr.batch_norm
// CHECK:       return %[[Y]]
func.func @conv2d_quantized(%x: tensor<1x2x3x3xf32>) -> tensor<1x2x2x2xf32> {
  %c = arith.constant dense<[[[[18], [52]]], [[[-86], [119]]]]> : tensor<2x1x2x1xi8>
  %s = arith.constant dense<[0.5, 2.0]> : tensor<2xf32>
  %q = qlr.pack %c, %s : tensor<2x1x2x1xi8>, tensor<2xf32> -> !qlr.qtensor<2x1x2x2xf32, #qlr.format<int4, channel = 0>>
  %y = qlr.conv2d %x, %q {groups = 2 : i64} : tensor<1x2x3x3xf32>, !qlr.qtensor<2x1x2x2xf32, #qlr.format<int4, channel = 0>> -> tensor<1x2x2x2xf32>
  %scale = arith.constant dense<[4.0, 9.0]> : tensor<2xf32>
  %beta = arith.constant dense<[0.5, 0.5]> : tensor<2xf32>
  %mean = arith.constant dense<[1.0, 1.0]> : tensor<2xf32>
  %var = arith.constant dense<[4.0, 9.0]> : tensor<2xf32>
  %z = qlr.batch_norm %y, %scale, %beta, %mean, %var axis = 1 eps = 0.0
      : tensor<1x2x2x2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>
  return %z : tensor<1x2x2x2xf32>
}

// -----

// A grouped linear weight: each row's group scales take the row's factor.
// CHECK-LABEL: func.func @linear_quantized_groups
// CHECK-DAG:   %[[S:.*]] = arith.constant dense<{{\[}}[1.000000e+00, 5.000000e-01], [6.000000e+00, 3.000000e+00]]> : tensor<2x2xf32>
// CHECK-DAG:   %[[B:.*]] = arith.constant dense<[-1.500000e+00, -2.500000e+00]> : tensor<2xf32>
// CHECK:       qlr.linear %arg0, %{{.*}}, %[[B]]
// CHECK-NOT:   qlr.batch_norm
func.func @linear_quantized_groups(%x: tensor<8x4xf32>) -> tensor<8x2xf32> {
  %c = arith.constant dense<[[1, 2], [3, 4]]> : tensor<2x2xi8>
  %s = arith.constant dense<[[0.5, 0.25], [2.0, 1.0]]> : tensor<2x2xf32>
  %q = qlr.pack %c, %s : tensor<2x2xi8>, tensor<2x2xf32> -> !qlr.qtensor<2x4xf32, #qlr.format<int4, group = 2>>
  %y = qlr.linear %x, %q : tensor<8x4xf32>, !qlr.qtensor<2x4xf32, #qlr.format<int4, group = 2>> -> tensor<8x2xf32>
  %scale = arith.constant dense<[4.0, 9.0]> : tensor<2xf32>
  %beta = arith.constant dense<[0.5, 0.5]> : tensor<2xf32>
  %mean = arith.constant dense<[1.0, 1.0]> : tensor<2xf32>
  %var = arith.constant dense<[4.0, 9.0]> : tensor<2xf32>
  %z = qlr.batch_norm %y, %scale, %beta, %mean, %var axis = 1 eps = 0.0
      : tensor<8x2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>
  return %z : tensor<8x2xf32>
}
