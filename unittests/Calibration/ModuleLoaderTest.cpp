//===- ModuleLoaderTest.cpp - LlamaModel from imported modules ------------===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// Loads synthetic imported modules into the float32 engine and checks its
// logits against the JIT-compiled module (ModelRunner), including modules
// whose weights were replaced by qlr.pack / qlr.lowrank of constants.
//
//===----------------------------------------------------------------------===//

#include "TestModels.h"

#include "qlr/Calibration/ModuleLoader.h"
#include "qlr/Dialect/QLR/IR/QLR.h"
#include "qlr/Dialect/QLR/Utils/ConstantData.h"
#include "qlr/Import/LlamaImporter.h"
#include "qlr/Numerics/Packing.h"
#include "qlr/Numerics/Quantize.h"
#include "qlr/Runtime/ModelRunner.h"

#include "mlir/AsmParser/AsmParser.h"
#include "mlir/Bytecode/BytecodeWriter.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/IR/AsmState.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/DialectResourceBlobManager.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Parser/Parser.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/raw_ostream.h"

#include "gtest/gtest.h"

#include <cmath>
#include <random>

using namespace mlir;
using namespace mlir::qlr;
using ::qlr::calibration::Activations;
using ::qlr::calibration::LlamaModel;
using ::qlr::checkpoint::ModelConfig;
namespace numerics = ::qlr::numerics;

namespace {

ModelConfig gqaConfig() {
  ModelConfig c;
  c.dim = 48;
  c.hiddenDim = 80;
  c.numLayers = 2;
  c.numHeads = 6;
  c.numKVHeads = 2;
  c.headDim = 8;
  c.vocabSize = 96;
  c.maxSeqLen = 32;
  c.normEps = 1e-5f;
  c.ropeTheta = 500000.0f;
  c.tiedEmbeddings = false;
  return c;
}

OwningOpRef<ModuleOp>
importSynthetic(MLIRContext &ctx, const ModelConfig &config, uint64_t seed) {
  auto checkpoint = createSyntheticCheckpoint(config, seed);
  auto module = importLlama(&ctx, *checkpoint, nullptr, ImportOptions());
  if (failed(module))
    return {};
  return std::move(*module);
}

/// Writes `module` to a temporary bytecode file, JIT-compiles it and returns
/// the logits of every sequence (each run from position 0).
std::vector<float> jitLogits(ModuleOp module, ArrayRef<int32_t> tokens,
                             int64_t sequences, int64_t seqLen) {
  llvm::SmallString<128> path;
  if (llvm::sys::fs::createTemporaryFile("qlr-calib", "mlirbc", path)) {
    ADD_FAILURE() << "cannot create a temporary file";
    return {};
  }
  {
    std::error_code ec;
    llvm::raw_fd_ostream os(path, ec);
    if (ec || failed(writeBytecodeToFile(module, os))) {
      ADD_FAILURE() << "cannot write " << path.str().str();
      return {};
    }
  }
  RunnerOptions options;
  options.threads = 1;
  auto runner = ModelRunner::load(path, options);
  llvm::sys::fs::remove(path);
  if (!runner) {
    ADD_FAILURE() << llvm::toString(runner.takeError());
    return {};
  }
  int64_t vocab = (*runner)->config().vocabSize;
  std::vector<float> logits(sequences * seqLen * vocab);
  for (int64_t s = 0; s < sequences; ++s) {
    llvm::Error error =
        (*runner)->forward(tokens.slice(s * seqLen, seqLen), 0,
                           MutableArrayRef<float>(logits).slice(
                               s * seqLen * vocab, seqLen * vocab));
    if (error) {
      ADD_FAILURE() << llvm::toString(std::move(error));
      return {};
    }
  }
  return logits;
}

/// Largest |a - b| relative to the largest |b|.
double relativeError(ArrayRef<float> a, ArrayRef<float> b) {
  EXPECT_EQ(a.size(), b.size());
  double maxDiff = 0, maxRef = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    maxDiff = std::max(maxDiff, std::abs(double(a[i]) - double(b[i])));
    maxRef = std::max(maxRef, std::abs(double(b[i])));
  }
  return maxDiff / std::max(maxRef, 1e-30);
}

/// How far relativeError(engine logits, JIT logits) may be: two float32
/// evaluations (OpenBLAS and the JIT's kernels) that sum in different orders;
/// see forwardTolerance (1.3e-4 for gqaConfig, 20 tokens; measured ~1e-6).
double jitTolerance(const LlamaModel &model, int64_t seqLen) {
  return ::qlr::calibration::test::forwardTolerance(
      model.config(), seqLen, model.config().layers, /*logits=*/true);
}

