// RUN: quant-opt %s --split-input-file --qlr-approximate-math | FileCheck %s
// The CPU pipeline runs it unless approximate-math=false.
// RUN: quant-opt %s --split-input-file --qlr-cpu-pipeline --mlir-print-ir-after=qlr-approximate-math -o /dev/null 2>&1 | FileCheck %s --check-prefix=PIPELINE
// RUN: quant-opt %s --split-input-file --qlr-cpu-pipeline=approximate-math=false --mlir-print-ir-after-all -o /dev/null 2>&1 | FileCheck %s --check-prefix=EXACT

// An f32 exp becomes arithmetic: range reduction (floor of x / ln 2), a
// polynomial of fmas, the exponent shifted into place; then selects for NaN,
// overflow and underflow around it.
// CHECK-LABEL: func.func @scalar(
// CHECK-SAME: %[[X:.+]]: f32
// CHECK-NOT: math.exp
// CHECK: math.floor
// CHECK: math.fma
// CHECK: arith.shli
// CHECK: arith.bitcast {{.+}} : i32 to f32
// CHECK: %[[TINY:.+]] = arith.cmpf olt, %[[X]], %{{.+}} : f32
// CHECK: %[[HUGE:.+]] = arith.cmpf ogt, %[[X]], %{{.+}} : f32
// CHECK: %[[NAN:.+]] = arith.cmpf uno, %[[X]], %[[X]] : f32
// CHECK: %[[Z:.+]] = arith.select %[[TINY]], %cst{{.*}}, %{{.+}} : f32
// CHECK: %[[I:.+]] = arith.select %[[HUGE]], %cst{{.*}}, %[[Z]] : f32
// CHECK: %[[R:.+]] = arith.select %[[NAN]], %[[X]], %[[I]] : f32
// CHECK: return %[[R]]
// PIPELINE-LABEL: func.func @scalar(
// PIPELINE-NOT: math.exp
// PIPELINE: return
// EXACT: llvm.intr.exp
func.func @scalar(%x: f32) -> f32 {
  %e = math.exp %x : f32
  return %e : f32
}

// -----

// Vectors of f32 too.
// CHECK-LABEL: func.func @vector(
// CHECK-NOT: math.exp
// CHECK: math.fma {{.+}} : vector<16xf32>
// CHECK: arith.cmpf uno, {{.+}} : vector<16xf32>
func.func @vector(%x: vector<16xf32>) -> vector<16xf32> {
  %e = math.exp %x : vector<16xf32>
  return %e : vector<16xf32>
}

// -----

// Left alone: exp of f64 and other math ops.
// CHECK-LABEL: func.func @others(
// CHECK: math.exp %{{.+}} : f64
// CHECK: math.log %{{.+}} : f32
// CHECK-NOT: math.fma
func.func @others(%x: f64, %y: f32) -> (f64, f32) {
  %e = math.exp %x : f64
  %l = math.log %y : f32
  return %e, %l : f64, f32
}
