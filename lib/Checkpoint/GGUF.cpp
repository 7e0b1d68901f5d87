//===- GGUF.cpp - Read GGUF checkpoints -----------------------------------===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// GGUF versions 2 and 3 (ggml docs/gguf.md), little-endian:
//
//   "GGUF", uint32 version, uint64 tensor_count, uint64 kv_count,
//   kv_count x { string key, uint32 value_type, value },
//   tensor_count x { string name, uint32 n_dims, uint64 ne[n_dims],
//                    uint32 ggml_type, uint64 offset },
//   padding to general.alignment (default 32), tensor data.
//
// Strings are a uint64 length and that many bytes; arrays are a uint32
// element type, a uint64 count and the elements. ne[] lists the dimensions
// innermost first, so ne = [dim, vocab] is the row-major shape [vocab, dim].
// Tensor offsets are relative to the start of the data section.
//
// Only the "llama" architecture is accepted; llama.cpp's convert script
// already stores q/k rows in the interleaved RoPE order, so no permutation is
// applied. The tokenizer is rebuilt from the tokenizer.ggml.* keys with
// llama.cpp's defaults where a key is absent:
//   tokenizer.ggml.model "llama": SentencePiece BPE; BOS 1, EOS 2, UNK 0,
//     add_bos_token true, add_space_prefix true.
//   tokenizer.ggml.model "gpt2": byte-level BPE; no default special ids,
//     add_bos_token false (true for the "llama-bpe" pre-tokenizer, as
//     llama.cpp sets for LLaMA-3), add_space_prefix false.
//
//===----------------------------------------------------------------------===//

#include "CheckpointImpl.h"

#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/CheckedArithmetic.h"
#include "llvm/Support/Endian.h"
#include "llvm/Support/MathExtras.h"

#include <cstring>

using namespace llvm;
using namespace qlr::checkpoint;
using namespace qlr::checkpoint::detail;
using qlr::tokenizer::TokenizerData;
using qlr::tokenizer::TokenizerKind;

