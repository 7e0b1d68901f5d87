#!/usr/bin/env python3
"""Single-thread GFLOPS of the CPU's linear-layer kernels (qlr-lower-contractions)
through qlr.compiler.jit, for two builds side by side (docs/Calibration.md,
"Pass times with the packed kernels").

    OMP_NUM_THREADS=1 python3 benchmarks/contraction_kernels.py --build OLD/build --build build

Each case is `qlr.linear` of x [M, K] and a float weight [N, K] (MxKxN), or
a Gram matrix of x [N, T] with itself (the tokens T as a dynamic depth, as
the calibration taps compute it). The best of 5 rounds is reported; every
result is checked against NumPy first. QLR_MAX_SIMD=avx2 measures the
8-lane kernels on an AVX-512 host. Each build runs in its own process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINEARS = ["256x576x1536", "256x1536x576", "32x576x576", "1x576x1536"]
GRAMS = ["576x256", "1536x256"]


def measure() -> dict:
    sys.path.insert(0, str(ROOT / "python"))
    import numpy as np
    import qlr.compiler as qc
    rng = np.random.default_rng(0)
    results = {}

    def best(f, args, flops):
        reps = max(3, int(2e9 / flops))
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(reps):
                f(*args)
            times.append((time.perf_counter() - t0) / reps)
        return round(flops / min(times) / 1e9, 1)

    for case in LINEARS:
        m, k, n = map(int, case.split("x"))
        text = f"""
func.func @f(%x: tensor<{m}x{k}xf32>, %w: tensor<{n}x{k}xf32>) -> tensor<{m}x{n}xf32> {{
  %y = qlr.linear %x, %w : tensor<{m}x{k}xf32>, tensor<{n}x{k}xf32> -> tensor<{m}x{n}xf32>
  return %y : tensor<{m}x{n}xf32>
}}"""
        f = qc.jit(qc.Module.parse(text), "f")
        x = rng.standard_normal((m, k)).astype(np.float32)
        w = rng.standard_normal((n, k)).astype(np.float32)
        assert np.allclose(f(x, w), x @ w.T, rtol=1e-3, atol=1e-3)
        results[f"linear {case}"] = best(f, (x, w), 2 * m * n * k)
    for case in GRAMS:
        n, t = map(int, case.split("x"))
        text = f"""
func.func @f(%x: tensor<{n}x?xf32>) -> tensor<{n}x{n}xf32> {{
  %y = qlr.linear %x, %x : tensor<{n}x?xf32>, tensor<{n}x?xf32> -> tensor<{n}x{n}xf32>
  return %y : tensor<{n}x{n}xf32>
}}"""
        f = qc.jit(qc.Module.parse(text), "f")
        x = rng.standard_normal((n, t)).astype(np.float32)
        assert np.allclose(f(x), x @ x.T, rtol=1e-3, atol=1e-3)
        results[f"gram {case}"] = best(f, (x,), 2 * n * n * t)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", action="append", help="build directory (repeat; default: build)")
    parser.add_argument("--out", type=Path, help="write the JSON here too")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure()))
        return
    rows = {}
    for build in args.build or ["build"]:
        env = dict(os.environ, QLR_BUILD_DIR=str(Path(build).resolve()))
        out = subprocess.run([sys.executable, __file__, "--measure"], env=env, check=True,
                             capture_output=True, text=True).stdout
        rows[build] = json.loads(out.strip().splitlines()[-1])
        print(build, rows[build], flush=True)
    result = {"simd": os.environ.get("QLR_MAX_SIMD", "native"),
              "threads": os.environ.get("OMP_NUM_THREADS", "default"), "gflops": rows}
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
