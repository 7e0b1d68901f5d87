"""qlr-batch: the batched function equals the function applied to each
element of the batch.

`qlr-batch{function=F size=B arguments=I,J}` adds @F_batched, whose
arguments I, J (default: every tensor argument) and results carry a new
leading dimension of B elements (size=0: dynamic), with
F_batched(x)[b] = F(x[b]) and the other arguments shared.

The graphs are test_differentiate.py's random ones (every building block:
generics with broadcasts, reductions, gathers, softmax and attention,
reshapes, slices and inserts, RoPE, qlr.linear with float and int4 weights,
the qlr norms); a random subset of the arguments is batched, and every batch
element of @f_batched is checked against @f run alone on it (compiled by the
same JIT, so the tolerances are tight).
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import test_differentiate as td  # noqa: E402

qc = td.qc


needs_pass = pytest.mark.skipif(not td.pass_registered("qlr-batch", "function=f size=2"),
                                reason="qlr-batch is not registered in this build")

TOLERANCE = {np.float64: 1e-12, np.float32: 2e-5}


def check_batched(graph: td.Graph, seed: int, context: str) -> None:
    rng = random.Random(seed)
    np_rng = np.random.default_rng(seed)
    count = len(graph.args)
    batched = sorted(rng.sample(range(count), rng.randint(1, count)))
    size = rng.choice([1, 2, 3])
    dynamic = rng.random() < 0.5
    options = f"function=f size={0 if dynamic else size} " \
              f"arguments={','.join(map(str, batched))}"
    m = qc.Module.parse(graph.text, name=f"{context}.mlir")
    m.run_pipeline(f"builtin.module(qlr-batch{{{options}}})")
    assert m.functions == ["f", "f_batched"]
    f = qc.jit(m, "f", **td.FAST)
    fb = qc.jit(m, "f_batched", **td.FAST)

    # Element 0 is the graph's own sample; the others are new draws.
    elements = [list(graph.args)]
    for _ in range(size - 1):
        elements.append([np_rng.standard_normal(a.shape).astype(a.dtype)
                         if i in batched else a for i, a in enumerate(graph.args)])
    args = [np.stack([e[i] for e in elements]) if i in batched else graph.args[i]
            for i in range(count)]
    outputs = td.as_tuple(fb(*args))
    tol = TOLERANCE[graph.dtype]
    for b, element in enumerate(elements):
        expected = td.as_tuple(f(*element))
        assert len(outputs) == len(expected)
        for y, e in zip(outputs, expected):
            assert y.shape == (size,) + e.shape, (y.shape, e.shape)
            np.testing.assert_allclose(
                y[b], e, rtol=tol, atol=tol * max(1.0, float(np.abs(e).max())),
                err_msg=f"{context}, {options}, element {b}: {graph.blocks}")


@needs_pass
@pytest.mark.parametrize("seed", td.SEEDS)
def test_random_batched(seed: int) -> None:
    check_batched(td.random_graph(seed), seed, f"random{seed}")


@needs_pass
@pytest.mark.parametrize("block", td.F64_BLOCKS + td.F32_BLOCKS)
def test_block_batched(block: str) -> None:
    check_batched(td.block_graph(block, 1), 7, block)


@needs_pass
def test_shared_argument_is_broadcast_and_results_all_batched() -> None:
    """A result that depends only on a shared argument is broadcast."""
    text = """
func.func @f(%x: tensor<3xf32>, %w: tensor<3xf32>) -> (tensor<3xf32>, tensor<3xf32>) {
  %s = arith.addf %x, %w : tensor<3xf32>
  %t = arith.mulf %w, %w : tensor<3xf32>
  return %s, %t : tensor<3xf32>, tensor<3xf32>
}
"""
    m = qc.Module.parse(text)
    m.run_pipeline("builtin.module(qlr-batch{function=f size=2 arguments=0})")
    x = np.array([[1, 2, 3], [4, 5, 6]], np.float32)
    w = np.array([0.5, -1, 2], np.float32)
    s, t = qc.jit(m, "f_batched")(x, w)
    np.testing.assert_array_equal(s, x + w)
    np.testing.assert_array_equal(t, np.stack([w * w, w * w]))
