//===- MappedFile.cpp - Memory-mapped files and bounds-checked reads ------===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#include "CheckpointImpl.h"

#include "llvm/Support/Endian.h"

using namespace llvm;
using namespace qlr::checkpoint::detail;

Expected<std::unique_ptr<MappedFile>> MappedFile::open(StringRef path) {
  // Without a null terminator, MemoryBuffer maps all but tiny files.
  ErrorOr<std::unique_ptr<MemoryBuffer>> buffer =
      MemoryBuffer::getFile(path, /*IsText=*/false,
                            /*RequiresNullTerminator=*/false);
  if (!buffer)
    return fileError(path, "cannot open: " + buffer.getError().message());
  return std::unique_ptr<MappedFile>(
      new MappedFile(path.str(), std::move(*buffer)));
}

Error ByteReader::seek(uint64_t offset, const Twine &what) {
  if (offset > data.size())
    return fileError(file, "truncated file: " + what + " starts at offset " +
                               Twine(offset) + ", past the end of the file (" +
                               Twine(data.size()) + " bytes)");
  pos = offset;
  return Error::success();
}

Error ByteReader::readBytes(uint64_t n, const Twine &what,
                            ArrayRef<uint8_t> &out) {
  if (n > remaining())
    return fileError(file, "truncated file: " + what + " [offset " +
                               Twine(pos) + ", " + Twine(n) +
                               " bytes] extends past the end of the file (" +
                               Twine(data.size()) + " bytes)");
  out = data.slice(pos, n);
  pos += n;
  return Error::success();
}

Error ByteReader::readU8(uint8_t &v, const Twine &what) {
  ArrayRef<uint8_t> bytes;
  if (Error e = readBytes(1, what, bytes))
    return e;
  v = bytes[0];
  return Error::success();
}

Error ByteReader::readU16(uint16_t &v, const Twine &what) {
  ArrayRef<uint8_t> bytes;
  if (Error e = readBytes(2, what, bytes))
    return e;
  v = support::endian::read16le(bytes.data());
  return Error::success();
}

Error ByteReader::readU32(uint32_t &v, const Twine &what) {
  ArrayRef<uint8_t> bytes;
  if (Error e = readBytes(4, what, bytes))
    return e;
  v = support::endian::read32le(bytes.data());
  return Error::success();
}

Error ByteReader::readU64(uint64_t &v, const Twine &what) {
  ArrayRef<uint8_t> bytes;
  if (Error e = readBytes(8, what, bytes))
    return e;
  v = support::endian::read64le(bytes.data());
  return Error::success();
}
