"""Export of a quantization-aware-trained LLaMA (benchmarks/qat/llama2c_torch.py
+ qlr.qat) as a safetensors file that ``quant-opt --qlr-load-weights`` applies
to the module ``qlr-import`` made of the same checkpoint.

File layout (written with numpy and struct only, no safetensors dependency):
an 8-byte little-endian header length N, N bytes of JSON
``{NAME: {"dtype", "shape", "data_offsets": [begin, end]}, ...,
"__metadata__": {...}}`` padded with spaces to a multiple of 8, then the raw
little-endian data (offsets relative to the end of the header).

For every quantized linear whose weight is ``dense_resource<NAME>``:

* ``NAME.codes``  U8  [N, K]      unpacked codes ``c = q + 2^(b-1)``
* ``NAME.scales`` F32 [N, ceil(K/g)]
* ``__metadata__[NAME] = "int<b>, group = <g>"`` (the ``#qlr.format`` body:
  symmetric, f32 scales, decoded as ``x = s * (c - 2^(b-1))``)

and every other trained parameter (norm weights) as an F32 tensor ``NAME`` of
the module's shape.
"""

from __future__ import annotations

import json
import math
import struct
from typing import Dict, Iterable, Mapping, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

_DTYPES = {"U8": np.uint8, "I8": np.int8, "F32": np.float32, "F16": np.float16,
           "I32": np.int32, "F64": np.float64}
_NAMES = {np.dtype(v).str: k for k, v in _DTYPES.items()}


# --------------------------------------------------------------------------
# safetensors I/O
# --------------------------------------------------------------------------


