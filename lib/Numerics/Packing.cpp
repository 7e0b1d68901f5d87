//===- Packing.cpp - Bit packing of quantized codes -----------------------===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#include "qlr/Numerics/Packing.h"

#include <cassert>
#include <cstring>

using namespace qlr::numerics;

int64_t qlr::numerics::packedRowBytes(int64_t codesPerRow, unsigned bits) {
  assert(codesPerRow >= 0 && bits >= 2 && bits <= 8 && "invalid row");
  return (codesPerRow * bits + 7) / 8;
}

llvm::SmallVector<int64_t>
qlr::numerics::packedShape(llvm::ArrayRef<int64_t> shape, unsigned bits) {
  assert(!shape.empty() && "packed tensors must have rank >= 1");
  llvm::SmallVector<int64_t> result(shape);
  result.back() = packedRowBytes(shape.back(), bits);
  return result;
}

void qlr::numerics::packRow(llvm::ArrayRef<uint8_t> codes, unsigned bits,
                            llvm::MutableArrayRef<uint8_t> out) {
  size_t n = codes.size();
  assert(int64_t(out.size()) == packedRowBytes(n, bits) &&
         "output size mismatch");
#ifndef NDEBUG
  for (uint8_t c : codes)
    assert(c < (1u << bits) && "code does not fit in the bit width");
#endif

  switch (bits) {
  case 8:
    if (n)
      std::memcpy(out.data(), codes.data(), n);
    return;
  case 4:
    for (size_t i = 0; i + 1 < n; i += 2)
      out[i / 2] = codes[i] | codes[i + 1] << 4;
    if (n % 2)
      out.back() = codes.back();
    return;
  case 2: {
    size_t full = n / 4;
    for (size_t i = 0; i < full; ++i) {
      const uint8_t *c = codes.data() + 4 * i;
      out[i] = c[0] | c[1] << 2 | c[2] << 4 | c[3] << 6;
    }
    if (n % 4) {
      uint8_t last = 0;
      for (size_t i = 4 * full; i < n; ++i)
        last |= codes[i] << (2 * (i % 4));
      out.back() = last;
    }
    return;
  }
  default: {
    // Append each code above the pending bits of a 64-bit accumulator and
    // emit whole bytes; at most 7 + 8 bits are pending at any time.
    uint64_t acc = 0;
    unsigned pending = 0;
    uint8_t *dst = out.data();
    for (uint8_t c : codes) {
      acc |= uint64_t(c) << pending;
      pending += bits;
      while (pending >= 8) {
        *dst++ = uint8_t(acc);
        acc >>= 8;
        pending -= 8;
      }
    }
    if (pending)
      *dst = uint8_t(acc);
    return;
  }
  }
}

void qlr::numerics::unpackRow(llvm::ArrayRef<uint8_t> packed, unsigned bits,
                              llvm::MutableArrayRef<uint8_t> codes) {
  size_t n = codes.size();
  assert(int64_t(packed.size()) == packedRowBytes(n, bits) &&
         "packed size mismatch");

  switch (bits) {
  case 8:
    if (n)
      std::memcpy(codes.data(), packed.data(), n);
    return;
  case 4:
    for (size_t i = 0; i + 1 < n; i += 2) {
      codes[i] = packed[i / 2] & 0xf;
      codes[i + 1] = packed[i / 2] >> 4;
    }
    if (n % 2)
      codes.back() = packed.back() & 0xf;
    return;
  case 2: {
    size_t full = n / 4;
    for (size_t i = 0; i < full; ++i) {
      uint8_t byte = packed[i];
      uint8_t *c = codes.data() + 4 * i;
      c[0] = byte & 0x3;
      c[1] = (byte >> 2) & 0x3;
      c[2] = (byte >> 4) & 0x3;
      c[3] = byte >> 6;
    }
    for (size_t i = 4 * full; i < n; ++i)
      codes[i] = (packed.back() >> (2 * (i % 4))) & 0x3;
    return;
  }
  default: {
    // Refill a 64-bit accumulator byte by byte whenever fewer than `bits`
    // bits are available; never reads past the row's last byte.
    uint64_t acc = 0;
    unsigned available = 0;
    uint8_t mask = (1u << bits) - 1;
    const uint8_t *src = packed.data();
    for (uint8_t &c : codes) {
      if (available < bits) {
        acc |= uint64_t(*src++) << available;
        available += 8;
      }
      c = uint8_t(acc) & mask;
      acc >>= bits;
      available -= bits;
    }
    return;
  }
  }
}

/// Returns the number of rows and codes per row of a code tensor of \p shape.
static std::pair<int64_t, int64_t>
rowsAndRowLength(llvm::ArrayRef<int64_t> shape) {
  assert(!shape.empty() && "packed tensors must have rank >= 1");
  int64_t rows = 1;
  for (int64_t d : shape.drop_back())
    rows *= d;
  return {rows, shape.back()};
}

std::vector<uint8_t> qlr::numerics::packCodes(llvm::ArrayRef<uint8_t> codes,
                                              llvm::ArrayRef<int64_t> shape,
                                              unsigned bits) {
  auto [rows, rowLength] = rowsAndRowLength(shape);
  assert(int64_t(codes.size()) == rows * rowLength && "code count mismatch");
  int64_t rowBytes = packedRowBytes(rowLength, bits);
  std::vector<uint8_t> packed(rows * rowBytes);
  for (int64_t r = 0; r < rows; ++r)
    packRow(
        codes.slice(r * rowLength, rowLength), bits,
        llvm::MutableArrayRef<uint8_t>(packed).slice(r * rowBytes, rowBytes));
  return packed;
}

std::vector<uint8_t> qlr::numerics::unpackCodes(llvm::ArrayRef<uint8_t> packed,
                                                llvm::ArrayRef<int64_t> shape,
                                                unsigned bits) {
  auto [rows, rowLength] = rowsAndRowLength(shape);
  int64_t rowBytes = packedRowBytes(rowLength, bits);
  assert(int64_t(packed.size()) == rows * rowBytes && "packed size mismatch");
  std::vector<uint8_t> codes(rows * rowLength);
  for (int64_t r = 0; r < rows; ++r)
    unpackRow(
        packed.slice(r * rowBytes, rowBytes), bits,
        llvm::MutableArrayRef<uint8_t>(codes).slice(r * rowLength, rowLength));
  return codes;
}

bool qlr::numerics::hasNonZeroPadding(llvm::ArrayRef<uint8_t> packed,
                                      llvm::ArrayRef<int64_t> shape,
                                      unsigned bits) {
  auto [rows, rowLength] = rowsAndRowLength(shape);
  int64_t rowBytes = packedRowBytes(rowLength, bits);
  assert(int64_t(packed.size()) == rows * rowBytes && "packed size mismatch");
  unsigned usedBitsInLastByte = (rowLength * bits) % 8;
  if (usedBitsInLastByte == 0)
    return false;
  uint8_t paddingMask = uint8_t(0xff << usedBitsInLastByte);
  for (int64_t r = 0; r < rows; ++r)
    if (packed[(r + 1) * rowBytes - 1] & paddingMask)
      return true;
  return false;
}
