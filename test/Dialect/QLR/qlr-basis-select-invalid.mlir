// Impossible options are reported at the module (or at the linear they do
// not fit) with the pass name, the pass fails and nothing is written.
// RUN: not quant-opt %s --qlr-basis-select="score=svd data=generate" 2>&1 | FileCheck %s --check-prefix=SCORE
// RUN: not quant-opt %s --qlr-basis-select="refit=gd data=generate" 2>&1 | FileCheck %s --check-prefix=REFIT
// RUN: not quant-opt %s --qlr-basis-select="score=magnitude refit=none ratio=0" 2>&1 | FileCheck %s --check-prefix=RATIO0
// RUN: not quant-opt %s --qlr-basis-select="score=magnitude refit=none ratio=1.5" 2>&1 | FileCheck %s --check-prefix=RATIO15
// RUN: not quant-opt %s --qlr-basis-select="score=magnitude refit=none min-rank=0" 2>&1 | FileCheck %s --check-prefix=MINRANK
// RUN: not quant-opt %s --qlr-basis-select="score=magnitude refit=none rank=-2" 2>&1 | FileCheck %s --check-prefix=RANKNEG
// RUN: not quant-opt %s --qlr-basis-select="score=magnitude refit=none rank=33" 2>&1 | FileCheck %s --check-prefix=RANKBIG
// RUN: not quant-opt %s --qlr-basis-select 2>&1 | FileCheck %s --check-prefix=NODATA
// RUN: not quant-opt %s --qlr-basis-select="refit=none" 2>&1 | FileCheck %s --check-prefix=NODATA-ENERGY
// RUN: not quant-opt %s --qlr-basis-select="score=magnitude" 2>&1 | FileCheck %s --check-prefix=NODATA-LSQ
// RUN: not quant-opt %s --qlr-basis-select="data=generate" 2>&1 | FileCheck %s --check-prefix=NOMODEL
// RUN: not quant-opt %s --qlr-basis-select="score=magnitude refit=none include=[" 2>&1 | FileCheck %s --check-prefix=GLOB
// RUN: not quant-opt %s --qlr-basis-select="score=magnitude refit=none rank=33" -o %t.out 2>&1
// RUN: not test -e %t.out

// SCORE: error: qlr-basis-select: unknown score 'svd' (expected energy or magnitude)
// REFIT: error: qlr-basis-select: unknown refit 'gd' (expected lsq or none)
// RATIO0: error: qlr-basis-select: ratio=0 must be in (0, 1]
// RATIO15: error: qlr-basis-select: ratio=1.5 must be in (0, 1]
// MINRANK: error: qlr-basis-select: min-rank=0 must be >= 1
// RANKNEG: error: qlr-basis-select: rank=-2 must be >= 0 (0: allocate ranks by ratio)
// RANKBIG: :[[@LINE+11]]:8: error: qlr-basis-select: rank=33 exceeds min(32, 64) = 32 of the weight 'linear0'
// RANKBIG-NOT: see current operation
// NODATA: error: qlr-basis-select: score=energy and refit=lsq need target data: data=FILE (a text file) or data=generate (text sampled from the model); score=magnitude refit=none needs none
// NODATA-ENERGY: error: qlr-basis-select: score=energy needs target data
// NODATA-LSQ: error: qlr-basis-select: refit=lsq needs target data
// NOMODEL: error: qlr-basis-select: data=generate feeds token ids to the first argument of @f, which must then be tensor<?xi32>; give the arguments as a .npz file instead
// NOMODEL-NOT: error
// GLOB: error: qlr-basis-select: invalid name pattern '['

func.func @f(%x: tensor<2x64xf32>) -> tensor<2x32xf32> {
  %w = arith.constant dense<0.5> : tensor<32x64xf32>
  %y = qlr.linear %x, %w : tensor<2x64xf32>, tensor<32x64xf32> -> tensor<2x32xf32>
  return %y : tensor<2x32xf32>
}
