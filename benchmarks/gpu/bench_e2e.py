#!/usr/bin/env python3
"""End-to-end decode speed of 7B-shaped QLR CUDA libraries on a GPU:
tokens/s at batch 1, through the `qlr` Python package (python/qlr).

The libraries come from gpu-prepare.sh: `qlr-import --synthetic
--synthetic-config=llama2-7b [--synthetic-quantize=...]` compiled with
`qlr-compile --target cuda --weights-file NAME`. Their sidecar weights files
(GBs) stay behind: this script sets QLR_WEIGHTS_FILL=<byte> before opening
each model, which makes the CUDA runtime fill the model's device weight
memory with that byte instead of reading the weights (values do not change
the speed of these kernels; 0x3c gives small finite floats and mid-grid
codes, never zeros). That variable is being added to the runtime by another
change: a runtime without it fails to open the model (its sidecar is
missing), and this script reports exactly that.

Per model: an 8-token prefill, 4 warm-up decode steps, then up to --tokens
timed decode steps (one token each, a fixed token sequence; logits come
back to the host every step, as in qlr-run), stopping early when the
model's time box runs out. Reported: decode tokens/s (tokens / total), the
median and spread of the per-token times, prefill tokens/s, and the weight
bytes per token over the median time as GB/s.

    python3 benchmarks/gpu/bench_e2e.py --bundle gpu-bundle \\
        --report $OUT/gpu-check.json --budget 100
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys
import time
import traceback

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "python"))

from gpucheck import Budget, Report  # noqa: E402


def run_model(bundle: pathlib.Path, entry: dict, tokens: int, fill: str,
              seconds: float) -> dict:
    import qlr
    row = dict(name=entry["name"], library=entry["library"],
               config=entry["config"], layers=entry["layers"],
               weights=entry["weights"], weights_fill=fill)
    os.environ["QLR_WEIGHTS_FILL"] = fill
    start = time.perf_counter()
    try:
        model = qlr.Model(bundle / entry["library"])
    except qlr.Error as error:
        row["error"] = f"open: {error}"
        if "weight" in str(error).lower():
            row["error"] += (" (the sidecar weights are not carried: does "
                             "this runtime implement QLR_WEIGHTS_FILL?)")
        return row
    row["open_seconds"] = time.perf_counter() - start
    deadline = time.perf_counter() + seconds
    with model:
        info = model.info
        row["device"] = getattr(model, "device", None)
        row["weight_bytes"] = info.weight_bytes
        row["parameters"] = info.parameters
        vocab = info.vocab_size
        prompt = [1] + [(97 * i + 13) % vocab for i in range(1, 8)]
        start = time.perf_counter()
        logits = model.forward(prompt)
        row["prefill_seconds"] = time.perf_counter() - start
        row["prefill_tokens_per_s"] = len(prompt) / row["prefill_seconds"]
        row["logits_finite"] = bool(abs(float(logits[-1].sum())) < float("inf"))
        for i in range(4):
            model.forward([(31 * i + 7) % vocab])
        times = []
        for i in range(tokens):
            if time.perf_counter() > deadline:
                row["stopped_early"] = True
                break
            start = time.perf_counter()
            model.forward([(131 * i + 5) % vocab])
            times.append(time.perf_counter() - start)
        if times:
            med = statistics.median(times)
            row.update(
                decode_tokens=len(times),
                decode_tokens_per_s=len(times) / sum(times),
                ms_per_token_median=med * 1e3,
                ms_per_token_min=min(times) * 1e3,
                ms_per_token_max=max(times) * 1e3,
                weight_gbps_at_median=info.weight_bytes / med / 1e9)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", default="gpu-bundle")
    parser.add_argument("--report")
    parser.add_argument("--key", default="e2e_qlr")
    parser.add_argument("--budget", type=float, default=100.0)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--fill", default="0x3c",
                        help="QLR_WEIGHTS_FILL value: the byte, decimal or "
                             "0x-hexadecimal")
    parser.add_argument("--only", help="comma-separated model names")
    parser.add_argument("--dry-run", action="store_true",
                        help="check the bundle's entries and files only")
    args = parser.parse_args()
    bundle = pathlib.Path(args.bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    entries = manifest.get("e2e", [])
    if args.only:
        keep = set(args.only.split(","))
        entries = [e for e in entries if e["name"] in keep]
    report = Report(args.report)
    if args.dry_run:
        rows = [dict(name=e["name"], exists=(bundle / e["library"]).exists(),
                     bytes=(bundle / e["library"]).stat().st_size
                     if (bundle / e["library"]).exists() else 0)
                for e in entries]
        for r in rows:
            print(f"{r['name']:<28} {r['bytes'] / 1e6:5.1f} MB "
                  f"{'ok' if r['exists'] else 'MISSING'}")
        report.set(args.key, dict(dry_run=True, models=rows))
        return 0 if all(r["exists"] for r in rows) else 1

    budget = Budget(args.budget)
    result = dict(models=[], skipped=[], fill=args.fill,
                  note="QLR_WEIGHTS_FILL: device weights filled with one "
                       "byte, not read from the (uncarried) sidecar")
    for i, entry in enumerate(entries):
        left = budget.left()
        if left < 15:
            result["skipped"].append(entry["name"])
            continue
        share = left / (len(entries) - i)
        try:
            row = run_model(bundle, entry, args.tokens, args.fill,
                            seconds=max(10.0, share - 10.0))
        except Exception:
            row = dict(name=entry["name"], error=traceback.format_exc()[-1500:])
        result["models"].append(row)
        print(f"{row['name']:<28} "
              + (f"{row['decode_tokens_per_s']:8.2f} tok/s "
                 f"({row['ms_per_token_median']:.2f} ms/token median, "
                 f"{row['decode_tokens']} tokens, "
                 f"{row['weight_gbps_at_median']:.0f} GB/s of weights)"
                 if "decode_tokens_per_s" in row
                 else "ERROR " + row.get("error", "")[-300:]), flush=True)
        report.set(args.key, result)
    report.set(args.key, result)
    return 0 if all("error" not in r for r in result["models"]) else 1


if __name__ == "__main__":
    sys.exit(main())
