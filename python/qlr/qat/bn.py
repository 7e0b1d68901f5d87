"""BatchNorm re-estimation after QAT (Nagel et al. 2022, section 4)."""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["reestimate_batchnorm"]

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@torch.no_grad()
def reestimate_batchnorm(model: nn.Module, batches_iterable, num_batches: int = 50):
    """Recompute the running statistics of every BatchNorm of ``model`` from
    up to ``num_batches`` batches (inputs, or (inputs, ...) tuples/lists whose
    first element is the input): statistics reset, cumulative average
    (momentum None), only the BatchNorms in train mode, no gradients.  Modes
    and momenta are restored.  Returns ``model``."""
    bns = [m for m in model.modules() if isinstance(m, _BN)]
    if not bns:
        return model
    modes = {m: m.training for m in model.modules()}
    momenta = {m: m.momentum for m in bns}
    try:
        model.eval()
        for m in bns:
            m.reset_running_stats()
            m.momentum = None
            m.train()
        for i, batch in enumerate(batches_iterable):
            if i >= num_batches:
                break
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            model(x)
    finally:
        for m, mode in modes.items():
            m.training = mode
        for m, mom in momenta.items():
            m.momentum = mom
    return model
