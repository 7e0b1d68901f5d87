//===- ModuleLoader.cpp - LlamaModel from an imported module ----*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#include "qlr/Calibration/ModuleLoader.h"
#include "qlr/Dialect/QLR/IR/QLR.h"
#include "qlr/Dialect/QLR/Utils/ConstantData.h"
#include "qlr/Import/LlamaImporter.h"
#include "qlr/Numerics/Packing.h"
#include "qlr/Numerics/Quantize.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/DialectResourceBlobManager.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/StringMap.h"

#include <string>

using namespace mlir;
using namespace mlir::qlr;
using ::qlr::calibration::BlockWeights;
using ::qlr::calibration::LlamaConfig;
using ::qlr::calibration::LlamaModel;
using ::qlr::calibration::LlamaWeights;
namespace numerics = ::qlr::numerics;

FailureOr<LlamaConfig> mlir::qlr::readLlamaConfig(ModuleOp module) {
  FailureOr<::qlr::checkpoint::ModelConfig> model = readModelConfig(module);
  if (failed(model))
    return failure();
  LlamaConfig c;
  c.dim = model->dim;
  c.headDim = model->headDim;
  c.heads = model->numHeads;
  c.kvHeads = model->numKVHeads;
  c.hiddenDim = model->hiddenDim;
  c.layers = model->numLayers;
  c.vocabSize = model->vocabSize;
  c.maxSeqLen = model->maxSeqLen;
  c.normEps = model->normEps;
  c.ropeTheta = model->ropeTheta;
  c.tiedEmbeddings = model->tiedEmbeddings;
  return c;
}

/// The constant elements of `value`, or an error at its definition.
static FailureOr<ElementsAttr> constantOf(Value value, StringRef what) {
  if (ElementsAttr elements = getConstantElements(value))
    return elements;
  Location loc =
      value.getDefiningOp() ? value.getDefiningOp()->getLoc() : value.getLoc();
  return emitError(loc, "the ")
         << what << " of a weight is not a constant; cannot read it";
}

/// Decodes a `qlr.pack` of constants.
static FailureOr<std::vector<float>> decodePack(PackOp pack) {
  auto type = cast<QTensorType>(pack.getType());
  Location loc = pack.getLoc();
  if (!type.hasStaticShape())
    return emitError(loc, "cannot decode a quantized weight of dynamic shape");
  auto codes = constantOf(pack.getCodes(), "codes");
  auto scales = constantOf(pack.getScales(), "scales");
  if (failed(codes) || failed(scales))
    return failure();
  auto codeBytes = readBytes(*codes, loc);
  auto scaleValues = readFloats(*scales, loc);
  if (failed(codeBytes) || failed(scaleValues))
    return failure();
  numerics::QuantizedData data;
  if (Value zeroPoints = pack.getZeroPoints()) {
    auto zp = constantOf(zeroPoints, "zero points");
    if (failed(zp))
      return failure();
    auto zpBytes = readBytes(*zp, loc);
    if (failed(zpBytes))
      return failure();
    data.zeroPoints = std::move(*zpBytes);
  }
  ArrayRef<int64_t> shape = type.getShape();
  FormatAttr format = type.getFormat();
  numerics::QuantFormat fmt = format.toNumerics(shape.size());
  // The pack verifier ties the operand types to the format; check the data
  // sizes too, since nothing below may read out of bounds.
  int64_t packedBytes =
      numerics::numElements(numerics::packedShape(shape, fmt.bits));
  int64_t scaleCount = numerics::numElements(numerics::scaleShape(fmt, shape));
  if (int64_t(codeBytes->size()) != packedBytes ||
      int64_t(scaleValues->size()) != scaleCount ||
      (!data.zeroPoints.empty() &&
       int64_t(data.zeroPoints.size()) != scaleCount))
    return emitError(loc, "quantized weight storage does not match its type ")
           << type;
  data.codes = numerics::unpackCodes(*codeBytes, shape, fmt.bits);
  data.scales = std::move(*scaleValues);
  return numerics::dequantize(data, shape, fmt);
}

