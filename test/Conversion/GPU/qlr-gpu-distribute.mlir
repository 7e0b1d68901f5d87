// RUN: quant-opt %s --split-input-file --qlr-gpu-distribute=tokens-per-warp=1 --cse | FileCheck %s
// RUN: quant-opt %s --split-input-file --qlr-gpu-distribute --cse | FileCheck %s --check-prefix=TOKENS
// RUN: quant-opt %s --split-input-file --qlr-gpu-distribute="block-size=64 tokens-per-warp=1" --cse | FileCheck %s --check-prefix=B64
// RUN: quant-opt %s --split-input-file --qlr-gpu-distribute="lanes-in-sequence=true tokens-per-warp=1" --cse | FileCheck %s --check-prefix=LANES
// RUN: quant-opt %s --split-input-file --qlr-gpu-distribute=warp-reductions=false --cse | FileCheck %s --check-prefix=THREADS

// A sum with its reduction loop in the middle is still a splittable
// reduction once the loop moves innermost.
// LANES-LABEL: func.func @reduction_in_the_middle
// LANES: scf.for
// LANES: scf.for

// Without warp reductions, reductions move innermost: the op becomes a parallel loop over (h, q),
// tiled into blocks of 128 threads along q (block x) and single rows along
// h (block y), with the sum over k a sequential loop in each thread.

// THREADS-LABEL: func.func @reduction_in_the_middle
// THREADS: %[[C128:.*]] = arith.constant 128 : index
// THREADS: scf.parallel (%[[H:.*]], %[[Q:.*]]) = {{.*}} step (%{{.*}}, %[[STEP:.*]])
// THREADS: scf.parallel
// THREADS: scf.if
// THREADS: scf.for %{{.*}} = %{{.*}} to %c64
// THREADS: memref.load %{{.*}} : memref<8x64xf32>
// THREADS: arith.addf
// THREADS: memref.store
// THREADS: mapping = [#gpu.loop_dim_map<processor = sequential, {{.*}}>, #gpu.loop_dim_map<processor = thread_x, {{.*}}>]
// THREADS: mapping = [#gpu.loop_dim_map<processor = block_y, {{.*}}>, #gpu.loop_dim_map<processor = block_x, {{.*}}>]
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

// -----

// A matrix-vector product (a linear layer): one warp per output feature,
// lane l summing k = l, l + 32, ...; the lanes are combined by a warp
// reduction and lane 0 adds the total to the output. 128 threads = 4 warps,
// so 4 output features share a block.

