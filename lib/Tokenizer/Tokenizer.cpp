//===- Tokenizer.cpp - SentencePiece and byte-level BPE tokenizers --------===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// The algorithms follow llama.cpp's llama-vocab.cpp (llm_tokenizer_spm_session,
// llm_tokenizer_bpe_session, tokenizer_st_partition, token_to_piece) so that
// the ids agree with llama.cpp's exactly; see the comments at each step for
// the details that matter.
//
//===----------------------------------------------------------------------===//

#include "qlr/Tokenizer/Tokenizer.h"

#include "PreTokenizer.h"
#include "Unicode.h"

#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/StringMap.h"

#include <algorithm>
#include <array>
#include <cassert>
#include <limits>
#include <queue>

using namespace qlr::tokenizer;

namespace {

/// U+2581 LOWER ONE EIGHTH BLOCK, SentencePiece's stand-in for a space.
constexpr llvm::StringLiteral kSpaceMarker = "\xE2\x96\x81";

/// The byte of a "<0xXX>" piece, or -1 if `piece` is not one.
int parseBytePiece(llvm::StringRef piece) {
  if (piece.size() != 6 || !piece.starts_with("<0x") || piece.back() != '>' ||
      !llvm::isHexDigit(piece[3]) || !llvm::isHexDigit(piece[4]))
    return -1;
  return llvm::hexDigitValue(piece[3]) * 16 + llvm::hexDigitValue(piece[4]);
}

std::string bytePiece(uint8_t b) {
  std::string s = "<0x";
  s += llvm::hexdigit(b >> 4, /*LowerCase=*/false);
  s += llvm::hexdigit(b & 15, /*LowerCase=*/false);
  s += '>';
  return s;
}

/// A run of text in the symbol list of a BPE merge loop.
struct Symbol {
  int prev, next;
  size_t start, length; ///< Byte range in the text; length 0 once merged.
};

/// A text fragment after special-token partitioning: a literal token, or a
/// range of the input to tokenize.
struct Fragment {
  int32_t token; ///< -1 for text.
  size_t offset, length;
};

} // namespace

struct Tokenizer::Impl {
  TokenizerData data;
  llvm::StringMap<int32_t> pieceToId;
  std::vector<TokenType> types;
  /// decodePiece's text of every token.
  std::vector<std::string> pieceText;
  /// Control, user-defined and unknown tokens, longest first: the order in
  /// which their literal occurrences are split out of the text.
  std::vector<int32_t> specialTokens;

  // SentencePiece.
  std::array<int32_t, 256> byteTokens;

  // Byte-level BPE.
  llvm::StringMap<int32_t> mergeRanks; ///< "left right" -> rank.
  PreTokenizerInfo preTokenizer{PreTokenizerKind::GPT2, false};

  llvm::Error init();
  std::optional<int32_t> lookup(llvm::StringRef piece) const {
    auto it = pieceToId.find(piece);
    if (it == pieceToId.end())
      return std::nullopt;
    return it->second;
  }

  std::vector<Fragment> partition(llvm::StringRef text,
                                  bool parseSpecial) const;
  void encodeSentencePiece(llvm::StringRef text, bool prefixSpace,
                           std::vector<int32_t> &out) const;
  void encodeByteLevel(llvm::StringRef text, std::vector<int32_t> &out) const;
  void encodeByteLevelWord(const std::string &word,
                           std::vector<int32_t> &out) const;
};

//===----------------------------------------------------------------------===//
// Construction and validation
//===----------------------------------------------------------------------===//

