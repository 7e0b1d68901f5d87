// Executes lowered qlr ops on the CPU and checks the numbers, which are
// computed by hand in the comments (docs/Design.md gives the decoding rules).
// The norms' outputs are checked to all six printed digits: their lowering
// is a fixed sequence of IEEE operations (exact sums of these small squares,
// no contraction or reassociation), rounded alike on every host; the other
// results are exact short binary fractions.
// RUN: quant-opt %s --qlr-cpu-pipeline | mlir-runner -e main -entry-point-result=void -shared-libs=%mlir_runner_utils,%mlir_c_runner_utils | FileCheck %s

func.func private @printMemrefF32(memref<*xf32>) attributes {llvm.emit_c_interface}

func.func @print(%t: tensor<?x?xf32>) {
  %m = bufferization.to_buffer %t : tensor<?x?xf32> to memref<?x?xf32>
  %u = memref.cast %m : memref<?x?xf32> to memref<*xf32>
  call @printMemrefF32(%u) : (memref<*xf32>) -> ()
  return
}

func.func @main() {
  %x = arith.constant dense<[[1.0, 2.0, 3.0, 4.0]]> : tensor<1x4xf32>

  // RMSNorm: mean square 7.5, so x / sqrt(7.5) * [1, 1, 1, 2].
  // CHECK: [0.365148, 0.730297, 1.09545, 2.92119]
  %w = arith.constant dense<[1.0, 1.0, 1.0, 2.0]> : tensor<4xf32>
  %rms = qlr.rms_norm %x, %w eps = 0.0 : tensor<1x4xf32>, tensor<4xf32>
  %rms_d = tensor.cast %rms : tensor<1x4xf32> to tensor<?x?xf32>
  call @print(%rms_d) : (tensor<?x?xf32>) -> ()

  // LayerNorm: mean 2.5, variance 1.25.
  // CHECK: [-1.34164, -0.447214, 0.447214, 1.34164]
  %ones = arith.constant dense<1.0> : tensor<4xf32>
  %zeros = arith.constant dense<0.0> : tensor<4xf32>
  %ln = qlr.layer_norm %x, %ones, %zeros eps = 0.0 : tensor<1x4xf32>, tensor<4xf32>, tensor<4xf32>
  %ln_d = tensor.cast %ln : tensor<1x4xf32> to tensor<?x?xf32>
  call @print(%ln_d) : (tensor<?x?xf32>) -> ()

  // int4, one scale per row (1.0, 0.5). Codes 8, 9, 10, 11 / 6, 7, 4, 5
  // (bytes 0x98 0xBA / 0x76 0x54) minus the implicit zero point 8 give
  // W = [[0, 1, 2, 3], [-1, -0.5, -2, -1.5]] and x·Wᵀ + b = [20 + 1, -14 - 1].
  // CHECK: [21, -15]
  %codes = arith.constant dense<[[-104, -70], [118, 84]]> : tensor<2x2xi8>
  %scales = arith.constant dense<[1.0, 0.5]> : tensor<2xf16>
  %q = qlr.pack %codes, %scales : tensor<2x2xi8>, tensor<2xf16>
      -> !qlr.qtensor<2x4xf32, #qlr.format<int4, channel = 0, scale = f16>>
  %bias = arith.constant dense<[1.0, -1.0]> : tensor<2xf32>
  %y = qlr.linear %x, %q, %bias : tensor<1x4xf32>,
      !qlr.qtensor<2x4xf32, #qlr.format<int4, channel = 0, scale = f16>>, tensor<2xf32> -> tensor<1x2xf32>
  %y_d = tensor.cast %y : tensor<1x2xf32> to tensor<?x?xf32>
  call @print(%y_d) : (tensor<?x?xf32>) -> ()

  // int3 asymmetric: codes 1..7, 0 straddle bytes (-47, 88, 31); zero point
  // 3, scale 0.5: W = [-1, -0.5, 0, 0.5, 1, 1.5, 2, -1.5].
  // CHECK: [-1, -0.5, 0, 0.5, 1, 1.5, 2, -1.5]
  %c3 = arith.constant dense<[[-47, 88, 31]]> : tensor<1x3xi8>
  %s3 = arith.constant dense<[[0.5]]> : tensor<1x1xf32>
  %z3 = arith.constant dense<[[3]]> : tensor<1x1xi8>
  %q3 = qlr.pack %c3, %s3, %z3 : tensor<1x3xi8>, tensor<1x1xf32>, tensor<1x1xi8>
      -> !qlr.qtensor<1x8xf32, #qlr.format<int3, group = 8, asymmetric>>
  %d3 = qlr.dequantize %q3 : !qlr.qtensor<1x8xf32, #qlr.format<int3, group = 8, asymmetric>> -> tensor<1x8xf32>
  %d3_d = tensor.cast %d3 : tensor<1x8xf32> to tensor<?x?xf32>
  call @print(%d3_d) : (tensor<?x?xf32>) -> ()

  // The same codes with a fractional zero point: int3 has 8 - 3 = 5
  // fraction bits, so the stored 80 is z = 80 / 32 = 2.5; scale 0.5 gives
  // W = 0.5 * (c - 2.5).
  // CHECK: [-0.75, -0.25, 0.25, 0.75, 1.25, 1.75, 2.25, -1.25]
  %z3f = arith.constant dense<[[80]]> : tensor<1x1xi8>
  %q3f = qlr.pack %c3, %s3, %z3f : tensor<1x3xi8>, tensor<1x1xf32>, tensor<1x1xi8>
      -> !qlr.qtensor<1x8xf32, #qlr.format<int3, group = 8, asymmetric = fractional>>
  %d3f = qlr.dequantize %q3f : !qlr.qtensor<1x8xf32, #qlr.format<int3, group = 8, asymmetric = fractional>> -> tensor<1x8xf32>
  %d3f_d = tensor.cast %d3f : tensor<1x8xf32> to tensor<?x?xf32>
  call @print(%d3f_d) : (tensor<?x?xf32>) -> ()

  // NF4 codes 0 and 15 are the table's -1 and 1; 7 is 0. Scale 2, and a
  // partial last group (3 values in groups of 2) with scale 4.
  // CHECK: [-2, 2, 0]
  %c4 = arith.constant dense<[[-16, 7]]> : tensor<1x2xi8>
  %s4 = arith.constant dense<[[2.0, 4.0]]> : tensor<1x2xf32>
  %q4 = qlr.pack %c4, %s4 : tensor<1x2xi8>, tensor<1x2xf32>
      -> !qlr.qtensor<1x3xf32, #qlr.format<nf4, group = 2>>
  %d4 = qlr.dequantize %q4 : !qlr.qtensor<1x3xf32, #qlr.format<nf4, group = 2>> -> tensor<1x3xf32>
  %d4_d = tensor.cast %d4 : tensor<1x3xf32> to tensor<?x?xf32>
  call @print(%d4_d) : (tensor<?x?xf32>) -> ()

  // Low rank: A = [[1], [2]], B = [[1, 0, 0, 1]]: W = [[1, 0, 0, 1], [2, 0, 0, 2]].
  // CHECK: [5, 10]
  %a = arith.constant dense<[[1.0], [2.0]]> : tensor<2x1xf32>
  %b = arith.constant dense<[[1.0, 0.0, 0.0, 1.0]]> : tensor<1x4xf32>
  %lr = qlr.lowrank %a, %b : tensor<2x1xf32>, tensor<1x4xf32> -> !qlr.lowrank<2x4xf32, rank = 1>
  %ylr = qlr.linear %x, %lr : tensor<1x4xf32>, !qlr.lowrank<2x4xf32, rank = 1> -> tensor<1x2xf32>
  %ylr_d = tensor.cast %ylr : tensor<1x2xf32> to tensor<?x?xf32>
  call @print(%ylr_d) : (tensor<?x?xf32>) -> ()

  // LoftQ form: the int4 weight above plus the same low-rank term.
  // CHECK: [25, -4]
  %loftq = qlr.lowrank %a, %b base %q : tensor<2x1xf32>, tensor<1x4xf32>,
      !qlr.qtensor<2x4xf32, #qlr.format<int4, channel = 0, scale = f16>>
      -> !qlr.lowrank<2x4xf32, rank = 1, base = #qlr.format<int4, channel = 0, scale = f16>>
  %yq = qlr.linear %x, %loftq : tensor<1x4xf32>,
      !qlr.lowrank<2x4xf32, rank = 1, base = #qlr.format<int4, channel = 0, scale = f16>> -> tensor<1x2xf32>
  %yq_d = tensor.cast %yq : tensor<1x2xf32> to tensor<?x?xf32>
  call @print(%yq_d) : (tensor<?x?xf32>) -> ()

  // BatchNorm over axis 1: (x - 1) / sqrt(4) * 2 + 3 for every channel.
  // CHECK: [3, 4, 5, 6]
  %one = arith.constant dense<1.0> : tensor<4xf32>
  %four = arith.constant dense<4.0> : tensor<4xf32>
  %two = arith.constant dense<2.0> : tensor<4xf32>
  %three = arith.constant dense<3.0> : tensor<4xf32>
  %bn = qlr.batch_norm %x, %two, %three, %one, %four axis = 1 eps = 0.0
      : tensor<1x4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>
  %bn_d = tensor.cast %bn : tensor<1x4xf32> to tensor<?x?xf32>
  call @print(%bn_d) : (tensor<?x?xf32>) -> ()
  return
}
