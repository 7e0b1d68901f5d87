// RUN: quant-opt %s --split-input-file --qlr-dequantize-weights | FileCheck %s

// Codes 9, 6, 8, 15 (packed 0x69, 0xF8), int4 symmetric (zero point 8),
// scale 0.5: the weights are 0.5 * (c - 8) = 0.5, -1.0, 0.0, 3.5
// (f32 little-endian 0000003F 000080BF 00000000 00006040).
// CHECK-LABEL: func.func @packed
// CHECK:         %[[W:.*]] = arith.constant dense_resource<w> : tensor<1x4xf32>
// CHECK-NEXT:    %[[Y:.*]] = qlr.linear %arg0, %[[W]] : tensor<2x4xf32>, tensor<1x4xf32> -> tensor<2x1xf32>
// CHECK-NEXT:    %[[D:.*]] = arith.addf %[[W]], %[[W]]
// CHECK-NOT:     qlr.pack
// CHECK:         w: "0x040000000000003F000080BF0000000000006040"
func.func @packed(%x: tensor<2x4xf32>) -> (tensor<2x1xf32>, tensor<1x4xf32>) {
  %codes = arith.constant dense_resource<w.codes> : tensor<1x2xi8>
  %scales = arith.constant dense<0.5> : tensor<f32>
  %q = qlr.pack %codes, %scales : tensor<1x2xi8>, tensor<f32> -> !qlr.qtensor<1x4xf32, #qlr.format<int4>>
  %y = qlr.linear %x, %q : tensor<2x4xf32>, !qlr.qtensor<1x4xf32, #qlr.format<int4>> -> tensor<2x1xf32>
  %d = qlr.dequantize %q : !qlr.qtensor<1x4xf32, #qlr.format<int4>> -> tensor<1x4xf32>
  %s = arith.addf %d, %d : tensor<1x4xf32>
  return %y, %s : tensor<2x1xf32>, tensor<1x4xf32>
}

{-#
  dialect_resources: {
    builtin: {
      "w.codes": "0x0100000069F8"
    }
  }
#-}

// -----

// A·B with A = [[1], [2]], B = [[0.5, -1]] plus an int8 base with codes
// 129, 127, 128, 130 at scale 0.25 (values 0.25, -0.25, 0, 0.5):
// [[0.75, -1.25], [1.0, -1.5]].
// CHECK-LABEL: func.func @lowrank
// CHECK:         arith.constant dense_resource<m> : tensor<2x2xf32>
// CHECK-NOT:     qlr.lowrank
// CHECK:         m: "0x040000000000403F0000A0BF0000803F0000C0BF"
func.func @lowrank(%x: tensor<3x2xf32>) -> tensor<3x2xf32> {
  %a = arith.constant dense_resource<m.lora_a> : tensor<2x1xf32>
  %b = arith.constant dense<[[0.5, -1.0]]> : tensor<1x2xf32>
  %codes = arith.constant dense<[[-127, 127], [-128, -126]]> : tensor<2x2xi8>
  %scales = arith.constant dense<0.25> : tensor<f32>
  %q = qlr.pack %codes, %scales : tensor<2x2xi8>, tensor<f32> -> !qlr.qtensor<2x2xf32, #qlr.format<int8>>
  %w = qlr.lowrank %a, %b base %q : tensor<2x1xf32>, tensor<1x2xf32>, !qlr.qtensor<2x2xf32, #qlr.format<int8>> -> !qlr.lowrank<2x2xf32, rank = 1, base = #qlr.format<int8>>
  %y = qlr.linear %x, %w : tensor<3x2xf32>, !qlr.lowrank<2x2xf32, rank = 1, base = #qlr.format<int8>> -> tensor<3x2xf32>
  return %y : tensor<3x2xf32>
}

{-#
  dialect_resources: {
    builtin: {
      "m.lora_a": "0x040000000000803F00000040"
    }
  }
#-}

// -----

// Weights computed at run time are left alone.
// CHECK-LABEL: func.func @dynamic
// CHECK:         qlr.pack %arg1, %arg2
// CHECK:         qlr.linear
func.func @dynamic(%x: tensor<2x4xf32>, %c: tensor<1x2xi8>, %s: tensor<f32>) -> tensor<2x1xf32> {
  %q = qlr.pack %c, %s : tensor<1x2xi8>, tensor<f32> -> !qlr.qtensor<1x4xf32, #qlr.format<int4>>
  %y = qlr.linear %x, %q : tensor<2x4xf32>, !qlr.qtensor<1x4xf32, #qlr.format<int4>> -> tensor<2x1xf32>
  return %y : tensor<2x1xf32>
}
