#!/usr/bin/env python3
"""Writes the safetensors files of qlr-load-weights.mlir (standard library
only): `make-safetensors.py CASE OUT`. The valid case holds a float norm
weight `g` [8] and a quantized linear weight `w` [4, 8] in int2, group = 4
(codes 0..3, one f32 scale per group); the other cases each break one rule.
"""
import json
import struct
import sys


def tensor(dtype, shape, data):
    return {"dtype": dtype, "shape": shape, "data": data}


def f32(values):
    return struct.pack("<%df" % len(values), *values)


def u8(values):
    return bytes(values)


# w[n, k] = scale[n, k // 4] * (code - 2); codes cycle 0, 1, 2, 3.
CODES = [(n + k) % 4 for n in range(4) for k in range(8)]
SCALES = [0.5, 1.0, 0.25, 2.0, 1.5, 0.75, 4.0, 0.125]
NORM = [1.0, 2.0, 0.5, -1.0, 3.0, 0.25, 1.5, -0.5]


def valid():
    return ({"g": tensor("F32", [8], f32(NORM)),
             "w.codes": tensor("U8", [4, 8], u8(CODES)),
             "w.scales": tensor("F32", [4, 2], f32(SCALES))},
            {"w": "int2, group = 4"})


def case(name):
    tensors, meta = valid()
    if name == "valid":
        pass
    elif name == "full-format":
        meta["w"] = "#qlr.format<int2, group = 4>"
    elif name == "unused":
        tensors["nope"] = tensor("F32", [1], f32([0.0]))
    elif name == "shape":
        tensors["g"] = tensor("F32", [4, 2], f32(NORM))
    elif name == "dtype":
        tensors["g"] = tensor("U8", [8], u8(range(8)))
    elif name == "code-range":
        tensors["w.codes"] = tensor("U8", [4, 8], u8(CODES[:-1] + [4]))
    elif name == "no-format":
        meta = {}
    elif name == "bad-format":
        meta["w"] = "int9"
    elif name == "scales-shape":
        tensors["w.scales"] = tensor("F32", [4, 1], f32(SCALES[:4]))
    elif name == "zero-points":
        tensors["w.zero_points"] = tensor("U8", [4, 2], u8([1] * 8))
    elif name == "f16-scale":
        meta["w"] = "int2, group = 4, scale = f16"
        tensors["w.scales"] = tensor("F32", [4, 2], f32([0.1] * 8))
    elif name == "no-scales":
        del tensors["w.scales"]
    elif name == "twice":
        tensors["w"] = tensor("F32", [4, 8], f32([0.0] * 32))
    elif name == "not-linear":
        tensors = {"e.codes": tensor("U8", [8], u8([0] * 8)),
                   "e.scales": tensor("F32", [], f32([1.0]))}
        meta = {"e": "int2"}
    else:
        raise SystemExit("unknown case " + name)
    return tensors, meta


def write(path, tensors, meta, truncate=False):
    header = {"__metadata__": meta}
    data = b""
    for name, t in tensors.items():
        header[name] = {"dtype": t["dtype"], "shape": t["shape"],
                        "data_offsets": [len(data), len(data) + len(t["data"])]}
        data += t["data"]
    text = json.dumps(header).encode()
    blob = struct.pack("<Q", len(text)) + text + data
    if truncate:
        blob = blob[:-5]
    with open(path, "wb") as f:
        f.write(blob)


if __name__ == "__main__":
    name, out = sys.argv[1], sys.argv[2]
    if name == "truncated":
        write(out, *valid(), truncate=True)
    else:
        write(out, *case(name))
