// RUN: quant-opt %s -split-input-file -verify-diagnostics

// expected-error@+1 {{storage bits must be between 2 and 8, got 1}}
func.func @bits_too_small(%x: !qlr.qtensor<4xf32, #qlr.format<int1>>)

// -----

// expected-error@+1 {{storage bits must be between 2 and 8, got 9}}
func.func @bits_too_large(%x: !qlr.qtensor<4xf32, #qlr.format<int9>>)

// -----

// expected-error@+1 {{expected a scheme 'intN', 'nfN' or 'lutN' (N = storage bits), got 'i4'}}
func.func @unknown_scheme(%x: !qlr.qtensor<4xf32, #qlr.format<i4>>)

// -----

// expected-error@+1 {{expected the number of storage bits after the scheme, as in 'int4'}}
func.func @missing_bits(%x: !qlr.qtensor<4xf32, #qlr.format<nf>>)

// -----

// expected-error@+1 {{lookup table has 3 values but 'lut2' needs 2^2 = 4}}
func.func @lut_wrong_size(%x: !qlr.qtensor<4xf32, #qlr.format<lut2 [-1.0, 0.0, 1.0]>>)

// -----

// expected-error@+1 {{'asymmetric' applies to uniform 'int' grids only; codebook formats scale each group by its largest magnitude}}
func.func @codebook_asymmetric(%x: !qlr.qtensor<4x64xf32, #qlr.format<nf4, group = 64, asymmetric>>)

// -----

// expected-error@+1 {{'asymmetric' applies to uniform 'int' grids only; codebook formats scale each group by its largest magnitude}}
func.func @codebook_fractional(%x: !qlr.qtensor<4x64xf32, #qlr.format<nf4, group = 64, asymmetric = fractional>>)

// -----

// expected-error@+1 {{expected 'fractional' or 'integer' zero points after 'asymmetric =', got 'half'}}
func.func @unknown_zero_point_kind(%x: !qlr.qtensor<4x64xf32, #qlr.format<int4, group = 64, asymmetric = half>>)

// -----

// expected-error@+1 {{group size must be positive, got -4}}
func.func @negative_group(%x: !qlr.qtensor<4x64xf32, #qlr.format<int4, group = -4>>)

// -----

// expected-error@+1 {{group size must be positive, got 0}}
func.func @zero_group(%x: !qlr.qtensor<4x64xf32, #qlr.format<int4, group = 0>>)

// -----

// expected-error@+1 {{scale type must be f32, f16 or bf16, got 'i8'}}
func.func @integer_scale(%x: !qlr.qtensor<4x64xf32, #qlr.format<int4, scale = i8>>)

// -----

// expected-error@+1 {{'channel' and 'group' may appear only once and not together}}
func.func @channel_and_group(%x: !qlr.qtensor<4x64xf32, #qlr.format<int4, channel = 0, group = 32>>)

// -----

// expected-error@+1 {{'axis' applies to 'group' formats only; a per-channel format names its axis as 'channel = N'}}
func.func @axis_without_group(%x: !qlr.qtensor<4x64xf32, #qlr.format<int4, channel = 0, axis = 1>>)

// -----

// expected-error@+1 {{unknown format option 'blocks'; expected 'channel', 'group', 'axis', 'asymmetric' or 'scale'}}
func.func @unknown_option(%x: !qlr.qtensor<4x64xf32, #qlr.format<int4, blocks = 2>>)

// -----

// expected-error@+1 {{'scale' is given twice}}
func.func @duplicate_scale(%x: !qlr.qtensor<4x64xf32, #qlr.format<int4, scale = f16, scale = f32>>)

// -----

// expected-error@+1 {{channel axis 2 is out of range for a rank-2 tensor}}
func.func @channel_axis_out_of_range(%x: !qlr.qtensor<4x64xf32, #qlr.format<int8, channel = 2>>)

// -----

// expected-error@+1 {{group axis -3 is out of range for a rank-2 tensor}}
func.func @group_axis_out_of_range(%x: !qlr.qtensor<4x64xf32, #qlr.format<int8, group = 8, axis = -3>>)

// -----

// expected-error@+1 {{element type must be f32, f16 or bf16, got 'i32'}}
func.func @integer_expressed_type(%x: !qlr.qtensor<4x64xi32, #qlr.format<int8>>)

// -----

// expected-error@+1 {{quantized tensors must have rank 1 or more}}
func.func @rank_zero(%x: !qlr.qtensor<f32, #qlr.format<int8>>)

// -----

// expected-error@+1 {{tensor has more than 2^56 elements}}
func.func @too_many_elements(%x: !qlr.qtensor<4294967296x4294967296xf32, #qlr.format<int8>>)

// -----

// expected-error@+1 {{rank must be between 1 and min(64, 32) = 32, got 33}}
func.func @lowrank_rank_too_large(%x: !qlr.lowrank<64x32xf32, rank = 33>)

// -----

// expected-error@+1 {{low-rank weights must be static 2-D matrices}}
func.func @lowrank_not_matrix(%x: !qlr.lowrank<4x64x2xf32, rank = 2>)

// -----

// expected-error@+1 {{'base' is given twice}}
func.func @lowrank_duplicate_key(%x: !qlr.lowrank<64x32xf32, rank = 2, base = #qlr.format<nf2, group = 64>, base = #qlr.format<nf2, group = 64>>)

// -----

func.func @pack_scales_wrong_group_count(%c: tensor<576x288xi8>, %s: tensor<576x8xf16>) {
  // expected-error@+1 {{'qlr.pack' op scales have shape [576, 8] but the format needs [576, 9]: dimension 1 has ceil(576 / 64) = 9 groups}}
  %w = qlr.pack %c, %s : tensor<576x288xi8>, tensor<576x8xf16>
      -> !qlr.qtensor<576x576xf32, #qlr.format<int4, group = 64, scale = f16>>
  return
}

// -----

func.func @pack_scales_partial_group(%c: tensor<576x288xi8>, %s: tensor<576x4xf16>) {
  // expected-error@+1 {{'qlr.pack' op scales have shape [576, 4] but the format needs [576, 5]: dimension 1 has ceil(576 / 128) = 5 groups (the last one partial)}}
  %w = qlr.pack %c, %s : tensor<576x288xi8>, tensor<576x4xf16>
      -> !qlr.qtensor<576x576xf32, #qlr.format<int4, group = 128, scale = f16>>
  return
}

// -----

func.func @pack_scales_wrong_type(%c: tensor<4x4xi8>, %s: tensor<4xf32>) {
  // expected-error@+1 {{'qlr.pack' op scales have element type 'f32' but the format's scale type is 'f16'}}
  %w = qlr.pack %c, %s : tensor<4x4xi8>, tensor<4xf32>
      -> !qlr.qtensor<4x8xf32, #qlr.format<int4, channel = 0, scale = f16>>
  return
}

// -----

func.func @pack_per_tensor_scale_shape(%c: tensor<4x4xi8>, %s: tensor<1xf32>) {
  // expected-error@+1 {{'qlr.pack' op scales have shape [1] but the format needs []: a per-tensor format has one scale (a rank-0 tensor)}}
  %w = qlr.pack %c, %s : tensor<4x4xi8>, tensor<1xf32> -> !qlr.qtensor<4x8xf32, #qlr.format<int4>>
  return
}

// -----

func.func @pack_per_channel_scale_count(%c: tensor<4x4xi8>, %s: tensor<8xf32>) {
  // expected-error@+1 {{'qlr.pack' op scales have shape [8] but the format needs [4]: one scale per index along channel axis 0}}
  %w = qlr.pack %c, %s : tensor<4x4xi8>, tensor<8xf32> -> !qlr.qtensor<4x8xf32, #qlr.format<int4, channel = 0>>
  return
}

// -----

func.func @pack_codes_wrong_bytes(%c: tensor<4x5xi8>, %s: tensor<4xf32>) {
  // expected-error@+1 {{'qlr.pack' op codes dimension 1 is [5] but must be [3]: rows of 7 3-bit codes pack into 3 bytes}}
  %w = qlr.pack %c, %s : tensor<4x5xi8>, tensor<4xf32> -> !qlr.qtensor<4x7xf32, #qlr.format<int3, channel = 0>>
  return
}

// -----

func.func @pack_codes_wrong_rank(%c: tensor<16xi8>, %s: tensor<4xf32>) {
  // expected-error@+1 {{'qlr.pack' op codes must have rank 2 like the quantized tensor, got rank 1}}
  %w = qlr.pack %c, %s : tensor<16xi8>, tensor<4xf32> -> !qlr.qtensor<4x8xf32, #qlr.format<int8, channel = 0>>
  return
}

// -----

func.func @pack_codes_not_bytes(%c: tensor<4x4xi16>, %s: tensor<4xf32>) {
  // expected-error@+1 {{'qlr.pack' op operand #0 must be ranked tensor of 8-bit signless integer values}}
  %w = qlr.pack %c, %s : tensor<4x4xi16>, tensor<4xf32> -> !qlr.qtensor<4x8xf32, #qlr.format<int4, channel = 0>>
  return
}

// -----

func.func @pack_missing_zero_points(%c: tensor<4x4xi8>, %s: tensor<4xf32>) {
  // expected-error@+1 {{'qlr.pack' op asymmetric format #qlr.format<int4, channel = 0, asymmetric> requires zero points}}
  %w = qlr.pack %c, %s : tensor<4x4xi8>, tensor<4xf32>
      -> !qlr.qtensor<4x8xf32, #qlr.format<int4, channel = 0, asymmetric>>
  return
}

// -----

func.func @pack_unexpected_zero_points(%c: tensor<4x4xi8>, %s: tensor<4xf32>, %z: tensor<4xi8>) {
  // expected-error@+1 {{'qlr.pack' op symmetric format #qlr.format<int4, channel = 0> takes no zero points (its zero point is implicit)}}
  %w = qlr.pack %c, %s, %z : tensor<4x4xi8>, tensor<4xf32>, tensor<4xi8>
      -> !qlr.qtensor<4x8xf32, #qlr.format<int4, channel = 0>>
  return
}

// -----

func.func @pack_zero_points_shape(%c: tensor<4x4xi8>, %s: tensor<4xf32>, %z: tensor<2xi8>) {
  // expected-error@+1 {{'qlr.pack' op zero points have shape [2] but must have the scales' shape [4]}}
  %w = qlr.pack %c, %s, %z : tensor<4x4xi8>, tensor<4xf32>, tensor<2xi8>
      -> !qlr.qtensor<4x8xf32, #qlr.format<int4, channel = 0, asymmetric>>
  return
}

// -----

func.func @quantize_shape_mismatch(%x: tensor<4x16xf32>) {
  // expected-error@+1 {{'qlr.quantize' op input type 'tensor<4x16xf32>' does not match the quantized tensor's expressed type 'tensor<4x8xf32>'}}
  %q = qlr.quantize %x : tensor<4x16xf32> -> !qlr.qtensor<4x8xf32, #qlr.format<int8>>
  return
}

// -----

func.func @quantize_zero_points_without_scales(%x: tensor<4x8xf32>, %z: tensor<4xi8>) {
  // expected-error@+1 {{'qlr.quantize' op zero points are given without scales}}
  %q = qlr.quantize %x zero_points(%z : tensor<4xi8>) : tensor<4x8xf32>
      -> !qlr.qtensor<4x8xf32, #qlr.format<int8, channel = 0, asymmetric>>
  return
}

// -----

func.func @quantize_static_scales_shape(%x: tensor<4x8xf32>, %s: tensor<8xf32>) {
  // expected-error@+1 {{'qlr.quantize' op scales have shape [8] but the format needs [4]}}
  %q = qlr.quantize %x scales(%s : tensor<8xf32>) : tensor<4x8xf32>
      -> !qlr.qtensor<4x8xf32, #qlr.format<int8, channel = 0>>
  return
}

// -----

func.func @dequantize_wrong_result(%q: !qlr.qtensor<4x8xf32, #qlr.format<int8>>) {
  // expected-error@+1 {{'qlr.dequantize' op result type 'tensor<4x8xf16>' must be the input's expressed type 'tensor<4x8xf32>'}}
  %d = qlr.dequantize %q : !qlr.qtensor<4x8xf32, #qlr.format<int8>> -> tensor<4x8xf16>
  return
}

// -----

func.func @dequantize_float(%x: tensor<4x8xf32>) {
  // expected-error@+1 {{'qlr.dequantize' op operand #0 must be quantized or low-rank weight}}
  %d = qlr.dequantize %x : tensor<4x8xf32> -> tensor<4x8xf32>
  return
}

// -----

func.func @lowrank_factor_shape(%a: tensor<64x4xf32>, %b: tensor<8x32xf32>) {
  // expected-error@+1 {{'qlr.lowrank' op factor A has type 'tensor<64x4xf32>' but the result '!qlr.lowrank<64x32xf32, rank = 8>' needs 'tensor<64x8xf32>'}}
  %l = qlr.lowrank %a, %b : tensor<64x4xf32>, tensor<8x32xf32> -> !qlr.lowrank<64x32xf32, rank = 8>
  return
}

// -----

func.func @lowrank_missing_base(%a: tensor<64x8xf32>, %b: tensor<8x32xf32>) {
  // expected-error@+1 {{'qlr.lowrank' op result type '!qlr.lowrank<64x32xf32, rank = 8, base = #qlr.format<nf2, group = 64>>' needs a quantized base}}
  %l = qlr.lowrank %a, %b : tensor<64x8xf32>, tensor<8x32xf32>
      -> !qlr.lowrank<64x32xf32, rank = 8, base = #qlr.format<nf2, group = 64>>
  return
}

// -----

func.func @lowrank_base_format(%a: tensor<64x8xf32>, %b: tensor<8x32xf32>,
    %q: !qlr.qtensor<64x32xf32, #qlr.format<nf4, group = 64>>) {
  // expected-error@+1 {{'qlr.lowrank' op base has type '!qlr.qtensor<64x32xf32, #qlr.format<nf4, group = 64>>' but the result '!qlr.lowrank<64x32xf32, rank = 8, base = #qlr.format<nf2, group = 64>>' needs '!qlr.qtensor<64x32xf32, #qlr.format<nf2, group = 64>>'}}
  %l = qlr.lowrank %a, %b base %q : tensor<64x8xf32>, tensor<8x32xf32>, !qlr.qtensor<64x32xf32, #qlr.format<nf4, group = 64>>
      -> !qlr.lowrank<64x32xf32, rank = 8, base = #qlr.format<nf2, group = 64>>
  return
}

// -----

func.func @linear_feature_mismatch(%x: tensor<2x64xf32>, %w: tensor<128x32xf32>) {
  // expected-error@+1 {{'qlr.linear' op input has 64 features (last dimension) but the weight [128, 32] takes 32}}
  %y = qlr.linear %x, %w : tensor<2x64xf32>, tensor<128x32xf32> -> tensor<2x128xf32>
  return
}

// -----

func.func @linear_weight_rank(%x: tensor<2x64xf32>, %w: tensor<2x128x64xf32>) {
  // expected-error@+1 {{'qlr.linear' op weight must be a 2-D [N, K] matrix, got shape [2, 128, 64]}}
  %y = qlr.linear %x, %w : tensor<2x64xf32>, tensor<2x128x64xf32> -> tensor<2x128xf32>
  return
}

// -----

func.func @linear_bias_size(%x: tensor<2x64xf32>, %w: tensor<128x64xf32>, %b: tensor<64xf32>) {
  // expected-error@+1 {{'qlr.linear' op bias must be a 1-D tensor of 128 'f32' (one per output feature), got 'tensor<64xf32>'}}
  %y = qlr.linear %x, %w, %b : tensor<2x64xf32>, tensor<128x64xf32>, tensor<64xf32> -> tensor<2x128xf32>
  return
}

// -----

func.func @linear_result_shape(%x: tensor<2x64xf32>, %w: tensor<128x64xf32>) {
  // expected-error@+1 {{'qlr.linear' op result type 'tensor<2x64xf32>' does not match the expected 'tensor<2x128xf32>'}}
  %y = qlr.linear %x, %w : tensor<2x64xf32>, tensor<128x64xf32> -> tensor<2x64xf32>
  return
}

// -----

func.func @linear_element_type(%x: tensor<2x64xf16>, %w: tensor<128x64xf32>) {
  // expected-error@+1 {{'qlr.linear' op weight element type 'f32' does not match the input element type 'f16'}}
  %y = qlr.linear %x, %w : tensor<2x64xf16>, tensor<128x64xf32> -> tensor<2x128xf16>
  return
}

// -----

func.func @rms_norm_weight_size(%x: tensor<2x64xf32>, %w: tensor<32xf32>) {
  // expected-error@+1 {{'qlr.rms_norm' op weight has 32 elements but the input has 64 features (last dimension)}}
  %y = qlr.rms_norm %x, %w eps = 1.0e-5 : tensor<2x64xf32>, tensor<32xf32>
  return
}

// -----

func.func @rms_norm_negative_epsilon(%x: tensor<2x64xf32>, %w: tensor<64xf32>) {
  // expected-error@+1 {{'qlr.rms_norm' op epsilon must be finite and non-negative, got -1.000000e-05}}
  %y = qlr.rms_norm %x, %w eps = -1.0e-5 : tensor<2x64xf32>, tensor<64xf32>
  return
}

// -----

func.func @layer_norm_bias_type(%x: tensor<2x64xf32>, %w: tensor<64xf32>, %b: tensor<64xf16>) {
  // expected-error@+1 {{'qlr.layer_norm' op bias element type 'f16' does not match the input element type 'f32'}}
  %y = qlr.layer_norm %x, %w, %b eps = 1.0e-5 : tensor<2x64xf32>, tensor<64xf32>, tensor<64xf16>
  return
}

// -----

func.func @batch_norm_axis(%x: tensor<8x16xf32>, %p: tensor<16xf32>) {
  // expected-error@+1 {{'qlr.batch_norm' op channel axis 2 is out of range for a rank-2 input}}
  %y = qlr.batch_norm %x, %p, %p, %p, %p axis = 2 eps = 1.0e-5
      : tensor<8x16xf32>, tensor<16xf32>, tensor<16xf32>, tensor<16xf32>, tensor<16xf32>
  return
}

// -----

func.func @batch_norm_parameter_size(%x: tensor<8x16xf32>, %p: tensor<16xf32>, %v: tensor<8xf32>) {
  // expected-error@+1 {{'qlr.batch_norm' op variance has 8 elements but the input has 16 channels along the axis}}
  %y = qlr.batch_norm %x, %p, %p, %p, %v axis = 1 eps = 1.0e-5
      : tensor<8x16xf32>, tensor<16xf32>, tensor<16xf32>, tensor<16xf32>, tensor<8xf32>
  return
}

// -----

func.func @norm_result_type(%x: tensor<2x64xf32>, %w: tensor<64xf32>) {
  // expected-error@+1 {{'qlr.rms_norm' op failed to verify that all of {input, result} have same type}}
  %y = "qlr.rms_norm"(%x, %w) {epsilon = 1.0e-5 : f64} : (tensor<2x64xf32>, tensor<64xf32>) -> tensor<2x32xf32>
  return
}

// -----

func.func @conv2d_input_rank(%x: tensor<3x8x8xf32>, %w: tensor<16x3x3x3xf32>) {
  // expected-error@+1 {{'qlr.conv2d' op input must be a 4-D [N, C, H, W] tensor, got shape [3, 8, 8]}}
  %y = qlr.conv2d %x, %w : tensor<3x8x8xf32>, tensor<16x3x3x3xf32> -> tensor<1x16x6x6xf32>
  return
}

// -----

func.func @conv2d_channels(%x: tensor<1x4x8x8xf32>, %w: tensor<16x3x3x3xf32>) {
  // expected-error@+1 {{'qlr.conv2d' op weight [16, 3, 3, 3] takes 3 channels per group, but the input has 4 channels in 1 group(s)}}
  %y = qlr.conv2d %x, %w : tensor<1x4x8x8xf32>, tensor<16x3x3x3xf32> -> tensor<1x16x6x6xf32>
  return
}

// -----

func.func @conv2d_groups(%x: tensor<1x6x8x8xf32>, %w: tensor<16x3x3x3xf32>) {
  // expected-error@+1 {{'qlr.conv2d' op output channels (16) are not divisible by groups (3)}}
  %y = qlr.conv2d %x, %w {groups = 3 : i64} : tensor<1x6x8x8xf32>, tensor<16x3x3x3xf32> -> tensor<1x16x6x6xf32>
  return
}

// -----

func.func @conv2d_padding(%x: tensor<1x3x8x8xf32>, %w: tensor<16x3x3x3xf32>) {
  // expected-error@+1 {{'qlr.conv2d' op padding must have 4 values, got 2}}
  %y = qlr.conv2d %x, %w {padding = array<i64: 1, 1>} : tensor<1x3x8x8xf32>, tensor<16x3x3x3xf32> -> tensor<1x16x8x8xf32>
  return
}

// -----

func.func @conv2d_stride(%x: tensor<1x3x8x8xf32>, %w: tensor<16x3x3x3xf32>) {
  // expected-error@+1 {{'qlr.conv2d' op strides must be 1 or more, got 0}}
  %y = qlr.conv2d %x, %w {strides = array<i64: 0, 1>} : tensor<1x3x8x8xf32>, tensor<16x3x3x3xf32> -> tensor<1x16x6x6xf32>
  return
}

// -----

func.func @conv2d_kernel_too_large(%x: tensor<1x3x2x8xf32>, %w: tensor<16x3x3x3xf32>) {
  // expected-error@+1 {{'qlr.conv2d' op the height after padding (2) is smaller than the dilated kernel (3)}}
  %y = qlr.conv2d %x, %w : tensor<1x3x2x8xf32>, tensor<16x3x3x3xf32> -> tensor<1x16x1x6xf32>
  return
}

// -----

func.func @conv2d_result(%x: tensor<1x3x8x8xf32>, %w: tensor<16x3x3x3xf32>) {
  // expected-error@+1 {{'qlr.conv2d' op result type 'tensor<1x16x8x8xf32>' does not match the expected 'tensor<1x16x6x6xf32>'}}
  %y = qlr.conv2d %x, %w : tensor<1x3x8x8xf32>, tensor<16x3x3x3xf32> -> tensor<1x16x8x8xf32>
  return
}

// -----

func.func @conv2d_bias(%x: tensor<1x3x8x8xf32>, %w: tensor<16x3x3x3xf32>, %b: tensor<8xf32>) {
  // expected-error@+1 {{'qlr.conv2d' op bias must be a 1-D tensor of 16 'f32' (one per output channel), got 'tensor<8xf32>'}}
  %y = qlr.conv2d %x, %w, %b : tensor<1x3x8x8xf32>, tensor<16x3x3x3xf32>, tensor<8xf32> -> tensor<1x16x6x6xf32>
  return
}

// -----

func.func @conv2d_lowrank(%x: tensor<1x3x8x8xf32>, %w: !qlr.lowrank<16x3xf32, rank = 2>) {
  // expected-error@+1 {{operand #1 must be float tensor or quantized tensor, but got '!qlr.lowrank<16x3xf32, rank = 2>'}}
  %y = qlr.conv2d %x, %w : tensor<1x3x8x8xf32>, !qlr.lowrank<16x3xf32, rank = 2> -> tensor<1x16x6x6xf32>
  return
}

// -----

func.func @layer_name(%x: tensor<2x4xf32>, %w: tensor<3x4xf32>) {
  // expected-error@+1 {{'qlr.name' must be a non-empty string naming the layer, got 7 : i64}}
  %y = qlr.linear %x, %w {qlr.name = 7} : tensor<2x4xf32>, tensor<3x4xf32> -> tensor<2x3xf32>
  return
}
