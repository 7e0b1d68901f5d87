#!/usr/bin/env python3
"""qlr-run speed of several builds or imports of one model, side by side.

    python3 benchmarks/qlr_run_speed.py \
        --case before:/tmp/old/bin:/tmp/smollm2-old.mlirbc \
        --case after:build/bin:/tmp/smollm2.mlirbc --out /tmp/speed.json

For every case (LABEL:BIN_DIR:MODEL; the first one is the baseline), in
turns so that load changes hit all cases alike:
  * perplexity: `qlr-run MODEL --perplexity DEV --ctx C --max-windows W -t T
    --json` -> scored tokens per second (without the JIT compile) and the
    perplexity (which must agree between cases that compute the same model);
  * generation: the first P ids of the dev text as --prompt-ids, then N
    greedy tokens -> prefill and decode tokens per second;
  * compile_seconds of each invocation (qlr-cpu-pipeline plus LLVM's JIT;
    for a library made by qlr-compile, loading it);
  * start to first logit: the generation process's wall time, from its
    start to its exit, minus its decode time: loading, compiling, and the
    prefill of the prompt.
A MODEL may be a qlr-compile'd library (model.so): qlr-run runs those too.
Medians over --reps rounds go into the JSON (--out) and a markdown table,
with each case's ratio to the baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEV_TEXT = ROOT.parent / "shared" / "data" / "tinystories-dev.txt"


def run_json(cmd):
    start = time.monotonic()
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    wall = time.monotonic() - start
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(map(str, cmd))}\n{proc.stderr[-2000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    # Builds before 2026-12-06 print the compile time only on stderr.
    match = re.search(r"compiled .* in ([0-9.]+) s", proc.stderr)
    if isinstance(result, dict) and "compile_seconds" not in result and match:
        result["compile_seconds"] = float(match.group(1))
    if isinstance(result, dict):
        result["wall_seconds"] = wall
    return result


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--case", action="append", required=True, help="LABEL:BIN_DIR:MODEL (first = baseline)")
    p.add_argument("--ctx", type=int, default=512)
    p.add_argument("--windows", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--prompt-len", type=int, default=128)
    p.add_argument("--decode-tokens", type=int, default=32)
    p.add_argument("--reps", type=int, default=1)
    p.add_argument("--out", required=True)
    args = p.parse_args()

    cases = []
    for spec in args.case:
        label, bin_dir, model = spec.split(":", 2)
        run = Path(bin_dir) / "qlr-run"
        if not run.exists() or not Path(model).exists():
            sys.exit(f"{spec}: {run} or {model} does not exist")
        cases.append({"label": label, "qlr_run": str(run), "model": model, "runs": []})

    ids = run_json([cases[0]["qlr_run"], cases[0]["model"], "--tokenize", DEV_TEXT])
    ids = ids["ids"] if isinstance(ids, dict) else ids
    prompt = ",".join(str(i) for i in ids[:args.prompt_len])
    for rep in range(args.reps):
        for case in cases:
            base = [case["qlr_run"], case["model"], "-t", args.threads, "--json"]
            ppl = run_json(base + ["--perplexity", DEV_TEXT, "--ctx", args.ctx,
                                   "--max-windows", args.windows])
            gen = run_json(base + ["--prompt-ids", prompt, "-n", args.decode_tokens])
            r = {"ppl": ppl["ppl"], "ppl_tokens": ppl["tokens"],
                 "ppl_tokens_per_s": ppl["tokens"] / ppl["seconds"],
                 "prefill_tokens_per_s": gen["prefill_tokens_per_s"],
                 "decode_tokens_per_s": gen["decode_tokens_per_s"],
                 "compile_seconds": statistics.median([ppl["compile_seconds"], gen["compile_seconds"]]),
                 "first_logit_seconds": gen["wall_seconds"]
                 - (max(len(gen["tokens"]) - 1, 0) / gen["decode_tokens_per_s"]
                    if gen["decode_tokens_per_s"] else 0.0)}
            case["runs"].append(r)
            print(f"[{rep + 1}/{args.reps}] {case['label']}: {json.dumps(r)}", file=sys.stderr, flush=True)

    keys = ["compile_seconds", "first_logit_seconds", "ppl_tokens_per_s", "prefill_tokens_per_s",
            "decode_tokens_per_s"]
    for case in cases:
        case["median"] = {k: statistics.median(r[k] for r in case["runs"]) for k in keys}
        case["ppl"] = case["runs"][0]["ppl"]
    out = {"ctx": args.ctx, "windows": args.windows, "threads": args.threads,
           "prompt_len": args.prompt_len, "decode_tokens": args.decode_tokens, "reps": args.reps,
           "load_average": os.getloadavg(), "cases": cases}
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")

    b = cases[0]["median"]
    print(f"| case | compile/load s | start to first logit s | perplexity tokens/s (ctx {args.ctx}) | "
          f"prefill {args.prompt_len} tokens/s | decode tokens/s | ppl ({args.windows} windows) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for case in cases:
        m = case["median"]
        cell = lambda k, fmt: f"{m[k]:{fmt}}" + ("" if case is cases[0] else f" ({m[k] / b[k]:.2f}x)")
        print(f"| {case['label']} | {cell('compile_seconds', '.2f')} | {cell('first_logit_seconds', '.2f')} | "
              f"{cell('ppl_tokens_per_s', '.1f')} | "
              f"{cell('prefill_tokens_per_s', '.1f')} | {cell('decode_tokens_per_s', '.1f')} | {case['ppl']:.4f} |")


if __name__ == "__main__":
    main()
