"""qlr-differentiate: reverse-mode gradients checked against finite differences.

`qlr-differentiate{function=F wrt=I,J name=G}` adds @G (default F_grad), which
takes F's arguments followed by one cotangent per floating-point tensor
result of F and returns the gradient of L = sum_r <dy_r, y_r> with respect to
the `wrt` arguments (default: every floating-point tensor argument), in the
order of `wrt`.

Most tests run random graphs. `GraphBuilder` draws, from a seed, a chain of
building blocks (elementwise and broadcasting generics, sum/max reductions,
softmax with and without a causal mask, attention with batched contractions,
transposes, matmuls, reshapes, slices, RoPE, qlr.linear with float and int4
weights, qlr.rms_norm, qlr.layer_norm), emits the MLIR text and mirrors every
op in float64 NumPy. `test_random_forward` checks the JIT against the mirror
(it needs no pass); `test_random_gradient` checks @f_grad against central
finite differences of @f, element by element and along a random direction.
Graphs without qlr ops are f64 (tight tolerances, and kinks such as max are
allowed); graphs with qlr ops are f32 and smooth. `test_block_gradient` runs
each building block alone. GELU uses math.erf where qc.jit can compile it
(else the tanh form).

Print a seed's module with `python test/python/test_differentiate.py SEED`, a
block's with `... BLOCK SEED`.
"""

from __future__ import annotations

import math
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "python"))

try:
    import qlr.compiler as qc  # noqa: E402
except ImportError as error:  # pragma: no cover - depends on the build
    pytest.skip(f"qlr.compiler is not built: {error}", allow_module_level=True)


def pass_registered(name: str, options: str) -> bool:
    """Whether this build registers pass `name` (run with `options` on an
    identity function @f; any other failure counts as registered, so that
    the tests report it)."""
    m = qc.Module.parse("func.func @f(%x: tensor<2xf64>) -> tensor<2xf64> {\n"
                        "  return %x : tensor<2xf64>\n}\n")
    try:
        m.run_pipeline(f"builtin.module({name}{{{options}}})")
    except qc.CompilerError as error:
        return "does not refer to a registered pass" not in str(error)
    return True


needs_pass = pytest.mark.skipif(not pass_registered("qlr-differentiate", "function=f"),
                                reason="qlr-differentiate is not registered in this build")


def _jit_lowers_erf() -> bool:
    """Whether qc.jit compiles math.erf (qlr-cpu-pipeline converts math to
    LLVM with convert-math-to-llvm only, which has no erf)."""
    text = """
func.func @f(%x: tensor<2xf32>) -> tensor<2xf32> {
  %e = tensor.empty() : tensor<2xf32>
  %y = linalg.generic {indexing_maps = [affine_map<(i) -> (i)>, affine_map<(i) -> (i)>],
                       iterator_types = ["parallel"]} ins(%x : tensor<2xf32>) outs(%e : tensor<2xf32>) {
  ^bb0(%a: f32, %o: f32):
    %r = math.erf %a : f32
    linalg.yield %r : f32
  } -> tensor<2xf32>
  return %y : tensor<2xf32>
}
"""
    try:
        qc.jit(qc.Module.parse(text), "f")
    except qc.CompilerError:
        return False
    return True


JIT_LOWERS_ERF = _jit_lowers_erf()

ROWS = "R"
"""The symbolic leading dimension of a random graph (dynamic or not)."""

FAST = dict(opt_level=0)
"""qc.jit options for the random graphs: LLVM -O0 compiles them about eight
times faster than the default -O2 (the closed-form tests use -O2)."""


def dense(a: np.ndarray) -> str:
    """An MLIR dense literal of `a` (exact: Python's repr round-trips)."""
    def body(x: np.ndarray) -> str:
        if x.ndim == 0:
            v = x.item()
            return repr(float(v)) if isinstance(v, float) else str(int(v))
        return "[" + ", ".join(body(y) for y in x) + "]"
    return f"dense<{body(np.asarray(a))}>"


def amap(rank: int, dims: Sequence[int]) -> str:
    """affine_map<(d0, ..) -> (d_i, ..)>."""
    loops = ", ".join(f"d{i}" for i in range(rank))
    return f"affine_map<({loops}) -> ({', '.join(f'd{i}' for i in dims)})>"


def pow2_at_most(limit: float) -> float:
    """The largest power of two <= limit, at most 1 (exact in f32 and f64)."""
    return 1.0 if limit >= 1 else 2.0 ** math.floor(math.log2(limit))


def erf(x: np.ndarray) -> np.ndarray:
    return np.vectorize(math.erf, otypes=[np.float64])(x)


def rope_tables(width: int) -> tuple:
    """cos and sin of RoPE's angles, [position % 8, pair]."""
    half = width // 2
    angles = np.arange(8)[:, None] * (100.0 ** (-np.arange(half) / half))[None, :]
    return np.cos(angles), np.sin(angles)


def causal(shape: Sequence[int]) -> np.ndarray:
    """True where column j > row i over the last two dims (masked)."""
    i = np.arange(shape[-2])[:, None]
    j = np.arange(shape[-1])[None, :]
    return np.broadcast_to(j > i, shape)


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# ---------------------------------------------------------------------------
# Random graphs
# ---------------------------------------------------------------------------


@dataclass(eq=False)
class Value:
    """An SSA tensor: its symbolic shape (ints and ROWS) and its value on
    the graph's sample arguments (float64)."""
    name: str
    shape: tuple
    sample: np.ndarray
    uses: int = 0


def evaluate(steps: Sequence[tuple], arg_values: Sequence[Value],
             args: Sequence[np.ndarray], results: Sequence[Value]) -> list:
    """The mirror: runs `steps` (value, fn, inputs) in float64 NumPy."""
    env = {id(v): np.asarray(a, np.float64) for v, a in zip(arg_values, args)}
    for out, fn, ins in steps:
        env[id(out)] = fn(*[env[id(v)] for v in ins])
    return [env[id(v)] for v in results]


@dataclass
class Graph:
    """A generated function @f and everything needed to run and check it."""
    text: str
    dtype: type
    args: list
    wrt: list
    blocks: list
    steps: list = field(repr=False)
    arg_values: list = field(repr=False)
    results: list = field(repr=False)

    def mirror(self, args: Sequence[np.ndarray]) -> list:
        """@f in float64 NumPy."""
        return evaluate(self.steps, self.arg_values, args, self.results)

    @property
    def pipeline(self) -> str:
        wrt = ",".join(str(i) for i in self.wrt)
        return f"builtin.module(qlr-differentiate{{function=f wrt={wrt}}})"


