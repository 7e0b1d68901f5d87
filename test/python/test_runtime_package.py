"""The `qlr` Python package (python/qlr): a qlr-compile library driven through
its C interface with ctypes, checked against qlr-run on the same model.

The package is imported from the source tree (python/ is put first on
sys.path below), so no `pip install ./python` is needed to run these tests.
The synthetic model is compiled twice per module: once with its weights
inside the library, once with a sidecar weights file in another directory.
"""

import ctypes
import json
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "python"))

import qlr  # noqa: E402  (after the sys.path insertion)

# qlr-import --synthetic's configuration (tools/qlr-import/qlr-import.cpp).
SYNTHETIC = dict(vocab_size=512, context_length=256, layers=2, dim=64,
                 hidden_dim=172, heads=8, kv_heads=4, head_dim=8)
PROMPT = "Once upon a time"
PROMPT_IDS = [1, 260, 300, 17, 42, 270, 5, 301]
FALLBACK_TEXT = ("Once upon a time, there was a little cat named Tom. Tom liked "
                 "to play in the sun with his red ball.\nOne day he saw a big "
                 "dog and ran away! The dog was sad. \"Come back,\" said the "
                 "dog, \"I want to play too.\"\n")


@pytest.fixture(scope="module")
def tools(quant_opt):
    bin_dir = pathlib.Path(quant_opt).parent
    found = {n: bin_dir / n for n in ("qlr-compile", "qlr-import", "qlr-run")}
    for name, path in found.items():
        if not path.exists():
            pytest.skip(f"{name} is not built at {path} (run scripts/test.sh)")
    return {k: str(v) for k, v in found.items()}


def run(args, expect_ok=True, **kwargs):
    result = subprocess.run([str(a) for a in args], capture_output=True,
                            text=True, check=False, **kwargs)
    if expect_ok:
        assert result.returncode == 0, result.stderr + result.stdout
    return result


@pytest.fixture(scope="module")
def built(tools, tmp_path_factory):
    """The synthetic model: .mlirbc, a library with its weights inside and a
    library with a sidecar weights file (in a directory of its own)."""
    base = tmp_path_factory.mktemp("qlr_package")
    mlirbc = base / "syn.mlirbc"
    run([tools["qlr-import"], "--synthetic", "-o", mlirbc])
    lib = base / "syn.so"
    run([tools["qlr-compile"], mlirbc, "-o", lib])
    sidecar_dir = base / "sidecar"
    sidecar_dir.mkdir()
    sidecar_lib = sidecar_dir / "syn2.so"
    run([tools["qlr-compile"], mlirbc, "-o", sidecar_lib,
         "--weights-file", "syn2.weights"])
    assert (sidecar_dir / "syn2.weights").exists()
    text_path = base / "text.txt"
    stories = pathlib.Path("/work/shared/data/tinystories-dev.txt")
    if stories.exists():
        with open(stories, "rb") as f:
            text_path.write_bytes(f.read(4000))
    else:
        text_path.write_text(FALLBACK_TEXT * 20)
    return dict(dir=base, mlirbc=mlirbc, lib=lib, sidecar_lib=sidecar_lib,
                weights=sidecar_dir / "syn2.weights", text=text_path)


@pytest.fixture(scope="module")
def model(built):
    with qlr.Model(built["lib"]) as m:
        yield m


def test_info(model, built, tools):
    info = model.info
    for field, value in SYNTHETIC.items():
        assert getattr(info, field) == value, field
        assert getattr(model, field) == value, field
    cfg = SYNTHETIC
    kv = cfg["kv_heads"] * cfg["head_dim"]
    per_layer = (2 * cfg["dim"] * cfg["dim"] + 2 * cfg["dim"] * kv
                 + 3 * cfg["dim"] * cfg["hidden_dim"] + 2 * cfg["dim"])
    # Tied embeddings: the classifier is the embedding table.
    assert model.parameters == (cfg["vocab_size"] * cfg["dim"]
                                + cfg["layers"] * per_layer + cfg["dim"])
    assert model.weight_bytes > 0
    assert model.bits_per_weight == pytest.approx(
        8 * model.weight_bytes / model.parameters, rel=1e-15)
    assert model.simd_level in ("portable", "avx2", "avx512")
    assert model.target_cpu
    assert model.threads in (0, 1)
    assert model.has_tokenizer is True
    assert model.bos == 1 and model.eos == 2 and model.adds_bos
    assert model.tokenizer_data()[:6] == b"QLRTOK"
    assert "syn.so" in repr(model)
    # What qlr-run reports for the same library.
    out = json.loads(run([tools["qlr-run"], built["lib"],
                          "--prompt-ids=1,2", "-n", "1", "--json",
                          "--quiet"]).stdout)
    assert out["simd"] == model.simd_level
    assert out["target_cpu"] == model.target_cpu
    # A CPU library runs on the CPU, and says so the same way in both.
    assert model.device == "cpu"
    assert out["device"] == "cpu"


