"""GPTQ (and basis selection, norm tweaking) on any graph:
`qlr-quantize-linear method=gptq` calibrates a module that is not a language
model by compiling and running its own IR on arguments read from a .npz/.npy
file (one array per argument, shaped (samples, *shape)).

The graphs (an MLP, a bidirectional encoder block) get seeded random weights
and anisotropic calibration inputs; GPTQ must beat round-to-nearest on
held-out inputs of the same distribution, calibrate every linear (no "gets no
calibration inputs" warning) and reject malformed calibration files with a
clear message and no output file. Quantization runs in quant-opt; the float
and quantized modules run through the qlr.compiler JIT.
"""

from __future__ import annotations

import itertools
import json
import pathlib
import re
import subprocess
import sys
from typing import Callable

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "python"))

try:
    import qlr.compiler as qc  # noqa: E402
except ImportError as error:  # pragma: no cover - depends on the build
    pytest.skip(f"qlr.compiler is not built: {error}", allow_module_level=True)

R, D, F, HEADS = 16, 64, 128, 4          # rows per sample, width, MLP width, heads
HD = D // HEADS
NO_CALIBRATION = "gets no calibration inputs"
GPTQ = "method=gptq bits=3 group-size=32"
RTN = "method=rtn bits=3 group-size=32"
T, TF = f"tensor<{R}x{D}xf32>", f"tensor<{R}x{F}xf32>"
RUNS = itertools.count()
MIX = np.random.default_rng(1).standard_normal((D, D)).astype(np.float32)


def inputs(seed: int, samples: int) -> np.ndarray:
    """Correlated features (z @ MIX) with a few large-magnitude channels."""
    x = np.random.default_rng(seed).standard_normal((samples, R, D)) @ MIX / 4
    x[..., [3, 17, 40]] *= 8.0
    return x.astype(np.float32)


class Graph:
    """Builds a module whose constants are dense hex literals or
    dense_resource blobs (`storage`), with weights from a seeded RNG."""

    def __init__(self, storage: str = "resource", seed: int = 0) -> None:
        self.storage, self.rng = storage, np.random.default_rng(seed)
        self.blobs: dict[str, str] = {}
        self.values: dict[str, np.ndarray] = {}

    def const(self, name: str, a: np.ndarray) -> str:
        a = np.ascontiguousarray(a, dtype="<f4")
        self.values[name] = a
        data = a.tobytes().hex().upper()
        if self.storage == "resource":
            self.blobs[name] = "0x04000000" + data   # alignment 4, then the floats
            attr = f"dense_resource<{name}>"
        else:
            attr = f'dense<"0x{data}">'
        shape = "x".join(map(str, a.shape))
        return f"  %{name} = arith.constant {attr} : tensor<{shape}xf32>\n"

    def linear(self, out: str, x: str, name: str, k: int, n: int) -> str:
        """y = x Wᵀ + b with W [n, k] ~ N(0, 1/k) and a small bias."""
        w = self.rng.standard_normal((n, k)) / np.sqrt(k)
        b = 0.1 * self.rng.standard_normal(n)
        return (self.const(name, w) + self.const(name + "_b", b) +
                f"  %{out} = qlr.linear %{x}, %{name}, %{name}_b : tensor<{R}x{k}xf32>, "
                f"tensor<{n}x{k}xf32>, tensor<{n}xf32> -> tensor<{R}x{n}xf32>\n")

    def layer_norm(self, out: str, x: str, name: str) -> str:
        g = self.const(name + "_g", 1 + 0.1 * self.rng.standard_normal(D))
        b = self.const(name + "_b", 0.1 * self.rng.standard_normal(D))
        return (g + b + f"  %{out} = qlr.layer_norm %{x}, %{name}_g, %{name}_b eps = 1.0e-5 : "
                f"{T}, tensor<{D}xf32>, tensor<{D}xf32>\n")

    def module(self, func: str) -> str:
        if not self.blobs:
            return func
        entries = ",\n".join(f'      {k}: "{v}"' for k, v in self.blobs.items())
        return func + "{-#\n  dialect_resources: {\n    builtin: {\n" + entries + "\n    }\n  }\n#-}\n"


