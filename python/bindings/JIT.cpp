//===- JIT.cpp - JIT-compiled functions called on NumPy arrays --*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// qlr.compiler.jit: lowers a copy of a module with qlr-cpu-pipeline (as
// qlr-run and quant-opt --qlr-cpu-pipeline do), compiles it with
// mlir::ExecutionEngine and calls one function through the packed form of
// its C interface (_mlir_ciface_NAME).
//
// Calling convention after qlr-cpu-pipeline:
//  * every tensor argument is a memref descriptor (allocated, aligned,
//    offset, sizes, strides) with the identity layout; the arguments are
//    marked `bufferization.writable = false` first (unless the function says
//    otherwise), so the compiled code never writes into the caller's arrays;
//  * results that are an argument (`return %arg0`) are dropped from the
//    signature (drop-equivalent-buffer-results, qlr-drop-argument-results);
//    the others come back as descriptors of buffers the caller owns
//    (ownership-based deallocation): they are copied into NumPy arrays and
//    freed. A buffer that lies inside an argument, that memref.get_global
//    returned (allocated pointer 0xdeadbeef) or that another result already
//    freed is never freed.
//  * large dense_resource constants of the function become trailing
//    arguments (externalizeWeights, as qlr-run does), fed from copies the
//    JIT function owns.
//
//===----------------------------------------------------------------------===//

#include "Bindings.h"

#include "qlr/Numerics/Simd.h"
#include "qlr/Pipelines/Pipelines.h"
#include "qlr/Runtime/Compile.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/ExecutionEngine/ExecutionEngine.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Pass/Pass.h"
#include "mlir/Pass/PassInstrumentation.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Target/LLVMIR/Export.h"
#include "llvm/IR/Module.h"

#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/unique_ptr.h>
#include <nanobind/stl/vector.h>

#include <cstdlib>
#include <cstring>
#include <set>

using namespace mlir;
using namespace ::qlr::python;
using namespace nb::literals;

namespace {

/// An element type the JIT passes between NumPy and memrefs.
struct ElementKind {
  nb::dlpack::dtype dtype;
  unsigned bytes;
  const char *name; ///< NumPy's name.
  bool isFloat;
};

std::optional<ElementKind> elementKind(Type type) {
  using Code = nb::dlpack::dtype_code;
  auto make = [](Code code, unsigned bits, const char *name) {
    return ElementKind{
        {uint8_t(code), uint8_t(bits), 1}, bits / 8, name, code == Code::Float};
  };
  if (type.isF16())
    return make(Code::Float, 16, "float16");
  if (type.isF32())
    return make(Code::Float, 32, "float32");
  if (type.isF64())
    return make(Code::Float, 64, "float64");
  if (type.isSignlessInteger(8) || type.isSignedInteger(8))
    return make(Code::Int, 8, "int8");
  if (type.isUnsignedInteger(8))
    return make(Code::UInt, 8, "uint8");
  if (type.isSignlessInteger(32) || type.isSignedInteger(32))
    return make(Code::Int, 32, "int32");
  if (type.isSignlessInteger(64) || type.isSignedInteger(64))
    return make(Code::Int, 64, "int64");
  return std::nullopt;
}

std::string dtypeName(nb::dlpack::dtype dtype) {
  using Code = nb::dlpack::dtype_code;
  std::string kind;
  switch (Code(dtype.code)) {
  case Code::Int:
    kind = "int";
    break;
  case Code::UInt:
    kind = "uint";
    break;
  case Code::Float:
    kind = "float";
    break;
  case Code::Bool:
    return "bool";
  default:
    kind = "dtype" + std::to_string(dtype.code) + "_";
  }
  return kind + std::to_string(dtype.bits);
}

/// A parameter of the compiled function as Python sees it.
struct ParamSpec {
  bool scalar = false;
  ElementKind element;
  /// Tensors: the static shape (ShapedType::kDynamic for `?`).
  std::vector<int64_t> shape;
  /// Scalars: index/i64 (8 bytes, integer), i32, f32, f64.
  Type scalarType;
  std::string typeText;
};

/// A result: a tensor; `alias` >= 0 when the compiled function returns
/// argument `alias` itself (the result was dropped from its signature).
struct ResultSpec {
  ElementKind element;
  int64_t rank = 0;
  int alias = -1;
  std::string typeText;
};

/// Records, while qlr-cpu-pipeline runs, which results of the function are
/// arguments (after one-shot bufferization) and how many results are left
/// when the function is converted to the LLVM dialect.
class SignatureRecorder : public PassInstrumentation {
public:
  explicit SignatureRecorder(std::string name) : name(std::move(name)) {}

