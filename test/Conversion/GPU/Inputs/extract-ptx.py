#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
"""Writes the PTX of every gpu.object in an MLIR text file to OUT_DIR.

Usage: extract-ptx.py INPUT.mlir OUT_DIR
One file per object, <binary>.<n>.ptx; prints their paths. Exits 1 when the
input holds no object (so a test cannot pass on an empty pipeline result).
"""
import pathlib
import re
import sys


def unescape(text: str) -> bytes:
    """MLIR string literal body -> bytes (\\XX hex, \\\\, \\", \\n, \\t)."""
    out = bytearray()
    i = 0
    while i < len(text):
        c = text[i]
        if c != "\\":
            out += c.encode()
            i += 1
            continue
        nxt = text[i + 1]
        if nxt in "\\\"":
            out += nxt.encode()
            i += 2
        elif nxt == "n":
            out += b"\n"
            i += 2
        elif nxt == "t":
            out += b"\t"
            i += 2
        else:
            out.append(int(text[i + 1:i + 3], 16))
            i += 3
    return bytes(out)


def main() -> int:
    source = pathlib.Path(sys.argv[1]).read_text()
    out_dir = pathlib.Path(sys.argv[2])
    out_dir.mkdir(parents=True, exist_ok=True)
    written = 0
    for binary in re.finditer(r"gpu\.binary @(\w+)", source):
        objects = re.finditer(r'(?:assembly|bin) = "((?:[^"\\]|\\.)*)"',
                              source[binary.end():])
        for n, obj in enumerate(objects):
            path = out_dir / f"{binary.group(1)}.{n}.ptx"
            path.write_bytes(unescape(obj.group(1)))
            print(path)
            written += 1
            break  # One object per binary in our pipelines.
    if not written:
        print("extract-ptx.py: no gpu.object in the input", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
