//===- NormTweak.cpp - Numerics of Norm Tweaking --------------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// The forward and backward pass of a LLaMA block with respect to its norm
// weights, the Norm Tweaking losses, Adam, and stand-alone norms.
//
// Matrix products: double goes through Eigen. Float goes through packed
// micro-kernels (GotoBLAS-style blocking, written with GCC/Clang vector
// extensions) compiled for AVX2+FMA and AVX-512 with function target
// attributes and chosen at run time; Eigen is the portable fallback. Eigen
// itself cannot be compiled for a wider ISA in this translation unit only:
// its inline functions would clash with the baseline copies instantiated by
// the other files of the library (ODR).
//
//===----------------------------------------------------------------------===//

#include "qlr/Numerics/NormTweak.h"

#include "EigenTypes.h"

#include "llvm/ADT/STLFunctionalExtras.h"
#include "llvm/ADT/SmallVector.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstring>
#include <thread>
#include <type_traits>
#include <utility>

using namespace qlr::numerics;
using llvm::ArrayRef;
using llvm::MutableArrayRef;

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define QLR_NORMTWEAK_X86_KERNELS 1
#else
#define QLR_NORMTWEAK_X86_KERNELS 0
#endif

namespace {

//===----------------------------------------------------------------------===//
// Threads
//===----------------------------------------------------------------------===//

/// Splits [0, n) into at most `threads` contiguous chunks and runs
/// fn(worker, begin, end) on each, the caller's thread taking worker 0.
void parallelFor(unsigned threads, int64_t n,
                 llvm::function_ref<void(unsigned, int64_t, int64_t)> fn) {
  int64_t count = std::min<int64_t>(threads, n);
  if (count <= 1) {
    if (n > 0)
      fn(0, 0, n);
    return;
  }
  llvm::SmallVector<std::thread> workers;
  auto chunk = [&](int64_t t) { return n * t / count; };
  for (int64_t t = 1; t < count; ++t)
    workers.emplace_back([&, t] { fn(unsigned(t), chunk(t), chunk(t + 1)); });
  fn(0, 0, chunk(1));
  for (std::thread &worker : workers)
    worker.join();
}

//===----------------------------------------------------------------------===//
// Matrix products
//===----------------------------------------------------------------------===//

/// A matrix operand: element (i, j) is p[i * ld + j], or p[j * ld + i] when
/// `trans` (i.e. the transpose of a row-major matrix with leading dimension
/// ld).
template <typename T> struct Operand {
  const T *p;
  int64_t ld;
  bool trans;
};

/// Packing buffers of one thread (float micro-kernels only).
struct PackBuffers {
  std::vector<float> a, b;
};

/// C (+)= A B through Eigen: A is m x k, B k x n, C m x n with leading
/// dimension ldc.
template <typename T>
void gemmEigen(int64_t m, int64_t n, int64_t k, Operand<T> a, Operand<T> b,
               T *c, int64_t ldc, bool accumulate) {
  using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using ConstMap = Eigen::Map<const Mat, 0, Eigen::OuterStride<>>;
  Eigen::Map<Mat, 0, Eigen::OuterStride<>> cm(c, m, n,
                                              Eigen::OuterStride<>(ldc));
  auto product = [&](const auto &am) {
    if (b.trans) {
      ConstMap bm(b.p, n, k, Eigen::OuterStride<>(b.ld));
      if (accumulate)
        cm.noalias() += am * bm.transpose();
      else
        cm.noalias() = am * bm.transpose();
    } else {
      ConstMap bm(b.p, k, n, Eigen::OuterStride<>(b.ld));
      if (accumulate)
        cm.noalias() += am * bm;
      else
        cm.noalias() = am * bm;
    }
  };
  if (a.trans)
    product(ConstMap(a.p, k, m, Eigen::OuterStride<>(a.ld)).transpose());
  else
    product(ConstMap(a.p, m, k, Eigen::OuterStride<>(a.ld)));
}

// Blocking of the packed float products: a KC x NC panel of B and an MC x KC
// panel of A are packed, then MR x NR tiles of C are computed by the
// micro-kernel from MR x KC and KC x NR slivers.
constexpr int64_t kKC = 256;
constexpr int64_t kMC = 96;   // A multiple of every MR below.
constexpr int64_t kNC = 2048; // Covers every width of the SmolLM2 shapes.
constexpr int64_t kMaxNR = 32;

#if QLR_NORMTWEAK_X86_KERNELS

#define QLR_ALWAYS_INLINE inline __attribute__((always_inline))

typedef float Vec8 __attribute__((vector_size(32)));
typedef float Vec16 __attribute__((vector_size(64)));

/// Packs rows [p0, p0 + kc) x columns [j0, j0 + nc) of B into slivers of NR
/// columns, each stored [kc][NR], zero-padding the last sliver.
template <int NR>
QLR_ALWAYS_INLINE void packB(Operand<float> b, int64_t p0, int64_t kc,
                             int64_t j0, int64_t nc, float *dst) {
  for (int64_t jr = 0; jr < nc; jr += NR, dst += NR * kc) {
    int64_t cols = std::min<int64_t>(NR, nc - jr);
    if (b.trans) {
      for (int64_t j = 0; j < NR; ++j) {
        if (j < cols) {
          const float *src = b.p + (j0 + jr + j) * b.ld + p0;
          for (int64_t p = 0; p < kc; ++p)
            dst[p * NR + j] = src[p];
        } else {
          for (int64_t p = 0; p < kc; ++p)
            dst[p * NR + j] = 0.0f;
        }
      }
    } else if (cols == NR) {
      for (int64_t p = 0; p < kc; ++p)
        std::memcpy(dst + p * NR, b.p + (p0 + p) * b.ld + j0 + jr,
                    NR * sizeof(float));
    } else {
      for (int64_t p = 0; p < kc; ++p) {
        const float *src = b.p + (p0 + p) * b.ld + j0 + jr;
        for (int64_t j = 0; j < NR; ++j)
          dst[p * NR + j] = j < cols ? src[j] : 0.0f;
      }
    }
  }
}

/// Packs rows [i0, i0 + mc) x columns [p0, p0 + kc) of A into slivers of MR
/// rows, each stored [kc][MR], zero-padding the last sliver: the packing of
/// the columns of Aᵀ.
template <int MR>
QLR_ALWAYS_INLINE void packA(Operand<float> a, int64_t i0, int64_t mc,
                             int64_t p0, int64_t kc, float *dst) {
  packB<MR>(Operand<float>{a.p, a.ld, !a.trans}, p0, kc, i0, mc, dst);
}

/// C[0:rows, 0:cols] (+)= Ap Bp for an MR x kc sliver of A and a kc x NR
/// sliver of B (NR = NV vectors of V), with MR x NR accumulators held in
/// registers.
template <typename V, int MR, int NV>
QLR_ALWAYS_INLINE void microKernel(int64_t kc, const float *ap, const float *bp,
                                   float *c, int64_t ldc, bool accumulate,
                                   int64_t rows, int64_t cols) {
  constexpr int W = sizeof(V) / sizeof(float);
  constexpr int NR = NV * W;
  V acc[MR][NV];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j)
      acc[i][j] = V{};
  for (int64_t p = 0; p < kc; ++p) {
    V bv[NV];
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j)
      std::memcpy(&bv[j], bp + p * NR + j * W, sizeof(V));
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      // x - (+0) is x for every x (a broadcast, unlike 0 + x).
      V av = ap[p * MR + i] - V{};
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j)
        acc[i][j] += av * bv[j];
    }
  }
  if (rows == MR && cols == NR) {
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) {
        float *dst = c + i * ldc + j * W;
        if (accumulate) {
          V old;
          std::memcpy(&old, dst, sizeof(V));
          acc[i][j] += old;
        }
        std::memcpy(dst, &acc[i][j], sizeof(V));
      }
    return;
  }
  float tile[MR * NR];
  std::memcpy(tile, acc, sizeof(tile));
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) {
      float value = tile[i * NR + j];
      c[i * ldc + j] = accumulate ? c[i * ldc + j] + value : value;
    }
}

