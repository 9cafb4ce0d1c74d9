// CUDA launchers of the softmax family (kernels/cuda/softmax.cu). Same contracts as
// kernels/cpu/softmax_cpu.h (contiguous [outer, L, inner], the op runs over L).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace engine::kernels {

void softmax_fwd_cuda(const float* x, float* y, int64_t outer, int64_t L, int64_t inner, bool log_,
                      cudaStream_t stream);
void softmax_bwd_cuda(const float* g, const float* y, float* dx, int64_t outer, int64_t L, int64_t inner, bool log_,
                      cudaStream_t stream);
void argmax_cuda(const float* x, int64_t* idx, int64_t outer, int64_t L, int64_t inner, cudaStream_t stream);

}  // namespace engine::kernels
