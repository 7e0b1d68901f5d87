#!/usr/bin/env python3
"""llama.cpp reference numbers for QLR: tokenization, perplexity, greedy
generation and speed of a GGUF model, written as one JSON file.

Run with the benchmark environment made by scripts/setup-bench.sh:

    .venv-bench/bin/python benchmarks/llamacpp_reference.py \
        --model PATH.gguf --out benchmarks/results/NAME.json [--speed]

Perplexity uses NON-OVERLAPPING windows of --ctx tokens, the same as
`qlr-run --perplexity`:
  - BOS windows: window w is [BOS] + tokens[w*(ctx-1) : (w+1)*(ctx-1)];
  - no-BOS windows: window w is tokens[w*ctx : (w+1)*ctx].
By default the mode follows the tokenizer's add_bos (GGUF
tokenizer.ggml.add_bos_token) like qlr-run does; --bos-windows and
--no-bos-windows force one. SmolLM2 has add_bos=false, so it gets no-BOS
windows. A last partial window is dropped; --max-windows N keeps the first N.
The KV cache is cleared before each window, all ctx positions get logits, and
positions 1..ctx-1 are scored from their causal prefix (the first token of a
window, BOS or not, is context only):
NLL_i = -log softmax(logits[i-1])[tok[i]], i = 1..ctx-1, computed in float64.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import platform
import re
import sys
import time
from pathlib import Path

import numpy as np

import llama_cpp

# The llama.cpp commit vendored by each llama-cpp-python release (its CHANGELOG).
VENDORED_LLAMA_CPP = {"0.3.36": "ggml-org/llama.cpp@0c1e57098 (0.5.0-dev)"}
GEN_PROMPT = "Once upon a time"


def log(msg: str) -> None:
    print(f"[llamacpp_reference] {msg}", file=sys.stderr, flush=True)


def load(model: str, ctx: int, threads: int, logits_all: bool) -> llama_cpp.Llama:
    return llama_cpp.Llama(
        model_path=model,
        n_ctx=ctx,
        n_batch=ctx,
        n_ubatch=ctx,
        n_threads=threads,
        n_threads_batch=threads,
        logits_all=logits_all,
        seed=0,
        verbose=False,
    )


def clear(llm: llama_cpp.Llama) -> None:
    """Empties the KV cache (all sequences) and the Python-side token count."""
    llm._ctx.kv_cache_clear()
    llm.reset()


def last_logits(llm: llama_cpp.Llama) -> np.ndarray:
    ptr = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
    return np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),))


def window_nll(llm: llama_cpp.Llama, window: list[int]) -> np.ndarray:
    """Per-token NLL (float64) of window[1:], each from its causal prefix."""
    clear(llm)
    llm.eval(window)
    n = len(window)
    logits = np.asarray(llm.scores[: n - 1], dtype=np.float64)  # rows 0..n-2
    m = logits.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(logits - m).sum(axis=1))
    target = np.asarray(window[1:], dtype=np.int64)
    return lse - logits[np.arange(n - 1), target]


def batch_vs_tokenwise(llm, window: list[int]) -> dict:
    """How far llama.cpp's own batched (prefill) logits are from its one-token-
    at-a-time (decode) logits for the same window: a floor for oracle tolerances."""

    def nll_of(logits: np.ndarray) -> np.ndarray:
        m = logits.max(axis=1, keepdims=True)
        lse = m[:, 0] + np.log(np.exp(logits - m).sum(axis=1))
        return lse[:-1] - logits[np.arange(len(window) - 1), window[1:]]

    clear(llm)
    llm.eval(window)
    batched = np.array(llm.scores[: len(window)], dtype=np.float64)
    clear(llm)
    for tok in window:
        llm.eval([tok])
    tokenwise = np.array(llm.scores[: len(window)], dtype=np.float64)
    diff = np.abs(batched - tokenwise)
    nb, nt = nll_of(batched), nll_of(tokenwise)
    return {
        "window": f"[BOS] + first {len(window) - 1} text tokens" if window[0] == llm.token_bos()
        else f"first {len(window)} text tokens (no BOS)",
        "logits_max_abs_diff": float(diff.max()),
        "logits_mean_abs_diff": float(diff.mean()),
        "argmax_agreement": float((batched.argmax(1) == tokenwise.argmax(1)).mean()),
        "mean_nll_batched": float(nb.mean()),
        "mean_nll_tokenwise": float(nt.mean()),
        "max_abs_nll_diff_per_token": float(np.abs(nb - nt).max()),
    }


def ppl_windows(tokens: list[int], ctx: int, bos: int | None, max_windows: int | None = None) -> list[list[int]]:
    """The windows qlr-run --perplexity evaluates: [bos] + ctx-1 tokens when bos
    is not None, else ctx tokens; non-overlapping, last partial one dropped."""
    span = ctx - 1 if bos is not None else ctx
    n_windows = len(tokens) // span
    if max_windows:
        n_windows = min(n_windows, max_windows)
    prefix = [bos] if bos is not None else []
    return [prefix + tokens[w * span : (w + 1) * span] for w in range(n_windows)]


def windowing_text(bos_windows: bool) -> str:
    if bos_windows:
        return ("non-overlapping: window w = [BOS] + tokens[w*(ctx-1):(w+1)*(ctx-1)]; "
                "last partial window dropped; all tokens but BOS scored")
    return ("non-overlapping, no BOS: window w = tokens[w*ctx:(w+1)*ctx]; last partial window "
            "dropped; positions 1..ctx-1 scored (the window's first token is context only)")


def perplexity(llm, tokens: list[int], ctx: int, bos: int, bos_windows: bool = True,
               max_windows: int | None = None) -> dict:
    windows = ppl_windows(tokens, ctx, bos if bos_windows else None, max_windows)
    n_windows = len(windows)
    if n_windows == 0:
        raise SystemExit(f"text has {len(tokens)} tokens, fewer than one window of ctx={ctx}")
    per_window, first = [], None
    total, count = 0.0, 0
    t0 = time.perf_counter()
    for w, window in enumerate(windows):
        assert len(window) == ctx
        nll = window_nll(llm, window)
        if w == 0:
            first = nll
        total += float(nll.sum())
        count += nll.size
        per_window.append(float(nll.mean()))
        if (w + 1) % 10 == 0 or w + 1 == n_windows:
            log(f"ppl window {w + 1}/{n_windows}: running ppl {np.exp(total / count):.4f}")
    seconds = time.perf_counter() - t0
    mean = total / count
    return {
        "ctx": ctx,
        "bos_windows": bos_windows,
        "windowing": windowing_text(bos_windows),
        "windows": n_windows,
        "max_windows": max_windows,
        "tokens_scored": count,
        "tokens_unused": len(tokens) - n_windows * (ctx - 1 if bos_windows else ctx),
        "mean_nll": mean,
        "ppl": float(np.exp(mean)),
        "first_window": {
            "tokens_scored": int(first.size),
            "mean_nll": float(first.mean()),
            "ppl": float(np.exp(first.mean())),
            "nll_per_token": [round(float(x), 6) for x in first],
        },
        "mean_nll_per_window": [round(x, 6) for x in per_window],
        "seconds": round(seconds, 2),
    }


def greedy(llm, n_new: int) -> dict:
    clear(llm)
    # add_bos=True asks for the BOS only where the vocabulary's add_bos says so
    # (llama_tokenize's add_special); SmolLM2's says no.
    prompt = llm.tokenize(GEN_PROMPT.encode(), add_bos=True, special=False)
    llm.eval(prompt)
    out = []
    for _ in range(n_new):
        tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        out.append(tok)
        llm.eval([tok])
    eos = llm.token_eos()
    return {
        "prompt": GEN_PROMPT,
        "prompt_ids": prompt,
        "new_tokens": n_new,
        "sampling": "argmax of the last position's logits (temperature 0), no stop on EOS",
        "ids": out,
        "text": llm.detokenize(out).decode("utf-8", errors="replace"),
        "eos_id": eos,
        "eos_generated": eos in out,
    }


def speed(model: str, threads: int, tokens: list[int], bos: int, reps: int) -> dict:
    """Prefill: one 128-token batch ([BOS] + 127 text tokens), logits for the last
    position only, after a warm-up. Decode: 64 greedy single-token steps after the
    "Once upon a time" prompt (after an 8-step warm-up). `reps` runs each."""
    llm = load(model, 512, threads, logits_all=False)
    batch = [bos] + tokens[:127]
    clear(llm)
    llm.eval(batch)  # warm-up
    prefill = []
    for _ in range(reps):
        clear(llm)
        t0 = time.perf_counter()
        llm.eval(batch)
        prefill.append(time.perf_counter() - t0)
    prompt = llm.tokenize(GEN_PROMPT.encode(), add_bos=True, special=False)

    def decode_run(steps: int) -> float:
        clear(llm)
        llm.eval(prompt)
        t0 = time.perf_counter()
        for _ in range(steps):
            llm.eval([int(np.argmax(last_logits(llm)))])
        return time.perf_counter() - t0

    decode_run(8)  # warm-up
    decode = [decode_run(64) for _ in range(reps)]
    p, d = float(np.median(prefill)), float(np.median(decode))
    res = {
        "note": "tok_per_s from the median run; best_tok_per_s from the fastest run "
        "(the machine is shared, so the best run is the least disturbed one)",
        "threads": threads,
        "prefill_tokens": len(batch),
        "prefill_seconds": [round(x, 5) for x in prefill],
        "prefill_tok_per_s": round(len(batch) / p, 2),
        "prefill_best_tok_per_s": round(len(batch) / min(prefill), 2),
        "decode_tokens": 64,
        "decode_seconds": [round(x, 5) for x in decode],
        "decode_tok_per_s": round(64 / d, 2),
        "decode_best_tok_per_s": round(64 / min(decode), 2),
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }
    del llm
    return res


def tensor_types(model: str) -> dict | None:
    try:
        from gguf import GGUFReader
    except ImportError:
        return None
    reader = GGUFReader(model)
    by_type: dict[str, int] = collections.Counter()
    by_role: dict[str, set] = collections.defaultdict(set)
    tensors = {}
    for t in reader.tensors:
        ty = t.tensor_type.name
        by_type[ty] += 1
        role = re.sub(r"^blk\.\d+\.", "blk.N.", t.name)
        by_role[role].add(ty)
        tensors[t.name] = {"type": ty, "shape": [int(x) for x in t.shape]}
    ftype = None
    for field in reader.fields.values():
        if field.name == "general.file_type":
            ftype = int(field.parts[field.data[0]][0])
    return {
        "general.file_type": ftype,
        "note": "shape is GGUF ne order: ne[0] is the contiguous (input) dimension; "
        "no output.weight means the LM head is tied to token_embd.weight",
        "count_by_type": dict(sorted(by_type.items())),
        "types_by_role": {k: sorted(v) for k, v in sorted(by_role.items())},
        "tensors": tensors,
    }


def build_info() -> dict:
    stamp = Path(sys.prefix) / ".llama-cpp-build"
    libdir = Path(llama_cpp.__file__).parent / "lib"
    return {
        "llama_cpp_python": llama_cpp.__version__,
        "llama_cpp": VENDORED_LLAMA_CPP.get(llama_cpp.__version__, "unknown"),
        "build": stamp.read_text().strip() if stamp.exists() else "unknown (no .llama-cpp-build stamp)",
        "libs": sorted(p.name for p in libdir.glob("*.so*")) if libdir.exists() else [],
        "system_info": llama_cpp.llama_print_system_info().decode(errors="replace").strip(),
        "python": platform.python_version(),
        "cpu": next(
            (l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")),
            platform.processor(),
        ),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="GGUF file")
    ap.add_argument("--text", default="/work/shared/data/tinystories-dev.txt")
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--max-tokens", type=int, default=None, help="use only this prefix of the text's tokens for perplexity")
    ap.add_argument("--max-windows", type=int, default=None, help="perplexity on the first N windows only")
    bos_group = ap.add_mutually_exclusive_group()
    bos_group.add_argument("--no-bos-windows", dest="bos_windows", action="store_false", default=None,
                           help="perplexity windows are ctx text tokens, no BOS (qlr-run's windows when the "
                           "tokenizer does not add BOS)")
    bos_group.add_argument("--bos-windows", dest="bos_windows", action="store_true", default=None,
                           help="perplexity windows are [BOS] + ctx-1 text tokens")
    ap.add_argument("--threads", type=int, default=2, help="threads for perplexity and generation")
    ap.add_argument("--gen-tokens", type=int, default=32)
    ap.add_argument("--speed", action="store_true", help="also measure prefill/decode speed at 1 and 2 threads")
    ap.add_argument("--speed-reps", type=int, default=5)
    ap.add_argument("--no-ppl", action="store_true", help="skip perplexity")
    ap.add_argument("--out", required=True, help="output JSON")
    ap.add_argument("--merge", action="store_true",
                    help="start from the existing --out JSON and replace only the sections this run "
                    "computes (e.g. --no-ppl --speed to re-measure speed on a quieter machine)")
    args = ap.parse_args()

    llama_cpp.llama_backend_init()
    result: dict = json.loads(Path(args.out).read_text()) if args.merge and Path(args.out).exists() else {}
    result |= {
        "model": os.path.abspath(args.model),
        "model_bytes": os.path.getsize(args.model),
        "text": os.path.abspath(args.text),
        "build": build_info(),
    }
    log(result["build"]["system_info"])
    result["gguf_tensor_types"] = tensor_types(args.model)

    llm = load(args.model, args.ctx, args.threads, logits_all=True)
    bos = llm.token_bos()
    add_bos = bool(llm._model.add_bos_token())
    bos_windows = add_bos if args.bos_windows is None else args.bos_windows
    log(f"tokenizer add_bos={add_bos}; perplexity windows {'with' if bos_windows else 'without'} BOS")
    text = Path(args.text).read_bytes()
    t0 = time.perf_counter()
    tokens = llm.tokenize(text, add_bos=False, special=False)
    ids = np.asarray(tokens, dtype="<i4")
    result["tokenization"] = {
        "call": "Llama.tokenize(text_bytes, add_bos=False, special=False)",
        "text_bytes": len(text),
        "count": len(tokens),
        "bos_id": bos,
        "add_bos": add_bos,
        "first_64": tokens[:64],
        "sha256_int32le": hashlib.sha256(ids.tobytes()).hexdigest(),
        "seconds": round(time.perf_counter() - t0, 3),
        "ids": tokens,
    }
    log(f"text: {len(text)} bytes -> {len(tokens)} tokens")
    ppl_tokens = tokens if args.max_tokens is None else tokens[: args.max_tokens]

    if not args.no_ppl:
        result["perplexity"] = perplexity(llm, ppl_tokens, args.ctx, bos, bos_windows, args.max_windows)
        result["perplexity"]["threads"] = args.threads
        result["perplexity"]["max_tokens"] = args.max_tokens
        p = result["perplexity"]
        log(f"ppl: {p['windows']} windows, {p['tokens_scored']} tokens, NLL {p['mean_nll']:.6f}, ppl {p['ppl']:.4f}")
    result["batch_vs_tokenwise"] = batch_vs_tokenwise(llm, [bos] + tokens[:127] if bos_windows else tokens[:128])
    log(f"batched vs token-wise logits: {result['batch_vs_tokenwise']}")
    result["generation"] = greedy(llm, args.gen_tokens)
    log(f"greedy: {result['generation']['text']!r}")
    del llm

    if args.speed:
        result["speed"] = []
        for threads in (1, 2):
            s = speed(args.model, threads, tokens, bos, args.speed_reps)
            log(f"speed t={threads}: prefill {s['prefill_tok_per_s']} (best {s['prefill_best_tok_per_s']}) tok/s, "
                f"decode {s['decode_tok_per_s']} (best {s['decode_best_tok_per_s']}) tok/s")
            result["speed"].append(s)

    # number lists on one line so the file stays readable
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    text_json = json.dumps(result, indent=1)
    text_json = re.sub(r"\[\s*([-0-9.e,\s]+?)\s*\]", lambda m: "[" + ", ".join(x.strip(",") for x in m.group(1).split()) + "]", text_json)
    Path(args.out).write_text(text_json + "\n")
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
