//===- SelfGenerate.cpp - Calibration text sampled from the model ---------===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// data=generate: the calibrating passes sample their calibration text from
// the module's own @forward (the Norm Tweaking recipe). @forward has the
// interface qlr-import gives it and qlr-run calls (tokens, position, logits,
// then caches it updates in place); qlr-batch turns it into a function of a
// batch of sequences, which is compiled once and decoded in lockstep, one
// token of every sequence per call, so that each weight is read once per
// step for the whole batch.
//
//===----------------------------------------------------------------------===//

#include "Calibration.h"

#include "qlr/Dialect/QLR/Transforms/Batch.h"
#include "qlr/Dialect/QLR/Utils/ModelInterface.h"
#include "qlr/Pipelines/Pipelines.h"
#include "qlr/Support/Progress.h"

#include "mlir/Bytecode/BytecodeWriter.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"
#include "mlir/ExecutionEngine/ExecutionEngine.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/Support/FormatVariadic.h"

#include <algorithm>
#include <cstdlib>
#include <random>

using namespace mlir;
using namespace mlir::qlr;

/// Sequences decoded together: the caches of a batch live at once.
static constexpr int64_t kGenerateBatch = 32;

/// Whether @forward has the model interface: (tokens tensor<?xi32>,
/// position index, logits tensor<?xV x f32>, static caches...) ->
/// (logits, caches...).
static LogicalResult
checkModelInterface(func::FuncOp forward, int64_t vocab,
                    llvm::function_ref<InFlightDiagnostic()> error) {
  FunctionType type = forward.getFunctionType();
  auto tensor = [&](unsigned i) {
    return i < type.getNumInputs()
               ? dyn_cast<RankedTensorType>(type.getInput(i))
               : RankedTensorType();
  };
  RankedTensorType tokens = tensor(0), logits = tensor(2);
  bool ok = tokens && tokens.getRank() == 1 &&
            tokens.getElementType().isInteger(32) && type.getNumInputs() >= 3 &&
            type.getInput(1).isIndex() && logits && logits.getRank() == 2 &&
            logits.getElementType().isF32() && !ShapedType::isDynamic(vocab) &&
            logits.getDimSize(1) == vocab &&
            type.getNumResults() == type.getNumInputs() - 2;
  for (unsigned i = 3; ok && i < type.getNumInputs(); ++i)
    ok = tensor(i) && tensor(i).hasStaticShape() &&
         tensor(i).getElementType().isF32() &&
         type.getResult(i - 2) == type.getInput(i);
  if (ok && type.getResult(0) == type.getInput(2))
    return success();
  error() << "data=generate samples text from @" << forward.getSymName()
          << " as qlr-run runs it, (tokens: tensor<?xi32>, position: index, "
             "logits: tensor<?xVOCABxf32>, caches...) -> (logits, "
             "caches...) with static cache shapes, but it has type "
          << type << "; give a text, .npy or .npz file instead";
  return failure();
}

