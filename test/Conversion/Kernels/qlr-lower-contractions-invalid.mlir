// RUN: not quant-opt %s --qlr-lower-contractions="rows=0" 2>&1 | FileCheck %s --check-prefix=ROWS
// RUN: not quant-opt %s --qlr-lower-contractions="vector-width=-4" 2>&1 | FileCheck %s --check-prefix=WIDTH
// RUN: not quant-opt %s --qlr-lower-contractions="cols=two" 2>&1 | FileCheck %s --check-prefix=PARSE
// RUN: not quant-opt %s --qlr-lower-contractions="panel-vectors=0" 2>&1 | FileCheck %s --check-prefix=ROWS
// RUN: not quant-opt %s --qlr-lower-contractions="packed-min-tokens=-1" 2>&1 | FileCheck %s --check-prefix=ROWS
// ROWS: error: qlr-lower-contractions: vector-width, rows, cols, panel-rows and panel-vectors must be positive and packed-min-tokens not negative
// WIDTH: error: qlr-lower-contractions: vector-width, rows, cols, panel-rows and panel-vectors must be positive and packed-min-tokens not negative
// PARSE: for the --cols option: 'two' value invalid for long argument
func.func @f() {
  return
}