def test_forward_matches_jit(model, built, tools):
    """The library's logits are the JIT's, bit for bit."""
    dump = built["dir"] / "jit_logits.bin"
    run([tools["qlr-run"], built["mlirbc"],
         "--prompt-ids=" + ",".join(map(str, PROMPT_IDS)), "-n", "0",
         "--dump-logits", dump, "--quiet"])
    expected = np.fromfile(dump, dtype=np.float32).reshape(len(PROMPT_IDS), -1)
    model.reset()
    logits = model.forward(PROMPT_IDS)
    assert logits.dtype == np.float32
    assert logits.shape == (len(PROMPT_IDS), model.vocab_size)
    assert logits.flags["C_CONTIGUOUS"]
    assert np.array_equal(logits, expected)
    assert model.position == len(PROMPT_IDS)
    # A numpy array of ids works too, and reset() reruns the same.
    model.reset(0)
    assert np.array_equal(model.forward(np.array(PROMPT_IDS, np.int64)),
                          expected)


def test_prefill_equals_decode(model):
    """Prefill of n tokens == n single-token decode steps.

    Not bit-identical: a prefill multiplies [n, dim] activations by the weights
    (matrix-matrix kernels) while a decode step runs a matrix-vector product,
    so the float32 dot products are summed in a different order (blocking,
    vector lanes). Measured differences are ~2e-6 on logits of magnitude ~4
    (a few ulps through 2 layers); 1e-5 relative to the largest logit is a
    margin of ~5x while still far below any real bug (a wrong position or
    cache row moves logits by O(1)).
    """
    ids = model.tokenize(FALLBACK_TEXT)[:100]
    model.reset()
    prefill = model.forward(ids)
    model.reset()
    steps = np.concatenate([model.forward([t]) for t in ids])
    assert model.position == len(ids)
    scale = float(np.abs(prefill).max())
    np.testing.assert_allclose(steps, prefill, rtol=0, atol=1e-5 * scale)
    # Mixed: a prefill continued by decode steps from the middle.
    model.reset(40)
    tail = np.concatenate([model.forward([t]) for t in ids[40:]])
    np.testing.assert_allclose(tail, prefill[40:], rtol=0, atol=1e-5 * scale)


def test_perplexity_matches_qlr_run(model, built, tools):
    text_bytes = built["text"].read_bytes()
    for extra, kwargs in ((["--ctx", "64"], dict(ctx=64)),
                          (["--ctx", "64", "--max-windows", "3"],
                           dict(ctx=64, max_windows=3)),
                          ([], {})):
        out = json.loads(run([tools["qlr-run"], built["lib"], "--perplexity",
                              built["text"], *extra, "--json",
                              "--quiet"]).stdout)
        got = model.perplexity(text_bytes, **kwargs)
        assert got["tokens"] == out["tokens"]
        assert got["windows"] == out["windows"]
        # Same float64 arithmetic in the same order: only exp/log ulps and
        # numpy's pairwise row sums may differ.
        assert got["ppl"] == pytest.approx(out["ppl"], rel=1e-12, abs=0)
        assert got["nll"] == pytest.approx(out["nll"], rel=1e-12, abs=0)
    # str and bytes give the same.
    assert model.perplexity(text_bytes.decode("utf-8"), ctx=64) == \
        model.perplexity(text_bytes, ctx=64)


def test_perplexity_errors(model):
    with pytest.raises(qlr.Error, match="ctx must be between 2"):
        model.perplexity(FALLBACK_TEXT, ctx=1)
    with pytest.raises(qlr.Error, match="ctx must be between 2"):
        model.perplexity(FALLBACK_TEXT, ctx=model.context_length + 1)
    with pytest.raises(qlr.Error, match="do not fill one window"):
        model.perplexity("short", ctx=64)


def test_generate_matches_qlr_run(model, built, tools):
    n = 24
    out = json.loads(run([tools["qlr-run"], built["lib"], "--prompt", PROMPT,
                          "-n", n, "--json", "--quiet"]).stdout)
    tokens = model.generate_tokens(PROMPT, n)
    assert tokens == out["tokens"]
    assert model.generate(PROMPT, n) == model.detokenize(tokens)
    assert model.position == out["prompt_tokens"] + len(tokens) - 1
    out = json.loads(run([tools["qlr-run"], built["lib"], "--prompt-ids=" +
                          ",".join(map(str, PROMPT_IDS)), "-n", 5, "--json",
                          "--quiet"]).stdout)
    assert model.generate_tokens(PROMPT_IDS, 5) == out["tokens"]
    assert model.generate(PROMPT, 0) == ""
    # Sampling: reproducible per seed, ids inside the vocabulary.
    a = model.generate_tokens(PROMPT, 12, temperature=1.0, seed=7)
    b = model.generate_tokens(PROMPT, 12, temperature=1.0, seed=7)
    assert a == b and all(0 <= t < model.vocab_size for t in a)
    # The context bounds the generation.
    long_prompt = [1] + [300] * (model.context_length - 3)
    assert len(model.generate_tokens(long_prompt, 50)) <= 2


