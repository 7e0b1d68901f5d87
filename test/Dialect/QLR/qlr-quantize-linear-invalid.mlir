// Impossible options are reported at the module with the pass name, and the
// pass fails (non-zero exit).
// RUN: not quant-opt %s --qlr-quantize-linear="bits=1" 2>&1 | FileCheck %s --check-prefix=BITS1
// RUN: not quant-opt %s --qlr-quantize-linear="bits=9" 2>&1 | FileCheck %s --check-prefix=BITS9
// RUN: not quant-opt %s --qlr-quantize-linear="group-size=-32" 2>&1 | FileCheck %s --check-prefix=GROUP
// RUN: not quant-opt %s --qlr-quantize-linear="format=nf4 bits=3" 2>&1 | FileCheck %s --check-prefix=NF4BITS
// RUN: not quant-opt %s --qlr-quantize-linear="format=nf2 symmetric=false" 2>&1 | FileCheck %s --check-prefix=NFASYM
// RUN: not quant-opt %s --qlr-quantize-linear="format=fp4" 2>&1 | FileCheck %s --check-prefix=FORMAT
// RUN: not quant-opt %s --qlr-quantize-linear="format=lut bits=2 table=1.0,2.0" 2>&1 | FileCheck %s --check-prefix=TABLE
// RUN: not quant-opt %s --qlr-quantize-linear="table=1.0,2.0" 2>&1 | FileCheck %s --check-prefix=TABLEUNI
// RUN: not quant-opt %s --qlr-quantize-linear="scale-type=f8" 2>&1 | FileCheck %s --check-prefix=SCALE
// RUN: not quant-opt %s --qlr-quantize-linear="method=awq" 2>&1 | FileCheck %s --check-prefix=METHOD
// RUN: not quant-opt %s --qlr-quantize-linear="method=gptq block-size=0" 2>&1 | FileCheck %s --check-prefix=BLOCK
// RUN: not quant-opt %s --qlr-quantize-linear="method=gptq refit-scales=-1" 2>&1 | FileCheck %s --check-prefix=BLOCK
// RUN: not quant-opt %s --qlr-quantize-linear="refit-scales=1" 2>&1 | FileCheck %s --check-prefix=RTNREFIT
// RUN: not quant-opt %s --qlr-quantize-linear="float-target=true" 2>&1 | FileCheck %s --check-prefix=RTNREFIT
// RUN: not quant-opt %s --qlr-quantize-linear="method=gptq" 2>&1 | FileCheck %s --check-prefix=GPTQ
// RUN: not quant-opt %s --qlr-quantize-linear="method=gptq data=%S/Inputs/calibration.txt" 2>&1 | FileCheck %s --check-prefix=TOKENS
// RUN: not quant-opt %s --qlr-quantize-linear="method=gptq data=%S/Inputs/calibration.txt entry=g" 2>&1 | FileCheck %s --check-prefix=ENTRY
// RUN: not quant-opt %s --qlr-quantize-linear="include=[" 2>&1 | FileCheck %s --check-prefix=GLOB
// RUN: not quant-opt %s --qlr-quantize-linear="zero-point=fractional" 2>&1 | FileCheck %s --check-prefix=ZPSYM
// RUN: not quant-opt %s --qlr-quantize-linear="symmetric=false zero-point=float" 2>&1 | FileCheck %s --check-prefix=ZPKIND

// BITS1: error: qlr-quantize-linear: bits=1 is out of range (2..8)
// BITS9: error: qlr-quantize-linear: bits=9 is out of range (2..8)
// GROUP: error: qlr-quantize-linear: group-size=-32 must be positive, or 0 for one scale per output channel
// NF4BITS: error: qlr-quantize-linear: format=nf4 stores 4-bit codes; bits=3 contradicts it
// NFASYM: error: qlr-quantize-linear: format=nf2 is a codebook with absmax scaling; symmetric=false needs format=uniform
// FORMAT: error: qlr-quantize-linear: unknown format 'fp4' (expected uniform, nf4, nf2 or lut)
// TABLE: error: qlr-quantize-linear: format=lut needs table= with exactly 4 values for bits=2, got 2
// TABLEUNI: error: qlr-quantize-linear: table= is only meaningful with format=lut
// SCALE: error: qlr-quantize-linear: unknown scale-type 'f8' (expected f16, bf16 or f32)
// METHOD: error: qlr-quantize-linear: unknown method 'awq' (expected rtn or gptq)
// BLOCK: error: qlr-quantize-linear: damp and refit-scales must be >= 0 and block-size >= 1
// RTNREFIT: error: qlr-quantize-linear: refit-scales and float-target need method=gptq
// GPTQ: error: qlr-quantize-linear: needs calibration data: data=FILE (a text file, or a .npz or .npy file of arguments for @f) or data=generate
// TOKENS: error: qlr-quantize-linear: data={{.*}}calibration.txt feeds token ids to the first argument of @f, which must then be tensor<?xi32>; give the arguments as a .npz file instead
// ENTRY: error: qlr-quantize-linear: entry=g: the module has no function @g with a body
// GLOB: error: qlr-quantize-linear: invalid name pattern '['
// ZPSYM: error: qlr-quantize-linear: zero-point=fractional needs symmetric=false (symmetric grids have no stored zero point)
// ZPKIND: error: qlr-quantize-linear: unknown zero-point 'float' (expected integer or fractional)

func.func @f(%x: tensor<2x64xf32>) -> tensor<2x32xf32> {
  %w = arith.constant dense<0.5> : tensor<32x64xf32>
  %y = qlr.linear %x, %w : tensor<2x64xf32>, tensor<32x64xf32> -> tensor<2x32xf32>
  return %y : tensor<2x32xf32>
}