llvm::Error Tokenizer::Impl::init() {
  const int64_t n = data.tokens.size();
  const bool isSpm = data.kind == TokenizerKind::SentencePieceBPE;
  if (n == 0)
    return llvm::createStringError("tokenizer: the vocabulary is empty");
  if (n > std::numeric_limits<int32_t>::max())
    return llvm::createStringError("tokenizer: %lld tokens do not fit int32",
                                   (long long)n);
  if (!data.scores.empty() && int64_t(data.scores.size()) != n)
    return llvm::createStringError("tokenizer: %zu scores for %lld tokens",
                                   data.scores.size(), (long long)n);
  if (isSpm && data.scores.empty())
    return llvm::createStringError(
        "tokenizer: SentencePiece BPE needs a score for every token");
  if (!data.tokenTypes.empty() && int64_t(data.tokenTypes.size()) != n)
    return llvm::createStringError("tokenizer: %zu token types for %lld tokens",
                                   data.tokenTypes.size(), (long long)n);
  for (auto [id, name] :
       {std::pair{data.bosId, "BOS"}, std::pair{data.eosId, "EOS"},
        std::pair{data.unkId, "UNK"}, std::pair{data.padId, "PAD"}})
    if (id < -1 || id >= n)
      return llvm::createStringError(
          "tokenizer: %s id %d is outside the vocabulary of %lld tokens", name,
          id, (long long)n);

  // Pieces. Empty ones get llama.cpp's placeholder text so that they cannot
  // match anything.
  for (int32_t id = 0; id < n; ++id) {
    std::string &piece = data.tokens[id];
    if (piece.empty())
      piece = "[EMPTY_" + std::to_string(id) + "]";
    auto [it, inserted] = pieceToId.try_emplace(piece, id);
    if (!inserted)
      return llvm::createStringError(
          "tokenizer: duplicate piece \"%s\" (ids %d and %d)", piece.c_str(),
          it->second, id);
  }

  // Token types.
  types.assign(n, TokenType::Normal);
  if (!data.tokenTypes.empty()) {
    for (int32_t id = 0; id < n; ++id) {
      int32_t t = data.tokenTypes[id];
      if (t < 0 || t > TokenType::Byte)
        return llvm::createStringError(
            "tokenizer: token %d has unknown token type %d", id, t);
      // GGUF's "undefined" (0) decodes to nothing in llama.cpp, like Unused.
      types[id] = t == 0 ? TokenType::Unused : TokenType(t);
    }
  } else {
    if (isSpm)
      for (int32_t id = 0; id < n; ++id)
        if (parseBytePiece(data.tokens[id]) >= 0)
          types[id] = TokenType::Byte;
    for (int32_t id : {data.bosId, data.eosId, data.padId})
      if (id >= 0)
        types[id] = TokenType::Control;
    if (data.unkId >= 0)
      types[data.unkId] = TokenType::Unknown;
  }

  // Decoded text of each token (llama.cpp's token_to_piece with
  // special = false).
  pieceText.resize(n);
  for (int32_t id = 0; id < n; ++id) {
    llvm::StringRef piece = data.tokens[id];
    std::string &text = pieceText[id];
    switch (types[id]) {
    case TokenType::Control:
    case TokenType::Unknown:
    case TokenType::Unused:
      break;
    case TokenType::UserDefined:
      text = piece.str();
      break;
    case TokenType::Byte: {
      int b = parseBytePiece(piece);
      if (b < 0)
        return llvm::createStringError(
            "tokenizer: byte token %d is \"%s\", not of the form <0xXX>", id,
            piece.str().c_str());
      text.push_back(char(b));
      break;
    }
    case TokenType::Normal:
      if (isSpm) {
        text = piece.str();
        size_t pos = 0;
        while ((pos = text.find(kSpaceMarker.data(), pos)) != std::string::npos)
          text.replace(pos, kSpaceMarker.size(), " ");
      } else {
        for (uint32_t cp : unicode::decodeUtf8(piece)) {
          int b = unicode::unicodeToByte(cp);
          if (b >= 0)
            text.push_back(char(b));
          else
            unicode::appendUtf8(text, cp);
        }
      }
      break;
    }
  }

  for (int32_t id = 0; id < n; ++id)
    if (types[id] == TokenType::Control ||
        types[id] == TokenType::UserDefined || types[id] == TokenType::Unknown)
      specialTokens.push_back(id);
  std::stable_sort(specialTokens.begin(), specialTokens.end(),
                   [&](int32_t a, int32_t b) {
                     return data.tokens[a].size() > data.tokens[b].size();
                   });

  if (isSpm) {
    // Byte fallback: llama.cpp's byte_to_token looks for "<0xXX>", then for
    // the byte itself as a piece.
    for (unsigned b = 0; b < 256; ++b) {
      std::optional<int32_t> id = lookup(bytePiece(b));
      char c = char(b);
      if (!id)
        id = lookup(llvm::StringRef(&c, 1));
      if (!id)
        return llvm::createStringError(
            "tokenizer: SentencePiece vocabulary has no byte-fallback token "
            "%s",
            bytePiece(b).c_str());
      byteTokens[b] = *id;
    }
    return llvm::Error::success();
  }

  std::optional<PreTokenizerInfo> pre = lookupPreTokenizer(data.preTokenizer);
  if (!pre)
    return llvm::createStringError(
        "tokenizer: unsupported byte-level pre-tokenizer \"%s\"",
        data.preTokenizer.c_str());
  preTokenizer = *pre;

  for (size_t rank = 0; rank < data.merges.size(); ++rank) {
    llvm::StringRef merge = data.merges[rank];
    size_t space = merge.find(' ', 1);
    if (space == llvm::StringRef::npos)
      return llvm::createStringError(
          "tokenizer: merge %zu \"%s\" is not of the form \"left right\"", rank,
          merge.str().c_str());
    llvm::StringRef left = merge.take_front(space);
    llvm::StringRef right = merge.drop_front(space + 1);
    for (const std::string &part :
         {left.str(), right.str(), (left + right).str()})
      if (!pieceToId.count(part))
        return llvm::createStringError(
            "tokenizer: merge %zu \"%s\" refers to \"%s\", which is not a "
            "token",
            rank, merge.str().c_str(), part.c_str());
    // Repeated merges keep their first (best) rank.
    mergeRanks.try_emplace(merge, int32_t(rank));
  }
  return llvm::Error::success();
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;

llvm::Expected<std::unique_ptr<Tokenizer>>
Tokenizer::create(TokenizerData data) {
  auto impl = std::make_unique<Impl>();
  impl->data = std::move(data);
  if (auto err = impl->init())
    return std::move(err);
  return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(impl)));
}