/// Shrinks the cache rows of `forward` (the dimension of each cache argument
/// equal to the module's max_seq_len, in qlr.model) to `rows`, when the
/// caches are only written by tensor.insert_slice, read by
/// tensor.extract_slice and returned: a model imported with an 8192-token
/// context then needs caches for the calibration sequences only, not 32
/// full contexts. Leaves `forward` as it is otherwise.
static void shrinkCacheRows(ModuleOp module, func::FuncOp forward,
                            int64_t rows) {
  auto config = module->getAttrOfType<DictionaryAttr>(kModelAttrName);
  auto maxSeqLen =
      config ? config.getAs<IntegerAttr>("max_seq_len") : IntegerAttr();
  if (!maxSeqLen || maxSeqLen.getInt() <= rows)
    return;
  // The cache arguments, each with its rows dimension and the values that
  // carry it (the argument and the insert_slice chain into it).
  Block &body = forward.getBody().front();
  SmallVector<std::pair<BlockArgument, unsigned>> caches;
  SmallVector<Value> carriers;
  for (unsigned i = 3; i < forward.getNumArguments(); ++i) {
    auto type = cast<RankedTensorType>(body.getArgument(i).getType());
    auto dims = llvm::make_filter_range(
        llvm::seq<unsigned>(0, type.getRank()),
        [&](unsigned d) { return type.getDimSize(d) == maxSeqLen.getInt(); });
    if (llvm::range_size(dims) != 1)
      return;
    unsigned dim = *dims.begin();
    caches.emplace_back(body.getArgument(i), dim);
    SmallVector<Value> worklist{body.getArgument(i)};
    while (!worklist.empty()) {
      Value v = worklist.pop_back_val();
      carriers.push_back(v);
      for (OpOperand &use : v.getUses()) {
        Operation *user = use.getOwner();
        if (isa<func::ReturnOp>(user))
          continue;
        // Reads and writes that stay within `rows` rows where that is
        // known (the positions a calibration sequence uses do).
        auto fits = [&](OpFoldResult offset, OpFoldResult size) {
          std::optional<int64_t> o = getConstantIntValue(offset);
          std::optional<int64_t> n = getConstantIntValue(size);
          return (!n || *n <= rows) && (!o || !n || *o + *n <= rows);
        };
        if (auto read = dyn_cast<tensor::ExtractSliceOp>(user)) {
          if (!fits(read.getMixedOffsets()[dim], read.getMixedSizes()[dim]))
            return;
          continue;
        }
        auto insert = dyn_cast<tensor::InsertSliceOp>(user);
        if (!insert ||
            use.getOperandNumber() !=
                insert.getDestMutable().getOperandNumber() ||
            !fits(insert.getMixedOffsets()[dim], insert.getMixedSizes()[dim]))
          return;
        worklist.push_back(insert.getResult());
      }
    }
  }
  for (auto [arg, dim] : caches) {
    auto type = cast<RankedTensorType>(arg.getType());
    SmallVector<int64_t> shape(type.getShape());
    shape[dim] = rows;
    auto smaller = RankedTensorType::get(shape, type.getElementType());
    for (Value v : carriers)
      if (v.getType() == type)
        v.setType(smaller);
  }
  forward.setType(FunctionType::get(forward.getContext(),
                                    body.getArgumentTypes(),
                                    body.getTerminator()->getOperandTypes()));
}

namespace {
/// The batched @forward compiled for the host, in a context of its own (so
/// that the pass's context needs no LLVM dialects).
struct CompiledDecoder {
  std::unique_ptr<MLIRContext> context;
  OwningOpRef<ModuleOp> module;
  std::unique_ptr<ExecutionEngine> engine;
  void (*forward)(void **) = nullptr;
  std::vector<ExternalWeight> weights;
  /// The batched caches' shapes.
  std::vector<SmallVector<int64_t>> caches;
};
} // namespace

