// RUN: quant-opt %s --split-input-file --qlr-batch="function=f size=4" | FileCheck %s
// RUN: quant-opt %s --split-input-file --qlr-batch="function=f size=0 name=g" | FileCheck %s --check-prefix=DYN
// RUN: quant-opt %s --split-input-file --qlr-batch="function=f size=3 arguments=0" | FileCheck %s --check-prefix=SHARED

// The KV-cache step of a decoder in miniature: a shared position, a linear
// with a shared weight, a RoPE-like gather from a shared table and a cache
// update. The linear keeps its weight and takes the batch and the rows as
// one dimension ([B·T, K], one matrix product); the generic gets
// an outer parallel loop; the gather of a batched tensor reads element d0;
// the cache write gains a leading offset, size and stride.
#id = affine_map<(t, j) -> (t, j)>
func.func @f(%x: tensor<?x8xf32>, %pos: index, %cache: tensor<16x8xf32> {bufferization.writable = true})
    -> (tensor<?x8xf32>, tensor<16x8xf32>) {
  %w = arith.constant dense<1.0> : tensor<8x8xf32>
  %table = arith.constant dense<2.0> : tensor<16xf32>
  %c0 = arith.constant 0 : index
  %n = tensor.dim %x, %c0 : tensor<?x8xf32>
  %y = qlr.linear %x, %w : tensor<?x8xf32>, tensor<8x8xf32> -> tensor<?x8xf32>
  %e = tensor.empty(%n) : tensor<?x8xf32>
  %r = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]}
      ins(%y : tensor<?x8xf32>) outs(%e : tensor<?x8xf32>) {
  ^bb0(%in: f32, %out: f32):
    %t = linalg.index 0 : index
    %j = linalg.index 1 : index
    %p = arith.addi %pos, %t : index
    %s = tensor.extract %table[%p] : tensor<16xf32>
    %c7 = arith.constant 7 : index
    %k = arith.subi %c7, %j : index
    %swap = tensor.extract %y[%t, %k] : tensor<?x8xf32>
    %a = arith.mulf %in, %s : f32
    %b = arith.addf %a, %swap : f32
    linalg.yield %b : f32
  } -> tensor<?x8xf32>
  %c = tensor.insert_slice %r into %cache[%pos, 0] [%n, 8] [1, 1] : tensor<?x8xf32> into tensor<16x8xf32>
  return %r, %c : tensor<?x8xf32>, tensor<16x8xf32>
}

// CHECK-LABEL: func.func @f(
// CHECK-LABEL: func.func @f_batched(
// CHECK-SAME:      %[[X:.*]]: tensor<4x?x8xf32>, %[[POS:.*]]: index, %[[CACHE:.*]]: tensor<4x16x8xf32> {bufferization.writable = true})
// CHECK-SAME:      -> (tensor<4x?x8xf32>, tensor<4x16x8xf32>)
// CHECK:         %[[C1:.*]] = arith.constant 1 : index
// CHECK:         %[[N:.*]] = tensor.dim %[[X]], %[[C1]] : tensor<4x?x8xf32>
// CHECK:         %[[ROWS:.*]] = tensor.collapse_shape %[[X]] {{\[}}[0, 1], [2]] : tensor<4x?x8xf32> into tensor<?x8xf32>
// CHECK:         %[[PRODUCT:.*]] = qlr.linear %[[ROWS]], %{{.*}} : tensor<?x8xf32>, tensor<8x8xf32> -> tensor<?x8xf32>
// CHECK:         %[[Y:.*]] = tensor.expand_shape %[[PRODUCT]] {{\[}}[0, 1], [2]] output_shape [4, %{{.*}}, 8] : tensor<?x8xf32> into tensor<4x?x8xf32>
// CHECK:         %[[E:.*]] = tensor.empty(%[[N]]) : tensor<4x?x8xf32>
// CHECK:         %[[R:.*]] = linalg.generic
// CHECK-SAME:        iterator_types = ["parallel", "parallel", "parallel"]
// CHECK-SAME:        ins(%[[Y]] : tensor<4x?x8xf32>) outs(%[[E]] : tensor<4x?x8xf32>)
// CHECK:           %[[T:.*]] = linalg.index 1 : index
// CHECK:           %[[J:.*]] = linalg.index 2 : index
// CHECK:           tensor.extract %{{.*}}[%{{.*}}] : tensor<16xf32>
// CHECK:           %[[B:.*]] = linalg.index 0 : index
// CHECK:           tensor.extract %[[Y]][%[[B]], %[[T]], %{{.*}}] : tensor<4x?x8xf32>
// CHECK:         tensor.insert_slice %[[R]] into %[[CACHE]][0, %[[POS]], 0] [4, %[[N]], 8] [1, 1, 1] : tensor<4x?x8xf32> into tensor<4x16x8xf32>

// DYN-LABEL: func.func @g(
// DYN-SAME:      %[[X:.*]]: tensor<?x?x8xf32>, %{{.*}}: index, %{{.*}}: tensor<?x16x8xf32> {bufferization.writable = true})
// DYN:           %[[B:.*]] = tensor.dim %[[X]], %c0{{.*}} : tensor<?x?x8xf32>
// Two dynamic leading dimensions stay apart (see Batch.cpp).
// DYN:           qlr.linear %[[X]], %{{.*}} : tensor<?x?x8xf32>, tensor<8x8xf32> -> tensor<?x?x8xf32>
// DYN:           tensor.empty(%[[B]], %{{.*}}) : tensor<?x?x8xf32>
// DYN:           tensor.insert_slice {{.*}} [%[[B]], %{{.*}}, 8] [1, 1, 1] : tensor<?x?x8xf32> into tensor<?x16x8xf32>

