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

//===----------------------------------------------------------------------===//
// Post-training quantization
//===----------------------------------------------------------------------===//

// Options every weight-compressing pass shares: which linear layers to touch.
defvar QLR_LinearFilterOptions = [
  ListOption<"include", "include", "std::string",
             "Glob patterns of layer names to compress (default: every "
             "linear layer with a constant weight). A layer's name is its "
             "qlr.name attribute (qlr-import names every layer after its "
             "checkpoint tensor, e.g. layers.3.attention.wq, and renaming "
             "passes keep it), else its weight's dense_resource key">,
  ListOption<"exclude", "exclude", "std::string",
             "Glob patterns of layer names to leave alone">,
  Option<"classifier", "classifier", "bool", /*default=*/"false",
         "Also compress the classifier: the linear whose weight is also "
         "the embedding table (tied), or, in a language model (qlr.model), "
         "the projection to the vocabulary that the function returns, "
         "whatever pass renamed it; and weights named output, lm_head or "
         "tok_embeddings. It stays float by default">
];

// Options of the self-calibrating passes: where calibration tokens come from.
defvar QLR_CalibrationOptions = [
  Option<"data", "data", "std::string", /*default=*/"\"\"",
         "Calibration data: a UTF-8 text FILE tokenized with the module's "
         "embedded tokenizer, `generate` to sample text from the module's "
         "own @forward (random first token, 4 greedy tokens, then "
         "sampling; 32 sequences decoded per call by its qlr-batch form), "
         "or (qlr-quantize-linear) a .npz/.npy file of the "
         "calibrated function's arguments, one [samples, ...] array per "
         "argument">,
  Option<"samples", "samples", "int64_t", /*default=*/"32",
         "Number of calibration sequences">,
  Option<"seqLen", "seq-len", "int64_t", /*default=*/"256",
         "Tokens per calibration sequence">,
  Option<"seed", "seed", "uint64_t", /*default=*/"0",
         "Seed for picking windows of the calibration file or for "
         "generating calibration text">
];

