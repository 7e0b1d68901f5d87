// qlr.conv2d runs as PyTorch's nn.Conv2d computes it, for one group (float
// weight, asymmetric padding, strides 1 and 2), two groups (int4 weight,
// per output channel) and a depthwise convolution (int3 weight, bias,
// stride 2, padding 1). Inputs and weights are small integers and quarter
// steps, so every result is exact in f32; the CHECK lines were computed
// independently in NumPy (direct loops over the padded input).
// The quantized filters are decoded inside the convolutions (the CPU
// pipeline runs qlr-fuse-dequantize for them); the GPU schedule, emulated on
// the CPU, gives the same results.
// RUN: quant-opt %s --qlr-cpu-pipeline | mlir-runner -e main -entry-point-result=void -shared-libs=%mlir_runner_utils,%mlir_c_runner_utils | FileCheck %s
// RUN: quant-opt %s --pass-pipeline="builtin.module(qlr-gpu-pipeline{emulate=true})" | mlir-runner -e main -entry-point-result=void -shared-libs=%mlir_runner_utils,%mlir_c_runner_utils | FileCheck %s
// RUN: quant-opt %s --qlr-lower-to-linalg --qlr-fuse-dequantize=contractions=false | FileCheck %s --check-prefix=FUSED

// No decoder is left on its own: each convolution reads the codes and scales
// and gets the never-read i8 operand that sizes its kernel-window loops.
// FUSED-DAG:   #[[SCALE:.*]] = affine_map<(d0, d1, d2, d3, d4, d5, d6) -> (d1)>
// FUSED-DAG:   #[[WINDOW:.*]] = affine_map<(d0, d1, d2, d3, d4, d5, d6) -> (d4, d5, d6)>
// FUSED-LABEL: func.func @main
// FUSED:       linalg.conv_2d_nchw_fchw
// FUSED:       %[[E2:.*]] = tensor.empty() : tensor<2x2x2xi8>
// FUSED-NEXT:  linalg.generic {indexing_maps = [#{{.*}}, #[[SCALE]], #[[WINDOW]], #{{.*}}], {{.*}} ins(%{{.*}}, %{{.*}}, %[[E2]] : tensor<?x4x5x5xf32>, tensor<4xf32>, tensor<2x2x2xi8>) {{.*}} attrs =  {qlr.dequantize = #int4_c0}
// FUSED:       %[[E3:.*]] = tensor.empty() : tensor<1x3x3xi8>
// FUSED-NEXT:  linalg.generic {indexing_maps = [#{{.*}}, #[[SCALE]], #[[WINDOW]], #{{.*}}], {{.*}} ins(%{{.*}}, %{{.*}}, %[[E3]] : tensor<?x4x7x7xf32>, tensor<4xf32>, tensor<1x3x3xi8>) {{.*}} attrs =  {qlr.dequantize = #int3_c0}
// FUSED-NOT:   ["parallel", "parallel", "parallel", "parallel"]} ins(%{{.*}} : tensor<4xf32>)

func.func private @printMemrefF32(memref<*xf32>) attributes {llvm.emit_c_interface}

func.func @print(%t: tensor<?x?x?x?xf32>) {
  %m = bufferization.to_buffer %t : tensor<?x?x?x?xf32> to memref<?x?x?x?xf32>
  %u = memref.cast %m : memref<?x?x?x?xf32> to memref<*xf32>
  call @printMemrefF32(%u) : (memref<*xf32>) -> ()
  return
}

