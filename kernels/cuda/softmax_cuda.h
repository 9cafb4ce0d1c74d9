// CUDA launchers of the softmax family (kernels/cuda/softmax.cu). Same contracts as
// kernels/cpu/softmax_cpu.h (contiguous [outer, L, inner], the op runs over L).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "base/dtype.h"

namespace engine::kernels {

void softmax_fwd_cuda(DType dt, const void* x, void* y, int64_t outer, int64_t L, int64_t inner, bool log_,
                      cudaStream_t stream);
void softmax_bwd_cuda(DType dt, const void* g, const void* y, void* dx, int64_t outer, int64_t L, int64_t inner,
                      bool log_, cudaStream_t stream);
void argmax_cuda(DType dt, const void* x, int64_t* idx, int64_t outer, int64_t L, int64_t inner, cudaStream_t stream);

}  // namespace engine::kernels
