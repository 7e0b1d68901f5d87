//===- Quantize.cpp - Round-to-nearest reference quantizer ----------------===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#include "qlr/Numerics/Quantize.h"
#include "qlr/Numerics/Codebook.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <limits>

using namespace qlr::numerics;

static float maxCode(const QuantFormat &fmt) {
  return float((1u << fmt.bits) - 1);
}

/// Clamps an integral float to the code range [0, 2^bits - 1].
static uint8_t clampToCode(float v, const QuantFormat &fmt) {
  return uint8_t(std::clamp(v, 0.0f, maxCode(fmt)));
}

/// Returns the zero point actually used by uniform formats.
static float effectiveZeroPoint(uint8_t zeroPoint, const QuantFormat &fmt) {
  if (fmt.symmetric)
    return float(1u << (fmt.bits - 1));
  // Exact: a byte divided by a power of two.
  return float(zeroPoint) / float(1u << zeroPointFractionBits(fmt));
}

uint8_t qlr::numerics::quantizeOne(float x, float scale, uint8_t zeroPoint,
                                   const QuantFormat &fmt) {
  assert(std::isfinite(x) && "quantized values must be finite");
  assert(std::isfinite(scale) && scale >= 0 && "invalid scale");
  if (isCodebook(fmt))
    return nearestCodebookIndex(fmt.codebook, scale == 0 ? 0.0f : x / scale);
  float z = effectiveZeroPoint(zeroPoint, fmt);
  if (scale == 0)
    return clampToCode(std::nearbyint(z), fmt);
  if (fmt.fractionalZeroPoint)
    return clampToCode(std::nearbyint(x / scale + z), fmt);
  return clampToCode(std::nearbyint(x / scale) + z, fmt);
}

float qlr::numerics::dequantizeOne(uint8_t code, float scale, uint8_t zeroPoint,
                                   const QuantFormat &fmt) {
  assert(code < (1u << fmt.bits) && "code out of range");
  if (isCodebook(fmt))
    return scale * fmt.codebook[code];
  return scale * (float(code) - effectiveZeroPoint(zeroPoint, fmt));
}

/// Scale (and zero point) of a group whose range is [lo, hi] (lo <= 0 <= hi),
/// by the rules of quantizeRTN.
static std::pair<float, uint8_t> scaleForRange(float lo, float hi,
                                               const QuantFormat &fmt) {
  float qmax = maxCode(fmt);
  float absMax = std::max(-lo, hi);
  float s;
  if (isCodebook(fmt))
    s = absMax;
  else if (fmt.symmetric)
    s = 2.0f * absMax / qmax;
  else
    s = (hi - lo) / qmax;
  s = roundToScaleType(s, fmt.scaleType);
  uint8_t z = 0;
  if (!fmt.symmetric && s != 0) {
    float steps = float(1u << zeroPointFractionBits(fmt));
    z = uint8_t(std::clamp(std::nearbyint(-lo / s * steps), 0.0f,
                           float(maxStoredZeroPoint(fmt))));
  }
  return {s, z};
}

QuantizedData qlr::numerics::quantizeRTN(llvm::ArrayRef<float> x,
                                         llvm::ArrayRef<int64_t> shape,
                                         const QuantFormat &fmt) {
  assert(verifyFormatForShape(fmt, shape).empty() && "invalid format");
  assert(int64_t(x.size()) == numElements(shape) && "element count mismatch");
  int64_t numScales = numElements(scaleShape(fmt, shape));

  // lo = min(0, min x) and hi = max(0, max x) per group; max |x| is
  // max(-lo, hi).
  std::vector<float> lo(numScales, 0.0f), hi(numScales, 0.0f);
  forEachScaleIndex(fmt, shape, [&](int64_t i, int64_t g) {
    lo[g] = std::min(lo[g], x[i]);
    hi[g] = std::max(hi[g], x[i]);
  });

  std::vector<float> scales(numScales);
  std::vector<uint8_t> zeroPoints;
  for (int64_t g = 0; g < numScales; ++g) {
    auto [s, z] = scaleForRange(lo[g], hi[g], fmt);
    scales[g] = s;
    if (!fmt.symmetric)
      zeroPoints.push_back(z);
  }
  return quantizeWithScales(x, shape, fmt, scales, zeroPoints);
}

