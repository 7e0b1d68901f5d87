"""qlr-quantize-linear / qlr-loftq / qlr-dequantize-weights from the outside.

The oracle is a numpy implementation of the closed forms in
include/qlr/Numerics/Quantize.h and docs/Design.md (round to nearest,
symmetric absmax and asymmetric min/max scales rounded to the scale type,
codebooks scaled by absmax), written independently of lib/Numerics. Weights go
in as dense_resource blobs; quant-opt quantizes them, qlr-dequantize-weights
decodes them back to float, and the decoded blob is compared bit for bit.

The end-to-end tests import a synthetic LLaMA, quantize it, and check that
qlr-run still works and that the error behaves as it must (8-bit close to
float, GPTQ no worse than RTN on the same model and calibration data).
"""

import json
import pathlib
import re
import subprocess

import numpy as np
import pytest

DATA = pathlib.Path(__file__).resolve().parents[3] / "shared" / "data"


def resource_blob(name, array):
    return f'"{name}": "0x04000000{array.astype("<f4").tobytes().hex().upper()}"'


def module_with_weight(w):
    n, k = w.shape
    return f"""
func.func @f(%x: tensor<2x{k}xf32>) -> tensor<2x{n}xf32> {{
  %w = arith.constant dense_resource<w> : tensor<{n}x{k}xf32>
  %y = qlr.linear %x, %w : tensor<2x{k}xf32>, tensor<{n}x{k}xf32> -> tensor<2x{n}xf32>
  return %y : tensor<2x{n}xf32>
}}
{{-#
  dialect_resources: {{ builtin: {{ {resource_blob("w", w)} }} }}
#-}}
"""


def decoded_weight(quant_opt, ir, pipeline):
    result = subprocess.run([quant_opt, "-", f"--pass-pipeline=builtin.module({pipeline},qlr-dequantize-weights)"],
                            input=ir, text=True, capture_output=True, check=False)
    assert result.returncode == 0, result.stderr
    match = re.search(r'\bw(?:_\d+)?: "0x04000000([0-9A-F]*)"', result.stdout)
    assert match, result.stdout[-2000:]
    assert "qlr.pack" not in result.stdout
    return np.frombuffer(bytes.fromhex(match.group(1)), dtype="<f4")


def to_f16(x):
    return np.float32(np.float16(x))


def rtn_reference(w, bits, group, symmetric, codebook=None):
    """Closed form of Quantize.h in float32 with f16 scales."""
    n, k = w.shape
    qmax = np.float32(2 ** bits - 1)
    out = np.empty_like(w)
    group = group or k
    for r in range(n):
        for g0 in range(0, k, group):
            x = w[r, g0:g0 + group].astype(np.float32)
            if codebook is not None:
                s = to_f16(np.max(np.abs(x)))
                idx = np.argmin(np.abs(x[:, None] / s - codebook[None, :]), axis=1)
                out[r, g0:g0 + group] = s * codebook[idx]
            elif symmetric:
                z = np.float32(2 ** (bits - 1))
                s = to_f16(np.float32(2) * np.max(np.abs(x)) / qmax)
                c = np.clip(np.rint(x / s) + z, 0, qmax)
                out[r, g0:g0 + group] = s * (c - z)
            else:
                lo = np.float32(min(0.0, x.min()))
                hi = np.float32(max(0.0, x.max()))
                s = to_f16((hi - lo) / qmax)
                z = np.clip(np.rint(-lo / s), 0, qmax)
                c = np.clip(np.rint(x / s) + z, 0, qmax)
                out[r, g0:g0 + group] = s * (c - z)
    return out


CASES = [(bits, group, sym) for bits in (2, 3, 4, 8) for group in (0, 16, 24) for sym in (True, False)]