def gelu(out: str, x: str) -> str:
    """tanh-approximated GELU as a linalg.generic on tensor<R x F>."""
    return f"""  %{out}_e = tensor.empty() : {TF}
  %{out} = linalg.generic {{indexing_maps = [affine_map<(i, j) -> (i, j)>, affine_map<(i, j) -> (i, j)>],
      iterator_types = ["parallel", "parallel"]}} ins(%{x} : {TF}) outs(%{out}_e : {TF}) {{
  ^bb0(%a: f32, %go: f32):
    %c = arith.constant 0.7978845608 : f32
    %c3 = arith.constant 0.044715 : f32
    %half = arith.constant 0.5 : f32
    %one = arith.constant 1.0 : f32
    %a2 = arith.mulf %a, %a : f32
    %a3 = arith.mulf %a2, %a : f32
    %t0 = arith.mulf %a3, %c3 : f32
    %t1 = arith.addf %a, %t0 : f32
    %t2 = arith.mulf %t1, %c : f32
    %t = math.tanh %t2 : f32
    %t3 = arith.addf %t, %one : f32
    %t4 = arith.mulf %a, %t3 : f32
    %y = arith.mulf %t4, %half : f32
    linalg.yield %y : f32
  }} -> {TF}
"""


def np_gelu(h: np.ndarray) -> np.ndarray:
    return 0.5 * h * (1 + np.tanh(0.7978845608 * (h + 0.044715 * h ** 3)))


def np_layer_norm(x: np.ndarray, g: np.ndarray, b: np.ndarray) -> np.ndarray:
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-5) * g + b


def mlp_graph(storage: str = "resource") -> tuple[str, Callable[[np.ndarray], np.ndarray]]:
    """@mlp: linear(64->128)+bias, GELU, linear(128->64)+bias."""
    g = Graph(storage)
    body = g.linear("h", "x", "fc1", D, F) + gelu("a", "h") + g.linear("y", "a", "fc2", F, D)
    text = g.module(f"func.func @mlp(%x: {T}) -> {T} {{\n{body}  return %y : {T}\n}}\n")
    v = g.values
    return text, lambda x: np_gelu(x @ v["fc1"].T + v["fc1_b"]) @ v["fc2"].T + v["fc2_b"]