QuantizedData qlr::numerics::quantizeRTNClipSearch(
    llvm::ArrayRef<float> x, llvm::ArrayRef<int64_t> shape,
    const QuantFormat &fmt, int steps, float minShrink) {
  assert(steps >= 0 && minShrink > 0.0f && minShrink <= 1.0f &&
         "invalid search range");
  assert(verifyFormatForShape(fmt, shape).empty() && "invalid format");
  assert(int64_t(x.size()) == numElements(shape) && "element count mismatch");
  int64_t numScales = numElements(scaleShape(fmt, shape));
  std::vector<float> lo(numScales, 0.0f), hi(numScales, 0.0f);
  // Gather each group's elements once so every candidate is a tight loop.
  std::vector<std::vector<float>> members(numScales);
  forEachScaleIndex(fmt, shape, [&](int64_t i, int64_t g) {
    lo[g] = std::min(lo[g], x[i]);
    hi[g] = std::max(hi[g], x[i]);
    members[g].push_back(x[i]);
  });
  std::vector<float> scales(numScales);
  std::vector<uint8_t> zeroPoints(fmt.symmetric ? 0 : numScales);
  for (int64_t g = 0; g < numScales; ++g) {
    double bestError = std::numeric_limits<double>::infinity();
    for (int i = 0; i <= steps; ++i) {
      float p = steps == 0
                    ? 1.0f
                    : 1.0f - float(i) * (1.0f - minShrink) / float(steps);
      auto [s, z] = scaleForRange(p * lo[g], p * hi[g], fmt);
      double error = 0.0;
      for (float v : members[g]) {
        float r = dequantizeOne(quantizeOne(v, s, z, fmt), s, z, fmt);
        error += double(v - r) * double(v - r);
      }
      if (error < bestError) {
        bestError = error;
        scales[g] = s;
        if (!fmt.symmetric)
          zeroPoints[g] = z;
      }
    }
  }
  return quantizeWithScales(x, shape, fmt, scales, zeroPoints);
}

QuantizedData qlr::numerics::quantizeWithScales(
    llvm::ArrayRef<float> x, llvm::ArrayRef<int64_t> shape,
    const QuantFormat &fmt, llvm::ArrayRef<float> scales,
    llvm::ArrayRef<uint8_t> zeroPoints) {
  assert(verifyFormatForShape(fmt, shape).empty() && "invalid format");
  assert(int64_t(x.size()) == numElements(shape) && "element count mismatch");
  assert(int64_t(scales.size()) == numElements(scaleShape(fmt, shape)) &&
         "scale count mismatch");
  assert(zeroPoints.size() == (fmt.symmetric ? 0 : scales.size()) &&
         "zero point count mismatch");
#ifndef NDEBUG
  for (uint8_t z : zeroPoints)
    assert(z <= maxStoredZeroPoint(fmt) && "zero point out of range");
#endif

  QuantizedData q;
  for (float s : scales)
    q.scales.push_back(roundToScaleType(s, fmt.scaleType));
  q.zeroPoints.assign(zeroPoints.begin(), zeroPoints.end());
  q.codes.resize(x.size());
  forEachScaleIndex(fmt, shape, [&](int64_t i, int64_t g) {
    q.codes[i] = quantizeOne(x[i], q.scales[g],
                             fmt.symmetric ? 0 : q.zeroPoints[g], fmt);
  });
  return q;
}

std::vector<float> qlr::numerics::dequantize(const QuantizedData &q,
                                             llvm::ArrayRef<int64_t> shape,
                                             const QuantFormat &fmt) {
  assert(int64_t(q.codes.size()) == numElements(shape) &&
         "element count mismatch");
  assert(int64_t(q.scales.size()) == numElements(scaleShape(fmt, shape)) &&
         "scale count mismatch");
  assert(q.zeroPoints.size() == (fmt.symmetric ? 0 : q.scales.size()) &&
         "zero point count mismatch");
  std::vector<float> result(q.codes.size());
  forEachScaleIndex(fmt, shape, [&](int64_t i, int64_t g) {
    result[i] = dequantizeOne(q.codes[i], q.scales[g],
                              fmt.symmetric ? 0 : q.zeroPoints[g], fmt);
  });
  return result;
}
