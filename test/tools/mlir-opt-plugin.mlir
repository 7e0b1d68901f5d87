// Stock mlir-opt (Debian's, linked against libMLIR.so) loads QLR as a dialect
// plugin and a pass plugin. Pass plugins are loaded while the command line is
// parsed, so their passes are named through --pass-pipeline.
// REQUIRES: plugin
// RUN: mlir-opt --load-dialect-plugin=%qlr_lib_dir/QLRPlugin%shlibext %s | FileCheck %s --check-prefix=DIALECT
// RUN: mlir-opt --load-dialect-plugin=%qlr_lib_dir/QLRPlugin%shlibext --load-pass-plugin=%qlr_lib_dir/QLRPlugin%shlibext %s --pass-pipeline="builtin.module(qlr-convert-qlr-to-quant)" | FileCheck %s --check-prefix=PASS

// DIALECT: #int4_c0 = #qlr.format<int4, channel = 0>
// DIALECT-LABEL: func.func @weights
// DIALECT: qlr.pack
// PASS-LABEL: func.func @weights
// PASS: quant.scast %{{.+}} : tensor<2x4xi4> to tensor<2x4x!quant.uniform<i4:f32:0, {1.000000e+00,5.000000e-01}>>
func.func @weights() -> tensor<2x4xf32> {
  %codes = arith.constant dense<[[-104, -70], [118, 84]]> : tensor<2x2xi8>
  %scales = arith.constant dense<[1.0, 0.5]> : tensor<2xf32>
  %w = qlr.pack %codes, %scales : tensor<2x2xi8>, tensor<2xf32> -> !qlr.qtensor<2x4xf32, #qlr.format<int4, channel = 0>>
  %d = qlr.dequantize %w : !qlr.qtensor<2x4xf32, #qlr.format<int4, channel = 0>> -> tensor<2x4xf32>
  return %d : tensor<2x4xf32>
}