//===----------------------------------------------------------------------===//
// Encoding
//===----------------------------------------------------------------------===//

/// tokenizer_st_partition: each special token, longest first, is split out
/// of every text fragment at each of its occurrences. Control and unknown
/// tokens take part only with parseSpecial.
std::vector<Fragment> Tokenizer::Impl::partition(llvm::StringRef text,
                                                 bool parseSpecial) const {
  std::vector<Fragment> fragments;
  if (text.empty())
    return fragments;
  fragments.push_back({-1, 0, text.size()});
  std::vector<Fragment> next;
  for (int32_t id : specialTokens) {
    if (!parseSpecial &&
        (types[id] == TokenType::Control || types[id] == TokenType::Unknown))
      continue;
    llvm::StringRef special = data.tokens[id];
    next.clear();
    bool changed = false;
    for (const Fragment &f : fragments) {
      if (f.token >= 0) {
        next.push_back(f);
        continue;
      }
      llvm::StringRef body = text.substr(f.offset, f.length);
      size_t pos = 0;
      for (size_t match;
           (match = body.find(special, pos)) != llvm::StringRef::npos;) {
        if (match > pos)
          next.push_back({-1, f.offset + pos, match - pos});
        next.push_back({id, 0, 0});
        pos = match + special.size();
        changed = true;
      }
      if (pos < body.size())
        next.push_back({-1, f.offset + pos, body.size() - pos});
    }
    if (changed)
      fragments.swap(next);
  }
  return fragments;
}

