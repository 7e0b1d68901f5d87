// RUN: quant-opt %s --split-input-file --qlr-raise-transformer | FileCheck %s

// Options: each family can be switched off.
// RUN: quant-opt %s --split-input-file --pass-pipeline="builtin.module(qlr-raise-transformer{norms=false})" | FileCheck %s --check-prefix=NONORMS
// RUN: quant-opt %s --split-input-file --pass-pipeline="builtin.module(qlr-raise-transformer{linears=false})" | FileCheck %s --check-prefix=NOLINEARS

// Running the pass on its own output changes nothing.
// RUN: quant-opt %s --split-input-file --qlr-raise-transformer --qlr-raise-transformer | FileCheck %s
// RUN: quant-opt %s --split-input-file --qlr-raise-transformer -o %t.raised.mlir
// RUN: quant-opt %t.raised.mlir --split-input-file -o %t.plain.mlir
// RUN: quant-opt %t.raised.mlir --split-input-file --qlr-raise-transformer -o %t.again.mlir
// RUN: diff %t.plain.mlir %t.again.mlir

// The importer's output (qlr ops already) passes through unchanged.
// RUN: quant-opt %qlr_src_root/examples/tiny-llama-block.mlir -o %t.block.mlir
// RUN: quant-opt %qlr_src_root/examples/tiny-llama-block.mlir --qlr-raise-transformer -o %t.block.raised.mlir
// RUN: diff %t.block.mlir %t.block.raised.mlir

// qlr-lower-to-linalg's own f32 normalisations are recognised: lowering the
// example block and raising it gives its two RMSNorms back, named after
// their weights (qlr.name).
// RUN: quant-opt %qlr_src_root/examples/tiny-llama-block.mlir --qlr-lower-to-linalg --qlr-raise-transformer | FileCheck %s --check-prefix=ROUNDTRIP
// ROUNDTRIP-NOT: math.rsqrt
// ROUNDTRIP: qlr.rms_norm {{.+}} eps = 1.000000e-05 {qlr.name = "attn_norm"} : tensor<?x64xf32>, tensor<64xf32>
// ROUNDTRIP-NOT: math.rsqrt
// ROUNDTRIP: qlr.rms_norm {{.+}} eps = 1.000000e-05 {qlr.name = "ffn_norm"} : tensor<?x64xf32>, tensor<64xf32>
// ROUNDTRIP-NOT: math.rsqrt

// Raising preserves the numbers: the last case (@main, after the
// `//--- execution.mlir` marker) prints the same values before and after.
// RUN: split-file %s %t
// RUN: quant-opt %t/execution.mlir --qlr-cpu-pipeline | mlir-runner -e main -entry-point-result=void -shared-libs=%mlir_runner_utils,%mlir_c_runner_utils | FileCheck %s --check-prefix=EXEC
// RUN: quant-opt %t/execution.mlir --qlr-raise-transformer --qlr-cpu-pipeline | mlir-runner -e main -entry-point-result=void -shared-libs=%mlir_runner_utils,%mlir_c_runner_utils | FileCheck %s --check-prefix=EXEC

//===----------------------------------------------------------------------===//
// Linear layers
//===----------------------------------------------------------------------===//

// torch-mlir's aten.linear without bias: x · transpose(W) into a zero fill.
// The ops of the layer go; an unrelated unused constant stays.
// CHECK-LABEL: func.func @linear_transpose
// CHECK-SAME: (%[[X:.+]]: tensor<4x64xf32>)
// CHECK-NEXT: arith.constant 3 : index
// CHECK-NEXT: %[[W:.+]] = arith.constant dense<5.000000e-01> : tensor<32x64xf32>
// CHECK-NEXT: %[[Y:.+]] = qlr.linear %[[X]], %[[W]] : tensor<4x64xf32>, tensor<32x64xf32> -> tensor<4x32xf32>
// CHECK-NEXT: return %[[Y]]
// NONORMS-LABEL: func.func @linear_transpose
// NONORMS: qlr.linear
// NOLINEARS-LABEL: func.func @linear_transpose
// NOLINEARS-NOT: qlr.linear
// NOLINEARS: linalg.matmul
func.func @linear_transpose(%x: tensor<4x64xf32>) -> tensor<4x32xf32> {
  %unused = arith.constant 3 : index
  %w = arith.constant dense<0.5> : tensor<32x64xf32>
  %cst = arith.constant 0.000000e+00 : f32
  %0 = tensor.empty() : tensor<64x32xf32>
  %wt = linalg.transpose ins(%w : tensor<32x64xf32>) outs(%0 : tensor<64x32xf32>) permutation = [1, 0]
  %1 = tensor.empty() : tensor<4x32xf32>
  %2 = linalg.fill ins(%cst : f32) outs(%1 : tensor<4x32xf32>) -> tensor<4x32xf32>
  %y = linalg.matmul ins(%x, %wt : tensor<4x64xf32>, tensor<64x32xf32>) outs(%2 : tensor<4x32xf32>) -> tensor<4x32xf32>
  return %y : tensor<4x32xf32>
}

// -----

// The matmul reads B transposed through its indexing maps (f16, dynamic rows).
// CHECK-LABEL: func.func @linear_transposed_maps
// CHECK-SAME: (%[[X:.+]]: tensor<?x64xf16>, %[[W:.+]]: tensor<32x64xf16>)
// CHECK-NEXT: %[[Y:.+]] = qlr.linear %[[X]], %[[W]] : tensor<?x64xf16>, tensor<32x64xf16> -> tensor<?x32xf16>
// CHECK-NEXT: return %[[Y]]
func.func @linear_transposed_maps(%x: tensor<?x64xf16>, %w: tensor<32x64xf16>) -> tensor<?x32xf16> {
  %c0 = arith.constant 0 : index
  %cst = arith.constant 0.000000e+00 : f16
  %m = tensor.dim %x, %c0 : tensor<?x64xf16>
  %0 = tensor.empty(%m) : tensor<?x32xf16>
  %1 = linalg.fill ins(%cst : f16) outs(%0 : tensor<?x32xf16>) -> tensor<?x32xf16>
  %y = linalg.matmul
      indexing_maps = [affine_map<(m, n, k) -> (m, k)>,
                       affine_map<(m, n, k) -> (n, k)>,
                       affine_map<(m, n, k) -> (m, n)>]
      ins(%x, %w : tensor<?x64xf16>, tensor<32x64xf16>)
      outs(%1 : tensor<?x32xf16>) -> tensor<?x32xf16>
  return %y : tensor<?x32xf16>
}

// -----

// Older torch-mlir spells the transpose as a linalg.generic (bf16).
// CHECK-LABEL: func.func @linear_generic_transpose
// CHECK-SAME: (%[[X:.+]]: tensor<8x16xbf16>, %[[W:.+]]: tensor<24x16xbf16>)
// CHECK-NEXT: %[[Y:.+]] = qlr.linear %[[X]], %[[W]] : tensor<8x16xbf16>, tensor<24x16xbf16> -> tensor<8x24xbf16>
// CHECK-NEXT: return %[[Y]]
func.func @linear_generic_transpose(%x: tensor<8x16xbf16>, %w: tensor<24x16xbf16>) -> tensor<8x24xbf16> {
  %cst = arith.constant 0.000000e+00 : bf16
  %0 = tensor.empty() : tensor<16x24xbf16>
  %wt = linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d1, d0)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} ins(%w : tensor<24x16xbf16>) outs(%0 : tensor<16x24xbf16>) {
  ^bb0(%in: bf16, %out: bf16):
    linalg.yield %in : bf16
  } -> tensor<16x24xbf16>
  %1 = tensor.empty() : tensor<8x24xbf16>
  %2 = linalg.fill ins(%cst : bf16) outs(%1 : tensor<8x24xbf16>) -> tensor<8x24xbf16>
  %y = linalg.matmul ins(%x, %wt : tensor<8x16xbf16>, tensor<16x24xbf16>) outs(%2 : tensor<8x24xbf16>) -> tensor<8x24xbf16>
  return %y : tensor<8x24xbf16>
}

