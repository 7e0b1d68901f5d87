// RUN: quant-opt %s --gpu-kernel-outlining --qlr-gpu-merge-kernels | FileCheck %s

// Three launches, two of them the same kernel on different buffers (as in
// two layers of a model): one GPU module with two kernels, and both
// identical launches call the same one.

// CHECK: module attributes {gpu.container_module}
// CHECK-LABEL: func.func @two_layers
// CHECK: gpu.launch_func @qlr_kernels::@[[SCALE:[a-z_0-9]+]] {{.*}} args(%arg0
// CHECK: gpu.launch_func @qlr_kernels::@[[SCALE]] {{.*}} args(%arg1
// CHECK: gpu.launch_func @qlr_kernels::@[[SHIFT:[a-z_0-9]+]] {{.*}} args(%arg1
// CHECK: gpu.module @qlr_kernels
// CHECK: gpu.func @[[SCALE]](
// CHECK: arith.mulf
// CHECK: gpu.func @[[SHIFT]](
// CHECK: arith.addf
// CHECK-NOT: gpu.func
// CHECK-NOT: gpu.module
func.func @two_layers(%a: memref<64xf32>, %b: memref<64xf32>) {
  %c1 = arith.constant 1 : index
  %c64 = arith.constant 64 : index
  gpu.launch blocks(%bx, %by, %bz) in (%gx = %c1, %gy = %c1, %gz = %c1) threads(%tx, %ty, %tz) in (%sx = %c64, %sy = %c1, %sz = %c1) {
    %v = memref.load %a[%tx] : memref<64xf32>
    %w = arith.mulf %v, %v : f32
    memref.store %w, %a[%tx] : memref<64xf32>
    gpu.terminator
  }
  gpu.launch blocks(%bx, %by, %bz) in (%gx = %c1, %gy = %c1, %gz = %c1) threads(%tx, %ty, %tz) in (%sx = %c64, %sy = %c1, %sz = %c1) {
    %v = memref.load %b[%tx] : memref<64xf32>
    %w = arith.mulf %v, %v : f32
    memref.store %w, %b[%tx] : memref<64xf32>
    gpu.terminator
  }
  gpu.launch blocks(%bx, %by, %bz) in (%gx = %c1, %gy = %c1, %gz = %c1) threads(%tx, %ty, %tz) in (%sx = %c64, %sy = %c1, %sz = %c1) {
    %v = memref.load %b[%tx] : memref<64xf32>
    %w = arith.addf %v, %v : f32
    memref.store %w, %b[%tx] : memref<64xf32>
    gpu.terminator
  }
  return
}
