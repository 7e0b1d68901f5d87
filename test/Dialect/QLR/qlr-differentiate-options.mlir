// RUN: quant-opt %s --qlr-differentiate="function=f wrt=1 name=df" | FileCheck %s
// RUN: quant-opt %s --qlr-differentiate="function=f wrt=1,0" | FileCheck %s --check-prefix=ORDER

// wrt selects the arguments and orders the gradients; name names the
// function.
// CHECK-LABEL: func.func @df(
// CHECK-SAME:    %{{.*}}: tensor<4x8xf32>, %{{.*}}: tensor<8xf32>, %{{.*}}: tensor<4x8xf32>) -> tensor<8xf32>
// CHECK-NOT:     iterator_types = ["parallel", "parallel"]
// CHECK:         return
// ORDER-LABEL: func.func @f_grad(
// ORDER-SAME:    -> (tensor<8xf32>, tensor<4x8xf32>)
#id = affine_map<(d0, d1) -> (d0, d1)>
#col = affine_map<(d0, d1) -> (d1)>
func.func @f(%x: tensor<4x8xf32>, %b: tensor<8xf32>) -> tensor<4x8xf32> {
  %e = tensor.empty() : tensor<4x8xf32>
  %y = linalg.generic {indexing_maps = [#id, #col, #id], iterator_types = ["parallel", "parallel"]}
      ins(%x, %b : tensor<4x8xf32>, tensor<8xf32>) outs(%e : tensor<4x8xf32>) {
  ^bb0(%u: f32, %w: f32, %out: f32):
    %s = arith.mulf %u, %w : f32
    linalg.yield %s : f32
  } -> tensor<4x8xf32>
  return %y : tensor<4x8xf32>
}
