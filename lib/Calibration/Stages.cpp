//===- Stages.cpp - Sequential calibration by running the IR ---*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// See qlr/Calibration/Stages.h for what the stages are. Here: the level
// analysis, the outlining of each segment into @__qlr_stage_N (one copy of
// the segment per stream, the taps' Gram matrices as extra results), and the
// host loop that runs the compiled segments sample by sample.
//
//===----------------------------------------------------------------------===//

#include "qlr/Calibration/Stages.h"
#include "qlr/Support/Progress.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/IR/Threading.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "mlir/Transforms/RegionUtils.h"
#include "llvm/ADT/DenseSet.h"
#include "llvm/ADT/MapVector.h"
#include "llvm/ADT/SetVector.h"
#include "llvm/Support/FormatVariadic.h"

#include <map>
#include <mutex>

using namespace mlir;
using namespace mlir::qlr;

namespace {

/// A tap and the segment that completes it.
struct TapSite {
  CalibrationTap tap;
  unsigned segment = 0;
};

/// One outlined segment.
struct Segment {
  std::string name;
  SmallVector<Operation *> ops;
  /// Values it reads from the function's arguments or earlier segments.
  llvm::SetVector<Value> liveIns;
  /// Values it makes that later segments read.
  llvm::SetVector<Value> liveOuts;
  /// Targets that run here (with replaced weights), in program order.
  SmallVector<LinearOp> targets;
  /// Indices into the taps it completes.
  SmallVector<unsigned> taps;
};

class StagePlanner {
public:
  StagePlanner(func::FuncOp func, ArrayRef<CalibrationTarget> targets,
               const StagedCalibrationOptions &options)
      : func(func), options(options) {
    for (const CalibrationTarget &target : targets)
      targetOps.insert(target.linear);
  }

  LogicalResult plan();
  FailureOr<OwningOpRef<ModuleOp>> outline();

  unsigned numLevels = 0;
  std::vector<TapSite> taps;
  std::vector<Segment> segments;
  /// The last segment that reads each boundary value.
  DenseMap<Value, unsigned> lastUse;

private:
  /// Whether `value` is recomputed wherever it is needed instead of crossing
  /// a segment boundary: constants, and scalars (or tensor.empty) computed
  /// from them and from the function's arguments.
  bool isRematerializable(Value value);
  /// Adds the arguments a rematerialized `value` reads to `segment`'s
  /// live-ins.
  void addRematerializedInputs(Value value, Segment &segment);
  /// Clones `value` (rematerializable) and what it needs into `b` at most
  /// once per mapping.
  void materialize(Value value, OpBuilder &b, IRMapping &map);
  /// Builds the segment's function.
  LogicalResult buildSegment(Segment &segment, OpBuilder &b);

