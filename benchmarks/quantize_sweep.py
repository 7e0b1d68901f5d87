#!/usr/bin/env python3
"""Perplexity, size and pass time of QLR's quantizers on one imported model.

    python3 benchmarks/quantize_sweep.py --model /tmp/smollm2.mlirbc \
        --configs rtn-w4-g64,gptq-w4-g64 --windows 4

For every configuration: run quant-opt with the pass pipeline below on the
float model (wall time of the whole quant-opt run: parse, pass, write), then
`qlr-run --perplexity DEV --ctx 512 --max-windows W --json` on the result.
Results accumulate in --out (JSON, one entry per configuration; existing
entries are kept, so the sweep can run in pieces; --force re-measures).

Bits per weight count everything a quantized linear stores: codes, scales
(16 bits for f16), zero points (8 bits), and low-rank factors (32 bits per
value), over the weights of the linears that were quantized (the classifier
and the embeddings stay float and are not counted). The file size is the
whole bytecode file, embeddings included.

GPTQ pipelines spell out refit-scales and float-target: a name without
"-ft" / "-rN" is plain sequential GPTQ (float-target=false refit-scales=0),
which was the pass default when those entries were measured (before
2026-12-06) and is no longer.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEV_TEXT = ROOT.parent / "shared" / "data" / "tinystories-dev.txt"
CALIB_TEXT = ROOT.parent / "shared" / "data" / "tinystories-calib.txt"


# Learning rate of the norm-tweak configurations (chosen on GPTQ W3 g64; see
# docs/norm-tweak.md).
NORM_TWEAK_LR = "5e-4"


def rtn(bits, group, sym=True, fmt="uniform", clip=False, frac=False):
    opts = f"method=rtn bits={bits} group-size={group} symmetric={'true' if sym else 'false'}"
    if frac:
        opts += " zero-point=fractional"
    if clip:
        opts += " clip-search=true"
    if fmt != "uniform":
        opts = f"method=rtn format={fmt} group-size={group}"
    return f"qlr-quantize-linear{{{opts}}}"


def gptq(bits, group, sym=True, samples=32, seq_len=256, act_order=False, clip=False,
         frac=False, refit=0, float_target=False):
    return ("qlr-quantize-linear{method=gptq "
            f"bits={bits} group-size={group} symmetric={'true' if sym else 'false'} "
            f"data={CALIB_TEXT} samples={samples} seq-len={seq_len}"
            f" act-order={'true' if act_order else 'false'}{' clip-search=true' if clip else ''}"
            f"{' zero-point=fractional' if frac else ''}"
            f" refit-scales={refit} float-target={'true' if float_target else 'false'}}}")


def loftq(fmt, rank, iters, bits=2, group=64):
    b = "" if fmt.startswith("nf") else f" bits={bits}"
    return f"qlr-loftq{{format={fmt}{b} rank={rank} iters={iters} group-size={group}}}"


def configs():
    c = {"float": None}
    for method in ("rtn", "gptq"):
        for bits in (8, 4, 3, 2):
            for group in (32, 64, 128):
                for sym in (True, False):
                    name = f"{method}-w{bits}-g{group}-{'sym' if sym else 'asym'}"
                    c[name] = rtn(bits, group, sym) if method == "rtn" else gptq(bits, group, sym)
    # Range search (clip) and act-order variants at group 64.
    for bits in (4, 3, 2):
        for sym in (True, False):
            tag = "sym" if sym else "asym"
            c[f"rtn-w{bits}-g64-{tag}-clip"] = rtn(bits, 64, sym, clip=True)
            c[f"gptq-w{bits}-g64-{tag}-clip"] = gptq(bits, 64, sym, clip=True)
            c[f"gptq-w{bits}-g64-{tag}-ao"] = gptq(bits, 64, sym, act_order=True)
            c[f"gptq-w{bits}-g64-{tag}-clip-ao"] = gptq(bits, 64, sym, act_order=True, clip=True)
    for bits in (4, 3, 2):
        for group in (32, 128):
            c[f"gptq-w{bits}-g{group}-asym-clip-ao"] = gptq(bits, group, False, act_order=True, clip=True)
            for sym in (True, False):
                c[f"gptq-w{bits}-g{group}-{'sym' if sym else 'asym'}-ao"] = gptq(
                    bits, group, sym, act_order=True)
    # Fractional zero points (zero-point=fractional, "-fz"): same storage as
    # the asymmetric configurations above.
    for bits in (4, 3, 2):
        for group in (32, 64, 128):
            c[f"gptq-w{bits}-g{group}-asym-fz-ao"] = gptq(bits, group, False, act_order=True, frac=True)
            c[f"rtn-w{bits}-g{group}-asym-fz"] = rtn(bits, group, False, frac=True)
        c[f"gptq-w{bits}-g64-asym-fz-clip-ao"] = gptq(bits, 64, False, act_order=True, clip=True, frac=True)
    # Float target ("-ft", float-target=true) and scale refit ("-rN",
    # refit-scales=N), alone and together, with integer and fractional zero
    # points; "-sS-lL" changes the calibration size (samples, seq-len).
    for bits in (4, 3, 2):
        for group in (32, 64, 128):
            for frac in (False, True):
                base = f"gptq-w{bits}-g{group}-asym{'-fz' if frac else ''}"
                c[f"{base}-ft-ao"] = gptq(bits, group, False, act_order=True, frac=frac,
                                          float_target=True)
                for refit in (1, 3):
                    c[f"{base}-r{refit}-ao"] = gptq(bits, group, False, act_order=True,
                                                    frac=frac, refit=refit)
                    c[f"{base}-ft-r{refit}-ao"] = gptq(bits, group, False, act_order=True,
                                                       frac=frac, refit=refit, float_target=True)
                for samples, seq_len in ((64, 512), (128, 256)):
                    c[f"{base}-ft-r1-ao-s{samples}-l{seq_len}"] = gptq(
                        bits, group, False, samples=samples, seq_len=seq_len, act_order=True,
                        frac=frac, refit=1, float_target=True)
    for bits in (4, 3, 2):
        c[f"gptq-w{bits}-g64-asym-clip-ft-r1-ao"] = gptq(bits, 64, False, act_order=True, clip=True,
                                                        refit=1, float_target=True)
    for fmt in ("nf4", "nf2"):
        c[f"rtn-{fmt}-g64"] = rtn(0, 64, fmt=fmt)
    for fmt in ("nf2", "uniform"):
        for rank in (8, 16, 32):
            for iters in (1, 5):
                c[f"loftq-{'int2' if fmt == 'uniform' else fmt}-r{rank}-t{iters}"] = loftq(fmt, rank, iters)
    # Norm tweaking (qlr-norm-tweak) after a quantizer: NAME-nt runs NAME's
    # pipeline, then tunes the norms against the float model ({model}).
    for base in ("gptq-w4-g64-asym-ao", "gptq-w3-g64-asym-ao", "gptq-w2-g64-asym-ao",
                 "gptq-w4-g128-asym-ao", "gptq-w3-g128-asym-ao", "gptq-w2-g128-asym-ao",
                 "gptq-w3-g64-asym-clip-ao", "gptq-w2-g64-asym-clip-ao",
                 "rtn-w3-g64-asym", "rtn-w2-g64-asym", "rtn-w4-g64-asym"):
        c[f"{base}-nt"] = c[base] + "," + norm_tweak()
    # Basis selection (qlr-basis-select): data-aware (energy scores, least-
    # squares refit on the calibration text) against plain truncated SVD.
    for ratio in ("0.9", "0.75", "0.6", "0.5"):
        c[f"bs-energy-lsq-r{ratio}"] = basis_select(ratio, "energy", "lsq")
        c[f"bs-magnitude-none-r{ratio}"] = basis_select(ratio, "magnitude", "none")
    c["bs-energy-lsq-r0.75-gptq-w4-g64-asym-ao"] = (
        basis_select("0.75", "energy", "lsq") + "," + gptq(4, 64, False, act_order=True))
    return c


def basis_select(ratio, score, refit, samples=32, seq_len=256):
    opts = f"ratio={ratio} score={score} refit={refit}"
    if score == "energy" or refit == "lsq":
        opts += f" data={CALIB_TEXT} samples={samples} seq-len={seq_len}"
    return f"qlr-basis-select{{{opts}}}"


def norm_tweak(lr=NORM_TWEAK_LR):
    return f"qlr-norm-tweak{{reference={{model}} lr={lr}}}"


def linear_shapes(model_cfg):
    d, h, kv, hd, layers = (model_cfg[k] for k in ("dim", "hidden_dim", "kv_heads", "head_dim", "layers"))
    per_layer = [(d, d), (kv * hd, d), (kv * hd, d), (d, d), (h, d), (h, d), (d, h)]
    return per_layer * layers


def ir_storage(args, module):
    """Storage of the transformer blocks' linear weights of `module`, read
    from its types: (bits stored, dense weights). Float weights cost their
    element size, qtensors their codes plus f16/f32 scales and 8-bit zero
    points per group, low-rank weights both factors (each float or
    quantized)."""
    text = subprocess.run([str(args.quant_opt), module, "--mlir-elide-resource-strings-if-larger=1"],
                          capture_output=True, text=True, check=True).stdout
    formats = {}
    for alias, body in re.findall(r"^#(\w+) = #qlr.format<([^>]*)>", text, re.M):
        formats[alias] = body

    def fmt_bits(ref, n, k):
        body = formats.get(ref.lstrip("#"), ref)
        bits = int(re.match(r"\s*(?:int|nf|lut)(\d+)", body).group(1))
        group = re.search(r"group = (\d+)", body)
        scale = 32 if "scale = " not in body else (16 if re.search(r"scale = (f16|bf16)", body) else 32)
        groups = n * math.ceil(k / int(group.group(1))) if group else (n if "channel" in body else 1)
        zp = 8 if "asymmetric" in body else 0
        return n * math.ceil(k * bits / 8) * 8 + groups * (scale + zp)

    bits = dense = 0
    for line in text.splitlines():
        if "qlr.linear" not in line:
            continue
        weight = line.split(":", 1)[1].split("->")[0].split(", ", 1)[1].strip()
        m = re.match(r"tensor<(\d+)x(\d+)xf32>", weight)
        if m:
            n, k = int(m.group(1)), int(m.group(2))
            if n * k == int(args.vocab) * k:
                continue  # the classifier
            bits += 32 * n * k
        elif weight.startswith("!qlr.qtensor"):
            m = re.match(r"!qlr.qtensor<(\d+)x(\d+)xf32, (#?[^>]+>?)>", weight)
            n, k = int(m.group(1)), int(m.group(2))
            bits += fmt_bits(m.group(3), n, k)
        elif weight.startswith("!qlr.lowrank"):
            m = re.match(r"!qlr.lowrank<(\d+)x(\d+)xf32, rank = (\d+)(.*)>", weight)
            n, k, r, rest = int(m.group(1)), int(m.group(2)), int(m.group(3)), m.group(4)
            a = re.search(r"a = (#\w+)", rest)
            b = re.search(r"b = (#\w+)", rest)
            bits += fmt_bits(a.group(1), n, r) if a else 32 * n * r
            bits += fmt_bits(b.group(1), r, k) if b else 32 * r * k
        else:
            continue
        dense += n * k
    return bits, dense


def bits_per_weight(name, model_cfg):
    """Storage bits per weight of the quantized linears (see the module doc)."""
    if name == "float":
        return 32.0
    shapes = linear_shapes(model_cfg)
    parts = name.split("-")
    if name.startswith("loftq"):
        bits, group, scale_bits, zp = 2, 64, 16, False
        rank = int(parts[2][1:])
    elif parts[1].startswith("nf"):
        bits, group, scale_bits, zp, rank = int(parts[1][2:]), int(parts[2][1:]), 16, False, 0
    else:
        bits, group = int(parts[1][1:]), int(parts[2][1:])
        scale_bits, zp, rank = 16, parts[3] == "asym", 0
    total_bits = total = 0
    for n, k in shapes:
        groups = n * math.ceil(k / group) if group else n
        row_bytes = math.ceil(k * bits / 8)
        total_bits += n * row_bytes * 8 + groups * (scale_bits + (8 if zp else 0))
        total_bits += 32 * rank * (n + k)
        total += n * k
    return total_bits / total


def run_config(args, name, pipeline, model_cfg):
    out_file = Path(args.workdir) / f"{name}.mlirbc"
    entry = {"name": name, "pipeline": pipeline}
    model = args.model
    if pipeline is not None:
        pipeline = pipeline.replace("{model}", args.model)
        entry["pipeline"] = pipeline
        cmd = [str(args.quant_opt), args.model, f"--pass-pipeline=builtin.module({pipeline})",
               "--emit-bytecode", "-o", str(out_file)]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        entry["quant_opt_seconds"] = round(time.perf_counter() - t0, 2)
        entry["command"] = " ".join(cmd)
        if proc.returncode != 0:
            entry["error"] = proc.stderr[-2000:]
            return entry
        model = str(out_file)
    entry["file_bytes"] = os.path.getsize(model)
    if name.startswith("bs-"):
        args.vocab = model_cfg["vocab_size"]
        bits, dense = ir_storage(args, model)
        entry["bits_per_weight"] = round(bits / dense, 4)
        entry["kept_parameter_ratio"] = round(bits / dense / 32, 4) if "gptq" not in name else None
    else:
        entry["bits_per_weight"] = round(bits_per_weight(name, model_cfg), 4)
    cmd = [str(args.qlr_run), model, "--perplexity", str(DEV_TEXT), "--ctx", "512",
           "--max-windows", str(args.windows), "--json", "--quiet", "-t", str(args.threads)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    entry["qlr_run_seconds"] = round(time.perf_counter() - t0, 2)
    if proc.returncode != 0:
        entry["error"] = proc.stderr[-2000:]
        return entry
    result = json.loads(proc.stdout)
    entry["perplexity"] = result["ppl"]
    entry["tokens_scored"] = result["tokens"]
    entry["windows"] = args.windows
    if pipeline is not None and not args.keep:
        out_file.unlink(missing_ok=True)
    return entry


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="float model made by qlr-import (.mlirbc)")
    p.add_argument("--configs", default="all", help="comma-separated names or 'all' (see --list)")
    p.add_argument("--list", action="store_true", help="print the configurations and exit")
    p.add_argument("--windows", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/quantize-sweep.json"))
    p.add_argument("--workdir", default="/tmp")
    p.add_argument("--build", default=str(ROOT / "build"))
    p.add_argument("--force", action="store_true", help="re-measure configurations already in --out")
    p.add_argument("--keep", action="store_true", help="keep the quantized model files")
    args = p.parse_args()
    args.quant_opt = Path(args.build) / "bin/quant-opt"
    args.qlr_run = Path(args.build) / "bin/qlr-run"
    all_configs = configs()
    if args.list:
        for k, v in all_configs.items():
            print(f"{k}: {v}")
        return
    names = list(all_configs) if args.configs == "all" else args.configs.split(",")
    unknown = [n for n in names if n not in all_configs]
    if unknown:
        sys.exit(f"unknown configurations: {', '.join(unknown)} (see --list)")
    results = {}
    out = Path(args.out)
    if out.exists():
        results = {e["name"]: e for e in json.loads(out.read_text())["results"]}
    model_cfg = read_model_config(args)
    for name in names:
        if name in results and not args.force and "error" not in results[name]:
            continue
        print(f"== {name}", file=sys.stderr, flush=True)
        entry = run_config(args, name, all_configs[name], model_cfg)
        results[name] = entry
        print(json.dumps(entry), file=sys.stderr, flush=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"model": args.model, "results": list(results.values())}, indent=1) + "\n")


def read_model_config(args):
    """The qlr.model attribute of the float module, as a dict of numbers."""
    text = subprocess.run([str(args.quant_opt), args.model, "--mlir-elide-resource-strings-if-larger=1"],
                          capture_output=True, text=True, check=True).stdout
    attr = text.split("qlr.model = {", 1)[1].split("}", 1)[0]
    cfg = {}
    for item in attr.split(", "):
        key, value = item.split(" = ", 1)
        value = value.split(" : ")[0].strip('"')
        try:
            cfg[key] = int(value)
        except ValueError:
            cfg[key] = value
    return cfg


if __name__ == "__main__":
    main()
