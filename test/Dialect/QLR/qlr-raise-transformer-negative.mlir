// RUN: quant-opt %s --split-input-file --qlr-raise-transformer | FileCheck %s

// IR that almost matches a layer is left alone.

//===----------------------------------------------------------------------===//
// Linear layers
//===----------------------------------------------------------------------===//

// An identity permutation: this is x·W with W [K, N], not x·Wᵀ.
// CHECK-LABEL: func.func @linear_identity_permutation
// CHECK-NOT: qlr.
// CHECK: linalg.transpose
// CHECK: linalg.matmul
// CHECK-NOT: qlr.
// CHECK: return
func.func @linear_identity_permutation(%x: tensor<4x64xf32>, %w: tensor<64x32xf32>) -> tensor<4x32xf32> {
  %cst = arith.constant 0.000000e+00 : f32
  %0 = tensor.empty() : tensor<64x32xf32>
  %wt = linalg.transpose ins(%w : tensor<64x32xf32>) outs(%0 : tensor<64x32xf32>) permutation = [0, 1]
  %1 = tensor.empty() : tensor<4x32xf32>
  %2 = linalg.fill ins(%cst : f32) outs(%1 : tensor<4x32xf32>) -> tensor<4x32xf32>
  %y = linalg.matmul ins(%x, %wt : tensor<4x64xf32>, tensor<64x32xf32>) outs(%2 : tensor<4x32xf32>) -> tensor<4x32xf32>
  return %y : tensor<4x32xf32>
}

// -----

// The batch operand is a transposed 3-D tensor, not a broadcast matrix.
// CHECK-LABEL: func.func @batch_matmul_not_broadcast
// CHECK-NOT: qlr.
// CHECK: linalg.transpose
// CHECK: linalg.batch_matmul
// CHECK-NOT: qlr.
// CHECK: return
func.func @batch_matmul_not_broadcast(%x: tensor<2x5x64xf32>, %w: tensor<64x2x32xf32>) -> tensor<2x5x32xf32> {
  %cst = arith.constant 0.000000e+00 : f32
  %0 = tensor.empty() : tensor<2x64x32xf32>
  %wt = linalg.transpose ins(%w : tensor<64x2x32xf32>) outs(%0 : tensor<2x64x32xf32>) permutation = [1, 0, 2]
  %1 = tensor.empty() : tensor<2x5x32xf32>
  %2 = linalg.fill ins(%cst : f32) outs(%1 : tensor<2x5x32xf32>) -> tensor<2x5x32xf32>
  %y = linalg.batch_matmul ins(%x, %wt : tensor<2x5x64xf32>, tensor<2x64x32xf32>) outs(%2 : tensor<2x5x32xf32>) -> tensor<2x5x32xf32>
  return %y : tensor<2x5x32xf32>
}

// -----

// A matmul of a plain (not transposed) operand.
// CHECK-LABEL: func.func @linear_not_transposed
// CHECK-NOT: qlr.
// CHECK: linalg.matmul
// CHECK-NOT: qlr.
// CHECK: return
func.func @linear_not_transposed(%x: tensor<4x64xf32>, %w: tensor<64x32xf32>) -> tensor<4x32xf32> {
  %cst = arith.constant 0.000000e+00 : f32
  %1 = tensor.empty() : tensor<4x32xf32>
  %2 = linalg.fill ins(%cst : f32) outs(%1 : tensor<4x32xf32>) -> tensor<4x32xf32>
  %y = linalg.matmul ins(%x, %w : tensor<4x64xf32>, tensor<64x32xf32>) outs(%2 : tensor<4x32xf32>) -> tensor<4x32xf32>
  return %y : tensor<4x32xf32>
}

// -----

// The accumulator starts at 1, not 0.
// CHECK-LABEL: func.func @linear_nonzero_init
// CHECK-NOT: qlr.
// CHECK: linalg.fill
// CHECK: linalg.matmul
// CHECK-NOT: qlr.
// CHECK: return
func.func @linear_nonzero_init(%x: tensor<4x64xf32>, %w: tensor<32x64xf32>) -> tensor<4x32xf32> {
  %one = arith.constant 1.000000e+00 : f32
  %0 = tensor.empty() : tensor<64x32xf32>
  %wt = linalg.transpose ins(%w : tensor<32x64xf32>) outs(%0 : tensor<64x32xf32>) permutation = [1, 0]
  %1 = tensor.empty() : tensor<4x32xf32>
  %2 = linalg.fill ins(%one : f32) outs(%1 : tensor<4x32xf32>) -> tensor<4x32xf32>
  %y = linalg.matmul ins(%x, %wt : tensor<4x64xf32>, tensor<64x32xf32>) outs(%2 : tensor<4x32xf32>) -> tensor<4x32xf32>
  return %y : tensor<4x32xf32>
}

// -----

// Accumulation into an existing tensor.
// CHECK-LABEL: func.func @linear_accumulate
// CHECK-NOT: qlr.
// CHECK: linalg.matmul
// CHECK-NOT: qlr.
// CHECK: return
func.func @linear_accumulate(%x: tensor<4x64xf32>, %w: tensor<32x64xf32>, %acc: tensor<4x32xf32>) -> tensor<4x32xf32> {
  %0 = tensor.empty() : tensor<64x32xf32>
  %wt = linalg.transpose ins(%w : tensor<32x64xf32>) outs(%0 : tensor<64x32xf32>) permutation = [1, 0]
  %y = linalg.matmul ins(%x, %wt : tensor<4x64xf32>, tensor<64x32xf32>) outs(%acc : tensor<4x32xf32>) -> tensor<4x32xf32>
  return %y : tensor<4x32xf32>
}

// -----