namespace {

enum ValueType : uint32_t {
  GGUF_U8 = 0,
  GGUF_I8 = 1,
  GGUF_U16 = 2,
  GGUF_I16 = 3,
  GGUF_U32 = 4,
  GGUF_I32 = 5,
  GGUF_F32 = 6,
  GGUF_BOOL = 7,
  GGUF_STRING = 8,
  GGUF_ARRAY = 9,
  GGUF_U64 = 10,
  GGUF_I64 = 11,
  GGUF_F64 = 12,
};

StringRef valueTypeName(uint32_t type) {
  static const char *const names[] = {
      "uint8", "int8",   "uint16", "int16",  "uint32", "int32",  "float32",
      "bool",  "string", "array",  "uint64", "int64",  "float64"};
  return type < std::size(names) ? names[type] : "unknown";
}

/// The size of a fixed-size value, or 0 for strings, arrays and unknown
/// types.
uint64_t fixedValueSize(uint32_t type) {
  switch (type) {
  case GGUF_U8:
  case GGUF_I8:
  case GGUF_BOOL:
    return 1;
  case GGUF_U16:
  case GGUF_I16:
    return 2;
  case GGUF_U32:
  case GGUF_I32:
  case GGUF_F32:
    return 4;
  case GGUF_U64:
  case GGUF_I64:
  case GGUF_F64:
    return 8;
  default:
    return 0;
  }
}

bool isIntegerType(uint32_t type) {
  return type <= GGUF_I32 || type == GGUF_U64 || type == GGUF_I64;
}

/// Decodes the fixed-size integer of `type` at `p`; false if it does not fit
/// in int64_t.
bool decodeInteger(uint32_t type, const uint8_t *p, int64_t &out) {
  using namespace support::endian;
  switch (type) {
  case GGUF_U8:
    out = p[0];
    return true;
  case GGUF_I8:
    out = int8_t(p[0]);
    return true;
  case GGUF_U16:
    out = read16le(p);
    return true;
  case GGUF_I16:
    out = int16_t(read16le(p));
    return true;
  case GGUF_U32:
    out = read32le(p);
    return true;
  case GGUF_I32:
    out = int32_t(read32le(p));
    return true;
  case GGUF_U64: {
    uint64_t v = read64le(p);
    out = int64_t(v);
    return v <= uint64_t(INT64_MAX);
  }
  case GGUF_I64:
    out = int64_t(read64le(p));
    return true;
  default:
    return false;
  }
}

/// Decodes a float32/float64 value (or an integer, converted).
bool decodeFloat(uint32_t type, const uint8_t *p, double &out) {
  if (type == GGUF_F32) {
    uint32_t bits = support::endian::read32le(p);
    float f;
    std::memcpy(&f, &bits, 4);
    out = f;
    return true;
  }
  if (type == GGUF_F64) {
    uint64_t bits = support::endian::read64le(p);
    std::memcpy(&out, &bits, 8);
    return true;
  }
  int64_t i;
  if (!decodeInteger(type, p, i))
    return false;
  out = double(i);
  return true;
}

/// One metadata value. Scalars and arrays of fixed-size scalars keep their
/// raw bytes (pointing into the mapped file); string arrays their strings.
struct Value {
  uint32_t type = 0;
  ArrayRef<uint8_t> raw; ///< A scalar's bytes, or a fixed-size array's.
  StringRef string;      ///< GGUF_STRING.
  uint32_t elementType = 0;
  uint64_t count = 0;
  std::vector<StringRef> strings; ///< Arrays of strings.
};

/// The ggml tensor types (ggml.h), for error messages.
StringRef ggmlTypeName(uint32_t type) {
  static const char *const names[] = {
      "F32",   "F16",   "Q4_0",    "Q4_1",   nullptr,   nullptr, "Q5_0",
      "Q5_1",  "Q8_0",  "Q8_1",    "Q2_K",   "Q3_K",    "Q4_K",  "Q5_K",
      "Q6_K",  "Q8_K",  "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL",
      "IQ3_S", "IQ2_S", "IQ4_XS",  "I8",     "I16",     "I32",   "I64",
      "F64",   "IQ1_M", "BF16",    nullptr,  nullptr,   nullptr, "TQ1_0",
      "TQ2_0", nullptr, nullptr,   nullptr,  "MXFP4"};
  if (type < std::size(names) && names[type])
    return names[type];
  return "";
}

std::optional<DType> dtypeForGGMLType(uint32_t type) {
  switch (type) {
  case 0:
    return DType::F32;
  case 1:
    return DType::F16;
  case 2:
    return DType::Q4_0;
  case 3:
    return DType::Q4_1;
  case 8:
    return DType::Q8_0;
  case 30:
    return DType::BF16;
  default:
    return std::nullopt;
  }
}

struct GGUFTensor {
  StringRef name;
  SmallVector<uint64_t, 4> ne;
  uint64_t numElements = 0;
  uint32_t type = 0;
  uint64_t offset = 0; ///< Relative to the data section.
};

class GGUFReader {
public:
  GGUFReader(StringRef path, const MappedFile &file)
      : path(path), file(file), reader(path, file.bytes()) {}

  Error parse();
  Error buildConfig(ModelConfig &config);
  Expected<std::optional<TokenizerData>> buildTokenizer();
  Error addTensors(MappedCheckpoint &checkpoint, unsigned fileIndex);

private:
  Error parseString(StringRef &out, const Twine &what);
  Error parseValue(uint32_t type, Value &out, const Twine &what,
                   unsigned depth);

  Error error(const Twine &message) const { return fileError(path, message); }
  Error missing(StringRef key) const {
    return error("missing metadata key '" + key + "'");
  }
  Error wrongType(StringRef key, const Value &v, StringRef expected) const {
    std::string actual = valueTypeName(v.type).str();
    if (v.type == GGUF_ARRAY)
      actual = ("array of " + valueTypeName(v.elementType)).str();
    return error("metadata key '" + key + "' has type " + actual +
                 "; expected " + expected);
  }

