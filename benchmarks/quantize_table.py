#!/usr/bin/env python3
"""Markdown tables from benchmarks/results/quantize-sweep.json (QLR) and
benchmarks/results/llamacpp-quants.json (llama.cpp), for docs/quantization.md;
with --basis, the basis-selection rows (bs-*) for docs/basis-selection.md;
with --norm-tweak, benchmarks/results/norm-tweak.json beside its bases for
docs/norm-tweak.md; with --grid, the RTN/GPTQ grid (bits x group size x
symmetric/asymmetric) of docs/quantization.md.

    python3 benchmarks/quantize_table.py [--basis | --norm-tweak | --grid]
"""

import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def basis_table(sweep, float_ppl):
    print("| ratio | score, refit | kept parameters | bits/weight (linears) | file MB | quant-opt s | ppl (4 windows) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    rows = [e for e in sweep if e["name"].startswith("bs-")]
    for e in sorted(rows, key=lambda e: (-float(e["name"].split("-r")[1].split("-")[0]), e["name"])):
        parts = e["name"].split("-")
        ratio = parts[3][1:]
        method = f"{parts[1]}, {parts[2]}" + (" + GPTQ W4 g64" if "gptq" in e["name"] else "")
        if "perplexity" not in e:
            print(f"| {ratio} | {method} | | | | | failed |")
            continue
        kept = e.get("kept_parameter_ratio")
        print(f"| {ratio} | {method} | {'' if kept is None else f'{kept:.3f}'} | {e['bits_per_weight']:.2f} | "
              f"{e['file_bytes'] / 1e6:.1f} | {e.get('quant_opt_seconds', '')} | {e['perplexity']:.4g} |")
    print(f"\nfloat: {float_ppl:.4f}")


def norm_tweak_table(by_name):
    path = ROOT / "benchmarks/results/norm-tweak.json"
    tweaked = json.loads(path.read_text())["results"]
    print("| quantizer | bits/weight | ppl without | ppl with norm tweak | change | blocks kept | norm-tweak s | peak RSS MB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for e in tweaked:
        base = by_name.get(e["base"], {})
        if "perplexity" not in e or "perplexity" not in base:
            print(f"| {e['base']} | | {base.get('perplexity', '')} | failed | | | | |")
            continue
        change = 100 * (e["perplexity"] / base["perplexity"] - 1)
        print(f"| {e['base']} | {base['bits_per_weight']:.3f} | {base['perplexity']:.4g} | {e['perplexity']:.4g} | "
              f"{change:+.1f} % | {e['blocks_kept']} of {len(e['blocks'])} | {e['norm_tweak_seconds']} | "
              f"{e.get('peak_rss_mb', '')} |")


def grid_cell(by_name, name):
    """Perplexity of configuration name, or a dash if it was not measured."""
    e = by_name.get(name, {})
    return f"{e['perplexity']:.4g}" if "perplexity" in e else "-"


def grid_table(by_name, float_ppl):
    """One row per (bits, group): RTN and GPTQ, symmetric and asymmetric.
    GPTQ is plain sequential GPTQ (no float target, no refit) with act-order
    at W4/W3/W2 (the -ao rows) and without at W8 (act-order does not matter
    at 8 bits and those rows were measured first)."""
    print("| bits | group | bits/weight sym / asym | RTN sym | RTN asym | GPTQ sym | GPTQ asym |")
    print("|---:|---:|---|---:|---:|---:|---:|")
    for bits in (8, 4, 3, 2):
        for group in (32, 64, 128):
            base = f"w{bits}-g{group}"
            gptq = lambda tag: f"gptq-{base}-{tag}" + ("" if bits == 8 else "-ao")
            bpw = []
            for tag in ("sym", "asym"):
                e = by_name.get(f"rtn-{base}-{tag}", {})
                bpw.append(f"{e['bits_per_weight']:.3f}" if "bits_per_weight" in e else "-")
            cells = [grid_cell(by_name, f"rtn-{base}-sym"),
                     grid_cell(by_name, f"rtn-{base}-asym"),
                     grid_cell(by_name, gptq("sym")),
                     grid_cell(by_name, gptq("asym"))]
            print(f"| {bits} | {group} | {' / '.join(bpw)} | " + " | ".join(cells) + " |")
    print(f"\nfloat: {float_ppl:.4f}")
    # Asymmetric GPTQ, plain against the pass defaults (float target and one
    # scale refit, the -ft-r1-ao rows), at every group size.
    print()
    print("| bits | g32 plain | g32 defaults | g64 plain | g64 defaults | g128 plain | g128 defaults |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for bits in (4, 3, 2):
        cells = []
        for group in (32, 64, 128):
            base = f"gptq-w{bits}-g{group}-asym"
            cells += [grid_cell(by_name, f"{base}-ao"), grid_cell(by_name, f"{base}-ft-r1-ao")]
        print(f"| {bits} | " + " | ".join(cells) + " |")


def main():
    sweep = json.loads((ROOT / "benchmarks/results/quantize-sweep.json").read_text())["results"]
    by_name = {e["name"]: e for e in sweep}
    float_ppl = by_name.get("float", {}).get("perplexity")
    if "--basis" in sys.argv:
        return basis_table(sweep, float_ppl)
    if "--norm-tweak" in sys.argv:
        return norm_tweak_table(by_name)
    if "--grid" in sys.argv:
        return grid_table(by_name, float_ppl)
    sweep = [e for e in sweep if not e["name"].startswith("bs-")]
    print("| configuration | bits/weight (linears) | file MB | quant-opt s | ppl (4 windows) | vs float |")
    print("|---|---:|---:|---:|---:|---:|")
    for e in sorted(sweep, key=lambda e: (-e.get("bits_per_weight", 0), e.get("perplexity", 1e9))):
        if "perplexity" not in e:
            print(f"| {e['name']} | | | | failed | |")
            continue
        rel = f"{100 * (e['perplexity'] / float_ppl - 1):+.1f} %" if float_ppl else ""
        secs = e.get("quant_opt_seconds", "")
        print(f"| {e['name']} | {e['bits_per_weight']:.3f} | {e['file_bytes'] / 1e6:.1f} | {secs} | "
              f"{e['perplexity']:.4f} | {rel} |")
    path = ROOT / "benchmarks/results/llamacpp-quants.json"
    if path.exists():
        rows = json.loads(path.read_text())["rows"]
        print()
        print("| llama.cpp quant | bits/weight (linears) | bits/weight (file) | file MB | ppl (4 windows) | vs F32 |")
        print("|---|---:|---:|---:|---:|---:|")
        f32 = next(r for r in rows if r["name"] == "F32")["ppl"]["ppl@4"]
        for r in rows:
            if "ppl" not in r or "ppl@4" not in r.get("ppl", {}):
                print(f"| {r['name']} | | | | refused: {r.get('refused', r.get('error', 'not measured'))[:70]} | |")
                continue
            acc = r["accounting"]
            print(f"| {r['name']} | {acc['bpw_linears']:.3f} | {acc['bpw_all']:.3f} | {r['file_bytes'] / 1e6:.1f} | "
                  f"{r['ppl']['ppl@4']:.4f} | {100 * (r['ppl']['ppl@4'] / f32 - 1):+.1f} % |")


if __name__ == "__main__":
    main()
