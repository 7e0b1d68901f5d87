#!/usr/bin/env bash
# Shared setup for scripts/demo.sh and scripts/test.sh (sourced, not run):
#   1. installs the Debian packages QLR needs when any is missing,
#   2. creates the Python virtual environment .venv (numpy, pytest),
#   3. configures and builds QLR into build/ (ccache, shared libMLIR).
# Environment knobs: QLR_BUILD_DIR (default build), QLR_BUILD_TYPE (Release),
# QLR_ASSERTIONS (ON), QLR_JOBS (all cores), QLR_PORTABLE_BUILD_DIR
# (build-portable, the second configuration scripts/test.sh checks).

QLR_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
QLR_BUILD_DIR=${QLR_BUILD_DIR:-$QLR_ROOT/build}
QLR_LLVM=/usr/lib/llvm-22
QLR_VENV=$QLR_ROOT/.venv
export PATH=$QLR_LLVM/bin:$PATH

qlr_log() { printf '\033[1m== %s\033[0m\n' "$*" >&2; }

qlr_install_packages() {
  local packages=(cmake ninja-build ccache g++ libgtest-dev python3-venv python3-dev clang-format
                  libmlir-22-dev mlir-22-tools llvm-22-dev llvm-22-tools
                  libomp-22-dev libeigen3-dev liblapacke-dev)
  local missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
      missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  qlr_log "installing Debian packages: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

qlr_setup_venv() {
  local requirements=$QLR_ROOT/python/requirements.txt
  local stamp=$QLR_VENV/.requirements
  if ! [ -x "$QLR_VENV/bin/python" ] || ! cmp -s "$requirements" "$stamp"; then
    qlr_log "creating the Python environment $QLR_VENV"
    python3 -m venv "$QLR_VENV"
    "$QLR_VENV/bin/python" -m pip install -q --upgrade pip
    "$QLR_VENV/bin/python" -m pip install -q -r "$requirements"
    cp "$requirements" "$stamp"
  fi
  # torch pulls in Triton (GPU kernels for torch.compile, unused by qlr.qat
  # on the CPU). Its libtriton carries its own LLVM, which crashes when it is
  # loaded into a process that already has LLVM 22 (qlr.compiler); torch
  # runs without it.
  if compgen -G "$QLR_VENV/lib/python3*/site-packages/triton" >/dev/null; then
    "$QLR_VENV/bin/python" -m pip uninstall -q -y triton
  fi
}

# qlr_configure DIR [CMAKE_ARGS...]: configures a build directory once (the
# common options, ccache when installed, then CMAKE_ARGS).
qlr_configure() {
  local dir=$1
  shift
  [ -f "$dir/build.ninja" ] && return 0
  local launcher=()
  command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  qlr_log "configuring $dir"
  cmake -G Ninja -S "$QLR_ROOT" -B "$dir" \
    -DCMAKE_BUILD_TYPE="${QLR_BUILD_TYPE:-Release}" \
    -DMLIR_DIR=$QLR_LLVM/lib/cmake/mlir \
    -DLLVM_EXTERNAL_LIT=$QLR_LLVM/bin/lit \
    -DPython_EXECUTABLE="$QLR_VENV/bin/python" \
    -DQLR_ENABLE_ASSERTIONS="${QLR_ASSERTIONS:-ON}" \
    "${launcher[@]}" "$@" >/dev/null
}

qlr_build() {
  qlr_configure "$QLR_BUILD_DIR" || return 1
  qlr_log "building"
  cmake --build "$QLR_BUILD_DIR" -- ${QLR_JOBS:+-j "$QLR_JOBS"}
}

# The portable-numerics configuration (QLR_NATIVE_NUMERICS=OFF: lib/Numerics
# for the baseline target, run-time dispatch at the portable level), tools
# only, in QLR_PORTABLE_BUILD_DIR (default build-portable).
QLR_PORTABLE_BUILD_DIR=${QLR_PORTABLE_BUILD_DIR:-$QLR_ROOT/build-portable}
qlr_build_portable() {
  qlr_configure "$QLR_PORTABLE_BUILD_DIR" -DQLR_NATIVE_NUMERICS=OFF \
    -DQLR_BUILD_PLUGIN=OFF -DQLR_ENABLE_PYTHON_BINDINGS=OFF || return 1
  qlr_log "building quant-opt, qlr-import and qlr-run in $QLR_PORTABLE_BUILD_DIR"
  cmake --build "$QLR_PORTABLE_BUILD_DIR" --target quant-opt qlr-import qlr-run \
    -- ${QLR_JOBS:+-j "$QLR_JOBS"}
}

qlr_setup() {
  qlr_install_packages
  qlr_setup_venv
  qlr_build
}
