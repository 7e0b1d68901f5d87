#!/usr/bin/env python3
"""QLR's quantized matrix-vector (batch 1) and batch-16 kernels against
PyTorch fp16 (cuBLAS) on the same shapes, on a GPU, with no MLIR there.

The kernels come prebuilt (kernel_cases.py build: one shared library of
`_mlir_ciface_linear_<case>` functions, each running COPIES qlr.linear
layers on COPIES different weight sets, so the weights streamed per call
exceed the L2). This script allocates every buffer with CuPy, passes them
as memref descriptors through ctypes, checks each case once against a
float64 reference decoded here from the same codes and scales
(kernel_cases.decode_weight, docs/Design.md's rules), then times calls:

  us          median over calls of (wall time of one call / COPIES): a
              call queues every launch on one stream and synchronizes once,
              so this includes the launch gaps but not a sync per layer;
  kernel_us   the kernels' own time per layer from PyTorch's profiler
              (CUPTI), when it works: the difference from `us` is launch
              overhead;
  gbps        weight bytes (codes + scales + factors) / us;
  pct_peak    gbps / the device's bandwidth: measured (a device-to-device
              copy in this run, bytes read + written) and theoretical (memory
              clock x bus width);
  speedup_vs_fp16   torch fp16 us / QLR us (torch: F.linear on [M, K] x
              [N, K] fp16, CUDA events, rotating over copies of the weight
              whose total exceeds the L2 too).

    python3 benchmarks/gpu/bench_kernels.py --kernels gpu-bundle/kernels \\
        --report $OUT/gpu-check.json --budget 150
    .venv/bin/python benchmarks/gpu/bench_kernels.py --dry-run \\
        --kernels gpu-bundle/kernels --cpu-kernels build/gpu-prepare/kernels-cpu

--dry-run (no GPU, no CuPy, no PyTorch) loads the CUDA library, resolves
every case's function and builds every descriptor without calling them, then
runs the CPU twin library (the same generated functions compiled for the
host) through the very same validation and timing code with NumPy arrays.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
import pathlib
import statistics
import sys
import time
import traceback
import zlib

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import kernel_cases  # noqa: E402
from gpucheck import Budget, Report, relative_error  # noqa: E402

TOLERANCE = 1e-4  # relative L2 error against float64: f32 accumulation


class MemRef2D(ctypes.Structure):
    """A rank-2 memref descriptor, as `_mlir_ciface_*` functions take it."""
    _fields_ = [("allocated", ctypes.c_void_p), ("aligned", ctypes.c_void_p),
                ("offset", ctypes.c_int64), ("sizes", ctypes.c_int64 * 2),
                ("strides", ctypes.c_int64 * 2)]


def memref(ptr: int, rows: int, cols: int) -> MemRef2D:
    return MemRef2D(ptr, ptr, 0, (rows, cols), (cols, 1))


class Backend:
    """Where the buffers live: NumPy (the CPU twin, dry runs) or CuPy."""

    def __init__(self, gpu: bool):
        self.gpu = gpu
        if gpu:
            import cupy
            self.xp = cupy
        else:
            import numpy
            self.xp = numpy

    def ptr(self, array) -> int:
        return int(array.data.ptr) if self.gpu else int(array.ctypes.data)

    def sync(self) -> None:
        if self.gpu:
            self.xp.cuda.Device().synchronize()

    def free(self) -> None:
        if self.gpu:
            self.xp.get_default_memory_pool().free_all_blocks()


class Library:
    """The kernels' shared library and, for CUDA, its shim."""

    def __init__(self, path: pathlib.Path, cuda: bool):
        self.path = path
        self.lib = ctypes.CDLL(str(path), mode=os.RTLD_LOCAL)
        self.cuda = cuda
        if cuda:
            self.lib.qlrbench_take_error.argtypes = [ctypes.c_char_p,
                                                     ctypes.c_size_t]
            self.lib.qlrbench_available.argtypes = [ctypes.c_char_p,
                                                    ctypes.c_size_t]
            self.lib.qlrbench_device.argtypes = [
                ctypes.c_char_p, ctypes.c_size_t,
                ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int)]
            self.lib.qlrbench_device.restype = ctypes.c_double

    def take_error(self) -> str | None:
        if not self.cuda:
            return None
        buf = ctypes.create_string_buffer(4096)
        if self.lib.qlrbench_take_error(buf, len(buf)):
            return buf.value.decode("utf-8", "replace")
        return None

    def available(self) -> tuple:
        buf = ctypes.create_string_buffer(4096)
        ok = bool(self.lib.qlrbench_available(buf, len(buf)))
        return ok, buf.value.decode("utf-8", "replace")

    def device(self) -> dict:
        buf = ctypes.create_string_buffer(256)
        sms, l2 = ctypes.c_int(0), ctypes.c_int(0)
        peak = self.lib.qlrbench_device(buf, len(buf), ctypes.byref(sms),
                                        ctypes.byref(l2))
        return dict(name=buf.value.decode("utf-8", "replace"),
                    peak_gbps_theoretical=peak if peak > 0 else None,
                    multiprocessors=sms.value, l2_bytes=l2.value)

    def function(self, symbol: str, nargs: int):
        fn = getattr(self.lib, symbol)
        fn.argtypes = [ctypes.POINTER(MemRef2D)] * nargs
        fn.restype = None
        return fn


