"""qlr.qat: LSQ fake quantization, oscillation tracking, dampening, freezing,
BatchNorm re-estimation, and the export of a CNN to qlr IR."""

import math
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn as nn  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "python"))

from qlr.qat import (QATController, QuantConv2d, QuantLinear, prepare,  # noqa: E402
                     reestimate_batchnorm)

torch.set_num_threads(1)


def tiny_linear(values, bits=4, step=1.0):
    """QuantLinear with one row of latent weights ``values`` and step ``step``."""
    m = QuantLinear(len(values), 1, bias=False, bits=bits)
    with torch.no_grad():
        m.weight.copy_(torch.tensor([values], dtype=torch.float32))
        m.step.fill_(step)
    return m


def set_weights(m, values):
    with torch.no_grad():
        m.weight.copy_(torch.tensor([values], dtype=torch.float32))


# -- quantizer ----------------------------------------------------------------

def test_int_weight_times_step_is_quantized_weight_exactly():
    torch.manual_seed(0)
    for mod in (QuantLinear(48, 16, bits=3, group_size=16), QuantLinear(48, 16, bits=4),
                QuantConv2d(8, 8, 3, groups=8, bits=4), QuantConv2d(4, 6, 3, bits=2, group_size=9)):
        q = mod.int_weight()
        assert q.dtype == torch.int32
        assert int(q.min()) >= mod.qmin and int(q.max()) <= mod.qmax
        grouped = q.reshape(mod.step.shape[0], mod.step.shape[1], -1).float()
        product = (grouped * mod.step.detach()[..., None]).reshape(mod.weight.shape)
        assert torch.equal(product, mod.quantized_weight())
        assert torch.equal(mod.fake_quant_weight().detach(), mod.quantized_weight())


def test_step_shapes_grouped_per_channel_per_tensor():
    assert QuantLinear(64, 32, group_size=16).step.shape == (32, 4)
    assert QuantLinear(64, 32).step.shape == (32, 1)
    assert QuantLinear(64, 32, per_channel=False).step.shape == (1, 1)
    assert QuantConv2d(4, 8, 3, group_size=12).step.shape == (8, 3)   # 4*3*3 = 36 inputs
    assert QuantConv2d(8, 8, 3, groups=8).step.shape == (8, 1)        # depthwise
    assert QuantLinear(64, 32, group_size=16).numel_per_step == 16
    with pytest.raises(ValueError, match="does not divide"):
        QuantLinear(60, 8, group_size=16)


def test_grouped_quantization_uses_consecutive_input_elements():
    m = QuantLinear(8, 1, bias=False, bits=4, group_size=4)
    with torch.no_grad():
        m.weight.copy_(torch.tensor([[1., 2., 3., 4., 10., 20., 30., 40.]]))
        m.step.copy_(torch.tensor([[1.0, 10.0]]))
    assert m.int_weight().tolist() == [[1, 2, 3, 4, 1, 2, 3, 4]]
    with torch.no_grad():
        m.weight.mul_(100)
    assert m.int_weight().tolist() == [[7] * 8]   # clipped at qmax = 7


def test_lsq_step_gradient_closed_form():
    bits = 3                                     # grid [-4, 3]
    w = [0.3, -0.7, 1.26, 5.0, -9.0, 0.05]
    s = 0.4
    m = tiny_linear(w, bits=bits, step=s)
    c = torch.tensor([1.5, -2.0, 0.5, 1.0, 3.0, -1.0])
    loss = (m.fake_quant_weight()[0] * c).sum()
    loss.backward()
    qmin, qmax = -4, 3
    g = 1 / math.sqrt(len(w) * qmax)
    expected_s = 0.0
    expected_w = []
    for wi, ci in zip(w, c.tolist()):
        x = wi / s
        if x < qmin:
            expected_s += ci * qmin
            expected_w.append(0.0)
        elif x > qmax:
            expected_s += ci * qmax
            expected_w.append(0.0)
        else:
            expected_s += ci * (round(x) - x)    # no .5 ties in w
            expected_w.append(ci)
    assert m.step.grad.item() == pytest.approx(g * expected_s, rel=1e-5)
    assert m.weight.grad[0].tolist() == pytest.approx(expected_w)


