//===- Pipelines.h - Named QLR pass pipelines ---------------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#ifndef QLR_PIPELINES_PIPELINES_H
#define QLR_PIPELINES_PIPELINES_H

#include "mlir/Pass/PassOptions.h"

namespace mlir {
class OpPassManager;
namespace qlr {

struct CPUPipelineOptions : public PassPipelineOptions<CPUPipelineOptions> {
  PassOptions::Option<bool> dealloc{
      *this, "dealloc",
      llvm::cl::desc("Free temporary buffers (ownership-based deallocation)"),
      llvm::cl::init(true)};
  PassOptions::Option<bool> openmp{
      *this, "openmp",
      llvm::cl::desc("Run the linear-layer kernels' parallel loops on OpenMP "
                     "threads; the program then needs libomp at run time"),
      llvm::cl::init(false)};
};

/// qlr (and linalg on tensors) -> LLVM dialect for the host CPU: lowers qlr
/// to linalg, fuses element-wise ops, bufferizes across function boundaries
/// (arguments marked `bufferization.writable` are updated in place), and
/// converts everything to the LLVM dialect.
void buildCPUPipeline(OpPassManager &pm, const CPUPipelineOptions &options);

/// Registers `qlr-cpu-pipeline` for quant-opt and pipeline strings.
void registerQLRPipelines();

} // namespace qlr
} // namespace mlir

#endif // QLR_PIPELINES_PIPELINES_H
