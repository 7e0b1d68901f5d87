#!/usr/bin/env bash
# Builds gpu-bundle/ (git-ignored): everything scripts/gpu-check.sh needs on
# a GPU machine that has Python, PyTorch, CuPy and the CUDA driver but no
# LLVM/MLIR and no build tools. docs/gpu.md describes the bundle and the run.
#
#   scripts/gpu-prepare.sh [--skip-7b] [--keep-work]
#
#   --skip-7b    leave out the 32-layer 7B-shaped W4 library (its host code
#                takes qlr-compile 5-8 minutes on a 2-core machine)
#   --keep-work  keep the modules and sidecar weights in build/gpu-prepare
#
# Needs build/ with quant-opt, qlr-import, qlr-compile, qlr-run and
# lib/libQLRCudaRuntime.a (ninja -C build quant-opt qlr-import qlr-compile
# qlr-run QLRCudaRuntime), the CUDA toolkit (ptxas and libdevice, for the
# cubins; $CUDA_HOME or /usr/local/cuda), LLVM 22's mlir-translate and llc,
# and ../shared/models/{stories260K.bin,tok512.bin} and
# ../shared/data/tinystories-dev.txt. Temporary files (modules, sidecar
# weights: ~10 GB at the peak) go to build/gpu-prepare. It ends with the
# dry runs of the GPU steps and fails if the bundle exceeds 60 MiB.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BUILD=${QLR_BUILD_DIR:-$ROOT/build}
BIN=$BUILD/bin
SHARED=${QLR_SHARED:-$ROOT/../shared}
BUNDLE=$ROOT/gpu-bundle
WORK=$BUILD/gpu-prepare
PY=${PYTHON:-$ROOT/.venv/bin/python}
[ -x "$PY" ] || PY=python3
CHIP=sm_90
CTX=256            # perplexity window (tokens)
WINDOWS=4          # perplexity windows
NTOK=32            # greedy tokens
PROMPT="Once upon a time"
SLICE_BYTES=8192   # the text slice: the first 8 KiB of tinystories-dev.txt
LIMIT_MIB=60

skip7b=0
keep=0
for arg in "$@"; do
  case $arg in
    --skip-7b) skip7b=1 ;;
    --keep-work) keep=1 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "gpu-prepare.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done

log() { printf '== [%3ds] %s\n' "$SECONDS" "$*"; }
die() { echo "gpu-prepare.sh: $*" >&2; exit 1; }

for tool in quant-opt qlr-import qlr-compile qlr-run; do
  [ -x "$BIN/$tool" ] || die "$BIN/$tool is not built (ninja -C build $tool)"
done
[ -f "$BUILD/lib/libQLRCudaRuntime.a" ] ||
  die "$BUILD/lib/libQLRCudaRuntime.a is not built (ninja -C build QLRCudaRuntime)"
for f in models/stories260K.bin models/tok512.bin data/tinystories-dev.txt; do
  [ -f "$SHARED/$f" ] || die "$SHARED/$f is missing"
done

rm -rf "$BUNDLE" "$WORK"
mkdir -p "$BUNDLE"/{models,kernels,e2e,data} "$WORK"/{refs,modules,e2e}
head -c "$SLICE_BYTES" "$SHARED/data/tinystories-dev.txt" >"$BUNDLE/data/ppl-slice.txt"

# A model library must export the C interface (a library linked while the
# runtime archive was being rebuilt does not).
check_library() {
  nm -D --defined-only "$1" | grep -qw qlr_model_open ||
    die "$1 does not export qlr_model_open: rebuild qlr-compile's runtime archives"
}

# A JSON object from KEY VALUE pairs (values that parse as JSON stay typed).
spec() {
  "$PY" -c 'import json, sys
def value(v):
    try:
        return json.loads(v)
    except ValueError:
        return v
a = sys.argv[1:]
print(json.dumps({a[i]: value(a[i + 1]) for i in range(0, len(a), 2)}))' "$@"
}

# model NAME MODEL WEIGHTS HOW: references of $WORK/modules/NAME.mlirbc with
# qlr-run (the CPU JIT), then its CUDA libraries (cubin and PTX).
model() {
  local name=$1 m=$WORK/modules/$1.mlirbc
  log "$name: CPU references (qlr-run)"
  "$BIN/qlr-run" "$m" --perplexity "$BUNDLE/data/ppl-slice.txt" --ctx "$CTX" \
    --max-windows "$WINDOWS" --json --quiet >"$WORK/refs/$name.ppl.json"
  "$BIN/qlr-run" "$m" --prompt "$PROMPT" -n "$NTOK" --temperature 0 --json \
    --quiet >"$WORK/refs/$name.gen.json"
  for binary in cubin ptx; do
    log "$name: qlr-compile --target cuda --chip $CHIP --gpu-binary $binary"
    "$BIN/qlr-compile" "$m" --target cuda --chip "$CHIP" --gpu-binary "$binary" \
      --cpu x86-64 -o "$BUNDLE/models/$name.$binary.so"
    check_library "$BUNDLE/models/$name.$binary.so"
  done
  spec name "$name" model "$2" weights "$3" how "$4" module "$name.mlirbc" \
    binaries '["cubin", "ptx"]' >"$WORK/refs/$name.spec.json"
}