// -----

// aten.linear with bias: the bias add is a broadcasting linalg.generic.
// CHECK-LABEL: func.func @linear_bias_generic
// CHECK-SAME: (%[[X:.+]]: tensor<?x64xf32>, %[[W:.+]]: tensor<32x64xf32>, %[[B:.+]]: tensor<32xf32>)
// CHECK-NEXT: %[[Y:.+]] = qlr.linear %[[X]], %[[W]], %[[B]] : tensor<?x64xf32>, tensor<32x64xf32>, tensor<32xf32> -> tensor<?x32xf32>
// CHECK-NEXT: return %[[Y]]
func.func @linear_bias_generic(%x: tensor<?x64xf32>, %w: tensor<32x64xf32>, %b: tensor<32xf32>) -> tensor<?x32xf32> {
  %c0 = arith.constant 0 : index
  %cst = arith.constant 0.000000e+00 : f32
  %m = tensor.dim %x, %c0 : tensor<?x64xf32>
  %0 = tensor.empty() : tensor<64x32xf32>
  %wt = linalg.transpose ins(%w : tensor<32x64xf32>) outs(%0 : tensor<64x32xf32>) permutation = [1, 0]
  %1 = tensor.empty(%m) : tensor<?x32xf32>
  %2 = linalg.fill ins(%cst : f32) outs(%1 : tensor<?x32xf32>) -> tensor<?x32xf32>
  %mm = linalg.matmul ins(%x, %wt : tensor<?x64xf32>, tensor<64x32xf32>) outs(%2 : tensor<?x32xf32>) -> tensor<?x32xf32>
  %y = linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} ins(%mm, %b : tensor<?x32xf32>, tensor<32xf32>) outs(%1 : tensor<?x32xf32>) {
  ^bb0(%in: f32, %in_0: f32, %out: f32):
    %s = arith.addf %in, %in_0 : f32
    linalg.yield %s : f32
  } -> tensor<?x32xf32>
  return %y : tensor<?x32xf32>
}

// -----

// The bias add as linalg.add of a linalg.broadcast, bias first.
// CHECK-LABEL: func.func @linear_bias_broadcast_add
// CHECK-SAME: (%[[X:.+]]: tensor<4x64xf32>, %[[W:.+]]: tensor<32x64xf32>, %[[B:.+]]: tensor<32xf32>)
// CHECK-NEXT: %[[Y:.+]] = qlr.linear %[[X]], %[[W]], %[[B]] : tensor<4x64xf32>, tensor<32x64xf32>, tensor<32xf32> -> tensor<4x32xf32>
// CHECK-NEXT: return %[[Y]]
func.func @linear_bias_broadcast_add(%x: tensor<4x64xf32>, %w: tensor<32x64xf32>, %b: tensor<32xf32>) -> tensor<4x32xf32> {
  %cst = arith.constant 0.000000e+00 : f32
  %0 = tensor.empty() : tensor<64x32xf32>
  %wt = linalg.transpose ins(%w : tensor<32x64xf32>) outs(%0 : tensor<64x32xf32>) permutation = [1, 0]
  %1 = tensor.empty() : tensor<4x32xf32>
  %2 = linalg.fill ins(%cst : f32) outs(%1 : tensor<4x32xf32>) -> tensor<4x32xf32>
  %mm = linalg.matmul ins(%x, %wt : tensor<4x64xf32>, tensor<64x32xf32>) outs(%2 : tensor<4x32xf32>) -> tensor<4x32xf32>
  %bb = linalg.broadcast ins(%b : tensor<32xf32>) outs(%1 : tensor<4x32xf32>) dimensions = [0]
  %y = linalg.add ins(%bb, %mm : tensor<4x32xf32>, tensor<4x32xf32>) outs(%1 : tensor<4x32xf32>) -> tensor<4x32xf32>
  return %y : tensor<4x32xf32>
}

// -----

// A 3-D input against the weight broadcast along the batch (aten.matmul of
// [B, S, K] by Wᵀ), with a bias.
// CHECK-LABEL: func.func @linear_batch_matmul
// CHECK-SAME: (%[[X:.+]]: tensor<2x5x64xf32>, %[[W:.+]]: tensor<32x64xf32>, %[[B:.+]]: tensor<32xf32>)
// CHECK-NEXT: %[[Y:.+]] = qlr.linear %[[X]], %[[W]], %[[B]] : tensor<2x5x64xf32>, tensor<32x64xf32>, tensor<32xf32> -> tensor<2x5x32xf32>
// CHECK-NEXT: return %[[Y]]
func.func @linear_batch_matmul(%x: tensor<2x5x64xf32>, %w: tensor<32x64xf32>, %b: tensor<32xf32>) -> tensor<2x5x32xf32> {
  %cst = arith.constant 0.000000e+00 : f32
  %0 = tensor.empty() : tensor<64x32xf32>
  %wt = linalg.transpose ins(%w : tensor<32x64xf32>) outs(%0 : tensor<64x32xf32>) permutation = [1, 0]
  %1 = tensor.empty() : tensor<2x64x32xf32>
  %wb = linalg.broadcast ins(%wt : tensor<64x32xf32>) outs(%1 : tensor<2x64x32xf32>) dimensions = [0]
  %2 = tensor.empty() : tensor<2x5x32xf32>
  %3 = linalg.fill ins(%cst : f32) outs(%2 : tensor<2x5x32xf32>) -> tensor<2x5x32xf32>
  %mm = linalg.batch_matmul ins(%x, %wb : tensor<2x5x64xf32>, tensor<2x64x32xf32>) outs(%3 : tensor<2x5x32xf32>) -> tensor<2x5x32xf32>
  %y = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d2)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = ["parallel", "parallel", "parallel"]} ins(%mm, %b : tensor<2x5x32xf32>, tensor<32xf32>) outs(%2 : tensor<2x5x32xf32>) {
  ^bb0(%in: f32, %in_0: f32, %out: f32):
    %s = arith.addf %in_0, %in : f32
    linalg.yield %s : f32
  } -> tensor<2x5x32xf32>
  return %y : tensor<2x5x32xf32>
}

// -----

// The weight broadcast first and transposed after, bias-free.
// CHECK-LABEL: func.func @linear_batch_broadcast_then_transpose
// CHECK-SAME: (%[[X:.+]]: tensor<2x5x64xf32>, %[[W:.+]]: tensor<32x64xf32>)
// CHECK-NEXT: %[[Y:.+]] = qlr.linear %[[X]], %[[W]] : tensor<2x5x64xf32>, tensor<32x64xf32> -> tensor<2x5x32xf32>
// CHECK-NEXT: return %[[Y]]
func.func @linear_batch_broadcast_then_transpose(%x: tensor<2x5x64xf32>, %w: tensor<32x64xf32>) -> tensor<2x5x32xf32> {
  %cst = arith.constant 0.000000e+00 : f32
  %0 = tensor.empty() : tensor<2x32x64xf32>
  %wb = linalg.broadcast ins(%w : tensor<32x64xf32>) outs(%0 : tensor<2x32x64xf32>) dimensions = [0]
  %1 = tensor.empty() : tensor<2x64x32xf32>
  %wt = linalg.transpose ins(%wb : tensor<2x32x64xf32>) outs(%1 : tensor<2x64x32xf32>) permutation = [0, 2, 1]
  %2 = tensor.empty() : tensor<2x5x32xf32>
  %3 = linalg.fill ins(%cst : f32) outs(%2 : tensor<2x5x32xf32>) -> tensor<2x5x32xf32>
  %y = linalg.batch_matmul ins(%x, %wt : tensor<2x5x64xf32>, tensor<2x64x32xf32>) outs(%3 : tensor<2x5x32xf32>) -> tensor<2x5x32xf32>
  return %y : tensor<2x5x32xf32>
}

