#!/usr/bin/env python3
"""Writes examples/tiny-llama-block.mlir: one LLaMA-style transformer block
(RMSNorm, projections, SwiGLU MLP, residuals) whose linear layers use every
kind of qlr weight: uniform grids of 2-8 bits (symmetric and asymmetric, per
channel and per group, f32/f16/bf16 scales), NF4, a LoftQ weight (NF2 base +
rank-8 factors) and a plain low-rank weight. All weights are dense_resource
blobs; the values are random (seed 0), since the example exists to be
verified, printed and round-tripped, not evaluated.

Usage: .venv/bin/python examples/gen-tiny-block.py > examples/tiny-llama-block.mlir
"""

import numpy as np

RNG = np.random.default_rng(0)
DIM, FFN = 64, 128
resources = {}


def blob(name, array, alignment):
    """Registers a resource blob: 4-byte little-endian alignment + raw data."""
    data = np.ascontiguousarray(array).tobytes()
    resources[name] = "0x" + alignment.to_bytes(4, "little").hex().upper() + data.hex().upper()
    return name


def pack_rows(codes, bits):
    """Packs each row as a little-endian bit stream (docs/Design.md)."""
    rows, cols = codes.shape
    nbytes = (cols * bits + 7) // 8
    out = np.zeros((rows, nbytes), dtype=np.uint8)
    for r in range(rows):
        acc = 0
        for j, c in enumerate(codes[r]):
            acc |= int(c) << (j * bits)
        out[r] = np.frombuffer(acc.to_bytes(nbytes, "little"), dtype=np.uint8)
    return out


def qweight(name, rows, cols, bits, scales_shape, scale_dtype, asymmetric=False):
    """Random codes + scales (+ zero points); returns the constants' IR."""
    codes = RNG.integers(0, 2**bits, size=(rows, cols))
    packed = pack_rows(codes, bits)
    scales = (0.01 + 0.02 * RNG.random(scales_shape)).astype(np.float32)
    mlir_type = {"f32": "f32", "f16": "f16", "bf16": "bf16"}[scale_dtype]
    if scale_dtype == "f16":
        scale_data, align = scales.astype(np.float16), 2
    elif scale_dtype == "bf16":
        scale_data, align = (scales.view(np.uint32) >> 16).astype(np.uint16), 2
    else:
        scale_data, align = scales, 4
    shape = "x".join(map(str, scales_shape))
    shape = shape + "x" if shape else ""
    lines = [
        f"  %{name}_codes = arith.constant dense_resource<{blob(name + '.codes', packed, 1)}> : tensor<{rows}x{packed.shape[1]}xi8>",
        f"  %{name}_scales = arith.constant dense_resource<{blob(name + '.scales', scale_data, align)}> : tensor<{shape}{mlir_type}>",
    ]
    if asymmetric:
        zp = RNG.integers(0, 2**bits, size=scales_shape).astype(np.uint8)
        lines.append(f"  %{name}_zp = arith.constant dense_resource<{blob(name + '.zero_points', zp, 1)}> : tensor<{shape}i8>")
    return lines, packed.shape[1], shape


def dense(name, shape):
    data = (0.05 * RNG.standard_normal(shape)).astype(np.float32)
    if name.endswith("norm"):
        data = (1.0 + 0.1 * RNG.standard_normal(shape)).astype(np.float32)
    dims = "x".join(map(str, shape))
    return f"  %{name} = arith.constant dense_resource<{blob(name, data, 4)}> : tensor<{dims}xf32>"


body = []
body.append(dense("attn_norm", (DIM,)))
body.append(dense("ffn_norm", (DIM,)))

fmt = {
    "wq": "#qlr.format<int4, group = 32, scale = f16>",
    "wk": "#qlr.format<int3, group = 32, asymmetric>",
    "wv": "#qlr.format<nf4, group = 64, scale = f16>",
    "wo": "#qlr.format<nf2, group = 64>",
    "wgate": "#qlr.format<int8, channel = 0>",
    "wdown": "#qlr.format<int2, group = 32, asymmetric, scale = bf16>",
}
specs = {
    "wq": (DIM, DIM, 4, (DIM, 2), "f16", False),
    "wk": (DIM, DIM, 3, (DIM, 2), "f32", True),
    "wv": (DIM, DIM, 4, (DIM, 1), "f16", False),
    "wo": (DIM, DIM, 2, (DIM, 1), "f32", False),
    "wgate": (FFN, DIM, 8, (FFN,), "f32", False),
    "wdown": (DIM, FFN, 2, (DIM, 4), "bf16", True),
}
qtypes = {}
for name, (rows, cols, bits, sshape, sdt, asym) in specs.items():
    lines, nbytes, sdims = qweight(name, rows, cols, bits, sshape, sdt, asym)
    body += lines
    qt = f"!qlr.qtensor<{rows}x{cols}xf32, {fmt[name]}>"
    qtypes[name] = qt
    stype = {"f32": "f32", "f16": "f16", "bf16": "bf16"}[sdt]
    operands = f"%{name}_codes, %{name}_scales" + (f", %{name}_zp" if asym else "")
    types = f"tensor<{rows}x{nbytes}xi8>, tensor<{sdims}{stype}>" + (f", tensor<{sdims}i8>" if asym else "")
    body.append(f"  %{name} = qlr.pack {operands} : {types} -> {qt}")