// Only the tokens batched: the cache is shared, so the update writes a
// broadcast copy of it.
// SHARED-LABEL: func.func @f_batched(
// SHARED-SAME:      %[[X:.*]]: tensor<3x?x8xf32>, %{{.*}}: index, %[[CACHE:.*]]: tensor<16x8xf32> {bufferization.writable = true})
// SHARED:         %[[E:.*]] = tensor.empty() : tensor<3x16x8xf32>
// SHARED:         %[[COPIES:.*]] = linalg.broadcast ins(%[[CACHE]] : tensor<16x8xf32>) outs(%[[E]] : tensor<3x16x8xf32>) dimensions = [0]
// SHARED:         tensor.insert_slice %{{.*}} into %[[COPIES]][0, %{{.*}}, 0] [3, %{{.*}}, 8] [1, 1, 1]

// -----

// Shared inputs do not index the batch loop; a shared result is broadcast;
// reshapes, slices and norms gain the leading dimension.
#row = affine_map<(i, j) -> (i, j)>
#col = affine_map<(i, j) -> (j)>
func.func @f(%x: tensor<2x6xf32>) -> (tensor<2x6xf32>, tensor<3x2xf32>, tensor<6xf32>) {
  %g = arith.constant dense<1.0> : tensor<6xf32>
  %bias = arith.constant dense<0.5> : tensor<6xf32>
  %n = qlr.rms_norm %x, %g eps = 1.0e-5 : tensor<2x6xf32>, tensor<6xf32>
  %e = tensor.empty() : tensor<2x6xf32>
  %y = linalg.generic {indexing_maps = [#row, #col, #row], iterator_types = ["parallel", "parallel"]}
      ins(%n, %bias : tensor<2x6xf32>, tensor<6xf32>) outs(%e : tensor<2x6xf32>) {
  ^bb0(%a: f32, %b: f32, %o: f32):
    %s = arith.addf %a, %b : f32
    linalg.yield %s : f32
  } -> tensor<2x6xf32>
  %flat = tensor.collapse_shape %y [[0, 1]] : tensor<2x6xf32> into tensor<12xf32>
  %part = tensor.extract_slice %flat[0] [6] [2] : tensor<12xf32> to tensor<6xf32>
  %m = tensor.expand_shape %part [[0, 1]] output_shape [3, 2] : tensor<6xf32> into tensor<3x2xf32>
  return %y, %m, %bias : tensor<2x6xf32>, tensor<3x2xf32>, tensor<6xf32>
}

// CHECK-DAG:   #[[ID3:.*]] = affine_map<(d0, d1, d2) -> (d0, d1, d2)>
// CHECK-DAG:   #[[COLMAP:.*]] = affine_map<(d0, d1, d2) -> (d2)>
// CHECK-LABEL: func.func @f_batched(
// CHECK-SAME:      %[[X:.*]]: tensor<4x2x6xf32>)
// CHECK:         %[[BIAS:.*]] = arith.constant dense<5.000000e-01> : tensor<6xf32>
// CHECK:         %[[N:.*]] = qlr.rms_norm %[[X]], %{{.*}} eps = {{.*}} : tensor<4x2x6xf32>, tensor<6xf32>
// CHECK:         %[[Y:.*]] = linalg.generic {indexing_maps = [#[[ID3]], #[[COLMAP]], #[[ID3]]]
// CHECK-SAME:        ins(%[[N]], %[[BIAS]] : tensor<4x2x6xf32>, tensor<6xf32>)
// CHECK:         %[[FLAT:.*]] = tensor.collapse_shape %[[Y]] {{\[}}[0], [1, 2]] : tensor<4x2x6xf32> into tensor<4x12xf32>
// CHECK:         %[[PART:.*]] = tensor.extract_slice %[[FLAT]][0, 0] [4, 6] [1, 2] : tensor<4x12xf32> to tensor<4x6xf32>
// CHECK:         %[[M:.*]] = tensor.expand_shape %[[PART]] {{\[}}[0], [1, 2]] output_shape [4, 3, 2] : tensor<4x6xf32> into tensor<4x3x2xf32>
// CHECK:         %[[E:.*]] = tensor.empty() : tensor<4x6xf32>
// CHECK:         %[[COPIES:.*]] = linalg.broadcast ins(%[[BIAS]] : tensor<6xf32>) outs(%[[E]] : tensor<4x6xf32>) dimensions = [0]
// CHECK:         return %[[Y]], %[[M]], %[[COPIES]]

// -----

// Reshapes to and from rank 0 keep the batch in their one group.
func.func @f(%x: tensor<1x1xf32>) -> tensor<1xf32> {
  %s = tensor.collapse_shape %x [] : tensor<1x1xf32> into tensor<f32>
  %v = tensor.expand_shape %s [] output_shape [1] : tensor<f32> into tensor<1xf32>
  return %v : tensor<1xf32>
}

// CHECK-LABEL: func.func @f_batched(
// CHECK-SAME:      %[[X:.*]]: tensor<4x1x1xf32>) -> tensor<4x1xf32>
// CHECK:         %[[S:.*]] = tensor.collapse_shape %[[X]] {{\[}}[0, 1, 2]] : tensor<4x1x1xf32> into tensor<4xf32>
// CHECK:         tensor.expand_shape %[[S]] {{\[}}[0, 1]] output_shape [4, 1] : tensor<4xf32> into tensor<4x1xf32>
