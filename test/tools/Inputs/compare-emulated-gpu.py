#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
"""Runs `qlr-run --perplexity` on each model with the CPU pipeline and with
--emulate-gpu and compares the mean negative log-likelihoods.
Prints `NAME: same nll (cpu A, gpu-emulated B, rel D)` or
`NAME: DIFFERENT ...` (and exits 1)."""
import argparse
import json
import pathlib
import subprocess
import sys


def nll(qlr_run: str, model: str, text: str, emulate: bool) -> float:
    # -O1: both paths compile 3x faster than at -O3, and the comparison
    # holds at any level.
    command = [qlr_run, model, "--perplexity", text, "--json", "--quiet",
               "-t", "1", "-O1"]
    if emulate:
        command.append("--emulate-gpu")
    result = subprocess.run(command, check=True, capture_output=True,
                            text=True)
    return json.loads(result.stdout)["nll"]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--qlr-run", required=True)
    parser.add_argument("--text", required=True)
    parser.add_argument("--rtol", type=float, required=True)
    parser.add_argument("models", nargs="+")
    args = parser.parse_args()
    status = 0
    for model in args.models:
        name = pathlib.Path(model).name.removesuffix(".mlirbc")
        cpu = nll(args.qlr_run, model, args.text, emulate=False)
        gpu = nll(args.qlr_run, model, args.text, emulate=True)
        rel = abs(cpu - gpu) / abs(cpu)
        verdict = "same nll" if rel <= args.rtol else "DIFFERENT nll"
        if rel > args.rtol:
            status = 1
        print(f"{name}: {verdict} (cpu {cpu:.9f}, gpu-emulated {gpu:.9f},"
              f" rel {rel:.2e})")
    return status


if __name__ == "__main__":
    sys.exit(main())