/// C (+)= A B with packed operands; `bufA` holds kMC * kKC floats and `bufB`
/// kKC * round_up(min(n, kNC), NR).
template <typename V, int MR, int NV>
QLR_ALWAYS_INLINE void
gemmPacked(int64_t m, int64_t n, int64_t k, Operand<float> a, Operand<float> b,
           float *c, int64_t ldc, bool accumulate, float *bufA, float *bufB) {
  constexpr int NR = NV * int(sizeof(V) / sizeof(float));
  for (int64_t jc = 0; jc < n; jc += kNC) {
    int64_t nc = std::min(kNC, n - jc);
    for (int64_t pc = 0; pc < k; pc += kKC) {
      int64_t kc = std::min(kKC, k - pc);
      bool acc = accumulate || pc > 0;
      packB<NR>(b, pc, kc, jc, nc, bufB);
      for (int64_t ic = 0; ic < m; ic += kMC) {
        int64_t mc = std::min(kMC, m - ic);
        packA<MR>(a, ic, mc, pc, kc, bufA);
        for (int64_t jr = 0; jr < nc; jr += NR)
          for (int64_t ir = 0; ir < mc; ir += MR)
            microKernel<V, MR, NV>(kc, bufA + ir * kc, bufB + jr * kc,
                                   c + (ic + ir) * ldc + jc + jr, ldc, acc,
                                   std::min<int64_t>(MR, mc - ir),
                                   std::min<int64_t>(NR, nc - jr));
      }
    }
  }
}

__attribute__((target("avx512f,avx2,fma"))) void
gemmAVX512(int64_t m, int64_t n, int64_t k, Operand<float> a, Operand<float> b,
           float *c, int64_t ldc, bool accumulate, float *bufA, float *bufB) {
  gemmPacked<Vec16, 12, 2>(m, n, k, a, b, c, ldc, accumulate, bufA, bufB);
}

__attribute__((target("avx2,fma"))) void
gemmAVX2(int64_t m, int64_t n, int64_t k, Operand<float> a, Operand<float> b,
         float *c, int64_t ldc, bool accumulate, float *bufA, float *bufB) {
  gemmPacked<Vec8, 6, 2>(m, n, k, a, b, c, ldc, accumulate, bufA, bufB);
}

#endif // QLR_NORMTWEAK_X86_KERNELS

/// C (+)= A B on one thread, with the kernels of `level` (float) or Eigen.
template <typename T>
void gemm(SimdLevel level, PackBuffers &buffers, int64_t m, int64_t n,
          int64_t k, Operand<T> a, Operand<T> b, T *c, int64_t ldc,
          bool accumulate) {
  if (m <= 0 || n <= 0)
    return;
  if (k <= 0) {
    if (!accumulate)
      for (int64_t i = 0; i < m; ++i)
        std::fill_n(c + i * ldc, n, T(0));
    return;
  }
#if QLR_NORMTWEAK_X86_KERNELS
  if constexpr (std::is_same_v<T, float>) {
    if (level != SimdLevel::Portable) {
      size_t needA = kMC * kKC;
      size_t needB = kKC * ((std::min(n, kNC) + kMaxNR - 1) / kMaxNR * kMaxNR);
      if (buffers.a.size() < needA)
        buffers.a.resize(needA);
      if (buffers.b.size() < needB)
        buffers.b.resize(needB);
      if (level == SimdLevel::AVX512)
        gemmAVX512(m, n, k, a, b, c, ldc, accumulate, buffers.a.data(),
                   buffers.b.data());
      else
        gemmAVX2(m, n, k, a, b, c, ldc, accumulate, buffers.a.data(),
                 buffers.b.data());
      return;
    }
  }
#endif
  gemmEigen(m, n, k, a, b, c, ldc, accumulate);
}

