"""Export a trained (QAT) CNN to qlr IR text.

    text = export_mlir(model, input_shape=(None, 1, 8, 8))

The model must be an ``nn.Sequential`` (nested ones are flattened) of
QuantConv2d / nn.Conv2d, nn.BatchNorm2d / nn.BatchNorm1d, nn.ReLU, nn.ReLU6,
global average pooling (nn.AdaptiveAvgPool2d(1)), nn.Flatten,
QuantLinear / nn.Linear, nn.Identity and nn.Dropout (a no-op at inference).
Anything else raises ``ExportError`` naming the module.

The result is one ``func.func @forward(%x: tensor<?xCxHxWxf32>) -> ...``:
quantized weights are ``qlr.pack`` of ``arith.constant`` packed codes (each
row of the innermost dimension a little-endian bit stream of
``ceil(n * bits / 8)`` bytes, symmetric code ``c = q + 2^(bits-1)``) and f32
scales (the learned LSQ steps, bit-exact), float constants are ``dense<"0x...">``
hex; convolutions are ``qlr.conv2d``, BatchNorm ``qlr.batch_norm`` (inference
form, folded by ``--qlr-fold-batchnorm``), ReLU/ReLU6/pooling ``linalg.generic``
and flatten ``tensor.collapse_shape``.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

from .quant import QuantConv2d, QuantLinear

__all__ = ["export_mlir", "ExportError", "pack_codes", "flatten_layers"]


class ExportError(ValueError):
    pass


# -- encoding helpers ------------------------------------------------------------

def pack_codes(codes: np.ndarray, bits: int) -> np.ndarray:
    """Pack unsigned codes (any shape, < 2^bits): each row of the innermost
    dimension becomes a little-endian bit stream of ceil(n*bits/8) bytes
    (bit k of the row = bit k % 8 of byte k // 8)."""
    codes = np.asarray(codes, dtype=np.int64)
    if codes.size and (codes.min() < 0 or codes.max() >= 2 ** bits):
        raise ExportError(f"codes outside [0, 2^{bits})")
    lead, n = codes.shape[:-1], codes.shape[-1]
    flat = codes.reshape(-1, n)
    bitm = ((flat[:, :, None] >> np.arange(bits)) & 1).astype(np.uint8)
    stream = bitm.reshape(flat.shape[0], n * bits)
    stream = np.pad(stream, ((0, 0), (0, (-stream.shape[1]) % 8)))
    packed = np.packbits(stream, axis=1, bitorder="little")
    return packed.reshape(*lead, packed.shape[1])


def _shape(dims: Sequence[Optional[int]]) -> str:
    return "x".join("?" if d is None else str(int(d)) for d in dims)


def _ttype(dims, elem="f32") -> str:
    return f"tensor<{_shape(dims)}x{elem}>" if len(dims) else f"tensor<{elem}>"


def _hex(array: np.ndarray, dtype) -> str:
    data = np.ascontiguousarray(np.asarray(array, dtype=dtype)).astype(
        np.dtype(dtype).newbyteorder("<"), copy=False)
    return 'dense<"0x' + data.tobytes().hex().upper() + '">'


def _float_attr(value: float) -> str:
    return f"{float(value):.17e}"


def flatten_layers(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """(name, module) of the leaves of nested nn.Sequential containers."""
    if not isinstance(model, nn.Sequential):
        raise ExportError(f"cannot export {type(model).__name__}: export_mlir takes an "
                          "nn.Sequential of supported layers")
    out = []

    def walk(prefix, mod):
        for name, child in mod.named_children():
            full = f"{prefix}.{name}" if prefix else name
            if isinstance(child, nn.Sequential):
                walk(full, child)
            else:
                out.append((full, child))
    walk("", model)
    return out


# -- the emitter ---------------------------------------------------------------

class _Emitter:
    def __init__(self):
        self.lines: List[str] = []
        self.counter = 0

    def fresh(self, hint="v") -> str:
        self.counter += 1
        return f"%{hint}{self.counter}"

    def emit(self, line: str) -> None:
        self.lines.append("  " + line)

    def const(self, array, dtype, dims, elem, hint="cst") -> str:
        name = self.fresh(hint)
        self.emit(f"{name} = arith.constant {_hex(array, dtype)} : {_ttype(dims, elem)}")
        return name

    def fvec(self, t: torch.Tensor, hint="cst") -> str:
        a = t.detach().cpu().to(torch.float32).numpy()
        return self.const(a, np.float32, a.shape, "f32", hint)

    def empty(self, dims, batch: str) -> str:
        name = self.fresh("e")
        dyn = f"({batch})" if dims[0] is None else "()"
        self.emit(f"{name} = tensor.empty{dyn} : {_ttype(dims)}")
        return name


def _weight_operand(em: _Emitter, name: str, mod: nn.Module) -> Tuple[str, str]:
    """The weight as an SSA value and its type (qtensor or float tensor)."""
    w = mod.weight.detach()
    dims = tuple(w.shape)
    if not isinstance(mod, (QuantConv2d, QuantLinear)):
        return em.fvec(w, "w"), _ttype(dims)
    bits = mod.bits
    step = mod.step.detach().cpu().to(torch.float32)
    q = mod.int_weight().cpu().numpy().astype(np.int64)
    codes = q + 2 ** (bits - 1)
    if mod.group_size is None and mod.per_channel:
        fmt = f"#qlr.format<int{bits}, channel = 0>"
        scales = step[:, 0].numpy()
    elif mod.group_size is not None and w.dim() == 2:
        fmt = f"#qlr.format<int{bits}, group = {mod.group_size}>"
        scales = step.numpy()
    elif mod.group_size is None and not mod.per_channel:
        fmt = f"#qlr.format<int{bits}>"
        scales = step.reshape(()).numpy()
    else:
        raise ExportError(f"cannot export {name} ({type(mod).__name__}): grouped "
                          "quantization of convolution weights has no qlr format "
                          "(qlr groups run along the innermost dimension); use "
                          "per-channel steps")
    packed = pack_codes(codes, bits).astype(np.uint8)
    c = em.const(packed, np.uint8, packed.shape, "i8", "codes")
    s = em.const(scales, np.float32, scales.shape, "f32", "scales")
    qtype = f"!qlr.qtensor<{_shape(dims)}xf32, {fmt}>"
    v = em.fresh("w")
    em.emit(f"{v} = qlr.pack {c}, {s} : {_ttype(packed.shape, 'i8')}, "
            f"{_ttype(scales.shape)} -> {qtype}")
    return v, qtype


def _elementwise(em: _Emitter, x: str, dims, batch: str, body: List[str]) -> str:
    rank = len(dims)
    idx = ", ".join(f"d{i}" for i in range(rank))
    amap = f"affine_map<({idx}) -> ({idx})>"
    out = em.empty(dims, batch)
    v = em.fresh()
    t = _ttype(dims)
    its = ", ".join(['"parallel"'] * rank)
    em.emit(f"{v} = linalg.generic {{indexing_maps = [{amap}, {amap}], "
            f"iterator_types = [{its}]}} ins({x} : {t}) outs({out} : {t}) {{")
    em.emit("^bb0(%in: f32, %out: f32):")
    for line in body:
        em.emit("  " + line)
    em.emit(f"}} -> {t}")
    return v


def export_mlir(model: nn.Module, input_shape=(None, 1, 8, 8), func_name: str = "forward") -> str:
    """qlr IR text (one func.func) computing ``model`` in eval mode on NCHW
    f32 input of ``input_shape`` (None: dynamic batch)."""
    layers = flatten_layers(model)
    dims = tuple(input_shape)
    if len(dims) != 4:
        raise ExportError(f"input_shape must be (N, C, H, W), got {input_shape}")
    em = _Emitter()
    em.emit("%c0 = arith.constant 0 : index")
    em.emit(f"%batch = tensor.dim %x, %c0 : {_ttype(dims)}")
    x, batch = "%x", "%batch"

    for name, mod in layers:
        kind = type(mod).__name__
        if isinstance(mod, nn.Conv2d):
            if len(dims) != 4 or dims[1] != mod.in_channels:
                raise ExportError(f"{name} ({kind}) expects [N, {mod.in_channels}, H, W], "
                                  f"gets {list(dims)}")
            if mod.padding_mode != "zeros" or isinstance(mod.padding, str):
                raise ExportError(f"cannot export {name} ({kind}): padding "
                                  f"{mod.padding!r}/{mod.padding_mode} (explicit zero padding only)")
            w, wtype = _weight_operand(em, name, mod)
            kh, kw = mod.kernel_size
            sh, sw = mod.stride
            ph, pw = mod.padding
            dh, dw = mod.dilation
            oh = (dims[2] + 2 * ph - dh * (kh - 1) - 1) // sh + 1
            ow = (dims[3] + 2 * pw - dw * (kw - 1) - 1) // sw + 1
            out = (dims[0], mod.out_channels, oh, ow)
            operands, types = f"{x}, {w}", f"{_ttype(dims)}, {wtype}"
            if mod.bias is not None:
                operands += ", " + em.fvec(mod.bias, "b")
                types += f", {_ttype((mod.out_channels,))}"
            v = em.fresh()
            em.emit(f"{v} = qlr.conv2d {operands} {{strides = array<i64: {sh}, {sw}>, "
                    f"padding = array<i64: {ph}, {pw}, {ph}, {pw}>, "
                    f"dilations = array<i64: {dh}, {dw}>, groups = {mod.groups} : i64}} "
                    f": {types} -> {_ttype(out)}")
            x, dims = v, out
        elif isinstance(mod, nn.Linear):
            if len(dims) != 2 or dims[1] != mod.in_features:
                raise ExportError(f"{name} ({kind}) expects [N, {mod.in_features}], "
                                  f"gets {list(dims)}")
            w, wtype = _weight_operand(em, name, mod)
            out = (dims[0], mod.out_features)
            operands, types = f"{x}, {w}", f"{_ttype(dims)}, {wtype}"
            if mod.bias is not None:
                operands += ", " + em.fvec(mod.bias, "b")
                types += f", {_ttype((mod.out_features,))}"
            v = em.fresh()
            em.emit(f"{v} = qlr.linear {operands} : {types} -> {_ttype(out)}")
            x, dims = v, out
        elif isinstance(mod, (nn.BatchNorm2d, nn.BatchNorm1d)):
            if len(dims) < 2 or dims[1] != mod.num_features or (
                    isinstance(mod, nn.BatchNorm2d) and len(dims) != 4):
                raise ExportError(f"{name} ({kind}) does not fit its input {list(dims)}")
            if not mod.track_running_stats or mod.running_mean is None:
                raise ExportError(f"cannot export {name} ({kind}): no running statistics")
            c = mod.num_features
            ones, zeros = torch.ones(c), torch.zeros(c)
            scale = em.fvec(mod.weight if mod.affine else ones, "bn_scale")
            bias = em.fvec(mod.bias if mod.affine else zeros, "bn_bias")
            mean = em.fvec(mod.running_mean, "bn_mean")
            var = em.fvec(mod.running_var, "bn_var")
            v = em.fresh()
            vt = _ttype((c,))
            em.emit(f"{v} = qlr.batch_norm {x}, {scale}, {bias}, {mean}, {var} axis = 1 "
                    f"eps = {_float_attr(mod.eps)} : {_ttype(dims)}, {vt}, {vt}, {vt}, {vt}")
            x = v
        elif isinstance(mod, nn.ReLU6):
            x = _elementwise(em, x, dims, batch, [
                "%zero = arith.constant 0.000000e+00 : f32",
                "%six = arith.constant 6.000000e+00 : f32",
                "%lo = arith.maximumf %in, %zero : f32",
                "%hi = arith.minimumf %lo, %six : f32",
                "linalg.yield %hi : f32"])
        elif isinstance(mod, nn.ReLU):
            x = _elementwise(em, x, dims, batch, [
                "%zero = arith.constant 0.000000e+00 : f32",
                "%r = arith.maximumf %in, %zero : f32",
                "linalg.yield %r : f32"])
        elif isinstance(mod, nn.AdaptiveAvgPool2d):
            size = mod.output_size
            if size not in (1, (1, 1), [1, 1]) or len(dims) != 4:
                raise ExportError(f"cannot export {name} ({kind}): only global average "
                                  f"pooling (output size 1) of NCHW input")
            n, c, h, w = dims
            red_dims = (n, c)
            init = em.empty(red_dims, batch)
            zero = em.fresh("zero")
            em.emit(f"{zero} = arith.constant 0.000000e+00 : f32")
            filled = em.fresh()
            em.emit(f"{filled} = linalg.fill ins({zero} : f32) outs({init} : {_ttype(red_dims)}) "
                    f"-> {_ttype(red_dims)}")
            summed = em.fresh()
            em.emit(f"{summed} = linalg.generic {{indexing_maps = ["
                    "affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>, "
                    "affine_map<(d0, d1, d2, d3) -> (d0, d1)>], iterator_types = "
                    '["parallel", "parallel", "reduction", "reduction"]} '
                    f"ins({x} : {_ttype(dims)}) outs({filled} : {_ttype(red_dims)}) {{")
            em.emit("^bb0(%in: f32, %acc: f32):")
            em.emit("  %s = arith.addf %acc, %in : f32")
            em.emit("  linalg.yield %s : f32")
            em.emit(f"}} -> {_ttype(red_dims)}")
            mean = _elementwise(em, summed, red_dims, batch, [
                f"%inv = arith.constant {_float_attr(np.float32(1.0 / (h * w)))} : f32",
                "%m = arith.mulf %in, %inv : f32",
                "linalg.yield %m : f32"])
            out = (n, c, 1, 1)
            v = em.fresh()
            em.emit(f"{v} = tensor.expand_shape {mean} [[0], [1, 2, 3]] output_shape "
                    f"[{batch}, {c}, 1, 1] : {_ttype(red_dims)} into {_ttype(out)}")
            x, dims = v, out
        elif isinstance(mod, nn.Flatten):
            if mod.start_dim != 1 or mod.end_dim != -1:
                raise ExportError(f"cannot export {name} ({kind}): only Flatten(1, -1)")
            if len(dims) > 2:
                out = (dims[0], int(np.prod(dims[1:])))
                v = em.fresh()
                em.emit(f"{v} = tensor.collapse_shape {x} [[0], [{', '.join(str(i) for i in range(1, len(dims)))}]] "
                        f": {_ttype(dims)} into {_ttype(out)}")
                x, dims = v, out
        elif isinstance(mod, (nn.Identity, nn.Dropout)):
            pass
        else:
            raise ExportError(f"cannot export layer {name!r} of type {kind}: export_mlir "
                              "supports Conv2d/QuantConv2d, Linear/QuantLinear, BatchNorm, "
                              "ReLU, ReLU6, global average pooling, Flatten, Identity, Dropout")

    sig = f"func.func @{func_name}(%x: {_ttype(tuple(input_shape))}) -> {_ttype(dims)} {{"
    return "\n".join([sig] + em.lines + [f"  return {x} : {_ttype(dims)}", "}", ""])
