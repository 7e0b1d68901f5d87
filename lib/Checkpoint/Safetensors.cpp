//===- Safetensors.cpp - Read Hugging Face checkpoint directories ---------===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// A Hugging Face LLaMA checkpoint is a directory with config.json and one or
// more *.safetensors files (read in name order). A safetensors file is
//
//   uint64 (little-endian) N, N bytes of JSON header, data
//
// where the header maps each tensor name to {"dtype", "shape",
// "data_offsets": [begin, end]} (offsets relative to the data) plus an
// optional "__metadata__" object. Hugging Face permutes the rows of each q/k
// head for the rotate-half RoPE convention; they are permuted back to the
// interleaved order on read.
//
//===----------------------------------------------------------------------===//

#include "CheckpointImpl.h"
#include "qlr/Tokenizer/Tokenizer.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/SmallString.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/StringSwitch.h"
#include "llvm/Support/CheckedArithmetic.h"
#include "llvm/Support/Endian.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/Path.h"

using namespace llvm;
using namespace qlr::checkpoint;
using namespace qlr::checkpoint::detail;

namespace {

/// The element size of a safetensors dtype, or 0 if unknown.
uint64_t safetensorsElementSize(StringRef dtype) {
  return StringSwitch<uint64_t>(dtype)
      .Cases({"F64", "I64", "U64"}, 8)
      .Cases({"F32", "I32", "U32"}, 4)
      .Cases({"F16", "BF16", "I16", "U16"}, 2)
      .Cases({"I8", "U8", "BOOL", "F8_E4M3", "F8_E5M2"}, 1)
      .Default(0);
}

std::optional<DType> dtypeForSafetensors(StringRef dtype) {
  return StringSwitch<std::optional<DType>>(dtype)
      .Case("F32", DType::F32)
      .Case("F16", DType::F16)
      .Case("BF16", DType::BF16)
      .Default(std::nullopt);
}

struct SafetensorsEntry {
  unsigned file = 0;
  std::string dtype;
  SmallVector<int64_t, 2> shape;
  uint64_t begin = 0, end = 0; ///< Absolute byte offsets in the file.
};

/// Reads a small text file (JSON) into memory.
Expected<std::unique_ptr<MemoryBuffer>> readTextFile(StringRef path) {
  ErrorOr<std::unique_ptr<MemoryBuffer>> buffer =
      MemoryBuffer::getFile(path, /*IsText=*/true);
  if (!buffer)
    return fileError(path, "cannot open: " + buffer.getError().message());
  return std::move(*buffer);
}

/// Parses one safetensors file's header into `entries`.
Error parseSafetensors(const MappedFile &file, unsigned fileIndex,
                       StringMap<SafetensorsEntry> &entries,
                       const std::vector<std::string> &fileNames) {
  StringRef path = file.path();
  ByteReader reader(path, file.bytes());
  uint64_t headerSize;
  if (Error e = reader.readU64(headerSize, "the safetensors header length"))
    return e;
  ArrayRef<uint8_t> headerBytes;
  if (Error e = reader.readBytes(headerSize,
                                 "the safetensors JSON header (" +
                                     Twine(headerSize) + " bytes)",
                                 headerBytes))
    return e;
  uint64_t dataStart = reader.offset();
  uint64_t dataSize = file.size() - dataStart;

  Expected<json::Value> header = json::parse(toStringRef(headerBytes));
  if (!header)
    return fileError(path,
                     "invalid JSON header: " + toString(header.takeError()));
  const json::Object *root = header->getAsObject();
  if (!root)
    return fileError(path, "the JSON header is not an object");

  for (const auto &[key, value] : *root) {
    StringRef name = key;
    if (name == "__metadata__")
      continue;
    std::string what = ("tensor '" + name + "'").str();
    const json::Object *object = value.getAsObject();
    if (!object)
      return fileError(path, what + " is not a JSON object");
    std::optional<StringRef> dtype = object->getString("dtype");
    if (!dtype)
      return fileError(path, what + " has no string 'dtype'");
    const json::Array *shape = object->getArray("shape");
    if (!shape)
      return fileError(path, what + " has no array 'shape'");
    const json::Array *offsets = object->getArray("data_offsets");
    if (!offsets || offsets->size() != 2)
      return fileError(path, what + " has no 'data_offsets' [begin, end]");

    SafetensorsEntry entry;
    entry.file = fileIndex;
    entry.dtype = dtype->str();
    uint64_t numElements = 1;
    for (const json::Value &d : *shape) {
      std::optional<int64_t> extent = d.getAsInteger();
      std::optional<uint64_t> product =
          extent && *extent >= 0
              ? checkedMulUnsigned(numElements, uint64_t(*extent))
              : std::nullopt;
      if (!product || *product > uint64_t(INT64_MAX))
        return fileError(path, what + " has an invalid shape (each "
                                      "dimension must be a non-negative "
                                      "integer and the element count must "
                                      "fit in 63 bits)");
      numElements = *product;
      entry.shape.push_back(*extent);
    }
    std::optional<int64_t> begin = (*offsets)[0].getAsInteger();
    std::optional<int64_t> end = (*offsets)[1].getAsInteger();
    if (!begin || !end || *begin < 0 || *end < *begin ||
        uint64_t(*end) > dataSize)
      return fileError(path, what + " data_offsets [" +
                                 (begin ? Twine(*begin) : Twine("?")) + ", " +
                                 (end ? Twine(*end) : Twine("?")) +
                                 "] do not lie inside the data section (" +
                                 Twine(dataSize) + " bytes after the " +
                                 Twine(dataStart) + "-byte header)");
    if (uint64_t elementSize = safetensorsElementSize(*dtype)) {
      std::optional<uint64_t> bytes =
          checkedMulUnsigned(numElements, elementSize);
      if (!bytes || *bytes != uint64_t(*end - *begin))
        return fileError(path, what + " has " + Twine(*end - *begin) +
                                   " bytes of data, but its shape " +
                                   formatShape(entry.shape) + " and dtype " +
                                   *dtype + " need " +
                                   (bytes ? Twine(*bytes) : Twine("2^64+")) +
                                   " bytes");
    }
    entry.begin = dataStart + uint64_t(*begin);
    entry.end = dataStart + uint64_t(*end);
    auto [it, inserted] = entries.try_emplace(name, std::move(entry));
    if (!inserted)
      return fileError(path,
                       what + " also appears in " + fileNames[it->second.file]);
  }
  return Error::success();
}

class ConfigReader {
public:
  ConfigReader(StringRef path, const json::Object &object)
      : path(path), object(object) {}