/// Column blocks of a parallel product: multiples of every NR.
constexpr int64_t kColumnGrain = 64;

//===----------------------------------------------------------------------===//
// Norm helpers
//===----------------------------------------------------------------------===//

/// y = x * inv * w per row with inv = 1 / sqrt(mean(x^2) + eps), the sum of
/// squares in double and the rest in T (LlamaModel's float arithmetic for T
/// = float). Writes inv per row when `invOut` is set.
template <typename T>
void rmsNormRows(const T *x, int64_t rows, int64_t width, const T *w, T eps,
                 T *y, T *invOut) {
  for (int64_t r = 0; r < rows; ++r) {
    const T *in = x + r * width;
    T *out = y + r * width;
    double sum = 0;
    for (int64_t c = 0; c < width; ++c)
      sum += double(in[c]) * double(in[c]);
    T mean = T(sum) / T(width);
    T inv = T(1) / std::sqrt(mean + eps);
    for (int64_t c = 0; c < width; ++c)
      out[c] = in[c] * inv * w[c];
    if (invOut)
      invOut[r] = inv;
  }
}

/// The backward of rmsNormRows given each row's inv: dw (double, [width])
/// += sum_r dy * x * inv, and dx = inv (w dy) - x inv^3 <w dy, x> / width
/// when dx is set (dx may alias dy; it is then overwritten).
template <typename T>
void rmsNormRowsBackward(const T *x, int64_t rows, int64_t width, const T *w,
                         const T *inv, const T *dy, T *dx, double *dw) {
  for (int64_t r = 0; r < rows; ++r) {
    const T *in = x + r * width;
    const T *g = dy + r * width;
    T s = inv[r];
    double dot = 0;
    for (int64_t c = 0; c < width; ++c) {
      double gw = double(g[c]) * double(w[c]);
      dot += gw * double(in[c]);
      if (dw)
        dw[c] += double(g[c]) * double(in[c]) * double(s);
    }
    if (!dx)
      continue;
    T k = T(dot * double(s) * double(s) * double(s) / double(width));
    T *out = dx + r * width;
    for (int64_t c = 0; c < width; ++c)
      out[c] = s * (g[c] * w[c]) - in[c] * k;
  }
}

/// The mean of the `width` values at `in` and 1 / sqrt(their biased variance
/// + eps), in double: the statistics of one LayerNorm row.
template <typename T>
std::pair<double, double> layerNormRowStats(const T *in, int64_t width,
                                            double eps) {
  double mean = 0, var = 0;
  for (int64_t c = 0; c < width; ++c)
    mean += double(in[c]);
  mean /= double(width);
  for (int64_t c = 0; c < width; ++c)
    var += (double(in[c]) - mean) * (double(in[c]) - mean);
  return {mean, 1.0 / std::sqrt(var / double(width) + eps)};
}

template <typename T> int sign(T x) { return (x > 0) - (x < 0); }

} // namespace

//===----------------------------------------------------------------------===//
// LlamaBlockBackprop
//===----------------------------------------------------------------------===//

template <typename T> class LlamaBlockBackprop<T>::Impl {
public:
  Impl(const LlamaBlockShape &shape, unsigned threads, SimdLevel maxSimd);

  void forward(const LlamaBlockParams<T> &p, ArrayRef<T> x, int64_t sequences,
               int64_t seqLen, MutableArrayRef<T> y);
  void backward(ArrayRef<T> dy, MutableArrayRef<T> dAttentionNorm,
                MutableArrayRef<T> dFfnNorm);

  LlamaBlockShape shape;
  unsigned threads;
  SimdLevel level;

private:
  /// Scratch of one thread.
  struct Worker {
    PackBuffers pack;
    std::vector<T> scores, dscores;
  };

  /// y (+)= x W^T for x [rows, in] (stride in) and W [out, in]; parallel
  /// over column blocks.
  void linear(const T *x, int64_t in, const T *w, int64_t out, T *y,
              bool accumulate);
  /// dx (+)= dy W for dy [rows, out] and W [out, in].
  void linearBackward(const T *dy, int64_t out, const T *w, int64_t in, T *dx,
                      bool accumulate);
  void parallelColumns(int64_t n,
                       llvm::function_ref<void(Worker &, int64_t, int64_t)> fn);

  /// Rotates (inverse = false) or counter-rotates (inverse = true, the
  /// backward) the heads of `data` [rows, width] in place.
  void rope(T *data, int64_t width, bool inverse);
  void ensureRopeTables(int64_t seqLen);

  /// The softmax probabilities of query rows [t0, t0 + bq) of query head j in
  /// sequence s against keys [0, t0 + bq) into `probs` ([bq, t0 + bq]),
  /// zero past the diagonal. With `record`, stores each row's maximum and
  /// sum in `stats`; otherwise reads them from there (so the backward
  /// recomputes exactly the forward's probabilities).
  void probabilities(Worker &worker, int64_t s, int64_t j, int64_t t0,
                     int64_t bq, T *probs, bool record);
  void attentionForward(Worker &worker, int64_t s, int64_t g);
  void attentionBackward(Worker &worker, int64_t s, int64_t g);

  int64_t qWidth, kvWidth, group;
  T scale;
  std::vector<Worker> workers;

  // The last forward.
  int64_t sequences = 0, seqLen = 0, rows = 0;
  bool haveForward = false;
  const T *wq = nullptr, *wk = nullptr, *wv = nullptr, *wo = nullptr,
          *w1 = nullptr, *w2 = nullptr, *w3 = nullptr;
  std::vector<T> attentionNorm, ffnNorm;
  std::vector<T> x, inv1, q, k, v, x2, inv2, gate, up;
  /// [rows, heads, 2]: maximum scaled score and sum of exponentials.
  std::vector<T> stats;
  /// [seqLen, headDim / 2].
  std::vector<T> ropeCos, ropeSin;
  int64_t ropeRows = 0;

  // Workspace.
  std::vector<T> h, mix, dq, dk, dv, dgate, dup, dh, dx2;
  std::vector<double> dwAccumulator;
};

