// RUN: quant-opt %s --split-input-file --qlr-parallelize-linalg --canonicalize --cse | FileCheck %s
// RUN: quant-opt %s --split-input-file --qlr-parallelize-linalg=min-work=64 --canonicalize | FileCheck %s --check-prefix=SMALL
// The CPU pipeline runs it with openmp only.
// RUN: quant-opt %s --split-input-file --pass-pipeline="builtin.module(qlr-cpu-pipeline{openmp=true})" --mlir-print-ir-after=qlr-parallelize-linalg -o /dev/null 2>&1 | FileCheck %s --check-prefix=PIPELINE
// RUN: quant-opt %s --split-input-file --qlr-cpu-pipeline --mlir-print-ir-after-all -o /dev/null 2>&1 | FileCheck %s --check-prefix=SERIAL

#id = affine_map<(d0, d1) -> (d0, d1)>

// The token dimension (dynamic) is cut into one chunk per thread, of at
// least ceil(32768 / 576) = 57 rows; the chunk op reads and writes subviews
// and its linalg.index is offset by the chunk's start.
// CHECK: func.func private @omp_get_max_threads() -> i32
// CHECK-LABEL: func.func @rows(
// CHECK-DAG: %[[C57:.+]] = arith.constant 57 : index
// CHECK-DAG: %[[C0:.+]] = arith.constant 0 : index
// CHECK: %[[T:.+]] = memref.dim %arg0, %[[C0]]
// CHECK-NEXT: %[[THREADS:.+]] = call @omp_get_max_threads() : () -> i32
// CHECK: %[[TI:.+]] = arith.index_cast %[[THREADS]] : i32 to index
// CHECK: %[[PER:.+]] = arith.ceildivsi %[[T]], %{{.+}} : index
// CHECK: %[[CHUNK:.+]] = arith.maxsi %[[PER]], %[[C57]] : index
// CHECK: scf.parallel (%[[I:.+]]) = (%{{.+}}) to (%{{.+}}) step (%[[CHUNK]]) {
// CHECK: %[[IN:.+]] = memref.subview %arg0[%[[I]], 0]
// CHECK: %[[OUT:.+]] = memref.subview %arg1[%[[I]], 0]
// CHECK: linalg.generic
// CHECK-SAME: ins(%[[IN]] : memref<?x576xf32, strided<[576, 1], offset: ?>>) outs(%[[OUT]] :
// CHECK: linalg.index 0
// CHECK: affine.apply
// PIPELINE-LABEL: func.func @rows(
// PIPELINE: scf.parallel
// SERIAL-NOT: omp_get_max_threads
// SERIAL-NOT: omp.parallel
func.func @rows(%x: memref<?x576xf32>, %y: memref<?x576xf32>) {
  linalg.generic {indexing_maps = [#id, #id],
                  iterator_types = ["parallel", "parallel"]}
      ins(%x : memref<?x576xf32>) outs(%y : memref<?x576xf32>) {
  ^bb0(%a: f32, %b: f32):
    %t = linalg.index 0 : index
    %ti = arith.index_cast %t : index to i32
    %tf = arith.sitofp %ti : i32 to f32
    %s = arith.addf %a, %tf : f32
    linalg.yield %s : f32
  }
  return
}

// -----

// The outermost dynamic parallel dimension is cut, not the small static
// head dimensions in front of it; the reduction over the cache rows stays
// whole in each chunk, and counts in the chunk's minimum at run time:
// ceil(32768 / (9 x rows)).
#in = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>
#out = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2)>
// CHECK-LABEL: func.func @heads(
// CHECK-DAG: %[[C9:.+]] = arith.constant 9 : index
// CHECK-DAG: %[[WORK:.+]] = arith.constant 32768 : index
// CHECK: %[[S:.+]] = memref.dim %arg0, %c3
// CHECK: %[[REST:.+]] = arith.muli %[[S]], %[[C9]] : index
// CHECK: %[[RESTPOS:.+]] = arith.maxsi %[[REST]], %c1 : index
// CHECK: %[[MIN:.+]] = arith.ceildivsi %[[WORK]], %[[RESTPOS]] : index
// CHECK: %[[CHUNK:.+]] = arith.maxsi %{{.+}}, %[[MIN]] : index
// CHECK: scf.parallel (%[[I:.+]]) = (%{{.+}}) to (%{{.+}}) step (%[[CHUNK]])
// CHECK: memref.subview %arg0[0, 0, %[[I]], 0] [3, 3, %{{.+}}, %{{.+}}]
// CHECK: memref.subview %arg1[0, 0, %[[I]]] [3, 3, %{{.+}}]
// CHECK: iterator_types = ["parallel", "parallel", "parallel", "reduction"]
func.func @heads(%s: memref<3x3x?x?xf32>, %m: memref<3x3x?xf32>) {
  linalg.generic {indexing_maps = [#in, #out],
                  iterator_types = ["parallel", "parallel", "parallel", "reduction"]}
      ins(%s : memref<3x3x?x?xf32>) outs(%m : memref<3x3x?xf32>) {
  ^bb0(%a: f32, %b: f32):
    %r = arith.maximumf %a, %b : f32
    linalg.yield %r : f32
  }
  return
}

// -----

// Without a dynamic dimension, the largest static parallel one (the minimum
// chunk is ceil(32768 / 64) = 512 rows of 64).
// CHECK-LABEL: func.func @static_large(
// CHECK: arith.constant 512 : index
// CHECK: scf.parallel (%[[I:.+]]) = (%{{.+}}) to (%{{.+}}) step
// CHECK: memref.subview %arg0[%[[I]], 0] [%{{.+}}, 64]
func.func @static_large(%x: memref<4096x64xf32>, %y: memref<4096x64xf32>) {
  linalg.copy ins(%x : memref<4096x64xf32>) outs(%y : memref<4096x64xf32>)
  return
}

// -----

// Below min-work iterations a static op stays whole; with min-work=64 it is
// cut.
// CHECK-LABEL: func.func @static_small(
// CHECK-NOT: scf.parallel
// CHECK-NOT: omp_get_max_threads
// CHECK: linalg.copy ins(%arg0 : memref<4x8xf32>)
// SMALL-LABEL: func.func @static_small(
// SMALL: scf.parallel
func.func @static_small(%x: memref<4x8xf32>, %y: memref<4x8xf32>) {
  linalg.copy ins(%x : memref<4x8xf32>) outs(%y : memref<4x8xf32>)
  return
}

// -----

// Nothing to cut: a full reduction, and an op already inside a parallel
// loop.
// CHECK-LABEL: func.func @untouched(
// CHECK-NOT: omp_get_max_threads
// CHECK: scf.parallel
// CHECK-NOT: scf.parallel
// CHECK: return
#all = affine_map<(d0) -> (d0)>
#none = affine_map<(d0) -> ()>
func.func @untouched(%x: memref<?xf32>, %sum: memref<f32>, %b: memref<?x65536xf32>) {
  linalg.generic {indexing_maps = [#all, #none], iterator_types = ["reduction"]}
      ins(%x : memref<?xf32>) outs(%sum : memref<f32>) {
  ^bb0(%a: f32, %acc: f32):
    %r = arith.addf %a, %acc : f32
    linalg.yield %r : f32
  }
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %n = memref.dim %b, %c0 : memref<?x65536xf32>
  %zero = arith.constant 0.0 : f32
  scf.parallel (%i) = (%c0) to (%n) step (%c1) {
    %row = memref.subview %b[%i, 0] [1, 65536] [1, 1] : memref<?x65536xf32> to memref<65536xf32, strided<[1], offset: ?>>
    linalg.fill ins(%zero : f32) outs(%row : memref<65536xf32, strided<[1], offset: ?>>)
    scf.reduce
  }
  return
}
