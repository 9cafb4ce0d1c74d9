// cuBLAS GEMM wrapper (REAL build only; kernels/cublas/ is not compiled in the emulated build).
#pragma once
#include <cuda_runtime.h>

#include "kernels/cpu/matmul_cpu.h"  // GemmParams

namespace engine::kernels {

// GemmParams semantics (kernels/cpu/matmul_cpu.h) through cublasSgemm / cublasSgemmStridedBatched
// on `stream`, with one process-wide handle. Asynchronous. Errors throw engine::Error naming the call.
void gemm_cublas(const GemmParams& p, cudaStream_t stream);

}  // namespace engine::kernels