def QLRQuantizeLinearPass : Pass<"qlr-quantize-linear", "ModuleOp"> {
  let summary = "Quantize the constant weights of linear layers (RTN or GPTQ)";
  let description = [{
    Replaces the float constant weight `W [N, K]` of each selected
    `qlr.linear` by a quantized weight: `qlr.pack` of packed codes, scales
    and (asymmetric formats) zero points, stored as `dense_resource` blobs
    named `NAME.codes`, `NAME.scales` and `NAME.zero_points` after the
    layer's name `NAME` (its `qlr.name`, else the weight's resource name).
    Groups run along `K` (the input
    dimension); `group-size=0` gives one scale per output channel. A group
    size that does not divide `K` leaves a partial last group.

    * `method=rtn` rounds every weight to the nearest grid point (absmax or
      min/max scales per group; see docs/Design.md). It needs nothing but
      the IR.
    * `method=gptq` (Frantar et al. 2022) quantizes column by column and
      compensates each column's rounding error on the columns not yet
      quantized, using the Hessian `H = 2XXᵀ` of the layer's inputs `X`.
      The inputs come from running the module itself: the calibrated
      function (`entry`, default `@forward`) is split into stages by data
      dependence between its linears (in a LLaMA block: q/k/v, then the
      attention output, then gate/up, then down), each stage is compiled
      with `qlr-cpu-pipeline` together with the `XᵀX` of its linears'
      inputs, and the stages run in order on the calibration data, each
      after the linears of the stages before it were quantized (sequential
      GPTQ). Any graph works, after any pass. `data=` gives token text (a
      text file through the embedded tokenizer, or `generate`) for a
      function taking `tensor<?xi32>` tokens first, or the function's
      arguments as a `.npz` file (arrays `arg0`, `arg1`, ... shaped
      `[samples, ...]`) or a `.npy` file. Memory: the values that cross
      one stage boundary, per sample, and one stage's Hessians.
      docs/Calibration.md describes the stages.

    `format=nf4|nf2` use the NormalFloat codebooks and `format=lut` the
    codebook given by `table`; codebook formats scale each group by its
    largest magnitude and are symmetric.

    ```mlir
    %y = qlr.linear %x, %w : tensor<?x64xf32>, tensor<32x64xf32> -> tensor<?x32xf32>
    // --qlr-quantize-linear="bits=4 group-size=32" gives
    %codes = arith.constant dense_resource<w.codes> : tensor<32x32xi8>
    %scales = arith.constant dense_resource<w.scales> : tensor<32x2xf16>
    %q = qlr.pack %codes, %scales : tensor<32x32xi8>, tensor<32x2xf16>
        -> !qlr.qtensor<32x64xf32, #qlr.format<int4, group = 32, scale = f16>>
    %y = qlr.linear %x, %q : tensor<?x64xf32>, !qlr.qtensor<...> -> tensor<?x32xf32>
    ```
  }];
  let options = !listconcat([
    Option<"method", "method", "std::string", /*default=*/"\"rtn\"",
           "Quantizer: rtn (round to nearest) or gptq (needs calibration)">,
    Option<"bits", "bits", "int64_t", /*default=*/"0",
           "Bits per weight, 2..8 (default 4; nf4/nf2 imply 4/2)">,
    Option<"groupSize", "group-size", "int64_t", /*default=*/"64",
           "Weights per scale along the input dimension; 0 = one scale per "
           "output channel">,
    Option<"symmetric", "symmetric", "bool", /*default=*/"true",
           "Symmetric grid (absmax scale, implicit zero point); false gives "
           "min/max scales with stored zero points (uniform format only)">,
    Option<"zeroPoint", "zero-point", "std::string", /*default=*/"\"integer\"",
           "symmetric=false only: integer zero points (0 .. 2^bits - 1) or "
           "fractional ones (the same byte with 8 - bits fraction bits, so "
           "the grid starts at the group's minimum to 1/2^(9-bits) of a "
           "step; `asymmetric = fractional` in the format)">,
    Option<"format", "format", "std::string", /*default=*/"\"uniform\"",
           "Code values: uniform (integer grid), nf4, nf2 (NormalFloat) or "
           "lut (the codebook given by `table`)">,
    ListOption<"table", "table", "double",
               "format=lut only: the 2^bits codebook values">,
    Option<"scaleType", "scale-type", "std::string", /*default=*/"\"f16\"",
           "Storage type of the scales: f16, bf16 or f32">,
    Option<"damp", "damp", "double", /*default=*/"0.01",
           "GPTQ: diagonal damping as a fraction of the mean Hessian "
           "diagonal">,
    Option<"actOrder", "act-order", "bool", /*default=*/"true",
           "GPTQ: quantize columns in order of decreasing Hessian diagonal "
           "(group scales then come from the unmodified weights, so the "
           "stored layout is unchanged; default on: it lowered SmolLM2's W4 "
           "perplexity from 8.39 to 7.94)">,
    Option<"blockSize", "block-size", "int64_t", /*default=*/"128",
           "GPTQ: columns per lazy batch update">,
    Option<"clipSearch", "clip-search", "bool", /*default=*/"false",
           "Choose each group's range by searching shrink factors 1 .. 0.6 "
           "for the smallest squared rounding error, instead of the full "
           "min/max (absmax) range (RTN and GPTQ)">,
    Option<"refitScales", "refit-scales", "int64_t", /*default=*/"1",
           "GPTQ: rounds of refitting each output channel's scales (and zero "
           "points) to its codes by least squares in the Hessian metric, "
           "each round after the first re-running GPTQ with the refit "
           "scales; the best round is kept (0 = off; default 1: SmolLM2 W4 "
           "g64 7.94 -> 7.89)">,
    Option<"floatTarget", "float-target", "bool", /*default=*/"true",
           "GPTQ: fit each quantized layer, on the inputs it gets in the "
           "partly quantized model, to the float layer's outputs on the "
           "float model's inputs (asymmetric calibration; runs the float "
           "model alongside). Off: fit the float layer on the same inputs "
           "(plain sequential GPTQ). Default on: SmolLM2 W4/W3/W2 g64 with "
           "refit-scales=1 7.94/10.08/297 -> 7.80/9.19/28.2">,
    Option<"entry", "entry", "std::string", /*default=*/"\"\"",
           "GPTQ: the function to calibrate (default: @forward, or the "
           "module's only public function)">
  ], !listconcat(QLR_LinearFilterOptions, QLR_CalibrationOptions));
  let statistics = [
    Statistic<"numQuantized", "quantized-linears", "Linear layers quantized">
  ];
  let dependentDialects = ["::mlir::arith::ArithDialect",
                           "::mlir::linalg::LinalgDialect",
                           "::mlir::tensor::TensorDialect",
                           "::mlir::qlr::QLRDialect"];
}