std::vector<int32_t> tokensFor(int64_t count, int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> tokens(count);
  for (int32_t &t : tokens)
    t = int32_t(rng() % uint64_t(vocab));
  return tokens;
}

/// The constant called `name` in `module`.
arith::ConstantOp findConstant(ModuleOp module, StringRef name) {
  arith::ConstantOp found;
  module.walk([&](arith::ConstantOp op) {
    if (auto r = dyn_cast<DenseResourceElementsAttr>(op.getValue()))
      if (r.getRawHandle().getKey() == name)
        found = op;
  });
  return found;
}

Value byteResource(OpBuilder &b, Location loc, RankedTensorType type,
                   StringRef name, ArrayRef<uint8_t> bytes) {
  auto attr = DenseResourceElementsAttr::get(
      type, name, HeapAsmResourceBlob::allocateAndCopyInferAlign(bytes));
  return arith::ConstantOp::create(b, loc, type, attr);
}

Value floatResource(OpBuilder &b, Location loc, RankedTensorType type,
                    StringRef name, ArrayRef<float> values) {
  auto attr = DenseResourceElementsAttr::get(
      type, name, HeapAsmResourceBlob::allocateAndCopyInferAlign(values));
  return arith::ConstantOp::create(b, loc, type, attr);
}

/// Quantizes the weight constant `name` with RTN in `formatText` and
/// replaces its uses by a qlr.pack of a NAME.codes resource and inline
/// (dense) scales and zero points. Returns the dequantized weight.
std::vector<float> replaceByPack(ModuleOp module, StringRef name,
                                 StringRef formatText) {
  MLIRContext *ctx = module.getContext();
  arith::ConstantOp constant = findConstant(module, name);
  EXPECT_TRUE(constant) << name.str();
  if (!constant)
    return {};
  auto type = cast<RankedTensorType>(constant.getType());
  auto format = dyn_cast_or_null<FormatAttr>(parseAttribute(formatText, ctx));
  EXPECT_TRUE(format);
  auto values =
      readFloats(cast<ElementsAttr>(constant.getValue()), constant.getLoc());
  EXPECT_TRUE(succeeded(values));
  numerics::QuantFormat fmt = format.toNumerics(type.getRank());
  numerics::QuantizedData q =
      numerics::quantizeRTN(*values, type.getShape(), fmt);
  auto qtype =
      QTensorType::get(ctx, type.getShape(), type.getElementType(), format);
  OpBuilder b(constant);
  Location loc = constant.getLoc();
  Value codes =
      byteResource(b, loc, qtype.getCodesType(), (name + ".codes").str(),
                   numerics::packCodes(q.codes, type.getShape(), fmt.bits));
  Value scales = createFloatConstant(b, loc, qtype.getScalesType(), q.scales);
  Value zeroPoints;
  if (RankedTensorType zpType = qtype.getZeroPointsType())
    zeroPoints = createIntegerConstant(
        b, loc, zpType,
        std::vector<int64_t>(q.zeroPoints.begin(), q.zeroPoints.end()));
  Value pack = PackOp::create(b, loc, qtype, codes, scales, zeroPoints);
  constant.getResult().replaceAllUsesWith(pack);
  constant.erase();
  return numerics::dequantize(q, type.getShape(), fmt);
}

class ModuleLoaderTest : public ::testing::Test {
protected:
  ModuleLoaderTest() { context.loadDialect<QLRDialect, arith::ArithDialect>(); }

  /// Loads `module`; fails the test (and returns nullopt) on error.
  std::optional<LlamaModel> load(ModuleOp module) {
    FailureOr<LlamaModel> model = loadLlamaModel(module);
    EXPECT_TRUE(succeeded(model));
    if (failed(model))
      return std::nullopt;
    return std::move(*model);
  }

  MLIRContext context;
};

