"""A PyTorch LLaMA (llama2.c ``run.c`` semantics) for quantization-aware
training of llama2.c checkpoints such as stories260K.

The weights come from the numpy reference reader
(``test/python/qlr_reference/checkpoints.read_llama2c``); the math is that of
``qlr_reference.llama.forward`` (RMSNorm, interleaved RoPE, grouped-query
causal attention, SwiGLU, tied or untied classifier), batched over
[B, T] token windows that each start at position 0.

Module names follow QLR's resource names, so that
``qlr_name(module_name)`` is the ``dense_resource`` key of the weight in a
module made by ``qlr-import``:

    layers.{i}.attention.{wq,wk,wv,wo}        nn.Linear (bias-free), [out, in]
    layers.{i}.feed_forward.{w1,w2,w3}        nn.Linear
    layers.{i}.attention_norm.weight          -> layers.{i}.attention_norm
    layers.{i}.ffn_norm.weight                -> layers.{i}.ffn_norm
    norm.weight                               -> norm
    tok_embeddings.weight                     -> tok_embeddings (tied classifier)
    output.weight                             -> output (untied only)

Perplexity windows are exactly those of ``qlr-run --perplexity`` and
``qlr.Model.perplexity`` (python/qlr/runtime.py): the text tokenized without
BOS, cut into non-overlapping windows of ctx-1 tokens each preceded by BOS, a
partial last window dropped; every token after BOS is scored from the logits
of the position before it, the NLL summed in float64.
"""

from __future__ import annotations

import math
import pathlib
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = pathlib.Path(__file__).resolve().parents[2]
_REF = ROOT / "test" / "python"
if str(_REF) not in sys.path:
    sys.path.insert(0, str(_REF))

from qlr_reference import checkpoints as _ck  # noqa: E402
from qlr_reference.llama import LlamaConfig  # noqa: E402

BOS_ID = 1

#: The linear layers of a transformer block, as QLR names them.
BLOCK_LINEARS = ("attention.wq", "attention.wk", "attention.wv", "attention.wo",
                 "feed_forward.w1", "feed_forward.w2", "feed_forward.w3")


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ms = (x * x).mean(dim=-1, keepdim=True)
        return x * torch.rsqrt(ms + self.eps) * self.weight


class Attention(nn.Module):
    def __init__(self, c: LlamaConfig):
        super().__init__()
        hd = c.head_dim
        self.n_heads, self.n_kv_heads, self.head_dim = c.n_heads, c.n_kv_heads, hd
        self.wq = nn.Linear(c.dim, c.n_heads * hd, bias=False)
        self.wk = nn.Linear(c.dim, c.n_kv_heads * hd, bias=False)
        self.wv = nn.Linear(c.dim, c.n_kv_heads * hd, bias=False)
        self.wo = nn.Linear(c.n_heads * hd, c.dim, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        hd = self.head_dim
        q = self.wq(x).view(b, t, self.n_heads, hd)
        k = self.wk(x).view(b, t, self.n_kv_heads, hd)
        v = self.wv(x).view(b, t, self.n_kv_heads, hd)
        q, k = _rope(q, cos, sin), _rope(k, cos, sin)
        group = self.n_heads // self.n_kv_heads
        if group > 1:  # query head h uses kv head h // group
            k = k.repeat_interleave(group, dim=2)
            v = v.repeat_interleave(group, dim=2)
        out = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
            is_causal=True, scale=1.0 / math.sqrt(hd))
        return self.wo(out.transpose(1, 2).reshape(b, t, self.n_heads * hd))


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Interleaved RoPE of x [B, T, H, hd]: pairs (2i, 2i+1) rotated by
    pos * freq_i; cos/sin [T, hd/2]."""
    x0, x1 = x[..., 0::2], x[..., 1::2]
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    return torch.stack((x0 * c - x1 * s, x0 * s + x1 * c), dim=-1).flatten(-2)


class FeedForward(nn.Module):
    def __init__(self, c: LlamaConfig):
        super().__init__()
        self.w1 = nn.Linear(c.dim, c.hidden_dim, bias=False)
        self.w2 = nn.Linear(c.hidden_dim, c.dim, bias=False)
        self.w3 = nn.Linear(c.dim, c.hidden_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Block(nn.Module):
    def __init__(self, c: LlamaConfig):
        super().__init__()
        self.attention_norm = RMSNorm(c.dim, c.norm_eps)
        self.attention = Attention(c)
        self.ffn_norm = RMSNorm(c.dim, c.norm_eps)
        self.feed_forward = FeedForward(c)

    def forward(self, x, cos, sin):
        x = x + self.attention(self.attention_norm(x), cos, sin)
        return x + self.feed_forward(self.ffn_norm(x))


class Llama(nn.Module):
    def __init__(self, c: LlamaConfig):
        super().__init__()
        self.config = c
        self.tok_embeddings = nn.Embedding(c.vocab_size, c.dim)
        self.layers = nn.ModuleList(Block(c) for _ in range(c.n_layers))
        self.norm = RMSNorm(c.dim, c.norm_eps)
        self.output = None if c.tied else nn.Linear(c.dim, c.vocab_size, bias=False)
        hd = c.head_dim
        freqs = c.rope_theta ** (-2.0 * torch.arange(hd // 2, dtype=torch.float64) / hd)
        angles = torch.arange(c.seq_len, dtype=torch.float64)[:, None] * freqs[None, :]
        self.register_buffer("rope_cos", torch.cos(angles).float(), persistent=False)
        self.register_buffer("rope_sin", torch.sin(angles).float(), persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits [B, T, vocab] of windows tokens [B, T] (or [T]) at positions
        0 .. T-1."""
        squeeze = tokens.dim() == 1
        if squeeze:
            tokens = tokens[None]
        t = tokens.shape[1]
        cos, sin = self.rope_cos[:t], self.rope_sin[:t]
        x = self.tok_embeddings(tokens)
        for layer in self.layers:
            x = layer(x, cos, sin)
        x = self.norm(x)
        w = self.tok_embeddings.weight if self.output is None else self.output.weight
        logits = x @ w.t()
        return logits[0] if squeeze else logits


