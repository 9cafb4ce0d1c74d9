// CUDA launchers of the reduction family (kernels/cuda/reduce.cu). Plain C++ declarations.
// Same geometry as kernels/cpu/reduce_cpu.h: x contiguous [outer, reduce, inner], out [outer, inner].
// Pointers are device pointers; launches go on `stream`; nothing is allocated here: a forward call
// that splits the reduction over several blocks needs a workspace of reduce_workspace_cuda(...)
// elements (floats, and as many i64 for max), allocated by the op layer.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/kernel_types.h"

namespace engine::kernels {

// Workspace elements the forward launchers need for this geometry (0 when one pass suffices).
int64_t reduce_workspace_cuda(int64_t outer, int64_t reduce, int64_t inner);

// x / dx: storage type xt / dxt (f32, bf16 or f16), as the CPU kernels (kernels/cpu/reduce_cpu.h).
// out[o, i] = scale * sum_r x[o, r, i]. ws: reduce_workspace_cuda(...) floats (may be null if 0).
void reduce_sum_fwd_cuda(DType xt, const void* x, float* out, int64_t outer, int64_t reduce, int64_t inner, float scale,
                         float* ws, cudaStream_t stream);
// vals/idx as reduce_max_fwd_cpu. ws_v/ws_i: reduce_workspace_cuda(...) floats / i64.
void reduce_max_fwd_cuda(DType xt, const void* x, float* vals, int64_t* idx, int64_t outer, int64_t reduce,
                         int64_t inner, float* ws_v, int64_t* ws_i, cudaStream_t stream);
// dx[o, r, i] = scale * g[o, i].
void reduce_sum_bwd_cuda(const float* g, DType dxt, void* dx, int64_t outer, int64_t reduce, int64_t inner, float scale,
                         cudaStream_t stream);
// dx[o, r, i] = (idx[o, i] == r) ? g[o, i] : 0.
void reduce_max_bwd_cuda(const float* g, const int64_t* idx, DType dxt, void* dx, int64_t outer, int64_t reduce,
                         int64_t inner, cudaStream_t stream);

}  // namespace engine::kernels