// CHECK-LABEL: func.func @matvec
// CHECK-DAG: %[[C0:.*]] = arith.constant 0 : index
// CHECK-DAG: %[[C4:.*]] = arith.constant 4 : index
// CHECK-DAG: %[[C32:.*]] = arith.constant 32 : index
// CHECK: scf.parallel (%[[M:.*]], %[[N0:.*]]) = {{.*}} step (%{{.*}}, %[[C4]])
// CHECK: scf.parallel (%[[W:.*]], %[[L:.*]]) = (%[[C0]], %[[C0]]) to (%[[C4]], %[[C32]])
// CHECK: %[[N:.*]] = arith.addi %[[N0]], %[[W]] : index
// CHECK: scf.if
// CHECK: %[[START:.*]] = arith.addi %{{.*}}, %[[L]] : index
// CHECK: %[[PART:.*]] = scf.for %[[K:.*]] = %[[START]] to %{{.*}} step %{{.*}} iter_args(%[[ACC:.*]] = %{{.*}}) -> (f32)
// CHECK: memref.load %{{.*}}[%{{.*}}, %{{.*}}] : memref<?x64xf32>
// CHECK: memref.load %{{.*}}[%{{.*}}, %{{.*}}] : memref<16x64xf32>
// CHECK: arith.mulf
// CHECK: arith.addf %[[ACC]]
// CHECK: %[[TOTAL:.*]] = gpu.subgroup_reduce add %[[PART]] uniform : (f32) -> f32
// CHECK: arith.cmpi eq, %[[L]], %[[C0]]
// CHECK: scf.if
// CHECK: %[[OLD:.*]] = memref.load %{{.*}} : memref<?x16xf32>
// CHECK: %[[NEW:.*]] = arith.addf %[[OLD]], %[[TOTAL]] : f32
// CHECK: memref.store %[[NEW]]
// CHECK: mapping = [#gpu.loop_dim_map<processor = thread_y, {{.*}}>, #gpu.loop_dim_map<processor = thread_x, {{.*}}>]
// CHECK: mapping = [#gpu.loop_dim_map<processor = block_y, {{.*}}>, #gpu.loop_dim_map<processor = block_x, {{.*}}>]
// By default a warp computes 4 tokens' outputs when there are 4 or more
// tokens (the host chooses), sharing the weight's loads; 1 otherwise.
// TOKENS-LABEL: func.func @matvec
// TOKENS: %[[DIM:.*]] = memref.dim
// TOKENS: %[[ENOUGH:.*]] = arith.cmpi uge, %[[DIM]], %c4
// TOKENS: scf.if %[[ENOUGH]] {
// TOKENS: scf.parallel (%{{.*}}, %{{.*}}) = {{.*}} step (%c4, %c4)
// TOKENS: arith.minui
// TOKENS-COUNT-4: gpu.subgroup_reduce add
// TOKENS: } else {
// TOKENS: scf.parallel (%{{.*}}, %{{.*}}) = {{.*}} step (%c1, %c4)
// TOKENS: gpu.subgroup_reduce add
// TOKENS-NOT: gpu.subgroup_reduce
// TOKENS: return
// B64-LABEL: func.func @matvec
// B64: arith.constant 2 : index
// LANES-LABEL: func.func @matvec
// LANES-NOT: gpu.subgroup_reduce
// LANES: scf.for %[[LANE:.*]] = %{{.*}} to %{{.*}} step %{{.*}} iter_args
// LANES: scf.for %{{.*}} = %{{.*}} to %{{.*}} step %{{.*}} iter_args
// LANES: arith.addf
// LANES: arith.addf
#x = affine_map<(m, n, k) -> (m, k)>
#w = affine_map<(m, n, k) -> (n, k)>
#y = affine_map<(m, n, k) -> (m, n)>
func.func @matvec(%x: memref<?x64xf32>, %w: memref<16x64xf32>, %y: memref<?x16xf32>) {
  linalg.generic {indexing_maps = [#x, #w, #y], iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%x, %w : memref<?x64xf32>, memref<16x64xf32>) outs(%y : memref<?x16xf32>) {
  ^bb0(%a: f32, %b: f32, %acc: f32):
    %p = arith.mulf %a, %b : f32
    %s = arith.addf %acc, %p : f32
    linalg.yield %s : f32
  }
  return
}

// -----

// A maximum (softmax's first reduction) splits the same way, from -inf.

// CHECK-LABEL: func.func @row_max
// CHECK: arith.constant 0xFF800000 : f32
// CHECK: gpu.subgroup_reduce maximumf
func.func @row_max(%x: memref<?x100xf32>, %y: memref<?xf32>) {
  linalg.generic {indexing_maps = [affine_map<(m, k) -> (m, k)>, affine_map<(m, k) -> (m)>], iterator_types = ["parallel", "reduction"]}
      ins(%x : memref<?x100xf32>) outs(%y : memref<?xf32>) {
  ^bb0(%a: f32, %acc: f32):
    %s = arith.maximumf %a, %acc : f32
    linalg.yield %s : f32
  }
  return
}

// -----

// A zero fill that only initialises a warp sum's output is folded away: the
// reduction stores its totals instead of adding them to the zeros (one
// kernel launch less per linear layer).

// CHECK-LABEL: func.func @zero_init_folded
// CHECK-NOT: linalg.fill
// CHECK: gpu.subgroup_reduce add
// CHECK-NOT: memref.load {{.*}} : memref<?x16xf32>
// CHECK: memref.store %{{.*}}, %{{.*}} : memref<?x16xf32>
// CHECK: return %{{.*}} : memref<?x16xf32>
// THREADS-LABEL: func.func @zero_init_folded
// THREADS: processor = thread_x
// THREADS: arith.addf
#x = affine_map<(m, n, k) -> (m, k)>
#w = affine_map<(m, n, k) -> (n, k)>
#y = affine_map<(m, n, k) -> (m, n)>
func.func @zero_init_folded(%x: memref<?x64xf32>, %w: memref<16x64xf32>) -> memref<?x16xf32> {
  %c0 = arith.constant 0 : index
  %m = memref.dim %x, %c0 : memref<?x64xf32>
  %zero = arith.constant 0.0 : f32
  %y = memref.alloc(%m) : memref<?x16xf32>
  linalg.fill ins(%zero : f32) outs(%y : memref<?x16xf32>)
  linalg.generic {indexing_maps = [#x, #w, #y], iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%x, %w : memref<?x64xf32>, memref<16x64xf32>) outs(%y : memref<?x16xf32>) {
  ^bb0(%a: f32, %b: f32, %acc: f32):
    %p = arith.mulf %a, %b : f32
    %s = arith.addf %acc, %p : f32
    linalg.yield %s : f32
  }
  return %y : memref<?x16xf32>
}

// -----

// A fill with another value than the sum's identity (a bias of one) stays,
// and the reduction adds to it.

// CHECK-LABEL: func.func @bias_init_kept
// CHECK: gpu.subgroup_reduce add
// CHECK: %[[OLD:.*]] = memref.load %{{.*}} : memref<?x16xf32>
// CHECK: arith.addf %[[OLD]]
#x = affine_map<(m, n, k) -> (m, k)>
#w = affine_map<(m, n, k) -> (n, k)>
#y = affine_map<(m, n, k) -> (m, n)>
func.func @bias_init_kept(%x: memref<?x64xf32>, %w: memref<16x64xf32>) -> memref<?x16xf32> {
  %c0 = arith.constant 0 : index
  %m = memref.dim %x, %c0 : memref<?x64xf32>
  %one = arith.constant 1.0 : f32
  %y = memref.alloc(%m) : memref<?x16xf32>
  linalg.fill ins(%one : f32) outs(%y : memref<?x16xf32>)
  linalg.generic {indexing_maps = [#x, #w, #y], iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%x, %w : memref<?x64xf32>, memref<16x64xf32>) outs(%y : memref<?x16xf32>) {
  ^bb0(%a: f32, %b: f32, %acc: f32):
    %p = arith.mulf %a, %b : f32
    %s = arith.addf %acc, %p : f32
    linalg.yield %s : f32
  }
  return %y : memref<?x16xf32>
}

// -----

// An output indexed by the reduction loop is not one total per output
// element: no warp reduction, one thread per output instead.

// CHECK-LABEL: func.func @output_uses_k
// CHECK-NOT: gpu.subgroup_reduce
// CHECK: processor = thread_x
func.func @output_uses_k(%x: memref<8x4xf32>, %y: memref<11xf32>) {
  linalg.generic {indexing_maps = [affine_map<(m, k) -> (m, k)>, affine_map<(m, k) -> (m + k)>], iterator_types = ["parallel", "reduction"]}
      ins(%x : memref<8x4xf32>) outs(%y : memref<11xf32>) {
  ^bb0(%a: f32, %acc: f32):
    %s = arith.addf %acc, %a : f32
    linalg.yield %s : f32
  }
  return
}
