// RUN: quant-opt %s --split-input-file --qlr-gpu-distribute --verify-diagnostics
// RUN: not quant-opt %s --qlr-gpu-distribute=block-size=48 2>&1 | FileCheck %s --check-prefix=SIZE

// SIZE: qlr-gpu-distribute: block-size must be a multiple of 32 between 32 and 1024, not 48

func.func @on_tensors(%t: tensor<4xf32>) -> tensor<4xf32> {
  %zero = arith.constant 0.0 : f32
  // expected-error @below {{must be bufferized before GPU distribution}}
  %r = linalg.fill ins(%zero : f32) outs(%t : tensor<4xf32>) -> tensor<4xf32>
  return %r : tensor<4xf32>
}

// -----

func.func @full_reduction(%a: memref<64xf32>, %out: memref<f32>) {
  // expected-error @below {{has no parallel loop to distribute over GPU threads}}
  linalg.generic {indexing_maps = [affine_map<(k) -> (k)>, affine_map<(k) -> ()>], iterator_types = ["reduction"]}
      ins(%a : memref<64xf32>) outs(%out : memref<f32>) {
  ^bb0(%x: f32, %acc: f32):
    %s = arith.addf %x, %acc : f32
    linalg.yield %s : f32
  }
  return
}

// -----

func.func @nested_in_host_loop(%a: memref<4xf32>, %n: index) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %zero = arith.constant 0.0 : f32
  scf.for %i = %c0 to %n step %c1 {
    // expected-error @below {{is nested in host control flow; only linalg ops and copies at a function's top level become GPU kernels}}
    linalg.fill ins(%zero : f32) outs(%a : memref<4xf32>)
  }
  return
}
