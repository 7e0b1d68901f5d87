//===- MemrefCopy.cpp - The memref copy the compiled code calls -*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// Lowered memref.copy ops of non-contiguous layouts call
// `memrefCopy(elemSize, src, dst)` (MLIR's C runner utilities provide it to
// the JIT). A model library must not depend on MLIR's libraries, so the
// runtime defines it: an element-wise strided copy with the innermost
// contiguous run copied at once.
//
//===----------------------------------------------------------------------===//

#include <cstdint>
#include <cstring>
#include <vector>

namespace {
/// MLIR's unranked memref: the rank and a pointer to the ranked descriptor
/// {allocated, aligned, offset, sizes[rank], strides[rank]}.
struct UnrankedMemRef {
  int64_t rank;
  void *descriptor;
};

struct View {
  char *data;
  const int64_t *sizes, *strides;
};

View view(const UnrankedMemRef &m, int64_t elemSize) {
  auto *fields = static_cast<int64_t *>(m.descriptor);
  char *aligned = reinterpret_cast<char *>(fields[1]);
  return {aligned + fields[2] * elemSize, fields + 3, fields + 3 + m.rank};
}
} // namespace

extern "C" __attribute__((visibility("hidden"))) void
memrefCopy(int64_t elemSize, UnrankedMemRef *srcArg, UnrankedMemRef *dstArg) {
  int64_t rank = srcArg->rank;
  View src = view(*srcArg, elemSize), dst = view(*dstArg, elemSize);
  for (int64_t d = 0; d < rank; ++d)
    if (src.sizes[d] == 0)
      return;
  if (rank == 0) {
    std::memcpy(dst.data, src.data, size_t(elemSize));
    return;
  }
  // The innermost dimension is copied as one run when both sides are
  // contiguous in it.
  int64_t inner = src.sizes[rank - 1];
  bool contiguous = src.strides[rank - 1] == 1 && dst.strides[rank - 1] == 1;
  std::vector<int64_t> index(size_t(rank), 0);
  while (true) {
    int64_t srcOffset = 0, dstOffset = 0;
    for (int64_t d = 0; d + 1 < rank; ++d) {
      srcOffset += index[d] * src.strides[d];
      dstOffset += index[d] * dst.strides[d];
    }
    if (contiguous) {
      std::memmove(dst.data + dstOffset * elemSize,
                   src.data + srcOffset * elemSize, size_t(inner * elemSize));
    } else {
      for (int64_t i = 0; i < inner; ++i)
        std::memmove(
            dst.data + (dstOffset + i * dst.strides[rank - 1]) * elemSize,
            src.data + (srcOffset + i * src.strides[rank - 1]) * elemSize,
            size_t(elemSize));
    }
    // Next index of the outer dimensions.
    int64_t d = rank - 2;
    for (; d >= 0; --d) {
      if (++index[d] < src.sizes[d])
        break;
      index[d] = 0;
    }
    if (d < 0)
      return;
  }
}
