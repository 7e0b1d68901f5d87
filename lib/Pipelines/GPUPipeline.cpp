//===- GPUPipeline.cpp - qlr to NVIDIA GPU kernels --------------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#include "qlr/Conversion/Passes.h"
#include "qlr/Pipelines/Pipelines.h"

#include "mlir/Conversion/Passes.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/GPU/Transforms/Passes.h"
#include "mlir/Dialect/LLVMIR/Transforms/OptimizeForNVVM.h"
#include "mlir/Dialect/MemRef/Transforms/Passes.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Transforms/Passes.h"

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Path.h"

#include <cstdlib>

using namespace mlir;

std::string mlir::qlr::findCUDAToolkit(StringRef requested) {
  SmallVector<std::string> candidates;
  if (!requested.empty()) {
    candidates.push_back(requested.str());
  } else {
    for (const char *var : {"CUDA_HOME", "CUDA_PATH", "CUDA_ROOT"})
      if (const char *value = std::getenv(var))
        candidates.push_back(value);
    candidates.push_back("/usr/local/cuda");
  }
  for (const std::string &dir : candidates)
    if (llvm::sys::fs::exists(libdevicePath(dir)))
      return dir;
  return "";
}

std::string mlir::qlr::libdevicePath(StringRef toolkit) {
  SmallString<256> path(toolkit);
  llvm::sys::path::append(path, "nvvm", "libdevice", "libdevice.10.bc");
  return std::string(path);
}

std::string mlir::qlr::defaultPTXFeatures(StringRef chip) {
  // PTX ISA 8.0 (CUDA 12.0) is the first with sm_90a; both chips accept it,
  // and every CUDA 12/13 driver JIT-compiles it.
  (void)chip;
  return "+ptx80";
}

void mlir::qlr::buildGPUPipeline(OpPassManager &pm,
                                 const GPUPipelineOptions &options) {
  buildLinalgFrontEnd(pm, /*gpu=*/true);
  buildBufferization(pm, options.dealloc);

  // Bounded host functions: LLVM's time on the host code (thousands of
  // launches in one @forward) grows with the square of a function's length
  // (SmolLM2 at -O3: 375 s in one function).
  pm.addPass(createQLRSplitFunctionsPass());
  QLRGPUDistributePassOptions distribute;
  distribute.blockSize = options.blockSize;
  distribute.lanesInSequence = options.emulate;
  distribute.warpReductions = options.warpReductions;
  distribute.laneElements = options.laneElements;
  distribute.tokensPerWarp = options.tokensPerWarp;
  pm.addPass(createQLRGPUDistributePass(distribute));
  if (options.emulate) {
    // The same loop nests, run one after the other on the CPU.
    buildLoopsToLLVM(pm, /*openmp=*/false);
    return;
  }
  // Nothing may run between distribution and this conversion:
  // canonicalization would merge the block and thread loops.
  pm.addPass(createConvertParallelLoopToGpuPass());
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createQLRGPUDeviceMemoryPass());
  pm.addPass(createGpuKernelOutliningPass());
  pm.addPass(createQLRGPUMergeKernelsPass());
  pm.addPass(createQLRGPULowerSubgroupReducePass());
  // One stream per call of a host function: kernels queue without waiting.
  pm.addNestedPass<func::FuncOp>(createGpuAsyncRegionPass());

  buildNVVMLowering(pm, options);
}

void mlir::qlr::buildNVVMLowering(OpPassManager &pm,
                                  const GPUPipelineOptions &options) {
  // The same steps as upstream's gpu-lower-to-nvvm-pipeline, plus linking
  // libdevice (math functions) from the toolkit.
  pm.addPass(createConvertNVGPUToNVVMPass());
  pm.addPass(createConvertVectorToSCFPass());
  pm.addPass(createSCFToControlFlowPass());
  pm.addPass(createConvertNVVMToLLVMPass());
  pm.addPass(createConvertFuncToLLVMPass());
  pm.addPass(memref::createExpandStridedMetadataPass());

  GpuNVVMAttachTargetOptions target;
  target.chip = options.chip;
  target.features = options.features.empty() ? defaultPTXFeatures(options.chip)
                                             : std::string(options.features);
  target.optLevel = options.optLevel;
  std::string toolkit = findCUDAToolkit(options.toolkit);
  if (!toolkit.empty())
    target.linkLibs.push_back(libdevicePath(toolkit));
  pm.addPass(createGpuNVVMAttachTarget(target));
  pm.addPass(createLowerAffinePass());
  pm.addPass(createArithToLLVMConversionPass());
  pm.addPass(createConvertIndexToLLVMPass());
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());

  OpPassManager &kernels = pm.nest<gpu::GPUModuleOp>();
  kernels.addPass(createStripDebugInfoPass());
  kernels.addPass(createConvertGpuOpsToNVVMOps());
  kernels.addPass(LLVM::createNVVMOptimizeForTargetPass());
  kernels.addPass(createCanonicalizerPass());
  kernels.addPass(createCSEPass());
  kernels.addPass(createReconcileUnrealizedCastsPass());

  pm.addPass(createGpuToLLVMConversionPass());
  GpuModuleToBinaryPassOptions binary;
  binary.compilationTarget = options.format;
  if (!toolkit.empty())
    binary.toolkitPath = toolkit;
  pm.addPass(createGpuModuleToBinaryPass(binary));
  pm.addPass(createConvertMathToLLVMPass());
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());
  pm.addPass(createReconcileUnrealizedCastsPass());
}
