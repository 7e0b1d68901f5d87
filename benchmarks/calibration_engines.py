#!/usr/bin/env python3
"""Compares two builds' calibrating passes side by side: perplexity, pass
time and peak RSS of the same configurations, run one after the other
(docs/Calibration.md, "Measured against the engine it replaced").

    benchmarks/calibration_engines.py --old OLD_BUILD --new NEW_BUILD \
        --model MODEL.mlirbc --out results.json [--config NAME ...]

OLD_BUILD and NEW_BUILD are build directories (their bin/quant-opt runs the
pass; NEW_BUILD's bin/qlr-run measures every output); `--previous BUILD`
adds a third, run between them. MODEL is a qlr-import
output: SmolLM2-135M (`qlr-import SmolLM2-135M-Instruct.Q4_1.gguf`) or
stories260K (`qlr-import stories260K.bin --tokenizer tok512.bin`). The
calibration text is shared/data/tinystories-calib.txt and perplexity is over
tinystories-dev.txt (`--windows`, `--ctx`).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import subprocess
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
CALIB = DATA / "tinystories-calib.txt"

CONFIGS = {
    "w4-g64-asym-defaults": "--qlr-quantize-linear=method=gptq bits=4 group-size=64 symmetric=false "
                            "data={calib} samples=32 seq-len=256",
    "w3-g64-asym-plain": "--qlr-quantize-linear=method=gptq bits=3 group-size=64 symmetric=false "
                         "data={calib} samples=32 seq-len=256 float-target=false refit-scales=0 seed={seed}",
    "w3-g32-asym-defaults": "--qlr-quantize-linear=method=gptq bits=3 group-size=32 symmetric=false "
                            "data={calib}",
    "basis-select-0.75": "--qlr-basis-select=ratio=0.75 data={calib}",
    # Run on a quantized --base with --model as the float reference.
    "norm-tweak-defaults": "--qlr-norm-tweak=reference={model} lr=5e-4",
}


def run_pass(quant_opt: pathlib.Path, model: str, option: str, out: pathlib.Path) -> dict:
    result = subprocess.run(["/usr/bin/time", "-f", "TIME %e %M", str(quant_opt), model, option,
                             "--emit-bytecode", "-o", str(out)],
                            capture_output=True, text=True, check=True)
    seconds, kb = re.search(r"TIME ([0-9.]+) ([0-9]+)", result.stderr).groups()
    return {"seconds": float(seconds), "peak_rss_kb": int(kb)}


def perplexity(qlr_run: pathlib.Path, model: pathlib.Path, ctx: int, windows: int) -> float:
    result = subprocess.run([str(qlr_run), str(model), "--perplexity", str(DATA / "tinystories-dev.txt"),
                             "--ctx", str(ctx), "--max-windows", str(windows), "--json", "--quiet"],
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout)["ppl"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", required=True, type=pathlib.Path)
    parser.add_argument("--new", required=True, type=pathlib.Path)
    parser.add_argument("--previous", type=pathlib.Path,
                        help="a third build, run between OLD and NEW (for example the commit before NEW)")
    parser.add_argument("--model", required=True)
    parser.add_argument("--base", help="the module the passes transform (default --model); "
                                        "a quantized one for norm-tweak-defaults")
    parser.add_argument("--out", required=True, type=pathlib.Path)
    parser.add_argument("--config", action="append", choices=sorted(CONFIGS))
    parser.add_argument("--seed", type=int, action="append", help="seeds of the w3 plain config (default 0)")
    parser.add_argument("--ctx", type=int, default=512)
    parser.add_argument("--windows", type=int, default=4)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        defaults = [c for c in sorted(CONFIGS) if args.base or not c.startswith("norm-tweak")]
        for name in args.config or defaults:
            for seed in (args.seed or [0]) if "{seed}" in CONFIGS[name] else [0]:
                option = CONFIGS[name].format(calib=CALIB, seed=seed, model=args.model)
                row = {"config": name, "seed": seed, "option": option}
                builds = [("old", args.old)] + ([("previous", args.previous)] if args.previous else [])
                for side, build in builds + [("new", args.new)]:
                    out = pathlib.Path(tmp) / f"{side}.mlirbc"
                    row[side] = run_pass(build / "bin" / "quant-opt", args.base or args.model, option, out)
                    row[side]["ppl"] = perplexity(args.new / "bin" / "qlr-run", out, args.ctx, args.windows)
                    out.unlink()
                print(json.dumps(row), flush=True)
                rows.append(row)
    args.out.write_text(json.dumps({"model": args.model, "ctx": args.ctx, "windows": args.windows,
                                    "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
