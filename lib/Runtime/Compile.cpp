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

/// The bytes a dense_resource constant's type says its blob holds.
static int64_t byteSize(DenseResourceElementsAttr attr) {
  auto type = cast<RankedTensorType>(attr.getType());
  return type.getNumElements() * type.getElementTypeBitWidth() / 8;
}

FailureOr<std::vector<ExternalWeight>>
mlir::qlr::externalizeWeights(func::FuncOp func, size_t minBytes) {
  std::vector<ExternalWeight> weights;
  SmallVector<arith::ConstantOp> constants;
  func.walk([&](arith::ConstantOp op) {
    auto attr = dyn_cast<DenseResourceElementsAttr>(op.getValue());
    if (attr && byteSize(attr) >= int64_t(minBytes))
      constants.push_back(op);
  });
  Block &entry = func.getBody().front();
  for (arith::ConstantOp op : constants) {
    auto attr = cast<DenseResourceElementsAttr>(op.getValue());
    AsmResourceBlob *blob = attr.getRawHandle().getBlob();
    if (!blob)
      return op.emitOpError("weight '")
             << attr.getRawHandle().getKey() << "' has no data";
    auto type = cast<RankedTensorType>(attr.getType());
    if (int64_t(blob->getData().size()) != byteSize(attr))
      return op.emitOpError("weight '")
             << attr.getRawHandle().getKey() << "' holds "
             << blob->getData().size() << " bytes, not the " << byteSize(attr)
             << " its type needs";
    ExternalWeight weight;
    weight.name = attr.getRawHandle().getKey().str();
    weight.data = blob->getData();
    weight.shape.assign(type.getShape().begin(), type.getShape().end());
    weight.elementBits = type.getElementTypeBitWidth();
    weights.push_back(std::move(weight));
    BlockArgument arg = entry.addArgument(type, op.getLoc());
    op.replaceAllUsesWith(arg);
    op.erase();
  }
  func.setType(FunctionType::get(func.getContext(), entry.getArgumentTypes(),
                                 func.getResultTypes()));
  return weights;
}

void mlir::qlr::registerModelDialects(DialectRegistry &registry) {
  registerAllDialects(registry);
  registerAllExtensions(registry);
  registerQLRDialects(registry);
  registerBuiltinDialectTranslation(registry);
  registerLLVMDialectTranslation(registry);
  registerOpenMPDialectTranslation(registry);
  // GPU models: gpu.binary / gpu.launch_func on the host, NVVM in kernels
  // (serialized by gpu-module-to-binary).
  registerGPUDialectTranslation(registry);
  gpu::registerOffloadingLLVMTranslationInterfaceExternalModels(registry);
  registerNVVMDialectTranslation(registry);
}

LogicalResult mlir::qlr::lowerModelToGPU(ModuleOp module,
                                         const GPUPipelineOptions &options) {
  PassManager pm(module.getContext(), ModuleOp::getOperationName());
  buildGPUPipeline(pm, options);
  return pm.run(module);
}

LogicalResult mlir::qlr::lowerModelToLLVM(ModuleOp module, bool openmp,
                                          bool emulateGPU) {
  PassManager pm(module.getContext(), ModuleOp::getOperationName());
  if (emulateGPU) {
    GPUPipelineOptions pipelineOptions;
    pipelineOptions.emulate = true;
    buildGPUPipeline(pm, pipelineOptions);
  } else {
    CPUPipelineOptions pipelineOptions;
    pipelineOptions.openmp = openmp;
    buildCPUPipeline(pm, pipelineOptions);
  }
  return pm.run(module);
}

llvm::CodeGenOptLevel mlir::qlr::codeGenOptLevel(unsigned optLevel) {
  // -O1..-O3 generate code at LLVM's default level (what MLIR's JIT used
  // before the levels were tied together); -O0 at none.
  return optLevel == 0 ? llvm::CodeGenOptLevel::None
                       : llvm::CodeGenOptLevel::Default;
}

llvm::Expected<std::unique_ptr<llvm::TargetMachine>>
mlir::qlr::createCPUTargetMachine(::qlr::numerics::SimdLevel level,
                                  bool hostCPU, unsigned optLevel, bool pic) {
  static std::once_flag once;
  std::call_once(once, [] {
    llvm::InitializeNativeTarget();
    llvm::InitializeNativeTargetAsmPrinter();
  });
  auto builder = llvm::orc::JITTargetMachineBuilder::detectHost();
  if (!builder)
    return builder.takeError();
  // Below the host's level, or when asked for a generic CPU, compile for the
  // psABI level's generic CPU instead of the host's.
  if (builder->getTargetTriple().isX86() &&
      (!hostCPU || level < ::qlr::numerics::hostSimdLevel())) {
    builder->setCPU(::qlr::numerics::simdLevelCPU(level).str());
    builder->getFeatures() = llvm::SubtargetFeatures();
  }
  builder->setCodeGenOptLevel(codeGenOptLevel(optLevel));
  if (pic)
    builder->setRelocationModel(llvm::Reloc::PIC_);
  auto machine = builder->createTargetMachine();
  if (!machine)
    return machine.takeError();
  return std::move(*machine);
}

llvm::Error mlir::qlr::optimizeModel(llvm::Module &module,
                                     llvm::TargetMachine &machine,
                                     unsigned optLevel) {
  module.setTargetTriple(machine.getTargetTriple());
  module.setDataLayout(machine.createDataLayout());
  return makeOptimizingTransformer(optLevel, /*sizeLevel=*/0,
                                   &machine)(&module);
}