  void runAfterPass(Pass *pass, Operation *op) override {
    if (pass->getArgument() != "one-shot-bufferize")
      return;
    auto func = findFunc(op);
    if (!func)
      return;
    std::optional<std::vector<int>> found;
    bool consistent = true;
    func.walk([&](func::ReturnOp ret) {
      if (ret->getParentOp() != func)
        return;
      std::vector<int> current;
      for (Value value : ret.getOperands()) {
        while (auto cast = value.getDefiningOp<memref::CastOp>())
          value = cast.getSource();
        auto arg = dyn_cast<BlockArgument>(value);
        current.push_back(arg && arg.getOwner()->isEntryBlock() &&
                                  arg.getOwner()->getParentOp() == func
                              ? int(arg.getArgNumber())
                              : -1);
      }
      if (found && *found != current)
        consistent = false;
      found = std::move(current);
    });
    if (found && !consistent)
      std::fill(found->begin(), found->end(), -1);
    aliases = found;
  }

  void runBeforePass(Pass *pass, Operation *op) override {
    if (pass->getArgument() != "convert-func-to-llvm")
      return;
    if (auto func = findFunc(op))
      finalResults = func.getNumResults();
  }

  std::string name;
  std::optional<std::vector<int>> aliases;
  std::optional<unsigned> finalResults;

private:
  func::FuncOp findFunc(Operation *op) {
    auto module = dyn_cast<ModuleOp>(op);
    return module ? module.lookupSymbol<func::FuncOp>(name) : func::FuncOp();
  }
};

/// Memory aligned to 64 bytes, freed with std::free.
struct AlignedBuffer {
  AlignedBuffer() = default;
  explicit AlignedBuffer(size_t bytes)
      : data(static_cast<char *>(std::aligned_alloc(
            64, llvm::alignTo(std::max<size_t>(bytes, 1), 64)))) {
    if (!data)
      throw std::bad_alloc();
  }
  AlignedBuffer(AlignedBuffer &&other) noexcept : data(other.data) {
    other.data = nullptr;
  }
  AlignedBuffer(const AlignedBuffer &) = delete;
  ~AlignedBuffer() { std::free(data); }
  char *data = nullptr;
};

/// Copies the strided array at `src` (element strides) into the row-major
/// buffer `dst`.
void copyStrided(char *dst, const char *src, llvm::ArrayRef<int64_t> shape,
                 llvm::ArrayRef<int64_t> strides, size_t itemsize) {
  size_t rank = shape.size();
  if (rank == 0) {
    std::memcpy(dst, src, itemsize);
    return;
  }
  for (int64_t d : shape)
    if (d == 0)
      return;
  std::vector<int64_t> index(rank, 0);
  int64_t inner = shape[rank - 1], innerStride = strides[rank - 1];
  while (true) {
    int64_t offset = 0;
    for (size_t d = 0; d + 1 < rank; ++d)
      offset += index[d] * strides[d];
    const char *row = src + offset * int64_t(itemsize);
    if (innerStride == 1) {
      std::memcpy(dst, row, inner * itemsize);
      dst += inner * itemsize;
    } else {
      for (int64_t j = 0; j < inner; ++j, dst += itemsize)
        std::memcpy(dst, row + j * innerStride * int64_t(itemsize), itemsize);
    }
    int64_t d = int64_t(rank) - 2;
    for (; d >= 0; --d) {
      if (++index[d] < shape[d])
        break;
      index[d] = 0;
    }
    if (d < 0)
      return;
  }
}

std::string shapeText(llvm::ArrayRef<int64_t> shape) {
  std::string text = "(";
  for (auto [i, d] : llvm::enumerate(shape)) {
    if (i)
      text += ", ";
    text += ShapedType::isDynamic(d) ? "?" : std::to_string(d);
  }
  if (shape.size() == 1)
    text += ",";
  return text + ")";
}

/// A compiled function.
class JitFunction {
public:
  std::string name;
  std::vector<ParamSpec> params;
  std::vector<ResultSpec> results;
  /// Results left in the compiled signature, in order (indices into
  /// `results`).
  std::vector<size_t> returned;
  std::vector<AlignedBuffer> weights;
  std::vector<std::vector<int64_t>> weightShapes;
  std::vector<size_t> weightBytes;
  std::unique_ptr<ExecutionEngine> engine;
  void (*entry)(void **) = nullptr;

