//===- WeightUtils.cpp - Shared helpers of the weight passes ------*- C++
//-*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#include "WeightUtils.h"

#include "qlr/Dialect/QLR/Utils/ConstantData.h"
#include "qlr/Numerics/FloatFormats.h"
#include "qlr/Numerics/Packing.h"
#include "qlr/Numerics/Quantize.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/AsmState.h"
#include "mlir/IR/DialectResourceBlobManager.h"
#include "llvm/ADT/DenseSet.h"
#include "llvm/ADT/SmallPtrSet.h"

using namespace mlir;
using namespace mlir::qlr;
namespace numerics = ::qlr::numerics;

bool mlir::qlr::isClassifierName(StringRef name) {
  return name == "output" || name == "lm_head" || name == "tok_embeddings";
}

FailureOr<LinearFilter> LinearFilter::create(ModuleOp module, StringRef pass,
                                             ArrayRef<std::string> include,
                                             ArrayRef<std::string> exclude,
                                             bool classifier) {
  LinearFilter filter;
  filter.classifier = classifier;
  auto parse = [&](ArrayRef<std::string> patterns,
                   std::vector<llvm::GlobPattern> &out) -> LogicalResult {
    for (const std::string &text : patterns) {
      auto pattern = llvm::GlobPattern::create(text);
      if (!pattern) {
        emitError(module.getLoc())
            << pass << ": invalid name pattern '" << text
            << "': " << llvm::toString(pattern.takeError());
        return failure();
      }
      out.push_back(std::move(*pattern));
    }
    return success();
  };
  if (failed(parse(include, filter.include)) ||
      failed(parse(exclude, filter.exclude)))
    return failure();
  return filter;
}

bool mlir::qlr::isClassifier(LinearOp linear) {
  // Tied: the weight is also the embedding table, read by indexed lookups.
  Value weight = linear.getWeight();
  if (llvm::any_of(weight.getUsers(), [](Operation *user) {
        return isa<tensor::ExtractOp, tensor::ExtractSliceOp, tensor::GatherOp>(
            user);
      }))
    return true;
  // In a language model (qlr.model), the projection to the vocabulary whose
  // result the function returns (through anything but another linear).
  auto module = linear->getParentOfType<ModuleOp>();
  auto config =
      module ? module->getAttrOfType<DictionaryAttr>("qlr.model") : nullptr;
  auto vocab = config ? config.getAs<IntegerAttr>("vocab_size") : nullptr;
  if (!vocab || linear.getType().getShape().back() != vocab.getInt())
    return false;
  SmallVector<Value> worklist = {linear.getResult()};
  llvm::DenseSet<Value> seen;
  while (!worklist.empty()) {
    Value value = worklist.pop_back_val();
    for (OpOperand &use : value.getUses()) {
      Operation *user = use.getOwner();
      if (isa<func::ReturnOp>(user))
        return true;
      if (isa<LinearOp>(user))
        continue;
      for (Value result : user->getResults())
        if (seen.insert(result).second)
          worklist.push_back(result);
    }
  }
  return false;
}

bool LinearFilter::accepts(StringRef name, LinearOp linear) const {
  if (!classifier &&
      (isClassifierName(name) || (linear && isClassifier(linear))))
    return false;
  auto matches = [&](const llvm::GlobPattern &p) { return p.match(name); };
  if (!include.empty() && llvm::none_of(include, matches))
    return false;
  return llvm::none_of(exclude, matches);
}

FailureOr<SmallVector<LinearWeight>>
mlir::qlr::collectLinearWeights(ModuleOp module, const LinearFilter &filter) {
  SmallVector<LinearWeight> result;
  int64_t counter = 0;
  bool failedRead = false;
  module.walk([&](LinearOp linear) {
    int64_t index = counter++;
    auto constant = linear.getWeight().getDefiningOp<arith::ConstantOp>();
    auto type = dyn_cast<RankedTensorType>(linear.getWeight().getType());
    if (!constant || !type || type.getRank() != 2 || !type.hasStaticShape())
      return;
    std::string name = layerName(linear, linear.getWeight());
    if (name.empty())
      name = "linear" + std::to_string(index);
    if (!filter.accepts(name, linear))
      return;
    auto values =
        readFloats(cast<ElementsAttr>(constant.getValue()), constant.getLoc());
    if (failed(values)) {
      failedRead = true;
      return;
    }
    result.push_back({linear, constant, name, type, std::move(*values)});
  });
  if (failedRead)
    return failure();
  return result;
}

