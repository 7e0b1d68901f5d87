// Input for downstream.test: a 4-bit weight with f16 scales per 64 values.
func.func @weights() -> tensor<2x64xf32> {
  %codes = arith.constant dense<[[17, 17, 17, 17, 17, 17, 17, 17, 17, 17, 17, 17, 17, 17, 17, 17, 17, 17, 17, 17, 17, 17, 17, 17, 17, 17, 17, 17, 17, 17, 17, 17], [17, 17, 17, 17, 17, 17, 17, 17, 17, 17, 17, 17, 17, 17, 17, 17, 17, 17, 17, 17, 17, 17, 17, 17, 17, 17, 17, 17, 17, 17, 17, 17]]> : tensor<2x32xi8>
  %scales = arith.constant dense<[[0.5], [0.25]]> : tensor<2x1xf16>
  %w = qlr.pack %codes, %scales : tensor<2x32xi8>, tensor<2x1xf16>
      -> !qlr.qtensor<2x64xf32, #qlr.format<int4, group = 64, scale = f16>>
  %d = qlr.dequantize %w : !qlr.qtensor<2x64xf32, #qlr.format<int4, group = 64, scale = f16>> -> tensor<2x64xf32>
  return %d : tensor<2x64xf32>
}
