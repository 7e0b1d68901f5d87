//===- Pipelines.h - Named QLR pass pipelines ---------------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#ifndef QLR_PIPELINES_PIPELINES_H
#define QLR_PIPELINES_PIPELINES_H

#include "mlir/Pass/PassOptions.h"

#include <string>

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
  PassOptions::Option<bool> approximateMath{
      *this, "approximate-math",
      llvm::cl::desc("f32 exp as a polynomial LLVM vectorises "
                     "(qlr-approximate-math) instead of a libm call per "
                     "element"),
      llvm::cl::init(true)};
  PassOptions::Option<int64_t> vectorWidth{
      *this, "vector-width",
      llvm::cl::desc("f32 lanes per vector in the linear-layer kernels: 16 "
                     "fills an AVX-512 register, 8 an AVX2 one (the JIT and "
                     "qlr-compile choose by the CPU they compile for)"),
      llvm::cl::init(16)};
  PassOptions::Option<bool> outlineLayers{
      *this, "outline-layers",
      llvm::cl::desc("Generate the code of a model's repeated layers once "
                     "(qlr-outline-layers): the JIT and qlr-compile then "
                     "lower and compile one layer instead of all of them"),
      llvm::cl::init(true)};
};

/// qlr (and linalg on tensors) -> LLVM dialect for the host CPU: lowers qlr
/// to linalg, fuses element-wise ops, bufferizes across function boundaries
/// (arguments marked `bufferization.writable` are updated in place), and
/// converts everything to the LLVM dialect.
void buildCPUPipeline(OpPassManager &pm, const CPUPipelineOptions &options);

struct GPUPipelineOptions : public PassPipelineOptions<GPUPipelineOptions> {
  PassOptions::Option<std::string> chip{
      *this, "chip",
      llvm::cl::desc("The GPU to generate code for: sm_80 (A100) or sm_90 "
                     "(H100/H200); any sm_XY LLVM's NVPTX backend knows"),
      llvm::cl::init("sm_90")};
  PassOptions::Option<std::string> features{
      *this, "features",
      llvm::cl::desc("PTX features (default: +ptx80, PTX ISA 8.0)"),
      llvm::cl::init("")};
  PassOptions::Option<std::string> format{
      *this, "format",
      llvm::cl::desc("What the gpu.binary holds: isa (PTX text, compiled by "
                     "the driver when loaded), bin (cubin, needs ptxas from "
                     "the CUDA toolkit) or fatbin (cubin and PTX, needs ptxas "
                     "and fatbinary)"),
      llvm::cl::init("isa")};
  PassOptions::Option<std::string> toolkit{
      *this, "toolkit",
      llvm::cl::desc("CUDA toolkit directory: libdevice (math functions) is "
                     "linked from <toolkit>/nvvm/libdevice and ptxas is run "
                     "from <toolkit>/bin for format=bin|fatbin (default: "
                     "$CUDA_HOME, $CUDA_PATH, $CUDA_ROOT or /usr/local/cuda, "
                     "the first that has libdevice)"),
      llvm::cl::init("")};
  PassOptions::Option<int> optLevel{
      *this, "opt-level",
      llvm::cl::desc("LLVM optimisation level of the kernels (0-3)"),
      llvm::cl::init(2)};
  PassOptions::Option<int64_t> blockSize{
      *this, "block-size",
      llvm::cl::desc("Threads per block (multiple of 32, at most 1024)"),
      llvm::cl::init(128)};
  PassOptions::Option<bool> warpReductions{
      *this, "warp-reductions",
      llvm::cl::desc("One warp per output element of splittable reductions "
                     "(linear layers, norms, attention sums); false: one "
                     "thread per output"),
      llvm::cl::init(true)};
  PassOptions::Option<int64_t> laneElements{
      *this, "lane-elements",
      llvm::cl::desc("Consecutive elements per lane and step of a warp "
                     "reduction (qlr-gpu-distribute lane-elements)"),
      llvm::cl::init(1)};
  PassOptions::Option<int64_t> tokensPerWarp{
      *this, "tokens-per-warp",
      llvm::cl::desc("Outputs per warp along a linear layer's tokens, "
                     "sharing the weight's loads (qlr-gpu-distribute "
                     "tokens-per-warp; 1 token takes the 1-token kernel)"),
      llvm::cl::init(4)};
  PassOptions::Option<bool> dealloc{
      *this, "dealloc",
      llvm::cl::desc("Free temporary buffers (ownership-based deallocation)"),
      llvm::cl::init(true)};
  PassOptions::Option<bool> emulate{
      *this, "emulate",
      llvm::cl::desc("Stop before mapping to GPU ids and lower the "
                     "distributed loop nests for the host CPU instead: the "
                     "GPU kernels' schedule, run on the CPU (for tests)"),
      llvm::cl::init(false)};
};

/// qlr and linalg-on-tensors -> linalg on tensors with element-wise ops
/// fused; `gpu` also fuses weight decoders into linear layers
/// (qlr-fuse-dequantize).
void buildLinalgFrontEnd(OpPassManager &pm, bool gpu);

/// One-shot bufferization across function boundaries (arguments marked
/// `bufferization.writable` are updated in place), then optional
/// ownership-based deallocation.
void buildBufferization(OpPassManager &pm, bool dealloc);

/// scf/affine/vector/memref/arith/math/func on buffers -> LLVM dialect for
/// the host CPU.
void buildLoopsToLLVM(OpPassManager &pm, bool openmp);

/// qlr (and linalg on tensors) -> NVIDIA GPU: decoders fused into linear
/// layers, every linalg op a kernel (qlr-gpu-distribute), buffers in device
/// memory, kernels outlined into one GPU module and compiled to PTX/cubin by
/// upstream's NVVM pipeline; the host code calls the mgpu* runtime.
void buildGPUPipeline(OpPassManager &pm, const GPUPipelineOptions &options);

/// The NVVM half of buildGPUPipeline: outlined kernels -> NVVM -> a
/// gpu.binary in `options.format`, host code -> LLVM dialect calling mgpu*.
void buildNVVMLowering(OpPassManager &pm, const GPUPipelineOptions &options);

/// The CUDA toolkit directory to take libdevice and ptxas from: `requested`
/// if it has libdevice, else the first of $CUDA_HOME, $CUDA_PATH,
/// $CUDA_ROOT, /usr/local/cuda that has; empty when none has.
std::string findCUDAToolkit(llvm::StringRef requested);

/// <toolkit>/nvvm/libdevice/libdevice.10.bc
std::string libdevicePath(llvm::StringRef toolkit);

/// The PTX feature string qlr-gpu-pipeline uses for `chip` by default.
std::string defaultPTXFeatures(llvm::StringRef chip);

/// Registers `qlr-cpu-pipeline` and `qlr-gpu-pipeline` for quant-opt and
/// pipeline strings.
void registerQLRPipelines();

} // namespace qlr
} // namespace mlir

#endif // QLR_PIPELINES_PIPELINES_H
