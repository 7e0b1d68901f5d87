//===- SyntheticCheckpoint.cpp - A random LLaMA for demos/tests -*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#include "qlr/Import/LlamaImporter.h"

#include "qlr/Dialect/QLR/IR/QLR.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/DialectResourceBlobManager.h"
#include "llvm/ADT/APFloat.h"
#include "llvm/ADT/Hashing.h"
#include "llvm/Support/FormatVariadic.h"

#include <array>
#include <cmath>
#include <cstring>

using namespace mlir;
using namespace mlir::qlr;
using ::qlr::checkpoint::Checkpoint;
using ::qlr::checkpoint::DType;
using ::qlr::checkpoint::ModelConfig;
using ::qlr::checkpoint::TensorInfo;
using ::qlr::tokenizer::TokenizerData;

namespace {
/// splitmix64: a tiny, well-mixed generator for reproducible weights.
uint64_t splitmix64(uint64_t &state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/// A uniform double in [0, 1).
double uniform(uint64_t &state) {
  return double(splitmix64(state) >> 11) * 0x1.0p-53;
}

/// The attention and feed-forward matrices (what skipLinearWeights skips).
bool isLayerMatrix(llvm::StringRef name) {
  return name.contains(".attention.w") || name.contains(".feed_forward.w");
}

class SyntheticCheckpoint : public Checkpoint {
public:
  SyntheticCheckpoint(const ModelConfig &config, uint64_t seed,
                      bool skipLinearWeights)
      : cfg(config), seed(seed), skipLinearWeights(skipLinearWeights) {
    auto add = [&](std::string name, std::vector<int64_t> shape) {
      infos.push_back({std::move(name), std::move(shape), DType::F32});
    };
    int64_t q = cfg.numHeads * cfg.headDim, kv = cfg.numKVHeads * cfg.headDim;
    add("tok_embeddings", {cfg.vocabSize, cfg.dim});
    for (int64_t l = 0; l < cfg.numLayers; ++l) {
      std::string p = llvm::formatv("layers.{0}.", l).str();
      add(p + "attention_norm", {cfg.dim});
      add(p + "attention.wq", {q, cfg.dim});
      add(p + "attention.wk", {kv, cfg.dim});
      add(p + "attention.wv", {kv, cfg.dim});
      add(p + "attention.wo", {cfg.dim, q});
      add(p + "ffn_norm", {cfg.dim});
      add(p + "feed_forward.w1", {cfg.hiddenDim, cfg.dim});
      add(p + "feed_forward.w2", {cfg.dim, cfg.hiddenDim});
      add(p + "feed_forward.w3", {cfg.hiddenDim, cfg.dim});
    }
    add("norm", {cfg.dim});
    if (!cfg.tiedEmbeddings)
      add("output", {cfg.vocabSize, cfg.dim});

    // A byte-level SentencePiece vocabulary: <unk>, <s>, </s>, the 256 byte
    // tokens, then single printable characters up to the vocabulary size.
    TokenizerData t;
    t.tokens = {"<unk>", "<s>", "</s>"};
    t.tokenTypes = {2, 3, 3};
    for (int byte = 0; byte < 256; ++byte) {
      t.tokens.push_back(llvm::formatv("<0x{0:X-2}>", byte).str());
      t.tokenTypes.push_back(6);
    }
    for (char c = ' '; c <= '~' && int64_t(t.tokens.size()) < cfg.vocabSize;
         ++c) {
      t.tokens.push_back(c == ' ' ? "\xE2\x96\x81" : std::string(1, c));
      t.tokenTypes.push_back(1);
    }
    while (int64_t(t.tokens.size()) < cfg.vocabSize) {
      t.tokens.push_back(llvm::formatv("<unused{0}>", t.tokens.size()).str());
      t.tokenTypes.push_back(5);
    }
    t.tokens.resize(cfg.vocabSize);
    t.tokenTypes.resize(cfg.vocabSize);
    t.scores.assign(cfg.vocabSize, 0.0f);
    t.bosId = 1;
    t.eosId = 2;
    t.unkId = 0;
    tok = std::move(t);
  }

  llvm::StringRef formatName() const override { return "synthetic"; }
  llvm::StringRef path() const override { return "<synthetic>"; }
  const ModelConfig &config() const override { return cfg; }
  llvm::ArrayRef<TensorInfo> tensors() const override { return infos; }
  const std::optional<TokenizerData> &tokenizer() const override { return tok; }

  llvm::Error readTensor(llvm::StringRef name,
                         llvm::MutableArrayRef<float> out) const override {
    const TensorInfo *info = findTensor(name);
    if (!info)
      return llvm::createStringError("<synthetic>: no tensor '%s'",
                                     name.str().c_str());
    if (skipLinearWeights && isLayerMatrix(name))
      return llvm::Error::success();
    uint64_t state = seed ^ llvm::hash_value(name);
    bool isNorm = info->shape.size() == 1;
    // Uniform in [-a, a] with a = sqrt(3 / fan_in): unit-variance outputs.
    double bound = isNorm ? 0.1 : std::sqrt(3.0 / double(info->shape.back()));
    for (float &value : out) {
      double u = uniform(state);
      double r = (2.0 * u - 1.0) * bound;
      value = float(isNorm ? 1.0 + r : r);
    }
    return llvm::Error::success();
  }

private:
  ModelConfig cfg;
  uint64_t seed;
  bool skipLinearWeights;
  std::vector<TensorInfo> infos;
  std::optional<TokenizerData> tok;
};
} // namespace

/// The bytes of `value` rounded (to nearest, ties to even) to the scale
/// type `element` (f32, f16 or bf16), little-endian.
static std::array<uint8_t, 4> scaleBytes(double value, Type element) {
  std::array<uint8_t, 4> bytes{};
  if (element.isF32()) {
    float f = float(value);
    std::memcpy(bytes.data(), &f, 4);
    return bytes;
  }
  llvm::APFloat rounded(value);
  bool losesInfo = false;
  rounded.convert(cast<FloatType>(element).getFloatSemantics(),
                  llvm::APFloat::rmNearestTiesToEven, &losesInfo);
  uint64_t bits = rounded.bitcastToAPInt().getZExtValue();
  bytes[0] = uint8_t(bits);
  bytes[1] = uint8_t(bits >> 8);
  return bytes;
}

/// An `arith.constant dense_resource<name>` of `type` whose bytes `fill`
/// writes.
static Value
createResource(OpBuilder &b, Location loc, RankedTensorType type,
               StringRef name,
               llvm::function_ref<void(MutableArrayRef<char>)> fill) {
  int64_t elementBytes = type.getElementTypeBitWidth() / 8;
  AsmResourceBlob blob = HeapAsmResourceBlob::allocate(
      type.getNumElements() * elementBytes, alignof(uint64_t),
      /*dataIsMutable=*/true);
  fill(blob.getMutableData());
  auto attr = DenseResourceElementsAttr::get(type, name, std::move(blob));
  return arith::ConstantOp::create(b, loc, type, attr).getResult();
}

LogicalResult mlir::qlr::quantizeSyntheticWeights(ModuleOp module,
                                                  FormatAttr format,
                                                  uint64_t seed) {
  SmallVector<LinearOp> linears;
  module.walk([&](LinearOp linear) { linears.push_back(linear); });
  unsigned bits = format.getBits();
  // The mean square of a decoded code at scale 1, over all codes (uniform
  // grids: codes around the implicit or stored zero point 2^(bits-1)).
  double meanSquare = 0.0;
  SmallVector<float> table = format.getCodebook();
  unsigned levels = 1u << bits;
  for (unsigned c = 0; c < levels; ++c) {
    double v = format.isCodebook() ? table[c] : double(c) - levels / 2.0;
    meanSquare += v * v / levels;
  }
  for (LinearOp linear : linears) {
    auto constant = linear.getWeight().getDefiningOp<arith::ConstantOp>();
    if (!constant || !constant->hasOneUse())
      continue; // Shared weights (a tied classifier) stay float.
    auto attr = dyn_cast<DenseResourceElementsAttr>(constant.getValue());
    if (!attr)
      continue;
    auto type = cast<RankedTensorType>(attr.getType());
    if (type.getRank() != 2 || !type.getElementType().isF32())
      continue;
    std::string name = attr.getRawHandle().getKey().str();
    if (name == "output" || name == "lm_head" || name == "tok_embeddings")
      continue;
    if (failed(format.verifyForRank([&] { return linear.emitError(); }, 2)))
      return failure();
    auto qtype = QTensorType::getChecked(
        [&] { return linear.emitError("--synthetic-quantize: "); },
        module.getContext(), type.getShape(), type.getElementType(), format);
    if (!qtype)
      return failure();

    uint64_t state = seed ^ llvm::hash_value(name) ^ 0x5157c0de5157c0deull;
    int64_t rows = type.getDimSize(0), cols = type.getDimSize(1);
    OpBuilder b(constant);
    Location loc = constant.getLoc();

    // Codes: random bytes; the unused high bits of a row's last byte are 0.
    RankedTensorType codesType = qtype.getCodesType();
    int64_t rowBytes = codesType.getDimSize(1);
    unsigned tailBits = unsigned((cols * bits) % 8);
    Value codes = createResource(
        b, loc, codesType, name + ".codes", [&](MutableArrayRef<char> data) {
          for (int64_t r = 0; r < rows; ++r) {
            char *row = data.data() + r * rowBytes;
            for (int64_t i = 0; i < rowBytes; i += 8) {
              uint64_t word = splitmix64(state);
              std::memcpy(row + i, &word, std::min<int64_t>(8, rowBytes - i));
            }
            if (tailBits)
              row[rowBytes - 1] &= char((1u << tailBits) - 1);
          }
        });

    // Scales: 1/sqrt(K * meanSquare) (decoded weights of variance 1/K) times
    // a factor in [0.75, 1.25), from 256 candidates rounded once each.
    RankedTensorType scalesType = qtype.getScalesType();
    Type scaleType = scalesType.getElementType();
    int64_t scaleBytesEach = scaleType.getIntOrFloatBitWidth() / 8;
    double base = 1.0 / std::sqrt(double(cols) * meanSquare);
    std::array<std::array<uint8_t, 4>, 256> candidates;
    for (unsigned i = 0; i < 256; ++i)
      candidates[i] = scaleBytes(base * (0.75 + 0.5 * i / 256.0), scaleType);
    Value scales = createResource(
        b, loc, scalesType, name + ".scales", [&](MutableArrayRef<char> data) {
          int64_t count = scalesType.getNumElements();
          for (int64_t i = 0; i < count; ++i)
            std::memcpy(data.data() + i * scaleBytesEach,
                        candidates[splitmix64(state) & 255].data(),
                        scaleBytesEach);
        });

    // Zero points near the middle of the grid: 2^(bits-1) or one step (one
    // fraction step for fractional zero points) below it.
    Value zeroPoints;
    if (RankedTensorType zpType = qtype.getZeroPointsType()) {
      unsigned fraction = format.getZeroPointFractionBits();
      unsigned middle = (levels / 2) << fraction;
      zeroPoints =
          createResource(b, loc, zpType, name + ".zero_points",
                         [&](MutableArrayRef<char> data) {
                           for (char &z : data)
                             z = char(middle - (splitmix64(state) & 1));
                         });
    }

    Value packed = PackOp::create(b, loc, qtype, codes, scales, zeroPoints);
    linear.getWeightMutable().assign(packed);
    constant->erase();
    // Nothing refers to the float blob any more: free it now.
    if (auto *entry = attr.getRawHandle().getResource())
      entry->setBlob(AsmResourceBlob());
  }
  return success();
}

std::optional<ModelConfig> mlir::qlr::syntheticConfig(llvm::StringRef name) {
  ModelConfig config;
  if (name == "tiny") {
    config.dim = 64;
    config.hiddenDim = 172;
    config.numLayers = 2;
    config.numHeads = 8;
    config.numKVHeads = 4;
    config.headDim = 8;
    config.vocabSize = 512;
    config.maxSeqLen = 256;
    config.tiedEmbeddings = true;
    return config;
  }
  if (name == "llama2-7b" || name == "llama3-8b") {
    bool llama3 = name == "llama3-8b";
    config.dim = 4096;
    config.hiddenDim = llama3 ? 14336 : 11008;
    config.numLayers = 32;
    config.numHeads = 32;
    config.numKVHeads = llama3 ? 8 : 32;
    config.headDim = 128;
    config.vocabSize = llama3 ? 128256 : 32000;
    config.maxSeqLen = llama3 ? 8192 : 4096;
    config.normEps = 1e-5f;
    config.ropeTheta = llama3 ? 500000.0f : 10000.0f;
    config.tiedEmbeddings = false;
    return config;
  }
  return std::nullopt;
}

llvm::StringRef mlir::qlr::syntheticConfigNames() {
  return "tiny, llama2-7b, llama3-8b";
}

std::unique_ptr<Checkpoint>
mlir::qlr::createSyntheticCheckpoint(const ModelConfig &config, uint64_t seed,
                                     bool skipLinearWeights) {
  return std::make_unique<SyntheticCheckpoint>(config, seed, skipLinearWeights);
}
