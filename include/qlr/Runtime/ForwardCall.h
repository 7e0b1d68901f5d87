//===- ForwardCall.h - Calling a compiled model's @forward ----*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// How the JIT (ModelRunner) and compiled libraries (lib/ArtifactRuntime)
// call @forward through its packed C interface (the argument order is in
// qlr/Runtime/Compile.h). Header-only and MLIR-free.
//
//===----------------------------------------------------------------------===//

#ifndef QLR_RUNTIME_FORWARDCALL_H
#define QLR_RUNTIME_FORWARDCALL_H

#include <cstdint>
#include <initializer_list>
#include <vector>

namespace qlr::runtime {

/// A contiguous row-major memref descriptor of any rank, laid out as MLIR's
/// StridedMemRefType<T, N>: allocated and aligned pointers, offset, N sizes,
/// N strides (8 bytes each).
class MemRefDescriptor {
public:
  template <typename Shape>
  MemRefDescriptor(const void *data, const Shape &shape)
      : fields(3 + 2 * shape.size()) {
    auto pointer = reinterpret_cast<int64_t>(data);
    fields[0] = fields[1] = pointer;
    int64_t stride = 1, rank = int64_t(shape.size());
    auto dims = shape.begin();
    for (int64_t i = rank - 1; i >= 0; --i) {
      fields[3 + i] = dims[i];
      fields[3 + rank + i] = stride;
      stride *= dims[i];
    }
  }
  MemRefDescriptor(const void *data, std::initializer_list<int64_t> shape)
      : MemRefDescriptor(data, std::vector<int64_t>(shape)) {}
  /// What the C interface takes for a memref: a pointer to the descriptor.
  void *get() { return fields.data(); }

private:
  std::vector<int64_t> fields;
};

/// Calls a packed @forward (`forward(args)`, one pointer per argument) on
/// `count` tokens at position `pos`, writing [count, vocab] logits; the KV
/// caches are [layers, maxSeqLen, kvHeads, headDim] and `weights` the
/// externalized weights in argument order.
inline void callForward(void (*forward)(void **), const int32_t *tokens,
                        int64_t count, int64_t pos, float *logits,
                        int64_t vocab, float *kCache, float *vCache,
                        const std::vector<int64_t> &cacheShape,
                        std::vector<MemRefDescriptor> &weights) {
  MemRefDescriptor tokenDesc(tokens, {count});
  MemRefDescriptor logitDesc(logits, {count, vocab});
  MemRefDescriptor kDesc(kCache, cacheShape);
  MemRefDescriptor vDesc(vCache, cacheShape);
  // Memref arguments of the C interface are pointers to descriptors; the
  // packed interface takes a pointer to each argument.
  std::vector<void *> values = {tokenDesc.get(), nullptr, logitDesc.get(),
                                kDesc.get(), vDesc.get()};
  for (MemRefDescriptor &weight : weights)
    values.push_back(weight.get());
  std::vector<void *> args;
  for (void *&value : values)
    args.push_back(&value);
  args[1] = &pos;
  forward(args.data());
}

} // namespace qlr::runtime

#endif // QLR_RUNTIME_FORWARDCALL_H
