"""The CPU's linear-layer kernels (qlr-lower-contractions) against NumPy.

`qlr.linear %x, %w` runs one of two kernels: from
`packed-min-tokens` (8) tokens on, packed weight panels (32 weight rows
transposed into a stack buffer, 256 columns of K at a time, tiles of 6
tokens); below that, register-tiled dot products. Both meet every tail here:
token counts around the tile sizes, weight rows past the last full panel,
K that is not a multiple of 16 or spans several chunks, a depth known only
at run time (the Gram matrices of calibration, `x` and `w` both [N, ?]),
and quantized weights whose decoder the kernel runs (panels of decoded
rows). Each result is compared with a float64 product (of the dequantized
weight), relative to sum_k |x| |w| (what float32 rounding of the sum is
bounded by).
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


def check(y: np.ndarray, x: np.ndarray, w: np.ndarray) -> None:
    reference = x.astype(np.float64) @ w.astype(np.float64).T
    bound = np.abs(x).astype(np.float64) @ np.abs(w).astype(np.float64).T
    error = np.abs(y - reference) / np.maximum(bound, 1e-30)
    assert y.shape == reference.shape
    assert error.max() < 1e-6, f"max relative error {error.max():.3g}"


# (tokens, K, N): tokens below and above packed-min-tokens and around the
# tile sizes (4 and 6), N below one panel, one panel plus leftovers and
# several panels, K below one vector, with a masked tail, and over several
# 256-column chunks.
SHAPES = [
    (1, 20, 6), (5, 20, 6), (7, 33, 40), (8, 33, 40), (9, 16, 32),
    (13, 300, 70), (24, 513, 96), (40, 7, 45), (6, 600, 64), (61, 257, 33),
]


@pytest.mark.parametrize("tokens,k,n", SHAPES)
def test_static_depth(tokens: int, k: int, n: int) -> None:
    text = f"""
func.func @f(%x: tensor<?x{k}xf32>, %w: tensor<{n}x{k}xf32>) -> tensor<?x{n}xf32> {{
  %y = qlr.linear %x, %w : tensor<?x{k}xf32>, tensor<{n}x{k}xf32> -> tensor<?x{n}xf32>
  return %y : tensor<?x{n}xf32>
}}"""
    f = qc.jit(qc.Module.parse(text), "f")
    rng = np.random.default_rng(tokens * 1000 + k + n)
    x = rng.standard_normal((tokens, k)).astype(np.float32)
    w = rng.standard_normal((n, k)).astype(np.float32)
    check(f(x, w), x, w)
    # The same compiled kernel on another token count takes the other path.
    x2 = rng.standard_normal((3 if tokens >= 8 else 17, k)).astype(np.float32)
    check(f(x2, w), x2, w)


@pytest.mark.parametrize("n,tokens", [(4, 3), (40, 100), (70, 300), (33, 16)])
def test_gram_matrix(n: int, tokens: int) -> None:
    """X^T X with the tokens as the (dynamic) depth, as calibration taps it."""
    text = f"""
func.func @f(%x: tensor<{n}x?xf32>) -> tensor<{n}x{n}xf32> {{
  %y = qlr.linear %x, %x : tensor<{n}x?xf32>, tensor<{n}x?xf32> -> tensor<{n}x{n}xf32>
  return %y : tensor<{n}x{n}xf32>
}}"""
    f = qc.jit(qc.Module.parse(text), "f")
    x = np.random.default_rng(n + tokens).standard_normal((n, tokens)).astype(np.float32)
    check(f(x), x, x)


def dense(a: np.ndarray) -> str:
    return "dense<" + np.array2string(np.asarray(a), separator=", ", threshold=1 << 30, floatmode="unique",
                                      max_line_width=1 << 30).replace("\n", "") + ">"


# (tokens, K, N, format): quantized weights whose decoder is fused into the
# kernel. From 8 tokens on, panels of decoded rows (two full panels of 32 and
# 6 rows left over at 16 lanes); below, blocks of 4 decoded rows. int4 with
# groups of 32 decodes with vector operations, int3 element by element.
QUANTIZED = [
    (23, 320, 70, "int4, group = 32, asymmetric, scale = f16"),
    (5, 320, 70, "int4, group = 32, asymmetric, scale = f16"),
    (9, 192, 40, "int3, group = 64, asymmetric, scale = f16"),
    (12, 64, 33, "int8, group = 64, asymmetric, scale = f16"),
]


@pytest.mark.parametrize("tokens,k,n,fmt", QUANTIZED)
def test_fused_decoder(tokens: int, k: int, n: int, fmt: str) -> None:
    rng = np.random.default_rng(tokens + k + n)
    q = qc.quantize(rng.standard_normal((n, k)).astype(np.float32), fmt)
    ct = f"tensor<{n}x{q.packed.shape[1]}xi8>"
    st = f"tensor<{n}x{q.scales.shape[1]}xf16>"
    zt = st.replace("f16", "i8")
    qt = f"!qlr.qtensor<{n}x{k}xf32, {q.format}>"
    text = f"""
func.func @f(%x: tensor<?x{k}xf32>) -> tensor<?x{n}xf32> {{
  %codes = arith.constant {dense(q.packed)} : {ct}
  %scales = arith.constant {dense(q.scales)} : {st}
  %zp = arith.constant {dense(q.zero_points.view(np.int8))} : {zt}
  %w = qlr.pack %codes, %scales, %zp : {ct}, {st}, {zt} -> {qt}
  %y = qlr.linear %x, %w : tensor<?x{k}xf32>, {qt} -> tensor<?x{n}xf32>
  return %y : tensor<?x{n}xf32>
}}"""
    f = qc.jit(qc.Module.parse(text), "f")
    w = q.dequantize()
    for rows in (tokens, 3 if tokens >= 8 else 17):
        x = rng.standard_normal((rows, k)).astype(np.float32)
        check(f(x), x, w)
