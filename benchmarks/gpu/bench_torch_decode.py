#!/usr/bin/env python3
"""PyTorch fp16 baseline for end-to-end decoding: a plain LLaMA block stack
(RMSNorm, rotary attention with a KV cache, SwiGLU MLP, untied classifier)
with random weights in a 7B/8B shape, batch 1, greedy.

Two ways of running the same step, both timed over --tokens decode steps
after a short prefill and warm-up, with one synchronization at the end
(the next token stays on the GPU):

  eager   one Python-issued kernel per op: what a plain PyTorch loop gets;
  graph   the step captured once as a CUDA graph and replayed (the position
          and token are device tensors; attention covers the whole cache
          with a mask), which removes the launch overhead: about the best
          PyTorch does without custom kernels.

    python3 benchmarks/gpu/bench_torch_decode.py --config llama2-7b \\
        --report $OUT/gpu-check.json --key e2e_torch_llama2_7b
"""

from __future__ import annotations

import argparse
import math
import pathlib
import sys
import time
import traceback

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from gpucheck import Report  # noqa: E402

CONFIGS = {
    # Matches qlr-import --synthetic-config (lib/Import/SyntheticCheckpoint.cpp).
    "llama2-7b": dict(dim=4096, hidden=11008, layers=32, heads=32,
                      kv_heads=32, head_dim=128, vocab=32000, theta=1e4),
    "llama3-8b": dict(dim=4096, hidden=14336, layers=32, heads=32,
                      kv_heads=8, head_dim=128, vocab=128256, theta=5e5),
}


class Model:
    def __init__(self, cfg: dict, layers: int, ctx: int, torch):
        self.t = torch
        self.cfg = cfg
        self.layers = layers
        self.ctx = ctx
        dev, dt = "cuda", torch.float16
        d, f = cfg["dim"], cfg["hidden"]
        q, kv = cfg["heads"] * cfg["head_dim"], cfg["kv_heads"] * cfg["head_dim"]

        def w(*shape, scale=None):
            scale = scale or 1.0 / math.sqrt(shape[-1])
            return torch.empty(*shape, device=dev, dtype=dt).normal_(0, scale)

        self.emb = w(cfg["vocab"], d, scale=1.0)
        self.out = w(cfg["vocab"], d)
        self.blocks = []
        for _ in range(layers):
            self.blocks.append(dict(
                attn_norm=torch.ones(d, device=dev, dtype=dt),
                wqkv=w(q + 2 * kv, d), wo=w(d, q),
                ffn_norm=torch.ones(d, device=dev, dtype=dt),
                w13=w(2 * f, d), w2=w(d, f)))
        self.norm = torch.ones(d, device=dev, dtype=dt)
        self.cache = torch.zeros(layers, 2, cfg["kv_heads"], ctx,
                                 cfg["head_dim"], device=dev, dtype=dt)
        half = cfg["head_dim"] // 2
        inv = 1.0 / (cfg["theta"] ** (torch.arange(half, device=dev) / half))
        angles = torch.arange(ctx, device=dev)[:, None] * inv[None, :]
        self.cos, self.sin = angles.cos().to(dt), angles.sin().to(dt)
        # Bytes a decode step reads: every matrix but the embedding table
        # (one row of it).
        self.weight_bytes = 2 * (self.out.numel() + sum(
            b["wqkv"].numel() + b["wo"].numel() + b["w13"].numel() +
            b["w2"].numel() for b in self.blocks))

    def rms(self, x, g):
        t = self.t
        x32 = x.float()
        return (x32 * t.rsqrt(x32.pow(2).mean(-1, keepdim=True) + 1e-5)
                ).to(x.dtype) * g

    def rope(self, x, cos, sin):
        x1, x2 = x[..., 0::2], x[..., 1::2]
        return self.t.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos),
                            -1).flatten(-2)

    def step(self, token, pos, pos_t=None):
        """One decode step: token [1] (device), position `pos` (int, eager)
        or `pos_t` (device tensor [1], graph: attention over the whole cache
        with a mask). Returns the next token [1]."""
        t, cfg = self.t, self.cfg
        F = t.nn.functional
        h, kvh, hd = cfg["heads"], cfg["kv_heads"], cfg["head_dim"]
        x = self.emb[token]                                    # [1, d]
        if pos_t is None:
            cos, sin = self.cos[pos], self.sin[pos]
        else:
            cos, sin = self.cos[pos_t][0], self.sin[pos_t][0]
            mask = (t.arange(self.ctx, device="cuda") <= pos_t)[None, None, None, :]
        for layer, b in enumerate(self.blocks):
            qkv = F.linear(self.rms(x, b["attn_norm"]), b["wqkv"])[0]
            q = self.rope(qkv[:h * hd].view(h, hd), cos, sin)
            k = self.rope(qkv[h * hd:(h + kvh) * hd].view(kvh, hd), cos, sin)
            v = qkv[(h + kvh) * hd:].view(kvh, hd)
            kc, vc = self.cache[layer, 0], self.cache[layer, 1]  # [kvh, S, hd]
            if pos_t is None:
                kc[:, pos] = k
                vc[:, pos] = v
                keys, values, m = kc[:, :pos + 1], vc[:, :pos + 1], None
            else:
                kc.index_copy_(1, pos_t, k[:, None])
                vc.index_copy_(1, pos_t, v[:, None])
                keys, values, m = kc, vc, mask
            a = F.scaled_dot_product_attention(
                q[None, :, None], keys[None], values[None], attn_mask=m,
                enable_gqa=kvh != h)
            x = x + F.linear(a.reshape(1, h * hd), b["wo"])
            gate, up = F.linear(self.rms(x, b["ffn_norm"]), b["w13"]).chunk(2, -1)
            x = x + F.linear(F.silu(gate) * up, b["w2"])
        logits = F.linear(self.rms(x, self.norm), self.out)
        return logits.argmax(-1)