  const Value *find(StringRef key) const {
    auto it = metadata.find(key);
    return it == metadata.end() ? nullptr : &it->second;
  }
  Expected<int64_t> getInt(StringRef key, const Value &v) const;
  Expected<int64_t> requireInt(StringRef key) const;
  Expected<int64_t> intOr(StringRef key, int64_t defaultValue) const;
  Expected<double> requireFloat(StringRef key) const;
  Expected<double> floatOr(StringRef key, double defaultValue) const;
  Expected<bool> boolOr(StringRef key, bool defaultValue) const;
  Expected<std::optional<StringRef>> optString(StringRef key) const;
  /// A token id key: absent -> `defaultValue`; present -> checked to be a
  /// valid id below `numTokens`.
  Expected<int32_t> tokenIdOr(StringRef key, int32_t defaultValue,
                              uint64_t numTokens) const;

  StringRef path;
  const MappedFile &file;
  ByteReader reader;
  StringMap<Value> metadata;
  std::vector<GGUFTensor> tensors;
  StringMap<unsigned> tensorIndex;
  uint64_t dataStart = 0;
  uint64_t alignment = 32;
};

} // namespace

//===----------------------------------------------------------------------===//
// Parsing the header, metadata and tensor infos
//===----------------------------------------------------------------------===//

Error GGUFReader::parseString(StringRef &out, const Twine &what) {
  uint64_t length;
  if (Error e = reader.readU64(length, "the length of " + what))
    return e;
  ArrayRef<uint8_t> bytes;
  if (Error e = reader.readBytes(
          length, what + " (" + Twine(length) + " bytes)", bytes))
    return e;
  out = toStringRef(bytes);
  return Error::success();
}

Error GGUFReader::parseValue(uint32_t type, Value &out, const Twine &what,
                             unsigned depth) {
  out.type = type;
  if (uint64_t size = fixedValueSize(type))
    return reader.readBytes(size, what, out.raw);
  if (type == GGUF_STRING)
    return parseString(out.string, what);
  if (type != GGUF_ARRAY)
    return error(what + " has unknown value type " + Twine(type));

  if (depth > 8)
    return error(what + " nests arrays more than 8 deep");
  if (Error e = reader.readU32(out.elementType, "the element type of " + what))
    return e;
  if (Error e = reader.readU64(out.count, "the element count of " + what))
    return e;
  if (uint64_t size = fixedValueSize(out.elementType)) {
    std::optional<uint64_t> bytes = checkedMulUnsigned(out.count, size);
    if (!bytes)
      return error(what + ": " + Twine(out.count) + " elements of type " +
                   valueTypeName(out.elementType) + " overflow 64 bits");
    return reader.readBytes(*bytes,
                            what + " (" + Twine(out.count) + " x " +
                                valueTypeName(out.elementType) + ")",
                            out.raw);
  }
  if (out.elementType != GGUF_STRING && out.elementType != GGUF_ARRAY)
    return error(what + " has unknown element type " + Twine(out.elementType));
  // Every string or array element takes at least 8 bytes; reject impossible
  // counts before reserving memory for them.
  if (out.count > reader.remaining() / 8)
    return error("truncated file: " + what + " claims " + Twine(out.count) +
                 " elements, more than the remaining " +
                 Twine(reader.remaining()) + " bytes can hold");
  if (out.elementType == GGUF_STRING) {
    out.strings.resize(out.count);
    for (uint64_t i = 0; i < out.count; ++i)
      if (Error e = parseString(out.strings[i],
                                "element " + Twine(i) + " of " + what))
        return e;
    return Error::success();
  }
  for (uint64_t i = 0; i < out.count; ++i) {
    Value element; // Nested arrays are parsed to be skipped.
    if (Error e = parseValue(GGUF_ARRAY, element,
                             "element " + Twine(i) + " of " + what, depth + 1))
      return e;
  }
  return Error::success();
}

