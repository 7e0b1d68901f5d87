//===- Calibration.cpp - Calibration data for the PTQ passes ------*- C++
//-*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#include "Calibration.h"

#include "qlr/Dialect/QLR/IR/QLR.h"
#include "qlr/Dialect/QLR/Utils/ModelInterface.h"
#include "qlr/Support/Progress.h"
#include "qlr/Tokenizer/Tokenizer.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Transforms/Passes.h"
#include "llvm/ADT/BitVector.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/MemoryBuffer.h"

#include <limits>
#include <random>

using namespace mlir;
using namespace mlir::qlr;

/// Calibration token sequences (`spec.samples` x `spec.seqLen`, row-major)
/// from `spec.source`: windows of a text file, or `generate()`.
static FailureOr<std::vector<int32_t>> calibrationTokens(
    ModuleOp module, StringRef pass, const CalibrationSpec &spec, int64_t vocab,
    int64_t maxSeqLen,
    llvm::function_ref<FailureOr<std::vector<int32_t>>()> generate) {
  auto error = [&]() { return emitError(module.getLoc()) << pass << ": "; };
  if (spec.source.empty()) {
    error() << "needs calibration data: data=FILE (a text file) or "
               "data=generate (text sampled from the model)";
    return failure();
  }
  if (spec.samples < 1 || spec.seqLen < 2) {
    error() << "samples=" << spec.samples << " seq-len=" << spec.seqLen
            << ": need samples >= 1 and seq-len >= 2";
    return failure();
  }
  if (spec.seqLen > maxSeqLen) {
    error() << "seq-len=" << spec.seqLen << " exceeds the model's context of "
            << maxSeqLen << " tokens";
    return failure();
  }
  if (spec.source == "generate")
    return generate();

  auto data = readEmbeddedTokenizer(module);
  if (failed(data))
    return failure();
  if (!*data) {
    error() << "data=" << spec.source
            << " needs the tokenizer qlr-import embeds (module attribute "
            << kTokenizerAttrName << "); use data=generate instead";
    return failure();
  }
  auto tokenizer = ::qlr::tokenizer::Tokenizer::create(std::move(**data));
  if (!tokenizer) {
    error() << "the embedded tokenizer is invalid: "
            << llvm::toString(tokenizer.takeError());
    return failure();
  }
  auto file = llvm::MemoryBuffer::getFile(spec.source, /*IsText=*/true);
  if (!file) {
    error() << "cannot read calibration file '" << spec.source
            << "': " << file.getError().message();
    return failure();
  }
  std::vector<int32_t> text =
      (*tokenizer)->encode((*file)->getBuffer(), /*addBos=*/false);
  int64_t count = text.size();
  if (count < spec.seqLen) {
    error() << "calibration file '" << spec.source << "' has " << count
            << " tokens, fewer than seq-len=" << spec.seqLen;
    return failure();
  }
  for (int32_t id : text)
    if (id < 0 || id >= vocab) {
      error() << "the embedded tokenizer produced token " << id
              << " outside the model's vocabulary of " << vocab;
      return failure();
    }
  std::mt19937_64 rng(spec.seed);
  std::uniform_int_distribution<int64_t> start(0, count - spec.seqLen);
  std::vector<int32_t> tokens;
  tokens.reserve(spec.samples * spec.seqLen);
  for (int64_t s = 0; s < spec.samples; ++s) {
    int64_t at = start(rng);
    tokens.insert(tokens.end(), text.begin() + at,
                  text.begin() + at + spec.seqLen);
  }
  return tokens;
}

//===----------------------------------------------------------------------===//
// Calibration runs of the module itself
//===----------------------------------------------------------------------===//

