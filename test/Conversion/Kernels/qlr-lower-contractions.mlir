// RUN: quant-opt %s --split-input-file --qlr-lower-contractions | FileCheck %s
// RUN: quant-opt %s --split-input-file --qlr-lower-contractions="vector-width=8 rows=2 cols=3" | FileCheck %s --check-prefix=SMALL
// RUN: quant-opt %s --split-input-file --qlr-lower-contractions="packed-min-tokens=0" | FileCheck %s --check-prefix=MIN0

#x = affine_map<(m, n, k) -> (m, k)>
#w = affine_map<(m, n, k) -> (n, k)>
#y = affine_map<(m, n, k) -> (m, n)>

// Two layers with the same [N, K] weight share one kernel; a contraction of
// another shape gets its own (kernels are inserted at the top of the module).
// CHECK-LABEL: func.func private @qlr_contraction_3x8(
// CHECK-LABEL: func.func private @qlr_contraction_6x20(
// CHECK-SAME: %{{.+}}: memref<?x20xf32, strided<[?, 1], offset: ?>>, %{{.+}}: memref<6x20xf32, strided<[?, 1], offset: ?>>, %{{.+}}: memref<?x6xf32, strided<[?, 1], offset: ?>>)
// Weight rows in parallel blocks of 4 (6 = 4 + a tail of 2 done one by one).
// CHECK: scf.parallel (%{{.+}}) = (%{{.+}}) to (%c4{{.*}}) step (%c4
// 4 tokens x 4 rows = 16 accumulators of 16 lanes over K = 16, then a masked
// read for the last 4 columns.
// CHECK: scf.for {{.+}} iter_args({{.+}}) -> (vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>)
// CHECK-COUNT-16: vector.fma
// CHECK: vector.transfer_read
// CHECK: vector.reduction <add>
// CHECK-LABEL: func.func @two_layers
// CHECK: call @qlr_contraction_6x20(%{{.+}}, %{{.+}}, %{{.+}}) :
// CHECK: call @qlr_contraction_6x20(
// CHECK: call @qlr_contraction_3x8(
// CHECK-NOT: linalg.generic
// SMALL-LABEL: func.func private @qlr_contraction_6x20(
// SMALL: scf.parallel (%{{.+}}) = (%{{.+}}) to (%c6{{.*}}) step (%c3
// SMALL: vector.fma {{.+}} : vector<8xf32>
func.func @two_layers(%x: memref<?x20xf32>, %w1: memref<6x20xf32>, %w2: memref<6x20xf32>,
    %y1: memref<?x6xf32>, %y2: memref<?x6xf32>, %a: memref<?x8xf32>, %w3: memref<3x8xf32>,
    %y3: memref<?x3xf32>) {
  linalg.generic {indexing_maps = [#x, #w, #y], iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%x, %w1 : memref<?x20xf32>, memref<6x20xf32>) outs(%y1 : memref<?x6xf32>) attrs = {qlr.contraction} {
  ^bb0(%p: f32, %q: f32, %r: f32):
    %m = arith.mulf %p, %q : f32
    %s = arith.addf %r, %m : f32
    linalg.yield %s : f32
  }
  linalg.generic {indexing_maps = [#x, #w, #y], iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%x, %w2 : memref<?x20xf32>, memref<6x20xf32>) outs(%y2 : memref<?x6xf32>) attrs = {qlr.contraction} {
  ^bb0(%p: f32, %q: f32, %r: f32):
    %m = arith.mulf %p, %q : f32
    %s = arith.addf %r, %m : f32
    linalg.yield %s : f32
  }
  linalg.generic {indexing_maps = [#x, #w, #y], iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%a, %w3 : memref<?x8xf32>, memref<3x8xf32>) outs(%y3 : memref<?x3xf32>) attrs = {qlr.contraction} {
  ^bb0(%p: f32, %q: f32, %r: f32):
    %m = arith.mulf %p, %q : f32
    %s = arith.addf %r, %m : f32
    linalg.yield %s : f32
  }
  return
}

// -----

#x = affine_map<(m, n, k) -> (m, k)>
#w = affine_map<(m, n, k) -> (n, k)>
#y = affine_map<(m, n, k) -> (m, n)>

// Left alone: untagged, on tensors, dynamic weight, non-f32.
// CHECK-LABEL: func.func @not_linear_layers
// CHECK-COUNT-4: linalg.generic
// CHECK-NOT: call
func.func @not_linear_layers(%x: memref<?x20xf32>, %w: memref<6x20xf32>, %y: memref<?x6xf32>,
    %t: tensor<4x20xf32>, %tw: tensor<6x20xf32>, %ty: tensor<4x6xf32>, %dw: memref<?x20xf32>,
    %hx: memref<?x20xf16>, %hw: memref<6x20xf16>, %hy: memref<?x6xf16>) -> tensor<4x6xf32> {
  linalg.generic {indexing_maps = [#x, #w, #y], iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%x, %w : memref<?x20xf32>, memref<6x20xf32>) outs(%y : memref<?x6xf32>) {
  ^bb0(%p: f32, %q: f32, %r: f32):
    %m = arith.mulf %p, %q : f32
    %s = arith.addf %r, %m : f32
    linalg.yield %s : f32
  }
  %r = linalg.generic {indexing_maps = [#x, #w, #y], iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%t, %tw : tensor<4x20xf32>, tensor<6x20xf32>) outs(%ty : tensor<4x6xf32>) attrs = {qlr.contraction} {
  ^bb0(%p: f32, %q: f32, %r2: f32):
    %m = arith.mulf %p, %q : f32
    %s = arith.addf %r2, %m : f32
    linalg.yield %s : f32
  } -> tensor<4x6xf32>
  linalg.generic {indexing_maps = [#x, #w, #y], iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%x, %dw : memref<?x20xf32>, memref<?x20xf32>) outs(%y : memref<?x6xf32>) attrs = {qlr.contraction} {
  ^bb0(%p: f32, %q: f32, %r2: f32):
    %m = arith.mulf %p, %q : f32
    %s = arith.addf %r2, %m : f32
    linalg.yield %s : f32
  }
  linalg.generic {indexing_maps = [#x, #w, #y], iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%hx, %hw : memref<?x20xf16>, memref<6x20xf16>) outs(%hy : memref<?x6xf16>) attrs = {qlr.contraction} {
  ^bb0(%p: f16, %q: f16, %r2: f16):
    %m = arith.mulf %p, %q : f16
    %s = arith.addf %r2, %m : f16
    linalg.yield %s : f16
  }
  return %r : tensor<4x6xf32>
}

// -----

#x = affine_map<(m, n, k) -> (m, k)>
#w = affine_map<(m, n, k) -> (n, k)>
#y = affine_map<(m, n, k) -> (m, n)>

// 40 weight rows: one packed panel of 2 x 16 rows, used from 8 tokens on,
// then the 8 rows left over one at a time; fewer tokens take the register-
// tiled dot products.
// CHECK-LABEL: func.func private @qlr_contraction_40x20_panel(
// CHECK-SAME: %[[N0:.+]]: index, %[[X:.+]]: memref<?x20xf32, strided<[?, 1], offset: ?>>, %[[W:.+]]: memref<40x20xf32, strided<[?, 1], offset: ?>>, %[[Y:.+]]: memref<?x40xf32, strided<[?, 1], offset: ?>>)
// CHECK: %[[PANEL:.+]] = memref.alloca() {alignment = 64 : i64} : memref<256x32xf32>
// Packing: 16 x 16 blocks of weights, transposed in registers.
// CHECK: vector.transpose %{{.+}}, [1, 0] : vector<16x16xf32> to vector<16x16xf32>
// CHECK: vector.store %{{.+}}, %[[PANEL]]
// A tile of 6 tokens x 32 rows: 12 accumulators, two panel vectors and one
// broadcast token value per step of k.
// CHECK: scf.for {{.+}} iter_args({{.+}}) -> (vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>)
// CHECK-COUNT-2: vector.load %[[PANEL]]
// CHECK: vector.broadcast
// CHECK-COUNT-2: vector.fma
// CHECK-NOT: vector.reduction
// CHECK: func.func private @qlr_contraction_40x20(
// CHECK: %[[MANY:.+]] = arith.cmpi uge, %{{.+}}, %c8
// CHECK: scf.if %[[MANY]]
// CHECK: scf.parallel (%[[P:.+]]) = (%{{.+}}) to (%c32{{.*}}) step (%c32
// CHECK: call @qlr_contraction_40x20_panel(%[[P]],
// CHECK: } else {
// CHECK: vector.reduction <add>
// CHECK-LABEL: func.func @panels
// CHECK: call @qlr_contraction_40x20(
// MIN0-LABEL: func.func private @qlr_contraction_40x20(
// MIN0-NOT: scf.if
// MIN0-NOT: _panel
func.func @panels(%x: memref<?x20xf32>, %w: memref<40x20xf32>, %y: memref<?x40xf32>) {
  linalg.generic {indexing_maps = [#x, #w, #y], iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%x, %w : memref<?x20xf32>, memref<40x20xf32>) outs(%y : memref<?x40xf32>) attrs = {qlr.contraction} {
  ^bb0(%p: f32, %q: f32, %r: f32):
    %m = arith.mulf %p, %q : f32
    %s = arith.addf %r, %m : f32
    linalg.yield %s : f32
  }
  return
}

// -----

#x = affine_map<(m, n, k) -> (m, k)>
#w = affine_map<(m, n, k) -> (n, k)>
#y = affine_map<(m, n, k) -> (m, n)>

// A depth known only at run time (the Gram matrix X^T X of calibration, with
// the tokens as K): the masked step is a loop of zero or one iterations.
// CHECK-LABEL: func.func private @qlr_contraction_4xdyn(
// CHECK-SAME: memref<?x?xf32, strided<[?, 1], offset: ?>>, %{{.+}}: memref<4x?xf32, strided<[?, 1], offset: ?>>
// CHECK: %[[K:.+]] = memref.dim %{{.+}}, %c1
// CHECK: %[[REM:.+]] = arith.remui %[[K]], %c16
// CHECK: %[[MAIN:.+]] = arith.subi %[[K]], %[[REM]]
// CHECK: scf.for %{{.+}} = %c0{{.*}} to %[[MAIN]] step %c16
// CHECK: vector.load
// CHECK: scf.for %{{.+}} = %[[MAIN]] to %[[K]] step %c16
// CHECK: vector.transfer_read
// CHECK-LABEL: func.func @gram
// CHECK: call @qlr_contraction_4xdyn(
func.func @gram(%x: memref<?x?xf32>, %w: memref<4x?xf32>, %y: memref<?x4xf32>) {
  linalg.generic {indexing_maps = [#x, #w, #y], iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%x, %w : memref<?x?xf32>, memref<4x?xf32>) outs(%y : memref<?x4xf32>) attrs = {qlr.contraction} {
  ^bb0(%p: f32, %q: f32, %r: f32):
    %m = arith.mulf %p, %q : f32
    %s = arith.addf %r, %m : f32
    linalg.yield %s : f32
  }
  return
}
