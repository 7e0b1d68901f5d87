#!/usr/bin/env python3
"""QAT oscillations on a MobileNet-style CNN (issue 17, item 4a).

scikit-learn's bundled `load_digits` (1797 8x8 images), fixed split
train_test_split(test_size=0.2, random_state=0, stratify=None): 1437 train,
360 test images.  Per seed: float pretraining, then QAT at W4/W3/W2 (weights
only, per-channel LSQ steps, activations float) in four variants

    lsq        plain LSQ (the controller only measures oscillations)
    damp       + oscillation dampening (cosine λ 0 -> dampening_max)
    freeze     + iterative freezing (from 25 % of training, threshold 0.1 -> 0.01 cosine)
    damp+freeze

with the same data order and initial model; test accuracy before and after
BatchNorm re-estimation (50 batches), the fraction of oscillating weights
over training, and the agreement of QLR's CPU code (export_mlir ->
qlr-fold-batchnorm -> CPU pipeline -> qlr.compiler.jit, or quant-opt
--qlr-fold-batchnorm --qlr-cpu-pipeline | mlir-runner without the bindings)
with the PyTorch fake-quant model on the 360 test images (seed 0, W4 and W3).

    .venv/bin/python benchmarks/qat/cnn_digits.py --save-models DIR   # keep the checked models
    .venv/bin/python benchmarks/qat/cnn_digits.py --agreement-from DIR  # redo only the QLR check

    .venv/bin/python benchmarks/qat/cnn_digits.py              # full run (~10 min, 2 cores)
    .venv/bin/python benchmarks/qat/cnn_digits.py --quick      # smoke run

Writes benchmarks/qat/results/cnn_digits.json (--out) and
docs/qat-cnn-oscillations.png (--plot), prints a markdown table.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import pathlib
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "python"))

from qlr.qat import (QATController, export_mlir, prepare, quantized_modules,  # noqa: E402
                     reestimate_batchnorm)
from qlr.qat.models import DigitsMobileNet  # noqa: E402

VARIANTS = {
    "lsq": dict(dampening=False, freezing=False),
    "damp": dict(dampening=True, freezing=False),
    "freeze": dict(dampening=False, freezing=True),
    "damp+freeze": dict(dampening=True, freezing=True),
}


def load_data():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0)
    xtr, xte, ytr, yte = train_test_split(x, d.target, test_size=0.2, random_state=0)
    mean, std = xtr.mean(), xtr.std()
    norm = lambda a: torch.from_numpy(((a - mean) / std)[:, None].astype(np.float32))  # noqa: E731
    return norm(xtr), torch.from_numpy(ytr).long(), norm(xte), torch.from_numpy(yte).long()


def batches(n, batch_size, gen):
    perm = torch.randperm(n, generator=gen)
    for i in range(0, n - batch_size + 1, batch_size):   # drop the last partial batch
        yield perm[i:i + batch_size]


def accuracy(model, x, y):
    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def train_float(seed, xtr, ytr, epochs, batch_size, lr):
    torch.manual_seed(seed)
    model = DigitsMobileNet()
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * (len(xtr) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        for idx in batches(len(xtr), batch_size, gen):
            loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return model


def train_qat(float_model, bits, variant, seed, xtr, ytr, xte, yte, args, track_every):
    model = copy.deepcopy(float_model)
    prepare(model, bits=bits, init=args.init)
    init_acc = accuracy(model, xte, yte)      # right after prepare: the step init alone
    model.train()
    steps_per_epoch = len(xtr) // args.batch_size
    total = args.qat_epochs * steps_per_epoch
    ctrl = QATController(model, total, momentum=args.momentum,
                         dampening_max=args.dampening_max, freeze_start=args.freeze_start,
                         freeze_threshold=tuple(args.freeze_threshold), **VARIANTS[variant])
    weights = [p for n, p in model.named_parameters() if not n.endswith("step")]
    steps = [p for n, p in model.named_parameters() if n.endswith("step")]
    opt = torch.optim.Adam([{"params": weights}, {"params": steps, "lr": args.step_lr}],
                           lr=args.qat_lr)
    if args.lr_schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, total)
    else:   # constant: the weights keep moving to the end (oscillations persist)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0)
    gen = torch.Generator().manual_seed(1000 + seed)   # same order for every variant
    curve, t = [], 0
    for _ in range(args.qat_epochs):
        model.train()
        for idx in batches(len(xtr), args.batch_size, gen):
            loss = F.cross_entropy(model(xtr[idx]), ytr[idx]) + ctrl.regularizer(t)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            ctrl.after_step(t)
            t += 1
            if t % track_every == 0 or t == total:
                curve.append((t, ctrl.oscillating_fraction(args.osc_threshold),
                              ctrl.frozen_fraction()))
    return model, ctrl, curve, init_acc


def init_study(float_model, bits, xte, yte):
    """Test accuracy and relative weight error right after prepare() with each
    step initialisation (no training)."""
    out = {}
    for init in ("mse", "lsq"):
        model = copy.deepcopy(float_model)
        prepare(model, bits=bits, init=init)
        num = den = 0.0
        for _, m in quantized_modules(model):
            num += float(((m.quantized_weight() - m.weight.detach()) ** 2).sum())
            den += float((m.weight.detach() ** 2).sum())
        out[init] = {"acc": accuracy(model, xte, yte), "rel_weight_err": math.sqrt(num / den)}
    return out


def bn_batches(xtr, batch_size, seed, n):
    gen = torch.Generator().manual_seed(2000 + seed)
    out = []
    while len(out) < n:
        out += [xtr[idx] for idx in batches(len(xtr), batch_size, gen)]
    return out[:n]


def agreement(model, xte, bits_label, keep_dir=None, backend="auto"):
    """Fraction of test images where QLR's CPU code predicts PyTorch's class:
    export_mlir, qlr-fold-batchnorm, then the CPU pipeline and a JIT
    (qlr.compiler.jit, or quant-opt --qlr-cpu-pipeline | mlir-runner)."""
    from qlr.qat.run_mlir import find_tools, jit_available, run_with_jit, run_with_mlir_runner
    if backend == "auto":
        backend = "jit" if jit_available() else "mlir-runner"
    if backend == "mlir-runner" and find_tools() is None:
        return None
    model.eval()
    with torch.no_grad():
        ref = model(xte).numpy()
    text = export_mlir(model, (None,) + tuple(xte.shape[1:]))
    if keep_dir:
        pathlib.Path(keep_dir).mkdir(parents=True, exist_ok=True)
        (pathlib.Path(keep_dir) / f"cnn_digits_{bits_label}.mlir").write_text(text)
    if backend == "jit":
        got, folded = run_with_jit(text, xte.numpy(), fold=True)
    else:
        got = run_with_mlir_runner(text, xte.numpy(), (ref.shape[1],))
        folded = subprocess.run([find_tools()[0], "-", "--qlr-fold-batchnorm"], input=text,
                                text=True, capture_output=True, check=False).stdout
    return {"backend": backend,
            "batch_norms": text.count("qlr.batch_norm"),
            "batch_norms_left_by_fold": folded.count("qlr.batch_norm"),
            "agree": float((got.argmax(1) == ref.argmax(1)).mean()),
            "n": int(len(ref)),
            "max_abs_logit_diff": float(np.abs(got - ref).max())}


def redo_agreement(args, xte):
    """Re-run the QLR check on saved models (e.g. after a compiler change)."""
    result = json.loads(pathlib.Path(args.out).read_text())
    seed0 = result["config"]["seeds"][0]
    agree = []
    for run in result["runs"]:
        path = pathlib.Path(args.agreement_from) / f"w{run['bits']}_{run['variant']}.pt"
        if run["seed"] != seed0 or not path.exists():
            continue
        model = torch.load(path, weights_only=False)
        t1 = time.time()
        run["qlr"] = agreement(model, xte, f"w{run['bits']}_{run['variant']}", args.keep_mlir,
                              args.backend)
        run["qlr"]["seconds"] = time.time() - t1
        agree.append(dict(bits=run["bits"], variant=run["variant"], **run["qlr"]))
    result["qlr_agreement"] = agree
    result["summary"] = summarize(result["runs"], result["config"]["bits"],
                                  result["config"]["variants"])
    pathlib.Path(args.out).write_text(json.dumps(result, indent=1))
    report(result)


def mean_std(vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return None, None
    return float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0


def summarize(runs, bits_list, variants):
    """Mean ± std over seeds per (bits, variant), and the paired difference
    (same seed: same float model and data order) to plain LSQ's test accuracy
    without BatchNorm re-estimation."""
    summary = []
    for bits in bits_list:
        base = {r["seed"]: r["acc"] for r in runs if r["bits"] == bits and r["variant"] == "lsq"}
        for variant in variants:
            rs = [r for r in runs if r["bits"] == bits and r["variant"] == variant]
            a, sa = mean_std([r["acc"] for r in rs])
            b, sb = mean_std([r["acc_bn"] for r in rs])
            o, _ = mean_std([r["osc_final"] for r in rs])
            f, _ = mean_std([r["frozen_final"] for r in rs])
            m, _ = mean_std([np.mean([c[1] for c in r["curve"]]) for r in rs])
            d, sd = mean_std([r["acc"] - base[r["seed"]] for r in rs if r["seed"] in base])
            db, sdb = mean_std([r["acc_bn"] - base[r["seed"]] for r in rs if r["seed"] in base])
            summary.append(dict(bits=bits, variant=variant, n=len(rs), acc=a, acc_std=sa,
                                acc_bn=b, acc_bn_std=sb, osc_final=o, osc_mean=m,
                                frozen_final=f, delta=d, delta_std=sd, delta_bn=db,
                                delta_bn_std=sdb))
    return summary


def report(result):
    """Print the markdown tables of a result (as written to the JSON)."""
    pct = lambda v, s: "-" if v is None else f"{100 * v:.1f} ± {100 * s:.1f}"  # noqa: E731
    dlt = lambda v, s: "-" if v is None else f"{100 * v:+.1f} ± {100 * s:.1f}"  # noqa: E731
    cfg = result["config"]
    print(f"\nfloat: {pct(result['float_acc'], result['float_acc_std'])} % test accuracy "
          f"({len(cfg['seeds'])} seeds; QAT lr schedule {cfg.get('lr_schedule', 'cosine')})\n")
    print("| bits | variant | test acc % | after BN re-est. % | Δ vs lsq, paired (acc / after BN) "
          "| oscillating % (mean over training) | oscillating % (end) | frozen % |")
    print("|---|---|---|---|---|---|---|---|")
    for s in result["summary"]:
        print(f"| W{s['bits']} | {s['variant']} | {pct(s['acc'], s['acc_std'])} | "
              f"{pct(s['acc_bn'], s['acc_bn_std'])} | {dlt(s.get('delta'), s.get('delta_std'))} / "
              f"{dlt(s.get('delta_bn'), s.get('delta_bn_std'))} | {100 * s['osc_mean']:.2f} | "
              f"{100 * s['osc_final']:.2f} | {100 * s['frozen_final']:.1f} |")
    agree = result.get("qlr_agreement") or []
    if agree:
        print("\n| model | QLR == PyTorch class | max abs logit diff | BatchNorms folded | backend |")
        print("|---|---|---|---|---|")
        for a in agree:
            if "agree" in a:
                print(f"| W{a['bits']} {a['variant']} | {a['agree'] * a['n']:.0f}/{a['n']} "
                      f"({100 * a['agree']:.2f} %) | {a['max_abs_logit_diff']:.2e} | "
                      f"{a['batch_norms'] - a['batch_norms_left_by_fold']}/{a['batch_norms']} | "
                      f"{a.get('backend', 'mlir-runner')} |")
            else:
                print(f"| W{a['bits']} {a['variant']} | error: {a['error'][:200]} | | | |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 seed, W4, few epochs")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--bits", type=int, nargs="+", default=[4, 3, 2])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS))
    ap.add_argument("--float-epochs", type=int, default=20)
    ap.add_argument("--qat-epochs", type=int, default=15)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--float-lr", type=float, default=3e-3)
    ap.add_argument("--qat-lr", type=float, default=3e-3)
    ap.add_argument("--step-lr", type=float, default=1e-3)
    ap.add_argument("--lr-schedule", default="cosine", choices=["cosine", "constant"],
                    help="QAT learning rate schedule")
    ap.add_argument("--init", default="mse", choices=["mse", "lsq"])
    ap.add_argument("--momentum", type=float, default=0.01)
    ap.add_argument("--dampening-max", type=float, default=0.01,
                    help="final λ (0.1, the API default, costs 1-2 points here; docs/qat.md)")
    ap.add_argument("--freeze-start", type=float, default=0.25)
    ap.add_argument("--freeze-threshold", type=float, nargs=2, default=[0.1, 0.01])
    ap.add_argument("--osc-threshold", type=float, default=0.01,
                    help="a weight oscillates when its oscillation EMA exceeds this")
    ap.add_argument("--bn-batches", type=int, default=50)
    ap.add_argument("--no-qlr", action="store_true", help="skip the QLR agreement check")
    ap.add_argument("--backend", default="auto", choices=["auto", "jit", "mlir-runner"],
                    help="how QLR runs the exported model (auto: qlr.compiler.jit when built)")
    ap.add_argument("--keep-mlir", default=None, help="directory for the exported modules")
    ap.add_argument("--save-models", default=None,
                    help="directory: torch.save the models checked against QLR")
    ap.add_argument("--agreement-from", default=None,
                    help="only redo the QLR check of the models saved by --save-models in this "
                         "directory, updating the JSON given by --out")
    ap.add_argument("--report", action="store_true",
                    help="only print the tables of the JSON given by --out")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1 is fastest for this tiny net on a shared machine)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/qat/results/cnn_digits.json"))
    ap.add_argument("--plot", default=str(ROOT / "docs/qat-cnn-oscillations.png"))
    args = ap.parse_args()
    if args.quick:
        args.seeds, args.bits = args.seeds[:1], [4]
        args.float_epochs, args.qat_epochs = 5, 3
        if args.out.endswith("cnn_digits.json"):
            args.out = args.out.replace("cnn_digits.json", "cnn_digits_quick.json")
        args.plot = None
    torch.set_num_threads(args.threads)
    t_start = time.time()
    xtr, ytr, xte, yte = load_data()
    if args.agreement_from:
        return redo_agreement(args, xte)
    if args.report:
        result = json.loads(pathlib.Path(args.out).read_text())
        result["summary"] = summarize(result["runs"], result["config"]["bits"],
                                      result["config"]["variants"])
        return report(result)
    print(f"data: {len(xtr)} train, {len(xte)} test images", flush=True)
    steps_per_epoch = len(xtr) // args.batch_size
    track_every = max(1, steps_per_epoch // 4)

    runs, inits = [], []
    for seed in args.seeds:
        t0 = time.time()
        fmodel = train_float(seed, xtr, ytr, args.float_epochs, args.batch_size, args.float_lr)
        facc = accuracy(fmodel, xte, yte)
        print(f"seed {seed}: float {facc:.4f} ({time.time() - t0:.0f} s)", flush=True)
        for bits in args.bits:
            inits.append(dict(seed=seed, bits=bits, **init_study(fmodel, bits, xte, yte)))
            print(f"  W{bits} step init: " + ", ".join(
                f"{k} acc {v['acc']:.4f} rel.err {v['rel_weight_err']:.4f}"
                for k, v in inits[-1].items() if isinstance(v, dict)), flush=True)
            for variant in args.variants:
                t0 = time.time()
                model, ctrl, curve, init_acc = train_qat(fmodel, bits, variant, seed, xtr, ytr,
                                                         xte, yte, args, track_every)
                acc = accuracy(model, xte, yte)
                reestimate_batchnorm(model, bn_batches(xtr, args.batch_size, seed,
                                                       args.bn_batches), args.bn_batches)
                acc_bn = accuracy(model, xte, yte)
                run = dict(seed=seed, bits=bits, variant=variant, float_acc=facc,
                           init_acc=init_acc, acc=acc, acc_bn=acc_bn, curve=curve,
                           osc_final=ctrl.oscillating_fraction(args.osc_threshold),
                           frozen_final=ctrl.frozen_fraction(),
                           seconds=time.time() - t0)
                if not args.no_qlr and bits in (4, 3) and seed == args.seeds[0]:
                    t1 = time.time()
                    if args.save_models:
                        pathlib.Path(args.save_models).mkdir(parents=True, exist_ok=True)
                        torch.save(model, pathlib.Path(args.save_models) / f"w{bits}_{variant}.pt")
                    try:
                        run["qlr"] = agreement(model, xte, f"w{bits}_{variant}", args.keep_mlir,
                                               args.backend)
                    except Exception as e:  # keep the training results
                        run["qlr"] = {"error": str(e)[-2000:]}
                    if run["qlr"] is not None:
                        run["qlr"]["seconds"] = time.time() - t1
                runs.append(run)
                q = run.get("qlr") or {}
                print(f"  W{bits} {variant:12s} init {init_acc:.4f} acc {acc:.4f} -> BN re-est {acc_bn:.4f}  "
                      f"osc {run['osc_final']:.4f} frozen {run['frozen_final']:.4f}  "
                      f"({run['seconds']:.0f} s)"
                      + (f"  QLR agree {q['agree']:.4f}" if "agree" in q else
                         (f"  QLR error" if "error" in q else "")), flush=True)

    # -- summary ---------------------------------------------------------------
    summary = summarize(runs, args.bits, args.variants)
    fl, fls = mean_std([r["float_acc"] for r in runs if r["variant"] == args.variants[0]
                        and r["bits"] == args.bits[0]])
    agree = [dict(bits=r["bits"], variant=r["variant"], **r["qlr"]) for r in runs
             if isinstance(r.get("qlr"), dict)]
    result = dict(config=vars(args), float_acc=fl, float_acc_std=fls, summary=summary,
                  runs=runs, init_study=inits, qlr_agreement=agree, seconds=time.time() - t_start,
                  torch=torch.__version__)
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.out).write_text(json.dumps(result, indent=1))
    report(result)
    print(f"\ntotal {time.time() - t_start:.0f} s; JSON: {args.out}")

    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(1, len(args.bits), figsize=(4.5 * len(args.bits), 3.6),
                                 squeeze=False)
        for ax, bits in zip(axes[0], args.bits):
            for variant in args.variants:
                rs = [r for r in runs if r["bits"] == bits and r["variant"] == variant]
                t = np.array([c[0] for c in rs[0]["curve"]]) / steps_per_epoch
                osc = np.mean([[100 * c[1] for c in r["curve"]] for r in rs], axis=0)
                ax.plot(t, osc, label=variant)
            ax.set_title(f"W{bits}: oscillating weights (EMA freq > {args.osc_threshold})")
            ax.set_xlabel("QAT epoch")
            ax.set_ylabel("% of weights")
            ax.grid(alpha=0.3)
        axes[0][0].legend()
        fig.tight_layout()
        pathlib.Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.plot, dpi=110)
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
