#!/usr/bin/env python3
"""Squared error of RTN with integer vs fractional zero points on real weights.

    .venv-bench/bin/python benchmarks/zero_point_mse.py SmolLM2-135M-Instruct.Q4_1.gguf

Dequantizes three of SmolLM2's weights from the GGUF (gguf package) and
quantizes them with asymmetric RTN, f16 scales, by the rules of
docs/Design.md ("Reference quantization"), once with integer zero points and
once with fractional ones (zero-point=fractional). Prints the mean squared
error of each and their ratio, for 4/3/2 bits and groups of 32/64
(docs/quantization.md, "Fractional zero points").
"""
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize

NAMES = ["blk.3.attn_q.weight", "blk.10.ffn_down.weight", "blk.20.ffn_up.weight"]


def rtn(w, bits, group, fractional):
    n, k = w.shape
    x = w.reshape(n, k // group, group).astype(np.float32)
    lo = np.minimum(0, x.min(-1, keepdims=True))
    hi = np.maximum(0, x.max(-1, keepdims=True))
    qmax = 2**bits - 1
    s = ((hi - lo) / qmax).astype(np.float16).astype(np.float32)
    s[s == 0] = 1
    if fractional:
        steps = 2 ** (8 - bits)
        z = np.clip(np.rint(-lo / s * steps), 0, qmax * steps) / steps
        c = np.clip(np.rint(x / s + z), 0, qmax)
    else:
        z = np.clip(np.rint(-lo / s), 0, qmax)
        c = np.clip(np.rint(x / s) + z, 0, qmax)
    return (s * (c - z)).reshape(n, k)


def main():
    tensors = {t.name: t for t in GGUFReader(sys.argv[1]).tensors}
    for name in NAMES:
        t = tensors[name]
        w = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32)
        for bits in (4, 3, 2):
            for group in (32, 64):
                integer = np.mean((rtn(w, bits, group, False) - w) ** 2)
                fractional = np.mean((rtn(w, bits, group, True) - w) ** 2)
                print(f"{name} {w.shape} W{bits} g{group}: integer {integer:.3e} "
                      f"fractional {fractional:.3e} ratio {fractional / integer:.3f}")


if __name__ == "__main__":
    main()