def QLRLoftQPass : Pass<"qlr-loftq", "ModuleOp"> {
  let summary = "Write linear weights as quantized plus low-rank (LoftQ)";
  let description = [{
    Approximates each selected constant weight `W [N, K]` by `Q + A·B`
    (LoftQ, Li et al. 2024) with `Q` quantized and `A [N, r]`, `B [r, K]`
    float factors, alternating `iters` times between
    `Q = quantize(W - A·B)` and the best rank-`r` approximation
    `A·B` of `W - Q` (truncated SVD), starting from `A·B = 0`. The weight
    becomes `qlr.lowrank %a, %b base %q`; the factors are stored as
    `NAME.lora_a` and `NAME.lora_b`, the base like qlr-quantize-linear's.
    Codebook formats use absmax scaling per group.

    ```mlir
    // --qlr-loftq="format=nf2 rank=16 iters=5" turns a [1536, 576] weight into
    %w = qlr.lowrank %a, %b base %q : tensor<1536x16xf32>, tensor<16x576xf32>,
        !qlr.qtensor<1536x576xf32, #nf2_g64_f16>
        -> !qlr.lowrank<1536x576xf32, rank = 16, base = #nf2_g64_f16>
    ```
  }];
  let options = !listconcat([
    Option<"bits", "bits", "int64_t", /*default=*/"0",
           "Bits of the quantized base, 2..8 (default 2; nf4/nf2 imply 4/2)">,
    Option<"format", "format", "std::string", /*default=*/"\"nf2\"",
           "Base quantizer: uniform, nf4 or nf2">,
    Option<"groupSize", "group-size", "int64_t", /*default=*/"64",
           "Weights per scale along the input dimension; 0 = per output "
           "channel">,
    Option<"symmetric", "symmetric", "bool", /*default=*/"true",
           "uniform only: false gives min/max scales with zero points">,
    Option<"zeroPoint", "zero-point", "std::string", /*default=*/"\"integer\"",
           "symmetric=false only: integer or fractional zero points (see "
           "qlr-quantize-linear)">,
    Option<"scaleType", "scale-type", "std::string", /*default=*/"\"f16\"",
           "Storage type of the scales: f16, bf16 or f32">,
    Option<"rank", "rank", "int64_t", /*default=*/"16",
           "Rank r of the low-rank correction">,
    Option<"iters", "iters", "int64_t", /*default=*/"5",
           "Alternating quantize / SVD iterations (>= 1)">
  ], QLR_LinearFilterOptions);
  let statistics = [
    Statistic<"numCompressed", "loftq-linears", "Linear layers compressed">
  ];
  let dependentDialects = ["::mlir::arith::ArithDialect",
                           "::mlir::qlr::QLRDialect"];
}

def QLRDequantizeWeightsPass : Pass<"qlr-dequantize-weights", "ModuleOp"> {
  let summary = "Turn constant quantized and low-rank weights back into float";
  let description = [{
    For debugging and exact comparisons: every `qlr.linear` or
    `qlr.dequantize` whose weight is built from constants by `qlr.pack` or
    `qlr.lowrank` gets the decoded float weight as one constant instead
    (`dense_resource` named like the original weight, e.g. `NAME` for
    `NAME.codes`). Decoding follows the format's rule exactly (the same
    values the lowering computes), so the float module computes what the
    compressed one does. Weights that are not constants are left alone.
  }];
  let statistics = [
    Statistic<"numDequantized", "dequantized-weights", "Weights decoded">
  ];
  let dependentDialects = ["::mlir::arith::ArithDialect"];
}

//===----------------------------------------------------------------------===//
// Norm tweaking and folding
//===----------------------------------------------------------------------===//

