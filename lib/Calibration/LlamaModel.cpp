//===- LlamaModel.cpp - Float32 LLaMA engine for calibration -*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#include "qlr/Calibration/LlamaModel.h"
#include "qlr/Numerics/Simd.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/ADT/Twine.h"

#include "llvm/Support/ErrorHandling.h"
#include "llvm/Support/raw_ostream.h"

#include <cblas.h>
#include <dlfcn.h>

#include <algorithm>
#include <cassert>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <thread>

using namespace qlr::calibration;
using llvm::ArrayRef;
using llvm::MutableArrayRef;

// Hot loops are compiled three times, for the baseline target, x86-64-v3
// (AVX2, FMA) and x86-64-v4 (AVX-512), and dispatch() runs the copy for
// numerics::simdLevel(): the widest level the CPU supports, capped by
// QLR_MAX_SIMD. The library needs no -march flags. A kernel is an
// always_inline function: inlined into a wrapper with a target attribute,
// the compiler vectorises its loops for that instruction set.
#define QLR_KERNEL __attribute__((always_inline)) inline
#if defined(__GNUC__) && defined(__x86_64__)
#define QLR_X86_DISPATCH 1
#define QLR_TARGET_V3 "avx2,fma,bmi,bmi2,f16c,lzcnt,movbe,popcnt"
#define QLR_TARGET_V4                                                          \
  QLR_TARGET_V3 ",avx512f,avx512bw,avx512cd,avx512dq,avx512vl"
#else
#define QLR_X86_DISPATCH 0
#endif

//===----------------------------------------------------------------------===//
// Helpers
//===----------------------------------------------------------------------===//

namespace {

unsigned numThreads() {
  static const unsigned n = std::max(1u, std::thread::hardware_concurrency());
  return n;
}

/// Splits [0, n) into one contiguous chunk per thread and runs fn(begin,
/// end) on each; the caller's thread takes the first chunk.
void parallelFor(int64_t n, llvm::function_ref<void(int64_t, int64_t)> fn) {
  int64_t threads = std::min<int64_t>(numThreads(), n);
  if (threads <= 1) {
    if (n > 0)
      fn(0, n);
    return;
  }
  llvm::SmallVector<std::thread> workers;
  auto chunk = [&](int64_t t) { return n * t / threads; };
  for (int64_t t = 1; t < threads; ++t)
    workers.emplace_back([&, t] { fn(chunk(t), chunk(t + 1)); });
  fn(0, chunk(1));
  for (std::thread &worker : workers)
    worker.join();
}

#if QLR_X86_DISPATCH
template <auto Kernel, typename... Args>
__attribute__((target(QLR_TARGET_V4))) void runAVX512(Args... args) {
  Kernel(args...);
}
template <auto Kernel, typename... Args>
__attribute__((target(QLR_TARGET_V3))) void runAVX2(Args... args) {
  Kernel(args...);
}
#endif

/// Runs Kernel compiled for numerics::simdLevel().
template <auto Kernel, typename... Args> void dispatch(Args... args) {
#if QLR_X86_DISPATCH
  switch (qlr::numerics::simdLevel()) {
  case qlr::numerics::SimdLevel::AVX512:
    return runAVX512<Kernel>(args...);
  case qlr::numerics::SimdLevel::AVX2:
    return runAVX2<Kernel>(args...);
  case qlr::numerics::SimdLevel::Portable:
    break;
  }
#endif
  Kernel(args...);
}

/// sum_i a[i] * b[i] with 16 independent partial sums (vectorizable).
QLR_KERNEL float dot(const float *a, const float *b, int64_t n) {
  float acc[16] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; ++j)
      acc[j] += a[i + j] * b[i + j];
  float sum = 0;
  for (; i < n; ++i)
    sum += a[i] * b[i];
  for (int j = 0; j < 16; ++j)
    sum += acc[j];
  return sum;
}

/// y = x / sqrt(mean(x^2) + eps) * w over rows [begin, end) of width dim,
/// in float32 as the qlr.rms_norm lowering (the sum is accumulated in
/// double).
QLR_KERNEL void rmsNormRows(const float *x, const float *w, float *y,
                            int64_t begin, int64_t end, int64_t dim,
                            float eps) {
  for (int64_t r = begin; r < end; ++r) {
    const float *in = x + r * dim;
    float *out = y + r * dim;
    double sum = 0;
    for (int64_t c = 0; c < dim; ++c)
      sum += double(in[c]) * double(in[c]);
    float mean = float(sum) / float(dim);
    float inv = 1.0f / std::sqrt(mean + eps);
    for (int64_t c = 0; c < dim; ++c)
      out[c] = in[c] * inv * w[c];
  }
}

