// CUDA launchers of the elementwise family (kernels/cuda/elementwise.cu). Same contracts as
// kernels/cpu/elementwise_cpu.h.
#pragma once
#include <cuda_runtime.h>

#include "kernels/elementwise_math.h"
#include "kernels/kernel_types.h"

namespace engine::kernels {

void unary_fwd_cuda(UnaryOp op, const float* x_base, const StridedLayout& xl, float* out, int64_t n, float alpha,
                    cudaStream_t stream);
void unary_bwd_cuda(UnaryOp op, const float* g, const float* x, const float* y, float* gx, int64_t n, float alpha,
                    cudaStream_t stream);
void binary_fwd_cuda(BinaryOp op, const float* a_base, const StridedLayout& al, const float* b_base,
                     const StridedLayout& bl, float* out, int64_t n, cudaStream_t stream);
void binary_bwd_cuda(BinaryOp op, const float* g, const float* a_base, const StridedLayout& al, const float* b_base,
                     const StridedLayout& bl, float* ga, float* gb, int64_t n, cudaStream_t stream);

}  // namespace engine::kernels
