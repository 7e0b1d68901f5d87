//===- LoadWeights.cpp - Weights from a safetensors file --------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// qlr-load-weights: replaces `dense_resource<NAME>` weights by float tensors
// or by quantized tensors (unpacked codes + scales + format) read from a
// safetensors file. The file is read and every replacement is built in
// memory and checked first; the module changes only when all of them are
// valid.
//
//===----------------------------------------------------------------------===//

#include "WeightUtils.h"

#include "qlr/Dialect/QLR/Transforms/Passes.h"
#include "qlr/Numerics/FloatFormats.h"

#include "mlir/AsmParser/AsmParser.h"
#include "mlir/IR/AsmState.h"
#include "mlir/IR/DialectResourceBlobManager.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"

#include <cmath>
#include <cstring>

namespace mlir::qlr {
#define GEN_PASS_DEF_QLRLOADWEIGHTSPASS
#include "qlr/Dialect/QLR/Transforms/Passes.h.inc"
} // namespace mlir::qlr

using namespace mlir;
using namespace mlir::qlr;

namespace {

/// One tensor of a safetensors file, pointing into the mapped file.
struct FileTensor {
  std::string dtype;
  SmallVector<int64_t> shape;
  ArrayRef<uint8_t> bytes;
};

/// The tensors and metadata of a safetensors file.
struct SafetensorsFile {
  std::unique_ptr<llvm::MemoryBuffer> buffer;
  llvm::StringMap<FileTensor> tensors;
  llvm::StringMap<std::string> metadata;
};

} // namespace

static int64_t dtypeSize(StringRef dtype) {
  return llvm::StringSwitch<int64_t>(dtype)
      .Cases({"F32", "I32"}, 4)
      .Cases({"F16", "BF16", "I16"}, 2)
      .Cases({"U8", "I8"}, 1)
      .Case("F64", 8)
      .Default(0);
}

/// Reads and validates the header of the safetensors file `path`; on error
/// returns a message naming the file.
static FailureOr<SafetensorsFile> readSafetensors(StringRef path,
                                                  std::string &error) {
  auto fail = [&](const Twine &message) {
    error = (path + ": " + message).str();
    return failure();
  };
  auto buffer = llvm::MemoryBuffer::getFile(path, /*IsText=*/false,
                                            /*RequiresNullTerminator=*/false);
  if (!buffer)
    return fail(buffer.getError().message());
  SafetensorsFile file;
  file.buffer = std::move(*buffer);
  StringRef data = file.buffer->getBuffer();
  if (data.size() < 8)
    return fail("not a safetensors file (shorter than its 8-byte header "
                "length)");
  uint64_t headerSize = 0;
  for (int i = 7; i >= 0; --i)
    headerSize = (headerSize << 8) | uint8_t(data[i]);
  if (headerSize > data.size() - 8)
    return fail("truncated: the header claims " + Twine(headerSize) +
                " bytes but the file has " + Twine(data.size() - 8) +
                " after the length");
  StringRef header = data.substr(8, headerSize);
  auto payload = ArrayRef<uint8_t>(
      reinterpret_cast<const uint8_t *>(data.data()) + 8 + headerSize,
      data.size() - 8 - headerSize);
  llvm::Expected<llvm::json::Value> json = llvm::json::parse(header);
  if (!json)
    return fail("the header is not valid JSON: " +
                llvm::toString(json.takeError()));
  const llvm::json::Object *root = json->getAsObject();
  if (!root)
    return fail("the header is not a JSON object");
  for (const auto &[key, value] : *root) {
    const llvm::json::Object *object = value.getAsObject();
    if (key == "__metadata__") {
      if (!object)
        return fail("__metadata__ is not an object");
      for (const auto &[metaKey, metaValue] : *object) {
        std::optional<StringRef> text = metaValue.getAsString();
        if (!text)
          return fail("__metadata__ entry '" + StringRef(metaKey) +
                      "' is not a string");
        file.metadata[metaKey] = text->str();
      }
      continue;
    }
    auto bad = [&](const Twine &what) {
      return fail("tensor '" + StringRef(key) + "': " + what);
    };
    if (!object)
      return bad("its entry is not an object");
    std::optional<StringRef> dtype = object->getString("dtype");
    const llvm::json::Array *shape = object->getArray("shape");
    const llvm::json::Array *offsets = object->getArray("data_offsets");
    if (!dtype || !shape || !offsets || offsets->size() != 2)
      return bad("needs dtype, shape and data_offsets [begin, end]");
    int64_t size = dtypeSize(*dtype);
    if (size == 0)
      return bad("unsupported dtype " + *dtype);
    FileTensor tensor;
    tensor.dtype = dtype->str();
    uint64_t elements = 1;
    for (const llvm::json::Value &dim : *shape) {
      std::optional<int64_t> d = dim.getAsInteger();
      if (!d || *d < 0 || *d > (int64_t(1) << 40))
        return bad("invalid shape");
      tensor.shape.push_back(*d);
      elements *= uint64_t(*d);
    }
    std::optional<int64_t> begin = (*offsets)[0].getAsInteger();
    std::optional<int64_t> end = (*offsets)[1].getAsInteger();
    if (!begin || !end || *begin < 0 || *end < *begin)
      return bad("invalid data_offsets");
    if (uint64_t(*end) > payload.size())
      return bad("truncated: its data ends at byte " + Twine(*end) +
                 " of the data section, which has " + Twine(payload.size()));
    if (uint64_t(*end - *begin) != elements * uint64_t(size))
      return bad("holds " + Twine(*end - *begin) + " bytes, but " +
                 Twine(elements) + " elements of " + *dtype + " need " +
                 Twine(elements * size));
    tensor.bytes = payload.slice(*begin, *end - *begin);
    file.tensors[key] = std::move(tensor);
  }
  return file;
}

