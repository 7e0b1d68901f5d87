// RUN: quant-opt %s --split-input-file --qlr-batch="function=f size=2" -verify-diagnostics
// RUN: not quant-opt %s --split-input-file --qlr-batch 2>&1 | FileCheck %s --check-prefix=NOFUNC
// RUN: not quant-opt %s --split-input-file --qlr-batch="function=g" 2>&1 | FileCheck %s --check-prefix=MISSING
// RUN: not quant-opt %s --split-input-file --qlr-batch="function=f arguments=5" 2>&1 | FileCheck %s --check-prefix=RANGE
// RUN: not quant-opt %s --split-input-file --qlr-batch="function=f size=-3" 2>&1 | FileCheck %s --check-prefix=SIZE
// NOFUNC: qlr-batch: needs function=NAME
// MISSING: qlr-batch: the module has no function @g
// RANGE: error: 'func.func' op has no argument #5 to batch (it has 2)
// SIZE: qlr-batch: size=-3 is not a batch size

// A linear's weight must be shared by the batch.
func.func @f(%x: tensor<?x8xf32>, %w: tensor<4x8xf32>) -> tensor<?x4xf32> {
  // expected-error @+1 {{'qlr.linear' op cannot be batched: its weight is batched (qlr.linear's weight must be shared by the batch)}}
  %y = qlr.linear %x, %w : tensor<?x8xf32>, tensor<4x8xf32> -> tensor<?x4xf32>
  return %y : tensor<?x4xf32>
}

// -----

// One element of a batched tensor outside a generic would be a scalar per
// batch element.
func.func @f(%x: tensor<8xf32>, %i: index) -> tensor<8xf32> {
  // expected-error @+1 {{'tensor.extract' op cannot be batched: it reads one element of a batched tensor outside a linalg.generic}}
  %e = tensor.extract %x[%i] : tensor<8xf32>
  %y = tensor.splat %e : tensor<8xf32>
  return %y : tensor<8xf32>
}

// -----

// Ops the transform does not know are named.
func.func @f(%x: tensor<8xf32>) -> tensor<8xf32> {
  %shape = arith.constant dense<8> : tensor<1xindex>
  // expected-error @+1 {{'tensor.reshape' op cannot be batched: it reads a batched value}}
  %s = tensor.reshape %x(%shape) : (tensor<8xf32>, tensor<1xindex>) -> tensor<8xf32>
  return %s : tensor<8xf32>
}

// -----

// Results must be tensors that can carry the batch dimension.
// expected-error @+1 {{'func.func' op cannot be batched: result #1 has type 'index', not a ranked tensor}}
func.func @f(%x: tensor<8xf32>, %i: index) -> (tensor<8xf32>, index) {
  return %x, %i : tensor<8xf32>, index
}

// -----

// A batched tensor used inside a generic other than by tensor.extract.
#id = affine_map<(d0) -> (d0)>
func.func @f(%x: tensor<4xf32>, %n: index) -> tensor<4xf32> {
  %e = tensor.empty() : tensor<4xf32>
  %y = linalg.generic {indexing_maps = [#id], iterator_types = ["parallel"]} outs(%e : tensor<4xf32>) {
  ^bb0(%o: f32):
    // expected-error @+1 {{'tensor.dim' op cannot be batched: it reads a batched tensor inside a linalg.generic other than by tensor.extract}}
    %d = tensor.dim %x, %n : tensor<4xf32>
    %f = arith.index_cast %d : index to i32
    %g = arith.sitofp %f : i32 to f32
    linalg.yield %g : f32
  } -> tensor<4xf32>
  return %y : tensor<4xf32>
}

// -----

// Regions inside a generic body are copied as they are, so they must not
// read batched values.
#id = affine_map<(d0) -> (d0)>
func.func @f(%x: tensor<4xf32>, %c: i1) -> tensor<4xf32> {
  %c0 = arith.constant 0 : index
  %e = tensor.empty() : tensor<4xf32>
  %y = linalg.generic {indexing_maps = [#id], iterator_types = ["parallel"]}
      outs(%e : tensor<4xf32>) {
  ^bb0(%o: f32):
    // expected-error @+1 {{'scf.if' op cannot be batched: its regions read a batched value inside a linalg.generic}}
    %v = scf.if %c -> f32 {
      %first = tensor.extract %x[%c0] : tensor<4xf32>
      scf.yield %first : f32
    } else {
      scf.yield %o : f32
    }
    linalg.yield %v : f32
  } -> tensor<4xf32>
  return %y : tensor<4xf32>
}
