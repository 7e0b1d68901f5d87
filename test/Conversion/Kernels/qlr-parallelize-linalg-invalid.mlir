// RUN: not quant-opt %s --qlr-parallelize-linalg=min-work=0 2>&1 | FileCheck %s --check-prefix=WORK
// RUN: quant-opt %s --split-input-file --verify-diagnostics --qlr-parallelize-linalg

// WORK: error: qlr-parallelize-linalg: min-work=0 must be at least 1

// expected-error @+1 {{'func.func' op qlr-parallelize-linalg: @omp_get_max_threads is declared with another type}}
func.func private @omp_get_max_threads() -> i64

func.func @f(%x: memref<?x576xf32>, %y: memref<?x576xf32>) {
  linalg.copy ins(%x : memref<?x576xf32>) outs(%y : memref<?x576xf32>)
  return
}
