"""Fake-quantized layers with a learned LSQ step (Esser et al. 2020).

Weights are quantized to a signed symmetric integer grid
``q in [-2^(b-1), 2^(b-1) - 1]`` with ``w_q = step * q``.  One step per output
channel (``per_channel=True``), per group of ``group_size`` consecutive
elements of the flattened input dimension (``weight.reshape(out, -1)``), or
one for the whole tensor.  The forward pass uses the straight-through
estimator for rounding and LSQ's gradient scale ``g = 1/sqrt(n * qmax)`` on
the step (``n`` = weights per step).

Weights that the :class:`~qlr.qat.QATController` froze keep their integer
value ``frozen_value`` (an int buffer) whatever the latent weight does; their
latent weight gets no task gradient.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["QuantLinear", "QuantConv2d", "prepare", "quantized_modules",
           "lsq_step_init", "mse_step_init"]


class _RoundSTE(torch.autograd.Function):
    """round() forward, identity backward (value exactly round(x))."""

    @staticmethod
    def forward(ctx, x):
        return torch.round(x)

    @staticmethod
    def backward(ctx, g):
        return g


class _GradScale(torch.autograd.Function):
    """Identity forward (bit-exact), gradient times ``scale`` backward."""

    @staticmethod
    def forward(ctx, x, scale: float):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return g * ctx.scale, None


def _grid(bits: int):
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def lsq_step_init(w2: torch.Tensor, bits: int) -> torch.Tensor:
    """LSQ's init per row of ``w2`` [rows, n]: 2 * mean|w| / sqrt(qmax)."""
    qmax = _grid(bits)[1]
    return (2 * w2.abs().mean(dim=-1) / math.sqrt(qmax)).clamp_min(1e-8)


def mse_step_init(w2: torch.Tensor, bits: int, candidates: int = 100) -> torch.Tensor:
    """Per row of ``w2`` [rows, n]: the step ``alpha * absmax / qmax`` with
    ``alpha`` in (0, 1] (``candidates`` values) that minimises the squared
    quantization error of the row."""
    qmin, qmax = _grid(bits)
    w2 = w2.detach().float()
    base = (w2.abs().amax(dim=-1) / qmax).clamp_min(1e-8)
    best_err = torch.full_like(base, float("inf"))
    best = base.clone()
    for i in range(candidates):
        alpha = (i + 1) / candidates
        s = (base * alpha)[:, None]
        err = ((torch.clamp(torch.round(w2 / s), qmin, qmax) * s - w2) ** 2).sum(-1)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best = torch.where(better, s[:, 0], best)
    return best


def _take_parameters(new: nn.Module, mod: nn.Module) -> None:
    """Give ``new`` the very weight and bias Parameters of ``mod`` (so tied
    weights stay tied and optimizers that hold them keep working); the
    buffers sized by the weight were made for the same shape."""
    new.weight = mod.weight
    new.bias = mod.bias


class _QuantMixin:
    """Shared state and fake quantization of QuantLinear / QuantConv2d."""

    bits: int
    group_size: Optional[int]
    per_channel: bool

    def _init_quant(self, bits: int, group_size: Optional[int], per_channel: bool,
                    init: str = "mse") -> None:
        if not 2 <= bits <= 8:
            raise ValueError(f"bits must be in [2, 8], got {bits}")
        self.bits = int(bits)
        self.group_size = None if group_size is None else int(group_size)
        self.per_channel = bool(per_channel) or group_size is not None
        out = self.weight.shape[0]
        k = self.weight[0].numel()
        if self.group_size is not None:
            if k % self.group_size:
                raise ValueError(f"group_size {self.group_size} does not divide the "
                                 f"input size {k} of {type(self).__name__} "
                                 f"{tuple(self.weight.shape)}")
            n_groups = k // self.group_size
            step_shape = (out, n_groups)
        elif self.per_channel:
            step_shape = (out, 1)
        else:
            step_shape = (1, 1)
        self.step = nn.Parameter(torch.ones(step_shape, dtype=self.weight.dtype,
                                            device=self.weight.device))
        self.register_buffer("frozen", torch.zeros(self.weight.shape, dtype=torch.bool,
                                                   device=self.weight.device))
        self.register_buffer("frozen_value", torch.zeros(self.weight.shape, dtype=torch.int32,
                                                         device=self.weight.device))
        self.init_step(init)

    # -- geometry --------------------------------------------------------------
    @property
    def qmin(self) -> int:
        return _grid(self.bits)[0]

    @property
    def qmax(self) -> int:
        return _grid(self.bits)[1]

    @property
    def numel_per_step(self) -> int:
        return self.weight.numel() // self.step.numel()

    def _grouped(self, t: torch.Tensor) -> torch.Tensor:
        """[out, ...] -> [step rows, step cols, numel_per_step]."""
        return t.reshape(self.step.shape[0], self.step.shape[1], -1)

    @torch.no_grad()
    def init_step(self, method: str = "mse") -> None:
        """(Re)initialise the step from the current latent weights:
        ``"lsq"`` (2 mean|w| / sqrt(qmax)) or ``"mse"`` (per-group search)."""
        w2 = self._grouped(self.weight.detach()).reshape(self.step.numel(), -1)
        if method == "lsq":
            s = lsq_step_init(w2, self.bits)
        elif method == "mse":
            s = mse_step_init(w2, self.bits)
        else:
            raise ValueError(f"unknown step init {method!r} (lsq or mse)")
        self.step.copy_(s.reshape(self.step.shape).to(self.step.dtype))

    # -- quantization ----------------------------------------------------------
    def _int_ste(self, step: torch.Tensor) -> torch.Tensor:
        """Integer values (float dtype, STE rounding), frozen ones imposed."""
        w = self._grouped(self.weight)
        x = torch.clamp(w / step[..., None], self.qmin, self.qmax)
        q = _RoundSTE.apply(x).reshape(self.weight.shape)
        if self.frozen.any():
            q = torch.where(self.frozen, self.frozen_value.to(q.dtype), q)
        return q

    def fake_quant_weight(self) -> torch.Tensor:
        """step * q with LSQ gradients (the weight the forward pass uses)."""
        g = 1.0 / math.sqrt(self.numel_per_step * self.qmax)
        step = _GradScale.apply(self.step, g)
        q = self._int_ste(step)
        return (self._grouped(q) * step[..., None]).reshape(self.weight.shape)

    @torch.no_grad()
    def int_weight(self) -> torch.Tensor:
        """q as a torch.int32 tensor of the weight's shape (frozen weights at
        their frozen value)."""
        return self._int_ste(self.step.detach()).to(torch.int32)

    @torch.no_grad()
    def quantized_weight(self) -> torch.Tensor:
        """step * q, exactly the weight the forward pass uses."""
        q = self._int_ste(self.step.detach())
        return (self._grouped(q) * self.step.detach()[..., None]).reshape(self.weight.shape)

    def quant_extra_repr(self) -> str:
        g = f"group_size={self.group_size}" if self.group_size else (
            "per_channel" if self.per_channel else "per_tensor")
        return f"bits={self.bits}, {g}"


