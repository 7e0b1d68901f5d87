// Every spelling of the format attribute, printed back in canonical form
// with its readable alias.
// RUN: quant-opt %s | FileCheck %s
// RUN: quant-opt %s -emit-bytecode | quant-opt | FileCheck %s

// CHECK-DAG: #int8 = #qlr.format<int8>
// CHECK-DAG: #int2_c1 = #qlr.format<int2, channel = 1>
// CHECK-DAG: #int4_g64_f16 = #qlr.format<int4, group = 64, scale = f16>
// CHECK-DAG: #int3_g32_a0_asym_bf16 = #qlr.format<int3, group = 32, axis = 0, asymmetric, scale = bf16>
// CHECK-DAG: #int7_g5_am2 = #qlr.format<int7, group = 5, axis = -2>
// CHECK-DAG: #int4_g64_asymf_f16 = #qlr.format<int4, group = 64, asymmetric = fractional, scale = f16>
// CHECK-DAG: #int2_c0_asym = #qlr.format<int2, channel = 0, asymmetric>
// CHECK-DAG: #nf4_g64 = #qlr.format<nf4, group = 64>
// CHECK-DAG: #nf2_g64_f16 = #qlr.format<nf2, group = 64, scale = f16>
// CHECK-DAG: #lut2_c0 = #qlr.format<lut2 [-1.000000e+00, -3.300000e-01, 2.500000e-01, 1.000000e+00], channel = 0>
// CHECK-DAG: #lut3 = #qlr.format<lut3 [0.000000e+00, 1.000000e+00, 2.000000e+00, 3.000000e+00, 4.000000e+00, 5.000000e+00, 6.000000e+00, 7.000000e+00]>

// CHECK-LABEL: func.func @formats
func.func @formats(
  %a: !qlr.qtensor<8x64xf32, #qlr.format<int8>>,
  %b: !qlr.qtensor<8x64xf32, #qlr.format<int2, channel = 1>>,
  // Options in any order; `group` without `axis` runs along the last axis.
  %c: !qlr.qtensor<8x64xf32, #qlr.format<int4, scale = f16, group = 64>>,
  %d: !qlr.qtensor<64x8xf32, #qlr.format<int3, axis = 0, asymmetric, group = 32, scale = bf16>>,
  %e: !qlr.qtensor<3x8x64xf32, #qlr.format<int7, group = 5, axis = -2>>,
  %f: !qlr.qtensor<8x64xf32, #qlr.format<nf4, group = 64, axis = -1>>,
  %g: !qlr.qtensor<8x64xf32, #qlr.format<nf2, group = 64, scale = f16>>,
  %h: !qlr.qtensor<8x64xf32, #qlr.format<lut2 [-1.0, -0.33, 0.25, 1.0], channel = 0>>,
  %i: !qlr.qtensor<8xf32, #qlr.format<lut3 [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]>>,
  // Explicit f32 scale type is the default and is not printed.
  %j: !qlr.qtensor<8xf32, #qlr.format<int8, scale = f32>>,
  // Fractional zero points; `asymmetric = integer` is plain `asymmetric`.
  %k: !qlr.qtensor<8x64xf32, #qlr.format<int4, group = 64, asymmetric = fractional, scale = f16>>,
  %l: !qlr.qtensor<8x64xf32, #qlr.format<int2, asymmetric = integer, channel = 0>>) {
  return
}
// CHECK-SAME: !qlr.qtensor<8x64xf32, #int8>
// CHECK-SAME: !qlr.qtensor<8x64xf32, #int4_g64_f16>
// CHECK-SAME: !qlr.qtensor<8x64xf32, #nf4_g64>
// CHECK-SAME: !qlr.qtensor<8xf32, #int8>
// CHECK-SAME: !qlr.qtensor<8x64xf32, #int4_g64_asymf_f16>
// CHECK-SAME: !qlr.qtensor<8x64xf32, #int2_c0_asym>
