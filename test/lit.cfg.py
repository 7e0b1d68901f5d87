# -*- Python -*-
# Lit configuration for the QLR test suite.

import os
import shutil

import lit.formats
from lit.llvm import llvm_config
from lit.llvm.subst import ToolSubst

config.name = "QLR"
config.test_format = lit.formats.ShTest(not llvm_config.use_lit_shell)
config.suffixes = [".mlir", ".test"]
config.excludes = ["CMakeLists.txt", "lit.cfg.py", "lit.site.cfg.py", "Inputs", "project"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.qlr_obj_root, "test")

config.substitutions.append(("%PATH%", config.environment["PATH"]))
config.substitutions.append(("%shlibext", config.llvm_shlib_ext))
config.substitutions.append(("%qlr_src_root", config.qlr_src_root))
config.substitutions.append(("%qlr_obj_root", config.qlr_obj_root))
config.substitutions.append(("%qlr_lib_dir", config.qlr_lib_dir))
config.substitutions.append(("%mlir_dir", config.mlir_dir))
config.substitutions.append(("%cmake", config.cmake_command))
config.substitutions.append(("%generator", config.cmake_generator))
config.substitutions.append(("%cxxcompiler", config.cxx_compiler))
config.substitutions.append(("%cc", config.c_compiler))
config.substitutions.append(
    ("%launcher", config.cxx_compiler_launcher or ""))

llvm_config.with_system_environment(["HOME", "INCLUDE", "LIB", "TMP", "TEMP",
                                     "CCACHE_DIR", "CCACHE_BASEDIR",
                                     "QLR_MAX_SIMD"])
llvm_config.use_default_substitutions()

# No progress lines from long-running passes (they depend on timing); the
# progress tests ask for them with --qlr-progress.
config.environment["QLR_PROGRESS"] = "never"

# FileCheck, not, count and split-file come from the LLVM installation; they
# are not targets of this build.
llvm_config.with_environment("PATH", config.llvm_tools_dir, append_path=True)

llvm_lib_dir = os.path.join(os.path.dirname(config.llvm_tools_dir), "lib")
config.substitutions.append(
    ("%mlir_runner_utils",
     os.path.join(llvm_lib_dir, "libmlir_runner_utils" + config.llvm_shlib_ext)))
config.substitutions.append(
    ("%mlir_c_runner_utils",
     os.path.join(llvm_lib_dir, "libmlir_c_runner_utils" + config.llvm_shlib_ext)))

libomp = os.path.join(llvm_lib_dir, "libomp" + config.llvm_shlib_ext)
if os.path.exists(libomp):
    config.available_features.add("openmp")
    config.substitutions.append(("%libomp", libomp))

# QLR_MAX_SIMD=portable|avx2|avx512 caps the instruction set of everything
# QLR runs (scripts/test.sh runs the execution tests once per level the host
# supports). qlr-run and quant-opt read it themselves; mlir-runner, which JITs
# the kernel tests for the host, is given the same cap as target attributes
# (clearing AVX clears every extension built on it: AVX2, FMA, F16C, AVX-512).
simd_level = os.environ.get("QLR_MAX_SIMD", "").strip().lower() or "native"
simd_mattr = {"portable": ["--mattr=-avx"],
              "avx2": ["--mattr=-avx512f"]}.get(simd_level, [])
config.available_features.add("simd-" + simd_level)
lit_config.note(f"QLR_MAX_SIMD: {simd_level}")

# The host's own level (host-simd-portable|avx2|avx512), from qlr-run.
import re
import subprocess
try:
    version = subprocess.run(
        [os.path.join(config.qlr_tools_dir, "qlr-run"), "--version"],
        capture_output=True, text=True, env={"QLR_MAX_SIMD": "native"}).stdout
    host = re.search(r"\(host (\w+)\)", version)
    if host:
        config.available_features.add("host-simd-" + host.group(1))
except OSError:
    pass

tools = [
    ToolSubst("quant-opt", unresolved="fatal"),
    ToolSubst("qlr-import", unresolved="fatal"),
    ToolSubst("qlr-run", unresolved="fatal"),
    ToolSubst("qlr-compile", unresolved="ignore"),
    ToolSubst("mlir-opt", command=os.path.join(config.llvm_tools_dir, "mlir-opt"),
              unresolved="ignore"),
    ToolSubst("mlir-runner",
              command=os.path.join(config.llvm_tools_dir, "mlir-runner"),
              extra_args=simd_mattr, unresolved="fatal"),
]
llvm_config.add_tool_substitutions(tools, [config.qlr_tools_dir])
if os.path.exists(os.path.join(config.qlr_tools_dir, "qlr-compile")):
    config.available_features.add("qlr-compile")

# The real stories260K model and its text, next to the checkout
# (../shared); tests that need them are UNSUPPORTED without them.
shared = os.path.join(os.path.dirname(config.qlr_src_root), "shared")
if os.path.exists(os.path.join(shared, "models", "stories260K.bin")):
    config.available_features.add("stories260k")
    config.substitutions.append(("%shared", shared))

# ptxas from the CUDA toolkit validates the PTX the GPU pipeline generates
# (no GPU needed); tests that need it are UNSUPPORTED without a toolkit.
ptxas = shutil.which("ptxas") or next(
    (p for p in ("/usr/local/cuda/bin/ptxas",) if os.path.exists(p)), None)
if ptxas:
    config.available_features.add("ptxas")
    config.substitutions.append(("%ptxas", ptxas))

# A portable-numerics build (-DQLR_NATIVE_NUMERICS=OFF) gives the same bytes
# on every x86-64 CPU; its digest tests run only there (scripts/test.sh builds
# one in build-portable/).
if not config.qlr_native_numerics:
    config.available_features.add("portable-numerics")

if config.qlr_build_plugin:
    config.available_features.add("plugin")
