// qlr-lower-contractions fuses the decoder that qlr-lower-to-linalg builds
// for a quantized weight (the linalg.generic tagged qlr.dequantize) into the
// kernel of the contraction reading it: the kernel takes codes and scales,
// decodes one block of weight rows at a time into a stack buffer and runs the
// usual register tiles against it. No float copy of the weight remains.
// RUN: quant-opt %s --split-input-file --qlr-lower-to-linalg --canonicalize --one-shot-bufferize="bufferize-function-boundaries function-boundary-type-conversion=identity-layout-map" --canonicalize --qlr-lower-contractions | FileCheck %s

// Two layers of one shape and format share a kernel whose name says the
// format. 6 rows = a parallel block of 4 + 2 single rows, each in a function
// of its own (a call is an allocation scope for the stack buffer).
// CHECK-LABEL: func.func private @qlr_contraction_6x64_int4_g32_f16_row(
// CHECK-SAME: %{{.+}}: index, %{{.+}}: memref<?x64xf32, strided<[?, 1], offset: ?>>, %{{.+}}: memref<?x6xf32, strided<[?, 1], offset: ?>>, %{{.+}}: memref<6x2xf16>, %{{.+}}: memref<6x32xi8>)
// CHECK: memref.alloca() {alignment = 64 : i64} : memref<1x64xf32>
// CHECK-LABEL: func.func private @qlr_contraction_6x64_int4_g32_f16_block(
// CHECK: %[[BUF:.+]] = memref.alloca() {alignment = 64 : i64} : memref<4x64xf32>
// 4-bit codes: 8 bytes give 16 lanes (low and high nibbles interleaved), one
// f16 scale per 16 lanes (groups of 32).
// CHECK: scf.for
// CHECK: scf.for
// CHECK: vector.load %{{.+}} : memref<6x32xi8>, vector<8xi8>
// CHECK: vector.interleave %{{.+}}, %{{.+}} : vector<8xi8> -> vector<16xi8>
// CHECK: memref.load %{{.+}} : memref<6x2xf16>
// CHECK: arith.uitofp %{{.+}} : vector<16xi8> to vector<16xf32>
// CHECK: vector.store %{{.+}}, %[[BUF]][{{.+}}] : memref<4x64xf32>, vector<16xf32>
// The tiles read the block's rows from the buffer.
// CHECK: vector.load %[[BUF]]
// CHECK: vector.fma
// CHECK-LABEL: func.func private @qlr_contraction_6x64_int4_g32_f16(
// CHECK: scf.parallel
// CHECK: func.call @qlr_contraction_6x64_int4_g32_f16_block(
// CHECK: scf.for
// CHECK: func.call @qlr_contraction_6x64_int4_g32_f16_row(
// CHECK-LABEL: func.func @two_layers(
// CHECK-SAME: %[[X:.+]]: memref<?x64xf32>, %[[C1:.+]]: memref<6x32xi8>, %[[S1:.+]]: memref<6x2xf16>, %[[C2:.+]]: memref<6x32xi8>, %[[S2:.+]]: memref<6x2xf16>)
// CHECK-NOT: memref.alloc() {{.*}} : memref<6x64xf32>
// CHECK-NOT: linalg.generic
// CHECK: call @qlr_contraction_6x64_int4_g32_f16(%{{.+}}, %{{.+}}, %[[S1]], %[[C1]])
// CHECK-NOT: linalg.generic
// CHECK: call @qlr_contraction_6x64_int4_g32_f16(%{{.+}}, %{{.+}}, %[[S2]], %[[C2]])
// CHECK-NOT: memref.dealloc
!w4 = !qlr.qtensor<6x64xf32, #qlr.format<int4, group = 32, scale = f16>>
func.func @two_layers(%x: tensor<?x64xf32>, %c1: tensor<6x32xi8>, %s1: tensor<6x2xf16>,
                      %c2: tensor<6x32xi8>, %s2: tensor<6x2xf16>) -> (tensor<?x6xf32>, tensor<?x6xf32>) {
  %q1 = qlr.pack %c1, %s1 : tensor<6x32xi8>, tensor<6x2xf16> -> !w4
  %q2 = qlr.pack %c2, %s2 : tensor<6x32xi8>, tensor<6x2xf16> -> !w4
  %y1 = qlr.linear %x, %q1 : tensor<?x64xf32>, !w4 -> tensor<?x6xf32>
  %y2 = qlr.linear %x, %q2 : tensor<?x64xf32>, !w4 -> tensor<?x6xf32>
  return %y1, %y2 : tensor<?x6xf32>, tensor<?x6xf32>
}

