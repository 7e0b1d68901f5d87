//===- Passes.td - QLR conversion passes -------------------*- tablegen -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#ifndef QLR_CONVERSION_PASSES_TD
#define QLR_CONVERSION_PASSES_TD

include "mlir/Pass/PassBase.td"

def QLRConvertQuantToQLRPass : Pass<"qlr-convert-quant-to-qlr", "ModuleOp"> {
  let summary = "Convert upstream !quant.uniform casts into qlr ops";
  let description = [{
    Rewrites the upstream `quant` dialect's casts into `qlr` ops:

    * `quant.scast` of a constant integer tensor becomes `qlr.pack` of the
      packed codes and constant scales (and zero points);
    * `quant.qcast` becomes `qlr.quantize` with constant scales;
    * `quant.dcast` becomes `qlr.dequantize`.

    Per-tensor, per-axis and sub-channel `!quant.uniform` types convert when
    the format is expressible: storage of 2 to 8 bits over its full range,
    an `f32`/`f16`/`bf16` expressed type (which becomes the scale type),
    zero points inside the storage range and, for sub-channel types, blocks
    along a single axis. Anything else (and any quantized value that flows
    somewhere other than these casts, such as a function argument) is
    reported with its location and the pass fails.

    ```mlir
    %q = quant.scast %c : tensor<2x4xi8> to tensor<2x4x!quant.uniform<i8:f32:0, {0.5, 0.25}>>
    %f = quant.dcast %q : tensor<2x4x!quant.uniform<i8:f32:0, {0.5, 0.25}>> to tensor<2x4xf32>
    // becomes
    %f = qlr.dequantize %w : !qlr.qtensor<2x4xf32, #qlr.format<int8, channel = 0>> -> tensor<2x4xf32>
    ```
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect",
    "::mlir::qlr::QLRDialect"
  ];
}

def QLRConvertQLRToQuantPass : Pass<"qlr-convert-qlr-to-quant", "ModuleOp"> {
  let summary = "Convert qlr quantized tensors into upstream !quant.uniform casts";
  let description = [{
    The inverse of `qlr-convert-quant-to-qlr`: every `!qlr.qtensor` produced
    by `qlr.pack` of constants or by `qlr.quantize` with constant scales is
    rewritten into `quant.scast`/`quant.qcast`, and its uses (`qlr.dequantize`,
    the weight of `qlr.linear`) into `quant.dcast`. Codes are unpacked into a
    constant of the storage type.

    Only uniform grids are expressible upstream; codebook formats (`nf`,
    `lut`), scales computed at run time, groups that do not divide their
    dimension (upstream sub-channel types need whole blocks), and quantized
    values used by other ops are reported with their location and the pass
    fails.

    ```mlir
    %w = qlr.pack %codes, %scales : tensor<2x2xi8>, tensor<2xf32>
        -> !qlr.qtensor<2x4xf32, #qlr.format<int4, channel = 0>>
    %f = qlr.dequantize %w : !qlr.qtensor<2x4xf32, #qlr.format<int4, channel = 0>> -> tensor<2x4xf32>
    // becomes
    %c = arith.constant dense<...> : tensor<2x4xi4>
    %q = quant.scast %c : tensor<2x4xi4> to tensor<2x4x!quant.uniform<i4:f32:0, {...}>>
    %f = quant.dcast %q : tensor<2x4x!quant.uniform<i4:f32:0, {...}>> to tensor<2x4xf32>
    ```
  }];
  let options = [
    Option<"signedStorage", "signed-storage", "bool", /*default=*/"true",
           "Give symmetric formats signed storage (iN with zero point 0); "
           "when false every format gets unsigned storage (uN) with explicit "
           "zero points">
  ];
  let dependentDialects = [
    "::mlir::arith::ArithDialect",
    "::mlir::quant::QuantDialect"
  ];
}

def QLRLowerToLinalgPass : Pass<"qlr-lower-to-linalg", "ModuleOp"> {
  let summary = "Lower qlr ops to linalg, tensor, arith and math on tensors";
  let description = [{
    The first step of every CPU lowering: after it the module contains no
    qlr op, only upstream dialects on tensors.

    * `qlr.linear` with a float weight becomes a `linalg.generic` contraction
      `y[m, n] = sum_k x[m, k] * w[n, k]` on the input collapsed to 2-D,
      plus a broadcast bias;
    * a low-rank weight `A·B` becomes two thin products `(x·Bᵀ)·Aᵀ` (plus
      `x·Qᵀ` for a quantized base): `A·B` is never materialised;
    * a quantized weight is decoded by a `linalg.generic` that reads the
      packed codes (docs/Design.md) and scales and feeds the contraction;
    * `qlr.rms_norm`, `qlr.layer_norm` and `qlr.batch_norm` become reductions
      and element-wise `linalg.generic` ops computed in f32.

    `qlr.quantize` (run-time quantization) has no lowering yet and is
    reported; so is a quantized or low-rank value that is not built by
    `qlr.pack` / `qlr.lowrank` in the same function (for example a function
    argument), whose storage the lowering cannot see.

    ```mlir
    %y = qlr.rms_norm %x, %w eps = 1.0e-5 : tensor<?x64xf32>, tensor<64xf32>
    // becomes a sum-of-squares reduction and an element-wise scaling
    ```
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect",
    "::mlir::linalg::LinalgDialect",
    "::mlir::math::MathDialect",
    "::mlir::tensor::TensorDialect"
  ];
}

def QLRDropArgumentResultsPass : Pass<"qlr-drop-argument-results", "ModuleOp"> {
  let summary = "Drop function results that return a buffer argument unchanged";
  let description = [{
    After bufferization, a function that updates writable tensor arguments
    in place returns those arguments' buffers. Upstream
    `drop-equivalent-buffer-results` removes such results from private
    functions only; entry points called from outside (the model's
    `@forward`, called by qlr-run through its C interface) keep them, and
    buffer deallocation would then clone every returned buffer on every call.
    This pass removes results that are exactly a block argument of the
    function, for public functions that are not called inside the module.

    ```mlir
    func.func @f(%a: memref<4xf32>) -> memref<4xf32> { return %a : memref<4xf32> }
    // becomes
    func.func @f(%a: memref<4xf32>) { return }
    ```
  }];
}

def QLRLowerContractionsPass : Pass<"qlr-lower-contractions", "ModuleOp"> {
  let summary = "Lower linear-layer contractions to shared, vectorised kernels";
  let description = [{
    Runs on bufferized IR. Every 2-D contraction that `qlr-lower-to-linalg`
    created for a linear layer (`linalg.generic` tagged `qlr.contraction`,
    `y[m, n] += sum_k x[m, k] * w[n, k]` with a static weight `[N, K]`)
    becomes a call to a private kernel function, one per `[N, K]`, shared by
    every layer of that shape (a 30-layer model compiles each kernel once).

    A kernel is a register-tiled loop nest in the `vector` dialect with two
    schedules, chosen at run time by the number of tokens:

    - Fewer than `packed-min-tokens` (decoding): dot products. Tiles of
      `rows` tokens x `cols` weight rows keep `rows * cols` accumulators of
      `vector-width` lanes along K, so every weight vector loaded is used for
      `rows` tokens; leftover rows and columns use smaller tiles and a masked
      read covers a `K` that is not a multiple of the vector width. Each
      accumulator is reduced across its lanes once per output.
    - From `packed-min-tokens` on (prefill, calibration): packed panels
      (with a fused decoder, of rows decoded into a stack buffer first).
      Each group of `panel-vectors * vector-width` weight rows is copied,
      transposed in registers (`vector.transpose` of width x width blocks),
      into a stack buffer 256 columns of K at a time; tiles of `panel-rows`
      tokens then accumulate outer products (one token value broadcast
      against the panel's vectors) and add whole vectors into `y`. Nothing
      is reduced across lanes, and the panels run in parallel.

    `K` may be dynamic in both operands (the Gram matrix `X^T X` that
    calibration computes over the tokens); the weight's `N` must be static.

    ```mlir
    linalg.generic {..., qlr.contraction} ins(%x, %w : memref<?x576xf32>, memref<1536x576xf32>) ...
    // becomes
    call @qlr_contraction_1536x576(%x, %w, %y) : (...) -> ()
    ```

    When the weight is a buffer filled by the decoder of a quantized weight
    (the `linalg.generic` tagged `qlr.dequantize`) and read only by linear
    contractions, the decoder is fused into the kernel instead: the kernel
    takes the codes, scales and zero points, decodes one block of `cols`
    weight rows at a time into a stack buffer and runs the tiles against it,
    so the float weight is never materialised (with many tokens, one panel
    of `panel-vectors * vector-width` rows at a time). Byte-aligned codes (8, 4 and
    2 bits) whose scale is constant over `vector-width` columns are decoded
    with vector operations; other formats clone the decoder's body element
    by element. Kernels are shared by layers with the same shape and
    decoder (`qlr_contraction_576x576_int4_g64_f16`).
  }];
  let options = [
    Option<"vectorWidth", "vector-width", "int64_t", /*default=*/"16",
           "Lanes per vector (16 f32 lanes fill an AVX-512 register, 8 an "
           "AVX2 one; qlr-cpu-pipeline's vector-width)">,
    Option<"rows", "rows", "int64_t", /*default=*/"4",
           "Tokens per register tile">,
    Option<"cols", "cols", "int64_t", /*default=*/"4",
           "Weight rows per register tile">,
    Option<"packedMinTokens", "packed-min-tokens", "int64_t",
           /*default=*/"8",
           "Float weights: from this many tokens on, the kernel runs on "
           "packed weight panels (0: never)">,
    Option<"panelRows", "panel-rows", "int64_t", /*default=*/"6",
           "Tokens per packed-panel register tile">,
    Option<"panelVectors", "panel-vectors", "int64_t", /*default=*/"2",
           "Vectors of weight rows per packed panel (panel-vectors x "
           "vector-width rows)">
  ];
  let dependentDialects = [
    "::mlir::arith::ArithDialect",
    "::mlir::func::FuncDialect",
    "::mlir::memref::MemRefDialect",
    "::mlir::scf::SCFDialect",
    "::mlir::vector::VectorDialect"
  ];
}

def QLRApproximateMathPass : Pass<"qlr-approximate-math", "ModuleOp"> {
  let summary = "Replace f32 math.exp with a polynomial approximation that "
                "LLVM can vectorise";
  let description = [{
    `math.exp` on f32 (scalars or vectors) becomes upstream MLIR's
    polynomial approximation (`populateMathPolynomialApproximationPatterns`:
    range reduction by ln 2, a polynomial, the exponent put back with
    integer operations): arithmetic only, so a loop of exps is vectorised by
    LLVM instead of calling libm's `expf` once per element. Selects around
    it keep the special values that the approximation's input clamp would
    lose: NaN stays NaN, results above FLT_MAX are +inf and results below
    FLT_MIN are 0 (`exp(-inf) = 0`, which causal masks rely on; denormal
    results are flushed). Elsewhere it is within a few ulp of libm
    (`test/python/test_approximate_math.py` measures it).
    `qlr-cpu-pipeline` runs it unless `approximate-math=false`. Other ops,
    and exps of other types, are left alone.

    ```mlir
    %e = math.exp %x : f32
    // becomes arith.mulf/math.floor/math.fma/arith.shli/... and a select
    // for the special cases
    ```
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect",
    "::mlir::math::MathDialect",
    "::mlir::vector::VectorDialect"
  ];
}

def QLRFuseElementwisePass : Pass<"qlr-fuse-elementwise", "ModuleOp"> {
  let summary = "Fuse element-wise linalg ops, but never into linear layers";
  let description = [{
    Upstream element-wise fusion, with one rule: a producer is never fused
    into a linear-layer contraction (`linalg.generic` tagged
    `qlr.contraction`). Fusing, say, `silu(gate) * up` into the down
    projection would recompute it for every output feature (N times the
    work) and hide the contraction from `qlr-lower-contractions`. A producer
    whose body reads its init (`out + x`, an accumulation) is not fused
    either: upstream fusion would keep that output over the consumer's
    loops and apply the update once per reduction iteration.
  }];
  let dependentDialects = ["::mlir::linalg::LinalgDialect"];
}

def QLRParallelizeLinalgPass : Pass<"qlr-parallelize-linalg", "ModuleOp"> {
  let summary = "Split large linalg ops on buffers across the OpenMP threads "
                "(scf.parallel over one parallel dimension)";
  let description = [{
    The element-wise, normalisation and attention work that is left as
    `linalg` ops after `qlr-lower-contractions` runs on one thread. With many
    tokens (prefill, calibration, the gradients of norm tweaking) it is a
    large share of the time and the other cores wait. This pass tiles every
    linalg op on buffers that is not already inside a parallel loop, and
    that has a parallel dimension, along one such dimension into
    `scf.parallel` (upstream `linalg::tileLinalgOp`), which
    `convert-scf-to-openmp` then runs on the OpenMP threads:

    - the dimension is the outermost parallel one with a dynamic size (the
      tokens or the cache rows in a model), otherwise the parallel one with
      the largest static size;
    - it is cut into `omp_get_max_threads()` chunks, but no chunk does less
      than `min-work` iterations of the whole op (counted at run time, with
      the sizes of the other dimensions), so a decode step's small ops run
      as one chunk (`qlr-serialize-single-chunks` then keeps them on the
      calling thread);
    - ops with a static size below `min-work` iterations are left alone.

    Every chunk writes a disjoint slice of the outputs (only parallel
    dimensions are cut), and each chunk's reductions run in the original
    order, so the results are bit-identical to the serial op's.

    ```mlir
    linalg.generic {iterator_types = ["parallel", "parallel"]}
        ins(%x : memref<?x576xf32>) outs(%y : memref<?x576xf32>) {...}
    // becomes, with %chunk = max(ceildiv(%T, threads), ceildiv(min-work, 576))
    // computed before the loop
    scf.parallel (%i) = (%c0) to (%T) step (%chunk) {
      %n = affine.min ...
      %xs = memref.subview %x[%i, 0] [%n, 576] [1, 1] ...
      %ys = memref.subview %y[%i, 0] [%n, 576] [1, 1] ...
      linalg.generic ... ins(%xs ...) outs(%ys ...) {...}
    }
    ```

    `qlr-cpu-pipeline` runs it when `openmp` is on.
  }];
  let options = [
    Option<"minWork", "min-work", "int64_t", /*default=*/"32768",
           "Fewest iterations of an op per chunk (>= 1)">
  ];
  let dependentDialects = [
    "::mlir::affine::AffineDialect",
    "::mlir::arith::ArithDialect",
    "::mlir::func::FuncDialect",
    "::mlir::memref::MemRefDialect",
    "::mlir::scf::SCFDialect"
  ];
}

def QLRSerializeSingleChunksPass
    : Pass<"qlr-serialize-single-chunks", "ModuleOp"> {
  let summary = "Run an omp.parallel region whose loop has one iteration on "
                "the calling thread (sets its if clause)";
  let description = [{
    After `convert-scf-to-openmp`, an `omp.parallel` whose only content is
    one `omp.wsloop` over a one-dimensional `omp.loop_nest` with bounds
    defined outside the region gets `if(ub - lb > step)`: a loop with a
    single iteration (a decode step's chunk, see `qlr-parallelize-linalg`)
    then runs on the calling thread without waking the team. Regions that
    already have an if clause, or other shapes, are left alone.
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect",
    "::mlir::omp::OpenMPDialect"
  ];
}

def QLROutlineLayersPass : Pass<"qlr-outline-layers", "ModuleOp"> {
  let summary = "Outline the repeated layers of a function into one shared "
                "function, so that each layer's code is generated once";
  let description = [{
    A model's `@forward` repeats the same layer dozens of times with other
    weights, and every later pass and LLVM would otherwise lower and compile
    each copy. This pass finds, in every function with one block, the
    longest stretch of top-level operations that repeats with some period
    (at least `min-ops` operations; constants do not count): operations
    match when they have the same name and operand and result types. The
    stretch is cut into pieces of one period each, at the phase where the
    fewest values are live across the cut (between layers, in a model), and
    every piece moves into a private function (`@forward_layer0`, ...,
    marked `no_inline`) that a call replaces. The values a piece reads from
    before become arguments, and so do the constants it reads that hold
    data (weights, tables: any elements attribute that is not a splat);
    scalar and splat constants are repeated inside.

    Pieces that differ only in the static offsets of `tensor.extract_slice`
    and `tensor.insert_slice` (a layer's position in a shared KV cache) get
    those offsets as `index` arguments instead, passed as constants by the
    calls. Pieces that are then equal (ignoring the `qlr.name` and
    `qlr.calibration_id` attributes, which generate no code) become one
    function that every call uses; a piece equal to no other is put back
    where it was. The function computes exactly what it computed before,
    with the same operations in the same order.

    Runs on tensors, before bufferization: one-shot bufferization across
    function boundaries then updates the caches a piece writes in place.

    ```mlir
    func.func @forward(%x: tensor<?x64xf32>, %cache: tensor<2x8x64xf32>) {
      // layer 0: weights %w0..., writes %cache[0, ...]
      // layer 1: weights %w1..., writes %cache[1, ...]
    }
    // becomes
    func.func private @forward_layer0(%x, %cache, %w..., %layer: index)
        attributes {no_inline}
    func.func @forward(...) {
      %y:2 = call @forward_layer0(%x, %cache, %w0..., %c0)
      %z:2 = call @forward_layer0(%y#0, %y#1, %w1..., %c1)
    }
    ```
  }];
  let options = [
    Option<"minOps", "min-ops", "int64_t", /*default=*/"16",
           "Fewest top-level operations (constants not counted) in a "
           "repeated piece (>= 1)">
  ];
  let dependentDialects = ["::mlir::arith::ArithDialect",
                           "::mlir::func::FuncDialect"];
}

def QLRSplitFunctionsPass : Pass<"qlr-split-functions", "ModuleOp"> {
  let summary = "Split long functions into calls of bounded pieces, so that "
                "LLVM compiles them in linear time";
  let description = [{
    A model's `@forward` is one straight-line function with thousands of
    loops (every layer's attention, norms and element-wise work), and LLVM
    analyses that walk dominator chains back to the entry for every loop
    make its compile time grow with the square of the function's length.
    This pass cuts the body of every function with more than
    `ops-per-function` top-level operations (constants and
    `memref.get_global` not counted) into consecutive pieces of between half
    and one and a half times that many operations, each cut placed where the
    fewest values are live across it (between layers, in a model). Each
    piece moves into a private function (`@forward_part0`,
    `@forward_part1`, ...) marked `no_inline`, and a call takes its place:
    the values it reads from before become arguments (constants and
    `memref.get_global` stay at the top of the function and are repeated
    inside instead) and the values read after it become results. Order and
    memory effects are those of the original body, so the program computes
    exactly the same thing. A buffer argument is marked `llvm.noalias` when
    it views a `memref.alloc`/`alloca` of the original function that no
    other argument of the piece reaches, which is what LLVM could prove
    before the split.

    ```mlir
    func.func @f(%a: memref<4xf32>) {
      op1 ... op300
      return
    }
    // with ops-per-function=128 becomes
    func.func @f(%a: memref<4xf32>) {
      %r = call @f_part0(%a) : ...
      %s = call @f_part1(%a, %r) : ...
      call @f_part2(%a, %s) : ...
      return
    }
    ```
  }];
  let options = [
    Option<"opsPerFunction", "ops-per-function", "int64_t", /*default=*/"256",
           "Top-level operations per piece (>= 1); shorter functions are "
           "left alone">
  ];
  let dependentDialects = ["::mlir::func::FuncDialect"];
}

//===----------------------------------------------------------------------===//
// GPU code generation
//===----------------------------------------------------------------------===//

def QLRFuseDequantizePass : Pass<"qlr-fuse-dequantize", "ModuleOp"> {
  let summary = "Fuse the decoder of a quantized weight into the linear "
                "layer or convolution that reads it";
  let description = [{
    Runs on linalg on tensors, after `qlr-lower-to-linalg`. A quantized
    weight is decoded by an element-wise `linalg.generic` (tagged
    `qlr.dequantize`) whose result feeds linear-layer contractions (tagged
    `qlr.contraction`). This pass fuses the decoder into every such
    contraction with upstream element-wise fusion, so the contraction reads
    the packed codes, scales and zero points directly and decodes each
    weight element where it multiplies it: the float weight is never
    materialised. Decoders with other users stay as they are for those
    users.

    Convolutions reading a decoded filter (`qlr.conv2d` lowers to upstream's
    named convolution, or a generic one for grouped and depthwise
    convolutions) are fused the same way, after named ops are generalized.
    A convolution's filter is the only operand indexed by the kernel-window
    loops alone, so the fused convolution gets an extra, never-read
    `tensor.empty` input of `i8` shaped like the kernel window (for example
    `tensor<8x3x3xi8>`) that keeps those loop ranges.

    This is the GPU pipeline's form of fused dequantization for linear
    layers; the CPU pipeline fuses those later, into its register-tiled
    kernels (`qlr-lower-contractions`), and runs this pass with
    `contractions=false`, for the convolutions.

    ```mlir
    %w = linalg.generic {...} ins(%scales) outs(%e) attrs = {qlr.dequantize = #fmt} {
      // reads %codes[n, k / 2], shifts, masks, scales
    } -> tensor<64x64xf32>
    %y = linalg.generic {...} ins(%x, %w) outs(%acc) attrs = {qlr.contraction} {...}
    // becomes
    %y = linalg.generic {...} ins(%x, %scales) outs(%acc) attrs = {qlr.contraction} {
      // decodes w[n, k] from %codes and %scales, then multiplies and adds
    }
    ```
  }];
  let options = [
    Option<"contractions", "contractions", "bool", /*default=*/"true",
           "Fuse into the linear-layer contractions too (the CPU pipeline "
           "leaves them to qlr-lower-contractions)">
  ];
  let dependentDialects = ["::mlir::linalg::LinalgDialect",
                           "::mlir::tensor::TensorDialect"];
}

def QLRGPUDistributePass : Pass<"qlr-gpu-distribute", "ModuleOp"> {
  let summary = "Turn every linalg op on buffers into a parallel loop nest "
                "tiled and mapped to GPU blocks and threads";
  let description = [{
    Runs on bufferized IR. Every top-level linalg op (and every
    `memref.copy`, which becomes a `linalg.copy` first) of a host function
    becomes one GPU kernel's worth of work:

    1. its loops are interchanged so that reductions are innermost, and it
       is converted to an `scf.parallel` over its parallel dimensions with
       sequential `scf.for` reductions inside (upstream
       `linalgOpToParallelLoops`);
    2. the parallel loop is tiled (upstream `tileParallelLoop`): the
       innermost parallel dimension in tiles of `block-size`, every other
       dimension in tiles of one;
    3. the outer (tile) loop is mapped to the grid: the innermost dimension
       to `block x`, the next ones to `block y` and `block z`, any further
       ones to a sequential loop in each block; the inner loop's innermost
       dimension is mapped to `thread x`.

    Upstream `convert-parallel-loops-to-gpu` then turns each mapped nest
    into a `gpu.launch`, with grid sizes computed on the host from the
    dynamic sizes (the number of tokens). Before that step the same loops
    run on the CPU (`qlr-gpu-pipeline{emulate=true}`), which is how the test
    suite checks the GPU kernels' schedules without a GPU.

    A reduction whose body is `out = combine(out, f(...))` with an
    associative float `combine` (`arith.addf`, `arith.maximumf`,
    `arith.maxnumf`) and one innermost reduction loop — a linear layer
    `y[m, n] = sum_k x[m, k] * w[n, k]` with its weight decoder fused by
    `qlr-fuse-dequantize`, a norm's sum of squares, attention's scores and
    softmax sums — gets one warp per output element instead: lane `l`
    combines the elements `k = l, l + 32, ...` (consecutive lanes read
    consecutive weights), a `gpu.subgroup_reduce` combines the 32 lanes and
    lane 0 writes the result; `block-size / 32` outputs share a block.
    With `lane-elements = E` a lane takes runs of E consecutive elements
    (`k = (l + 32 j) E + e`), unrolled, so that it reads consecutive packed
    codes and one scale per run.
    With `tokens-per-warp = T`, a warp computes T outputs along the
    parallel dimension outside the warps' when some input does not depend
    on it (a linear layer's tokens: the weight): the T bodies share the
    weight's loads and decoding, so a batch of T tokens reads each weight
    once instead of T times. Where that dimension's size is only known at
    run time, the host picks the T-token kernel for T or more tokens and
    the 1-token kernel otherwise (decoding).

    A `linalg.fill` of a fresh buffer with the reduction's identity (0 for
    a sum, -inf for a maximum) that only initialises such a reduction's
    output is folded into it: lane 0 stores the total instead of adding it,
    and the fill's kernel disappears (one launch less per linear layer).
    `lanes-in-sequence` replaces the warp reduction by a sequential loop
    over the lanes (for running the schedule on the CPU).

    Only ops at a function's top level become kernels; a linalg op or copy
    nested in host control flow is an error.

    ```mlir
    linalg.generic {iterator_types = ["parallel", "parallel", "reduction"]}
        ins(%x, %w : memref<?x64xf32>, memref<16x64xf32>) outs(%y : memref<?x16xf32>) {...}
    // becomes
    scf.parallel (%m, %n0) = ... step (%c1, %c4) {            // blocks
      scf.parallel (%warp, %lane) = ... to (%c4, %c32) {      // threads
        %part = scf.for %k = %lane to %c64 step %c32 iter_args(...) {...}
        %sum = gpu.subgroup_reduce add %part uniform : (f32) -> f32
        scf.if %lane_is_0 { memref.store ... }
      } {mapping = [thread_y, thread_x]}
    } {mapping = [block_y, block_x]}
    ```
  }];
  let options = [
    Option<"blockSize", "block-size", "int64_t", /*default=*/"128",
           "Threads per block along the innermost parallel dimension (a "
           "multiple of 32, at most 1024); an innermost dimension with fewer "
           "elements gets the next multiple of 32 above its size">,
    Option<"warpReductions", "warp-reductions", "bool", /*default=*/"true",
           "Give splittable reductions one warp per output element">,
    Option<"laneElements", "lane-elements", "int64_t", /*default=*/"1",
           "Consecutive reduction elements each lane of a warp reduction "
           "takes per step (a power of two, 1-64; used where 32 times it "
           "divides a static reduction size, else 1)">,
    Option<"tokensPerWarp", "tokens-per-warp", "int64_t", /*default=*/"4",
           "Outputs along the dimension outside the warps' (tokens of a "
           "linear layer) that one warp computes, sharing the loads and "
           "decoding of the inputs that do not depend on it (the weight); "
           "chosen when the kernel runs, so one token takes the 1-output "
           "kernel (1-32)">,
    Option<"lanesInSequence", "lanes-in-sequence", "bool",
           /*default=*/"false",
           "Combine a warp's lanes with a sequential loop instead of "
           "gpu.subgroup_reduce (CPU emulation of the schedule)">
  ];
  let dependentDialects = [
    "::mlir::affine::AffineDialect",
    "::mlir::arith::ArithDialect",
    "::mlir::gpu::GPUDialect",
    "::mlir::linalg::LinalgDialect",
    "::mlir::scf::SCFDialect"
  ];
}

def QLRGPULowerSubgroupReducePass
    : Pass<"qlr-gpu-lower-subgroup-reduce", "ModuleOp"> {
  let summary = "Lower warp reductions to shuffles";
  let description = [{
    NVVM has no lowering for a floating-point `gpu.subgroup_reduce`; this
    pass applies upstream's butterfly expansion into `gpu.shuffle xor` over
    32 lanes (5 shuffles and combines), which `convert-gpu-to-nvvm` lowers
    to `shfl.sync.bfly`.

    ```mlir
    %r = gpu.subgroup_reduce add %v uniform : (f32) -> f32
    // becomes
    %s1, %ok1 = gpu.shuffle xor %v, %c1, %c32 : f32
    %a1 = arith.addf %v, %s1 : f32
    ... // offsets 2, 4, 8, 16
    ```
  }];
  let dependentDialects = ["::mlir::gpu::GPUDialect"];
}

def QLRGPUDeviceMemoryPass : Pass<"qlr-gpu-device-memory", "ModuleOp"> {
  let summary = "Place a GPU model's buffers in device memory";
  let description = [{
    Runs after `convert-parallel-loops-to-gpu`, before kernel outlining. The
    host functions of a GPU model only compute sizes and launch kernels;
    every buffer lives in GPU memory:

    * `memref.alloc` / `memref.dealloc` in host code become `gpu.alloc` /
      `gpu.dealloc`;
    * a `memref.copy` left in host code becomes a `gpu.memcpy`;
    * constants a kernel reads (views of constant `memref.global`s, such
      as a RoPE table sliced at the position, and small weights below the
      size `qlr-compile` externalises) are sunk into the kernel with their
      views, so outlining places the global in the GPU module (device
      memory, loaded with it) instead of passing a host address; a mutable
      global read by a kernel is an error (host and device copies would
      diverge).

    Large weights are arguments of `@forward` (as in every compiled QLR
    model) and the runtime passes device buffers for them. A host operation
    that would read or write a buffer's elements (`memref.load`,
    `memref.store` outside a kernel) cannot run on device memory and is
    reported with its location, and so are host stack allocations and
    host copies of strided views.

    ```mlir
    %t = memref.alloc(%n) : memref<?xf32>
    memref.copy %a, %b : memref<4xf32> to memref<4xf32>
    // becomes
    %t = gpu.alloc (%n) : memref<?xf32>
    gpu.memcpy %b, %a : memref<4xf32>, memref<4xf32>
    ```
  }];
  let dependentDialects = [
    "::mlir::gpu::GPUDialect",
    "::mlir::memref::MemRefDialect"
  ];
}

def QLRGPUMergeKernelsPass : Pass<"qlr-gpu-merge-kernels", "ModuleOp"> {
  let summary = "Put every outlined kernel into one GPU module and share "
                "identical kernels";
  let description = [{
    Runs after `gpu-kernel-outlining`, which makes one `gpu.module` per
    `gpu.launch`. A model launches the same kernels in every layer (only
    their buffer arguments differ), so this pass moves all kernels into one
    `gpu.module @qlr_kernels`, keeps a single copy of kernels whose types,
    attributes and bodies are identical, and points every
    `gpu.launch_func` at the kept copy. Globals the kernels read move along
    (one copy per name). A 30-layer model then compiles and loads one GPU
    binary with each distinct kernel once.

    ```mlir
    gpu.module @forward_kernel { gpu.func @forward_kernel(...) kernel {...} }
    gpu.module @forward_kernel_0 { gpu.func @forward_kernel(...) kernel {...} }  // same body
    // becomes
    gpu.module @qlr_kernels { gpu.func @forward_kernel(...) kernel {...} }
    ```
  }];
  let dependentDialects = ["::mlir::gpu::GPUDialect"];
}

#endif // QLR_CONVERSION_PASSES_TD
