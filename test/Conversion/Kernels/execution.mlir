// The vectorised linear-layer kernels compute the right numbers, on every
// tail path: 5 tokens (a tile of 4 + 1), 6 weight rows (a block of 4 + 2 one
// by one), K = 20 (16 lanes + a masked read of 4). x[m, k] = m + 1 and
// w[n, k] = n + 1 + 0.5 (k mod 2), so y[m, n] = (m + 1) (20 (n + 1) + 5).
// RUN: quant-opt %s --qlr-cpu-pipeline | mlir-runner -e main -entry-point-result=void -shared-libs=%mlir_runner_utils,%mlir_c_runner_utils | FileCheck %s
// Again with @main cut into pieces of at most 3 operations (qlr-split-functions).
// RUN: quant-opt %s --qlr-split-functions="ops-per-function=2" --qlr-cpu-pipeline | mlir-runner -e main -entry-point-result=void -shared-libs=%mlir_runner_utils,%mlir_c_runner_utils | FileCheck %s
// Again on two OpenMP threads.
// RUN: %if openmp %{ quant-opt %s --pass-pipeline="builtin.module(qlr-cpu-pipeline{openmp=true})" | env OMP_NUM_THREADS=2 mlir-runner -e main -entry-point-result=void -shared-libs=%mlir_runner_utils,%mlir_c_runner_utils,%libomp | FileCheck %s %}

func.func private @printMemrefF32(memref<*xf32>) attributes {llvm.emit_c_interface}

func.func @main() {
  %x = arith.constant dense<[[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0], [2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0], [3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0], [4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0], [5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0]]> : tensor<5x20xf32>
  %w = arith.constant dense<[[1.0, 1.5, 1.0, 1.5, 1.0, 1.5, 1.0, 1.5, 1.0, 1.5, 1.0, 1.5, 1.0, 1.5, 1.0, 1.5, 1.0, 1.5, 1.0, 1.5], [2.0, 2.5, 2.0, 2.5, 2.0, 2.5, 2.0, 2.5, 2.0, 2.5, 2.0, 2.5, 2.0, 2.5, 2.0, 2.5, 2.0, 2.5, 2.0, 2.5], [3.0, 3.5, 3.0, 3.5, 3.0, 3.5, 3.0, 3.5, 3.0, 3.5, 3.0, 3.5, 3.0, 3.5, 3.0, 3.5, 3.0, 3.5, 3.0, 3.5], [4.0, 4.5, 4.0, 4.5, 4.0, 4.5, 4.0, 4.5, 4.0, 4.5, 4.0, 4.5, 4.0, 4.5, 4.0, 4.5, 4.0, 4.5, 4.0, 4.5], [5.0, 5.5, 5.0, 5.5, 5.0, 5.5, 5.0, 5.5, 5.0, 5.5, 5.0, 5.5, 5.0, 5.5, 5.0, 5.5, 5.0, 5.5, 5.0, 5.5], [6.0, 6.5, 6.0, 6.5, 6.0, 6.5, 6.0, 6.5, 6.0, 6.5, 6.0, 6.5, 6.0, 6.5, 6.0, 6.5, 6.0, 6.5, 6.0, 6.5]]> : tensor<6x20xf32>
  %y = qlr.linear %x, %w : tensor<5x20xf32>, tensor<6x20xf32> -> tensor<5x6xf32>
  %m = bufferization.to_buffer %y : tensor<5x6xf32> to memref<5x6xf32>
  %u = memref.cast %m : memref<5x6xf32> to memref<*xf32>
  call @printMemrefF32(%u) : (memref<*xf32>) -> ()
  return
}
// CHECK: [25,   45,   65,   85,   105,   125]
// CHECK-NEXT: [50,   90,   130,   170,   210,   250]
// CHECK-NEXT: [75,   135,   195,   255,   315,   375]
// CHECK-NEXT: [100,   180,   260,   340,   420,   500]
// CHECK-NEXT: [125,   225,   325,   425,   525,   625]