# -- one case ---------------------------------------------------------------

def make_buffers(backend: Backend, case: dict, seed: int) -> dict:
    xp = backend.xp
    fmt = kernel_cases.FORMATS[case["format"]]
    k, n = case["K"], case["N"]
    rng = xp.random.RandomState(seed)
    x = rng.standard_normal((kernel_cases.MAX_BATCH, k)).astype(xp.float32)
    copies = [kernel_cases.random_weights(xp, fmt, k, n, seed + 1 + c)
              for c in range(case["copies"])]
    outs = [xp.full((kernel_cases.MAX_BATCH, n), xp.nan, dtype=xp.float32)
            for _ in range(case["copies"])]
    for c in copies:
        for a in case["arrays"]:
            assert list(c[a["name"]].shape) == a["shape"], (a, c[a["name"]].shape)
    return dict(x=x, copies=copies, outs=outs)


def descriptors(backend: Backend, case: dict, bufs: dict, m: int) -> list:
    descs = [memref(backend.ptr(bufs["x"]), m, case["K"])]
    for weights in bufs["copies"]:
        for a in case["arrays"]:
            rows, cols = a["shape"]
            descs.append(memref(backend.ptr(weights[a["name"]]), rows, cols))
    for out in bufs["outs"]:
        descs.append(memref(backend.ptr(out), m, case["N"]))
    assert len(descs) == case["ciface_args"]
    return descs


def validate(backend: Backend, case: dict, bufs: dict, m: int) -> dict:
    xp = backend.xp
    fmt = kernel_cases.FORMATS[case["format"]]
    checked = sorted({0, case["copies"] - 1})
    errors, unwritten = [], 0
    for c in checked:
        out = bufs["outs"][c][:m]
        unwritten += int(xp.isnan(out).sum())
        ref = kernel_cases.reference_linear(xp, fmt, case["K"],
                                            bufs["x"][:m], bufs["copies"][c])
        errors.append(relative_error(xp, out, ref))
    worst = max(errors)
    return dict(rel_err=worst, copies_checked=checked, unwritten=unwritten,
                tolerance=TOLERANCE,
                ok=bool(unwritten == 0 and worst <= TOLERANCE))


def time_calls(backend: Backend, call, copies: int, budget_s: float) -> dict:
    """Median wall time per layer over calls; at least 3 calls, about
    `budget_s` seconds of them."""
    start = time.perf_counter()
    call()
    first = time.perf_counter() - start
    calls = max(3, min(50, int(budget_s / max(first, 1e-6))))
    walls = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        walls.append(time.perf_counter() - start)
    med = statistics.median(walls)
    return dict(us=med / copies * 1e6, wall_us_per_call=med * 1e6,
                calls=calls, spread_us=(max(walls) - min(walls)) / copies * 1e6)