Error GGUFReader::parse() {
  uint32_t magic, version;
  if (Error e = reader.readU32(magic, "the magic"))
    return e;
  if (Error e = reader.readU32(version, "the GGUF version"))
    return e;
  if (version != 2 && version != 3) {
    if (version != 0 && (version & 0xFFFF) == 0)
      return error("GGUF version field is " + Twine(version) +
                   "; this looks like a big-endian GGUF file, which is not "
                   "supported");
    return error("unsupported GGUF version " + Twine(version) +
                 " (supported: 2 and 3)");
  }
  uint64_t tensorCount, kvCount;
  if (Error e = reader.readU64(tensorCount, "the tensor count"))
    return e;
  if (Error e = reader.readU64(kvCount, "the metadata key/value count"))
    return e;
  // A key/value takes at least 13 bytes (key length, type, a uint8 value), a
  // tensor info at least 24 (name length, n_dims, type, offset).
  if (kvCount > reader.remaining() / 13)
    return error("the header claims " + Twine(kvCount) +
                 " metadata key/value pairs, more than the file (" +
                 Twine(file.size()) + " bytes) can hold");
  if (tensorCount > reader.remaining() / 24)
    return error("the header claims " + Twine(tensorCount) +
                 " tensors, more than the file (" + Twine(file.size()) +
                 " bytes) can hold");

  for (uint64_t i = 0; i < kvCount; ++i) {
    StringRef key;
    if (Error e = parseString(key, "metadata key #" + Twine(i)))
      return e;
    uint32_t type;
    if (Error e =
            reader.readU32(type, "the type of metadata key '" + key + "'"))
      return e;
    Value value;
    if (Error e = parseValue(type, value,
                             "the value of metadata key '" + key + "'", 0))
      return e;
    if (!metadata.try_emplace(key, std::move(value)).second)
      return error("duplicate metadata key '" + key + "'");
  }

  tensors.resize(tensorCount);
  for (uint64_t i = 0; i < tensorCount; ++i) {
    GGUFTensor &t = tensors[i];
    if (Error e = parseString(t.name, "the name of tensor #" + Twine(i)))
      return e;
    std::string what = ("tensor '" + t.name + "'").str();
    uint32_t numDims;
    if (Error e = reader.readU32(numDims, "the dimension count of " + what))
      return e;
    if (numDims < 1 || numDims > 4)
      return error(what + " has " + Twine(numDims) +
                   " dimensions; GGUF tensors have 1 to 4");
    t.numElements = 1;
    for (uint32_t d = 0; d < numDims; ++d) {
      uint64_t extent;
      if (Error e =
              reader.readU64(extent, "dimension " + Twine(d) + " of " + what))
        return e;
      std::optional<uint64_t> product =
          checkedMulUnsigned(t.numElements, extent);
      if (extent == 0 || !product || *product > uint64_t(INT64_MAX))
        return error(what + " has invalid dimension ne[" + Twine(d) +
                     "] = " + Twine(extent) +
                     (extent ? " (the element count overflows)" : ""));
      t.numElements = *product;
      t.ne.push_back(extent);
    }
    if (Error e = reader.readU32(t.type, "the type of " + what))
      return e;
    if (Error e = reader.readU64(t.offset, "the data offset of " + what))
      return e;
    if (!tensorIndex.try_emplace(t.name, i).second)
      return error("duplicate tensor name '" + t.name + "'");
  }

  if (const Value *v = find("general.alignment")) {
    Expected<int64_t> a = getInt("general.alignment", *v);
    if (!a)
      return a.takeError();
    if (*a <= 0 || *a > (int64_t(1) << 30) || !isPowerOf2_64(*a))
      return error("general.alignment is " + Twine(*a) +
                   "; it must be a power of two");
    alignment = *a;
  }
  dataStart = alignTo(reader.offset(), alignment);
  return Error::success();
}

//===----------------------------------------------------------------------===//
// Typed metadata access
//===----------------------------------------------------------------------===//

Expected<int64_t> GGUFReader::getInt(StringRef key, const Value &v) const {
  if (!isIntegerType(v.type))
    return wrongType(key, v, "an integer");
  int64_t result;
  if (!decodeInteger(v.type, v.raw.data(), result))
    return error("metadata key '" + key + "' is too large (" +
                 Twine(support::endian::read64le(v.raw.data())) + ")");
  return result;
}

