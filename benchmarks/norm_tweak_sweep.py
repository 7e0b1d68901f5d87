#!/usr/bin/env python3
"""Perplexity of quantized models with and without norm tweaking.

    python3 benchmarks/quantize_sweep.py --model /tmp/smollm2.mlirbc \\
        --configs gptq-w3-g64-asym-ao --keep --workdir /tmp/bases
    python3 benchmarks/norm_tweak_sweep.py --model /tmp/smollm2.mlirbc \\
        --bases gptq-w3-g64-asym-ao --workdir /tmp/bases

For every base configuration NAME, the quantized model NAME.mlirbc in
--workdir (what quantize_sweep.py --keep leaves there) goes through

    quant-opt NAME.mlirbc --qlr-norm-tweak="reference=MODEL lr=LR report=..."

(wall time and peak RSS of that command, via /usr/bin/time), then
`qlr-run --perplexity DEV --ctx 512 --max-windows W --json` on the result, as
in quantize_sweep.py. The entry also keeps each block's loss before and
after tweaking and whether the tweak was kept. Results accumulate in --out
under the name NAME-nt (existing entries are kept; --force re-measures).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEV_TEXT = ROOT.parent / "shared" / "data" / "tinystories-dev.txt"


def run_one(args, base):
    src = Path(args.workdir) / f"{base}.mlirbc"
    name = f"{base}-nt" + (f"-{args.tag}" if args.tag else "")
    entry = {"name": name, "base": base}
    if not src.exists():
        entry["error"] = f"{src} is missing (run quantize_sweep.py --keep first)"
        return entry
    out_file = Path(args.workdir) / f"{name}.mlirbc"
    report = Path(args.workdir) / f"{name}.losses.json"
    options = f"reference={args.model} lr={args.lr} report={report}"
    if args.options:
        options += " " + args.options
    cmd = [str(args.quant_opt), str(src), f"--qlr-norm-tweak={options}", "--emit-bytecode", "-o", str(out_file)]
    t0 = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "maxrss_kb=%M"] + cmd, capture_output=True, text=True)
    entry["norm_tweak_seconds"] = round(time.perf_counter() - t0, 2)
    entry["command"] = " ".join(cmd)
    if proc.returncode != 0:
        entry["error"] = proc.stderr[-2000:]
        return entry
    rss = [line for line in proc.stderr.splitlines() if line.startswith("maxrss_kb=")]
    if rss:
        entry["peak_rss_mb"] = round(int(rss[-1].split("=")[1]) / 1024, 1)
    blocks = json.loads(report.read_text())["blocks"]
    entry["blocks_kept"] = sum(b["kept"] for b in blocks)
    entry["blocks"] = [[round(b["loss_before"], 6), round(b["loss_after"], 6), b["kept"]] for b in blocks]
    entry["file_bytes"] = os.path.getsize(out_file)
    cmd = [str(args.qlr_run), str(out_file), "--perplexity", str(DEV_TEXT), "--ctx", "512",
           "--max-windows", str(args.windows), "--json", "--quiet", "-t", str(args.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        entry["error"] = proc.stderr[-2000:]
        return entry
    entry["perplexity"] = json.loads(proc.stdout)["ppl"]
    entry["windows"] = args.windows
    if not args.keep:
        out_file.unlink(missing_ok=True)
    return entry


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="the float model the bases were quantized from")
    p.add_argument("--bases", required=True, help="comma-separated quantize_sweep.py configuration names")
    p.add_argument("--workdir", default="/tmp/bases")
    p.add_argument("--lr", default="5e-4")
    p.add_argument("--options", default="", help="more qlr-norm-tweak options, e.g. 'loss=mse'")
    p.add_argument("--tag", default="", help="suffix of the result names (for option variants)")
    p.add_argument("--windows", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/norm-tweak.json"))
    p.add_argument("--build", default=str(ROOT / "build"))
    p.add_argument("--force", action="store_true")
    p.add_argument("--keep", action="store_true", help="keep the tweaked model files")
    args = p.parse_args()
    args.quant_opt = Path(args.build) / "bin/quant-opt"
    args.qlr_run = Path(args.build) / "bin/qlr-run"
    out = Path(args.out)
    results = {}
    if out.exists():
        results = {e["name"]: e for e in json.loads(out.read_text())["results"]}
    for base in args.bases.split(","):
        name = f"{base}-nt" + (f"-{args.tag}" if args.tag else "")
        if name in results and not args.force and "error" not in results[name]:
            continue
        print(f"== {name}", file=sys.stderr, flush=True)
        entry = run_one(args, base)
        entry["lr"] = args.lr
        results[name] = entry
        print(json.dumps({k: v for k, v in entry.items() if k != "blocks"}), file=sys.stderr, flush=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"model": args.model, "results": list(results.values())}, indent=1) + "\n")


if __name__ == "__main__":
    main()
