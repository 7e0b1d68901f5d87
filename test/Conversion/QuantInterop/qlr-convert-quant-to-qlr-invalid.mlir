// RUN: quant-opt %s --split-input-file --qlr-convert-quant-to-qlr -verify-diagnostics

func.func @wide_storage(%x: tensor<4xf32>) {
  // expected-error@+1 {{qlr stores 2 to 8 bits per code, not 16}}
  %q = quant.qcast %x : tensor<4xf32> to tensor<4x!quant.uniform<i16:f32, 0.5>>
  return
}

// -----

func.func @narrow_range(%x: tensor<4xf32>) {
  // expected-error@+1 {{the narrowed storage range [-127, 127] differs from qlr's full 8-bit range}}
  %q = quant.qcast %x : tensor<4xf32> to tensor<4x!quant.uniform<i8<-127:127>:f32, 0.5>>
  return
}

// -----

func.func @f64_expressed(%x: tensor<4xf64>) {
  // expected-error@+1 {{the expressed type must be f32, f16 or bf16 (it becomes the scale type)}}
  %q = quant.qcast %x : tensor<4xf64> to tensor<4x!quant.uniform<i8:f64, 0.5>>
  return
}

// -----

func.func @blocks_on_two_axes(%x: tensor<4x4xf32>) {
  // expected-error@+1 {{blocks span more than one axis; qlr groups run along a single axis}}
  %q = quant.qcast %x : tensor<4x4xf32> to tensor<4x4x!quant.uniform<i8:f32:{0:2, 1:2}, {{1.0, 1.0}, {1.0, 1.0}}>>
  return
}

// -----

func.func @non_constant_storage(%c: tensor<4xi8>) {
  // expected-error@+1 {{'quant.scast' op converts only from a constant: qlr.pack takes packed codes, which are computed at compile time}}
  %q = quant.scast %c : tensor<4xi8> to tensor<4x!quant.uniform<i8:f32, 0.5>>
  return
}

// -----

func.func @other_user(%x: tensor<4xf32>) -> tensor<4xi8> {
  // expected-note@+1 {{the quantized tensor is defined here}}
  %q = quant.qcast %x : tensor<4xf32> to tensor<4x!quant.uniform<i8:f32, 0.5>>
  // expected-error@+1 {{'quant.scast' op uses a quantized tensor in a way qlr cannot express; only quant.dcast can consume one}}
  %c = quant.scast %q : tensor<4x!quant.uniform<i8:f32, 0.5>> to tensor<4xi8>
  return %c : tensor<4xi8>
}

// -----

// expected-error@+1 {{a quantized block or function argument has its scales only in its type; qlr quantized tensors carry them as values, so it cannot be converted}}
func.func @argument(%q: tensor<4x!quant.uniform<i8:f32, 0.5>>) {
  return
}
