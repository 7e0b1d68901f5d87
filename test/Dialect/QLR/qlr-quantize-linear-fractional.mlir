// Fractional zero points (zero-point=fractional): the same byte as an integer
// zero point, with 8 - bits fraction bits. Weight [-0.5, 0.25, 1.0, 2.5] at 2
// bits: s = 3 / 3 = 1 and z = 0.5, stored as 0.5 * 2^6 = 32 (0x20); the
// codes r(x + 0.5) = 0, 1, 2, 3 decode to s * (c - 0.5) = -0.5, 0.5, 1.5,
// 2.5 (f32 0xBF000000, 0x3F000000, 0x3FC00000, 0x40200000), so both ends of
// the range are exact. Integer zero points round z to 0 and decode to
// 0, 0, 1, 2 (0x00000000, 0x00000000, 0x3F800000, 0x40000000).
// RUN: quant-opt %s --qlr-quantize-linear="bits=2 group-size=4 symmetric=false zero-point=fractional scale-type=f32" | FileCheck %s
// RUN: quant-opt %s --qlr-quantize-linear="bits=2 group-size=4 symmetric=false zero-point=fractional scale-type=f32" --qlr-dequantize-weights | FileCheck %s --check-prefix=DEQ
// RUN: quant-opt %s --qlr-quantize-linear="bits=2 group-size=4 symmetric=false scale-type=f32" --qlr-dequantize-weights | FileCheck %s --check-prefix=INT

// CHECK: #[[FMT:.*]] = #qlr.format<int2, group = 4, asymmetric = fractional>
// CHECK-LABEL: func.func @range
// CHECK:         qlr.pack {{.*}} -> !qlr.qtensor<1x4xf32, #[[FMT]]>
// CHECK:       linear0.zero_points: "0x0100000020"

// DEQ-LABEL: func.func @range
// DEQ:       "0x04000000000000BF0000003F0000C03F00002040"

// INT-LABEL: func.func @range
// INT:       "0x0400000000000000000000000000803F00000040"
func.func @range(%x: tensor<2x4xf32>) -> tensor<2x1xf32> {
  %w = arith.constant dense<[[-0.5, 0.25, 1.0, 2.5]]> : tensor<1x4xf32>
  %y = qlr.linear %x, %w : tensor<2x4xf32>, tensor<1x4xf32> -> tensor<2x1xf32>
  return %y : tensor<2x1xf32>
}
