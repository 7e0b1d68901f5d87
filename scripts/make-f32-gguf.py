#!/usr/bin/env python3
"""Write an all-F32 copy of a GGUF model: every tensor dequantized to float32
(gguf.quants.dequantize, the same block formulas as ggml), every metadata key
copied unchanged except general.file_type, which becomes 0 (ALL_F32) so the
file describes itself truthfully.

This is QLR's "dequantized float reference model" in llama.cpp's own format:
qlr-import dequantizes the Q4_1/Q8_0 weights to f32, so llama.cpp running this
file computes the same function as QLR (up to float summation order).

    .venv-bench/bin/python scripts/make-f32-gguf.py IN.gguf [-o /tmp/NAME.f32.gguf]

The output is large (SmolLM2-135M: ~540 MB); keep it out of the repository
(the default is /tmp/<stem>.F32.gguf).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import gguf
from gguf import GGUFReader, GGUFValueType, GGUFWriter, GGMLQuantizationType
from gguf.quants import dequantize

ALL_F32 = 0  # llama_ftype LLAMA_FTYPE_ALL_F32


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input", type=Path)
    ap.add_argument("-o", "--output", type=Path, default=None, help="default: /tmp/<input stem>.F32.gguf")
    ap.add_argument("--force", action="store_true", help="write even if the output is inside a git checkout")
    args = ap.parse_args()
    out = args.output or Path("/tmp") / (args.input.stem.split(".")[0] + ".F32.gguf")
    repo = Path(__file__).resolve().parent.parent
    if not args.force and repo in out.resolve().parents:
        sys.exit(f"refusing to write {out} inside the repository {repo} (use /tmp or --force)")

    t0 = time.perf_counter()
    reader = GGUFReader(args.input, "r")
    arch = reader.get_field(gguf.Keys.General.ARCHITECTURE).contents()
    writer = GGUFWriter(out, arch=arch, endianess=reader.endianess)
    alignment = reader.get_field(gguf.Keys.General.ALIGNMENT)
    if alignment is not None:
        writer.data_alignment = alignment.contents()

    for field in reader.fields.values():
        # GGUF.* are virtual (header) fields; GGUFWriter writes the architecture itself.
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == GGUFValueType.ARRAY else None
        value = field.contents()
        if field.name == gguf.Keys.General.FILE_TYPE:
            print(f"general.file_type: {value} -> {ALL_F32} (ALL_F32)", file=sys.stderr)
            value = ALL_F32
        writer.add_key_value(field.name, value, vtype, sub_type=sub)

    counts: dict[str, int] = {}
    arrays = []
    for t in reader.tensors:
        qtype = GGMLQuantizationType(t.tensor_type)
        counts[qtype.name] = counts.get(qtype.name, 0) + 1
        data = np.ascontiguousarray(dequantize(t.data, qtype), dtype=np.float32)
        # GGUF shapes are ne order (ne[0] contiguous); numpy's is the reverse.
        expect = tuple(int(x) for x in reversed(t.shape.tolist()))
        data = data.reshape(expect)
        if not np.isfinite(data).all():
            sys.exit(f"{t.name}: non-finite values after dequantizing {qtype.name}")
        arrays.append((t.name, data))
        writer.add_tensor_info(t.name, data.shape, data.dtype, data.nbytes, GGMLQuantizationType.F32)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for _, data in arrays:
        writer.write_tensor_data(data)
    writer.close()
    print(f"dequantized {len(arrays)} tensors ({', '.join(f'{n} {k}' for k, n in sorted(counts.items()))}) "
          f"-> F32; wrote {out} ({os.path.getsize(out) / 1e6:.1f} MB) in {time.perf_counter() - t0:.1f} s",
          file=sys.stderr)
    print(out)


if __name__ == "__main__":
    main()
