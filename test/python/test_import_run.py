"""End to end: synthetic checkpoints in every format -> qlr-import -> qlr-run,
checked against the numpy reference (qlr_reference.llama), which shares no
code with QLR.

What is compared: the prefill logits of a prompt (--dump-logits), greedy
generation (which exercises the KV cache one token at a time), perplexity on
full windows, and tokenization. Tolerances are for float32 execution against
a float64 reference (see float32_tolerance).
"""

import json
import os
import pathlib
import subprocess

import numpy as np
import pytest

from qlr_reference import checkpoints as ck
from qlr_reference import llama

GQA = llama.LlamaConfig(dim=64, hidden_dim=96, n_layers=2, n_heads=8,
                        n_kv_heads=2, vocab_size=330, seq_len=48, tied=True)
MHA_UNTIED = llama.LlamaConfig(dim=32, hidden_dim=80, n_layers=3, n_heads=4,
                               n_kv_heads=4, vocab_size=330, seq_len=32,
                               tied=False)
PROMPT = [1, 260, 300, 17, 42, 270, 5, 301]
TEXT = ("Once upon a time, there was a little cat. The cat liked to play in "
        "the sun.\nOne day it saw a big dog and ran away!\n") * 3


@pytest.fixture(scope="session")
def tools(quant_opt):
    bin_dir = pathlib.Path(quant_opt).parent
    found = {name: bin_dir / name for name in ("qlr-import", "qlr-run")}
    for name, path in found.items():
        if not path.exists():
            pytest.skip(f"{name} is not built at {path}")
    return {k: str(v) for k, v in found.items()}


def run(args, expect_ok=True):
    result = subprocess.run([str(a) for a in args], capture_output=True,
                            text=True, check=False)
    if expect_ok:
        assert result.returncode == 0, result.stderr
    return result


def write_tokenizer(path):
    pieces, scores = ck.build_test_vocab()
    ck.write_llama2c_tokenizer(path, pieces, scores)
    return pieces, scores


def import_and_generate(tools, tmp_path, model_path, extra=(), n=6):
    out = tmp_path / "model.mlirbc"
    run([tools["qlr-import"], model_path, "-o", out, *extra])
    logits_path = tmp_path / "logits.bin"
    result = run([tools["qlr-run"], out, "--prompt-ids",
                  ",".join(map(str, PROMPT)), "-n", n, "--json", "--quiet",
                  "--dump-logits", logits_path])
    return out, json.loads(result.stdout), np.fromfile(logits_path, np.float32)


def float32_tolerance(config, tokens):
    """How far float32 logits of `tokens` positions may be from the float64
    reference, relative to the largest logit, whatever order the float32
    code sums in: a dot product of length k is off by at most k * 2^-24 *
    sum |a_i b_i|, and the errors add along the chain of dot products a
    logit depends on (per layer: dim for q, k, v + head_dim for the scores +
    tokens for the softmax-weighted values + dim for wo + dim for w1, w3 +
    hidden_dim for w2; dim for the classifier). Times 2: sum |a_i b_i| is
    about the largest logit for these random weights. GQA, 8 tokens: 8e-5,
    2e-3 absolute for logits up to 24; measured differences are < 7e-6."""
    head_dim = config.dim // config.n_heads
    chain = config.n_layers * (3 * config.dim + head_dim + tokens
                               + config.hidden_dim) + config.dim
    return 2 * chain * 2.0 ** -24


def check_against_reference(weights, config, generated, logits, n=6):
    reference = llama.forward(weights, config, PROMPT)
    tolerance = float32_tolerance(config, len(PROMPT)) * np.abs(reference).max()
    np.testing.assert_allclose(logits.reshape(reference.shape), reference,
                               rtol=0, atol=tolerance)
    # Greedy tokens: each is the reference's argmax after the same prefix,
    # wherever the top two logits are further apart than the float32 logits
    # may be off (a near-tie may go either way).
    assert len(generated["tokens"]) == n
    seq = list(PROMPT)
    decided = 0
    for token in generated["tokens"]:
        row = llama.forward(weights, config, seq)[-1]
        second, first = np.sort(row)[-2:]
        if first - second > 2 * float32_tolerance(config, len(seq)) * np.abs(row).max():
            assert token == int(np.argmax(row)), (seq, token)
            decided += 1
        seq.append(token)
    assert decided >= n - 1


@pytest.mark.parametrize("config", [GQA, MHA_UNTIED], ids=["gqa-tied", "mha-untied"])
def test_llama2c(tools, tmp_path, config):
    weights = ck.write_llama2c(tmp_path / "m.bin", config, ck.random_weights(config, 3))
    write_tokenizer(tmp_path / "tok.bin")
    _, generated, logits = import_and_generate(
        tools, tmp_path, tmp_path / "m.bin", ["--tokenizer", tmp_path / "tok.bin"])
    check_against_reference(weights, config, generated, logits)


@pytest.mark.parametrize("dtype,shards", [("F32", 1), ("F16", 2), ("BF16", 1)])
def test_safetensors(tools, tmp_path, dtype, shards):
    config = GQA
    model_dir = tmp_path / "hf"
    weights = ck.write_safetensors_dir(model_dir, config, ck.random_weights(config, 5),
                                       dtype=dtype, shards=shards)
    write_tokenizer(tmp_path / "tok.bin")
    _, generated, logits = import_and_generate(
        tools, tmp_path, model_dir, ["--tokenizer", tmp_path / "tok.bin"])
    check_against_reference(weights, config, generated, logits)