  nb::object call(nb::args args);
  std::string signature() const;
};

std::string JitFunction::signature() const {
  std::string text = "@" + name + "(";
  for (auto [i, p] : llvm::enumerate(params))
    text += (i ? ", " : "") + p.typeText;
  text += ") -> (";
  for (auto [i, r] : llvm::enumerate(results))
    text += (i ? ", " : "") + r.typeText;
  return text + ")";
}

nb::object JitFunction::call(nb::args args) {
  if (args.size() != params.size())
    throw nb::type_error(("@" + name + " takes " +
                          std::to_string(params.size()) + " argument" +
                          (params.size() == 1 ? "" : "s") + ", got " +
                          std::to_string(args.size()))
                             .c_str());
  size_t numArgs = params.size() + weights.size();
  // Storage that must stay put while the function runs.
  std::vector<llvm::SmallVector<int64_t>> descriptors(numArgs);
  std::vector<int64_t> scalarStorage(numArgs, 0);
  std::vector<AlignedBuffer> copies;
  std::vector<nb::ndarray<nb::ro, nb::device::cpu>> arrays(params.size());
  /// [begin, end) of every buffer the function reads: never freed.
  std::vector<std::pair<uintptr_t, uintptr_t>> borrowed;
  std::vector<const char *> argData(numArgs, nullptr);
  std::vector<std::vector<int64_t>> argShapes(numArgs);

  for (size_t i = 0; i < params.size(); ++i) {
    const ParamSpec &p = params[i];
    nb::handle arg = args[i];
    std::string what = "argument " + std::to_string(i) + " of @" + name + " (" +
                       p.typeText + ")";
    if (p.scalar) {
      if (isa<IndexType>(p.scalarType) || p.scalarType.isInteger(64) ||
          p.scalarType.isInteger(32)) {
        if (!nb::isinstance<nb::int_>(arg) || nb::isinstance<nb::bool_>(arg))
          throw nb::type_error((what + " must be an int").c_str());
        int64_t value;
        if (!nb::try_cast(arg, value))
          throw nb::value_error((what + ": out of range").c_str());
        if (p.scalarType.isInteger(32)) {
          if (value < INT32_MIN || value > INT32_MAX)
            throw nb::value_error((what + ": out of range").c_str());
          int32_t v = int32_t(value);
          std::memcpy(&scalarStorage[i], &v, sizeof(v));
        } else {
          scalarStorage[i] = value;
        }
      } else {
        if (!nb::isinstance<nb::float_>(arg) && !nb::isinstance<nb::int_>(arg))
          throw nb::type_error((what + " must be a float").c_str());
        double value = nb::cast<double>(arg);
        if (p.scalarType.isF32()) {
          float v = float(value);
          std::memcpy(&scalarStorage[i], &v, sizeof(v));
        } else {
          std::memcpy(&scalarStorage[i], &value, sizeof(value));
        }
      }
      continue;
    }
    nb::ndarray<nb::ro, nb::device::cpu> array;
    if (!nb::try_cast(arg, array, /*convert=*/false))
      throw nb::type_error((what + " must be a NumPy array of " +
                            p.element.name + ", not " +
                            nb::inst_name(arg).c_str())
                               .c_str());
    if (!(array.dtype() == p.element.dtype))
      throw nb::type_error((what + " must have dtype " + p.element.name +
                            ", not " + dtypeName(array.dtype()))
                               .c_str());
    if (array.ndim() != p.shape.size())
      throw nb::value_error((what + " must have rank " +
                             std::to_string(p.shape.size()) + ", not " +
                             std::to_string(array.ndim()))
                                .c_str());
    std::vector<int64_t> shape(array.ndim()), strides(array.ndim());
    bool contiguous = true;
    int64_t expected = 1;
    for (int64_t d = int64_t(array.ndim()) - 1; d >= 0; --d) {
      shape[d] = int64_t(array.shape(d));
      strides[d] = array.stride(d);
      if (shape[d] != 1 && strides[d] != expected)
        contiguous = false;
      expected *= shape[d];
    }
    for (size_t d = 0; d < shape.size(); ++d)
      if (!ShapedType::isDynamic(p.shape[d]) && p.shape[d] != shape[d])
        throw nb::value_error((what + " must have shape " + shapeText(p.shape) +
                               ", not " + shapeText(shape))
                                  .c_str());
    const char *data = static_cast<const char *>(array.data());
    size_t bytes = size_t(expected) * p.element.bytes;
    if (!contiguous) {
      copies.emplace_back(bytes);
      copyStrided(copies.back().data, data, shape, strides, p.element.bytes);
      data = copies.back().data;
    }
    arrays[i] = array;
    argData[i] = data;
    argShapes[i] = shape;
    descriptors[i] = mlir::qlr::rowMajorDescriptor(data, shape);
    borrowed.push_back({uintptr_t(data), uintptr_t(data) + bytes});
  }
  for (size_t w = 0; w < weights.size(); ++w) {
    size_t i = params.size() + w;
    argData[i] = weights[w].data;
    argShapes[i] = weightShapes[w];
    descriptors[i] =
        mlir::qlr::rowMajorDescriptor(weights[w].data, weightShapes[w]);
    borrowed.push_back({uintptr_t(weights[w].data),
                        uintptr_t(weights[w].data) + weightBytes[w]});
  }

  // Results: one descriptor per returned result, back to back (the C
  // interface's result struct; every field is 8 bytes, so no padding).
  std::vector<size_t> resultOffsets;
  size_t resultFields = 0;
  for (size_t index : returned) {
    resultOffsets.push_back(resultFields);
    resultFields += 3 + 2 * results[index].rank;
  }
  std::vector<int64_t> resultStorage(std::max<size_t>(resultFields, 1), 0);

  // The packed interface: a pointer to each argument of _mlir_ciface_NAME.
  // Its first argument is a pointer to the result struct (when there are
  // results), memref arguments are pointers to descriptors, scalars are
  // passed by value.
  std::vector<void *> pointers;
  pointers.reserve(numArgs + 1);
  std::vector<void *> packed;
  packed.reserve(numArgs + 1);
  if (!returned.empty()) {
    pointers.push_back(resultStorage.data());
    packed.push_back(&pointers.back());
  }
  for (size_t i = 0; i < numArgs; ++i) {
    if (i < params.size() && params[i].scalar) {
      packed.push_back(&scalarStorage[i]);
      continue;
    }
    pointers.push_back(descriptors[i].data());
    packed.push_back(&pointers.back());
  }
  {
    nb::gil_scoped_release release;
    entry(packed.data());
  }

  // Copy the results into NumPy arrays; free what the function allocated.
  std::set<uintptr_t> freed;
  auto isBorrowed = [&](uintptr_t p) {
    for (auto [begin, end] : borrowed)
      if (p >= begin && p < end)
        return true;
    return false;
  };
  std::vector<nb::object> outputs(results.size());
  std::vector<uintptr_t> toFree;
  std::optional<std::string> error;
  for (size_t k = 0; k < returned.size(); ++k) {
    const ResultSpec &r = results[returned[k]];
    const int64_t *desc = resultStorage.data() + resultOffsets[k];
    auto allocated = uintptr_t(desc[0]);
    const char *aligned = reinterpret_cast<const char *>(desc[1]);
    int64_t offset = desc[2];
    std::vector<int64_t> shape(desc + 3, desc + 3 + r.rank);
    std::vector<int64_t> strides(desc + 3 + r.rank, desc + 3 + 2 * r.rank);
    int64_t count = 1;
    for (int64_t d : shape) {
      if (d < 0)
        error = "the compiled function returned a negative size";
      count *= d;
    }
    if (!error) {
      AlignedBuffer out(size_t(count) * r.element.bytes);
      if (count)
        copyStrided(out.data, aligned + offset * int64_t(r.element.bytes),
                    shape, strides, r.element.bytes);
      std::vector<size_t> dims(shape.begin(), shape.end());
      char *data = out.data;
      out.data = nullptr;
      nb::capsule owner(data, [](void *p) noexcept { std::free(p); });
      outputs[returned[k]] =
          nb::ndarray<nb::numpy>(data, dims.size(), dims.data(), owner, nullptr,
                                 r.element.dtype)
              .cast();
    }
    // 0xdeadbeef: memref.get_global's "not allocated" marker.
    if (allocated && allocated != 0xdeadbeef && !isBorrowed(allocated) &&
        freed.insert(allocated).second)
      toFree.push_back(allocated);
  }
  for (uintptr_t p : toFree)
    std::free(reinterpret_cast<void *>(p));
  if (error)
    throw nb::value_error(error->c_str());
  for (size_t index = 0; index < results.size(); ++index) {
    const ResultSpec &r = results[index];
    if (r.alias < 0)
      continue;
    // The function returned this argument: a copy of its (unchanged or,
    // for a writable argument, updated) contents.
    const std::vector<int64_t> &shape = argShapes[r.alias];
    int64_t count = 1;
    for (int64_t d : shape)
      count *= d;
    AlignedBuffer out(size_t(count) * r.element.bytes);
    if (count)
      std::memcpy(out.data, argData[r.alias], size_t(count) * r.element.bytes);
    std::vector<size_t> dims(shape.begin(), shape.end());
    char *data = out.data;
    out.data = nullptr;
    nb::capsule owner(data, [](void *p) noexcept { std::free(p); });
    outputs[index] = nb::ndarray<nb::numpy>(data, dims.size(), dims.data(),
                                            owner, nullptr, r.element.dtype)
                         .cast();
  }
  if (results.size() == 1)
    return outputs[0];
  if (results.empty())
    return nb::none();
  nb::list list;
  for (nb::object &o : outputs)
    list.append(o);
  return nb::tuple(list);
}

std::string typeToString(Type type) {
  std::string text;
  llvm::raw_string_ostream os(text);
  os << type;
  return text;
}

std::unique_ptr<JitFunction> jit(Module &module, const std::string &name,
                                 int optLevel, bool openmp) {
  if (optLevel < 0 || optLevel > 3)
    throw nb::value_error("opt_level must be 0-3");
#ifndef QLR_OMP_LIBRARY
  if (openmp)
    throw nb::value_error("openmp=True: this build found no OpenMP runtime "
                          "(libomp)");
#endif
  MLIRContext *context = module.context.get();
  DiagnosticCapture diagnostics(context);
  auto original = module.module->lookupSymbol<func::FuncOp>(name);
  if (!original)
    throw nb::value_error(("the module has no func.func @" + name).c_str());
  if (original.isExternal())
    throw nb::value_error(("@" + name + " has no body").c_str());

  auto fn = std::make_unique<JitFunction>();
  fn->name = name;
  FunctionType type = original.getFunctionType();
  for (auto [i, input] : llvm::enumerate(type.getInputs())) {
    ParamSpec p;
    p.typeText = typeToString(input);
    if (auto tensor = dyn_cast<RankedTensorType>(input)) {
      auto kind = elementKind(tensor.getElementType());
      if (!kind)
        throw nb::type_error(("argument " + std::to_string(i) + " of @" + name +
                              " has type " + p.typeText +
                              "; the JIT passes tensors of f16, f32, f64, "
                              "i8, ui8, i32 and i64")
                                 .c_str());
      p.element = *kind;
      p.shape.assign(tensor.getShape().begin(), tensor.getShape().end());
    } else if (isa<IndexType>(input) || input.isSignlessInteger(64) ||
               input.isSignlessInteger(32) || input.isF32() || input.isF64()) {
      p.scalar = true;
      p.scalarType = input;
    } else {
      throw nb::type_error(("argument " + std::to_string(i) + " of @" + name +
                            " has type " + p.typeText +
                            "; the JIT passes ranked tensors and index, i32, "
                            "i64, f32 and f64 scalars")
                               .c_str());
    }
    fn->params.push_back(std::move(p));
  }
  for (auto [i, output] : llvm::enumerate(type.getResults())) {
    ResultSpec r;
    r.typeText = typeToString(output);
    auto tensor = dyn_cast<RankedTensorType>(output);
    std::optional<ElementKind> kind =
        tensor ? elementKind(tensor.getElementType()) : std::nullopt;
    if (!kind)
      throw nb::type_error(("result " + std::to_string(i) + " of @" + name +
                            " has type " + r.typeText +
                            "; the JIT returns ranked tensors of f16, f32, "
                            "f64, i8, ui8, i32 and i64")
                               .c_str());
    r.element = *kind;
    r.rank = tensor.getRank();
    fn->results.push_back(std::move(r));
  }

  // Lower a copy; the caller's module stays as it is.
  OwningOpRef<ModuleOp> copy = module.module->clone();
  auto func = copy->lookupSymbol<func::FuncOp>(name);
  func->setAttr("llvm.emit_c_interface", UnitAttr::get(context));
  // Weights as arguments (as qlr-run does), unless other functions call
  // this one (their calls would need the new arguments too).
  if (SymbolTable::symbolKnownUseEmpty(func, *copy)) {
    auto weights = mlir::qlr::externalizeWeights(func);
    if (failed(weights))
      diagnostics.fail("cannot read the weights of @" + name);
    for (const mlir::qlr::ExternalWeight &weight : *weights) {
      AlignedBuffer buffer(weight.data.size());
      std::memcpy(buffer.data, weight.data.data(), weight.data.size());
      fn->weights.push_back(std::move(buffer));
      fn->weightShapes.emplace_back(weight.shape.begin(), weight.shape.end());
      fn->weightBytes.push_back(std::max<size_t>(weight.data.size(), 1));
    }
  }
  // The compiled code must not write into the caller's arrays or the
  // weights (both are reused across calls).
  auto writable = StringAttr::get(context, "bufferization.writable");
  for (unsigned i = 0; i < func.getNumArguments(); ++i)
    if (isa<TensorType>(func.getArgument(i).getType()) &&
        !func.getArgAttr(i, writable))
      func.setArgAttr(i, writable, BoolAttr::get(context, false));

  PassManager pm(context, ModuleOp::getOperationName());
  mlir::qlr::CPUPipelineOptions pipelineOptions;
  mlir::qlr::configureCPUPipeline(pipelineOptions, ::qlr::numerics::simdLevel(),
                                  openmp);
  mlir::qlr::buildCPUPipeline(pm, pipelineOptions);
  auto recorder = std::make_unique<SignatureRecorder>(name);
  SignatureRecorder *record = recorder.get();
  pm.addInstrumentation(std::move(recorder));
  if (failed(pm.run(*copy)))
    diagnostics.fail("cannot lower @" + name + " with qlr-cpu-pipeline");

  // Which results the compiled function still returns.
  size_t numResults = fn->results.size();
  if (numResults) {
    if (!record->aliases || record->aliases->size() != numResults ||
        !record->finalResults)
      throw CompilerError{
          "cannot follow @" + name + "'s results through qlr-cpu-pipeline", {}};
    size_t aliased = 0;
    for (int alias : *record->aliases)
      aliased += alias >= 0;
    bool dropped = *record->finalResults == numResults - aliased;
    if (!dropped && *record->finalResults != numResults)
      throw CompilerError{"@" + name + " returns " +
                              std::to_string(*record->finalResults) +
                              " buffers after bufferization; expected " +
                              std::to_string(numResults - aliased),
                          {}};
    for (size_t i = 0; i < numResults; ++i) {
      int alias = (*record->aliases)[i];
      if (dropped && alias >= 0)
        fn->results[i].alias = alias;
      else
        fn->returned.push_back(i);
    }
  }

  // JIT-compile as qlr-run does (lib/Runtime/ModelRunner.cpp).
  mlir::qlr::JitEngineOptions engineOptions;
  engineOptions.optLevel = optLevel;
  engineOptions.openmp = openmp;
  // QLR_PERF_MAP=1: name the JIT's functions for `perf`, as qlr-run does.
  const char *perfMap = std::getenv("QLR_PERF_MAP");
  engineOptions.perfListener = perfMap && llvm::StringRef(perfMap) == "1";
  auto engine = mlir::qlr::createJitEngine(*copy, engineOptions);
  if (!engine)
    diagnostics.fail("JIT compilation of @" + name +
                     " failed: " + llvm::toString(engine.takeError()));
  fn->engine = std::move(*engine);
  auto entry = fn->engine->lookupPacked("_mlir_ciface_" + name);
  if (!entry)
    throw CompilerError{"the compiled module has no _mlir_ciface_" + name +
                            ": " + llvm::toString(entry.takeError()),
                        {}};
  fn->entry = *entry;
  return fn;
}

} // namespace