std::vector<int32_t> Tokenizer::encode(llvm::StringRef text, bool addBos,
                                       bool parseSpecial) const {
  const TokenizerData &data = impl->data;
  std::vector<int32_t> out;
  if (addBos && data.bosId >= 0)
    out.push_back(data.bosId);
  std::vector<Fragment> fragments = impl->partition(text, parseSpecial);
  if (data.kind == TokenizerKind::SentencePieceBPE) {
    // The space prefix goes before the first text fragment and before each
    // one that follows a special token.
    bool afterSpecial = true;
    for (const Fragment &f : fragments) {
      if (f.token >= 0) {
        out.push_back(f.token);
        afterSpecial = true;
        continue;
      }
      impl->encodeSentencePiece(text.substr(f.offset, f.length),
                                data.addSpacePrefix && afterSpecial, out);
      afterSpecial = false;
    }
  } else {
    for (const Fragment &f : fragments) {
      if (f.token >= 0)
        out.push_back(f.token);
      else
        impl->encodeByteLevel(text.substr(f.offset, f.length), out);
    }
  }
  return out;
}

void Tokenizer::Impl::encodeSentencePiece(llvm::StringRef fragment,
                                          bool prefixSpace,
                                          std::vector<int32_t> &out) const {
  std::string text;
  text.reserve(fragment.size() + 8);
  if (prefixSpace)
    text += kSpaceMarker;
  for (char c : fragment) {
    if (c == ' ')
      text += kSpaceMarker;
    else
      text += c;
  }
  if (text.empty())
    return;

  // One symbol per UTF-8 character, judged by the lead byte alone.
  std::vector<Symbol> symbols;
  for (size_t offset = 0; offset < text.size();) {
    size_t len = std::min(unicode::utf8SequenceLength(text[offset]),
                          text.size() - offset);
    int index = symbols.size();
    symbols.push_back(
        {index - 1, offset + len == text.size() ? -1 : index + 1, offset, len});
    offset += len;
  }

  // Candidate merges, best score first and leftmost among equal scores.
  struct Bigram {
    int left, right;
    float score;
    size_t length;
  };
  auto worse = [](const Bigram &a, const Bigram &b) {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  };
  std::priority_queue<Bigram, std::vector<Bigram>, decltype(worse)> queue(
      worse);
  auto tryAddBigram = [&](int left, int right) {
    if (left == -1 || right == -1)
      return;
    size_t length = symbols[left].length + symbols[right].length;
    std::optional<int32_t> id =
        lookup(llvm::StringRef(text).substr(symbols[left].start, length));
    if (!id)
      return;
    queue.push({left, right, data.scores[*id], length});
  };
  for (int i = 1, e = symbols.size(); i < e; ++i)
    tryAddBigram(i - 1, i);

  while (!queue.empty()) {
    Bigram bigram = queue.top();
    queue.pop();
    Symbol &left = symbols[bigram.left];
    Symbol &right = symbols[bigram.right];
    // Symbols only grow, so a stale bigram shows in the lengths.
    if (left.length == 0 || right.length == 0 ||
        left.length + right.length != bigram.length)
      continue;
    left.length += right.length;
    right.length = 0;
    left.next = right.next;
    if (right.next >= 0)
      symbols[right.next].prev = bigram.left;
    tryAddBigram(left.prev, bigram.left);
    tryAddBigram(bigram.left, left.next);
  }

  for (int i = 0; i != -1; i = symbols[i].next) {
    llvm::StringRef piece =
        llvm::StringRef(text).substr(symbols[i].start, symbols[i].length);
    if (std::optional<int32_t> id = lookup(piece)) {
      out.push_back(*id);
      continue;
    }
    for (char c : piece)
      out.push_back(byteTokens[uint8_t(c)]);
  }
}

void Tokenizer::Impl::encodeByteLevel(llvm::StringRef fragment,
                                      std::vector<int32_t> &out) const {
  // Like llama.cpp, work on decoded code points: malformed UTF-8 becomes
  // U+FFFD.
  std::vector<uint32_t> cps = unicode::decodeUtf8(fragment);
  std::vector<size_t> chunks = preTokenize(cps, preTokenizer.kind);
  std::string utf8, word;
  size_t start = 0;
  for (size_t len : chunks) {
    utf8.clear();
    for (size_t i = start; i < start + len; ++i)
      unicode::appendUtf8(utf8, cps[i]);
    start += len;
    word.clear();
    for (char c : utf8)
      word += unicode::byteToUnicode(uint8_t(c));
    encodeByteLevelWord(word, out);
  }
}

