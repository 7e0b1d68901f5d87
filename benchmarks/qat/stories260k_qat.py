#!/usr/bin/env python3
"""Quantization-aware training of stories260K against GPTQ and RTN, all
evaluated by QLR (issue 17, items 4b and 5).

    .venv/bin/python benchmarks/qat/stories260k_qat.py            # full run
    .venv/bin/python benchmarks/qat/stories260k_qat.py --quick    # smoke test
    .venv/bin/python benchmarks/qat/stories260k_qat.py --table    # markdown table of the JSON

Steps (each row of the JSON records its command or settings and time):

1. ``qlr-import stories260K.bin --tokenizer tok512.bin`` -> float module;
   the calibration and dev texts tokenized by the module's tokenizer
   (``qlr-run --tokenize``), so PyTorch and QLR see the same tokens.
2. Evaluation windows: the first ``--windows`` (default: all 187) full
   windows of ctx 256 of tinystories-dev.txt, exactly as ``qlr-run
   --perplexity --ctx 256 --max-windows W`` cuts them (BOS + 255 text
   tokens each, every text token after BOS scored). Every row uses them.
3. Float: PyTorch and QLR perplexity (and their agreement).
4. Baselines: RTN and GPTQ through ``quant-opt --qlr-quantize-linear``
   (W2/W3 g32, symmetric with f32 scales = the QAT export's format, plus f16
   scales and asymmetric variants), each evaluated by ``qlr-run``.
5. QAT (``qlr.qat``): the 35 block linears fake-quantized (symmetric signed
   grid, one learned LSQ step per 32 weights along K; w2's K = 172 ends
   with a partial group of 12), the RMSNorm weights trained in float, the
   embedding/classifier frozen; loss = KL(float teacher || student) on the
   logits (knowledge distillation) plus ``--ce`` x next-token CE, on random
   ctx-256 windows of tinystories-calib.txt; Adam, cosine LR. Variants:
   ``lsq`` (plain LSQ/STE) and ``osc`` (+ oscillation dampening and
   iterative freezing, Nagel et al. 2022).
6. Export to safetensors (benchmarks/qat/stories260k_export.py), applied by
   ``quant-opt --qlr-load-weights``, evaluated by ``qlr-run``; agreement =
   QLR perplexity / PyTorch fake-quant perplexity - 1, and the largest
   logit difference on a 64-token prompt (``qlr-run --dump-logits``).

Seeds are fixed (torch, numpy; GPTQ seed=0); with ``torch.set_num_threads``
at its value (2) a run reproduces its numbers on the same machine.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "python"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import llama2c_torch as L  # noqa: E402
import stories260k_export as X  # noqa: E402

SHARED = ROOT.parent / "shared"
MODEL = SHARED / "models" / "stories260K.bin"
TOKENIZER = SHARED / "models" / "tok512.bin"
CALIB = SHARED / "data" / "tinystories-calib.txt"
DEV = SHARED / "data" / "tinystories-dev.txt"
BIN = Path(os.environ.get("QLR_BUILD_DIR", ROOT / "build")) / "bin"
CTX = 256
GROUP = 32


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(cmd: List[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


# --------------------------------------------------------------------------
# QLR side
# --------------------------------------------------------------------------


def qlr_perplexity(module: Path, windows: int) -> Dict:
    cmd = [str(BIN / "qlr-run"), str(module), "--perplexity", str(DEV), "--ctx", str(CTX),
           "--max-windows", str(windows), "--json", "--quiet"]
    t = time.time()
    out = json.loads(run(cmd).stdout)
    out["wall_seconds"] = time.time() - t
    out["command"] = " ".join(shlex.quote(c) for c in cmd)
    return out


def qlr_logits(module: Path, ids: List[int], workdir: Path) -> np.ndarray:
    dump = workdir / f"{module.stem}.logits.f32"
    run([str(BIN / "qlr-run"), str(module), "--prompt-ids", ",".join(map(str, ids)),
         "-n", "1", "--dump-logits", str(dump), "--quiet"])
    return np.fromfile(dump, dtype="<f4").reshape(len(ids), -1)


def bits_per_weight(shapes: Dict[str, tuple], bits: int, group: int, scale_bits: int,
                    zero_point: bool) -> float:
    """Stored bits per weight over the quantized linears: packed code rows,
    scales and (asymmetric) 8-bit zero points, as QLR stores them."""
    stored = 0
    count = 0
    for n, k in shapes.values():
        groups = math.ceil(k / group)
        stored += n * math.ceil(k * bits / 8) * 8 + n * groups * (scale_bits + 8 * zero_point)
        count += n * k
    return stored / count


def baseline_configs(bits: int, quick: bool, more: bool = False) -> List[Dict]:
    data = f"data={CALIB} samples=32 seq-len=256 seed=0"
    rows = [
        ("rtn-sym-f32", f"method=rtn bits={bits} group-size={GROUP} symmetric=true "
                        "scale-type=f32", 32, False),
        ("rtn-sym-clip-f32", f"method=rtn bits={bits} group-size={GROUP} symmetric=true "
                             "scale-type=f32 clip-search=true", 32, False),
        ("gptq-sym-f32", f"method=gptq bits={bits} group-size={GROUP} symmetric=true "
                         f"scale-type=f32 {data}", 32, False),
        ("gptq-sym-clip-f32", f"method=gptq bits={bits} group-size={GROUP} symmetric=true "
                              f"scale-type=f32 clip-search=true {data}", 32, False),
        ("gptq-sym-clip-f16", f"method=gptq bits={bits} group-size={GROUP} symmetric=true "
                              f"scale-type=f16 clip-search=true {data}", 16, False),
        ("gptq-asym-clip-f32", f"method=gptq bits={bits} group-size={GROUP} symmetric=false "
                               f"scale-type=f32 clip-search=true {data}", 32, True),
        ("gptq-asym-clip-f16", f"method=gptq bits={bits} group-size={GROUP} symmetric=false "
                               f"scale-type=f16 clip-search=true {data}", 16, True),
    ]
    if more:
        rows += [
            ("gptq-sym-clip-noao-f32", f"method=gptq bits={bits} group-size={GROUP} "
                                       f"symmetric=true scale-type=f32 clip-search=true "
                                       f"act-order=false {data}", 32, False),
            ("gptq-sym-clip-f32-s128", f"method=gptq bits={bits} group-size={GROUP} "
                                       f"symmetric=true scale-type=f32 clip-search=true "
                                       f"data={CALIB} samples=128 seq-len=256 seed=0", 32,
             False),
        ]
    if quick:
        rows = [r for r in rows if r[0] in ("rtn-sym-f32", "gptq-sym-clip-f32")]
    return [dict(name=f"{n}-w{bits}", opts=o, scale_bits=s, zero_point=z, bits=bits)
            for n, o, s, z in rows]


def run_baseline(cfg: Dict, float_module: Path, workdir: Path, windows: int,
                 shapes: Dict[str, tuple]) -> Dict:
    out = workdir / f"{cfg['name']}.mlirbc"
    cmd = [str(BIN / "quant-opt"), str(float_module),
           f"--qlr-quantize-linear={cfg['opts']}", "-emit-bytecode", "-o", str(out)]
    t = time.time()
    run(cmd)
    pass_s = time.time() - t
    ppl = qlr_perplexity(out, windows)
    fmt = f"int{cfg['bits']}, group = {GROUP}" + (", asymmetric" if cfg["zero_point"] else "") \
        + ("" if cfg["scale_bits"] == 32 else ", scale = f16")
    return {"name": cfg["name"], "method": cfg["name"].split("-")[0], "bits": cfg["bits"],
            "format": fmt,
            "bpw": bits_per_weight(shapes, cfg["bits"], GROUP, cfg["scale_bits"],
                                   cfg["zero_point"]),
            "qlr_ppl": ppl["ppl"], "qlr_nll": ppl["nll"], "tokens": ppl["tokens"],
            "windows": ppl["windows"], "seconds": pass_s,
            "command": " ".join(shlex.quote(c) for c in cmd)}


def load_weights_available() -> bool:
    try:
        out = run([str(BIN / "quant-opt"), "--help"]).stdout
    except (OSError, subprocess.CalledProcessError):
        return False
    return "--qlr-load-weights" in out


def apply_export(float_module: Path, st: Path, out: Path) -> Dict:
    cmd = [str(BIN / "quant-opt"), str(float_module), f"--qlr-load-weights=file={st}",
           "-emit-bytecode", "-o", str(out)]
    t = time.time()
    run(cmd)
    return {"command": " ".join(shlex.quote(c) for c in cmd), "seconds": time.time() - t}


# --------------------------------------------------------------------------
# QAT
# --------------------------------------------------------------------------


def linear_names(model) -> List[str]:
    return [f"layers.{i}.{s}" for i in range(len(model.layers)) for s in L.BLOCK_LINEARS]


def norm_names(model) -> List[str]:
    names = []
    for i in range(len(model.layers)):
        names += [f"layers.{i}.attention_norm", f"layers.{i}.ffn_norm"]
    return names + ["norm"]


def make_student(teacher, bits: int):
    from qlr import qat
    student = copy.deepcopy(teacher)
    X.pad_linears(student, GROUP, linear_names(student))
    qat.prepare(student, bits=bits, group_size=GROUP)
    return student


def train_qat(teacher, bits: int, train_ids: np.ndarray, args, variant: str) -> Dict:
    """Trains a fake-quantized copy of `teacher`; returns the student and a
    log. variant: "lsq" (plain) or "osc" (dampening + freezing)."""
    from qlr import qat
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    student = make_student(teacher, bits)
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    student.tok_embeddings.weight.requires_grad_(False)
    quant = [m for _, m in qat.quantized_modules(student)]
    weights = [m.weight for m in quant]
    steps_p = [m.step for m in quant]
    norms = [p for n, p in student.named_parameters()
             if n.endswith("norm.weight")]
    groups = [{"params": weights, "lr": args.lr},
              {"params": steps_p, "lr": args.lr_step}]
    if args.train_norms:
        groups.append({"params": norms, "lr": args.lr_norm})
    else:
        for p in norms:
            p.requires_grad_(False)
    opt = torch.optim.Adam(groups, betas=(0.9, 0.99))
    base_lr = [g["lr"] for g in groups]
    total = args.steps
    warm = max(1, total // 20)
    ctrl = qat.QATController(student, total, dampening=(variant == "osc"),
                             freezing=(variant == "osc"), momentum=args.momentum,
                             dampening_max=args.damp_max)
    hist = []
    t0 = time.time()
    student.train()
    for step in range(total):
        f = (step + 1) / warm if step < warm else \
            0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))
        for g, lr in zip(opt.param_groups, base_lr):
            g["lr"] = lr * f
        x = torch.from_numpy(L.train_windows(train_ids, CTX, args.batch, rng))
        with torch.no_grad():
            t_logp = torch.log_softmax(teacher(x), -1)
        s_logits = student(x)
        s_logp = torch.log_softmax(s_logits, -1)
        kd = (t_logp.exp() * (t_logp - s_logp)).sum(-1).mean()
        loss = kd
        ce = None
        if args.ce > 0:
            ce = F.cross_entropy(s_logits[:, :-1].reshape(-1, s_logits.shape[-1]),
                                 x[:, 1:].reshape(-1))
            loss = loss + args.ce * ce
        reg = ctrl.regularizer(step)
        opt.zero_grad(set_to_none=True)
        (loss + reg).backward()
        opt.step()
        ctrl.after_step(step)
        if step % args.log_every == 0 or step == total - 1:
            rec = {"step": step, "kd": float(kd), "reg": float(reg.detach()),
                   "oscillating": ctrl.oscillating_fraction(),
                   "frozen": ctrl.frozen_fraction(), "seconds": time.time() - t0}
            if ce is not None:
                rec["ce"] = float(ce)
            hist.append(rec)
            log(f"  w{bits} {variant} step {step}/{total} kd {rec['kd']:.4f} "
                f"reg {rec['reg']:.2e} osc {rec['oscillating']:.4f} "
                f"frozen {rec['frozen']:.4f} {rec['seconds']:.0f}s")
    train_s = time.time() - t0
    student.eval()
    return {"model": student, "history": hist, "train_seconds": train_s,
            "oscillating_final": ctrl.oscillating_fraction(),
            "frozen_final": ctrl.frozen_fraction()}


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


def write_json(path, result: Dict) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(result, indent=1) + "\n")


def evaluate_qat(student, name: str, variant: str, bits: int, scale: str, ctx: Dict) -> Dict:
    """PyTorch perplexity of the fake-quant model, export, QLR perplexity
    of the exported module, agreement."""
    args, work = ctx["args"], ctx["work"]
    t = time.time()
    pq = L.perplexity(student, ctx["eval_w"])
    row = {"name": name, "method": f"qat-{variant}", "bits": bits,
           "format": X.format_body(bits, GROUP, scale),
           "bpw": bits_per_weight(ctx["shapes"], bits, GROUP, 32 if scale == "f32" else 16,
                                  False),
           "torch_ppl": pq["ppl"], "torch_nll": pq["nll"],
           "torch_eval_seconds": time.time() - t}
    st = work / f"{name}.safetensors"
    tensors, meta = X.export_safetensors(st, student, norm_names(student)
                                         if args.train_norms else (), scale)
    row["export"] = str(st)
    row["export_tensors"] = len(tensors)
    # the export decodes to the fake-quant weights exactly
    dec = X.decoded_weights(tensors, meta)
    row["export_decode_max_diff"] = max(
        float(np.abs(dec[n] - m.quantized_weight().numpy()[:, :k]).max())
        for n, m, k in X.quantized_linears(student))
    if not ctx["have_loader"]:
        row["qlr_ppl"] = None
        row["note"] = "quant-opt has no --qlr-load-weights: not evaluated by QLR"
        log(f"{name}: torch {pq['ppl']:.4f} (no QLR loader)")
        return row
    out = work / f"{name}.mlirbc"
    row["load"] = apply_export(ctx["float_module"], st, out)
    qp = qlr_perplexity(out, len(ctx["eval_w"]))
    row.update(qlr_ppl=qp["ppl"], qlr_nll=qp["nll"], agreement=qp["ppl"] / pq["ppl"] - 1,
               qlr_command=qp["command"])
    probe = ctx["probe"]
    ql = qlr_logits(out, probe, work)
    with torch.no_grad():
        tl = student(torch.tensor(probe)).numpy()
    row["probe_logits_max_abs_diff"] = float(np.abs(ql - tl).max())
    log(f"{name}: torch {pq['ppl']:.4f} qlr {qp['ppl']:.4f} ({100 * row['agreement']:+.4f} %), "
        f"probe logits max diff {row['probe_logits_max_abs_diff']:.2e}")
    return row


def markdown_table(result: Dict) -> str:
    """The results table of docs/qat.md (language model section) from a results JSON."""
    fl = result["float"]
    lines = ["| format | bpw | method | QLR ppl | PyTorch ppl | QLR/PyTorch − 1 | time |",
             "|---|---:|---|---:|---:|---:|---:|",
             f"| float32 | 32 | float | {fl['qlr_ppl']:.4f} | {fl['torch_ppl']:.4f} | "
             f"{fl['agreement']:+.1e} | |"]
    rows = [(r["bits"], 0, r) for r in result.get("baselines", [])]
    rows += [(r["bits"], 1, r) for r in result.get("qat", [])]
    for _, _, r in sorted(rows, key=lambda t: (t[0], t[1])):
        torch_ppl = f"{r['torch_ppl']:.4f}" if r.get("torch_ppl") else ""
        agree = f"{r['agreement']:+.1e}" if r.get("agreement") is not None else ""
        qppl = f"{r['qlr_ppl']:.4f}" if r.get("qlr_ppl") else "n/a"
        if "train_seconds" in r:
            secs = f"train {r['train_seconds']:.0f} s"
        elif "seconds" in r:
            secs = f"pass {r['seconds']:.1f} s"
        else:
            secs = ""
        lines.append(f"| `{r['format']}` | {r['bpw']:.3f} | {r['name']} | {qppl} | "
                     f"{torch_ppl} | {agree} | {secs} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 8 eval windows, 2 baselines per width, 10 QAT steps, "
                         "no f16 rows")
    ap.add_argument("--bits", default="2,3", help="bit widths (default 2,3)")
    ap.add_argument("--variants", default="lsq,osc", help="QAT variants: lsq, osc")
    ap.add_argument("--windows", type=int, default=0,
                    help="evaluation windows of ctx 256 (0 = all full windows: 187)")
    ap.add_argument("--steps", type=int, default=150, help="QAT steps per variant")
    ap.add_argument("--batch", type=int, default=16, help="windows of 256 tokens per step")
    ap.add_argument("--lr", type=float, default=3e-3, help="Adam LR of the latent weights")
    ap.add_argument("--lr-step", type=float, default=3e-3, help="Adam LR of the LSQ steps")
    ap.add_argument("--lr-norm", type=float, default=1e-3, help="Adam LR of the norm weights")
    ap.add_argument("--no-train-norms", dest="train_norms", action="store_false")
    ap.add_argument("--ce", type=float, default=0.0,
                    help="weight of next-token cross-entropy added to the KD loss")
    ap.add_argument("--momentum", type=float, default=0.01, help="oscillation EMA momentum")
    ap.add_argument("--damp-max", type=float, default=0.01,
                    help="final dampening lambda (the regularizer is a sum over weights)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-baselines", action="store_true",
                    help="keep the baseline rows of an existing --out file (same windows)")
    ap.add_argument("--skip-qat", action="store_true",
                    help="keep the QAT rows of an existing --out file (same windows)")
    ap.add_argument("--more-baselines", action="store_true",
                    help="also GPTQ without act-order and with 128 calibration windows")
    ap.add_argument("--no-f16", dest="f16", action="store_false",
                    help="skip the f16-scale export of each QAT model")
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--workdir", default="/tmp/stories260k-qat")
    ap.add_argument("--out", default=str(HERE / "results" / "stories260k.json"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--table", action="store_true",
                    help="print the markdown table of an existing --out file and exit")
    args = ap.parse_args(argv)
    if args.table:
        print(markdown_table(json.loads(Path(args.out).read_text())))
        return 0
    if args.quick:
        args.windows = args.windows or 8
        args.steps = min(args.steps, 10)
        args.log_every = 5
        args.f16 = False
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.time()

    # 1. import, tokenize
    float_module = work / "stories260K.mlirbc"
    run([str(BIN / "qlr-import"), str(MODEL), "--tokenizer", str(TOKENIZER),
         "-o", str(float_module)])
    calib_ids = np.asarray(L.tokenize_with_qlr(str(BIN / "qlr-run"), str(float_module),
                                               str(CALIB)), dtype=np.int64)
    dev_ids = L.tokenize_with_qlr(str(BIN / "qlr-run"), str(float_module), str(DEV))
    eval_w = L.eval_windows(dev_ids, CTX, args.windows or None)
    n_windows = len(eval_w)
    log(f"calib {len(calib_ids)} tokens, dev {len(dev_ids)} tokens, eval {n_windows} windows "
        f"of {CTX}")
    config, teacher = L.load_llama2c(MODEL)
    shapes = {n: tuple(teacher.get_submodule(n).weight.shape) for n in linear_names(teacher)}
    probe = [L.BOS_ID] + dev_ids[:63]

    result: Dict = {
        "model": str(MODEL), "config": {k: getattr(config, k) for k in (
            "dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size")},
        "quantized_linears": len(shapes),
        "quantized_weights": sum(n * k for n, k in shapes.values()),
        "eval": {"text": str(DEV), "ctx": CTX, "windows": n_windows,
                 "scored_tokens": int(n_windows * (CTX - 1)),
                 "definition": "the first W full windows [BOS] + 255 text tokens of "
                               "tinystories-dev.txt (qlr-run --perplexity --ctx 256 "
                               "--max-windows W)"},
        "train_text": str(CALIB), "train_tokens": int(len(calib_ids)),
        "args": vars(args), "host": platform.node(),
        "torch": torch.__version__, "threads": torch.get_num_threads(),
    }

    # 2. float
    t = time.time()
    pt = L.perplexity(teacher, eval_w)
    pt_s = time.time() - t
    q = qlr_perplexity(float_module, n_windows)
    result["float"] = {"torch_ppl": pt["ppl"], "qlr_ppl": q["ppl"],
                       "agreement": q["ppl"] / pt["ppl"] - 1, "torch_eval_seconds": pt_s,
                       "qlr_eval_seconds": q["wall_seconds"], "qlr_command": q["command"]}
    log(f"float: torch {pt['ppl']:.4f} qlr {q['ppl']:.4f}")

    bits_list = [int(b) for b in args.bits.split(",")]
    # 3. baselines
    previous: Dict = {}
    if (args.skip_baselines or args.skip_qat) and Path(args.out).exists():
        previous = json.loads(Path(args.out).read_text())
        if previous.get("eval", {}).get("windows") != n_windows:
            raise SystemExit(f"{args.out} was measured on other windows")
    result["baselines"] = previous.get("baselines", []) if args.skip_baselines else []
    if not args.skip_baselines:
        for bits in bits_list:
            for cfg in baseline_configs(bits, args.quick, args.more_baselines):
                row = run_baseline(cfg, float_module, work, n_windows, shapes)
                result["baselines"].append(row)
                write_json(args.out, result)
                log(f"{row['name']}: {row['qlr_ppl']:.4f} ({row['bpw']:.3f} bpw, "
                    f"{row['seconds']:.1f} s)")

    # 4. QAT
    try:
        from qlr import qat  # noqa: F401
    except ImportError as e:
        result["qat_error"] = f"qlr.qat unavailable: {e}"
        bits_list = []
    have_loader = load_weights_available()
    result["qat"] = []
    if args.skip_qat:
        result["qat"] = previous.get("qat", [])
        bits_list = []
    ctx = dict(work=work, float_module=float_module, eval_w=eval_w, shapes=shapes,
               probe=probe, have_loader=have_loader, args=args)
    for bits in bits_list:
        for variant in args.variants.split(","):
            log(f"QAT w{bits} {variant}: {args.steps} steps of {args.batch}x{CTX}")
            tr = train_qat(teacher, bits, calib_ids, args, variant)
            student = tr.pop("model")
            row = evaluate_qat(student, f"qat-{variant}-w{bits}", variant, bits, "f32", ctx)
            row.update(tr)
            result["qat"].append(row)
            if args.f16:
                f16 = copy.deepcopy(student)
                with torch.no_grad():
                    for _, m in qat.quantized_modules(f16):
                        m.step.copy_(m.step.half().float())
                result["qat"].append(evaluate_qat(f16, f"qat-{variant}-w{bits}-f16", variant,
                                                  bits, "f16", ctx))
            write_json(args.out, result)

    result["total_seconds"] = time.time() - t_start
    write_json(args.out, result)
    log(f"wrote {args.out} ({result['total_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
