"""The safetensors export of quantization-aware-trained LLaMA models
(benchmarks/qat/stories260k_export.py) and, when quant-opt has
--qlr-load-weights and stories260K is present, QLR's logits of the exported
module against the PyTorch fake-quant model's."""

import json
import math
import pathlib
import struct
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed in this environment")

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks" / "qat"))
sys.path.insert(0, str(ROOT / "python"))

try:
    from qlr import qat  # noqa: E402
except ImportError as e:  # pragma: no cover
    pytest.skip(f"qlr.qat is not importable: {e}", allow_module_level=True)

import llama2c_torch as L  # noqa: E402
import stories260k_export as X  # noqa: E402
from qlr_reference import checkpoints as ck  # noqa: E402
from qlr_reference.llama import LlamaConfig  # noqa: E402

MODELS = ROOT.parent / "shared" / "models"
STORIES = MODELS / "stories260K.bin"
TOK512 = MODELS / "tok512.bin"
GROUP = 32


def _linear_names(model):
    return [f"layers.{i}.{s}" for i in range(len(model.layers)) for s in L.BLOCK_LINEARS]


def _norm_names(model):
    out = []
    for i in range(len(model.layers)):
        out += [f"layers.{i}.attention_norm", f"layers.{i}.ffn_norm"]
    return out + ["norm"]


def _student(teacher, bits):
    import copy
    s = copy.deepcopy(teacher)
    X.pad_linears(s, GROUP, _linear_names(s))
    qat.prepare(s, bits=bits, group_size=GROUP)
    return s