void rmsNorm(const Activations &x, ArrayRef<float> weight, float eps,
             Activations &y) {
  y.sequences = x.sequences;
  y.seqLen = x.seqLen;
  y.width = x.width;
  y.data.resize(x.data.size());
  parallelFor(x.rows(), [&](int64_t begin, int64_t end) {
    dispatch<rmsNormRows>(x.data.data(), weight.data(), y.data.data(), begin,
                          end, x.width, eps);
  });
}

/// An empty [rows, width] activation shaped like `like`.
Activations shaped(const Activations &like, int64_t width) {
  Activations a;
  a.sequences = like.sequences;
  a.seqLen = like.seqLen;
  a.width = width;
  a.data.resize(like.rows() * width);
  return a;
}

/// Interleaved rotary embedding in place on `x` [rows, heads * headDim]:
/// row r is at position offset + r % seqLen.
void applyRope(Activations &x, int64_t headDim, int64_t offset,
               ArrayRef<float> cosTable, ArrayRef<float> sinTable) {
  int64_t half = headDim / 2, width = x.width, seqLen = x.seqLen;
  parallelFor(x.rows(), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      int64_t pos = offset + r % seqLen;
      const float *cosRow = cosTable.data() + pos * half;
      const float *sinRow = sinTable.data() + pos * half;
      float *row = x.data.data() + r * width;
      for (int64_t c = 0; c < width; c += 2) {
        int64_t i = (c % headDim) / 2;
        float x0 = row[c], x1 = row[c + 1], cs = cosRow[i], sn = sinRow[i];
        float selfCos0 = x0 * cs, partnerSin0 = x1 * sn;
        float selfCos1 = x1 * cs, partnerSin1 = x0 * sn;
        row[c] = selfCos0 - partnerSin0;
        row[c + 1] = partnerSin1 + selfCos1;
      }
    }
  });
}

/// Floats per register-blocked chunk in the attention loops.
constexpr int64_t kLanes = 16;

/// Causal attention of one sequence and one key/value head over `seqLen`
/// positions. q rows have stride qStride (the group's query heads start at
/// q), k and v rows stride kvStride; out like q. `kt` holds headDim *
/// seqLen floats of scratch and `scores` seqLen.
QLR_KERNEL void attendPrefill(const float *q, const float *k, const float *v,
                              float *out, int64_t seqLen, int64_t group,
                              int64_t headDim, int64_t qStride,
                              int64_t kvStride, float scale, float *kt,
                              float *scores) {
  // Keys transposed to [headDim, seqLen], so that the scores of one query
  // are axpy's over contiguous memory.
  for (int64_t s = 0; s < seqLen; ++s)
    for (int64_t e = 0; e < headDim; ++e)
      kt[e * seqLen + s] = k[s * kvStride + e];
  for (int64_t j = 0; j < group; ++j) {
    for (int64_t t = 0; t < seqLen; ++t) {
      const float *qRow = q + t * qStride + j * headDim;
      int64_t visible = t + 1;
      // Scores in register-sized chunks of keys (a chunk may run past the
      // visible keys, up to seqLen; those scores are not used).
      for (int64_t s0 = 0; s0 < visible; s0 += kLanes) {
        float acc[kLanes] = {};
        if (s0 + kLanes <= seqLen) {
          for (int64_t e = 0; e < headDim; ++e) {
            float qe = qRow[e];
            const float *ktRow = kt + e * seqLen + s0;
            for (int64_t i = 0; i < kLanes; ++i)
              acc[i] += qe * ktRow[i];
          }
          for (int64_t i = 0; i < kLanes; ++i)
            scores[s0 + i] = acc[i] * scale;
        } else {
          int64_t n = seqLen - s0;
          for (int64_t e = 0; e < headDim; ++e) {
            float qe = qRow[e];
            const float *ktRow = kt + e * seqLen + s0;
            for (int64_t i = 0; i < n; ++i)
              acc[i] += qe * ktRow[i];
          }
          for (int64_t i = 0; i < n; ++i)
            scores[s0 + i] = acc[i] * scale;
        }
      }
      float maximum = -std::numeric_limits<float>::infinity();
      for (int64_t s = 0; s < visible; ++s)
        maximum = std::max(maximum, scores[s]);
      float sum = 0;
      for (int64_t s = 0; s < visible; ++s) {
        scores[s] = std::exp(scores[s] - maximum);
        sum += scores[s];
      }
      float *outRow = out + t * qStride + j * headDim;
      int64_t e0 = 0;
      for (; e0 + kLanes <= headDim; e0 += kLanes) {
        float acc[kLanes] = {};
        for (int64_t s = 0; s < visible; ++s) {
          float weight = scores[s];
          const float *vRow = v + s * kvStride + e0;
          for (int64_t i = 0; i < kLanes; ++i)
            acc[i] += weight * vRow[i];
        }
        for (int64_t i = 0; i < kLanes; ++i)
          outRow[e0 + i] = acc[i] / sum;
      }
      for (int64_t e = e0; e < headDim; ++e) {
        float acc = 0;
        for (int64_t s = 0; s < visible; ++s)
          acc += scores[s] * v[s * kvStride + e];
        outRow[e] = acc / sum;
      }
    }
  }
}

