// CUDA launchers of the resize family (kernels/cuda/resize.cu). Same contracts as
// kernels/cpu/resize_cpu.h (and bit-identical results).
#pragma once
#include <cuda_runtime.h>

#include "kernels/resize_math.h"

namespace engine::kernels {

void resize_fwd_cuda(const ResizeArgs& a, const float* x, float* out, cudaStream_t stream);
void resize_bwd_cuda(const ResizeArgs& a, const float* g, float* gx, cudaStream_t stream);

}  // namespace engine::kernels