/// Query rows per attention block (keys beyond a block's last query are
/// skipped).
constexpr int64_t kQueryBlock = 64;

template <typename T>
LlamaBlockBackprop<T>::Impl::Impl(const LlamaBlockShape &shape,
                                  unsigned threads, SimdLevel maxSimd)
    : shape(shape), threads(std::max(1u, threads)),
      level(std::is_same_v<T, float> ? std::min(maxSimd, detectSimdLevel())
                                     : SimdLevel::Portable) {
  assert(shape.dim > 0 && shape.headDim > 0 && shape.heads > 0 &&
         shape.kvHeads > 0 && shape.hiddenDim > 0 && "positive block sizes");
  assert(shape.headDim % 2 == 0 && "rotary embeddings need an even headDim");
  assert(shape.heads % shape.kvHeads == 0 && "kvHeads must divide heads");
  assert(shape.normEps >= 0 && shape.ropeTheta > 0 && "eps and theta");
  qWidth = shape.heads * shape.headDim;
  kvWidth = shape.kvHeads * shape.headDim;
  group = shape.heads / shape.kvHeads;
  scale = T(1.0 / std::sqrt(double(shape.headDim)));
  workers.resize(this->threads);
}

template <typename T>
void LlamaBlockBackprop<T>::Impl::parallelColumns(
    int64_t n, llvm::function_ref<void(Worker &, int64_t, int64_t)> fn) {
  int64_t blocks = (n + kColumnGrain - 1) / kColumnGrain;
  parallelFor(threads, blocks, [&](unsigned w, int64_t begin, int64_t end) {
    fn(workers[w], begin * kColumnGrain, std::min(n, end * kColumnGrain));
  });
}

template <typename T>
void LlamaBlockBackprop<T>::Impl::linear(const T *xs, int64_t in, const T *w,
                                         int64_t out, T *y, bool accumulate) {
  parallelColumns(out, [&](Worker &worker, int64_t j0, int64_t j1) {
    gemm<T>(level, worker.pack, rows, j1 - j0, in, {xs, in, false},
            {w + j0 * in, in, true}, y + j0, out, accumulate);
  });
}

template <typename T>
void LlamaBlockBackprop<T>::Impl::linearBackward(const T *dys, int64_t out,
                                                 const T *w, int64_t in, T *dx,
                                                 bool accumulate) {
  parallelColumns(in, [&](Worker &worker, int64_t j0, int64_t j1) {
    gemm<T>(level, worker.pack, rows, j1 - j0, out, {dys, out, false},
            {w + j0, in, false}, dx + j0, in, accumulate);
  });
}

template <typename T>
void LlamaBlockBackprop<T>::Impl::ensureRopeTables(int64_t length) {
  if (ropeRows == length)
    return;
  // As LlamaModel: float(cos(p * theta^(-2i/E))) computed in double from
  // float(theta) for float; all in double for double.
  int64_t e = shape.headDim, half = e / 2;
  double theta = std::is_same_v<T, float> ? double(float(shape.ropeTheta))
                                          : shape.ropeTheta;
  ropeCos.resize(length * half);
  ropeSin.resize(length * half);
  for (int64_t i = 0; i < half; ++i) {
    double freq = std::pow(theta, -2.0 * double(i) / double(e));
    for (int64_t p = 0; p < length; ++p) {
      ropeCos[p * half + i] = T(std::cos(double(p) * freq));
      ropeSin[p * half + i] = T(std::sin(double(p) * freq));
    }
  }
  ropeRows = length;
}

template <typename T>
void LlamaBlockBackprop<T>::Impl::rope(T *data, int64_t width, bool inverse) {
  int64_t e = shape.headDim, half = e / 2;
  for (int64_t r = 0; r < rows; ++r) {
    int64_t pos = r % seqLen;
    const T *cosRow = ropeCos.data() + pos * half;
    const T *sinRow = ropeSin.data() + pos * half;
    T *row = data + r * width;
    for (int64_t c = 0; c < width; c += 2) {
      int64_t i = (c % e) / 2;
      T x0 = row[c], x1 = row[c + 1], cs = cosRow[i], sn = sinRow[i];
      if (!inverse) {
        row[c] = x0 * cs - x1 * sn;
        row[c + 1] = x0 * sn + x1 * cs;
      } else {
        row[c] = x0 * cs + x1 * sn;
        row[c + 1] = x1 * cs - x0 * sn;
      }
    }
  }
}

template <typename T>
void LlamaBlockBackprop<T>::Impl::probabilities(Worker &worker, int64_t s,
                                                int64_t j, int64_t t0,
                                                int64_t bq, T *probs,
                                                bool record) {
  int64_t e = shape.headDim, g = j / group, t1 = t0 + bq;
  int64_t firstRow = s * seqLen;
  const T *qs = q.data() + (firstRow + t0) * qWidth + j * e;
  const T *ks = k.data() + firstRow * kvWidth + g * e;
  gemm<T>(level, worker.pack, bq, t1, e, {qs, qWidth, false},
          {ks, kvWidth, true}, probs, t1, false);
  for (int64_t i = 0; i < bq; ++i) {
    T *row = probs + i * t1;
    int64_t visible = t0 + i + 1;
    T *stat = stats.data() + ((firstRow + t0 + i) * shape.heads + j) * 2;
    for (int64_t c = 0; c < visible; ++c)
      row[c] *= scale;
    T maximum, sum;
    if (record) {
      maximum = *std::max_element(row, row + visible);
      sum = 0;
      for (int64_t c = 0; c < visible; ++c) {
        row[c] = std::exp(row[c] - maximum);
        sum += row[c];
      }
      stat[0] = maximum;
      stat[1] = sum;
    } else {
      maximum = stat[0];
      sum = stat[1];
      for (int64_t c = 0; c < visible; ++c)
        row[c] = std::exp(row[c] - maximum);
    }
    T invSum = T(1) / sum;
    for (int64_t c = 0; c < visible; ++c)
      row[c] *= invSum;
    std::fill(row + visible, row + t1, T(0));
  }
}