/// One query row per head attending to `visible` cached rows: q and out
/// [group * headDim], k and v rows of stride kvStride.
QLR_KERNEL void attendDecode(const float *q, const float *k, const float *v,
                             float *out, int64_t visible, int64_t group,
                             int64_t headDim, int64_t kvStride, float scale,
                             float *scores) {
  for (int64_t j = 0; j < group; ++j) {
    const float *qRow = q + j * headDim;
    float maximum = -std::numeric_limits<float>::infinity();
    for (int64_t s = 0; s < visible; ++s) {
      scores[s] = dot(qRow, k + s * kvStride, headDim) * scale;
      maximum = std::max(maximum, scores[s]);
    }
    float sum = 0;
    for (int64_t s = 0; s < visible; ++s) {
      scores[s] = std::exp(scores[s] - maximum);
      sum += scores[s];
    }
    float *outRow = out + j * headDim;
    std::fill(outRow, outRow + headDim, 0.0f);
    for (int64_t s = 0; s < visible; ++s) {
      float weight = scores[s];
      const float *vRow = v + s * kvStride;
      for (int64_t e = 0; e < headDim; ++e)
        outRow[e] += weight * vRow[e];
    }
    for (int64_t e = 0; e < headDim; ++e)
      outRow[e] /= sum;
  }
}