def encoder_block(g: Graph, prefix: str) -> str:
    """One pre-LN block reading %x and defining %y: 4-head unmasked
    attention, output projection and residual; LN, GELU MLP and residual.
    Weights are named PREFIX + name (ln1, wq, ..., fc2)."""
    S3, P = f"tensor<{R}x{HEADS}x{HD}xf32>", f"tensor<{HEADS}x{R}x{R}xf32>"
    M2, M3 = f"tensor<{HEADS}x{R}xf32>", "affine_map<(h, i, j) -> (h, i)>"
    body = g.layer_norm("n1", "x", prefix + "ln1")
    for p in "qkv":
        body += g.linear(p, "n1", prefix + "w" + p, D, D)
        body += f"  %{p}3 = tensor.expand_shape %{p} [[0], [1, 2]] output_shape [{R}, {HEADS}, {HD}] : {T} into {S3}\n"
    body += f"""  %zero = arith.constant 0.0 : f32
  %ninf = arith.constant -3.0e38 : f32
  %pe = tensor.empty() : {P}
  %pz = linalg.fill ins(%zero : f32) outs(%pe : {P}) -> {P}
  %s = linalg.generic {{indexing_maps = [affine_map<(h, i, j, d) -> (i, h, d)>, affine_map<(h, i, j, d) -> (j, h, d)>,
      affine_map<(h, i, j, d) -> (h, i, j)>], iterator_types = ["parallel", "parallel", "parallel", "reduction"]}}
      ins(%q3, %k3 : {S3}, {S3}) outs(%pz : {P}) {{
  ^bb0(%a: f32, %b: f32, %acc: f32):
    %scale = arith.constant {1 / np.sqrt(HD)} : f32
    %ab = arith.mulf %a, %b : f32
    %abs = arith.mulf %ab, %scale : f32
    %r = arith.addf %acc, %abs : f32
    linalg.yield %r : f32
  }} -> {P}
  %me = tensor.empty() : {M2}
  %mi = linalg.fill ins(%ninf : f32) outs(%me : {M2}) -> {M2}
  %m = linalg.generic {{indexing_maps = [affine_map<(h, i, j) -> (h, i, j)>, {M3}],
      iterator_types = ["parallel", "parallel", "reduction"]}} ins(%s : {P}) outs(%mi : {M2}) {{
  ^bb0(%a: f32, %acc: f32):
    %r = arith.maximumf %a, %acc : f32
    linalg.yield %r : f32
  }} -> {M2}
  %e = linalg.generic {{indexing_maps = [affine_map<(h, i, j) -> (h, i, j)>, {M3}, affine_map<(h, i, j) -> (h, i, j)>],
      iterator_types = ["parallel", "parallel", "parallel"]}} ins(%s, %m : {P}, {M2}) outs(%pe : {P}) {{
  ^bb0(%a: f32, %b: f32, %o: f32):
    %d = arith.subf %a, %b : f32
    %r = math.exp %d : f32
    linalg.yield %r : f32
  }} -> {P}
  %zi = linalg.fill ins(%zero : f32) outs(%me : {M2}) -> {M2}
  %sum = linalg.generic {{indexing_maps = [affine_map<(h, i, j) -> (h, i, j)>, {M3}],
      iterator_types = ["parallel", "parallel", "reduction"]}} ins(%e : {P}) outs(%zi : {M2}) {{
  ^bb0(%a: f32, %acc: f32):
    %r = arith.addf %a, %acc : f32
    linalg.yield %r : f32
  }} -> {M2}
  %oe = tensor.empty() : {S3}
  %oz = linalg.fill ins(%zero : f32) outs(%oe : {S3}) -> {S3}
  %o3 = linalg.generic {{indexing_maps = [affine_map<(h, i, d, j) -> (h, i, j)>, affine_map<(h, i, d, j) -> (h, i)>,
      affine_map<(h, i, d, j) -> (j, h, d)>, affine_map<(h, i, d, j) -> (i, h, d)>],
      iterator_types = ["parallel", "parallel", "parallel", "reduction"]}}
      ins(%e, %sum, %v3 : {P}, {M2}, {S3}) outs(%oz : {S3}) {{
  ^bb0(%pa: f32, %za: f32, %va: f32, %acc: f32):
    %pv = arith.mulf %pa, %va : f32
    %pvz = arith.divf %pv, %za : f32
    %r = arith.addf %acc, %pvz : f32
    linalg.yield %r : f32
  }} -> {S3}
  %ctx = tensor.collapse_shape %o3 [[0], [1, 2]] : {S3} into {T}
"""
    body += g.linear("att", "ctx", prefix + "wo", D, D) + f"  %r1 = arith.addf %x, %att : {T}\n"
    body += g.layer_norm("n2", "r1", prefix + "ln2") + g.linear("h", "n2", prefix + "fc1", D, F) + gelu("a", "h")
    body += g.linear("mo", "a", prefix + "fc2", F, D) + f"  %y = arith.addf %r1, %mo : {T}\n"
    return body


def encoder_graph(blocks: int = 1) -> tuple[str, Callable[[np.ndarray], np.ndarray]]:
    """@encoder: `blocks` encoder blocks (encoder_block); six linears per
    block, all with biases. Block i > 0 names its values and weights bI_*."""
    g = Graph("resource", seed=1)
    body, x = "", "x"
    for i in range(blocks):
        prefix = f"b{i}_" if i else ""
        block = encoder_block(g, prefix)
        if i:
            block = re.sub(r"%([A-Za-z_]\w*)", lambda m: f"%{prefix}{m.group(1)}", block)
            block = block.replace(f"%{prefix}x,", f"%{x},").replace(f"%{prefix}x :", f"%{x} :")
        body, x = body + block, f"{prefix}y"
    text = g.module(f"func.func @encoder(%x: {T}) -> {T} {{\n{body}  return %{x} : {T}\n}}\n")
    v = g.values

    def reference(x: np.ndarray) -> np.ndarray:
        for i in range(blocks):
            p = f"b{i}_" if i else ""
            lin = lambda a, n: a @ v[p + n].T + v[p + n + "_b"]  # noqa: E731
            n1 = np_layer_norm(x, v[p + "ln1_g"], v[p + "ln1_b"])
            q, k, val = (lin(n1, "w" + c).reshape(R, HEADS, HD) for c in "qkv")
            s = np.einsum("ihd,jhd->hij", q, k) / np.sqrt(HD)
            e = np.exp(s - s.max(-1, keepdims=True))
            o = np.einsum("hij,jhd->ihd", e / e.sum(-1, keepdims=True), val).reshape(R, D)
            r1 = x + lin(o, "wo")
            x = r1 + lin(np_gelu(lin(np_layer_norm(r1, v[p + "ln2_g"], v[p + "ln2_b"]), "fc1")), "fc2")
        return x
    return text, reference