def test_tokenize_round_trip(model, built, tools):
    for text in (PROMPT, FALLBACK_TEXT, "café – naïve 日本語", ""):
        ids = model.tokenize(text, add_bos=False)
        assert all(isinstance(t, int) for t in ids)
        assert model.detokenize(ids) == text
        assert model.tokenize(text) == [model.bos] + ids
        assert model.tokenize(text, add_bos=None) == [model.bos] + ids
        assert model.tokenize(text.encode("utf-8"), add_bos=False) == ids
    # The same ids as qlr-run --tokenize.
    expected = json.loads(run([tools["qlr-run"], built["lib"], "--tokenize",
                               built["text"], "--quiet"]).stdout)
    assert model.tokenize(built["text"].read_bytes(), add_bos=False) == expected
    # A split multi-byte character decodes with U+FFFD (or raises on request).
    # (The synthetic vocabulary spells "é" as byte tokens <0xC3> <0xA9>.)
    ids = model.tokenize("é", add_bos=False)
    head = model.detokenize_bytes(ids[:-1])
    assert head.endswith(b"\xc3")
    assert model.detokenize(ids[:-1]) == head[:-1].decode() + "\ufffd"
    with pytest.raises(UnicodeDecodeError):
        model.detokenize(ids[:-1], errors="strict")


def test_c_buffer_contract(model):
    """What the package's retry loops rely on: both functions report the size
    they need when the buffer is too small."""
    lib, handle = model._lib, model._model()
    text = FALLBACK_TEXT.encode()
    needed = lib.qlr_tokenize(handle, text, len(text), 1, None, 0)
    assert needed == len(model.tokenize(text))
    ids = np.array(model.tokenize(text), dtype=np.int32)
    small = ctypes.create_string_buffer(4)
    n = lib.qlr_detokenize(handle, ids.ctypes.data_as(
        ctypes.POINTER(ctypes.c_int32)), len(ids), small, 4)
    assert n == len(model.detokenize_bytes(ids)) and n >= 4
    assert small.raw[3:4] == b"\0"


def test_errors(model):
    model.reset()
    with pytest.raises(qlr.Error, match="token id 512 is outside the vocab"):
        model.forward([1, 512])
    with pytest.raises(qlr.Error, match="outside the vocabulary"):
        model.forward([-1])
    with pytest.raises(qlr.Error, match="outside the vocabulary"):
        model.forward([2**40])  # not silently wrapped to an int32
    with pytest.raises(qlr.Error, match="no tokens"):
        model.forward([])
    assert model.position == 0  # nothing ran
    model.forward([1] * (model.context_length - 2))
    with pytest.raises(qlr.Error, match="exceed the model's context of 256"):
        model.forward([1, 2, 3])
    assert model.position == model.context_length - 2
    model.forward([1, 2])  # exactly full
    with pytest.raises(qlr.Error, match="exceed the model's context"):
        model.forward([1])
    model.reset(10)
    with pytest.raises(qlr.Error, match="position 11 is outside 0..10"):
        model.reset(11)
    with pytest.raises(qlr.Error, match="outside 0..10"):
        model.reset(-1)
    assert model.position == 10
    with pytest.raises(qlr.Error, match="outside the vocabulary"):
        model.detokenize([model.vocab_size])
    with pytest.raises(TypeError):
        model.forward([1.5])
    model.reset()


def test_close(built):
    m = qlr.Model(built["lib"])
    m.close()
    assert m.closed
    m.close()  # twice is fine
    for call in (lambda: m.forward([1]), lambda: m.position,
                 lambda: m.reset(), lambda: m.tokenize("x")):
        with pytest.raises(qlr.Error, match="closed"):
            call()
    with qlr.Model(built["lib"]) as m2:
        assert m2.position == 0
    assert m2.closed