/// The elements of a float tensor as floats (F32, F16, BF16, F64).
static std::vector<float> readFloats(const FileTensor &tensor) {
  size_t count = tensor.bytes.size() / dtypeSize(tensor.dtype);
  std::vector<float> values(count);
  const uint8_t *p = tensor.bytes.data();
  for (size_t i = 0; i < count; ++i) {
    if (tensor.dtype == "F32") {
      std::memcpy(&values[i], p + 4 * i, 4);
    } else if (tensor.dtype == "F64") {
      double d;
      std::memcpy(&d, p + 8 * i, 8);
      values[i] = float(d);
    } else {
      uint16_t bits = uint16_t(p[2 * i] | (p[2 * i + 1] << 8));
      values[i] = tensor.dtype == "F16"
                      ? ::qlr::numerics::halfBitsToFloat(bits)
                      : ::qlr::numerics::bf16BitsToFloat(bits);
    }
  }
  return values;
}

/// A resource blob holding `values` in the float type `element`.
static AsmResourceBlob floatBlob(ArrayRef<float> values, Type element) {
  if (element.isF32())
    return HeapAsmResourceBlob::allocateAndCopyInferAlign(values);
  std::vector<uint16_t> bits;
  bits.reserve(values.size());
  for (float v : values)
    bits.push_back(element.isF16() ? ::qlr::numerics::floatToHalfBits(v)
                                   : ::qlr::numerics::floatToBF16Bits(v));
  return HeapAsmResourceBlob::allocateAndCopyInferAlign(
      ArrayRef<uint16_t>(bits));
}

static bool isFloatDType(StringRef dtype) {
  return dtype == "F32" || dtype == "F16" || dtype == "BF16" || dtype == "F64";
}

namespace {

/// A replacement, checked and ready to be built.
struct Replacement {
  std::string name;
  SmallVector<arith::ConstantOp> constants;
  RankedTensorType type;
  /// Float replacement.
  std::vector<float> values;
  /// Quantized replacement (format set).
  FormatAttr format;
  ::qlr::numerics::QuantizedData data;
};

struct QLRLoadWeightsPass
    : public mlir::qlr::impl::QLRLoadWeightsPassBase<QLRLoadWeightsPass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    MLIRContext *ctx = &getContext();
    if (file.empty()) {
      module.emitError("qlr-load-weights: the file option is required "
                       "(file=weights.safetensors)");
      return signalPassFailure();
    }
    std::string error;
    FailureOr<SafetensorsFile> contents = readSafetensors(file, error);
    if (failed(contents)) {
      module.emitError("qlr-load-weights: ") << error;
      return signalPassFailure();
    }

    // The weights of the module by name.
    llvm::StringMap<SmallVector<arith::ConstantOp>> weights;
    module.walk([&](arith::ConstantOp op) {
      StringRef key = resourceKey(op);
      if (!key.empty())
        weights[key].push_back(op);
    });