template <typename T>
void LlamaBlockBackprop<T>::Impl::attentionForward(Worker &worker, int64_t s,
                                                   int64_t g) {
  int64_t e = shape.headDim, firstRow = s * seqLen;
  worker.scores.resize(kQueryBlock * seqLen);
  const T *vs = v.data() + firstRow * kvWidth + g * e;
  for (int64_t j = g * group; j < (g + 1) * group; ++j)
    for (int64_t t0 = 0; t0 < seqLen; t0 += kQueryBlock) {
      int64_t bq = std::min(kQueryBlock, seqLen - t0), t1 = t0 + bq;
      T *probs = worker.scores.data();
      probabilities(worker, s, j, t0, bq, probs, /*record=*/true);
      gemm<T>(level, worker.pack, bq, e, t1, {probs, t1, false},
              {vs, kvWidth, false},
              mix.data() + (firstRow + t0) * qWidth + j * e, qWidth, false);
    }
}

template <typename T>
void LlamaBlockBackprop<T>::Impl::attentionBackward(Worker &worker, int64_t s,
                                                    int64_t g) {
  // With P = softmax(S), S = scale q k^T and O = P v, given dO (in mix):
  //   dP = dO v^T, dv += P^T dO, dS = P * (dP - rowsum(P * dP)),
  //   dq = scale dS k, dk += scale dS^T q.
  int64_t e = shape.headDim, firstRow = s * seqLen;
  worker.scores.resize(kQueryBlock * seqLen);
  worker.dscores.resize(kQueryBlock * seqLen);
  const T *ks = k.data() + firstRow * kvWidth + g * e;
  const T *vs = v.data() + firstRow * kvWidth + g * e;
  T *dks = dk.data() + firstRow * kvWidth + g * e;
  T *dvs = dv.data() + firstRow * kvWidth + g * e;
  for (int64_t r = 0; r < seqLen; ++r) {
    std::fill_n(dks + r * kvWidth, e, T(0));
    std::fill_n(dvs + r * kvWidth, e, T(0));
  }
  for (int64_t j = g * group; j < (g + 1) * group; ++j)
    for (int64_t t0 = 0; t0 < seqLen; t0 += kQueryBlock) {
      int64_t bq = std::min(kQueryBlock, seqLen - t0), t1 = t0 + bq;
      T *probs = worker.scores.data(), *dprobs = worker.dscores.data();
      const T *qs = q.data() + (firstRow + t0) * qWidth + j * e;
      const T *dout = mix.data() + (firstRow + t0) * qWidth + j * e;
      probabilities(worker, s, j, t0, bq, probs, /*record=*/false);
      gemm<T>(level, worker.pack, bq, t1, e, {dout, qWidth, false},
              {vs, kvWidth, true}, dprobs, t1, false);
      gemm<T>(level, worker.pack, t1, e, bq, {probs, t1, true},
              {dout, qWidth, false}, dvs, kvWidth, true);
      for (int64_t i = 0; i < bq; ++i) {
        const T *p = probs + i * t1;
        T *d = dprobs + i * t1;
        int64_t visible = t0 + i + 1;
        double dot = 0;
        for (int64_t c = 0; c < visible; ++c)
          dot += double(p[c]) * double(d[c]);
        T rowDot = T(dot);
        for (int64_t c = 0; c < visible; ++c)
          d[c] = p[c] * (d[c] - rowDot) * scale;
        std::fill(d + visible, d + t1, T(0));
      }
      gemm<T>(level, worker.pack, bq, e, t1, {dprobs, t1, false},
              {ks, kvWidth, false},
              dq.data() + (firstRow + t0) * qWidth + j * e, qWidth, false);
      gemm<T>(level, worker.pack, t1, e, bq, {dprobs, t1, true},
              {qs, qWidth, false}, dks, kvWidth, true);
    }
}

template <typename T>
void LlamaBlockBackprop<T>::Impl::forward(const LlamaBlockParams<T> &p,
                                          ArrayRef<T> xs, int64_t numSequences,
                                          int64_t length,
                                          MutableArrayRef<T> y) {
  int64_t dim = shape.dim, hidden = shape.hiddenDim;
  assert(numSequences >= 0 && length >= 0 && "sequence counts");
  assert(int64_t(p.attentionNorm.size()) == dim &&
         int64_t(p.ffnNorm.size()) == dim && "norm weight size");
  assert(int64_t(p.wq.size()) == qWidth * dim && "wq size");
  assert(int64_t(p.wk.size()) == kvWidth * dim && "wk size");
  assert(int64_t(p.wv.size()) == kvWidth * dim && "wv size");
  assert(int64_t(p.wo.size()) == dim * qWidth && "wo size");
  assert(int64_t(p.w1.size()) == hidden * dim && "w1 size");
  assert(int64_t(p.w2.size()) == dim * hidden && "w2 size");
  assert(int64_t(p.w3.size()) == hidden * dim && "w3 size");
  sequences = numSequences;
  seqLen = length;
  rows = sequences * seqLen;
  assert(int64_t(xs.size()) == rows * dim && "input size");
  assert(int64_t(y.size()) == rows * dim && "output size");
  wq = p.wq.data();
  wk = p.wk.data();
  wv = p.wv.data();
  wo = p.wo.data();
  w1 = p.w1.data();
  w2 = p.w2.data();
  w3 = p.w3.data();
  attentionNorm.assign(p.attentionNorm.begin(), p.attentionNorm.end());
  ffnNorm.assign(p.ffnNorm.begin(), p.ffnNorm.end());
  x.assign(xs.begin(), xs.end());
  haveForward = true;
  if (rows == 0)
    return;
  ensureRopeTables(seqLen);
  T eps = T(shape.normEps);

  // Attention.
  inv1.resize(rows);
  h.resize(rows * dim);
  rmsNormRows(x.data(), rows, dim, attentionNorm.data(), eps, h.data(),
              inv1.data());
  q.resize(rows * qWidth);
  k.resize(rows * kvWidth);
  v.resize(rows * kvWidth);
  linear(h.data(), dim, wq, qWidth, q.data(), false);
  linear(h.data(), dim, wk, kvWidth, k.data(), false);
  linear(h.data(), dim, wv, kvWidth, v.data(), false);
  rope(q.data(), qWidth, /*inverse=*/false);
  rope(k.data(), kvWidth, /*inverse=*/false);
  mix.resize(rows * qWidth);
  stats.resize(rows * shape.heads * 2);
  parallelFor(threads, sequences * shape.kvHeads,
              [&](unsigned w, int64_t begin, int64_t end) {
                for (int64_t job = begin; job < end; ++job)
                  attentionForward(workers[w], job / shape.kvHeads,
                                   job % shape.kvHeads);
              });
  x2 = x;
  linear(mix.data(), qWidth, wo, dim, x2.data(), true);

  // Feed-forward.
  inv2.resize(rows);
  rmsNormRows(x2.data(), rows, dim, ffnNorm.data(), eps, h.data(), inv2.data());
  gate.resize(rows * hidden);
  up.resize(rows * hidden);
  linear(h.data(), dim, w1, hidden, gate.data(), false);
  linear(h.data(), dim, w3, hidden, up.data(), false);
  // The activation silu(gate) * up, in backward's workspace dgate.
  dgate.resize(rows * hidden);
  const T *gates = gate.data(), *ups = up.data();
  T *activation = dgate.data();
  for (int64_t i = 0; i < rows * hidden; ++i) {
    T g = gates[i];
    activation[i] = g / (T(1) + std::exp(-g)) * ups[i];
  }
  std::copy(x2.begin(), x2.end(), y.begin());
  linear(dgate.data(), hidden, w2, dim, y.data(), true);
}