FailureOr<FormatAttr> mlir::qlr::buildFormatFromOptions(
    ModuleOp module, StringRef pass, StringRef format, int64_t bits,
    int64_t defaultBits, int64_t groupSize, bool symmetric, StringRef zeroPoint,
    StringRef scaleType, ArrayRef<double> table) {
  auto error = [&]() { return emitError(module.getLoc()) << pass << ": "; };
  Scheme scheme = Scheme::Uniform;
  int64_t impliedBits = 0;
  if (format == "nf4" || format == "nf2") {
    scheme = Scheme::NormalFloat;
    impliedBits = format == "nf4" ? 4 : 2;
  } else if (format == "lut") {
    scheme = Scheme::LookupTable;
  } else if (format != "uniform") {
    error() << "unknown format '" << format
            << "' (expected uniform, nf4, nf2 or lut)";
    return failure();
  }
  if (impliedBits != 0 && bits != 0 && bits != impliedBits) {
    error() << "format=" << format << " stores " << impliedBits
            << "-bit codes; bits=" << bits << " contradicts it";
    return failure();
  }
  if (bits == 0)
    bits = impliedBits != 0 ? impliedBits : defaultBits;
  if (bits < 2 || bits > 8) {
    error() << "bits=" << bits << " is out of range (2..8)";
    return failure();
  }
  if (groupSize < 0) {
    error() << "group-size=" << groupSize
            << " must be positive, or 0 for one scale per output channel";
    return failure();
  }
  if (!symmetric && scheme != Scheme::Uniform) {
    error() << "format=" << format
            << " is a codebook with absmax scaling; symmetric=false needs "
               "format=uniform";
    return failure();
  }
  if (zeroPoint != "integer" && zeroPoint != "fractional") {
    error() << "unknown zero-point '" << zeroPoint
            << "' (expected integer or fractional)";
    return failure();
  }
  bool fractional = zeroPoint == "fractional";
  if (fractional && symmetric) {
    error() << "zero-point=fractional needs symmetric=false (symmetric "
               "grids have no stored zero point)";
    return failure();
  }
  if (scheme == Scheme::LookupTable) {
    if (table.size() != (size_t(1) << bits)) {
      error() << "format=lut needs table= with exactly " << (1 << bits)
              << " values for bits=" << bits << ", got " << table.size();
      return failure();
    }
  } else if (!table.empty()) {
    error() << "table= is only meaningful with format=lut";
    return failure();
  }
  MLIRContext *ctx = module.getContext();
  Type scale;
  if (scaleType == "f16")
    scale = Float16Type::get(ctx);
  else if (scaleType == "bf16")
    scale = BFloat16Type::get(ctx);
  else if (scaleType == "f32")
    scale = Float32Type::get(ctx);
  else {
    error() << "unknown scale-type '" << scaleType
            << "' (expected f16, bf16 or f32)";
    return failure();
  }
  DenseF32ArrayAttr tableAttr;
  if (scheme == Scheme::LookupTable) {
    SmallVector<float> values(table.begin(), table.end());
    tableAttr = DenseF32ArrayAttr::get(ctx, values);
  }
  Granularity granularity =
      groupSize == 0 ? Granularity::Channel : Granularity::Group;
  int64_t axis = groupSize == 0 ? 0 : -1;
  FormatAttr attr = FormatAttr::getChecked(
      [&]() { return error(); }, ctx, scheme, unsigned(bits), tableAttr,
      granularity, axis, groupSize, symmetric, scale, fractional);
  if (!attr)
    return failure();
  return attr;
}

LogicalResult mlir::qlr::checkFormatFits(Operation *op, FormatAttr format,
                                         RankedTensorType type) {
  numerics::QuantFormat fmt = format.toNumerics(type.getRank());
  std::string problem = numerics::verifyFormatForShape(fmt, type.getShape());
  if (!problem.empty())
    return op->emitOpError("cannot quantize weight ")
           << type << " as " << format << ": " << problem;
  return success();
}

