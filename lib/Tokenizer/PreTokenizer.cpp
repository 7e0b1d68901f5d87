//===- PreTokenizer.cpp - Regex pre-tokenizers of byte-level BPE ----------===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// Each stage maps a list of chunk lengths to a finer one. The GPT-2 and
// LLaMA-3 stages follow llama.cpp's hand-written matchers
// (unicode_regex_split_custom_gpt2 / _llama3) step by step, including their
// small deviations from the regexes they stand for; the other stages are
// single-class patterns whose std::regex_iterator results are simple to
// state directly.
//
//===----------------------------------------------------------------------===//

#include "PreTokenizer.h"

#include "Unicode.h"

#include "llvm/ADT/StringSwitch.h"
#include "llvm/Support/ErrorHandling.h"

using namespace qlr::tokenizer;
using namespace qlr::tokenizer::unicode;

std::optional<PreTokenizerInfo>
qlr::tokenizer::lookupPreTokenizer(llvm::StringRef name) {
  using Info = std::optional<PreTokenizerInfo>;
  // The groups are those of llm_tokenizer_bpe's constructor and of the
  // tokenizer_pre name dispatch in llama_vocab::impl::load.
  return llvm::StringSwitch<Info>(name)
      .Cases({"", "default"},
             PreTokenizerInfo{PreTokenizerKind::Default, false})
      .Cases({"gpt2", "gpt-2", "phi-2", "mpt", "olmo", "jais", "roberta-bpe",
              "exaone4", "trillion", "granite-docling"},
             PreTokenizerInfo{PreTokenizerKind::GPT2, false})
      .Cases({"smollm", "starcoder", "refact", "command-r", "codeshell",
              "exaone", "minerva-7b", "mellum2"},
             PreTokenizerInfo{PreTokenizerKind::DigitsThenGPT2, false})
      .Cases({"llama-bpe", "llama3", "llama-v3", "falcon3", "falcon-h1",
              "pixtral", "midm-2.0", "lfm2"},
             PreTokenizerInfo{PreTokenizerKind::Llama3, true})
      .Cases({"dbrx", "smaug-bpe"},
             PreTokenizerInfo{PreTokenizerKind::Llama3, false})
      .Default(std::nullopt);
}

namespace {

constexpr uint32_t kOutOfRange = 0xFFFFFFFF;

/// The classification of one position of a chunk; positions outside the
/// chunk have no flags at all (llama.cpp's `unicode_cpt_flags{}`), every
/// position inside has some (its as_uint() is non-zero).
struct Flags {
  bool inRange = false;
  bool letter = false;
  bool number = false;
  bool whitespace = false;

  static Flags of(uint32_t cp) {
    Flags f;
    f.inRange = true;
    CharClass c = getCharClass(cp);
    f.letter = c == CharClass::Letter;
    f.number = c == CharClass::Number;
    f.whitespace = isWhitespace(cp);
    return f;
  }
  bool wordLike() const { return whitespace || letter || number; }
};

/// One chunk [begin, end) of the code points, with llama.cpp's accessors
/// and the bookkeeping that appends sub-chunk lengths to `out`.
class ChunkSplitter {
public:
  ChunkSplitter(llvm::ArrayRef<uint32_t> cps, size_t begin, size_t end,
                std::vector<size_t> &out)
      : cps(cps), begin(begin), end(end), prevEnd(begin), out(out) {}

  uint32_t cpt(size_t pos) const {
    return pos >= begin && pos < end ? cps[pos] : kOutOfRange;
  }
  Flags flags(size_t pos) const {
    return pos >= begin && pos < end ? Flags::of(cps[pos]) : Flags();
  }
  /// Ends the current sub-chunk at `e`; returns its length.
  size_t addToken(size_t e) {
    size_t len = e - prevEnd;
    if (len > 0)
      out.push_back(len);
    prevEnd = e;
    return len;
  }

