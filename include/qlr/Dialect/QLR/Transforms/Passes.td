//===- Passes.td - QLR dialect transformations -------------*- tablegen -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#ifndef QLR_DIALECT_QLR_TRANSFORMS_PASSES_TD
#define QLR_DIALECT_QLR_TRANSFORMS_PASSES_TD

include "mlir/Pass/PassBase.td"

def QLRRaiseTransformerPass : Pass<"qlr-raise-transformer", "ModuleOp"> {
  let summary = "Raise linear layers and normalisations written in linalg to "
                "qlr ops";
  let description = [{
    Frontends such as torch-mlir (and ONNX through it) emit a transformer's
    layers as plain `linalg`, `arith` and `math` ops on tensors. This pass
    recognises those layers and rewrites them into `qlr.linear`,
    `qlr.rms_norm` and `qlr.layer_norm`, which the quantization passes and
    the lowerings understand. IR that only almost matches is left alone, and
    so are qlr ops already present (the importer's output is unchanged).
    The rewrites happen in one walk in program order; nothing is folded, and
    the only ops erased are the ones the raising left unused, so running the
    pass twice changes nothing.

    **Linear layers** (`linears`). A `linalg.matmul` (or `linalg.batch_matmul`
    with a 3-D input) `y = x·B` whose init is `linalg.fill` of `0.0` into a
    `tensor.empty`, whose operands and result share one element type (`f32`,
    `f16` or `bf16`) and whose `x` operand uses the default indexing map,
    becomes `qlr.linear %x, %w` when `B` is `Wᵀ` for a matrix `%w [N, K]`
    (any tensor, typically a constant):

    * `B` is `linalg.transpose ins(%w) permutation = [1, 0]`, or a
      `linalg.generic` that only transposes;
    * the op's `indexing_maps` read `B` transposed (`(m, n, k) -> (n, k)`),
      and `B` is `%w` itself;
    * for `linalg.batch_matmul`, `B` is additionally broadcast along the batch
      dimension (`linalg.broadcast ... dimensions = [0]` or an equivalent
      generic), before or after the transpose.

    A bias-free `qlr.linear` (raised or not) whose only use is an element-wise
    addition of a bias `%b [N]` broadcast along the rows becomes
    `qlr.linear %x, %w, %b`: the addition may be a `linalg.generic` with an
    `arith.addf` body reading the bias through `(d0, d1) -> (d1)`, or a
    `linalg.add` of a `linalg.broadcast` of the bias, in either operand order.

    **Normalisations** (`norms`). The element-wise ops (`linalg.generic`,
    named element-wise ops such as `linalg.mul`/`linalg.add`/`linalg.div`/
    `linalg.rsqrt`/`linalg.square`, `linalg.broadcast`, `linalg.fill`) are
    looked through as scalar expressions, so the same layer is recognised
    whether each step is its own op or several steps are fused into one
    generic. Statistics are sums over the last dimension (`linalg.generic`
    with the last loop a reduction, or `linalg.reduce dimensions = [rank-1]`,
    with an `arith.addf` body and a zero init), kept with or without the
    reduced unit dimension (`(d0, d1) -> (d0)` or `(d0, d1) -> (d0, 0)`).
    With `C` the static size of the last dimension, `eps` a constant (absent
    means 0) and `w`, `b` 1-D tensors of `C` elements read through
    `(..., c) -> (c)`:

    * `qlr.rms_norm`: `x * rsqrt(ms + eps) * w` where
      `ms = sum(x * x) * (1/C)`; products may come in any order and
      grouping, `x * x` may be `powf(x, 2)`, `* (1/C)` may be `/ C`, and
      `rsqrt(v)` may be `1 / sqrt(v)`, `/ sqrt(v)` or `powf(v, -0.5)`;
    * `qlr.layer_norm`: `(x - mean) * rsqrt(var + eps) * w + b` where
      `mean = sum(x) * (1/C)` and `var = sum((x - mean)²) * (1/C)` (the
      biased variance), with the same freedoms. The op that computes
      `(x - mean) * rsqrt(var + eps) * w`, an RMSNorm of `x - mean` on its
      own, is not raised when its only use leads to the bias addition.

    `eps` is recorded as the shortest decimal that denotes the constant in
    the element type (an f32 `9.99999974E-6` becomes `1.0e-5`).

    Constant factors may also appear inside the sums (`sum(x * x / C)`);
    their product must be `1/C` to the element type's precision. Not
    recognised: a weight- or bias-free normalisation, the variance written as
    `E[x²] - mean²`, statistics reshaped with `tensor.expand_shape`, and
    computations through `arith.extf`/`arith.truncf` (mixed precision).

    ```mlir
    %wt = linalg.transpose ins(%w : tensor<1536x576xf32>)
        outs(%e : tensor<576x1536xf32>) permutation = [1, 0]
    %y = linalg.matmul ins(%x, %wt : tensor<?x576xf32>, tensor<576x1536xf32>)
        outs(%zero : tensor<?x1536xf32>) -> tensor<?x1536xf32>
    // becomes
    %y = qlr.linear %x, %w : tensor<?x576xf32>, tensor<1536x576xf32>
        -> tensor<?x1536xf32>
    ```
  }];
  let options = [
    Option<"linears", "linears", "bool", /*default=*/"true",
           "Raise matrix products with a transposed weight (and a following "
           "bias addition) to qlr.linear">,
    Option<"norms", "norms", "bool", /*default=*/"true",
           "Raise RMSNorm and LayerNorm computations to qlr.rms_norm and "
           "qlr.layer_norm">
  ];
  let dependentDialects = ["::mlir::qlr::QLRDialect"];
}

#endif // QLR_DIALECT_QLR_TRANSFORMS_PASSES_TD
