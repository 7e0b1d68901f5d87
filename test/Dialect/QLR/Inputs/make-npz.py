"""Writes a .npz archive of seeded random float32 arrays (standard library
only, the layout numpy.savez writes: a stored ZIP of .npy files).

usage: make-npz.py OUT.npz NAME=D0xD1x... [NAME=...]

Each array is (x @ mix) with x standard normal and `mix` a fixed random
matrix over the last dimension, so that the features are correlated (what
GPTQ's Hessian can exploit); the seed is the argument's position.
"""

import random
import struct
import sys
import zipfile


def npy(shape, values):
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }" % (
        "".join(f"{d}, " for d in shape))
    header += " " * (63 - (len(header) + 10) % 64) + "\n"
    return (b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) +
            header.encode() + struct.pack(f"<{len(values)}f", *values))


def array(shape, seed):
    rng = random.Random(seed)
    width = shape[-1]
    mix = [[rng.gauss(0, 1) / width ** 0.5 for _ in range(width)]
           for _ in range(width)]
    rows = 1
    for d in shape[:-1]:
        rows *= d
    values = []
    for _ in range(rows):
        x = [rng.gauss(0, 1) for _ in range(width)]
        values += [sum(x[i] * mix[i][j] for i in range(width))
                   for j in range(width)]
    return values


def main():
    out = sys.argv[1]
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for index, spec in enumerate(sys.argv[2:]):
            name, dims = spec.split("=")
            shape = [int(d) for d in dims.split("x")]
            archive.writestr(name + ".npy", npy(shape, array(shape, index)))


if __name__ == "__main__":
    main()
