//===- Numerics.cpp - lib/Numerics on NumPy arrays --------------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// The quantizers, low-rank factorizations and basis selection of
// lib/Numerics (include/qlr/Numerics/*.h) on NumPy arrays. Formats are given
// as #qlr.format text (or its body) and parsed by the qlr dialect, exactly
// as the passes read them. The numerics library asserts its preconditions;
// they are checked here first and reported as ValueError.
//
// These are the raw functions; qlr.compiler wraps their results into
// QuantizedTensor objects.
//
//===----------------------------------------------------------------------===//

#include "Bindings.h"

#include "qlr/Dialect/QLR/IR/QLR.h"
#include "qlr/Numerics/BasisSelect.h"
#include "qlr/Numerics/Codebook.h"
#include "qlr/Numerics/GPTQ.h"
#include "qlr/Numerics/LowRank.h"
#include "qlr/Numerics/Packing.h"
#include "qlr/Numerics/Quantize.h"

#include "mlir/AsmParser/AsmParser.h"

#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <cmath>
#include <mutex>

using namespace mlir;
using namespace ::qlr::python;
using namespace nb::literals;
namespace numerics = ::qlr::numerics;

namespace {

using FloatArray = nb::ndarray<const float, nb::c_contig, nb::device::cpu>;
using DoubleArray = nb::ndarray<const double, nb::c_contig, nb::device::cpu>;
using ByteArray = nb::ndarray<const uint8_t, nb::c_contig, nb::device::cpu>;
using IndexArray = nb::ndarray<const int64_t, nb::c_contig, nb::device::cpu>;

[[noreturn]] void valueError(const std::string &message) {
  throw nb::value_error(message.c_str());
}

/// A vector handed to NumPy without a copy: the array owns it.
template <typename T>
nb::object toNumpy(std::vector<T> &&values, llvm::ArrayRef<int64_t> shape,
                   nb::dlpack::dtype dtype = nb::dtype<T>()) {
  auto *heap = new std::vector<T>(std::move(values));
  nb::capsule owner(
      heap, [](void *p) noexcept { delete static_cast<std::vector<T> *>(p); });
  std::vector<size_t> dims(shape.begin(), shape.end());
  return nb::ndarray<nb::numpy>(heap->data(), dims.size(), dims.data(), owner,
                                nullptr, dtype)
      .cast();
}

template <typename Array> std::vector<int64_t> shapeOf(const Array &array) {
  std::vector<int64_t> shape(array.ndim());
  for (size_t i = 0; i < array.ndim(); ++i)
    shape[i] = int64_t(array.shape(i));
  return shape;
}

template <typename Array>
auto valuesOf(const Array &array) -> llvm::ArrayRef<
    std::remove_const_t<std::remove_pointer_t<decltype(array.data())>>> {
  return {array.data(), array.size()};
}

/// A format parsed by the qlr dialect.
struct ParsedFormat {
  mlir::qlr::FormatAttr attr;
  std::string text;
};

/// Parses `#qlr.format<...>` or its body. The attributes live in one
/// process-wide context (uniqued, never freed).
ParsedFormat parseFormat(const std::string &text) {
  static std::mutex mutex;
  static MLIRContext *context = [] {
    auto *ctx = new MLIRContext(MLIRContext::Threading::DISABLED);
    ctx->loadDialect<mlir::qlr::QLRDialect>();
    return ctx;
  }();
  std::lock_guard<std::mutex> lock(mutex);
  std::string full = llvm::StringRef(text).trim().str();
  if (!llvm::StringRef(full).starts_with("#"))
    full = "#qlr.format<" + full + ">";
  DiagnosticCapture diagnostics(context);
  Attribute attr = parseAttribute(full, context);
  auto format = llvm::dyn_cast_or_null<mlir::qlr::FormatAttr>(attr);
  if (!format) {
    std::string message = "'" + text + "' is not a #qlr.format";
    for (const DiagnosticRecord &record : diagnostics.records)
      message += ": " + record.message;
    valueError(message);
  }
  std::string printed;
  llvm::raw_string_ostream os(printed);
  os << Attribute(format);
  return {format, printed};
}

/// The numerics format for a tensor of `shape`, checked against it.
numerics::QuantFormat formatFor(const ParsedFormat &format,
                                llvm::ArrayRef<int64_t> shape) {
  if (shape.empty())
    valueError("quantized tensors have rank 1 or more");
  if (format.attr.getGranularity() != mlir::qlr::Granularity::Tensor) {
    int64_t axis = format.attr.getAxis();
    int64_t rank = shape.size();
    if (axis < -rank || axis >= rank)
      valueError(format.text + ": axis " + std::to_string(axis) +
                 " is out of range for rank " + std::to_string(rank));
  }
  numerics::QuantFormat fmt = format.attr.toNumerics(shape.size());
  std::string error = numerics::verifyFormatForShape(fmt, shape);
  if (!error.empty())
    valueError(format.text + ": " + error);
  return fmt;
}

/// The numerics library asserts finite inputs and scales that are finite in
/// their type; report violations as ValueError instead.
void checkQuantizable(llvm::ArrayRef<float> x, const numerics::QuantFormat &fmt,
                      const char *what) {
  float lo = 0, hi = 0;
  for (float v : x) {
    if (!std::isfinite(v))
      valueError(std::string(what) + " has a value that is not finite");
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  double qmax = double((1u << fmt.bits) - 1);
  double absMax = std::max(-double(lo), double(hi));
  double scale = numerics::isCodebook(fmt) ? absMax
                 : fmt.symmetric           ? 2 * absMax / qmax
                                           : (double(hi) - double(lo)) / qmax;
  double limit = fmt.scaleType == numerics::ScaleType::F16 ? 65504.0 : 1e38;
  if (scale > limit || absMax > 1e38)
    valueError(std::string(what) +
               " is too large for the format: a scale would overflow its "
               "type");
}

void checkFinite(llvm::ArrayRef<float> x, const char *what) {
  for (float v : x)
    if (!std::isfinite(v))
      valueError(std::string(what) + " has a value that is not finite");
}

void checkFinite(llvm::ArrayRef<double> x, const char *what) {
  for (double v : x)
    if (!std::isfinite(v))
      valueError(std::string(what) + " has a value that is not finite");
}

/// The fields of a QuantizedTensor: codes, packed, scales, zero_points,
/// format, shape.
nb::dict quantizedFields(numerics::QuantizedData &&q,
                         const ParsedFormat &format,
                         const numerics::QuantFormat &fmt,
                         llvm::ArrayRef<int64_t> shape) {
  nb::dict d;
  std::vector<uint8_t> packed = numerics::packCodes(q.codes, shape, fmt.bits);
  d["packed"] =
      toNumpy(std::move(packed), numerics::packedShape(shape, fmt.bits),
              nb::dtype<int8_t>());
  d["codes"] = toNumpy(std::move(q.codes), shape);
  llvm::SmallVector<int64_t> scaleShape = numerics::scaleShape(fmt, shape);
  d["scales"] = toNumpy(std::move(q.scales), scaleShape);
  if (fmt.symmetric)
    d["zero_points"] = nb::none();
  else
    d["zero_points"] = toNumpy(std::move(q.zeroPoints), scaleShape);
  d["format"] = format.text;
  nb::list dims;
  for (int64_t dim : shape)
    dims.append(dim);
  d["shape"] = nb::tuple(dims);
  return d;
}

nb::dict quantize(FloatArray w, const std::string &formatText,
                  const std::string &method, int clipSteps, float minShrink,
                  std::optional<FloatArray> scales,
                  std::optional<ByteArray> zeroPoints) {
  ParsedFormat format = parseFormat(formatText);
  std::vector<int64_t> shape = shapeOf(w);
  numerics::QuantFormat fmt = formatFor(format, shape);
  llvm::ArrayRef<float> x = valuesOf(w);
  checkQuantizable(x, fmt, "w");
  numerics::QuantizedData q;
  if (scales) {
    llvm::SmallVector<int64_t> expected = numerics::scaleShape(fmt, shape);
    if (shapeOf(*scales) !=
            std::vector<int64_t>(expected.begin(), expected.end()) &&
        int64_t(scales->size()) != numerics::numElements(expected))
      valueError("scales must have " +
                 std::to_string(numerics::numElements(expected)) +
                 " values (shape of the format's scales)");
    for (float s : valuesOf(*scales))
      if (!std::isfinite(s) || s < 0)
        valueError("scales must be finite and >= 0");
    std::vector<uint8_t> zp;
    if (fmt.symmetric) {
      if (zeroPoints)
        valueError(format.text + " has no zero points");
    } else {
      if (!zeroPoints ||
          int64_t(zeroPoints->size()) != numerics::numElements(expected))
        valueError(format.text + " needs one zero point per scale");
      for (uint8_t z : valuesOf(*zeroPoints))
        if (z > numerics::maxStoredZeroPoint(fmt))
          valueError("zero point " + std::to_string(z) + " exceeds " +
                     std::to_string(numerics::maxStoredZeroPoint(fmt)));
      zp.assign(zeroPoints->data(), zeroPoints->data() + zeroPoints->size());
    }
    q = numerics::quantizeWithScales(x, shape, fmt, valuesOf(*scales), zp);
  } else if (method == "rtn") {
    q = numerics::quantizeRTN(x, shape, fmt);
  } else if (method == "clip-search") {
    if (clipSteps < 0 || !(minShrink > 0 && minShrink <= 1))
      valueError("clip-search needs clip_steps >= 0 and 0 < min_shrink <= 1");
    q = numerics::quantizeRTNClipSearch(x, shape, fmt, clipSteps, minShrink);
  } else {
    valueError("method='" + method + "': use 'rtn' or 'clip-search'");
  }
  return quantizedFields(std::move(q), format, fmt, shape);
}

nb::object dequantize(ByteArray codes, FloatArray scales,
                      std::optional<ByteArray> zeroPoints,
                      const std::string &formatText) {
  ParsedFormat format = parseFormat(formatText);
  std::vector<int64_t> shape = shapeOf(codes);
  numerics::QuantFormat fmt = formatFor(format, shape);
  llvm::SmallVector<int64_t> expected = numerics::scaleShape(fmt, shape);
  if (int64_t(scales.size()) != numerics::numElements(expected))
    valueError("scales must have " +
               std::to_string(numerics::numElements(expected)) +
               " values for codes of this shape");
  numerics::QuantizedData q;
  q.codes.assign(codes.data(), codes.data() + codes.size());
  for (uint8_t c : q.codes)
    if (c >> fmt.bits)
      valueError("code " + std::to_string(c) + " does not fit in " +
                 std::to_string(fmt.bits) + " bits");
  q.scales.assign(scales.data(), scales.data() + scales.size());
  if (fmt.symmetric) {
    if (zeroPoints)
      valueError(format.text + " has no zero points");
  } else {
    if (!zeroPoints ||
        int64_t(zeroPoints->size()) != numerics::numElements(expected))
      valueError(format.text + " needs one zero point per scale");
    q.zeroPoints.assign(zeroPoints->data(),
                        zeroPoints->data() + zeroPoints->size());
  }
  return toNumpy(numerics::dequantize(q, shape, fmt), shape);
}

nb::object packCodes(ByteArray codes, unsigned bits) {
  if (bits < 2 || bits > 8)
    valueError("bits must be 2-8");
  std::vector<int64_t> shape = shapeOf(codes);
  if (shape.empty())
    valueError("codes must have rank 1 or more");
  for (uint8_t c : valuesOf(codes))
    if (c >> bits)
      valueError("code " + std::to_string(c) + " does not fit in " +
                 std::to_string(bits) + " bits");
  return toNumpy(numerics::packCodes(valuesOf(codes), shape, bits),
                 numerics::packedShape(shape, bits), nb::dtype<int8_t>());
}

nb::object unpackCodes(ByteArray packed, std::vector<int64_t> shape,
                       unsigned bits) {
  if (bits < 2 || bits > 8)
    valueError("bits must be 2-8");
  if (shape.empty())
    valueError("shape must have rank 1 or more");
  for (int64_t d : shape)
    if (d < 0)
      valueError("shape must not have negative dimensions");
  if (int64_t(packed.size()) !=
      numerics::numElements(numerics::packedShape(shape, bits)))
    valueError("packed has " + std::to_string(packed.size()) +
               " bytes; codes of this shape pack into " +
               std::to_string(
                   numerics::numElements(numerics::packedShape(shape, bits))));
  return toNumpy(numerics::unpackCodes(valuesOf(packed), shape, bits), shape);
}

void checkMatrix(const std::vector<int64_t> &shape, const char *what) {
  if (shape.size() != 2)
    valueError(std::string(what) + " must be a matrix (rank 2)");
}

void checkHessian(const DoubleArray &h, int64_t k, const char *what) {
  std::vector<int64_t> shape = shapeOf(h);
  if (shape.size() != 2 || shape[0] != k || shape[1] != k)
    valueError(std::string(what) + " must be " + std::to_string(k) + " x " +
               std::to_string(k));
  checkFinite(valuesOf(h), what);
}

nb::dict gptq(FloatArray w, DoubleArray hessian, const std::string &formatText,
              double damp, int64_t blockSize, bool actOrder, bool clipSearch,
              int64_t refitRounds) {
  ParsedFormat format = parseFormat(formatText);
  std::vector<int64_t> shape = shapeOf(w);
  checkMatrix(shape, "w");
  numerics::QuantFormat fmt = formatFor(format, shape);
  checkQuantizable(valuesOf(w), fmt, "w");
  checkHessian(hessian, shape[1], "hessian");
  if (damp < 0 || blockSize < 1 || refitRounds < 0)
    valueError("gptq needs damp >= 0, block_size >= 1, refit_rounds >= 0");
  numerics::GPTQOptions options;
  options.damp = damp;
  options.blockSize = blockSize;
  options.actOrder = actOrder;
  options.clipSearch = clipSearch;
  options.refitRounds = refitRounds;
  auto q = numerics::quantizeGPTQ(valuesOf(w), shape[0], shape[1],
                                  valuesOf(hessian), fmt, options);
  if (!q)
    valueError("gptq: " + llvm::toString(q.takeError()));
  return quantizedFields(std::move(*q), format, fmt, shape);
}

nb::object hessian(FloatArray x) {
  std::vector<int64_t> shape = shapeOf(x);
  checkMatrix(shape, "x");
  checkFinite(valuesOf(x), "x");
  numerics::HessianAccumulator accumulator(shape[1]);
  accumulator.add(x.data(), shape[0]);
  return toNumpy(accumulator.hessian(), {shape[1], shape[1]});
}

double hessianError(FloatArray w, FloatArray wq, DoubleArray hessian) {
  std::vector<int64_t> shape = shapeOf(w);
  checkMatrix(shape, "w");
  if (shapeOf(wq) != shape)
    valueError("w and wq must have the same shape");
  checkHessian(hessian, shape[1], "hessian");
  return numerics::hessianWeightedError(valuesOf(w), valuesOf(wq), shape[0],
                                        shape[1], valuesOf(hessian));
}

std::tuple<nb::dict, nb::object, nb::object, std::vector<double>>
loftq(FloatArray w, const std::string &formatText, int64_t rank,
      int64_t iterations) {
  ParsedFormat format = parseFormat(formatText);
  std::vector<int64_t> shape = shapeOf(w);
  checkMatrix(shape, "w");
  numerics::QuantFormat fmt = formatFor(format, shape);
  checkQuantizable(valuesOf(w), fmt, "w");
  if (rank < 1 || iterations < 1)
    valueError("loftq needs rank >= 1 and iterations >= 1");
  auto result =
      numerics::loftq(valuesOf(w), shape[0], shape[1], fmt, rank, iterations);
  if (!result)
    valueError("loftq: " + llvm::toString(result.takeError()));
  int64_t r = result->lowRank.rank;
  nb::object a = toNumpy(std::move(result->lowRank.a), {shape[0], r});
  nb::object b = toNumpy(std::move(result->lowRank.b), {r, shape[1]});
  return {quantizedFields(std::move(result->base), format, fmt, shape), a, b,
          result->errors};
}

std::vector<int64_t> checkedMatrix(const FloatArray &w) {
  std::vector<int64_t> shape = shapeOf(w);
  checkMatrix(shape, "w");
  checkFinite(valuesOf(w), "w");
  return shape;
}

nb::object singularValues(FloatArray w) {
  std::vector<int64_t> shape = checkedMatrix(w);
  std::vector<double> s =
      numerics::singularValues(valuesOf(w), shape[0], shape[1]);
  int64_t n = s.size();
  return toNumpy(std::move(s), {n});
}

std::pair<nb::object, nb::object> factors(numerics::LowRankFactors &&f,
                                          int64_t m, int64_t n) {
  int64_t r = f.rank;
  return {toNumpy(std::move(f.a), {m, r}), toNumpy(std::move(f.b), {r, n})};
}

std::pair<nb::object, nb::object> truncatedSVD(FloatArray w, int64_t rank) {
  std::vector<int64_t> shape = checkedMatrix(w);
  if (rank < 0)
    valueError("rank must be >= 0");
  return factors(numerics::truncatedSVD(valuesOf(w), shape[0], shape[1], rank),
                 shape[0], shape[1]);
}

nb::object basisScores(FloatArray w, std::optional<DoubleArray> gram) {
  std::vector<int64_t> shape = checkedMatrix(w);
  numerics::SVD svd = numerics::thinSVD(valuesOf(w), shape[0], shape[1]);
  std::vector<double> scores;
  if (gram) {
    checkHessian(*gram, shape[1], "gram");
    scores = numerics::energyScores(svd, valuesOf(*gram));
  } else {
    scores = numerics::magnitudeScores(svd);
  }
  int64_t n = scores.size();
  return toNumpy(std::move(scores), {n});
}

nb::object topBases(DoubleArray scores, int64_t count) {
  if (scores.ndim() != 1)
    valueError("scores must be a vector");
  std::vector<int64_t> kept = numerics::topBases(valuesOf(scores), count);
  int64_t n = kept.size();
  return toNumpy(std::move(kept), {n});
}

nb::dict
allocateRanks(std::vector<std::tuple<int64_t, int64_t, DoubleArray>> layers,
              double ratio, int64_t minRank) {
  std::vector<numerics::BasisLayer> basisLayers;
  for (auto &[m, n, scores] : layers) {
    if (scores.ndim() != 1)
      valueError("every layer's scores must be a vector");
    basisLayers.push_back({m, n, valuesOf(scores)});
  }
  auto allocation = numerics::allocateRanks(basisLayers, ratio, minRank);
  if (!allocation)
    valueError("allocate_ranks: " + llvm::toString(allocation.takeError()));
  nb::dict d;
  d["ranks"] = allocation->ranks;
  std::vector<bool> dense(allocation->dense.begin(), allocation->dense.end());
  d["dense"] = dense;
  d["budget"] = allocation->budget;
  d["params"] = allocation->params;
  return d;
}

std::pair<nb::object, nb::object> basisFactors(FloatArray w, IndexArray kept,
                                               std::optional<DoubleArray> gram,
                                               bool refit, double minPivot,
                                               double damp) {
  std::vector<int64_t> shape = checkedMatrix(w);
  if (kept.ndim() != 1)
    valueError("kept must be a vector of basis indices");
  int64_t p = std::min(shape[0], shape[1]);
  std::vector<int64_t> indices(kept.data(), kept.data() + kept.size());
  std::vector<int64_t> sorted = indices;
  llvm::sort(sorted);
  if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end())
    valueError("kept has repeated indices");
  for (int64_t i : indices)
    if (i < 0 || i >= p)
      valueError("basis index " + std::to_string(i) + " is outside 0.." +
                 std::to_string(p - 1));
  numerics::SVD svd = numerics::thinSVD(valuesOf(w), shape[0], shape[1]);
  if (!refit)
    return factors(numerics::basisFactors(svd, indices), shape[0], shape[1]);
  if (!gram)
    valueError("refit=True needs the inputs' gram matrix");
  checkHessian(*gram, shape[1], "gram");
  numerics::RefitOptions options;
  options.minPivot = minPivot;
  options.damp = damp;
  auto refitted = numerics::refitFactors(valuesOf(w), svd, indices,
                                         valuesOf(*gram), options);
  if (!refitted)
    valueError("basis_factors: " + llvm::toString(refitted.takeError()));
  return factors(std::move(*refitted), shape[0], shape[1]);
}

} // namespace