func.func @main() {
  %x = arith.constant dense<[[[[2.0, -3.0, -2.0, -2.0, -2.0], [2.0, 3.0, 1.0, -3.0, -3.0], [-1.0, 0.0, 1.0, 0.0, -2.0], [-2.0, 1.0, 2.0, -3.0, -3.0], [0.0, -1.0, 3.0, 0.0, -1.0]], [[0.0, 1.0, 1.0, -2.0, 2.0], [2.0, 3.0, 2.0, -2.0, -1.0], [1.0, 1.0, 1.0, 3.0, -1.0], [3.0, -3.0, -3.0, 3.0, 3.0], [-1.0, -3.0, -1.0, -3.0, 3.0]], [[1.0, 1.0, -2.0, 0.0, -2.0], [2.0, 0.0, -3.0, -2.0, 1.0], [0.0, -1.0, -2.0, -3.0, 1.0], [1.0, 0.0, 3.0, 3.0, -2.0], [1.0, 1.0, -2.0, -1.0, 0.0]], [[2.0, -1.0, 2.0, 1.0, -2.0], [-1.0, 2.0, 2.0, 1.0, -3.0], [1.0, -2.0, 2.0, 3.0, 0.0], [3.0, 2.0, -1.0, 3.0, -1.0], [-3.0, 1.0, 2.0, 1.0, -1.0]]], [[[3.0, 0.0, -1.0, -2.0, -2.0], [1.0, 2.0, -1.0, 1.0, 3.0], [-2.0, -2.0, 0.0, 0.0, -1.0], [-1.0, -3.0, 1.0, 3.0, -2.0], [2.0, -2.0, -3.0, 2.0, -2.0]], [[2.0, -1.0, 0.0, 3.0, 3.0], [0.0, -2.0, -2.0, 2.0, 1.0], [-2.0, 3.0, 3.0, 3.0, 1.0], [3.0, 1.0, 0.0, 3.0, 1.0], [2.0, -1.0, 2.0, 3.0, -3.0]], [[0.0, -1.0, -3.0, -3.0, -2.0], [-2.0, 2.0, -2.0, 1.0, 3.0], [0.0, -3.0, -3.0, -1.0, -1.0], [0.0, -1.0, 2.0, 0.0, 3.0], [3.0, 1.0, -3.0, -2.0, 2.0]], [[0.0, 3.0, 1.0, 2.0, -3.0], [-1.0, 1.0, 1.0, -1.0, -2.0], [1.0, -3.0, 1.0, 2.0, 1.0], [-3.0, 0.0, -1.0, 0.0, 1.0], [-2.0, -3.0, 0.0, 1.0, -3.0]]]]> : tensor<2x4x5x5xf32>
  %xd = tensor.cast %x : tensor<2x4x5x5xf32> to tensor<?x4x5x5xf32>

  // One group, float weight, padding [top 1, left 0, bottom 1, right 2].
  %w1 = arith.constant dense<[[[[2.0, 0.0], [2.0, 0.0], [1.0, 1.0]], [[0.0, -1.0], [1.0, -2.0], [1.0, 0.0]], [[-2.0, -1.0], [-2.0, 1.0], [1.0, -1.0]], [[2.0, -1.0], [-1.0, 2.0], [-2.0, -1.0]]], [[[-2.0, -1.0], [1.0, -1.0], [0.0, 0.0]], [[-2.0, -2.0], [-1.0, 0.0], [-2.0, 2.0]], [[2.0, 0.0], [1.0, 1.0], [-2.0, 2.0]], [[-2.0, 2.0], [2.0, 1.0], [-2.0, 2.0]]], [[[2.0, 2.0], [1.0, -1.0], [0.0, 0.0]], [[2.0, -1.0], [0.0, -1.0], [0.0, 0.0]], [[0.0, -1.0], [0.0, 1.0], [-2.0, 0.0]], [[1.0, -2.0], [1.0, 0.0], [2.0, -1.0]]]]> : tensor<3x4x3x2xf32>
  %b1 = arith.constant dense<[0.5, -1.0, 2.0]> : tensor<3xf32>
  %y1 = qlr.conv2d %xd, %w1, %b1 {strides = array<i64: 1, 2>, padding = array<i64: 1, 0, 1, 2>}
      : tensor<?x4x5x5xf32>, tensor<3x4x3x2xf32>, tensor<3xf32> -> tensor<?x3x5x3xf32>
  %p1 = tensor.cast %y1 : tensor<?x3x5x3xf32> to tensor<?x?x?x?xf32>
  call @print(%p1) : (tensor<?x?x?x?xf32>) -> ()

  // Two groups of two channels, int4 per output channel, no bias.
  %c2 = arith.constant dense<[[[[-75], [29]], [[33], [-123]]], [[[105], [-82]], [[82], [51]]], [[[-19], [54]], [[45], [66]]], [[[85], [52]], [[-118], [-22]]]]> : tensor<4x2x2x1xi8>
  %s2 = arith.constant dense<[0.5, 0.25, 1.0, 2.0]> : tensor<4xf32>
  %w2 = qlr.pack %c2, %s2 : tensor<4x2x2x1xi8>, tensor<4xf32> -> !qlr.qtensor<4x2x2x2xf32, #qlr.format<int4, channel = 0>>
  %y2 = qlr.conv2d %xd, %w2 {strides = array<i64: 2, 1>, groups = 2 : i64}
      : tensor<?x4x5x5xf32>, !qlr.qtensor<4x2x2x2xf32, #qlr.format<int4, channel = 0>> -> tensor<?x4x2x4xf32>
  %p2 = tensor.cast %y2 : tensor<?x4x2x4xf32> to tensor<?x?x?x?xf32>
  call @print(%p2) : (tensor<?x?x?x?xf32>) -> ()

  // Depthwise, int3 per output channel, bias, stride 2, padding 1.
  %c3 = arith.constant dense<[[[[-113, 1], [115, 1], [-8, 1]]], [[[71, 0], [37, 0], [15, 0]]], [[[38, 0], [-71, 1], [-66, 0]]], [[[20, 0], [1, 0], [-69, 1]]]]> : tensor<4x1x3x2xi8>
  %s3 = arith.constant dense<[0.5, 1.0, 0.25, 2.0]> : tensor<4xf32>
  %w3 = qlr.pack %c3, %s3 : tensor<4x1x3x2xi8>, tensor<4xf32> -> !qlr.qtensor<4x1x3x3xf32, #qlr.format<int3, channel = 0>>
  %b3 = arith.constant dense<[1.0, 0.0, -1.0, 0.5]> : tensor<4xf32>
  %y3 = qlr.conv2d %xd, %w3, %b3 {strides = array<i64: 2, 2>, padding = array<i64: 1, 1, 1, 1>, groups = 4 : i64}
      : tensor<?x4x5x5xf32>, !qlr.qtensor<4x1x3x3xf32, #qlr.format<int3, channel = 0>>, tensor<4xf32> -> tensor<?x4x3x3xf32>
  %p3 = tensor.cast %y3 : tensor<?x4x3x3xf32> to tensor<?x?x?x?xf32>
  call @print(%p3) : (tensor<?x?x?x?xf32>) -> ()
  return
}

