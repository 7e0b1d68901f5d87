"""Deterministic synthetic checkpoints for end-to-end tests of QLR's importer.

Writers for the three formats QLR reads, each written from the format's
specification (not from QLR code):

* llama2.c legacy ``.bin``  (write_llama2c / read_llama2c)
* Hugging Face directory: config.json + safetensors, F32/F16/BF16, 1 or 2
  shards (write_safetensors_dir); q/k rows permuted for rotate-half RoPE
* GGUF v3, F32/F16/Q8_0/Q4_0/Q4_1 (write_gguf), with numpy implementations
  of the ggml block quantizers

Every writer returns the canonical weights *as stored* (float32 arrays, after
F16/BF16 rounding or quantize-dequantize): exactly what a correct reader must
produce, and what the numpy reference (qlr_reference.llama) should be run on.

Also: llama2.c ``tokenizer.bin`` reading/writing, a small valid SentencePiece
style vocabulary, and llama2.c's decode/encode rules.
"""

from __future__ import annotations

import json
import os
import pathlib
import struct
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .llama import LlamaConfig, Weights, weight_shapes, check_weights, rope_cos_sin

PathLike = Union[str, os.PathLike]

# --------------------------------------------------------------------------
# Synthetic weights
# --------------------------------------------------------------------------


def random_weights(config: LlamaConfig, seed: int = 0) -> Weights:
    """Deterministic float32 weights (numpy default_rng(seed)) in the canonical
    layout, scaled so that activations stay O(1): linear weights are
    N(0, 1/in) (the residual branches wo/w2 half that), norm weights
    1 + N(0, 0.1^2), embeddings N(0, 0.5^2), untied output N(0, 1/dim)."""
    config.validate()
    rng = np.random.default_rng(seed)
    out: Weights = {}
    for name, shape in weight_shapes(config).items():
        if len(shape) == 1:
            w = 1.0 + 0.1 * rng.standard_normal(shape)
        elif name == "tok_embeddings":
            w = 0.5 * rng.standard_normal(shape)
        else:
            std = 1.0 / np.sqrt(shape[1])
            if name.endswith(("attention.wo", "feed_forward.w2")):
                std *= 0.5
            w = std * rng.standard_normal(shape)
        out[name] = w.astype(np.float32)
    return out


def _f32(weights: Weights, config: LlamaConfig) -> Weights:
    check_weights(weights, config)
    return {k: np.ascontiguousarray(weights[k], dtype=np.float32)
            for k in weight_shapes(config)}


# --------------------------------------------------------------------------
# llama2.c legacy format
# --------------------------------------------------------------------------

LLAMA2C_LAYER_ORDER = [
    # (file tensor, canonical suffix) in file order; each stacked over layers
    ("rms_att_weight", "attention_norm"),
    ("wq", "attention.wq"),
    ("wk", "attention.wk"),
    ("wv", "attention.wv"),
    ("wo", "attention.wo"),
    ("rms_ffn_weight", "ffn_norm"),
    ("w1", "feed_forward.w1"),
    ("w2", "feed_forward.w2"),
    ("w3", "feed_forward.w3"),
]


def write_llama2c(path: PathLike, config: LlamaConfig, weights: Weights) -> Weights:
    """llama2.c legacy checkpoint: 7 x int32 header (dim, hidden_dim, n_layers,
    n_heads, n_kv_heads, vocab_size -- negative when the classifier is not
    tied --, seq_len), then float32 tensors: token_embedding_table,
    rms_att_weight, wq, wk, wv, wo, rms_ffn_weight, w1, w2, w3 (each stacked
    over layers), rms_final_weight, freq_cis_real [seq_len, hd/2],
    freq_cis_imag [seq_len, hd/2] (cos/sin of the interleaved RoPE angles),
    and wcls [vocab, dim] when not tied. Returns the float32 weights."""
    c = config
    w = _f32(weights, c)
    vocab = c.vocab_size if c.tied else -c.vocab_size
    cos, sin = rope_cos_sin(range(c.seq_len), c.head_dim, c.rope_theta)
    with open(path, "wb") as f:
        f.write(struct.pack("<7i", c.dim, c.hidden_dim, c.n_layers, c.n_heads,
                            c.n_kv_heads, vocab, c.seq_len))
        f.write(w["tok_embeddings"].tobytes())
        for _, suffix in LLAMA2C_LAYER_ORDER:
            for i in range(c.n_layers):
                f.write(w[f"layers.{i}.{suffix}"].tobytes())
        f.write(w["norm"].tobytes())
        f.write(cos.astype(np.float32).tobytes())
        f.write(sin.astype(np.float32).tobytes())
        if not c.tied:
            f.write(w["output"].tobytes())
    return w