template <typename T>
void LlamaBlockBackprop<T>::Impl::backward(ArrayRef<T> dy,
                                           MutableArrayRef<T> dAttentionNorm,
                                           MutableArrayRef<T> dFfnNorm) {
  int64_t dim = shape.dim, hidden = shape.hiddenDim;
  assert(haveForward && "backward needs a forward first");
  assert(int64_t(dy.size()) == rows * dim && "output gradient size");
  assert(int64_t(dAttentionNorm.size()) == dim &&
         int64_t(dFfnNorm.size()) == dim && "norm gradient size");
  std::fill(dAttentionNorm.begin(), dAttentionNorm.end(), T(0));
  std::fill(dFfnNorm.begin(), dFfnNorm.end(), T(0));
  if (rows == 0)
    return;

  // Feed-forward: y = x2 + a w2^T with a = silu(g) * u, g = h2 w1^T and
  // u = h2 w3^T, h2 = rms_norm(x2, ffnNorm).
  dgate.resize(rows * hidden);
  dup.resize(rows * hidden);
  linearBackward(dy.data(), dim, w2, hidden, dgate.data(), false);
  const T *gates = gate.data(), *ups = up.data();
  T *dgates = dgate.data(), *dups = dup.data();
  for (int64_t i = 0; i < rows * hidden; ++i) {
    T g = gates[i], da = dgates[i];
    T sigmoid = T(1) / (T(1) + std::exp(-g));
    dups[i] = da * g * sigmoid;
    dgates[i] = da * ups[i] * sigmoid * (T(1) + g * (T(1) - sigmoid));
  }
  dh.resize(rows * dim);
  linearBackward(dgate.data(), hidden, w1, dim, dh.data(), false);
  linearBackward(dup.data(), hidden, w3, dim, dh.data(), true);
  dwAccumulator.assign(dim, 0.0);
  dx2.resize(rows * dim);
  rmsNormRowsBackward(x2.data(), rows, dim, ffnNorm.data(), inv2.data(),
                      dh.data(), dx2.data(), dwAccumulator.data());
  for (int64_t c = 0; c < dim; ++c)
    dFfnNorm[c] = T(dwAccumulator[c]);
  T *dx2s = dx2.data();
  for (int64_t i = 0; i < rows * dim; ++i)
    dx2s[i] += dy[i];

  // Attention: x2 = x + o wo^T, o = attention(rope(h1 wq^T), rope(h1 wk^T),
  // h1 wv^T), h1 = rms_norm(x, attentionNorm). d o goes to `mix`.
  linearBackward(dx2.data(), dim, wo, qWidth, mix.data(), false);
  dq.resize(rows * qWidth);
  dk.resize(rows * kvWidth);
  dv.resize(rows * kvWidth);
  parallelFor(threads, sequences * shape.kvHeads,
              [&](unsigned w, int64_t begin, int64_t end) {
                for (int64_t job = begin; job < end; ++job)
                  attentionBackward(workers[w], job / shape.kvHeads,
                                    job % shape.kvHeads);
              });
  rope(dq.data(), qWidth, /*inverse=*/true);
  rope(dk.data(), kvWidth, /*inverse=*/true);
  linearBackward(dq.data(), qWidth, wq, dim, dh.data(), false);
  linearBackward(dk.data(), kvWidth, wk, dim, dh.data(), true);
  linearBackward(dv.data(), kvWidth, wv, dim, dh.data(), true);
  dwAccumulator.assign(dim, 0.0);
  rmsNormRowsBackward<T>(x.data(), rows, dim, attentionNorm.data(), inv1.data(),
                         dh.data(), nullptr, dwAccumulator.data());
  for (int64_t c = 0; c < dim; ++c)
    dAttentionNorm[c] = T(dwAccumulator[c]);
}

template <typename T>
LlamaBlockBackprop<T>::LlamaBlockBackprop(const LlamaBlockShape &shape,
                                          unsigned threads, SimdLevel maxSimd)
    : impl(std::make_unique<Impl>(shape, threads, maxSimd)) {}

template <typename T> LlamaBlockBackprop<T>::~LlamaBlockBackprop() = default;

