// CUDA launchers of the shape family (kernels/cuda/shape_ops.cu). Same contracts as
// kernels/cpu/shape_ops_cpu.h (byte geometry; any number of pieces).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace engine::kernels {

void concat_fwd_cuda(const void* const* src, const int64_t* col, const int64_t* width, int pieces, void* out,
                     int64_t outer, int64_t row_bytes, cudaStream_t stream);
void concat_bwd_cuda(const void* g, int64_t outer, int64_t row_bytes, void* const* dst, const int64_t* col,
                     const int64_t* width, int pieces, cudaStream_t stream);

}  // namespace engine::kernels
