// RUN: quant-opt %s --split-input-file --qlr-differentiate="function=f" -verify-diagnostics
// RUN: not quant-opt %s --split-input-file --qlr-differentiate 2>&1 | FileCheck %s --check-prefix=NOFUNC
// RUN: not quant-opt %s --split-input-file --qlr-differentiate="function=g" 2>&1 | FileCheck %s --check-prefix=MISSING
// RUN: not quant-opt %s --split-input-file --qlr-differentiate="function=f wrt=7" 2>&1 | FileCheck %s --check-prefix=RANGE
// NOFUNC: qlr-differentiate: needs function=NAME
// MISSING: qlr-differentiate: the module has no function @g
// RANGE: error: 'func.func' op has no argument #7 to differentiate with respect to (it has 2)

// The weight of a linear is not differentiated.
func.func @f(%x: tensor<?x8xf32>, %w: tensor<4x8xf32>) -> tensor<?x4xf32> {
  // expected-error @+1 {{'qlr.linear' op cannot be differentiated with respect to its weight}}
  %y = qlr.linear %x, %w : tensor<?x8xf32>, tensor<4x8xf32> -> tensor<?x4xf32>
  return %y : tensor<?x4xf32>
}

// -----

// Ops without an adjoint on the path are named.
func.func @f(%x: tensor<8xf32>) -> tensor<8xf32> {
  %shape = arith.constant dense<8> : tensor<1xindex>
  // expected-error @+1 {{'tensor.reshape' op cannot be differentiated: qlr-differentiate has no adjoint for this op}}
  %s = tensor.reshape %x(%shape) : (tensor<8xf32>, tensor<1xindex>) -> tensor<8xf32>
  return %s : tensor<8xf32>
}

// -----

// A product reduction is not one of the supported combiners.
#id = affine_map<(d0) -> (d0)>
#all = affine_map<(d0) -> ()>
func.func @f(%x: tensor<8xf32>) -> tensor<f32> {
  %one = arith.constant 1.0 : f32
  %e = tensor.empty() : tensor<f32>
  %i = linalg.fill ins(%one : f32) outs(%e : tensor<f32>) -> tensor<f32>
  // expected-error @+1 {{'linalg.generic' op cannot be differentiated: a reduction must yield arith.addf, arith.maximumf or arith.minimumf of its accumulator}}
  %p = linalg.generic {indexing_maps = [#id, #all], iterator_types = ["reduction"]}
      ins(%x : tensor<8xf32>) outs(%i : tensor<f32>) {
  ^bb0(%in: f32, %out: f32):
    %r = arith.mulf %out, %in : f32
    linalg.yield %r : f32
  } -> tensor<f32>
  return %p : tensor<f32>
}

// -----

// A body op without a derivative rule is named.
#id = affine_map<(d0) -> (d0)>
func.func @f(%x: tensor<8xf32>) -> tensor<8xf32> {
  %e = tensor.empty() : tensor<8xf32>
  %y = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel"]}
      ins(%x : tensor<8xf32>) outs(%e : tensor<8xf32>) {
  ^bb0(%in: f32, %out: f32):
    // expected-error @+1 {{'math.atan' op cannot be differentiated: qlr-differentiate has no derivative for it}}
    %r = math.atan %in : f32
    linalg.yield %r : f32
  } -> tensor<8xf32>
  return %y : tensor<8xf32>
}

// -----

// Only floating-point tensors are differentiated.
// expected-error @+1 {{'func.func' op has no floating-point tensor argument to differentiate with respect to}}
func.func @f(%x: tensor<8xi32>) -> tensor<8xi32> {
  return %x : tensor<8xi32>
}

// -----

// A body that reads a differentiated scalar from above.
#id = affine_map<(d0) -> (d0)>
func.func @f(%x: tensor<8xf32>) -> tensor<8xf32> {
  %c0 = arith.constant 0 : index
  %s = tensor.extract %x[%c0] : tensor<8xf32>
  %e = tensor.empty() : tensor<8xf32>
  // expected-error @+1 {{'linalg.generic' op cannot be differentiated: its body reads a scalar from above that depends on a differentiated argument}}
  %y = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel"]}
      ins(%x : tensor<8xf32>) outs(%e : tensor<8xf32>) {
  ^bb0(%in: f32, %out: f32):
    %r = arith.mulf %in, %s : f32
    linalg.yield %r : f32
  } -> tensor<8xf32>
  return %y : tensor<8xf32>
}
