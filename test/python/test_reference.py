"""Tests that make the numpy oracle (qlr_reference) trustworthy.

The model reference is checked against a second, deliberately naive
implementation (token-by-token, per-head loops, complex-number RoPE) and
against structural properties (KV-cache consistency, causality, RoPE
identities, GQA = MHA with repeated kv heads). The checkpoint writers are
checked by parsing their files back here with struct, independently of the
writer code.
"""

import json
import math
import pathlib
import struct

import numpy as np
import pytest

from qlr_reference import checkpoints as ck
from qlr_reference import llama
from qlr_reference.llama import LlamaConfig

MODELS = pathlib.Path("/work/shared/models")

CFG_GQA = LlamaConfig(dim=64, hidden_dim=96, n_layers=2, n_heads=4, n_kv_heads=2,
                      vocab_size=96, seq_len=32, tied=False)
CFG_MHA = LlamaConfig(dim=32, hidden_dim=64, n_layers=2, n_heads=4, n_kv_heads=4,
                      vocab_size=64, seq_len=24, tied=True, rope_theta=500.0)
CFG_MQA = LlamaConfig(dim=32, hidden_dim=64, n_layers=2, n_heads=4, n_kv_heads=1,
                      vocab_size=80, seq_len=24, tied=True, norm_eps=1e-6)
CONFIGS = {"gqa": CFG_GQA, "mha": CFG_MHA, "mqa": CFG_MQA}


# Tolerances of float64 logits computed two ways (other matmul shapes or
# orders: numpy's BLAS blocks and vectorises differently per CPU): a dot
# product of length k is off by at most k * 2^-53 * sum |a_i b_i|, and the
# errors add along the chain of dot products a logit depends on: per layer
# dim (q, k, v) + head_dim + tokens + dim (wo) + dim (w1, w3) + hidden_dim,
# plus dim for the classifier; <= 700 for these configurations. Two
# evaluations, and sum |a_i b_i| about the largest logit (< 10): 4 * 700 *
# 1.1e-16 * 10 = 3e-12, so atol 1e-11 leaves 3x.
FLOAT64_LOGITS_ATOL = 1e-11


def tokens_for(cfg, n, seed=0):
    return np.random.default_rng(seed + 1000).integers(0, cfg.vocab_size, n).tolist()


# --------------------------------------------------------------------------
# A naive second implementation, in the style of llama2.c's run.c
# --------------------------------------------------------------------------


def rope_complex(vec, pos, theta):
    """Interleaved RoPE of one head vector via complex multiplication."""
    hd = vec.shape[0]
    z = vec[0::2] + 1j * vec[1::2]
    freqs = 1.0 / theta ** (np.arange(0, hd, 2) / hd)
    z = z * np.exp(1j * pos * freqs)
    out = np.empty(hd)
    out[0::2] = z.real
    out[1::2] = z.imag
    return out


def naive_forward(W, c, tokens):
    """Token by token, head by head; returns logits [T, vocab]."""
    hd = c.head_dim
    kv_mul = c.n_heads // c.n_kv_heads
    W = {k: np.asarray(v, dtype=np.float64) for k, v in W.items()}

    def norm(v, w):
        return w * (v / math.sqrt(float(np.dot(v, v)) / v.shape[0] + c.norm_eps))

    key_cache = [[] for _ in range(c.n_layers)]
    val_cache = [[] for _ in range(c.n_layers)]
    all_logits = []
    for pos, tok in enumerate(tokens):
        x = W["tok_embeddings"][tok].copy()
        for l in range(c.n_layers):
            p = f"layers.{l}."
            xb = norm(x, W[p + "attention_norm"])
            q = W[p + "attention.wq"] @ xb
            k = W[p + "attention.wk"] @ xb
            v = W[p + "attention.wv"] @ xb
            q = np.concatenate([rope_complex(q[h * hd:(h + 1) * hd], pos, c.rope_theta)
                                for h in range(c.n_heads)])
            k = np.concatenate([rope_complex(k[h * hd:(h + 1) * hd], pos, c.rope_theta)
                                for h in range(c.n_kv_heads)])
            key_cache[l].append(k)
            val_cache[l].append(v)
            heads = []
            for h in range(c.n_heads):
                qh = q[h * hd:(h + 1) * hd]
                kvh = h // kv_mul
                scores = np.array([np.dot(qh, key_cache[l][s][kvh * hd:(kvh + 1) * hd])
                                   for s in range(pos + 1)]) / math.sqrt(hd)
                e = np.exp(scores - scores.max())
                a = e / e.sum()
                acc = np.zeros(hd)
                for s in range(pos + 1):
                    acc += a[s] * val_cache[l][s][kvh * hd:(kvh + 1) * hd]
                heads.append(acc)
            x = x + W[p + "attention.wo"] @ np.concatenate(heads)
            xb = norm(x, W[p + "ffn_norm"])
            h1 = W[p + "feed_forward.w1"] @ xb
            h3 = W[p + "feed_forward.w3"] @ xb
            x = x + W[p + "feed_forward.w2"] @ (h1 / (1 + np.exp(-h1)) * h3)
        x = norm(x, W["norm"])
        wcls = W["tok_embeddings"] if c.tied else W["output"]
        all_logits.append(wcls @ x)
    return np.array(all_logits)