  /// The value of `key`, treating JSON null as absent.
  const json::Value *get(StringRef key) const {
    const json::Value *v = object.get(key);
    return v && !v->getAsNull() ? v : nullptr;
  }
  Error getInt(StringRef key, int64_t &out,
               std::optional<int64_t> defaultValue = std::nullopt) const {
    const json::Value *v = get(key);
    if (!v) {
      if (!defaultValue)
        return fileError(path, "missing key '" + key + "'");
      out = *defaultValue;
      return Error::success();
    }
    std::optional<int64_t> i = v->getAsInteger();
    if (!i)
      return fileError(path, "'" + key + "' must be an integer");
    out = *i;
    return Error::success();
  }
  Error getFloat(StringRef key, float &out,
                 std::optional<double> defaultValue = std::nullopt) const {
    const json::Value *v = get(key);
    if (!v) {
      if (!defaultValue)
        return fileError(path, "missing key '" + key + "'");
      out = float(*defaultValue);
      return Error::success();
    }
    std::optional<double> d = v->getAsNumber();
    if (!d)
      return fileError(path, "'" + key + "' must be a number");
    out = float(*d);
    return Error::success();
  }
  Error getBool(StringRef key, bool &out, bool defaultValue) const {
    const json::Value *v = get(key);
    if (!v) {
      out = defaultValue;
      return Error::success();
    }
    std::optional<bool> b = v->getAsBoolean();
    if (!b)
      return fileError(path, "'" + key + "' must be true or false");
    out = *b;
    return Error::success();
  }

