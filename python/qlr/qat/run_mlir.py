"""Run an exported model through QLR's CPU code with quant-opt + mlir-runner
(until the Python JIT bindings exist): the inputs are embedded as a constant
and the logits printed with printMemrefF32."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import tempfile
from typing import Optional, Sequence

import numpy as np

from .export import _hex, _ttype

__all__ = ["run_with_mlir_runner", "find_tools"]

ROOT = pathlib.Path(__file__).resolve().parents[3]


def find_tools(build: Optional[str] = None):
    """(quant-opt, mlir-runner, [shared libs]) or None when something is missing."""
    build = pathlib.Path(build or os.environ.get("QLR_BUILD_DIR", ROOT / "build"))
    quant_opt = build / "bin" / "quant-opt"
    llvm = pathlib.Path(os.environ.get("QLR_LLVM_BIN", "/usr/lib/llvm-22/bin"))
    runner = llvm / "mlir-runner"
    libs = [llvm.parent / "lib" / n for n in ("libmlir_runner_utils.so",
                                              "libmlir_c_runner_utils.so")]
    if not (quant_opt.exists() and runner.exists() and all(p.exists() for p in libs)):
        return None
    return str(quant_opt), str(runner), [str(p) for p in libs]


def run_with_mlir_runner(module_text: str, inputs: np.ndarray, out_dims: Sequence[int],
                         passes: Sequence[str] = ("--qlr-fold-batchnorm", "--qlr-cpu-pipeline"),
                         func_name: str = "forward", build: Optional[str] = None,
                         keep: Optional[str] = None) -> np.ndarray:
    """Logits of ``func_name`` (dynamic batch) on ``inputs`` (f32 NCHW),
    compiled by ``quant-opt <passes>`` and run by mlir-runner."""
    tools = find_tools(build)
    if tools is None:
        raise FileNotFoundError("quant-opt or mlir-runner (and its runtime libraries) not found")
    quant_opt, runner, libs = tools
    x = np.ascontiguousarray(inputs, dtype=np.float32)
    in_static = _ttype(x.shape)
    in_dyn = _ttype((None,) + tuple(x.shape[1:]))
    out_static_dims = (x.shape[0],) + tuple(out_dims)
    out_dyn = _ttype((None,) + tuple(out_dims))
    main = f"""
func.func private @printMemrefF32(memref<*xf32>) attributes {{llvm.emit_c_interface}}

func.func @main() {{
  %x = arith.constant {_hex(x, np.float32)} : {in_static}
  %xd = tensor.cast %x : {in_static} to {in_dyn}
  %y = call @{func_name}(%xd) : ({in_dyn}) -> {out_dyn}
  %m = bufferization.to_buffer %y : {out_dyn} to memref<{'?x' + 'x'.join(map(str, out_dims))}xf32>
  %u = memref.cast %m : memref<{'?x' + 'x'.join(map(str, out_dims))}xf32> to memref<*xf32>
  call @printMemrefF32(%u) : (memref<*xf32>) -> ()
  return
}}
"""
    text = module_text + main
    with tempfile.TemporaryDirectory() as tmp:
        src = pathlib.Path(keep) if keep else pathlib.Path(tmp) / "model.mlir"
        src.write_text(text)
        lowered = subprocess.run([quant_opt, str(src), *passes], capture_output=True,
                                 text=True, check=False)
        if lowered.returncode != 0:
            raise RuntimeError(f"quant-opt failed:\n{lowered.stderr[-4000:]}")
        run = subprocess.run([runner, "-e", "main", "-entry-point-result=void",
                              *[f"-shared-libs={lib}" for lib in libs]],
                             input=lowered.stdout, capture_output=True, text=True, check=False)
        if run.returncode != 0:
            raise RuntimeError(f"mlir-runner failed:\n{run.stderr[-4000:]}")
    out = run.stdout
    body = out[out.index("\n") + 1:] if out.startswith("Unranked") else out
    values = re.findall(r"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|nan|inf)", body)
    arr = np.array([float(v) for v in values], dtype=np.float64)
    n = int(np.prod(out_static_dims))
    if arr.size != n:
        raise RuntimeError(f"expected {n} printed values, got {arr.size}:\n{out[:2000]}")
    return arr.reshape(out_static_dims)


def jit_available() -> bool:
    """Whether qlr.compiler (the qlr._compiler extension) can be loaded."""
    try:
        import qlr.compiler  # noqa: F401
    except ImportError:
        return False
    return True


def run_with_jit(module_text: str, inputs: np.ndarray, fold: bool = True,
                 func_name: str = "forward"):
    """(logits, module text after folding) of ``func_name`` on ``inputs``,
    through qlr.compiler: parse, ``qlr-fold-batchnorm`` (when ``fold``), JIT."""
    import qlr.compiler as qc
    module = qc.Module.parse(module_text, name="export.mlir")
    if fold:
        module.run_pipeline("builtin.module(qlr-fold-batchnorm)")
    folded = module.to_text(large_elements_limit=16)
    fn = qc.jit(module, func_name)
    return np.asarray(fn(np.ascontiguousarray(inputs, dtype=np.float32))), folded
