"""QLR's compiler and numerics from Python (the ``qlr._compiler`` extension).

    import numpy as np
    import qlr.compiler as qc

    m = qc.Module.parse(open("model.mlir").read(), name="model.mlir")
    m.run_pipeline("builtin.module(qlr-fold-batchnorm,canonicalize)")
    fn = qc.jit(m, "forward")
    y = fn(np.ones((2, 4), np.float32))

    q = qc.quantize(w, "int4, group = 32, scale = f16")
    w_hat = qc.dequantize(q)

The extension is built by the project's CMake (target ``qlr-python``) into
``<build>/python/qlr/``. It is found, in this order: in ``$QLR_BUILD_DIR``'s
``python/qlr/`` when that variable is set, next to this file (after
``pip install ./python`` of a built tree), and in ``build/python/qlr/`` of the
source tree this file belongs to.
"""

from __future__ import annotations

import dataclasses
import importlib.machinery
import importlib.util
import os
import pathlib
import sys
from types import ModuleType
from typing import Any, Optional, Sequence, Union

import numpy as np


def _extension_candidates() -> list[pathlib.Path]:
    here = pathlib.Path(__file__).resolve().parent
    dirs = []
    build = os.environ.get("QLR_BUILD_DIR")
    if build:
        dirs.append(pathlib.Path(build).resolve() / "python" / "qlr")
    dirs.append(here)
    dirs.append(here.parents[1] / "build" / "python" / "qlr")
    found = []
    for d in dirs:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = d / ("_compiler" + suffix)
            if path.is_file():
                found.append(path)
    return found


