// A compressed weight whose blob was elided (printed with
// --mlir-elide-resource-strings-if-larger) cannot be decoded: the pass fails
// with a located error instead of inventing values.
// RUN: not quant-opt %s --qlr-dequantize-weights 2>&1 | FileCheck %s

// CHECK: :[[@LINE+4]]:8: error: the data of resource '__elided__' is not available (was it elided?)
func.func @elided(%x: tensor<2x4xf32>) -> tensor<2x1xf32> {
  %codes = arith.constant dense_resource<__elided__> : tensor<1x2xi8>
  %scales = arith.constant dense<0.5> : tensor<f32>
  %q = qlr.pack %codes, %scales : tensor<1x2xi8>, tensor<f32> -> !qlr.qtensor<1x4xf32, #qlr.format<int4>>
  %y = qlr.linear %x, %q : tensor<2x4xf32>, !qlr.qtensor<1x4xf32, #qlr.format<int4>> -> tensor<2x1xf32>
  return %y : tensor<2x1xf32>
}
