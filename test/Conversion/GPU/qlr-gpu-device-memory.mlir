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
// CHECK: gpu.memcpy %arg1, %arg0 : memref<4xf32>, memref<4xf32>
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

// -----

// A view of a constant global (a RoPE table sliced at the position) is
// sunk with its global: the kernel takes the slice's offset, not a host
// address.

// CHECK-LABEL: func.func @view_of_global
// CHECK: gpu.launch
// CHECK-NEXT: %[[G:.*]] = memref.get_global @rope
// CHECK-NEXT: %[[S:.*]] = memref.subview %[[G]][%{{.*}}, 0] [2, 4] [1, 1]
// CHECK: memref.load %[[S]]
memref.global "private" constant @rope : memref<16x4xf32> = dense<1.0>
func.func @view_of_global(%pos: index, %out: memref<2x4xf32>) {
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  %g = memref.get_global @rope : memref<16x4xf32>
  %s = memref.subview %g[%pos, 0] [2, 4] [1, 1] : memref<16x4xf32> to memref<2x4xf32, strided<[4, 1], offset: ?>>
  gpu.launch blocks(%bx, %by, %bz) in (%gx = %c1, %gy = %c1, %gz = %c1) threads(%tx, %ty, %tz) in (%sx = %c4, %sy = %c1, %sz = %c1) {
    %v = memref.load %s[%bx, %tx] : memref<2x4xf32, strided<[4, 1], offset: ?>>
    memref.store %v, %out[%bx, %tx] : memref<2x4xf32>
    gpu.terminator
  }
  return
}

// -----

memref.global "private" @state : memref<4xf32> = dense<0.0>
func.func @mutable_global(%out: memref<4xf32>) {
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  // expected-error @below {{reads the mutable global @state in a GPU kernel: a GPU model's globals must be constant}}
  %g = memref.get_global @state : memref<4xf32>
  gpu.launch blocks(%bx, %by, %bz) in (%gx = %c1, %gy = %c1, %gz = %c1) threads(%tx, %ty, %tz) in (%sx = %c4, %sy = %c1, %sz = %c1) {
    %v = memref.load %g[%tx] : memref<4xf32>
    memref.store %v, %out[%tx] : memref<4xf32>
    gpu.terminator
  }
  return
}

// -----

func.func @host_alloca(%n: index) {
  // expected-error @below {{allocates host stack memory, but a GPU model's buffers are in device memory}}
  %a = memref.alloca(%n) : memref<?xf32>
  return
}

// -----

func.func @strided_copy(%a: memref<8x8xf32>, %b: memref<4x4xf32>) {
  %s = memref.subview %a[0, 0] [4, 4] [1, 1] : memref<8x8xf32> to memref<4x4xf32, strided<[8, 1]>>
  // expected-error @below {{copies a strided view in host code}}
  memref.copy %s, %b : memref<4x4xf32, strided<[8, 1]>> to memref<4x4xf32>
  return
}