namespace {
/// One array of a .npy file.
struct NpyArray {
  std::string name;
  /// NumPy's type string without the byte order ("f4", "i4", ...).
  std::string kind;
  SmallVector<int64_t> shape;
  StringRef data;
};

/// Parses a .npy file (format 1.0-3.0, little-endian or byte-sized
/// elements, C order).
llvm::Expected<NpyArray> parseNpy(StringRef bytes, StringRef name) {
  auto fail = [&](const Twine &why) {
    return llvm::createStringError("array '" + name.str() + "': " + why.str());
  };
  if (bytes.size() < 10 || !bytes.starts_with("\x93NUMPY"))
    return fail("not a .npy array (no \\x93NUMPY magic)");
  unsigned major = uint8_t(bytes[6]);
  size_t headerLen, start;
  if (major == 1) {
    headerLen = uint8_t(bytes[8]) | (size_t(uint8_t(bytes[9])) << 8);
    start = 10;
  } else {
    if (bytes.size() < 12)
      return fail("truncated header");
    headerLen = 0;
    for (int i = 3; i >= 0; --i)
      headerLen = (headerLen << 8) | uint8_t(bytes[8 + i]);
    start = 12;
  }
  if (bytes.size() < start + headerLen)
    return fail("truncated header");
  StringRef header = bytes.substr(start, headerLen);
  auto field = [&](StringRef key) -> StringRef {
    size_t at = header.find(("'" + key + "':").str());
    if (at == StringRef::npos)
      return {};
    return header.drop_front(at + key.size() + 3).ltrim();
  };
  StringRef descr = field("descr");
  if (!descr.consume_front("'"))
    return fail("no 'descr' in the header");
  descr = descr.take_until([](char c) { return c == '\''; });
  if (descr.size() < 2 || (descr[0] != '<' && descr[0] != '|'))
    return fail("element type '" + descr + "' is not little-endian");
  if (field("fortran_order").starts_with("True"))
    return fail("Fortran order is not supported; save a C-ordered array");
  StringRef shapeText = field("shape");
  if (!shapeText.consume_front("("))
    return fail("no 'shape' in the header");
  shapeText = shapeText.take_until([](char c) { return c == ')'; });
  NpyArray array;
  array.name = name.str();
  array.kind = descr.drop_front().str();
  SmallVector<StringRef> dims;
  shapeText.split(dims, ',', -1, /*KeepEmpty=*/false);
  int64_t count = 1;
  for (StringRef dim : dims) {
    int64_t d;
    if (dim.trim().empty())
      continue;
    if (dim.trim().getAsInteger(10, d) || d < 0)
      return fail("bad shape (" + shapeText + ")");
    array.shape.push_back(d);
    count *= d;
  }
  int64_t itemSize;
  if (StringRef(array.kind).drop_front().getAsInteger(10, itemSize))
    return fail("unsupported element type '" + descr + "'");
  array.data = bytes.drop_front(start + headerLen);
  if (int64_t(array.data.size()) < count * itemSize)
    return fail(llvm::formatv("holds {0} bytes of data, its shape needs {1}",
                              array.data.size(), count * itemSize)
                    .str());
  array.data = array.data.take_front(count * itemSize);
  return array;
}

/// The arrays of a .npz archive (a ZIP of .npy files, stored uncompressed as
/// numpy.savez writes them), in archive order.
llvm::Expected<std::vector<NpyArray>> parseNpz(StringRef bytes) {
  auto u16 = [&](size_t at) {
    return unsigned(uint8_t(bytes[at])) | unsigned(uint8_t(bytes[at + 1])) << 8;
  };
  auto u32 = [&](size_t at) {
    return uint64_t(u16(at)) | uint64_t(u16(at + 2)) << 16;
  };
  std::vector<NpyArray> arrays;
  size_t at = 0;
  while (at + 30 <= bytes.size() && u32(at) == 0x04034b50) {
    unsigned flags = u16(at + 6), method = u16(at + 8);
    uint64_t size = u32(at + 18);
    unsigned nameLen = u16(at + 26), extraLen = u16(at + 28);
    if (at + 30 + nameLen + extraLen > bytes.size())
      return llvm::createStringError("truncated .npz archive");
    StringRef name = bytes.substr(at + 30, nameLen);
    StringRef extra = bytes.substr(at + 30 + nameLen, extraLen);
    // ZIP64: the sizes are in the extra field.
    if (size == 0xffffffff) {
      for (size_t e = 0; e + 4 <= extra.size();) {
        unsigned id =
            unsigned(uint8_t(extra[e])) | unsigned(uint8_t(extra[e + 1])) << 8;
        unsigned len = unsigned(uint8_t(extra[e + 2])) |
                       unsigned(uint8_t(extra[e + 3])) << 8;
        if (id == 1 && len >= 16 && e + 4 + 16 <= extra.size()) {
          size = 0;
          for (int i = 7; i >= 0; --i)
            size = (size << 8) | uint8_t(extra[e + 4 + 8 + i]);
        }
        e += 4 + len;
      }
    }
    if (method != 0)
      return llvm::createStringError(
          "'" + name.str() +
          "' is compressed; write the archive with numpy.savez, not "
          "numpy.savez_compressed");
    if (flags & 0x8)
      return llvm::createStringError(
          "'" + name.str() +
          "' has no size in its local header (streamed "
          "ZIP); write the archive with numpy.savez");
    size_t data = at + 30 + nameLen + extraLen;
    if (data + size > bytes.size())
      return llvm::createStringError("truncated .npz archive");
    name.consume_back(".npy");
    auto array = parseNpy(bytes.substr(data, size), name);
    if (!array)
      return array.takeError();
    arrays.push_back(std::move(*array));
    at = data + size;
  }
  if (arrays.empty())
    return llvm::createStringError("not a .npz archive (no ZIP entries)");
  return arrays;
}

/// NumPy's type string for `type`, or "" when calibration cannot feed it.
std::string npyKind(Type type) {
  if (type.isF32())
    return "f4";
  if (type.isF64())
    return "f8";
  if (type.isF16())
    return "f2";
  if (auto integer = dyn_cast<IntegerType>(type))
    return (integer.isUnsigned() ? "u" : "i") +
           std::to_string(integer.getWidth() / 8);
  return "";
}
} // namespace