def test_lsq_step_gradient_matches_finite_difference_of_the_smooth_part():
    # With the integer values held fixed (no weight crosses a threshold for a
    # small change of s), d(sum c*s*q)/ds = sum c*q; LSQ adds -w/s inside the
    # range through the STE, which the closed form above checks.  Here: the
    # clipped weights alone, where LSQ's gradient is exact.
    m = tiny_linear([10.0, -10.0, 20.0], bits=4, step=0.5)
    c = torch.tensor([1.0, 2.0, -0.5])

    def f(s):
        with torch.no_grad():
            m.step.fill_(s)
            return float((m.quantized_weight()[0] * c).sum())
    h = 1e-3
    fd = (f(0.5 + h) - f(0.5 - h)) / (2 * h)
    with torch.no_grad():
        m.step.fill_(0.5)
    (m.fake_quant_weight()[0] * c).sum().backward()
    g = 1 / math.sqrt(3 * 7)
    assert m.step.grad.item() == pytest.approx(g * fd, rel=1e-4)


def test_step_inits():
    torch.manual_seed(1)
    w = torch.randn(16, 64)
    lsq = QuantLinear(64, 16, bits=4, init="lsq")
    mse = QuantLinear(64, 16, bits=4, init="mse")
    with torch.no_grad():
        lsq.weight.copy_(w)
        mse.weight.copy_(w)
    lsq.init_step("lsq")
    mse.init_step("mse")
    expected = 2 * w.abs().mean(1, keepdim=True) / math.sqrt(7)
    assert torch.allclose(lsq.step.detach(), expected)
    err = lambda m: float(((m.quantized_weight() - w) ** 2).sum())  # noqa: E731
    assert err(mse) <= err(lsq)


def test_prepare_replaces_and_copies():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 5 * 5, 10), nn.Linear(10, 10))
    ref = [p.detach().clone() for p in model.parameters()]
    prepare(model, bits=8, skip=lambda name, mod: name == "4")
    assert isinstance(model[0], QuantConv2d) and isinstance(model[3], QuantLinear)
    assert type(model[4]) is nn.Linear
    assert torch.equal(model[0].weight, ref[0]) and torch.equal(model[0].bias, ref[1])
    assert torch.equal(model[3].weight, ref[2]) and torch.equal(model[3].bias, ref[3])
    tied = nn.Sequential(nn.Linear(4, 4, bias=False), nn.Linear(4, 4, bias=False))
    tied[1].weight = tied[0].weight
    prepare(tied, bits=4)
    assert tied[0].weight is tied[1].weight
    x = torch.randn(2, 3, 5, 5)
    y = model(x)
    h = torch.nn.functional.conv2d(x, model[0].quantized_weight(), model[0].bias, padding=1)
    h = torch.nn.functional.linear(h.relu().flatten(1), model[3].quantized_weight(), model[3].bias)
    assert torch.allclose(y, model[4](h), atol=1e-6)


# -- oscillations ---------------------------------------------------------------

def test_oscillation_ema_closed_form():
    m = tiny_linear([0.0, 0.0, 2.2], bits=4)      # weight 0 flips, 1 stays, 2 climbs
    model = nn.Sequential(m)
    mom = 0.05
    ctrl = QATController(model, total_steps=1000, momentum=mom, freezing=False)
    n = 40
    for t in range(1, n + 1):
        set_weights(m, [float(t % 2), 0.0, 2.2 + 0.0 if t < 5 else 3.2])
        ctrl.after_step(t)
    st = ctrl.state["0"]
    # 0 -> 1 is no oscillation (no earlier change); every later flip reverses
    # the previous change: the EMA of [0, 1, 1, ...] over n steps.
    expected = 1 - (1 - mom) ** (n - 1)
    assert st["osc_ema"][0, 0].item() == pytest.approx(expected, rel=1e-5)
    # integer EMA: q_0 = 0, q_t = t % 2
    ema = 0.0
    for t in range(1, n + 1):
        ema = (1 - mom) * ema + mom * (t % 2)
    assert st["int_ema"][0, 0].item() == pytest.approx(ema, rel=1e-5)
    # a weight that never changes, and one that changed once (2 -> 3): no oscillation
    assert st["osc_ema"][0, 1].item() == 0.0
    assert st["osc_ema"][0, 2].item() == 0.0
    assert ctrl.oscillating_fraction(threshold=0.5) == pytest.approx(1 / 3)
    assert ctrl.oscillating_fraction(threshold=0.99) == 0.0


