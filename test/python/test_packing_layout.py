"""The packed code layout documented in docs/Design.md, checked against
quant-opt from outside the C++ code base.

The oracle here packs bits one at a time with numpy.packbits, independently
of lib/Numerics. quant-opt's interop passes expose both directions:
qlr-convert-qlr-to-quant unpacks qlr codes into upstream integer storage, and
qlr-convert-quant-to-qlr packs upstream storage into qlr codes.
"""

import json
import re
import subprocess

import numpy as np
import pytest


def pack_reference(codes, bits):
    """Each row is a little-endian bit stream: bit k of the row is bit k % 8
    of byte k // 8, and code j occupies bits [j*bits, (j+1)*bits)."""
    rows, cols = codes.shape
    # bit i of code j (LSB first) for every code, flattened per row
    bit_matrix = (codes[:, :, None] >> np.arange(bits)) & 1
    stream = bit_matrix.reshape(rows, cols * bits).astype(np.uint8)
    pad = (-stream.shape[1]) % 8
    stream = np.pad(stream, ((0, 0), (0, pad)))
    return np.packbits(stream, axis=1, bitorder="little")


def run(quant_opt, ir, *args):
    result = subprocess.run([quant_opt, "-", *args], input=ir, text=True,
                            capture_output=True, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def dense_ints(values):
    return "[" + ", ".join("[" + ", ".join(str(int(v)) for v in row) + "]"
                           for row in values) + "]"


def parse_dense(text, element_type):
    match = re.search(r"dense<(\[\[.*?\]\])> : tensor<\d+x\d+x" + element_type + ">", text)
    assert match, text
    return np.array(json.loads(match.group(1)), dtype=np.int64)


CASES = [(bits, cols) for bits in range(2, 9) for cols in (1, 3, 7, 8, 9, 33)]


@pytest.mark.parametrize("bits,cols", CASES)
def test_qlr_codes_unpack_as_documented(quant_opt, bits, cols):
    rng = np.random.default_rng(bits * 100 + cols)
    rows = 3
    codes = rng.integers(0, 2**bits, size=(rows, cols))
    packed = pack_reference(codes, bits).astype(np.int8)
    ir = f"""
func.func @f() -> tensor<{rows}x{cols}xf32> {{
  %c = arith.constant dense<{dense_ints(packed)}> : tensor<{rows}x{packed.shape[1]}xi8>
  %s = arith.constant dense<1.0> : tensor<{rows}xf32>
  %w = qlr.pack %c, %s : tensor<{rows}x{packed.shape[1]}xi8>, tensor<{rows}xf32>
      -> !qlr.qtensor<{rows}x{cols}xf32, #qlr.format<int{bits}, channel = 0>>
  %d = qlr.dequantize %w : !qlr.qtensor<{rows}x{cols}xf32, #qlr.format<int{bits}, channel = 0>>
      -> tensor<{rows}x{cols}xf32>
  return %d : tensor<{rows}x{cols}xf32>
}}"""
    out = run(quant_opt, ir, "--qlr-convert-qlr-to-quant")
    storage = parse_dense(out, f"i{bits}")
    # Symmetric grids have zero point 2^(bits-1): signed storage = code - 2^(bits-1).
    np.testing.assert_array_equal(storage, codes - 2 ** (bits - 1))


@pytest.mark.parametrize("bits,cols", CASES)
def test_upstream_storage_packs_as_documented(quant_opt, bits, cols):
    rng = np.random.default_rng(bits * 1000 + cols)
    rows = 2
    storage = rng.integers(0, 2**bits, size=(rows, cols))
    quant = f"tensor<{rows}x{cols}x!quant.uniform<u{bits}:f32:0, {{0.5:3, 0.25:1}}>>"
    ir = f"""
func.func @f() -> tensor<{rows}x{cols}xf32> {{
  %c = arith.constant dense<{dense_ints(storage)}> : tensor<{rows}x{cols}xi{bits}>
  %q = quant.scast %c : tensor<{rows}x{cols}xi{bits}> to {quant}
  %d = quant.dcast %q : {quant} to tensor<{rows}x{cols}xf32>
  return %d : tensor<{rows}x{cols}xf32>
}}"""
    out = run(quant_opt, ir, "--qlr-convert-quant-to-qlr")
    packed = parse_dense(out, "i8") & 0xFF
    np.testing.assert_array_equal(packed, pack_reference(storage, bits))
    assert f"int{bits}_c0_asym" in out