def read_llama2c(path: PathLike, seq_len_override: Optional[int] = None
                 ) -> Tuple[LlamaConfig, Weights]:
    """Reads a llama2.c legacy checkpoint (e.g. stories260K.bin) into a config
    and canonical float32 weights. The file size must match the header."""
    data = pathlib.Path(path).read_bytes()
    if len(data) < 28:
        raise ValueError(f"{path}: too short for a llama2.c header")
    dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len = struct.unpack_from("<7i", data, 0)
    tied = vocab > 0
    vocab = abs(vocab)
    config = LlamaConfig(dim, hidden, n_layers, n_heads, n_kv, vocab,
                         seq_len_override or seq_len, tied=tied)
    config.validate()
    hd = config.head_dim
    floats = np.frombuffer(data, dtype="<f4", offset=28)
    expected = (vocab * dim + n_layers * (2 * dim + (n_heads * hd) * dim * 2
                                          + 2 * (n_kv * hd) * dim + 3 * hidden * dim)
                + dim + 2 * seq_len * (hd // 2) + (0 if tied else vocab * dim))
    if floats.size != expected or (len(data) - 28) % 4:
        raise ValueError(f"{path}: {len(data) - 28} data bytes, header implies {4 * expected}")
    shapes = weight_shapes(config)
    pos = 0

    def take(shape):
        nonlocal pos
        n = int(np.prod(shape))
        arr = floats[pos:pos + n].reshape(shape).astype(np.float32)
        pos += n
        return arr

    w: Weights = {"tok_embeddings": take(shapes["tok_embeddings"])}
    for _, suffix in LLAMA2C_LAYER_ORDER:
        for i in range(n_layers):
            name = f"layers.{i}.{suffix}"
            w[name] = take(shapes[name])
    w["norm"] = take((dim,))
    pos += 2 * seq_len * (hd // 2)  # freq_cis_real, freq_cis_imag
    if not tied:
        w["output"] = take((vocab, dim))
    return config, {k: w[k] for k in shapes}


# --------------------------------------------------------------------------
# Float rounding helpers
# --------------------------------------------------------------------------


def bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns (uint16), round to nearest even."""
    b = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (b + 0x7FFF + ((b >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)


def bf16_to_f32(bits: np.ndarray) -> np.ndarray:
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def round_to(x: np.ndarray, dtype: str) -> np.ndarray:
    """The float32 value of x after storing it as F32, F16 or BF16."""
    x = np.asarray(x, dtype=np.float32)
    if dtype == "F32":
        return x.copy()
    if dtype == "F16":
        return x.astype(np.float16).astype(np.float32)
    if dtype == "BF16":
        return bf16_to_f32(bf16_bits(x))
    raise ValueError(f"unknown dtype {dtype}")


def _float_bytes(x: np.ndarray, dtype: str) -> bytes:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if dtype == "F32":
        return x.astype("<f4").tobytes()
    if dtype == "F16":
        return x.astype("<f2").tobytes()
    if dtype == "BF16":
        return bf16_bits(x).astype("<u2").tobytes()
    raise ValueError(f"unknown dtype {dtype}")


# --------------------------------------------------------------------------
# Hugging Face safetensors directories
# --------------------------------------------------------------------------


def hf_permute(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Canonical (interleaved-RoPE) q/k rows -> Hugging Face (rotate-half)
    rows: HF row h*hd + s*hd/2 + j = canonical row h*hd + 2*j + s."""
    rows, cols = w.shape
    hd = rows // n_heads
    return (w.reshape(n_heads, hd // 2, 2, cols).transpose(0, 2, 1, 3)
            .reshape(rows, cols))


def hf_unpermute(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Inverse of hf_permute (what a correct importer applies)."""
    rows, cols = w.shape
    hd = rows // n_heads
    return (w.reshape(n_heads, 2, hd // 2, cols).transpose(0, 2, 1, 3)
            .reshape(rows, cols))


def hf_names(config: LlamaConfig) -> Dict[str, str]:
    """Canonical name -> Hugging Face LlamaForCausalLM name, canonical order."""
    m = {"tok_embeddings": "model.embed_tokens.weight"}
    for i in range(config.n_layers):
        p, q = f"layers.{i}.", f"model.layers.{i}."
        m[p + "attention_norm"] = q + "input_layernorm.weight"
        m[p + "attention.wq"] = q + "self_attn.q_proj.weight"
        m[p + "attention.wk"] = q + "self_attn.k_proj.weight"
        m[p + "attention.wv"] = q + "self_attn.v_proj.weight"
        m[p + "attention.wo"] = q + "self_attn.o_proj.weight"
        m[p + "ffn_norm"] = q + "post_attention_layernorm.weight"
        m[p + "feed_forward.w1"] = q + "mlp.gate_proj.weight"
        m[p + "feed_forward.w2"] = q + "mlp.down_proj.weight"
        m[p + "feed_forward.w3"] = q + "mlp.up_proj.weight"
    m["norm"] = "model.norm.weight"
    if not config.tied:
        m["output"] = "lm_head.weight"
    return m


def hf_config(config: LlamaConfig, dtype: str = "F32") -> dict:
    torch_dtype = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}[dtype]
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": config.dim,
        "intermediate_size": config.hidden_dim,
        "num_hidden_layers": config.n_layers,
        "num_attention_heads": config.n_heads,
        "num_key_value_heads": config.n_kv_heads,
        "vocab_size": config.vocab_size,
        "max_position_embeddings": config.seq_len,
        "rms_norm_eps": config.norm_eps,
        "rope_theta": config.rope_theta,
        "tie_word_embeddings": config.tied,
        "hidden_act": "silu",
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": torch_dtype,
    }


def write_safetensors(path: PathLike, tensors: Sequence[Tuple[str, str, np.ndarray]],
                      metadata: Optional[Dict[str, str]] = None) -> None:
    """One safetensors file: u64 LE header length N, N bytes of JSON
    {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": ...}
    (padded with spaces to a multiple of 8), then the data; offsets are
    relative to the end of the header. `tensors`: (name, dtype, float array)
    written in the given order."""
    header: dict = {"__metadata__": dict(metadata or {"format": "pt"})}
    blobs = []
    offset = 0
    for name, dtype, arr in tensors:
        blob = _float_bytes(arr, dtype)
        header[name] = {"dtype": dtype, "shape": [int(d) for d in np.shape(arr)],
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((-(8 + len(text))) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def write_safetensors_dir(directory: PathLike, config: LlamaConfig, weights: Weights,
                          dtype: str = "F32", shards: int = 1) -> Weights:
    """A Hugging Face LlamaForCausalLM checkpoint directory: config.json and
    model.safetensors (shards=1) or model-0000N-of-0000M.safetensors plus
    model.safetensors.index.json (shards>1; tensors split in canonical order
    into contiguous groups of near-equal count). q_proj/k_proj rows are
    written permuted (hf_permute). Returns the canonical weights after
    rounding to `dtype` (un-permuted): what a correct importer produces."""
    if dtype not in ("F32", "F16", "BF16"):
        raise ValueError(f"unsupported safetensors dtype {dtype}")
    if shards < 1:
        raise ValueError("shards must be >= 1")
    c = config
    w = _f32(weights, c)
    d = pathlib.Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps(hf_config(c, dtype), indent=2) + "\n")

    names = hf_names(c)
    stored: Weights = {}
    entries = []
    for canon, hf in names.items():
        arr = round_to(w[canon], dtype)
        stored[canon] = arr
        if canon.endswith("attention.wq"):
            arr = hf_permute(arr, c.n_heads)
        elif canon.endswith("attention.wk"):
            arr = hf_permute(arr, c.n_kv_heads)
        entries.append((hf, dtype, arr))

    if shards == 1:
        write_safetensors(d / "model.safetensors", entries)
        return stored
    groups = np.array_split(np.arange(len(entries)), shards)
    weight_map = {}
    total = 0
    for s, idx in enumerate(groups):
        fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        part = [entries[i] for i in idx]
        write_safetensors(d / fname, part)
        for name, dt, arr in part:
            weight_map[name] = fname
            total += len(_float_bytes(arr, dt))
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (d / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    return stored


# --------------------------------------------------------------------------
# ggml block quantization (blocks of 32 along each row)
# --------------------------------------------------------------------------

QK = 32
BLOCK_BYTES = {"Q8_0": 2 + 32, "Q4_0": 2 + 16, "Q4_1": 2 + 2 + 16}


def _blocks(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.shape[-1] % QK:
        raise ValueError(f"row length {x.shape[-1]} is not a multiple of {QK}")
    return x.reshape(-1, QK)


def _inverse(d: np.ndarray) -> np.ndarray:
    """ggml's id = d ? 1/d : 0, in float32."""
    with np.errstate(divide="ignore"):
        return np.where(d != 0, np.float32(1.0) / np.where(d != 0, d, 1), 0).astype(np.float32)


def _pack_nibbles(q: np.ndarray) -> np.ndarray:
    """[n, 32] codes 0..15 -> [n, 16] bytes: byte j = q[j] | q[j + 16] << 4."""
    q = q.astype(np.uint8)
    return (q[:, :16] | (q[:, 16:] << 4)).astype(np.uint8)


def _unpack_nibbles(qs: np.ndarray) -> np.ndarray:
    return np.concatenate([qs & 0x0F, qs >> 4], axis=1)


def quantize_q8_0(x: np.ndarray) -> Tuple[bytes, np.ndarray]:
    """Q8_0 blocks {f16 d; int8 qs[32]}: d = absmax / 127, q = round(x / d)
    (half away from zero). Returns (bytes, dequantized float32 of x's shape)."""
    b = _blocks(x)
    amax = np.max(np.abs(b), axis=1)
    d = (amax / np.float32(127)).astype(np.float32)
    idv = _inverse(d)
    v = (b * idv[:, None]).astype(np.float64)
    q = (np.sign(v) * np.floor(np.abs(v) + 0.5)).astype(np.int8)
    d16 = d.astype(np.float16)
    rec = np.zeros(b.shape[0], dtype=[("d", "<f2"), ("qs", "i1", (32,))])
    rec["d"] = d16
    rec["qs"] = q
    deq = q.astype(np.float32) * d16.astype(np.float32)[:, None]
    return rec.tobytes(), deq.reshape(np.shape(x))


def quantize_q4_0(x: np.ndarray) -> Tuple[bytes, np.ndarray]:
    """Q4_0 blocks {f16 d; u8 qs[16]}: d = max / -8 with max the element of
    largest magnitude (sign kept, first on ties); q = min(15, trunc(x/d + 8.5))
    (= round half up of x/d + 8, clamped to 0..15); nibbles: byte j holds
    element j (low) and j + 16 (high). Dequant: (q - 8) * d."""
    b = _blocks(x)
    idx = np.argmax(np.abs(b), axis=1)
    mx = b[np.arange(b.shape[0]), idx]
    d = (mx / np.float32(-8)).astype(np.float32)
    idv = _inverse(d)
    t = (b * idv[:, None]).astype(np.float32) + np.float32(8.5)
    q = np.clip(np.trunc(t), 0, 15).astype(np.uint8)
    d16 = d.astype(np.float16)
    rec = np.zeros(b.shape[0], dtype=[("d", "<f2"), ("qs", "u1", (16,))])
    rec["d"] = d16
    rec["qs"] = _pack_nibbles(q)
    deq = (q.astype(np.float32) - np.float32(8)) * d16.astype(np.float32)[:, None]
    return rec.tobytes(), deq.reshape(np.shape(x))


def quantize_q4_1(x: np.ndarray) -> Tuple[bytes, np.ndarray]:
    """Q4_1 blocks {f16 d; f16 m; u8 qs[16]}: d = (max - min) / 15, m = min,
    q = min(15, trunc((x - min)/d + 0.5)); same nibble order as Q4_0.
    Dequant: q * d + m."""
    b = _blocks(x)
    mn = np.min(b, axis=1)
    mx = np.max(b, axis=1)
    d = ((mx - mn) / np.float32(15)).astype(np.float32)
    idv = _inverse(d)
    t = ((b - mn[:, None]) * idv[:, None]).astype(np.float32) + np.float32(0.5)
    q = np.clip(np.trunc(t), 0, 15).astype(np.uint8)
    d16 = d.astype(np.float16)
    m16 = mn.astype(np.float16)
    rec = np.zeros(b.shape[0], dtype=[("d", "<f2"), ("m", "<f2"), ("qs", "u1", (16,))])
    rec["d"] = d16
    rec["m"] = m16
    rec["qs"] = _pack_nibbles(q)
    deq = (q.astype(np.float32) * d16.astype(np.float32)[:, None]
           + m16.astype(np.float32)[:, None])
    return rec.tobytes(), deq.reshape(np.shape(x))


def dequantize(raw: bytes, ggml_type: str, shape: Sequence[int]) -> np.ndarray:
    """Dequantizes ggml blocks (Q8_0, Q4_0, Q4_1) of a tensor of `shape`."""
    n = int(np.prod(shape)) // QK
    if ggml_type == "Q8_0":
        rec = np.frombuffer(raw, dtype=[("d", "<f2"), ("qs", "i1", (32,))], count=n)
        out = rec["qs"].astype(np.float32) * rec["d"].astype(np.float32)[:, None]
    elif ggml_type == "Q4_0":
        rec = np.frombuffer(raw, dtype=[("d", "<f2"), ("qs", "u1", (16,))], count=n)
        q = _unpack_nibbles(rec["qs"]).astype(np.float32)
        out = (q - 8) * rec["d"].astype(np.float32)[:, None]
    elif ggml_type == "Q4_1":
        rec = np.frombuffer(raw, dtype=[("d", "<f2"), ("m", "<f2"), ("qs", "u1", (16,))],
                            count=n)
        q = _unpack_nibbles(rec["qs"]).astype(np.float32)
        out = q * rec["d"].astype(np.float32)[:, None] + rec["m"].astype(np.float32)[:, None]
    else:
        raise ValueError(f"unknown block type {ggml_type}")
    return out.reshape(shape)


# --------------------------------------------------------------------------
# GGUF v3
# --------------------------------------------------------------------------

GGML_TYPES = {"F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q8_0": 8, "BF16": 30}

# GGUF metadata value types
GGUF_UINT8, GGUF_INT8, GGUF_UINT16, GGUF_INT16 = 0, 1, 2, 3
GGUF_UINT32, GGUF_INT32, GGUF_FLOAT32, GGUF_BOOL = 4, 5, 6, 7
GGUF_STRING, GGUF_ARRAY, GGUF_UINT64, GGUF_INT64, GGUF_FLOAT64 = 8, 9, 10, 11, 12

GGUF_ALIGNMENT = 32

_SCALAR_FMT = {GGUF_UINT8: "<B", GGUF_INT8: "<b", GGUF_UINT16: "<H", GGUF_INT16: "<h",
               GGUF_UINT32: "<I", GGUF_INT32: "<i", GGUF_FLOAT32: "<f", GGUF_BOOL: "<?",
               GGUF_UINT64: "<Q", GGUF_INT64: "<q", GGUF_FLOAT64: "<d"}

# token types (llama.cpp)
TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_CONTROL = 1, 2, 3
TOKEN_USER_DEFINED, TOKEN_UNUSED, TOKEN_BYTE = 4, 5, 6


def gguf_names(config: LlamaConfig) -> Dict[str, str]:
    """Canonical name -> GGUF (llama.cpp) tensor name, canonical order."""
    m = {"tok_embeddings": "token_embd.weight"}
    for i in range(config.n_layers):
        p, b = f"layers.{i}.", f"blk.{i}."
        m[p + "attention_norm"] = b + "attn_norm.weight"
        m[p + "attention.wq"] = b + "attn_q.weight"
        m[p + "attention.wk"] = b + "attn_k.weight"
        m[p + "attention.wv"] = b + "attn_v.weight"
        m[p + "attention.wo"] = b + "attn_output.weight"
        m[p + "ffn_norm"] = b + "ffn_norm.weight"
        m[p + "feed_forward.w1"] = b + "ffn_gate.weight"
        m[p + "feed_forward.w2"] = b + "ffn_down.weight"
        m[p + "feed_forward.w3"] = b + "ffn_up.weight"
    m["norm"] = "output_norm.weight"
    if not config.tied:
        m["output"] = "output.weight"
    return m


def _gguf_str(s: Union[str, bytes]) -> bytes:
    b = s.encode("utf-8") if isinstance(s, str) else bytes(s)
    return struct.pack("<Q", len(b)) + b


def _gguf_value(vtype: int, value) -> bytes:
    if vtype == GGUF_STRING:
        return _gguf_str(value)
    if vtype == GGUF_ARRAY:
        etype, items = value
        out = struct.pack("<IQ", etype, len(items))
        if etype == GGUF_STRING:
            return out + b"".join(_gguf_str(s) for s in items)
        if etype == GGUF_ARRAY:
            raise ValueError("nested arrays are not supported")
        return out + b"".join(struct.pack(_SCALAR_FMT[etype], v) for v in items)
    return struct.pack(_SCALAR_FMT[vtype], value)


def gguf_tokenizer(pieces: Sequence[Union[str, bytes]], scores: Sequence[float],
                   bos_id: int = 1, eos_id: int = 2, unk_id: int = 0,
                   token_types: Optional[Sequence[int]] = None) -> dict:
    """A `tokenizer` argument for write_gguf from llama2.c-style pieces (plain
    spaces): GGUF "llama" vocabularies spell a space U+2581, so spaces are
    converted. Token types: unk -> UNKNOWN, bos/eos -> CONTROL, <0xXX> ->
    BYTE, others NORMAL (unless given)."""
    toks = []
    for p in pieces:
        s = p.decode("utf-8") if isinstance(p, bytes) else p
        toks.append(s.replace(" ", "\u2581"))
    if token_types is None:
        token_types = []
        for i, s in enumerate(toks):
            if i == unk_id:
                token_types.append(TOKEN_UNKNOWN)
            elif i in (bos_id, eos_id):
                token_types.append(TOKEN_CONTROL)
            elif _byte_piece(s) is not None:
                token_types.append(TOKEN_BYTE)
            else:
                token_types.append(TOKEN_NORMAL)
    return {"tokens": toks, "scores": [float(s) for s in scores],
            "token_type": [int(t) for t in token_types],
            "bos_id": bos_id, "eos_id": eos_id, "unk_id": unk_id}


def gguf_metadata(config: LlamaConfig, tokenizer: Optional[dict] = None) -> List[tuple]:
    """The (key, type, value) metadata write_gguf emits, in order."""
    c = config
    kv = [
        ("general.architecture", GGUF_STRING, "llama"),
        ("general.alignment", GGUF_UINT32, GGUF_ALIGNMENT),
        ("llama.context_length", GGUF_UINT32, c.seq_len),
        ("llama.embedding_length", GGUF_UINT32, c.dim),
        ("llama.feed_forward_length", GGUF_UINT32, c.hidden_dim),
        ("llama.block_count", GGUF_UINT32, c.n_layers),
        ("llama.attention.head_count", GGUF_UINT32, c.n_heads),
        ("llama.attention.head_count_kv", GGUF_UINT32, c.n_kv_heads),
        ("llama.attention.layer_norm_rms_epsilon", GGUF_FLOAT32, c.norm_eps),
        ("llama.rope.freq_base", GGUF_FLOAT32, c.rope_theta),
        ("llama.rope.dimension_count", GGUF_UINT32, c.head_dim),
        ("llama.vocab_size", GGUF_UINT32, c.vocab_size),
    ]
    if tokenizer is not None:
        n = len(tokenizer["tokens"])
        if n != c.vocab_size:
            raise ValueError(f"tokenizer has {n} tokens, the model {c.vocab_size}")
        kv += [
            ("tokenizer.ggml.model", GGUF_STRING, "llama"),
            ("tokenizer.ggml.tokens", GGUF_ARRAY, (GGUF_STRING, list(tokenizer["tokens"]))),
            ("tokenizer.ggml.scores", GGUF_ARRAY, (GGUF_FLOAT32, list(tokenizer["scores"]))),
            ("tokenizer.ggml.token_type", GGUF_ARRAY,
             (GGUF_INT32, list(tokenizer["token_type"]))),
            ("tokenizer.ggml.bos_token_id", GGUF_UINT32, tokenizer.get("bos_id", 1)),
            ("tokenizer.ggml.eos_token_id", GGUF_UINT32, tokenizer.get("eos_id", 2)),
            ("tokenizer.ggml.unknown_token_id", GGUF_UINT32, tokenizer.get("unk_id", 0)),
            ("tokenizer.ggml.add_bos_token", GGUF_BOOL, True),
        ]
    return kv


def _align(n: int, a: int = GGUF_ALIGNMENT) -> int:
    return (n + a - 1) // a * a


def write_gguf(path: PathLike, config: LlamaConfig, weights: Weights,
               tensor_type: str = "F32", tokenizer: Optional[dict] = None) -> Weights:
    """GGUF v3 file: "GGUF", u32 version 3, u64 tensor_count, u64 kv_count,
    metadata KVs (gguf_metadata), tensor infos (name, u32 n_dims, u64 ne[]
    innermost first -- canonical [out, in] is ne = [in, out] --, u32 ggml
    type, u64 offset relative to the data section, multiple of 32), zero
    padding to 32, then the tensor data, each tensor padded to 32 (the last
    one too). Norm vectors are always F32; 2-D weights are `tensor_type`
    (F32, F16, Q8_0, Q4_0, Q4_1). Tensors are in canonical order. Returns the
    canonical weights as a correct reader must produce them (float32,
    rounded/dequantized). `tokenizer`: see gguf_tokenizer."""
    if tensor_type not in ("F32", "F16", "Q8_0", "Q4_0", "Q4_1"):
        raise ValueError(f"unsupported GGUF tensor type {tensor_type}")
    c = config
    w = _f32(weights, c)
    stored: Weights = {}
    infos = []
    blobs = []
    offset = 0
    for canon, name in gguf_names(c).items():
        arr = w[canon]
        ttype = tensor_type if arr.ndim == 2 else "F32"
        if ttype == "F32":
            blob, deq = arr.astype("<f4").tobytes(), arr.copy()
        elif ttype == "F16":
            blob, deq = arr.astype("<f2").tobytes(), round_to(arr, "F16")
        else:
            blob, deq = {"Q8_0": quantize_q8_0, "Q4_0": quantize_q4_0,
                         "Q4_1": quantize_q4_1}[ttype](arr)
        stored[canon] = deq.astype(np.float32)
        ne = list(reversed(arr.shape))
        info = _gguf_str(name) + struct.pack("<I", len(ne))
        info += b"".join(struct.pack("<Q", d) for d in ne)
        info += struct.pack("<IQ", GGML_TYPES[ttype], offset)
        infos.append(info)
        blobs.append(blob)
        offset = _align(offset + len(blob))

    kv = gguf_metadata(c, tokenizer)
    head = b"GGUF" + struct.pack("<IQQ", 3, len(infos), len(kv))
    for key, vtype, value in kv:
        head += _gguf_str(key) + struct.pack("<I", vtype) + _gguf_value(vtype, value)
    head += b"".join(infos)
    head += b"\0" * (_align(len(head)) - len(head))
    with open(path, "wb") as f:
        f.write(head)
        for blob in blobs:
            f.write(blob)
            f.write(b"\0" * (_align(len(blob)) - len(blob)))
    return stored


# --------------------------------------------------------------------------
# llama2.c tokenizer.bin
# --------------------------------------------------------------------------


def _byte_piece(piece: Union[str, bytes]) -> Optional[int]:
    """The byte value of a "<0xXX>" piece, else None."""
    s = piece.decode("latin-1") if isinstance(piece, bytes) else piece
    if len(s) == 6 and s.startswith("<0x") and s.endswith(">"):
        try:
            return int(s[3:5], 16)
        except ValueError:
            return None
    return None


def _piece_bytes(p: Union[str, bytes]) -> bytes:
    return p.encode("utf-8") if isinstance(p, str) else bytes(p)


def write_llama2c_tokenizer(path: PathLike, pieces: Sequence[Union[str, bytes]],
                            scores: Sequence[float],
                            max_token_length: Optional[int] = None) -> None:
    """llama2.c tokenizer.bin: int32 max_token_length, then per token float32
    score, int32 byte length, UTF-8 bytes (no terminator). Pieces use a plain
    space (not U+2581). The vocabulary size is not stored (it is the model's)."""
    if len(pieces) != len(scores):
        raise ValueError("one score per piece is required")
    enc = [_piece_bytes(p) for p in pieces]
    if max_token_length is None:
        max_token_length = max(len(b) for b in enc)
    with open(path, "wb") as f:
        f.write(struct.pack("<i", max_token_length))
        for b, s in zip(enc, scores):
            f.write(struct.pack("<fi", s, len(b)))
            f.write(b)


def read_llama2c_tokenizer(path: PathLike, vocab_size: int
                           ) -> Tuple[List[bytes], List[float], int]:
    """Reads `vocab_size` tokens of a llama2.c tokenizer.bin:
    (pieces as bytes, scores, max_token_length)."""
    data = pathlib.Path(path).read_bytes()
    (max_len,) = struct.unpack_from("<i", data, 0)
    pos = 4
    pieces, scores = [], []
    for _ in range(vocab_size):
        score, n = struct.unpack_from("<fi", data, pos)
        pos += 8
        if n < 0 or pos + n > len(data):
            raise ValueError(f"{path}: truncated token table")
        pieces.append(data[pos:pos + n])
        scores.append(score)
        pos += n
    return pieces, scores, max_len


DEFAULT_MERGES = [
    # single characters
    "e", "t", "a", "o", "h", "n", "s", "i", "l", "d", "r", "w", "c", ".", ",", "T", "O",
    "L", "y", "p", "m", "u", "g", "b", "f", "k", "v",
    # merges, each the concatenation of two earlier pieces
    "he", " t", " the", " a", "in", "er", " s", "an", "ed", "nd", " w", "on", "re", "at",
    "ou", " b", " h", "it", " T", " O", "On", "ce", "Once", "ing", " and", " he", "as",
    " was", "up", " up", " upon", "im", "ime", " time", " there", " L", "il", "ily",
    " Lily", "pp", "ppy", " ha", " happy",
]


def build_test_vocab(merged: Optional[Sequence[str]] = None
                     ) -> Tuple[List[str], List[float]]:
    """A small valid SentencePiece-style vocabulary in llama2.c form:
    <unk>, <s>, </s>, <0x00>..<0xFF> (ids 3..258), " " (id 259, the
    dummy-prefix space), then `merged` pieces (default DEFAULT_MERGES, which
    has 27 characters and 43 merges: 330 tokens). Specials and bytes score 0;
    piece i >= 259 scores -(i - 259), so earlier pieces merge first. A merged
    piece is reachable by the BPE only if it is the concatenation of two
    pieces of the vocabulary. Returns (pieces, scores)."""
    merged = list(DEFAULT_MERGES if merged is None else merged)
    pieces = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + [" "]
    seen = set(pieces)
    for p in merged:
        if p not in seen:
            seen.add(p)
            pieces.append(p)
    scores = [0.0] * 259 + [-float(i - 259) for i in range(259, len(pieces))]
    return pieces, scores


def decode_llama2c(pieces: Sequence[Union[str, bytes]], ids: Sequence[int],
                   prev_token: int = 1) -> str:
    """llama2.c decode of a token sequence: a piece following BOS (id 1) loses
    its leading space; "<0xXX>" pieces are raw bytes. The bytes are then read
    as UTF-8 (invalid sequences replaced)."""
    out = bytearray()
    prev = prev_token
    for t in ids:
        piece = _piece_bytes(pieces[t])
        if prev == 1 and piece[:1] == b" ":
            piece = piece[1:]
        b = _byte_piece(piece)
        out += bytes([b]) if b is not None else piece
        prev = t
    return out.decode("utf-8", errors="replace")


def encode_llama2c(pieces: Sequence[Union[str, bytes]], scores: Sequence[float], text: str,
                   bos: bool = True, eos: bool = False) -> List[int]:
    """llama2.c's SentencePiece-BPE encode: optional BOS (1); a dummy-prefix
    " " token when the text is non-empty; one token per UTF-8 character (byte
    fallback to id byte + 3 when the character is not a piece); then merge
    the adjacent pair whose concatenation is a piece with the highest score
    (leftmost on ties) until none applies; optional EOS (2)."""
    enc = [_piece_bytes(p) for p in pieces]
    lookup: Dict[bytes, int] = {}
    for i, b in enumerate(enc):
        lookup.setdefault(b, i)
    toks: List[int] = []
    if bos:
        toks.append(1)
    body: List[int] = []
    raw = text.encode("utf-8")
    if raw:
        if b" " not in lookup:
            raise ValueError("the vocabulary has no ' ' piece for the dummy prefix")
        body.append(lookup[b" "])
    i = 0
    while i < len(raw):
        j = i + 1
        while j < len(raw) and j - i < 4 and (raw[j] & 0xC0) == 0x80:
            j += 1
        ch = raw[i:j]
        if ch in lookup:
            body.append(lookup[ch])
        else:
            body.extend(b + 3 for b in ch)
        i = j
    while True:
        best, best_id, best_at = None, -1, -1
        for k in range(len(body) - 1):
            m = enc[body[k]] + enc[body[k + 1]]
            tid = lookup.get(m)
            if tid is not None and (best is None or scores[tid] > best):
                best, best_id, best_at = scores[tid], tid, k
        if best_at < 0:
            break
        body[best_at:best_at + 2] = [best_id]
    toks.extend(body)
    if eos:
        toks.append(2)
    return toks
