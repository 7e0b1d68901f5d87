#!/usr/bin/env python3
"""The kernel benchmark's cases: what they are, how their library is built,
and how their weights are decoded independently of QLR.

Each case is one quantized weight format on one K x N shape (K inputs, N
outputs; the weight is [N, K] as in nn.Linear). Its MLIR function
`@linear_<case>` takes the activations x [M, K] (M dynamic: batch 1 and 16
use the same kernels, as in a model), COPIES sets of packed weight arrays
and COPIES outputs [M, N], and runs one `qlr.linear` per copy, each on its
own weights, so that one call streams COPIES x the weight bytes (over 4x
the H100's 50 MB and the H200's 60 MB L2: no copy is still in L2 when it
is read again). Every copy's result is written in place into its output
(`bufferization.materialize_in_destination` plus upstream's
eliminate-empty-tensors, so the quantized cases allocate nothing), and the
host code queues every launch on one stream and synchronizes once.

    python3 benchmarks/gpu/kernel_cases.py build --out gpu-bundle/kernels
    python3 benchmarks/gpu/kernel_cases.py build --target cpu --small \\
        --out build/gpu-prepare/kernels-cpu

`build` writes one shared library with every case (`_mlir_ciface_linear_*`,
plus the C entry points of kernel_shim.cpp and QLRCudaRuntime for
--target cuda) and `kernels.json`, the manifest bench_kernels.py reads.
--target cpu compiles the same functions with qlr-cpu-pipeline for the host
(small shapes with --small): bench_kernels.py --dry-run runs them with NumPy
arrays to check the calling convention and the reference decoder below
without a GPU.

Decoding follows docs/Design.md: codes are packed row by row as a
little-endian bit stream; a symmetric uniform code c with scale s is
s * (c - 2^(bits-1)); a codebook code is s * table[c]; LoftQ adds A @ B.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import os
import pathlib
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field

ROOT = pathlib.Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Format:
    """A weight format of the benchmark (symmetric, f16 scales: what
    qlr-quantize-linear and qlr-loftq write by default)."""
    key: str
    qlr: str            # the #qlr.format body
    bits: int
    group: int
    codebook: str = ""  # "", "nf4" or "nf2"
    rank: int = 0       # LoftQ: rank of the f32 factors A [N, r], B [r, K]


FORMATS = {f.key: f for f in (
    Format("w4g128", "int4, group = 128, scale = f16", 4, 128),
    Format("w3g128", "int3, group = 128, scale = f16", 3, 128),
    Format("w2g64", "int2, group = 64, scale = f16", 2, 64),
    Format("nf4g64", "nf4, group = 64, scale = f16", 4, 64, codebook="nf4"),
    # LoftQ: the W2 g64 base above plus rank-64 float factors, so that its
    # difference from w2g64 is the low-rank correction's cost.
    Format("loftq-w2g64-r64", "int2, group = 64, scale = f16", 2, 64,
           rank=64),
)}

# K x N (inputs x outputs): LLaMA-2-7B attention and MLP, LLaMA-3-8B MLP,
# LLaMA-2-70B's MLP up-projection.
SHAPES = [(4096, 4096), (4096, 11008), (11008, 4096), (4096, 14336),
          (14336, 4096), (8192, 28672)]
SMALL_SHAPES = [(256, 192), (384, 80)]
BATCHES = [1, 16]
MAX_BATCH = max(BATCHES)

ROTATION_BYTES = 256e6  # weights streamed per call: > 4x an H200's L2
MAX_COPIES = 48


@dataclass
class Case:
    fmt: Format
    k: int
    n: int
    copies: int
    name: str = ""
    symbol: str = ""
    arrays: list = field(default_factory=list)  # per copy: name, shape, dtype
    # qlr-gpu-pipeline options other than the defaults, e.g. "block-size=256"
    # (schedule variants: the GPU run compares them on the same shape).
    schedule: str = ""

    def __post_init__(self):
        self.name = f"{self.fmt.key}-{self.k}x{self.n}"
        if self.schedule:
            self.name += "-" + re.sub(r"[^A-Za-z0-9]+", "", self.schedule)
        self.symbol = "linear_" + re.sub(r"[^A-Za-z0-9]", "_", self.name)
        self.arrays = weight_arrays(self.fmt, self.k, self.n)

    @property
    def weight_bytes(self) -> int:
        """Bytes of one copy's weights: codes, scales and factors."""
        return sum(math.prod(a["shape"]) * DTYPE_BYTES[a["dtype"]]
                   for a in self.arrays)

    def to_json(self) -> dict:
        return dict(name=self.name, symbol="_mlir_ciface_" + self.symbol,
                    format=self.fmt.key, qlr_format=self.fmt.qlr,
                    bits=self.fmt.bits, group=self.fmt.group,
                    codebook=self.fmt.codebook, rank=self.fmt.rank,
                    K=self.k, N=self.n, copies=self.copies,
                    schedule=self.schedule or "default",
                    arrays=self.arrays, weight_bytes=self.weight_bytes,
                    dense_fp16_bytes=2 * self.k * self.n,
                    ciface_args=1 + self.copies * (len(self.arrays) + 1))


