//===- NormTweakTestUtil.h - Block weights for NormTweak tests --*- C++ -*-===//
//-*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// What unittests/Numerics/NormTweakTest.cpp and
// unittests/Calibration/NormTweakForwardTest.cpp share: a LLaMA block's
// weights in the scalar type of a LlamaBlockBackprop.
//
//===----------------------------------------------------------------------===//

#ifndef QLR_UNITTESTS_NUMERICS_NORMTWEAKTESTUTIL_H
#define QLR_UNITTESTS_NUMERICS_NORMTWEAKTESTUTIL_H

#include "TestUtil.h"

#include "qlr/Numerics/NormTweak.h"

namespace qlr::numerics::test {

/// A block's weights converted to T, viewable as LlamaBlockParams<T>. Built
/// from any struct with the nine weight vectors attentionNorm, ffnNorm, wq,
/// wk, wv, wo, w1, w2 and w3 (e.g. calibration::BlockWeights).
template <typename T> struct TypedBlock {
  std::vector<T> attentionNorm, ffnNorm, wq, wk, wv, wo, w1, w2, w3;

  template <typename Weights>
  explicit TypedBlock(const Weights &b)
      : attentionNorm(cast<T>(b.attentionNorm)), ffnNorm(cast<T>(b.ffnNorm)),
        wq(cast<T>(b.wq)), wk(cast<T>(b.wk)), wv(cast<T>(b.wv)),
        wo(cast<T>(b.wo)), w1(cast<T>(b.w1)), w2(cast<T>(b.w2)),
        w3(cast<T>(b.w3)) {}

  LlamaBlockParams<T> params() const {
    return {attentionNorm, ffnNorm, wq, wk, wv, wo, w1, w2, w3};
  }
};

} // namespace qlr::numerics::test

#endif // QLR_UNITTESTS_NUMERICS_NORMTWEAKTESTUTIL_H
