#!/usr/bin/env bash
# The GPU check: runs ON the GPU machine, from the repository root, with the
# bundle that scripts/gpu-prepare.sh built here carried along (docs/gpu.md):
#
#   run(command="bash scripts/gpu-check.sh", carry=["gpu-bundle"], timeout_s=540)
#
# Steps, each under `timeout` and each updating $OUT/gpu-check.json as it
# goes (partial results survive a step that is killed):
#   device   nvidia-smi, driver, PyTorch's view of the GPU, the bundle's commit
#   models   the CUDA model libraries (cubin and PTX) vs the bundled CPU
#            references: perplexity and greedy tokens (check_models.py)
#   kernels  QLR's quantized linear kernels vs PyTorch fp16 (bench_kernels.py)
#   e2e      7B-shaped decode tokens/s: QLR W4 g128 and f32 (weights filled
#            with QLR_WEIGHTS_FILL, bench_e2e.py), then PyTorch fp16
#            (bench_torch_decode.py)
# Files in $OUT: gpu-check.json, gpu-check.log, nvidia-smi.txt.
#
# Environment: STEPS (default "device,models,kernels,e2e"), TOTAL_LIMIT
# (seconds for everything, default 450), BUNDLE (default gpu-bundle), PY
# (default python3), OUT (default /tmp/gpu-check).
set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
OUT=${OUT:-/tmp/gpu-check}
BUNDLE=${BUNDLE:-gpu-bundle}
PY=${PY:-python3}
STEPS=${STEPS:-device,models,kernels,e2e}
TOTAL_LIMIT=${TOTAL_LIMIT:-450}
REPORT=$OUT/gpu-check.json
LOG=$OUT/gpu-check.log
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
exec 3>&1 4>&2 > >(tee -a "$LOG") 2>&1
tee_pid=$!
# finish STATUS: lets tee write the last lines before the script exits.
finish() {
  exec 1>&3 2>&4 3>&- 4>&-
  wait "$tee_pid" 2>/dev/null
  exit "$1"
}

echo "gpu-check: $(date -u +%FT%TZ) on $(hostname), steps $STEPS, limit ${TOTAL_LIMIT}s"
if [ ! -f "$BUNDLE/manifest.json" ]; then
  echo "gpu-check: $BUNDLE/manifest.json is missing: run scripts/gpu-prepare.sh and carry gpu-bundle"
  "$PY" benchmarks/gpu/gpucheck.py --report "$REPORT" step bundle 1 0 0
  finish 1
fi

status=0
# step NAME LIMIT COMMAND...: runs COMMAND under `timeout`, shortened to what
# is left of TOTAL_LIMIT; skipped when under 20 s is left. The command sees
# its limit in $LIMIT (for its own --budget, set a little under it).
step() {
  local name=$1 limit=$2 left start rc
  shift 2
  case ",$STEPS," in *",$name,"* | *",${name%%-*},"*) ;; *) return 0 ;; esac
  left=$((TOTAL_LIMIT - SECONDS))
  if [ "$left" -lt 20 ]; then
    echo "== $name: skipped, ${left}s left of ${TOTAL_LIMIT}s"
    "$PY" benchmarks/gpu/gpucheck.py --report "$REPORT" step "$name" 125 0 0
    status=1
    return 0
  fi
  [ "$limit" -le "$left" ] || limit=$left
  echo "== $name (limit ${limit}s, ${SECONDS}s elapsed)"
  start=$SECONDS
  LIMIT=$limit timeout -k 5 "$limit" "$@"
  rc=$?
  [ "$rc" = 0 ] || status=1
  echo "== $name: rc $rc in $((SECONDS - start))s"
  "$PY" benchmarks/gpu/gpucheck.py --report "$REPORT" step "$name" "$rc" \
    "$((SECONDS - start))" "$limit"
}

step device 40 bash -c '
  timeout 20 nvidia-smi >"$1/nvidia-smi.txt" 2>&1
  timeout 20 nvidia-smi --format=csv --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,clocks.mem,clocks.max.mem,temperature.gpu,power.draw,pstate >>"$1/nvidia-smi.txt" 2>&1
  timeout 20 nvidia-smi --format=csv,noheader --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem >"$1/smi-query.txt" 2>&1
  "$0" benchmarks/gpu/gpucheck.py --report "$2" device --bundle "$3" --smi "$1/smi-query.txt"
  rc=$?
  rm -f "$1/smi-query.txt"
  exit $rc' "$PY" "$OUT" "$REPORT" "$BUNDLE"
step models 75 bash -c '"$0" benchmarks/gpu/check_models.py --bundle "$1" --report "$2" --budget $((LIMIT - 10))' \
  "$PY" "$BUNDLE" "$REPORT"
step kernels 150 bash -c '"$0" benchmarks/gpu/bench_kernels.py --kernels "$1/kernels" --report "$2" --budget $((LIMIT - 25))' \
  "$PY" "$BUNDLE" "$REPORT"
step e2e-qlr 90 bash -c '"$0" benchmarks/gpu/bench_e2e.py --bundle "$1" --report "$2" --budget $((LIMIT - 10))' \
  "$PY" "$BUNDLE" "$REPORT"
step e2e-torch 45 "$PY" benchmarks/gpu/bench_torch_decode.py --config llama2-7b \
  --report "$REPORT" --key e2e_torch_llama2_7b
step e2e-torch-4l 30 "$PY" benchmarks/gpu/bench_torch_decode.py --config llama2-7b \
  --layers 4 --report "$REPORT" --key e2e_torch_llama2_7b_4l
step e2e-torch-llama3 45 "$PY" benchmarks/gpu/bench_torch_decode.py --config llama3-8b \
  --report "$REPORT" --key e2e_torch_llama3_8b

echo "== summary (${SECONDS}s)"
timeout 20 "$PY" benchmarks/gpu/gpucheck.py --report "$REPORT" summary
finish $status
