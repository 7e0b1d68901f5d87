// RUN: quant-opt %s --split-input-file --qlr-gpu-distribute | FileCheck %s
// RUN: quant-opt %s --split-input-file --qlr-gpu-distribute=block-size=64 | FileCheck %s --check-prefix=B64

// Reductions move innermost: the op becomes a parallel loop over (h, q),
// tiled into blocks of 128 threads along q (block x) and single rows along
// h (block y), with the sum over k a sequential loop in each thread.

// CHECK-LABEL: func.func @reduction_in_the_middle
// CHECK: %[[C128:.*]] = arith.constant 128 : index
// CHECK: scf.parallel (%[[H:.*]], %[[Q:.*]]) = {{.*}} step (%{{.*}}, %[[STEP:.*]])
// CHECK: scf.parallel
// CHECK: scf.if
// CHECK: scf.for %{{.*}} = %{{.*}} to %c64
// CHECK: memref.load %{{.*}} : memref<8x64xf32>
// CHECK: arith.addf
// CHECK: memref.store
// CHECK: mapping = [#gpu.loop_dim_map<processor = sequential, {{.*}}>, #gpu.loop_dim_map<processor = thread_x, {{.*}}>]
// CHECK: mapping = [#gpu.loop_dim_map<processor = block_y, {{.*}}>, #gpu.loop_dim_map<processor = block_x, {{.*}}>]
// B64-LABEL: func.func @reduction_in_the_middle
// B64: arith.constant 64 : index
// B64-NOT: arith.constant 128 : index
#map_x = affine_map<(h, k, q) -> (h, k)>
#map_y = affine_map<(h, k, q) -> (h, q)>
func.func @reduction_in_the_middle(%a: memref<8x64xf32>, %out: memref<8x?xf32>) {
  linalg.generic {indexing_maps = [#map_x, #map_y], iterator_types = ["parallel", "reduction", "parallel"]}
      ins(%a : memref<8x64xf32>) outs(%out : memref<8x?xf32>) {
  ^bb0(%x: f32, %acc: f32):
    %s = arith.addf %x, %acc : f32
    linalg.yield %s : f32
  }
  return
}

// -----

// A copy becomes a kernel too; an innermost dimension of 40 gets a block of
// 64 threads (the next multiple of 32), guarded.

// CHECK-LABEL: func.func @copy
// CHECK-NOT: memref.copy
// CHECK: arith.constant 64 : index
// CHECK: scf.parallel
// CHECK: scf.parallel
// CHECK: arith.cmpi ult, %{{.*}}, %c40
// CHECK: scf.if
// CHECK: memref.store
// CHECK: processor = thread_x
// CHECK: processor = block_y
// CHECK-SAME: processor = block_x
func.func @copy(%a: memref<4x40xf32>, %b: memref<4x40xf32>) {
  memref.copy %a, %b : memref<4x40xf32> to memref<4x40xf32>
  return
}

// -----

// Four parallel dimensions: x, y and z of the grid take the innermost three,
// the outermost loops inside each block.

// CHECK-LABEL: func.func @four_dims
// CHECK: mapping = [#gpu.loop_dim_map<processor = sequential, {{.*}}>, #gpu.loop_dim_map<processor = sequential, {{.*}}>, #gpu.loop_dim_map<processor = sequential, {{.*}}>, #gpu.loop_dim_map<processor = thread_x, {{.*}}>]
// CHECK: mapping = [#gpu.loop_dim_map<processor = sequential, {{.*}}>, #gpu.loop_dim_map<processor = block_z, {{.*}}>, #gpu.loop_dim_map<processor = block_y, {{.*}}>, #gpu.loop_dim_map<processor = block_x, {{.*}}>]
func.func @four_dims(%out: memref<2x3x4x?xf32>) {
  %zero = arith.constant 0.0 : f32
  linalg.fill ins(%zero : f32) outs(%out : memref<2x3x4x?xf32>)
  return
}