@pytest.mark.parametrize("tensor_type", ["F32", "F16", "Q8_0", "Q4_0", "Q4_1"])
def test_gguf(tools, tmp_path, tensor_type):
    config = llama.LlamaConfig(dim=64, hidden_dim=128, n_layers=2, n_heads=4,
                               n_kv_heads=2, vocab_size=330, seq_len=48, tied=False)
    pieces, scores = ck.build_test_vocab()
    weights = ck.write_gguf(tmp_path / "m.gguf", config, ck.random_weights(config, 7),
                            tensor_type=tensor_type,
                            tokenizer=ck.gguf_tokenizer(pieces, scores))
    _, generated, logits = import_and_generate(tools, tmp_path, tmp_path / "m.gguf")
    check_against_reference(weights, config, generated, logits)


def test_perplexity_and_tokenization(tools, tmp_path):
    config = GQA
    weights = ck.write_llama2c(tmp_path / "m.bin", config, ck.random_weights(config, 11))
    pieces, scores = write_tokenizer(tmp_path / "tok.bin")
    model = tmp_path / "m.mlirbc"
    run([tools["qlr-import"], tmp_path / "m.bin", "--tokenizer", tmp_path / "tok.bin",
         "-o", model])
    text = tmp_path / "text.txt"
    text.write_text(TEXT)

    ids = json.loads(run([tools["qlr-run"], model, "--tokenize", text, "--quiet"]).stdout)
    assert ids == ck.encode_llama2c(pieces, scores, TEXT, bos=False)

    ctx = 16
    result = json.loads(run([tools["qlr-run"], model, "--perplexity", text,
                             "--ctx", ctx, "--json", "--quiet"]).stdout)
    full = len(ids) // (ctx - 1) * (ctx - 1)
    reference = llama.perplexity(weights, config, ids[:full], ctx)
    assert result["tokens"] == reference.n_tokens
    assert result["windows"] == reference.n_windows
    # Each token's NLL moves by at most 2 max |delta logit| and ppl =
    # exp(mean NLL) by that relative: 2 * float32_tolerance * max |logit|
    # (5e-3 here; measured 1e-7). A wrong window or token count is off by
    # far more.
    largest = max(np.abs(llama.forward(weights, config, window)).max()
                  for window in llama.perplexity_windows(ids[:full], ctx))
    rel = 2 * float32_tolerance(config, ctx) * largest
    assert result["ppl"] == pytest.approx(reference.ppl, rel=rel)
    # The JIT compile is timed apart from the evaluation.
    assert 0 < result["compile_seconds"] and 0 < result["seconds"]


def test_truncated_checkpoint_leaves_no_output(tools, tmp_path):
    config = GQA
    ck.write_llama2c(tmp_path / "m.bin", config, ck.random_weights(config, 1))
    data = (tmp_path / "m.bin").read_bytes()
    (tmp_path / "cut.bin").write_bytes(data[: len(data) // 2])
    out = tmp_path / "out.mlirbc"
    result = run([tools["qlr-import"], tmp_path / "cut.bin", "-o", out], expect_ok=False)
    assert result.returncode == 1
    assert "cut.bin" in result.stderr
    assert not out.exists()


def test_run_rejects_bad_inputs(tools, tmp_path):
    result = run([tools["qlr-run"], tmp_path / "missing.mlirbc", "--prompt", "x"],
                 expect_ok=False)
    assert result.returncode == 1 and "missing.mlirbc" in result.stderr
    config = GQA
    ck.write_llama2c(tmp_path / "m.bin", config, ck.random_weights(config, 1))
    model = tmp_path / "m.mlirbc"
    run([tools["qlr-import"], tmp_path / "m.bin", "-o", model])
    # A llama2.c file has no tokenizer: text prompts need --tokenizer.
    result = run([tools["qlr-run"], model, "--prompt", "x"], expect_ok=False)
    assert result.returncode == 1 and "--tokenizer" in result.stderr
    result = run([tools["qlr-run"], model, "--prompt-ids", "1,99999"], expect_ok=False)
    assert result.returncode == 1 and "99999" in result.stderr
    result = run([tools["qlr-run"], model, "--prompt-ids", "1", "-O4"], expect_ok=False)
    assert result.returncode == 1 and "-O4: the optimisation level must be 0-3" in result.stderr


STORIES = pathlib.Path(os.environ.get("QLR_SHARED", pathlib.Path(__file__).resolve().parents[3] / "shared"))


@pytest.mark.skipif(not (STORIES / "models" / "stories260K.bin").exists(),
                    reason="the real stories260K model is not available (../shared/models)")
def test_stories260k_matches_reference(tools, tmp_path):
    models = STORIES / "models"
    model = tmp_path / "stories.mlirbc"
    run([tools["qlr-import"], models / "stories260K.bin", "--tokenizer",
         models / "tok512.bin", "-o", model])
    config, weights = ck.read_llama2c(models / "stories260K.bin")
    result = json.loads(run([tools["qlr-run"], model, "--prompt-ids", "1", "-n", 48,
                             "--json", "--quiet"]).stdout)
    assert result["tokens"] == llama.greedy_generate(weights, config, [1], 48,
                                                     stop_ids=(1, 2))[:len(result["tokens"])]
    assert result["text"].startswith("Once upon a time")