Expected<int64_t> GGUFReader::requireInt(StringRef key) const {
  const Value *v = find(key);
  if (!v)
    return missing(key);
  return getInt(key, *v);
}

Expected<int64_t> GGUFReader::intOr(StringRef key, int64_t defaultValue) const {
  const Value *v = find(key);
  return v ? getInt(key, *v) : Expected<int64_t>(defaultValue);
}

Expected<double> GGUFReader::requireFloat(StringRef key) const {
  const Value *v = find(key);
  if (!v)
    return missing(key);
  double result;
  if (fixedValueSize(v->type) && v->type != GGUF_BOOL &&
      decodeFloat(v->type, v->raw.data(), result))
    return result;
  return wrongType(key, *v, "a number");
}

Expected<double> GGUFReader::floatOr(StringRef key, double defaultValue) const {
  if (!find(key))
    return defaultValue;
  return requireFloat(key);
}

Expected<bool> GGUFReader::boolOr(StringRef key, bool defaultValue) const {
  const Value *v = find(key);
  if (!v)
    return defaultValue;
  if (v->type != GGUF_BOOL)
    return wrongType(key, *v, "a bool");
  return v->raw[0] != 0;
}

Expected<std::optional<StringRef>> GGUFReader::optString(StringRef key) const {
  const Value *v = find(key);
  if (!v)
    return std::nullopt;
  if (v->type != GGUF_STRING)
    return wrongType(key, *v, "a string");
  return std::optional<StringRef>(v->string);
}

Expected<int32_t> GGUFReader::tokenIdOr(StringRef key, int32_t defaultValue,
                                        uint64_t numTokens) const {
  const Value *v = find(key);
  if (!v)
    return defaultValue;
  Expected<int64_t> id = getInt(key, *v);
  if (!id)
    return id.takeError();
  if (*id < 0 || uint64_t(*id) >= numTokens)
    return error("metadata key '" + key + "' is " + Twine(*id) +
                 ", not a token id (there are " + Twine(numTokens) +
                 " tokens)");
  return int32_t(*id);
}

//===----------------------------------------------------------------------===//
// Config, tokenizer and tensors
//===----------------------------------------------------------------------===//