template <typename T>
LlamaBlockBackprop<T>::LlamaBlockBackprop(LlamaBlockBackprop &&) noexcept =
    default;

template <typename T>
LlamaBlockBackprop<T> &
LlamaBlockBackprop<T>::operator=(LlamaBlockBackprop &&) noexcept = default;

template <typename T>
const LlamaBlockShape &LlamaBlockBackprop<T>::shape() const {
  return impl->shape;
}

template <typename T> SimdLevel LlamaBlockBackprop<T>::simdLevel() const {
  return impl->level;
}

template <typename T>
void LlamaBlockBackprop<T>::forward(const LlamaBlockParams<T> &p, ArrayRef<T> x,
                                    int64_t sequences, int64_t seqLen,
                                    MutableArrayRef<T> y) {
  impl->forward(p, x, sequences, seqLen, y);
}

template <typename T>
void LlamaBlockBackprop<T>::backward(ArrayRef<T> dy,
                                     MutableArrayRef<T> dAttentionNorm,
                                     MutableArrayRef<T> dFfnNorm) {
  impl->backward(dy, dAttentionNorm, dFfnNorm);
}

template class qlr::numerics::LlamaBlockBackprop<float>;
template class qlr::numerics::LlamaBlockBackprop<double>;

//===----------------------------------------------------------------------===//
// Loss
//===----------------------------------------------------------------------===//

template <typename T>
double qlr::numerics::normTweakLoss(NormTweakLoss kind, ArrayRef<T> yq,
                                    ArrayRef<T> yf, int64_t rows,
                                    int64_t channels, MutableArrayRef<T> grad) {
  assert(rows >= 1 && channels >= 1 && "loss shape");
  assert(int64_t(yq.size()) == rows * channels &&
         int64_t(yf.size()) == rows * channels && "loss input size");
  assert((grad.empty() || int64_t(grad.size()) == rows * channels) &&
         "loss gradient size");
  double n = double(rows);
  if (kind == NormTweakLoss::MeanSquared) {
    double count = n * double(channels), sum = 0;
    for (int64_t i = 0; i < rows * channels; ++i) {
      double d = double(yq[i]) - double(yf[i]);
      sum += d * d;
      if (!grad.empty())
        grad[i] = T(2.0 * d / count);
    }
    return sum / count;
  }

  // Channel means, then biased variances (two passes, in double).
  std::vector<double> muq(channels, 0.0), muf(channels, 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < channels; ++c) {
      muq[c] += double(yq[r * channels + c]);
      muf[c] += double(yf[r * channels + c]);
    }
  for (int64_t c = 0; c < channels; ++c) {
    muq[c] /= n;
    muf[c] /= n;
  }
  std::vector<double> varq(channels, 0.0), varf(channels, 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < channels; ++c) {
      double dq = double(yq[r * channels + c]) - muq[c];
      double df = double(yf[r * channels + c]) - muf[c];
      varq[c] += dq * dq;
      varf[c] += df * df;
    }
  double loss = 0;
  std::vector<double> meanSign(channels), varSign(channels);
  for (int64_t c = 0; c < channels; ++c) {
    varq[c] /= n;
    varf[c] /= n;
    loss += std::abs(muf[c] - muq[c]) + std::abs(varf[c] - varq[c]);
    meanSign[c] = double(sign(muq[c] - muf[c]));
    varSign[c] = double(sign(varq[c] - varf[c]));
  }
  double inverse = 1.0 / (n * double(channels));
  if (!grad.empty())
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < channels; ++c) {
        double centered = double(yq[r * channels + c]) - muq[c];
        grad[r * channels + c] =
            T((meanSign[c] + 2.0 * varSign[c] * centered) * inverse);
      }
  return loss / double(channels);
}

template double qlr::numerics::normTweakLoss<float>(NormTweakLoss,
                                                    ArrayRef<float>,
                                                    ArrayRef<float>, int64_t,
                                                    int64_t,
                                                    MutableArrayRef<float>);
template double qlr::numerics::normTweakLoss<double>(NormTweakLoss,
                                                     ArrayRef<double>,
                                                     ArrayRef<double>, int64_t,
                                                     int64_t,
                                                     MutableArrayRef<double>);

//===----------------------------------------------------------------------===//
// Adam
//===----------------------------------------------------------------------===//

AdamOptimizer::AdamOptimizer(size_t size, double lr, double beta1, double beta2,
                             double eps)
    : lr(lr), beta1(beta1), beta2(beta2), eps(eps), m(size, 0.0), v(size, 0.0) {
  assert(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1 && eps >= 0 &&
         "Adam hyper-parameters");
}

void AdamOptimizer::step(MutableArrayRef<float> params, ArrayRef<float> grad) {
  assert(params.size() == m.size() && grad.size() == m.size() &&
         "Adam parameter count");
  ++t;
  double correction1 = 1.0 - std::pow(beta1, double(t));
  double correction2 = 1.0 - std::pow(beta2, double(t));
  for (size_t i = 0; i < m.size(); ++i) {
    double g = grad[i];
    m[i] = beta1 * m[i] + (1.0 - beta1) * g;
    v[i] = beta2 * v[i] + (1.0 - beta2) * g * g;
    double mHat = m[i] / correction1, vHat = v[i] / correction2;
    params[i] = float(double(params[i]) - lr * mHat / (std::sqrt(vHat) + eps));
  }
}

//===----------------------------------------------------------------------===//
// Stand-alone norms
//===----------------------------------------------------------------------===//

template <typename T>
void qlr::numerics::rmsNormForward(ArrayRef<T> x, int64_t rows, int64_t C,
                                   ArrayRef<T> w, double eps,
                                   MutableArrayRef<T> y) {
  assert(rows >= 0 && C > 0 && int64_t(x.size()) == rows * C &&
         int64_t(w.size()) == C && int64_t(y.size()) == rows * C &&
         "rms norm sizes");
  rmsNormRows(x.data(), rows, C, w.data(), T(eps), y.data(),
              static_cast<T *>(nullptr));
}