  func::FuncOp func;
  const StagedCalibrationOptions &options;
  llvm::DenseSet<Operation *> targetOps;
  DenseMap<Value, unsigned> level;
  DenseMap<Operation *, unsigned> segmentOf;
  DenseMap<Value, bool> remat;
};

bool StagePlanner::isRematerializable(Value value) {
  auto found = remat.find(value);
  if (found != remat.end())
    return found->second;
  Operation *def = value.getDefiningOp();
  bool result = false;
  if (def && def->getNumRegions() == 0 && isPure(def) &&
      def->getNumResults() == 1) {
    if (def->getNumOperands() == 0) {
      result = true;
    } else if (!isa<RankedTensorType>(value.getType()) ||
               isa<tensor::EmptyOp>(def)) {
      result = llvm::all_of(def->getOperands(), [&](Value operand) {
        return isa<BlockArgument>(operand) || isRematerializable(operand);
      });
    }
  }
  remat[value] = result;
  return result;
}

void StagePlanner::addRematerializedInputs(Value value, Segment &segment) {
  if (isa<BlockArgument>(value)) {
    segment.liveIns.insert(value);
    return;
  }
  for (Value operand : value.getDefiningOp()->getOperands())
    addRematerializedInputs(operand, segment);
}

LogicalResult StagePlanner::plan() {
  if (!func.getBody().hasOneBlock())
    return func.emitOpError("cannot be calibrated: it has more than one block");
  Block &body = func.getBody().front();

  // Levels, in program order.
  for (Operation &op : body.without_terminator()) {
    unsigned d = 0;
    forEachUsedValue(
        &op, [&](Value value) { d = std::max(d, level.lookup(value)); });
    if (targetOps.contains(&op)) {
      segmentOf[&op] = d + 1;
      numLevels = std::max(numLevels, d + 1);
    } else {
      segmentOf[&op] = d;
    }
    for (Value result : op.getResults())
      level[result] = segmentOf[&op];
  }

  // Taps: targets reading the same value in the same segment share one.
  DenseMap<std::pair<Value, unsigned>, unsigned> tapIndex;
  for (Operation &op : body.without_terminator()) {
    auto linear = dyn_cast<LinearOp>(&op);
    if (!linear || !targetOps.contains(&op))
      continue;
    Value input = linear.getInput();
    auto type = cast<RankedTensorType>(input.getType());
    if (!type.getElementType().isF32())
      return linear.emitOpError("cannot be calibrated: its input is ")
             << type << "; calibration runs f32 activations";
    int64_t width = type.getShape().back();
    if (ShapedType::isDynamic(width))
      return linear.emitOpError(
          "cannot be calibrated: its input's last dimension is dynamic");
    if (!isRematerializable(linear.getWeight()))
      return linear.emitOpError("cannot be calibrated: its weight is "
                                "computed at run time, not a constant");
    unsigned segment = segmentOf[&op] - 1;
    auto [it, inserted] =
        tapIndex.try_emplace({input, segment}, unsigned(taps.size()));
    if (inserted) {
      TapSite site;
      site.tap.input = input;
      site.tap.width = width;
      site.segment = segment;
      taps.push_back(std::move(site));
    }
    taps[it->second].tap.linears.push_back(linear);
  }

  // The ops the taps need.
  llvm::DenseSet<Operation *> needed;
  SmallVector<Operation *> worklist;
  auto need = [&](Value value) {
    if (isRematerializable(value))
      return;
    Operation *def = value.getDefiningOp();
    if (def && needed.insert(def).second)
      worklist.push_back(def);
  };
  for (TapSite &site : taps)
    need(site.tap.input);
  while (!worklist.empty()) {
    Operation *op = worklist.pop_back_val();
    if (!isMemoryEffectFree(op))
      return op->emitOpError("cannot be calibrated through: it has memory "
                             "effects (calibration runs value semantics)");
    forEachUsedValue(op, need);
  }

  // Segments and what crosses between them.
  segments.resize(numLevels);
  for (auto [s, segment] : llvm::enumerate(segments))
    segment.name = llvm::formatv("__qlr_stage_{0}", s).str();
  for (Operation &op : body.without_terminator()) {
    if (!needed.contains(&op))
      continue;
    Segment &segment = segments[segmentOf[&op]];
    segment.ops.push_back(&op);
    if (targetOps.contains(&op))
      segment.targets.push_back(cast<LinearOp>(&op));
  }
  for (auto [index, site] : llvm::enumerate(taps))
    segments[site.segment].taps.push_back(index);
  for (auto [s, segment] : llvm::enumerate(segments)) {
    llvm::DenseSet<Operation *> inside(segment.ops.begin(), segment.ops.end());
    auto use = [&, s = s](Value value) {
      if (isRematerializable(value)) {
        addRematerializedInputs(value, segment);
        return;
      }
      Operation *def = value.getDefiningOp();
      if (def && inside.contains(def))
        return;
      segment.liveIns.insert(value);
      if (def) {
        segments[segmentOf[def]].liveOuts.insert(value);
        unsigned &last = lastUse[value];
        last = std::max<unsigned>(last, s);
      }
    };
    for (Operation *op : segment.ops) {
      if (auto linear = dyn_cast<LinearOp>(op);
          linear && targetOps.contains(op)) {
        // The weight comes in as an argument of its own.
        for (OpOperand &operand : op->getOpOperands())
          if (&operand != &linear.getWeightMutable())
            use(operand.get());
        continue;
      }
      forEachUsedValue(op, use);
    }
    for (unsigned index : segment.taps)
      use(taps[index].tap.input);
  }
  for (Segment &segment : segments)
    for (Value value : segment.liveIns)
      if (!isa<BlockArgument>(value) && !isa<RankedTensorType>(value.getType()))
        return value.getDefiningOp()->emitOpError(
                   "cannot be calibrated through: its result of type ")
               << value.getType()
               << " crosses a calibration stage boundary; only ranked "
                  "tensors can";
  for (BlockArgument arg : func.getArguments())
    if (!isa<RankedTensorType>(arg.getType()))
      return func.emitOpError("cannot be calibrated: argument ")
             << arg.getArgNumber() << " is not a ranked tensor";
  return success();
}

void StagePlanner::materialize(Value value, OpBuilder &b, IRMapping &map) {
  if (map.contains(value))
    return;
  Operation *def = value.getDefiningOp();
  for (Value operand : def->getOperands())
    materialize(operand, b, map);
  b.clone(*def, map);
}

/// [..., K] -> [M, K] -> its transpose [K, M].
static Value transposedRows(OpBuilder &b, Location loc, Value x) {
  auto type = cast<RankedTensorType>(x.getType());
  int64_t k = type.getShape().back();
  Value flat = x;
  if (type.getRank() == 1) {
    flat = tensor::ExpandShapeOp::create(
        b, loc, RankedTensorType::get({1, k}, type.getElementType()), x,
        ArrayRef<ReassociationIndices>{{0, 1}});
  } else if (type.getRank() > 2) {
    ReassociationIndices rows;
    for (int64_t d = 0; d + 1 < type.getRank(); ++d)
      rows.push_back(d);
    flat = tensor::CollapseShapeOp::create(
        b, loc, x, ArrayRef<ReassociationIndices>{rows, {type.getRank() - 1}});
  }
  auto flatType = cast<RankedTensorType>(flat.getType());
  SmallVector<OpFoldResult> sizes = {tensor::getMixedSize(b, loc, flat, 1),
                                     tensor::getMixedSize(b, loc, flat, 0)};
  Value init =
      tensor::EmptyOp::create(b, loc, sizes, flatType.getElementType());
  return linalg::TransposeOp::create(b, loc, flat, init,
                                     ArrayRef<int64_t>{1, 0})
      ->getResult(0);
}

LogicalResult StagePlanner::buildSegment(Segment &segment, OpBuilder &b) {
  Location loc = func.getLoc();
  MLIRContext *context = func.getContext();
  unsigned streams = options.floatStream ? 2 : 1;
  SmallVector<Type> inputs;
  for (unsigned stream = 0; stream < streams; ++stream)
    for (Value value : segment.liveIns)
      inputs.push_back(value.getType());
  SmallVector<Value> weightValues;
  for (LinearOp linear : segment.targets) {
    RankedTensorType expressed =
        getExpressedTensorType(linear.getWeight().getType());
    if (!expressed.hasStaticShape())
      return linear.emitOpError(
          "cannot be calibrated: its weight has a dynamic shape");
    inputs.push_back(RankedTensorType::get(
        expressed.getShape(), linear.getInput().getType().getElementType()));
  }
  auto stage = func::FuncOp::create(b, loc, segment.name,
                                    FunctionType::get(context, inputs, {}));
  Block *entry = stage.addEntryBlock();
  OpBuilder inner = OpBuilder::atBlockBegin(entry);

  SmallVector<IRMapping, 2> maps(streams);
  unsigned numLiveIns = segment.liveIns.size();
  for (unsigned stream = 0; stream < streams; ++stream)
    for (auto [i, value] : llvm::enumerate(segment.liveIns))
      maps[stream].map(value, entry->getArgument(stream * numLiveIns + i));
  // Stream 0 runs the targets with the callback's weights, stream 1 (the
  // float stream) with the original ones.
  for (unsigned stream = 0; stream < streams; ++stream) {
    IRMapping &map = maps[stream];
    for (Operation *op : segment.ops) {
      auto linear = dyn_cast<LinearOp>(op);
      bool replaceWeight = stream == 0 && linear && targetOps.contains(op);
      forEachUsedValue(op, [&](Value value) {
        if (replaceWeight && value == linear.getWeight())
          return;
        if (!map.contains(value) && isRematerializable(value))
          materialize(value, inner, map);
      });
      Operation *clone = inner.clone(*op, map);
      if (replaceWeight) {
        unsigned index =
            llvm::find(segment.targets, linear) - segment.targets.begin();
        cast<LinearOp>(clone).getWeightMutable().assign(
            entry->getArgument(streams * numLiveIns + index));
      }
    }
    for (unsigned index : segment.taps) {
      Value input = taps[index].tap.input;
      if (!map.contains(input))
        materialize(input, inner, map);
    }
  }

  SmallVector<Value> results;
  for (unsigned stream = 0; stream < streams; ++stream)
    for (Value value : segment.liveOuts)
      results.push_back(maps[stream].lookup(value));
  for (unsigned index : segment.taps) {
    Value input = taps[index].tap.input;
    int64_t k = taps[index].tap.width;
    auto gramType = RankedTensorType::get({k, k}, inner.getF32Type());
    Value xq = transposedRows(inner, loc, maps[0].lookup(input));
    results.push_back(LinearOp::create(inner, loc, gramType, xq, xq, Value()));
    if (options.floatStream) {
      Value xf = transposedRows(inner, loc, maps[1].lookup(input));
      results.push_back(
          LinearOp::create(inner, loc, gramType, xf, xq, Value()));
    }
    Value rows =
        arith::IndexCastOp::create(inner, loc, inner.getI64Type(),
                                   tensor::DimOp::create(inner, loc, xq, 1));
    results.push_back(tensor::FromElementsOp::create(
        inner, loc, RankedTensorType::get({1}, inner.getI64Type()), rows));
  }
  func::ReturnOp::create(inner, loc, results);
  stage.setType(
      FunctionType::get(context, inputs, ValueRange(results).getTypes()));
  return success();
}

FailureOr<OwningOpRef<ModuleOp>> StagePlanner::outline() {
  OwningOpRef<ModuleOp> module = ModuleOp::create(func.getLoc());
  OpBuilder b = OpBuilder::atBlockEnd(module->getBody());
  for (Segment &segment : segments)
    if (failed(buildSegment(segment, b)))
      return failure();
  if (failed(verify(*module)))
    return func.emitOpError("internal error: the calibration stages of this "
                            "function do not verify");
  return module;
}

} // namespace

