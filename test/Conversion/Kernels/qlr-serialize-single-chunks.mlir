// RUN: quant-opt %s --split-input-file --qlr-serialize-single-chunks | FileCheck %s

// A one-dimensional worksharing loop with bounds from outside the region:
// the region forks only when the loop has more than one iteration.
// CHECK-LABEL: func.func @chunks(
// CHECK-SAME: %[[LB:[^:]+]]: index, %[[UB:[^:]+]]: index, %[[STEP:[^:]+]]: index
// CHECK: %[[EXTENT:.+]] = arith.subi %[[UB]], %[[LB]] : index
// CHECK: %[[SEVERAL:.+]] = arith.cmpi sgt, %[[EXTENT]], %[[STEP]] : index
// CHECK: omp.parallel if(%[[SEVERAL]])
func.func @chunks(%lb: index, %ub: index, %step: index, %m: memref<?xf32>) {
  %zero = arith.constant 0.0 : f32
  omp.parallel {
    omp.wsloop {
      omp.loop_nest (%i) : index = (%lb) to (%ub) step (%step) {
        memref.store %zero, %m[%i] : memref<?xf32>
        omp.yield
      }
    }
    omp.terminator
  }
  return
}

// -----

// An if clause already there, bounds computed inside the region, or
// something with side effects beside the loop: left alone.
// CHECK-LABEL: func.func @untouched(
// CHECK: omp.parallel if(%arg3)
// CHECK: omp.parallel {
// CHECK: omp.parallel {
// CHECK-NOT: if(
// CHECK: return
func.func @untouched(%lb: index, %ub: index, %step: index, %c: i1, %m: memref<?xf32>) {
  %zero = arith.constant 0.0 : f32
  omp.parallel if(%c) {
    omp.wsloop {
      omp.loop_nest (%i) : index = (%lb) to (%ub) step (%step) {
        memref.store %zero, %m[%i] : memref<?xf32>
        omp.yield
      }
    }
    omp.terminator
  }
  omp.parallel {
    %n = memref.dim %m, %lb : memref<?xf32>
    omp.wsloop {
      omp.loop_nest (%i) : index = (%lb) to (%n) step (%step) {
        memref.store %zero, %m[%i] : memref<?xf32>
        omp.yield
      }
    }
    omp.terminator
  }
  omp.parallel {
    memref.store %zero, %m[%lb] : memref<?xf32>
    omp.wsloop {
      omp.loop_nest (%i) : index = (%lb) to (%ub) step (%step) {
        memref.store %zero, %m[%i] : memref<?xf32>
        omp.yield
      }
    }
    omp.terminator
  }
  return
}
