// The hand-written tiled SGEMM (kernels/cuda/matmul.cu). Plain C++ declarations.
// Used by matmul on the CUDA device in the emulated build, and on a real GPU with ENGINE_GEMM=tiled.
#pragma once
#include <cuda_runtime.h>

#include "kernels/cpu/matmul_cpu.h"  // GemmParams (shared by every GEMM backend)

namespace engine::kernels {

// GemmParams semantics (kernels/cpu/matmul_cpu.h), including batches, broadcast operands,
// "sum over the batch" (stride_c == 0), alpha/beta and k == 0. Asynchronous on `stream`.
void gemm_tiled_cuda(const GemmParams& p, cudaStream_t stream);

}  // namespace engine::kernels
