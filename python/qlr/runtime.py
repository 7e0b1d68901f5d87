"""ctypes binding of the C interface of compiled QLR models.

A model library made by ``qlr-compile MODEL.mlirbc -o model.so`` exports the
functions of ``include/qlr-c/Runtime.h``; this module declares each of them
(argument and result types) and wraps them in :class:`Model`. Nothing here
needs LLVM or MLIR: the library itself needs only the C/C++ runtime (and the
OpenMP runtime when it was compiled with threads).

Every failure of the library becomes a :class:`Error` carrying the message of
``qlr_last_error()``.
"""

from __future__ import annotations

import ctypes
import dataclasses
import math
import os
import struct
import threading
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import numpy.typing as npt

__all__ = ["ABI_VERSION", "Error", "Model", "ModelInfo"]

#: The QLR_RUNTIME_ABI_VERSION this binding was written against.
ABI_VERSION = 1

PathLike = Union[str, "os.PathLike[str]"]
Text = Union[str, bytes]
TokenIds = Union[Sequence[int], "npt.NDArray[np.integer[Any]]"]


class Error(RuntimeError):
    """A failure of a QLR model library (or of loading one)."""


class _ModelInfo(ctypes.Structure):
    """``struct qlr_model_info`` of qlr-c/Runtime.h, field for field."""

    _fields_ = [
        ("vocab_size", ctypes.c_int64),
        ("context_length", ctypes.c_int64),
        ("layers", ctypes.c_int64),
        ("dim", ctypes.c_int64),
        ("hidden_dim", ctypes.c_int64),
        ("heads", ctypes.c_int64),
        ("kv_heads", ctypes.c_int64),
        ("head_dim", ctypes.c_int64),
        ("parameters", ctypes.c_int64),
        ("weight_bytes", ctypes.c_int64),
        ("bits_per_weight", ctypes.c_double),
        ("target_cpu", ctypes.c_char_p),
        ("simd_level", ctypes.c_char_p),
        ("threads", ctypes.c_int),
        ("has_tokenizer", ctypes.c_int),
    ]


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What a model is (``qlr_model_get_info``).

    ``context_length`` is the number of KV-cache rows, the most positions the
    model runs; ``threads`` is 1, or 0 when the model runs on OpenMP threads
    (``OMP_NUM_THREADS`` sets how many, read when the first model runs).
    """

    vocab_size: int
    context_length: int
    layers: int
    dim: int
    hidden_dim: int
    heads: int
    kv_heads: int
    head_dim: int
    parameters: int
    weight_bytes: int
    bits_per_weight: float
    target_cpu: str
    simd_level: str
    threads: int
    has_tokenizer: bool


_i32p = ctypes.POINTER(ctypes.c_int32)
_f32p = ctypes.POINTER(ctypes.c_float)

# name: (restype, argtypes), exactly as declared in qlr-c/Runtime.h. The model
# handle is an opaque pointer (c_void_p).
_OPTIONAL_SIGNATURES: Dict[str, Any] = {
    "qlr_model_device": (ctypes.c_char_p, [ctypes.c_void_p]),
}

_SIGNATURES: Dict[str, Any] = {
    "qlr_runtime_abi_version": (ctypes.c_uint32, []),
    "qlr_last_error": (ctypes.c_char_p, []),
    "qlr_model_open": (ctypes.c_void_p, [ctypes.c_char_p]),
    "qlr_model_close": (None, [ctypes.c_void_p]),
    "qlr_model_get_info": (ctypes.c_int,
                           [ctypes.c_void_p, ctypes.POINTER(_ModelInfo)]),
    "qlr_model_position": (ctypes.c_int64, [ctypes.c_void_p]),
    "qlr_model_set_position": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_int64]),
    "qlr_model_forward": (ctypes.c_int,
                          [ctypes.c_void_p, _i32p, ctypes.c_int64, _f32p]),
    "qlr_tokenize": (ctypes.c_int64,
                     [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int64,
                      ctypes.c_int, _i32p, ctypes.c_int64]),
    "qlr_detokenize": (ctypes.c_int64,
                       [ctypes.c_void_p, _i32p, ctypes.c_int64,
                        ctypes.c_char_p, ctypes.c_int64]),
    "qlr_token_bos": (ctypes.c_int32, [ctypes.c_void_p]),
    "qlr_token_eos": (ctypes.c_int32, [ctypes.c_void_p]),
    "qlr_token_adds_bos": (ctypes.c_int, [ctypes.c_void_p]),
    "qlr_model_tokenizer_data": (ctypes.c_int,
                                 [ctypes.c_void_p,
                                  ctypes.POINTER(ctypes.c_void_p),
                                  ctypes.POINTER(ctypes.c_size_t)]),
}


def _check_elf(path: str) -> None:
    """Rejects a file that the dynamic loader would map past its end.

    dlopen() maps the loadable segments the ELF header describes without
    checking that the file holds them; touching a page past the end of a
    truncated file then kills the process with SIGBUS. Checking the sizes
    first turns a truncated (or half-copied) library into an Error. Files that
    are not 64-bit little-endian ELF are left to dlopen(), which rejects them
    with a message.
    """
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            header = f.read(64)
            if len(header) < 64 or header[:4] != b"\x7fELF":
                return
            if header[4] != 2 or header[5] != 1:  # ELFCLASS64, ELFDATA2LSB
                return
            phoff, shoff = struct.unpack_from("<QQ", header, 0x20)
            phentsize, phnum, shentsize, shnum = struct.unpack_from(
                "<HHHH", header, 0x36)
            if phentsize < 56 or phoff + phnum * phentsize > size:
                raise Error(f"{path}: a truncated or corrupt library (its "
                            f"program headers end past its {size} bytes)")
            f.seek(phoff)
            table = f.read(phnum * phentsize)
    except OSError as e:
        raise Error(f"{path}: {e.strerror or e}") from None
    for i in range(phnum):
        p_type, _, p_offset, _, _, p_filesz = struct.unpack_from(
            "<IIQQQQ", table, i * phentsize)
        if p_type == 1 and p_offset + p_filesz > size:  # PT_LOAD
            raise Error(f"{path}: a truncated or corrupt library (a segment "
                        f"ends at byte {p_offset + p_filesz}, the file has "
                        f"{size})")
    if shoff and shoff + shnum * shentsize > size:
        raise Error(f"{path}: a truncated or corrupt library (its section "
                    f"headers end past its {size} bytes)")


def _load_library(path: str) -> ctypes.CDLL:
    """Opens `path` with RTLD_LOCAL, checks the ABI version and declares the
    types of every function of the C interface."""
    _check_elf(path)
    mode = getattr(os, "RTLD_NOW", 2) | getattr(os, "RTLD_LOCAL", 0)
    try:
        lib = ctypes.CDLL(path, mode=mode)
    except OSError as e:
        raise Error(f"{path}: cannot load the library: {e}") from None
    try:
        version_fn = lib.qlr_runtime_abi_version
    except AttributeError:
        raise Error(f"{path} is not a QLR model library (it does not export "
                    "qlr_runtime_abi_version; make one with qlr-compile)"
                    ) from None
    version_fn.restype = ctypes.c_uint32
    version_fn.argtypes = []
    version = int(version_fn())
    if version != ABI_VERSION:
        raise Error(f"{path}: QLR runtime ABI version {version}, but this qlr "
                    f"package supports version {ABI_VERSION}: use the qlr "
                    "package and qlr-compile of the same QLR release")
    # Newer functions of the same ABI version: absent from older libraries.
    for name, (restype, argtypes) in _OPTIONAL_SIGNATURES.items():
        fn = getattr(lib, name, None)
        if fn is not None:
            fn.restype = restype
            fn.argtypes = argtypes
    for name, (restype, argtypes) in _SIGNATURES.items():
        try:
            fn = getattr(lib, name)
        except AttributeError:
            raise Error(f"{path}: a QLR model library of ABI version "
                        f"{version} without {name}") from None
        fn.restype = restype
        fn.argtypes = argtypes
    return lib


def _as_bytes(text: Text) -> bytes:
    if isinstance(text, str):
        return text.encode("utf-8")
    if isinstance(text, (bytes, bytearray, memoryview)):
        return bytes(text)
    raise TypeError(f"expected str or bytes, got {type(text).__name__}")


def _as_ids(tokens: TokenIds) -> "npt.NDArray[np.int32]":
    """`tokens` as a contiguous 1-D int32 array; values that do not fit an
    int32 raise Error (instead of wrapping around)."""
    wide = np.asarray(tokens)
    if wide.size == 0:
        return np.zeros(0, dtype=np.int32)
    if wide.ndim != 1 or not np.issubdtype(wide.dtype, np.integer):
        raise TypeError("token ids must be a 1-D sequence of integers")
    lo, hi = int(wide.min()), int(wide.max())
    if lo < -2**31 or hi >= 2**31:
        bad = lo if lo < -2**31 else hi
        raise Error(f"token id {bad} is outside the vocabulary")
    return np.ascontiguousarray(wide, dtype=np.int32)


def _negative_log_likelihoods(logits: "npt.NDArray[np.float32]",
                              targets: "npt.NDArray[np.int32]"
                              ) -> "npt.NDArray[np.float64]":
    """-log softmax(row)[target] of each row, in float64 via log-sum-exp
    (qlr-run's negativeLogLikelihood)."""
    rows = logits.astype(np.float64)
    peak = rows.max(axis=1)
    total = np.exp(rows - peak[:, None]).sum(axis=1)
    picked = rows[np.arange(len(targets)), targets]
    return np.log(total) + peak - picked


class Model:
    """A model library made by qlr-compile, opened through its C interface.

    ``Model(path, weights=None)`` loads ``path`` (RTLD_LOCAL), checks that it
    is a QLR model of a supported ABI version and opens the model: its weights
    (those inside the library, the sidecar file qlr-compile --weights-file
    named, found next to the library, or the file ``weights``) and a KV cache
    at position 0. The model keeps a position: :meth:`forward` runs tokens at
    the next positions, :meth:`reset` moves back.

    A Model is not meant to be shared by threads running at once (calls are
    serialized by a lock); open one per thread instead: the weights are
    shared, each has its own cache. Use it as a context manager or call
    :meth:`close` to free the cache at a known time.

    Raises :class:`Error` when the file is missing, is not a QLR model
    library, has another ABI version, needs a CPU level this machine lacks or
    its weights are missing or truncated.
    """

    def __init__(self, path: PathLike, weights: Optional[PathLike] = None):
        self._handle: Optional[int] = None
        self._lock = threading.RLock()
        self.path = os.path.abspath(os.fspath(path))
        if not os.path.exists(self.path):
            raise Error(f"{self.path}: no such file")
        self._lib = _load_library(self.path)
        weights_arg = None
        if weights is not None:
            weights_arg = os.fsencode(os.fspath(weights))
        handle = self._lib.qlr_model_open(weights_arg)
        if not handle:
            raise Error(f"{self.path}: {self._last_error()}")
        self._handle = handle
        raw = _ModelInfo()
        if self._lib.qlr_model_get_info(handle, ctypes.byref(raw)) != 0:
            message = self._last_error()
            self.close()
            raise Error(message)
        self._info = ModelInfo(
            vocab_size=raw.vocab_size, context_length=raw.context_length,
            layers=raw.layers, dim=raw.dim, hidden_dim=raw.hidden_dim,
            heads=raw.heads, kv_heads=raw.kv_heads, head_dim=raw.head_dim,
            parameters=raw.parameters, weight_bytes=raw.weight_bytes,
            bits_per_weight=raw.bits_per_weight,
            target_cpu=(raw.target_cpu or b"").decode("utf-8", "replace"),
            simd_level=(raw.simd_level or b"").decode("utf-8", "replace"),
            threads=raw.threads, has_tokenizer=bool(raw.has_tokenizer))
        self._adds_bos = self._read_adds_bos()

    # -- plumbing ----------------------------------------------------------

    def _last_error(self) -> str:
        message = self._lib.qlr_last_error()
        return (message or b"").decode("utf-8", "replace") or "unknown error"

    def _model(self) -> int:
        if self._handle is None:
            raise Error("the model is closed")
        return self._handle

    def _read_adds_bos(self) -> bool:
        """Whether encoding starts with BOS by default (qlr_token_adds_bos),
        as qlr-run's perplexity and generation do."""
        return bool(self._lib.qlr_token_adds_bos(self._model()))

    # -- lifetime ----------------------------------------------------------

    def close(self) -> None:
        """Frees the model's cache (and unmaps a sidecar weights file). The
        library itself stays loaded. Calling it again does nothing."""
        with self._lock:
            if self._handle is not None:
                self._lib.qlr_model_close(self._handle)
                self._handle = None

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._handle is None

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"position={self.position}"
        return (f"qlr.Model({self.path!r}, vocab_size={self.vocab_size}, "
                f"context_length={self.context_length}, "
                f"simd_level={self.simd_level!r}, {state})")

    # -- what the model is ---------------------------------------------------

    @property
    def info(self) -> ModelInfo:
        """All of ``qlr_model_get_info``."""
        return self._info

    @property
    def vocab_size(self) -> int:
        """Tokens in the vocabulary: the columns of the logits."""
        return self._info.vocab_size

    @property
    def context_length(self) -> int:
        """KV-cache rows: the most positions the model runs."""
        return self._info.context_length

    @property
    def layers(self) -> int:
        """Transformer blocks."""
        return self._info.layers

    @property
    def dim(self) -> int:
        """Width of the residual stream."""
        return self._info.dim

    @property
    def hidden_dim(self) -> int:
        """Width of the feed-forward layer."""
        return self._info.hidden_dim

    @property
    def heads(self) -> int:
        """Query heads."""
        return self._info.heads

    @property
    def kv_heads(self) -> int:
        """Key/value heads (fewer than heads with grouped-query attention)."""
        return self._info.kv_heads

    @property
    def head_dim(self) -> int:
        """Width of one head."""
        return self._info.head_dim

    @property
    def parameters(self) -> int:
        """Weights of the model (embedding included)."""
        return self._info.parameters

    @property
    def weight_bytes(self) -> int:
        """Bytes of weight storage (codes, scales...)."""
        return self._info.weight_bytes

    @property
    def bits_per_weight(self) -> float:
        """8 * weight_bytes / parameters."""
        return self._info.bits_per_weight

    @property
    def target_cpu(self) -> str:
        """The CPU the library was compiled for, e.g. "x86-64-v3"."""
        return self._info.target_cpu

    @property
    def device(self) -> str:
        """Where the model runs: "cpu", or e.g. "cuda sm_90: NVIDIA H100 80GB
        HBM3 (compute 9.0)" for a library compiled with --target cuda."""
        fn = getattr(self._lib, "qlr_model_device", None)
        if fn is None:
            return "cpu"
        return fn(self._handle).decode("utf-8")

    @property
    def simd_level(self) -> str:
        """"portable", "avx2" or "avx512"."""
        return self._info.simd_level

    @property
    def threads(self) -> int:
        """1, or 0 when the model runs on OpenMP threads."""
        return self._info.threads

    @property
    def has_tokenizer(self) -> bool:
        """Whether the library embeds a tokenizer (tokenize, detokenize,
        perplexity and text prompts need one)."""
        return self._info.has_tokenizer

    @property
    def bos(self) -> Optional[int]:
        """The BOS id, or None when the vocabulary has none."""
        value = int(self._lib.qlr_token_bos(self._model()))
        return None if value < 0 else value

    @property
    def eos(self) -> Optional[int]:
        """The EOS id, or None when the vocabulary has none."""
        value = int(self._lib.qlr_token_eos(self._model()))
        return None if value < 0 else value

    @property
    def adds_bos(self) -> bool:
        """Whether the tokenizer starts a text with BOS by default (what
        ``tokenize(text, add_bos=None)``, :meth:`generate` and
        :meth:`perplexity` do)."""
        return self._adds_bos

    def tokenizer_data(self) -> Optional[bytes]:
        """The embedded tokenizer in QLR's serialization
        (qlr/Tokenizer/TokenizerData.h), or None when there is none."""
        data = ctypes.c_void_p()
        size = ctypes.c_size_t()
        with self._lock:
            if self._lib.qlr_model_tokenizer_data(
                    self._model(), ctypes.byref(data), ctypes.byref(size)) != 0:
                return None
        return ctypes.string_at(data.value, size.value) if size.value else b""

    # -- running ------------------------------------------------------------

    @property
    def position(self) -> int:
        """The next position :meth:`forward` writes (tokens run so far)."""
        with self._lock:
            value = int(self._lib.qlr_model_position(self._model()))
        if value < 0:
            raise Error(self._last_error())
        return value

    def reset(self, position: int = 0) -> None:
        """Moves the position back to `position` (0 = an empty cache); later
        :meth:`forward` calls overwrite the cache from there. Raises Error
        when `position` is negative or past the current position."""
        with self._lock:
            if self._lib.qlr_model_set_position(self._model(),
                                                int(position)) != 0:
                raise Error(self._last_error())

    def forward(self, tokens: TokenIds) -> "npt.NDArray[np.float32]":
        """Runs `tokens` at the next positions (prefill when several, decode
        when one) and returns their logits, a float32 array [len(tokens),
        vocab_size]. Raises Error (and runs nothing) for an id outside the
        vocabulary, more positions than the context length or no tokens."""
        ids = _as_ids(tokens)
        logits = np.empty((len(ids), self._info.vocab_size), dtype=np.float32)
        with self._lock:
            status = self._lib.qlr_model_forward(
                self._model(), ids.ctypes.data_as(_i32p), len(ids),
                logits.ctypes.data_as(_f32p))
            if status != 0:
                raise Error(self._last_error())
        return logits

    # -- text ----------------------------------------------------------------

    def tokenize(self, text: Text,
                 add_bos: Optional[bool] = True) -> List[int]:
        """Token ids of `text` (str, encoded as UTF-8, or bytes), with BOS
        first if `add_bos` and the vocabulary has one (None: the tokenizer's
        default, :attr:`adds_bos`). Raises Error when there is no tokenizer."""
        data = _as_bytes(text)
        bos = self._adds_bos if add_bos is None else bool(add_bos)
        capacity = len(data) + 8
        with self._lock:
            while True:
                ids = (ctypes.c_int32 * capacity)()
                n = int(self._lib.qlr_tokenize(self._model(), data, len(data),
                                               int(bos), ids, capacity))
                if n < 0:
                    raise Error(self._last_error())
                if n <= capacity:
                    return list(ids[:n])
                capacity = n

    def detokenize_bytes(self, ids: TokenIds) -> bytes:
        """The bytes of the text of `ids` (possibly not valid UTF-8 when a
        multi-byte character is split across tokens)."""
        array = _as_ids(ids)
        pointer = array.ctypes.data_as(_i32p)
        capacity = 16 * len(array) + 16
        with self._lock:
            while True:
                buffer = ctypes.create_string_buffer(capacity)
                n = int(self._lib.qlr_detokenize(self._model(), pointer,
                                                 len(array), buffer, capacity))
                if n < 0:
                    raise Error(self._last_error())
                if n < capacity:
                    return buffer.raw[:n]
                capacity = n + 1

    def detokenize(self, ids: TokenIds, errors: str = "replace") -> str:
        """The text of `ids`, decoded from UTF-8 with `errors` (by default
        invalid bytes become U+FFFD). Raises Error for an id outside the
        vocabulary or when there is no tokenizer."""
        return self.detokenize_bytes(ids).decode("utf-8", errors)

    def perplexity(self, text: Text, ctx: Optional[int] = None,
                   max_windows: Optional[int] = None) -> Dict[str, float]:
        """Perplexity of `text` exactly as ``qlr-run --perplexity``.

        The text is tokenized without BOS and cut into non-overlapping windows
        of `ctx` tokens (default: the context length, at most 512), each
        starting with BOS when the tokenizer adds one (so a window holds ctx-1
        text tokens, or ctx without BOS); a partial last window is dropped,
        and at most `max_windows` windows are run. Each window runs from
        position 0; every token of it but the first is scored by the negative
        log-likelihood of the logits of the position before it, computed in
        float64 with log-sum-exp.

        Returns ``{"ppl": exp(nll), "nll": mean NLL, "tokens": tokens scored,
        "windows": windows run}``. Leaves the position after the last window.
        """
        ids = self.tokenize(text, add_bos=False)
        limit = self._info.context_length
        window_len = min(limit, 512) if ctx is None or ctx == 0 else int(ctx)
        if window_len < 2 or window_len > limit:
            raise Error(f"ctx must be between 2 and the model's {limit} cache "
                        f"rows, got {window_len}")
        bos = self.bos if self._adds_bos else None
        stride = window_len - 1 if bos is not None else window_len
        windows = len(ids) // stride
        if max_windows is not None and max_windows > 0:
            windows = min(windows, int(max_windows))
        if windows == 0:
            raise Error(f"{len(ids)} tokens do not fill one window of "
                        f"{window_len}")
        total = 0.0
        scored = 0
        for w in range(windows):
            window = ids[w * stride:(w + 1) * stride]
            if bos is not None:
                window = [bos] + window
            targets = np.asarray(window, dtype=np.int32)
            self.reset(0)
            logits = self.forward(targets)
            nll = _negative_log_likelihoods(logits[:-1], targets[1:])
            for value in nll.tolist():  # summed in qlr-run's order
                total += value
            scored += window_len - 1
        mean = total / scored
        return {"ppl": math.exp(mean), "nll": mean, "tokens": scored,
                "windows": windows}

    def generate_tokens(self, prompt: Union[Text, TokenIds], n: int,
                        temperature: float = 0.0, seed: int = 0,
                        stop_at_eos: bool = True) -> List[int]:
        """The ids of up to `n` tokens generated after `prompt`.

        `prompt` is a text (tokenized with the tokenizer's default BOS, as
        qlr-run --prompt) or a sequence of token ids (as --prompt-ids). The
        model restarts at position 0, runs the prompt, then picks each next
        token: the argmax of the logits when `temperature` <= 0 (the same
        tokens as qlr-run), else a sample of softmax(logits / temperature)
        drawn with numpy's PCG64 seeded by `seed` (reproducible, but not
        qlr-run's random stream). It stops after `n` tokens, at EOS (not
        returned) when `stop_at_eos`, or when the context is full.
        """
        if isinstance(prompt, (str, bytes, bytearray, memoryview)):
            ids = self.tokenize(prompt, add_bos=None)
        else:
            ids = [int(t) for t in _as_ids(prompt)]
        if not ids:
            raise Error("the prompt encodes to no tokens")
        limit = min(self._info.context_length, len(ids) + max(int(n), 0))
        rng = np.random.Generator(np.random.PCG64(seed))
        eos = self.eos if stop_at_eos else None

        def pick(row: "npt.NDArray[np.float32]") -> int:
            if temperature <= 0:
                return int(np.argmax(row))
            scaled = (row - row.max()).astype(np.float64) / temperature
            p = np.exp(scaled)
            return int(rng.choice(len(p), p=p / p.sum()))

        self.reset(0)
        next_id = pick(self.forward(ids)[-1])
        generated: List[int] = []
        while n > 0 and next_id != eos:
            generated.append(next_id)
            ids.append(next_id)
            if len(ids) >= limit:
                break
            next_id = pick(self.forward([next_id])[0])
        return generated

    def generate(self, prompt: Union[Text, TokenIds], n: int,
                 temperature: float = 0.0, seed: int = 0) -> str:
        """The text of up to `n` tokens generated after `prompt` (without the
        prompt): :meth:`generate_tokens` detokenized, greedy by default,
        stopping at EOS. Invalid UTF-8 becomes U+FFFD."""
        return self.detokenize(
            self.generate_tokens(prompt, n, temperature=temperature,
                                 seed=seed))