void ::qlr::python::bindJIT(nb::module_ &m) {
  nb::class_<JitFunction>(
      m, "JitFunction",
      "A function compiled by jit(). Call it with one NumPy array per tensor "
      "argument (dtype and rank as declared, static dimensions as declared) "
      "and Python numbers for scalar arguments; it returns a NumPy array, a "
      "tuple of them for several results, or None for none.")
      .def("__call__", &JitFunction::call,
           "Runs the compiled function. Raises TypeError for a wrong "
           "argument count or dtype, ValueError for a wrong rank or static "
           "dimension. Dynamic dimensions are not checked against each "
           "other: sizes the function assumes equal must be equal.")
      .def_prop_ro(
          "name", [](JitFunction &f) { return f.name; }, "The function's name.")
      .def_prop_ro("signature", &JitFunction::signature,
                   "The function's type as declared in the module.")
      .def_prop_ro(
          "num_weights", [](JitFunction &f) { return f.weights.size(); },
          "How many large constants became arguments of the "
          "compiled code (fed from copies this object owns).")
      .def("__repr__", [](JitFunction &f) {
        return "<qlr.compiler.JitFunction " + f.signature() + ">";
      });

  m.def("jit", &jit, "module"_a, "name"_a = "forward", "opt_level"_a = 2,
        "openmp"_a = false,
        "JIT-compiles function `name` of a copy of `module` for this CPU: "
        "qlr-cpu-pipeline (the pipeline qlr-run and quant-opt use) lowers it "
        "to the LLVM dialect, LLVM optimises it at `opt_level` (0-3) and "
        "mlir::ExecutionEngine compiles it. openmp: run the linear-layer "
        "kernels' parallel loops on OpenMP threads. Arguments and results "
        "must be ranked tensors of f16, f32, f64, i8, ui8, i32 or i64 "
        "(static or dynamic dimensions); arguments may also be index, i32, "
        "i64, f32 or f64 scalars. Raises CompilerError when the function "
        "cannot be lowered or compiled, TypeError for an unsupported "
        "signature.");
}
