// RUN: not quant-opt %s --qlr-outline-layers="min-ops=0" 2>&1 | FileCheck %s --check-prefix=ZERO
// RUN: not quant-opt %s --qlr-outline-layers="min-ops=few" 2>&1 | FileCheck %s --check-prefix=PARSE
// ZERO: error: qlr-outline-layers: min-ops must be at least 1, got 0
// PARSE: for the --min-ops option: 'few' value invalid
func.func @f() {
  return
}