def quant_opt_run(quant_opt: str, src: pathlib.Path, out: pathlib.Path, options: str):
    return subprocess.run([quant_opt, str(src), f"--qlr-quantize-linear={options}", "-o", str(out)],
                          capture_output=True, text=True, timeout=300)


def quantize(quant_opt: str, src: pathlib.Path, options: str) -> pathlib.Path:
    """Runs quant-opt; checks it succeeded and calibrated every weight."""
    out = src.with_name(f"{src.stem}.q{next(RUNS)}.mlir")
    result = quant_opt_run(quant_opt, src, out, options)
    assert result.returncode == 0, result.stderr
    assert NO_CALIBRATION not in result.stderr, result.stderr
    return out


def quantized_linears(path: pathlib.Path) -> int:
    """The number of linears with a 3-bit, group-32 weight."""
    text = path.read_text()
    assert re.findall(r"#qlr\.format<[^>]*>", text) == ["#qlr.format<int3, group = 32, scale = f16>"]
    return len(re.findall(r"= qlr\.linear [^\n]*!qlr\.qtensor<", text))


def output_error(fn, reference, xs: np.ndarray) -> float:
    """Relative Frobenius error of `fn` against `reference` over samples."""
    diff = sum(float(np.sum((fn(x) - reference(x)) ** 2)) for x in xs)
    return np.sqrt(diff / sum(float(np.sum(reference(x) ** 2)) for x in xs))


def gptq_vs_rtn(quant_opt, tmp_path, text, name, reference, linears):
    """Checks the float JIT against NumPy, quantizes with GPTQ and RTN and
    returns both output errors on held-out inputs."""
    src = tmp_path / f"{name}.mlir"
    src.write_text(text)
    float_fn = qc.jit(qc.Module.load(src), name)
    held_out = inputs(seed=99, samples=8)
    for x in held_out[:2]:
        np.testing.assert_allclose(float_fn(x), reference(x), rtol=1e-4, atol=1e-4)
    np.savez(tmp_path / "calib.npz", arg0=inputs(seed=7, samples=12))
    errors = {}
    for method, options in (("gptq", f"{GPTQ} data={tmp_path / 'calib.npz'}"), ("rtn", RTN)):
        out = quantize(quant_opt, src, options)
        assert quantized_linears(out) == linears, out.read_text()[:2000]
        errors[method] = output_error(qc.jit(qc.Module.load(out), name), float_fn, held_out)
    print(f"\n{name}: relative output error GPTQ {errors['gptq']:.4f}, RTN {errors['rtn']:.4f}")
    return errors["gptq"], errors["rtn"]


@pytest.mark.parametrize("storage", ["resource", "dense"])
def test_mlp_gptq_beats_rtn(quant_opt, tmp_path, storage):
    """Both weight encodings (dense_resource blobs, dense hex literals) are
    float constants and must be calibrated."""
    text, reference = mlp_graph(storage)
    gptq, rtn = gptq_vs_rtn(quant_opt, tmp_path, text, "mlp", reference, linears=2)
    assert gptq < 0.9 * rtn


def test_encoder_gptq_beats_rtn(quant_opt, tmp_path):
    text, reference = encoder_graph()
    gptq, rtn = gptq_vs_rtn(quant_opt, tmp_path, text, "encoder", reference, linears=6)
    assert gptq < 0.9 * rtn


def blob(path: pathlib.Path, key: str) -> str:
    match = re.search(rf'\b{re.escape(key)}: "(0x[0-9A-Fa-f]+)"', path.read_text())
    assert match, f"no resource {key} in {path}"
    return match.group(1)