/// out[i] = silu(gate[i]) * up[i] = gate / (1 + exp(-gate)) * up.
QLR_KERNEL void swigluRange(const float *gate, const float *up, float *out,
                            int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) {
    float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

/// OpenBLAS, loaded on first use. OpenBLAS picks its kernels for the CPU
/// when it is loaded, and falls back to SSE3 ("Prescott") kernels on CPUs it
/// does not know (including some virtual machines reporting recent Xeons),
/// which are about 5x slower. Loading it ourselves lets us name the kernels
/// the CPU supports in OPENBLAS_CORETYPE first, unless the user set it.
struct OpenBLAS {
  decltype(&cblas_sgemm) sgemm = nullptr;
  const char *(*corename)() = nullptr;
};

/// The OpenBLAS kernels for an instruction-set level. Portable names the
/// SSE3 kernels explicitly rather than letting OpenBLAS detect the CPU, so
/// that portable runs use the same kernels on every machine.
const char *openBLASCore(qlr::numerics::SimdLevel level) {
  switch (level) {
  case qlr::numerics::SimdLevel::AVX512:
    return "SkylakeX";
  case qlr::numerics::SimdLevel::AVX2:
    return "Haswell";
  case qlr::numerics::SimdLevel::Portable:
    return "Prescott";
  }
  llvm_unreachable("unknown SIMD level");
}

const OpenBLAS &openBLAS() {
  static const OpenBLAS blas = [] {
    void *handle = dlopen(QLR_OPENBLAS_LIBRARY, RTLD_NOW | RTLD_NOLOAD);
    bool alreadyLoaded = handle != nullptr;
    const char *wanted = openBLASCore(qlr::numerics::simdLevel());
    if (!alreadyLoaded && !std::getenv("OPENBLAS_CORETYPE"))
      setenv("OPENBLAS_CORETYPE", wanted, 0);
    if (!handle)
      handle = dlopen(QLR_OPENBLAS_LIBRARY, RTLD_NOW | RTLD_GLOBAL);
    if (!handle)
      handle = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_GLOBAL);
    if (!handle)
      llvm::report_fatal_error(llvm::Twine("cannot load OpenBLAS (") +
                               QLR_OPENBLAS_LIBRARY + "): " + dlerror());
    OpenBLAS b;
    b.sgemm =
        reinterpret_cast<decltype(&cblas_sgemm)>(dlsym(handle, "cblas_sgemm"));
    b.corename = reinterpret_cast<const char *(*)()>(
        dlsym(handle, "openblas_get_corename"));
    if (!b.sgemm)
      llvm::report_fatal_error("OpenBLAS has no cblas_sgemm");
    // OpenBLAS's threaded sgemm sums in an order that depends on its thread
    // count (measured: GPTQ output changes with OPENBLAS_NUM_THREADS), i.e.
    // on the machine's core count. At the portable level it runs on one
    // thread, so that results are the same on every machine.
    if (qlr::numerics::simdLevel() == qlr::numerics::SimdLevel::Portable) {
      auto setThreads = reinterpret_cast<void (*)(int)>(
          dlsym(handle, "openblas_set_num_threads"));
      if (!setThreads)
        llvm::report_fatal_error("OpenBLAS has no openblas_set_num_threads");
      setThreads(1);
    }
    if (b.corename && !llvm::StringRef(b.corename()).equals_insensitive(wanted))
      llvm::errs() << "warning: OpenBLAS runs its " << b.corename()
                   << " kernels where QLR's instruction-set level "
                   << qlr::numerics::simdLevelName(qlr::numerics::simdLevel())
                   << " wants " << wanted
                   << (alreadyLoaded ? " (OpenBLAS was loaded before QLR "
                                       "could choose)"
                                     : " (OPENBLAS_CORETYPE is set)")
                   << ": calibration may be slower or differ from other "
                      "machines in the last bits\n";
    return b;
  }();
  return blas;
}

/// y (+)= x W^T through sgemm; beta 0 overwrites y, 1 accumulates.
void gemm(const float *x, int64_t rows, int64_t in, const float *weight,
          int64_t out, float *y, float beta) {
  if (rows == 0 || out == 0)
    return;
  openBLAS().sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(rows), int(out),
                   int(in), 1.0f, x, int(in), weight, int(in), beta, y,
                   int(out));
}

/// c = aᵀ b for row-major a [rows, wa] and b [rows, wb] through sgemm, with
/// the transpose left to sgemm's packing (no copy of a or b).
void gemmTransposedA(const float *a, int64_t rows, int64_t wa, const float *b,
                     int64_t wb, float *c) {
  if (wa == 0 || wb == 0)
    return;
  openBLAS().sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(wa), int(wb),
                   int(rows), 1.0f, a, int(wa), b, int(wb), 0.0f, c, int(wb));
}

/// Keys and values of the positions processed so far, for decoding.
struct KVCache {
  int64_t capacity = 0, width = 0;
  /// [sequences, capacity, width] per layer.
  std::vector<std::vector<float>> keys, values;
};

/// How a block's attention sees keys and values.
struct AttentionMode {
  /// Decoding: one row per sequence at position `offset`, with keys/values
  /// of earlier positions in `cache`; null for a causal prefill of whole
  /// sequences.
  KVCache *cache = nullptr;
  int64_t layer = 0;
  int64_t offset = 0;
};