def qlr_name(param_name: str) -> str:
    """QLR's resource name of a parameter of :class:`Llama` (linear weights:
    the module name; norm weights: the norm's name)."""
    for suffix in (".weight",):
        if param_name.endswith(suffix):
            param_name = param_name[: -len(suffix)]
    return param_name


def from_weights(config: LlamaConfig, weights: Dict[str, np.ndarray]) -> Llama:
    """A float32 :class:`Llama` holding canonical weights (qlr_reference names)."""
    model = Llama(config)
    state = {}
    for name, _ in model.named_parameters():
        state[name] = torch.from_numpy(np.ascontiguousarray(weights[qlr_name(name)],
                                                            dtype=np.float32))
    missing = model.load_state_dict(state, strict=False)
    if missing.missing_keys or missing.unexpected_keys:
        raise ValueError(f"weights do not match the model: {missing}")
    return model


def load_llama2c(path, seq_len: Optional[int] = None) -> Tuple[LlamaConfig, Llama]:
    config, weights = _ck.read_llama2c(path, seq_len)
    return config, from_weights(config, weights)


# --------------------------------------------------------------------------
# Token windows
# --------------------------------------------------------------------------


def eval_windows(ids: Sequence[int], ctx: int, max_windows: Optional[int] = None,
                 bos: int = BOS_ID) -> np.ndarray:
    """The windows of ``qlr-run --perplexity --ctx ctx --max-windows N``:
    [BOS] + ids[w*(ctx-1) : (w+1)*(ctx-1)] for every full window (a partial
    last one is dropped), at most max_windows. int64 [W, ctx]."""
    stride = ctx - 1
    n = len(ids) // stride
    if max_windows:
        n = min(n, int(max_windows))
    if n == 0:
        raise ValueError(f"{len(ids)} tokens do not fill one window of {ctx}")
    arr = np.asarray(ids[: n * stride], dtype=np.int64).reshape(n, stride)
    return np.concatenate([np.full((n, 1), bos, dtype=np.int64), arr], axis=1)


def train_windows(ids: Sequence[int], ctx: int, count: int, rng: np.random.Generator,
                  bos: int = BOS_ID) -> np.ndarray:
    """`count` training windows [BOS] + ctx-1 tokens at random offsets of ids
    (int64 [count, ctx]), the same shape of input the evaluation sees."""
    ids = np.asarray(ids, dtype=np.int64)
    starts = rng.integers(0, len(ids) - (ctx - 1) + 1, size=count)
    body = np.stack([ids[s:s + ctx - 1] for s in starts])
    return np.concatenate([np.full((count, 1), bos, dtype=np.int64), body], axis=1)


@torch.no_grad()
def perplexity(model: nn.Module, windows: np.ndarray, batch: int = 16) -> Dict[str, float]:
    """Perplexity over `windows` [W, ctx] exactly as qlr-run scores them:
    every token after the first from the logits before it, -log softmax in
    float64, summed window by window in order."""
    model.eval()
    total = 0.0
    scored = 0
    for i in range(0, len(windows), batch):
        tok = torch.from_numpy(windows[i:i + batch])
        logits = model(tok).double()
        nll = -torch.log_softmax(logits[:, :-1], dim=-1).gather(
            -1, tok[:, 1:, None]).squeeze(-1)
        total += float(nll.sum())
        scored += nll.numel()
    mean = total / scored
    return {"ppl": math.exp(mean), "nll": mean, "tokens": scored, "windows": len(windows)}


def tokenize_with_qlr(qlr_run: str, module: str, text_file: str) -> List[int]:
    """Token ids of a text file (no BOS) by the module's embedded tokenizer
    (``qlr-run MODULE --tokenize FILE``), so that PyTorch and QLR score the
    same tokens."""
    import json
    import subprocess
    out = subprocess.run([qlr_run, module, "--tokenize", text_file], check=True,
                         capture_output=True, text=True).stdout
    return [int(i) for i in json.loads(out)]