FailureOr<std::unique_ptr<CalibrationRun>>
mlir::qlr::prepareCalibrationRun(ModuleOp module, StringRef pass,
                                 const CalibrationSpec &spec, StringRef entry,
                                 bool keepResults) {
  auto error = [&]() { return emitError(module.getLoc()) << pass << ": "; };
  func::FuncOp original;
  if (!entry.empty()) {
    original = module.lookupSymbol<func::FuncOp>(entry);
    if (!original || original.isExternal()) {
      error() << "entry=" << entry << ": the module has no function @" << entry
              << " with a body";
      return failure();
    }
  } else if (auto forward = module.lookupSymbol<func::FuncOp>("forward");
             forward && !forward.isExternal()) {
    original = forward;
  } else {
    SmallVector<func::FuncOp> publics;
    for (auto func : module.getOps<func::FuncOp>())
      if (func.isPublic() && !func.isExternal())
        publics.push_back(func);
    if (publics.size() != 1) {
      error() << "which function to calibrate? The module has no @forward "
                 "and "
              << publics.size()
              << " public functions; name one with entry=NAME";
      return failure();
    }
    original = publics.front();
  }
  if (spec.source.empty() && spec.tokens.empty()) {
    error() << "needs calibration data: data=FILE (a text file, or a .npz "
               "or .npy file of arguments for @"
            << original.getSymName()
            << ") or data=generate (text sampled from the model)";
    return failure();
  }

  auto run = std::make_unique<CalibrationRun>();
  run->module = ModuleOp::create(original.getLoc());
  OpBuilder b = OpBuilder::atBlockEnd(run->module->getBody());
  run->function = cast<func::FuncOp>(b.clone(*original, run->mapping));
  func::FuncOp func = run->function;
  func.setPublic();
  Block &body = func.getBody().front();
  FunctionType type = func.getFunctionType();

  StringRef source = spec.source;
  bool arrays = source.ends_with(".npy") || source.ends_with(".npz");
  if (arrays) {
    if (spec.samples < 1) {
      error() << "samples=" << spec.samples << ": need samples >= 1";
      return failure();
    }
    auto file = llvm::MemoryBuffer::getFile(source, /*IsText=*/false,
                                            /*RequiresNullTerminator=*/false);
    if (!file) {
      error() << "cannot read calibration file '" << source
              << "': " << file.getError().message();
      return failure();
    }
    StringRef bytes = (*file)->getBuffer();
    auto parseFile = [&]() -> llvm::Expected<std::vector<NpyArray>> {
      if (source.ends_with(".npz"))
        return parseNpz(bytes);
      auto array = parseNpy(bytes, "arg0");
      if (!array)
        return array.takeError();
      return std::vector<NpyArray>{std::move(*array)};
    };
    llvm::Expected<std::vector<NpyArray>> parsed = parseFile();
    if (!parsed) {
      error() << "calibration file '" << source
              << "': " << llvm::toString(parsed.takeError());
      return failure();
    }
    std::vector<NpyArray> byArg(type.getNumInputs());
    bool named = llvm::all_of(*parsed, [](const NpyArray &a) {
      return StringRef(a.name).starts_with("arg");
    });
    if (parsed->size() != type.getNumInputs()) {
      error() << "calibration file '" << source << "' holds " << parsed->size()
              << " arrays; @" << func.getSymName() << " takes "
              << type.getNumInputs() << " arguments";
      return failure();
    }
    for (auto [i, array] : llvm::enumerate(*parsed)) {
      unsigned index = i;
      if (named &&
          StringRef(array.name).drop_front(3).getAsInteger(10, index)) {
        error() << "calibration file '" << source << "': array '" << array.name
                << "' is not named argN";
        return failure();
      }
      if (index >= byArg.size() || !byArg[index].name.empty()) {
        error() << "calibration file '" << source << "': array '" << array.name
                << "' names no argument or one twice";
        return failure();
      }
      byArg[index] = std::move(array);
    }
    int64_t samples = -1;
    for (auto [i, array] : llvm::enumerate(byArg)) {
      auto argType = dyn_cast<RankedTensorType>(type.getInput(i));
      std::string kind = argType ? npyKind(argType.getElementType()) : "";
      if (kind.empty()) {
        error() << "@" << func.getSymName() << " argument " << i << " has type "
                << type.getInput(i) << ", which calibration arrays cannot feed";
        return failure();
      }
      bool shapeOk = int64_t(array.shape.size()) == argType.getRank() + 1;
      for (int64_t d = 0; shapeOk && d < argType.getRank(); ++d)
        shapeOk = argType.isDynamicDim(d) ||
                  argType.getDimSize(d) == array.shape[d + 1];
      if (array.kind != kind || !shapeOk) {
        std::string shape = "(";
        for (auto [j, d] : llvm::enumerate(array.shape))
          shape += (j ? ", " : "") + std::to_string(d);
        error() << "calibration array '" << array.name << "' is " << shape
                << ") of " << array.kind << "; argument " << i << " of @"
                << func.getSymName() << " needs (samples, "
                << formatShape(argType.getShape()) << ") of " << kind;
        return failure();
      }
      int64_t n = std::min(array.shape[0], spec.samples);
      samples = samples < 0 ? n : std::min(samples, n);
    }
    if (samples < 1) {
      error() << "calibration file '" << source << "' holds no samples";
      return failure();
    }
    run->samples.resize(samples);
    for (auto [i, array] : llvm::enumerate(byArg)) {
      run->storage.emplace_back(array.data.begin(), array.data.end());
      const char *data = run->storage.back().data();
      size_t sampleBytes = array.data.size() / array.shape[0];
      for (int64_t s = 0; s < samples; ++s)
        run->samples[s].push_back(
            JitTensor{data + s * sampleBytes,
                      SmallVector<int64_t, 4>(array.shape.begin() + 1,
                                              array.shape.end())});
    }
    run->description =
        llvm::formatv("{0} samples of {1}", samples, source).str();
  } else {
    // Token sequences into the first argument.
    auto tokensType = type.getNumInputs()
                          ? dyn_cast<RankedTensorType>(type.getInput(0))
                          : RankedTensorType();
    if (!tokensType || tokensType.getRank() != 1 ||
        !tokensType.getElementType().isInteger(32)) {
      error() << "data=" << source << " feeds token ids to the first argument "
              << "of @" << func.getSymName()
              << ", which must then be tensor<?xi32>; give the arguments as "
                 "a .npz file instead";
      return failure();
    }
    int64_t vocab = std::numeric_limits<int64_t>::max();
    int64_t maxSeqLen = std::numeric_limits<int64_t>::max();
    if (auto config = module->getAttrOfType<DictionaryAttr>("qlr.model")) {
      if (auto v = config.getAs<IntegerAttr>("vocab_size"))
        vocab = v.getInt();
      if (auto v = config.getAs<IntegerAttr>("max_seq_len"))
        maxSeqLen = v.getInt();
    }
    if (spec.seqLen < 2) {
      error() << "seq-len=" << spec.seqLen << ": need seq-len >= 2";
      return failure();
    }
    if (spec.seqLen > maxSeqLen) {
      error() << "seq-len=" << spec.seqLen << " exceeds the model's context of "
              << maxSeqLen << " tokens";
      return failure();
    }
    if (!spec.tokens.empty()) {
      if (int64_t(spec.tokens.size()) != spec.samples * spec.seqLen) {
        error() << "internal error: " << spec.tokens.size()
                << " calibration tokens for " << spec.samples << " x "
                << spec.seqLen;
        return failure();
      }
      for (int32_t token : spec.tokens)
        if (token < 0 || token >= vocab) {
          error() << "calibration token " << token
                  << " is outside the model's vocabulary of " << vocab;
          return failure();
        }
    }
    FailureOr<std::vector<int32_t>> tokens =
        !spec.tokens.empty()
            ? FailureOr<std::vector<int32_t>>(spec.tokens)
            : calibrationTokens(module, pass, spec, vocab, maxSeqLen, [&]() {
                return generateCalibrationTokens(module, pass, spec);
              });
    if (failed(tokens))
      return failure();
    run->storage.emplace_back(
        reinterpret_cast<const char *>(tokens->data()),
        reinterpret_cast<const char *>(tokens->data() + tokens->size()));
    const char *data = run->storage.back().data();
    // The other arguments: scalars 0, tensors zeros.
    OpBuilder at = OpBuilder::atBlockBegin(&body);
    SmallVector<unsigned> erase;
    for (unsigned i = 1; i < type.getNumInputs(); ++i) {
      BlockArgument arg = body.getArgument(i);
      Type argType = arg.getType();
      auto tensor = dyn_cast<RankedTensorType>(argType);
      Value zero;
      if (tensor && tensor.hasStaticShape()) {
        zero = arith::ConstantOp::create(at, func.getLoc(), tensor,
                                         at.getZeroAttr(tensor));
      } else if (tensor) {
        SmallVector<int64_t> shape(tensor.getShape());
        for (int64_t &d : shape)
          if (ShapedType::isDynamic(d))
            d = spec.seqLen;
        auto staticType = RankedTensorType::get(shape, tensor.getElementType());
        Value constant = arith::ConstantOp::create(
            at, func.getLoc(), staticType, at.getZeroAttr(staticType));
        zero = tensor::CastOp::create(at, func.getLoc(), tensor, constant);
      } else if (argType.isIntOrIndexOrFloat()) {
        zero = arith::ConstantOp::create(at, func.getLoc(), argType,
                                         at.getZeroAttr(argType));
      } else {
        error() << "@" << func.getSymName() << " argument " << i << " has type "
                << argType << ", which token calibration cannot set";
        return failure();
      }
      arg.replaceAllUsesWith(zero);
      erase.push_back(i);
    }
    llvm::BitVector eraseArgs(type.getNumInputs());
    for (unsigned i : erase)
      eraseArgs.set(i);
    if (failed(func.eraseArguments(eraseArgs)))
      return failure();
    run->samples.resize(spec.samples);
    for (int64_t s = 0; s < spec.samples; ++s)
      run->samples[s].push_back(
          JitTensor{data + s * spec.seqLen * sizeof(int32_t), {spec.seqLen}});
    run->description = llvm::formatv("{0} x {1} tokens of {2}", spec.samples,
                                     spec.seqLen, source)
                           .str();
  }

  // Tag the linears: canonicalization may move or rebuild ops, and the
  // caller needs to find the originals of the copies.
  SmallVector<LinearOp> originals;
  original.walk([&](LinearOp linear) {
    auto copy = cast<LinearOp>(run->mapping.lookup(linear.getOperation()));
    copy->setAttr(kCalibrationIdAttr,
                  b.getI64IntegerAttr(int64_t(originals.size())));
    originals.push_back(linear);
  });

  constexpr StringLiteral kNormIdAttr = "qlr.calibration_norm_id";
  SmallVector<Operation *> norms;
  if (keepResults)
    original.walk([&](Operation *op) {
      if (!isa<RMSNormOp, LayerNormOp>(op))
        return;
      run->mapping.lookup(op)->setAttr(
          kNormIdAttr, b.getI64IntegerAttr(int64_t(norms.size())));
      norms.push_back(op);
    });

  // While it is canonicalized, the copy returns the linears' results (so
  // that they and what they read stay), then nothing: the model's own
  // results (logits, caches) and what only they need fold away. With
  // keepResults it returns its float tensor results.
  SmallVector<Value> keep;
  if (keepResults) {
    for (Value result : body.getTerminator()->getOperands())
      if (auto tensor = dyn_cast<RankedTensorType>(result.getType());
          tensor && isa<FloatType>(tensor.getElementType()))
        keep.push_back(result);
  } else {
    func.walk([&](LinearOp linear) { keep.push_back(linear.getResult()); });
  }
  body.getTerminator()->setOperands(keep);
  func.setType(FunctionType::get(module.getContext(), func.getArgumentTypes(),
                                 ValueRange(keep).getTypes()));
  for (unsigned i = 0; i < func.getNumArguments(); ++i)
    func.removeArgAttr(
        i, StringAttr::get(module.getContext(), "bufferization.writable"));
  PassManager pm(module.getContext(), ModuleOp::getOperationName());
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());
  if (failed(pm.run(*run->module)))
    return failure();
  run->mapping.clear();
  func = run->function = *run->module->getOps<func::FuncOp>().begin();
  if (!keepResults) {
    func.getBody().front().getTerminator()->setOperands({});
    func.setType(
        FunctionType::get(module.getContext(), func.getArgumentTypes(), {}));
  }
  func.walk([&](Operation *op) {
    if (auto id = op->getAttrOfType<IntegerAttr>(kNormIdAttr)) {
      run->normOriginals[op] = norms[id.getInt()];
      op->removeAttr(kNormIdAttr);
    }
  });
  func.walk([&](LinearOp linear) {
    if (auto id = linear->getAttrOfType<IntegerAttr>(kCalibrationIdAttr))
      run->originals[linear] = originals[id.getInt()];
  });
  return run;
}