def profile_kernels(call, copies: int) -> dict | None:
    """The kernels' own time per layer (PyTorch's CUPTI profiler sees every
    kernel of the process, QLR's driver-API launches included)."""
    try:
        import torch
        from torch.profiler import ProfilerActivity, profile
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            call()
            torch.cuda.synchronize()
        total, launches, names = 0.0, 0, {}
        for event in prof.events():
            # Kernels (and copies) are the events on the device; their
            # duration is their time range.
            if "CUDA" not in str(getattr(event, "device_type", "")):
                continue
            device_us = event.time_range.elapsed_us()
            if not device_us:
                continue
            total += device_us
            launches += 1
            names[event.name] = names.get(event.name, 0) + 1
        if launches == 0:
            return None
        return dict(kernel_us=total / copies, kernels_per_layer=launches / copies,
                    kernel_names=sorted(names)[:8])
    except Exception as error:  # profiler missing or refused: not fatal
        return dict(error=f"{type(error).__name__}: {error}"[:300])


_fp16_cache: dict = {}


def torch_fp16(k: int, n: int, m: int) -> dict:
    """F.linear in fp16 on [m, k] x [n, k], rotating over weight copies that
    exceed the L2; median of 5 trials of CUDA-event-timed loops."""
    key = (k, n, m)
    if key in _fp16_cache:
        return _fp16_cache[key]
    import torch
    import torch.nn.functional as F
    weight_bytes = 2 * k * n
    copies = max(2, min(16, math.ceil(kernel_cases.ROTATION_BYTES /
                                      weight_bytes)))
    gen = torch.Generator(device="cuda").manual_seed(k * 31 + n)
    ws = [torch.randn(n, k, device="cuda", dtype=torch.float16,
                      generator=gen) / math.sqrt(k) for _ in range(copies)]
    x = torch.randn(m, k, device="cuda", dtype=torch.float16, generator=gen)
    for w in ws:
        F.linear(x, w)
    torch.cuda.synchronize()
    iters = copies * max(1, 200 // copies)
    trials = []
    for _ in range(5):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        for i in range(iters):
            F.linear(x, ws[i % copies])
        end.record()
        end.synchronize()
        trials.append(start.elapsed_time(end) * 1e3 / iters)
    us = statistics.median(trials)
    result = dict(us=us, gbps=weight_bytes / us / 1e3, copies=copies,
                  weight_bytes=weight_bytes,
                  spread_us=max(trials) - min(trials))
    del ws, x
    torch.cuda.empty_cache()
    _fp16_cache[key] = result
    return result


def run_case(backend: Backend, lib: Library, case: dict, batches, device: dict,
             budget: Budget, use_torch: bool, profile: bool,
             seconds_per_timing: float) -> list:
    fn = lib.function(case["symbol"], case["ciface_args"])
    bufs = make_buffers(backend, case, seed=zlib.crc32(case["name"].encode()) % 100000)
    backend.sync()
    rows = []
    for m in batches:
        descs = descriptors(backend, case, bufs, m)
        refs = [ctypes.byref(d) for d in descs]
        row = dict(case=case["name"], format=case["format"],
                   qlr_format=case["qlr_format"], K=case["K"], N=case["N"],
                   M=m, copies=case["copies"],
                   weight_bytes=case["weight_bytes"],
                   launches_per_layer=case["launches_per_call"] / case["copies"],
                   allocations_per_layer=(case["allocations_per_call"] /
                                          case["copies"]))
        for out in bufs["outs"]:
            out.fill(backend.xp.nan)
        fn(*refs)
        backend.sync()
        error = lib.take_error()
        if error:
            row["error"] = error
            rows.append(row)
            continue
        row["validation"] = validate(backend, case, bufs, m)

        def call():
            fn(*refs)
        timing = time_calls(backend, call, case["copies"], seconds_per_timing)
        error = lib.take_error()
        if error:
            row["error"] = error
        qlr = dict(timing)
        qlr["gbps"] = case["weight_bytes"] / qlr["us"] / 1e3
        for label in ("measured_copy", "theoretical"):
            peak = device.get(f"peak_gbps_{label}")
            if peak:
                qlr[f"pct_peak_{label}"] = 100.0 * qlr["gbps"] / peak
        if profile:
            prof = profile_kernels(call, case["copies"])
            if prof:
                qlr.update(prof)
                if prof.get("kernel_us"):
                    qlr["kernel_gbps"] = (case["weight_bytes"] /
                                          prof["kernel_us"] / 1e3)
        row["qlr"] = qlr
        if use_torch and not budget.expired(reserve=5):
            try:
                fp16 = torch_fp16(case["K"], case["N"], m)
                row["torch_fp16"] = fp16
                row["speedup_vs_fp16"] = fp16["us"] / qlr["us"]
                if qlr.get("kernel_us"):
                    row["kernel_speedup_vs_fp16"] = fp16["us"] / qlr["kernel_us"]
            except Exception as error:
                row["torch_fp16"] = dict(error=f"{type(error).__name__}: "
                                         f"{error}"[:300])
        rows.append(row)
    del bufs
    backend.free()
    return rows


# -- the device -------------------------------------------------------------

def device_info(lib: Library) -> dict:
    info = dict(lib.device())
    try:
        import torch
        props = torch.cuda.get_device_properties(0)
        info["torch"] = dict(
            name=props.name, capability=f"{props.major}.{props.minor}",
            total_memory=props.total_memory,
            multiprocessors=props.multi_processor_count,
            l2_bytes=getattr(props, "L2_cache_size", None),
            memory_clock_khz=getattr(props, "memory_clock_rate", None),
            memory_bus_width=getattr(props, "memory_bus_width", None),
            torch_version=torch.__version__, cuda=torch.version.cuda)
        # A device-to-device copy of 2 GiB: bytes read + written / time.
        n = 1 << 29
        a = torch.empty(n, dtype=torch.float32, device="cuda").normal_()
        b = torch.empty_like(a)
        b.copy_(a)
        torch.cuda.synchronize()
        trials = []
        for _ in range(10):
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            b.copy_(a)
            end.record()
            end.synchronize()
            trials.append(start.elapsed_time(end) / 1e3)
        info["peak_gbps_measured_copy"] = 2 * 4 * n / statistics.median(trials) / 1e9
        del a, b
        torch.cuda.empty_cache()
    except Exception as error:
        info["torch_error"] = f"{type(error).__name__}: {error}"[:300]
    return info


# -- main -------------------------------------------------------------------

def select(cases: list, formats: str | None, shapes: str | None) -> list:
    if formats:
        keep = set(formats.split(","))
        cases = [c for c in cases if c["format"] in keep]
    if shapes:
        keep = set(shapes.split(","))
        cases = [c for c in cases if f"{c['K']}x{c['N']}" in keep]
    # Shape by shape, every format of a shape together: when the time box
    # ends early, the formats are still compared on the shapes that ran.
    order = [f"{k}x{n}" for k, n in kernel_cases.SHAPES]
    formats = list(kernel_cases.FORMATS)

    def rank(c):
        shape = f"{c['K']}x{c['N']}"
        return (order.index(shape) if shape in order else len(order),
                formats.index(c["format"]))
    return sorted(cases, key=rank)


def summarize(rows: list) -> list:
    """One line per row for the log (the report keeps everything)."""
    lines = []
    for r in rows:
        q = r.get("qlr", {})
        t = r.get("torch_fp16", {})
        v = r.get("validation", {})
        lines.append(
            f"{r['case']:<28} M={r['M']:<3} "
            f"qlr {q.get('us', float('nan')):9.1f} us "
            f"({q.get('gbps', float('nan')):7.1f} GB/s, "
            f"{q.get('pct_peak_measured_copy', float('nan')):5.1f}% copy-peak) "
            f"kernel {q.get('kernel_us', float('nan')):9.1f} us  "
            f"fp16 {t.get('us', float('nan')):8.1f} us  "
            f"x{r.get('speedup_vs_fp16', float('nan')):5.2f}  "
            f"err {v.get('rel_err', float('nan')):.1e} "
            f"{'ok' if v.get('ok') else 'FAIL'}"
            + (f"  ERROR {r['error'][:80]}" if r.get("error") else ""))
    return lines


def dry_run(args, report: Report) -> int:
    result = dict(dry_run=True)
    status = 0
    manifest_path = pathlib.Path(args.kernels) / "kernels.json"
    manifest = json.loads(manifest_path.read_text())
    lib = Library(pathlib.Path(args.kernels) / manifest["library"], cuda=True)
    ok, why = lib.available()
    result["cuda_available"] = ok
    result["cuda_unavailable_reason"] = why
    result["load_error"] = lib.take_error()
    resolved = 0
    fake = Backend(gpu=False)
    for case in manifest["cases"]:
        lib.function(case["symbol"], case["ciface_args"])
        # Descriptors over tiny placeholders: the layout is what is checked.
        bufs = dict(x=fake.xp.zeros((1, 1), fake.xp.float32),
                    copies=[{a["name"]: fake.xp.zeros((1, 1))
                             for a in case["arrays"]}] * case["copies"],
                    outs=[fake.xp.zeros((1, 1))] * case["copies"])
        for m in manifest["batches"]:
            assert len(descriptors(fake, case, bufs, m)) == case["ciface_args"]
        resolved += 1
    result["cuda_cases_resolved"] = resolved
    print(f"dry run: {resolved} CUDA cases resolved in {lib.path.name}; "
          f"CUDA available here: {ok} ({why})")
    if args.cpu_kernels:
        cpu_manifest = json.loads(
            (pathlib.Path(args.cpu_kernels) / "kernels.json").read_text())
        cpu = Library(pathlib.Path(args.cpu_kernels) / cpu_manifest["library"],
                      cuda=False)
        backend = Backend(gpu=False)
        budget = Budget(args.budget)
        rows = []
        for case in cpu_manifest["cases"]:
            rows += run_case(backend, cpu, case, manifest["batches"],
                             dict(peak_gbps_measured_copy=None), budget,
                             use_torch=False, profile=False,
                             seconds_per_timing=0.05)
        result["cpu_twin_rows"] = rows
        bad = [r["case"] for r in rows if not r.get("validation", {}).get("ok")]
        result["cpu_twin_failures"] = bad
        print("\n".join(summarize(rows)))
        print(f"dry run: CPU twin {len(rows) - len(bad)}/{len(rows)} "
              "validated against the float64 reference decoder")
        status = 1 if bad else 0
    report.set(args.key, result)
    return status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kernels", required=True,
                        help="directory of kernels.json and its library")
    parser.add_argument("--cpu-kernels",
                        help="--dry-run: the CPU twin's directory")
    parser.add_argument("--report", help="JSON report to update")
    parser.add_argument("--key", default="kernels")
    parser.add_argument("--budget", type=float, default=150.0,
                        help="seconds: no new case starts after this")
    parser.add_argument("--batches", default="1,16")
    parser.add_argument("--formats")
    parser.add_argument("--shapes", help="e.g. 4096x4096,8192x28672")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--seconds-per-timing", type=float, default=0.25)
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    report = Report(args.report)
    if args.dry_run:
        return dry_run(args, report)

    budget = Budget(args.budget)
    result = dict(started=time.strftime("%H:%M:%S"), rows=[], skipped=[])
    manifest = json.loads((pathlib.Path(args.kernels) / "kernels.json").read_text())
    lib = Library(pathlib.Path(args.kernels) / manifest["library"], cuda=True)
    ok, why = lib.available()
    result["load_error"] = lib.take_error()
    if not ok:
        result["error"] = f"no usable CUDA device for QLR's runtime: {why}"
        report.set(args.key, result)
        print(result["error"])
        return 1
    backend = Backend(gpu=True)
    device = device_info(lib)
    result["device"] = device
    result["method"] = (
        "us = median wall time of one call / copies (one stream, one sync per "
        "call, launch gaps included); kernel_us = CUPTI kernel time per "
        "layer; gbps = weight bytes (codes+scales+factors) / us; torch_fp16 = "
        "F.linear fp16 timed with CUDA events over rotating weight copies")
    report.set(args.key, result)
    batches = [int(b) for b in args.batches.split(",")]
    cases = select(manifest["cases"], args.formats, args.shapes)
    for case in cases:
        if budget.expired(reserve=10):
            result["skipped"].append(case["name"])
            continue
        try:
            rows = run_case(backend, lib, case, batches, device, budget,
                            use_torch=not args.no_torch,
                            profile=not args.no_profile,
                            seconds_per_timing=args.seconds_per_timing)
        except Exception as error:
            rows = [dict(case=case["name"], M=0,
                         error=traceback.format_exc()[-1500:])]
            print(f"{case['name']}: {type(error).__name__}: {error}")
            lib.take_error()
        result["rows"] += rows
        for line in summarize(rows):
            print(line, flush=True)
        report.set(args.key, result)
    failures = [r["case"] for r in result["rows"]
                if r.get("error") or not r.get("validation", {}).get("ok")]
    result["failures"] = sorted(set(failures))
    result["finished"] = time.strftime("%H:%M:%S")
    report.set(args.key, result)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
