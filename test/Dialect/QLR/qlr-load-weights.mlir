// qlr-load-weights replaces named weights by the float and quantized tensors
// of a safetensors file (Inputs/make-safetensors.py writes them: a norm
// weight `g` and a linear weight `w` in int2, group = 4), exactly; the
// execution checks that the loaded codes and scales decode as written.
// RUN: %python %S/Inputs/make-safetensors.py valid %t.valid.safetensors
// RUN: quant-opt %s --qlr-load-weights=file=%t.valid.safetensors --mlir-print-elementsattrs-with-hex-if-larger=100000 | FileCheck %s
// RUN: %python %S/Inputs/make-safetensors.py full-format %t.full.safetensors
// RUN: quant-opt %s --qlr-load-weights=file=%t.full.safetensors | FileCheck %s --check-prefix=PACKED
// RUN: quant-opt %s --qlr-load-weights=file=%t.valid.safetensors --qlr-cpu-pipeline | mlir-runner -e main -entry-point-result=void -shared-libs=%mlir_runner_utils,%mlir_c_runner_utils | FileCheck %s --check-prefix=EXEC

// CHECK-LABEL: func.func @forward
// CHECK-DAG: %[[G:.*]] = arith.constant dense_resource<g> : tensor<8xf32>
// CHECK-DAG: %[[C:.*]] = arith.constant dense_resource<w.codes> : tensor<4x2xi8>
// CHECK-DAG: %[[S:.*]] = arith.constant dense_resource<w.scales> : tensor<4x2xf32>
// CHECK:     %[[W:.*]] = qlr.pack %[[C]], %[[S]] : tensor<4x2xi8>, tensor<4x2xf32> -> !qlr.qtensor<4x8xf32, #int2_g4>
// CHECK:     qlr.rms_norm %{{.*}}, %[[G]]
// CHECK:     qlr.linear %{{.*}}, %[[W]] : tensor<2x8xf32>, !qlr.qtensor<4x8xf32, #int2_g4> -> tensor<2x4xf32>
// The norm weight: 1, 2, 0.5, -1, 3, 0.25, 1.5, -0.5; codes (n + k) % 4
// packed four to a byte; the scales as written.
// CHECK: g: "0x040000000000803F000000400000003F000080BF000040400000803E0000C03F000000BF"
// CHECK: w.codes: "0x01000000E4E439394E4E9393"
// CHECK: w.scales: "0x040000000000003F0000803F0000803E000000400000C03F0000403F000080400000003E"

// PACKED: qlr.pack {{.*}} -> !qlr.qtensor<4x8xf32, #int2_g4>

// y = rms_norm(x, g) · Wᵀ with w[n, k] = s[n, k / 4] · ((n + k) % 4 - 2).
// EXEC:      [-4.75,   -5.625,   -8.8125,   18.25],
// EXEC-NEXT: [-7.25,   -11.875,   5.0625,   -9.5]

// Each broken file is refused with an error naming the tensor, and nothing
// is written.
// RUN: %python %S/Inputs/make-safetensors.py truncated %t.truncated.safetensors
// RUN: not quant-opt %s --qlr-load-weights=file=%t.truncated.safetensors -o %t.out 2>&1 | FileCheck %s --check-prefix=TRUNCATED
// RUN: test ! -e %t.out
// TRUNCATED: error: qlr-load-weights: {{.*}}truncated.safetensors: tensor 'w.scales': truncated: its data ends at byte 96 of the data section, which has 91

// RUN: not quant-opt %s --qlr-load-weights=file=%t.missing.safetensors 2>&1 | FileCheck %s --check-prefix=MISSING
// MISSING: error: qlr-load-weights: {{.*}}missing.safetensors: No such file or directory

// RUN: not quant-opt %s --qlr-load-weights 2>&1 | FileCheck %s --check-prefix=NOFILE
// NOFILE: error: qlr-load-weights: the file option is required (file=weights.safetensors)

// RUN: %python %S/Inputs/make-safetensors.py unused %t.unused.safetensors
// RUN: not quant-opt %s --qlr-load-weights=file=%t.unused.safetensors 2>&1 | FileCheck %s --check-prefix=UNUSED
// RUN: quant-opt %s --qlr-load-weights="file=%t.unused.safetensors allow-unused=true" | FileCheck %s --check-prefix=PACKED
// UNUSED: error: qlr-load-weights: {{.*}}: tensor 'nope' matches no weight of the module (no dense_resource<nope>; allow-unused=true ignores it)

// RUN: %python %S/Inputs/make-safetensors.py shape %t.shape.safetensors
// RUN: not quant-opt %s --qlr-load-weights=file=%t.shape.safetensors 2>&1 | FileCheck %s --check-prefix=SHAPE
// SHAPE: error: qlr-load-weights: {{.*}}: tensor 'g' has shape [4, 2] but the weight is [8]

// RUN: %python %S/Inputs/make-safetensors.py dtype %t.dtype.safetensors
// RUN: not quant-opt %s --qlr-load-weights=file=%t.dtype.safetensors 2>&1 | FileCheck %s --check-prefix=DTYPE
// DTYPE: error: qlr-load-weights: {{.*}}: tensor 'g' has dtype U8; a float weight needs F32, F16 or BF16

// RUN: %python %S/Inputs/make-safetensors.py code-range %t.code-range.safetensors
// RUN: not quant-opt %s --qlr-load-weights=file=%t.code-range.safetensors 2>&1 | FileCheck %s --check-prefix=CODERANGE
// CODERANGE: error: qlr-load-weights: {{.*}}: 'w.codes' element 31 is 4, outside the 2-bit codes 0..3