static FailureOr<CompiledDecoder>
compileDecoder(ModuleOp module, func::FuncOp forward, int64_t batch,
               int64_t seqLen, llvm::function_ref<InFlightDiagnostic()> error) {
  CompiledDecoder decoder;
  OwningOpRef<ModuleOp> copy = module.clone();
  for (auto func : llvm::make_early_inc_range(copy->getOps<func::FuncOp>()))
    if (func.getSymName() != forward.getSymName())
      func.erase();
  auto single = copy->lookupSymbol<func::FuncOp>(forward.getSymName());
  shrinkCacheRows(*copy, single, seqLen);
  SmallVector<unsigned> batched{0, 2};
  for (unsigned i = 3; i < single.getNumArguments(); ++i)
    batched.push_back(i);
  FailureOr<func::FuncOp> batchedFn =
      buildBatchedFunction(single, batched, batch, "forward_batched");
  if (failed(batchedFn)) {
    error() << "data=generate cannot batch @" << forward.getSymName()
            << " (see the error above); give a text or .npz file instead";
    return failure();
  }
  single.erase();
  batchedFn->setSymName("forward");
  (*batchedFn)
      ->setAttr("llvm.emit_c_interface", UnitAttr::get(module.getContext()));
  for (unsigned i = 3; i < batchedFn->getNumArguments(); ++i)
    decoder.caches.emplace_back(
        cast<RankedTensorType>(batchedFn->getArgumentTypes()[i]).getShape());
  FailureOr<std::vector<ExternalWeight>> weights =
      externalizeWeights(*batchedFn);
  if (failed(weights))
    return failure();
  // The tokens and the weights are read only (the weights are the source
  // module's blobs).
  auto readOnly = BoolAttr::get(module.getContext(), false);
  for (unsigned i = 0; i < batchedFn->getNumArguments(); ++i)
    if (i == 0 || i >= 3 + decoder.caches.size())
      batchedFn->setArgAttr(i, "bufferization.writable", readOnly);
  decoder.weights = std::move(*weights);
  // The C interface takes one pointer per argument, weights included (with
  // no result pointer when every result was an argument updated in place).
  unsigned expected = batchedFn->getNumArguments();

  // Into a context of its own through bytecode; the weights stay in the
  // source's blobs.
  std::string bytes;
  {
    llvm::raw_string_ostream os(bytes);
    if (failed(writeBytecodeToFile(*copy, os))) {
      error() << "data=generate: cannot serialize the decoder";
      return failure();
    }
  }
  copy = nullptr;
  DialectRegistry registry;
  registerJitDialects(registry);
  decoder.context = std::make_unique<MLIRContext>(
      registry, module.getContext()->isMultithreadingEnabled()
                    ? MLIRContext::Threading::ENABLED
                    : MLIRContext::Threading::DISABLED);
  std::string diagnostics;
  llvm::raw_string_ostream os(diagnostics);
  ScopedDiagnosticHandler handler(decoder.context.get(), [&](Diagnostic &d) {
    if (d.getSeverity() == DiagnosticSeverity::Error)
      os << d.getLocation() << ": " << d << "\n";
    return success();
  });
  ParserConfig config(decoder.context.get());
  decoder.module = parseSourceString<ModuleOp>(bytes, config);
  bool openmp = JitModule::supportsThreads() &&
                module.getContext()->isMultithreadingEnabled();
  PassManager pm(decoder.context.get(), ModuleOp::getOperationName());
  CPUPipelineOptions pipelineOptions;
  configureCPUPipeline(pipelineOptions, ::qlr::numerics::simdLevel(), openmp);
  buildCPUPipeline(pm, pipelineOptions);
  if (!decoder.module || failed(pm.run(*decoder.module))) {
    error() << "data=generate: qlr-cpu-pipeline failed on the batched @"
            << forward.getSymName() << ": " << diagnostics;
    return failure();
  }
  // The logits and caches must be updated in place: the C interface then
  // takes exactly the arguments and weights.
  auto entry =
      decoder.module->lookupSymbol<LLVM::LLVMFuncOp>("_mlir_ciface_forward");
  if (!entry || entry.getNumArguments() != expected) {
    error() << "data=generate: the compiled @" << forward.getSymName()
            << " does not update its logits and caches in place (its "
               "results must be insertions into those arguments)";
    return failure();
  }
  JitEngineOptions engineOptions;
  // -O1: on SmolLM2-135M it compiles in 29 s instead of 38 s (-O2) and
  // decodes as fast; -O0 compiles in 5 s but decodes five times slower.
  engineOptions.optLevel = 1;
  engineOptions.openmp = openmp;
  engineOptions.name = "qlr-generate";
  auto engine = createJitEngine(*decoder.module, engineOptions);
  if (!engine) {
    error() << "data=generate: " << llvm::toString(engine.takeError());
    return failure();
  }
  decoder.engine = std::move(*engine);
  auto symbol = decoder.engine->lookupPacked("_mlir_ciface_forward");
  if (!symbol) {
    error() << "data=generate: " << llvm::toString(symbol.takeError());
    return failure();
  }
  decoder.forward = *symbol;
  return decoder;
}