@pytest.mark.parametrize("bits,group,sym", CASES)
def test_rtn_matches_closed_form(quant_opt, bits, group, sym):
    # K = 40: group 24 leaves a partial last group of 16.
    w = np.random.default_rng(bits * 100 + group).normal(size=(6, 40)).astype(np.float32)
    got = decoded_weight(quant_opt, module_with_weight(w),
                         f"qlr-quantize-linear{{bits={bits} group-size={group} "
                         f"symmetric={'true' if sym else 'false'}}}")
    # Exact: the reference repeats Quantize.h's float32 operations (max,
    # single correctly rounded divisions and products, no sums), which every
    # instruction set rounds alike.
    np.testing.assert_array_equal(got.reshape(w.shape), rtn_reference(w, bits, group, sym))


def clip_search_reference(w, bits, group, symmetric, steps=20, min_shrink=0.6):
    """quantizeRTNClipSearch: per group, the shrink factor of the range with
    the smallest squared error (first of equals, i.e. the larger factor)."""
    n, k = w.shape
    f32 = np.float32
    qmax = f32(2 ** bits - 1)
    out = np.empty_like(w)
    for r in range(n):
        for g0 in range(0, k, group):
            x = w[r, g0:g0 + group].astype(f32)
            lo, hi = f32(min(0.0, x.min())), f32(max(0.0, x.max()))
            best = None
            for i in range(steps + 1):
                p = f32(1) - f32(i) * (f32(1) - f32(min_shrink)) / f32(steps)
                plo, phi = p * lo, p * hi
                if symmetric:
                    z = f32(2 ** (bits - 1))
                    s = to_f16(f32(2) * max(-plo, phi) / qmax)
                else:
                    s = to_f16((phi - plo) / qmax)
                    z = np.clip(np.rint(-plo / s), 0, qmax) if s != 0 else f32(0)
                c = np.clip(np.rint(x / s) + z, 0, qmax) if s != 0 else np.full_like(x, z)
                y = (s * (c - z)).astype(f32)
                err = float(np.sum((x.astype(np.float64) - y.astype(np.float64)) ** 2))
                if best is None or err < best[0]:
                    best = (err, y)
            out[r, g0:g0 + group] = best[1]
    return out


@pytest.mark.parametrize("bits,sym", [(2, True), (3, False), (4, True), (4, False)])
def test_clip_search_matches_reference(quant_opt, bits, sym):
    w = np.random.default_rng(40 + bits).standard_t(3, size=(5, 40)).astype(np.float32)
    got = decoded_weight(quant_opt, module_with_weight(w),
                         f"qlr-quantize-linear{{bits={bits} group-size=16 clip-search=true "
                         f"symmetric={'true' if sym else 'false'}}}")
    expected = clip_search_reference(w, bits, 16, sym)
    # Exact as well: the candidates' errors are sums of exact float64 squares
    # of float32 differences, which numpy adds in another order than
    # Quantize.cpp; they could pick different candidates only if two errors
    # agreed to ~1e-15 relative without giving the same output.
    np.testing.assert_array_equal(got.reshape(w.shape), expected)
    # And it is never worse than the full range (per group by construction;
    # summed in float64, where the squares are exact).
    full = rtn_reference(w, bits, 16, sym)
    w64 = w.astype(np.float64)
    assert np.sum((expected - w64) ** 2) <= np.sum((full - w64) ** 2)


def test_lut_matches_closed_form(quant_opt):
    table = np.array([-1.0, -0.4, 0.1, 0.7], dtype=np.float32)
    w = np.random.default_rng(7).normal(size=(5, 48)).astype(np.float32)
    got = decoded_weight(quant_opt, module_with_weight(w),
                         "qlr-quantize-linear{format=lut bits=2 table=-1.0,-0.4,0.1,0.7 group-size=16}")
    np.testing.assert_array_equal(got.reshape(w.shape), rtn_reference(w, 2, 16, True, table))