struct StagedCalibration::Impl {
  Impl(func::FuncOp function, ArrayRef<CalibrationTarget> targets,
       const StagedCalibrationOptions &options)
      : function(function), options(options),
        planner(function, targets, this->options) {}
  func::FuncOp function;
  StagedCalibrationOptions options;
  StagePlanner planner;
  OwningOpRef<ModuleOp> stages;
  CompiledFunctions compiled;
};

StagedCalibration::StagedCalibration(std::unique_ptr<Impl> impl)
    : impl(std::move(impl)) {}
StagedCalibration::~StagedCalibration() = default;

unsigned StagedCalibration::numLevels() const {
  return impl->planner.numLevels;
}

FailureOr<std::unique_ptr<StagedCalibration>>
StagedCalibration::compile(func::FuncOp function,
                           ArrayRef<CalibrationTarget> targets,
                           const StagedCalibrationOptions &options) {
  auto impl = std::make_unique<Impl>(function, targets, options);
  StagePlanner &planner = impl->planner;
  if (failed(planner.plan()))
    return failure();
  if (planner.numLevels == 0)
    return std::unique_ptr<StagedCalibration>(
        new StagedCalibration(std::move(impl)));
  FailureOr<OwningOpRef<ModuleOp>> stages = planner.outline();
  if (failed(stages))
    return failure();
  impl->stages = std::move(*stages);

  std::vector<std::string> names;
  for (const Segment &segment : planner.segments)
    names.push_back(segment.name);
  FailureOr<CompiledFunctions> compiled = CompiledFunctions::compile(
      function, *impl->stages, names, options.jit, options.pass);
  if (failed(compiled))
    return failure();
  impl->compiled = std::move(*compiled);
  return std::unique_ptr<StagedCalibration>(
      new StagedCalibration(std::move(impl)));
}

