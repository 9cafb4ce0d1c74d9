// CUDA launchers of the elementwise family (kernels/cuda/elementwise.cu). Same contracts as
// kernels/cpu/elementwise_cpu.h.
#pragma once
#include <cuda_runtime.h>

#include "base/dtype.h"
#include "kernels/elementwise_math.h"
#include "kernels/kernel_types.h"

namespace engine::kernels {

void unary_fwd_cuda(UnaryOp op, DType dt, const void* x_base, const StridedLayout& xl, void* out, int64_t n,
                    float alpha, cudaStream_t stream);
void unary_bwd_cuda(UnaryOp op, DType dt, const void* g, const void* x, const void* y, void* gx, int64_t n, float alpha,
                    cudaStream_t stream);
void binary_fwd_cuda(BinaryOp op, DType dt, const void* a_base, const StridedLayout& al, const void* b_base,
                     const StridedLayout& bl, void* out, int64_t n, cudaStream_t stream);
void binary_bwd_cuda(BinaryOp op, DType dt, const void* g, const void* a_base, const StridedLayout& al,
                     const void* b_base, const StridedLayout& bl, void* ga, void* gb, int64_t n, cudaStream_t stream);

}  // namespace engine::kernels
