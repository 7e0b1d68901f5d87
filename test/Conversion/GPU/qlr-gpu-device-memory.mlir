// RUN: quant-opt %s --split-input-file --qlr-gpu-device-memory --verify-diagnostics | FileCheck %s
// RUN: quant-opt %s --split-input-file --qlr-gpu-device-memory --gpu-kernel-outlining --verify-diagnostics | FileCheck %s --check-prefix=OUTLINED

// Host allocations, frees and copies move to device memory; a constant the
// kernel reads is sunk into it, so outlining copies the global into the GPU
// module instead of passing a host address.

// CHECK-LABEL: func.func @scale
// CHECK: %[[TMP:.*]] = gpu.alloc (%{{.*}}) : memref<?xf32>
// CHECK: gpu.launch
// CHECK-NEXT: %[[T:.*]] = memref.get_global @table : memref<4xf32>
// CHECK-NEXT: memref.load %[[T]]
// CHECK: gpu.terminator
// CHECK: gpu.memcpy %{{.*}}, %{{.*}} : memref<4xf32>, memref<4xf32>
// CHECK: gpu.dealloc %[[TMP]] : memref<?xf32>
// CHECK-NOT: memref.alloc
// CHECK-NOT: memref.copy
// CHECK-NOT: memref.dealloc
// OUTLINED: gpu.module @scale_kernel
// OUTLINED: gpu.func @scale_kernel(%{{.*}}: memref<4xf32>) kernel
// OUTLINED: memref.get_global @table
// OUTLINED: gpu.return
// OUTLINED: memref.global "private" constant @table : memref<4xf32>
memref.global "private" constant @table : memref<4xf32> = dense<[1.0, 2.0, 3.0, 4.0]>
func.func @scale(%out: memref<4xf32>, %copy: memref<4xf32>, %n: index) {
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  %t = memref.get_global @table : memref<4xf32>
  %tmp = memref.alloc(%n) : memref<?xf32>
  gpu.launch blocks(%bx, %by, %bz) in (%gx = %c1, %gy = %c1, %gz = %c1) threads(%tx, %ty, %tz) in (%sx = %c4, %sy = %c1, %sz = %c1) {
    %v = memref.load %t[%tx] : memref<4xf32>
    memref.store %v, %out[%tx] : memref<4xf32>
    gpu.terminator
  }
  memref.copy %out, %copy : memref<4xf32> to memref<4xf32>
  memref.dealloc %tmp : memref<?xf32>
  return
}

// -----

func.func @host_read(%out: memref<4xf32>) -> f32 {
  %c0 = arith.constant 0 : index
  // expected-error @below {{reads or writes a buffer's elements in host code, but a GPU model's buffers are in device memory}}
  %v = memref.load %out[%c0] : memref<4xf32>
  return %v : f32
}