def _train(student, teacher, tokens, steps=3, lr=1e-2):
    """A few KD steps with a large LR, so codes, steps and norms move away
    from their initial values."""
    torch.manual_seed(0)
    teacher.eval()
    student.tok_embeddings.weight.requires_grad_(False)
    params = [p for p in student.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    for _ in range(steps):
        with torch.no_grad():
            t = torch.log_softmax(teacher(tokens), -1)
        s = torch.log_softmax(student(tokens), -1)
        loss = (t.exp() * (t - s)).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    student.eval()
    return student


@pytest.fixture(scope="module")
def tiny():
    # hidden 80 = 2 * 32 + 16: w2 has a partial last group
    cfg = LlamaConfig(dim=64, hidden_dim=80, n_layers=2, n_heads=4, n_kv_heads=2,
                      vocab_size=96, seq_len=32, tied=True)
    return cfg, L.from_weights(cfg, ck.random_weights(cfg, seed=3))


@pytest.mark.parametrize("bits", [2, 3])
def test_safetensors_roundtrip(tmp_path, tiny, bits):
    cfg, teacher = tiny
    tokens = torch.randint(0, cfg.vocab_size, (4, 16), generator=torch.Generator().manual_seed(1))
    student = _train(_student(teacher, bits), teacher, tokens)
    path = tmp_path / "w.safetensors"
    X.export_safetensors(path, student, _norm_names(student))

    # the raw layout: u64 LE header length, JSON padded to 8 bytes, data
    raw = path.read_bytes()
    (n,) = struct.unpack_from("<Q", raw, 0)
    assert (8 + n) % 8 == 0
    header = json.loads(raw[8:8 + n])
    data_len = max(v["data_offsets"][1] for k, v in header.items() if k != "__metadata__")
    assert len(raw) == 8 + n + data_len

    tensors, meta = X.read_safetensors(path)
    half = 2 ** (bits - 1)
    names = _linear_names(student)
    assert sorted(meta) == sorted(names)
    for name, mod, k in X.quantized_linears(student):
        assert meta[name] == f"int{bits}, group = 32"
        n_out = mod.out_features
        codes = tensors[f"{name}.codes"]
        scales = tensors[f"{name}.scales"]
        assert header[f"{name}.codes"]["dtype"] == "U8"
        assert header[f"{name}.scales"]["dtype"] == "F32"
        assert codes.shape == (n_out, k) and codes.dtype == np.uint8
        assert scales.shape == (n_out, math.ceil(k / GROUP)) and scales.dtype == np.float32
        q = mod.int_weight().numpy()[:, :k]
        np.testing.assert_array_equal(codes.astype(np.int64), q.astype(np.int64) + half)
        assert codes.max() < 2 ** bits
        np.testing.assert_array_equal(scales, mod.step.detach().numpy())
        # decoding as QLR does gives the fake-quant weight bit for bit
        dec = X.decoded_weights(tensors, meta)[name]
        np.testing.assert_array_equal(dec, mod.quantized_weight().numpy()[:, :k])
    for name in _norm_names(student):
        got = tensors[name]
        want = dict(student.named_parameters())[name + ".weight"].detach().numpy()
        assert header[name]["dtype"] == "F32" and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    # training moved the norms (so the test would notice a missing one)
    moved = dict(student.named_parameters())["norm.weight"].detach()
    assert not torch.equal(moved, teacher.norm.weight)


def test_partial_group_padding_is_exact(tiny):
    """A PaddedInput QuantLinear computes the K-wide layer with a partial
    last group: its output equals F.linear with the decoded weight."""
    cfg, teacher = tiny
    student = _student(teacher, 2)
    w2 = student.layers[0].feed_forward.w2
    assert isinstance(w2, X.PaddedInput) and w2.in_features == 80
    x = torch.randn(3, 80)
    (name, mod, k), = [t for t in X.quantized_linears(student)
                       if t[0] == "layers.0.feed_forward.w2"]
    assert k == 80 and mod.step.shape == (64, 3)
    want = torch.nn.functional.linear(x, mod.quantized_weight()[:, :80])
    torch.testing.assert_close(w2(x), want, rtol=0, atol=1e-6)


def _load_weights_quant_opt(quant_opt):
    out = subprocess.run([quant_opt, "--help"], capture_output=True, text=True).stdout
    if "--qlr-load-weights" not in out:
        pytest.skip("quant-opt has no --qlr-load-weights pass yet")
    return quant_opt


@pytest.mark.parametrize("bits", [2])
def test_qlr_logits_match_fake_quant(tmp_path, quant_opt, bits):
    if not STORIES.exists() or not TOK512.exists():
        pytest.skip(f"{STORIES} or {TOK512} is absent")
    _load_weights_quant_opt(quant_opt)
    bindir = pathlib.Path(quant_opt).parent
    module = tmp_path / "s.mlirbc"
    subprocess.run([str(bindir / "qlr-import"), str(STORIES), "--tokenizer", str(TOK512),
                    "-o", str(module)], check=True, capture_output=True)
    torch.set_num_threads(2)
    _, teacher = L.load_llama2c(STORIES)
    tokens = torch.randint(3, 512, (2, 32), generator=torch.Generator().manual_seed(0))
    tokens[:, 0] = L.BOS_ID
    student = _train(_student(teacher, bits), teacher, tokens, steps=2, lr=3e-3)
    st = tmp_path / "trained.safetensors"
    X.export_safetensors(st, student, _norm_names(student))
    qmod = tmp_path / "qat.mlirbc"
    subprocess.run([quant_opt, str(module), f"--qlr-load-weights=file={st}",
                    "-emit-bytecode", "-o", str(qmod)], check=True, capture_output=True)
    ids = [L.BOS_ID] + [int(i) for i in torch.randint(
        3, 512, (23,), generator=torch.Generator().manual_seed(5))]
    dump = tmp_path / "logits.f32"
    subprocess.run([str(bindir / "qlr-run"), str(qmod), "--prompt-ids", ",".join(map(str, ids)),
                    "-n", "1", "--dump-logits", str(dump), "--quiet", "-O", "1"],
                   check=True, capture_output=True)
    got = np.fromfile(dump, dtype="<f4").reshape(len(ids), -1)
    with torch.no_grad():
        want = student(torch.tensor(ids)).numpy()
        float_logits = teacher(torch.tensor(ids)).numpy()
    # the quantized model differs from the float one by far more than the tolerance
    assert np.abs(want - float_logits).max() > 0.1
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-4 * max(1.0, np.abs(want).max()))
