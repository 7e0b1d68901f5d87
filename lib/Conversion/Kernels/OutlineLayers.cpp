//===- OutlineLayers.cpp - One function for the repeated layers -*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// A model's @forward is its layers one after another: the same operations
// with other weights (and another position in the KV caches). Lowering and
// compiling every copy is most of the time the JIT spends. This pass finds
// the repetition in the operation sequence, outlines each repeat into a
// function whose weights are arguments, turns the static cache offsets in
// which the repeats differ into arguments, and keeps one function for all
// the repeats that are then equal.
//
//===----------------------------------------------------------------------===//

#include "Outlining.h"

#include "qlr/Conversion/Passes.h"
#include "qlr/Dialect/QLR/Utils/CodeKey.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/SymbolTable.h"
#include "llvm/ADT/Hashing.h"
#include "llvm/ADT/MapVector.h"
#include "llvm/ADT/SetVector.h"

#include <map>

namespace mlir::qlr {
#define GEN_PASS_DEF_QLROUTLINELAYERSPASS
#include "qlr/Conversion/Passes.h.inc"
} // namespace mlir::qlr

using namespace mlir;
namespace outlining = mlir::qlr::outlining;

namespace {
using outlining::isConstant;

/// A constant that holds data (a weight, a table) rather than one value:
/// pieces take it as an argument, so that repeats with other weights are
/// equal.
bool isData(Operation *op) {
  auto constant = dyn_cast_or_null<arith::ConstantOp>(op);
  if (!constant)
    return false;
  if (auto dense = dyn_cast<DenseElementsAttr>(constant.getValue()))
    return !dense.isSplat();
  return isa<ElementsAttr>(constant.getValue());
}

/// What two operations of a repeat must share: name, operand and result
/// types, and the names of the operations in their regions (so that
/// element-wise generics doing different things differ). Attributes are
/// compared when the pieces are.
llvm::hash_code signature(Operation *op) {
  llvm::hash_code hash =
      llvm::hash_combine(op->getNumOperands(), op->getNumRegions());
  for (Type type : op->getOperandTypes())
    hash = llvm::hash_combine(hash, type.getAsOpaquePointer());
  for (Type type : op->getResultTypes())
    hash = llvm::hash_combine(hash, type.getAsOpaquePointer());
  op->walk([&](Operation *nested) {
    hash = llvm::hash_combine(hash, nested->getName().getAsOpaquePointer());
  });
  return hash;
}

/// The slices whose static offsets may become arguments, in walk order.
SmallVector<Operation *> sliceOps(func::FuncOp func) {
  SmallVector<Operation *> slices;
  func.walk([&](Operation *op) {
    if (isa<tensor::ExtractSliceOp, tensor::InsertSliceOp>(op))
      slices.push_back(op);
  });
  return slices;
}

ArrayRef<int64_t> staticOffsets(Operation *op) {
  if (auto extract = dyn_cast<tensor::ExtractSliceOp>(op))
    return extract.getStaticOffsets();
  return cast<tensor::InsertSliceOp>(op).getStaticOffsets();
}

/// codeKey of `func`, with the static offsets of slices all read as 0 when
/// `maskOffsets`.
std::string key(func::FuncOp func, bool maskOffsets) {
  if (!maskOffsets)
    return mlir::qlr::codeKey(func);
  auto clone = cast<func::FuncOp>(func->clone());
  for (Operation *op : sliceOps(clone)) {
    SmallVector<int64_t> offsets(staticOffsets(op));
    for (int64_t &offset : offsets)
      if (!ShapedType::isDynamic(offset))
        offset = 0;
    auto attr = DenseI64ArrayAttr::get(op->getContext(), offsets);
    if (auto extract = dyn_cast<tensor::ExtractSliceOp>(op))
      extract.setStaticOffsetsAttr(attr);
    else
      cast<tensor::InsertSliceOp>(op).setStaticOffsetsAttr(attr);
  }
  std::string text = mlir::qlr::codeKey(clone);
  clone->erase();
  return text;
}

/// One outlined repeat: its function and the call that replaced it.
struct Piece {
  func::FuncOp callee;
  func::CallOp call;
};

/// Pieces by key, in the order of their first piece.
using PieceGroups = llvm::MapVector<std::string, SmallVector<Piece>,
                                    std::map<std::string, unsigned>>;

struct QLROutlineLayersPass
    : public mlir::qlr::impl::QLROutlineLayersPassBase<QLROutlineLayersPass> {
  using Base::Base;

  void runOnOperation() override {
    if (minOps < 1) {
      mlir::emitError(getOperation().getLoc(),
                      "qlr-outline-layers: min-ops must be at least 1, got ")
          << int64_t(minOps);
      return signalPassFailure();
    }
    ModuleOp module = getOperation();
    SymbolTable symbols(module);
    SmallVector<func::FuncOp> funcs(module.getOps<func::FuncOp>());
    for (func::FuncOp func : funcs)
      if (!func.isExternal() && func.getBody().hasOneBlock())
        outlineRepeats(func, symbols);
  }

  void outlineRepeats(func::FuncOp func, SymbolTable &symbols) {
    Block &body = func.getBody().front();
    SmallVector<Operation *> ops;
    for (Operation &op : body.without_terminator())
      if (!isConstant(&op))
        ops.push_back(&op);
    int64_t n = ops.size();
    if (n < 2 * minOps)
      return;

    // The longest stretch that equals itself shifted by a period p: ops i
    // and i + p match for `run` consecutive i, so [start, start + run + p)
    // holds at least two repeats when run >= p. Ties go to the shorter
    // period (a period of two layers matches over fewer ops than one).
    SmallVector<llvm::hash_code> signatures;
    for (Operation *op : ops)
      signatures.push_back(signature(op));
    int64_t period = 0, start = 0, length = 0;
    for (int64_t p = minOps; 2 * p <= n; ++p) {
      int64_t run = 0;
      for (int64_t i = 0; i + p < n; ++i) {
        run = signatures[i] == signatures[i + p] ? run + 1 : 0;
        if (run >= p && run > length) {
          period = p;
          length = run;
          start = i - run + 1;
        }
      }
    }
    if (!period)
      return;

    // crossing[i]: the values a cut before op i passes on (constants not
    // counted).
    std::vector<int64_t> crossing = outlining::liveAcrossCuts(body, ops);
    // The phase: the first cut where the fewest values are live.
    int64_t phase = 0;
    for (int64_t j = 1; j < period; ++j)
      if (crossing[start + j] < crossing[start + phase])
        phase = j;
    int64_t end = start + length + period;
    SmallVector<int64_t> cuts;
    for (int64_t cut = start + phase; cut + period <= end; cut += period)
      cuts.push_back(cut);
    if (cuts.size() < 2)
      return;

    for (int64_t cut : cuts) {
      outlining::ChunkBoundary boundary =
          outlining::chunkBoundary(body, ArrayRef(ops).slice(cut, period));
      auto crosses = [](Value v) { return crossesCalls(v.getType()); };
      if (!llvm::all_of(boundary.inputs.getArrayRef(), crosses) ||
          !llvm::all_of(boundary.outputs.getArrayRef(), crosses))
        return;
    }

    // Constants first, so that they dominate every call.
    SmallVector<Operation *> constants;
    for (Operation &op : body.without_terminator())
      if (isConstant(&op))
        constants.push_back(&op);
    for (Operation *op : llvm::reverse(constants))
      op->moveBefore(&body.front());
    SmallVector<Piece> pieces;
    for (auto [index, cut] : llvm::enumerate(cuts))
      pieces.push_back(
          outline(func, ArrayRef(ops).slice(cut, period), index, symbols));
    merge(pieces, symbols);
  }

  /// Types a function boundary can carry through the rest of the pipeline
  /// (bufferization, the LLVM calling convention): builtin tensors and
  /// memrefs of builtin elements, and scalars. A dialect's own type, such as
  /// a quantized tensor before it is lowered, is not.
  static bool crossesCalls(Type type) {
    if (auto shaped = dyn_cast<ShapedType>(type))
      return isa<RankedTensorType, MemRefType>(type) &&
             shaped.getElementType().isIntOrIndexOrFloat();
    return type.isIntOrIndexOrFloat();
  }

  /// Moves `chunk` into a new function called in its place; constants
  /// that hold data become its arguments, the others are cloned into it.
  Piece outline(func::FuncOp func, ArrayRef<Operation *> chunk, int64_t index,
                SymbolTable &symbols) {
    outlining::OutlinedChunk outlined = outlining::outlineChunk(
        func, chunk, (func.getSymName() + "_layer" + Twine(index)).str(),
        [](Operation *def) { return isConstant(def) && !isData(def); },
        symbols);
    return {outlined.callee, outlined.call};
  }

  /// Makes the static offsets in which the pieces of `group` differ index
  /// arguments, then keeps one function per set of equal pieces; puts back
  /// the pieces equal to no other.
  void merge(ArrayRef<Piece> pieces, SymbolTable &symbols) {
    PieceGroups groups;
    for (const Piece &piece : pieces)
      groups[key(piece.callee, /*maskOffsets=*/true)].push_back(piece);
    PieceGroups equal;
    for (auto &[unused, group] : groups) {
      if (group.size() > 1)
        parameterizeOffsets(group);
      for (const Piece &piece : group)
        equal[key(piece.callee, /*maskOffsets=*/false)].push_back(piece);
    }
    for (auto &[unused, group] : equal) {
      if (group.size() == 1) {
        inlineBack(group.front(), symbols);
        continue;
      }
      func::FuncOp shared = group.front().callee;
      mlir::qlr::removeCodeNeutralAttrs(shared);
      for (Piece piece : ArrayRef(group).drop_front()) {
        piece.call.setCallee(shared.getSymName());
        symbols.erase(piece.callee);
      }
    }
  }

  void parameterizeOffsets(ArrayRef<Piece> group) {
    SmallVector<SmallVector<Operation *>> slices;
    for (const Piece &piece : group)
      slices.push_back(sliceOps(piece.callee));
    // (slice, dimension) pairs whose static offset is not the same in all.
    SmallVector<std::pair<size_t, size_t>> varying;
    for (size_t s = 0; s < slices.front().size(); ++s) {
      ArrayRef<int64_t> first = staticOffsets(slices.front()[s]);
      for (size_t d = 0; d < first.size(); ++d)
        if (llvm::any_of(slices, [&](ArrayRef<Operation *> member) {
              return staticOffsets(member[s])[d] != first[d];
            }))
          varying.emplace_back(s, d);
    }
    if (varying.empty())
      return;
    // Offsets that vary alike (the layer index, read and written in several
    // slices) share one argument.
    llvm::MapVector<SmallVector<int64_t>, unsigned> argumentOf;
    SmallVector<unsigned> argumentOfVarying;
    for (auto [s, d] : varying) {
      SmallVector<int64_t> values;
      for (ArrayRef<Operation *> member : slices)
        values.push_back(staticOffsets(member[s])[d]);
      auto [it, inserted] = argumentOf.try_emplace(values, argumentOf.size());
      argumentOfVarying.push_back(it->second);
    }
    for (auto [index, member] : llvm::enumerate(group)) {
      Piece piece = member;
      Block &entry = piece.callee.getBody().front();
      unsigned first = entry.getNumArguments();
      OpBuilder caller(piece.call);
      for (auto &[values, unused] : argumentOf) {
        entry.addArgument(IndexType::get(piece.callee.getContext()),
                          piece.callee.getLoc());
        piece.call.getOperandsMutable().append(
            arith::ConstantIndexOp::create(caller, piece.call.getLoc(),
                                           values[index])
                .getResult());
      }
      for (auto [v, position] : llvm::enumerate(varying)) {
        auto [s, d] = position;
        Operation *op = slices[index][s];
        Value arg = entry.getArgument(first + argumentOfVarying[v]);
        OpBuilder b(op);
        Location loc = op->getLoc();
        Operation *replacement;
        if (auto extract = dyn_cast<tensor::ExtractSliceOp>(op)) {
          SmallVector<OpFoldResult> offsets = extract.getMixedOffsets();
          offsets[d] = arg;
          replacement = tensor::ExtractSliceOp::create(
              b, loc, extract.getType(), extract.getSource(), offsets,
              extract.getMixedSizes(), extract.getMixedStrides());
        } else {
          auto insert = cast<tensor::InsertSliceOp>(op);
          SmallVector<OpFoldResult> offsets = insert.getMixedOffsets();
          offsets[d] = arg;
          replacement = tensor::InsertSliceOp::create(
              b, loc, insert.getSource(), insert.getDest(), offsets,
              insert.getMixedSizes(), insert.getMixedStrides());
        }
        replacement->setDiscardableAttrs(op->getDiscardableAttrDictionary());
        op->replaceAllUsesWith(replacement);
        op->erase();
        slices[index][s] = replacement;
      }
      piece.callee.setType(FunctionType::get(piece.callee.getContext(),
                                             entry.getArgumentTypes(),
                                             piece.callee.getResultTypes()));
    }
  }

  /// Undoes `outline` for a piece no other piece shares.
  void inlineBack(Piece piece, SymbolTable &symbols) {
    Block &entry = piece.callee.getBody().front();
    auto ret = cast<func::ReturnOp>(entry.getTerminator());
    for (auto [arg, operand] :
         llvm::zip(entry.getArguments(), piece.call.getOperands()))
      arg.replaceAllUsesWith(operand);
    for (auto [result, value] :
         llvm::zip(piece.call.getResults(), ret.getOperands()))
      result.replaceAllUsesWith(value);
    for (Operation &op : llvm::make_early_inc_range(entry.without_terminator()))
      op.moveBefore(piece.call);
    Operation *call = piece.call;
    // Constants added for the call's offset arguments are now unused.
    llvm::SetVector<Operation *> operands;
    for (Value operand : call->getOperands())
      if (Operation *def = operand.getDefiningOp();
          def && isa<arith::ConstantIndexOp>(def))
        operands.insert(def);
    call->erase();
    for (Operation *def : operands)
      if (def->use_empty())
        def->erase();
    symbols.erase(piece.callee);
  }
};
} // namespace
