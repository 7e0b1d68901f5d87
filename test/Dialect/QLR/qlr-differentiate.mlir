// RUN: quant-opt %s --split-input-file --qlr-differentiate="function=f" | FileCheck %s
// Numerical checks against finite differences: test/python/test_differentiate.py.

// y = x * x: one adjoint generic for both reads of %x, dx = dy · 2x. The
// function itself is unchanged.
// CHECK-LABEL: func.func @f(
// CHECK-SAME:    %{{.*}}: tensor<?x8xf32>, %{{.*}}: tensor<8xf32>) -> tensor<?x8xf32>
// CHECK:         linalg.generic
// CHECK-NOT:     linalg.generic
// CHECK:         return
// CHECK-LABEL: func.func @f_grad(
// CHECK-SAME:    %[[X:.*]]: tensor<?x8xf32>, %[[B:.*]]: tensor<8xf32>, %[[DY:.*]]: tensor<?x8xf32>)
// CHECK-SAME:    -> (tensor<?x8xf32>, tensor<8xf32>)
// The adjoint of %x: element-wise (no init read), d(u·v) = u + v at u = v.
// CHECK:         %[[EMPTY:.*]] = tensor.empty
// CHECK:         %[[DX:.*]] = linalg.generic {{.*}}iterator_types = ["parallel", "parallel"]} ins(%[[X]], %[[X]], %[[B]], %[[DY]] : {{.*}}outs(%[[EMPTY]] :
// CHECK-NEXT:    ^bb0(%[[U:.*]]: f32, %[[V:.*]]: f32, %{{.*}}: f32, %[[D:.*]]: f32, %{{.*}}: f32):
// CHECK:           %[[T:.*]] = arith.addf
// CHECK:           %[[MUL:.*]] = arith.mulf %[[D]], %[[T]]
// CHECK-NEXT:      linalg.yield %[[MUL]]
// The adjoint of the bias: a reduction over the rows into zeros.
// CHECK:         %[[ZERO:.*]] = linalg.fill
// CHECK:         %[[DB:.*]] = linalg.generic {{.*}}iterator_types = ["reduction", "parallel"]} ins(%[[X]], %[[X]], %[[B]], %[[DY]] : {{.*}}outs(%[[ZERO]] :
// CHECK:         return %[[DX]], %[[DB]] : tensor<?x8xf32>, tensor<8xf32>
#id = affine_map<(d0, d1) -> (d0, d1)>
#col = affine_map<(d0, d1) -> (d1)>
func.func @f(%x: tensor<?x8xf32>, %b: tensor<8xf32>) -> tensor<?x8xf32> {
  %c0 = arith.constant 0 : index
  %n = tensor.dim %x, %c0 : tensor<?x8xf32>
  %e = tensor.empty(%n) : tensor<?x8xf32>
  %y = linalg.generic {indexing_maps = [#id, #id, #col, #id], iterator_types = ["parallel", "parallel"]}
      ins(%x, %x, %b : tensor<?x8xf32>, tensor<?x8xf32>, tensor<8xf32>) outs(%e : tensor<?x8xf32>) {
  ^bb0(%u: f32, %v: f32, %w: f32, %out: f32):
    %p = arith.mulf %u, %v : f32
    %s = arith.addf %p, %w : f32
    linalg.yield %s : f32
  } -> tensor<?x8xf32>
  return %y : tensor<?x8xf32>
}

// -----

// qlr.linear: the input's adjoint is a linear layer of dy with the
// transposed weight; a compressed weight is decoded by qlr.dequantize (the forward product itself
// is not needed: the function is linear in the linear's input). The RMSNorm
// is lowered to linalg first.
// CHECK-LABEL: func.func @f_grad(
// CHECK-SAME:    %[[X:.*]]: tensor<?x64xf32>, %[[NW:.*]]: tensor<64xf32>, %[[DY:.*]]: tensor<?x8xf32>) -> (tensor<?x64xf32>, tensor<64xf32>)
// CHECK-NOT:     qlr.rms_norm
// CHECK:         %[[W:.*]] = qlr.pack
// CHECK:         %[[DEQ:.*]] = qlr.dequantize %[[W]]
// CHECK:         %[[WT:.*]] = linalg.transpose ins(%[[DEQ]] : tensor<8x64xf32>) {{.*}} permutation = [1, 0]
// CHECK:         qlr.linear %[[DY]], %[[WT]] : tensor<?x8xf32>, tensor<64x8xf32> -> tensor<?x64xf32>
// CHECK:         return
func.func @f(%x: tensor<?x64xf32>, %nw: tensor<64xf32>) -> tensor<?x8xf32> {
  %codes = arith.constant dense<17> : tensor<8x32xi8>
  %scales = arith.constant dense<0.5> : tensor<8x2xf16>
  %w = qlr.pack %codes, %scales : tensor<8x32xi8>, tensor<8x2xf16>
      -> !qlr.qtensor<8x64xf32, #qlr.format<int4, group = 32, scale = f16>>
  %h = qlr.rms_norm %x, %nw eps = 1.0e-5 : tensor<?x64xf32>, tensor<64xf32>
  %y = qlr.linear %h, %w : tensor<?x64xf32>, !qlr.qtensor<8x64xf32, #qlr.format<int4, group = 32, scale = f16>> -> tensor<?x8xf32>
  return %y : tensor<?x8xf32>
}

// -----

// A gather in the body (a RoPE-style swizzle reading %x at another column):
// the input read through the identity map gets a generic, the gathered read
// a scatter loop nest accumulating with tensor.insert.
// CHECK-LABEL: func.func @f_grad(
// CHECK-SAME:    %[[X:.*]]: tensor<?x8xf32>, %{{.*}}: tensor<?x8xf32>) -> tensor<?x8xf32>
// CHECK:         %[[DIRECT:.*]] = linalg.generic
// CHECK:         %[[SCATTER:.*]] = scf.for
// CHECK:           scf.for
// CHECK:             %[[K:.*]] = arith.xori
// CHECK:             tensor.extract %[[X]][%{{.*}}, %[[K]]]
// CHECK:             %[[OLD:.*]] = tensor.extract %{{.*}}[%{{.*}}, %[[K]]]
// CHECK:             %[[NEW:.*]] = arith.addf %[[OLD]]
// CHECK:             tensor.insert %[[NEW]] into %{{.*}}[%{{.*}}, %[[K]]]
// CHECK:         %[[SUM:.*]] = arith.addf %[[DIRECT]], %[[SCATTER]] : tensor<?x8xf32>
// CHECK:         return %[[SUM]]
#id = affine_map<(d0, d1) -> (d0, d1)>
func.func @f(%x: tensor<?x8xf32>) -> tensor<?x8xf32> {
  %c0 = arith.constant 0 : index
  %n = tensor.dim %x, %c0 : tensor<?x8xf32>
  %e = tensor.empty(%n) : tensor<?x8xf32>
  %y = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]}
      ins(%x : tensor<?x8xf32>) outs(%e : tensor<?x8xf32>) {
  ^bb0(%in: f32, %out: f32):
    %i = linalg.index 0 : index
    %j = linalg.index 1 : index
    %c1 = arith.constant 1 : index
    %k = arith.xori %j, %c1 : index
    %other = tensor.extract %x[%i, %k] : tensor<?x8xf32>
    %r = arith.mulf %in, %other : f32
    linalg.yield %r : f32
  } -> tensor<?x8xf32>
  return %y : tensor<?x8xf32>
}

