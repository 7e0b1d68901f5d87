//===- TokenizerData.h - A model's tokenizer, as data -------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// Everything needed to rebuild a model's tokenizer. Checkpoint readers fill
// it from GGUF metadata, HF tokenizer.json or llama2.c tokenizer.bin; the
// importer embeds it (serialized) in the compiled module so that a model file
// is self-contained; qlr-run rebuilds a Tokenizer from it.
//
//===----------------------------------------------------------------------===//

#ifndef QLR_TOKENIZER_TOKENIZERDATA_H
#define QLR_TOKENIZER_TOKENIZERDATA_H

#include "llvm/ADT/ArrayRef.h"
#include "llvm/Support/Error.h"

#include <cstdint>
#include <string>
#include <vector>

namespace qlr::tokenizer {

enum class TokenizerKind {
  /// SentencePiece-style BPE over UTF-8 characters with scores deciding the
  /// merge order and <0xXX> byte fallback (LLaMA-2, llama2.c, GGUF "llama").
  SentencePieceBPE,
  /// GPT-2-style byte-level BPE with a merge list and a regex pre-tokenizer
  /// (GGUF "gpt2", HF tokenizer.json "BPE" with ByteLevel).
  ByteLevelBPE,
};

/// GGUF token types.
enum TokenType : int32_t {
  Normal = 1,
  Unknown = 2,
  Control = 3,
  UserDefined = 4,
  Unused = 5,
  Byte = 6,
};

struct TokenizerData {
  TokenizerKind kind = TokenizerKind::SentencePieceBPE;
  /// Token id -> piece. SentencePiece pieces use U+2581 for a space (llama2.c
  /// files, which store a plain space, are converted on load); byte-level
  /// pieces use the GPT-2 byte-to-unicode alphabet.
  std::vector<std::string> tokens;
  /// SentencePiece merge priorities (higher merges first); empty otherwise.
  std::vector<float> scores;
  /// Per-token TokenType; empty means "all normal" except byte tokens
  /// (SentencePiece <0xXX> pieces), which are Byte, bosId/eosId/padId, which
  /// are Control, and unkId, which is Unknown.
  std::vector<int32_t> tokenTypes;
  /// Byte-level BPE merges "left right" (split at the first space after the
  /// first byte, as llama.cpp does), highest priority first.
  std::vector<std::string> merges;
  /// Pre-tokenizer name for byte-level BPE (llama.cpp's names: "gpt2",
  /// "smollm", "llama-bpe", ...); empty for SentencePiece.
  std::string preTokenizer;
  /// Special token ids; -1 when the vocabulary has none.
  int32_t bosId = -1, eosId = -1, unkId = -1, padId = -1;
  /// Whether encoding a text starts with BOS by default.
  bool addBos = true;
  /// SentencePiece: prepend a space to the text before encoding.
  bool addSpacePrefix = true;
};

/// A stable binary encoding (little-endian, versioned) for embedding in a
/// module as a resource blob:
///
///   "QLRTOK" u16 version(=1) u8 kind u8 flags(bit 0 addBos, bit 1
///   addSpacePrefix) i32 bosId i32 eosId i32 unkId i32 padId
///   u32 n, n x (u32 length, bytes)          tokens
///   u32 n, n x f32                          scores
///   u32 n, n x i32                          tokenTypes
///   u32 n, n x (u32 length, bytes)          merges
///   u32 length, bytes                       preTokenizer
///
/// The round trip is exact (float bit patterns included).
std::vector<uint8_t> serialize(const TokenizerData &data);
/// Decodes serialize()'s format, bounds-checking every field: truncated,
/// trailing or otherwise malformed input gives an error, never a crash. It
/// checks the format only; Tokenizer::create checks the contents.
llvm::Expected<TokenizerData> deserialize(llvm::ArrayRef<uint8_t> bytes);

} // namespace qlr::tokenizer

#endif // QLR_TOKENIZER_TOKENIZERDATA_H
