//===- Loaders.cpp - Read llama2.c and Hugging Face tokenizer files -------===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#include "qlr/Tokenizer/Tokenizer.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/SmallString.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/bit.h"
#include "llvm/Support/Endian.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"

#include <cstdio>
#include <limits>
#include <map>

using namespace qlr::tokenizer;

namespace {

constexpr llvm::StringLiteral kSpaceMarker = "\xE2\x96\x81";

/// An error about file `path`.
template <typename... Ts>
llvm::Error fileError(llvm::StringRef path, const char *fmt,
                      const Ts &...vals) {
  std::string msg = ("'" + path + "': ").str();
  std::string detail;
  if constexpr (sizeof...(Ts) == 0) {
    detail = fmt;
  } else {
    int n = std::snprintf(nullptr, 0, fmt, vals...);
    detail.resize(n + 1);
    std::snprintf(detail.data(), detail.size(), fmt, vals...);
    detail.resize(n);
  }
  return llvm::createStringError(msg + detail);
}

llvm::Expected<std::unique_ptr<llvm::MemoryBuffer>>
readFile(llvm::StringRef path) {
  auto buffer = llvm::MemoryBuffer::getFile(path, /*IsText=*/false,
                                            /*RequiresNullTerminator=*/false);
  if (!buffer)
    return fileError(path, "cannot read the tokenizer: %s",
                     buffer.getError().message().c_str());
  return std::move(*buffer);
}

bool isBytePiece(llvm::StringRef piece) {
  return piece.size() == 6 && piece.starts_with("<0x") && piece.back() == '>' &&
         llvm::isHexDigit(piece[3]) && llvm::isHexDigit(piece[4]);
}

//===----------------------------------------------------------------------===//
// llama2.c tokenizer.bin
//===----------------------------------------------------------------------===//

llvm::Expected<TokenizerData> parseLlama2c(llvm::StringRef path,
                                           llvm::StringRef contents,
                                           int64_t vocabSize) {
  const auto *p = reinterpret_cast<const uint8_t *>(contents.data());
  size_t size = contents.size(), pos = 0;
  auto readI32 = [&](int32_t &v) {
    if (size - pos < 4)
      return false;
    v = int32_t(llvm::support::endian::read32le(p + pos));
    pos += 4;
    return true;
  };

  int32_t maxTokenLength;
  if (!readI32(maxTokenLength))
    return fileError(path, "llama2.c tokenizer: too short for its header");
  if (maxTokenLength < 0)
    return fileError(path, "llama2.c tokenizer: negative max_token_length %d",
                     maxTokenLength);

  TokenizerData data;
  data.kind = TokenizerKind::SentencePieceBPE;
  for (int64_t i = 0; vocabSize > 0 ? i < vocabSize : pos < size; ++i) {
    int32_t scoreBits, length;
    if (!readI32(scoreBits) || !readI32(length))
      return fileError(path,
                       "llama2.c tokenizer: truncated in token %lld (offset "
                       "%zu)",
                       (long long)i, pos);
    if (length < 0 || size_t(length) > size - pos)
      return fileError(path,
                       "llama2.c tokenizer: token %lld at offset %zu has "
                       "length %d but %zu bytes are left",
                       (long long)i, pos - 4, length, size - pos);
    data.scores.push_back(llvm::bit_cast<float>(scoreBits));
    data.tokens.emplace_back(contents.substr(pos, length));
    pos += length;
  }
  if (data.tokens.empty())
    return fileError(path, "llama2.c tokenizer: no tokens");

  // llama2.c's export writes BOS and EOS as "\n<s>\n" and "\n</s>\n" and
  // SentencePiece's U+2581 as a plain space; undo both.
  int64_t n = data.tokens.size();
  if (n > 1 && data.tokens[1] == "\n<s>\n")
    data.tokens[1] = "<s>";
  if (n > 2 && data.tokens[2] == "\n</s>\n")
    data.tokens[2] = "</s>";
  for (std::string &t : data.tokens) {
    std::string escaped;
    for (char c : t) {
      if (c == ' ')
        escaped += kSpaceMarker;
      else
        escaped += c;
    }
    t = std::move(escaped);
  }

  data.unkId = 0;
  data.bosId = n > 1 ? 1 : -1;
  data.eosId = n > 2 ? 2 : -1;
  data.tokenTypes.assign(n, TokenType::Normal);
  for (int64_t id = 0; id < n; ++id)
    if (isBytePiece(data.tokens[id]))
      data.tokenTypes[id] = TokenType::Byte;
  data.tokenTypes[0] = TokenType::Unknown;
  for (int32_t id : {data.bosId, data.eosId})
    if (id >= 0)
      data.tokenTypes[id] = TokenType::Control;
  data.addBos = true;
  data.addSpacePrefix = true;
  return data;
}

//===----------------------------------------------------------------------===//
// Hugging Face tokenizer.json
//===----------------------------------------------------------------------===//

using llvm::json::Array;
using llvm::json::Object;
using llvm::json::Value;

/// The components of a normalizer / pre_tokenizer / decoder, with
/// "Sequence"s flattened.
void flattenComponents(const Value *v, std::vector<const Object *> &out) {
  const Object *obj = v ? v->getAsObject() : nullptr;
  if (!obj)
    return;
  std::optional<llvm::StringRef> type = obj->getString("type");
  if (type && *type == "Sequence") {
    for (const char *key : {"normalizers", "pretokenizers", "decoders"})
      if (const Array *items = obj->getArray(key))
        for (const Value &item : *items)
          flattenComponents(&item, out);
    return;
  }
  out.push_back(obj);
}

std::vector<const Object *> components(const Object &root,
                                       llvm::StringRef key) {
  std::vector<const Object *> out;
  flattenComponents(root.get(key), out);
  return out;
}

llvm::StringRef typeOf(const Object *obj) {
  return obj->getString("type").value_or("");
}

/// A special-token entry of tokenizer_config.json: a string or
/// {"content": string}.
std::optional<std::string> configToken(const Object &config,
                                       llvm::StringRef key) {
  const Value *v = config.get(key);
  if (!v)
    return std::nullopt;
  if (std::optional<llvm::StringRef> s = v->getAsString())
    return s->str();
  if (const Object *obj = v->getAsObject())
    if (std::optional<llvm::StringRef> s = obj->getString("content"))
      return s->str();
  return std::nullopt;
}

// The pre-tokenizer regexes we recognize in a Split pre-tokenizer.
constexpr llvm::StringLiteral kGpt2Regex =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|"
    "\\s+(?!\\S)|\\s+";
constexpr llvm::StringLiteral kLlama3Regex =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/// Maps a byte-level pre_tokenizer to llama.cpp's pre-tokenizer name.
llvm::Expected<std::string>
byteLevelPreTokenizerName(llvm::StringRef path,
                          llvm::ArrayRef<const Object *> preTokenizers) {
  bool digits = false;
  std::optional<std::string> regexName;
  for (const Object *pre : preTokenizers) {
    llvm::StringRef type = typeOf(pre);
    if (type == "Digits") {
      if (!pre->getBoolean("individual_digits").value_or(false))
        return fileError(path, "unsupported pre-tokenizer: Digits without "
                               "individual_digits");
      if (regexName)
        return fileError(path, "unsupported pre-tokenizer: Digits after the "
                               "regex split");
      digits = true;
    } else if (type == "Split") {
      const Object *pattern = pre->getObject("pattern");
      std::optional<llvm::StringRef> regex =
          pattern ? pattern->getString("Regex") : std::nullopt;
      if (!regex)
        return fileError(path,
                         "unsupported pre-tokenizer: Split without a Regex");
      if (*regex == kLlama3Regex)
        regexName = "llama-bpe";
      else if (*regex == kGpt2Regex || *regex == kGpt2Regex.drop_back(4))
        regexName = "gpt2";
      else
        return fileError(path, "unsupported pre-tokenizer regex \"%s\"",
                         regex->str().c_str());
    } else if (type == "ByteLevel") {
      if (pre->getBoolean("use_regex").value_or(true)) {
        if (regexName)
          return fileError(path, "unsupported pre-tokenizer: a ByteLevel "
                                 "regex after a Split");
        regexName = "gpt2";
      }
    } else {
      return fileError(path, "unsupported pre-tokenizer type \"%s\"",
                       type.str().c_str());
    }
  }
  if (!regexName)
    return fileError(path, "unsupported pre-tokenizer: byte-level BPE "
                           "without a splitting regex");
  if (digits && *regexName != "gpt2")
    return fileError(path, "unsupported pre-tokenizer: individual digits "
                           "with the LLaMA-3 regex");
  return digits ? std::string("smollm") : *regexName;
}

llvm::Expected<TokenizerData> parseHFTokenizer(llvm::StringRef path,
                                               llvm::StringRef contents,
                                               int64_t vocabSize) {
  llvm::Expected<Value> parsed = llvm::json::parse(contents);
  if (!parsed)
    return fileError(path, "invalid JSON: %s",
                     llvm::toString(parsed.takeError()).c_str());
  const Object *root = parsed->getAsObject();
  if (!root)
    return fileError(path, "tokenizer.json is not a JSON object");
  const Object *model = root->getObject("model");
  if (!model)
    return fileError(path, "tokenizer.json has no \"model\"");
  llvm::StringRef modelType = model->getString("type").value_or("BPE");
  if (modelType != "BPE")
    return fileError(path, "unsupported tokenizer model type \"%s\" (only BPE)",
                     modelType.str().c_str());
  const Object *vocab = model->getObject("vocab");
  if (!vocab)
    return fileError(path, "the BPE model has no \"vocab\" object");

  // id -> piece, from the vocabulary and the added tokens.
  std::map<int64_t, std::string> pieces;
  std::map<int64_t, TokenType> types;
  for (const auto &[key, value] : *vocab) {
    std::optional<int64_t> id = value.getAsInteger();
    if (!id || *id < 0 || *id > std::numeric_limits<int32_t>::max())
      return fileError(path, "vocab entry \"%s\" has no valid id",
                       key.str().c_str());
    if (!pieces.try_emplace(*id, key.str()).second)
      return fileError(path, "vocab id %lld is used twice", (long long)*id);
  }
  if (const Array *added = root->getArray("added_tokens")) {
    for (const Value &v : *added) {
      const Object *tok = v.getAsObject();
      std::optional<int64_t> id = tok ? tok->getInteger("id") : std::nullopt;
      std::optional<llvm::StringRef> content =
          tok ? tok->getString("content") : std::nullopt;
      if (!id || !content || *id < 0 ||
          *id > std::numeric_limits<int32_t>::max())
        return fileError(path, "malformed added_tokens entry");
      pieces[*id] = content->str();
      types[*id] = tok->getBoolean("special").value_or(false)
                       ? TokenType::Control
                       : TokenType::UserDefined;
    }
  }
  if (pieces.empty())
    return fileError(path, "the vocabulary is empty");
  int64_t maxId = pieces.rbegin()->first;
  if (vocabSize > 0 && maxId >= vocabSize)
    return fileError(path,
                     "token id %lld is beyond the model's vocabulary "
                     "size %lld",
                     (long long)maxId, (long long)vocabSize);

  // Merges, as "left right" strings or ["left", "right"] pairs.
  std::vector<std::pair<std::string, std::string>> merges;
  if (const Array *list = model->getArray("merges")) {
    for (const Value &m : *list) {
      if (std::optional<llvm::StringRef> s = m.getAsString()) {
        size_t space = s->find(' ', 1);
        if (space == llvm::StringRef::npos)
          return fileError(path, "merge \"%s\" is not \"left right\"",
                           s->str().c_str());
        merges.emplace_back(s->take_front(space).str(),
                            s->drop_front(space + 1).str());
        continue;
      }
      const Array *pair = m.getAsArray();
      std::optional<llvm::StringRef> left, right;
      if (pair && pair->size() == 2) {
        left = (*pair)[0].getAsString();
        right = (*pair)[1].getAsString();
      }
      if (!left || !right)
        return fileError(path, "malformed merge entry");
      merges.emplace_back(left->str(), right->str());
    }
  }

  std::vector<const Object *> normalizers = components(*root, "normalizer");
  std::vector<const Object *> preTokenizers =
      components(*root, "pre_tokenizer");
  std::vector<const Object *> decoders = components(*root, "decoder");
  auto hasType = [](llvm::ArrayRef<const Object *> list, llvm::StringRef type) {
    return llvm::any_of(list,
                        [&](const Object *o) { return typeOf(o) == type; });
  };
  bool byteLevel =
      hasType(preTokenizers, "ByteLevel") || hasType(decoders, "ByteLevel");
  bool sentencePiece = model->getBoolean("byte_fallback").value_or(false) ||
                       hasType(preTokenizers, "Metaspace") ||
                       hasType(decoders, "Metaspace") ||
                       hasType(decoders, "ByteFallback");

  TokenizerData data;
  if (byteLevel) {
    data.kind = TokenizerKind::ByteLevelBPE;
    llvm::Expected<std::string> name =
        byteLevelPreTokenizerName(path, preTokenizers);
    if (!name)
      return name.takeError();
    data.preTokenizer = *name;
    data.addSpacePrefix = false;
    for (const auto &[left, right] : merges) {
      if (left.empty() || left.find(' ') != std::string::npos)
        return fileError(path,
                         "merge (\"%s\", \"%s\") cannot be written as "
                         "\"left right\"",
                         left.c_str(), right.c_str());
      data.merges.push_back(left + " " + right);
    }
  } else if (sentencePiece) {
    data.kind = TokenizerKind::SentencePieceBPE;
    // The leading space: a Prepend("▁") normalizer or a Metaspace that
    // prepends.
    data.addSpacePrefix = false;
    for (const Object *n : normalizers)
      if (typeOf(n) == "Prepend" &&
          n->getString("prepend").value_or("") == kSpaceMarker)
        data.addSpacePrefix = true;
    for (const Object *p : preTokenizers)
      if (typeOf(p) == "Metaspace" &&
          (p->getBoolean("add_prefix_space").value_or(false) ||
           p->getString("prepend_scheme").value_or("never") != "never"))
        data.addSpacePrefix = true;
  } else {
    return fileError(path, "unsupported tokenizer.json: neither byte-level "
                           "nor SentencePiece-style BPE");
  }

  int64_t n = vocabSize > 0 ? vocabSize : maxId + 1;
  data.tokens.resize(n);
  data.tokenTypes.assign(n, TokenType::Normal);
  for (int64_t id = 0; id < n; ++id) {
    auto it = pieces.find(id);
    if (it == pieces.end()) {
      data.tokens[id] = "[PAD" + std::to_string(id) + "]";
      data.tokenTypes[id] = TokenType::Unused;
      continue;
    }
    data.tokens[id] = it->second;
    auto type = types.find(id);
    if (type != types.end())
      data.tokenTypes[id] = type->second;
    else if (!byteLevel && isBytePiece(it->second))
      data.tokenTypes[id] = TokenType::Byte;
  }

  llvm::StringMap<int32_t> ids;
  for (int64_t id = 0; id < n; ++id)
    ids.try_emplace(data.tokens[id], int32_t(id));
  auto idOf = [&](const std::optional<std::string> &piece) -> int32_t {
    if (!piece)
      return -1;
    auto it = ids.find(*piece);
    return it == ids.end() ? -1 : it->second;
  };

  if (!byteLevel) {
    // SentencePiece scores from merge ranks: the first merge that creates a
    // piece ranks it.
    data.scores.assign(n, 0.0f);
    std::vector<bool> scored(n, false);
    for (size_t rank = 0; rank < merges.size(); ++rank) {
      int32_t id = idOf(merges[rank].first + merges[rank].second);
      if (id >= 0 && !scored[id]) {
        data.scores[id] = -float(rank);
        scored[id] = true;
      }
    }
  }

  // Special tokens and add_bos: tokenizer_config.json next to the file, with
  // conventional defaults.
  Object config;
  llvm::SmallString<256> configPath = llvm::sys::path::parent_path(path);
  llvm::sys::path::append(configPath, "tokenizer_config.json");
  if (llvm::sys::fs::exists(configPath)) {
    llvm::Expected<std::unique_ptr<llvm::MemoryBuffer>> buffer =
        readFile(configPath);
    if (!buffer)
      return buffer.takeError();
    llvm::Expected<Value> parsedConfig =
        llvm::json::parse((*buffer)->getBuffer());
    if (!parsedConfig)
      return fileError(configPath, "invalid JSON: %s",
                       llvm::toString(parsedConfig.takeError()).c_str());
    if (Object *obj = parsedConfig->getAsObject())
      config = std::move(*obj);
  }
  std::optional<std::string> unkPiece = configToken(config, "unk_token");
  if (!unkPiece)
    if (std::optional<llvm::StringRef> u = model->getString("unk_token"))
      unkPiece = u->str();
  std::optional<std::string> bos = configToken(config, "bos_token");
  std::optional<std::string> eos = configToken(config, "eos_token");
  std::optional<std::string> pad = configToken(config, "pad_token");
  if (!byteLevel) {
    bos = bos.value_or("<s>");
    eos = eos.value_or("</s>");
    unkPiece = unkPiece.value_or("<unk>");
  } else {
    bos = bos.value_or("<|endoftext|>");
    eos = eos.value_or("<|endoftext|>");
  }
  data.bosId = idOf(bos);
  data.eosId = idOf(eos);
  data.unkId = idOf(unkPiece);
  data.padId = idOf(pad);
  if (data.unkId >= 0 && data.tokenTypes[data.unkId] != TokenType::Unused)
    data.tokenTypes[data.unkId] = TokenType::Unknown;

  if (std::optional<bool> addBos = config.getBoolean("add_bos_token")) {
    data.addBos = *addBos;
  } else {
    // A TemplateProcessing post-processor that starts with BOS adds it.
    data.addBos = !byteLevel;
    if (const Object *post = root->getObject("post_processor"))
      if (typeOf(post) == "TemplateProcessing")
        if (const Array *single = post->getArray("single");
            single && !single->empty())
          if (const Object *first = single->front().getAsObject())
            if (const Object *special = first->getObject("SpecialToken"))
              data.addBos =
                  special->getString("id").value_or("") == bos.value_or("");
  }
  if (data.addBos && data.bosId < 0)
    data.addBos = false;
  return data;
}

/// A JSON object starts with '{' and then '"' or '}' (whitespace aside); a
/// llama2.c file starts with a little-endian int32, whose second byte is 0
/// for any sensible max_token_length even if the first is '{'.
bool looksLikeJson(llvm::StringRef path, llvm::StringRef contents) {
  llvm::StringRef ext = llvm::sys::path::extension(path);
  if (ext == ".json")
    return true;
  if (ext == ".bin")
    return false;
  llvm::StringRef trimmed = contents.ltrim();
  if (!trimmed.consume_front("{"))
    return false;
  trimmed = trimmed.ltrim();
  return trimmed.starts_with("\"") || trimmed.starts_with("}");
}

} // namespace

llvm::Expected<TokenizerData>
qlr::tokenizer::loadLlama2cTokenizer(llvm::StringRef path, int64_t vocabSize) {
  llvm::Expected<std::unique_ptr<llvm::MemoryBuffer>> buffer = readFile(path);
  if (!buffer)
    return buffer.takeError();
  return parseLlama2c(path, (*buffer)->getBuffer(), vocabSize);
}

llvm::Expected<TokenizerData>
qlr::tokenizer::loadTokenizerFile(llvm::StringRef path, int64_t vocabSize) {
  llvm::SmallString<256> file = path;
  if (llvm::sys::fs::is_directory(file)) {
    llvm::sys::path::append(file, "tokenizer.json");
    if (!llvm::sys::fs::exists(file))
      return fileError(path, "directory has no tokenizer.json");
  }
  llvm::Expected<std::unique_ptr<llvm::MemoryBuffer>> buffer = readFile(file);
  if (!buffer)
    return buffer.takeError();
  llvm::StringRef contents = (*buffer)->getBuffer();
  if (looksLikeJson(file, contents))
    return parseHFTokenizer(file, contents, vocabSize);
  return parseLlama2c(file, contents, vocabSize);
}
