//===- WeightUtils.h - Shared helpers of the weight passes --*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// What qlr-quantize-linear, qlr-loftq and qlr-dequantize-weights share:
// choosing the linear layers to rewrite, naming weights, building formats
// from pass options, and writing compressed weights as dense_resource
// constants; and what the folding passes (qlr-fold-norm,
// qlr-fold-batchnorm) share: reading float constants and naming the
// constants they create.
//
//===----------------------------------------------------------------------===//

#ifndef QLR_LIB_DIALECT_QLR_TRANSFORMS_WEIGHTUTILS_H
#define QLR_LIB_DIALECT_QLR_TRANSFORMS_WEIGHTUTILS_H

#include "qlr/Dialect/QLR/IR/QLR.h"
#include "qlr/Numerics/Quantize.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinOps.h"
#include "llvm/Support/GlobPattern.h"

#include <string>
#include <vector>

namespace mlir::qlr {

/// A `qlr.linear` whose weight is a 2-D static float constant.
struct LinearWeight {
  LinearOp linear;
  arith::ConstantOp constant;
  /// The weight's name: its dense_resource key, or `linearN` for inline
  /// `dense<...>` constants (N counts linears in program order).
  std::string name;
  RankedTensorType type;
  /// The weight's values, row-major [N, K], as f32.
  std::vector<float> values;
};

/// Which weights a pass rewrites: the `include`/`exclude`/`classifier`
/// options.
class LinearFilter {
public:
  /// Parses the glob patterns; reports a bad pattern at `module`.
  static FailureOr<LinearFilter> create(ModuleOp module, StringRef pass,
                                        ArrayRef<std::string> include,
                                        ArrayRef<std::string> exclude,
                                        bool classifier);
  /// True when the weight called `name` (read by `linear`, when given) is to
  /// be rewritten.
  bool accepts(StringRef name, LinearOp linear = {}) const;

private:
  std::vector<llvm::GlobPattern> include, exclude;
  bool classifier = false;
};

/// The name of a layer (a qlr.linear or a norm) whose weight is `weight`:
/// its `qlr.name` attribute (qlr-import names every layer after its tensor
/// in the checkpoint), else the resource name of a constant `weight`, else
/// "". Passes that rename the weight's constant (for example qlr-fold-norm's
/// NAME.folded) leave the layer's name alone.
std::string layerName(Operation *layer, Value weight);

/// Names `layer` (qlr.name) after the resource of its constant `weight`, if
/// it has one and the layer has no name yet.
void nameAfterWeight(Operation *layer, Value weight);

/// True for the names the classifier weight has in imported models.
bool isClassifierName(StringRef name);

/// True when `linear` is the model's classifier by its structure: its
/// weight is also read by indexed lookups (tensor.extract, extract_slice or
/// gather: tied to the embedding table), or, in a module with `qlr.model`, it
/// projects to `vocab_size` outputs that the function returns. Renaming passes
/// (for example qlr-fold-norm's NAME.folded) do not change it.
bool isClassifier(LinearOp linear);

/// Collects, in program order, the linears whose weight is a static 2-D
/// float constant accepted by `filter`, reading each weight's values.
/// Linears sharing one constant are all returned (the caller decides).
/// Fails (with a diagnostic) only when a selected weight cannot be read.
FailureOr<SmallVector<LinearWeight>>
collectLinearWeights(ModuleOp module, const LinearFilter &filter);

/// What every weight pass starts with: parses the filter options, collects
/// the selected linears (collectLinearWeights) and checks that `format` fits
/// each weight (checkFormatFits). Fails after reporting the problem.
FailureOr<SmallVector<LinearWeight>> selectLinearWeights(
    ModuleOp module, StringRef pass, ArrayRef<std::string> include,
    ArrayRef<std::string> exclude, bool classifier, FormatAttr format);

/// selectLinearWeights with an already parsed `filter`.
FailureOr<SmallVector<LinearWeight>>
selectLinearWeights(ModuleOp module, const LinearFilter &filter,
                    FormatAttr format);

/// Builds `#qlr.format` from pass options: `format` is uniform, nf4, nf2 or
/// lut (with `table`); `bits` 0 means `defaultBits` for uniform/lut and is
/// implied by nf4/nf2; `groupSize` 0 means per output channel; `zeroPoint`
/// is integer or fractional (asymmetric formats); `scaleType` is f16, bf16
/// or f32. Reports invalid combinations at `module` with the pass name and
/// returns failure.
FailureOr<FormatAttr>
buildFormatFromOptions(ModuleOp module, StringRef pass, StringRef format,
                       int64_t bits, int64_t defaultBits, int64_t groupSize,
                       bool symmetric, StringRef zeroPoint, StringRef scaleType,
                       ArrayRef<double> table);

/// Checks that `format` can quantize a weight of `type` ([N, K]); reports
/// at `op` otherwise.
LogicalResult checkFormatFits(Operation *op, FormatAttr format,
                              RankedTensorType type);

/// An `arith.constant dense_resource<name>` holding `values` in `type`'s
/// element type (f32, f16, bf16, i8).
Value createFloatResource(OpBuilder &b, Location loc, RankedTensorType type,
                          StringRef name, ArrayRef<float> values);
Value createByteResource(OpBuilder &b, Location loc, RankedTensorType type,
                         StringRef name, ArrayRef<uint8_t> values);

/// Packs `data` (codes, scales, zero points of a `type`-shaped weight in
/// `format`) into resources NAME.codes / NAME.scales / NAME.zero_points and
/// returns the `qlr.pack` of them.
Value buildPackedWeight(OpBuilder &b, Location loc, StringRef name,
                        RankedTensorType type, FormatAttr format,
                        const ::qlr::numerics::QuantizedData &data);

/// The first entry of `weights` for each distinct constant: linears that
/// share a weight get one compressed weight.
SmallVector<LinearWeight *>
distinctWeights(MutableArrayRef<LinearWeight> weights);

/// Makes every linear of `weights` use `replacements[its constant]` and
/// erases the constants nothing uses any more.
void replaceLinearWeights(MutableArrayRef<LinearWeight> weights,
                          const DenseMap<Operation *, Value> &replacements);

/// The dense_resource key of `constant`'s value; empty for inline constants.
StringRef resourceKey(arith::ConstantOp constant);

/// `value` rounded once (to nearest, ties to even) to the float type
/// `element` (f32, f16 or bf16), returned as a float, which holds it exactly.
float roundToFloatType(double value, Type element);

/// A float constant of `type` holding `values`, stored the way `like` is:
/// `dense_resource<name>` when `like` holds a dense_resource, an inline
/// `dense<...>` otherwise (the folding passes keep small weights readable).
Value createFloatConstantLike(OpBuilder &b, Location loc,
                              arith::ConstantOp like, RankedTensorType type,
                              StringRef name, ArrayRef<float> values);

/// The arith.constant holding the elements of `value`, or null.
arith::ConstantOp getElementsConstant(Value value);

/// The values of `constant` (an elements constant of f32, f16 or bf16) as
/// floats; fails with a diagnostic at the constant when they cannot be read
/// (for example an elided resource blob).
FailureOr<std::vector<float>> readConstantFloats(arith::ConstantOp constant);

/// readConstantFloats, widened to double.
FailureOr<std::vector<double>> readConstantDoubles(arith::ConstantOp constant);

/// The name of a folded constant: `NAME.folded` for `dense_resource<NAME>`.
std::string foldedName(StringRef key);

/// The name of a bias created for the weight `dense_resource<NAME>`: NAME
/// without a `.weight` suffix, then `.bias.folded`.
std::string createdBiasName(StringRef weightKey);

/// Why a folding pass leaves an op as it is: the reason and, when one op is
/// to blame, that op and a note to attach to it.
struct FoldRefusal {
  std::string reason;
  Operation *culprit = nullptr;
  std::string note;
};

/// Reports "OP not folded: REASON" at `op`, with the note at the culprit: an
/// error when `strict`, a warning otherwise.
void reportFoldRefusal(Operation *op, const FoldRefusal &refusal, bool strict);

/// Decodes a weight value to row-major floats: a float constant (dense,
/// splat or dense_resource; f32, f16 or bf16), a `qlr.pack` of constants
/// (dequantized with qlr::numerics::dequantize), a `qlr.lowrank` of such
/// factors (A·B, plus the base), or a `qlr.dequantize` of any of these.
/// Emits an error located at the defining op on anything else.
FailureOr<std::vector<float>> decodeWeight(Value weight);

/// The function a pass's `function=NAME` option names: a located error
/// (naming `pass`, and `role`, what the function is for, when the option is
/// empty) and failure when it is empty or the module has no such function.
FailureOr<func::FuncOp> lookupFunctionOption(ModuleOp module, StringRef pass,
                                             StringRef name, StringRef role);

} // namespace mlir::qlr

#endif // QLR_LIB_DIALECT_QLR_TRANSFORMS_WEIGHTUTILS_H
