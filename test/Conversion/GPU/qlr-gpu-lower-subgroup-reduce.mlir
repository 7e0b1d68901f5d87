// RUN: quant-opt %s --qlr-gpu-lower-subgroup-reduce | FileCheck %s
// RUN: quant-opt %s --qlr-gpu-lower-subgroup-reduce --convert-gpu-to-nvvm | FileCheck %s --check-prefix=NVVM

// A warp sum or maximum becomes a butterfly of 5 xor shuffles (offsets
// 1..16), each followed by the combine; NVVM turns them into shfl.sync.bfly.

// CHECK-LABEL: gpu.func @warp_max
// CHECK-NOT: gpu.subgroup_reduce
// CHECK-COUNT-5: arith.maximumf
// NVVM-COUNT-5: nvvm.shfl.sync bfly
// CHECK-LABEL: gpu.func @warp_sum
// CHECK-NOT: gpu.subgroup_reduce
// CHECK-COUNT-5: gpu.shuffle xor
// CHECK: memref.store
// NVVM-COUNT-5: nvvm.shfl.sync bfly
gpu.module @m {
  gpu.func @warp_max(%a: memref<32xf32>) kernel {
    %t = gpu.thread_id x
    %v = memref.load %a[%t] : memref<32xf32>
    %r = gpu.subgroup_reduce maximumf %v uniform : (f32) -> f32
    memref.store %r, %a[%t] : memref<32xf32>
    gpu.return
  }
  gpu.func @warp_sum(%a: memref<32xf32>) kernel {
    %t = gpu.thread_id x
    %v = memref.load %a[%t] : memref<32xf32>
    %r = gpu.subgroup_reduce add %v uniform : (f32) -> f32
    memref.store %r, %a[%t] : memref<32xf32>
    gpu.return
  }
}