def QLRNormTweakPass : Pass<"qlr-norm-tweak", "ModuleOp"> {
  let summary = "Tune the norm weights of a quantized model so that each "
                "stage's outputs match the float model's (Norm Tweaking)";
  let description = [{
    Norm Tweaking (Li et al., AAAI 2024) repairs a post-training quantized
    model by re-tuning only its normalisation weights. The linear layers
    stay exactly as an earlier pass quantized them (any format, RTN, GPTQ,
    LoftQ, low-rank); the pass runs the module's own IR.

    **Stages from the IR.** In the calibrated function (`@forward`, or the
    module's only public function) the tuned norms are the `qlr.rms_norm`
    and `qlr.layer_norm` ops with a constant weight whose output reaches
    another norm (the final norm before a classifier is not tuned). Their
    inputs cut the network (a pre-norm residual stream); a stage runs from
    one cut to the next and starts at the first tuned norm and at every norm
    whose part of the network contains attention (a max-reduction softmax),
    so a transformer gets one stage per block (a network without attention
    gets one stage per norm). Each stage is outlined into a
    function, its gradient with respect to the stage's norm weights is built
    by `qlr-differentiate`, and both are compiled once for the host; the
    float model (`reference=FILE`, the module before quantization, cut the
    same way) gives the targets.

    Stage by stage, in order:

    1. the float stage's output `Yf` on the float model's activations;
    2. `iters` epochs of Adam (learning rate `lr`; by default 5e-4 when some
       linear weight of the module has 3 or fewer bits per code, else 1e-4)
       over the calibration samples, one sample per step, on the stage's
       norm weights (`norms=all`, or `attn`/`ffn`: the norms whose part of
       the stage does or does not contain attention), minimising
       `loss=dist`, the channel-wise distribution distance
       `L = 1/C · Σ_c (|μ_f,c − μ_q,c| + |σ²_f,c − σ²_q,c|)` over all rows,
       or `loss=mse`, the mean squared difference `mean((Yq − Yf)²)`;
    3. the tweak is kept only if `L` over all calibration samples went
       down, and the next stage starts from the quantized stage's outputs
       with the kept weights.

    With `model-guard=true` (the default) and token data, the kept tweaks
    must then also bring the quantized model's next-token distributions on
    the calibration tokens closer to the float model's (lower mean KL
    divergence of the function's first result, the logits); otherwise every
    norm stays as it was.

    Calibration data as for `qlr-quantize-linear`: `data=generate` (the
    default; text sampled from the float model: a random first token, 4
    greedy tokens, then sampling, seeded), a text file tokenized with the
    embedded tokenizer, or a `.npz`/`.npy` file of the function's arguments.
    The tweaked weights replace the norm constants (`dense_resource` named
    like the original with `.tweaked` appended, or `norm.STAGE.INDEX.tweaked`
    for inline constants).

    ```
    quant-opt float.mlirbc \
      --qlr-quantize-linear="method=gptq bits=3 data=generate" \
      --qlr-norm-tweak="reference=float.mlirbc" -emit-bytecode -o w3-nt.mlirbc
    ```
  }];
  let options = [
    Option<"reference", "reference", "std::string", /*default=*/"\"\"",
           "The float module this one was quantized from (text or "
           "bytecode); its stages give the target outputs">,
    Option<"lr", "lr", "double", /*default=*/"0",
           "Adam learning rate; 0 (the default) picks by the narrowest code "
           "width of the module's compressed linear weights: 5e-4 at 2-3 "
           "bits (best of 1e-5 .. 3e-3 on SmolLM2-135M GPTQ W3), 1e-4 "
           "otherwise (5e-4 costs 0.7 % perplexity at W4; see "
           "docs/norm-tweak.md)">,
    Option<"iters", "iters", "int64_t", /*default=*/"1",
           "Epochs over the calibration sequences (one Adam step per "
           "sequence)">,
    Option<"loss", "loss", "std::string", /*default=*/"\"dist\"",
           "dist: channel-wise |Δmean| + |Δvariance| (the paper's loss); "
           "mse: mean squared output difference">,
    Option<"norms", "norms", "std::string", /*default=*/"\"all\"",
           "Which norm weights to tune: all, attn (norms whose part of the "
           "stage contains attention) or ffn (the others)">,
    Option<"data", "data", "std::string", /*default=*/"\"generate\"",
           "Calibration data: a UTF-8 text FILE tokenized with the module's "
           "embedded tokenizer, `generate` to sample text from the float "
           "model (random first token, 4 greedy tokens, then sampling), or a "
           ".npz/.npy file of the calibrated function's arguments">,
    Option<"samples", "samples", "int64_t", /*default=*/"32",
           "Number of calibration sequences">,
    Option<"seqLen", "seq-len", "int64_t", /*default=*/"256",
           "Tokens per calibration sequence">,
    Option<"seed", "seed", "uint64_t", /*default=*/"0",
           "Seed for picking windows of the calibration file or for "
           "generating calibration text">,
    Option<"modelGuard", "model-guard", "bool", /*default=*/"true",
           "Keep the tweaks only if they also lower the mean KL divergence "
           "of the model's next-token distributions from the float model's "
           "on the calibration tokens">,
    Option<"report", "report", "std::string", /*default=*/"\"\"",
           "Write each block's loss before and after tweaking, the learning "
           "rate used and the model guard's KL divergences and perplexities "
           "to this JSON file">
  ];
  let statistics = [
    Statistic<"numTweaked", "tweaked-stages", "Stages whose tweak was kept">,
    Statistic<"numRejected", "rejected-stages",
              "Stages whose tweak was not kept">
  ];
  let dependentDialects = ["::mlir::arith::ArithDialect",
                           "::mlir::linalg::LinalgDialect",
                           "::mlir::math::MathDialect",
                           "::mlir::scf::SCFDialect",
                           "::mlir::tensor::TensorDialect",
                           "::mlir::qlr::QLRDialect"];
}

def QLRFoldNormPass : Pass<"qlr-fold-norm", "ModuleOp"> {
  let summary = "Fold norm weights (and LayerNorm biases) into the following "
                "linear layers";
  let description = [{
    For a `qlr.rms_norm` or `qlr.layer_norm` with constant weight `g` (and
    bias `b`) whose every use is the input of a `qlr.linear` with a float
    constant weight `W [N, K]`, rewrites

    * each linear's weight to `W · diag(g)` (column `k` scaled by `g[k]`),
    * each linear's bias to `c + W·b` (LayerNorm; a bias is created when the
      linear had none),
    * the norm's weight to ones and its bias to zeros,

    which computes the same function (exactly, up to float rounding). This
    is how tweaked norms are folded before quantization, or how a model is
    prepared for a quantizer that expects unit norms.

    A norm is refused with a diagnostic (and left unchanged) when folding
    would not be exact: a use that is not a linear's input, a compressed
    (quantized or low-rank) consumer weight, a weight that is not a
    constant, or a consumer weight also used elsewhere (tied embeddings: a
    LLaMA model's final norm feeds the classifier, which is also the
    embedding table). A refusal is a warning naming the reason, and the
    other norms are still folded; with `strict=true` it is an error and the
    pass fails. Every norm is checked before any is rewritten, so a failing
    run leaves the module unchanged. Norms whose weight is already all ones
    (and bias all zeros) are skipped silently.

    The new values are computed in double and rounded once to the weight's
    element type. A weight stored as `dense_resource<NAME>` is replaced by
    `dense_resource<NAME.folded>` (a created bias is named after the weight,
    with `.weight` replaced by `.bias.folded`); inline `dense<...>` weights
    stay inline. Constants left without users are erased.

    ```mlir
    %n = qlr.rms_norm %x, %g eps = 1.0e-05 : tensor<?x64xf32>, tensor<64xf32>
    %y = qlr.linear %n, %w : tensor<?x64xf32>, tensor<32x64xf32> -> tensor<?x32xf32>
    // becomes, with %w2 = %w · diag(%g) and %ones a constant of ones:
    %n = qlr.rms_norm %x, %ones eps = 1.0e-05 : tensor<?x64xf32>, tensor<64xf32>
    %y = qlr.linear %n, %w2 : tensor<?x64xf32>, tensor<32x64xf32> -> tensor<?x32xf32>
    ```
  }];
  let options = [
    Option<"strict", "strict", "bool", /*default=*/"false",
           "Fail when a norm cannot be folded exactly (by default: warn and "
           "leave that norm)">
  ];
  let statistics = [
    Statistic<"numFolded", "folded-norms", "Norms folded">
  ];
  let dependentDialects = ["::mlir::arith::ArithDialect"];
}

