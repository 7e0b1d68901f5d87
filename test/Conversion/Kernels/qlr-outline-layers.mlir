// RUN: quant-opt %s --split-input-file --qlr-outline-layers="min-ops=3" | FileCheck %s

// Three layers of four operations (the constants do not count): each adds
// its own weight, writes the sum into its row of a shared cache and reads
// it back. The layers differ only in their weights (which become
// arguments) and in the cache row (a static offset, which becomes one
// index argument shared by the write and the read): one function for all
// three, called with each layer's weight and row.

// CHECK-LABEL: func.func private @f_layer0(
// CHECK-SAME:    %[[X:[^:]+]]: tensor<4xf32>, %[[W:[^:]+]]: tensor<4xf32>, %[[CACHE:[^:]+]]: tensor<3x4xf32>, %[[ROW:[^:]+]]: index)
// CHECK-SAME:    -> (tensor<3x4xf32>, tensor<4xf32>) attributes {no_inline}
// CHECK:         %[[SUM:.+]] = linalg.add ins(%[[X]], %[[W]] : tensor<4xf32>, tensor<4xf32>)
// CHECK:         %[[NEW:.+]] = tensor.insert_slice %[[SUM]] into %[[CACHE]][%[[ROW]], 0] [1, 4] [1, 1]
// CHECK:         %[[READ:.+]] = tensor.extract_slice %[[NEW]][%[[ROW]], 0] [1, 4] [1, 1]
// CHECK:         return %[[NEW]], %[[READ]]
// CHECK-NOT:   func.func private @f_layer1
// CHECK-LABEL: func.func @f(
// CHECK-SAME:    %[[XIN:[^:]+]]: tensor<4xf32>, %[[C:[^:]+]]: tensor<3x4xf32>)
// CHECK-DAG:     %[[W0:.+]] = arith.constant dense<[1.{{0+}}e+00,
// CHECK-DAG:     %[[W1:.+]] = arith.constant dense<[5.{{0+}}e+00,
// CHECK-DAG:     %[[W2:.+]] = arith.constant dense<[9.{{0+}}e+00,
// CHECK:         %[[R0:.+]] = arith.constant 0 : index
// CHECK:         %[[L0:.+]]:2 = call @f_layer0(%[[XIN]], %[[W0]], %[[C]], %[[R0]])
// CHECK:         %[[R1:.+]] = arith.constant 1 : index
// CHECK:         %[[L1:.+]]:2 = call @f_layer0(%[[L0]]#1, %[[W1]], %[[L0]]#0, %[[R1]])
// CHECK:         %[[R2:.+]] = arith.constant 2 : index
// CHECK:         %[[L2:.+]]:2 = call @f_layer0(%[[L1]]#1, %[[W2]], %[[L1]]#0, %[[R2]])
// CHECK:         return %[[L2]]#1, %[[L2]]#0
func.func @f(%x: tensor<4xf32>, %cache: tensor<3x4xf32>) -> (tensor<4xf32>, tensor<3x4xf32>) {
  %w0 = arith.constant dense<[1.0, 2.0, 3.0, 4.0]> : tensor<4xf32>
  %e0 = tensor.empty() : tensor<4xf32>
  %a0 = linalg.add {qlr.name = "layers.0.add"} ins(%x, %w0 : tensor<4xf32>, tensor<4xf32>) outs(%e0 : tensor<4xf32>) -> tensor<4xf32>
  %c0 = tensor.insert_slice %a0 into %cache[0, 0] [1, 4] [1, 1] : tensor<4xf32> into tensor<3x4xf32>
  %r0 = tensor.extract_slice %c0[0, 0] [1, 4] [1, 1] : tensor<3x4xf32> to tensor<4xf32>
  %w1 = arith.constant dense<[5.0, 6.0, 7.0, 8.0]> : tensor<4xf32>
  %e1 = tensor.empty() : tensor<4xf32>
  %a1 = linalg.add {qlr.name = "layers.1.add"} ins(%r0, %w1 : tensor<4xf32>, tensor<4xf32>) outs(%e1 : tensor<4xf32>) -> tensor<4xf32>
  %c1 = tensor.insert_slice %a1 into %c0[1, 0] [1, 4] [1, 1] : tensor<4xf32> into tensor<3x4xf32>
  %r1 = tensor.extract_slice %c1[1, 0] [1, 4] [1, 1] : tensor<3x4xf32> to tensor<4xf32>
  %w2 = arith.constant dense<[9.0, 10.0, 11.0, 12.0]> : tensor<4xf32>
  %e2 = tensor.empty() : tensor<4xf32>
  %a2 = linalg.add {qlr.name = "layers.2.add"} ins(%r1, %w2 : tensor<4xf32>, tensor<4xf32>) outs(%e2 : tensor<4xf32>) -> tensor<4xf32>
  %c2 = tensor.insert_slice %a2 into %c1[2, 0] [1, 4] [1, 1] : tensor<4xf32> into tensor<3x4xf32>
  %r2 = tensor.extract_slice %c2[2, 0] [1, 4] [1, 1] : tensor<3x4xf32> to tensor<4xf32>
  return %r2, %c2 : tensor<4xf32>, tensor<3x4xf32>
}