/// The engine's logits match the compiled module's on a grouped-query model
/// (untied classifier) and a multi-head model (tied), for several sequences.
TEST_F(ModuleLoaderTest, LogitsMatchJit) {
  ModelConfig mha = gqaConfig();
  mha.numHeads = mha.numKVHeads = 4;
  mha.headDim = 12;
  mha.tiedEmbeddings = true;
  mha.ropeTheta = 10000.0f;
  for (const ModelConfig &config : {gqaConfig(), mha}) {
    OwningOpRef<ModuleOp> module = importSynthetic(context, config, 17);
    ASSERT_TRUE(module);
    std::optional<LlamaModel> model = load(*module);
    ASSERT_TRUE(model);
    EXPECT_EQ(model->config().heads, config.numHeads);
    EXPECT_EQ(model->config().kvHeads, config.numKVHeads);
    EXPECT_EQ(model->config().tiedEmbeddings, config.tiedEmbeddings);
    EXPECT_EQ(model->config().ropeTheta, double(config.ropeTheta));

    const int64_t sequences = 3, seqLen = 20;
    std::vector<int32_t> tokens =
        tokensFor(sequences * seqLen, config.vocabSize, 5);
    std::vector<float> expected = jitLogits(*module, tokens, sequences, seqLen);
    std::vector<float> actual =
        model->logits(model->forward(tokens, sequences, seqLen));
    EXPECT_LT(relativeError(actual, expected), jitTolerance(*model, seqLen))
        << "heads " << config.numHeads << " kv " << config.numKVHeads;
  }
}

/// A weight replaced by qlr.pack of NAME.codes (plus dense scales and zero
/// points) loads as its dequantized value, and the engine still matches the
/// compiled module.
TEST_F(ModuleLoaderTest, PackedWeightIsDequantized) {
  ModelConfig config = gqaConfig();
  OwningOpRef<ModuleOp> module = importSynthetic(context, config, 23);
  ASSERT_TRUE(module);
  std::optional<LlamaModel> original = load(*module);
  ASSERT_TRUE(original);

  std::vector<float> wq =
      replaceByPack(*module, "layers.0.attention.wq",
                    "#qlr.format<int4, group = 16, asymmetric, scale = f16>");
  std::vector<float> w2 = replaceByPack(*module, "layers.1.feed_forward.w2",
                                        "#qlr.format<nf4, channel = 0>");
  ASSERT_TRUE(succeeded(verify(*module)));
  std::optional<LlamaModel> model = load(*module);
  ASSERT_TRUE(model);
  EXPECT_EQ(model->block(0).wq, wq);
  EXPECT_EQ(model->block(1).w2, w2);
  EXPECT_NE(model->block(0).wq, original->block(0).wq);
  EXPECT_EQ(model->block(0).wk, original->block(0).wk);
  EXPECT_EQ(model->block(1).w1, original->block(1).w1);
  EXPECT_EQ(model->weights().output, original->weights().output);

  const int64_t sequences = 2, seqLen = 9;
  std::vector<int32_t> tokens =
      tokensFor(sequences * seqLen, config.vocabSize, 8);
  std::vector<float> expected = jitLogits(*module, tokens, sequences, seqLen);
  std::vector<float> actual =
      model->logits(model->forward(tokens, sequences, seqLen));
  EXPECT_LT(relativeError(actual, expected), jitTolerance(*model, seqLen));
}