Error GGUFReader::buildConfig(ModelConfig &config) {
  Expected<std::optional<StringRef>> arch = optString("general.architecture");
  if (!arch)
    return arch.takeError();
  if (!*arch)
    return missing("general.architecture");
  if (**arch != "llama")
    return error("architecture '" + **arch +
                 "' is not supported (general.architecture must be 'llama')");

  auto readInt = [&](StringRef key, int64_t &out) -> Error {
    Expected<int64_t> v = requireInt(key);
    if (!v)
      return v.takeError();
    out = *v;
    return Error::success();
  };
  if (Error e = readInt("llama.embedding_length", config.dim))
    return e;
  if (Error e = readInt("llama.feed_forward_length", config.hiddenDim))
    return e;
  if (Error e = readInt("llama.block_count", config.numLayers))
    return e;
  if (Error e = readInt("llama.attention.head_count", config.numHeads))
    return e;
  if (Error e = readInt("llama.context_length", config.maxSeqLen))
    return e;
  Expected<int64_t> kvHeads =
      intOr("llama.attention.head_count_kv", config.numHeads);
  if (!kvHeads)
    return kvHeads.takeError();
  config.numKVHeads = *kvHeads;

  // The head dimension: llama.attention.key_length, else the rotary
  // dimension count (LLaMA rotates whole heads), else dim / heads.
  const char *headDimKey = "llama.rope.dimension_count";
  if (find("llama.attention.key_length"))
    headDimKey = "llama.attention.key_length";
  if (find(headDimKey)) {
    if (Error e = readInt(headDimKey, config.headDim))
      return e;
  } else {
    if (config.numHeads > 0 && config.dim % config.numHeads != 0)
      return error("llama.attention.head_count (" + Twine(config.numHeads) +
                   ") does not divide llama.embedding_length (" +
                   Twine(config.dim) + ")");
    config.headDim = config.numHeads > 0 ? config.dim / config.numHeads : 0;
  }
  for (StringRef key :
       {"llama.rope.dimension_count", "llama.attention.value_length"}) {
    if (!find(key) || key == headDimKey)
      continue;
    Expected<int64_t> v = requireInt(key);
    if (!v)
      return v.takeError();
    if (*v != config.headDim)
      return error("metadata key '" + key + "' is " + Twine(*v) +
                   ", but the head dimension (" + headDimKey + ") is " +
                   Twine(config.headDim) + "; this is not supported");
  }

  if (const Value *tokens = find("tokenizer.ggml.tokens")) {
    if (tokens->type != GGUF_ARRAY || tokens->elementType != GGUF_STRING)
      return wrongType("tokenizer.ggml.tokens", *tokens, "an array of strings");
    config.vocabSize = int64_t(std::min<uint64_t>(tokens->count, INT64_MAX));
  } else if (find("llama.vocab_size")) {
    if (Error e = readInt("llama.vocab_size", config.vocabSize))
      return e;
  } else {
    return error("missing metadata key 'tokenizer.ggml.tokens' (or "
                 "'llama.vocab_size'), which gives the vocabulary size");
  }

  Expected<double> eps = requireFloat("llama.attention.layer_norm_rms_epsilon");
  if (!eps)
    return eps.takeError();
  config.normEps = float(*eps);
  Expected<double> theta = floatOr("llama.rope.freq_base", 10000.0);
  if (!theta)
    return theta.takeError();
  config.ropeTheta = float(*theta);

  Expected<std::optional<StringRef>> scaling =
      optString("llama.rope.scaling.type");
  if (!scaling)
    return scaling.takeError();
  if (*scaling && **scaling != "none")
    return error("rope scaling '" + **scaling +
                 "' (llama.rope.scaling.type) is not supported");
  if (tensorIndex.count("rope_freqs.weight"))
    return error("tensor 'rope_freqs.weight' (LLaMA-3.1-style rope frequency "
                 "scaling) is not supported");

  config.tiedEmbeddings = !tensorIndex.count("output.weight");

  ConfigFieldNames names{"llama.embedding_length",
                         "llama.feed_forward_length",
                         "llama.block_count",
                         "llama.attention.head_count",
                         "llama.attention.head_count_kv",
                         headDimKey,
                         find("tokenizer.ggml.tokens")
                             ? "the length of tokenizer.ggml.tokens"
                             : "llama.vocab_size",
                         "llama.context_length",
                         "llama.attention.layer_norm_rms_epsilon",
                         "llama.rope.freq_base"};
  if (!find(headDimKey))
    names.headDim = "the head dimension (embedding_length / head_count)";
  return validateConfig(path, config, names);
}