// -----

// A prelude and an epilogue around the repeats stay where they are; the
// splat constant each layer uses is repeated inside (not passed), and the
// layer names, which generate no code, do not keep the layers apart. The
// third layer adds 3 where the others add 2: it is equal to no other piece
// and is put back in @g.

#id = affine_map<(d0) -> (d0)>

// CHECK-LABEL: func.func private @g_layer0(
// CHECK-SAME:    %{{[^:]+}}: tensor<8xf32>) -> tensor<8xf32> attributes {no_inline}
// CHECK:         %[[TWO:.+]] = arith.constant 2.{{0+}}e+00 : f32
// CHECK:         linalg.generic
// CHECK:           arith.addf %{{.+}}, %[[TWO]]
// CHECK:         linalg.generic
// CHECK:           math.exp
// CHECK-NOT:   qlr.name
// CHECK-NOT:   func.func private @g_layer
// CHECK-LABEL: func.func @g(
// CHECK:         math.sqrt
// CHECK:         call @g_layer0(
// CHECK:         call @g_layer0(
// CHECK-NOT:     call
// CHECK:         %[[THREE:.+]] = arith.constant 3.{{0+}}e+00 : f32
// CHECK:         arith.addf %{{.+}}, %[[THREE]]
// CHECK:         math.exp
// CHECK:         math.log
// CHECK:         return
func.func @g(%x: tensor<8xf32>) -> tensor<8xf32> {
  %p0 = tensor.empty() : tensor<8xf32>
  %p = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel"]} ins(%x : tensor<8xf32>) outs(%p0 : tensor<8xf32>) {
  ^bb0(%a: f32, %b: f32):
    %s = math.sqrt %a : f32
    linalg.yield %s : f32
  } -> tensor<8xf32>
  %two0 = arith.constant 2.0 : f32
  %e0 = tensor.empty() : tensor<8xf32>
  %a0 = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel"]} ins(%p : tensor<8xf32>) outs(%e0 : tensor<8xf32>) attrs = {qlr.name = "layers.0"} {
  ^bb0(%a: f32, %b: f32):
    %s = arith.addf %a, %two0 : f32
    linalg.yield %s : f32
  } -> tensor<8xf32>
  %f0 = tensor.empty() : tensor<8xf32>
  %b0 = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel"]} ins(%a0 : tensor<8xf32>) outs(%f0 : tensor<8xf32>) {
  ^bb0(%a: f32, %b: f32):
    %s = math.exp %a : f32
    linalg.yield %s : f32
  } -> tensor<8xf32>
  %two1 = arith.constant 2.0 : f32
  %e1 = tensor.empty() : tensor<8xf32>
  %a1 = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel"]} ins(%b0 : tensor<8xf32>) outs(%e1 : tensor<8xf32>) attrs = {qlr.name = "layers.1"} {
  ^bb0(%a: f32, %b: f32):
    %s = arith.addf %a, %two1 : f32
    linalg.yield %s : f32
  } -> tensor<8xf32>
  %f1 = tensor.empty() : tensor<8xf32>
  %b1 = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel"]} ins(%a1 : tensor<8xf32>) outs(%f1 : tensor<8xf32>) {
  ^bb0(%a: f32, %b: f32):
    %s = math.exp %a : f32
    linalg.yield %s : f32
  } -> tensor<8xf32>
  %three = arith.constant 3.0 : f32
  %e2 = tensor.empty() : tensor<8xf32>
  %a2 = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel"]} ins(%b1 : tensor<8xf32>) outs(%e2 : tensor<8xf32>) {
  ^bb0(%a: f32, %b: f32):
    %s = arith.addf %a, %three : f32
    linalg.yield %s : f32
  } -> tensor<8xf32>
  %f2 = tensor.empty() : tensor<8xf32>
  %b2 = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel"]} ins(%a2 : tensor<8xf32>) outs(%f2 : tensor<8xf32>) {
  ^bb0(%a: f32, %b: f32):
    %s = math.exp %a : f32
    linalg.yield %s : f32
  } -> tensor<8xf32>
  %q0 = tensor.empty() : tensor<8xf32>
  %q = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel"]} ins(%b2 : tensor<8xf32>) outs(%q0 : tensor<8xf32>) {
  ^bb0(%a: f32, %b: f32):
    %s = math.log %a : f32
    linalg.yield %s : f32
  } -> tensor<8xf32>
  return %q : tensor<8xf32>
}