void ::qlr::python::bindNumerics(nb::module_ &m) {
  m.def(
      "parse_format",
      [](const std::string &text) { return parseFormat(text).text; }, "text"_a,
      "The canonical #qlr.format text of `text` (a #qlr.format or its "
      "body). Raises ValueError when it is not one.");
  m.def("_quantize", &quantize, "w"_a, "format"_a, "method"_a = "rtn",
        "clip_steps"_a = 20, "min_shrink"_a = 0.6f, "scales"_a = nb::none(),
        "zero_points"_a = nb::none(),
        "Round-to-nearest quantization (Quantize.h); the fields of a "
        "QuantizedTensor as a dict.");
  m.def("_dequantize", &dequantize, "codes"_a, "scales"_a,
        "zero_points"_a = nb::none(), "format"_a,
        "Decodes unpacked codes (Quantize.h dequantize) to float32.");
  m.def("pack_codes", &packCodes, "codes"_a, "bits"_a,
        "Packs unpacked uint8 codes into qlr.pack's int8 storage (Packing.h: "
        "each row a little-endian bit stream).");
  m.def("_unpack_codes", &unpackCodes, "packed"_a, "shape"_a, "bits"_a,
        "Unpacks packed storage (as uint8) of codes of logical `shape`.");
  m.def("_gptq", &gptq, "w"_a, "hessian"_a, "format"_a, "damp"_a = 0.01,
        "block_size"_a = 128, "act_order"_a = false, "clip_search"_a = false,
        "refit_rounds"_a = 0,
        "GPTQ (GPTQ.h quantizeGPTQ); the fields of a QuantizedTensor.");
  m.def("hessian", &hessian, "x"_a,
        "GPTQ's Hessian H = (2/N) XᵀX (k x k, float64) of the N x k inputs "
        "`x` (GPTQ.h HessianAccumulator).");
  m.def("hessian_error", &hessianError, "w"_a, "wq"_a, "hessian"_a,
        "tr((W - Wq) H (W - Wq)ᵀ): the layer-output error GPTQ minimises "
        "(GPTQ.h hessianWeightedError).");
  m.def("_loftq", &loftq, "w"_a, "format"_a, "rank"_a, "iterations"_a,
        "LoftQ (LowRank.h loftq): (QuantizedTensor fields, A, B, errors).");
  m.def("singular_values", &singularValues, "w"_a,
        "The singular values of matrix `w`, descending (float64).");
  m.def("truncated_svd", &truncatedSVD, "w"_a, "rank"_a,
        "The best rank-`rank` approximation of `w` as balanced factors "
        "(A [m, r], B [r, n]) with A·B ≈ w (LowRank.h truncatedSVD).");
  m.def("basis_scores", &basisScores, "w"_a, "gram"_a = nb::none(),
        "Basis Selection scores (BasisSelect.h) of the min(m, n) SVD bases "
        "u_i v_iᵀ of `w` (m x n, rows = outputs), in singular-value order: "
        "energy scores σ_i² v_iᵀ G v_i for the inputs' gram matrix `gram` "
        "(n x n, e.g. hessian(x)), or magnitude scores σ_i² without it.");
  m.def("top_bases", &topBases, "scores"_a, "count"_a,
        "The indices of the `count` highest scores, highest first (ties: "
        "lower index first).");
  m.def(
      "break_even_rank",
      [](int64_t m, int64_t n) {
        if (m <= 0 || n <= 0)
          valueError("dimensions must be positive");
        return numerics::breakEvenRank(m, n);
      },
      "m"_a, "n"_a,
      "The rank from which a factorized m x n layer stores no fewer "
      "parameters than the dense one: floor(m·n / (m + n)).");
  m.def("allocate_ranks", &allocateRanks, "layers"_a, "ratio"_a,
        "min_rank"_a = 1,
        "Allocates ranks to layers [(m, n, scores), ...] under the budget "
        "floor(ratio · Σ m·n) (BasisSelect.h allocateRanks). Returns a dict: "
        "ranks, dense (layers left unfactorized), budget, params.");
  m.def("basis_factors", &basisFactors, "w"_a, "kept"_a, "gram"_a = nb::none(),
        "refit"_a = false, "min_pivot"_a = 1e-10, "damp"_a = 1e-6,
        "The factors (A [m, r], B [r, n]) of the kept bases of `w`: "
        "balanced U_K Σ_K^½, Σ_K^½ V_Kᵀ, or with refit=True the least-squares "
        "refit on the layer outputs for the inputs' gram matrix "
        "(BasisSelect.h basisFactors / refitFactors).");
  m.def(
      "normal_float_codebook",
      [](unsigned bits) {
        if (bits < 2 || bits > 8)
          valueError("bits must be 2-8");
        std::vector<float> table = numerics::normalFloatCodebook(bits);
        int64_t n = table.size();
        return toNumpy(std::move(table), {n});
      },
      "bits"_a, "The NormalFloat codebook of 2^bits values (NF4 for 4).");
  m.def(
      "codebook",
      [](const std::string &text) {
        ParsedFormat format = parseFormat(text);
        llvm::SmallVector<float> table = format.attr.getCodebook();
        int64_t n = table.size();
        return toNumpy(std::vector<float>(table.begin(), table.end()), {n});
      },
      "format"_a,
      "The value table of a codebook format (nf/lut); empty for integer "
      "grids.");
}
