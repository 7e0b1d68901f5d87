"""An independent numpy oracle for QLR's LLaMA-family models.

``llama``       -- float64 (or float32) reference forward pass, KV cache,
                   NLL / perplexity and greedy generation (llama2.c semantics).
``checkpoints`` -- deterministic synthetic weights and writers for the
                   checkpoint formats QLR imports (llama2.c .bin, Hugging Face
                   safetensors directories, GGUF v3 with F32/F16/Q8_0/Q4_0/Q4_1),
                   plus llama2.c tokenizer.bin reading/writing.

Nothing here imports or calls QLR code: it is written from the math and the
file-format specifications so that it can judge QLR's output.
"""

from . import checkpoints, llama  # noqa: F401
from .llama import LlamaConfig  # noqa: F401