# --------------------------------------------------------------------------
# (a) prefill == step-by-step decode; (b) attention against naive / GQA
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_prefill_equals_decode_with_cache(name):
    cfg = CONFIGS[name]
    W = ck.random_weights(cfg, seed=1)
    toks = tokens_for(cfg, 12)
    full = llama.forward(W, cfg, toks)
    assert full.shape == (12, cfg.vocab_size)
    assert np.all(np.isfinite(full))

    cache = llama.KVCache(cfg)
    steps = np.concatenate([llama.forward(W, cfg, [t], pos, cache)
                            for pos, t in enumerate(toks)])
    np.testing.assert_allclose(steps, full, rtol=0, atol=FLOAT64_LOGITS_ATOL)
    assert cache.length == 12

    # chunked prefill (5 tokens, then 7) and a prefill followed by decode steps
    cache = llama.KVCache(cfg)
    a = llama.forward(W, cfg, toks[:5], 0, cache)
    b = llama.forward(W, cfg, toks[5:], 5, cache)
    np.testing.assert_allclose(np.concatenate([a, b]), full, rtol=0, atol=FLOAT64_LOGITS_ATOL)
    cache = llama.KVCache(cfg)
    rows = [llama.forward(W, cfg, toks[:8], 0, cache)]
    rows += [llama.forward(W, cfg, [t], 8 + i, cache) for i, t in enumerate(toks[8:])]
    np.testing.assert_allclose(np.concatenate(rows), full, rtol=0, atol=FLOAT64_LOGITS_ATOL)


def test_cache_rewind_and_bounds():
    cfg = CFG_GQA
    W = ck.random_weights(cfg, seed=2)
    toks = tokens_for(cfg, 6)
    cache = llama.KVCache(cfg)
    llama.forward(W, cfg, toks, 0, cache)
    # rewrite the last two positions with other tokens, then restore them
    other = llama.forward(W, cfg, [3, 4], 4, cache)
    again = llama.forward(W, cfg, toks[4:], 4, cache)
    full = llama.forward(W, cfg, toks)
    np.testing.assert_allclose(again, full[4:], rtol=0, atol=FLOAT64_LOGITS_ATOL)
    assert not np.allclose(other, full[4:])
    with pytest.raises(ValueError):
        llama.forward(W, cfg, [1], 10, cache)  # skips positions
    with pytest.raises(ValueError):
        llama.forward(W, cfg, [1] * (cfg.seq_len + 1), 0, llama.KVCache(cfg))


def test_float32_mode_close_to_float64():
    cfg = CFG_GQA
    W = ck.random_weights(cfg, seed=3)
    toks = tokens_for(cfg, 10)
    l64 = llama.forward(W, cfg, toks)
    l32 = llama.forward(W, cfg, toks, dtype=np.float32)
    assert l32.dtype == np.float32
    # As FLOAT64_LOGITS_ATOL, one float32 side: 2 * 700 * 2^-24 = 8.3e-5 of
    # the largest logit; 2e-4 leaves 2.4x.
    np.testing.assert_allclose(l32, l64, rtol=0, atol=2e-4 * np.abs(l64).max())


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_forward_matches_naive_run_c_style(name):
    # With CFG_MHA (n_kv_heads == n_heads) this is plain multi-head attention.
    cfg = CONFIGS[name]
    W = ck.random_weights(cfg, seed=4)
    toks = tokens_for(cfg, 9, seed=4)
    # FLOAT64_LOGITS_ATOL, plus complex against real rotations (angles < 9
    # radians: ~1e-15 apart); 1e-10 leaves > 10x.
    np.testing.assert_allclose(llama.forward(W, cfg, toks), naive_forward(W, cfg, toks),
                               rtol=0, atol=1e-10)


