//===- Compile.cpp - Compiling a qlr model for the CPU --------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#include "qlr/Runtime/Compile.h"
#include "qlr/InitAll.h"
#include "qlr/Pipelines/Pipelines.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/ExecutionEngine/OptUtils.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/DialectResourceBlobManager.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/GPU/GPUToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/NVVM/NVVMToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/OpenMP/OpenMPToLLVMIRTranslation.h"
#include "llvm/ExecutionEngine/Orc/JITTargetMachineBuilder.h"
#include "llvm/IR/Module.h"
#include "llvm/Support/TargetSelect.h"
#include "llvm/TargetParser/SubtargetFeature.h"

#include <mutex>

using namespace mlir;
using namespace mlir::qlr;

void mlir::qlr::registerModelDialects(DialectRegistry &registry) {
  registerJitDialects(registry);
}

LogicalResult mlir::qlr::lowerModelToGPU(ModuleOp module,
                                         const GPUPipelineOptions &options) {
  PassManager pm(module.getContext(), ModuleOp::getOperationName());
  buildGPUPipeline(pm, options);
  return pm.run(module);
}

LogicalResult mlir::qlr::lowerModelToLLVM(ModuleOp module,
                                          ::qlr::numerics::SimdLevel level,
                                          bool openmp, bool emulateGPU) {
  PassManager pm(module.getContext(), ModuleOp::getOperationName());
  if (emulateGPU) {
    GPUPipelineOptions pipelineOptions;
    pipelineOptions.emulate = true;
    buildGPUPipeline(pm, pipelineOptions);
  } else {
    CPUPipelineOptions pipelineOptions;
    configureCPUPipeline(pipelineOptions, level, openmp);
    buildCPUPipeline(pm, pipelineOptions);
  }
  return pm.run(module);
}