// -----

// Nothing repeats: the function is left alone.

// CHECK-LABEL: func.func @h(
// CHECK-NOT:     call
// CHECK:         return
func.func @h(%x: tensor<4xf32>, %y: tensor<4xf32>) -> tensor<4xf32> {
  %e0 = tensor.empty() : tensor<4xf32>
  %a = linalg.add ins(%x, %y : tensor<4xf32>, tensor<4xf32>) outs(%e0 : tensor<4xf32>) -> tensor<4xf32>
  %e1 = tensor.empty() : tensor<4xf32>
  %m = linalg.mul ins(%a, %y : tensor<4xf32>, tensor<4xf32>) outs(%e1 : tensor<4xf32>) -> tensor<4xf32>
  %e2 = tensor.empty() : tensor<4xf32>
  %s = linalg.sub ins(%m, %x : tensor<4xf32>, tensor<4xf32>) outs(%e2 : tensor<4xf32>) -> tensor<4xf32>
  %e3 = tensor.empty() : tensor<4xf32>
  %d = linalg.div ins(%s, %y : tensor<4xf32>, tensor<4xf32>) outs(%e3 : tensor<4xf32>) -> tensor<4xf32>
  %e4 = tensor.empty() : tensor<4xf32>
  %n = linalg.max ins(%d, %x : tensor<4xf32>, tensor<4xf32>) outs(%e4 : tensor<4xf32>) -> tensor<4xf32>
  %e5 = tensor.empty() : tensor<4xf32>
  %o = linalg.min ins(%n, %y : tensor<4xf32>, tensor<4xf32>) outs(%e5 : tensor<4xf32>) -> tensor<4xf32>
  %e6 = tensor.empty() : tensor<4xf32>
  %q = linalg.exp ins(%o : tensor<4xf32>) outs(%e6 : tensor<4xf32>) -> tensor<4xf32>
  %e7 = tensor.empty() : tensor<4xf32>
  %r = linalg.log ins(%q : tensor<4xf32>) outs(%e7 : tensor<4xf32>) -> tensor<4xf32>
  return %r : tensor<4xf32>
}

// -----

// A quantized weight packed in each layer stays inside the layer's function
// (its codes and scales are the arguments). One packed before the layers
// and read by all of them would have to cross the calls as a
// `!qlr.qtensor`, which bufferization and the LLVM calling convention do
// not take: that function (three layers of a linear and two norms) is left
// alone.