  Error checkArchitecture() const {
    const json::Value *modelType = get("model_type");
    const json::Value *architectures = get("architectures");
    if (!modelType && !architectures)
      return fileError(path, "neither 'model_type' nor 'architectures' is "
                             "set; expected a LLaMA model");
    if (modelType) {
      std::optional<StringRef> type = modelType->getAsString();
      if (!type)
        return fileError(path, "'model_type' must be a string");
      if (*type != "llama")
        return fileError(path, "model_type '" + *type +
                                   "' is not supported (expected 'llama')");
    }
    if (architectures) {
      const json::Array *list = architectures->getAsArray();
      if (!list)
        return fileError(path, "'architectures' must be an array");
      SmallVector<std::string> names;
      bool found = false;
      for (const json::Value &v : *list) {
        std::optional<StringRef> name = v.getAsString();
        if (!name)
          return fileError(path, "'architectures' must hold strings");
        names.push_back(("'" + *name + "'").str());
        found |= *name == "LlamaForCausalLM";
      }
      if (!found)
        return fileError(path, "architectures [" + join(names, ", ") +
                                   "] are not supported (expected "
                                   "'LlamaForCausalLM')");
    }
    if (const json::Value *act = get("hidden_act"))
      if (act->getAsString() != StringRef("silu"))
        return fileError(path, "only hidden_act 'silu' is supported");
    for (StringRef key : {"attention_bias", "mlp_bias"})
      if (const json::Value *bias = get(key))
        if (bias->getAsBoolean() != false)
          return fileError(path,
                           "'" + key + "' is set; biases are not supported");
    if (const json::Value *scaling = get("rope_scaling")) {
      const json::Object *object = scaling->getAsObject();
      std::optional<StringRef> type;
      if (object) {
        type = object->getString("rope_type");
        if (!type)
          type = object->getString("type");
      }
      if (!type || *type != "default")
        return fileError(path, "rope_scaling" +
                                   (type ? " '" + *type + "'" : Twine("")) +
                                   " is not supported");
    }
    return Error::success();
  }

private:
  StringRef path;
  const json::Object &object;
};

Error readConfig(StringRef configPath, const json::Object &object,
                 ModelConfig &config) {
  ConfigReader reader(configPath, object);
  if (Error e = reader.checkArchitecture())
    return e;
  if (Error e = reader.getInt("hidden_size", config.dim))
    return e;
  if (Error e = reader.getInt("intermediate_size", config.hiddenDim))
    return e;
  if (Error e = reader.getInt("num_hidden_layers", config.numLayers))
    return e;
  if (Error e = reader.getInt("num_attention_heads", config.numHeads))
    return e;
  if (Error e = reader.getInt("num_key_value_heads", config.numKVHeads,
                              config.numHeads))
    return e;
  if (Error e = reader.getInt("vocab_size", config.vocabSize))
    return e;
  if (Error e = reader.getInt("max_position_embeddings", config.maxSeqLen))
    return e;
  if (Error e = reader.getFloat("rms_norm_eps", config.normEps))
    return e;
  if (Error e = reader.getFloat("rope_theta", config.ropeTheta, 10000.0))
    return e;
  if (Error e =
          reader.getBool("tie_word_embeddings", config.tiedEmbeddings, false))
    return e;
  bool explicitHeadDim = reader.get("head_dim") != nullptr;
  if (!explicitHeadDim && config.numHeads > 0 &&
      config.dim % config.numHeads != 0)
    return fileError(configPath, "num_attention_heads (" +
                                     Twine(config.numHeads) +
                                     ") does not divide hidden_size (" +
                                     Twine(config.dim) + ")");
  int64_t defaultHeadDim =
      config.numHeads > 0 ? config.dim / config.numHeads : 0;
  if (Error e = reader.getInt("head_dim", config.headDim, defaultHeadDim))
    return e;
  return Error::success();
}

/// The Hugging Face name of a canonical tensor.
std::string hfName(const CanonicalTensor &t) {
  switch (t.role) {
  case TensorRole::TokEmbeddings:
    return "model.embed_tokens.weight";
  case TensorRole::Norm:
    return "model.norm.weight";
  case TensorRole::Output:
    return "lm_head.weight";
  default:
    break;
  }
  static const char *const suffixes[] = {nullptr,
                                         "input_layernorm",
                                         "self_attn.q_proj",
                                         "self_attn.k_proj",
                                         "self_attn.v_proj",
                                         "self_attn.o_proj",
                                         "post_attention_layernorm",
                                         "mlp.gate_proj",
                                         "mlp.down_proj",
                                         "mlp.up_proj"};
  return ("model.layers." + Twine(t.layer) + "." + suffixes[unsigned(t.role)] +
          ".weight")
      .str();
}

} // namespace

