"""Oscillation tracking, dampening and iterative freezing (Nagel et al. 2022).

    ctrl = QATController(model, total_steps)
    for t in range(total_steps):
        loss = task_loss(model(x), y) + ctrl.regularizer(t)
        opt.zero_grad(); loss.backward(); opt.step()
        ctrl.after_step(t)

An *oscillation* of a weight at step t: its integer value changed, and the
sign of this change is opposite to the sign of its previous change.  The
controller keeps per weight an exponential moving average (momentum ``m``) of
these events (the oscillation frequency) and of the integer value.  Freezing
fixes a weight at ``round(EMA integer)`` once its frequency exceeds the
(cosine-annealed) threshold; dampening adds ``λ(t) Σ (sg(q(w)) - clip(w))²``
(weight units, step detached, clip to ``[qmin·s, qmax·s]``) to the loss with
``λ(t)`` cosine-annealed from 0 to ``dampening_max``.
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn

from .quant import quantized_modules

__all__ = ["QATController", "cosine"]


def cosine(start: float, end: float, frac: float) -> float:
    """Cosine interpolation from ``start`` (frac 0) to ``end`` (frac 1)."""
    frac = min(max(frac, 0.0), 1.0)
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * frac))


class QATController:
    """Tracks oscillations of every QuantLinear / QuantConv2d of ``model``.

    Arguments:
      total_steps: training steps (for the schedules of λ and the threshold).
      momentum: EMA momentum of the oscillation frequency and integer value.
        0.01 (time constant 100 steps) suits runs of a few thousand steps;
        the paper's ~0.001 (1000 steps) needs tens of thousands of steps
        before the EMA settles (see docs/qat.md).
      dampening, dampening_max: add λ(t)·Σ(sg(q(w)) − clip(w))² with λ cosine
        0 → dampening_max over training (``regularizer``).
      freezing, freeze_start, freeze_threshold: from ``freeze_start`` (a
        fraction of ``total_steps``) on, freeze weights whose oscillation
        frequency exceeds the threshold, cosine-annealed from
        ``freeze_threshold[0]`` to ``freeze_threshold[1]``.
      dampening_start: fraction of training at which λ starts rising (0).
    """

    def __init__(self, model: nn.Module, total_steps: int, momentum: float = 0.01,
                 dampening: bool = True, dampening_max: float = 0.1,
                 freezing: bool = True, freeze_start: float = 0.25,
                 freeze_threshold: Tuple[float, float] = (0.1, 0.01),
                 dampening_start: float = 0.0):
        self.model = model
        self.total_steps = max(int(total_steps), 1)
        self.momentum = float(momentum)
        self.dampening = bool(dampening)
        self.dampening_max = float(dampening_max)
        self.dampening_start = float(dampening_start)
        self.freezing = bool(freezing)
        self.freeze_start = float(freeze_start)
        if isinstance(freeze_threshold, (int, float)):
            freeze_threshold = (float(freeze_threshold), float(freeze_threshold))
        self.freeze_threshold = (float(freeze_threshold[0]), float(freeze_threshold[1]))
        self.modules = dict(quantized_modules(model))
        if not self.modules:
            raise ValueError("the model has no QuantLinear/QuantConv2d (call qlr.qat.prepare)")
        self.state: Dict[str, Dict[str, torch.Tensor]] = {}
        self.reset()

    # -- state -----------------------------------------------------------------
    @torch.no_grad()
    def reset(self) -> None:
        """Start tracking from the current integer values (no history)."""
        self.state = {}
        for name, m in self.modules.items():
            q = m.int_weight()
            self.state[name] = {
                "prev_int": q.clone(),
                "prev_dir": torch.zeros_like(q, dtype=torch.int8),
                "osc_ema": torch.zeros(q.shape, dtype=torch.float32, device=q.device),
                "int_ema": q.to(torch.float32),
            }

    def state_dict(self) -> dict:
        return {"state": {n: {k: v.clone() for k, v in s.items()}
                          for n, s in self.state.items()}}

    def load_state_dict(self, sd: dict) -> None:
        for n, s in sd["state"].items():
            if n not in self.state:
                raise KeyError(f"no quantized module {n!r} in the model")
            for k, v in s.items():
                self.state[n][k] = v.to(self.state[n][k].device).clone()

    # -- schedules -------------------------------------------------------------
    def _frac(self, step: int) -> float:
        return step / self.total_steps

    def dampening_lambda(self, step: int) -> float:
        if not self.dampening:
            return 0.0
        f = (self._frac(step) - self.dampening_start) / max(1e-12, 1.0 - self.dampening_start)
        return cosine(0.0, self.dampening_max, f) if f > 0 else 0.0

    def threshold(self, step: int) -> Optional[float]:
        """Freezing threshold at ``step``, None before ``freeze_start``."""
        if not self.freezing or self._frac(step) < self.freeze_start:
            return None
        f = (self._frac(step) - self.freeze_start) / max(1e-12, 1.0 - self.freeze_start)
        return cosine(self.freeze_threshold[0], self.freeze_threshold[1], f)

    # -- the three hooks -------------------------------------------------------
    def regularizer(self, step: int, lam: Optional[float] = None) -> torch.Tensor:
        """λ(t) · Σ over all quantized weights (not frozen) of
        (sg(q(w)) − clip(w))², in weight units (the step is detached)."""
        lam = self.dampening_lambda(step) if lam is None else float(lam)
        first = next(iter(self.modules.values()))
        total = torch.zeros((), dtype=first.weight.dtype, device=first.weight.device)
        if lam == 0.0:
            return total
        for m in self.modules.values():
            s = m.step.detach()[..., None]
            w = m._grouped(m.weight)
            with torch.no_grad():
                q = m._grouped(m.quantized_weight())
            wc = torch.maximum(torch.minimum(w, s * m.qmax), s * m.qmin)
            d = (q - wc) ** 2
            if m.frozen.any():
                d = d * (~m._grouped(m.frozen)).to(d.dtype)
            total = total + d.sum()
        return lam * total

    @torch.no_grad()
    def after_step(self, step: int) -> None:
        """Call after optimizer.step(): update the oscillation and integer
        EMAs and freeze the weights above the threshold."""
        mom = self.momentum
        thr = self.threshold(step)
        for name, m in self.modules.items():
            st = self.state[name]
            q = m.int_weight()
            delta = q - st["prev_int"]
            changed = delta != 0
            direction = torch.sign(delta).to(torch.int8)
            osc = changed & (st["prev_dir"] != 0) & (direction == -st["prev_dir"])
            st["prev_dir"] = torch.where(changed, direction, st["prev_dir"])
            st["osc_ema"].mul_(1 - mom).add_(osc.to(torch.float32), alpha=mom)
            st["int_ema"].mul_(1 - mom).add_(q.to(torch.float32), alpha=mom)
            st["prev_int"] = q
            if thr is not None:
                new = (st["osc_ema"] > thr) & ~m.frozen
                if new.any():
                    value = torch.clamp(torch.round(st["int_ema"]), m.qmin, m.qmax).to(torch.int32)
                    m.frozen_value.copy_(torch.where(new, value, m.frozen_value))
                    m.frozen.logical_or_(new)
                    # Re-impose the value on the latent weight too, so that it
                    # sits on its grid point if the weight is ever unfrozen.
                    s = m.step.detach()[..., None]
                    wq = (m._grouped(m.frozen_value.to(m.weight.dtype)) * s).reshape(m.weight.shape)
                    m.weight.copy_(torch.where(new, wq, m.weight))
                    st["prev_int"] = m.int_weight()

    # -- statistics ------------------------------------------------------------
    def oscillating_fraction(self, threshold: float = 0.01, include_frozen: bool = False) -> float:
        """Fraction of quantized weights whose oscillation frequency (EMA)
        exceeds ``threshold``; frozen weights count as not oscillating unless
        ``include_frozen``."""
        n = hit = 0
        for name, m in self.modules.items():
            o = self.state[name]["osc_ema"] > threshold
            if not include_frozen:
                o = o & ~m.frozen
            hit += int(o.sum())
            n += o.numel()
        return hit / max(n, 1)

    def frozen_fraction(self) -> float:
        n = sum(m.frozen.numel() for m in self.modules.values())
        return sum(int(m.frozen.sum()) for m in self.modules.values()) / max(n, 1)