/// The shared body of forwardBlock and the decoding step. `weights` is read
/// after every observer call, so weights changed there are used.
Activations
runBlock(const LlamaConfig &cfg, const BlockWeights &weights,
         const Activations &x, ArrayRef<float> cosTable,
         ArrayRef<float> sinTable, const AttentionMode &mode,
         llvm::function_ref<void(LinearGroup, const Activations &)> observer) {
  int64_t rows = x.rows(), dim = cfg.dim, e = cfg.headDim;
  int64_t qWidth = cfg.heads * e, kvWidth = cfg.kvHeads * e;
  int64_t group = cfg.heads / cfg.kvHeads;
  float eps = float(cfg.normEps);
  float scale = float(1.0 / std::sqrt(double(e)));

  Activations h;
  rmsNorm(x, weights.attentionNorm, eps, h);
  if (observer)
    observer(LinearGroup::QKV, h);
  Activations q = shaped(x, qWidth), k = shaped(x, kvWidth),
              v = shaped(x, kvWidth);
  gemm(h.data.data(), rows, dim, weights.wq.data(), qWidth, q.data.data(), 0);
  gemm(h.data.data(), rows, dim, weights.wk.data(), kvWidth, k.data.data(), 0);
  gemm(h.data.data(), rows, dim, weights.wv.data(), kvWidth, v.data.data(), 0);
  applyRope(q, e, mode.offset, cosTable, sinTable);
  applyRope(k, e, mode.offset, cosTable, sinTable);

  Activations mix = shaped(x, qWidth);
  if (!mode.cache) {
    int64_t seqLen = x.seqLen;
    parallelFor(x.sequences * cfg.kvHeads, [&](int64_t begin, int64_t end) {
      std::vector<float> kt(e * seqLen), scores(seqLen);
      for (int64_t job = begin; job < end; ++job) {
        int64_t seq = job / cfg.kvHeads, head = job % cfg.kvHeads;
        int64_t firstRow = seq * seqLen;
        dispatch<attendPrefill>(
            q.data.data() + firstRow * qWidth + head * group * e,
            k.data.data() + firstRow * kvWidth + head * e,
            v.data.data() + firstRow * kvWidth + head * e,
            mix.data.data() + firstRow * qWidth + head * group * e, seqLen,
            group, e, qWidth, kvWidth, scale, kt.data(), scores.data());
      }
    });
  } else {
    KVCache &cache = *mode.cache;
    std::vector<float> &keys = cache.keys[mode.layer];
    std::vector<float> &values = cache.values[mode.layer];
    int64_t pos = mode.offset;
    for (int64_t seq = 0; seq < rows; ++seq) {
      int64_t at = (seq * cache.capacity + pos) * kvWidth;
      std::copy_n(k.data.data() + seq * kvWidth, kvWidth, keys.data() + at);
      std::copy_n(v.data.data() + seq * kvWidth, kvWidth, values.data() + at);
    }
    parallelFor(rows * cfg.kvHeads, [&](int64_t begin, int64_t end) {
      std::vector<float> scores(pos + 1);
      for (int64_t job = begin; job < end; ++job) {
        int64_t seq = job / cfg.kvHeads, head = job % cfg.kvHeads;
        int64_t base = seq * cache.capacity * kvWidth + head * e;
        dispatch<attendDecode>(
            q.data.data() + seq * qWidth + head * group * e, keys.data() + base,
            values.data() + base,
            mix.data.data() + seq * qWidth + head * group * e, pos + 1, group,
            e, kvWidth, scale, scores.data());
      }
    });
  }
  if (observer)
    observer(LinearGroup::Output, mix);
  Activations y = x;
  gemm(mix.data.data(), rows, qWidth, weights.wo.data(), dim, y.data.data(), 1);

  rmsNorm(y, weights.ffnNorm, eps, h);
  if (observer)
    observer(LinearGroup::GateUp, h);
  int64_t hidden = cfg.hiddenDim;
  Activations gate = shaped(x, hidden), up = shaped(x, hidden);
  gemm(h.data.data(), rows, dim, weights.w1.data(), hidden, gate.data.data(),
       0);
  gemm(h.data.data(), rows, dim, weights.w3.data(), hidden, up.data.data(), 0);
  parallelFor(rows, [&](int64_t begin, int64_t end) {
    dispatch<swigluRange>(gate.data.data(), up.data.data(), gate.data.data(),
                          begin * hidden, end * hidden);
  });
  up = Activations();
  if (observer)
    observer(LinearGroup::Down, gate);
  gemm(gate.data.data(), rows, hidden, weights.w2.data(), dim, y.data.data(),
       1);
  return y;
}

llvm::Error sizeError(const llvm::Twine &what, size_t actual,
                      int64_t expected) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                 what + " has " + llvm::Twine(actual) +
                                     " elements, expected " +
                                     llvm::Twine(expected));
}

/// Index of the largest value, the lowest on ties.
int64_t argmax(const float *values, int64_t n) {
  return std::max_element(values, values + n) - values;
}

} // namespace

//===----------------------------------------------------------------------===//
// Public API
//===----------------------------------------------------------------------===//

