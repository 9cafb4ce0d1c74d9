// CPU kernels of the shape family (kernels/cpu/shape_ops_cpu.cpp): concat and its backward.
// Both see every tensor as rows of bytes: the output (or the gradient) is [outer, row_bytes] and
// piece j owns the byte columns [col[j], col[j] + width[j]) of each row; piece j itself is a
// contiguous [outer, width[j]] buffer. Dtype-agnostic (a pure copy).
#pragma once
#include <cstdint>

namespace engine::kernels {

// out[o, col[j] : col[j] + width[j]] = src[j][o, :] for every piece j.
void concat_fwd_cpu(const void* const* src, const int64_t* col, const int64_t* width, int pieces, void* out,
                    int64_t outer, int64_t row_bytes);
// dst[j][o, :] = g[o, col[j] : col[j] + width[j]] for every piece j (the split copy).
void concat_bwd_cpu(const void* g, int64_t outer, int64_t row_bytes, void* const* dst, const int64_t* col,
                    const int64_t* width, int pieces);

}  // namespace engine::kernels