def bench(cfg_name: str, layers: int, tokens: int, ctx: int, modes) -> dict:
    import torch
    cfg = CONFIGS[cfg_name]
    layers = layers or cfg["layers"]
    result = dict(config=cfg_name, layers=layers, dtype="float16",
                  batch=1, tokens=tokens, torch=torch.__version__)
    start = time.perf_counter()
    torch.manual_seed(0)
    model = Model(cfg, layers, ctx, torch)
    torch.cuda.synchronize()
    result["init_seconds"] = time.perf_counter() - start
    result["weight_bytes_per_token"] = model.weight_bytes
    prefill = 8
    with torch.inference_mode():
        if "eager" in modes:
            token = torch.tensor([1], device="cuda")
            for pos in range(prefill + 4):           # prefill + warm-up
                token = model.step(token, pos)
            torch.cuda.synchronize()
            start = time.perf_counter()
            for i in range(tokens):
                token = model.step(token, prefill + 4 + i)
            torch.cuda.synchronize()
            seconds = time.perf_counter() - start
            result["eager"] = dict(
                tokens_per_s=tokens / seconds, ms_per_token=seconds / tokens * 1e3,
                weight_gbps=model.weight_bytes * tokens / seconds / 1e9)
        if "graph" in modes:
            try:
                pos_t = torch.zeros(1, dtype=torch.long, device="cuda")
                token = torch.ones(1, dtype=torch.long, device="cuda")
                stream = torch.cuda.Stream()
                stream.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(stream):
                    for _ in range(3):
                        model.step(token, None, pos_t)
                torch.cuda.current_stream().wait_stream(stream)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    next_token = model.step(token, None, pos_t)
                for p in range(prefill + 4):
                    pos_t.fill_(p)
                    graph.replay()
                    token.copy_(next_token)
                torch.cuda.synchronize()
                start = time.perf_counter()
                for i in range(tokens):
                    pos_t.fill_(prefill + 4 + i)
                    graph.replay()
                    token.copy_(next_token)
                torch.cuda.synchronize()
                seconds = time.perf_counter() - start
                result["graph"] = dict(
                    tokens_per_s=tokens / seconds,
                    ms_per_token=seconds / tokens * 1e3,
                    weight_gbps=model.weight_bytes * tokens / seconds / 1e9)
            except Exception as error:
                result["graph"] = dict(error=f"{type(error).__name__}: "
                                       f"{error}"[:300])
    del model
    torch.cuda.empty_cache()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="llama2-7b")
    parser.add_argument("--layers", type=int, default=0,
                        help="layers (0: the configuration's)")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--ctx", type=int, default=256)
    parser.add_argument("--modes", default="eager,graph")
    parser.add_argument("--report")
    parser.add_argument("--key", default="e2e_torch")
    args = parser.parse_args()
    report = Report(args.report)
    try:
        result = bench(args.config, args.layers, args.tokens, args.ctx,
                       args.modes.split(","))
    except Exception:
        result = dict(config=args.config, layers=args.layers,
                      error=traceback.format_exc()[-1500:])
    report.set(args.key, result)
    print(f"torch fp16 {args.config} layers={result.get('layers')}: "
          + ", ".join(f"{m} {result[m]['tokens_per_s']:.1f} tok/s"
                      for m in ("eager", "graph")
                      if isinstance(result.get(m), dict) and
                      "tokens_per_s" in result[m])
          + (f" ERROR {result['error'][-300:]}" if "error" in result else ""))
    return 0 if "error" not in result else 1


if __name__ == "__main__":
    sys.exit(main())
