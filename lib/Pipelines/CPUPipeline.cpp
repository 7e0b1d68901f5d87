//===- CPUPipeline.cpp - qlr to LLVM for the host CPU -----------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#include "qlr/Conversion/Passes.h"
#include "qlr/Pipelines/Pipelines.h"

#include "mlir/Conversion/Passes.h"
#include "mlir/Dialect/Bufferization/Pipelines/Passes.h"
#include "mlir/Dialect/Bufferization/Transforms/Passes.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/Passes.h"
#include "mlir/Dialect/MemRef/Transforms/Passes.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Transforms/Passes.h"

using namespace mlir;

void mlir::qlr::buildLinalgFrontEnd(OpPassManager &pm, bool gpu) {
  pm.addPass(createQLRLowerToLinalgPass());
  pm.addPass(createCanonicalizerPass());
  pm.addNestedPass<func::FuncOp>(createConvertElementwiseToLinalgPass());
  pm.addPass(createQLRFuseElementwisePass());
  // The CPU's contraction kernels fuse their decoders themselves; the
  // convolutions get theirs here.
  QLRFuseDequantizePassOptions fuse;
  fuse.contractions = gpu;
  pm.addPass(createQLRFuseDequantizePass(fuse));
  pm.addPass(createCanonicalizerPass());
}

void mlir::qlr::buildBufferization(OpPassManager &pm, bool dealloc) {
  bufferization::OneShotBufferizePassOptions bufferize;
  bufferize.bufferizeFunctionBoundaries = true;
  bufferize.functionBoundaryTypeConversion =
      bufferization::LayoutMapOption::IdentityLayoutMap;
  pm.addPass(bufferization::createOneShotBufferizePass(bufferize));
  pm.addPass(bufferization::createDropEquivalentBufferResultsPass());
  pm.addPass(createQLRDropArgumentResultsPass());
  if (dealloc) {
    bufferization::BufferDeallocationPipelineOptions deallocOptions;
    bufferization::buildBufferDeallocationPipeline(pm, deallocOptions);
    // Lowers the clones deallocation inserts (for example where a function
    // returns a constant).
    pm.addPass(createConvertBufferizationToMemRefPass());
  }
  pm.addPass(createCanonicalizerPass());
}

void mlir::qlr::buildLoopsToLLVM(OpPassManager &pm, bool openmp) {
  pm.addPass(createLowerAffinePass());
  pm.addPass(createConvertVectorToSCFPass());
  if (openmp) {
    pm.addPass(createConvertSCFToOpenMPPass());
    pm.addPass(createQLRSerializeSingleChunksPass());
    // Inlines the memref.alloca_scope around loop bodies that allocate
    // nothing; a scope must keep a single block through SCF->CF lowering.
    pm.addPass(createCanonicalizerPass());
  }
  pm.addPass(createSCFToControlFlowPass());
  pm.addPass(memref::createExpandStridedMetadataPass());
  pm.addPass(createLowerAffinePass());
  // The contraction kernels transpose 16 x 16 blocks of weights when they
  // pack panels: shuffles rather than one extract and insert per element.
  ConvertVectorToLLVMPassOptions vectorToLLVM;
  vectorToLLVM.vectorTransposeLowering =
      vector::VectorTransposeLowering::Shuffle16x16;
  pm.addPass(createConvertVectorToLLVMPass(vectorToLLVM));
  // Other transpose shapes (8 x 8 on AVX2) start from a ub.poison vector.
  pm.addPass(createUBToLLVMConversionPass());
  pm.addPass(createFinalizeMemRefToLLVMConversionPass());
  pm.addPass(createConvertMathToLLVMPass());
  pm.addPass(createArithToLLVMConversionPass());
  pm.addPass(createConvertIndexToLLVMPass());
  pm.addPass(createConvertFuncToLLVMPass());
  pm.addPass(createConvertControlFlowToLLVMPass());
  if (openmp)
    pm.addPass(createConvertOpenMPToLLVMPass());
  pm.addPass(createReconcileUnrealizedCastsPass());
  pm.addPass(createCanonicalizerPass());
}

void mlir::qlr::buildCPUPipeline(OpPassManager &pm,
                                 const CPUPipelineOptions &options) {
  // One function for the layers that repeat, lowered and compiled once.
  if (options.outlineLayers)
    pm.addPass(createQLROutlineLayersPass());
  buildLinalgFrontEnd(pm, /*gpu=*/false);
  buildBufferization(pm, options.dealloc);

  QLRLowerContractionsPassOptions contractions;
  contractions.vectorWidth = options.vectorWidth;
  pm.addPass(createQLRLowerContractionsPass(contractions));
  if (options.approximateMath)
    pm.addPass(createQLRApproximateMathPass());
  // The element-wise, norm and attention ops left after the contraction
  // kernels: in chunks across the threads when they are large (a decode
  // step's stay whole and on the calling thread).
  if (options.openmp)
    pm.addPass(createQLRParallelizeLinalgPass());
  // Bounded functions: LLVM's compile time grows with the square of a
  // function's length.
  pm.addPass(createQLRSplitFunctionsPass());
  pm.addNestedPass<func::FuncOp>(createConvertLinalgToLoopsPass());
  buildLoopsToLLVM(pm, options.openmp);
}

void mlir::qlr::registerQLRPipelines() {
  PassPipelineRegistration<CPUPipelineOptions>(
      "qlr-cpu-pipeline",
      "Lower qlr and linalg-on-tensors to the LLVM dialect for the host CPU",
      buildCPUPipeline);
  PassPipelineRegistration<GPUPipelineOptions>(
      "qlr-gpu-pipeline",
      "Lower qlr and linalg-on-tensors to NVIDIA GPU kernels (PTX/cubin in a "
      "gpu.binary) and LLVM-dialect host code that launches them",
      buildGPUPipeline);
}
