//===- Dequantize.cpp - Decode stored tensor data to float32 --------------===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// The ggml block formats (ggml-common.h), all little-endian:
//   Q8_0: 32 elements in 34 bytes: f16 d; int8 q[32];      x[i] = d * q[i]
//   Q4_0: 32 elements in 18 bytes: f16 d; uint8 qs[16];    x[i] = d * (c - 8)
//   Q4_1: 32 elements in 20 bytes: f16 d; f16 m; qs[16];   x[i] = d * c + m
// where the 4-bit code c of element i < 16 is the low nibble of qs[i] and of
// element 16 + i the high nibble of qs[i].
//
//===----------------------------------------------------------------------===//

#include "CheckpointImpl.h"

#include "qlr/Numerics/FloatFormats.h"

#include "llvm/Support/CheckedArithmetic.h"
#include "llvm/Support/Endian.h"

#include <cstring>

using namespace llvm;
using namespace qlr::checkpoint;
using namespace qlr::checkpoint::detail;
using qlr::numerics::bf16BitsToFloat;
using qlr::numerics::halfBitsToFloat;

static constexpr uint64_t kBlock = 32;

uint64_t qlr::checkpoint::detail::blockElements(DType type) {
  switch (type) {
  case DType::F32:
  case DType::F16:
  case DType::BF16:
    return 1;
  case DType::Q8_0:
  case DType::Q4_0:
  case DType::Q4_1:
    return kBlock;
  }
  return 1;
}

uint64_t qlr::checkpoint::detail::blockBytes(DType type) {
  switch (type) {
  case DType::F32:
    return 4;
  case DType::F16:
  case DType::BF16:
    return 2;
  case DType::Q8_0:
    return 2 + kBlock;
  case DType::Q4_0:
    return 2 + kBlock / 2;
  case DType::Q4_1:
    return 4 + kBlock / 2;
  }
  return 4;
}

std::optional<uint64_t>
qlr::checkpoint::detail::storageBytes(DType type, uint64_t numElements) {
  uint64_t perBlock = blockElements(type);
  if (numElements % perBlock != 0)
    return std::nullopt;
  return checkedMulUnsigned(numElements / perBlock, blockBytes(type));
}

static float readF16(const uint8_t *p) {
  return halfBitsToFloat(support::endian::read16le(p));
}

void qlr::checkpoint::detail::dequantize(DType type, const uint8_t *src,
                                         uint64_t numElements, float *dst) {
  switch (type) {
  case DType::F32:
    for (uint64_t i = 0; i < numElements; ++i) {
      uint32_t bits = support::endian::read32le(src + 4 * i);
      std::memcpy(&dst[i], &bits, sizeof(float));
    }
    return;
  case DType::F16:
    for (uint64_t i = 0; i < numElements; ++i)
      dst[i] = readF16(src + 2 * i);
    return;
  case DType::BF16:
    for (uint64_t i = 0; i < numElements; ++i)
      dst[i] = bf16BitsToFloat(support::endian::read16le(src + 2 * i));
    return;
  case DType::Q8_0:
    for (uint64_t b = 0; b < numElements / kBlock; ++b) {
      const uint8_t *block = src + b * blockBytes(type);
      float d = readF16(block);
      const int8_t *q = reinterpret_cast<const int8_t *>(block + 2);
      float *out = dst + b * kBlock;
      for (uint64_t i = 0; i < kBlock; ++i)
        out[i] = d * float(q[i]);
    }
    return;
  case DType::Q4_0:
    for (uint64_t b = 0; b < numElements / kBlock; ++b) {
      const uint8_t *block = src + b * blockBytes(type);
      float d = readF16(block);
      const uint8_t *qs = block + 2;
      float *out = dst + b * kBlock;
      for (uint64_t i = 0; i < kBlock / 2; ++i) {
        out[i] = d * float(int(qs[i] & 0xF) - 8);
        out[i + kBlock / 2] = d * float(int(qs[i] >> 4) - 8);
      }
    }
    return;
  case DType::Q4_1:
    for (uint64_t b = 0; b < numElements / kBlock; ++b) {
      const uint8_t *block = src + b * blockBytes(type);
      float d = readF16(block), m = readF16(block + 2);
      const uint8_t *qs = block + 4;
      float *out = dst + b * kBlock;
      for (uint64_t i = 0; i < kBlock / 2; ++i) {
        out[i] = d * float(qs[i] & 0xF) + m;
        out[i + kBlock / 2] = d * float(qs[i] >> 4) + m;
      }
    }
    return;
  }
}
