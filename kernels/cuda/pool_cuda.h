// CUDA launchers of the pooling family (kernels/cuda/pool.cu). Same contracts as the CPU kernels in
// kernels/cpu/pool_cpu.h (contiguous NHWC tensors; idx is int32 h*W + w of the chosen cell).
#pragma once
#include <cuda_runtime.h>

#include "kernels/cpu/pool_cpu.h"

namespace engine::kernels {

void avg_pool2d_fwd_cuda(const float* x, float* y, const Pool2dGeom& g, cudaStream_t stream);
void avg_pool2d_bwd_cuda(const float* gy, float* gx, const Pool2dGeom& g, cudaStream_t stream);
void max_pool2d_fwd_cuda(const float* x, float* y, int32_t* idx, const Pool2dGeom& g, cudaStream_t stream);
void max_pool2d_bwd_cuda(const float* gy, const int32_t* idx, float* gx, const Pool2dGeom& g, cudaStream_t stream);

}  // namespace engine::kernels