Expected<std::optional<TokenizerData>> GGUFReader::buildTokenizer() {
  Expected<std::optional<StringRef>> model = optString("tokenizer.ggml.model");
  if (!model)
    return model.takeError();
  if (!*model)
    return std::nullopt;

  TokenizerData data;
  if (**model == "llama") {
    data.kind = TokenizerKind::SentencePieceBPE;
  } else if (**model == "gpt2") {
    data.kind = TokenizerKind::ByteLevelBPE;
  } else {
    return error("tokenizer model '" + **model +
                 "' (tokenizer.ggml.model) is not supported (expected 'llama' "
                 "or 'gpt2')");
  }
  bool spm = data.kind == TokenizerKind::SentencePieceBPE;

  const Value *tokens = find("tokenizer.ggml.tokens");
  if (!tokens)
    return missing("tokenizer.ggml.tokens");
  // buildConfig checked the type.
  uint64_t numTokens = tokens->count;
  if (numTokens > uint64_t(INT32_MAX))
    return error("tokenizer.ggml.tokens has " + Twine(numTokens) +
                 " tokens, more than int32 token ids allow");
  data.tokens.assign(tokens->strings.begin(), tokens->strings.end());

  auto checkLength = [&](StringRef key, const Value &v) -> Error {
    if (v.count != numTokens)
      return error("metadata key '" + key + "' has " + Twine(v.count) +
                   " elements, but tokenizer.ggml.tokens has " +
                   Twine(numTokens));
    return Error::success();
  };
  if (const Value *scores = find("tokenizer.ggml.scores")) {
    if (scores->type != GGUF_ARRAY ||
        (scores->elementType != GGUF_F32 && scores->elementType != GGUF_F64))
      return wrongType("tokenizer.ggml.scores", *scores, "an array of float32");
    if (Error e = checkLength("tokenizer.ggml.scores", *scores))
      return std::move(e);
    uint64_t size = fixedValueSize(scores->elementType);
    data.scores.resize(numTokens);
    for (uint64_t i = 0; i < numTokens; ++i) {
      double v = 0;
      decodeFloat(scores->elementType, scores->raw.data() + i * size, v);
      data.scores[i] = float(v);
    }
  }
  if (const Value *types = find("tokenizer.ggml.token_type")) {
    if (types->type != GGUF_ARRAY || !isIntegerType(types->elementType))
      return wrongType("tokenizer.ggml.token_type", *types,
                       "an array of int32");
    if (Error e = checkLength("tokenizer.ggml.token_type", *types))
      return std::move(e);
    uint64_t size = fixedValueSize(types->elementType);
    data.tokenTypes.resize(numTokens);
    for (uint64_t i = 0; i < numTokens; ++i) {
      int64_t v;
      if (!decodeInteger(types->elementType, types->raw.data() + i * size, v) ||
          v < INT32_MIN || v > INT32_MAX)
        return error("tokenizer.ggml.token_type[" + Twine(i) +
                     "] does not fit in int32");
      data.tokenTypes[i] = int32_t(v);
    }
  }
  if (const Value *merges = find("tokenizer.ggml.merges")) {
    if (merges->type != GGUF_ARRAY || merges->elementType != GGUF_STRING)
      return wrongType("tokenizer.ggml.merges", *merges, "an array of strings");
    data.merges.assign(merges->strings.begin(), merges->strings.end());
  } else if (!spm) {
    return error("missing metadata key 'tokenizer.ggml.merges', required by "
                 "the 'gpt2' tokenizer model");
  }

  Expected<std::optional<StringRef>> pre = optString("tokenizer.ggml.pre");
  if (!pre)
    return pre.takeError();
  if (*pre)
    data.preTokenizer = (**pre).str();

  struct {
    const char *key;
    int32_t &field;
    int32_t defaultValue;
  } ids[] = {
      {"tokenizer.ggml.bos_token_id", data.bosId, spm ? 1 : -1},
      {"tokenizer.ggml.eos_token_id", data.eosId, spm ? 2 : -1},
      {"tokenizer.ggml.unknown_token_id", data.unkId, spm ? 0 : -1},
      {"tokenizer.ggml.padding_token_id", data.padId, -1},
  };
  for (auto &id : ids) {
    // Defaults that do not exist in a small vocabulary become "none".
    int32_t defaultValue = uint64_t(std::max(id.defaultValue, 0)) < numTokens
                               ? id.defaultValue
                               : -1;
    Expected<int32_t> v = tokenIdOr(id.key, defaultValue, numTokens);
    if (!v)
      return v.takeError();
    id.field = *v;
  }

  Expected<bool> addBos = boolOr("tokenizer.ggml.add_bos_token",
                                 spm || data.preTokenizer == "llama-bpe");
  if (!addBos)
    return addBos.takeError();
  data.addBos = *addBos;
  Expected<bool> addSpace = boolOr("tokenizer.ggml.add_space_prefix", spm);
  if (!addSpace)
    return addSpace.takeError();
  data.addSpacePrefix = *addSpace;
  return std::optional<TokenizerData>(std::move(data));
}

