#!/usr/bin/env bash
# Installs what is missing, builds QLR, and shows the main job end to end.
# For now: quant-opt verifies the example quantized model graph and
# round-trips it through text and bytecode.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
qlr_setup

opt=$QLR_BUILD_DIR/bin/quant-opt
out=$QLR_BUILD_DIR/demo
example=$QLR_ROOT/examples/tiny-llama-block.mlir
mkdir -p "$out"

qlr_log "quant-opt: the qlr passes"
# Each pass line, then its (more indented) option lines.
"$opt" --help | awk '/^      --qlr-/ { p = 1; print; next }
                     p && /^        +--/ { print; next } { p = 0 }'

qlr_log "verify and print $example (weights elided)"
"$opt" "$example" --mlir-elide-resource-strings-if-larger=32 | grep -E "qlr\.|#" | head -20

qlr_log "round trip: text -> bytecode -> text"
"$opt" "$example" -o "$out/block.mlir"
"$opt" "$example" -emit-bytecode -o "$out/block.mlirbc"
"$opt" "$out/block.mlirbc" -o "$out/block.from-bytecode.mlir"
if cmp -s "$out/block.mlir" "$out/block.from-bytecode.mlir"; then
  echo "  identical: $(wc -c <"$out/block.mlir") bytes of text, $(wc -c <"$out/block.mlirbc") bytes of bytecode"
else
  echo "  MISMATCH between $out/block.mlir and $out/block.from-bytecode.mlir" >&2
  exit 1
fi

qlr_log "op counts"
"$opt" "$out/block.mlirbc" --print-op-stats -o /dev/null 2>&1 | grep -E "qlr\.|Operations" | sed 's/^ */  /'