def test_sequential_stages_and_data_options(quant_opt, tmp_path):
    """fc1 sees the float inputs either way; fc2, quantized after fc1, sees
    fc1's quantized outputs, which differ from the float model's. Also: a
    .npy feeds a one-argument function like a .npz, and samples=N uses the
    first N samples."""
    src = tmp_path / "mlp.mlir"
    src.write_text(mlp_graph()[0])
    calib = inputs(seed=7, samples=12)
    np.savez(tmp_path / "calib.npz", arg0=calib)
    np.save(tmp_path / "calib.npy", calib)
    np.savez(tmp_path / "first4.npz", calib[:4])   # unnamed: arr_0, in argument order
    plain = f"{GPTQ} float-target=false data={tmp_path}/calib"
    both = quantize(quant_opt, src, plain + ".npz")
    fc1 = quantize(quant_opt, src, plain + ".npz include=fc1")
    fc2 = quantize(quant_opt, src, plain + ".npz include=fc2")
    assert blob(both, "fc1.codes") == blob(fc1, "fc1.codes")
    assert blob(both, "fc2.codes") != blob(fc2, "fc2.codes")
    assert both.read_text() == quantize(quant_opt, src, plain + ".npy").read_text()
    four = quantize(quant_opt, src, f"{GPTQ} data={tmp_path}/calib.npz samples=4")
    assert four.read_text() == quantize(quant_opt, src, f"{GPTQ} data={tmp_path}/first4.npz").read_text()
    assert four.read_text() != quantize(quant_opt, src, f"{GPTQ} data={tmp_path}/calib.npz").read_text()


def test_entry_picks_the_function(quant_opt, tmp_path):
    """With two public functions and no @forward, entry=NAME is required."""
    src = tmp_path / "two.mlir"
    src.write_text(mlp_graph()[0].replace("{-#", f"func.func @twice(%x: {T}) -> {T} {{\n"
                                          f"  %y = arith.addf %x, %x : {T}\n  return %y : {T}\n}}\n{{-#", 1))
    np.savez(tmp_path / "calib.npz", inputs(seed=7, samples=8))
    options = f"{GPTQ} data={tmp_path / 'calib.npz'}"
    result = quant_opt_run(quant_opt, src, tmp_path / "out.mlir", options)
    assert result.returncode != 0 and "name one with entry=NAME" in result.stderr, result.stderr
    assert not (tmp_path / "out.mlir").exists()
    assert quantized_linears(quantize(quant_opt, src, options + " entry=mlp")) == 2


def test_bindings_run_pipeline_matches_quant_opt(quant_opt, tmp_path):
    """Module.run_pipeline runs the same pass as quant-opt: same result, and
    the calibration warnings come back in its list."""
    src = tmp_path / "mlp.mlir"
    src.write_text(mlp_graph()[0])
    np.savez(tmp_path / "calib.npz", arg0=inputs(seed=7, samples=12))
    options = f"{GPTQ} data={tmp_path / 'calib.npz'}"
    expected = str(qc.Module.load(quantize(quant_opt, src, options)))
    module = qc.Module.load(src)
    warnings = module.run_pipeline(f"builtin.module(qlr-quantize-linear{{{options}}})")
    assert not any(NO_CALIBRATION in w for w in warnings), warnings
    assert str(module) == expected


def test_bad_calibration_files(quant_opt, tmp_path):
    """Each malformed file fails the run with a message naming the problem,
    and quant-opt writes no output file."""
    src = tmp_path / "mlp.mlir"
    src.write_text(mlp_graph()[0])
    good = inputs(seed=7, samples=4)
    np.savez(tmp_path / "shape.npz", arg0=good[:, :, :32])
    np.savez(tmp_path / "dtype.npz", arg0=good.astype(np.float64))
    np.savez_compressed(tmp_path / "compressed.npz", arg0=good)
    np.savez(tmp_path / "two.npz", arg0=good, arg1=good)
    cases = {
        "shape.npz": ["calibration array 'arg0' is (4, 16, 32)", "needs (samples,"],
        "dtype.npz": ["calibration array 'arg0'", "of f8", "needs (samples,", "of f4"],
        "missing.npz": ["cannot read calibration file", "missing.npz"],
        "compressed.npz": ["savez_compressed"],
        "two.npz": ["holds 2 arrays", "@mlp takes 1 argument"],
    }
    for name, messages in cases.items():
        out = tmp_path / f"out-{name}.mlir"
        result = quant_opt_run(quant_opt, src, out, f"{GPTQ} data={tmp_path / name}")
        assert result.returncode != 0, name
        assert "error: qlr-quantize-linear:" in result.stderr, result.stderr
        for message in messages:
            assert message in result.stderr, (name, result.stderr)
        assert not out.exists(), name