// -----

// batch_matmul reading the broadcast weight transposed through its maps.
// CHECK-LABEL: func.func @linear_batch_transposed_maps
// CHECK-SAME: (%[[X:.+]]: tensor<2x5x64xf32>, %[[W:.+]]: tensor<32x64xf32>)
// CHECK-NEXT: %[[Y:.+]] = qlr.linear %[[X]], %[[W]] : tensor<2x5x64xf32>, tensor<32x64xf32> -> tensor<2x5x32xf32>
// CHECK-NEXT: return %[[Y]]
func.func @linear_batch_transposed_maps(%x: tensor<2x5x64xf32>, %w: tensor<32x64xf32>) -> tensor<2x5x32xf32> {
  %cst = arith.constant 0.000000e+00 : f32
  %0 = tensor.empty() : tensor<2x32x64xf32>
  %wb = linalg.broadcast ins(%w : tensor<32x64xf32>) outs(%0 : tensor<2x32x64xf32>) dimensions = [0]
  %1 = tensor.empty() : tensor<2x5x32xf32>
  %2 = linalg.fill ins(%cst : f32) outs(%1 : tensor<2x5x32xf32>) -> tensor<2x5x32xf32>
  %y = linalg.batch_matmul
      indexing_maps = [affine_map<(b, m, n, k) -> (b, m, k)>,
                       affine_map<(b, m, n, k) -> (b, n, k)>,
                       affine_map<(b, m, n, k) -> (b, m, n)>]
      ins(%x, %wb : tensor<2x5x64xf32>, tensor<2x32x64xf32>)
      outs(%2 : tensor<2x5x32xf32>) -> tensor<2x5x32xf32>
  return %y : tensor<2x5x32xf32>
}

// -----

//===----------------------------------------------------------------------===//
// RMSNorm
//===----------------------------------------------------------------------===//

#id = affine_map<(d0, d1) -> (d0, d1)>
#row = affine_map<(d0, d1) -> (d0, 0)>
#col = affine_map<(d0, d1) -> (d1)>

// torch-mlir's decomposition of HF LlamaRMSNorm: one generic per step, the
// statistics kept as [rows, 1] (keepdim), x² as powf(x, 2), mean as a
// division by C, then rsqrt, x * r and w * h.
// CHECK-LABEL: func.func @rms_norm_separate
// CHECK-SAME: (%[[X:.+]]: tensor<4x64xf32>, %[[W:.+]]: tensor<64xf32>)
// CHECK-NEXT: %[[Y:.+]] = qlr.rms_norm %[[X]], %[[W]] eps = 1.000000e-05 : tensor<4x64xf32>, tensor<64xf32>
// CHECK-NEXT: return %[[Y]]
// NONORMS-LABEL: func.func @rms_norm_separate
// NONORMS-NOT: qlr.rms_norm
// NONORMS: math.rsqrt
// NOLINEARS-LABEL: func.func @rms_norm_separate
// NOLINEARS: qlr.rms_norm
func.func @rms_norm_separate(%x: tensor<4x64xf32>, %w: tensor<64xf32>) -> tensor<4x64xf32> {
  %cst = arith.constant 0.000000e+00 : f32
  %two = arith.constant 2.000000e+00 : f32
  %c64 = arith.constant 64 : i64
  %eps = arith.constant 9.99999974E-6 : f32
  %e = tensor.empty() : tensor<4x64xf32>
  %sq = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]} ins(%x : tensor<4x64xf32>) outs(%e : tensor<4x64xf32>) {
  ^bb0(%in: f32, %out: f32):
    %0 = math.powf %in, %two : f32
    linalg.yield %0 : f32
  } -> tensor<4x64xf32>
  %e1 = tensor.empty() : tensor<4x1xf32>
  %zero = linalg.fill ins(%cst : f32) outs(%e1 : tensor<4x1xf32>) -> tensor<4x1xf32>
  %sum = linalg.generic {indexing_maps = [#id, #row], iterator_types = ["parallel", "reduction"]} ins(%sq : tensor<4x64xf32>) outs(%zero : tensor<4x1xf32>) {
  ^bb0(%in: f32, %out: f32):
    %0 = arith.addf %in, %out : f32
    linalg.yield %0 : f32
  } -> tensor<4x1xf32>
  %mean = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]} ins(%sum : tensor<4x1xf32>) outs(%e1 : tensor<4x1xf32>) {
  ^bb0(%in: f32, %out: f32):
    %0 = arith.sitofp %c64 : i64 to f32
    %1 = arith.divf %in, %0 : f32
    linalg.yield %1 : f32
  } -> tensor<4x1xf32>
  %var = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]} ins(%mean : tensor<4x1xf32>) outs(%e1 : tensor<4x1xf32>) {
  ^bb0(%in: f32, %out: f32):
    %0 = arith.addf %in, %eps : f32
    linalg.yield %0 : f32
  } -> tensor<4x1xf32>
  %r = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]} ins(%var : tensor<4x1xf32>) outs(%e1 : tensor<4x1xf32>) {
  ^bb0(%in: f32, %out: f32):
    %0 = math.rsqrt %in : f32
    linalg.yield %0 : f32
  } -> tensor<4x1xf32>
  %h = linalg.generic {indexing_maps = [#id, #row, #id], iterator_types = ["parallel", "parallel"]} ins(%x, %r : tensor<4x64xf32>, tensor<4x1xf32>) outs(%e : tensor<4x64xf32>) {
  ^bb0(%in: f32, %in_0: f32, %out: f32):
    %0 = arith.mulf %in, %in_0 : f32
    linalg.yield %0 : f32
  } -> tensor<4x64xf32>
  %y = linalg.generic {indexing_maps = [#col, #id, #id], iterator_types = ["parallel", "parallel"]} ins(%w, %h : tensor<64xf32>, tensor<4x64xf32>) outs(%e : tensor<4x64xf32>) {
  ^bb0(%in: f32, %in_0: f32, %out: f32):
    %0 = arith.mulf %in, %in_0 : f32
    linalg.yield %0 : f32
  } -> tensor<4x64xf32>
  return %y : tensor<4x64xf32>
}

// -----

// The fused form (after element-wise fusion): one sum-of-squares reduction
// and one element-wise generic; the statistics without the unit dimension,
// the mean as a product by 1/C, a 3-D input with dynamic batch and sequence.
// CHECK-LABEL: func.func @rms_norm_fused
// CHECK-SAME: (%[[X:.+]]: tensor<?x?x64xf32>, %[[W:.+]]: tensor<64xf32>)
// CHECK-NEXT: %[[Y:.+]] = qlr.rms_norm %[[X]], %[[W]] eps = 9.9999999999999995E-7 : tensor<?x?x64xf32>, tensor<64xf32>
// CHECK-NEXT: return %[[Y]]
func.func @rms_norm_fused(%x: tensor<?x?x64xf32>, %w: tensor<64xf32>) -> tensor<?x?x64xf32> {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %cst = arith.constant 0.000000e+00 : f32
  %inv = arith.constant 1.562500e-02 : f32
  %eps = arith.constant 9.99999997E-7 : f32
  %b = tensor.dim %x, %c0 : tensor<?x?x64xf32>
  %s = tensor.dim %x, %c1 : tensor<?x?x64xf32>
  %e1 = tensor.empty(%b, %s) : tensor<?x?xf32>
  %zero = linalg.fill ins(%cst : f32) outs(%e1 : tensor<?x?xf32>) -> tensor<?x?xf32>
  %ss = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1)>], iterator_types = ["parallel", "parallel", "reduction"]} ins(%x : tensor<?x?x64xf32>) outs(%zero : tensor<?x?xf32>) {
  ^bb0(%in: f32, %out: f32):
    %0 = arith.mulf %in, %in : f32
    %1 = arith.addf %out, %0 : f32
    linalg.yield %1 : f32
  } -> tensor<?x?xf32>
  %e = tensor.empty(%b, %s) : tensor<?x?x64xf32>
  %y = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1)>, affine_map<(d0, d1, d2) -> (d2)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = ["parallel", "parallel", "parallel"]} ins(%x, %ss, %w : tensor<?x?x64xf32>, tensor<?x?xf32>, tensor<64xf32>) outs(%e : tensor<?x?x64xf32>) {
  ^bb0(%in: f32, %in_0: f32, %in_1: f32, %out: f32):
    %0 = arith.mulf %in_0, %inv : f32
    %1 = arith.addf %eps, %0 : f32
    %2 = math.rsqrt %1 : f32
    %3 = arith.mulf %in, %2 : f32
    %4 = arith.mulf %3, %in_1 : f32
    linalg.yield %4 : f32
  } -> tensor<?x?x64xf32>
  return %y : tensor<?x?x64xf32>
}