// -----

// A max reduction passes the adjoint to the elements equal to the maximum.
// CHECK-LABEL: func.func @f_grad(
// CHECK-SAME:    %[[X:.*]]: tensor<4x8xf32>, %[[DY:.*]]: tensor<4xf32>) -> tensor<4x8xf32>
// CHECK:         %[[MAX:.*]] = linalg.generic {{.*}}iterator_types = ["parallel", "reduction"]
// CHECK:           arith.maximumf
// CHECK:         linalg.generic {{.*}}ins(%[[X]], %[[DY]], %[[MAX]] :
// CHECK-NEXT:    ^bb0(%[[IN:.*]]: f32, %[[D:.*]]: f32, %[[M:.*]]: f32, %{{.*}}: f32):
// CHECK:           %[[EQ:.*]] = arith.cmpf oeq, %[[IN]], %[[M]]
// CHECK:           arith.select %[[EQ]], %[[D]]
#id = affine_map<(d0, d1) -> (d0, d1)>
#row = affine_map<(d0, d1) -> (d0)>
func.func @f(%x: tensor<4x8xf32>) -> tensor<4xf32> {
  %ninf = arith.constant 0xFF800000 : f32
  %e = tensor.empty() : tensor<4xf32>
  %init = linalg.fill ins(%ninf : f32) outs(%e : tensor<4xf32>) -> tensor<4xf32>
  %m = linalg.generic {indexing_maps = [#id, #row], iterator_types = ["parallel", "reduction"]}
      ins(%x : tensor<4x8xf32>) outs(%init : tensor<4xf32>) {
  ^bb0(%in: f32, %out: f32):
    %r = arith.maximumf %out, %in : f32
    linalg.yield %r : f32
  } -> tensor<4xf32>
  return %m : tensor<4xf32>
}

// -----

// Reshapes and slices get their transposes; integer results get no
// cotangent argument.
// CHECK-LABEL: func.func @f_grad(
// CHECK-SAME:    %[[X:.*]]: tensor<?x4x8xf32>, %[[POS:.*]]: index, %[[C:.*]]: tensor<16x32xf32>, %[[I:.*]]: tensor<2xi32>,
// CHECK-SAME:    %[[DR:.*]]: tensor<16x32xf32>) -> (tensor<?x4x8xf32>, tensor<16x32xf32>)
// CHECK:         %[[SLICE:.*]] = tensor.extract_slice %[[DR]][%[[POS]], 0] [%{{.*}}, 32] [1, 1]
// CHECK:         %[[DCACHE:.*]] = tensor.insert_slice %{{.*}} into %[[DR]][%[[POS]], 0]
// CHECK:         %[[DX:.*]] = tensor.expand_shape %[[SLICE]] {{\[}}[0], [1, 2]]
// CHECK:         return %[[DX]], %[[DCACHE]]
func.func @f(%x: tensor<?x4x8xf32>, %pos: index, %cache: tensor<16x32xf32>, %i: tensor<2xi32>) -> (tensor<16x32xf32>, tensor<2xi32>) {
  %c0 = arith.constant 0 : index
  %n = tensor.dim %x, %c0 : tensor<?x4x8xf32>
  %flat = tensor.collapse_shape %x [[0], [1, 2]] : tensor<?x4x8xf32> into tensor<?x32xf32>
  %r = tensor.insert_slice %flat into %cache[%pos, 0] [%n, 32] [1, 1] : tensor<?x32xf32> into tensor<16x32xf32>
  return %r, %i : tensor<16x32xf32>, tensor<2xi32>
}

// -----

// y = exp(x - b), the shifted exponentials of a softmax: dx = dy · y reads
// the primal result instead of computing exp again (one exp per element,
// in the forward generic); db sums -dy · y over the rows the same way.
// CHECK-LABEL: func.func @f_grad(
// CHECK-SAME:    %[[X:.*]]: tensor<?x8xf32>, %[[B:.*]]: tensor<8xf32>, %[[DY:.*]]: tensor<?x8xf32>)
// CHECK:         %[[Y:.*]] = linalg.generic {{.*}}ins(%[[X]], %[[B]] :
// CHECK:           math.exp
// CHECK:         %[[DX:.*]] = linalg.generic {{.*}}iterator_types = ["parallel", "parallel"]} ins(%[[X]], %[[B]], %[[DY]], %[[Y]] :
// CHECK-NEXT:    ^bb0(%{{.*}}: f32, %{{.*}}: f32, %[[D:.*]]: f32, %[[E:.*]]: f32, %{{.*}}: f32):
// CHECK-NOT:       math.exp
// CHECK:           arith.mulf %{{.*}}, %[[E]]
// CHECK:           linalg.yield
// CHECK:         %[[DB:.*]] = linalg.generic {{.*}}iterator_types = ["reduction", "parallel"]} ins(%[[X]], %[[B]], %[[DY]], %[[Y]] :
// CHECK-NOT:       math.exp
// CHECK:           linalg.yield
// CHECK:         return %[[DX]], %[[DB]]
#id = affine_map<(d0, d1) -> (d0, d1)>
#col = affine_map<(d0, d1) -> (d1)>
func.func @f(%x: tensor<?x8xf32>, %b: tensor<8xf32>) -> tensor<?x8xf32> {
  %c0 = arith.constant 0 : index
  %n = tensor.dim %x, %c0 : tensor<?x8xf32>
  %e = tensor.empty(%n) : tensor<?x8xf32>
  %y = linalg.generic {indexing_maps = [#id, #col, #id], iterator_types = ["parallel", "parallel"]}
      ins(%x, %b : tensor<?x8xf32>, tensor<8xf32>) outs(%e : tensor<?x8xf32>) {
  ^bb0(%u: f32, %w: f32, %out: f32):
    %s = arith.subf %u, %w : f32
    %p = math.exp %s : f32
    linalg.yield %p : f32
  } -> tensor<?x8xf32>
  return %y : tensor<?x8xf32>
}