FailureOr<std::vector<float>> mlir::qlr::decodeWeight(Value weight) {
  if (ElementsAttr elements = getConstantElements(weight)) {
    Location loc = weight.getDefiningOp()->getLoc();
    return readFloats(elements, loc);
  }
  Operation *def = weight.getDefiningOp();
  if (auto pack = dyn_cast_or_null<PackOp>(def))
    return decodePack(pack);
  if (auto dequantize = dyn_cast_or_null<DequantizeOp>(def))
    return decodeWeight(dequantize.getInput());
  if (auto lowRank = dyn_cast_or_null<LowRankOp>(def)) {
    auto type = cast<LowRankType>(lowRank.getType());
    int64_t m = type.getShape()[0], n = type.getShape()[1];
    int64_t r = type.getRank();
    auto a = decodeWeight(lowRank.getA());
    if (failed(a))
      return failure();
    auto b = decodeWeight(lowRank.getB());
    if (failed(b))
      return failure();
    if (int64_t(a->size()) != m * r || int64_t(b->size()) != r * n)
      return lowRank.emitError("low-rank factors do not match ") << type;
    // A·B = linear(A, Bᵀ).
    std::vector<float> bT(n * r), product(m * n);
    for (int64_t i = 0; i < r; ++i)
      for (int64_t j = 0; j < n; ++j)
        bT[j * r + i] = (*b)[i * n + j];
    ::qlr::calibration::linear(*a, m, r, bT, n, product);
    if (Value base = lowRank.getBase()) {
      auto decoded = decodeWeight(base);
      if (failed(decoded))
        return failure();
      if (decoded->size() != product.size())
        return lowRank.emitError("low-rank base does not match ") << type;
      for (auto [p, q] : llvm::zip_equal(product, *decoded))
        p += q;
    }
    return product;
  }
  Location loc = def ? def->getLoc() : weight.getLoc();
  return emitError(loc, "weight is not a constant, qlr.pack, qlr.lowrank or "
                        "qlr.dequantize of constants");
}

namespace {
/// Finds the value of each canonical weight of a module.
class WeightFinder {
public:
  explicit WeightFinder(ModuleOp module, int64_t layers) {
    module.walk([&](Operation *op) {
      if (!op->hasTrait<OpTrait::ConstantLike>() || op->getNumResults() != 1)
        return;
      auto resource = dyn_cast_or_null<DenseResourceElementsAttr>(
          getConstantElements(op->getResult(0)));
      if (!resource)
        return;
      StringRef key = resource.getRawHandle().getKey();
      offer(key, op->getResult(0), /*exact=*/true);
      // MLIR makes resource keys unique within a context by appending _N
      // (a second import in one context, a pass re-creating a name): such a
      // key also stands for its base name, after an exact match.
      auto [base, counter] = key.rsplit('_');
      if (!counter.empty() &&
          llvm::all_of(counter, [](char c) { return llvm::isDigit(c); }))
        offer(base, op->getResult(0), /*exact=*/false);
    });
    collectPositional(module, layers);
  }

  /// The float constant called `name`, or null.
  Value floatConstant(StringRef name) const {
    Value v = named.lookup(name).first;
    if (v && isa<RankedTensorType>(v.getType()) &&
        isa<FloatType>(cast<RankedTensorType>(v.getType()).getElementType()))
      return v;
    return {};
  }

  /// The qlr.pack / qlr.lowrank built from resources NAME.codes, NAME.lora_a
  /// (qlr-loftq), NAME.factor_a (qlr-basis-select), ..., or null.
  Value compressed(StringRef name) const {
    Value found;
    for (StringRef suffix :
         {".lora_a", ".lora_b", ".lora_a.codes", ".lora_b.codes", ".factor_a",
          ".factor_b", ".factor_a.codes", ".factor_b.codes", ".codes"}) {
      Value v = named.lookup((name + suffix).str()).first;
      if (!v)
        continue;
      Value root = climb(v);
      if (root == v)
        continue;
      if (!root.use_empty())
        return root;
      if (!found)
        found = root;
    }
    return found;
  }

  /// The weight called `name`: compressed, else the float constant, else the
  /// positional weight; null when none exists.
  Value find(StringRef name) const {
    if (Value v = compressed(name))
      return v;
    Value byPosition = positional.lookup(name);
    if (Value v = floatConstant(name))
      if (!v.use_empty() || !byPosition)
        return v;
    return byPosition;
  }

private:
  /// Records `value` as the constant called `key` unless a better one is
  /// known: one with uses beats an unused one, then an exact key an alias.
  void offer(StringRef key, Value value, bool exact) {
    int score = (value.use_empty() ? 0 : 2) + (exact ? 1 : 0);
    auto [it, inserted] = named.try_emplace(key, value, score);
    if (!inserted && score > it->second.second)
      it->second = {value, score};
  }

  /// Follows a storage constant up through qlr.pack and qlr.lowrank.
  static Value climb(Value v) {
    for (Operation *user : v.getUsers()) {
      if (auto pack = dyn_cast<PackOp>(user))
        return climb(pack.getResult());
      if (auto lowRank = dyn_cast<LowRankOp>(user))
        return lowRank.getResult();
    }
    return v;
  }

