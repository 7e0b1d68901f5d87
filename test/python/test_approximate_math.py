"""qlr-approximate-math: f32 exp as a polynomial, against float64 NumPy.

`qlr-cpu-pipeline` replaces `math.exp` on f32 with upstream MLIR's
polynomial approximation (vectorised by LLVM) plus selects for the special
values. These tests compile `exp` over a tensor with the JIT (which runs the
pipeline) and measure it against the float64 result, in units in the last
place of the f32 result: over the whole normal range, on the values softmax
and SiLU see, and at the edges (underflow to 0 and overflow to +inf on both
sides of each threshold, -inf, +inf, NaN).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "python"))

try:
    import qlr.compiler as qc  # noqa: E402
except ImportError as error:  # pragma: no cover - depends on the build
    pytest.skip(f"qlr.compiler is not built: {error}", allow_module_level=True)

EXP = """
func.func @f(%x: tensor<?xf32>) -> tensor<?xf32> {
  %y = math.exp %x : tensor<?xf32>
  return %y : tensor<?xf32>
}"""


def compiled_exp():
    return qc.jit(qc.Module.parse(EXP), "f")


def ulp_error(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    exact = np.exp(x.astype(np.float64))
    spacing = np.spacing(exact.astype(np.float32)).astype(np.float64)
    return np.abs(y.astype(np.float64) - exact) / spacing


def test_pipeline_approximates_exp() -> None:
    module = qc.Module.parse(EXP)
    module.run_pipeline("builtin.module(func.func(convert-elementwise-to-linalg),qlr-approximate-math)")
    text = module.to_text()
    assert "math.exp" not in text and "math.fma" in text


def test_accuracy_over_the_normal_range() -> None:
    # Every result between FLT_MIN and FLT_MAX, densely near 0 (softmax
    # scores minus their maximum, SiLU's exp(-g)). Within 1 ulp up to
    # x = 80; the last steps below overflow (2^127 times the polynomial) lose
    # a little more.
    f = compiled_exp()
    x = np.concatenate([np.linspace(-87.3, 80.0, 400_001),
                        np.linspace(-20.0, 20.0, 400_001)]).astype(np.float32)
    error = ulp_error(f(x), x)
    assert error.max() <= 1.0, f"max error {error.max():.2f} ulp at x = {x[error.argmax()]}"
    assert np.mean(error) < 0.3
    top = np.linspace(80.0, 88.72, 100_001).astype(np.float32)
    error = ulp_error(f(top), top)
    assert error.max() <= 8.0, f"max error {error.max():.2f} ulp at x = {top[error.argmax()]}"


def test_special_values() -> None:
    inf = np.float32(np.inf)
    # The thresholds (ln FLT_MIN, ln FLT_MAX rounded to f32) and their
    # neighbours outside.
    lo, hi = np.float32(-87.33654), np.float32(88.72283)
    x = np.array([-inf, inf, np.nan, -1e30, 1e30, -104.0, -88.0, 89.0, 0.0, -0.0,
                  np.nextafter(lo, -inf), lo, hi, np.nextafter(hi, inf)], dtype=np.float32)
    y = compiled_exp()(x)
    assert y[0] == 0.0 and y[1] == inf and np.isnan(y[2])
    assert y[3] == 0.0 and y[4] == inf
    # Below ln(FLT_MIN) the result is flushed to 0; above ln(FLT_MAX), +inf.
    assert y[5] == 0.0 and y[6] == 0.0 and y[7] == inf
    assert y[8] == 1.0 and y[9] == 1.0
    # Just past each threshold: 0 and +inf; just inside: finite and close.
    assert y[10] == 0.0 and y[11] > 0.0 and ulp_error(y[11:12], x[11:12])[0] <= 2.0
    assert np.isfinite(y[12]) and ulp_error(y[12:13], x[12:13])[0] <= 8.0
    assert y[13] == inf