def test_oscillation_needs_direction_reversal():
    m = tiny_linear([0.0], bits=4)
    ctrl = QATController(nn.Sequential(m), total_steps=100, momentum=0.5, freezing=False)
    for t, v in enumerate([1, 2, 3, 2, 2, 1, 2], start=1):
        set_weights(m, [float(v)])
        ctrl.after_step(t)
    # changes: +1 +1 +1 -1 (osc) 0 -1 (same direction as last change) +1 (osc)
    ema = 0.0
    for o in [0, 0, 0, 1, 0, 0, 1]:
        ema = 0.5 * ema + 0.5 * o
    assert ctrl.state["0"]["osc_ema"].item() == pytest.approx(ema)


def test_freezing_at_ema_integer_value_and_frozen_weights_stay():
    m = tiny_linear([3.0, 0.0], bits=4)
    model = nn.Sequential(m)
    mom = 0.25
    ctrl = QATController(model, total_steps=100, momentum=mom, dampening=False,
                         freeze_start=0.0, freeze_threshold=(0.3, 0.3))
    seq = [3, 3, 2, 3, 2, 3]
    osc = int_ema = 0.0
    int_ema = 3.0
    last_dir = 0
    prev = 3
    frozen_at = None
    for t, v in enumerate(seq, start=1):
        set_weights(m, [float(v), 0.0])
        ctrl.after_step(t)
        d = v - prev
        o = d != 0 and last_dir != 0 and (d > 0) != (last_dir > 0)
        if d:
            last_dir = d
        prev = v
        osc = (1 - mom) * osc + mom * o
        int_ema = (1 - mom) * int_ema + mom * v
        if frozen_at is None and osc > 0.3:
            frozen_at = (t, round(int_ema))
            break
    assert frozen_at is not None
    assert m.frozen.tolist() == [[True, False]]
    assert m.frozen_value[0, 0].item() == frozen_at[1] == 3
    assert ctrl.frozen_fraction() == 0.5
    # the frozen weight no longer moves: not with a new latent value, not under
    # gradient descent, and its latent weight gets no task gradient
    set_weights(m, [-5.0, 0.0])
    assert m.int_weight()[0, 0].item() == 3
    opt = torch.optim.SGD(m.parameters(), lr=1.0)
    for t in range(10):
        opt.zero_grad()
        loss = (m(torch.ones(1, 2)) - 100.0).pow(2).sum() + ctrl.regularizer(t, lam=1.0)
        loss.backward()
        assert m.weight.grad[0, 0].item() == 0.0
        opt.step()
        ctrl.after_step(10 + t)
        assert m.int_weight()[0, 0].item() == 3
    # and the state survives a round trip
    ctrl2 = QATController(model, total_steps=100, momentum=mom)
    ctrl2.load_state_dict(ctrl.state_dict())
    for k, v in ctrl.state["0"].items():
        assert torch.equal(v, ctrl2.state["0"][k])


def test_threshold_and_lambda_schedules():
    m = tiny_linear([0.0], bits=4)
    ctrl = QATController(nn.Sequential(m), total_steps=100, dampening_max=0.1,
                         freeze_start=0.25, freeze_threshold=(0.1, 0.01))
    assert ctrl.dampening_lambda(0) == 0.0
    assert ctrl.dampening_lambda(50) == pytest.approx(0.05)
    assert ctrl.dampening_lambda(100) == pytest.approx(0.1)
    assert ctrl.threshold(24) is None
    assert ctrl.threshold(25) == pytest.approx(0.1)
    assert ctrl.threshold(100) == pytest.approx(0.01)


def test_dampening_gradient_closed_form():
    bits, s, lam = 3, 0.5, 0.37
    w = [0.1, 0.4, -0.85, 1.3, 2.9, -3.0, -1.1]   # two outside [-2, 1.5]
    m = tiny_linear(w, bits=bits, step=s)
    ctrl = QATController(nn.Sequential(m), total_steps=10)
    loss = ctrl.regularizer(0, lam=lam)
    loss.backward()
    wt = torch.tensor(w)
    q = torch.clamp(torch.round(wt / s), -4, 3) * s
    clip = torch.clamp(wt, -4 * s, 3 * s)
    assert loss.item() == pytest.approx(lam * float(((q - clip) ** 2).sum()), rel=1e-6)
    assert torch.allclose(m.weight.grad[0], 2 * lam * (clip - q), atol=1e-7)
    assert m.step.grad is None or float(m.step.grad.abs().sum()) == 0.0


# -- BatchNorm ------------------------------------------------------------------

