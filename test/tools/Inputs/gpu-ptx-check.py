#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
"""Runs qlr-gpu-pipeline on each model for sm_80 and sm_90 and assembles the
PTX with ptxas. Prints one line per model and chip:
  NAME CHIP: B binary, K kernels, ptxas ok
or `NAME CHIP: FAILED ...` (and exits 1)."""
import argparse
import pathlib
import re
import subprocess
import sys


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quant-opt", required=True)
    parser.add_argument("--ptxas", required=True)
    parser.add_argument("--extract", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--chips", default="sm_80,sm_90")
    parser.add_argument("models", nargs="+")
    args = parser.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    failed = False
    for model in args.models:
        name = pathlib.Path(model).name.removesuffix(".mlirbc")
        for chip in args.chips.split(","):
            lowered = out / f"{name}.{chip}.mlir"
            try:
                subprocess.run([args.quant_opt, model,
                                f"--qlr-gpu-pipeline=chip={chip}",
                                "-o", str(lowered)], check=True,
                               capture_output=True, text=True)
                text = lowered.read_text()
                binaries = len(re.findall(r"gpu\.binary @", text))
                ptx_dir = out / f"{name}.{chip}"
                files = subprocess.run(
                    [sys.executable, args.extract, str(lowered),
                     str(ptx_dir)], check=True, capture_output=True,
                    text=True).stdout.split()
                kernels = shuffles = 0
                for ptx in files:
                    source = pathlib.Path(ptx).read_text()
                    kernels += len(re.findall(r"^\.visible \.entry ", source,
                                              re.M))
                    shuffles += source.count("shfl.sync.bfly")
                    subprocess.run([args.ptxas, f"-arch={chip}", ptx, "-o",
                                    ptx + ".cubin"], check=True,
                                   capture_output=True, text=True)
                print(f"{name} {chip}: {binaries} binary, {kernels} kernels,"
                      f" {shuffles} warp shuffles, ptxas ok")
            except subprocess.CalledProcessError as error:
                failed = True
                print(f"{name} {chip}: FAILED {error.cmd[0]}: "
                      f"{error.stderr.strip()[:2000]}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