// CHECK: {{\[+}}6.5,     -0.5,     7.5],
// CHECK-NEXT: {{\[+}}7.5,     13.5,     -11.5],
// CHECK-NEXT: {{\[+}}-20.5,     12.5,     -20.5],
// CHECK-NEXT: {{\[+}}9.5,     2.5,     0.5],
// CHECK-NEXT: {{\[+}}10.5,     1.5,     -1.5]],
// CHECK-NEXT: {{\[+}}13,     -7,     -5],
// CHECK-NEXT: {{\[+}}-17,     7,     -8],
// CHECK-NEXT: {{\[+}}-27,     14,     15],
// CHECK-NEXT: {{\[+}}-2,     -2,     -7],
// CHECK-NEXT: {{\[+}}1,     18,     -9]],
// CHECK-NEXT: {{\[+}}1,     15,     -10],
// CHECK-NEXT: {{\[+}}1,     9,     -8],
// CHECK-NEXT: {{\[+}}8,     -8,     -9],
// CHECK-NEXT: {{\[+}}1,     13,     -10],
// CHECK-NEXT: {{\[+}}10,     -12,     -1]]],
// CHECK-NEXT: {{\[+}}15.5,     -7.5,     17.5],
// CHECK-NEXT: {{\[+}}18.5,     -4.5,     -5.5],
// CHECK-NEXT: {{\[+}}-12.5,     15.5,     -3.5],
// CHECK-NEXT: {{\[+}}13.5,     -3.5,     -4.5],
// CHECK-NEXT: {{\[+}}-8.5,     -10.5,     -15.5]],
// CHECK-NEXT: {{\[+}}10,     8,     -18],
// CHECK-NEXT: {{\[+}}-9,     -1,     -2],
// CHECK-NEXT: {{\[+}}-3,     -7,     -10],
// CHECK-NEXT: {{\[+}}-25,     -13,     5],
// CHECK-NEXT: {{\[+}}1,     -17,     2]],
// CHECK-NEXT: {{\[+}}6,     5,     -13],
// CHECK-NEXT: {{\[+}}15,     -3,     6],
// CHECK-NEXT: {{\[+}}-6,     -11,     4],
// CHECK-NEXT: {{\[+}}-13,     2,     -8],
// CHECK-NEXT: {{\[+}}1,     -4,     -4]]]]
// CHECK: {{\[+}}-19,     -5.5,     12.5,     7],
// CHECK-NEXT: {{\[+}}-18,     -5,     6,     -12]],
// CHECK-NEXT: {{\[+}}-0.5,     -3.25,     0.5,     -0.25],
// CHECK-NEXT: {{\[+}}-5,     7.25,     -2,     -16.25]],
// CHECK-NEXT: {{\[+}}21,     -29,     -6,     10],
// CHECK-NEXT: {{\[+}}-17,     -62,     -63,     -4]],
// CHECK-NEXT: {{\[+}}0,     64,     84,     -10],
// CHECK-NEXT: {{\[+}}38,     -24,     16,     20]]],
// CHECK-NEXT: {{\[+}}-13,     13.5,     -13.5,     -30.5],
// CHECK-NEXT: {{\[+}}1.5,     -29,     -27.5,     -5]],
// CHECK-NEXT: {{\[+}}3.5,     9.5,     -2.5,     -7],
// CHECK-NEXT: {{\[+}}-6.75,     -12.5,     -7.5,     -6.25]],
// CHECK-NEXT: {{\[+}}-28,     -18,     -43,     -2],
// CHECK-NEXT: {{\[+}}28,     -58,     -26,     -26]],
// CHECK-NEXT: {{\[+}}10,     56,     38,     -28],
// CHECK-NEXT: {{\[+}}20,     0,     8,     2]]]]
// CHECK: {{\[+}}9,     -9.5,     1.5],
// CHECK-NEXT: {{\[+}}-1.5,     -1.5,     0.5],
// CHECK-NEXT: {{\[+}}4.5,     0,     0]],
// CHECK-NEXT: {{\[+}}-22,     20,     -5],
// CHECK-NEXT: {{\[+}}-18,     -16,     1],
// CHECK-NEXT: {{\[+}}9,     3,     -6]],
// CHECK-NEXT: {{\[+}}1.75,     -4.5,     -2.75],
// CHECK-NEXT: {{\[+}}-0.75,     -0.5,     1],
// CHECK-NEXT: {{\[+}}0.25,     -6.75,     1.25]],
// CHECK-NEXT: {{\[+}}-5.5,     -5.5,     -9.5],
// CHECK-NEXT: {{\[+}}22.5,     -41.5,     -17.5],
// CHECK-NEXT: {{\[+}}-11.5,     -49.5,     6.5]]],
// CHECK-NEXT: {{\[+}}8.5,     -5,     2.5],
// CHECK-NEXT: {{\[+}}-7.5,     19.5,     -12],
// CHECK-NEXT: {{\[+}}0.5,     -3,     5.5]],
// CHECK-NEXT: {{\[+}}12,     -21,     6],
// CHECK-NEXT: {{\[+}}-19,     -22,     11],
// CHECK-NEXT: {{\[+}}-11,     -19,     8]],
// CHECK-NEXT: {{\[+}}-4,     -5,     2.5],
// CHECK-NEXT: {{\[+}}-4,     -0.5,     1.75],
// CHECK-NEXT: {{\[+}}2.75,     -5.5,     2]],
// CHECK-NEXT: {{\[+}}-25.5,     -41.5,     2.5],
// CHECK-NEXT: {{\[+}}-5.5,     -7.5,     -5.5],
// CHECK-NEXT: {{\[+}}52.5,     14.5,     14.5]]]]