def test_sidecar_weights(model, built, tmp_path):
    # Both libraries in one process (RTLD_LOCAL): each finds its own files.
    with qlr.Model(built["sidecar_lib"]) as side:
        assert side.info == model.info
        model.reset()
        assert np.array_equal(side.forward(PROMPT_IDS),
                              model.forward(PROMPT_IDS))
    # An explicit weights path.
    moved = tmp_path / "elsewhere.weights"
    shutil.copy(built["weights"], moved)
    with qlr.Model(built["sidecar_lib"], weights=moved) as side:
        model.reset()
        assert np.array_equal(side.forward(PROMPT_IDS),
                              model.forward(PROMPT_IDS))
    # A missing sidecar: the library copied away from its weights file.
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(built["sidecar_lib"], alone / "syn2.so")
    with pytest.raises(qlr.Error, match="cannot open the weights file '.*"
                       "syn2.weights': No such file"):
        qlr.Model(alone / "syn2.so")
    with pytest.raises(qlr.Error, match="cannot open the weights file"):
        qlr.Model(built["sidecar_lib"], weights=tmp_path / "missing.weights")
    # A truncated one.
    truncated = tmp_path / "truncated.weights"
    data = built["weights"].read_bytes()
    truncated.write_bytes(data[:len(data) // 2])
    with pytest.raises(qlr.Error, match=r"holds \d+ bytes; the model needs "
                       r"\d+ \(a truncated or foreign weights file\)"):
        qlr.Model(built["sidecar_lib"], weights=truncated)


def shared_libraries(path):
    """{name: resolved path} from `ldd path`."""
    out = run(["ldd", path]).stdout
    libs = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] == "=>":
            libs[parts[0]] = parts[2]
        elif parts and parts[0].startswith("/"):
            libs[pathlib.Path(parts[0]).name] = parts[0]
    return libs


def test_not_a_model(built, tmp_path):
    libs = shared_libraries(built["lib"])
    libm = libs.get("libm.so.6")
    if libm and os.path.exists(libm):
        with pytest.raises(qlr.Error, match="is not a QLR model library"):
            qlr.Model(libm)
    with pytest.raises(qlr.Error, match="cannot load the library"):
        qlr.Model(built["mlirbc"])  # not ELF at all
    with pytest.raises(qlr.Error, match="no such file"):
        qlr.Model(tmp_path / "nothing.so")


def test_abi_mismatch(tmp_path):
    cc = shutil.which("cc")
    if not cc:
        pytest.skip("no C compiler to build a fake library")
    src = tmp_path / "fake.c"
    src.write_text("unsigned qlr_runtime_abi_version(void) { return VERSION; }\n")
    for version, pattern in ((2, "ABI version 2, but this qlr package "
                                 "supports version 1"),
                             (1, "without qlr_last_error")):
        lib = tmp_path / f"fake{version}.so"
        run([cc, "-shared", "-fPIC", f"-DVERSION={version}", src, "-o", lib])
        with pytest.raises(qlr.Error, match=pattern):
            qlr.Model(lib)


def test_truncated_library(built, tmp_path):
    """A truncated copy raises qlr.Error, never crashes: a bare dlopen() of
    it dies with SIGBUS, so this runs in a child process."""
    data = built["lib"].read_bytes()
    paths = []
    for size in (10, 100, 5000, len(data) // 2, len(data) - 64):
        path = tmp_path / f"truncated{size}.so"
        path.write_bytes(data[:size])
        paths.append(str(path))
    script = textwrap.dedent("""
        import sys, qlr
        for path in sys.argv[1:]:
            try:
                qlr.Model(path)
                print("LOADED", path)
            except qlr.Error as e:
                print("ERROR", e)
    """)
    env = dict(os.environ, PYTHONPATH=str(ROOT / "python"))
    result = run([sys.executable, "-c", script, *paths], env=env)
    lines = result.stdout.splitlines()
    assert len(lines) == len(paths), result.stdout + result.stderr
    assert all(line.startswith("ERROR") for line in lines), result.stdout
    assert sum("truncated or corrupt" in line for line in lines) >= 3


def test_without_llvm(built):
    """The library links no LLVM/MLIR, and the package loads and runs it in a
    fresh interpreter with no LD_LIBRARY_PATH; the process maps no LLVM/MLIR
    library either."""
    for name, path in shared_libraries(built["lib"]).items():
        assert not name.startswith(("libMLIR", "libLLVM", "libmlir")), path
        assert "llvm" not in path.lower() or "libomp" in name, path
    script = textwrap.dedent("""
        import json, sys, qlr
        m = qlr.Model(sys.argv[1])
        logits = m.forward(m.tokenize("Once upon a time"))
        maps = open("/proc/self/maps").read()
        print(json.dumps({"shape": list(logits.shape),
                          "text": m.generate("Once upon a time", 4),
                          "llvm": [l for l in maps.splitlines()
                                   if "libLLVM" in l or "libMLIR" in l]}))
    """)
    env = {k: v for k, v in os.environ.items()
           if k not in ("LD_LIBRARY_PATH", "LD_PRELOAD")}
    env["PYTHONPATH"] = str(ROOT / "python")
    out = json.loads(run([sys.executable, "-c", script, built["lib"]],
                         env=env, cwd="/").stdout)
    assert out["shape"][1] == SYNTHETIC["vocab_size"]
    assert out["llvm"] == []
