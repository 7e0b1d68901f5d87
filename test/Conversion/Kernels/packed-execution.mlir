// The packed-panel kernels compute the right numbers on every tail path:
// 23 tokens (three tiles of 6 + 5 one by one), 70 weight rows (two panels of
// 32 + 6 rows left over with 16 lanes; four panels of 16 + 6 with 8 lanes),
// K = 300 (a 256-column chunk, then 44 = 2 x 16 + 12 with 16 lanes). x[m, k]
// = (m + 1) (1 + k mod 3) and w[n, k] = n + 1 + (k mod 4) / 4 (periods that
// do not divide the chunk, so a wrong column of x or w, or a lost chunk
// offset, changes the sums), so y[m, n] = (m + 1) (600 (n + 1) + 225):
// every value is an exact float, and the test prints the largest difference
// from that closed form (0) and one element.
// RUN: quant-opt %s --qlr-cpu-pipeline | mlir-runner -e main -entry-point-result=void -shared-libs=%mlir_runner_utils,%mlir_c_runner_utils | FileCheck %s
// 8 lanes (the AVX2 kernels: 8 x 8 transposes, panels of 16 rows).
// RUN: quant-opt %s --qlr-cpu-pipeline=vector-width=8 | mlir-runner -e main -entry-point-result=void -shared-libs=%mlir_runner_utils,%mlir_c_runner_utils | FileCheck %s
// The panels on two OpenMP threads.
// RUN: %if openmp %{ quant-opt %s --pass-pipeline="builtin.module(qlr-cpu-pipeline{openmp=true})" | env OMP_NUM_THREADS=2 mlir-runner -e main -entry-point-result=void -shared-libs=%mlir_runner_utils,%mlir_c_runner_utils,%libomp | FileCheck %s %}
// RUN: quant-opt %s --qlr-cpu-pipeline=vector-width=8 --mlir-print-ir-after=qlr-lower-contractions -o /dev/null 2>&1 | FileCheck %s --check-prefix=IR8
// IR8: memref.alloca() {alignment = 64 : i64} : memref<256x16xf32>
// IR8: vector.transpose %{{.+}}, [1, 0] : vector<8x8xf32> to vector<8x8xf32>

func.func @main() {
  %x = tensor.generate {
  ^bb0(%m: index, %k: index):
    %c3 = arith.constant 3 : index
    %r = arith.remui %k, %c3 : index
    %ri = arith.index_cast %r : index to i32
    %rf = arith.sitofp %ri : i32 to f32
    %i = arith.index_cast %m : index to i32
    %f = arith.sitofp %i : i32 to f32
    %one = arith.constant 1.0 : f32
    %row = arith.addf %f, %one : f32
    %col = arith.addf %rf, %one : f32
    %v = arith.mulf %row, %col : f32
    tensor.yield %v : f32
  } : tensor<23x300xf32>
  %w = tensor.generate {
  ^bb0(%n: index, %k: index):
    %c4 = arith.constant 4 : index
    %r = arith.remui %k, %c4 : index
    %ri = arith.index_cast %r : index to i32
    %rf = arith.sitofp %ri : i32 to f32
    %quarter = arith.constant 0.25 : f32
    %frac = arith.mulf %rf, %quarter : f32
    %i = arith.index_cast %n : index to i32
    %f = arith.sitofp %i : i32 to f32
    %one = arith.constant 1.0 : f32
    %base = arith.addf %f, %one : f32
    %v = arith.addf %base, %frac : f32
    tensor.yield %v : f32
  } : tensor<70x300xf32>
  %y = qlr.linear %x, %w : tensor<23x300xf32>, tensor<70x300xf32> -> tensor<23x70xf32>
  %zero = arith.constant 0.0 : f32
  %init = tensor.empty() : tensor<f32>
  %acc = linalg.fill ins(%zero : f32) outs(%init : tensor<f32>) -> tensor<f32>
  %err = linalg.generic {
      indexing_maps = [affine_map<(m, n) -> (m, n)>, affine_map<(m, n) -> ()>],
      iterator_types = ["reduction", "reduction"]}
      ins(%y : tensor<23x70xf32>) outs(%acc : tensor<f32>) {
  ^bb0(%v: f32, %a: f32):
    %m = linalg.index 0 : index
    %n = linalg.index 1 : index
    %mi = arith.index_cast %m : index to i32
    %ni = arith.index_cast %n : index to i32
    %mf = arith.sitofp %mi : i32 to f32
    %nf = arith.sitofp %ni : i32 to f32
    %one = arith.constant 1.0 : f32
    %c300 = arith.constant 600.0 : f32
    %c112 = arith.constant 225.0 : f32
    %m1 = arith.addf %mf, %one : f32
    %n1 = arith.addf %nf, %one : f32
    %t = arith.mulf %n1, %c300 : f32
    %t2 = arith.addf %t, %c112 : f32
    %ref = arith.mulf %m1, %t2 : f32
    %d = arith.subf %v, %ref : f32
    %ad = math.absf %d : f32
    %mx = arith.maximumf %a, %ad : f32
    linalg.yield %mx : f32
  } -> tensor<f32>
  %e = tensor.extract %err[] : tensor<f32>
  vector.print %e : f32
  %c22 = arith.constant 22 : index
  %c69 = arith.constant 69 : index
  %last = tensor.extract %y[%c22, %c69] : tensor<23x70xf32>
  vector.print %last : f32
  return
}
// CHECK: {{^}}0{{$}}
// 23 * (600 * 70 + 225) = 971175
// CHECK-NEXT: {{^}}971175{{$}}