LogicalResult StagedCalibration::run(ArrayRef<std::vector<JitTensor>> samples,
                                     StageCallback callback) {
  StagePlanner &planner = impl->planner;
  if (planner.numLevels == 0)
    return success();
  func::FuncOp function = impl->function;
  const StagedCalibrationOptions &options = impl->options;
  MLIRContext *context = function.getContext();

  unsigned streams = options.floatStream ? 2 : 1;
  size_t numSamples = samples.size();
  // Boundary values per stream, one buffer per sample.
  SmallVector<DenseMap<Value, std::vector<JitBuffer>>, 2> store(streams);
  DenseMap<Operation *, std::vector<float>> weights;

  ::qlr::Progress progress(options.pass, "calibration stage",
                           planner.numLevels);
  for (auto [s, segment] : llvm::enumerate(planner.segments)) {
    for (unsigned stream = 0; stream < streams; ++stream)
      for (Value value : segment.liveOuts)
        store[stream][value].resize(numSamples);
    for (LinearOp linear : segment.targets) {
      RankedTensorType type =
          getExpressedTensorType(linear.getWeight().getType());
      auto found = weights.find(linear);
      if (found == weights.end() ||
          int64_t(found->second.size()) != type.getNumElements())
        return linear.emitOpError("calibration: the stage callback gave no "
                                  "weights of ")
               << type.getNumElements() << " elements for this linear";
    }
    for (unsigned index : segment.taps) {
      CalibrationTap &tap = planner.taps[index].tap;
      size_t k2 = size_t(tap.width) * tap.width;
      tap.gram.assign(k2, 0.0);
      if (options.floatStream)
        tap.cross.assign(k2, 0.0);
      tap.rows = 0;
    }

    // Samples run in batches of one per thread; the taps add up each
    // batch's results in sample order, so that the sums do not depend on
    // the threads' timing.
    std::mutex mutex;
    std::string error;
    size_t batch = context->isMultithreadingEnabled()
                       ? std::max(1u, context->getNumThreads())
                       : 1;
    std::vector<std::vector<JitBuffer>> tapResults(batch);
    for (size_t first = 0; first < numSamples && error.empty();
         first += batch) {
      size_t count = std::min(batch, numSamples - first);
      parallelFor(context, 0, count, [&](size_t b) {
        size_t i = first + b;
        std::vector<JitTensor> args;
        for (unsigned stream = 0; stream < streams; ++stream)
          for (Value value : segment.liveIns) {
            if (auto arg = dyn_cast<BlockArgument>(value))
              args.push_back(samples[i][arg.getArgNumber()]);
            else
              args.push_back(store[stream].find(value)->second[i].tensor());
          }
        for (LinearOp linear : segment.targets) {
          RankedTensorType type =
              getExpressedTensorType(linear.getWeight().getType());
          args.push_back(JitTensor{weights.find(linear)->second.data(),
                                   SmallVector<int64_t, 4>(type.getShape())});
        }
        auto results = impl->compiled.call(segment.name, args);
        if (!results) {
          std::lock_guard<std::mutex> lock(mutex);
          error = llvm::toString(results.takeError());
          return;
        }
        size_t next = 0;
        for (unsigned stream = 0; stream < streams; ++stream)
          for (Value value : segment.liveOuts)
            store[stream].find(value)->second[i] =
                std::move((*results)[next++]);
        tapResults[b].assign(std::make_move_iterator(results->begin() + next),
                             std::make_move_iterator(results->end()));
      });
      if (!error.empty())
        break;
      for (size_t b = 0; b < count; ++b) {
        size_t next = 0;
        for (unsigned index : segment.taps) {
          CalibrationTap &tap = planner.taps[index].tap;
          const float *gram = tapResults[b][next++].as<float>();
          for (size_t j = 0, e = tap.gram.size(); j < e; ++j)
            tap.gram[j] += gram[j];
          if (options.floatStream) {
            const float *cross = tapResults[b][next++].as<float>();
            for (size_t j = 0, e = tap.cross.size(); j < e; ++j)
              tap.cross[j] += cross[j];
          }
          tap.rows += *tapResults[b][next++].as<int64_t>();
        }
        tapResults[b].clear();
      }
    }
    if (!error.empty())
      return function.emitOpError("calibration stage ")
             << s << " failed: " << error;

    // Boundary values no later segment reads.
    for (unsigned stream = 0; stream < streams; ++stream)
      for (auto &[value, last] : planner.lastUse)
        if (last == s)
          store[stream].erase(value);

    SmallVector<CalibrationTap> completed;
    for (unsigned index : segment.taps) {
      CalibrationTap &tap = planner.taps[index].tap;
      completed.push_back(CalibrationTap{tap.input, tap.width, tap.linears,
                                         std::move(tap.gram),
                                         std::move(tap.cross), tap.rows});
    }
    if (failed(callback(s + 1, planner.numLevels, completed, weights)))
      return failure();
    progress.step(llvm::formatv("level {0}", s + 1).str());
  }
  return success();
}

