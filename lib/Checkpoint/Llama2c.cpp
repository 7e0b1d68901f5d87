//===- Llama2c.cpp - Read llama2.c checkpoints ----------------------------===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// The legacy (version 0) llama2.c format written by export.py and read by
// run.c: a header of seven little-endian int32
//
//   dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len
//
// (a negative vocab_size means the classifier is not shared with the token
// embeddings) followed by float32 arrays, each stacked over the layers:
//
//   token_embedding_table [vocab, dim]
//   rms_att_weight [layers, dim]
//   wq [layers, heads * headDim, dim]      wk, wv [layers, kvHeads * headDim,
//   dim] wo [layers, dim, heads * headDim] rms_ffn_weight [layers, dim] w1
//   [layers, hidden, dim]  w2 [layers, dim, hidden]  w3 [layers, hidden, dim]
//   rms_final_weight [dim]
//   freq_cis_real, freq_cis_imag [seq_len, headDim / 2] (unused, skipped)
//   wcls [vocab, dim] (only when not shared)
//
// with headDim = dim / n_heads. The file holds exactly these bytes.
//
//===----------------------------------------------------------------------===//

#include "CheckpointImpl.h"

#include "llvm/Support/CheckedArithmetic.h"
#include "llvm/Support/Endian.h"

#include <cstdlib>

using namespace llvm;
using namespace qlr::checkpoint;
using namespace qlr::checkpoint::detail;

static constexpr uint64_t kHeaderBytes = 7 * 4;

Expected<std::unique_ptr<Checkpoint>>
qlr::checkpoint::detail::openLlama2c(StringRef path,
                                     std::unique_ptr<MappedFile> file) {
  ArrayRef<uint8_t> bytes = file->bytes();
  // Newer llama2.c exports (version 1 and 2) start with the magic "ak42".
  if (bytes.size() >= 8 &&
      support::endian::read32le(bytes.data()) == 0x616b3432u)
    return fileError(path,
                     "llama2.c export version " +
                         Twine(support::endian::read32le(bytes.data() + 4)) +
                         " (magic 'ak42') is not supported; only the legacy "
                         "version 0 format is");
  if (bytes.size() < kHeaderBytes)
    return fileError(path, "not a GGUF file, and too small (" +
                               Twine(bytes.size()) +
                               " bytes) for the 28-byte header of a llama2.c "
                               "checkpoint");

  int64_t h[7];
  for (unsigned i = 0; i < 7; ++i)
    h[i] = int32_t(support::endian::read32le(bytes.data() + 4 * i));
  int64_t dim = h[0], hidden = h[1], layers = h[2], heads = h[3],
          kvHeads = h[4], vocab = h[5], seqLen = h[6];
  std::string header =
      ("llama2.c header (dim " + Twine(dim) + ", hidden_dim " + Twine(hidden) +
       ", n_layers " + Twine(layers) + ", n_heads " + Twine(heads) +
       ", n_kv_heads " + Twine(kvHeads) + ", vocab_size " + Twine(vocab) +
       ", seq_len " + Twine(seqLen) + ")")
          .str();

  auto checkpoint = std::make_unique<MappedCheckpoint>("llama2.c", path);
  ModelConfig &config = checkpoint->mutableConfig();
  config.dim = dim;
  config.hiddenDim = hidden;
  config.numLayers = layers;
  config.numHeads = heads;
  config.numKVHeads = kvHeads;
  config.vocabSize = std::abs(vocab);
  config.maxSeqLen = seqLen;
  config.tiedEmbeddings = vocab > 0;
  config.normEps = 1e-5f;
  config.ropeTheta = 10000.0f;
  if (heads > 0 && dim > 0 && dim % heads != 0)
    return fileError(path, header + ": n_heads (" + Twine(heads) +
                               ") does not divide dim (" + Twine(dim) + ")");
  config.headDim = heads > 0 ? dim / heads : 0;
  ConfigFieldNames names{"llama2.c header field dim",
                         "llama2.c header field hidden_dim",
                         "llama2.c header field n_layers",
                         "llama2.c header field n_heads",
                         "llama2.c header field n_kv_heads",
                         "the head size dim / n_heads",
                         "llama2.c header field vocab_size (absolute value)",
                         "llama2.c header field seq_len",
                         "normEps",
                         "ropeTheta"};
  if (Error e = validateConfig(path, config, names))
    return std::move(e);

  // Lay the arrays out in file order. Every field is below 2^31, so products
  // of two fit; the sums and the products with n_layers are checked.
  uint64_t d = dim, hd = config.headDim, v = config.vocabSize;
  uint64_t q = uint64_t(heads) * hd, kv = uint64_t(kvHeads) * hd;
  uint64_t hid = hidden, nl = layers;
  struct Segment {
    std::optional<TensorRole> role; // None: skipped (freq_cis).
    uint64_t elementsPerLayer;
    bool perLayer;
  };
  SmallVector<Segment, 14> segments = {
      {TensorRole::TokEmbeddings, v * d, false},
      {TensorRole::AttentionNorm, d, true},
      {TensorRole::WQ, q * d, true},
      {TensorRole::WK, kv * d, true},
      {TensorRole::WV, kv * d, true},
      {TensorRole::WO, d * q, true},
      {TensorRole::FFNNorm, d, true},
      {TensorRole::W1, hid * d, true},
      {TensorRole::W2, d * hid, true},
      {TensorRole::W3, hid * d, true},
      {TensorRole::Norm, d, false},
      {std::nullopt, uint64_t(seqLen) * (hd / 2) * 2, false},
  };
  if (!config.tiedEmbeddings)
    segments.push_back({TensorRole::Output, v * d, false});

  std::optional<uint64_t> offset = kHeaderBytes;
  // Per role: the offset of its array and the bytes of one layer's tensor.
  std::pair<uint64_t, uint64_t> roleOffsets[unsigned(TensorRole::Output) + 1] =
      {};
  for (const Segment &s : segments) {
    std::optional<uint64_t> bytes = checkedMulUnsigned<uint64_t>(
        s.elementsPerLayer, s.perLayer ? nl * 4 : 4);
    if (!offset || !bytes) {
      offset.reset();
      break;
    }
    if (s.role)
      roleOffsets[unsigned(*s.role)] = {*offset, s.elementsPerLayer * 4};
    offset = checkedAddUnsigned(*offset, *bytes);
  }
  if (!offset)
    return fileError(path, "the tensor sizes implied by the " + header +
                               " overflow 64 bits");
  if (*offset != bytes.size())
    return fileError(path, "the " + header + " implies a file of " +
                               Twine(*offset) + " bytes, but the file has " +
                               Twine(bytes.size()) + " bytes");

  unsigned fileIndex = checkpoint->addFile(std::move(file));
  Error err = forEachCanonicalTensor(config, [&](const CanonicalTensor &t) {
    auto [base, layerBytes] = roleOffsets[unsigned(t.role)];
    TensorSource source;
    source.file = fileIndex;
    source.offset = base + (t.layer < 0 ? 0 : uint64_t(t.layer) * layerBytes);
    source.numBytes = layerBytes;
    checkpoint->addTensor(
        TensorInfo{t.name, {t.shape.begin(), t.shape.end()}, DType::F32},
        source);
    return Error::success();
  });
  if (err)
    return std::move(err);
  return std::unique_ptr<Checkpoint>(std::move(checkpoint));
}