def test_reestimate_batchnorm_reproduces_batch_statistics():
    torch.manual_seed(3)
    conv = nn.Conv2d(2, 3, 3)
    model = nn.Sequential(conv, nn.BatchNorm2d(3), nn.ReLU())
    model.eval()
    with torch.no_grad():
        model[1].running_mean.fill_(7.0)
        model[1].running_var.fill_(9.0)
    data = torch.randn(40, 2, 6, 6) * 2 + 1
    batches = [data[i:i + 10] for i in range(0, 40, 10)]
    reestimate_batchnorm(model, batches + [torch.full((10, 2, 6, 6), 1e3)], num_batches=4)
    with torch.no_grad():
        h = conv(data)
        per_batch_var = torch.stack([conv(b).var(dim=(0, 2, 3), unbiased=True) for b in batches])
    bn = model[1]
    assert torch.allclose(bn.running_mean, h.mean(dim=(0, 2, 3)), atol=1e-5)
    assert torch.allclose(bn.running_var, per_batch_var.mean(0), atol=1e-5)
    assert bn.momentum == 0.1 and not bn.training and not model.training
    # one batch holding everything: the exact statistics of the data
    reestimate_batchnorm(model, [(data, None)])
    assert torch.allclose(bn.running_mean, h.mean(dim=(0, 2, 3)), atol=1e-5)
    assert torch.allclose(bn.running_var, h.var(dim=(0, 2, 3), unbiased=True), atol=1e-4)


# -- export to qlr IR -------------------------------------------------------------

from qlr.qat import export_mlir  # noqa: E402
from qlr.qat.export import ExportError  # noqa: E402
from qlr.qat.models import DigitsMobileNet, GlobalAvgPool  # noqa: E402
from qlr.qat.quant import quantized_modules  # noqa: E402

CONST = re.compile(r'(%\w+) = arith\.constant dense<"0x([0-9A-Fa-f]+)"> : tensor<([0-9x]+)x(i8|f32)>')
PACK = re.compile(r"= qlr\.pack (%\w+), (%\w+) : [^>]*>, [^>]*> -> "
                  r"!qlr\.qtensor<([0-9x]+)xf32, #qlr\.format<int(\d)(?:, (channel|group) = (\d+))?>>")


def read_constants(text):
    out = {}
    for name, hexdata, dims, elem in CONST.findall(text):
        shape = [int(d) for d in dims.split("x")]
        raw = bytes.fromhex(hexdata)
        dt = np.dtype("<f4") if elem == "f32" else np.dtype("u1")
        arr = np.frombuffer(raw, dtype=dt)
        if arr.size == 1 and int(np.prod(shape)) > 1:
            arr = np.full(int(np.prod(shape)), arr[0], dtype=dt)   # splat
        out[name] = arr.reshape(shape)
    return out


