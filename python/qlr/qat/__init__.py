"""Quantization-aware training with the fixes of Nagel et al. (ICML 2022),
"Overcoming Oscillations in Quantization-Aware Training" (needs PyTorch).

    from qlr.qat import QuantLinear, QuantConv2d, prepare, QATController, reestimate_batchnorm

    prepare(model, bits=4)                      # nn.Linear/nn.Conv2d -> QuantLinear/QuantConv2d
    ctrl = QATController(model, total_steps)    # dampening + freezing
    for t in range(total_steps):
        loss = criterion(model(x), y) + ctrl.regularizer(t)
        opt.zero_grad(); loss.backward(); opt.step()
        ctrl.after_step(t)
    reestimate_batchnorm(model, train_batches)  # 50 batches
    text = qlr.qat.export_mlir(model, (None, C, H, W))   # CNNs: qlr IR

See docs/qat.md.
"""

from .quant import (QuantConv2d, QuantLinear, lsq_step_init, mse_step_init, prepare,
                    quantized_modules)
from .controller import QATController, cosine
from .bn import reestimate_batchnorm

__all__ = ["QuantLinear", "QuantConv2d", "prepare", "quantized_modules", "QATController",
           "reestimate_batchnorm", "lsq_step_init", "mse_step_init", "cosine", "export_mlir"]


def export_mlir(*args, **kwargs):
    """qlr IR text of a trained CNN; see qlr.qat.export.export_mlir."""
    from .export import export_mlir as _export
    return _export(*args, **kwargs)
