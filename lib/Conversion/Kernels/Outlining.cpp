//===- Outlining.cpp - Moving a run of operations into a function ---------===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#include "Outlining.h"

#include "mlir/IR/Builders.h"
#include "llvm/ADT/DenseSet.h"

using namespace mlir;
namespace outlining = mlir::qlr::outlining;
using outlining::ChunkBoundary;
using outlining::OutlinedChunk;

bool outlining::isConstant(Operation *op) {
  return op && op->getNumOperands() == 0 && op->getNumRegions() == 0 &&
         op->hasTrait<OpTrait::ConstantLike>();
}

std::vector<int64_t> outlining::liveAcrossCuts(Block &body,
                                               ArrayRef<Operation *> ops) {
  int64_t n = ops.size();
  llvm::DenseMap<Operation *, int64_t> position;
  for (auto [index, op] : llvm::enumerate(ops))
    position[op] = index;
  // +1 where a value is defined, -1 after its last reader, then a prefix sum.
  std::vector<int64_t> crossing(n + 2, 0);
  for (int64_t i = 0; i < n; ++i)
    for (Value result : ops[i]->getResults()) {
      int64_t last = i;
      for (Operation *user : result.getUsers()) {
        Operation *top = body.findAncestorOpInBlock(*user);
        auto it = position.find(top);
        last = std::max(last, it == position.end() ? n : it->second);
      }
      ++crossing[i + 1];
      --crossing[last + 1];
    }
  for (int64_t i = 1; i <= n; ++i)
    crossing[i] += crossing[i - 1];
  crossing.pop_back();
  return crossing;
}

ChunkBoundary outlining::chunkBoundary(Block &body,
                                       ArrayRef<Operation *> chunk) {
  llvm::DenseSet<Operation *> inChunk(chunk.begin(), chunk.end());
  auto insideChunk = [&](Operation *user) {
    Operation *top = body.findAncestorOpInBlock(*user);
    return top && inChunk.contains(top);
  };
  ChunkBoundary boundary;
  for (Operation *op : chunk) {
    op->walk([&](Operation *nested) {
      for (Value operand : nested->getOperands()) {
        if (auto arg = dyn_cast<BlockArgument>(operand)) {
          if (arg.getOwner() == &body)
            boundary.inputs.insert(operand);
          continue;
        }
        if (!insideChunk(operand.getDefiningOp()))
          boundary.inputs.insert(operand);
      }
    });
    for (Value result : op->getResults())
      if (llvm::any_of(result.getUsers(),
                       [&](Operation *user) { return !insideChunk(user); }))
        boundary.outputs.insert(result);
  }
  return boundary;
}

OutlinedChunk
outlining::outlineChunk(func::FuncOp func, ArrayRef<Operation *> chunk,
                        StringRef name,
                        llvm::function_ref<bool(Operation *)> cloneIntoCallee,
                        SymbolTable &symbols) {
  Block &body = func.getBody().front();
  ChunkBoundary boundary = outlining::chunkBoundary(body, chunk);
  OutlinedChunk result;
  result.outputs.assign(boundary.outputs.begin(), boundary.outputs.end());
  SmallVector<Operation *> cloned;
  for (Value v : boundary.inputs) {
    Operation *def = v.getDefiningOp();
    if (def && cloneIntoCallee(def))
      cloned.push_back(def);
    else
      result.passed.push_back(v);
  }

  OpBuilder b(chunk.front());
  Location loc = chunk.front()->getLoc();
  OpBuilder moduleBuilder(func);
  auto callee = func::FuncOp::create(
      moduleBuilder, loc, name,
      b.getFunctionType(ValueRange(result.passed).getTypes(),
                        ValueRange(result.outputs).getTypes()));
  callee.setPrivate();
  callee->setAttr("no_inline", moduleBuilder.getUnitAttr());
  symbols.insert(callee); // renames on a clash
  Block *entry = callee.addEntryBlock();
  // The call goes where the chunk starts, before the chunk moves away.
  auto call = func::CallOp::create(b, loc, callee, result.passed);

  // Move the chunk, then point its uses of outside values at the arguments
  // (or at clones of constants).
  OpBuilder inner = OpBuilder::atBlockEnd(entry);
  auto ret = func::ReturnOp::create(inner, loc, result.outputs);
  for (Operation *op : chunk)
    op->moveBefore(ret);
  auto usedInCallee = [&](OpOperand &use) {
    return callee->isProperAncestor(use.getOwner()) &&
           use.getOwner() != ret.getOperation();
  };
  inner.setInsertionPointToStart(entry);
  for (Operation *op : cloned) {
    Operation *copy = inner.clone(*op);
    op->getResult(0).replaceUsesWithIf(copy->getResult(0), usedInCallee);
  }
  for (auto [value, arg] : llvm::zip(result.passed, entry->getArguments()))
    value.replaceUsesWithIf(arg, usedInCallee);
  for (auto [index, value] : llvm::enumerate(result.outputs))
    value.replaceUsesWithIf(call.getResult(index), [&](OpOperand &use) {
      return !callee->isAncestor(use.getOwner());
    });
  result.callee = callee;
  result.call = call;
  return result;
}