static Value createResource(OpBuilder &b, Location loc, RankedTensorType type,
                            StringRef name, AsmResourceBlob blob) {
  auto attr = DenseResourceElementsAttr::get(type, name, std::move(blob));
  return arith::ConstantOp::create(b, loc, type, attr);
}

Value mlir::qlr::createFloatResource(OpBuilder &b, Location loc,
                                     RankedTensorType type, StringRef name,
                                     ArrayRef<float> values) {
  Type element = type.getElementType();
  if (element.isF32())
    return createResource(
        b, loc, type, name,
        HeapAsmResourceBlob::allocateAndCopyInferAlign(values));
  std::vector<uint16_t> bits;
  bits.reserve(values.size());
  for (float v : values)
    bits.push_back(element.isF16() ? numerics::floatToHalfBits(v)
                                   : numerics::floatToBF16Bits(v));
  return createResource(
      b, loc, type, name,
      HeapAsmResourceBlob::allocateAndCopyInferAlign(ArrayRef<uint16_t>(bits)));
}

Value mlir::qlr::createByteResource(OpBuilder &b, Location loc,
                                    RankedTensorType type, StringRef name,
                                    ArrayRef<uint8_t> values) {
  return createResource(b, loc, type, name,
                        HeapAsmResourceBlob::allocateAndCopyInferAlign(values));
}

Value mlir::qlr::buildPackedWeight(OpBuilder &b, Location loc, StringRef name,
                                   RankedTensorType type, FormatAttr format,
                                   const numerics::QuantizedData &data) {
  auto qtype = QTensorType::get(b.getContext(), type.getShape(),
                                type.getElementType(), format);
  std::vector<uint8_t> packed =
      numerics::packCodes(data.codes, type.getShape(), format.getBits());
  Value codes = createByteResource(b, loc, qtype.getCodesType(),
                                   (name + ".codes").str(), packed);
  Value scales = createFloatResource(b, loc, qtype.getScalesType(),
                                     (name + ".scales").str(), data.scales);
  Value zeroPoints;
  if (RankedTensorType zpType = qtype.getZeroPointsType())
    zeroPoints = createByteResource(
        b, loc, zpType, (name + ".zero_points").str(), data.zeroPoints);
  return PackOp::create(b, loc, qtype, codes, scales, zeroPoints);
}

SmallVector<LinearWeight *>
mlir::qlr::distinctWeights(MutableArrayRef<LinearWeight> weights) {
  SmallVector<LinearWeight *> result;
  llvm::SmallPtrSet<Operation *, 16> seen;
  for (LinearWeight &weight : weights)
    if (seen.insert(weight.constant).second)
      result.push_back(&weight);
  return result;
}

void mlir::qlr::replaceLinearWeights(
    MutableArrayRef<LinearWeight> weights,
    const DenseMap<Operation *, Value> &replacements) {
  for (LinearWeight &weight : weights)
    weight.linear.getWeightMutable().assign(
        replacements.lookup(weight.constant));
  for (LinearWeight *weight : distinctWeights(weights))
    if (weight->constant->use_empty())
      weight->constant->erase();
}

FailureOr<SmallVector<LinearWeight>> mlir::qlr::selectLinearWeights(
    ModuleOp module, StringRef pass, ArrayRef<std::string> include,
    ArrayRef<std::string> exclude, bool classifier, FormatAttr format) {
  FailureOr<LinearFilter> filter =
      LinearFilter::create(module, pass, include, exclude, classifier);
  if (failed(filter))
    return failure();
  return selectLinearWeights(module, *filter, format);
}

FailureOr<SmallVector<LinearWeight>>
mlir::qlr::selectLinearWeights(ModuleOp module, const LinearFilter &filter,
                               FormatAttr format) {
  FailureOr<SmallVector<LinearWeight>> weights =
      collectLinearWeights(module, filter);
  if (failed(weights))
    return failure();
  for (LinearWeight &weight : *weights)
    if (failed(checkFormatFits(weight.linear, format, weight.type)))
      return failure();
  return weights;
}

