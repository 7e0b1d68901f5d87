#!/usr/bin/env python3
"""Runs the CUDA model libraries of the GPU bundle through the `qlr` Python
package (python/qlr: ctypes, NumPy, no build) and compares them with the
CPU references that gpu-prepare.sh recorded with qlr-run on the same
modules: perplexity on the bundled text slice and the greedy tokens of the
bundled prompt.

    python3 benchmarks/gpu/check_models.py --bundle gpu-bundle \\
        --report $OUT/gpu-check.json --budget 80

Tolerances (relative difference of the perplexity from the CPU's):
1e-3 for float32 models and 2e-3 for quantized ones (both decode the same
codes exactly; the GPU's kernels sum in another order than the CPU's tiled
ones, and quantized models' logits are larger); the greedy tokens must be
equal (the first difference is reported).

--dry-run opens each library's C interface far enough to read its ABI
version (no model is opened: that needs the GPU) and checks the references.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import pathlib
import sys
import time
import traceback

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "python"))

from gpucheck import Budget, Report  # noqa: E402


def check_case(bundle: pathlib.Path, case: dict, text: str, prompt: str,
               setup: dict) -> dict:
    import qlr
    row = dict(name=case["name"], binary=case["binary"],
               library=case["library"])
    ref = case["reference"]
    start = time.perf_counter()
    try:
        model = qlr.Model(bundle / case["library"])
    except qlr.Error as error:
        row["error"] = f"open: {error}"
        return row
    row["open_seconds"] = time.perf_counter() - start
    with model:
        info = model.info
        row["device"] = getattr(model, "device", None)
        row["info"] = dict(layers=info.layers, dim=info.dim,
                           weight_bytes=info.weight_bytes,
                           target_cpu=info.target_cpu)
        start = time.perf_counter()
        ppl = model.perplexity(text, ctx=setup["ctx"],
                               max_windows=setup["max_windows"])
        row["perplexity_seconds"] = time.perf_counter() - start
        row["perplexity"] = ppl
        rel = abs(ppl["ppl"] - ref["ppl"]) / ref["ppl"]
        row["ppl_rel_diff"] = rel
        row["ppl_reference"] = ref["ppl"]
        row["ppl_ok"] = bool(rel <= case["ppl_tolerance"] and
                             ppl["tokens"] == ref["tokens"])
        start = time.perf_counter()
        tokens = model.generate_tokens(prompt, setup["tokens"])
        seconds = time.perf_counter() - start
        row["generate_seconds"] = seconds
        row["tokens"] = tokens
        expected = ref["greedy_tokens"]
        mismatch = next((i for i, (a, b) in enumerate(zip(tokens, expected))
                         if a != b), None)
        if mismatch is None and len(tokens) != len(expected):
            mismatch = min(len(tokens), len(expected))
        row["tokens_first_mismatch"] = mismatch
        row["tokens_ok"] = mismatch is None
        if mismatch is not None and mismatch < min(len(tokens), len(expected)):
            # How close the call was: the GPU's logits at that step for its
            # token and for the CPU's (a near tie flips on rounding alone).
            ids = model.tokenize(prompt, add_bos=None) + tokens[:mismatch]
            model.reset(0)
            last = model.forward(ids)[-1]
            row["mismatch_logit_gap"] = float(last[tokens[mismatch]] -
                                              last[expected[mismatch]])
            row["mismatch_logit_std"] = float(last.std())
    row["ok"] = bool(row["ppl_ok"] and row["tokens_ok"])
    return row


def dry_run(bundle: pathlib.Path, manifest: dict) -> dict:
    """What can be checked without a GPU: every library is there, loads
    (dlopen: its constructors find no driver and record that), reports the
    C ABI version, and every reference is complete."""
    result = dict(dry_run=True, cases=[])
    for case in manifest["models"]:
        path = bundle / case["library"]
        row = dict(name=case["name"], binary=case["binary"],
                   exists=path.exists())
        if path.exists():
            lib = ctypes.CDLL(str(path), mode=os.RTLD_LOCAL)
            lib.qlr_runtime_abi_version.restype = ctypes.c_uint32
            row["abi_version"] = lib.qlr_runtime_abi_version()
            row["bytes"] = path.stat().st_size
        ref = case["reference"]
        row["reference_ok"] = all(k in ref for k in ("ppl", "nll", "tokens",
                                                     "greedy_tokens"))
        result["cases"].append(row)
    result["ok"] = all(r["exists"] and r["reference_ok"] and
                       r.get("abi_version") for r in result["cases"])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", default="gpu-bundle")
    parser.add_argument("--report")
    parser.add_argument("--key", default="models")
    parser.add_argument("--budget", type=float, default=80.0)
    parser.add_argument("--only", help="comma-separated case names")
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    bundle = pathlib.Path(args.bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    report = Report(args.report)
    if args.dry_run:
        result = dry_run(bundle, manifest)
        report.set(args.key, result)
        for row in result["cases"]:
            print(f"{row['name']:<32} {row['binary']:<5} "
                  f"abi {row.get('abi_version')} "
                  f"{row.get('bytes', 0) / 1e6:5.1f} MB "
                  f"reference {'ok' if row['reference_ok'] else 'MISSING'}")
        return 0 if result["ok"] else 1

    setup = manifest["correctness"]
    text = (bundle / setup["text"]).read_text(encoding="utf-8")
    budget = Budget(args.budget)
    result = dict(setup=setup, cases=[], skipped=[])
    cases = manifest["models"]
    if args.only:
        keep = set(args.only.split(","))
        cases = [c for c in cases if c["name"] in keep]
    for case in cases:
        if budget.expired(reserve=5):
            result["skipped"].append(case["name"])
            continue
        try:
            row = check_case(bundle, case, text, setup["prompt"], setup)
        except Exception:
            row = dict(name=case["name"], binary=case["binary"],
                       error=traceback.format_exc()[-1500:])
        result["cases"].append(row)
        print(f"{row['name']:<32} {row['binary']:<5} "
              + (f"ppl {row['perplexity']['ppl']:.6f} vs "
                 f"{row['ppl_reference']:.6f} (rel {row['ppl_rel_diff']:.1e}) "
                 f"tokens {'equal' if row['tokens_ok'] else 'DIFFER at ' + str(row['tokens_first_mismatch'])} "
                 f"{'ok' if row['ok'] else 'FAIL'}"
                 if "ok" in row else "ERROR " + row.get("error", "")[-300:]),
              flush=True)
        report.set(args.key, result)
    result["passed"] = sum(1 for r in result["cases"] if r.get("ok"))
    result["failed"] = [r["name"] + "/" + r["binary"] for r in result["cases"]
                        if not r.get("ok")]
    report.set(args.key, result)
    return 0 if not result["failed"] and not result["skipped"] else 1


if __name__ == "__main__":
    sys.exit(main())