/// qlr.lowrank of NAME.lora_a / NAME.lora_b on a packed base loads as
/// A·B + dequantize(base), and the engine matches the compiled module.
TEST_F(ModuleLoaderTest, LowRankWeightIsExpanded) {
  ModelConfig config = gqaConfig();
  OwningOpRef<ModuleOp> module = importSynthetic(context, config, 29);
  ASSERT_TRUE(module);
  std::string name = "layers.1.attention.wo";
  std::vector<float> base =
      replaceByPack(*module, name, "#qlr.format<int3, group = 16>");
  arith::ConstantOp codes = findConstant(*module, name + ".codes");
  ASSERT_TRUE(codes);
  auto pack = cast<PackOp>(*codes->getUsers().begin());
  auto qtype = cast<QTensorType>(pack.getType());
  int64_t m = qtype.getShape()[0], n = qtype.getShape()[1], r = 3;
  std::mt19937_64 rng(4);
  std::uniform_real_distribution<float> dist(-0.2f, 0.2f);
  std::vector<float> a(m * r), b(r * n);
  for (float &v : a)
    v = dist(rng);
  for (float &v : b)
    v = dist(rng);
  OpBuilder builder(pack->getBlock(), std::next(pack->getIterator()));
  Location loc = pack.getLoc();
  Type f32 = builder.getF32Type();
  Value aValue = floatResource(builder, loc, RankedTensorType::get({m, r}, f32),
                               name + ".lora_a", a);
  Value bValue = floatResource(builder, loc, RankedTensorType::get({r, n}, f32),
                               name + ".lora_b", b);
  auto type = LowRankType::get(&context, qtype.getShape(), f32, r,
                               qtype.getFormat(), FormatAttr(), FormatAttr());
  auto lowRank = LowRankOp::create(builder, loc, type, aValue, bValue, pack);
  pack.getResult().replaceAllUsesExcept(lowRank.getResult(), lowRank);
  ASSERT_TRUE(succeeded(verify(*module)));

  std::optional<LlamaModel> model = load(*module);
  ASSERT_TRUE(model);
  const std::vector<float> &wo = model->block(1).wo;
  ASSERT_EQ(int64_t(wo.size()), m * n);
  // The loader's A·B is a float sgemm of length 3 (<= 3 * 2^-24 * sum |a b|
  // <= 2.2e-8 for |a|, |b| <= 0.2), plus the base (|base| < 0.3): one more
  // rounding of |wo| < 0.5 (3e-8). 1e-6 leaves 20x.
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double expected = base[i * n + j];
      for (int64_t k = 0; k < r; ++k)
        expected += double(a[i * r + k]) * double(b[k * n + j]);
      EXPECT_NEAR(wo[i * n + j], expected, 1e-6) << i << ", " << j;
    }

  const int64_t sequences = 2, seqLen = 7;
  std::vector<int32_t> tokens =
      tokensFor(sequences * seqLen, config.vocabSize, 9);
  std::vector<float> expected = jitLogits(*module, tokens, sequences, seqLen);
  std::vector<float> actual =
      model->logits(model->forward(tokens, sequences, seqLen));
  EXPECT_LT(relativeError(actual, expected), jitTolerance(*model, seqLen));
}

/// With tied embeddings, a compressed classifier becomes `output` while the
/// float table stays the embedding.
TEST_F(ModuleLoaderTest, TiedCompressedClassifierIsUntied) {
  ModelConfig config = gqaConfig();
  config.tiedEmbeddings = true;
  OwningOpRef<ModuleOp> module = importSynthetic(context, config, 31);
  ASSERT_TRUE(module);
  std::optional<LlamaModel> original = load(*module);
  ASSERT_TRUE(original);
  EXPECT_TRUE(original->config().tiedEmbeddings);
  EXPECT_TRUE(original->weights().output.empty());

  // Quantize only the classifier's use of tok_embeddings.
  arith::ConstantOp table = findConstant(*module, "tok_embeddings");
  ASSERT_TRUE(table);
  LinearOp classifier;
  module->walk([&](LinearOp op) {
    if (op.getWeight() == table.getResult())
      classifier = op;
  });
  ASSERT_TRUE(classifier);
  OpBuilder builder(classifier);
  auto format = cast<FormatAttr>(
      parseAttribute("#qlr.format<int8, channel = 0>", &context));
  auto type = cast<RankedTensorType>(table.getType());
  numerics::QuantFormat fmt = format.toNumerics(2);
  numerics::QuantizedData q = numerics::quantizeRTN(
      *readFloats(cast<ElementsAttr>(table.getValue()), table.getLoc()),
      type.getShape(), fmt);
  auto qtype = QTensorType::get(&context, type.getShape(),
                                type.getElementType(), format);
  Location loc = classifier.getLoc();
  Value codes =
      byteResource(builder, loc, qtype.getCodesType(), "tok_embeddings.codes",
                   numerics::packCodes(q.codes, type.getShape(), fmt.bits));
  Value scales = floatResource(builder, loc, qtype.getScalesType(),
                               "tok_embeddings.scales", q.scales);
  Value pack = PackOp::create(builder, loc, qtype, codes, scales, Value());
  classifier.getWeightMutable().assign(pack);
  ASSERT_TRUE(succeeded(verify(*module)));

  std::optional<LlamaModel> model = load(*module);
  ASSERT_TRUE(model);
  EXPECT_FALSE(model->config().tiedEmbeddings);
  EXPECT_EQ(model->weights().tokEmbeddings, original->weights().tokEmbeddings);
  EXPECT_EQ(model->weights().output,
            numerics::dequantize(q, type.getShape(), fmt));

  const int64_t sequences = 2, seqLen = 6;
  std::vector<int32_t> tokens =
      tokensFor(sequences * seqLen, config.vocabSize, 10);
  std::vector<float> expected = jitLogits(*module, tokens, sequences, seqLen);
  std::vector<float> actual =
      model->logits(model->forward(tokens, sequences, seqLen));
  EXPECT_LT(relativeError(actual, expected), jitTolerance(*model, seqLen));
}