  /// Names the weights of @forward's norms and linears by their position
  /// when the function has the importer's structure.
  void collectPositional(ModuleOp module, int64_t layers) {
    auto func = module.lookupSymbol<func::FuncOp>("forward");
    if (!func)
      return;
    SmallVector<RMSNormOp> norms;
    SmallVector<LinearOp> linears;
    func.walk([&](Operation *op) {
      if (auto norm = dyn_cast<RMSNormOp>(op))
        norms.push_back(norm);
      else if (auto linear = dyn_cast<LinearOp>(op))
        linears.push_back(linear);
    });
    if (int64_t(norms.size()) != 2 * layers + 1 ||
        int64_t(linears.size()) != 7 * layers + 1)
      return;
    for (int64_t l = 0; l < layers; ++l) {
      std::string prefix = "layers." + std::to_string(l) + ".";
      positional[prefix + "attention_norm"] = norms[2 * l].getWeight();
      positional[prefix + "ffn_norm"] = norms[2 * l + 1].getWeight();
      MutableArrayRef<LinearOp> layer =
          MutableArrayRef(linears).slice(7 * l, 7);
      const char *names[] = {"attention.wq", "attention.wk", "attention.wv",
                             "attention.wo"};
      for (int i = 0; i < 4; ++i)
        positional[prefix + names[i]] = layer[i].getWeight();
      // The gate and up projections may be built in either order; the gate
      // is the first operand of the element-wise op consuming both.
      LinearOp gate = layer[4], up = layer[5];
      Value first = layer[4].getResult();
      if (!first.use_empty() &&
          first.getUses().begin()->getOperandNumber() != 0)
        std::swap(gate, up);
      positional[prefix + "feed_forward.w1"] = gate.getWeight();
      positional[prefix + "feed_forward.w3"] = up.getWeight();
      positional[prefix + "feed_forward.w2"] = layer[6].getWeight();
    }
    positional["norm"] = norms.back().getWeight();
    positional["output"] = linears.back().getWeight();
  }

  /// Constants by resource key, with the score offer() ranks them by.
  llvm::StringMap<std::pair<Value, int>> named;
  llvm::StringMap<Value> positional;
};
} // namespace

FailureOr<LlamaModel> mlir::qlr::loadLlamaModel(ModuleOp module) {
  FailureOr<LlamaConfig> config = readLlamaConfig(module);
  if (failed(config))
    return failure();
  WeightFinder finder(module, config->layers);

  auto load = [&](StringRef name, Value weight,
                  std::vector<float> &out) -> LogicalResult {
    if (!weight)
      return emitError(module.getLoc(), "the module has no weight '")
             << name << "'";
    FailureOr<std::vector<float>> values = decodeWeight(weight);
    if (failed(values)) {
      emitError(module.getLoc(), "cannot read weight '") << name << "'";
      return failure();
    }
    out = std::move(*values);
    return success();
  };
  auto loadNamed = [&](StringRef name, std::vector<float> &out) {
    return load(name, finder.find(name), out);
  };

  LlamaWeights weights;
  // The embedding table is the float constant; with tied embeddings a
  // compressed classifier becomes a separate output matrix.
  Value embedding = finder.floatConstant("tok_embeddings");
  if (!embedding)
    embedding = finder.compressed("tok_embeddings");
  if (failed(load("tok_embeddings", embedding, weights.tokEmbeddings)))
    return failure();
  weights.blocks.resize(config->layers);
  for (int64_t l = 0; l < config->layers; ++l) {
    std::string prefix = "layers." + std::to_string(l) + ".";
    BlockWeights &b = weights.blocks[l];
    std::pair<const char *, std::vector<float> *> entries[] = {
        {"attention_norm", &b.attentionNorm},
        {"attention.wq", &b.wq},
        {"attention.wk", &b.wk},
        {"attention.wv", &b.wv},
        {"attention.wo", &b.wo},
        {"ffn_norm", &b.ffnNorm},
        {"feed_forward.w1", &b.w1},
        {"feed_forward.w2", &b.w2},
        {"feed_forward.w3", &b.w3},
    };
    for (auto &[name, out] : entries)
      if (failed(loadNamed(prefix + name, *out)))
        return failure();
  }
  if (failed(loadNamed("norm", weights.norm)))
    return failure();
  if (!config->tiedEmbeddings) {
    if (failed(loadNamed("output", weights.output)))
      return failure();
  } else if (Value classifier = finder.compressed("tok_embeddings");
             classifier && classifier != embedding) {
    if (failed(load("tok_embeddings", classifier, weights.output)))
      return failure();
    config->tiedEmbeddings = false;
  }

  llvm::Expected<LlamaModel> model =
      LlamaModel::create(*config, std::move(weights));
  if (!model)
    return emitError(module.getLoc(), "invalid model: ")
           << llvm::toString(model.takeError());
  return std::move(*model);
}