def test_gqa_equals_mha_with_repeated_kv_heads():
    cfg = CFG_GQA
    W = ck.random_weights(cfg, seed=5)
    hd = cfg.head_dim
    group = cfg.n_heads // cfg.n_kv_heads
    mha_cfg = LlamaConfig(**{**cfg.__dict__, "n_kv_heads": cfg.n_heads})
    Wm = dict(W)
    for l in range(cfg.n_layers):
        for m in ("wk", "wv"):
            w = W[f"layers.{l}.attention.{m}"]
            Wm[f"layers.{l}.attention.{m}"] = np.concatenate(
                [w[(h // group) * hd:(h // group + 1) * hd] for h in range(cfg.n_heads)])
    toks = tokens_for(cfg, 10, seed=5)
    np.testing.assert_allclose(llama.forward(W, cfg, toks), llama.forward(Wm, mha_cfg, toks),
                               rtol=0, atol=FLOAT64_LOGITS_ATOL)


# --------------------------------------------------------------------------
# (c) RoPE
# --------------------------------------------------------------------------


def test_rope_identity_at_position_zero_and_norm_preserving():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((5, 3, 16))
    np.testing.assert_array_equal(llama.apply_rope(x, [0] * 5), x)
    for theta in (10000.0, 500000.0):
        y = llama.apply_rope(x, [0, 1, 7, 100, 4095], theta)
        # every (2i, 2i+1) pair keeps its length, so every head keeps its norm
        # (cos^2 + sin^2 = 1 to a few ulps whatever the angle's rounding; a
        # rotation adds 3 roundings: ~5e-16 relative; 1e-13 leaves 200x)
        np.testing.assert_allclose(np.hypot(y[..., 0::2], y[..., 1::2]),
                                   np.hypot(x[..., 0::2], x[..., 1::2]), rtol=1e-13)
        np.testing.assert_allclose(np.linalg.norm(y, axis=-1), np.linalg.norm(x, axis=-1),
                                   rtol=1e-13)


def test_rope_matches_complex_form_and_is_relative():
    rng = np.random.default_rng(7)
    hd = 16
    q = rng.standard_normal((1, 1, hd))
    k = rng.standard_normal((1, 1, hd))
    # The frequencies are computed differently (1 / theta^x against
    # theta^-x): angles up to 250 rad differ by ~250 * 2e-16, moving entries
    # of |q| < 4 by < 2e-13; 1e-12 leaves 5x.
    for pos in (1, 3, 250):
        np.testing.assert_allclose(llama.apply_rope(q, [pos])[0, 0],
                                   rope_complex(q[0, 0], pos, 10000.0), atol=1e-12)
    # first pair rotates by pos * 1 radian, last pair by pos * theta^(-(hd-2)/hd)
    # (cos and sin of the same double angle; numpy's SIMD versions are within
    # 4 ulp of libm: 4.4e-16 at |value| <= 1, so 1e-15 leaves 2x)
    y = llama.apply_rope(np.tile([1.0, 0.0], hd // 2)[None, None], [3])[0, 0]
    np.testing.assert_allclose(y[:2], [math.cos(3), math.sin(3)], atol=1e-15)
    f = 10000.0 ** (-(hd - 2) / hd)
    np.testing.assert_allclose(y[-2:], [math.cos(3 * f), math.sin(3 * f)], atol=1e-15)
    # <rope(q, m), rope(k, n)> depends only on m - n
    dots = [np.dot(llama.apply_rope(q, [m])[0, 0], llama.apply_rope(k, [m - 4])[0, 0])
            for m in (4, 9, 30)]
    # rotations of angles < 30 rad (rounding ~1e-14 in the angle) and dot
    # products of 16 terms of size ~1 (|dot| ~ 1): < 1e-13 relative; 1e-12
    # leaves 10x
    np.testing.assert_allclose(dots, dots[0], rtol=1e-12)


def test_window_without_cache_is_translation_invariant():
    # Without a cache a window attends only to itself; RoPE makes attention
    # depend on relative positions only, so the absolute start is irrelevant.
    cfg = CFG_GQA
    W = ck.random_weights(cfg, seed=8)
    toks = tokens_for(cfg, 7, seed=8)
    # FLOAT64_LOGITS_ATOL; the angles (pos + 11) * f round differently by
    # < 20 * 2e-16, far less.
    np.testing.assert_allclose(llama.forward(W, cfg, toks, start_pos=11),
                               llama.forward(W, cfg, toks), rtol=0, atol=FLOAT64_LOGITS_ATOL)


# --------------------------------------------------------------------------
# (d) causality
# --------------------------------------------------------------------------


def test_causal():
    cfg = CFG_GQA
    W = ck.random_weights(cfg, seed=9)
    toks = tokens_for(cfg, 10, seed=9)
    base = llama.forward(W, cfg, toks)
    for k in (3, 9):
        changed = list(toks)
        changed[k] = (changed[k] + 1) % cfg.vocab_size
        out = llama.forward(W, cfg, changed)
        # rows before k go through the same operations on the same inputs
        # (masked scores are exactly 0 after exp): identical up to BLAS
        # blocking of the whole matrix, ~1e-15; 1e-12 is loose, and a
        # changed later token moves them by O(1)
        np.testing.assert_allclose(out[:k], base[:k], rtol=0, atol=1e-12)
        assert np.abs(out[k] - base[k]).max() > 1e-3


# --------------------------------------------------------------------------
# NLL, perplexity, generation
# --------------------------------------------------------------------------


def test_nll_definition():
    logits = np.zeros((4, 10))
    assert llama.nll(logits, [1, 2, 3, 4]) == pytest.approx(math.log(10))
    rng = np.random.default_rng(10)
    logits = rng.standard_normal((6, 10)) * 3
    toks = [1, 5, 0, 9, 2, 2]
    manual = np.mean([-(logits[t, toks[t + 1]] - math.log(np.exp(logits[t]).sum()))
                      for t in range(5)])
    # the same double log-softmax, stabilised or not: a few ulps of values
    # < 20 (~1e-15 relative); rel=1e-12 leaves 1000x
    assert llama.nll(logits, toks) == pytest.approx(manual, rel=1e-12)
    # large logits: log-softmax must be stable
    assert np.isfinite(llama.nll(logits * 1e4, toks))


def test_perplexity_windows_and_value():
    ids = list(range(10, 20))
    assert llama.perplexity_windows(ids, 4) == [
        [1, 10, 11, 12], [1, 13, 14, 15], [1, 16, 17, 18], [1, 19]]
    assert llama.perplexity_windows(ids[:9], 4) == [[1, 10, 11, 12], [1, 13, 14, 15],
                                                    [1, 16, 17, 18]]
    cfg = CFG_GQA
    W = ck.random_weights(cfg, seed=11)
    ids = tokens_for(cfg, 23, seed=11)
    r = llama.perplexity(W, cfg, ids, ctx=8)
    assert r.n_windows == 4 and r.n_tokens == 23  # 7 + 7 + 7 + 2
    total = 0.0
    for w in range(4):
        win = [1] + ids[w * 7:(w + 1) * 7]
        logits = naive_forward(W, cfg, win)
        total += sum(-llama.log_softmax(logits[t])[win[t + 1]] for t in range(len(win) - 1))
    # each NLL moves by <= 2 max |delta logit| <= 2 * FLOAT64_LOGITS_ATOL
    # against the naive forward; 23 of them against a total of ~100 (log 96
    # each): < 5e-12 relative; rel=1e-10 leaves 20x
    assert r.nll_sum == pytest.approx(total, rel=1e-10)
    assert r.ppl == pytest.approx(math.exp(total / 23), rel=1e-10)


def test_greedy_generate_matches_recomputation():
    cfg = CFG_MQA
    W = ck.random_weights(cfg, seed=12)
    prompt = [1, 5, 7]
    out = llama.greedy_generate(W, cfg, prompt, 10)
    assert len(out) == 10
    seq = list(prompt)
    for _ in range(10):
        seq.append(int(np.argmax(naive_forward(W, cfg, seq)[-1])))
    assert out == seq[3:]
    # stop ids end generation without being returned
    stop = llama.greedy_generate(W, cfg, prompt, 10, stop_ids=[out[4]])
    assert stop == out[:out.index(out[4])]


# --------------------------------------------------------------------------
# (e) file layouts, parsed back with struct
# --------------------------------------------------------------------------


def test_llama2c_layout(tmp_path):
    for cfg in (CFG_GQA, CFG_MQA):
        W = ck.random_weights(cfg, seed=13)
        path = tmp_path / "m.bin"
        stored = ck.write_llama2c(path, cfg, W)
        data = path.read_bytes()
        hdr = struct.unpack_from("<7i", data, 0)
        vocab = cfg.vocab_size if cfg.tied else -cfg.vocab_size
        assert hdr == (cfg.dim, cfg.hidden_dim, cfg.n_layers, cfg.n_heads, cfg.n_kv_heads,
                       vocab, cfg.seq_len)
        d, h, L, hd, kv = cfg.dim, cfg.hidden_dim, cfg.n_layers, cfg.head_dim, cfg.kv_dim
        n = (cfg.vocab_size * d + L * (2 * d + 2 * d * d + 2 * kv * d + 3 * h * d) + d
             + 2 * cfg.seq_len * hd // 2 + (0 if cfg.tied else cfg.vocab_size * d))
        assert len(data) == 28 + 4 * n
        # first tensor: token embedding row 0
        row0 = struct.unpack_from(f"<{d}f", data, 28)
        np.testing.assert_array_equal(row0, W["tok_embeddings"][0])
        # rms_att_weight of layer 1 follows the embeddings and layer 0's
        off = 28 + 4 * (cfg.vocab_size * d + d)
        np.testing.assert_array_equal(struct.unpack_from(f"<{d}f", data, off),
                                      W["layers.1.attention_norm"])
        # wq of layer 0 starts after all rms_att weights
        off = 28 + 4 * (cfg.vocab_size * d + L * d)
        np.testing.assert_array_equal(struct.unpack_from(f"<{d}f", data, off),
                                      W["layers.0.attention.wq"][0])
        # freq_cis_real/imag before the optional wcls
        fstart = 28 + 4 * (n - 2 * cfg.seq_len * hd // 2
                           - (0 if cfg.tied else cfg.vocab_size * d))
        fr = np.frombuffer(data, "<f4", cfg.seq_len * hd // 2, fstart).reshape(cfg.seq_len, -1)
        fi = np.frombuffer(data, "<f4", cfg.seq_len * hd // 2,
                           fstart + 2 * cfg.seq_len * hd).reshape(cfg.seq_len, -1)
        ang = np.arange(cfg.seq_len)[:, None] * cfg.rope_theta ** (-np.arange(0, hd, 2) / hd)
        # stored as float32: rounding <= 2^-25 = 3e-8 for |value| <= 1 (plus
        # ~1e-15 from computing the angle differently); 1e-6 is loose but a
        # wrong table is off by O(1)
        np.testing.assert_allclose(fr, np.cos(ang), atol=1e-6)
        np.testing.assert_allclose(fi, np.sin(ang), atol=1e-6)
        if not cfg.tied:
            last = np.frombuffer(data, "<f4", d, len(data) - 4 * d)
            np.testing.assert_array_equal(last, W["output"][-1])
        # reader round trip
        cfg2, W2 = ck.read_llama2c(path)
        assert cfg2 == cfg.__class__(**{**cfg.__dict__, "norm_eps": 1e-5,
                                        "rope_theta": 10000.0})
        assert list(W2) == list(llama.weight_shapes(cfg))
        for k in W2:
            np.testing.assert_array_equal(W2[k], stored[k])
        path.write_bytes(data[:-4])
        with pytest.raises(ValueError):
            ck.read_llama2c(path)


def parse_safetensors(path):
    data = pathlib.Path(path).read_bytes()
    (n,) = struct.unpack_from("<Q", data, 0)
    header = json.loads(data[8:8 + n].decode("utf-8"))
    return data, n, header


def decode_float(raw, dtype, shape):
    if dtype == "F32":
        return np.frombuffer(raw, "<f4").reshape(shape)
    if dtype == "F16":
        return np.frombuffer(raw, "<f2").astype(np.float32).reshape(shape)
    if dtype == "BF16":
        bits = np.frombuffer(raw, "<u2").astype(np.uint32) << 16
        return bits.view(np.float32).reshape(shape)
    raise AssertionError(dtype)


def unpermute_by_index(w, n_heads):
    """Canonical row h*hd + 2j + s = HF row h*hd + s*hd/2 + j (explicit loop)."""
    hd = w.shape[0] // n_heads
    out = np.empty_like(w)
    for h in range(n_heads):
        for j in range(hd // 2):
            for s in range(2):
                out[h * hd + 2 * j + s] = w[h * hd + s * hd // 2 + j]
    return out


HF_EXPECTED = {"tok_embeddings": "model.embed_tokens.weight", "norm": "model.norm.weight",
               "output": "lm_head.weight"}
HF_LAYER = {"attention_norm": "input_layernorm", "attention.wq": "self_attn.q_proj",
            "attention.wk": "self_attn.k_proj", "attention.wv": "self_attn.v_proj",
            "attention.wo": "self_attn.o_proj", "ffn_norm": "post_attention_layernorm",
            "feed_forward.w1": "mlp.gate_proj", "feed_forward.w2": "mlp.down_proj",
            "feed_forward.w3": "mlp.up_proj"}


def hf_name(canon):
    if canon in HF_EXPECTED:
        return HF_EXPECTED[canon]
    _, l, rest = canon.split(".", 2)
    return f"model.layers.{l}.{HF_LAYER[rest]}.weight"


@pytest.mark.parametrize("dtype,shards,name", [("F32", 1, "gqa"), ("F16", 2, "gqa"),
                                               ("BF16", 1, "mqa"), ("BF16", 2, "mha")])
def test_safetensors_layout(tmp_path, dtype, shards, name):
    cfg = CONFIGS[name]
    W = ck.random_weights(cfg, seed=14)
    stored = ck.write_safetensors_dir(tmp_path, cfg, W, dtype=dtype, shards=shards)
    conf = json.loads((tmp_path / "config.json").read_text())
    assert conf["model_type"] == "llama" and conf["architectures"] == ["LlamaForCausalLM"]
    assert (conf["hidden_size"], conf["intermediate_size"], conf["num_hidden_layers"],
            conf["num_attention_heads"], conf["num_key_value_heads"], conf["vocab_size"],
            conf["max_position_embeddings"], conf["tie_word_embeddings"]) == (
        cfg.dim, cfg.hidden_dim, cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, cfg.vocab_size,
        cfg.seq_len, cfg.tied)
    assert conf["rms_norm_eps"] == cfg.norm_eps and conf["rope_theta"] == cfg.rope_theta

    if shards == 1:
        files = [tmp_path / "model.safetensors"]
    else:
        files = [tmp_path / f"model-{i:05d}-of-{shards:05d}.safetensors"
                 for i in range(1, shards + 1)]
        index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    found = {}
    for f in files:
        data, n, header = parse_safetensors(f)
        assert (8 + n) % 8 == 0
        meta = header.pop("__metadata__")
        assert meta == {"format": "pt"}
        spans = sorted(v["data_offsets"] for v in header.values())
        assert spans[0][0] == 0
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))  # contiguous
        assert len(data) == 8 + n + spans[-1][1]
        for tname, info in header.items():
            assert info["dtype"] == dtype
            b, e = info["data_offsets"]
            width = 4 if dtype == "F32" else 2
            assert e - b == width * int(np.prod(info["shape"]))
            found[tname] = decode_float(data[8 + n + b:8 + n + e], dtype, info["shape"])
            if shards > 1:
                assert index["weight_map"][tname] == f.name
    expected_names = {hf_name(k) for k in llama.weight_shapes(cfg)}
    assert set(found) == expected_names
    assert ("lm_head.weight" in found) == (not cfg.tied)

    for canon, shape in llama.weight_shapes(cfg).items():
        got = found[hf_name(canon)]
        assert got.shape == shape
        if canon.endswith("attention.wq"):
            got = unpermute_by_index(got, cfg.n_heads)
        elif canon.endswith("attention.wk"):
            got = unpermute_by_index(got, cfg.n_kv_heads)
        np.testing.assert_array_equal(got, stored[canon])
        # round to nearest: half an ulp relative (2^-11 for f16's 10-bit, 2^-8
        # for bf16's 7-bit mantissa); f16 subnormals (|w| < 6.1e-5) are off
        # by <= 2^-25 = 3e-8 absolute, which atol=1e-7 covers
        rel = {"F32": 0, "F16": 2 ** -11, "BF16": 2 ** -8}[dtype]
        np.testing.assert_allclose(stored[canon], W[canon], rtol=rel, atol=1e-7)
        if dtype != "F32":
            assert stored[canon].dtype == np.float32


def _read_str(data, off):
    (n,) = struct.unpack_from("<Q", data, off)
    return data[off + 8:off + 8 + n].decode("utf-8"), off + 8 + n


_FMT = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q",
        11: "<q", 12: "<d"}


def _read_value(data, off, vtype):
    if vtype == 8:
        return _read_str(data, off)
    if vtype == 9:
        etype, n = struct.unpack_from("<IQ", data, off)
        off += 12
        out = []
        for _ in range(n):
            v, off = _read_value(data, off, etype)
            out.append(v)
        return (etype, out), off
    (v,) = struct.unpack_from(_FMT[vtype], data, off)
    return v, off + struct.calcsize(_FMT[vtype])


def parse_gguf(path):
    data = pathlib.Path(path).read_bytes()
    assert data[:4] == b"GGUF"
    version, n_tensors, n_kv = struct.unpack_from("<IQQ", data, 4)
    off = 24
    kv = {}
    for _ in range(n_kv):
        key, off = _read_str(data, off)
        (vtype,) = struct.unpack_from("<I", data, off)
        value, off = _read_value(data, off + 4, vtype)
        kv[key] = (vtype, value)
    infos = []
    for _ in range(n_tensors):
        name, off = _read_str(data, off)
        (nd,) = struct.unpack_from("<I", data, off)
        ne = list(struct.unpack_from(f"<{nd}Q", data, off + 4))
        ttype, toff = struct.unpack_from("<IQ", data, off + 4 + 8 * nd)
        off += 4 + 8 * nd + 12
        infos.append((name, ne, ttype, toff))
    return data, version, kv, infos, off


TYPE_SIZE = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 8: (32, 34)}


def dequant_block_bytes(raw, ttype, n):
    """Test-side dequantization, block by block with struct."""
    out = []
    if ttype == 8:
        for b in range(n // 32):
            (d,) = struct.unpack_from("<e", raw, 34 * b)
            qs = struct.unpack_from("<32b", raw, 34 * b + 2)
            out += [q * np.float32(d) for q in qs]
    elif ttype in (2, 3):
        size = 18 if ttype == 2 else 20
        for b in range(n // 32):
            (d,) = struct.unpack_from("<e", raw, size * b)
            m = struct.unpack_from("<e", raw, size * b + 2)[0] if ttype == 3 else 0.0
            qs = raw[size * b + size - 16:size * (b + 1)]
            codes = [qs[j] & 15 for j in range(16)] + [qs[j] >> 4 for j in range(16)]
            if ttype == 2:
                out += [np.float32(c - 8) * np.float32(d) for c in codes]
            else:
                out += [np.float32(c) * np.float32(d) + np.float32(m) for c in codes]
    return np.array(out, dtype=np.float32)


GGUF_LAYER = {"attention_norm": "attn_norm", "attention.wq": "attn_q",
              "attention.wk": "attn_k", "attention.wv": "attn_v",
              "attention.wo": "attn_output", "ffn_norm": "ffn_norm",
              "feed_forward.w1": "ffn_gate", "feed_forward.w2": "ffn_down",
              "feed_forward.w3": "ffn_up"}


def gguf_name(canon):
    top = {"tok_embeddings": "token_embd.weight", "norm": "output_norm.weight",
           "output": "output.weight"}
    if canon in top:
        return top[canon]
    _, l, rest = canon.split(".", 2)
    return f"blk.{l}.{GGUF_LAYER[rest]}.weight"


GGUF_CFG = LlamaConfig(dim=64, hidden_dim=96, n_layers=2, n_heads=4, n_kv_heads=2,
                       vocab_size=330, seq_len=32, tied=False, rope_theta=10000.0)


@pytest.mark.parametrize("ttype", ["F32", "F16", "Q8_0", "Q4_0", "Q4_1"])
def test_gguf_layout(tmp_path, ttype):
    cfg = GGUF_CFG if ttype != "F16" else LlamaConfig(**{**GGUF_CFG.__dict__, "tied": True})
    W = ck.random_weights(cfg, seed=15)
    pieces, scores = ck.build_test_vocab()
    tok = ck.gguf_tokenizer(pieces, scores) if ttype in ("Q4_0", "F16") else None
    path = tmp_path / "m.gguf"
    stored = ck.write_gguf(path, cfg, W, tensor_type=ttype, tokenizer=tok)
    data, version, kv, infos, end_of_infos = parse_gguf(path)
    assert version == 3
    u32 = 4
    assert kv["general.architecture"] == (8, "llama")
    assert kv["general.alignment"] == (u32, 32)
    assert kv["llama.embedding_length"] == (u32, cfg.dim)
    assert kv["llama.feed_forward_length"] == (u32, cfg.hidden_dim)
    assert kv["llama.block_count"] == (u32, cfg.n_layers)
    assert kv["llama.attention.head_count"] == (u32, cfg.n_heads)
    assert kv["llama.attention.head_count_kv"] == (u32, cfg.n_kv_heads)
    assert kv["llama.context_length"] == (u32, cfg.seq_len)
    assert kv["llama.rope.dimension_count"] == (u32, cfg.head_dim)
    assert kv["llama.attention.layer_norm_rms_epsilon"][0] == 6
    # stored as float32 (type 6): rounding 2^-24 relative, within approx's 1e-6
    assert kv["llama.attention.layer_norm_rms_epsilon"][1] == pytest.approx(cfg.norm_eps)
    assert kv["llama.rope.freq_base"] == (6, cfg.rope_theta)
    if tok is not None:
        assert kv["tokenizer.ggml.model"] == (8, "llama")
        etype, toks = kv["tokenizer.ggml.tokens"][1]
        assert etype == 8 and len(toks) == cfg.vocab_size
        assert toks[:4] == ["<unk>", "<s>", "</s>", "<0x00>"] and toks[259] == "\u2581"
        assert "\u2581the" in toks and not any(" " in t for t in toks)
        assert kv["tokenizer.ggml.scores"][1][0] == 6
        # small integers (0, -1, -2, ...): exact in float32
        np.testing.assert_allclose(kv["tokenizer.ggml.scores"][1][1], scores)
        types = kv["tokenizer.ggml.token_type"][1]
        assert types[0] == 5 and types[1][:5] == [2, 3, 3, 6, 6] and types[1][300] == 1
        assert kv["tokenizer.ggml.bos_token_id"] == (u32, 1)
        assert kv["tokenizer.ggml.eos_token_id"] == (u32, 2)
    else:
        assert not any(k.startswith("tokenizer.") for k in kv)

    shapes = llama.weight_shapes(cfg)
    assert [i[0] for i in infos] == [gguf_name(k) for k in shapes]
    data_start = (end_of_infos + 31) // 32 * 32
    assert set(data[end_of_infos:data_start]) <= {0}
    code = {"F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q8_0": 8}[ttype]
    expected_off = 0
    for (name, ne, t, toff), (canon, shape) in zip(infos, shapes.items()):
        assert ne == list(reversed(shape))  # innermost first
        assert t == (0 if len(shape) == 1 else code)
        assert toff % 32 == 0 and toff == expected_off
        per, size = TYPE_SIZE[t]
        n = int(np.prod(shape))
        nbytes = n // per * size
        raw = data[data_start + toff:data_start + toff + nbytes]
        if t == 0:
            got = np.frombuffer(raw, "<f4")
        elif t == 1:
            got = np.frombuffer(raw, "<f2").astype(np.float32)
        else:
            got = dequant_block_bytes(raw, t, n)
        # the same float32 operations as the writer's dequantization
        # (q * d [+ m], no fused multiply-add in numpy): identical; the
        # tolerance is only slack
        np.testing.assert_allclose(got.reshape(shape), stored[canon], rtol=1e-6, atol=1e-7)
        if t == 0:
            np.testing.assert_array_equal(stored[canon], W[canon])
        expected_off = (toff + nbytes + 31) // 32 * 32
    assert len(data) == data_start + expected_off
    # the first tensor's first bytes, spelled out
    if ttype == "Q8_0":
        (d,) = struct.unpack_from("<e", data, data_start)
        x = W["tok_embeddings"][0, :32]
        # d is stored as f16: half an ulp, 2^-11 relative; 2^-10 leaves 2x
        assert d == pytest.approx(np.abs(x).max() / 127, rel=2 ** -10)
        assert struct.unpack_from("<b", data, data_start + 2)[0] == round(x[0] / d)


def test_gguf_rejects_unaligned_rows(tmp_path):
    cfg = LlamaConfig(dim=48, hidden_dim=64, n_layers=1, n_heads=4, n_kv_heads=4,
                      vocab_size=40, seq_len=8)
    with pytest.raises(ValueError):
        ck.write_gguf(tmp_path / "x.gguf", cfg, ck.random_weights(cfg), tensor_type="Q4_0")


def test_reference_runs_on_dequantized_weights(tmp_path):
    # The returned (dequantized) weights give logits close to the originals.
    cfg = GGUF_CFG
    W = ck.random_weights(cfg, seed=16)
    toks = tokens_for(cfg, 8, seed=16)
    ref = llama.forward(W, cfg, toks)
    # Quantization noise, not rounding: relative weight errors of 2^-11 (F16),
    # ~0.6% RMS (Q8_0: d / sqrt(12) with d = absmax / 127) and ~9% RMS (Q4:
    # absmax / 8 steps) move the logits by a few times that.
    for ttype, tol in (("F16", 2e-3), ("Q8_0", 2e-2), ("Q4_1", 0.3), ("Q4_0", 0.3)):
        stored = ck.write_gguf(tmp_path / f"{ttype}.gguf", cfg, W, tensor_type=ttype)
        out = llama.forward(stored, cfg, toks)
        assert np.abs(out - ref).max() < tol * np.abs(ref).max(), ttype


# --------------------------------------------------------------------------
# (f) quantization error bounds and block formats
# --------------------------------------------------------------------------


def _quant_data(seed=17):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((16, 128)).astype(np.float32)
    x[1, 5] = 40.0           # outlier
    x[2, 32:64] = 0.0        # all-zero block (d = 0)
    x[3, :32] = -1.5         # constant negative block
    x[4, :32] *= 1e-3        # tiny values
    x[5, 64:96] = np.abs(x[5, 64:96])  # one-signed block
    return x


def _f16_err(v):
    return np.abs(v - v.astype(np.float16).astype(np.float32))


def test_q8_0_error_bound():
    x = _quant_data()
    raw, deq = ck.quantize_q8_0(x)
    assert len(raw) == x.size // 32 * 34
    b = x.reshape(-1, 32)
    d = np.abs(b).max(axis=1) / 127
    # half a step, 127 times d's f16 rounding, and the float32 roundings of
    # x * (1/d) (two, on codes <= 127) and of q * d16 (one): <= 3 * 2^-24 *
    # absmax < 2^-22 absmax
    bound = d / 2 + 127 * _f16_err(d) + 2.0 ** -22 * np.abs(b).max(axis=1)
    assert np.all(np.abs(b - deq.reshape(-1, 32)) <= bound[:, None])
    assert np.all(deq.reshape(-1, 32)[2 * 4 + 1] == 0)  # zero block
    np.testing.assert_array_equal(ck.dequantize(raw, "Q8_0", x.shape), deq)
    np.testing.assert_array_equal(dequant_block_bytes(raw, 8, x.size).reshape(x.shape), deq)


def test_q4_0_error_bound():
    x = _quant_data()
    raw, deq = ck.quantize_q4_0(x)
    assert len(raw) == x.size // 32 * 18
    b = x.reshape(-1, 32)
    mx = b[np.arange(b.shape[0]), np.abs(b).argmax(axis=1)]
    d = np.abs(mx / -8)
    err = np.abs(b - deq.reshape(-1, 32))
    # 8 times d's f16 rounding, and the float32 roundings of x * (1/d) (two,
    # on values <= 8 code units: 2^-23 |max|), + 8.5 (half an ulp of 16.5 =
    # 2^-20 code units = 2^-23 |max|) and (q - 8) * d16 (2^-24 |max|):
    # 5 * 2^-24 |max| < 2^-21 |max|
    slack = 8 * _f16_err(d) + 2.0 ** -21 * np.abs(mx)
    # code 16 does not exist: values in the top half-step above +7d (opposite
    # sign to max) are clamped to code 15 and may be off by up to d
    top = (b / np.where(mx != 0, mx / -8, 1)[:, None]) > 7.5
    assert np.all(err[~top] <= np.broadcast_to((d / 2 + slack)[:, None], b.shape)[~top])
    assert np.all(err <= (d + slack)[:, None])
    # the element of largest magnitude is exact up to f16 rounding of d
    # (2^-11 relative) and one float32 product: 2^-10 leaves 2x
    np.testing.assert_allclose(deq.reshape(-1, 32)[np.arange(b.shape[0]),
                                                    np.abs(b).argmax(axis=1)],
                               mx, rtol=2 ** -10)
    np.testing.assert_array_equal(ck.dequantize(raw, "Q4_0", x.shape), deq)
    np.testing.assert_array_equal(dequant_block_bytes(raw, 2, x.size).reshape(x.shape), deq)


def test_q4_1_error_bound():
    x = _quant_data()
    raw, deq = ck.quantize_q4_1(x)
    assert len(raw) == x.size // 32 * 20
    b = x.reshape(-1, 32)
    mn, mx = b.min(axis=1), b.max(axis=1)
    d = (mx - mn) / 15
    # half a step, d's and min's f16 roundings, and the float32 roundings of
    # x - min, * (1/d) (two), + 0.5, q * d16 and + m16, each <= 2^-24 * 2
    # max|x|: <= 12 * 2^-24 * max|x| = 7.2e-7 max|x|, which 1e-6 max|x|
    # covers
    bound = d / 2 + 15 * _f16_err(d) + _f16_err(mn) + 1e-6 * np.abs(b).max(axis=1)
    assert np.all(np.abs(b - deq.reshape(-1, 32)) <= bound[:, None])
    np.testing.assert_array_equal(ck.dequantize(raw, "Q4_1", x.shape), deq)
    np.testing.assert_array_equal(dequant_block_bytes(raw, 3, x.size).reshape(x.shape), deq)


def test_nibble_order_hand_made_block():
    # x = (k - 8) * 0.5 for codes k: max magnitude is -4.0 (k=0) -> d = 0.5
    codes = np.array([j % 16 for j in range(32)])
    codes[16:] = 15 - codes[16:]
    x = ((codes - 8) * 0.5).astype(np.float32)[None]
    raw, deq = ck.quantize_q4_0(x)
    assert struct.unpack_from("<e", raw, 0)[0] == 0.5
    for j in range(16):
        assert raw[2 + j] == codes[j] | (codes[j + 16] << 4)
    np.testing.assert_array_equal(deq, x)
    # Q4_1 of 0..15 * 0.25 + 1: d = 0.25, m = 1, codes equal the index
    y = (np.arange(32) % 16 * 0.25 + 1).astype(np.float32)[None]
    raw, deq = ck.quantize_q4_1(y)
    assert struct.unpack_from("<ee", raw, 0) == (0.25, 1.0)
    assert list(raw[4:20]) == [j | (j << 4) for j in range(16)]
    np.testing.assert_array_equal(deq, y)
    # Q8_0 rounds half away from zero: 63.5 -> 64
    z = np.zeros((1, 32), np.float32)
    z[0, 0], z[0, 1], z[0, 2] = 127.0, 63.5, -63.5
    raw, _ = ck.quantize_q8_0(z)
    assert struct.unpack_from("<e3b", raw, 0) == (1.0, 127, 64, -64)


# --------------------------------------------------------------------------
# (g) Hugging Face q/k permutation
# --------------------------------------------------------------------------


def rope_rotate_half(x, pos, theta):
    """HF convention on one head: x * cos + rotate_half(x) * sin, with the
    frequency of pair i used at i and i + hd/2."""
    hd = x.shape[0]
    f = theta ** (-np.arange(0, hd, 2) / hd)
    cos = np.cos(pos * np.concatenate([f, f]))
    sin = np.sin(pos * np.concatenate([f, f]))
    rot = np.concatenate([-x[hd // 2:], x[:hd // 2]])
    return x * cos + rot * sin


def test_hf_permutation_round_trip_and_semantics():
    rng = np.random.default_rng(18)
    n_heads, hd, dim = 3, 8, 5
    w = rng.standard_normal((n_heads * hd, dim))
    p = ck.hf_permute(w, n_heads)
    for h in range(n_heads):
        for j in range(hd // 2):
            for s in range(2):
                np.testing.assert_array_equal(p[h * hd + s * hd // 2 + j], w[h * hd + 2 * j + s])
    np.testing.assert_array_equal(ck.hf_unpermute(p, n_heads), w)
    np.testing.assert_array_equal(unpermute_by_index(p, n_heads), w)
    np.testing.assert_array_equal(ck.hf_permute(ck.hf_unpermute(w, n_heads), n_heads), w)
    # Why it is right: rotate-half RoPE on the permuted projection gives the
    # permuted interleaved result, so attention scores are identical.
    x = rng.standard_normal(dim)
    for pos in (0, 1, 13):
        q_can = llama.apply_rope((w @ x).reshape(1, n_heads, hd), [pos])[0]
        q_hf = np.stack([rope_rotate_half((p @ x)[h * hd:(h + 1) * hd], pos, 10000.0)
                         for h in range(n_heads)])
        np.testing.assert_allclose(ck.hf_permute(q_can.reshape(-1, 1), n_heads)[:, 0],
                                   q_hf.reshape(-1), atol=1e-12)


# --------------------------------------------------------------------------
# Tokenizer files
# --------------------------------------------------------------------------


def test_llama2c_tokenizer_layout_and_codec(tmp_path):
    pieces, scores = ck.build_test_vocab()
    assert len(pieces) == 330 and pieces[3] == "<0x00>" and pieces[258] == "<0xFF>"
    assert pieces[259] == " "
    for p in pieces[260:]:  # every merged piece is reachable by BPE
        assert len(p) == 1 or any(p[:k] in pieces and p[k:] in pieces for k in range(1, len(p)))
    path = tmp_path / "tok.bin"
    ck.write_llama2c_tokenizer(path, pieces, scores)
    data = path.read_bytes()
    assert struct.unpack_from("<i", data, 0)[0] == max(len(p.encode()) for p in pieces)
    assert struct.unpack_from("<fi", data, 4) == (0.0, 5) and data[12:17] == b"<unk>"
    assert len(data) == 4 + sum(8 + len(p.encode()) for p in pieces)
    rp, rs, _ = ck.read_llama2c_tokenizer(path, len(pieces))
    assert rp == [p.encode() for p in pieces]
    np.testing.assert_array_equal(rs, np.float32(scores))

    text = "Once upon a time, there was a happy Lily. Zé!"
    ids = ck.encode_llama2c(pieces, scores, text)
    assert ids[0] == 1
    assert pieces[ids[1]] == " O"  # " " + "O" outranks "O" + "n"
    assert pieces.index(" upon") in ids and pieces.index(" happy") in ids
    # "Z", "é" (2 UTF-8 bytes) and "!" are not pieces: byte fallback to id byte + 3
    assert ids[-5:] == [259, ord("Z") + 3, 0xC3 + 3, 0xA9 + 3, ord("!") + 3]
    assert ck.decode_llama2c(pieces, ids[1:]) == text


# --------------------------------------------------------------------------
# (h) stories260K
# --------------------------------------------------------------------------

# What `./run stories260K.bin -z tok512.bin -t 0.0` prints (256 greedy tokens
# from BOS), as published in the model's readme
# (huggingface.co/karpathy/tinyllamas, stories260K/readme.md).
STORIES_GOLDEN = (
    "Once upon a time, there was a little girl named Lily. She loved to play outside in "
    "the park. One day, she saw a big, red ball. She wanted to play with it, but it was "
    "too high.\n"
    "Lily's mom said, \"Lily, let's go to the park.\" Lily was sad and didn't know what "
    "to do. She said, \"I want to play with your ball, but I can't find it.\"\n"
    "Lily was sad and didn't know what to do. She said, \"I'm sorry, Lily. I didn't know "
    "what to do.\"\n"
    "Lily didn't want to help her mom, so she said, \"I'm sorry, mom. I didn't know what "
    "to do.\" Her mom said, \"Don't worry, Lily. We can help you.")


def test_stories260k_generation():
    model, tok = MODELS / "stories260K.bin", MODELS / "tok512.bin"
    if not model.exists() or not tok.exists():
        pytest.skip(f"{model} / {tok} not available")
    cfg, W = ck.read_llama2c(model)
    assert (cfg.dim, cfg.hidden_dim, cfg.n_layers, cfg.n_heads, cfg.n_kv_heads,
            cfg.vocab_size, cfg.seq_len, cfg.tied) == (64, 172, 5, 8, 4, 512, 512, True)
    pieces, _, _ = ck.read_llama2c_tokenizer(tok, cfg.vocab_size)
    logits = llama.forward(W, cfg, [1, 403, 407, 261])
    assert logits.shape == (4, 512) and np.all(np.isfinite(logits))

    out = llama.greedy_generate(W, cfg, [1], 256, stop_ids=[1])
    assert len(out) == 256
    text = ck.decode_llama2c(pieces, out)
    print("\nstories260K greedy from BOS:\n" + text)
    assert text == STORIES_GOLDEN
    # the float32 path agrees on the first sentences too
    out32 = llama.greedy_generate(W, cfg, [1], 40, dtype=np.float32)
    assert out32 == out[:40]