// -----

// Codebooks: the 16-entry table is a kernel argument like the codes and
// scales (buffers are never cloned into a kernel, so layers share it), read
// with a vector gather.
// CHECK-LABEL: func.func private @qlr_contraction_4x64_nf4_g32_block(
// CHECK-SAME: %{{.+}}: memref<4x2xf32>, %{{.+}}: memref<4x32xi8>, %[[TABLE:.+]]: memref<16xf32>)
// CHECK: vector.interleave
// CHECK: arith.extui %{{.+}} : vector<16xi8> to vector<16xi32>
// CHECK: vector.gather %[[TABLE]]
// CHECK-LABEL: func.func @nf4(
// CHECK: %[[G:.+]] = memref.get_global @{{.+}} : memref<16xf32>
// CHECK: call @qlr_contraction_4x64_nf4_g32(%{{.+}}, %{{.+}}, %{{.+}}, %{{.+}}, %[[G]])
!nf4 = !qlr.qtensor<4x64xf32, #qlr.format<nf4, group = 32>>
func.func @nf4(%x: tensor<?x64xf32>, %c: tensor<4x32xi8>, %s: tensor<4x2xf32>) -> tensor<?x4xf32> {
  %q = qlr.pack %c, %s : tensor<4x32xi8>, tensor<4x2xf32> -> !nf4
  %y = qlr.linear %x, %q : tensor<?x64xf32>, !nf4 -> tensor<?x4xf32>
  return %y : tensor<?x4xf32>
}

// -----

// One scale and zero point for the tensor: read as rank-0 buffers. 8-bit
// codes need no unpacking.
// CHECK-LABEL: func.func private @qlr_contraction_4x32_int8_asym_bf16_block(
// CHECK-SAME: %{{.+}}: memref<4x32xi8>, %{{.+}}: memref<bf16>, %{{.+}}: memref<i8>)
// CHECK-NOT: vector.interleave
// CHECK: vector.load %{{.+}} : memref<4x32xi8>, vector<16xi8>
// CHECK: memref.load %{{.+}}[] : memref<bf16>
// CHECK: memref.load %{{.+}}[] : memref<i8>
// CHECK: arith.uitofp %{{.+}} : i8 to f32
// CHECK: arith.subf
// CHECK: arith.mulf
// CHECK-LABEL: func.func @int8_per_tensor(
!i8 = !qlr.qtensor<4x32xf32, #qlr.format<int8, asymmetric, scale = bf16>>
func.func @int8_per_tensor(%x: tensor<?x32xf32>, %c: tensor<4x32xi8>, %s: tensor<bf16>, %z: tensor<i8>) -> tensor<?x4xf32> {
  %q = qlr.pack %c, %s, %z : tensor<4x32xi8>, tensor<bf16>, tensor<i8> -> !i8
  %y = qlr.linear %x, %q : tensor<?x32xf32>, !i8 -> tensor<?x4xf32>
  return %y : tensor<?x4xf32>
}

// -----

// 3-bit codes straddle bytes: the decoder's body is cloned element by
// element (scalar loads of the codes, two bytes per code).
// CHECK-LABEL: func.func private @qlr_contraction_4x40_int3_g16_asym_block(
// CHECK-NOT: vector.interleave
// CHECK: scf.for
// CHECK: scf.for
// CHECK: memref.load %{{.+}} : memref<4x15xi8>
// CHECK: memref.load %{{.+}} : memref<4x15xi8>
// CHECK: memref.store %{{.+}} : memref<4x40xf32>
// CHECK-LABEL: func.func @int3(
!i3 = !qlr.qtensor<4x40xf32, #qlr.format<int3, group = 16, asymmetric>>
func.func @int3(%x: tensor<?x40xf32>, %c: tensor<4x15xi8>, %s: tensor<4x3xf32>, %z: tensor<4x3xi8>) -> tensor<?x4xf32> {
  %q = qlr.pack %c, %s, %z : tensor<4x15xi8>, tensor<4x3xf32>, tensor<4x3xi8> -> !i3
  %y = qlr.linear %x, %q : tensor<?x40xf32>, !i3 -> tensor<?x4xf32>
  return %y : tensor<?x4xf32>
}