FailureOr<std::vector<int32_t>>
mlir::qlr::generateCalibrationTokens(ModuleOp module, StringRef pass,
                                     const CalibrationSpec &spec) {
  auto error = [&]() { return emitError(module.getLoc()) << pass << ": "; };
  auto forward = module.lookupSymbol<func::FuncOp>(kForwardFuncName);
  if (!forward || forward.isExternal()) {
    error() << "data=generate samples text from the module's @forward "
               "(a language model as qlr-import makes it), and it has none; "
               "give a text, .npy or .npz file instead";
    return failure();
  }
  int64_t vocab = ShapedType::kDynamic;
  if (forward.getNumArguments() > 2)
    if (auto logits = dyn_cast<RankedTensorType>(forward.getArgumentTypes()[2]))
      if (logits.getRank() == 2)
        vocab = logits.getDimSize(1);
  if (failed(checkModelInterface(forward, vocab, error)))
    return failure();
  // The caches hold max_seq_len rows (the calibration options were checked
  // against it); without it nothing bounds the positions decoded.
  auto config = module->getAttrOfType<DictionaryAttr>(kModelAttrName);
  if (!config || !config.getAs<IntegerAttr>("max_seq_len")) {
    error() << "data=generate needs the module's context length (max_seq_len "
               "in the "
            << kModelAttrName
            << " attribute qlr-import writes); give a text, .npy or .npz file "
               "instead";
    return failure();
  }
  int64_t samples = spec.samples, seqLen = spec.seqLen;
  int64_t batch = std::min(samples, kGenerateBatch);

  FailureOr<CompiledDecoder> decoder;
  {
    ::qlr::Progress compiling(pass, "compiling the batched @forward", 1);
    decoder = compileDecoder(module, forward, batch, seqLen, error);
    if (failed(decoder))
      return failure();
    compiling.step(llvm::formatv("{0} sequences per call", batch).str());
  }
  ::qlr::Progress progress(pass, "generating calibration text",
                           (samples + batch - 1) / batch * (seqLen - 1));

  // Token 0 of every sequence uniform over the vocabulary (all drawn
  // first, in sequence order); tokens 1..4 greedy; then sampled at
  // temperature 1 with one draw per sequence and step.
  constexpr int64_t kGreedyTokens = 4;
  std::vector<int32_t> tokens(samples * seqLen);
  std::mt19937_64 rng(spec.seed);
  for (int64_t s = 0; s < samples; ++s)
    tokens[s * seqLen] = int32_t(rng() % uint64_t(vocab));

  std::vector<float> logits(batch * vocab);
  std::vector<int32_t> step(batch);
  std::vector<std::vector<float>> caches;
  std::vector<double> probabilities(vocab);
  for (int64_t first = 0; first < samples; first += batch) {
    int64_t count = std::min(batch, samples - first);
    caches.clear();
    for (const SmallVector<int64_t> &shape : decoder->caches) {
      int64_t elements = 1;
      for (int64_t d : shape)
        elements *= d;
      caches.emplace_back(elements, 0.0f);
    }
    // The arguments point at the same buffers for every step of the batch:
    // the packed interface takes a pointer to each argument (memrefs are
    // pointers to their descriptors; the position an i64).
    std::vector<SmallVector<int64_t>> descriptors;
    descriptors.push_back(rowMajorDescriptor(step.data(), {batch, 1}));
    descriptors.push_back(rowMajorDescriptor(logits.data(), {batch, 1, vocab}));
    for (auto [cache, shape] : llvm::zip(caches, decoder->caches))
      descriptors.push_back(rowMajorDescriptor(cache.data(), shape));
    for (const ExternalWeight &weight : decoder->weights)
      descriptors.push_back(
          rowMajorDescriptor(weight.data.data(), weight.shape));
    std::vector<void *> values;
    for (SmallVector<int64_t> &d : descriptors)
      values.push_back(d.data());
    int64_t position = 0;
    std::vector<void *> args;
    args.push_back(&values[0]);
    args.push_back(&position);
    for (size_t i = 1; i < values.size(); ++i)
      args.push_back(&values[i]);

    for (int64_t pos = 0; pos + 1 < seqLen; ++pos) {
      for (int64_t s = 0; s < batch; ++s)
        step[s] = s < count ? tokens[(first + s) * seqLen + pos] : 0;
      position = pos;
      decoder->forward(args.data());

      bool greedy = pos < kGreedyTokens;
      for (int64_t s = 0; s < count; ++s) {
        const float *row = logits.data() + s * vocab;
        int64_t next = 0;
        if (greedy) {
          next = std::max_element(row, row + vocab) - row;
        } else {
          float maximum = *std::max_element(row, row + vocab);
          double sum = 0;
          for (int64_t v = 0; v < vocab; ++v) {
            probabilities[v] = std::exp(double(row[v]) - double(maximum));
            sum += probabilities[v];
          }
          // A uniform double in [0, 1) from the top 53 bits of one draw.
          double u = double(rng() >> 11) * 0x1.0p-53 * sum;
          next = vocab - 1;
          double cumulative = 0;
          for (int64_t v = 0; v < vocab; ++v) {
            cumulative += probabilities[v];
            if (u < cumulative) {
              next = v;
              break;
            }
          }
        }
        tokens[(first + s) * seqLen + pos + 1] = int32_t(next);
      }
      progress.step(llvm::formatv("sequences {0}-{1}, token {2}/{3}", first + 1,
                                  first + count, pos + 2, seqLen)
                        .str());
    }
  }
  return tokens;
}