// -----

// Named ops: linalg.square, linalg.reduce, linalg.div by a splat constant,
// linalg.add, linalg.sqrt, then x / broadcast(sqrt) * broadcast(w). The
// 1/sqrt is a division, and eps a splat tensor.
// CHECK-LABEL: func.func @rms_norm_named_ops
// CHECK-SAME: (%[[X:.+]]: tensor<8x32xf32>, %[[W:.+]]: tensor<32xf32>)
// CHECK-NEXT: %[[Y:.+]] = qlr.rms_norm %[[X]], %[[W]] eps = 1.000000e-05 : tensor<8x32xf32>, tensor<32xf32>
// CHECK-NEXT: return %[[Y]]
func.func @rms_norm_named_ops(%x: tensor<8x32xf32>, %w: tensor<32xf32>) -> tensor<8x32xf32> {
  %cst = arith.constant 0.000000e+00 : f32
  %c = arith.constant dense<3.200000e+01> : tensor<8xf32>
  %eps = arith.constant dense<1.000000e-05> : tensor<8xf32>
  %e = tensor.empty() : tensor<8x32xf32>
  %sq = linalg.square ins(%x : tensor<8x32xf32>) outs(%e : tensor<8x32xf32>) -> tensor<8x32xf32>
  %e1 = tensor.empty() : tensor<8xf32>
  %zero = linalg.fill ins(%cst : f32) outs(%e1 : tensor<8xf32>) -> tensor<8xf32>
  %sum = linalg.reduce ins(%sq : tensor<8x32xf32>) outs(%zero : tensor<8xf32>) dimensions = [1]
    (%in: f32, %acc: f32) {
      %0 = arith.addf %in, %acc : f32
      linalg.yield %0 : f32
    }
  %mean = linalg.div ins(%sum, %c : tensor<8xf32>, tensor<8xf32>) outs(%e1 : tensor<8xf32>) -> tensor<8xf32>
  %var = linalg.add ins(%mean, %eps : tensor<8xf32>, tensor<8xf32>) outs(%e1 : tensor<8xf32>) -> tensor<8xf32>
  %std = linalg.sqrt ins(%var : tensor<8xf32>) outs(%e1 : tensor<8xf32>) -> tensor<8xf32>
  %stdb = linalg.broadcast ins(%std : tensor<8xf32>) outs(%e : tensor<8x32xf32>) dimensions = [1]
  %h = linalg.div ins(%x, %stdb : tensor<8x32xf32>, tensor<8x32xf32>) outs(%e : tensor<8x32xf32>) -> tensor<8x32xf32>
  %wb = linalg.broadcast ins(%w : tensor<32xf32>) outs(%e : tensor<8x32xf32>) dimensions = [0]
  %y = linalg.mul ins(%h, %wb : tensor<8x32xf32>, tensor<8x32xf32>) outs(%e : tensor<8x32xf32>) -> tensor<8x32xf32>
  return %y : tensor<8x32xf32>
}

// -----

// Constant factors may sit inside the sum (sum(x * x / C)); the inverse
// standard deviation as powf(v, -0.5); f16.
// CHECK-LABEL: func.func @rms_norm_scaled_sum
// CHECK-SAME: (%[[X:.+]]: tensor<2x16xf16>, %[[W:.+]]: tensor<16xf16>)
// CHECK-NEXT: %[[Y:.+]] = qlr.rms_norm %[[X]], %[[W]] eps = 9.9999999999999995E-7 : tensor<2x16xf16>, tensor<16xf16>
// CHECK-NEXT: return %[[Y]]
func.func @rms_norm_scaled_sum(%x: tensor<2x16xf16>, %w: tensor<16xf16>) -> tensor<2x16xf16> {
  %cst = arith.constant 0.000000e+00 : f16
  %c = arith.constant 1.600000e+01 : f16
  %eps = arith.constant 1.000000e-06 : f16
  %p = arith.constant -5.000000e-01 : f16
  %e1 = tensor.empty() : tensor<2xf16>
  %zero = linalg.fill ins(%cst : f16) outs(%e1 : tensor<2xf16>) -> tensor<2xf16>
  %ms = linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0)>], iterator_types = ["parallel", "reduction"]} ins(%x : tensor<2x16xf16>) outs(%zero : tensor<2xf16>) {
  ^bb0(%in: f16, %out: f16):
    %0 = arith.mulf %in, %in : f16
    %1 = arith.divf %0, %c : f16
    %2 = arith.addf %1, %out : f16
    linalg.yield %2 : f16
  } -> tensor<2xf16>
  %e = tensor.empty() : tensor<2x16xf16>
  %y = linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d1)>, affine_map<(d0, d1) -> (d0)>, affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} ins(%w, %ms, %x : tensor<16xf16>, tensor<2xf16>, tensor<2x16xf16>) outs(%e : tensor<2x16xf16>) {
  ^bb0(%in: f16, %in_0: f16, %in_1: f16, %out: f16):
    %0 = arith.addf %in_0, %eps : f16
    %1 = math.powf %0, %p : f16
    %2 = arith.mulf %in, %in_1 : f16
    %3 = arith.mulf %2, %1 : f16
    linalg.yield %3 : f16
  } -> tensor<2x16xf16>
  return %y : tensor<2x16xf16>
}

// -----

//===----------------------------------------------------------------------===//
// LayerNorm
//===----------------------------------------------------------------------===//

#id = affine_map<(d0, d1) -> (d0, d1)>
#row = affine_map<(d0, d1) -> (d0, 0)>
#col = affine_map<(d0, d1) -> (d1)>

