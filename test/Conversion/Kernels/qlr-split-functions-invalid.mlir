// RUN: not quant-opt %s --qlr-split-functions="ops-per-function=0" 2>&1 | FileCheck %s --check-prefix=ZERO
// RUN: not quant-opt %s --qlr-split-functions="ops-per-function=many" 2>&1 | FileCheck %s --check-prefix=PARSE
// ZERO: error: qlr-split-functions: ops-per-function must be at least 1, got 0
// PARSE: for the --ops-per-function option: 'many' value invalid
func.func @f() {
  return
}
