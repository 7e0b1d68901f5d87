//===- QLRDialect.cpp - QLR dialect registration ----------------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#include "qlr/Dialect/QLR/IR/QLR.h"

#include "mlir/IR/OpImplementation.h"
#include "mlir/Transforms/InliningUtils.h"

using namespace mlir;
using namespace mlir::qlr;

#include "qlr/Dialect/QLR/IR/QLRDialect.cpp.inc"

namespace {
/// Gives every format attribute a readable alias (`#int4_g64_f16`) so that
/// large modules print each format once at the top.
struct QLROpAsmInterface : public OpAsmDialectInterface {
  using OpAsmDialectInterface::OpAsmDialectInterface;

  AliasResult getAlias(Attribute attr, raw_ostream &os) const override {
    if (auto format = dyn_cast<FormatAttr>(attr)) {
      os << format.getAliasName();
      return AliasResult::OverridableAlias;
    }
    return AliasResult::NoAlias;
  }
};

/// All qlr ops are pure value computations without regions, so they can be
/// inlined anywhere.
struct QLRInlinerInterface : public DialectInlinerInterface {
  using DialectInlinerInterface::DialectInlinerInterface;

  bool isLegalToInline(Operation *, Region *, bool, IRMapping &) const final {
    return true;
  }
};
} // namespace

void QLRDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "qlr/Dialect/QLR/IR/QLROps.cpp.inc"
      >();
  registerAttributes();
  registerTypes();
  addInterfaces<QLROpAsmInterface, QLRInlinerInterface>();
}

LogicalResult QLRDialect::verifyOperationAttribute(Operation *op,
                                                   NamedAttribute attribute) {
  if (attribute.getName() != kLayerNameAttrName)
    return success();
  auto name = dyn_cast<StringAttr>(attribute.getValue());
  if (!name || name.getValue().empty())
    return op->emitError() << "'" << kLayerNameAttrName
                           << "' must be a non-empty string naming the layer, "
                              "got "
                           << attribute.getValue();
  return success();
}