def _load_extension() -> ModuleType:
    if "qlr._compiler" in sys.modules:
        return sys.modules["qlr._compiler"]
    candidates = _extension_candidates()
    if not candidates:
        raise ImportError(
            "qlr.compiler needs the qlr._compiler extension, which is not "
            "built: configure QLR with Python 3 development headers and "
            "nanobind available (pip install nanobind; cmake option "
            "QLR_ENABLE_PYTHON_BINDINGS=ON, the default), then run "
            "`ninja -C build qlr-python` and either set QLR_BUILD_DIR=build "
            "or `pip install ./python`. (import qlr, the model runtime, "
            "works without it.)")
    path = candidates[0]
    spec = importlib.util.spec_from_file_location("qlr._compiler", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["qlr._compiler"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules["qlr._compiler"]
        raise
    return module


_c: Any = _load_extension()

CompilerError = _c.CompilerError
Module = _c.Module
JitFunction = _c.JitFunction
jit = _c.jit
import_checkpoint = _c.import_checkpoint
import_synthetic = _c.import_synthetic
parse_format = _c.parse_format
pack_codes = _c.pack_codes
hessian = _c.hessian
hessian_error = _c.hessian_error
singular_values = _c.singular_values
truncated_svd = _c.truncated_svd
basis_scores = _c.basis_scores
top_bases = _c.top_bases
break_even_rank = _c.break_even_rank
allocate_ranks = _c.allocate_ranks
basis_factors = _c.basis_factors
normal_float_codebook = _c.normal_float_codebook
codebook = _c.codebook
simd_description = _c.simd_description

PathLike = Union[str, "os.PathLike[str]"]


@dataclasses.dataclass(frozen=True)
class QuantizedTensor:
    """A quantized tensor in the layout qlr.pack takes.

    codes:       unpacked codes, uint8, the tensor's shape;
    packed:      the packed int8 storage (each row a little-endian bit
                 stream, docs/Design.md), qlr.pack's first operand;
    scales:      float32 array of the format's scale shape, holding values
                 of the format's scale type (f16/bf16 values are exact);
    zero_points: uint8 array (the stored bytes; qlr.pack takes them as i8
                 with the same bits) for asymmetric formats, else None;
    format:      the canonical #qlr.format text;
    shape:       the tensor's shape.
    """

    codes: np.ndarray
    packed: np.ndarray
    scales: np.ndarray
    zero_points: Optional[np.ndarray]
    format: str
    shape: tuple[int, ...]

    @property
    def bits(self) -> int:
        """Bits per code."""
        return _bits_of(self.format)

    def dequantize(self) -> np.ndarray:
        """The decoded float32 tensor (same as qc.dequantize(self))."""
        return dequantize(self)

    def bits_per_element(self) -> float:
        """Storage bits per element: packed codes, scales, zero points."""
        scale_bits = {"f16": 16, "bf16": 16}.get(_scale_type_of(self.format), 32)
        per_scale = scale_bits + (8 if self.zero_points is not None else 0)
        elements = int(np.prod(self.shape))
        return (self.packed.size * 8 + self.scales.size * per_scale) / max(elements, 1)


def _bits_of(format: str) -> int:
    body = format.split("<", 1)[1] if "<" in format else format
    scheme = body.split(",")[0].split("[")[0].strip()
    return int("".join(ch for ch in scheme if ch.isdigit()))


def _scale_type_of(format: str) -> str:
    for part in format.replace(">", "").split(","):
        key, _, value = part.partition("=")
        if key.strip() == "scale":
            return value.strip()
    return "f32"


def _quantized(fields: dict[str, Any]) -> QuantizedTensor:
    return QuantizedTensor(codes=fields["codes"], packed=fields["packed"],
                           scales=fields["scales"],
                           zero_points=fields["zero_points"],
                           format=fields["format"],
                           shape=tuple(int(d) for d in fields["shape"]))


def _f32(a: Any, name: str) -> np.ndarray:
    """`a` as a C-contiguous float32 array (`name` for messages)."""
    try:
        return np.ascontiguousarray(np.asarray(a, dtype=np.float32))
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} must be an array of numbers: {error}") from None


def quantize(w: np.ndarray, format: str, *, method: str = "rtn",
             clip_steps: int = 20, min_shrink: float = 0.6,
             scales: Optional[np.ndarray] = None,
             zero_points: Optional[np.ndarray] = None) -> QuantizedTensor:
    """Quantizes ``w`` in ``format`` (a #qlr.format or its body, e.g.
    "int4, group = 32, asymmetric, scale = f16") with the reference
    round-to-nearest quantizer (include/qlr/Numerics/Quantize.h).

    method: "rtn" (the min/max rule) or "clip-search" (per-group clipping
    range search over ``clip_steps`` shrink factors down to ``min_shrink``).
    scales (and zero_points for asymmetric formats): quantize with these
    instead of computing them.
    """
    s = None if scales is None else _f32(scales, "scales")
    z = None if zero_points is None else np.ascontiguousarray(
        np.asarray(zero_points, dtype=np.uint8))
    return _quantized(_c._quantize(_f32(w, "w"), format, method, clip_steps,
                                   min_shrink, s, z))


def dequantize(q: Optional[QuantizedTensor] = None, *,
               codes: Optional[np.ndarray] = None,
               packed: Optional[np.ndarray] = None,
               scales: Optional[np.ndarray] = None,
               zero_points: Optional[np.ndarray] = None,
               format: Optional[str] = None,
               shape: Optional[Sequence[int]] = None) -> np.ndarray:
    """Decodes a QuantizedTensor, or codes (unpacked uint8, or ``packed``
    storage with ``shape``) with their scales, zero points and format, to a
    float32 array (Quantize.h dequantize)."""
    if q is not None:
        codes, scales, zero_points, format = (q.codes, q.scales,
                                              q.zero_points, q.format)
        shape = q.shape
    if format is None or scales is None or (codes is None and packed is None):
        raise TypeError("dequantize needs a QuantizedTensor, or codes (or "
                        "packed and shape), scales and format")
    if codes is None:
        if shape is None:
            raise TypeError("dequantize(packed=...) needs shape")
        codes = unpack_codes(np.asarray(packed), shape, _bits_of(parse_format(format)))
    codes = np.ascontiguousarray(np.asarray(codes, dtype=np.uint8))
    if shape is not None and tuple(codes.shape) != tuple(shape):
        codes = codes.reshape(tuple(shape))
    z = None if zero_points is None else np.ascontiguousarray(
        np.asarray(zero_points, dtype=np.uint8))
    return _c._dequantize(codes, _f32(scales, "scales"), z, format)


def unpack_codes(packed: np.ndarray, shape: Sequence[int], bits: int) -> np.ndarray:
    """Unpacks qlr.pack storage (int8 or uint8) of codes of logical
    ``shape`` into one uint8 code per element."""
    raw = np.ascontiguousarray(np.asarray(packed))
    if raw.dtype not in (np.int8, np.uint8):
        raise TypeError("packed codes are int8 or uint8")
    return _c._unpack_codes(raw.view(np.uint8), [int(d) for d in shape], bits)


def gptq(w: np.ndarray, hessian: np.ndarray, format: str, damp: float = 0.01,
         block_size: int = 128, act_order: bool = False, *,
         clip_search: bool = False, refit_rounds: int = 0) -> QuantizedTensor:
    """GPTQ (include/qlr/Numerics/GPTQ.h): quantizes ``w`` [N, K] (rows are
    output channels) for the inputs' Hessian ``hessian`` [K, K] (e.g.
    qc.hessian(x)); see docs/Quantizers.md for damping, act-order and
    refits."""
    h = np.ascontiguousarray(np.asarray(hessian, dtype=np.float64))
    return _quantized(_c._gptq(_f32(w, "w"), h, format, damp, block_size,
                               act_order, clip_search, refit_rounds))


def loftq(w: np.ndarray, format: str, rank: int, iterations: int = 5, *,
          return_errors: bool = False) -> Any:
    """LoftQ (include/qlr/Numerics/LowRank.h): w ≈ dequantize(Q) + A·B.
    Returns (Q, A, B), plus the list of ||W - dequantize(Q_t) - A_t B_t||_F
    after each iteration with return_errors=True."""
    fields, a, b, errors = _c._loftq(_f32(w, "w"), format, rank, iterations)
    if return_errors:
        return _quantized(fields), a, b, list(errors)
    return _quantized(fields), a, b


def compile_artifact(module: Module, output_path: PathLike, *,
                     cpu: str = "native", opt_level: int = 3,
                     parallel: str = "default",
                     weights_file: Optional[str] = None,
                     target: str = "cpu", chip: Optional[str] = None,
                     gpu_binary: Optional[str] = None,
                     cuda_toolkit: Optional[PathLike] = None,
                     keep_temps: bool = False) -> None:
    """Compiles a model made by import_checkpoint (and transformed by
    passes) ahead of time into a shared library with the C interface of
    include/qlr-c/Runtime.h, which qlr.Model runs. This runs qlr-compile's
    library code (mlir::qlr::compileArtifact) in this process, on a copy of
    the module (``module`` is not changed); only the final link runs the C++
    compiler the build found (or $QLR_LINKER). The options are qlr-compile's:
    cpu (native, x86-64, x86-64-v3, x86-64-v4), opt_level (0-3), parallel
    (openmp, none, default), weights_file (a sidecar file name), target (cpu
    or cuda), chip, gpu_binary, cuda_toolkit; keep_temps keeps the
    intermediate files and prints their directory on stderr. The runtime
    archives are looked for in $QLR_RUNTIME_LIBRARY_DIR first, then where
    the build put them. Raises CompilerError with qlr-compile's message
    (followed by any MLIR diagnostics) when it fails; the output is written
    atomically, and nothing is left at ``output_path`` on an error."""
    kept = _c._compile_artifact(
        module, output_path, cpu=cpu, opt_level=int(opt_level),
        parallel=parallel, weights_file=weights_file, target=target,
        chip=chip, gpu_binary=gpu_binary, cuda_toolkit=cuda_toolkit,
        keep_temps=keep_temps,
        runtime_library_dir=os.environ.get("QLR_RUNTIME_LIBRARY_DIR") or None)
    if kept is not None:
        print(f"compile_artifact: kept {kept}", file=sys.stderr)


__all__ = [
    "CompilerError", "JitFunction", "Module", "QuantizedTensor",
    "allocate_ranks", "basis_factors", "basis_scores", "break_even_rank",
    "codebook", "compile_artifact", "dequantize", "gptq", "hessian",
    "hessian_error", "import_checkpoint", "import_synthetic", "jit", "loftq",
    "normal_float_codebook", "pack_codes", "parse_format", "quantize",
    "simd_description", "singular_values", "top_bases", "truncated_svd",
    "unpack_codes",
]
