/*===- qlr-c/Runtime.h - The C ABI of compiled QLR models ---------*- C -*-===*\
|* SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception                    *|
|*===----------------------------------------------------------------------===*|
|*                                                                            *|
|* `qlr-compile MODEL.mlirbc -o model.so` makes a self-contained shared       *|
|* library: the model's code for one CPU level, its weights (read-only data,  *|
|* mapped by the loader, never copied), its configuration and tokenizer, and  *|
|* this C interface. It needs nothing but the C/C++ runtime (and the OpenMP   *|
|* runtime when compiled with threads): no LLVM, no MLIR. examples/c-runner   *|
|* is a complete program.                                                     *|
|*                                                                            *|
|* `qlr-compile --target cuda --chip sm_90` makes a library whose forward     *|
|* pass runs on an NVIDIA GPU. The interface is the same: tokens and logits   *|
|* stay in host memory, the library copies them; it keeps the weights, the KV *|
|* cache and its buffers in device memory. It loads the driver                *|
|* (libcuda.so.1) at run time and links no CUDA library, so it loads on any   *|
|* machine; qlr_model_open() fails, with the reason, where it cannot run (no  *|
|* driver, no device, a GPU of another architecture). qlr_model_device()      *|
|* says where a model runs. The environment variable QLR_CUDA_DEVICE picks    *|
|* the device (default 0). QLR_WEIGHTS_FILL=<byte> (e.g. 0x3c) fills the      *|
|* device weights with that byte instead of reading them (the logits then     *|
|* mean nothing), to time a model whose weights are not at hand.              *|
|*                                                                            *|
|*   qlr_model *m = qlr_model_open(NULL);                                     *|
|*   if (!m) { fprintf(stderr, "%s\n", qlr_last_error()); return 1; }         *|
|*   qlr_model_info info;                                                     *|
|*   qlr_model_get_info(m, &info);                                            *|
|*   int32_t ids[256];                                                        *|
|*   int64_t n = qlr_tokenize(m, "Once upon a time", -1, 1, ids, 256);        *|
|*   float *logits = malloc(n * info.vocab_size * sizeof(float));             *|
|*   qlr_model_forward(m, ids, n, logits);     (prefill: n rows of logits)    *|
|*   qlr_model_forward(m, &next, 1, logits);   (decode: one more position)    *|
|*   qlr_model_close(m);                                                      *|
|*                                                                            *|
|* Every function that can fail returns a negative value or NULL and leaves   *|
|* a message for qlr_last_error() (per thread). No C++ exception or type      *|
|* crosses this interface. A model handle is not thread-safe: use one handle  *|
|* per thread (each has its own KV cache; the weights are shared).            *|
|*                                                                            *|
|* Versioning: QLR_RUNTIME_ABI_VERSION changes whenever a function or struct  *|
|* here changes incompatibly; a loader compares qlr_runtime_abi_version()     *|
|* with the version it was built against before calling anything else.       *|
|* Adding a function is compatible and keeps the version; a loader that also  *|
|* runs libraries made before a function was added looks that function up     *|
|* with dlsym() (the function's comment says when it was added).              *|
|*                                                                            *|
|* Loading: dlopen() maps a library's segments without checking that the     *|
|* file holds them, so a truncated library crashes the process (SIGBUS)      *|
|* inside dlopen. Loaders that take untrusted paths should compare the ELF    *|
|* program headers with the file size first, as qlr-run and the Python        *|
|* package do.                                                                *|
|*                                                                            *|
\*===----------------------------------------------------------------------===*/

#ifndef QLR_C_RUNTIME_H
#define QLR_C_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define QLR_RUNTIME_API __attribute__((visibility("default")))
#else
#define QLR_RUNTIME_API
#endif

#define QLR_RUNTIME_ABI_VERSION 1

/** An opened model: weights, KV cache and position. */
typedef struct qlr_model qlr_model;

/** What a model is. Strings belong to the library and live as long as it. */
typedef struct qlr_model_info {
  int64_t vocab_size;
  int64_t context_length; /**< KV-cache rows: the most positions it runs. */
  int64_t layers;
  int64_t dim;
  int64_t hidden_dim;
  int64_t heads;
  int64_t kv_heads;
  int64_t head_dim;
  int64_t parameters;     /**< Weights of the model (embedding included). */
  int64_t weight_bytes;   /**< Bytes of the constants the code reads: weights,
                             codes, scales, RoPE tables. */
  double bits_per_weight; /**< 8 * weight_bytes / parameters. */
  const char *target_cpu; /**< The CPU compiled for, e.g. "x86-64-v3". */
  const char *simd_level; /**< "portable", "avx2" or "avx512". */
  int threads;            /**< 1, or 0 when it runs on OpenMP threads. */
  int has_tokenizer;
} qlr_model_info;