StringRef mlir::qlr::resourceKey(arith::ConstantOp constant) {
  if (auto resource = dyn_cast<DenseResourceElementsAttr>(constant.getValue()))
    return resource.getRawHandle().getKey();
  return {};
}

float mlir::qlr::roundToFloatType(double value, Type element) {
  APFloat rounded(value);
  bool losesInfo;
  rounded.convert(cast<FloatType>(element).getFloatSemantics(),
                  APFloat::rmNearestTiesToEven, &losesInfo);
  rounded.convert(APFloat::IEEEsingle(), APFloat::rmNearestTiesToEven,
                  &losesInfo);
  return rounded.convertToFloat();
}

Value mlir::qlr::createFloatConstantLike(OpBuilder &b, Location loc,
                                         arith::ConstantOp like,
                                         RankedTensorType type, StringRef name,
                                         ArrayRef<float> values) {
  if (like && isa<DenseResourceElementsAttr>(like.getValue()))
    return createFloatResource(b, loc, type, name, values);
  return createFloatConstant(b, loc, type, values);
}

arith::ConstantOp mlir::qlr::getElementsConstant(Value value) {
  auto constant = value.getDefiningOp<arith::ConstantOp>();
  if (!constant || !isa<ElementsAttr>(constant.getValue()))
    return {};
  return constant;
}

FailureOr<std::vector<float>>
mlir::qlr::readConstantFloats(arith::ConstantOp constant) {
  return readFloats(cast<ElementsAttr>(constant.getValue()), constant.getLoc());
}

FailureOr<std::vector<double>>
mlir::qlr::readConstantDoubles(arith::ConstantOp constant) {
  FailureOr<std::vector<float>> values = readConstantFloats(constant);
  if (failed(values))
    return failure();
  return std::vector<double>(values->begin(), values->end());
}

std::string mlir::qlr::foldedName(StringRef key) {
  return (key + ".folded").str();
}

std::string mlir::qlr::createdBiasName(StringRef weightKey) {
  weightKey.consume_back(".weight");
  return (weightKey + ".bias.folded").str();
}

void mlir::qlr::reportFoldRefusal(Operation *op, const FoldRefusal &refusal,
                                  bool strict) {
  InFlightDiagnostic diag =
      strict ? emitError(op->getLoc()) : emitWarning(op->getLoc());
  diag << op->getName() << " not folded: " << refusal.reason;
  if (refusal.culprit)
    diag.attachNote(refusal.culprit->getLoc()) << refusal.note;
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
    // A·B, row by row (r is small: the loop over it is outermost).
    std::vector<float> product(m * n, 0.0f);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t k = 0; k < r; ++k) {
        float aik = (*a)[i * r + k];
        const float *row = b->data() + k * n;
        float *out = product.data() + i * n;
        for (int64_t j = 0; j < n; ++j)
          out[j] += aik * row[j];
      }
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

FailureOr<func::FuncOp> mlir::qlr::lookupFunctionOption(ModuleOp module,
                                                        StringRef pass,
                                                        StringRef name,
                                                        StringRef role) {
  if (name.empty())
    return emitError(module.getLoc())
           << pass << ": needs function=NAME, the function to " << role;
  auto function = module.lookupSymbol<func::FuncOp>(name);
  if (!function)
    return emitError(module.getLoc())
           << pass << ": the module has no function @" << name;
  return function;
}

std::string mlir::qlr::layerName(Operation *layer, Value weight) {
  if (auto name = layer->getAttrOfType<StringAttr>(kLayerNameAttrName))
    return name.str();
  if (auto resource = dyn_cast_or_null<DenseResourceElementsAttr>(
          getConstantElements(weight)))
    return resource.getRawHandle().getKey().str();
  return "";
}

void mlir::qlr::nameAfterWeight(Operation *layer, Value weight) {
  if (layer->hasAttr(kLayerNameAttrName))
    return;
  if (auto resource = dyn_cast_or_null<DenseResourceElementsAttr>(
          getConstantElements(weight)))
    layer->setAttr(
        kLayerNameAttrName,
        StringAttr::get(layer->getContext(), resource.getRawHandle().getKey()));
}