llvm::StringRef qlr::calibration::stringifyLinearGroup(LinearGroup group) {
  switch (group) {
  case LinearGroup::QKV:
    return "qkv";
  case LinearGroup::Output:
    return "output";
  case LinearGroup::GateUp:
    return "gate_up";
  case LinearGroup::Down:
    return "down";
  }
  llvm_unreachable("unknown linear group");
}

/// (2 / rows) * aᵀb: one sgemm in float, scaled in double; zeros when there
/// are no rows.
static std::vector<double> scaledGram(const Activations &a,
                                      const Activations &b) {
  if (a.rows() == 0)
    return std::vector<double>(a.width * b.width, 0.0);
  std::vector<float> product(a.width * b.width, 0.0f);
  gemmTransposedA(a.data.data(), a.rows(), a.width, b.data.data(), b.width,
                  product.data());
  double scale = 2.0 / double(a.rows());
  std::vector<double> result(a.width * b.width);
  for (size_t i = 0; i < product.size(); ++i)
    result[i] = scale * product[i];
  return result;
}

std::vector<double> qlr::calibration::inputHessian(const Activations &x) {
  return scaledGram(x, x);
}

std::vector<double> qlr::calibration::crossCovariance(const Activations &a,
                                                      const Activations &b) {
  assert(a.rows() == b.rows() && "row count mismatch");
  return scaledGram(a, b);
}

void qlr::calibration::linear(ArrayRef<float> x, int64_t rows, int64_t in,
                              ArrayRef<float> weight, int64_t out,
                              MutableArrayRef<float> y) {
  assert(int64_t(x.size()) == rows * in && "input size");
  assert(int64_t(weight.size()) == out * in && "weight size");
  assert(int64_t(y.size()) == rows * out && "output size");
  gemm(x.data(), rows, in, weight.data(), out, y.data(), 0);
}

LlamaModel::LlamaModel(LlamaConfig config, LlamaWeights weights)
    : cfg(config), w(std::move(weights)) {
  // The importer's rotary tables: float(cos(p * theta^(-2i/E))) in double.
  int64_t half = cfg.headDim / 2;
  ropeCos.resize(cfg.maxSeqLen * half);
  ropeSin.resize(cfg.maxSeqLen * half);
  double theta = double(float(cfg.ropeTheta));
  for (int64_t i = 0; i < half; ++i) {
    double freq = std::pow(theta, -2.0 * i / double(cfg.headDim));
    for (int64_t p = 0; p < cfg.maxSeqLen; ++p) {
      ropeCos[p * half + i] = float(std::cos(p * freq));
      ropeSin[p * half + i] = float(std::sin(p * freq));
    }
  }
}

