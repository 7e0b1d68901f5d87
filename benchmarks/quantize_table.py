#!/usr/bin/env python3
"""Markdown tables from benchmarks/results/quantize-sweep.json (QLR) and
benchmarks/results/llamacpp-quants.json (llama.cpp), for docs/quantization.md.

    python3 benchmarks/quantize_table.py
"""

import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent


def main():
    sweep = json.loads((ROOT / "benchmarks/results/quantize-sweep.json").read_text())["results"]
    by_name = {e["name"]: e for e in sweep}
    float_ppl = by_name.get("float", {}).get("perplexity")
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