def write_safetensors(path, tensors: Mapping[str, np.ndarray],
                      metadata: Optional[Mapping[str, str]] = None) -> None:
    """Writes `tensors` (name -> numpy array of a dtype in _DTYPES), in the
    given order, and the string map `metadata` as ``__metadata__``."""
    header: dict = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    offset = 0
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(arr)
        key = arr.dtype.newbyteorder("<").str if arr.dtype.itemsize > 1 else arr.dtype.str
        if key not in _NAMES:
            raise TypeError(f"{name}: unsupported dtype {arr.dtype}")
        blob = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": _NAMES[key], "shape": [int(d) for d in arr.shape],
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((-len(text)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def read_safetensors(path) -> Tuple[Dict[str, np.ndarray], Dict[str, str]]:
    """(tensors, metadata) of a safetensors file."""
    data = open(path, "rb").read()
    (n,) = struct.unpack_from("<Q", data, 0)
    header = json.loads(data[8:8 + n].decode("utf-8"))
    metadata = header.pop("__metadata__", {})
    base = 8 + n
    out = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        dtype = np.dtype(_DTYPES[info["dtype"]]).newbyteorder("<")
        arr = np.frombuffer(data[base + begin:base + end], dtype=dtype)
        out[name] = arr.reshape(info["shape"]).copy()
    return out, metadata


# --------------------------------------------------------------------------
# Input padding for partial groups
# --------------------------------------------------------------------------


class PaddedInput(nn.Module):
    """Runs `inner` (a linear over K + pad inputs) on x padded with `pad`
    zeros. With the weight's pad columns zero, a fake-quantized ``inner``
    with group size g computes exactly a K-wide linear whose last group is
    partial (K mod g weights): zeros quantize to 0 on a symmetric grid, do not
    change a group's absmax, and get no gradient (their inputs are 0).
    qlr.qat requires g to divide K; QLR's formats allow a partial last group
    (stories260K's w2 has K = 172 = 5 * 32 + 12)."""

    def __init__(self, inner: nn.Module, in_features: int):
        super().__init__()
        self.inner = inner
        self.in_features = in_features
        self.pad = inner.in_features - in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(F.pad(x, (0, self.pad)))


def pad_linears(model: nn.Module, group_size: int, names: Iterable[str]) -> None:
    """Replaces each nn.Linear named in `names` whose input size is not a
    multiple of `group_size` by PaddedInput(nn.Linear(K padded), K) holding
    the same weights and zero pad columns (before qlr.qat.prepare)."""
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        lin = getattr(parent, child)
        k = lin.in_features
        if k % group_size == 0:
            continue
        kp = math.ceil(k / group_size) * group_size
        new = nn.Linear(kp, lin.out_features, bias=False)
        with torch.no_grad():
            new.weight.zero_()
            new.weight[:, :k] = lin.weight
        setattr(parent, child, PaddedInput(new, k))


# --------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------


def quantized_linears(model: nn.Module):
    """(QLR name, QuantLinear, logical K) of every fake-quantized linear of
    the model (a PaddedInput wrapper's name, its true K)."""
    from qlr.qat import quantized_modules
    out = []
    for name, mod in quantized_modules(model):
        k = mod.in_features
        if name.endswith(".inner"):
            outer = model.get_submodule(name[: -len(".inner")])
            if isinstance(outer, PaddedInput):
                name, k = name[: -len(".inner")], outer.in_features
        out.append((name, mod, k))
    return out


def format_body(bits: int, group_size: int, scale: str = "f32") -> str:
    """The #qlr.format body of the exported layers (symmetric; f32 scales
    unless `scale` is "f16")."""
    return f"int{bits}, group = {group_size}" + ("" if scale == "f32" else f", scale = {scale}")


def export_tensors(model: nn.Module, trained_floats: Iterable[str] = (), scale: str = "f32"
                   ) -> Tuple[Dict[str, np.ndarray], Dict[str, str]]:
    """(tensors, metadata) to write: codes/scales of every quantized linear,
    and the float parameters named in `trained_floats` (their QLR names:
    the parameter name without ``.weight``). scale "f16": the steps must
    already be f16 values; they are written as F16 with ``scale = f16``."""
    if scale not in ("f32", "f16"):
        raise ValueError(f"scale must be f32 or f16, got {scale!r}")
    tensors: Dict[str, np.ndarray] = {}
    meta: Dict[str, str] = {}
    for name, mod, k in quantized_linears(model):
        half = 2 ** (mod.bits - 1)
        q = mod.int_weight().cpu().numpy()[:, :k]
        if q.min() < -half or q.max() > half - 1:
            raise ValueError(f"{name}: integer weights outside the {mod.bits}-bit grid")
        step = mod.step.detach().cpu().numpy().astype(np.float32)
        n_groups = math.ceil(k / mod.group_size)
        if step.shape != (q.shape[0], n_groups):
            raise ValueError(f"{name}: step shape {step.shape}, expected "
                             f"{(q.shape[0], n_groups)}")
        if scale == "f16":
            rounded = step.astype(np.float16)
            if not np.array_equal(rounded.astype(np.float32), step):
                raise ValueError(f"{name}: steps are not f16 values (round them first)")
            step = rounded
        tensors[f"{name}.codes"] = (q + half).astype(np.uint8)
        tensors[f"{name}.scales"] = np.ascontiguousarray(step)
        meta[name] = format_body(mod.bits, mod.group_size, scale)
    params = dict(model.named_parameters())
    for qname in trained_floats:
        tensors[qname] = params[qname + ".weight"].detach().cpu().numpy().astype(np.float32)
    return tensors, meta


def export_safetensors(path, model: nn.Module, trained_floats: Iterable[str] = (),
                       scale: str = "f32") -> Tuple[Dict[str, np.ndarray], Dict[str, str]]:
    tensors, meta = export_tensors(model, trained_floats, scale)
    write_safetensors(path, tensors, meta)
    return tensors, meta


def decoded_weights(tensors: Mapping[str, np.ndarray], meta: Mapping[str, str]
                    ) -> Dict[str, np.ndarray]:
    """NAME -> float32 weight decoded from exported codes and scales the way
    QLR decodes them, s * (c - 2^(b-1)) (a check of the export)."""
    out = {}
    for name, body in meta.items():
        bits = int(body.split(",")[0].strip()[3:])
        group = int(body.split("group =")[1].split(",")[0])
        c = tensors[f"{name}.codes"].astype(np.float32)
        s = tensors[f"{name}.scales"].astype(np.float32)
        s_full = np.repeat(s, group, axis=1)[:, : c.shape[1]]
        out[name] = s_full * (c - np.float32(2 ** (bits - 1)))
    return out