def QLRFoldBatchNormPass : Pass<"qlr-fold-batchnorm", "ModuleOp"> {
  let summary = "Fold inference BatchNorm into the preceding linear layer or "
                "convolution";
  let description = [{
    `qlr.batch_norm` with constant parameters computes
    `y = (x - mean) · s + bias` per channel with `s = scale / sqrt(var +
    eps)`. When `x` is produced by

    * a `qlr.linear` with a float constant weight `W [N, K]` (channel axis
      the last one), the weight becomes `diag(s) · W` and the bias
      `(c - mean) · s + bias` (`c` the linear's bias, or 0);
    * a `linalg.conv_2d_nchw_fchw` (channel axis 1) whose filter is a float
      constant and whose init is a zero fill, the filter's output channels
      are scaled by `s` and the shifted bias is added after the convolution,

    and the batch norm disappears. After a convolution the bias is added as
    `linalg.add` of a `linalg.broadcast` (nothing when it is all zeros). The
    producer, and its weight, must have no other use, and `var + eps` must be
    positive. Anything else is refused with a warning naming the reason (an
    error that fails the pass, before anything is rewritten, with
    `strict=true`), and that batch norm stays. Values are computed in double
    and named as by `qlr-fold-norm` (`NAME.folded`, `.bias.folded`).

    ```mlir
    %y = qlr.linear %x, %w : tensor<8x16xf32>, tensor<4x16xf32> -> tensor<8x4xf32>
    %z = qlr.batch_norm %y, %s, %b, %m, %v axis = 1 eps = 1.0e-05 : ...
    // becomes
    %z = qlr.linear %x, %w2, %b2 : tensor<8x16xf32>, tensor<4x16xf32>,
        tensor<4xf32> -> tensor<8x4xf32>
    ```
  }];
  let options = [
    Option<"strict", "strict", "bool", /*default=*/"false",
           "Fail when a batch norm cannot be folded (by default: warn and "
           "leave it)">
  ];
  let statistics = [
    Statistic<"numFolded", "folded-batchnorms", "Batch norms folded">
  ];
  let dependentDialects = ["::mlir::arith::ArithDialect",
                           "::mlir::linalg::LinalgDialect",
                           "::mlir::tensor::TensorDialect"];
}

//===----------------------------------------------------------------------===//
// Weights from outside
//===----------------------------------------------------------------------===//

def QLRLoadWeightsPass : Pass<"qlr-load-weights", "ModuleOp"> {
  let summary = "Replace named weights by float or quantized tensors from a "
                "safetensors file (trained weights, e.g. from qlr.qat)";
  let description = [{
    Replaces the values of `arith.constant dense_resource<NAME>` weights
    (the names `qlr-import` gives, e.g. `layers.0.attention.wq`) by tensors
    read from the safetensors file `file`, exactly, without re-quantizing.
    This is how weights trained outside QLR (quantization-aware training in
    `qlr.qat`, fine-tuning) come back into a module. For each NAME the file
    holds either

    * a float tensor `NAME` (F32, F16 or BF16) of the weight's shape: the
      constant gets these values (converted to its element type, which must
      hold them exactly), or
    * a quantized weight: `NAME.codes` (U8, the weight's shape, one unpacked
      code per element), `NAME.scales` (F32, F16 or BF16, the shape the
      format gives the scales), `NAME.zero_points` (U8, asymmetric formats
      only) and, in the file's `__metadata__`, `"NAME": "<format>"` with a
      `#qlr.format` (or just its body, e.g. `int3, group = 32`). The weight
      becomes a `qlr.pack` of these codes and scales; every user of the
      weight must be a `qlr.linear` or `qlr.conv2d` taking it as its weight.

    Everything is checked before anything changes: a missing or truncated
    file, a tensor whose name matches no weight (unless
    `allow-unused=true`), a shape or dtype mismatch, codes outside the
    format's range, scales the format's scale type cannot hold exactly, or
    a format that does not fit the weight are reported as errors naming the
    tensor, and the module is left as it was.

    ```mlir
    %w = arith.constant dense_resource<layers.0.attention.wq> : tensor<64x64xf32>
    %y = qlr.linear %x, %w : tensor<?x64xf32>, tensor<64x64xf32> -> tensor<?x64xf32>
    // with layers.0.attention.wq.{codes,scales} and the format int2, group = 32:
    %codes = arith.constant dense_resource<layers.0.attention.wq.codes> : tensor<64x16xi8>
    %scales = arith.constant dense_resource<layers.0.attention.wq.scales> : tensor<64x2xf32>
    %w = qlr.pack %codes, %scales : tensor<64x16xi8>, tensor<64x2xf32>
        -> !qlr.qtensor<64x64xf32, #qlr.format<int2, group = 32>>
    ```
  }];
  let options = [
    Option<"file", "file", "std::string", /*default=*/"",
           "The safetensors file to read (required)">,
    Option<"allowUnused", "allow-unused", "bool", /*default=*/"false",
           "Ignore tensors of the file that match no weight of the module "
           "(by default an error)">
  ];
  let statistics = [
    Statistic<"numFloat", "float-weights", "Weights given new float values">,
    Statistic<"numQuantized", "quantized-weights",
              "Weights replaced by quantized tensors">
  ];
  let dependentDialects = ["::mlir::arith::ArithDialect",
                           "::mlir::qlr::QLRDialect"];
}

//===----------------------------------------------------------------------===//
// Low-rank factorization
//===----------------------------------------------------------------------===//

def QLRBasisSelectPass : Pass<"qlr-basis-select", "ModuleOp"> {
  let summary = "Split linear weights into low-rank factors whose bases are "
                "selected on target data (Basis Selection)";
  let description = [{
    Writes each selected constant weight `W [N, K] = Σ σ_i u_i v_iᵀ` (its
    SVD) as two thin factors `A [N, r]`, `B [r, K]` that keep `r` of its
    bases, chosen on data from the target application (Basis Selection,
    arXiv 2405.15877):

    * `score=energy` scores basis `i` by the energy it contributes to the
      layer's output on the target activations `X`,
      `s_i = σ_i² ‖v_iᵀ X‖²`; `score=magnitude` by `σ_i²` alone (plain
      truncated SVD, the baseline);
    * ranks are allocated across the selected layers under one budget,
      `ratio` × their dense parameter count, by greedily keeping the bases
      with the largest share of their layer's total score per parameter
      they cost (`N + K` each); every layer keeps at least `min-rank`
      bases; a layer whose rank reaches the break-even `⌊NK / (N + K)⌋` is
      better stored dense and stays as it is; `rank=R` instead keeps `R`
      bases in every layer (even above the break-even; `R <= min(N, K)`);
    * `refit=lsq` refits the kept bases' coefficients by least squares on
      the layer outputs (`A = W G V (Vᵀ G V)⁻¹` with `G = XᵀX` and `V` the
      kept right bases); `refit=none` keeps the SVD's. Both factors are
      balanced (`A = P Λ^½`, `B = Λ^½ Qᵀ` from the SVD `P Λ Qᵀ` of `A·B`),
      so that quantizing them later behaves.

    The activations come from running the float model on `data=FILE|generate`
    (needs a module made by `qlr-import`; selected weights outside the
    transformer blocks, such as the classifier, are refused): one pass
    scores every layer, then the refit runs block by block on the outputs
    of the already factorized layers. `score=magnitude refit=none` needs no
    data and works on any module. The weight becomes `qlr.lowrank %a, %b`
    with resources `NAME.factor_a`, `NAME.factor_b`; later passes may
    quantize the factors (`qlr-quantize-linear`), and the lowering runs them
    as two thin matrix products. The rules are detailed in
    docs/basis-selection.md.

    ```mlir
    %w = qlr.lowrank %a, %b : tensor<1536x200xf32>, tensor<200x576xf32>
        -> !qlr.lowrank<1536x576xf32, rank = 200>
    ```
  }];
  let options = !listconcat([
    Option<"ratio", "ratio", "double", /*default=*/"0.75",
           "Kept parameters / dense parameters over the selected linear "
           "layers, in (0, 1]">,
    Option<"rank", "rank", "int64_t", /*default=*/"0",
           "Keep this many bases in every selected layer (overrides ratio)">,
    Option<"score", "score", "std::string", /*default=*/"\"energy\"",
           "Basis score: energy (σ² ‖vᵀX‖² on the target data) or "
           "magnitude (σ², plain truncated SVD)">,
    Option<"refit", "refit", "std::string", /*default=*/"\"lsq\"",
           "Refit the kept factors by least squares on the layer outputs "
           "(lsq) or keep the SVD's (none)">,
    Option<"minRank", "min-rank", "int64_t", /*default=*/"1",
           "Smallest rank any selected layer keeps">
  ], !listconcat(QLR_LinearFilterOptions, [
    Option<"data", "data", "std::string", /*default=*/"\"\"",
           "Target data: a UTF-8 text FILE tokenized with the module's "
           "embedded tokenizer, `generate` to sample text from the float "
           "model, or a .npz/.npy file of the calibrated function's "
           "arguments ([samples, ...] per argument); needed by "
           "score=energy and refit=lsq">,
    Option<"entry", "entry", "std::string", /*default=*/"\"\"",
           "The function the target data runs (default: @forward, or the "
           "module's only public function)">,
    Option<"samples", "samples", "int64_t", /*default=*/"32",
           "Number of calibration sequences">,
    Option<"seqLen", "seq-len", "int64_t", /*default=*/"256",
           "Tokens per calibration sequence">,
    Option<"seed", "seed", "uint64_t", /*default=*/"0",
           "Seed for picking windows of the data file or for generating "
           "text">
  ]));
  let statistics = [
    Statistic<"numFactorized", "factorized-linears",
              "Linear layers written as low-rank factors">,
    Statistic<"numKeptDense", "dense-linears",
              "Selected layers kept dense (rank at or above break-even)">
  ];
  let dependentDialects = ["::mlir::arith::ArithDialect",
                           "::mlir::linalg::LinalgDialect",
                           "::mlir::tensor::TensorDialect",
                           "::mlir::qlr::QLRDialect"];
}

def QLRDifferentiatePass : Pass<"qlr-differentiate", "ModuleOp"> {
  let summary = "Build the reverse-mode gradient (vector-Jacobian product) "
                "of a function";
  let description = [{
    Adds to the module the gradient of function `function` with respect to
    its arguments `wrt` (default: every floating-point ranked-tensor
    argument):

    ```mlir
    func.func @f_grad(<the arguments of @f>, <one cotangent per float tensor
                      result of @f>) -> (<one gradient per wrt argument>)
    ```

    It returns dL/d(arg) for L = Σ_r <dy_r, y_r>, the sum over the
    floating-point tensor results `y_r` of `@f` of their inner product with
    the cotangent arguments `dy_r`. The gradient function is tensor IR like
    `@f` (`linalg.generic`, `tensor`, `scf.for`, `qlr.linear`), so it
    compiles with the same pipeline. `qlr-norm-tweak` uses this transform to
    differentiate calibration stages; it is also useful on its own.

    The body is first normalised (`qlr.rms_norm`/`qlr.layer_norm` lowered to
    linalg, named linalg ops generalized, element-wise arith on tensors
    turned into `linalg.generic`); then every op on the path from a `wrt`
    argument to a result is differentiated in reverse order:

    * `linalg.generic` with parallel and reduction loops. A reduction must
      combine its accumulator with `arith.addf`, `arith.maximumf` or
      `arith.minimumf` (max/min pass the adjoint to the elements equal to
      the result; tied elements each receive all of it, which is exact for
      softmax's max shift but not a subgradient in general). Body ops:
      `arith` add/sub/mul/div/neg/max/min/select/extf/truncf, `math`
      exp/log/sqrt/rsqrt/tanh/erf/sin/cos/absf/fma and powf with a fixed
      exponent (ops with regions or several results are errors); `tensor.extract` of a tensor captured from
      above may read a differentiated value (a gather, as in RoPE), whose
      adjoint becomes a scatter loop (`scf.for`).
    * `qlr.linear` with respect to its input and bias; its weight (float or
      compressed) must not depend on a `wrt` argument.
    * `tensor.expand_shape`, `collapse_shape`, `extract_slice`,
      `insert_slice`, `cast`.

    Any other op on that path, a multi-block body or an unsuitable `wrt`
    argument is a located error, and the module is left unchanged.

    ```sh
    quant-opt model.mlir --qlr-differentiate="function=block wrt=1,2"
    ```
  }];
  let options = [
    Option<"function", "function", "std::string", /*default=*/"\"\"",
           "The function to differentiate (required)">,
    ListOption<"wrt", "wrt", "unsigned",
               "Argument indices to differentiate with respect to (default: "
               "every floating-point tensor argument)">,
    Option<"name", "name", "std::string", /*default=*/"\"\"",
           "Name of the gradient function (default: FUNCTION_grad)">
  ];
  let dependentDialects = ["::mlir::arith::ArithDialect",
                           "::mlir::linalg::LinalgDialect",
                           "::mlir::math::MathDialect",
                           "::mlir::scf::SCFDialect",
                           "::mlir::tensor::TensorDialect",
                           "::mlir::qlr::QLRDialect"];
}

def QLRBatchPass : Pass<"qlr-batch", "ModuleOp"> {
  let summary = "Build the batched form of a function (vmap)";
  let description = [{
    Adds to the module `@f_batched`, the function `function` applied to a
    batch of independent inputs: the arguments `arguments` (default: every
    ranked-tensor argument) and every result get a new leading dimension of
    `size` elements (`size=0`: a dynamic `?` batch), the other arguments are
    shared by the whole batch, and `@f_batched(x)[b] = @f(x[b])` for every
    batch element `b`:

    ```mlir
    func.func @f(%x: tensor<?x64xf32>, %pos: index) -> tensor<?x64xf32>
    // qlr-batch{function=f size=4}:
    func.func @f_batched(%x: tensor<4x?x64xf32>, %pos: index)
        -> tensor<4x?x64xf32>
    ```

    One call then serves the whole batch, and `qlr.linear` reads its weight
    once for all elements (the batch is folded into its rows, one `[B·T, K]`
    matrix): `data=generate` in the
    calibrating passes samples its sequences this way from the model's own
    `@forward`.

    Named linalg ops are generalized and element-wise arith on tensors
    becomes `linalg.generic` first. Then every op that reads a batched value
    gets the batch dimension: `linalg.generic` an outermost parallel loop
    (shared inputs do not index it; `linalg.index` shifts; `tensor.extract`
    of a batched tensor captured by the body reads the loop's element);
    `qlr.linear` the batch folded into its rows (its weight must be shared;
    a batched bias is added after the product); `qlr.rms_norm`,
    `qlr.layer_norm` and `qlr.batch_norm` a leading dimension on their input
    and result (norms with batched weights are lowered to linalg first); `tensor.expand_shape`, `collapse_shape`, `extract_slice`,
    `insert_slice`, `cast` and `dim` the extra dimension in their shapes and
    indices. A shared value that meets a batched one is broadcast (empty
    tensors and fills are rebuilt with the batch dimension instead). Any
    other op that reads a batched value (for example `tensor.extract` of a
    batched tensor outside a `linalg.generic`, or `scf.for`) is a located
    error, and the module is left unchanged.

    ```sh
    quant-opt model.mlir --qlr-batch="function=forward size=8"
    ```
  }];
  let options = [
    Option<"function", "function", "std::string", /*default=*/"\"\"",
           "The function to batch (required)">,
    Option<"size", "size", "int64_t", /*default=*/"0",
           "Elements in the batch (0: a dynamic `?` dimension)">,
    ListOption<"arguments", "arguments", "unsigned",
               "Argument indices that get the batch dimension (default: "
               "every ranked-tensor argument)">,
    Option<"name", "name", "std::string", /*default=*/"\"\"",
           "Name of the batched function (default: FUNCTION_batched)">
  ];
  let dependentDialects = ["::mlir::arith::ArithDialect",
                           "::mlir::linalg::LinalgDialect",
                           "::mlir::tensor::TensorDialect",
                           "::mlir::qlr::QLRDialect"];
}

#endif // QLR_DIALECT_QLR_TRANSFORMS_PASSES_TD