// f16 operands accumulated into f32: qlr.linear has one element type.
// CHECK-LABEL: func.func @linear_mixed_types
// CHECK-NOT: qlr.
// CHECK: linalg.matmul
// CHECK-NOT: qlr.
// CHECK: return
func.func @linear_mixed_types(%x: tensor<4x64xf16>, %w: tensor<32x64xf16>) -> tensor<4x32xf32> {
  %cst = arith.constant 0.000000e+00 : f32
  %0 = tensor.empty() : tensor<64x32xf16>
  %wt = linalg.transpose ins(%w : tensor<32x64xf16>) outs(%0 : tensor<64x32xf16>) permutation = [1, 0]
  %1 = tensor.empty() : tensor<4x32xf32>
  %2 = linalg.fill ins(%cst : f32) outs(%1 : tensor<4x32xf32>) -> tensor<4x32xf32>
  %y = linalg.matmul ins(%x, %wt : tensor<4x64xf16>, tensor<64x32xf16>) outs(%2 : tensor<4x32xf32>) -> tensor<4x32xf32>
  return %y : tensor<4x32xf32>
}

// -----

// Integer matmuls are not linear layers of qlr.
// CHECK-LABEL: func.func @linear_integer
// CHECK-NOT: qlr.
// CHECK: linalg.matmul
// CHECK-NOT: qlr.
// CHECK: return
func.func @linear_integer(%x: tensor<4x64xi32>, %w: tensor<32x64xi32>) -> tensor<4x32xi32> {
  %c0 = arith.constant 0 : i32
  %0 = tensor.empty() : tensor<64x32xi32>
  %wt = linalg.transpose ins(%w : tensor<32x64xi32>) outs(%0 : tensor<64x32xi32>) permutation = [1, 0]
  %1 = tensor.empty() : tensor<4x32xi32>
  %2 = linalg.fill ins(%c0 : i32) outs(%1 : tensor<4x32xi32>) -> tensor<4x32xi32>
  %y = linalg.matmul ins(%x, %wt : tensor<4x64xi32>, tensor<64x32xi32>) outs(%2 : tensor<4x32xi32>) -> tensor<4x32xi32>
  return %y : tensor<4x32xi32>
}

// -----

// A per-row addend (indexed by d0) is not a bias: the linear is raised, the
// addition stays.
// CHECK-LABEL: func.func @bias_along_rows
// CHECK-SAME: (%[[X:.+]]: tensor<32x64xf32>, %[[W:.+]]: tensor<32x64xf32>, %[[B:.+]]: tensor<32xf32>)
// CHECK: %[[Y:.+]] = qlr.linear %[[X]], %[[W]] : tensor<32x64xf32>, tensor<32x64xf32> -> tensor<32x32xf32>
// CHECK: linalg.generic
// CHECK-SAME: ins(%[[Y]], %[[B]] :
// CHECK: arith.addf
func.func @bias_along_rows(%x: tensor<32x64xf32>, %w: tensor<32x64xf32>, %b: tensor<32xf32>) -> tensor<32x32xf32> {
  %cst = arith.constant 0.000000e+00 : f32
  %0 = tensor.empty() : tensor<64x32xf32>
  %wt = linalg.transpose ins(%w : tensor<32x64xf32>) outs(%0 : tensor<64x32xf32>) permutation = [1, 0]
  %1 = tensor.empty() : tensor<32x32xf32>
  %2 = linalg.fill ins(%cst : f32) outs(%1 : tensor<32x32xf32>) -> tensor<32x32xf32>
  %mm = linalg.matmul ins(%x, %wt : tensor<32x64xf32>, tensor<64x32xf32>) outs(%2 : tensor<32x32xf32>) -> tensor<32x32xf32>
  %y = linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} ins(%mm, %b : tensor<32x32xf32>, tensor<32xf32>) outs(%1 : tensor<32x32xf32>) {
  ^bb0(%in: f32, %in_0: f32, %out: f32):
    %s = arith.addf %in, %in_0 : f32
    linalg.yield %s : f32
  } -> tensor<32x32xf32>
  return %y : tensor<32x32xf32>
}

// -----

// The product is also used without the bias: folding the bias would compute
// the layer twice.
// CHECK-LABEL: func.func @bias_product_reused
// CHECK-SAME: (%[[X:.+]]: tensor<4x64xf32>, %[[W:.+]]: tensor<32x64xf32>, %[[B:.+]]: tensor<32xf32>)
// CHECK: %[[Y:.+]] = qlr.linear %[[X]], %[[W]] : tensor<4x64xf32>, tensor<32x64xf32> -> tensor<4x32xf32>
// CHECK: linalg.generic
// CHECK-SAME: ins(%[[Y]], %[[B]] :
// CHECK: return
func.func @bias_product_reused(%x: tensor<4x64xf32>, %w: tensor<32x64xf32>, %b: tensor<32xf32>) -> (tensor<4x32xf32>, tensor<4x32xf32>) {
  %cst = arith.constant 0.000000e+00 : f32
  %0 = tensor.empty() : tensor<64x32xf32>
  %wt = linalg.transpose ins(%w : tensor<32x64xf32>) outs(%0 : tensor<64x32xf32>) permutation = [1, 0]
  %1 = tensor.empty() : tensor<4x32xf32>
  %2 = linalg.fill ins(%cst : f32) outs(%1 : tensor<4x32xf32>) -> tensor<4x32xf32>
  %mm = linalg.matmul ins(%x, %wt : tensor<4x64xf32>, tensor<64x32xf32>) outs(%2 : tensor<4x32xf32>) -> tensor<4x32xf32>
  %y = linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} ins(%mm, %b : tensor<4x32xf32>, tensor<32xf32>) outs(%1 : tensor<4x32xf32>) {
  ^bb0(%in: f32, %in_0: f32, %out: f32):
    %s = arith.addf %in, %in_0 : f32
    linalg.yield %s : f32
  } -> tensor<4x32xf32>
  return %y, %mm : tensor<4x32xf32>, tensor<4x32xf32>
}