log "synthetic model (qlr-import --synthetic): f32 and W4 g16"
"$BIN/qlr-import" --synthetic -o "$WORK/modules/synthetic-f32.mlirbc"
"$BIN/quant-opt" "$WORK/modules/synthetic-f32.mlirbc" -emit-bytecode \
  --qlr-quantize-linear="bits=4 group-size=16" -o "$WORK/modules/synthetic-w4g16.mlirbc"
model synthetic-f32 synthetic f32 "qlr-import --synthetic"
model synthetic-w4g16 synthetic int4_g16_f16 \
  'quant-opt --qlr-quantize-linear="bits=4 group-size=16" (RTN)'

log "stories260K: f32, W4 g32 and W3 g32 (RTN)"
"$BIN/qlr-import" "$SHARED/models/stories260K.bin" --tokenizer "$SHARED/models/tok512.bin" \
  -o "$WORK/modules/stories260k-f32.mlirbc"
for bits in 4 3; do
  "$BIN/quant-opt" "$WORK/modules/stories260k-f32.mlirbc" -emit-bytecode \
    --qlr-quantize-linear="bits=$bits group-size=32" \
    -o "$WORK/modules/stories260k-w${bits}g32.mlirbc"
done
model stories260k-f32 stories260K f32 \
  "qlr-import stories260K.bin --tokenizer tok512.bin"
model stories260k-w4g32 stories260K int4_g32_f16 \
  'quant-opt --qlr-quantize-linear="bits=4 group-size=32" (RTN)'
model stories260k-w3g32 stories260K int3_g32_f16 \
  'quant-opt --qlr-quantize-linear="bits=3 group-size=32" (RTN)'

log "kernel benchmark: CUDA library (every case) and its CPU twin (small shapes)"
"$PY" benchmarks/gpu/kernel_cases.py build --target cuda --chip "$CHIP" \
  --out "$BUNDLE/kernels" --work "$WORK/kernels-obj"
"$PY" benchmarks/gpu/kernel_cases.py build --target cpu --small \
  --out "$WORK/kernels-cpu" --work "$WORK/kernels-cpu-obj"

# e2e NAME LAYERS QUANTIZE: a llama2-7b-shaped library; its sidecar weights
# stay here (the GPU run fills device weights: QLR_WEIGHTS_FILL).
e2e() {
  local name=$1 layers=$2 quantize=$3
  local args=(--synthetic --synthetic-config=llama2-7b --max-seq-len 256)
  [ "$layers" = 32 ] || args+=(--synthetic-layers="$layers")
  [ -z "$quantize" ] || args+=(--synthetic-quantize="$quantize")
  log "$name: qlr-import ${args[*]}"
  "$BIN/qlr-import" "${args[@]}" -o "$WORK/e2e/$name.mlirbc"
  log "$name: qlr-compile --target cuda --weights-file $name.weights"
  "$BIN/qlr-compile" "$WORK/e2e/$name.mlirbc" --target cuda --chip "$CHIP" \
    --gpu-binary cubin --cpu x86-64 --weights-file "$name.weights" \
    -o "$WORK/e2e/$name.so"
  check_library "$WORK/e2e/$name.so"
  cp "$WORK/e2e/$name.so" "$BUNDLE/e2e/$name.so"
  spec name "$name" config llama2-7b layers "$layers" \
    weights "${quantize:-f32}" weights_file "$name.weights" \
    weights_file_bytes "$(stat -c %s "$WORK/e2e/$name.weights")" \
    how "qlr-import ${args[*]}; qlr-compile --target cuda --gpu-binary cubin --weights-file $name.weights" \
    >"$WORK/e2e/$name.spec.json"
  [ "$keep" = 1 ] || rm -f "$WORK/e2e/$name.mlirbc" "$WORK/e2e/$name.weights"
}

W4=int4,group=128,scale=f16
e2e llama2-7b-4l-w4g128 4 "$W4"
e2e llama2-7b-4l-f32 4 ""
if [ "$skip7b" = 0 ]; then
  e2e llama2-7b-w4g128 32 "$W4"
else
  log "llama2-7b-w4g128 (32 layers): skipped (--skip-7b)"
fi

log "manifest"
"$PY" benchmarks/gpu/prepare_manifest.py --work "$WORK" --bundle "$BUNDLE" \
  --ctx "$CTX" --max-windows "$WINDOWS" --tokens "$NTOK" --prompt "$PROMPT" \
  --chip "$CHIP"

log "dry runs of the GPU steps (no GPU here)"
dry=$WORK/dry-run.json
rm -f "$dry"
"$PY" benchmarks/gpu/check_models.py --dry-run --bundle "$BUNDLE" --report "$dry"
"$PY" benchmarks/gpu/bench_kernels.py --dry-run --kernels "$BUNDLE/kernels" \
  --cpu-kernels "$WORK/kernels-cpu" --report "$dry"
"$PY" benchmarks/gpu/bench_e2e.py --dry-run --bundle "$BUNDLE" --report "$dry"
bash -n scripts/gpu-check.sh

[ "$keep" = 1 ] || rm -rf "$WORK/modules" "$WORK/kernels-obj" "$WORK/kernels-cpu-obj"
bytes=$(du -sb "$BUNDLE" | cut -f1)
log "gpu-bundle: $((bytes / 1024)) KiB ($(find "$BUNDLE" -type f | wc -l) files); dry runs in $dry"
[ "$bytes" -le $((LIMIT_MIB * 1024 * 1024)) ] ||
  die "gpu-bundle is $((bytes / 1048576)) MiB, over the $LIMIT_MIB MiB limit"
