// Linalg ops cut into chunks by qlr-parallelize-linalg compute what the
// serial ops compute: y[t, c] = x[t, c] + t with x[t, c] = c, over 1000 rows
// of 64 and its row-wise maxima (63 + t): chunks of max(ceil(1000 / 2),
// ceil(32768 / 64)) = 512 and 488 rows on two threads, the second one's
// linalg.index offset by 512; the same over 333 and 3 rows (below min-work:
// one chunk, run on the calling thread). The sums of the row maxima are exact in f32:
// 1000 * 63 + 499500 = 562500, 333 * 63 + 55278 = 76257, 3 * 63 + 3 = 192.
// RUN: %if openmp %{ quant-opt %s --pass-pipeline="builtin.module(qlr-cpu-pipeline{openmp=true})" | env OMP_NUM_THREADS=2 mlir-runner -e main -entry-point-result=void -shared-libs=%mlir_runner_utils,%mlir_c_runner_utils,%libomp | FileCheck %s %}
// RUN: %if openmp %{ quant-opt %s --pass-pipeline="builtin.module(qlr-cpu-pipeline{openmp=true})" --mlir-print-ir-after=qlr-parallelize-linalg -o /dev/null 2>&1 | FileCheck %s --check-prefix=IR %}
// RUN: quant-opt %s --qlr-cpu-pipeline | mlir-runner -e main -entry-point-result=void -shared-libs=%mlir_runner_utils,%mlir_c_runner_utils | FileCheck %s
// IR: scf.parallel
// CHECK: 562500
// CHECK: 76257
// CHECK: 192

#id = affine_map<(d0, d1) -> (d0, d1)>
#row = affine_map<(d0, d1) -> (d0)>

func.func @offset_rows(%x: tensor<?x64xf32>) -> tensor<?x64xf32> {
  %c0 = arith.constant 0 : index
  %n = tensor.dim %x, %c0 : tensor<?x64xf32>
  %init = tensor.empty(%n) : tensor<?x64xf32>
  %y = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]}
      ins(%x : tensor<?x64xf32>) outs(%init : tensor<?x64xf32>) {
  ^bb0(%a: f32, %b: f32):
    %t = linalg.index 0 : index
    %ti = arith.index_cast %t : index to i32
    %tf = arith.sitofp %ti : i32 to f32
    %s = arith.addf %a, %tf : f32
    linalg.yield %s : f32
  } -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

func.func @row_max(%y: tensor<?x64xf32>) -> tensor<?xf32> {
  %c0 = arith.constant 0 : index
  %n = tensor.dim %y, %c0 : tensor<?x64xf32>
  %ninf = arith.constant 0xFF800000 : f32
  %empty = tensor.empty(%n) : tensor<?xf32>
  %init = linalg.fill ins(%ninf : f32) outs(%empty : tensor<?xf32>) -> tensor<?xf32>
  %m = linalg.generic {indexing_maps = [#id, #row], iterator_types = ["parallel", "reduction"]}
      ins(%y : tensor<?x64xf32>) outs(%init : tensor<?xf32>) {
  ^bb0(%a: f32, %b: f32):
    %r = arith.maximumf %a, %b : f32
    linalg.yield %r : f32
  } -> tensor<?xf32>
  return %m : tensor<?xf32>
}

func.func @columns(%n: index) -> tensor<?x64xf32> {
  %x = tensor.generate %n {
  ^bb0(%t: index, %c: index):
    %ci = arith.index_cast %c : index to i32
    %cf = arith.sitofp %ci : i32 to f32
    tensor.yield %cf : f32
  } : tensor<?x64xf32>
  return %x : tensor<?x64xf32>
}

func.func @sum(%v: tensor<?xf32>) -> f32 {
  %zero = arith.constant 0.0 : f32
  %init = tensor.empty() : tensor<f32>
  %acc = linalg.fill ins(%zero : f32) outs(%init : tensor<f32>) -> tensor<f32>
  %s = linalg.generic {indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> ()>], iterator_types = ["reduction"]}
      ins(%v : tensor<?xf32>) outs(%acc : tensor<f32>) {
  ^bb0(%a: f32, %b: f32):
    %r = arith.addf %a, %b : f32
    linalg.yield %r : f32
  } -> tensor<f32>
  %e = tensor.extract %s[] : tensor<f32>
  return %e : f32
}

func.func @main() {
  %c1000 = arith.constant 1000 : index
  %c333 = arith.constant 333 : index
  %c3 = arith.constant 3 : index
  %x = call @columns(%c1000) : (index) -> tensor<?x64xf32>
  %y = call @offset_rows(%x) : (tensor<?x64xf32>) -> tensor<?x64xf32>
  %m1 = call @row_max(%y) : (tensor<?x64xf32>) -> tensor<?xf32>
  %m1sum = call @sum(%m1) : (tensor<?xf32>) -> f32
  vector.print %m1sum : f32
  %x2 = call @columns(%c333) : (index) -> tensor<?x64xf32>
  %y2 = call @offset_rows(%x2) : (tensor<?x64xf32>) -> tensor<?x64xf32>
  %m = call @row_max(%y2) : (tensor<?x64xf32>) -> tensor<?xf32>
  %msum = call @sum(%m) : (tensor<?xf32>) -> f32
  vector.print %msum : f32
  %x3 = call @columns(%c3) : (index) -> tensor<?x64xf32>
  %y3 = call @offset_rows(%x3) : (tensor<?x64xf32>) -> tensor<?x64xf32>
  %m3 = call @row_max(%y3) : (tensor<?x64xf32>) -> tensor<?xf32>
  %m3sum = call @sum(%m3) : (tensor<?xf32>) -> f32
  vector.print %m3sum : f32
  return
}