// -----

//===----------------------------------------------------------------------===//
// RMSNorm
//===----------------------------------------------------------------------===//

#id = affine_map<(d0, d1) -> (d0, d1)>
#rows = affine_map<(d0, d1) -> (d0)>
#col = affine_map<(d0, d1) -> (d1)>

// eps is a function argument, not a constant.
// CHECK-LABEL: func.func @rms_norm_eps_not_constant
// CHECK-NOT: qlr.
// CHECK: linalg.generic
// CHECK: linalg.generic
// CHECK: math.rsqrt
// CHECK-NOT: qlr.
// CHECK: return
func.func @rms_norm_eps_not_constant(%x: tensor<4x64xf32>, %w: tensor<64xf32>, %eps: f32) -> tensor<4x64xf32> {
  %cst = arith.constant 0.000000e+00 : f32
  %inv = arith.constant 1.562500e-02 : f32
  %e1 = tensor.empty() : tensor<4xf32>
  %zero = linalg.fill ins(%cst : f32) outs(%e1 : tensor<4xf32>) -> tensor<4xf32>
  %ss = linalg.generic {indexing_maps = [#id, #rows], iterator_types = ["parallel", "reduction"]} ins(%x : tensor<4x64xf32>) outs(%zero : tensor<4xf32>) {
  ^bb0(%in: f32, %out: f32):
    %0 = arith.mulf %in, %in : f32
    %1 = arith.addf %out, %0 : f32
    linalg.yield %1 : f32
  } -> tensor<4xf32>
  %e = tensor.empty() : tensor<4x64xf32>
  %y = linalg.generic {indexing_maps = [#id, #rows, #col, #id], iterator_types = ["parallel", "parallel"]} ins(%x, %ss, %w : tensor<4x64xf32>, tensor<4xf32>, tensor<64xf32>) outs(%e : tensor<4x64xf32>) {
  ^bb0(%in: f32, %s: f32, %g: f32, %out: f32):
    %0 = arith.mulf %s, %inv : f32
    %1 = arith.addf %0, %eps : f32
    %2 = math.rsqrt %1 : f32
    %3 = arith.mulf %in, %2 : f32
    %4 = arith.mulf %3, %g : f32
    linalg.yield %4 : f32
  } -> tensor<4x64xf32>
  return %y : tensor<4x64xf32>
}

// -----

#id = affine_map<(d0, d1) -> (d0, d1)>
#col = affine_map<(d0, d1) -> (d1)>

// The sum of squares runs over the rows (dim 0), not over the features.
// CHECK-LABEL: func.func @rms_norm_wrong_reduction_dim
// CHECK-NOT: qlr.
// CHECK: iterator_types = ["reduction", "parallel"]
// CHECK: math.rsqrt
// CHECK-NOT: qlr.
// CHECK: return
func.func @rms_norm_wrong_reduction_dim(%x: tensor<64x64xf32>, %w: tensor<64xf32>) -> tensor<64x64xf32> {
  %cst = arith.constant 0.000000e+00 : f32
  %inv = arith.constant 1.562500e-02 : f32
  %eps = arith.constant 1.000000e-05 : f32
  %e1 = tensor.empty() : tensor<64xf32>
  %zero = linalg.fill ins(%cst : f32) outs(%e1 : tensor<64xf32>) -> tensor<64xf32>
  %ss = linalg.generic {indexing_maps = [#id, #col], iterator_types = ["reduction", "parallel"]} ins(%x : tensor<64x64xf32>) outs(%zero : tensor<64xf32>) {
  ^bb0(%in: f32, %out: f32):
    %0 = arith.mulf %in, %in : f32
    %1 = arith.addf %out, %0 : f32
    linalg.yield %1 : f32
  } -> tensor<64xf32>
  %e = tensor.empty() : tensor<64x64xf32>
  %y = linalg.generic {indexing_maps = [#id, #col, #col, #id], iterator_types = ["parallel", "parallel"]} ins(%x, %ss, %w : tensor<64x64xf32>, tensor<64xf32>, tensor<64xf32>) outs(%e : tensor<64x64xf32>) {
  ^bb0(%in: f32, %s: f32, %g: f32, %out: f32):
    %0 = arith.mulf %s, %inv : f32
    %1 = arith.addf %0, %eps : f32
    %2 = math.rsqrt %1 : f32
    %3 = arith.mulf %in, %2 : f32
    %4 = arith.mulf %3, %g : f32
    linalg.yield %4 : f32
  } -> tensor<64x64xf32>
  return %y : tensor<64x64xf32>
}

// -----

#id = affine_map<(d0, d1) -> (d0, d1)>
#rows = affine_map<(d0, d1) -> (d0)>
#col = affine_map<(d0, d1) -> (d1)>

// The mean divides by 32 although there are 64 features.
// CHECK-LABEL: func.func @rms_norm_wrong_divisor
// CHECK-NOT: qlr.
// CHECK: linalg.generic
// CHECK: arith.divf
// CHECK: math.rsqrt
// CHECK-NOT: qlr.
// CHECK: return
func.func @rms_norm_wrong_divisor(%x: tensor<4x64xf32>, %w: tensor<64xf32>) -> tensor<4x64xf32> {
  %cst = arith.constant 0.000000e+00 : f32
  %n = arith.constant 3.200000e+01 : f32
  %eps = arith.constant 1.000000e-05 : f32
  %e1 = tensor.empty() : tensor<4xf32>
  %zero = linalg.fill ins(%cst : f32) outs(%e1 : tensor<4xf32>) -> tensor<4xf32>
  %ss = linalg.generic {indexing_maps = [#id, #rows], iterator_types = ["parallel", "reduction"]} ins(%x : tensor<4x64xf32>) outs(%zero : tensor<4xf32>) {
  ^bb0(%in: f32, %out: f32):
    %0 = arith.mulf %in, %in : f32
    %1 = arith.addf %out, %0 : f32
    linalg.yield %1 : f32
  } -> tensor<4xf32>
  %e = tensor.empty() : tensor<4x64xf32>
  %y = linalg.generic {indexing_maps = [#id, #rows, #col, #id], iterator_types = ["parallel", "parallel"]} ins(%x, %ss, %w : tensor<4x64xf32>, tensor<4xf32>, tensor<64xf32>) outs(%e : tensor<4x64xf32>) {
  ^bb0(%in: f32, %s: f32, %g: f32, %out: f32):
    %0 = arith.divf %s, %n : f32
    %1 = arith.addf %0, %eps : f32
    %2 = math.rsqrt %1 : f32
    %3 = arith.mulf %in, %2 : f32
    %4 = arith.mulf %3, %g : f32
    linalg.yield %4 : f32
  } -> tensor<4x64xf32>
  return %y : tensor<4x64xf32>
}

// -----

#id = affine_map<(d0, d1) -> (d0, d1)>
#rows = affine_map<(d0, d1) -> (d0)>
#one = affine_map<(d0, d1) -> (0)>

// A single gain (tensor<1xf32>) instead of one weight per feature.
// CHECK-LABEL: func.func @rms_norm_weight_wrong_size
// CHECK-NOT: qlr.
// CHECK: linalg.generic
// CHECK: math.rsqrt
// CHECK-NOT: qlr.
// CHECK: return
func.func @rms_norm_weight_wrong_size(%x: tensor<4x64xf32>, %w: tensor<1xf32>) -> tensor<4x64xf32> {
  %cst = arith.constant 0.000000e+00 : f32
  %inv = arith.constant 1.562500e-02 : f32
  %eps = arith.constant 1.000000e-05 : f32
  %e1 = tensor.empty() : tensor<4xf32>
  %zero = linalg.fill ins(%cst : f32) outs(%e1 : tensor<4xf32>) -> tensor<4xf32>
  %ss = linalg.generic {indexing_maps = [#id, #rows], iterator_types = ["parallel", "reduction"]} ins(%x : tensor<4x64xf32>) outs(%zero : tensor<4xf32>) {
  ^bb0(%in: f32, %out: f32):
    %0 = arith.mulf %in, %in : f32
    %1 = arith.addf %out, %0 : f32
    linalg.yield %1 : f32
  } -> tensor<4xf32>
  %e = tensor.empty() : tensor<4x64xf32>
  %y = linalg.generic {indexing_maps = [#id, #rows, #one, #id], iterator_types = ["parallel", "parallel"]} ins(%x, %ss, %w : tensor<4x64xf32>, tensor<4xf32>, tensor<1xf32>) outs(%e : tensor<4x64xf32>) {
  ^bb0(%in: f32, %s: f32, %g: f32, %out: f32):
    %0 = arith.mulf %s, %inv : f32
    %1 = arith.addf %0, %eps : f32
    %2 = math.rsqrt %1 : f32
    %3 = arith.mulf %in, %2 : f32
    %4 = arith.mulf %3, %g : f32
    linalg.yield %4 : f32
  } -> tensor<4x64xf32>
  return %y : tensor<4x64xf32>
}

// -----

#id = affine_map<(d0, d1) -> (d0, d1)>
#rows = affine_map<(d0, d1) -> (d0)>

// The "weight" is indexed by the row, not by the feature.
// CHECK-LABEL: func.func @rms_norm_weight_per_row
// CHECK-NOT: qlr.
// CHECK: linalg.generic
// CHECK: math.rsqrt
// CHECK-NOT: qlr.
// CHECK: return
func.func @rms_norm_weight_per_row(%x: tensor<64x64xf32>, %w: tensor<64xf32>) -> tensor<64x64xf32> {
  %cst = arith.constant 0.000000e+00 : f32
  %inv = arith.constant 1.562500e-02 : f32
  %eps = arith.constant 1.000000e-05 : f32
  %e1 = tensor.empty() : tensor<64xf32>
  %zero = linalg.fill ins(%cst : f32) outs(%e1 : tensor<64xf32>) -> tensor<64xf32>
  %ss = linalg.generic {indexing_maps = [#id, #rows], iterator_types = ["parallel", "reduction"]} ins(%x : tensor<64x64xf32>) outs(%zero : tensor<64xf32>) {
  ^bb0(%in: f32, %out: f32):
    %0 = arith.mulf %in, %in : f32
    %1 = arith.addf %out, %0 : f32
    linalg.yield %1 : f32
  } -> tensor<64xf32>
  %e = tensor.empty() : tensor<64x64xf32>
  %y = linalg.generic {indexing_maps = [#id, #rows, #rows, #id], iterator_types = ["parallel", "parallel"]} ins(%x, %ss, %w : tensor<64x64xf32>, tensor<64xf32>, tensor<64xf32>) outs(%e : tensor<64x64xf32>) {
  ^bb0(%in: f32, %s: f32, %g: f32, %out: f32):
    %0 = arith.mulf %s, %inv : f32
    %1 = arith.addf %0, %eps : f32
    %2 = math.rsqrt %1 : f32
    %3 = arith.mulf %in, %2 : f32
    %4 = arith.mulf %3, %g : f32
    linalg.yield %4 : f32
  } -> tensor<64x64xf32>
  return %y : tensor<64x64xf32>
}

// -----

#id = affine_map<(d0, d1) -> (d0, d1)>
#rows = affine_map<(d0, d1) -> (d0)>
#col = affine_map<(d0, d1) -> (d1)>

// The statistic is sum(x), not sum(x²).
// CHECK-LABEL: func.func @rms_norm_not_squared
// CHECK-NOT: qlr.
// CHECK: linalg.generic
// CHECK: math.rsqrt
// CHECK-NOT: qlr.
// CHECK: return
func.func @rms_norm_not_squared(%x: tensor<4x64xf32>, %w: tensor<64xf32>) -> tensor<4x64xf32> {
  %cst = arith.constant 0.000000e+00 : f32
  %inv = arith.constant 1.562500e-02 : f32
  %eps = arith.constant 1.000000e-05 : f32
  %e1 = tensor.empty() : tensor<4xf32>
  %zero = linalg.fill ins(%cst : f32) outs(%e1 : tensor<4xf32>) -> tensor<4xf32>
  %ss = linalg.generic {indexing_maps = [#id, #rows], iterator_types = ["parallel", "reduction"]} ins(%x : tensor<4x64xf32>) outs(%zero : tensor<4xf32>) {
  ^bb0(%in: f32, %out: f32):
    %1 = arith.addf %out, %in : f32
    linalg.yield %1 : f32
  } -> tensor<4xf32>
  %e = tensor.empty() : tensor<4x64xf32>
  %y = linalg.generic {indexing_maps = [#id, #rows, #col, #id], iterator_types = ["parallel", "parallel"]} ins(%x, %ss, %w : tensor<4x64xf32>, tensor<4xf32>, tensor<64xf32>) outs(%e : tensor<4x64xf32>) {
  ^bb0(%in: f32, %s: f32, %g: f32, %out: f32):
    %0 = arith.mulf %s, %inv : f32
    %1 = arith.addf %0, %eps : f32
    %2 = math.rsqrt %1 : f32
    %3 = arith.mulf %in, %2 : f32
    %4 = arith.mulf %3, %g : f32
    linalg.yield %4 : f32
  } -> tensor<4x64xf32>
  return %y : tensor<4x64xf32>
}

// -----

#id = affine_map<(d0, d1) -> (d0, d1)>
#rows = affine_map<(d0, d1) -> (d0)>
#col = affine_map<(d0, d1) -> (d1)>

// The sum of squares starts at 1.
// CHECK-LABEL: func.func @rms_norm_nonzero_sum_init
// CHECK-NOT: qlr.
// CHECK: linalg.generic
// CHECK: math.rsqrt
// CHECK-NOT: qlr.
// CHECK: return
func.func @rms_norm_nonzero_sum_init(%x: tensor<4x64xf32>, %w: tensor<64xf32>) -> tensor<4x64xf32> {
  %one = arith.constant 1.000000e+00 : f32
  %inv = arith.constant 1.562500e-02 : f32
  %eps = arith.constant 1.000000e-05 : f32
  %e1 = tensor.empty() : tensor<4xf32>
  %init = linalg.fill ins(%one : f32) outs(%e1 : tensor<4xf32>) -> tensor<4xf32>
  %ss = linalg.generic {indexing_maps = [#id, #rows], iterator_types = ["parallel", "reduction"]} ins(%x : tensor<4x64xf32>) outs(%init : tensor<4xf32>) {
  ^bb0(%in: f32, %out: f32):
    %0 = arith.mulf %in, %in : f32
    %1 = arith.addf %out, %0 : f32
    linalg.yield %1 : f32
  } -> tensor<4xf32>
  %e = tensor.empty() : tensor<4x64xf32>
  %y = linalg.generic {indexing_maps = [#id, #rows, #col, #id], iterator_types = ["parallel", "parallel"]} ins(%x, %ss, %w : tensor<4x64xf32>, tensor<4xf32>, tensor<64xf32>) outs(%e : tensor<4x64xf32>) {
  ^bb0(%in: f32, %s: f32, %g: f32, %out: f32):
    %0 = arith.mulf %s, %inv : f32
    %1 = arith.addf %0, %eps : f32
    %2 = math.rsqrt %1 : f32
    %3 = arith.mulf %in, %2 : f32
    %4 = arith.mulf %3, %g : f32
    linalg.yield %4 : f32
  } -> tensor<4x64xf32>
  return %y : tensor<4x64xf32>
}

// -----

#id = affine_map<(d0, d1) -> (d0, d1)>
#rows = affine_map<(d0, d1) -> (d0)>
#col = affine_map<(d0, d1) -> (d1)>

// The statistic is taken on another tensor than the one normalised.
// CHECK-LABEL: func.func @rms_norm_other_tensor
// CHECK-NOT: qlr.
// CHECK: linalg.generic
// CHECK: math.rsqrt
// CHECK-NOT: qlr.
// CHECK: return
func.func @rms_norm_other_tensor(%x: tensor<4x64xf32>, %z: tensor<4x64xf32>, %w: tensor<64xf32>) -> tensor<4x64xf32> {
  %cst = arith.constant 0.000000e+00 : f32
  %inv = arith.constant 1.562500e-02 : f32
  %eps = arith.constant 1.000000e-05 : f32
  %e1 = tensor.empty() : tensor<4xf32>
  %zero = linalg.fill ins(%cst : f32) outs(%e1 : tensor<4xf32>) -> tensor<4xf32>
  %ss = linalg.generic {indexing_maps = [#id, #rows], iterator_types = ["parallel", "reduction"]} ins(%z : tensor<4x64xf32>) outs(%zero : tensor<4xf32>) {
  ^bb0(%in: f32, %out: f32):
    %0 = arith.mulf %in, %in : f32
    %1 = arith.addf %out, %0 : f32
    linalg.yield %1 : f32
  } -> tensor<4xf32>
  %e = tensor.empty() : tensor<4x64xf32>
  %y = linalg.generic {indexing_maps = [#id, #rows, #col, #id], iterator_types = ["parallel", "parallel"]} ins(%x, %ss, %w : tensor<4x64xf32>, tensor<4xf32>, tensor<64xf32>) outs(%e : tensor<4x64xf32>) {
  ^bb0(%in: f32, %s: f32, %g: f32, %out: f32):
    %0 = arith.mulf %s, %inv : f32
    %1 = arith.addf %0, %eps : f32
    %2 = math.rsqrt %1 : f32
    %3 = arith.mulf %in, %2 : f32
    %4 = arith.mulf %3, %g : f32
    linalg.yield %4 : f32
  } -> tensor<4x64xf32>
  return %y : tensor<4x64xf32>
}

// -----

#id = affine_map<(d0, d1) -> (d0, d1)>
#rows = affine_map<(d0, d1) -> (d0)>
#col = affine_map<(d0, d1) -> (d1)>

// An extra constant factor fused into the same generic.
// CHECK-LABEL: func.func @rms_norm_extra_factor
// CHECK-NOT: qlr.
// CHECK: linalg.generic
// CHECK: math.rsqrt
// CHECK-NOT: qlr.
// CHECK: return
func.func @rms_norm_extra_factor(%x: tensor<4x64xf32>, %w: tensor<64xf32>) -> tensor<4x64xf32> {
  %cst = arith.constant 0.000000e+00 : f32
  %two = arith.constant 2.000000e+00 : f32
  %inv = arith.constant 1.562500e-02 : f32
  %eps = arith.constant 1.000000e-05 : f32
  %e1 = tensor.empty() : tensor<4xf32>
  %zero = linalg.fill ins(%cst : f32) outs(%e1 : tensor<4xf32>) -> tensor<4xf32>
  %ss = linalg.generic {indexing_maps = [#id, #rows], iterator_types = ["parallel", "reduction"]} ins(%x : tensor<4x64xf32>) outs(%zero : tensor<4xf32>) {
  ^bb0(%in: f32, %out: f32):
    %0 = arith.mulf %in, %in : f32
    %1 = arith.addf %out, %0 : f32
    linalg.yield %1 : f32
  } -> tensor<4xf32>
  %e = tensor.empty() : tensor<4x64xf32>
  %y = linalg.generic {indexing_maps = [#id, #rows, #col, #id], iterator_types = ["parallel", "parallel"]} ins(%x, %ss, %w : tensor<4x64xf32>, tensor<4xf32>, tensor<64xf32>) outs(%e : tensor<4x64xf32>) {
  ^bb0(%in: f32, %s: f32, %g: f32, %out: f32):
    %0 = arith.mulf %s, %inv : f32
    %1 = arith.addf %0, %eps : f32
    %2 = math.rsqrt %1 : f32
    %3 = arith.mulf %in, %2 : f32
    %4 = arith.mulf %3, %g : f32
    %5 = arith.mulf %4, %two : f32
    linalg.yield %5 : f32
  } -> tensor<4x64xf32>
  return %y : tensor<4x64xf32>
}

// -----

#id = affine_map<(d0, d1) -> (d0, d1)>
#rows = affine_map<(d0, d1) -> (d0)>
#col = affine_map<(d0, d1) -> (d1)>

// A dynamic feature dimension: the divisor cannot be checked against C.
// CHECK-LABEL: func.func @rms_norm_dynamic_features
// CHECK-NOT: qlr.
// CHECK: linalg.generic
// CHECK: math.rsqrt
// CHECK-NOT: qlr.
// CHECK: return
func.func @rms_norm_dynamic_features(%x: tensor<4x?xf32>, %w: tensor<?xf32>, %n: index) -> tensor<4x?xf32> {
  %cst = arith.constant 0.000000e+00 : f32
  %inv = arith.constant 1.562500e-02 : f32
  %eps = arith.constant 1.000000e-05 : f32
  %e1 = tensor.empty() : tensor<4xf32>
  %zero = linalg.fill ins(%cst : f32) outs(%e1 : tensor<4xf32>) -> tensor<4xf32>
  %ss = linalg.generic {indexing_maps = [#id, #rows], iterator_types = ["parallel", "reduction"]} ins(%x : tensor<4x?xf32>) outs(%zero : tensor<4xf32>) {
  ^bb0(%in: f32, %out: f32):
    %0 = arith.mulf %in, %in : f32
    %1 = arith.addf %out, %0 : f32
    linalg.yield %1 : f32
  } -> tensor<4xf32>
  %e = tensor.empty(%n) : tensor<4x?xf32>
  %y = linalg.generic {indexing_maps = [#id, #rows, #col, #id], iterator_types = ["parallel", "parallel"]} ins(%x, %ss, %w : tensor<4x?xf32>, tensor<4xf32>, tensor<?xf32>) outs(%e : tensor<4x?xf32>) {
  ^bb0(%in: f32, %s: f32, %g: f32, %out: f32):
    %0 = arith.mulf %s, %inv : f32
    %1 = arith.addf %0, %eps : f32
    %2 = math.rsqrt %1 : f32
    %3 = arith.mulf %in, %2 : f32
    %4 = arith.mulf %3, %g : f32
    linalg.yield %4 : f32
  } -> tensor<4x?xf32>
  return %y : tensor<4x?xf32>
}

// -----

#id = affine_map<(d0, d1) -> (d0, d1)>
#rows = affine_map<(d0, d1) -> (d0)>
#col = affine_map<(d0, d1) -> (d1)>

// Mixed precision (f16 computed in f32 through extf/truncf) is not
// recognised.
// CHECK-LABEL: func.func @rms_norm_mixed_precision
// CHECK-NOT: qlr.
// CHECK: linalg.generic
// CHECK: math.rsqrt
// CHECK-NOT: qlr.
// CHECK: return
func.func @rms_norm_mixed_precision(%x: tensor<4x64xf16>, %w: tensor<64xf16>) -> tensor<4x64xf16> {
  %cst = arith.constant 0.000000e+00 : f32
  %inv = arith.constant 1.562500e-02 : f32
  %eps = arith.constant 1.000000e-05 : f32
  %e1 = tensor.empty() : tensor<4xf32>
  %zero = linalg.fill ins(%cst : f32) outs(%e1 : tensor<4xf32>) -> tensor<4xf32>
  %ss = linalg.generic {indexing_maps = [#id, #rows], iterator_types = ["parallel", "reduction"]} ins(%x : tensor<4x64xf16>) outs(%zero : tensor<4xf32>) {
  ^bb0(%in: f16, %out: f32):
    %0 = arith.extf %in : f16 to f32
    %1 = arith.mulf %0, %0 : f32
    %2 = arith.addf %out, %1 : f32
    linalg.yield %2 : f32
  } -> tensor<4xf32>
  %e = tensor.empty() : tensor<4x64xf16>
  %y = linalg.generic {indexing_maps = [#id, #rows, #col, #id], iterator_types = ["parallel", "parallel"]} ins(%x, %ss, %w : tensor<4x64xf16>, tensor<4xf32>, tensor<64xf16>) outs(%e : tensor<4x64xf16>) {
  ^bb0(%in: f16, %s: f32, %g: f16, %out: f16):
    %0 = arith.mulf %s, %inv : f32
    %1 = arith.addf %0, %eps : f32
    %2 = math.rsqrt %1 : f32
    %3 = arith.extf %in : f16 to f32
    %4 = arith.mulf %3, %2 : f32
    %5 = arith.truncf %4 : f32 to f16
    %6 = arith.mulf %5, %g : f16
    linalg.yield %6 : f16
  } -> tensor<4x64xf16>
  return %y : tensor<4x64xf16>
}

// -----

//===----------------------------------------------------------------------===//
// LayerNorm
//===----------------------------------------------------------------------===//

#id = affine_map<(d0, d1) -> (d0, d1)>
#rows = affine_map<(d0, d1) -> (d0)>
#col = affine_map<(d0, d1) -> (d1)>

// The unbiased variance (division by C - 1) is not LayerNorm's.
// CHECK-LABEL: func.func @layer_norm_unbiased_variance
// CHECK-NOT: qlr.
// CHECK: linalg.generic
// CHECK: math.rsqrt
// CHECK-NOT: qlr.
// CHECK: return
func.func @layer_norm_unbiased_variance(%x: tensor<4x32xf32>, %w: tensor<32xf32>, %b: tensor<32xf32>) -> tensor<4x32xf32> {
  %cst = arith.constant 0.000000e+00 : f32
  %n = arith.constant 3.200000e+01 : f32
  %n1 = arith.constant 3.100000e+01 : f32
  %eps = arith.constant 1.000000e-05 : f32
  %e1 = tensor.empty() : tensor<4xf32>
  %zero = linalg.fill ins(%cst : f32) outs(%e1 : tensor<4xf32>) -> tensor<4xf32>
  %sum = linalg.generic {indexing_maps = [#id, #rows], iterator_types = ["parallel", "reduction"]} ins(%x : tensor<4x32xf32>) outs(%zero : tensor<4xf32>) {
  ^bb0(%in: f32, %out: f32):
    %0 = arith.addf %in, %out : f32
    linalg.yield %0 : f32
  } -> tensor<4xf32>
  %vsum = linalg.generic {indexing_maps = [#id, #rows, #rows], iterator_types = ["parallel", "reduction"]} ins(%x, %sum : tensor<4x32xf32>, tensor<4xf32>) outs(%zero : tensor<4xf32>) {
  ^bb0(%in: f32, %s: f32, %out: f32):
    %0 = arith.divf %s, %n : f32
    %1 = arith.subf %in, %0 : f32
    %2 = arith.mulf %1, %1 : f32
    %3 = arith.addf %out, %2 : f32
    linalg.yield %3 : f32
  } -> tensor<4xf32>
  %e = tensor.empty() : tensor<4x32xf32>
  %y = linalg.generic {indexing_maps = [#id, #rows, #rows, #col, #col, #id], iterator_types = ["parallel", "parallel"]} ins(%x, %sum, %vsum, %w, %b : tensor<4x32xf32>, tensor<4xf32>, tensor<4xf32>, tensor<32xf32>, tensor<32xf32>) outs(%e : tensor<4x32xf32>) {
  ^bb0(%in: f32, %s: f32, %v: f32, %g: f32, %bias: f32, %out: f32):
    %0 = arith.divf %s, %n : f32
    %1 = arith.subf %in, %0 : f32
    %2 = arith.divf %v, %n1 : f32
    %3 = arith.addf %2, %eps : f32
    %4 = math.rsqrt %3 : f32
    %5 = arith.mulf %1, %4 : f32
    %6 = arith.mulf %5, %g : f32
    %7 = arith.addf %6, %bias : f32
    linalg.yield %7 : f32
  } -> tensor<4x32xf32>
  return %y : tensor<4x32xf32>
}

// -----

#id = affine_map<(d0, d1) -> (d0, d1)>
#rows = affine_map<(d0, d1) -> (d0)>
#col = affine_map<(d0, d1) -> (d1)>

// Without a bias there is no qlr.layer_norm to raise to.
// CHECK-LABEL: func.func @layer_norm_no_bias
// CHECK-NOT: qlr.
// CHECK: linalg.generic
// CHECK: math.rsqrt
// CHECK-NOT: qlr.
// CHECK: return
func.func @layer_norm_no_bias(%x: tensor<4x32xf32>, %w: tensor<32xf32>) -> tensor<4x32xf32> {
  %cst = arith.constant 0.000000e+00 : f32
  %n = arith.constant 3.200000e+01 : f32
  %eps = arith.constant 1.000000e-05 : f32
  %e1 = tensor.empty() : tensor<4xf32>
  %zero = linalg.fill ins(%cst : f32) outs(%e1 : tensor<4xf32>) -> tensor<4xf32>
  %sum = linalg.generic {indexing_maps = [#id, #rows], iterator_types = ["parallel", "reduction"]} ins(%x : tensor<4x32xf32>) outs(%zero : tensor<4xf32>) {
  ^bb0(%in: f32, %out: f32):
    %0 = arith.addf %in, %out : f32
    linalg.yield %0 : f32
  } -> tensor<4xf32>
  %vsum = linalg.generic {indexing_maps = [#id, #rows, #rows], iterator_types = ["parallel", "reduction"]} ins(%x, %sum : tensor<4x32xf32>, tensor<4xf32>) outs(%zero : tensor<4xf32>) {
  ^bb0(%in: f32, %s: f32, %out: f32):
    %0 = arith.divf %s, %n : f32
    %1 = arith.subf %in, %0 : f32
    %2 = arith.mulf %1, %1 : f32
    %3 = arith.addf %out, %2 : f32
    linalg.yield %3 : f32
  } -> tensor<4xf32>
  %e = tensor.empty() : tensor<4x32xf32>
  %y = linalg.generic {indexing_maps = [#id, #rows, #rows, #col, #id], iterator_types = ["parallel", "parallel"]} ins(%x, %sum, %vsum, %w : tensor<4x32xf32>, tensor<4xf32>, tensor<4xf32>, tensor<32xf32>) outs(%e : tensor<4x32xf32>) {
  ^bb0(%in: f32, %s: f32, %v: f32, %g: f32, %out: f32):
    %0 = arith.divf %s, %n : f32
    %1 = arith.subf %in, %0 : f32
    %2 = arith.divf %v, %n : f32
    %3 = arith.addf %2, %eps : f32
    %4 = math.rsqrt %3 : f32
    %5 = arith.mulf %1, %4 : f32
    %6 = arith.mulf %5, %g : f32
    linalg.yield %6 : f32
  } -> tensor<4x32xf32>
  return %y : tensor<4x32xf32>
}

// -----

#id = affine_map<(d0, d1) -> (d0, d1)>
#rows = affine_map<(d0, d1) -> (d0)>
#col = affine_map<(d0, d1) -> (d1)>

// The variance as E[x²] - mean² is not one of the recognised forms.
// CHECK-LABEL: func.func @layer_norm_variance_from_moments
// CHECK-NOT: qlr.
// CHECK: linalg.generic
// CHECK: math.rsqrt
// CHECK-NOT: qlr.
// CHECK: return
func.func @layer_norm_variance_from_moments(%x: tensor<4x32xf32>, %w: tensor<32xf32>, %b: tensor<32xf32>) -> tensor<4x32xf32> {
  %cst = arith.constant 0.000000e+00 : f32
  %n = arith.constant 3.200000e+01 : f32
  %eps = arith.constant 1.000000e-05 : f32
  %e1 = tensor.empty() : tensor<4xf32>
  %zero = linalg.fill ins(%cst : f32) outs(%e1 : tensor<4xf32>) -> tensor<4xf32>
  %sum = linalg.generic {indexing_maps = [#id, #rows], iterator_types = ["parallel", "reduction"]} ins(%x : tensor<4x32xf32>) outs(%zero : tensor<4xf32>) {
  ^bb0(%in: f32, %out: f32):
    %0 = arith.addf %in, %out : f32
    linalg.yield %0 : f32
  } -> tensor<4xf32>
  %ss = linalg.generic {indexing_maps = [#id, #rows], iterator_types = ["parallel", "reduction"]} ins(%x : tensor<4x32xf32>) outs(%zero : tensor<4xf32>) {
  ^bb0(%in: f32, %out: f32):
    %0 = arith.mulf %in, %in : f32
    %1 = arith.addf %out, %0 : f32
    linalg.yield %1 : f32
  } -> tensor<4xf32>
  %e = tensor.empty() : tensor<4x32xf32>
  %y = linalg.generic {indexing_maps = [#id, #rows, #rows, #col, #col, #id], iterator_types = ["parallel", "parallel"]} ins(%x, %sum, %ss, %w, %b : tensor<4x32xf32>, tensor<4xf32>, tensor<4xf32>, tensor<32xf32>, tensor<32xf32>) outs(%e : tensor<4x32xf32>) {
  ^bb0(%in: f32, %s: f32, %q: f32, %g: f32, %bias: f32, %out: f32):
    %0 = arith.divf %s, %n : f32
    %1 = arith.subf %in, %0 : f32
    %2 = arith.divf %q, %n : f32
    %3 = arith.mulf %0, %0 : f32
    %4 = arith.subf %2, %3 : f32
    %5 = arith.addf %4, %eps : f32
    %6 = math.rsqrt %5 : f32
    %7 = arith.mulf %1, %6 : f32
    %8 = arith.mulf %7, %g : f32
    %9 = arith.addf %8, %bias : f32
    linalg.yield %9 : f32
  } -> tensor<4x32xf32>
  return %y : tensor<4x32xf32>
}