llvm::Expected<LlamaModel> LlamaModel::create(LlamaConfig config,
                                              LlamaWeights weights) {
  auto fail = [](const llvm::Twine &message) -> llvm::Error {
    return llvm::createStringError(llvm::inconvertibleErrorCode(), message);
  };
  const LlamaConfig &c = config;
  if (c.dim <= 0 || c.headDim <= 0 || c.heads <= 0 || c.kvHeads <= 0 ||
      c.hiddenDim <= 0 || c.layers <= 0 || c.vocabSize <= 0 || c.maxSeqLen <= 0)
    return fail("model dimensions must be positive");
  if (c.heads % c.kvHeads != 0)
    return fail(llvm::Twine(c.kvHeads) + " key/value heads do not divide " +
                llvm::Twine(c.heads) + " heads");
  if (c.headDim % 2 != 0)
    return fail("rotary embeddings need an even head dimension, got " +
                llvm::Twine(c.headDim));
  if (!(c.normEps >= 0) || !(c.ropeTheta > 0))
    return fail("norm epsilon must be >= 0 and rope theta > 0");
  if (c.vocabSize > std::numeric_limits<int32_t>::max())
    return fail("vocabulary too large for int32 tokens");

  int64_t qWidth = c.heads * c.headDim, kvWidth = c.kvHeads * c.headDim;
  auto check = [&](const llvm::Twine &name, const std::vector<float> &v,
                   int64_t expected) -> llvm::Error {
    if (int64_t(v.size()) != expected)
      return sizeError(name, v.size(), expected);
    return llvm::Error::success();
  };
  if (llvm::Error err =
          check("tok_embeddings", weights.tokEmbeddings, c.vocabSize * c.dim))
    return std::move(err);
  if (int64_t(weights.blocks.size()) != c.layers)
    return fail("got " + llvm::Twine(weights.blocks.size()) +
                " blocks for a model of " + llvm::Twine(c.layers) + " layers");
  for (auto [i, b] : llvm::enumerate(weights.blocks)) {
    std::string prefix = "layers." + std::to_string(i) + ".";
    std::pair<const char *, std::pair<const std::vector<float> *, int64_t>>
        expected[] = {
            {"attention_norm", {&b.attentionNorm, c.dim}},
            {"attention.wq", {&b.wq, qWidth * c.dim}},
            {"attention.wk", {&b.wk, kvWidth * c.dim}},
            {"attention.wv", {&b.wv, kvWidth * c.dim}},
            {"attention.wo", {&b.wo, c.dim * qWidth}},
            {"ffn_norm", {&b.ffnNorm, c.dim}},
            {"feed_forward.w1", {&b.w1, c.hiddenDim * c.dim}},
            {"feed_forward.w2", {&b.w2, c.dim * c.hiddenDim}},
            {"feed_forward.w3", {&b.w3, c.hiddenDim * c.dim}},
        };
    for (auto &[name, tensor] : expected)
      if (llvm::Error err = check(prefix + name, *tensor.first, tensor.second))
        return std::move(err);
  }
  if (llvm::Error err = check("norm", weights.norm, c.dim))
    return std::move(err);
  if (c.tiedEmbeddings) {
    if (!weights.output.empty())
      return fail("output must be empty when the embeddings are tied");
  } else if (llvm::Error err =
                 check("output", weights.output, c.vocabSize * c.dim)) {
    return std::move(err);
  }
  return LlamaModel(config, std::move(weights));
}

BlockWeights &LlamaModel::block(int64_t i) {
  assert(i >= 0 && i < cfg.layers && "block index out of range");
  return w.blocks[i];
}

ArrayRef<float> LlamaModel::classifier() const {
  return cfg.tiedEmbeddings ? w.tokEmbeddings : w.output;
}

Activations LlamaModel::embed(ArrayRef<int32_t> tokens, int64_t sequences,
                              int64_t seqLen) const {
  assert(int64_t(tokens.size()) == sequences * seqLen && "token count");
  Activations x;
  x.sequences = sequences;
  x.seqLen = seqLen;
  x.width = cfg.dim;
  x.data.resize(tokens.size() * cfg.dim);
  for (auto [r, token] : llvm::enumerate(tokens)) {
    assert(token >= 0 && token < cfg.vocabSize && "token out of range");
    std::copy_n(w.tokEmbeddings.data() + int64_t(token) * cfg.dim, cfg.dim,
                x.data.data() + r * cfg.dim);
  }
  return x;
}

Activations LlamaModel::forwardBlock(
    int64_t i, const Activations &x,
    llvm::function_ref<void(LinearGroup, const Activations &)> observer) {
  assert(i >= 0 && i < cfg.layers && "block index out of range");
  assert(x.width == cfg.dim && x.rows() * x.width == int64_t(x.data.size()) &&
         "activation shape");
  assert(x.seqLen <= cfg.maxSeqLen && "sequence longer than maxSeqLen");
  return runBlock(cfg, w.blocks[i], x, ropeCos, ropeSin, AttentionMode(),
                  observer);
}

Activations LlamaModel::forward(ArrayRef<int32_t> tokens, int64_t sequences,
                                int64_t seqLen) const {
  assert(seqLen <= cfg.maxSeqLen && "sequence longer than maxSeqLen");
  Activations x = embed(tokens, sequences, seqLen);
  for (const BlockWeights &b : w.blocks)
    x = runBlock(cfg, b, x, ropeCos, ropeSin, AttentionMode(), nullptr);
  return x;
}

void LlamaModel::logitsRows(const Activations &x, int64_t first, int64_t rows,
                            MutableArrayRef<float> out) const {
  assert(int64_t(out.size()) == rows * cfg.vocabSize && "logits size");
  std::vector<float> normed(rows * cfg.dim);
  const float *in = x.data.data() + first * cfg.dim;
  parallelFor(rows, [&](int64_t begin, int64_t end) {
    dispatch<rmsNormRows>(in, w.norm.data(), normed.data(), begin, end, cfg.dim,
                          float(cfg.normEps));
  });
  gemm(normed.data(), rows, cfg.dim, classifier().data(), cfg.vocabSize,
       out.data(), 0);
}