Error GGUFReader::addTensors(MappedCheckpoint &checkpoint, unsigned fileIndex) {
  const ModelConfig &config = checkpoint.config();
  return forEachCanonicalTensor(config, [&](const CanonicalTensor &t) -> Error {
    std::string name;
    switch (t.role) {
    case TensorRole::TokEmbeddings:
      name = "token_embd.weight";
      break;
    case TensorRole::Norm:
      name = "output_norm.weight";
      break;
    case TensorRole::Output:
      name = "output.weight";
      break;
    default: {
      static const char *const suffixes[] = {
          nullptr,       "attn_norm", "attn_q",   "attn_k",   "attn_v",
          "attn_output", "ffn_norm",  "ffn_gate", "ffn_down", "ffn_up"};
      name = ("blk." + Twine(t.layer) + "." + suffixes[unsigned(t.role)] +
              ".weight")
                 .str();
      break;
    }
    }
    auto it = tensorIndex.find(name);
    if (it == tensorIndex.end())
      return error("missing tensor '" + name + "' (" + t.name + ")");
    const GGUFTensor &g = tensors[it->second];

    // ne is innermost first; extra outer extents of 1 are dropped.
    SmallVector<int64_t, 4> shape(g.ne.rbegin(), g.ne.rend());
    while (shape.size() > t.shape.size() && shape.front() == 1)
      shape.erase(shape.begin());
    if (ArrayRef<int64_t>(shape) != ArrayRef<int64_t>(t.shape)) {
      SmallVector<int64_t, 4> ne(g.ne.begin(), g.ne.end());
      return error("tensor '" + name + "' has shape " + formatShape(shape) +
                   " (ne " + formatShape(ne) + "), but the config implies " +
                   formatShape(t.shape) + " for " + t.name);
    }

    std::optional<DType> dtype = dtypeForGGMLType(g.type);
    if (!dtype) {
      StringRef typeName = ggmlTypeName(g.type);
      return error("tensor '" + name + "' has ggml type " + Twine(g.type) +
                   (typeName.empty() ? "" : " (" + typeName + ")") +
                   ", which is not supported (supported: F32, F16, BF16, "
                   "Q8_0, Q4_0, Q4_1)");
    }
    std::optional<uint64_t> bytes = storageBytes(*dtype, g.numElements);
    if (!bytes || g.ne[0] % blockElements(*dtype) != 0)
      return error("tensor '" + name + "' has type " + stringifyDType(*dtype) +
                   ", but its row length " + Twine(g.ne[0]) +
                   " is not a multiple of the block size " +
                   Twine(blockElements(*dtype)));
    if (g.offset % alignment != 0)
      return error("tensor '" + name + "' data offset " + Twine(g.offset) +
                   " is not a multiple of the alignment " + Twine(alignment));
    std::optional<uint64_t> begin = checkedAddUnsigned(dataStart, g.offset);
    std::optional<uint64_t> end =
        begin ? checkedAddUnsigned(*begin, *bytes) : std::nullopt;
    if (!end || *end > file.size())
      return error("tensor '" + name + "' data [offset " +
                   (begin ? Twine(*begin) : Twine("overflow")) + ", " +
                   Twine(*bytes) +
                   " bytes] extends past the end of the file (" +
                   Twine(file.size()) + " bytes)");

    TensorSource source;
    source.file = fileIndex;
    source.offset = *begin;
    source.numBytes = *bytes;
    checkpoint.addTensor(
        TensorInfo{t.name, {t.shape.begin(), t.shape.end()}, *dtype}, source);
    return Error::success();
  });
}

Expected<std::unique_ptr<Checkpoint>>
qlr::checkpoint::detail::openGGUF(StringRef path,
                                  std::unique_ptr<MappedFile> file) {
  auto checkpoint = std::make_unique<MappedCheckpoint>("gguf", path);
  const MappedFile &mapped = *file;
  unsigned fileIndex = checkpoint->addFile(std::move(file));
  GGUFReader reader(path, mapped);
  if (Error e = reader.parse())
    return std::move(e);
  if (Error e = reader.buildConfig(checkpoint->mutableConfig()))
    return std::move(e);
  Expected<std::optional<TokenizerData>> tokenizer = reader.buildTokenizer();
  if (!tokenizer)
    return tokenizer.takeError();
  checkpoint->mutableTokenizer() = std::move(*tokenizer);
  if (Error e = reader.addTensors(*checkpoint, fileIndex))
    return std::move(e);
  return std::unique_ptr<Checkpoint>(std::move(checkpoint));
}
