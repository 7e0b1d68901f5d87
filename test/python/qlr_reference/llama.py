"""A numpy reference of a LLaMA-family decoder (llama2.c ``run.c`` semantics).

Written from the math, independently of QLR, to serve as a test oracle. All
arithmetic runs in float64 by default (``dtype=np.float32`` is available to
mimic a float32 implementation more closely).

Canonical weight names and layouts (linear weights are [out, in], y = W x):

    tok_embeddings                     [vocab, dim]
    layers.{i}.attention_norm          [dim]
    layers.{i}.attention.wq            [n_heads * hd, dim]
    layers.{i}.attention.wk            [n_kv_heads * hd, dim]
    layers.{i}.attention.wv            [n_kv_heads * hd, dim]
    layers.{i}.attention.wo            [dim, n_heads * hd]
    layers.{i}.ffn_norm                [dim]
    layers.{i}.feed_forward.w1 (gate)  [hidden, dim]
    layers.{i}.feed_forward.w2 (down)  [dim, hidden]
    layers.{i}.feed_forward.w3 (up)    [hidden, dim]
    norm                               [dim]
    output                             [vocab, dim]   (absent when tied)

The model:

    x = tok_embeddings[token]
    per layer:
        h  = rmsnorm(x, attention_norm)
        q, k, v = wq h, wk h, wv h            (split into heads of hd)
        q, k = rope(q, pos), rope(k, pos)     (interleaved pairs 2i, 2i+1)
        query head h attends with kv head h // (n_heads // n_kv_heads),
        causal softmax(q . k / sqrt(hd)) over positions <= pos
        x += wo concat(heads)
        h  = rmsnorm(x, ffn_norm)
        x += w2 (silu(w1 h) * (w3 h))
    logits = output rmsnorm(x, norm)          (output = tok_embeddings if tied)

    rmsnorm(x, w) = x / sqrt(mean(x^2) + eps) * w
    rope: freq_i = theta^(-2i / hd), angle = pos * freq_i,
          (x0, x1) -> (x0 cos - x1 sin, x0 sin + x1 cos)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np

BOS_ID = 1
EOS_ID = 2

Weights = Dict[str, np.ndarray]


# --------------------------------------------------------------------------
# Configuration and weight layout
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LlamaConfig:
    dim: int
    hidden_dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    vocab_size: int
    seq_len: int
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    tied: bool = False

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def kv_dim(self) -> int:
        return self.n_kv_heads * self.head_dim

    def validate(self) -> None:
        if self.dim % self.n_heads:
            raise ValueError(f"dim {self.dim} is not a multiple of n_heads {self.n_heads}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim {self.head_dim} must be even for rotary embeddings")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(
                f"n_heads {self.n_heads} is not a multiple of n_kv_heads {self.n_kv_heads}")
        for field in ("dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads",
                      "vocab_size", "seq_len"):
            if getattr(self, field) <= 0:
                raise ValueError(f"{field} must be positive")


def weight_shapes(config: LlamaConfig) -> Dict[str, tuple]:
    """Canonical name -> shape, in the canonical order (``output`` last,
    absent when tied)."""
    c = config
    hd = c.head_dim
    shapes = {"tok_embeddings": (c.vocab_size, c.dim)}
    for i in range(c.n_layers):
        p = f"layers.{i}."
        shapes[p + "attention_norm"] = (c.dim,)
        shapes[p + "attention.wq"] = (c.n_heads * hd, c.dim)
        shapes[p + "attention.wk"] = (c.n_kv_heads * hd, c.dim)
        shapes[p + "attention.wv"] = (c.n_kv_heads * hd, c.dim)
        shapes[p + "attention.wo"] = (c.dim, c.n_heads * hd)
        shapes[p + "ffn_norm"] = (c.dim,)
        shapes[p + "feed_forward.w1"] = (c.hidden_dim, c.dim)
        shapes[p + "feed_forward.w2"] = (c.dim, c.hidden_dim)
        shapes[p + "feed_forward.w3"] = (c.hidden_dim, c.dim)
    shapes["norm"] = (c.dim,)
    if not c.tied:
        shapes["output"] = (c.vocab_size, c.dim)
    return shapes


def check_weights(weights: Weights, config: LlamaConfig) -> None:
    """Raises ValueError unless `weights` has exactly the canonical names and
    shapes for `config`."""
    config.validate()
    expected = weight_shapes(config)
    missing = sorted(set(expected) - set(weights))
    extra = sorted(set(weights) - set(expected))
    if missing or extra:
        raise ValueError(f"weights: missing {missing}, unexpected {extra}")
    for name, shape in expected.items():
        if tuple(np.shape(weights[name])) != shape:
            raise ValueError(f"{name}: shape {np.shape(weights[name])}, expected {shape}")


def classifier(weights: Weights, config: LlamaConfig) -> np.ndarray:
    return weights["tok_embeddings"] if config.tied else weights["output"]


# --------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------


def rms_norm(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    """x / sqrt(mean(x^2) + eps) * w over the last axis."""
    ms = np.mean(x * x, axis=-1, keepdims=True)
    return x / np.sqrt(ms + eps) * w


def silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def rope_frequencies(head_dim: int, theta: float = 10000.0,
                     dtype=np.float64) -> np.ndarray:
    """freq_i = theta^(-2i / head_dim) for i < head_dim / 2."""
    i = np.arange(head_dim // 2, dtype=np.float64)
    return (theta ** (-2.0 * i / head_dim)).astype(dtype)


def rope_cos_sin(positions: Sequence[int], head_dim: int, theta: float = 10000.0,
                 dtype=np.float64):
    """cos and sin of pos * freq_i, each [len(positions), head_dim / 2]."""
    pos = np.asarray(positions, dtype=np.float64)
    angles = pos[:, None] * rope_frequencies(head_dim, theta)[None, :]
    return np.cos(angles).astype(dtype), np.sin(angles).astype(dtype)


def apply_rope(x: np.ndarray, positions: Sequence[int], theta: float = 10000.0) -> np.ndarray:
    """Interleaved rotary embedding of x [T, n_heads, head_dim] at the given
    T positions: each pair (2i, 2i+1) of every head is rotated by pos * freq_i."""
    t, _, hd = x.shape
    if len(positions) != t:
        raise ValueError("one position per row of x is required")
    cos, sin = rope_cos_sin(positions, hd, theta, dtype=x.dtype)
    cos = cos[:, None, :]
    sin = sin[:, None, :]
    x0 = x[..., 0::2]
    x1 = x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = x0 * cos - x1 * sin
    out[..., 1::2] = x0 * sin + x1 * cos
    return out


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    m = np.max(x, axis=axis, keepdims=True)
    e = np.exp(x - m)
    return e / np.sum(e, axis=axis, keepdims=True)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """log-softmax over the last axis, in float64."""
    z = np.asarray(logits, dtype=np.float64)
    m = np.max(z, axis=-1, keepdims=True)
    return z - m - np.log(np.sum(np.exp(z - m), axis=-1, keepdims=True))


# --------------------------------------------------------------------------
# KV cache and forward pass
# --------------------------------------------------------------------------


class KVCache:
    """Keys (after RoPE) and values of every layer for positions [0, length).

    k, v: [n_layers, max_len, n_kv_heads, head_dim]. A forward call with
    start_pos s and T tokens reads positions [0, s) from the cache, writes
    [s, s + T) and sets length = s + T; s may not exceed length (positions
    can be rewritten, not skipped)."""

    def __init__(self, config: LlamaConfig, max_len: Optional[int] = None,
                 dtype=np.float64):
        self.max_len = config.seq_len if max_len is None else int(max_len)
        shape = (config.n_layers, self.max_len, config.n_kv_heads, config.head_dim)
        self.k = np.zeros(shape, dtype=dtype)
        self.v = np.zeros(shape, dtype=dtype)
        self.length = 0

    def reset(self) -> None:
        self.length = 0


def forward(weights: Weights, config: LlamaConfig, tokens: Sequence[int],
            start_pos: int = 0, cache: Optional[KVCache] = None,
            dtype=np.float64) -> np.ndarray:
    """Logits [T, vocab] for a window of T tokens at positions
    start_pos .. start_pos + T - 1.

    With a cache, the window attends to the cached positions [0, start_pos)
    and to itself (causally), and its keys/values are stored for later decode
    steps (T = 1). Without a cache the window attends only to itself; RoPE
    still uses the absolute positions start_pos + t."""
    tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
    t = tokens.shape[0]
    if t == 0:
        raise ValueError("forward needs at least one token")
    if np.any(tokens < 0) or np.any(tokens >= config.vocab_size):
        raise ValueError("token id out of range")
    if start_pos < 0:
        raise ValueError("start_pos must be >= 0")
    c = config
    hd = c.head_dim
    group = c.n_heads // c.n_kv_heads
    if cache is not None:
        if start_pos > cache.length:
            raise ValueError(f"start_pos {start_pos} skips positions: the cache holds "
                             f"{cache.length}")
        if start_pos + t > cache.max_len:
            raise ValueError(f"positions up to {start_pos + t} exceed the cache "
                             f"({cache.max_len})")

    def w(name):
        return np.asarray(weights[name], dtype=dtype)

    positions = np.arange(start_pos, start_pos + t)
    x = w("tok_embeddings")[tokens]  # [T, dim]
    scale = 1.0 / math.sqrt(hd)

    for layer in range(c.n_layers):
        p = f"layers.{layer}."
        h = rms_norm(x, w(p + "attention_norm"), c.norm_eps)
        q = (h @ w(p + "attention.wq").T).reshape(t, c.n_heads, hd)
        k = (h @ w(p + "attention.wk").T).reshape(t, c.n_kv_heads, hd)
        v = (h @ w(p + "attention.wv").T).reshape(t, c.n_kv_heads, hd)
        q = apply_rope(q, positions, c.rope_theta)
        k = apply_rope(k, positions, c.rope_theta)

        if cache is not None:
            cache.k[layer, start_pos:start_pos + t] = k
            cache.v[layer, start_pos:start_pos + t] = v
            keys = cache.k[layer, :start_pos + t].astype(dtype, copy=False)
            values = cache.v[layer, :start_pos + t].astype(dtype, copy=False)
            key_pos = np.arange(0, start_pos + t)
        else:
            keys, values, key_pos = k, v, positions

        # query head hq uses kv head hq // group
        keys = np.repeat(keys, group, axis=1)      # [S, n_heads, hd]
        values = np.repeat(values, group, axis=1)  # [S, n_heads, hd]
        scores = np.einsum("thd,shd->hts", q, keys) * scale  # [H, T, S]
        causal = key_pos[None, :] <= positions[:, None]      # [T, S]
        scores = np.where(causal[None], scores, -np.inf)
        att = softmax(scores, axis=-1)
        out = np.einsum("hts,shd->thd", att, values).reshape(t, c.n_heads * hd)
        x = x + out @ w(p + "attention.wo").T

        h = rms_norm(x, w(p + "ffn_norm"), c.norm_eps)
        gate = h @ w(p + "feed_forward.w1").T
        up = h @ w(p + "feed_forward.w3").T
        x = x + (silu(gate) * up) @ w(p + "feed_forward.w2").T

    if cache is not None:
        cache.length = start_pos + t
    x = rms_norm(x, w("norm"), c.norm_eps)
    return x @ np.asarray(classifier(weights, c), dtype=dtype).T


# --------------------------------------------------------------------------
# Likelihood, perplexity, generation
# --------------------------------------------------------------------------


def token_nlls(logits: np.ndarray, tokens: Sequence[int]) -> np.ndarray:
    """-log p(tokens[t+1] | logits[t]) for t < T - 1, in float64 ([T - 1])."""
    tokens = np.asarray(tokens, dtype=np.int64)
    logits = np.asarray(logits)
    if logits.shape[0] != tokens.shape[0]:
        raise ValueError("one row of logits per token is required")
    lp = log_softmax(logits[:-1])
    return -lp[np.arange(tokens.shape[0] - 1), tokens[1:]]


def nll(logits: np.ndarray, tokens: Sequence[int]) -> float:
    """Mean negative log-likelihood of tokens[1:] given logits[:-1]."""
    if len(tokens) < 2:
        raise ValueError("nll needs at least two tokens")
    return float(np.mean(token_nlls(logits, tokens)))


def perplexity_windows(ids: Sequence[int], ctx: int, bos_id: int = BOS_ID) -> List[List[int]]:
    """The evaluation windows for `ids` (text tokens, without BOS).

    Window w is [BOS] + ids[w*(ctx-1) : (w+1)*(ctx-1)]: non-overlapping, at
    most ctx tokens, each starting with BOS. The last, partial window is kept
    when it has >= 2 tokens (BOS and at least one text token), so it is kept
    whenever it exists at all: every text token is scored exactly once."""
    if ctx < 2:
        raise ValueError("ctx must be >= 2")
    ids = [int(i) for i in ids]
    step = ctx - 1
    return [[bos_id] + ids[s:s + step] for s in range(0, len(ids), step)]


@dataclasses.dataclass
class PerplexityResult:
    nll_sum: float     # sum of -log p over all scored tokens (nats)
    n_tokens: int      # scored tokens = len(ids)
    n_windows: int
    mean_nll: float
    ppl: float         # exp(mean_nll)


def perplexity(weights: Weights, config: LlamaConfig, ids: Sequence[int], ctx: int,
               bos_id: int = BOS_ID, dtype=np.float64) -> PerplexityResult:
    """Perplexity of `ids` over the windows of `perplexity_windows`; within a
    window every token after BOS is scored from its full causal prefix (the
    window starts at position 0)."""
    if ctx > config.seq_len:
        raise ValueError(f"ctx {ctx} exceeds seq_len {config.seq_len}")
    windows = perplexity_windows(ids, ctx, bos_id)
    if not windows:
        raise ValueError("perplexity needs at least one token")
    total = 0.0
    count = 0
    for win in windows:
        logits = forward(weights, config, win, 0, None, dtype=dtype)
        nl = token_nlls(logits, win)
        total += float(np.sum(nl))
        count += nl.shape[0]
    mean = total / count
    return PerplexityResult(total, count, len(windows), mean, math.exp(mean))


def greedy_generate(weights: Weights, config: LlamaConfig, prompt_ids: Sequence[int],
                    n: int, stop_ids: Iterable[int] = (), dtype=np.float64) -> List[int]:
    """Argmax decoding: prefill the prompt with a KV cache, then n - 1 decode
    steps. Returns the (up to) n new tokens, prompt excluded. Generation ends
    early, without returning it, when a token of `stop_ids` is produced (e.g.
    stop_ids=(1,) for llama2.c's stop-at-BOS). Ties go to the lowest id."""
    prompt = [int(i) for i in prompt_ids]
    if not prompt:
        raise ValueError("the prompt must hold at least one token (e.g. BOS)")
    if len(prompt) + n - 1 > config.seq_len:
        raise ValueError("prompt + generated tokens exceed seq_len")
    stop = set(int(i) for i in stop_ids)
    cache = KVCache(config, dtype=dtype)
    out: List[int] = []
    if n <= 0:
        return out
    logits = forward(weights, config, prompt, 0, cache, dtype=dtype)
    pos = len(prompt)
    while True:
        nxt = int(np.argmax(logits[-1]))
        if nxt in stop:
            break
        out.append(nxt)
        if len(out) == n:
            break
        logits = forward(weights, config, [nxt], pos, cache, dtype=dtype)
        pos += 1
    return out