// torch-mlir's decomposition of aten.native_layer_norm: mean, x - mean,
// (x - mean)², variance, rsqrt(var + eps), then * rstd, * w, + b; one
// generic per step, statistics as [rows, 1].
// CHECK-LABEL: func.func @layer_norm_separate
// CHECK-SAME: (%[[X:.+]]: tensor<3x48xf32>, %[[W:.+]]: tensor<48xf32>, %[[B:.+]]: tensor<48xf32>)
// CHECK-NEXT: %[[Y:.+]] = qlr.layer_norm %[[X]], %[[W]], %[[B]] eps = 9.9999999999999998E-13 : tensor<3x48xf32>, tensor<48xf32>, tensor<48xf32>
// CHECK-NEXT: return %[[Y]]
func.func @layer_norm_separate(%x: tensor<3x48xf32>, %w: tensor<48xf32>, %b: tensor<48xf32>) -> tensor<3x48xf32> {
  %cst = arith.constant 0.000000e+00 : f32
  %n = arith.constant 4.800000e+01 : f32
  %eps = arith.constant 9.99999996E-13 : f32
  %e = tensor.empty() : tensor<3x48xf32>
  %e1 = tensor.empty() : tensor<3x1xf32>
  %zero = linalg.fill ins(%cst : f32) outs(%e1 : tensor<3x1xf32>) -> tensor<3x1xf32>
  %sum = linalg.generic {indexing_maps = [#id, #row], iterator_types = ["parallel", "reduction"]} ins(%x : tensor<3x48xf32>) outs(%zero : tensor<3x1xf32>) {
  ^bb0(%in: f32, %out: f32):
    %0 = arith.addf %in, %out : f32
    linalg.yield %0 : f32
  } -> tensor<3x1xf32>
  %mean = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]} ins(%sum : tensor<3x1xf32>) outs(%e1 : tensor<3x1xf32>) {
  ^bb0(%in: f32, %out: f32):
    %0 = arith.divf %in, %n : f32
    linalg.yield %0 : f32
  } -> tensor<3x1xf32>
  %d = linalg.generic {indexing_maps = [#id, #row, #id], iterator_types = ["parallel", "parallel"]} ins(%x, %mean : tensor<3x48xf32>, tensor<3x1xf32>) outs(%e : tensor<3x48xf32>) {
  ^bb0(%in: f32, %in_0: f32, %out: f32):
    %0 = arith.subf %in, %in_0 : f32
    linalg.yield %0 : f32
  } -> tensor<3x48xf32>
  %sq = linalg.generic {indexing_maps = [#id, #id, #id], iterator_types = ["parallel", "parallel"]} ins(%d, %d : tensor<3x48xf32>, tensor<3x48xf32>) outs(%e : tensor<3x48xf32>) {
  ^bb0(%in: f32, %in_0: f32, %out: f32):
    %0 = arith.mulf %in, %in_0 : f32
    linalg.yield %0 : f32
  } -> tensor<3x48xf32>
  %vsum = linalg.generic {indexing_maps = [#id, #row], iterator_types = ["parallel", "reduction"]} ins(%sq : tensor<3x48xf32>) outs(%zero : tensor<3x1xf32>) {
  ^bb0(%in: f32, %out: f32):
    %0 = arith.addf %in, %out : f32
    linalg.yield %0 : f32
  } -> tensor<3x1xf32>
  %var = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]} ins(%vsum : tensor<3x1xf32>) outs(%e1 : tensor<3x1xf32>) {
  ^bb0(%in: f32, %out: f32):
    %0 = arith.divf %in, %n : f32
    linalg.yield %0 : f32
  } -> tensor<3x1xf32>
  %rstd = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]} ins(%var : tensor<3x1xf32>) outs(%e1 : tensor<3x1xf32>) {
  ^bb0(%in: f32, %out: f32):
    %0 = arith.addf %in, %eps : f32
    %1 = math.rsqrt %0 : f32
    linalg.yield %1 : f32
  } -> tensor<3x1xf32>
  %normed = linalg.generic {indexing_maps = [#id, #row, #id], iterator_types = ["parallel", "parallel"]} ins(%d, %rstd : tensor<3x48xf32>, tensor<3x1xf32>) outs(%e : tensor<3x48xf32>) {
  ^bb0(%in: f32, %in_0: f32, %out: f32):
    %0 = arith.mulf %in, %in_0 : f32
    linalg.yield %0 : f32
  } -> tensor<3x48xf32>
  %scaled = linalg.generic {indexing_maps = [#id, #col, #id], iterator_types = ["parallel", "parallel"]} ins(%normed, %w : tensor<3x48xf32>, tensor<48xf32>) outs(%e : tensor<3x48xf32>) {
  ^bb0(%in: f32, %in_0: f32, %out: f32):
    %0 = arith.mulf %in, %in_0 : f32
    linalg.yield %0 : f32
  } -> tensor<3x48xf32>
  %y = linalg.generic {indexing_maps = [#id, #col, #id], iterator_types = ["parallel", "parallel"]} ins(%scaled, %b : tensor<3x48xf32>, tensor<48xf32>) outs(%e : tensor<3x48xf32>) {
  ^bb0(%in: f32, %in_0: f32, %out: f32):
    %0 = arith.addf %in, %in_0 : f32
    linalg.yield %0 : f32
  } -> tensor<3x48xf32>
  return %y : tensor<3x48xf32>
}

// -----

// The fused form: a sum reduction, a variance reduction that reads the sum
// and recomputes the mean, and one element-wise generic (with 1/sqrt and the
// mean as a product by 1/C); the statistics without the unit dimension.
// CHECK-LABEL: func.func @layer_norm_fused
// CHECK-SAME: (%[[X:.+]]: tensor<?x32xf32>, %[[W:.+]]: tensor<32xf32>, %[[B:.+]]: tensor<32xf32>)
// CHECK-NEXT: %[[Y:.+]] = qlr.layer_norm %[[X]], %[[W]], %[[B]] eps = 1.000000e-05 : tensor<?x32xf32>, tensor<32xf32>, tensor<32xf32>
// CHECK-NEXT: return %[[Y]]
func.func @layer_norm_fused(%x: tensor<?x32xf32>, %w: tensor<32xf32>, %b: tensor<32xf32>) -> tensor<?x32xf32> {
  %c0 = arith.constant 0 : index
  %cst = arith.constant 0.000000e+00 : f32
  %one = arith.constant 1.000000e+00 : f32
  %n = arith.constant 3.200000e+01 : f32
  %inv = arith.constant 3.125000e-02 : f32
  %eps = arith.constant 9.99999974E-6 : f32
  %m = tensor.dim %x, %c0 : tensor<?x32xf32>
  %e1 = tensor.empty(%m) : tensor<?xf32>
  %zero = linalg.fill ins(%cst : f32) outs(%e1 : tensor<?xf32>) -> tensor<?xf32>
  %sum = linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0)>], iterator_types = ["parallel", "reduction"]} ins(%x : tensor<?x32xf32>) outs(%zero : tensor<?xf32>) {
  ^bb0(%in: f32, %out: f32):
    %0 = arith.addf %in, %out : f32
    linalg.yield %0 : f32
  } -> tensor<?xf32>
  %vsum = linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0)>, affine_map<(d0, d1) -> (d0)>], iterator_types = ["parallel", "reduction"]} ins(%x, %sum : tensor<?x32xf32>, tensor<?xf32>) outs(%zero : tensor<?xf32>) {
  ^bb0(%in: f32, %in_0: f32, %out: f32):
    %0 = arith.divf %in_0, %n : f32
    %1 = arith.subf %in, %0 : f32
    %2 = arith.mulf %1, %1 : f32
    %3 = arith.addf %out, %2 : f32
    linalg.yield %3 : f32
  } -> tensor<?xf32>
  %e = tensor.empty(%m) : tensor<?x32xf32>
  %y = linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0)>, affine_map<(d0, d1) -> (d0)>, affine_map<(d0, d1) -> (d1)>, affine_map<(d0, d1) -> (d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} ins(%x, %sum, %vsum, %w, %b : tensor<?x32xf32>, tensor<?xf32>, tensor<?xf32>, tensor<32xf32>, tensor<32xf32>) outs(%e : tensor<?x32xf32>) {
  ^bb0(%in: f32, %s: f32, %v: f32, %g: f32, %bias: f32, %out: f32):
    %0 = arith.mulf %s, %inv : f32
    %1 = arith.subf %in, %0 : f32
    %2 = arith.mulf %v, %inv : f32
    %3 = arith.addf %2, %eps : f32
    %4 = math.sqrt %3 : f32
    %5 = arith.divf %one, %4 : f32
    %6 = arith.mulf %g, %1 : f32
    %7 = arith.mulf %6, %5 : f32
    %8 = arith.addf %bias, %7 : f32
    linalg.yield %8 : f32
  } -> tensor<?x32xf32>
  return %y : tensor<?x32xf32>
}

// -----