/// Collects the error messages emitted while it lives.
struct ErrorCollector {
  explicit ErrorCollector(MLIRContext &ctx)
      : handler(&ctx, [this](Diagnostic &d) {
          messages += d.str() + "\n";
          return success();
        }) {}
  std::string messages;
  ScopedDiagnosticHandler handler;
};

/// A weight whose resource was renamed is found by its position; a weight
/// that is not a constant, and a module without `qlr.model`, are errors.
TEST_F(ModuleLoaderTest, PositionalFallbackAndErrors) {
  ModelConfig config = gqaConfig();
  OwningOpRef<ModuleOp> module = importSynthetic(context, config, 37);
  ASSERT_TRUE(module);
  std::optional<LlamaModel> original = load(*module);
  ASSERT_TRUE(original);

  // Inline dense<...> weights have no name: found by position.
  for (StringRef name : {"layers.1.ffn_norm", "layers.0.feed_forward.w1",
                         "layers.0.feed_forward.w3", "norm"}) {
    arith::ConstantOp constant = findConstant(*module, name);
    ASSERT_TRUE(constant);
    OpBuilder builder(constant);
    Value dense = createFloatConstant(
        builder, constant.getLoc(), cast<RankedTensorType>(constant.getType()),
        *readFloats(cast<ElementsAttr>(constant.getValue()),
                    constant.getLoc()));
    constant.getResult().replaceAllUsesWith(dense);
    constant.erase();
  }
  std::optional<LlamaModel> renamed = load(*module);
  ASSERT_TRUE(renamed);
  EXPECT_EQ(renamed->block(1).ffnNorm, original->block(1).ffnNorm);
  EXPECT_EQ(renamed->block(0).w1, original->block(0).w1);
  EXPECT_EQ(renamed->block(0).w3, original->block(0).w3);
  EXPECT_EQ(renamed->weights().norm, original->weights().norm);

  // The final norm's weight computed at run time: not readable.
  RMSNormOp finalNorm;
  module->walk([&](RMSNormOp op) { finalNorm = op; });
  ASSERT_TRUE(finalNorm);
  OpBuilder builder(finalNorm);
  Value weight = finalNorm.getWeight();
  Value doubled =
      arith::AddFOp::create(builder, finalNorm.getLoc(), weight, weight);
  finalNorm.getWeightMutable().assign(doubled);
  {
    ErrorCollector errors(context);
    EXPECT_TRUE(failed(loadLlamaModel(*module)));
    EXPECT_NE(errors.messages.find("weight is not a constant"),
              std::string::npos)
        << errors.messages;
    EXPECT_NE(errors.messages.find("cannot read weight 'norm'"),
              std::string::npos)
        << errors.messages;
  }

  (*module)->removeAttr("qlr.model");
  {
    ErrorCollector errors(context);
    EXPECT_TRUE(failed(loadLlamaModel(*module)));
    EXPECT_NE(errors.messages.find("no 'qlr.model' attribute"),
              std::string::npos)
        << errors.messages;
  }
}

/// A weight that is neither a constant nor built from constants is an
/// error naming it.
TEST_F(ModuleLoaderTest, MissingWeightIsAnError) {
  ModelConfig config = gqaConfig();
  OwningOpRef<ModuleOp> module = importSynthetic(context, config, 41);
  ASSERT_TRUE(module);
  arith::ConstantOp wv = findConstant(*module, "layers.1.attention.wv");
  ASSERT_TRUE(wv);
  // Computed at run time (an extension of an f16 constant): not readable.
  OpBuilder builder(wv);
  auto type = cast<RankedTensorType>(wv.getType());
  Value other = arith::ConstantOp::create(
      builder, wv.getLoc(),
      DenseElementsAttr::get(
          RankedTensorType::get(type.getShape(), builder.getF16Type()),
          builder.getF16FloatAttr(0.5).getValue()));
  Value cast = arith::ExtFOp::create(builder, wv.getLoc(), type, other);
  wv.getResult().replaceAllUsesWith(cast);
  wv.erase();
  ErrorCollector errors(context);
  EXPECT_TRUE(failed(loadLlamaModel(*module)));
  EXPECT_NE(errors.messages.find("cannot read weight 'layers.1.attention.wv'"),
            std::string::npos)
      << errors.messages;
}

} // namespace