def unpack_row(row_bytes, n, bits):
    """Codes of one packed row, one bit at a time (independent of pack_codes)."""
    codes = []
    for j in range(n):
        c = 0
        for i in range(bits):
            k = j * bits + i
            c |= ((int(row_bytes[k // 8]) >> (k % 8)) & 1) << i
        codes.append(c)
    return codes


def read_packed_weights(text):
    consts = read_constants(text)
    weights = []
    for codes_name, scales_name, dims, bits, gran, param in PACK.findall(text):
        shape = [int(d) for d in dims.split("x")]
        bits = int(bits)
        packed = consts[codes_name]
        assert packed.shape == tuple(shape[:-1]) + (math.ceil(shape[-1] * bits / 8),)
        rows = packed.reshape(-1, packed.shape[-1])
        codes = np.array([unpack_row(r, shape[-1], bits) for r in rows]).reshape(shape)
        weights.append(dict(codes=codes, scales=consts[scales_name], bits=bits,
                            granularity=gran, param=int(param) if param else None))
    return weights


def small_cnn(bits, seed=0):
    torch.manual_seed(seed)
    model = DigitsMobileNet(stem=8, blocks=((16, 2), (16, 1)))
    prepare(model, bits=bits)
    model.train()
    with torch.no_grad():                      # non-trivial BatchNorm statistics
        for _ in range(3):
            model(torch.randn(16, 1, 8, 8))
    model.eval()
    return model


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_export_codes_and_scales_exact(bits):
    model = small_cnn(bits)
    mods = [m for _, m in quantized_modules(model)]
    # freeze a few weights of the first conv at values the latent weight does not hold
    with torch.no_grad():
        mods[0].frozen[0, 0, 0, :2] = True
        mods[0].frozen_value[0, 0, 0, :2] = torch.tensor([mods[0].qmin, mods[0].qmax],
                                                         dtype=torch.int32)
    text = export_mlir(model, (None, 1, 8, 8))
    got = read_packed_weights(text)
    assert len(got) == len(mods)
    for m, g in zip(mods, got):
        assert g["bits"] == bits and g["granularity"] == "channel" and g["param"] == 0
        np.testing.assert_array_equal(g["codes"], m.int_weight().numpy() + 2 ** (bits - 1))
        step = m.step.detach().numpy()[:, 0]
        assert g["scales"].dtype == np.float32
        assert np.array_equal(g["scales"].view(np.uint32), step.view(np.uint32))
        decoded = g["scales"].reshape((-1,) + (1,) * (g["codes"].ndim - 1)) * (
            g["codes"] - 2 ** (bits - 1)).astype(np.float32)
        np.testing.assert_array_equal(decoded, m.quantized_weight().numpy())
    assert got[0]["codes"][0, 0, 0, 0] == 0 and got[0]["codes"][0, 0, 0, 1] == 2 ** bits - 1


def test_export_grouped_linear():
    torch.manual_seed(4)
    model = nn.Sequential(GlobalAvgPool(), nn.Flatten(), nn.Linear(24, 12), nn.ReLU(),
                          nn.Linear(12, 10))
    prepare(model, bits=3, group_size=6, skip=lambda n, m: n == "4")
    text = export_mlir(model.eval(), (None, 24, 2, 2))
    (g,) = read_packed_weights(text)
    m = model[2]
    assert g["granularity"] == "group" and g["param"] == 6
    np.testing.assert_array_equal(g["codes"], m.int_weight().numpy() + 4)
    assert np.array_equal(g["scales"], m.step.detach().numpy())
    assert "tensor<10x12xf32>" in text      # the float classifier stays float


def test_export_refuses_unsupported_layers():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(36, 10))
    with pytest.raises(ExportError, match=r"'1' of type MaxPool2d"):
        export_mlir(model, (None, 1, 8, 8))
    with pytest.raises(ExportError, match="nn.Sequential"):
        export_mlir(nn.Linear(4, 4), (None, 1, 8, 8))
    conv = nn.Sequential(QuantConv2d(4, 4, 3, group_size=12))
    with pytest.raises(ExportError, match="grouped quantization of convolution"):
        export_mlir(conv, (None, 4, 8, 8))


def test_exported_module_verifies(quant_opt, tmp_path):
    text = export_mlir(small_cnn(4), (None, 1, 8, 8))
    path = tmp_path / "cnn.mlir"
    path.write_text(text)
    result = subprocess.run([quant_opt, str(path), "--verify-each"], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "qlr.conv2d" in result.stdout and "qlr.batch_norm" in result.stdout


@pytest.mark.parametrize("fold", [False, True])
def test_exported_module_runs_like_pytorch(quant_opt, fold):
    from qlr.qat.run_mlir import find_tools, run_with_mlir_runner
    if find_tools() is None:
        pytest.skip("mlir-runner or its runtime libraries are missing")
    model = small_cnn(3, seed=5)
    x = torch.randn(6, 1, 8, 8)
    with torch.no_grad():
        ref = model(x).numpy()
    passes = ("--qlr-fold-batchnorm", "--qlr-cpu-pipeline") if fold else ("--qlr-cpu-pipeline",)
    text = export_mlir(model, (None, 1, 8, 8))
    got = run_with_mlir_runner(text, x.numpy(), (10,), passes=passes)
    np.testing.assert_allclose(got, ref, rtol=1e-3, atol=1e-3)
    if fold:   # every batch norm follows a quantized qlr.conv2d: all must fold
        folded = subprocess.run([quant_opt, "-", "--qlr-fold-batchnorm"], input=text, text=True,
                                capture_output=True, check=True).stdout
        assert text.count("qlr.batch_norm") == 5
        assert "qlr.batch_norm" not in folded


def test_exported_module_jit_like_pytorch():
    from qlr.qat.run_mlir import jit_available, run_with_jit
    if not jit_available():
        pytest.skip("qlr.compiler (the qlr._compiler extension) is not built")
    model = small_cnn(4, seed=6)
    x = torch.randn(7, 1, 8, 8)
    with torch.no_grad():
        ref = model(x).numpy()
    got, _ = run_with_jit(export_mlir(model, (None, 1, 8, 8)), x.numpy(), fold=True)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
