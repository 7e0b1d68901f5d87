// Three layers that add their own weight to the running value and write it
// into their row of a shared cache compute the same with their code
// generated once (qlr-outline-layers; qlr-cpu-pipeline runs it with
// min-ops=16, more than these layers have) as with every layer lowered on
// its own. With x = 1: rows 1 + [1, 2, 3, 4],
// then + [5, 6, 7, 8], then + [9, 10, 11, 12]; the last row is returned too.
// The shared layer updates the cache in place: after bufferization it
// allocates no cache of its own and returns none.
// RUN: quant-opt %s --qlr-outline-layers=min-ops=4 --qlr-cpu-pipeline | mlir-runner -e main -entry-point-result=void -shared-libs=%mlir_runner_utils,%mlir_c_runner_utils | FileCheck %s
// RUN: quant-opt %s --pass-pipeline="builtin.module(qlr-cpu-pipeline{outline-layers=false})" | mlir-runner -e main -entry-point-result=void -shared-libs=%mlir_runner_utils,%mlir_c_runner_utils | FileCheck %s
// RUN: quant-opt %s --qlr-outline-layers=min-ops=4 --qlr-cpu-pipeline --mlir-print-ir-after=qlr-drop-argument-results -o /dev/null 2>&1 | FileCheck %s --check-prefix=IR
// CHECK:      ( ( 2, 3, 4, 5 ), ( 7, 9, 11, 13 ), ( 16, 19, 22, 25 ) )
// CHECK-NEXT: ( 16, 19, 22, 25 )
// IR-LABEL: func.func private @f_layer0(
// IR-SAME:    memref<3x4xf32>
// IR-SAME:    -> memref<4xf32>
// IR-NOT:     memref.alloc() {{.*}}: memref<3x4xf32>
// IR:         return
// IR-LABEL: func.func @f(
// IR-COUNT-3: call @f_layer0(

func.func @f(%x: tensor<4xf32>, %cache: tensor<3x4xf32> {bufferization.writable = true}) -> (tensor<4xf32>, tensor<3x4xf32>) {
  %w0 = arith.constant dense<[1.0, 2.0, 3.0, 4.0]> : tensor<4xf32>
  %e0 = tensor.empty() : tensor<4xf32>
  %a0 = linalg.add ins(%x, %w0 : tensor<4xf32>, tensor<4xf32>) outs(%e0 : tensor<4xf32>) -> tensor<4xf32>
  %c0 = tensor.insert_slice %a0 into %cache[0, 0] [1, 4] [1, 1] : tensor<4xf32> into tensor<3x4xf32>
  %r0 = tensor.extract_slice %c0[0, 0] [1, 4] [1, 1] : tensor<3x4xf32> to tensor<4xf32>
  %w1 = arith.constant dense<[5.0, 6.0, 7.0, 8.0]> : tensor<4xf32>
  %e1 = tensor.empty() : tensor<4xf32>
  %a1 = linalg.add ins(%r0, %w1 : tensor<4xf32>, tensor<4xf32>) outs(%e1 : tensor<4xf32>) -> tensor<4xf32>
  %c1 = tensor.insert_slice %a1 into %c0[1, 0] [1, 4] [1, 1] : tensor<4xf32> into tensor<3x4xf32>
  %r1 = tensor.extract_slice %c1[1, 0] [1, 4] [1, 1] : tensor<3x4xf32> to tensor<4xf32>
  %w2 = arith.constant dense<[9.0, 10.0, 11.0, 12.0]> : tensor<4xf32>
  %e2 = tensor.empty() : tensor<4xf32>
  %a2 = linalg.add ins(%r1, %w2 : tensor<4xf32>, tensor<4xf32>) outs(%e2 : tensor<4xf32>) -> tensor<4xf32>
  %c2 = tensor.insert_slice %a2 into %c1[2, 0] [1, 4] [1, 1] : tensor<4xf32> into tensor<3x4xf32>
  %r2 = tensor.extract_slice %c2[2, 0] [1, 4] [1, 1] : tensor<3x4xf32> to tensor<4xf32>
  return %r2, %c2 : tensor<4xf32>, tensor<3x4xf32>
}

func.func @main() {
  %c0 = arith.constant 0 : index
  %pad = arith.constant 0.0 : f32
  %one = arith.constant 1.0 : f32
  %xe = tensor.empty() : tensor<4xf32>
  %x = linalg.fill ins(%one : f32) outs(%xe : tensor<4xf32>) -> tensor<4xf32>
  %ce = tensor.empty() : tensor<3x4xf32>
  %cache = linalg.fill ins(%pad : f32) outs(%ce : tensor<3x4xf32>) -> tensor<3x4xf32>
  %r, %c = call @f(%x, %cache) : (tensor<4xf32>, tensor<3x4xf32>) -> (tensor<4xf32>, tensor<3x4xf32>)
  %cv = vector.transfer_read %c[%c0, %c0], %pad : tensor<3x4xf32>, vector<3x4xf32>
  vector.print %cv : vector<3x4xf32>
  %rv = vector.transfer_read %r[%c0], %pad : tensor<4xf32>, vector<4xf32>
  vector.print %rv : vector<4xf32>
  return
}