DTYPE_BYTES = {"uint8": 1, "float16": 2, "float32": 4}
MLIR_TYPES = {"uint8": "i8", "float16": "f16", "float32": "f32"}


def weight_arrays(fmt: Format, k: int, n: int) -> list:
    """The arrays one weight is stored in, as qlr.pack / qlr.lowrank take
    them: codes [N, ceil(K*bits/8)] bytes, scales [N, ceil(K/group)] f16,
    and for LoftQ the factors A [N, r] and B [r, K] in f32."""
    arrays = [dict(name="codes", shape=[n, (k * fmt.bits + 7) // 8],
                   dtype="uint8"),
              dict(name="scales", shape=[n, -(-k // fmt.group)],
                   dtype="float16")]
    if fmt.rank:
        arrays += [dict(name="a", shape=[n, fmt.rank], dtype="float32"),
                   dict(name="b", shape=[fmt.rank, k], dtype="float32")]
    return arrays


def copies_for(weight_bytes: int) -> int:
    return max(2, min(MAX_COPIES, math.ceil(ROTATION_BYTES / weight_bytes)))


# Schedule variants of qlr-gpu-distribute, measured on two W4 shapes so the
# first GPU run shows which block size (and whether warp reductions) pay.
SCHEDULE_VARIANTS = ["block-size=64", "block-size=256",
                     "warp-reductions=false", "lane-elements=4",
                     "lane-elements=8", "lane-elements=32",
                     "tokens-per-warp=1", "tokens-per-warp=16"]
SCHEDULE_SHAPES = [(4096, 4096), (4096, 14336)]
SCHEDULE_FORMAT = "w4g128"


def make_cases(shapes, formats=None, copies=None, variants=True) -> list:
    cases = []
    for key in formats or FORMATS:
        for k, n in shapes:
            case = Case(FORMATS[key], k, n, 1)
            case.copies = copies or copies_for(case.weight_bytes)
            cases.append(case)
    if variants and SCHEDULE_FORMAT in (formats or FORMATS):
        for k, n in shapes:
            if (k, n) not in SCHEDULE_SHAPES:
                continue
            for schedule in SCHEDULE_VARIANTS:
                case = Case(FORMATS[SCHEDULE_FORMAT], k, n, 1,
                            schedule=schedule)
                case.copies = copies or copies_for(case.weight_bytes)
                cases.append(case)
    return cases


# -- MLIR ---------------------------------------------------------------------

def tensor_type(shape, dtype: str) -> str:
    return "tensor<" + "x".join(str(d) for d in shape) + "x" + \
        MLIR_TYPES[dtype] + ">"


def mlir_function(case: Case) -> str:
    fmt, k, n = case.fmt, case.k, case.n
    attr = f"#qlr.format<{fmt.qlr}>"
    qtype = f"!qlr.qtensor<{n}x{k}xf32, {attr}>"
    wtype = qtype
    if fmt.rank:
        wtype = (f"!qlr.lowrank<{n}x{k}xf32, rank = {fmt.rank}, "
                 f"base = {attr}>")
    out_type = f"tensor<?x{n}xf32>"
    args = [f"%x: tensor<?x{k}xf32>"]
    for c in range(case.copies):
        for a in case.arrays:
            args.append(f"%{a['name']}{c}: {tensor_type(a['shape'], a['dtype'])}")
    for c in range(case.copies):
        args.append(f"%out{c}: {out_type} {{bufferization.writable = true}}")
    body = []
    results = []
    for c in range(case.copies):
        codes, scales = case.arrays[0], case.arrays[1]
        body.append(
            f"  %q{c} = qlr.pack %codes{c}, %scales{c} : "
            f"{tensor_type(codes['shape'], 'uint8')}, "
            f"{tensor_type(scales['shape'], 'float16')} -> {qtype}")
        weight = f"%q{c}"
        if fmt.rank:
            a, b = case.arrays[2], case.arrays[3]
            body.append(
                f"  %w{c} = qlr.lowrank %a{c}, %b{c} base %q{c} : "
                f"{tensor_type(a['shape'], 'float32')}, "
                f"{tensor_type(b['shape'], 'float32')}, {qtype} -> {wtype}")
            weight = f"%w{c}"
        body.append(f"  %y{c} = qlr.linear %x, {weight} : "
                    f"tensor<?x{k}xf32>, {wtype} -> {out_type}")
        body.append(f"  %r{c} = bufferization.materialize_in_destination "
                    f"%y{c} in %out{c} : ({out_type}, {out_type}) -> "
                    f"{out_type}")
        results.append(f"%r{c}")
    return (f"func.func @{case.symbol}(" + ",\n    ".join(args) + ")\n"
            f"    -> ({', '.join([out_type] * case.copies)})\n"
            "    attributes {llvm.emit_c_interface} {\n" + "\n".join(body) +
            f"\n  return {', '.join(results)} : "
            f"{', '.join([out_type] * case.copies)}\n}}\n")


# Before the qlr pipelines: the front end, then upstream's empty-tensor
# elimination, so each linear writes straight into its output argument.
# (The GPU pipeline's front end then finds nothing left to do.)
FRONT_GPU = ("qlr-lower-to-linalg,canonicalize,"
             "func.func(convert-elementwise-to-linalg),qlr-fuse-elementwise,"
             "qlr-fuse-dequantize,canonicalize,eliminate-empty-tensors")
FRONT_CPU = ("qlr-lower-to-linalg,canonicalize,"
             "func.func(convert-elementwise-to-linalg),qlr-fuse-elementwise,"
             "canonicalize,eliminate-empty-tensors")


def pipeline(target: str, chip: str, binary: str, schedule: str = "") -> str:
    if target == "cuda":
        extra = (" " + schedule) if schedule else ""
        return (f"builtin.module({FRONT_GPU},"
                f"qlr-gpu-pipeline{{chip={chip} format={binary}{extra}}})")
    return f"builtin.module({FRONT_CPU},qlr-cpu-pipeline)"


# -- reference decoding (NumPy or CuPy: `xp`) ---------------------------------

def normal_float_table(bits: int) -> list:
    """NF codebook per docs/Design.md (NormalFloat codebooks), in f32."""
    inv = statistics.NormalDist().inv_cdf
    o, n = 0.9677083, 1 << bits
    pos = [inv(o + (0.5 - o) * i / (n / 2)) for i in range(n // 2)]
    neg = [-inv(o + (0.5 - o) * i / (n / 2 - 1)) for i in range(n // 2 - 1)]
    top = inv(o)
    import numpy as np
    return sorted(float(np.float32(v / top)) for v in pos + neg + [0.0])


def unpack_codes(xp, packed, k: int, bits: int):
    """Codes [N, K] (int32) of rows packed as little-endian bit streams."""
    packed = packed.astype(xp.int32)
    index = xp.arange(k, dtype=xp.int64) * bits
    codes = xp.zeros((packed.shape[0], k), dtype=xp.int32)
    for bit in range(bits):
        pos = index + bit
        codes |= ((packed[:, pos >> 3] >> (pos & 7).astype(xp.int32)) & 1) \
            << bit
    return codes


def decode_weight(xp, fmt: Format, k: int, codes, scales):
    """The float64 weight [N, K] that codes and scales stand for."""
    c = unpack_codes(xp, codes, k, fmt.bits)
    if fmt.codebook:
        table = xp.asarray(normal_float_table(fmt.bits), dtype=xp.float64)
        values = table[c]
    else:
        values = (c - (1 << (fmt.bits - 1))).astype(xp.float64)
    group_of = xp.arange(k) // fmt.group
    return values * scales.astype(xp.float64)[:, group_of]


def reference_linear(xp, fmt: Format, k: int, x, weights: dict):
    """x @ W.T in float64, W decoded from `weights` (codes, scales[, a, b])."""
    w = decode_weight(xp, fmt, k, weights["codes"], weights["scales"])
    x64 = x.astype(xp.float64)
    y = x64 @ w.T
    if fmt.rank:
        y += (x64 @ weights["b"].astype(xp.float64).T) @ \
            weights["a"].astype(xp.float64).T
    return y


def random_weights(xp, fmt: Format, k: int, n: int, seed: int) -> dict:
    """Random codes; scales (and factors) that give outputs of about unit
    size for unit inputs: decoded weights of variance about 1/K."""
    rng = xp.random.RandomState(seed)
    arrays = {}
    codes_shape = (n, (k * fmt.bits + 7) // 8)
    arrays["codes"] = rng.randint(0, 256, size=codes_shape).astype(xp.uint8)
    tail = (k * fmt.bits) % 8
    if tail:
        arrays["codes"][:, -1] &= (1 << tail) - 1
    levels = 1 << fmt.bits
    if fmt.codebook:
        mean_square = sum(v * v for v in normal_float_table(fmt.bits)) / levels
    else:
        mean_square = sum((c - levels / 2) ** 2 for c in range(levels)) / levels
    base = 1.0 / math.sqrt(k * mean_square)
    groups = -(-k // fmt.group)
    arrays["scales"] = (base * (0.75 + 0.5 * rng.random_sample((n, groups)))
                        ).astype(xp.float16)
    if fmt.rank:
        arrays["a"] = (rng.standard_normal((n, fmt.rank)) /
                       math.sqrt(fmt.rank)).astype(xp.float32)
        arrays["b"] = (0.1 * rng.standard_normal((fmt.rank, k)) /
                       math.sqrt(k)).astype(xp.float32)
    return arrays


# -- building -----------------------------------------------------------------

def find_tool(name: str, hints) -> str:
    for hint in hints:
        if hint and pathlib.Path(hint).is_file():
            return str(hint)
    found = shutil.which(name)
    if not found:
        sys.exit(f"kernel_cases.py: {name} not found")
    return found


def run(cmd, log) -> None:
    start = time.time()
    result = subprocess.run([str(c) for c in cmd], capture_output=True,
                            text=True)
    log.append(dict(cmd=" ".join(str(c) for c in cmd)[:300],
                    seconds=round(time.time() - start, 2),
                    rc=result.returncode))
    if result.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({result.returncode}):\n"
                           f"{result.stderr[-4000:]}")


def build_case(case: Case, work: pathlib.Path, tools: dict, target: str,
               chip: str, binary: str) -> tuple:
    log = []
    src = work / f"{case.symbol}.mlir"
    src.write_text(mlir_function(case))
    lowered = work / f"{case.symbol}.llvm.mlir"
    run([tools["quant-opt"], src, f"--pass-pipeline={pipeline(target, chip, binary, case.schedule)}",
         "-o", lowered], log)
    ll = work / f"{case.symbol}.ll"
    run([tools["mlir-translate"], "--mlir-to-llvmir", lowered, "-o", ll], log)
    text = ll.read_text()
    m = re.search(r"define void @_mlir_ciface_%s\(([^)]*)\)" % case.symbol,
                  text)
    if not m:
        raise RuntimeError(f"{case.name}: no _mlir_ciface_{case.symbol}")
    nargs = len([a for a in m.group(1).split(",") if a.strip()])
    expected = case.to_json()["ciface_args"]
    if nargs != expected:
        raise RuntimeError(f"{case.name}: _mlir_ciface_{case.symbol} takes "
                           f"{nargs} arguments, expected {expected} (a "
                           "result was not dropped?)")
    launches = open(lowered).read().count("gpu.launch_func")
    allocs = len(re.findall(r"llvm\.call @(mgpuMemAlloc|malloc)\(", open(lowered).read()))
    obj = work / f"{case.symbol}.o"
    run([tools["llc"], "-O2", "-filetype=obj", "-relocation-model=pic", ll,
         "-o", obj], log)
    # Only the entry points stay global: the CPU pipeline's helper kernels
    # of equal shapes have equal names in different cases' objects.
    run([tools["llvm-objcopy"], f"--keep-global-symbol=_mlir_ciface_{case.symbol}",
         obj], log)
    for path in (src, lowered, ll):
        if path != src:
            path.unlink()
    return obj, dict(launches_per_call=launches, allocations_per_call=allocs,
                     build_log=log)


def build(args) -> int:
    start = time.time()
    out = pathlib.Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = pathlib.Path(args.work or out / "obj").resolve()
    work.mkdir(parents=True, exist_ok=True)
    bin_dir = ROOT / "build" / "bin"
    llvm_bin = pathlib.Path("/usr/lib/llvm-22/bin")
    tools = {
        "quant-opt": find_tool("quant-opt", [args.quant_opt,
                                              bin_dir / "quant-opt"]),
        "mlir-translate": find_tool("mlir-translate",
                                    [llvm_bin / "mlir-translate"]),
        "llc": find_tool("llc", [llvm_bin / "llc"]),
        "llvm-objcopy": find_tool("llvm-objcopy", [llvm_bin / "llvm-objcopy"]),
        "c++": find_tool("c++", [os.environ.get("CXX")]),
    }
    shapes = SMALL_SHAPES if args.small else SHAPES
    cases = make_cases(shapes, args.formats.split(",") if args.formats
                       else None, copies=2 if args.small else None)
    if args.cases:
        wanted = set(args.cases.split(","))
        cases = [c for c in cases if c.name in wanted]
    objects, info = {}, {}
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        futures = {pool.submit(build_case, c, work, tools, args.target,
                               args.chip, args.binary): c for c in cases}
        for future in concurrent.futures.as_completed(futures):
            case = futures[future]
            objects[case.name], info[case.name] = future.result()
            print(f"  built {case.name} ({case.copies} copies)", flush=True)
    library = out / (f"libqlr-kernels-{args.chip}.so" if args.target == "cuda"
                     else "libqlr-kernels-cpu.so")
    link = [tools["c++"], "-shared", "-o", library]
    link += [objects[c.name] for c in cases]
    if args.target == "cuda":
        runtime = pathlib.Path(args.cuda_runtime or
                               ROOT / "build/lib/libQLRCudaRuntime.a")
        shim = work / "kernel_shim.o"
        run([tools["c++"], "-std=c++17", "-O2", "-fPIC", "-c",
             "-I", ROOT / "include", ROOT / "benchmarks/gpu/kernel_shim.cpp",
             "-o", shim], [])
        link += [shim, runtime, "-ldl", "-lpthread"]
    run(link, [])
    if not args.keep_objects:
        shutil.rmtree(work, ignore_errors=True)
    manifest = dict(
        target=args.target, chip=args.chip if args.target == "cuda" else None,
        gpu_binary=args.binary if args.target == "cuda" else None,
        library=library.name, batches=BATCHES, max_batch=MAX_BATCH,
        rotation_bytes=ROTATION_BYTES,
        cases=[dict(c.to_json(), **info[c.name]) for c in cases],
        build_seconds=round(time.time() - start, 1))
    (out / "kernels.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"kernel_cases.py: {len(cases)} cases -> {library} "
          f"({library.stat().st_size / 1e6:.1f} MB) in "
          f"{time.time() - start:.0f} s")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build the cases' library and manifest")
    b.add_argument("--out", required=True)
    b.add_argument("--work", help="object directory (default OUT/obj)")
    b.add_argument("--target", choices=["cuda", "cpu"], default="cuda")
    b.add_argument("--chip", default="sm_90")
    b.add_argument("--binary", default="fatbin",
                   help="gpu.binary contents: fatbin (cubin + PTX: the "
                        "driver JIT-compiles the PTX if it rejects the "
                        "cubin), bin or isa")
    b.add_argument("--small", action="store_true",
                   help="small shapes, 2 copies (for the CPU twin)")
    b.add_argument("--formats", help="comma-separated format keys")
    b.add_argument("--cases", help="comma-separated case names")
    b.add_argument("--jobs", type=int, default=2)
    b.add_argument("--quant-opt")
    b.add_argument("--cuda-runtime", help="libQLRCudaRuntime.a")
    b.add_argument("--keep-objects", action="store_true")
    m = sub.add_parser("mlir", help="print one case's MLIR")
    m.add_argument("case")
    m.add_argument("--copies", type=int, default=2)
    args = parser.parse_args()
    if args.command == "build":
        return build(args)
    fmt, shape = args.case.rsplit("-", 1)
    k, n = (int(v) for v in shape.split("x"))
    case = Case(FORMATS[fmt], k, n, args.copies)
    print(mlir_function(case))
    return 0


if __name__ == "__main__":
    sys.exit(main())