LogicalResult mlir::qlr::runStagedCalibration(
    func::FuncOp function, ArrayRef<CalibrationTarget> targets,
    ArrayRef<std::vector<JitTensor>> samples,
    const StagedCalibrationOptions &options, StageCallback callback) {
  FailureOr<std::unique_ptr<StagedCalibration>> staged =
      StagedCalibration::compile(function, targets, options);
  if (failed(staged))
    return failure();
  return (*staged)->run(samples, callback);
}

FailureOr<CompiledFunctions> CompiledFunctions::compile(
    Operation *anchor, ModuleOp module, ArrayRef<std::string> names,
    const JitOptions &options, StringRef pass, StringRef noun) {
  CompiledFunctions result;
  result.isThreaded = options.openmp && JitModule::supportsThreads();
  if (names.empty())
    return result;
  // The module's context: JitModule::compile creates attributes in it, so
  // it is compiled on that context's threads (one part when it has none).
  MLIRContext *context = module->getContext();
  // Functions that differ only in their weights (the layers of a model)
  // compile once: a group goes whole into one part, and the groups are
  // spread over the parts.
  std::vector<std::vector<std::string>> groups;
  {
    std::map<std::string, size_t> groupOf;
    for (const std::string &name : names) {
      auto [it, inserted] = groupOf.try_emplace(
          JitModule::structuralKey(module, name), groups.size());
      if (inserted)
        groups.emplace_back();
      groups[it->second].push_back(name);
    }
  }
  size_t parts = std::min<size_t>(groups.size(),
                                  context->isMultithreadingEnabled()
                                      ? std::max(1u, context->getNumThreads())
                                      : 1);
  std::vector<std::vector<std::string>> partNames(parts);
  for (auto [g, group] : llvm::enumerate(groups))
    llvm::append_range(partNames[g % parts], group);
  result.modules.resize(parts);
  ::qlr::Progress progress(pass, "compiling calibration stages", 1);
  std::vector<std::string> errors(parts);
  parallelFor(context, 0, parts, [&](size_t part) {
    auto compiled = JitModule::compile(module, partNames[part], options);
    if (!compiled)
      errors[part] = llvm::toString(compiled.takeError());
    else
      result.modules[part] = std::move(*compiled);
  });
  for (const std::string &error : errors)
    if (!error.empty())
      return anchor->emitOpError("cannot compile its calibration stages: ")
             << error;
  for (size_t part = 0; part < parts; ++part)
    for (const std::string &name : partNames[part])
      result.moduleOf[name] = part;
  progress.step(
      llvm::formatv("{0} {1}, {2} compiled", names.size(), noun, groups.size())
          .str());
  return result;
}

llvm::Expected<std::vector<JitBuffer>>
CompiledFunctions::call(StringRef name, ArrayRef<JitTensor> args) const {
  auto found = moduleOf.find(name);
  if (found == moduleOf.end())
    return llvm::createStringError("no compiled function @" + name);
  return modules[found->second]->call(name, args);
}

void mlir::qlr::forEachUsedValue(Operation *op,
                                 llvm::function_ref<void(Value)> fn) {
  for (Value value : op->getOperands())
    fn(value);
  if (op->getNumRegions() == 0)
    return;
  llvm::SetVector<Value> above;
  getUsedValuesDefinedAbove(op->getRegions(), above);
  for (Value value : above)
    fn(value);
}
