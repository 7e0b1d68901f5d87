//===- Tokenizer.h - Text <-> token ids for LLaMA-family models -*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// Tokenizers rebuilt from TokenizerData. Both kinds reproduce llama.cpp's
// tokenization (llama_tokenize with parse_special = false unless asked)
// token for token:
//
//  * SentencePiece BPE (LLaMA-2, llama2.c, GGUF "llama"): the text gets a
//    leading space, spaces become U+2581, it is split into UTF-8 characters
//    and the adjacent pair whose concatenation is the highest-scoring piece
//    is merged (leftmost on ties) until no pair is a piece; symbols that are
//    not pieces are emitted as <0xXX> byte tokens.
//  * Byte-level BPE (GPT-2 style, GGUF "gpt2", HF ByteLevel): the text is
//    split into chunks by the named pre-tokenizer, each chunk's bytes are
//    mapped to GPT-2's byte alphabet and merged by merge rank.
//
// Control and unknown tokens (BOS, <|im_start|>, ...) are matched literally
// in the text only with parseSpecial; user-defined tokens always are.
//
//===----------------------------------------------------------------------===//

#ifndef QLR_TOKENIZER_TOKENIZER_H
#define QLR_TOKENIZER_TOKENIZER_H

#include "qlr/Tokenizer/TokenizerData.h"

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace qlr::tokenizer {

class Tokenizer {
public:
  /// Validates `data` and builds the lookup structures. Fails (naming the
  /// problem) on: no tokens; scores / tokenTypes of the wrong length; an
  /// unknown token type; bos/eos/unk/pad ids out of range; duplicate pieces;
  /// SentencePiece without scores or without a byte token (<0xXX>) for each
  /// of the 256 bytes; a byte-level merge that is not "left right" with
  /// left, right and their concatenation all pieces; an unsupported
  /// pre-tokenizer name. Empty pieces become llama.cpp's "[EMPTY_<id>]"
  /// placeholder (as data() shows).
  static llvm::Expected<std::unique_ptr<Tokenizer>> create(TokenizerData data);

  ~Tokenizer();
  Tokenizer(const Tokenizer &) = delete;
  Tokenizer &operator=(const Tokenizer &) = delete;

  /// Token ids of `text`, with bosId() first if `addBos` (and the vocabulary
  /// has a BOS token). With `parseSpecial`, control and unknown tokens
  /// written literally in the text (e.g. "<|im_start|>", "<s>") become those
  /// tokens, as llama_tokenize(..., parse_special = true) does.
  std::vector<int32_t> encode(llvm::StringRef text, bool addBos,
                              bool parseSpecial = false) const;

  /// The text of a token sequence: the concatenation of decodePiece(prev,
  /// id) over the sequence, with prev = -1 for the first token. Control,
  /// unknown and unused tokens contribute nothing.
  std::string decode(llvm::ArrayRef<int32_t> ids) const;

  /// The text of token `id` when it follows `prev` (-1: `id` starts the
  /// sequence), for streaming output. SentencePiece: U+2581 becomes a space,
  /// <0xXX> the raw byte (possibly part of a UTF-8 character; concatenate the
  /// pieces before printing), and a leading space is dropped right after BOS
  /// or at the start (the space encode() prefixes, as llama2.c and
  /// SentencePiece drop it). Byte-level: the piece's bytes. Invalid ids give
  /// "".
  std::string decodePiece(int32_t prev, int32_t id) const;

  int64_t vocabSize() const;
  int32_t bosId() const;
  int32_t eosId() const;
  /// Whether the model expects BOS at the start of an encoded text.
  bool addsBosByDefault() const;
  /// The id of a piece (in the vocabulary's own alphabet: U+2581 for spaces
  /// in SentencePiece, GPT-2's byte alphabet in byte-level BPE).
  std::optional<int32_t> pieceId(llvm::StringRef piece) const;
  /// The TokenType of `id` (resolved when data().tokenTypes is empty; GGUF's
  /// "undefined" type 0 reads as Unused). `id` must be in range.
  TokenType tokenType(int32_t id) const;
  const TokenizerData &data() const;

private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl;
};

/// Reads a llama2.c tokenizer.bin: int32 max_token_length, then per token a
/// float32 score, an int32 byte length and the bytes. Reads `vocabSize`
/// tokens (ignoring anything after them, as llama2.c does), or the whole
/// file when vocabSize <= 0. Spaces become U+2581, BOS/EOS ("\n<s>\n",
/// "\n</s>\n" in llama2.c's export) become "<s>"/"</s>"; ids: UNK 0, BOS 1,
/// EOS 2; token types: Unknown, Control, Byte for <0xXX>, else Normal.
llvm::Expected<TokenizerData> loadLlama2cTokenizer(llvm::StringRef path,
                                                   int64_t vocabSize);

/// Reads a Hugging Face tokenizer.json (BPE model; byte-level, or
/// SentencePiece-style with byte fallback / Metaspace; special ids and
/// add_bos from a tokenizer_config.json next to it) or a llama2.c
/// tokenizer.bin, telling them apart by content; a directory means its
/// tokenizer.json. For tokenizer.json, `vocabSize` > 0 is the model's
/// vocabulary size: ids up to it that the file does not define become unused
/// "[PAD<id>]" tokens, and ids beyond it are an error.
llvm::Expected<TokenizerData> loadTokenizerFile(llvm::StringRef path,
                                                int64_t vocabSize);

} // namespace qlr::tokenizer

#endif // QLR_TOKENIZER_TOKENIZER_H
