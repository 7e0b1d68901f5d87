// RUN: quant-opt %s --split-input-file --qlr-split-functions="ops-per-function=4" | FileCheck %s

// Seven operations (the constants do not count) with at most 4 * 3 / 2 = 6
// per piece: one cut, placed where the fewest values cross it (after the
// buffer is filled: only %buf is live). The constants stay in @f and each
// piece clones the ones it uses; the piece that receives the buffer this
// function allocated may assume it aliases nothing else (llvm.noalias),
// while the argument %a and the view of it may not.

// CHECK-LABEL: func.func private @f_part0() -> memref<8xf32> attributes {no_inline}
// CHECK-NEXT:    %[[ONE:.+]] = arith.constant 1.000000e+00 : f32
// CHECK-NEXT:    %[[ALLOC:.+]] = memref.alloc() : memref<8xf32>
// CHECK-NEXT:    linalg.fill ins(%[[ONE]] : f32) outs(%[[ALLOC]] : memref<8xf32>)
// CHECK-NEXT:    return %[[ALLOC]] : memref<8xf32>
// CHECK-LABEL: func.func private @f_part1(%{{.+}}: memref<8xf32>, %{{.+}}: memref<8xf32> {llvm.noalias}, %{{.+}}: memref<8xf32>) attributes {no_inline}
// CHECK:         memref.subview
// CHECK:         arith.addf
// CHECK:         memref.dealloc
// CHECK-LABEL: func.func @f(
// CHECK-SAME:    %[[A:[^:]+]]: memref<8xf32>, %[[OUT:[^:]+]]: memref<8xf32>)
// CHECK:         %[[BUF:.+]] = call @f_part0() : () -> memref<8xf32>
// CHECK-NEXT:    call @f_part1(%[[A]], %[[BUF]], %[[OUT]])
// CHECK-NEXT:    return
func.func @f(%a: memref<8xf32>, %out: memref<8xf32>) {
  %c0 = arith.constant 0 : index
  %one = arith.constant 1.0 : f32
  %buf = memref.alloc() : memref<8xf32>
  linalg.fill ins(%one : f32) outs(%buf : memref<8xf32>)
  %sub = memref.subview %a[0] [4] [1] : memref<8xf32> to memref<4xf32, strided<[1]>>
  %x = memref.load %sub[%c0] : memref<4xf32, strided<[1]>>
  %y = memref.load %buf[%c0] : memref<8xf32>
  %s = arith.addf %x, %y : f32
  memref.store %s, %out[%c0] : memref<8xf32>
  memref.dealloc %buf : memref<8xf32>
  return
}

// -----

// A function within the limit is left alone.

// CHECK-LABEL: func.func @short
// CHECK-NOT:     call
// CHECK:         memref.load
// CHECK-NEXT:    memref.store
// CHECK-NEXT:    return
func.func @short(%a: memref<8xf32>) {
  %c0 = arith.constant 0 : index
  %x = memref.load %a[%c0] : memref<8xf32>
  memref.store %x, %a[%c0] : memref<8xf32>
  return
}

// -----

// Values read after a piece become its results and arguments of the
// pieces that read them. A buffer reached through two arguments (%buf and a
// view of it) is not noalias; %other, reached once, is.

// CHECK-LABEL: func.func private @g_part0() -> (memref<16xf32>, memref<4xf32, strided<[1], offset: 4>>)
// CHECK-LABEL: func.func private @g_part1(%{{.+}}: memref<16xf32> {llvm.noalias}) -> memref<16xf32>
// CHECK-LABEL: func.func private @g_part2(
// CHECK-SAME:    %[[OTHER:[^:]+]]: memref<16xf32> {llvm.noalias}, %[[BUF:[^:]+]]: memref<16xf32>, %[[VIEW:[^:]+]]: memref<4xf32, strided<[1], offset: 4>>) -> f32
// CHECK:         memref.load %[[BUF]]
// CHECK-NEXT:    memref.load %[[VIEW]]
// CHECK-NEXT:    memref.load %[[OTHER]]
// CHECK-LABEL: func.func private @g_part3(%{{.+}}: memref<16xf32> {llvm.noalias}, %{{.+}}: memref<16xf32> {llvm.noalias})
// CHECK-LABEL: func.func @g
// CHECK:         %[[P0:.+]]:2 = call @g_part0()
// CHECK-NEXT:    %[[P1:.+]] = call @g_part1(%[[P0]]#0)
// CHECK-NEXT:    %[[P2:.+]] = call @g_part2(%[[P1]], %[[P0]]#0, %[[P0]]#1)
// CHECK-NEXT:    call @g_part3(%[[P0]]#0, %[[P1]])
// CHECK-NEXT:    return %[[P2]] : f32

func.func @g(%m: memref<16xf32>) -> f32 {
  %c0 = arith.constant 0 : index
  %one = arith.constant 1.0 : f32
  %buf = memref.alloc() : memref<16xf32>
  %view = memref.subview %buf[4] [4] [1] : memref<16xf32> to memref<4xf32, strided<[1], offset: 4>>
  %other = memref.alloc() : memref<16xf32>
  linalg.fill ins(%one : f32) outs(%buf : memref<16xf32>)
  linalg.fill ins(%one : f32) outs(%other : memref<16xf32>)
  %a = memref.load %buf[%c0] : memref<16xf32>
  %b = memref.load %view[%c0] : memref<4xf32, strided<[1], offset: 4>>
  %c = memref.load %other[%c0] : memref<16xf32>
  %d = arith.addf %a, %b : f32
  %e = arith.addf %d, %c : f32
  memref.dealloc %buf : memref<16xf32>
  memref.dealloc %other : memref<16xf32>
  return %e : f32
}