def test_basis_selection_on_the_encoder(quant_opt, tmp_path):
    """qlr-basis-select calibrates the encoder from a .npz too: at the same
    rank, bases chosen by energy and refit by least squares on the staged
    inputs beat the plain truncated SVD (score=magnitude refit=none)."""
    text, reference = encoder_graph()
    src = tmp_path / "encoder.mlir"
    src.write_text(text)
    float_fn = qc.jit(qc.Module.load(src), "encoder")
    np.savez(tmp_path / "calib.npz", arg0=inputs(seed=7, samples=12))
    held_out = inputs(seed=99, samples=8)
    errors = {}
    for name, options in (("energy+lsq", f"rank=24 data={tmp_path / 'calib.npz'}"),
                          ("svd", "rank=24 score=magnitude refit=none")):
        out = tmp_path / f"encoder.{name}.mlir"
        result = subprocess.run([quant_opt, str(src), f"--qlr-basis-select={options}", "-o", str(out)],
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        assert len(re.findall(r"= qlr\.linear [^\n]*!qlr\.lowrank<", out.read_text())) == 6
        errors[name] = output_error(qc.jit(qc.Module.load(out), "encoder"), float_fn, held_out)
    print(f"\nencoder basis selection: relative output error energy+lsq "
          f"{errors['energy+lsq']:.4f}, truncated SVD {errors['svd']:.4f}")
    assert errors["energy+lsq"] < 0.9 * errors["svd"]


def test_norm_tweak_on_a_two_block_encoder(quant_opt, tmp_path):
    """qlr-norm-tweak on a graph qlr-import did not make: the stages come
    from the IR (one per block: the attention part starts one), the norms
    feeding a later norm are tuned (both of block 0, the first of block 1;
    the last LayerNorm feeds no norm and stays), and on held-out inputs the
    tweaked RTN model is closer to the float one than RTN alone."""
    text, reference = encoder_graph(blocks=2)
    src = tmp_path / "encoder.mlir"
    src.write_text(text)
    float_fn = qc.jit(qc.Module.load(src), "encoder")
    np.testing.assert_allclose(float_fn(inputs(99, 1)[0]), reference(inputs(99, 1)[0]), rtol=1e-4, atol=1e-4)
    np.savez(tmp_path / "calib.npz", arg0=inputs(seed=7, samples=12))
    rtn = quantize(quant_opt, src, RTN)
    tweaked, report = tmp_path / "tweaked.mlir", tmp_path / "report.json"
    result = subprocess.run(
        [quant_opt, str(rtn), f"--qlr-norm-tweak=reference={src} data={tmp_path / 'calib.npz'} samples=12 "
         f"loss=mse lr=1e-2 iters=3 report={report}", "-o", str(tweaked)],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert sorted(re.findall(r"dense_resource<([\w.]+\.tweaked)>", tweaked.read_text())) == \
        ["b1_ln1_g.tweaked", "ln1_g.tweaked", "ln2_g.tweaked"]
    stages = json.loads(report.read_text())["blocks"]
    assert len(stages) == 2 and all(s["kept"] and s["loss_after"] < s["loss_before"] for s in stages)
    held_out = inputs(seed=99, samples=8)
    errors = [output_error(qc.jit(qc.Module.load(path), "encoder"), float_fn, held_out)
              for path in (rtn, tweaked)]
    print(f"\nencoder norm tweaking: relative output error RTN {errors[0]:.4f}, tweaked {errors[1]:.4f}")
    assert errors[1] < errors[0]
