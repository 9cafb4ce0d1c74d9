// CPU kernels of the copy family: strided gather with dtype conversion, fill.
#pragma once
#include <cstdint>

#include "kernels/kernel_types.h"

namespace engine::kernels {

// dst[dst_layout.offset_of(i)] = convert(src[src_layout.offset_of(i)]) for i in [0, n), row-major
// over the common shape. The destination must not overlap itself (no stride-0 dims).
void strided_copy_cpu(const void* src, DType src_dtype, const StridedLayout& src_layout, void* dst, DType dst_dtype,
                      const StridedLayout& dst_layout, int64_t n);
void fill_cpu(void* dst, DType dtype, int64_t n, float value);

}  // namespace engine::kernels