    // Group the file's tensors by weight name.
    llvm::StringMap<bool> used;
    // Weights already given a replacement (a float tensor NAME and a
    // quantized NAME.codes in one file would be two).
    llvm::StringSet<> replaced;
    SmallVector<Replacement> replacements;
    auto fail = [&](Location loc, const Twine &message) {
      emitError(loc) << "qlr-load-weights: " << file << ": " << message;
      signalPassFailure();
    };
    // Deterministic order: sorted names.
    SmallVector<StringRef> names;
    for (const auto &entry : contents->tensors)
      names.push_back(entry.getKey());
    llvm::sort(names);
    for (StringRef tensorName : names) {
      if (used.count(tensorName))
        continue;
      // NAME, or NAME.codes/.scales/.zero_points of a quantized weight.
      StringRef base = tensorName;
      bool quantized = false;
      for (StringRef suffix : {".codes", ".scales", ".zero_points"})
        if (tensorName.ends_with(suffix) &&
            !weights.count(tensorName) /* a float weight may end so */) {
          base = tensorName.drop_back(suffix.size());
          quantized = true;
        }
      auto it = weights.find(base);
      if (it == weights.end()) {
        if (allowUnused) {
          used[tensorName] = true;
          continue;
        }
        return fail(module.getLoc(),
                    "tensor '" + tensorName +
                        "' matches no weight of the module (no "
                        "dense_resource<" +
                        base + ">; allow-unused=true ignores it)");
      }
      if (!replaced.insert(base).second)
        return fail(it->second.front().getLoc(),
                    "weight '" + base +
                        "' is given twice: as the float tensor '" + base +
                        "' and as a quantized weight ('" + base + ".codes')");
      Replacement r;
      r.name = base.str();
      r.constants = it->second;
      arith::ConstantOp first = r.constants.front();
      Location loc = first.getLoc();
      r.type = dyn_cast<RankedTensorType>(first.getType());
      if (!r.type || !r.type.hasStaticShape() ||
          !isa<FloatType>(r.type.getElementType()))
        return fail(loc, "weight '" + base +
                             "' is not a static float tensor constant");
      ArrayRef<int64_t> shape = r.type.getShape();
      if (!quantized) {
        const FileTensor &tensor = contents->tensors[tensorName];
        used[tensorName] = true;
        if (!isFloatDType(tensor.dtype))
          return fail(loc, "tensor '" + tensorName + "' has dtype " +
                               tensor.dtype +
                               "; a float weight needs F32, F16 or BF16");
        if (ArrayRef<int64_t>(tensor.shape) != shape)
          return fail(loc, "tensor '" + tensorName + "' has shape " +
                               formatShape(tensor.shape) +
                               " but the weight is " + formatShape(shape));
        r.values = readFloats(tensor);
        Type element = r.type.getElementType();
        for (auto [i, v] : llvm::enumerate(r.values))
          if (roundToFloatType(v, element) != v && !std::isnan(v))
            return fail(loc, "tensor '" + tensorName + "' element " + Twine(i) +
                                 " (" + std::to_string(double(v)) +
                                 ") is not exactly representable in the "
                                 "weight's element type");
        replacements.push_back(std::move(r));
        continue;
      }
      // A quantized weight.
      std::string codesName = (base + ".codes").str();
      std::string scalesName = (base + ".scales").str();
      std::string zpName = (base + ".zero_points").str();
      used[codesName] = used[scalesName] = used[zpName] = true;
      auto codes = contents->tensors.find(codesName);
      auto scales = contents->tensors.find(scalesName);
      if (codes == contents->tensors.end() || scales == contents->tensors.end())
        return fail(loc, "quantized weight '" + base + "' needs both '" +
                             codesName + "' and '" + scalesName + "'");
      auto formatText = contents->metadata.find(base);
      if (formatText == contents->metadata.end())
        return fail(loc, "quantized weight '" + base +
                             "' has no format: add \"" + base +
                             "\": \"<#qlr.format body>\" to __metadata__");
      std::string text = formatText->second;
      if (!StringRef(text).trim().starts_with("#"))
        text = "#qlr.format<" + text + ">";
      std::string parseError;
      Attribute parsed;
      {
        ScopedDiagnosticHandler capture(ctx, [&](Diagnostic &diag) {
          parseError = diag.str();
          return success();
        });
        parsed = parseAttribute(text, ctx);
      }
      r.format = dyn_cast_or_null<FormatAttr>(parsed);
      if (!r.format)
        return fail(loc, "the format of '" + base + "' (\"" +
                             formatText->second + "\") is not a #qlr.format" +
                             (parseError.empty() ? "" : ": " + parseError));
      std::string typeError;
      QTensorType qtype;
      {
        ScopedDiagnosticHandler capture(ctx, [&](Diagnostic &diag) {
          typeError = diag.str();
          return success();
        });
        qtype =
            QTensorType::getChecked([&] { return emitError(loc); }, ctx, shape,
                                    r.type.getElementType(), r.format);
      }
      if (!qtype)
        return fail(loc, "format " + text + " does not fit weight '" + base +
                             "' " + formatShape(shape) + ": " + typeError);
      if (codes->second.dtype != "U8" && codes->second.dtype != "I8")
        return fail(loc, "'" + codesName + "' has dtype " +
                             codes->second.dtype +
                             "; codes are U8, one unpacked code per element");
      if (ArrayRef<int64_t>(codes->second.shape) != shape)
        return fail(loc, "'" + codesName + "' has shape " +
                             formatShape(codes->second.shape) +
                             " but the weight is " + formatShape(shape));
      unsigned bits = r.format.getBits();
      r.data.codes.assign(codes->second.bytes.begin(),
                          codes->second.bytes.end());
      for (auto [i, c] : llvm::enumerate(r.data.codes))
        if (c >> bits)
          return fail(loc, "'" + codesName + "' element " + Twine(i) + " is " +
                               Twine(unsigned(c)) + ", outside the " +
                               Twine(bits) + "-bit codes 0.." +
                               Twine((1u << bits) - 1));
      RankedTensorType scalesType = qtype.getScalesType();
      if (!isFloatDType(scales->second.dtype))
        return fail(loc, "'" + scalesName + "' has dtype " +
                             scales->second.dtype +
                             "; scales are F32, F16 or BF16");
      if (ArrayRef<int64_t>(scales->second.shape) != scalesType.getShape())
        return fail(loc, "'" + scalesName + "' has shape " +
                             formatShape(scales->second.shape) + " but " +
                             text + " needs " +
                             formatShape(scalesType.getShape()));
      r.data.scales = readFloats(scales->second);
      Type scaleElement = scalesType.getElementType();
      for (auto [i, s] : llvm::enumerate(r.data.scales)) {
        if (!std::isfinite(s))
          return fail(loc, "'" + scalesName + "' element " + Twine(i) +
                               " is not finite");
        if (roundToFloatType(s, scaleElement) != s)
          return fail(loc, "'" + scalesName + "' element " + Twine(i) + " (" +
                               std::to_string(double(s)) +
                               ") is not exactly representable in the "
                               "format's scale type; write it rounded");
      }
      auto zp = contents->tensors.find(zpName);
      if (RankedTensorType zpType = qtype.getZeroPointsType()) {
        if (zp == contents->tensors.end())
          return fail(loc, "format " + text + " is asymmetric: '" + zpName +
                               "' is missing");
        if (zp->second.dtype != "U8" && zp->second.dtype != "I8")
          return fail(loc, "'" + zpName + "' has dtype " + zp->second.dtype +
                               "; zero points are U8");
        if (ArrayRef<int64_t>(zp->second.shape) != zpType.getShape())
          return fail(loc, "'" + zpName + "' has shape " +
                               formatShape(zp->second.shape) + " but " + text +
                               " needs " + formatShape(zpType.getShape()));
        r.data.zeroPoints.assign(zp->second.bytes.begin(),
                                 zp->second.bytes.end());
        if (!r.format.getFractionalZeroPoints())
          for (auto [i, z] : llvm::enumerate(r.data.zeroPoints))
            if (z >> bits)
              return fail(loc, "'" + zpName + "' element " + Twine(i) + " is " +
                                   Twine(unsigned(z)) + ", outside 0.." +
                                   Twine((1u << bits) - 1));
      } else if (zp != contents->tensors.end()) {
        return fail(loc, "format " + text +
                             " is symmetric, but the file "
                             "has '" +
                             zpName + "'");
      }
      // Every user must take the weight as the weight of a linear layer or
      // convolution.
      for (arith::ConstantOp constant : r.constants)
        for (OpOperand &use : constant->getUses()) {
          Operation *user = use.getOwner();
          bool weightOperand =
              isa<LinearOp, Conv2DOp>(user) && use.getOperandNumber() == 1;
          if (!weightOperand) {
            InFlightDiagnostic diag =
                emitError(loc)
                << "qlr-load-weights: " << file << ": weight '" << base
                << "' cannot become quantized: it is used by '"
                << user->getName()
                << "', which takes float tensors (only the "
                   "weight of qlr.linear or qlr.conv2d can be "
                   "quantized)";
            diag.attachNote(user->getLoc()) << "the user";
            return signalPassFailure();
          }
        }
      replacements.push_back(std::move(r));
    }

    // Everything is valid: rewrite.
    for (Replacement &r : replacements) {
      if (!r.format) {
        // New contents for the named blob: every constant naming it (one
        // per function that uses the weight) sees them, and the name stays.
        auto attr =
            cast<DenseResourceElementsAttr>(r.constants.front().getValue());
        attr.getRawHandle().getResource()->setBlob(
            floatBlob(r.values, r.type.getElementType()));
        ++numFloat;
        continue;
      }
      for (arith::ConstantOp constant : r.constants) {
        OpBuilder b(constant);
        Value packed = buildPackedWeight(b, constant.getLoc(), r.name, r.type,
                                         r.format, r.data);
        constant.getResult().replaceAllUsesWith(packed);
        constant.erase();
        ++numQuantized;
      }
    }
  }
};

} // namespace