def test_loftq_beats_plain_quantization(quant_opt):
    # A weight with low-rank structure plus noise: the low-rank correction
    # must recover much of what 2-bit quantization loses.
    rng = np.random.default_rng(3)
    w = (rng.normal(size=(64, 4)) @ rng.normal(size=(4, 96)) + 0.1 * rng.normal(size=(64, 96))).astype(np.float32)
    plain = decoded_weight(quant_opt, module_with_weight(w), "qlr-quantize-linear{format=nf2 group-size=32}")
    errors = []
    for rank in (2, 4, 8):
        loft = decoded_weight(quant_opt, module_with_weight(w),
                              f"qlr-loftq{{format=nf2 group-size=32 rank={rank} iters=3}}")
        errors.append(np.linalg.norm(loft - w.ravel()))
    plain_error = np.linalg.norm(plain - w.ravel())
    # Properties of LoftQ with wide margins, not rounding bounds.
    assert plain_error > errors[0] > errors[1] > errors[2]
    # Rank 8 removes a third of the 2-bit error on this matrix (0.67x).
    assert errors[2] < 0.75 * plain_error, (errors, plain_error)


@pytest.fixture(scope="module")
def synthetic(quant_opt, tmp_path_factory):
    bin_dir = pathlib.Path(quant_opt).parent
    path = tmp_path_factory.mktemp("synthetic") / "float.mlirbc"
    subprocess.run([bin_dir / "qlr-import", "--synthetic", "-o", path], check=True, capture_output=True)
    return bin_dir, path


def perplexity(bin_dir, model, text):
    result = subprocess.run([bin_dir / "qlr-run", model, "--perplexity", text, "--ctx", "64",
                             "--max-windows", "4", "--json", "--quiet", "-t", "1"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["ppl"]


def quantize(bin_dir, model, out, pipeline):
    result = subprocess.run([bin_dir / "quant-opt", model, f"--pass-pipeline=builtin.module({pipeline})",
                             "--emit-bytecode", "-o", out], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return out


def test_quantized_synthetic_model_runs(synthetic, tmp_path):
    bin_dir, model = synthetic
    text = tmp_path / "text.txt"
    text.write_text("Once upon a time, there was a little cat who liked the sun. " * 40)
    base = perplexity(bin_dir, model, text)
    w8 = perplexity(bin_dir, quantize(bin_dir, model, tmp_path / "w8.mlirbc",
                                      "qlr-quantize-linear{bits=8 group-size=0}"), text)
    # 8-bit per-channel quantization noise (~0.7% RMS of the weights) moves
    # the perplexity by a fraction of a percent: a property, not rounding.
    assert abs(w8 - base) / base < 0.01
    calib = f"data=generate samples=8 seq-len=64"
    rtn = perplexity(bin_dir, quantize(bin_dir, model, tmp_path / "rtn.mlirbc",
                                       "qlr-quantize-linear{bits=3 group-size=32}"), text)
    gptq = perplexity(bin_dir, quantize(bin_dir, model, tmp_path / "gptq.mlirbc",
                                        f"qlr-quantize-linear{{method=gptq bits=3 group-size=32 {calib}}}"), text)
    loftq = perplexity(bin_dir, quantize(bin_dir, model, tmp_path / "loftq.mlirbc",
                                         "qlr-loftq{format=nf2 rank=4 iters=2 group-size=32}"), text)
    for value in (rtn, gptq, loftq):
        assert np.isfinite(value) and value > 1.0
    # The linears shrink about 4x; the float embeddings stay.
    assert (tmp_path / "w8.mlirbc").stat().st_size < 0.6 * pathlib.Path(model).stat().st_size


def test_gptq_needs_calibration_and_imported_model(quant_opt, synthetic, tmp_path):
    bin_dir, model = synthetic
    result = subprocess.run([quant_opt, model, "--qlr-quantize-linear=method=gptq", "-o", tmp_path / "x.mlirbc"],
                            capture_output=True, text=True)
    assert result.returncode != 0
    assert "needs calibration data: data=FILE" in result.stderr
    assert not (tmp_path / "x.mlirbc").exists()
    result = subprocess.run([quant_opt, model, "--qlr-quantize-linear=method=gptq data=/nonexistent",
                             "-o", tmp_path / "x.mlirbc"], capture_output=True, text=True)
    assert result.returncode != 0 and "cannot read calibration file '/nonexistent'" in result.stderr