template <typename T>
void qlr::numerics::rmsNormBackward(ArrayRef<T> x, int64_t rows, int64_t C,
                                    ArrayRef<T> w, double eps, ArrayRef<T> dy,
                                    MutableArrayRef<T> dx,
                                    MutableArrayRef<T> dw) {
  assert(rows >= 0 && C > 0 && int64_t(x.size()) == rows * C &&
         int64_t(w.size()) == C && int64_t(dy.size()) == rows * C &&
         "rms norm sizes");
  assert((dx.empty() || int64_t(dx.size()) == rows * C) &&
         (dw.empty() || int64_t(dw.size()) == C) && "rms norm gradient sizes");
  // inv per row, exactly as the forward computes it.
  std::vector<T> inv(rows);
  T epsT = T(eps);
  for (int64_t r = 0; r < rows; ++r) {
    double sum = 0;
    for (int64_t c = 0; c < C; ++c)
      sum += double(x[r * C + c]) * double(x[r * C + c]);
    T mean = T(sum) / T(C);
    inv[r] = T(1) / std::sqrt(mean + epsT);
  }
  std::vector<double> dwAccumulator(dw.empty() ? 0 : C, 0.0);
  rmsNormRowsBackward(x.data(), rows, C, w.data(), inv.data(), dy.data(),
                      dx.empty() ? nullptr : dx.data(),
                      dw.empty() ? nullptr : dwAccumulator.data());
  for (size_t c = 0; c < dw.size(); ++c)
    dw[c] = T(dwAccumulator[c]);
}

template <typename T>
void qlr::numerics::layerNormForward(ArrayRef<T> x, int64_t rows, int64_t C,
                                     ArrayRef<T> gamma, ArrayRef<T> beta,
                                     double eps, MutableArrayRef<T> y) {
  assert(rows >= 0 && C > 0 && int64_t(x.size()) == rows * C &&
         int64_t(gamma.size()) == C && int64_t(beta.size()) == C &&
         int64_t(y.size()) == rows * C && "layer norm sizes");
  for (int64_t r = 0; r < rows; ++r) {
    const T *in = x.data() + r * C;
    auto [mean, rstd] = layerNormRowStats(in, C, eps);
    for (int64_t c = 0; c < C; ++c)
      y[r * C + c] = T((double(in[c]) - mean) * rstd) * gamma[c] + beta[c];
  }
}

template <typename T>
void qlr::numerics::layerNormBackward(ArrayRef<T> x, int64_t rows, int64_t C,
                                      ArrayRef<T> gamma, ArrayRef<T> beta,
                                      double eps, ArrayRef<T> dy,
                                      MutableArrayRef<T> dx,
                                      MutableArrayRef<T> dgamma,
                                      MutableArrayRef<T> dbeta) {
  assert(rows >= 0 && C > 0 && int64_t(x.size()) == rows * C &&
         int64_t(gamma.size()) == C && int64_t(beta.size()) == C &&
         int64_t(dy.size()) == rows * C && "layer norm sizes");
  assert((dx.empty() || int64_t(dx.size()) == rows * C) &&
         (dgamma.empty() || int64_t(dgamma.size()) == C) &&
         (dbeta.empty() || int64_t(dbeta.size()) == C) &&
         "layer norm gradient sizes");
  // With xhat = (x - mu) rstd and g = dy gamma:
  //   dx = rstd (g - mean(g) - xhat mean(g xhat)),
  //   dgamma = sum_r dy xhat, dbeta = sum_r dy.
  std::vector<double> dgammaSum(C, 0.0), dbetaSum(C, 0.0), xhat(C);
  for (int64_t r = 0; r < rows; ++r) {
    const T *in = x.data() + r * C;
    const T *g = dy.data() + r * C;
    auto [mean, rstd] = layerNormRowStats(in, C, eps);
    double meanG = 0, meanGX = 0;
    for (int64_t c = 0; c < C; ++c) {
      xhat[c] = (double(in[c]) - mean) * rstd;
      double gg = double(g[c]) * double(gamma[c]);
      meanG += gg;
      meanGX += gg * xhat[c];
      dgammaSum[c] += double(g[c]) * xhat[c];
      dbetaSum[c] += double(g[c]);
    }
    meanG /= double(C);
    meanGX /= double(C);
    if (!dx.empty())
      for (int64_t c = 0; c < C; ++c)
        dx[r * C + c] = T(rstd * (double(g[c]) * double(gamma[c]) - meanG -
                                  xhat[c] * meanGX));
  }
  for (size_t c = 0; c < dgamma.size(); ++c)
    dgamma[c] = T(dgammaSum[c]);
  for (size_t c = 0; c < dbeta.size(); ++c)
    dbeta[c] = T(dbetaSum[c]);
}

#define QLR_INSTANTIATE_NORMS(T)                                               \
  template void qlr::numerics::rmsNormForward<T>(                              \
      ArrayRef<T>, int64_t, int64_t, ArrayRef<T>, double, MutableArrayRef<T>); \
  template void qlr::numerics::rmsNormBackward<T>(                             \
      ArrayRef<T>, int64_t, int64_t, ArrayRef<T>, double, ArrayRef<T>,         \
      MutableArrayRef<T>, MutableArrayRef<T>);                                 \
  template void qlr::numerics::layerNormForward<T>(                            \
      ArrayRef<T>, int64_t, int64_t, ArrayRef<T>, ArrayRef<T>, double,         \
      MutableArrayRef<T>);                                                     \
  template void qlr::numerics::layerNormBackward<T>(                           \
      ArrayRef<T>, int64_t, int64_t, ArrayRef<T>, ArrayRef<T>, double,         \
      ArrayRef<T>, MutableArrayRef<T>, MutableArrayRef<T>,                     \
      MutableArrayRef<T>);

QLR_INSTANTIATE_NORMS(float)
QLR_INSTANTIATE_NORMS(double)
