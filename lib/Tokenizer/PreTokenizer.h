//===- PreTokenizer.h - Regex pre-tokenizers of byte-level BPE --*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// Byte-level BPE splits text into chunks with a cascade of regexes before it
// applies merges within each chunk. llama.cpp picks the cascade from the
// GGUF's tokenizer.ggml.pre name (llm_tokenizer_bpe in llama-vocab.cpp) and
// runs it with unicode_regex_split: each regex further splits every chunk of
// the previous one, and both the matches and the text between them become
// chunks. Here the few cascades we support are hand-written matchers that
// reproduce llama.cpp's results (its own hand-written GPT-2 and LLaMA-3
// splitters, and std::regex semantics for the simple class patterns), so no
// regex engine is needed.
//
//===----------------------------------------------------------------------===//

#ifndef QLR_LIB_TOKENIZER_PRETOKENIZER_H
#define QLR_LIB_TOKENIZER_PRETOKENIZER_H

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/StringRef.h"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

namespace qlr::tokenizer {

enum class PreTokenizerKind {
  /// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  GPT2,
  /// \p{N} (every digit alone), then GPT2 (StarCoder, SmolLM).
  DigitsThenGPT2,
  /// (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
  ///  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
  Llama3,
  /// llama.cpp's fallback: [\p{P}\$\+<=>\^~\|]+, then GPT2, then \p{N}+,
  /// then [0-9][0-9][0-9].
  Default,
};

struct PreTokenizerInfo {
  PreTokenizerKind kind;
  /// A chunk that is itself a vocabulary piece is emitted whole, without
  /// merges (llama.cpp's ignore_merges, set for the LLaMA-3 family).
  bool ignoreMerges;
};

/// The pre-tokenizer llama.cpp uses for a tokenizer.ggml.pre name; an empty
/// name means "default". None for names we do not support.
std::optional<PreTokenizerInfo> lookupPreTokenizer(llvm::StringRef name);

/// Splits `cps` into chunks; returns the chunk lengths in code points (all
/// positive, summing to cps.size()).
std::vector<size_t> preTokenize(llvm::ArrayRef<uint32_t> cps,
                                PreTokenizerKind kind);

} // namespace qlr::tokenizer

#endif // QLR_LIB_TOKENIZER_PRETOKENIZER_H