  llvm::ArrayRef<uint32_t> cps;
  size_t begin, end;

private:
  size_t prevEnd;
  std::vector<size_t> &out;
};

/// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
void splitGPT2(ChunkSplitter &c) {
  for (size_t pos = c.begin; pos < c.end;) {
    uint32_t cpt = c.cpt(pos);
    Flags flags = c.flags(pos);

    if (cpt == '\'' && pos + 1 < c.end) {
      uint32_t next = c.cpt(pos + 1);
      if (next == 's' || next == 't' || next == 'm' || next == 'd') {
        pos += c.addToken(pos + 2);
        continue;
      }
      if (pos + 2 < c.end) {
        uint32_t nextNext = c.cpt(pos + 2);
        if ((next == 'r' && nextNext == 'e') ||
            (next == 'v' && nextNext == 'e') ||
            (next == 'l' && nextNext == 'l')) {
          pos += c.addToken(pos + 3);
          continue;
        }
      }
    }

    Flags flags2 = cpt == ' ' ? c.flags(pos + 1) : flags;
    if (flags2.letter) { //  ?\p{L}+
      pos += cpt == ' ';
      while (flags2.letter)
        flags2 = c.flags(++pos);
      c.addToken(pos);
      continue;
    }
    if (flags2.number) { //  ?\p{N}+
      pos += cpt == ' ';
      while (flags2.number)
        flags2 = c.flags(++pos);
      c.addToken(pos);
      continue;
    }
    if (!flags2.wordLike() && flags2.inRange) { //  ?[^\s\p{L}\p{N}]+
      pos += cpt == ' ';
      while (!flags2.wordLike() && flags2.inRange)
        flags2 = c.flags(++pos);
      c.addToken(pos);
      continue;
    }

    size_t numWhitespaces = 0;
    while (c.flags(pos + numWhitespaces).whitespace)
      ++numWhitespaces;
    // \s+(?!\S): a run followed by more text gives up its last character.
    if (numWhitespaces > 1 && c.cpt(pos + numWhitespaces) != kOutOfRange) {
      pos += numWhitespaces - 1;
      c.addToken(pos);
      continue;
    }
    if (numWhitespaces > 0) { // \s+
      pos += numWhitespaces;
      c.addToken(pos);
      continue;
    }
    c.addToken(++pos); // No alternative matches: a chunk of its own.
  }
}

uint32_t asciiLower(uint32_t cp) {
  return cp >= 'A' && cp <= 'Z' ? cp + ('a' - 'A') : cp;
}

/// (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
///  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
void splitLlama3(ChunkSplitter &c) {
  for (size_t pos = c.begin; pos < c.end;) {
    uint32_t cpt = c.cpt(pos);
    Flags flags = c.flags(pos);

    // Case-insensitive contractions. (No non-ASCII code point lowercases to
    // one of these ASCII letters, so ASCII lowering is Unicode lowering.)
    if (cpt == '\'' && pos + 1 < c.end) {
      uint32_t next = asciiLower(c.cpt(pos + 1));
      if (next == 's' || next == 't' || next == 'm' || next == 'd') {
        pos += c.addToken(pos + 2);
        continue;
      }
      if (pos + 2 < c.end) {
        uint32_t nextNext = asciiLower(c.cpt(pos + 2));
        if ((next == 'r' && nextNext == 'e') ||
            (next == 'v' && nextNext == 'e') ||
            (next == 'l' && nextNext == 'l')) {
          pos += c.addToken(pos + 3);
          continue;
        }
      }
    }

    // [^\r\n\p{L}\p{N}]?\p{L}+
    if (!(cpt == '\r' || cpt == '\n' || flags.number)) {
      if (flags.letter || c.flags(pos + 1).letter) {
        ++pos;
        while (c.flags(pos).letter)
          ++pos;
        c.addToken(pos);
        continue;
      }
    }

    // \p{N}{1,3}
    if (flags.number) {
      size_t groupStart = pos;
      while (c.flags(pos).number) {
        if (++pos - groupStart >= 3) {
          c.addToken(pos);
          groupStart = pos;
        }
      }
      c.addToken(pos);
      continue;
    }

    //  ?[^\s\p{L}\p{N}]+[\r\n]*  (llama.cpp tests the current position's
    // flags for presence here, which always holds inside the chunk.)
    Flags flags2 = cpt == ' ' ? c.flags(pos + 1) : flags;
    if (!flags2.wordLike() && flags.inRange) {
      pos += cpt == ' ';
      while (!flags2.wordLike() && flags2.inRange)
        flags2 = c.flags(++pos);
      uint32_t cpt2 = c.cpt(pos);
      while (cpt2 == '\r' || cpt2 == '\n')
        cpt2 = c.cpt(++pos);
      c.addToken(pos);
      continue;
    }

    size_t numWhitespaces = 0;
    size_t lastLineBreakEnd = 0;
    while (c.flags(pos + numWhitespaces).whitespace) {
      uint32_t cpt2 = c.cpt(pos + numWhitespaces);
      if (cpt2 == '\r' || cpt2 == '\n')
        lastLineBreakEnd = pos + numWhitespaces + 1;
      ++numWhitespaces;
    }
    if (lastLineBreakEnd > 0) { // \s*[\r\n]+
      pos = lastLineBreakEnd;
      c.addToken(pos);
      continue;
    }
    if (numWhitespaces > 1 && c.cpt(pos + numWhitespaces) != kOutOfRange) {
      pos += numWhitespaces - 1; // \s+(?!\S)
      c.addToken(pos);
      continue;
    }
    if (numWhitespaces > 0) { // \s+
      pos += numWhitespaces;
      c.addToken(pos);
      continue;
    }
    c.addToken(++pos);
  }
}

/// A single-class regex `[class]` (each match one code point) or `[class]+`
/// (each match a maximal run) under std::regex_iterator: the matches and the
/// text between them become chunks.
template <typename Pred>
void splitClass(ChunkSplitter &c, Pred inClass, bool runs) {
  size_t pos = c.begin;
  while (pos < c.end) {
    if (!inClass(c.cps[pos])) {
      ++pos;
      continue;
    }
    c.addToken(pos);
    ++pos;
    while (runs && pos < c.end && inClass(c.cps[pos]))
      ++pos;
    c.addToken(pos);
  }
  c.addToken(c.end);
}

/// [0-9][0-9][0-9]: leftmost, non-overlapping triples of ASCII digits.
void splitAsciiDigitTriples(ChunkSplitter &c) {
  auto isDigit = [&](size_t pos) {
    return c.cps[pos] >= '0' && c.cps[pos] <= '9';
  };
  size_t pos = c.begin;
  while (pos + 3 <= c.end) {
    if (isDigit(pos) && isDigit(pos + 1) && isDigit(pos + 2)) {
      c.addToken(pos);
      pos += 3;
      c.addToken(pos);
    } else {
      ++pos;
    }
  }
  c.addToken(c.end);
}

/// What llama.cpp's std::regex fallback matches for \p{P} plus the listed
/// ASCII symbols: it rewrites the regex for a "collapsed" text in which
/// ASCII stays as is and other code points become their class's stand-in
/// (whitespace first), so an ASCII character matches by the literal ASCII
/// set (all of ASCII punctuation and symbols except '`') and any other by its
/// class.
bool isDefaultPunctuation(uint32_t cp) {
  if (cp < 0x80)
    return cp != '`' &&
           ((cp >= 0x21 && cp <= 0x2F) || (cp >= 0x3A && cp <= 0x40) ||
            (cp >= 0x5B && cp <= 0x60) || (cp >= 0x7B && cp <= 0x7E));
  return !isWhitespace(cp) && getCharClass(cp) == CharClass::Punctuation;
}

template <typename Stage>
std::vector<size_t> applyStage(llvm::ArrayRef<uint32_t> cps,
                               const std::vector<size_t> &chunks, Stage stage) {
  std::vector<size_t> out;
  out.reserve(chunks.size());
  size_t start = 0;
  for (size_t len : chunks) {
    ChunkSplitter splitter(cps, start, start + len, out);
    stage(splitter);
    start += len;
  }
  return out;
}

} // namespace