//===----------------------------------------------------------------------===//
// A transformer block
//===----------------------------------------------------------------------===//

#id = affine_map<(d0, d1) -> (d0, d1)>
#rows = affine_map<(d0, d1) -> (d0)>
#col = affine_map<(d0, d1) -> (d1)>

// A LLaMA-style block as a frontend emits it: RMSNorm, the q/k/v
// projections, a stand-in for attention (q * k + v), the output projection
// and residual, RMSNorm, the SwiGLU MLP (gate/up, silu(gate) * up, down) and
// residual. Every norm and linear is raised; the rest is left as it is.
// CHECK-LABEL: func.func @transformer_block
// CHECK-SAME: (%[[X:.+]]: tensor<?x64xf32>)
// CHECK-DAG: %[[NORM1:.+]] = arith.constant dense<1.000000e+00> : tensor<64xf32>
// CHECK-DAG: %[[NORM2:.+]] = arith.constant dense<2.000000e+00> : tensor<64xf32>
// CHECK-DAG: %[[WQ:.+]] = arith.constant dense<1.000000e-01> : tensor<64x64xf32>
// CHECK-DAG: %[[WK:.+]] = arith.constant dense<2.000000e-01> : tensor<64x64xf32>
// CHECK-DAG: %[[WV:.+]] = arith.constant dense<3.000000e-01> : tensor<64x64xf32>
// CHECK-DAG: %[[WO:.+]] = arith.constant dense<4.000000e-01> : tensor<64x64xf32>
// CHECK-DAG: %[[WG:.+]] = arith.constant dense<5.000000e-01> : tensor<128x64xf32>
// CHECK-DAG: %[[WU:.+]] = arith.constant dense<6.000000e-01> : tensor<128x64xf32>
// CHECK-DAG: %[[WD:.+]] = arith.constant dense<0.699999988> : tensor<64x128xf32>
// CHECK-DAG: %[[BQ:.+]] = arith.constant dense<0.00999999977> : tensor<64xf32>
// CHECK: %[[H:.+]] = qlr.rms_norm %[[X]], %[[NORM1]] eps = 1.000000e-05
// CHECK-NEXT: %[[Q:.+]] = qlr.linear %[[H]], %[[WQ]], %[[BQ]] : tensor<?x64xf32>, tensor<64x64xf32>, tensor<64xf32> -> tensor<?x64xf32>
// CHECK-NEXT: %[[K:.+]] = qlr.linear %[[H]], %[[WK]] : tensor<?x64xf32>, tensor<64x64xf32> -> tensor<?x64xf32>
// CHECK-NEXT: %[[V:.+]] = qlr.linear %[[H]], %[[WV]] : tensor<?x64xf32>, tensor<64x64xf32> -> tensor<?x64xf32>
// CHECK: %[[MIX:.+]] = linalg.generic
// CHECK-SAME: ins(%[[Q]], %[[K]], %[[V]] :
// CHECK: %[[O:.+]] = qlr.linear %[[MIX]], %[[WO]] : tensor<?x64xf32>, tensor<64x64xf32> -> tensor<?x64xf32>
// CHECK: %[[R1:.+]] = linalg.add ins(%[[X]], %[[O]] :
// CHECK-NEXT: %[[H2:.+]] = qlr.rms_norm %[[R1]], %[[NORM2]] eps = 1.000000e-05
// CHECK-NEXT: %[[G:.+]] = qlr.linear %[[H2]], %[[WG]] : tensor<?x64xf32>, tensor<128x64xf32> -> tensor<?x128xf32>
// CHECK-NEXT: %[[U:.+]] = qlr.linear %[[H2]], %[[WU]] : tensor<?x64xf32>, tensor<128x64xf32> -> tensor<?x128xf32>
// CHECK: %[[ACT:.+]] = linalg.generic
// CHECK-SAME: ins(%[[G]], %[[U]] :
// CHECK: math.exp
// CHECK: %[[D:.+]] = qlr.linear %[[ACT]], %[[WD]] : tensor<?x128xf32>, tensor<64x128xf32> -> tensor<?x64xf32>
// CHECK-NEXT: %[[R2:.+]] = linalg.add ins(%[[R1]], %[[D]] :
// CHECK-NEXT: return %[[R2]]
// CHECK-NOT: linalg.matmul
// CHECK-NOT: linalg.transpose
// CHECK-NOT: math.rsqrt
// NONORMS-LABEL: func.func @transformer_block
// NONORMS-COUNT-7: qlr.linear
// NONORMS-NOT: qlr.rms_norm
// NOLINEARS-LABEL: func.func @transformer_block
// NOLINEARS-COUNT-2: qlr.rms_norm
// NOLINEARS-NOT: qlr.linear
func.func @transformer_block(%x: tensor<?x64xf32>) -> tensor<?x64xf32> {
  %c0 = arith.constant 0 : index
  %cst = arith.constant 0.000000e+00 : f32
  %one = arith.constant 1.000000e+00 : f32
  %inv = arith.constant 1.562500e-02 : f32
  %eps = arith.constant 9.99999974E-6 : f32
  %norm1 = arith.constant dense<1.000000e+00> : tensor<64xf32>
  %norm2 = arith.constant dense<2.000000e+00> : tensor<64xf32>
  %wq = arith.constant dense<1.000000e-01> : tensor<64x64xf32>
  %wk = arith.constant dense<2.000000e-01> : tensor<64x64xf32>
  %wv = arith.constant dense<3.000000e-01> : tensor<64x64xf32>
  %wo = arith.constant dense<4.000000e-01> : tensor<64x64xf32>
  %wg = arith.constant dense<5.000000e-01> : tensor<128x64xf32>
  %wu = arith.constant dense<6.000000e-01> : tensor<128x64xf32>
  %wd = arith.constant dense<7.000000e-01> : tensor<64x128xf32>
  %bq = arith.constant dense<1.000000e-02> : tensor<64xf32>
  %m = tensor.dim %x, %c0 : tensor<?x64xf32>
  %e64 = tensor.empty(%m) : tensor<?x64xf32>
  %e128 = tensor.empty(%m) : tensor<?x128xf32>
  %erow = tensor.empty(%m) : tensor<?xf32>
  %zrow = linalg.fill ins(%cst : f32) outs(%erow : tensor<?xf32>) -> tensor<?xf32>
  %z64 = linalg.fill ins(%cst : f32) outs(%e64 : tensor<?x64xf32>) -> tensor<?x64xf32>
  %z128 = linalg.fill ins(%cst : f32) outs(%e128 : tensor<?x128xf32>) -> tensor<?x128xf32>
  %t64 = tensor.empty() : tensor<64x64xf32>
  %t64x128 = tensor.empty() : tensor<64x128xf32>
  %t128x64 = tensor.empty() : tensor<128x64xf32>

  // Attention sublayer.
  %ss1 = linalg.generic {indexing_maps = [#id, #rows], iterator_types = ["parallel", "reduction"]} ins(%x : tensor<?x64xf32>) outs(%zrow : tensor<?xf32>) {
  ^bb0(%in: f32, %out: f32):
    %0 = arith.mulf %in, %in : f32
    %1 = arith.addf %out, %0 : f32
    linalg.yield %1 : f32
  } -> tensor<?xf32>
  %h = linalg.generic {indexing_maps = [#id, #rows, #col, #id], iterator_types = ["parallel", "parallel"]} ins(%x, %ss1, %norm1 : tensor<?x64xf32>, tensor<?xf32>, tensor<64xf32>) outs(%e64 : tensor<?x64xf32>) {
  ^bb0(%in: f32, %s: f32, %gamma: f32, %out: f32):
    %0 = arith.mulf %s, %inv : f32
    %1 = arith.addf %0, %eps : f32
    %2 = math.rsqrt %1 : f32
    %3 = arith.mulf %in, %2 : f32
    %4 = arith.mulf %3, %gamma : f32
    linalg.yield %4 : f32
  } -> tensor<?x64xf32>
  %wqt = linalg.transpose ins(%wq : tensor<64x64xf32>) outs(%t64 : tensor<64x64xf32>) permutation = [1, 0]
  %q0 = linalg.matmul ins(%h, %wqt : tensor<?x64xf32>, tensor<64x64xf32>) outs(%z64 : tensor<?x64xf32>) -> tensor<?x64xf32>
  %q = linalg.generic {indexing_maps = [#id, #col, #id], iterator_types = ["parallel", "parallel"]} ins(%q0, %bq : tensor<?x64xf32>, tensor<64xf32>) outs(%e64 : tensor<?x64xf32>) {
  ^bb0(%in: f32, %bias: f32, %out: f32):
    %0 = arith.addf %in, %bias : f32
    linalg.yield %0 : f32
  } -> tensor<?x64xf32>
  %wkt = linalg.transpose ins(%wk : tensor<64x64xf32>) outs(%t64 : tensor<64x64xf32>) permutation = [1, 0]
  %k = linalg.matmul ins(%h, %wkt : tensor<?x64xf32>, tensor<64x64xf32>) outs(%z64 : tensor<?x64xf32>) -> tensor<?x64xf32>
  %wvt = linalg.transpose ins(%wv : tensor<64x64xf32>) outs(%t64 : tensor<64x64xf32>) permutation = [1, 0]
  %v = linalg.matmul ins(%h, %wvt : tensor<?x64xf32>, tensor<64x64xf32>) outs(%z64 : tensor<?x64xf32>) -> tensor<?x64xf32>
  %mix = linalg.generic {indexing_maps = [#id, #id, #id, #id], iterator_types = ["parallel", "parallel"]} ins(%q, %k, %v : tensor<?x64xf32>, tensor<?x64xf32>, tensor<?x64xf32>) outs(%e64 : tensor<?x64xf32>) {
  ^bb0(%qi: f32, %ki: f32, %vi: f32, %out: f32):
    %0 = arith.mulf %qi, %ki : f32
    %1 = arith.addf %0, %vi : f32
    linalg.yield %1 : f32
  } -> tensor<?x64xf32>
  %wot = linalg.transpose ins(%wo : tensor<64x64xf32>) outs(%t64 : tensor<64x64xf32>) permutation = [1, 0]
  %o = linalg.matmul ins(%mix, %wot : tensor<?x64xf32>, tensor<64x64xf32>) outs(%z64 : tensor<?x64xf32>) -> tensor<?x64xf32>
  %r1 = linalg.add ins(%x, %o : tensor<?x64xf32>, tensor<?x64xf32>) outs(%e64 : tensor<?x64xf32>) -> tensor<?x64xf32>

  // MLP sublayer.
  %ss2 = linalg.generic {indexing_maps = [#id, #rows], iterator_types = ["parallel", "reduction"]} ins(%r1 : tensor<?x64xf32>) outs(%zrow : tensor<?xf32>) {
  ^bb0(%in: f32, %out: f32):
    %0 = arith.mulf %in, %in : f32
    %1 = arith.addf %out, %0 : f32
    linalg.yield %1 : f32
  } -> tensor<?xf32>
  %h2 = linalg.generic {indexing_maps = [#id, #rows, #col, #id], iterator_types = ["parallel", "parallel"]} ins(%r1, %ss2, %norm2 : tensor<?x64xf32>, tensor<?xf32>, tensor<64xf32>) outs(%e64 : tensor<?x64xf32>) {
  ^bb0(%in: f32, %s: f32, %gamma: f32, %out: f32):
    %0 = arith.mulf %s, %inv : f32
    %1 = arith.addf %0, %eps : f32
    %2 = math.rsqrt %1 : f32
    %3 = arith.mulf %in, %2 : f32
    %4 = arith.mulf %3, %gamma : f32
    linalg.yield %4 : f32
  } -> tensor<?x64xf32>
  %wgt = linalg.transpose ins(%wg : tensor<128x64xf32>) outs(%t64x128 : tensor<64x128xf32>) permutation = [1, 0]
  %g = linalg.matmul ins(%h2, %wgt : tensor<?x64xf32>, tensor<64x128xf32>) outs(%z128 : tensor<?x128xf32>) -> tensor<?x128xf32>
  %wut = linalg.transpose ins(%wu : tensor<128x64xf32>) outs(%t64x128 : tensor<64x128xf32>) permutation = [1, 0]
  %u = linalg.matmul ins(%h2, %wut : tensor<?x64xf32>, tensor<64x128xf32>) outs(%z128 : tensor<?x128xf32>) -> tensor<?x128xf32>
  %act = linalg.generic {indexing_maps = [#id, #id, #id], iterator_types = ["parallel", "parallel"]} ins(%g, %u : tensor<?x128xf32>, tensor<?x128xf32>) outs(%e128 : tensor<?x128xf32>) {
  ^bb0(%gate: f32, %up: f32, %out: f32):
    %0 = arith.negf %gate : f32
    %1 = math.exp %0 : f32
    %2 = arith.addf %one, %1 : f32
    %3 = arith.divf %gate, %2 : f32
    %4 = arith.mulf %3, %up : f32
    linalg.yield %4 : f32
  } -> tensor<?x128xf32>
  %wdt = linalg.transpose ins(%wd : tensor<64x128xf32>) outs(%t128x64 : tensor<128x64xf32>) permutation = [1, 0]
  %d = linalg.matmul ins(%act, %wdt : tensor<?x128xf32>, tensor<128x64xf32>) outs(%z64 : tensor<?x64xf32>) -> tensor<?x64xf32>
  %r2 = linalg.add ins(%r1, %d : tensor<?x64xf32>, tensor<?x64xf32>) outs(%e64 : tensor<?x64xf32>) -> tensor<?x64xf32>
  return %r2 : tensor<?x64xf32>
}

// -----

//===----------------------------------------------------------------------===//
// qlr ops already present
//===----------------------------------------------------------------------===//

!q = !qlr.qtensor<32x64xf32, #qlr.format<int4, group = 32>>

// The importer's form: qlr ops, quantized weights, and element-wise linalg
// that is not a layer. Nothing changes, not even an unused constant.
// CHECK-LABEL: func.func @importer_output
// CHECK-NEXT: arith.constant 7 : index
// CHECK-NEXT: qlr.rms_norm
// CHECK-NEXT: qlr.pack
// CHECK-NEXT: qlr.linear
// CHECK-NEXT: tensor.empty
// CHECK-NEXT: linalg.generic
// CHECK: math.exp
// CHECK: return
// NONORMS-LABEL: func.func @importer_output
// NOLINEARS-LABEL: func.func @importer_output
func.func @importer_output(%x: tensor<?x64xf32>, %g: tensor<64xf32>, %c: tensor<32x32xi8>, %s: tensor<32x2xf32>, %n: index) -> tensor<?x32xf32> {
  %unused = arith.constant 7 : index
  %h = qlr.rms_norm %x, %g eps = 1.000000e-05 : tensor<?x64xf32>, tensor<64xf32>
  %w = qlr.pack %c, %s : tensor<32x32xi8>, tensor<32x2xf32> -> !q
  %y = qlr.linear %h, %w : tensor<?x64xf32>, !q -> tensor<?x32xf32>
  %e = tensor.empty(%n) : tensor<?x32xf32>
  %a = linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} ins(%y : tensor<?x32xf32>) outs(%e : tensor<?x32xf32>) {
  ^bb0(%in: f32, %out: f32):
    %0 = math.exp %in : f32
    linalg.yield %0 : f32
  } -> tensor<?x32xf32>
  return %a : tensor<?x32xf32>
}

// -----

//--- execution.mlir
// A small network in frontend form with constant inputs; the RUN lines at
// the top print its outputs before and after raising (expected values from
// numpy).

#id = affine_map<(d0, d1) -> (d0, d1)>
#rows = affine_map<(d0, d1) -> (d0)>
#col = affine_map<(d0, d1) -> (d1)>

func.func private @printMemrefF32(memref<*xf32>) attributes {llvm.emit_c_interface}

func.func @print(%t: tensor<2x4xf32>) {
  %m = bufferization.to_buffer %t : tensor<2x4xf32> to memref<2x4xf32>
  %u = memref.cast %m : memref<2x4xf32> to memref<*xf32>
  call @printMemrefF32(%u) : (memref<*xf32>) -> ()
  return
}

// CHECK-LABEL: func.func @main
// CHECK: qlr.rms_norm
// CHECK: qlr.linear {{.+}} : tensor<2x4xf32>, tensor<4x4xf32>, tensor<4xf32> -> tensor<2x4xf32>
// CHECK: qlr.layer_norm
// CHECK-NOT: linalg.matmul
func.func @main() {
  %x = arith.constant dense<[[1.0, 2.0, 3.0, 4.0], [-0.5, 0.25, 2.0, -1.0]]> : tensor<2x4xf32>
  %g = arith.constant dense<[1.0, 0.5, 2.0, -1.0]> : tensor<4xf32>
  %w = arith.constant dense<[[0.5, -1.0, 0.25, 2.0], [1.0, 0.0, -0.5, 0.5], [-2.0, 1.5, 1.0, 0.0], [0.25, 0.25, 0.25, 0.25]]> : tensor<4x4xf32>
  %b = arith.constant dense<[0.1, -0.2, 0.3, -0.4]> : tensor<4xf32>
  %lw = arith.constant dense<[2.0, 1.0, 0.5, 1.5]> : tensor<4xf32>
  %lb = arith.constant dense<[0.0, 1.0, -1.0, 0.5]> : tensor<4xf32>
  %cst = arith.constant 0.000000e+00 : f32
  %one = arith.constant 1.000000e+00 : f32
  %inv = arith.constant 2.500000e-01 : f32
  %n = arith.constant 4.000000e+00 : f32
  %eps = arith.constant 1.000000e-05 : f32
  %nv = arith.constant dense<4.000000e+00> : tensor<2xf32>
  %e = tensor.empty() : tensor<2x4xf32>
  %erow = tensor.empty() : tensor<2xf32>
  %zrow = linalg.fill ins(%cst : f32) outs(%erow : tensor<2xf32>) -> tensor<2xf32>

  // RMSNorm, fused form.
  // EXEC: [0.365148,   0.365148,   2.19089,   -1.46059]
  // EXEC-NEXT: [-0.433859,   0.108465,   3.47087,   0.867719]
  %ss = linalg.generic {indexing_maps = [#id, #rows], iterator_types = ["parallel", "reduction"]} ins(%x : tensor<2x4xf32>) outs(%zrow : tensor<2xf32>) {
  ^bb0(%in: f32, %out: f32):
    %0 = arith.mulf %in, %in : f32
    %1 = arith.addf %out, %0 : f32
    linalg.yield %1 : f32
  } -> tensor<2xf32>
  %h = linalg.generic {indexing_maps = [#id, #rows, #col, #id], iterator_types = ["parallel", "parallel"]} ins(%x, %ss, %g : tensor<2x4xf32>, tensor<2xf32>, tensor<4xf32>) outs(%e : tensor<2x4xf32>) {
  ^bb0(%in: f32, %s: f32, %gi: f32, %out: f32):
    %0 = arith.mulf %s, %inv : f32
    %1 = arith.addf %0, %eps : f32
    %2 = math.rsqrt %1 : f32
    %3 = arith.mulf %in, %2 : f32
    %4 = arith.mulf %3, %gi : f32
    linalg.yield %4 : f32
  } -> tensor<2x4xf32>
  call @print(%h) : (tensor<2x4xf32>) -> ()

  // Linear with bias. The printed digits are the float results; the
  // normalisations are IEEE operations every host rounds alike, but the
  // products may be contracted into FMAs where the host has them, moving the
  // sums by an ulp. Two values lie within 1.5 ulp of a printed-digit
  // boundary (2.308314..., 0.603299...): they are checked to one digit
  // fewer (>= 80 ulps from a boundary).
  // EXEC: [-2.45604,   -1.66059,   2.3083{{[0-9]*}},   -0.0348519]
  // EXEC-NEXT: [2.37776,   -1.93544,   4.80129,   0.603{{[0-9]*}}]
  %t = tensor.empty() : tensor<4x4xf32>
  %wt = linalg.transpose ins(%w : tensor<4x4xf32>) outs(%t : tensor<4x4xf32>) permutation = [1, 0]
  %z = linalg.fill ins(%cst : f32) outs(%e : tensor<2x4xf32>) -> tensor<2x4xf32>
  %mm = linalg.matmul ins(%h, %wt : tensor<2x4xf32>, tensor<4x4xf32>) outs(%z : tensor<2x4xf32>) -> tensor<2x4xf32>
  %bb = linalg.broadcast ins(%b : tensor<4xf32>) outs(%e : tensor<2x4xf32>) dimensions = [0]
  %y = linalg.add ins(%mm, %bb : tensor<2x4xf32>, tensor<2x4xf32>) outs(%e : tensor<2x4xf32>) -> tensor<2x4xf32>
  call @print(%y) : (tensor<2x4xf32>) -> ()

  // LayerNorm, separate mean and variance reductions.
  // EXEC: [-2.1909,   0.341274,   -0.23984,   0.85078]
  // EXEC-NEXT: [0.743774,   -0.379166,   -0.32211,   -0.0227517]
  %sum = linalg.generic {indexing_maps = [#id, #rows], iterator_types = ["parallel", "reduction"]} ins(%y : tensor<2x4xf32>) outs(%zrow : tensor<2xf32>) {
  ^bb0(%in: f32, %out: f32):
    %0 = arith.addf %in, %out : f32
    linalg.yield %0 : f32
  } -> tensor<2xf32>
  %mean = linalg.div ins(%sum, %nv : tensor<2xf32>, tensor<2xf32>) outs(%erow : tensor<2xf32>) -> tensor<2xf32>
  %meanb = linalg.broadcast ins(%mean : tensor<2xf32>) outs(%e : tensor<2x4xf32>) dimensions = [1]
  %d = linalg.sub ins(%y, %meanb : tensor<2x4xf32>, tensor<2x4xf32>) outs(%e : tensor<2x4xf32>) -> tensor<2x4xf32>
  %vs = linalg.generic {indexing_maps = [#id, #rows], iterator_types = ["parallel", "reduction"]} ins(%d : tensor<2x4xf32>) outs(%zrow : tensor<2xf32>) {
  ^bb0(%in: f32, %out: f32):
    %0 = arith.mulf %in, %in : f32
    %1 = arith.addf %0, %out : f32
    linalg.yield %1 : f32
  } -> tensor<2xf32>
  %ln = linalg.generic {indexing_maps = [#id, #rows, #col, #col, #id], iterator_types = ["parallel", "parallel"]} ins(%d, %vs, %lw, %lb : tensor<2x4xf32>, tensor<2xf32>, tensor<4xf32>, tensor<4xf32>) outs(%e : tensor<2x4xf32>) {
  ^bb0(%di: f32, %v: f32, %wi: f32, %bi: f32, %out: f32):
    %0 = arith.divf %v, %n : f32
    %1 = arith.addf %0, %eps : f32
    %2 = math.rsqrt %1 : f32
    %3 = arith.mulf %di, %2 : f32
    %4 = arith.mulf %3, %wi : f32
    %5 = arith.addf %4, %bi : f32
    linalg.yield %5 : f32
  } -> tensor<2x4xf32>
  call @print(%ln) : (tensor<2x4xf32>) -> ()
  return
}
