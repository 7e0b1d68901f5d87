// RUN: quant-opt %s --qlr-drop-argument-results | FileCheck %s

// An entry point that updated its buffer arguments in place returns them:
// those results go, the others stay.
// CHECK-LABEL: func.func @entry(%arg0: memref<4xf32>, %arg1: memref<?x2xf32>) -> memref<8xf32>
// CHECK: return %{{.+}} : memref<8xf32>
func.func @entry(%a: memref<4xf32>, %b: memref<?x2xf32>) -> (memref<4xf32>, memref<8xf32>, memref<?x2xf32>) attributes {llvm.emit_c_interface} {
  %fresh = memref.alloc() : memref<8xf32>
  return %a, %fresh, %b : memref<4xf32>, memref<8xf32>, memref<?x2xf32>
}

// A function called inside the module keeps its signature (its call sites
// would need rewriting).
// CHECK-LABEL: func.func @callee(%arg0: memref<4xf32>) -> memref<4xf32>
// CHECK: return %arg0
func.func @callee(%a: memref<4xf32>) -> memref<4xf32> {
  return %a : memref<4xf32>
}
// CHECK-LABEL: func.func @caller
// CHECK: call @callee
func.func @caller(%a: memref<4xf32>) {
  %r = call @callee(%a) : (memref<4xf32>) -> memref<4xf32>
  return
}

// Tensors and scalars are not buffers: untouched.
// CHECK-LABEL: func.func @values(%arg0: tensor<4xf32>, %arg1: index) -> (tensor<4xf32>, index)
func.func @values(%t: tensor<4xf32>, %i: index) -> (tensor<4xf32>, index) {
  return %t, %i : tensor<4xf32>, index
}

// A declaration has no body to change.
// CHECK: func.func private @external(memref<4xf32>) -> memref<4xf32>
func.func private @external(memref<4xf32>) -> memref<4xf32>