std::vector<size_t> qlr::tokenizer::preTokenize(llvm::ArrayRef<uint32_t> cps,
                                                PreTokenizerKind kind) {
  if (cps.empty())
    return {};
  std::vector<size_t> chunks = {cps.size()};
  auto numbers = [&](bool runs) {
    return [runs](ChunkSplitter &c) {
      splitClass(
          c, [](uint32_t cp) { return isNumber(cp); }, runs);
    };
  };
  switch (kind) {
  case PreTokenizerKind::GPT2:
    return applyStage(cps, chunks, splitGPT2);
  case PreTokenizerKind::DigitsThenGPT2:
    chunks = applyStage(cps, chunks, numbers(/*runs=*/false));
    return applyStage(cps, chunks, splitGPT2);
  case PreTokenizerKind::Llama3:
    return applyStage(cps, chunks, splitLlama3);
  case PreTokenizerKind::Default:
    chunks = applyStage(cps, chunks, [](ChunkSplitter &c) {
      splitClass(c, isDefaultPunctuation, /*runs=*/true);
    });
    chunks = applyStage(cps, chunks, splitGPT2);
    chunks = applyStage(cps, chunks, numbers(/*runs=*/true));
    return applyStage(cps, chunks, splitAsciiDigitTriples);
  }
  llvm_unreachable("unknown pre-tokenizer kind");
}