class QuantLinear(nn.Linear, _QuantMixin):
    """nn.Linear with a fake-quantized weight (the bias stays float)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 bits: int = 4, group_size: Optional[int] = None,
                 per_channel: bool = True, init: str = "mse", device=None, dtype=None):
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self._init_quant(bits, group_size, per_channel, init)

    @classmethod
    def from_float(cls, mod: nn.Linear, **kw) -> "QuantLinear":
        new = cls(mod.in_features, mod.out_features, mod.bias is not None,
                  device=mod.weight.device, dtype=mod.weight.dtype, **{**kw, "init": "lsq"})
        _take_parameters(new, mod)
        new.init_step(kw.get("init", "mse"))
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.fake_quant_weight(), self.bias)

    def extra_repr(self) -> str:
        return super().extra_repr() + ", " + self.quant_extra_repr()


class QuantConv2d(nn.Conv2d, _QuantMixin):
    """nn.Conv2d with a fake-quantized weight [F, C/groups, KH, KW]."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1,
                 padding=0, dilation=1, groups: int = 1, bias: bool = True,
                 padding_mode: str = "zeros", *, bits: int = 4,
                 group_size: Optional[int] = None, per_channel: bool = True,
                 init: str = "mse", device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, padding_mode, device=device, dtype=dtype)
        self._init_quant(bits, group_size, per_channel, init)

    @classmethod
    def from_float(cls, mod: nn.Conv2d, **kw) -> "QuantConv2d":
        new = cls(mod.in_channels, mod.out_channels, mod.kernel_size, mod.stride,
                  mod.padding, mod.dilation, mod.groups, mod.bias is not None,
                  mod.padding_mode, device=mod.weight.device, dtype=mod.weight.dtype,
                  **{**kw, "init": "lsq"})
        _take_parameters(new, mod)
        new.init_step(kw.get("init", "mse"))
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.fake_quant_weight(), self.bias)

    def extra_repr(self) -> str:
        return super().extra_repr() + ", " + self.quant_extra_repr()


def quantized_modules(model: nn.Module):
    """(name, module) of every QuantLinear / QuantConv2d in ``model``."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, _QuantMixin)]


def prepare(model: nn.Module, bits: int = 4, group_size: Optional[int] = None,
            per_channel: bool = True,
            skip: Callable[[str, nn.Module], bool] = lambda name, mod: False,
            init: str = "mse") -> nn.Module:
    """Replace every nn.Linear / nn.Conv2d of ``model`` (in place) by a
    QuantLinear / QuantConv2d with the same weights and bias, unless
    ``skip(name, module)`` is true.  The new layers hold the very same
    weight/bias Parameter objects (tied weights stay tied; deep-copy the model
    first to keep a float copy).  ``init``: step initialisation, "mse"
    (default) or "lsq".  Returns ``model``."""
    kw = dict(bits=bits, group_size=group_size, per_channel=per_channel, init=init)
    targets = []
    for name, mod in model.named_modules():
        if not name or isinstance(mod, _QuantMixin):
            continue
        if type(mod) in (nn.Linear, nn.Conv2d) and not skip(name, mod):
            targets.append(name)
    for name in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        mod = getattr(parent, child)
        cls = QuantLinear if isinstance(mod, nn.Linear) else QuantConv2d
        new = cls.from_float(mod, **kw)
        new.train(mod.training)
        setattr(parent, child, new)
    return model