class GraphBuilder:
    """Draws a random function @f from `seed` (see the module docstring)."""

    def __init__(self, seed: int, f32: Optional[bool] = None, rows: Optional[int] = None,
                 dynamic: Optional[bool] = None):
        """The dtype (f32 or f64), the row count and whether it is dynamic
        are drawn unless given."""
        self.rng = random.Random(seed)
        self.np_rng = np.random.default_rng(seed)
        self.f32 = self.rng.random() < 0.4 if f32 is None else f32
        self.elem = "f32" if self.f32 else "f64"
        self.dtype = np.float32 if self.f32 else np.float64
        self.rows = self.rng.randint(3, 5) if rows is None else rows
        self.dynamic = self.rng.random() < 0.5 if dynamic is None else dynamic
        self.max_args = self.rng.randint(1, 3)
        self.counter = 0
        self.lines: list = []
        self.steps: list = []
        self.args: list = []
        self.arg_arrays: list = []
        self.pool: list = []
        self.blocks: list = []

    # -- text and values ----------------------------------------------------

    def fresh(self, hint: str = "v") -> str:
        self.counter += 1
        return f"%{hint}{self.counter}"

    def emit(self, line: str) -> None:
        self.lines.append("  " + line)

    def ty(self, shape: Sequence) -> str:
        dims = ["?" if d == ROWS and self.dynamic else str(self.rows if d == ROWS else d)
                for d in shape]
        return f"tensor<{'x'.join(dims + [self.elem])}>"

    def actual(self, shape: Sequence) -> tuple:
        return tuple(self.rows if d == ROWS else d for d in shape)

    def value(self, shape: Sequence, fn: Callable, ins: Sequence[Value]) -> Value:
        """A new SSA value computed (in the mirror) as fn(*ins)."""
        sample = fn(*[v.sample for v in ins])
        assert sample.shape == self.actual(shape), (sample.shape, shape)
        out = Value(self.fresh(), tuple(shape), sample)
        self.steps.append((out, fn, list(ins)))
        for v in ins:
            v.uses += 1
        return out

    def argument(self, shape: Sequence) -> Value:
        array = self.np_rng.standard_normal(self.actual(shape)).astype(self.dtype)
        v = Value(f"%a{len(self.args)}", tuple(shape), array.astype(np.float64))
        self.args.append(v)
        self.arg_arrays.append(array)
        return v

    def constant(self, array: np.ndarray) -> Value:
        array = np.asarray(array, self.dtype)
        v = self.value(array.shape, lambda: array.astype(np.float64), [])
        self.emit(f"{v.name} = arith.constant {dense(array)} : {self.ty(array.shape)}")
        return v

    def weight(self, shape: Sequence[int], fan_in: int) -> np.ndarray:
        return (self.np_rng.standard_normal(shape) / math.sqrt(fan_in)).astype(self.dtype)

    def operand(self, shape: Sequence, besides: Optional[Value] = None) -> Value:
        """An operand of `shape` to combine with `besides`: an unused pool
        value, a new argument while there is room, a constant (static
        shapes), another pool value, or a function of `besides` (never
        `besides` itself: x - x would make the rest of the graph constant)."""
        same = [v for v in self.pool if v.shape == tuple(shape) and v is not besides]
        unused = [v for v in same if v.uses == 0]
        if unused and self.rng.random() < 0.7:
            return self.rng.choice(unused)
        if len(self.args) < self.max_args and self.rng.random() < 0.7:
            return self.argument(shape)
        if ROWS not in shape:
            return self.constant(self.np_rng.standard_normal(shape))
        if same:
            return self.rng.choice(same)
        assert besides is not None
        return self.unary(besides)

    def pick(self, accept: Callable[[Value], bool]) -> Optional[Value]:
        """A pool value that `accept`s, preferring unused ones."""
        candidates = [v for v in self.pool if accept(v)]
        unused = [v for v in candidates if v.uses == 0]
        if unused and self.rng.random() < 0.9:
            return self.rng.choice(unused)
        return self.rng.choice(candidates) if candidates else None

    def empty(self, shape: Sequence) -> str:
        name = self.fresh("e")
        dyn = ", ".join("%rows" for d in shape if d == ROWS and self.dynamic)
        self.emit(f"{name} = tensor.empty({dyn}) : {self.ty(shape)}")
        return name

    def filled(self, shape: Sequence, literal: str) -> str:
        scalar = self.fresh("c")
        self.emit(f"{scalar} = arith.constant {literal} : {self.elem}")
        init = self.empty(shape)
        name = self.fresh("init")
        self.emit(f"{name} = linalg.fill ins({scalar} : {self.elem}) outs({init} : "
                  f"{self.ty(shape)}) -> {self.ty(shape)}")
        return name

    def neg_inf(self) -> str:
        return "0xFF800000" if self.f32 else "0xFFF0000000000000"

    def scalar(self, expr: str, ty: Optional[str] = None) -> str:
        """One op in a generic's body: `%n = expr : ty` (default: the
        element type)."""
        name = self.fresh("s")
        self.lines.append(f"    {name} = {expr} : {ty or self.elem}")
        return name

    def generic(self, shape: Sequence, ins: Sequence[Value], maps: Sequence[Sequence[int]],
                iterators: Sequence[str], body: Callable, fn: Callable,
                init: Optional[str] = None, reads: Sequence[Value] = ()) -> Value:
        """A linalg.generic over `iterators` loops; maps[k] are the loop dims
        indexing ins[k], the last one the output's. body(*block_args)
        emits the body with `scalar` and returns the yielded name; `reads`
        are the tensors it reads with tensor.extract (the mirror's
        fn(*ins, *reads) gets them too)."""
        init = init or self.empty(shape)
        out = self.value(shape, fn, [*ins, *reads])
        rank = len(iterators)
        block_args = [self.fresh("in") for _ in ins] + [self.fresh("out")]
        header = (f"{out.name} = linalg.generic {{indexing_maps = ["
                  + ", ".join(amap(rank, m) for m in maps) + "], iterator_types = ["
                  + ", ".join(f'"{it}"' for it in iterators) + "]}")
        if ins:
            header += (f" ins({', '.join(v.name for v in ins)} : "
                       f"{', '.join(self.ty(v.shape) for v in ins)})")
        self.emit(f"{header} outs({init} : {self.ty(shape)}) {{")
        self.lines.append(f"  ^bb0({', '.join(f'{a}: {self.elem}' for a in block_args)}):")
        self.lines.append(f"    linalg.yield {body(*block_args)} : {self.elem}")
        self.emit(f"}} -> {self.ty(shape)}")
        return out

    # -- generic building blocks (any rank) ---------------------------------

    def map_(self, x: Value, body: Callable, fn: Callable) -> Value:
        """An elementwise generic of one input."""
        rank = len(x.shape)
        return self.generic(x.shape, [x], [range(rank)] * 2, ["parallel"] * rank,
                            lambda a, _: body(a), fn)

    def op(self, name: str, *operands: str, ty: Optional[str] = None) -> str:
        """`%n = name operands : ty` in a generic's body (default: the
        element type)."""
        return self.scalar(f"{name} {', '.join(operands)}", ty)

    def const(self, v: float) -> str:
        return self.scalar(f"arith.constant {v!r}")

    def unary(self, x: Value) -> Value:
        """A random elementwise function of x (scaled to stay O(1))."""
        big = float(np.abs(x.sample).max()) + 1e-3
        op, const = self.op, self.const
        c_exp, c_square = pow2_at_most(1.0 / big), pow2_at_most(2.0 / big ** 2)

        def one_plus_square(a: str) -> str:
            return op("arith.addf", op("arith.mulf", a, a), const(1.0))

        def gelu(a: str) -> str:
            """x / 2 * (1 + erf(x / sqrt(2)))."""
            t = op("math.erf", op("arith.mulf", a, const(0.7071067811865476)))
            return op("arith.mulf", op("arith.mulf", a, const(0.5)), op("arith.addf", t, const(1.0)))

        def gelu_tanh(a: str) -> str:
            """x / 2 * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 x^3)))."""
            cube = op("arith.mulf", op("arith.mulf", a, a), a)
            inner = op("arith.addf", a, op("arith.mulf", cube, const(0.044715)))
            t = op("math.tanh", op("arith.mulf", inner, const(0.7978845608028654)))
            return op("arith.mulf", op("arith.mulf", a, const(0.5)), op("arith.addf", t, const(1.0)))

        def leaky(a: str) -> str:
            negative = self.scalar(f"arith.cmpf olt, {a}, {const(0.0)}")
            return op("arith.select", negative, op("arith.mulf", a, const(0.125)), a)

        kinds = {
            "exp": (lambda a: op("math.exp", op("arith.mulf", a, const(c_exp))),
                    lambda v: np.exp(c_exp * v)),
            "square": (lambda a: op("arith.mulf", op("arith.mulf", a, a), const(c_square)),
                       lambda v: c_square * v * v),
            "silu": (lambda a: op("arith.divf", a, op("arith.addf", const(1.0),
                                                      op("math.exp", op("arith.negf", a)))),
                     lambda v: v / (1 + np.exp(-v))),
            "gelu": (gelu, lambda v: 0.5 * v * (1 + erf(v * 0.7071067811865476)))
            if JIT_LOWERS_ERF else
            (gelu_tanh, lambda v: 0.5 * v * (1 + np.tanh(0.7978845608028654
                                                         * (v + 0.044715 * v ** 3)))),
            "tanh": (lambda a: op("math.tanh", a), np.tanh),
            "sin": (lambda a: op("math.sin", a), np.sin),
            "cos": (lambda a: op("math.cos", a), np.cos),
            "log1p_sq": (lambda a: op("math.log", one_plus_square(a)),
                         lambda v: np.log(1 + v * v)),
            "sqrt1p_sq": (lambda a: op("math.sqrt", one_plus_square(a)),
                          lambda v: np.sqrt(1 + v * v)),
            "rsqrt1p_sq": (lambda a: op("math.rsqrt", one_plus_square(a)),
                           lambda v: 1 / np.sqrt(1 + v * v)),
            "affine": (lambda a: op("arith.subf", const(0.25),
                                    op("arith.mulf", op("arith.negf", a), const(0.5))),
                       lambda v: 0.25 + 0.5 * v),
        }
        if not self.f32:  # kinks: only where finite differences are fine-grained
            kinds["max"] = (lambda a: op("arith.maximumf", a, op("arith.mulf", a, const(0.5))),
                            lambda v: np.maximum(v, 0.5 * v))
            kinds["leaky"] = (leaky, lambda v: np.where(v < 0, 0.125 * v, v))
        kind = self.rng.choice(sorted(kinds))
        self.blocks.append(kind)
        return self.map_(x, *kinds[kind])

    def combine(self, x: Value, y: Value, y_dims: Sequence[int]) -> Value:
        """A random binary generic of x and y, y broadcast through y_dims."""
        kinds = ["add", "sub", "mul", "div"] + ([] if self.f32 else ["max", "min", "select"])
        kind = self.rng.choice(kinds)
        self.blocks.append(f"{kind}{'' if len(y_dims) == len(x.shape) else '-bcast'}")
        op = self.op
        ops = {"add": "addf", "sub": "subf", "mul": "mulf", "max": "maximumf", "min": "minimumf"}
        numpy = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "max": np.maximum,
                 "min": np.minimum}
        rank = len(x.shape)
        expand = [slice(None) if d in y_dims else None for d in range(rank)]

        def body(a: str, b: str, _: str) -> str:
            if kind in ops:
                return op(f"arith.{ops[kind]}", a, b)
            if kind == "div":  # a / (1 + b * b)
                return op("arith.divf", a, op("arith.addf", self.const(1.0), op("arith.mulf", b, b)))
            less = self.scalar(f"arith.cmpf olt, {a}, {b}")  # select(a < b, a * b, a + b)
            return op("arith.select", less, op("arith.mulf", a, b), op("arith.addf", a, b))

        def fn(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            b = b[tuple(expand)]
            if kind in numpy:
                return numpy[kind](a, b)
            if kind == "div":
                return a / (1 + b * b)
            return np.where(a < b, a * b, a + b)

        return self.generic(x.shape, [x, y], [range(rank), y_dims, range(rank)],
                            ["parallel"] * rank, body, fn)

    def reduce(self, x: Value, kind: str, label: bool = True) -> Value:
        """sum / sum of squares / max over the last dim."""
        if label:
            self.blocks.append(f"reduce-{kind}")
        rank = len(x.shape)
        init = self.filled(x.shape[:-1], self.neg_inf() if kind == "max" else "0.0")
        acc_first = self.rng.random() < 0.5
        combine = "arith.maximumf" if kind == "max" else "arith.addf"

        def body(a: str, acc: str) -> str:
            if kind == "sumsq":
                a = self.op("arith.mulf", a, a)
            return self.op(combine, acc, a) if acc_first else self.op(combine, a, acc)

        fn = {"sum": lambda v: v.sum(-1), "sumsq": lambda v: (v * v).sum(-1),
              "max": lambda v: v.max(-1)}[kind]
        return self.generic(x.shape[:-1], [x], [range(rank), range(rank - 1)],
                            ["parallel"] * (rank - 1) + ["reduction"], body, fn, init)

    def softmax(self, x: Value, masked: bool) -> Value:
        """Softmax over the last dim as four generics (max, exp-sub, sum,
        div), after a causal mask (linalg.index, cmpi, select -inf)."""
        self.blocks.append("causal-softmax" if masked else "softmax")
        rank = len(x.shape)
        if masked:
            def mask(a: str, _: str) -> str:
                i = self.scalar(f"linalg.index {rank - 2}", "index")
                j = self.scalar(f"linalg.index {rank - 1}", "index")
                above = self.scalar(f"arith.cmpi ugt, {j}, {i}", "index")
                return self.op("arith.select", above,
                               self.scalar(f"arith.constant {self.neg_inf()}"), a)
            x = self.generic(x.shape, [x], [range(rank)] * 2, ["parallel"] * rank, mask,
                             lambda v: np.where(causal(v.shape), -np.inf, v))
        m = self.reduce(x, "max", label=False)
        par = ["parallel"] * rank
        e = self.generic(x.shape, [x, m], [range(rank), range(rank - 1), range(rank)], par,
                         lambda a, b, _: self.op("math.exp", self.op("arith.subf", a, b)),
                         lambda v, w: np.exp(v - w[..., None]))
        total = self.reduce(e, "sum", label=False)
        return self.generic(x.shape, [e, total], [range(rank), range(rank - 1), range(rank)], par,
                            lambda a, b, _: self.op("arith.divf", a, b),
                            lambda v, w: v / w[..., None])

    def transpose(self, x: Value, perm: Sequence[int]) -> Value:
        shape = tuple(x.shape[p] for p in perm)
        init = self.empty(shape)
        out = self.value(shape, lambda v: np.transpose(v, perm), [x])
        self.emit(f"{out.name} = linalg.transpose ins({x.name} : {self.ty(x.shape)}) "
                  f"outs({init} : {self.ty(shape)}) permutation = [{', '.join(map(str, perm))}]")
        return out

    def expand(self, x: Value, inner: Sequence[int]) -> Value:
        """[R, W] -> [R, *inner] with tensor.expand_shape."""
        shape = (ROWS, *inner)
        out = self.value(shape, lambda v: v.reshape(v.shape[0], *inner), [x])
        sizes = ["%rows" if self.dynamic else str(self.rows)] + [str(d) for d in inner]
        groups = ", ".join(str(d) for d in range(1, len(shape)))
        self.emit(f"{out.name} = tensor.expand_shape {x.name} [[0], [{groups}]] output_shape "
                  f"[{', '.join(sizes)}] : {self.ty(x.shape)} into {self.ty(shape)}")
        return out

    def collapse(self, x: Value) -> Value:
        """[R, a, b, ..] -> [R, a*b*..] with tensor.collapse_shape."""
        shape = (ROWS, int(np.prod(x.shape[1:])))
        out = self.value(shape, lambda v: v.reshape(v.shape[0], -1), [x])
        groups = ", ".join(str(d) for d in range(1, len(x.shape)))
        self.emit(f"{out.name} = tensor.collapse_shape {x.name} [[0], [{groups}]] : "
                  f"{self.ty(x.shape)} into {self.ty(shape)}")
        return out

    def contract(self, op: str, a: Value, b: Value, shape: Sequence, fn: Callable) -> Value:
        """linalg.matmul / linalg.batch_matmul into zeros."""
        init = self.filled(shape, "0.0")
        out = self.value(shape, fn, [a, b])
        self.emit(f"{out.name} = linalg.{op} ins({a.name}, {b.name} : {self.ty(a.shape)}, "
                  f"{self.ty(b.shape)}) outs({init} : {self.ty(shape)}) -> {self.ty(shape)}")
        return out

    # -- blocks on [R, W] matrices ------------------------------------------

    def is_matrix(self, v: Value, min_width: int = 1, even: bool = False) -> bool:
        return (len(v.shape) == 2 and v.shape[0] == ROWS and v.shape[1] >= min_width
                and (not even or v.shape[1] % 2 == 0))

    def block_unary(self) -> Optional[Value]:
        return self.unary(self.pick(self.is_matrix))

    def block_binary(self) -> Optional[Value]:
        """Same-shape operands: a generic, or arith on whole tensors."""
        x = self.pick(self.is_matrix)
        y = self.operand(x.shape, x)
        if self.rng.random() < 0.5:
            return self.combine(x, y, range(2))
        kind = self.rng.choice(["addf", "subf", "mulf", "negf"]
                               + (["divf"] if np.abs(y.sample).min() > 0.5 else []))
        self.blocks.append(f"tensor-{kind}")
        ty = self.ty(x.shape)
        if kind == "negf":  # x + (-y)
            neg = self.value(y.shape, np.negative, [y])
            self.emit(f"{neg.name} = arith.negf {y.name} : {ty}")
            kind, y = "addf", neg
        fn = {"addf": np.add, "subf": np.subtract, "mulf": np.multiply, "divf": np.divide}[kind]
        out = self.value(x.shape, fn, [x, y])
        self.emit(f"{out.name} = arith.{kind} {x.name}, {y.name} : {ty}")
        return out

    def block_broadcast(self) -> Optional[Value]:
        """[R, W] with a row vector [W] or a column vector [R], through
        broadcasting maps or linalg.broadcast."""
        x = self.pick(self.is_matrix)
        width = x.shape[1]
        column = self.pick(lambda v: v.shape == (ROWS,))
        if column is not None and self.rng.random() < 0.5:
            vector, dims, missing = column, (0,), 1
        else:
            vector, dims, missing = self.operand((width,)), (1,), 0
        if self.rng.random() < 0.6:
            return self.combine(x, vector, dims)
        self.blocks.append("linalg.broadcast")
        init = self.empty(x.shape)
        full = self.value(x.shape, lambda v: np.broadcast_to(np.expand_dims(v, missing),
                                                              self.actual(x.shape)), [vector])
        self.emit(f"{full.name} = linalg.broadcast ins({vector.name} : {self.ty(vector.shape)}) "
                  f"outs({init} : {self.ty(x.shape)}) dimensions = [{missing}]")
        out = self.value(x.shape, np.add, [x, full])
        self.emit(f"{out.name} = arith.addf {x.name}, {full.name} : {self.ty(x.shape)}")
        return out

    def block_reduce(self) -> Optional[Value]:
        kinds = ["sum", "sumsq"] + ([] if self.f32 else ["max"])
        return self.reduce(self.pick(self.is_matrix), self.rng.choice(kinds))

    def block_softmax(self) -> Optional[Value]:
        return self.softmax(self.pick(self.is_matrix), self.rng.random() < 0.5)

    def block_attention(self) -> Optional[Value]:
        """Multi-head attention of [R, W] q, k, v: expand to [R, H, D],
        scores by a 4-loop contraction generic or transposes and
        linalg.batch_matmul, a scale, a (causal) softmax, the value product
        likewise, collapse back to [R, W]."""
        q = self.pick(lambda v: self.is_matrix(v, 2, even=True))
        if q is None:
            return None
        width = q.shape[1]
        heads = self.rng.choice([h for h in (1, 2) if width % h == 0])
        dim = width // heads
        k, v = self.operand(q.shape, q), self.operand(q.shape, q)
        self.blocks.append(f"attention(h={heads})")
        qe, ke, ve = (self.expand(t, (heads, dim)) for t in (q, k, v))
        scores_shape = (heads, ROWS, ROWS)
        if self.rng.random() < 0.5:
            self.blocks.append("qk-generic")
            acc_first = self.rng.random() < 0.5

            def body(a: str, b: str, acc: str) -> str:
                p = self.scalar(f"arith.mulf {a}, {b}")
                return self.scalar(f"arith.addf {acc}, {p}" if acc_first else f"arith.addf {p}, {acc}")

            scores = self.generic(scores_shape, [qe, ke], [(1, 0, 3), (2, 0, 3), (0, 1, 2)],
                                  ["parallel"] * 3 + ["reduction"], body,
                                  lambda a, b: np.einsum("ihd,jhd->hij", a, b),
                                  self.filled(scores_shape, "0.0"))
        else:
            self.blocks.append("qk-batch_matmul")
            scores = self.contract("batch_matmul", self.transpose(qe, (1, 0, 2)),
                                   self.transpose(ke, (1, 2, 0)), scores_shape, np.matmul)
        c = pow2_at_most(1 / math.sqrt(dim))
        scaled = self.map_(scores, lambda a: self.op("arith.mulf", a, self.const(c)),
                           lambda s: c * s)
        probs = self.softmax(scaled, self.rng.random() < 0.7)
        if self.rng.random() < 0.5:
            self.blocks.append("pv-generic")

            def body(a: str, b: str, acc: str) -> str:
                return self.op("arith.addf", acc, self.op("arith.mulf", a, b))

            out = self.generic((ROWS, heads, dim), [probs, ve], [(1, 0, 3), (3, 1, 2), (0, 1, 2)],
                               ["parallel"] * 3 + ["reduction"], body,
                               lambda p, w: np.einsum("hij,jhd->ihd", p, w),
                               self.filled((ROWS, heads, dim), "0.0"))
        else:
            self.blocks.append("pv-batch_matmul")
            heads_first = self.contract("batch_matmul", probs, self.transpose(ve, (1, 0, 2)),
                                        (heads, ROWS, dim), np.matmul)
            out = self.transpose(heads_first, (1, 0, 2))
        return self.collapse(out)

    def block_transpose(self) -> Optional[Value]:
        """linalg.transpose to [W, R]: column sums (a [W] vector), or an
        elementwise function and back."""
        x = self.pick(self.is_matrix)
        t = self.transpose(x, (1, 0))
        if self.rng.random() < 0.5:
            self.blocks.append("transpose-colsum")
            return self.reduce(t, "sum")
        self.blocks.append("transpose")
        return self.transpose(self.unary(t), (1, 0))

    def block_matmul(self) -> Optional[Value]:
        x = self.pick(self.is_matrix)
        k, n = x.shape[1], self.rng.choice([4, 6, 8])
        w = (self.argument((k, n)) if len(self.args) < self.max_args and self.rng.random() < 0.4
             else self.constant(self.weight((k, n), k)))
        self.blocks.append("linalg.matmul")
        return self.contract("matmul", x, w, (ROWS, n), np.matmul)

    def block_reshape(self) -> Optional[Value]:
        """expand_shape to [R, 2, W/2], then a reduction (giving [R, 2]) or
        an elementwise function and collapse_shape back."""
        x = self.pick(lambda v: self.is_matrix(v, 4, even=True))
        if x is None:
            return None
        e = self.expand(x, (2, x.shape[1] // 2))
        if self.rng.random() < 0.5:
            self.blocks.append("expand-reduce")
            return self.reduce(e, "sum")
        self.blocks.append("expand-collapse")
        return self.collapse(self.unary(e))

    def slice_params(self, width: int) -> tuple:
        stride = self.rng.choice([1, 2]) if width >= 4 else 1
        size = self.rng.randint(2, (width - 1) // stride + 1)
        offset = self.rng.randint(0, width - 1 - (size - 1) * stride)
        return offset, size, stride

    def slice_text(self, offset: int, size: int, stride: int) -> str:
        rows = "%rows" if self.dynamic else str(self.rows)
        return f"[0, {offset}] [{rows}, {size}] [1, {stride}]"

    def block_slice(self) -> Optional[Value]:
        x = self.pick(lambda v: self.is_matrix(v, 3))
        return None if x is None else self.extract_slice(x)

    def extract_slice(self, x: Value) -> Value:
        offset, size, stride = self.slice_params(x.shape[1])
        self.blocks.append("extract_slice")
        out = self.value((ROWS, size), lambda v: v[:, offset:offset + size * stride:stride], [x])
        self.emit(f"{out.name} = tensor.extract_slice {x.name}{self.slice_text(offset, size, stride)}"
                  f" : {self.ty(x.shape)} to {self.ty(out.shape)}")
        return out

    def block_insert(self) -> Optional[Value]:
        """insert_slice of a narrower matrix (or of a function of a slice)
        into a wider one."""
        dest = self.pick(lambda v: self.is_matrix(v, 3))
        if dest is None:
            return None
        width = dest.shape[1]
        source = self.pick(lambda v: self.is_matrix(v) and v.shape[1] < width)
        if source is None:
            source = self.unary(self.extract_slice(self.pick(lambda v: self.is_matrix(v, 3))))
        size = source.shape[1]
        stride = self.rng.choice([s for s in (1, 2) if (size - 1) * s < width])
        offset = self.rng.randint(0, width - 1 - (size - 1) * stride)
        self.blocks.append("insert_slice")

        def fn(d: np.ndarray, s: np.ndarray) -> np.ndarray:
            d = d.copy()
            d[:, offset:offset + size * stride:stride] = s
            return d

        out = self.value(dest.shape, fn, [dest, source])
        self.emit(f"{out.name} = tensor.insert_slice {source.name} into {dest.name}"
                  f"{self.slice_text(offset, size, stride)} : {self.ty(source.shape)} into "
                  f"{self.ty(dest.shape)}")
        return out

    def block_rope(self) -> Optional[Value]:
        """RoPE on pairs (2i, 2i+1): y = x * cos + rot(x) * sin, where the
        body reads its own input at column j ^ 1 with tensor.extract and
        the angles from constant tables (position i % 8, pair j / 2)."""
        x = self.pick(lambda v: self.is_matrix(v, 2, even=True))
        if x is None:
            return None
        self.blocks.append("rope")
        cos, sin = (self.constant(table) for table in rope_tables(x.shape[1]))
        op = self.op

        def body(a: str, _: str) -> str:
            def index(name: str, *operands: str) -> str:
                return op(name, *operands, ty="index")

            def extract(table: Value, *indices: str) -> str:
                return self.scalar(f"tensor.extract {table.name}[{', '.join(indices)}]",
                                   self.ty(table.shape))

            i, j = index("linalg.index", "0"), index("linalg.index", "1")
            c0, c1 = index("arith.constant", "0"), index("arith.constant", "1")
            c2, c8 = index("arith.constant", "2"), index("arith.constant", "8")
            partner = extract(x, i, index("arith.xori", j, c1))
            pos, pair = index("arith.remui", i, c8), index("arith.divui", j, c2)
            odd = self.scalar(f"arith.cmpi ne, {index('arith.andi', j, c1)}, {c0}", "index")
            rot = op("arith.select", odd, partner, op("arith.negf", partner))
            return op("arith.addf", op("arith.mulf", a, extract(cos, pos, pair)),
                      op("arith.mulf", rot, extract(sin, pos, pair)))

        def fn(v: np.ndarray, c: np.ndarray, t: np.ndarray) -> np.ndarray:
            pos = np.arange(v.shape[0]) % 8
            c, t = np.repeat(c[pos], 2, axis=1), np.repeat(t[pos], 2, axis=1)
            rot = np.empty_like(v)
            rot[:, 0::2], rot[:, 1::2] = -v[:, 1::2], v[:, 0::2]
            return v * c + rot * t

        return self.generic(x.shape, [x], [range(2)] * 2, ["parallel"] * 2, body, fn,
                            reads=[cos, sin])

    def block_linear(self) -> Optional[Value]:
        """qlr.linear with a constant f32 weight, an optional bias
        (constant or argument)."""
        x = self.pick(self.is_matrix)
        k, n = x.shape[1], self.rng.choice([4, 6, 8])
        w = self.constant(self.weight((n, k), k))
        bias = self.rng.choice([None, None, "constant", "operand"])
        b = (None if bias is None else self.constant(self.weight((n,), 4)) if bias == "constant"
             else self.operand((n,)))
        self.blocks.append(f"qlr.linear{'' if b is None else '+bias'}")
        ins = [x, w] + ([b] if b else [])
        out = self.value((ROWS, n), lambda v, m, *c: v @ m.T + (c[0] if c else 0), ins)
        types = ", ".join(self.ty(v.shape) for v in ins)
        self.emit(f"{out.name} = qlr.linear {', '.join(v.name for v in ins)} : {types} -> "
                  f"{self.ty(out.shape)}")
        return out

    def block_quantized_linear(self) -> Optional[Value]:
        """qlr.linear with an int4 weight from qlr.pack (constant codes,
        f16 scales, zero points)."""
        x = self.pick(lambda v: self.is_matrix(v, 4, even=True))
        if x is None:
            return None
        k, n = x.shape[1], self.rng.choice([4, 6, 8])
        q = qc.quantize(self.weight((n, k), k), f"int4, group = {k // 2}, asymmetric, scale = f16")
        w_hat = q.dequantize().astype(np.float64)
        self.blocks.append("qlr.linear-int4")
        codes, scales, zps = self.fresh("codes"), self.fresh("scales"), self.fresh("zp")
        ct, st = f"tensor<{n}x{q.packed.shape[1]}xi8>", f"tensor<{n}x{q.scales.shape[1]}xf16>"
        zt = st.replace("f16", "i8")
        qt = f"!qlr.qtensor<{n}x{k}xf32, {q.format}>"
        self.emit(f"{codes} = arith.constant {dense(q.packed)} : {ct}")
        self.emit(f"{scales} = arith.constant {dense(q.scales)} : {st}")
        self.emit(f"{zps} = arith.constant {dense(q.zero_points.view(np.int8))} : {zt}")
        packed = self.fresh("w")
        self.emit(f"{packed} = qlr.pack {codes}, {scales}, {zps} : {ct}, {st}, {zt} -> {qt}")
        out = self.value((ROWS, n), lambda v: v @ w_hat.T, [x])
        self.emit(f"{out.name} = qlr.linear {x.name}, {packed} : {self.ty(x.shape)}, {qt} -> "
                  f"{self.ty(out.shape)}")
        return out

    def block_rms_norm(self) -> Optional[Value]:
        x = self.pick(lambda v: self.is_matrix(v, 4))
        if x is None:
            return None
        self.blocks.append("qlr.rms_norm")
        w = self.operand((x.shape[1],))
        out = self.value(x.shape, lambda v, g: v / np.sqrt((v * v).mean(-1, keepdims=True) + 1e-5) * g,
                         [x, w])
        self.emit(f"{out.name} = qlr.rms_norm {x.name}, {w.name} eps = 1.0e-5 : "
                  f"{self.ty(x.shape)}, {self.ty(w.shape)}")
        return out

    def block_layer_norm(self) -> Optional[Value]:
        x = self.pick(lambda v: self.is_matrix(v, 4))
        if x is None:
            return None
        self.blocks.append("qlr.layer_norm")
        w, b = self.operand((x.shape[1],)), self.operand((x.shape[1],))

        def fn(v: np.ndarray, g: np.ndarray, c: np.ndarray) -> np.ndarray:
            centred = v - v.mean(-1, keepdims=True)
            return centred / np.sqrt((centred ** 2).mean(-1, keepdims=True) + 1e-5) * g + c

        out = self.value(x.shape, fn, [x, w, b])
        self.emit(f"{out.name} = qlr.layer_norm {x.name}, {w.name}, {b.name} eps = 1.0e-5 : "
                  f"{self.ty(x.shape)}, {self.ty(w.shape)}, {self.ty(b.shape)}")
        return out

    # -- the function -------------------------------------------------------

    def build(self) -> Graph:
        blocks = {self.block_unary: 3, self.block_binary: 2, self.block_broadcast: 2,
                  self.block_reduce: 1, self.block_softmax: 1, self.block_attention: 1,
                  self.block_transpose: 1, self.block_matmul: 1, self.block_reshape: 1,
                  self.block_slice: 1, self.block_insert: 1, self.block_rope: 1}
        if self.f32:
            blocks.update({self.block_linear: 2, self.block_quantized_linear: 2,
                           self.block_rms_norm: 2, self.block_layer_norm: 2})
        self.pool.append(self.argument((ROWS, self.rng.choice([4, 6, 8]))))
        if self.max_args > 1 and self.rng.random() < 0.5:
            self.pool.append(self.argument((ROWS, self.rng.choice([4, 6, 8]))))
        produced, target = 0, self.rng.randint(3, 6)
        while True:
            block = self.rng.choices(list(blocks), weights=list(blocks.values()))[0]
            out = block()
            if out is None:
                continue
            self.pool.append(out)
            produced += 1
            if produced < target:
                continue
            results = [out]
            dead_ends = [v for v in self.pool
                         if v.uses == 0 and v is not out and v not in self.args]
            if dead_ends and self.rng.random() < 0.7:
                results.append(self.rng.choice(dead_ends))
            elif self.rng.random() < 0.25:
                results.append(self.pick(lambda v: v is not out))
            graph = self.graph(results)
            if graph is not None:
                return graph

    def graph(self, results: Sequence[Value]) -> Optional[Graph]:
        """@f returning `results`, differentiated with respect to a random
        non-empty subset of the arguments they depend on (None if they
        depend on none)."""
        live = [i for i in range(len(self.args)) if self.moves(results, i)]
        if not live:
            return None
        wrt = self.rng.sample(live, self.rng.randint(1, len(live)))
        return Graph(text=self.function_text(results), dtype=self.dtype,
                     args=self.arg_arrays, wrt=wrt, blocks=self.blocks,
                     steps=self.steps, arg_values=self.args, results=list(results))

    def moves(self, results: Sequence[Value], index: int) -> bool:
        """Whether the results change with argument `index` (some do not
        reach the results, or cancel out, as min(x + c, x) - x)."""
        args = [a.sample for a in self.args]
        base = evaluate(self.steps, self.args, args, results)
        args[index] = args[index] + 1e-3 * self.np_rng.standard_normal(args[index].shape)
        moved = evaluate(self.steps, self.args, args, results)
        return any(np.abs(m - b).max(initial=0.0) > 1e-9 for m, b in zip(moved, base))

    def function_text(self, results: Sequence[Value]) -> str:
        params = ", ".join(f"{a.name}: {self.ty(a.shape)}" for a in self.args)
        types = ", ".join(self.ty(v.shape) for v in results)
        prologue = []
        if self.dynamic:
            prologue = ["  %c0 = arith.constant 0 : index",
                        f"  %rows = tensor.dim %a0, %c0 : {self.ty(self.args[0].shape)}"]
        return "\n".join(
            [f"func.func @f({params}) -> ({types}) {{"] + prologue + self.lines
            + [f"  return {', '.join(v.name for v in results)} : {types}", "}", ""])


SEEDS = range(30)
F64_BLOCKS = ["unary", "binary", "broadcast", "reduce", "softmax", "attention", "transpose",
              "matmul", "reshape", "slice", "insert", "rope"]
F32_BLOCKS = ["linear", "quantized_linear", "rms_norm", "layer_norm"]


def random_graph(seed: int) -> Graph:
    return GraphBuilder(seed).build()


def block_graph(block: str, seed: int) -> Graph:
    """One building block on a [?, 8] argument (f32 for the qlr blocks),
    its variant drawn from `seed`."""
    builder = GraphBuilder(seed, f32=block in F32_BLOCKS, rows=4, dynamic=True)
    builder.max_args = 3
    builder.pool.append(builder.argument((ROWS, 8)))
    graph = builder.graph([getattr(builder, f"block_{block}")()])
    assert graph is not None
    return graph


# ---------------------------------------------------------------------------
# Checking gradients
# ---------------------------------------------------------------------------


def as_tuple(result) -> tuple:
    return result if isinstance(result, tuple) else (result,)


def is_float(a: np.ndarray) -> bool:
    return np.issubdtype(a.dtype, np.floating)


class VjpCheck:
    """@f and @f_grad compiled from `module`, with sample arguments and
    random cotangents."""

    def __init__(self, module, args: Sequence[np.ndarray], wrt: Sequence[int], seed: int = 0):
        self.f = qc.jit(module, "f", **FAST)
        self.grad = qc.jit(module, "f_grad", **FAST)
        self.args, self.wrt = list(args), list(wrt)
        self.rng = np.random.default_rng(seed)
        outputs = [y for y in as_tuple(self.f(*self.args)) if is_float(y)]
        self.cotangents = [self.rng.standard_normal(y.shape).astype(y.dtype) for y in outputs]

    def loss(self, args: Sequence[np.ndarray]) -> float:
        """L = sum_r <dy_r, y_r> in float64."""
        outputs = [y for y in as_tuple(self.f(*args)) if is_float(y)]
        return sum(float(np.vdot(dy.astype(np.float64), y.astype(np.float64)))
                   for dy, y in zip(self.cotangents, outputs))

    def gradients(self) -> tuple:
        grads = as_tuple(self.grad(*self.args, *self.cotangents))
        assert len(grads) == len(self.wrt)
        for g, i in zip(grads, self.wrt):
            assert g.shape == self.args[i].shape and g.dtype == self.args[i].dtype, \
                (i, g.shape, g.dtype, self.args[i].shape, self.args[i].dtype)
        return grads

    def perturbed(self, deltas: dict) -> tuple:
        """L(x + d) - L(x - d) and the perturbations actually applied (after
        rounding to the arguments' dtype)."""
        plus, minus = list(self.args), list(self.args)
        for i, d in deltas.items():
            plus[i] = (self.args[i] + d).astype(self.args[i].dtype)
            minus[i] = (self.args[i] - d).astype(self.args[i].dtype)
        applied = {i: plus[i].astype(np.float64) - minus[i].astype(np.float64) for i in deltas}
        return self.loss(plus) - self.loss(minus), applied

    def check(self, eps: float, rtol: float, atol: float, context: str = "") -> None:
        """Each gradient element against central differences, then
        sum_i <grad_i, v_i> along a random direction v; `context` goes into
        the failure messages."""
        grads = self.gradients()
        fd_grads = []
        for g, i in zip(grads, self.wrt):
            fd = np.zeros(g.shape)
            for index in np.ndindex(*g.shape):
                d = np.zeros(g.shape)
                d[index] = eps
                diff, applied = self.perturbed({i: d})
                fd[index] = diff / applied[i][index]
            fd_grads.append(fd)
        norm = math.sqrt(sum(float((fd ** 2).sum()) for fd in fd_grads))
        assert norm > 0, f"{context}: L does not depend on the wrt arguments"
        biggest = max((float(np.abs(fd).max(initial=0.0)) for fd in fd_grads), default=0.0)
        for g, fd, i in zip(grads, fd_grads, self.wrt):
            np.testing.assert_allclose(g, fd, rtol=rtol, atol=atol + rtol * biggest,
                                       err_msg=f"{context}: gradient of argument {i}")
        diff, applied = self.perturbed(
            {i: eps * self.rng.standard_normal(self.args[i].shape) for i in self.wrt})
        predicted = sum(float(np.vdot(g.astype(np.float64), applied[i]))
                        for g, i in zip(grads, self.wrt))
        fd, dd = diff / (2 * eps), predicted / (2 * eps)
        assert abs(dd - fd) <= rtol * (abs(fd) + norm) + atol, \
            f"{context}: directional derivative {dd} vs finite differences {fd}"


TOLERANCES = {np.float64: dict(eps=1e-6, rtol=1e-6, atol=1e-9),
              np.float32: dict(eps=1e-2, rtol=5e-3, atol=1e-4)}
"""With these, central differences of @f differ from the exact gradient (the
mirror's) by at most 2e-9 (f64) and 2e-4 (f32) of the largest element on
every seed: far inside rtol."""


def differentiate(text: str, pipeline: str, name: str = "x.mlir"):
    m = qc.Module.parse(text, name=name)
    m.run_pipeline(pipeline)
    return m


# ---------------------------------------------------------------------------
# Random graphs
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_random_forward(seed: int) -> None:
    """The generated @f compiles, is finite and matches its NumPy mirror."""
    graph = random_graph(seed)
    fn = qc.jit(qc.Module.parse(graph.text, name=f"random{seed}.mlir"), "f", **FAST)
    outputs = as_tuple(fn(*graph.args))
    expected = graph.mirror(graph.args)
    assert len(outputs) == len(expected)
    tol = 1e-9 if graph.dtype == np.float64 else 2e-4
    for y, e in zip(outputs, expected):
        assert y.dtype == graph.dtype and y.shape == e.shape
        assert np.isfinite(y).all()
        np.testing.assert_allclose(y, e, rtol=tol, atol=tol * max(1.0, float(np.abs(e).max())),
                                   err_msg=f"seed {seed}: {graph.blocks}")


@needs_pass
@pytest.mark.parametrize("seed", SEEDS)
def test_random_gradient(seed: int) -> None:
    """@f_grad of a random graph against finite differences of @f."""
    graph = random_graph(seed)
    m = differentiate(graph.text, graph.pipeline, f"random{seed}.mlir")
    assert m.functions == ["f", "f_grad"]
    VjpCheck(m, graph.args, graph.wrt, seed=seed).check(
        **TOLERANCES[graph.dtype], context=f"seed {seed}, wrt {graph.wrt}: {graph.blocks}")


@needs_pass
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("block", F64_BLOCKS + F32_BLOCKS)
def test_block_gradient(block: str, seed: int) -> None:
    """Each building block alone (failures here name the culprit of a
    random graph's)."""
    graph = block_graph(block, seed)
    m = differentiate(graph.text, graph.pipeline, f"{block}{seed}.mlir")
    VjpCheck(m, graph.args, graph.wrt, seed=seed).check(
        **TOLERANCES[graph.dtype], context=f"{block} {seed}, wrt {graph.wrt}: {graph.blocks}")


def test_generator_covers_every_block() -> None:
    """The seeds together draw every building block, both dtypes, static
    and dynamic rows, one and two results, and 1-3 arguments."""
    graphs = [random_graph(seed) for seed in SEEDS]
    drawn = {b for g in graphs for b in g.blocks}
    for block in ["exp", "tanh", "square", "silu", "gelu", "softmax", "causal-softmax",
                  "reduce-sum", "reduce-max", "qk-generic", "qk-batch_matmul", "pv-generic",
                  "pv-batch_matmul", "transpose", "transpose-colsum", "linalg.matmul",
                  "expand-reduce", "expand-collapse", "extract_slice", "insert_slice", "rope",
                  "linalg.broadcast", "tensor-addf", "qlr.linear", "qlr.linear+bias",
                  "qlr.linear-int4", "qlr.rms_norm", "qlr.layer_norm"]:
        assert block in drawn, block
    assert {g.dtype for g in graphs} == {np.float32, np.float64}
    assert {"?x" in g.text for g in graphs} == {True, False}
    assert {len(g.results) for g in graphs} == {1, 2}
    assert {len(g.args) for g in graphs} == {1, 2, 3}


# ---------------------------------------------------------------------------
# Closed forms
# ---------------------------------------------------------------------------

RNG = np.random.default_rng(29)


@needs_pass
def test_sum_of_squares_gradient_is_twice_x() -> None:
    text = """
func.func @f(%x: tensor<?x5xf64>) -> tensor<?xf64> {
  %c0 = arith.constant 0 : index
  %n = tensor.dim %x, %c0 : tensor<?x5xf64>
  %zero = arith.constant 0.0 : f64
  %e = tensor.empty(%n) : tensor<?xf64>
  %init = linalg.fill ins(%zero : f64) outs(%e : tensor<?xf64>) -> tensor<?xf64>
  %s = linalg.generic {indexing_maps = [affine_map<(i, j) -> (i, j)>, affine_map<(i, j) -> (i)>],
                       iterator_types = ["parallel", "reduction"]}
      ins(%x : tensor<?x5xf64>) outs(%init : tensor<?xf64>) {
  ^bb0(%in: f64, %acc: f64):
    %sq = arith.mulf %in, %in : f64
    %sum = arith.addf %acc, %sq : f64
    linalg.yield %sum : f64
  } -> tensor<?xf64>
  return %s : tensor<?xf64>
}
"""
    m = differentiate(text, "builtin.module(qlr-differentiate{function=f})")
    g = qc.jit(m, "f_grad")
    x = RNG.standard_normal((3, 5))
    np.testing.assert_allclose(g(x, np.ones(3)), 2 * x, rtol=1e-15)
    dy = RNG.standard_normal(3)
    np.testing.assert_allclose(g(x, dy), 2 * x * dy[:, None], rtol=1e-15)


@needs_pass
def test_matmul_gradients_in_wrt_order() -> None:
    text = """
func.func @f(%a: tensor<?x4xf64>, %b: tensor<4x3xf64>) -> tensor<?x3xf64> {
  %c0 = arith.constant 0 : index
  %n = tensor.dim %a, %c0 : tensor<?x4xf64>
  %zero = arith.constant 0.0 : f64
  %e = tensor.empty(%n) : tensor<?x3xf64>
  %init = linalg.fill ins(%zero : f64) outs(%e : tensor<?x3xf64>) -> tensor<?x3xf64>
  %y = linalg.matmul ins(%a, %b : tensor<?x4xf64>, tensor<4x3xf64>)
      outs(%init : tensor<?x3xf64>) -> tensor<?x3xf64>
  return %y : tensor<?x3xf64>
}
"""
    m = differentiate(text, "builtin.module(qlr-differentiate{function=f wrt=1,0})")
    a, b, dy = RNG.standard_normal((5, 4)), RNG.standard_normal((4, 3)), RNG.standard_normal((5, 3))
    gb, ga = qc.jit(m, "f_grad")(a, b, dy)
    np.testing.assert_allclose(ga, dy @ b.T, rtol=1e-12)
    np.testing.assert_allclose(gb, a.T @ dy, rtol=1e-12)


@needs_pass
def test_broadcast_add_and_softmax_gradients() -> None:
    """y = softmax(x + b) with b broadcast over rows: dx = s * (dy - <dy,
    s>), db = column sums of dx."""
    text = """
#id = affine_map<(i, j) -> (i, j)>
#row = affine_map<(i, j) -> (i)>
#col = affine_map<(i, j) -> (j)>
func.func @f(%x: tensor<3x6xf64>, %b: tensor<6xf64>) -> tensor<3x6xf64> {
  %e = tensor.empty() : tensor<3x6xf64>
  %z = tensor.empty() : tensor<3xf64>
  %ninf = arith.constant 0xFFF0000000000000 : f64
  %zero = arith.constant 0.0 : f64
  %t = linalg.generic {indexing_maps = [#id, #col, #id], iterator_types = ["parallel", "parallel"]}
      ins(%x, %b : tensor<3x6xf64>, tensor<6xf64>) outs(%e : tensor<3x6xf64>) {
  ^bb0(%a: f64, %c: f64, %o: f64):
    %s = arith.addf %a, %c : f64
    linalg.yield %s : f64
  } -> tensor<3x6xf64>
  %minit = linalg.fill ins(%ninf : f64) outs(%z : tensor<3xf64>) -> tensor<3xf64>
  %m = linalg.generic {indexing_maps = [#id, #row], iterator_types = ["parallel", "reduction"]}
      ins(%t : tensor<3x6xf64>) outs(%minit : tensor<3xf64>) {
  ^bb0(%a: f64, %o: f64):
    %s = arith.maximumf %a, %o : f64
    linalg.yield %s : f64
  } -> tensor<3xf64>
  %p = linalg.generic {indexing_maps = [#id, #row, #id], iterator_types = ["parallel", "parallel"]}
      ins(%t, %m : tensor<3x6xf64>, tensor<3xf64>) outs(%e : tensor<3x6xf64>) {
  ^bb0(%a: f64, %c: f64, %o: f64):
    %d = arith.subf %a, %c : f64
    %s = math.exp %d : f64
    linalg.yield %s : f64
  } -> tensor<3x6xf64>
  %sinit = linalg.fill ins(%zero : f64) outs(%z : tensor<3xf64>) -> tensor<3xf64>
  %sum = linalg.generic {indexing_maps = [#id, #row], iterator_types = ["parallel", "reduction"]}
      ins(%p : tensor<3x6xf64>) outs(%sinit : tensor<3xf64>) {
  ^bb0(%a: f64, %o: f64):
    %s = arith.addf %a, %o : f64
    linalg.yield %s : f64
  } -> tensor<3xf64>
  %y = linalg.generic {indexing_maps = [#id, #row, #id], iterator_types = ["parallel", "parallel"]}
      ins(%p, %sum : tensor<3x6xf64>, tensor<3xf64>) outs(%e : tensor<3x6xf64>) {
  ^bb0(%a: f64, %c: f64, %o: f64):
    %s = arith.divf %a, %c : f64
    linalg.yield %s : f64
  } -> tensor<3x6xf64>
  return %y : tensor<3x6xf64>
}
"""
    m = differentiate(text, "builtin.module(qlr-differentiate{function=f wrt=0,1})")
    x, b, dy = RNG.standard_normal((3, 6)), RNG.standard_normal(6), RNG.standard_normal((3, 6))
    s = softmax(x + b)
    np.testing.assert_allclose(qc.jit(m, "f")(x, b), s, rtol=1e-12)
    gx, gb = qc.jit(m, "f_grad")(x, b, dy)
    expected = s * (dy - (dy * s).sum(-1, keepdims=True))
    np.testing.assert_allclose(gx, expected, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(gb, expected.sum(0), rtol=1e-10, atol=1e-14)


@needs_pass
def test_rope_swizzle_gradient() -> None:
    """y = x * cos + rot(x) * sin with rot(x)[2i] = -x[2i+1], rot(x)[2i+1] =
    x[2i] read by tensor.extract of the generic's own input: the adjoint is
    dx = dy * cos - rot(dy * sin)."""
    builder = GraphBuilder(0, f32=False, rows=4, dynamic=True)
    x = builder.argument((ROWS, 6))
    builder.pool.append(x)
    y = builder.block_rope()
    text = builder.function_text([y])
    m = differentiate(text, "builtin.module(qlr-differentiate{function=f})")
    cos, sin = (np.repeat(table[:4], 2, axis=1) for table in rope_tables(6))
    dy = RNG.standard_normal((4, 6))
    u = dy * sin
    rot = np.empty_like(u)
    rot[:, 0::2], rot[:, 1::2] = -u[:, 1::2], u[:, 0::2]
    np.testing.assert_allclose(qc.jit(m, "f_grad")(builder.arg_arrays[0], dy), dy * cos - rot,
                               rtol=1e-12, atol=1e-15)


LINEAR_NORMS = """
func.func @f(%x: tensor<?x8xf32>, %b: tensor<4xf32>, %g: tensor<4xf32>, %h: tensor<4xf32>)
    -> (tensor<?x4xf32>, tensor<?x4xf32>) {
  %w = arith.constant WEIGHT : tensor<4x8xf32>
  %y = qlr.linear %x, %w, %b : tensor<?x8xf32>, tensor<4x8xf32>, tensor<4xf32> -> tensor<?x4xf32>
  %r = qlr.rms_norm %y, %g eps = 1.0e-5 : tensor<?x4xf32>, tensor<4xf32>
  %l = qlr.layer_norm %y, %g, %h eps = 1.0e-5 : tensor<?x4xf32>, tensor<4xf32>, tensor<4xf32>
  return %r, %l : tensor<?x4xf32>, tensor<?x4xf32>
}
"""


@needs_pass
def test_linear_rms_norm_layer_norm_gradients() -> None:
    """Closed forms for qlr.linear (input, bias), qlr.rms_norm and
    qlr.layer_norm (input, weight, bias), chained: y = x Wᵀ + b,
    r = rms_norm(y, g), l = layer_norm(y, g, h)."""
    w = RNG.standard_normal((4, 8)).astype(np.float32)
    m = differentiate(LINEAR_NORMS.replace("WEIGHT", dense(w)),
                      "builtin.module(qlr-differentiate{function=f})")
    x, b, g, h = (RNG.standard_normal(s).astype(np.float32) for s in [(3, 8), 4, 4, 4])
    dr, dl = (RNG.standard_normal((3, 4)).astype(np.float32) for _ in range(2))
    gx, gb, gg, gh = qc.jit(m, "f_grad")(x, b, g, h, dr, dl)
    x64, w64, b64, g64, dr64, dl64 = (a.astype(np.float64) for a in (x, w, b, g, dr, dl))
    y = x64 @ w64.T + b64
    inv_rms = 1 / np.sqrt((y * y).mean(-1, keepdims=True) + 1e-5)
    u = dr64 * g64
    dy_rms = inv_rms * u - y * inv_rms ** 3 * (u * y).mean(-1, keepdims=True)
    centred = y - y.mean(-1, keepdims=True)
    inv_std = 1 / np.sqrt((centred ** 2).mean(-1, keepdims=True) + 1e-5)
    normed = centred * inv_std
    v = dl64 * g64
    dy_ln = inv_std * (v - v.mean(-1, keepdims=True) - normed * (v * normed).mean(-1, keepdims=True))
    dy = dy_rms + dy_ln
    tol = dict(rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(gg, (dr64 * y * inv_rms).sum(0) + (dl64 * normed).sum(0), **tol)
    np.testing.assert_allclose(gh, dl64.sum(0), **tol)
    np.testing.assert_allclose(gb, dy.sum(0), **tol)
    np.testing.assert_allclose(gx, dy @ w64, **tol)


# ---------------------------------------------------------------------------
# The function's contract
# ---------------------------------------------------------------------------


MIXED = """
func.func @f(%x: tensor<?x3xf64>, %n: tensor<2xi32>, %b: tensor<3xf64>, %u: tensor<3xf64>)
    -> (tensor<?x3xf64>, tensor<2xi32>, tensor<?x3xf64>) {
  %s = arith.mulf %x, %x : tensor<?x3xf64>
  %c0 = arith.constant 0 : index
  %rows = tensor.dim %x, %c0 : tensor<?x3xf64>
  %e = tensor.empty(%rows) : tensor<?x3xf64>
  %bb = linalg.broadcast ins(%b : tensor<3xf64>) outs(%e : tensor<?x3xf64>) dimensions = [0]
  %y = arith.addf %s, %bb : tensor<?x3xf64>
  %d = arith.addi %n, %n : tensor<2xi32>
  return %y, %d, %x : tensor<?x3xf64>, tensor<2xi32>, tensor<?x3xf64>
}
"""


@needs_pass
def test_default_wrt_name_and_signature() -> None:
    """Default wrt: the float tensor arguments (not the i32 one); one
    cotangent per float result (not the i32 one); a returned argument
    passes its cotangent through, an unused one gets zeros; name= names
    the gradient function and @f is kept as it was."""
    m = qc.Module.parse(MIXED)
    before = str(m)
    m.run_pipeline("builtin.module(qlr-differentiate{function=f name=df})")
    assert m.functions == ["f", "df"]
    assert before.strip()[:-1].strip() in str(m)  # @f unchanged
    g = qc.jit(m, "df")
    assert g.signature == ("@df(tensor<?x3xf64>, tensor<2xi32>, tensor<3xf64>, tensor<3xf64>, "
                           "tensor<?x3xf64>, tensor<?x3xf64>) -> (tensor<?x3xf64>, tensor<3xf64>, "
                           "tensor<3xf64>)")
    x, n, b, u = RNG.standard_normal((4, 3)), np.array([1, 2], np.int32), RNG.standard_normal(3), \
        RNG.standard_normal(3)
    dy, dx = RNG.standard_normal((4, 3)), RNG.standard_normal((4, 3))
    gx, gb, gu = g(x, n, b, u, dy, dx)
    np.testing.assert_allclose(gx, 2 * x * dy + dx, rtol=1e-15)
    np.testing.assert_allclose(gb, dy.sum(0), rtol=1e-12)
    np.testing.assert_array_equal(gu, np.zeros(3))


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


def pass_error(text: str, options: str, name: str = "x.mlir") -> qc.CompilerError:
    """The CompilerError of qlr-differentiate{options}; the module is left
    as it was."""
    m = qc.Module.parse(text, name=name)
    before = str(m)
    with pytest.raises(qc.CompilerError) as info:
        m.run_pipeline(f"builtin.module(qlr-differentiate{{{options}}})")
    assert str(m) == before
    return info.value


@needs_pass
def test_error_missing_function() -> None:
    assert "no function @nope" in str(pass_error(MIXED, "function=nope"))


@needs_pass
def test_error_wrt_out_of_range_or_not_float() -> None:
    assert "no argument #4" in str(pass_error(MIXED, "function=f wrt=0,4"))
    assert "not a floating-point ranked tensor" in str(pass_error(MIXED, "function=f wrt=1"))


@needs_pass
def test_error_weight_of_linear() -> None:
    text = ("func.func @f(%x: tensor<2x4xf32>, %w: tensor<3x4xf32>) -> tensor<2x3xf32> {\n"
            "  %y = qlr.linear %x, %w : tensor<2x4xf32>, tensor<3x4xf32> -> tensor<2x3xf32>\n"
            "  return %y : tensor<2x3xf32>\n}\n")
    error = pass_error(text, "function=f wrt=0,1", "weight.mlir")
    assert "weight.mlir:2:8" in str(error) and "weight" in str(error)
    # Only the input: fine.
    differentiate(text, "builtin.module(qlr-differentiate{function=f wrt=0})")


@needs_pass
def test_error_unsupported_ops_are_located() -> None:
    conv = ("func.func @f(%x: tensor<1x1x4x4xf32>, %w: tensor<1x1x2x2xf32>) -> tensor<1x1x3x3xf32> {\n"
            "  %y = qlr.conv2d %x, %w : tensor<1x1x4x4xf32>, tensor<1x1x2x2xf32> -> tensor<1x1x3x3xf32>\n"
            "  return %y : tensor<1x1x3x3xf32>\n}\n")
    error = pass_error(conv, "function=f wrt=0", "conv.mlir")
    assert "conv.mlir:2:8" in str(error) and "cannot be differentiated" in str(error)
    product = """
func.func @f(%x: tensor<3x4xf64>) -> tensor<3xf64> {
  %one = arith.constant 1.0 : f64
  %e = tensor.empty() : tensor<3xf64>
  %init = linalg.fill ins(%one : f64) outs(%e : tensor<3xf64>) -> tensor<3xf64>
  %p = linalg.generic {indexing_maps = [affine_map<(i, j) -> (i, j)>, affine_map<(i, j) -> (i)>],
                       iterator_types = ["parallel", "reduction"]}
      ins(%x : tensor<3x4xf64>) outs(%init : tensor<3xf64>) {
  ^bb0(%in: f64, %acc: f64):
    %m = arith.mulf %in, %acc : f64
    linalg.yield %m : f64
  } -> tensor<3xf64>
  return %p : tensor<3xf64>
}
"""
    error = pass_error(product, "function=f", "product.mlir")
    assert "product.mlir:6:8" in str(error) and "reduction" in str(error)
    atan = product.replace("%m = arith.mulf %in, %acc : f64", "%a = math.atan %in : f64\n"
                           "    %m = arith.addf %a, %acc : f64")
    error = pass_error(atan, "function=f", "atan.mlir")
    assert "atan.mlir:" in str(error) and "cannot be differentiated" in str(error)


if __name__ == "__main__":
    g = random_graph(int(sys.argv[1])) if len(sys.argv) == 2 else block_graph(sys.argv[1],
                                                                                int(sys.argv[2]))
    print(f"// blocks: {g.blocks}\n// wrt: {g.wrt}\n{g.text}")