std::vector<float> LlamaModel::logits(const Activations &x) const {
  assert(x.width == cfg.dim && "activation width");
  std::vector<float> out(x.rows() * cfg.vocabSize);
  logitsRows(x, 0, x.rows(), out);
  return out;
}

std::vector<int32_t> LlamaModel::generate(int64_t sequences, int64_t seqLen,
                                          uint64_t seed, int64_t greedyTokens,
                                          double temperature) const {
  assert(sequences >= 0 && seqLen >= 0 && seqLen <= cfg.maxSeqLen &&
         "generate shape");
  std::vector<int32_t> tokens(sequences * seqLen);
  if (tokens.empty())
    return tokens;
  std::mt19937_64 rng(seed);
  for (int64_t s = 0; s < sequences; ++s)
    tokens[s * seqLen] = int32_t(rng() % uint64_t(cfg.vocabSize));

  KVCache cache;
  cache.capacity = seqLen;
  cache.width = cfg.kvHeads * cfg.headDim;
  cache.keys.assign(cfg.layers,
                    std::vector<float>(sequences * seqLen * cache.width));
  cache.values = cache.keys;
  std::vector<float> logitsBuffer(sequences * cfg.vocabSize);
  std::vector<double> probabilities(cfg.vocabSize);
  for (int64_t pos = 0; pos + 1 < seqLen; ++pos) {
    std::vector<int32_t> current(sequences);
    for (int64_t s = 0; s < sequences; ++s)
      current[s] = tokens[s * seqLen + pos];
    Activations x = embed(current, sequences, 1);
    for (int64_t layer = 0; layer < cfg.layers; ++layer) {
      AttentionMode mode;
      mode.cache = &cache;
      mode.layer = layer;
      mode.offset = pos;
      x = runBlock(cfg, w.blocks[layer], x, ropeCos, ropeSin, mode, nullptr);
    }
    logitsRows(x, 0, sequences, logitsBuffer);
    bool greedy = pos < greedyTokens || temperature <= 0;
    for (int64_t s = 0; s < sequences; ++s) {
      const float *row = logitsBuffer.data() + s * cfg.vocabSize;
      int64_t next;
      if (greedy) {
        next = argmax(row, cfg.vocabSize);
      } else {
        float maximum = *std::max_element(row, row + cfg.vocabSize);
        double sum = 0;
        for (int64_t v = 0; v < cfg.vocabSize; ++v) {
          probabilities[v] =
              std::exp((double(row[v]) - double(maximum)) / temperature);
          sum += probabilities[v];
        }
        // A uniform double in [0, 1) from the top 53 bits of one draw.
        double u = double(rng() >> 11) * 0x1.0p-53 * sum;
        next = cfg.vocabSize - 1;
        double cumulative = 0;
        for (int64_t v = 0; v < cfg.vocabSize; ++v) {
          cumulative += probabilities[v];
          if (u < cumulative) {
            next = v;
            break;
          }
        }
      }
      tokens[s * seqLen + pos + 1] = int32_t(next);
    }
  }
  return tokens;
}

double LlamaModel::perplexity(ArrayRef<int32_t> tokens, int64_t sequences,
                              int64_t seqLen) const {
  assert(seqLen >= 2 && "perplexity needs at least two tokens per sequence");
  Activations x = forward(tokens, sequences, seqLen);
  double nll = 0;
  int64_t vocab = cfg.vocabSize;
  std::vector<float> rowLogits(seqLen * vocab);
  for (int64_t s = 0; s < sequences; ++s) {
    logitsRows(x, s * seqLen, seqLen, rowLogits);
    for (int64_t t = 0; t + 1 < seqLen; ++t) {
      const float *row = rowLogits.data() + t * vocab;
      float maximum = *std::max_element(row, row + vocab);
      double sum = 0;
      for (int64_t v = 0; v < vocab; ++v)
        sum += std::exp(double(row[v]) - double(maximum));
      int32_t target = tokens[s * seqLen + t + 1];
      nll += std::log(sum) + double(maximum) - double(row[target]);
    }
  }
  return std::exp(nll / double(sequences * (seqLen - 1)));
}
