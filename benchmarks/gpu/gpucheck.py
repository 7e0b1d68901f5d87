"""Helpers shared by the GPU check's steps (scripts/gpu-check.sh): one JSON
report that every step updates in place, so that whatever ran before a step
was killed is still there.

The report is rewritten whole (to a temporary file, then renamed) after
every update: it stays valid JSON at every moment.
"""

from __future__ import annotations

import json
import os
import pathlib
import time
from typing import Any


class Report:
    """The JSON object at `path`; `set(key, value)` replaces one top-level
    entry and writes the file. Other steps' entries are kept (read back
    before each write)."""

    def __init__(self, path: str | os.PathLike | None):
        self.path = pathlib.Path(path) if path else None

    def read(self) -> dict:
        if not self.path or not self.path.exists():
            return {}
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def set(self, key: str, value: Any) -> None:
        if not self.path:
            return
        data = self.read()
        data[key] = value
        data["updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=1, default=str) + "\n")
        os.replace(tmp, self.path)


class Budget:
    """Seconds left of a step's time box (set a little under the `timeout`
    that gpu-check.sh puts around the step, so the step can write what it
    has and stop on its own)."""

    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def expired(self, reserve: float = 0.0) -> bool:
        return self.left() <= reserve


def relative_error(xp, out, ref) -> float:
    """||out - ref|| / ||ref|| in float64 (NaN when out has a NaN)."""
    out64 = out.astype(xp.float64)
    ref64 = ref.astype(xp.float64)
    return float(xp.linalg.norm(out64 - ref64) / xp.linalg.norm(ref64))


def _device(report: Report, bundle: str, smi: str | None) -> int:
    """The 'device' entry: nvidia-smi's query, PyTorch's view of the GPU,
    and the bundle's manifest header (commit, creation time)."""
    import subprocess
    info: dict = {}
    if smi and pathlib.Path(smi).exists():
        info["nvidia_smi_query"] = pathlib.Path(smi).read_text().strip()
    try:
        out = subprocess.run(["uname", "-r"], capture_output=True, text=True)
        info["kernel"] = out.stdout.strip()
    except OSError:
        pass
    try:
        import torch
        props = torch.cuda.get_device_properties(0)
        info["torch"] = dict(
            version=torch.__version__, cuda=torch.version.cuda,
            name=props.name, capability=f"{props.major}.{props.minor}",
            total_memory=props.total_memory,
            multiprocessors=props.multi_processor_count,
            l2_bytes=getattr(props, "L2_cache_size", None))
    except Exception as error:  # no torch or no GPU: say so, go on
        info["torch_error"] = f"{type(error).__name__}: {error}"[:300]
    manifest = pathlib.Path(bundle) / "manifest.json"
    if manifest.exists():
        m = json.loads(manifest.read_text())
        info["bundle"] = {k: m.get(k) for k in ("created", "git_commit",
                                                 "git_dirty", "chip")}
    report.set("device", info)
    print(json.dumps(info, indent=1, default=str)[:2000])
    return 0


def _step(report: Report, name: str, rc: int, seconds: float,
          limit: float) -> int:
    steps = report.read().get("steps", {})
    steps[name] = dict(rc=rc, seconds=round(seconds, 1), limit_s=limit,
                       status="ok" if rc == 0 else
                       "timed out" if rc in (124, 137) else "failed")
    report.set("steps", steps)
    return 0


def _summary(report: Report) -> int:
    """A short table of the report for the end of the log."""
    data = report.read()
    for name, step in data.get("steps", {}).items():
        print(f"step {name:<18} {step['status']:<10} {step['seconds']:6.1f}s")
    dev = data.get("device", {})
    if dev:
        print("device:", dev.get("nvidia_smi_query") or dev.get("torch", {}))
    models = data.get("models", {})
    for row in models.get("cases", []):
        if "ok" in row:
            print(f"model {row['name']:<22} {row['binary']:<5} ppl rel "
                  f"{row['ppl_rel_diff']:.1e} tokens "
                  f"{'equal' if row['tokens_ok'] else 'differ'} "
                  f"{'ok' if row['ok'] else 'FAIL'}")
        else:
            print(f"model {row['name']:<22} {row.get('binary', ''):<5} ERROR "
                  f"{str(row.get('error', ''))[-120:]}")
    kernels = data.get("kernels", {})
    dev_k = kernels.get("device", {})
    if dev_k:
        print(f"bandwidth: copy {dev_k.get('peak_gbps_measured_copy') or 0:.0f} "
              f"GB/s, theoretical {dev_k.get('peak_gbps_theoretical') or 0:.0f} GB/s")
    for row in kernels.get("rows", []):
        q, t = row.get("qlr", {}), row.get("torch_fp16", {})
        if not q:
            print(f"kernel {row['case']:<28} M={row.get('M')} ERROR "
                  f"{str(row.get('error', ''))[-120:]}")
            continue
        nan = float("nan")
        print(f"kernel {row['case']:<28} M={row['M']:<2} {q['us']:9.1f} us "
              f"{q['gbps']:7.1f} GB/s {q.get('pct_peak_measured_copy', nan):5.1f}% "
              f"kernel {q.get('kernel_us', nan):9.1f} us | fp16 "
              f"{t.get('us', nan):8.1f} us x{row.get('speedup_vs_fp16', nan):.2f} "
              f"{'ok' if row.get('validation', {}).get('ok') else 'INVALID'}")
    for row in data.get("e2e_qlr", {}).get("models", []):
        print(f"e2e qlr {row['name']:<24} "
              + (f"{row['decode_tokens_per_s']:.2f} tok/s" if
                 "decode_tokens_per_s" in row else
                 "ERROR " + str(row.get("error", ""))[-120:]))
    for key in sorted(k for k in data if k.startswith("e2e_torch")):
        row = data[key]
        print(f"e2e torch {key[10:]:<22} " + ", ".join(
            f"{m} {row[m]['tokens_per_s']:.1f} tok/s" for m in ("eager", "graph")
            if isinstance(row.get(m), dict) and "tokens_per_s" in row[m])
            + (" ERROR" if "error" in row else ""))
    return 0


if __name__ == "__main__":
    import argparse
    import sys
    parser = argparse.ArgumentParser(description="gpu-check.sh's report helper")
    parser.add_argument("--report", required=True)
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("device")
    d.add_argument("--bundle", default="gpu-bundle")
    d.add_argument("--smi")
    s = sub.add_parser("step")
    s.add_argument("name")
    s.add_argument("rc", type=int)
    s.add_argument("seconds", type=float)
    s.add_argument("limit", type=float)
    sub.add_parser("summary")
    args = parser.parse_args()
    rep = Report(args.report)
    if args.command == "summary":
        sys.exit(_summary(rep))
    if args.command == "device":
        sys.exit(_device(rep, args.bundle, args.smi))
    sys.exit(_step(rep, args.name, args.rc, args.seconds, args.limit))