void Tokenizer::Impl::encodeByteLevelWord(const std::string &word,
                                          std::vector<int32_t> &out) const {
  if (preTokenizer.ignoreMerges)
    if (std::optional<int32_t> id = lookup(word)) {
      out.push_back(*id);
      return;
    }

  std::vector<Symbol> symbols;
  for (size_t offset = 0; offset < word.size();) {
    size_t len = std::min(unicode::utf8SequenceLength(word[offset]),
                          word.size() - offset);
    int index = symbols.size();
    symbols.push_back(
        {index - 1, offset + len == word.size() ? -1 : index + 1, offset, len});
    offset += len;
  }

  // Candidate merges, lowest rank first and leftmost among equal ranks.
  struct Bigram {
    int left, right;
    int32_t rank;
    size_t length;
  };
  auto worse = [](const Bigram &a, const Bigram &b) {
    return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
  };
  std::priority_queue<Bigram, std::vector<Bigram>, decltype(worse)> queue(
      worse);
  std::string key;
  auto addBigram = [&](int left, int right) {
    if (left == -1 || right == -1)
      return;
    const Symbol &l = symbols[left], &r = symbols[right];
    key.assign(word, l.start, l.length);
    key += ' ';
    key.append(word, r.start, r.length);
    auto it = mergeRanks.find(key);
    if (it == mergeRanks.end())
      return;
    queue.push({left, right, it->second, l.length + r.length});
  };
  for (int i = 1, e = symbols.size(); i < e; ++i)
    addBigram(i - 1, i);

  while (!queue.empty()) {
    Bigram bigram = queue.top();
    queue.pop();
    Symbol &left = symbols[bigram.left];
    Symbol &right = symbols[bigram.right];
    if (left.length == 0 || right.length == 0 ||
        left.length + right.length != bigram.length)
      continue;
    left.length += right.length;
    right.length = 0;
    left.next = right.next;
    if (right.next >= 0)
      symbols[right.next].prev = bigram.left;
    addBigram(left.prev, bigram.left);
    addBigram(bigram.left, left.next);
  }

  for (int i = 0; i != -1; i = symbols[i].next) {
    llvm::StringRef piece =
        llvm::StringRef(word).substr(symbols[i].start, symbols[i].length);
    if (std::optional<int32_t> id = lookup(piece)) {
      out.push_back(*id);
      continue;
    }
    // Not a piece: llama.cpp emits each byte of it that is a piece on its own
    // and drops the others.
    for (char c : piece)
      if (std::optional<int32_t> id = lookup(llvm::StringRef(&c, 1)))
        out.push_back(*id);
  }
}

//===----------------------------------------------------------------------===//
// Decoding and queries
//===----------------------------------------------------------------------===//

std::string Tokenizer::decodePiece(int32_t prev, int32_t id) const {
  const TokenizerData &data = impl->data;
  if (id < 0 || id >= vocabSize())
    return {};
  const std::string &text = impl->pieceText[id];
  bool atStart = prev < 0 || (data.bosId >= 0 && prev == data.bosId);
  if (data.kind == TokenizerKind::SentencePieceBPE && data.addSpacePrefix &&
      atStart && impl->types[id] == TokenType::Normal && !text.empty() &&
      text[0] == ' ')
    return text.substr(1);
  return text;
}

std::string Tokenizer::decode(llvm::ArrayRef<int32_t> ids) const {
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i)
    out += decodePiece(i == 0 ? -1 : ids[i - 1], ids[i]);
  return out;
}

int64_t Tokenizer::vocabSize() const { return impl->data.tokens.size(); }
int32_t Tokenizer::bosId() const { return impl->data.bosId; }
int32_t Tokenizer::eosId() const { return impl->data.eosId; }
bool Tokenizer::addsBosByDefault() const { return impl->data.addBos; }
const TokenizerData &Tokenizer::data() const { return impl->data; }

std::optional<int32_t> Tokenizer::pieceId(llvm::StringRef piece) const {
  return impl->lookup(piece);
}

TokenType Tokenizer::tokenType(int32_t id) const {
  assert(id >= 0 && id < vocabSize() && "token id out of range");
  return impl->types[id];
}
