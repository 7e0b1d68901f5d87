#!/usr/bin/env python3
"""Writes gpu-bundle/manifest.json for scripts/gpu-check.sh from what
scripts/gpu-prepare.sh left in its work directory: every case, its files,
the CPU reference numbers (qlr-run's JSON) and the git commit.

    python3 benchmarks/gpu/prepare_manifest.py --work build/gpu-prepare \\
        --bundle gpu-bundle --ctx 256 --max-windows 4 --tokens 32 \\
        --prompt "Once upon a time"
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pathlib
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]

# Relative tolerance of the GPU's perplexity against the CPU's, by weights.
PPL_TOLERANCE = {"f32": 1e-3, "quantized": 2e-3}


def git(*args: str) -> str:
    try:
        return subprocess.run(["git", "-C", str(ROOT), *args],
                              capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def sha256(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", required=True)
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--ctx", type=int, required=True)
    parser.add_argument("--max-windows", type=int, required=True)
    parser.add_argument("--tokens", type=int, required=True)
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--chip", default="sm_90")
    args = parser.parse_args()
    work = pathlib.Path(args.work)
    bundle = pathlib.Path(args.bundle)
    text = bundle / "data" / "ppl-slice.txt"

    models = []
    for spec_path in sorted((work / "refs").glob("*.spec.json")):
        spec = json.loads(spec_path.read_text())
        name = spec["name"]
        ppl = json.loads((work / "refs" / f"{name}.ppl.json").read_text())
        gen = json.loads((work / "refs" / f"{name}.gen.json").read_text())
        reference = dict(ppl=ppl["ppl"], nll=ppl["nll"], tokens=ppl["tokens"],
                         windows=ppl["windows"], greedy_tokens=gen["tokens"],
                         greedy_text=gen.get("text"), simd=ppl.get("simd"),
                         target_cpu=ppl.get("target_cpu"),
                         tool="qlr-run (CPU JIT) on " + spec["module"])
        for binary in spec["binaries"]:
            library = f"models/{name}.{binary}.so"
            if not (bundle / library).exists():
                sys.exit(f"prepare_manifest.py: {bundle / library} is missing")
            models.append(dict(
                name=name, model=spec["model"], weights=spec["weights"],
                how=spec["how"], binary=binary, library=library,
                bytes=(bundle / library).stat().st_size,
                ppl_tolerance=PPL_TOLERANCE[
                    "f32" if spec["weights"] == "f32" else "quantized"],
                reference=reference))

    e2e = []
    for spec_path in sorted((work / "e2e").glob("*.spec.json")):
        spec = json.loads(spec_path.read_text())
        library = f"e2e/{spec['name']}.so"
        if (bundle / library).exists():
            e2e.append(dict(spec, library=library,
                            bytes=(bundle / library).stat().st_size))

    kernels = bundle / "kernels" / "kernels.json"
    manifest = dict(
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        git_commit=git("rev-parse", "HEAD"),
        git_dirty=bool(git("status", "--porcelain", "--untracked-files=no")),
        chip=args.chip,
        correctness=dict(text="data/ppl-slice.txt", text_sha256=sha256(text),
                         text_bytes=text.stat().st_size, ctx=args.ctx,
                         max_windows=args.max_windows, prompt=args.prompt,
                         tokens=args.tokens,
                         tolerances=dict(ppl_relative=PPL_TOLERANCE,
                                         greedy_tokens="equal")),
        models=models,
        kernels=dict(manifest="kernels/kernels.json",
                     cases=len(json.loads(kernels.read_text())["cases"])
                     if kernels.exists() else 0),
        e2e=e2e,
        e2e_note=("sidecar weights are not in the bundle: the GPU run sets "
                  "QLR_WEIGHTS_FILL=<byte> so the runtime fills device "
                  "weight memory instead of reading them"),
    )
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"prepare_manifest.py: {len(models)} model libraries, "
          f"{manifest['kernels']['cases']} kernel cases, {len(e2e)} end-to-end "
          f"libraries; commit {manifest['git_commit'][:12]}"
          f"{' (dirty tree)' if manifest['git_dirty'] else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