!q = !qlr.qtensor<64x64xf32, #qlr.format<int4, group = 32>>

// CHECK-LABEL: func.func private @per_layer_pack_layer0(
// CHECK-SAME:    %{{[^:]+}}: tensor<64x32xi8>, %{{[^:]+}}: tensor<64x2xf32>, %{{[^:]+}}: tensor<?x64xf32>, %{{[^:]+}}: tensor<64xf32>) -> tensor<?x64xf32>
// CHECK:         qlr.pack
// CHECK:         qlr.linear
// CHECK:         qlr.rms_norm
// CHECK-LABEL: func.func @per_layer_pack(
// CHECK-COUNT-3: call @per_layer_pack_layer0(
func.func @per_layer_pack(%x: tensor<?x64xf32>, %c0: tensor<64x32xi8>, %s0: tensor<64x2xf32>, %c1: tensor<64x32xi8>, %s1: tensor<64x2xf32>, %c2: tensor<64x32xi8>, %s2: tensor<64x2xf32>, %g: tensor<64xf32>) -> tensor<?x64xf32> {
  %w0 = qlr.pack %c0, %s0 : tensor<64x32xi8>, tensor<64x2xf32> -> !q
  %y0 = qlr.linear %x, %w0 : tensor<?x64xf32>, !q -> tensor<?x64xf32>
  %z0 = qlr.rms_norm %y0, %g eps = 1.0e-5 : tensor<?x64xf32>, tensor<64xf32>
  %w1 = qlr.pack %c1, %s1 : tensor<64x32xi8>, tensor<64x2xf32> -> !q
  %y1 = qlr.linear %z0, %w1 : tensor<?x64xf32>, !q -> tensor<?x64xf32>
  %z1 = qlr.rms_norm %y1, %g eps = 1.0e-5 : tensor<?x64xf32>, tensor<64xf32>
  %w2 = qlr.pack %c2, %s2 : tensor<64x32xi8>, tensor<64x2xf32> -> !q
  %y2 = qlr.linear %z1, %w2 : tensor<?x64xf32>, !q -> tensor<?x64xf32>
  %z2 = qlr.rms_norm %y2, %g eps = 1.0e-5 : tensor<?x64xf32>, tensor<64xf32>
  return %z2 : tensor<?x64xf32>
}

// CHECK-LABEL: func.func @shared_qtensor(
// CHECK-NOT:     call
// CHECK:         return
func.func @shared_qtensor(%x: tensor<?x64xf32>, %c: tensor<64x32xi8>, %s: tensor<64x2xf32>, %g: tensor<64xf32>) -> tensor<?x64xf32> {
  %w = qlr.pack %c, %s : tensor<64x32xi8>, tensor<64x2xf32> -> !q
  %y0 = qlr.linear %x, %w : tensor<?x64xf32>, !q -> tensor<?x64xf32>
  %n0 = qlr.rms_norm %y0, %g eps = 1.0e-5 : tensor<?x64xf32>, tensor<64xf32>
  %z0 = qlr.rms_norm %n0, %g eps = 1.0e-5 : tensor<?x64xf32>, tensor<64xf32>
  %y1 = qlr.linear %z0, %w : tensor<?x64xf32>, !q -> tensor<?x64xf32>
  %n1 = qlr.rms_norm %y1, %g eps = 1.0e-5 : tensor<?x64xf32>, tensor<64xf32>
  %z1 = qlr.rms_norm %n1, %g eps = 1.0e-5 : tensor<?x64xf32>, tensor<64xf32>
  %y2 = qlr.linear %z1, %w : tensor<?x64xf32>, !q -> tensor<?x64xf32>
  %n2 = qlr.rms_norm %y2, %g eps = 1.0e-5 : tensor<?x64xf32>, tensor<64xf32>
  %z2 = qlr.rms_norm %n2, %g eps = 1.0e-5 : tensor<?x64xf32>, tensor<64xf32>
  return %z2 : tensor<?x64xf32>
}
