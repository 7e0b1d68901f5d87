// RUN: not quant-opt %s --qlr-lower-contractions="rows=0" 2>&1 | FileCheck %s --check-prefix=ROWS
// RUN: not quant-opt %s --qlr-lower-contractions="vector-width=-4" 2>&1 | FileCheck %s --check-prefix=WIDTH
// RUN: not quant-opt %s --qlr-lower-contractions="cols=two" 2>&1 | FileCheck %s --check-prefix=PARSE
// ROWS: error: qlr-lower-contractions: vector-width, rows and cols must be positive
// WIDTH: error: qlr-lower-contractions: vector-width, rows and cols must be positive
// PARSE: for the --cols option: 'two' value invalid for long argument
func.func @f() {
  return
}