/** QLR_RUNTIME_ABI_VERSION of the library. */
QLR_RUNTIME_API uint32_t qlr_runtime_abi_version(void);

/** The message of the calling thread's last failure ("" if none). */
QLR_RUNTIME_API const char *qlr_last_error(void);

/** Opens the model: checks that the CPU runs the library's instruction set,
 * maps the weights (`weights_path`, or NULL for the weights inside the
 * library or the sidecar file qlr-compile --weights-file named), and
 * allocates a KV cache at position 0. NULL on failure.
 *
 * A GPU model is opened on the CUDA device: this checks that the driver
 * loads, that the device's compute capability runs the kernels and that
 * they loaded, copies the weights to device memory (once: handles of the
 * same weights share them) and allocates the KV cache there. */
QLR_RUNTIME_API qlr_model *qlr_model_open(const char *weights_path);

/** Frees the model's cache and unmaps a sidecar weights file (on a GPU:
 * frees its device memory, and the weights with the last handle that uses
 * them). NULL is fine. */
QLR_RUNTIME_API void qlr_model_close(qlr_model *model);

/** Fills `info`. 0, or -1 on failure. For a GPU model, target_cpu,
 * simd_level and threads describe the host code that launches its kernels. */
QLR_RUNTIME_API int qlr_model_get_info(const qlr_model *model,
                                       qlr_model_info *info);

/** Where the model runs: "cpu", or for a GPU model "cuda", the architecture
 * it was compiled for and the device, e.g. "cuda sm_90: NVIDIA H100 80GB
 * HBM3 (compute 9.0)" (", device N" after the compute capability when the
 * device is not device 0). The string lives as long as the handle. NULL for
 * a NULL model. Added to ABI version 1 with the GPU target: libraries made
 * before lack it (look it up with dlsym() to run those too); they all run on
 * the CPU. */
QLR_RUNTIME_API const char *qlr_model_device(const qlr_model *model);

/** The next position forward() writes (tokens run so far). */
QLR_RUNTIME_API int64_t qlr_model_position(const qlr_model *model);

/** Moves the position back to `position` (0 = an empty cache): later
 * forward() calls overwrite the cache from there. 0, or -1 when `position` is
 * negative or past the current position. */
QLR_RUNTIME_API int qlr_model_set_position(qlr_model *model, int64_t position);

/** Runs `count` tokens at the next positions (prefill when count > 1, decode
 * when 1) and writes their logits, row-major [count, vocab_size], to
 * `logits`. 0, or -1 on failure (a token outside the vocabulary, more
 * positions than the context length), in which case nothing ran.
 *
 * On a GPU, `tokens` and `logits` are host memory, and the call returns when
 * the logits are there. It can also fail while it runs (out of device
 * memory, a kernel fault: the message names the kernel the driver blamed);
 * the position then stays where it was. After a kernel fault the driver
 * refuses all further work of the process on that device. */
QLR_RUNTIME_API int qlr_model_forward(qlr_model *model, const int32_t *tokens,
                                      int64_t count, float *logits);

/** Token ids of `text` (`length` bytes, or -1 for a NUL-terminated string),
 * with the BOS token first if `add_bos` and the vocabulary has one. Writes at
 * most `capacity` ids and returns how many the text needs (call again with a
 * larger buffer when that is more than `capacity`); -1 on failure. */
QLR_RUNTIME_API int64_t qlr_tokenize(const qlr_model *model, const char *text,
                                     int64_t length, int add_bos, int32_t *ids,
                                     int64_t capacity);

/** The UTF-8 text of `count` ids, written to `text` with a terminating NUL
 * when it fits in `capacity` bytes. Returns the text's length without the
 * NUL (call again with a larger buffer when it is not below `capacity`); -1
 * on failure (an id outside the vocabulary, no tokenizer). */
QLR_RUNTIME_API int64_t qlr_detokenize(const qlr_model *model,
                                       const int32_t *ids, int64_t count,
                                       char *text, int64_t capacity);

/** The BOS and EOS ids (-1 when the vocabulary has none). */
QLR_RUNTIME_API int32_t qlr_token_bos(const qlr_model *model);
QLR_RUNTIME_API int32_t qlr_token_eos(const qlr_model *model);

/** 1 when the tokenizer starts a text with BOS by default (as llama.cpp and
 * qlr-run do: pass it as qlr_tokenize's `add_bos`), else 0. */
QLR_RUNTIME_API int qlr_token_adds_bos(const qlr_model *model);

/** The embedded tokenizer in QLR's own serialization
 * (qlr/Tokenizer/TokenizerData.h), for tools that run QLR's tokenizer code
 * themselves (qlr-run). 0, or -1 when there is none. */
QLR_RUNTIME_API int qlr_model_tokenizer_data(const qlr_model *model,
                                             const void **data, size_t *size);

#ifdef __cplusplus
}
#endif

#endif /* QLR_C_RUNTIME_H */
