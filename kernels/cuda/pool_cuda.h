// CUDA launchers of the pooling family (kernels/cuda/pool.cu). Same contracts as the CPU kernels in
// kernels/cpu/pool_cpu.h (contiguous NHWC tensors; idx is int32 h*W + w of the chosen cell).
#pragma once
#include <cuda_runtime.h>

#include "kernels/cpu/pool_cpu.h"

namespace engine::kernels {

// dt: the storage type of x, y, gy, gx (f32, bf16 or f16), as the CPU kernels.
void avg_pool2d_fwd_cuda(DType dt, const void* x, void* y, const Pool2dGeom& g, cudaStream_t stream);
void avg_pool2d_bwd_cuda(DType dt, const void* gy, void* gx, const Pool2dGeom& g, cudaStream_t stream);
void max_pool2d_fwd_cuda(DType dt, const void* x, void* y, int32_t* idx, const Pool2dGeom& g, cudaStream_t stream);
void max_pool2d_bwd_cuda(DType dt, const void* gy, const int32_t* idx, void* gx, const Pool2dGeom& g,
                         cudaStream_t stream);

}  // namespace engine::kernels
