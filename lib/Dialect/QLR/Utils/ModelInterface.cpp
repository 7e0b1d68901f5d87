//===- ModelInterface.cpp - What a model module carries -------------------===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#include "qlr/Dialect/QLR/Utils/ModelInterface.h"

#include "qlr/Dialect/QLR/Utils/ConstantData.h"

#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/Diagnostics.h"

using namespace mlir;
using namespace mlir::qlr;

FailureOr<std::optional<::qlr::tokenizer::TokenizerData>>
mlir::qlr::readEmbeddedTokenizer(ModuleOp module) {
  using Result = std::optional<::qlr::tokenizer::TokenizerData>;
  auto blob =
      module->getAttrOfType<DenseResourceElementsAttr>(kTokenizerAttrName);
  if (!blob)
    return Result();
  auto bytes = readBytes(blob, module.getLoc());
  if (failed(bytes))
    return emitError(module.getLoc(), "cannot read the embedded tokenizer");
  auto data = ::qlr::tokenizer::deserialize(*bytes);
  if (!data)
    return emitError(module.getLoc(), "the embedded tokenizer is corrupt: ")
           << llvm::toString(data.takeError());
  return Result(std::move(*data));
}
