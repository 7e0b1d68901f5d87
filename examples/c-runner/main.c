/*===- main.c - Run a compiled QLR model from C
----------------------------===*\
|* SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception                    *|
|*                                                                            *|
|* Builds against the header and the library qlr-compile made, nothing else:  *|
|*                                                                            *|
|*   qlr-compile model.mlirbc -o model.so                                     *|
|*   cc -I include examples/c-runner/main.c model.so -Wl,-rpath,'$ORIGIN' \   *|
|*      -o c-runner                                                           *|
|*   ./c-runner "Once upon a time" 32                                         *|
|*                                                                            *|
|* Prints the model's description and where it runs (the CPU, or the GPU a   *|
|* model compiled with --target cuda runs on), then the prompt continued      *|
|* greedily.                                                                  *|
\*===----------------------------------------------------------------------===*/

#include "qlr-c/Runtime.h"

#include <stdio.h>
#include <stdlib.h>

static int fail(const char *what) {
  fprintf(stderr, "c-runner: %s: %s\n", what, qlr_last_error());
  return 1;
}

/* The id of the largest of `n` logits. */
static int32_t argmax(const float *logits, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i)
    if (logits[i] > logits[best])
      best = i;
  return (int32_t)best;
}

int main(int argc, char **argv) {
  const char *prompt = argc > 1 ? argv[1] : "Once upon a time";
  int steps = argc > 2 ? atoi(argv[2]) : 16;
  if (qlr_runtime_abi_version() != QLR_RUNTIME_ABI_VERSION) {
    fprintf(stderr, "c-runner: the library has runtime ABI %u, not %d\n",
            qlr_runtime_abi_version(), QLR_RUNTIME_ABI_VERSION);
    return 1;
  }
  qlr_model *model = qlr_model_open(NULL);
  if (!model)
    return fail("cannot open the model");
  qlr_model_info info;
  if (qlr_model_get_info(model, &info) != 0)
    return fail("cannot describe the model");
  printf("model: %lld layers, dim %lld, vocabulary %lld, context %lld, "
         "%.2f bits/weight, compiled for %s (%s)\n",
         (long long)info.layers, (long long)info.dim,
         (long long)info.vocab_size, (long long)info.context_length,
         info.bits_per_weight, info.target_cpu, info.simd_level);
  printf("device: %s\n", qlr_model_device(model));
  if (!info.has_tokenizer) {
    fprintf(stderr, "c-runner: the model has no tokenizer\n");
    return 1;
  }

  /* Tokenize: ask for the length first, then fill. */
  int64_t count = qlr_tokenize(model, prompt, -1, 1, NULL, 0);
  if (count < 0)
    return fail("cannot tokenize the prompt");
  if (count + steps > info.context_length)
    steps = (int)(info.context_length - count);
  int32_t *ids = malloc((size_t)(count + steps + 1) * sizeof(int32_t));
  float *logits = malloc((size_t)(count * info.vocab_size) * sizeof(float));
  if (!ids || !logits)
    return 1;
  qlr_tokenize(model, prompt, -1, 1, ids, count);

  /* Prefill the prompt, then decode greedily one token at a time. */
  if (qlr_model_forward(model, ids, count, logits) != 0)
    return fail("prefill failed");
  int32_t next =
      argmax(logits + (count - 1) * info.vocab_size, info.vocab_size);
  int64_t total = count;
  for (int step = 0; step < steps; ++step) {
    ids[total++] = next;
    if (next == qlr_token_eos(model) || step + 1 == steps)
      break;
    if (qlr_model_forward(model, &next, 1, logits) != 0)
      return fail("decode failed");
    next = argmax(logits, info.vocab_size);
  }

  int64_t length = qlr_detokenize(model, ids, total, NULL, 0);
  char *text = length >= 0 ? malloc((size_t)length + 1) : NULL;
  if (!text || qlr_detokenize(model, ids, total, text, length + 1) < 0)
    return fail("cannot detokenize");
  printf("%s\n", text);
  printf("tokens: %lld prompt + %lld generated:", (long long)count,
         (long long)(total - count));
  for (int64_t i = count; i < total; ++i)
    printf(" %d", ids[i]);
  printf("\n");
  free(text);
  free(logits);
  free(ids);
  qlr_model_close(model);
  return 0;
}