Expected<std::unique_ptr<Checkpoint>>
qlr::checkpoint::detail::openHuggingFace(StringRef directory) {
  SmallString<256> configPath(directory);
  sys::path::append(configPath, "config.json");
  if (!sys::fs::exists(configPath))
    return fileError(directory, "not a Hugging Face checkpoint directory: "
                                "config.json is missing");
  Expected<std::unique_ptr<MemoryBuffer>> configText = readTextFile(configPath);
  if (!configText)
    return configText.takeError();
  Expected<json::Value> configJson = json::parse((*configText)->getBuffer());
  if (!configJson)
    return fileError(configPath,
                     "invalid JSON: " + toString(configJson.takeError()));
  const json::Object *configObject = configJson->getAsObject();
  if (!configObject)
    return fileError(configPath, "the top-level JSON value is not an object");

  auto checkpoint =
      std::make_unique<MappedCheckpoint>("safetensors", directory);
  ModelConfig &config = checkpoint->mutableConfig();
  if (Error e = readConfig(configPath, *configObject, config))
    return std::move(e);

  // The *.safetensors files, in name order.
  std::vector<std::string> files;
  std::error_code ec;
  for (sys::fs::directory_iterator it(directory, ec), end; it != end && !ec;
       it.increment(ec))
    if (sys::path::extension(it->path()) == ".safetensors")
      files.push_back(it->path());
  if (ec)
    return fileError(directory, "cannot list the directory: " + ec.message());
  if (files.empty())
    return fileError(directory, "no *.safetensors files in the checkpoint "
                                "directory");
  llvm::sort(files);

  StringMap<SafetensorsEntry> entries;
  for (const std::string &path : files) {
    Expected<std::unique_ptr<MappedFile>> file = MappedFile::open(path);
    if (!file)
      return file.takeError();
    const MappedFile &mapped = **file;
    unsigned index = checkpoint->addFile(std::move(*file));
    if (Error e = parseSafetensors(mapped, index, entries, files))
      return std::move(e);
  }

  if (!entries.count("lm_head.weight"))
    config.tiedEmbeddings = true;
  ConfigFieldNames names{"hidden_size",         "intermediate_size",
                         "num_hidden_layers",   "num_attention_heads",
                         "num_key_value_heads", "head_dim",
                         "vocab_size",          "max_position_embeddings",
                         "rms_norm_eps",        "rope_theta"};
  if (Error e = validateConfig(configPath, config, names))
    return std::move(e);

  Error err =
      forEachCanonicalTensor(config, [&](const CanonicalTensor &t) -> Error {
        std::string name = hfName(t);
        auto it = entries.find(name);
        if (it == entries.end())
          return fileError(directory, "missing tensor '" + name + "' (" +
                                          t.name +
                                          ") in the *.safetensors files");
        const SafetensorsEntry &entry = it->second;
        StringRef file = files[entry.file];
        if (ArrayRef<int64_t>(entry.shape) != ArrayRef<int64_t>(t.shape))
          return fileError(file, "tensor '" + name + "' has shape " +
                                     formatShape(entry.shape) +
                                     ", but config.json implies " +
                                     formatShape(t.shape));
        std::optional<DType> dtype = dtypeForSafetensors(entry.dtype);
        if (!dtype)
          return fileError(file,
                           "tensor '" + name + "' has dtype '" + entry.dtype +
                               "', which is not supported (supported: F32, "
                               "F16, BF16)");
        TensorSource source;
        source.file = entry.file;
        source.offset = entry.begin;
        source.numBytes = entry.end - entry.begin;
        if (t.role == TensorRole::WQ || t.role == TensorRole::WK)
          source.permuteHeadDim = config.headDim;
        checkpoint->addTensor(
            TensorInfo{t.name, {t.shape.begin(), t.shape.end()}, *dtype},
            source);
        return Error::success();
      });
  if (err)
    return std::move(err);

  // The tokenizer, when the directory has one, is read by the tokenizer
  // library (the same reader as `qlr-import --tokenizer tokenizer.json`).
  SmallString<256> tokenizerPath(directory);
  sys::path::append(tokenizerPath, "tokenizer.json");
  if (sys::fs::exists(tokenizerPath)) {
    Expected<tokenizer::TokenizerData> tokenizer = tokenizer::loadTokenizerFile(
        tokenizerPath, checkpoint->config().vocabSize);
    if (!tokenizer)
      return tokenizer.takeError();
    // Without tokenizer_config.json, the special ids config.json names win
    // over the tokenizer library's guesses.
    SmallString<256> tokenizerConfigPath(directory);
    sys::path::append(tokenizerConfigPath, "tokenizer_config.json");
    bool hasTokenizerConfig = sys::fs::exists(tokenizerConfigPath);
    for (auto [key, id] : {std::make_pair("bos_token_id", &tokenizer->bosId),
                           std::make_pair("eos_token_id", &tokenizer->eosId)}) {
      std::optional<int64_t> value = configObject->getInteger(key);
      if (!value || hasTokenizerConfig)
        continue;
      if (*value < 0 || *value >= int64_t(tokenizer->tokens.size()))
        return createStringError(
            "%s: '%s' is %lld, not a token id of %s (%zu tokens)",
            configPath.c_str(), key, (long long)*value, tokenizerPath.c_str(),
            tokenizer->tokens.size());
      *id = int32_t(*value);
    }
    checkpoint->mutableTokenizer() = std::move(*tokenizer);
  }
  return std::unique_ptr<Checkpoint>(std::move(checkpoint));
}
