// CUDA launchers of the copy family (kernels/cuda/copy.cu). Plain C++ declarations.
#pragma once
#include <cuda_runtime.h>

#include "kernels/kernel_types.h"

namespace engine::kernels {

// As strided_copy_cpu (kernels/cpu/copy_cpu.h).
void strided_copy_cuda(const void* src, DType src_dtype, const StridedLayout& src_layout, void* dst, DType dst_dtype,
                       const StridedLayout& dst_layout, int64_t n, cudaStream_t stream);
void fill_cuda(void* dst, DType dtype, int64_t n, float value, cudaStream_t stream);

}  // namespace engine::kernels
