//===- Packing.h - Bit packing of quantized codes -----------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// The packed layout of quantized codes.
//
// Codes are unsigned b-bit integers (0 <= c < 2^b). A tensor of codes with
// shape [d0, ..., dn-1] is packed row by row, where a row is the innermost
// dimension (dn-1 codes) and all leading dimensions are flattened (a rank-1
// tensor is one row). Each row is packed independently into
// ceil(dn-1 * b / 8) bytes as a little-endian bit stream: code j occupies bits
// [j*b, j*b + b) of the row, where bit k of the row is bit (k mod 8)
// (0 = least significant) of byte floor(k/8); codes may straddle a byte
// boundary (b = 3, 5, 6, 7); unused high bits of a row's last byte are zero.
// So for b=4 byte = c0 | c1<<4, b=2 byte = c0 | c1<<2 | c2<<4 | c3<<6,
// b=8 byte = c0. The packed tensor's shape is
// [d0, ..., dn-2, ceil(dn-1*b/8)] of bytes.
//
// Unpacked codes are stored one per uint8_t, row-major. All functions require
// 2 <= bits <= 8 and shapes of rank >= 1 with non-negative dimensions.
//
//===----------------------------------------------------------------------===//

#ifndef QLR_NUMERICS_PACKING_H
#define QLR_NUMERICS_PACKING_H

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/SmallVector.h"

#include <cstdint>
#include <vector>

namespace qlr::numerics {

/// Returns the number of bytes a row of \p codesPerRow codes of \p bits bits
/// packs into: ceil(codesPerRow * bits / 8).
int64_t packedRowBytes(int64_t codesPerRow, unsigned bits);

/// Returns the byte shape of the packed form of a code tensor of \p shape:
/// the innermost dimension d becomes packedRowBytes(d, bits).
llvm::SmallVector<int64_t> packedShape(llvm::ArrayRef<int64_t> shape,
                                       unsigned bits);

/// Packs one row of \p codes into \p out, which must have exactly
/// packedRowBytes(codes.size(), bits) bytes. Every code must be < 2^bits
/// (asserted). Padding bits of the last byte are written as zero.
void packRow(llvm::ArrayRef<uint8_t> codes, unsigned bits,
             llvm::MutableArrayRef<uint8_t> out);

/// Unpacks one row into \p codes; \p packed must have exactly
/// packedRowBytes(codes.size(), bits) bytes. Padding bits are ignored.
void unpackRow(llvm::ArrayRef<uint8_t> packed, unsigned bits,
               llvm::MutableArrayRef<uint8_t> codes);

/// Packs a row-major code tensor of logical \p shape (codes.size() must equal
/// the element count) and returns the bytes of the packedShape tensor.
std::vector<uint8_t> packCodes(llvm::ArrayRef<uint8_t> codes,
                               llvm::ArrayRef<int64_t> shape, unsigned bits);

/// Unpacks the packed bytes of a code tensor of logical \p shape (not the
/// packed shape) and returns one code per element, row-major.
std::vector<uint8_t> unpackCodes(llvm::ArrayRef<uint8_t> packed,
                                 llvm::ArrayRef<int64_t> shape, unsigned bits);

/// Returns true if any padding bit (the unused high bits of a row's last
/// byte) of the packed tensor for logical \p shape is set.
bool hasNonZeroPadding(llvm::ArrayRef<uint8_t> packed,
                       llvm::ArrayRef<int64_t> shape, unsigned bits);

} // namespace qlr::numerics

#endif // QLR_NUMERICS_PACKING_H
