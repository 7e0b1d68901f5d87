// RUN: quant-opt %s --split-input-file --qlr-convert-qlr-to-quant -verify-diagnostics

func.func @codebook_not_expressible() -> tensor<1x2xf32> {
  %codes = arith.constant dense<[[33]]> : tensor<1x1xi8>
  %scales = arith.constant dense<1.0> : tensor<f32>
  // expected-error@+1 {{cannot express '!qlr.qtensor<1x2xf32, #qlr.format<nf4>>' as !quant.uniform: its codebook format has no upstream equivalent; only uniform integer grids do}}
  %w = qlr.pack %codes, %scales : tensor<1x1xi8>, tensor<f32> -> !qlr.qtensor<1x2xf32, #qlr.format<nf4>>
  %d = qlr.dequantize %w : !qlr.qtensor<1x2xf32, #qlr.format<nf4>> -> tensor<1x2xf32>
  return %d : tensor<1x2xf32>
}

// -----

func.func @fractional_zero_point_not_expressible() -> tensor<1x2xf32> {
  %codes = arith.constant dense<[[33]]> : tensor<1x1xi8>
  %scales = arith.constant dense<1.0> : tensor<f32>
  %zero = arith.constant dense<24> : tensor<i8>
  // expected-error@+1 {{cannot express '!qlr.qtensor<1x2xf32, #qlr.format<int4, asymmetric = fractional>>' as !quant.uniform: its zero points are fractional (asymmetric = fractional); upstream zero points are integers}}
  %w = qlr.pack %codes, %scales, %zero : tensor<1x1xi8>, tensor<f32>, tensor<i8> -> !qlr.qtensor<1x2xf32, #qlr.format<int4, asymmetric = fractional>>
  %d = qlr.dequantize %w : !qlr.qtensor<1x2xf32, #qlr.format<int4, asymmetric = fractional>> -> tensor<1x2xf32>
  return %d : tensor<1x2xf32>
}

// -----

func.func @dynamic_scales(%x: tensor<2x4xf32>) {
  // expected-error@+1 {{'qlr.quantize' op computes its scales from the data at run time; !quant.uniform types need them at compile time}}
  %q = qlr.quantize %x : tensor<2x4xf32> -> !qlr.qtensor<2x4xf32, #qlr.format<int8>>
  return
}

// -----

func.func @non_constant_scales(%s: tensor<f32>) {
  %codes = arith.constant dense<[[33]]> : tensor<1x1xi8>
  // expected-error@+1 {{'qlr.pack' op has non-constant scales; !quant.uniform types need them at compile time}}
  %w = qlr.pack %codes, %s : tensor<1x1xi8>, tensor<f32> -> !qlr.qtensor<1x2xf32, #qlr.format<int4>>
  return
}

// -----

func.func @partial_group() {
  %codes = arith.constant dense<0> : tensor<2x3xi8>
  %scales = arith.constant dense<1.0> : tensor<2x2xf32>
  // expected-error@+1 {{group size 4 does not divide dimension 1 (6); upstream sub-channel types need whole blocks}}
  %w = qlr.pack %codes, %scales : tensor<2x3xi8>, tensor<2x2xf32> -> !qlr.qtensor<2x6xf32, #qlr.format<int4, group = 4>>
  return
}

// -----

func.func @unpack_user() {
  %codes = arith.constant dense<[[33]]> : tensor<1x1xi8>
  %scales = arith.constant dense<1.0> : tensor<f32>
  // expected-note@+1 {{the quantized tensor is defined here}}
  %w = qlr.pack %codes, %scales : tensor<1x1xi8>, tensor<f32> -> !qlr.qtensor<1x2xf32, #qlr.format<int4>>
  // expected-error@+1 {{'qlr.unpack' op uses a quantized tensor in a way !quant.uniform cannot express; only qlr.dequantize and the weight of qlr.linear convert}}
  %c, %s = qlr.unpack %w : !qlr.qtensor<1x2xf32, #qlr.format<int4>>
  return
}

// -----

// expected-error@+1 {{a quantized block or function argument carries its scales at run time; !quant.uniform needs them in the type, so it cannot be converted}}
func.func @argument(%w: !qlr.qtensor<1x2xf32, #qlr.format<int4>>) {
  return
}