body.append(dense("wo_a", (DIM, 8)))
body.append(dense("wo_b", (8, DIM)))
body.append(dense("wup_a", (FFN, 16)))
body.append(dense("wup_b", (16, DIM)))
lr_o = f"!qlr.lowrank<{DIM}x{DIM}xf32, rank = 8, base = {fmt['wo']}>"
lr_up = f"!qlr.lowrank<{FFN}x{DIM}xf32, rank = 16>"
body.append(f"  %wo_lr = qlr.lowrank %wo_a, %wo_b base %wo : tensor<{DIM}x8xf32>, tensor<8x{DIM}xf32>, {qtypes['wo']} -> {lr_o}")
body.append(f"  %wup = qlr.lowrank %wup_a, %wup_b : tensor<{FFN}x16xf32>, tensor<16x{DIM}xf32> -> {lr_up}")

X = f"tensor<?x{DIM}xf32>"
F = f"tensor<?x{FFN}xf32>"
body += f"""
  // Attention sublayer (the token mixing is a stand-in: q * k + v).
  %h = qlr.rms_norm %x, %attn_norm eps = 1.0e-5 : {X}, tensor<{DIM}xf32>
  %q = qlr.linear %h, %wq : {X}, {qtypes['wq']} -> {X}
  %k = qlr.linear %h, %wk : {X}, {qtypes['wk']} -> {X}
  %v = qlr.linear %h, %wv : {X}, {qtypes['wv']} -> {X}
  %qk = arith.mulf %q, %k : {X}
  %mix = arith.addf %qk, %v : {X}
  %o = qlr.linear %mix, %wo_lr : {X}, {lr_o} -> {X}
  %r1 = arith.addf %x, %o : {X}

  // SwiGLU MLP sublayer.
  %h2 = qlr.rms_norm %r1, %ffn_norm eps = 1.0e-5 : {X}, tensor<{DIM}xf32>
  %g = qlr.linear %h2, %wgate : {X}, {qtypes['wgate']} -> {F}
  %u = qlr.linear %h2, %wup : {X}, {lr_up} -> {F}
  %c0 = arith.constant 0 : index
  %n = tensor.dim %x, %c0 : {X}
  %empty = tensor.empty(%n) : {F}
  %act = linalg.generic {{indexing_maps = [affine_map<(i, j) -> (i, j)>, affine_map<(i, j) -> (i, j)>, affine_map<(i, j) -> (i, j)>],
                         iterator_types = ["parallel", "parallel"]}}
      ins(%g, %u : {F}, {F}) outs(%empty : {F}) {{
  ^bb0(%gi: f32, %ui: f32, %out: f32):
    %one = arith.constant 1.0 : f32
    %neg = arith.negf %gi : f32
    %e = math.exp %neg : f32
    %den = arith.addf %one, %e : f32
    %silu = arith.divf %gi, %den : f32
    %y = arith.mulf %silu, %ui : f32
    linalg.yield %y : f32
  }} -> {F}
  %d = qlr.linear %act, %wdown : {F}, {qtypes['wdown']} -> {X}
  %r2 = arith.addf %r1, %d : {X}
  return %r2 : {X}""".splitlines()

print("// A tiny LLaMA-style block using every kind of qlr weight.")
print("// Generated by examples/gen-tiny-block.py (seed 0); weights are random.")
print(f"func.func @block(%x: {X}) -> {X} {{")
print("\n".join(body))
print("}")
print()
print("{-#\n  dialect_resources: {\n    builtin: {")
print(",\n".join(f"      {k}: \"{v}\"" for k, v in resources.items()))
print("    }\n  }\n#-}")
