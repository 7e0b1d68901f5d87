// RUN: quant-opt %s --split-input-file --qlr-lower-to-linalg -verify-diagnostics

func.func @weight_argument(%x: tensor<2x4xf32>, %w: !qlr.qtensor<3x4xf32, #qlr.format<int8>>) -> tensor<2x3xf32> {
  // expected-error@+1 {{'qlr.linear' op cannot be lowered: the storage of its weight is not built by qlr.pack / qlr.lowrank in this function}}
  %y = qlr.linear %x, %w : tensor<2x4xf32>, !qlr.qtensor<3x4xf32, #qlr.format<int8>> -> tensor<2x3xf32>
  return %y : tensor<2x3xf32>
}

// -----

func.func @runtime_quantize(%x: tensor<2x4xf32>) -> !qlr.qtensor<2x4xf32, #qlr.format<int8>> {
  // expected-error@+1 {{'qlr.quantize' op has no lowering yet (run-time quantization)}}
  %q = qlr.quantize %x : tensor<2x4xf32> -> !qlr.qtensor<2x4xf32, #qlr.format<int8>>
  return %q : !qlr.qtensor<2x4xf32, #qlr.format<int8>>
}
