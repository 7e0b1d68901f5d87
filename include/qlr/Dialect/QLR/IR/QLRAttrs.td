//===- QLRAttrs.td - QLR attribute definitions -------------*- tablegen -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#ifndef QLR_DIALECT_QLR_IR_QLRATTRS_TD
#define QLR_DIALECT_QLR_IR_QLRATTRS_TD

include "qlr/Dialect/QLR/IR/QLRBase.td"
include "mlir/IR/BuiltinAttributeInterfaces.td"

def QLR_FormatAttr : QLR_Attr<"Format", "format"> {
  let summary = "Quantization format of a tensor, stated once";
  let description = [{
    Everything needed to decode codes into values:

    ```
    format      ::= `#qlr.format<` scheme (`,` option)* `>`
    scheme      ::= `int`N                    // uniform integer grid, N = 2..8 bits
                  | `nf`N                     // NormalFloat codebook, 2^N values
                  | `lut`N `[` float-list `]` // lookup table of exactly 2^N values
    option      ::= `channel` `=` int         // one scale per index along this axis
                  | `group` `=` int           // groups of this many consecutive elements ...
                  | `axis` `=` int            // ... along this axis (default: -1, the last)
                  | `asymmetric`              // explicit zero points (uniform grids only)
                  | `asymmetric = fractional` // ... stored with 8 - N fraction bits
                  | `scale` `=` (`f32` | `f16` | `bf16`)   // default f32
    ```

    Without `channel` or `group` there is one scale for the whole tensor.
    Negative axes count from the last dimension. A group size that does not
    divide the dimension leaves a partial last group, which is legal.

    Decoding a code `c` with its group's scale `s` (and zero point `z`):

    * uniform, symmetric: `x = s * (c - 2^(N-1))` (implicit zero point);
    * uniform, asymmetric: `x = s * (c - z)`, `z` stored per scale as an
      `i8` byte `zs`: `z = zs` (integer zero points, `0 .. 2^N - 1`) or,
      with `asymmetric = fractional`, `z = zs / 2^(8-N)` (a fixed-point zero
      point: the grid can start anywhere within 2^-(9-N) of a step of the
      group's minimum, in the same byte);
    * codebook: `x = s * table[c]` (absmax scaling: `s` is the group's
      largest magnitude).

    Examples:

    ```mlir
    #qlr.format<int8>                                  // per-tensor, symmetric
    #qlr.format<int8, channel = 0>                     // per output channel
    #qlr.format<int4, group = 64, scale = f16>         // 4.25 bits per weight
    #qlr.format<int3, group = 32, axis = 0, asymmetric>
    #qlr.format<int4, group = 64, asymmetric = fractional, scale = f16>
    #qlr.format<nf4, group = 64, scale = f16>
    #qlr.format<lut2 [-1.0, -0.25, 0.25, 1.0], group = 64>
    ```
  }];
  let parameters = (ins
    "::mlir::qlr::Scheme":$scheme,
    "unsigned":$bits,
    OptionalParameter<"::mlir::DenseF32ArrayAttr">:$table,
    "::mlir::qlr::Granularity":$granularity,
    "int64_t":$axis,
    "int64_t":$groupSize,
    "bool":$symmetric,
    "::mlir::Type":$scaleType,
    "bool":$fractionalZeroPoints
  );
  let hasCustomAssemblyFormat = 1;
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    /// True for `nf` and `lut` formats (values come from a table).
    bool isCodebook() const { return getScheme() != Scheme::Uniform; }
    /// True when codes come with explicit zero points.
    bool hasZeroPoints() const { return !getSymmetric(); }
    /// Fraction bits of the stored zero points (8 - bits with
    /// `asymmetric = fractional`, otherwise 0).
    unsigned getZeroPointFractionBits() const {
      return getFractionalZeroPoints() ? 8 - getBits() : 0;
    }
    /// The codebook values (computed for `nf`, given for `lut`); empty for
    /// uniform grids.
    ::llvm::SmallVector<float> getCodebook() const;
    /// The axis that `channel`/`group` refer to, resolved against `rank`.
    int64_t resolveAxis(int64_t rank) const;
    /// Checks that the format applies to a tensor of this rank.
    ::llvm::LogicalResult
    verifyForRank(::llvm::function_ref<::mlir::InFlightDiagnostic()> emitError,
                  int64_t rank) const;
    /// The shape of the scales (and zero points) of a tensor of `shape`;
    /// dynamic dimensions stay dynamic.
    ::llvm::SmallVector<int64_t> getScaleShape(::llvm::ArrayRef<int64_t> shape) const;
    /// The MLIR-free description used by `lib/Numerics`.
    ::qlr::numerics::QuantFormat toNumerics(int64_t rank) const;
    /// Bits of storage per element including scales and zero points, for a
    /// tensor of this static shape.
    double getBitsPerElement(::llvm::ArrayRef<int64_t> shape) const;
    /// A short readable name, used as the attribute alias (`int4_g64_f16`).
    std::string getAliasName() const;
  }];
}

#endif // QLR_DIALECT_QLR_IR_QLRATTRS_TD