// -----

// A decoded weight that is also returned is not fused: the generic stays and
// the float kernel reads its buffer.
// CHECK-LABEL: func.func @escaping(
// CHECK: %[[W:.+]] = memref.alloc() {alignment = 64 : i64} : memref<4x64xf32>
// CHECK: linalg.generic {{.+}} outs(%[[W]] : memref<4x64xf32>) attrs = {qlr.dequantize = #int4_g32}
// CHECK: %[[WC:.+]] = memref.cast %[[W]]
// CHECK: call @qlr_contraction_4x64(%{{.+}}, %[[WC]], %{{.+}})
!w4 = !qlr.qtensor<4x64xf32, #qlr.format<int4, group = 32>>
func.func @escaping(%x: tensor<?x64xf32>, %c: tensor<4x32xi8>, %s: tensor<4x2xf32>) -> (tensor<?x4xf32>, tensor<4x64xf32>) {
  %q = qlr.pack %c, %s : tensor<4x32xi8>, tensor<4x2xf32> -> !w4
  %d = qlr.dequantize %q : !w4 -> tensor<4x64xf32>
  %y = qlr.linear %x, %d : tensor<?x64xf32>, tensor<4x64xf32> -> tensor<?x4xf32>
  return %y, %d : tensor<?x4xf32>, tensor<4x64xf32>
}

// -----

// 40 rows: from 8 tokens on, one panel of 32 decoded rows (decoded into a
// [32, K] buffer, then packed and run as outer products), then the 8 rows
// left over in blocks of 4; fewer tokens take blocks of 4 throughout.
// CHECK-LABEL: func.func private @qlr_contraction_40x64_int4_g32_f16_block(
// CHECK: memref.alloca() {alignment = 64 : i64} : memref<4x64xf32>
// CHECK-LABEL: func.func private @qlr_contraction_40x64_int4_g32_f16_panel(
// CHECK: %[[ROWS:.+]] = memref.alloca() {alignment = 64 : i64} : memref<32x64xf32>
// CHECK: vector.interleave
// CHECK: vector.store %{{.+}}, %[[ROWS]]
// CHECK: %[[PANEL:.+]] = memref.alloca() {alignment = 64 : i64} : memref<256x32xf32>
// CHECK: vector.load %{{.+}} : memref<32x64xf32>, vector<16xf32>
// CHECK: vector.transpose
// CHECK: vector.load %[[PANEL]]
// CHECK: vector.broadcast
// CHECK: vector.fma
// CHECK-LABEL: func.func private @qlr_contraction_40x64_int4_g32_f16(
// CHECK: arith.cmpi uge, %{{.+}}, %c8
// CHECK: scf.if
// CHECK: scf.parallel (%[[P:.+]]) = (%c0{{.*}}) to (%c32{{.*}}) step (%c32
// CHECK: func.call @qlr_contraction_40x64_int4_g32_f16_panel(%[[P]],
// CHECK: scf.parallel (%[[B:.+]]) = (%c32{{.*}}) to (%c40{{.*}}) step (%c4
// CHECK: func.call @qlr_contraction_40x64_int4_g32_f16_block(%[[B]],
// CHECK: } else {
// CHECK: scf.parallel (%[[C:.+]]) = (%c0{{.*}}) to (%c40{{.*}}) step (%c4
// CHECK: func.call @qlr_contraction_40x64_int4_g32_f16_block(%[[C]],
!w4p = !qlr.qtensor<40x64xf32, #qlr.format<int4, group = 32, scale = f16>>
func.func @panels(%x: tensor<?x64xf32>, %c: tensor<40x32xi8>, %s: tensor<40x2xf16>) -> tensor<?x40xf32> {
  %q = qlr.pack %c, %s : tensor<40x32xi8>, tensor<40x2xf16> -> !w4p
  %y = qlr.linear %x, %q : tensor<?x64xf32>, !w4p -> tensor<?x40xf32>
  return %y : tensor<?x40xf32>
}