// RUN: %python %S/Inputs/make-safetensors.py no-format %t.no-format.safetensors
// RUN: not quant-opt %s --qlr-load-weights=file=%t.no-format.safetensors 2>&1 | FileCheck %s --check-prefix=NOFORMAT
// NOFORMAT: error: qlr-load-weights: {{.*}}: quantized weight 'w' has no format: add "w": "<#qlr.format body>" to __metadata__

// RUN: %python %S/Inputs/make-safetensors.py bad-format %t.bad-format.safetensors
// RUN: not quant-opt %s --qlr-load-weights=file=%t.bad-format.safetensors 2>&1 | FileCheck %s --check-prefix=BADFORMAT
// BADFORMAT: error: qlr-load-weights: {{.*}}: the format of 'w' ("int9") is not a #qlr.format: storage bits must be between 2 and 8, got 9

// RUN: %python %S/Inputs/make-safetensors.py scales-shape %t.scales-shape.safetensors
// RUN: not quant-opt %s --qlr-load-weights=file=%t.scales-shape.safetensors 2>&1 | FileCheck %s --check-prefix=SCALESSHAPE
// SCALESSHAPE: error: qlr-load-weights: {{.*}}: 'w.scales' has shape [4, 1] but #qlr.format<int2, group = 4> needs [4, 2]

// RUN: %python %S/Inputs/make-safetensors.py zero-points %t.zero-points.safetensors
// RUN: not quant-opt %s --qlr-load-weights=file=%t.zero-points.safetensors 2>&1 | FileCheck %s --check-prefix=ZEROPOINTS
// ZEROPOINTS: error: qlr-load-weights: {{.*}}: format #qlr.format<int2, group = 4> is symmetric, but the file has 'w.zero_points'

// RUN: %python %S/Inputs/make-safetensors.py f16-scale %t.f16-scale.safetensors
// RUN: not quant-opt %s --qlr-load-weights=file=%t.f16-scale.safetensors 2>&1 | FileCheck %s --check-prefix=F16SCALE
// F16SCALE: error: qlr-load-weights: {{.*}}: 'w.scales' element 0 (0.100000) is not exactly representable in the format's scale type; write it rounded

// RUN: %python %S/Inputs/make-safetensors.py no-scales %t.no-scales.safetensors
// RUN: not quant-opt %s --qlr-load-weights=file=%t.no-scales.safetensors 2>&1 | FileCheck %s --check-prefix=NOSCALES
// NOSCALES: error: qlr-load-weights: {{.*}}: quantized weight 'w' needs both 'w.codes' and 'w.scales'

// RUN: %python %S/Inputs/make-safetensors.py twice %t.twice.safetensors
// RUN: not quant-opt %s --qlr-load-weights=file=%t.twice.safetensors 2>&1 | FileCheck %s --check-prefix=TWICE
// TWICE: error: qlr-load-weights: {{.*}}: weight 'w' is given twice: as the float tensor 'w' and as a quantized weight ('w.codes')

// RUN: %python %S/Inputs/make-safetensors.py not-linear %t.not-linear.safetensors
// RUN: not quant-opt %s --qlr-load-weights=file=%t.not-linear.safetensors 2>&1 | FileCheck %s --check-prefix=NOTLINEAR
// NOTLINEAR: error: qlr-load-weights: {{.*}}: weight 'e' cannot become quantized: it is used by 'linalg.add', which takes float tensors (only the weight of qlr.linear or qlr.conv2d can be quantized)
// NOTLINEAR: note: the user

func.func private @printMemrefF32(memref<*xf32>) attributes {llvm.emit_c_interface}

func.func @forward(%x: tensor<2x8xf32>) -> tensor<2x4xf32> {
  %g = arith.constant dense_resource<g> : tensor<8xf32>
  %w = arith.constant dense_resource<w> : tensor<4x8xf32>
  %n = qlr.rms_norm %x, %g eps = 0.0 : tensor<2x8xf32>, tensor<8xf32>
  %y = qlr.linear %n, %w : tensor<2x8xf32>, tensor<4x8xf32> -> tensor<2x4xf32>
  %e = arith.constant dense_resource<e> : tensor<8xf32>
  %z = tensor.empty() : tensor<8xf32>
  %s = linalg.add ins(%e, %e : tensor<8xf32>, tensor<8xf32>) outs(%z : tensor<8xf32>) -> tensor<8xf32>
  return %y : tensor<2x4xf32>
}

func.func @main() {
  %x = arith.constant dense<[[1.0, -1.0, 1.0, -1.0, 1.0, -1.0, 1.0, -1.0],
                             [2.0, 2.0, -2.0, -2.0, 2.0, 2.0, -2.0, -2.0]]> : tensor<2x8xf32>
  %y = call @forward(%x) : (tensor<2x8xf32>) -> tensor<2x4xf32>
  %m = bufferization.to_buffer %y : tensor<2x4xf32> to memref<2x4xf32>
  %u = memref.cast %m : memref<2x4xf32> to memref<*xf32>
  call @printMemrefF32(%u) : (memref<*xf32>) -> ()
  return
}

{-#
  dialect_resources: {
    builtin: {
      e: "0x040000000000000000000000000000000000000000000000000000000000000000000000",
      g: "0x040000000000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F",
      w: "0x0400000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    }
  }
#-}
