// CPU kernels of the reduction family (engine/ops/reduce.h). The op layer coalesces every
// reduction to a contiguous x viewed as [outer, reduce, inner] (reduced axes = the middle block),
// and the output as [outer, inner]. See kernels/cpu/reduce_cpu.cpp for the math and strategy.
#pragma once
#include <cstdint>

#include "kernels/kernel_types.h"

namespace engine::kernels {

// Rule of max/argmax shared by the CPU and CUDA kernels (so the two cannot drift apart): true when
// the candidate (v, i) must replace the current best (best_v, best_i). NaN beats every number and
// among NaNs the lowest index wins; among equal numbers the lowest index wins. It is a total order,
// so merging partial results in any order gives the same answer.
ENGINE_HD bool reduce_max_better(float best_v, int64_t best_i, float v, int64_t i) {
  const bool vn = v != v, bn = best_v != best_v;
  if (vn || bn) return vn && (!bn || i < best_i);
  return v > best_v || (v == best_v && i < best_i);
}

// x (forward) / dx (backward): storage type xt / dxt (f32, bf16 or f16), contiguous; x is widened on
// load and dx rounded once on store. out, vals and g are f32. All sizes > 0.
// out[o, i] = scale * sum_r x[o, r, i].
void reduce_sum_fwd_cpu(DType xt, const void* x, float* out, int64_t outer, int64_t reduce, int64_t inner, float scale);
// vals[o, i] = max_r x[o, r, i], idx[o, i] = its r (first on ties, first NaN if any).
void reduce_max_fwd_cpu(DType xt, const void* x, float* vals, int64_t* idx, int64_t outer, int64_t reduce,
                        int64_t inner);
// dx[o, r, i] = scale * g[o, i]   (backward of sum / mean: a broadcast). g, dx contiguous.
void reduce_sum_bwd_cpu(const float* g, DType dxt, void* dx, int64_t outer, int64_t reduce, int64_t inner, float scale);
// dx[o, r, i] = (idx[o, i] == r) ? g[o, i] : 0   (backward of max: a scatter to the argmax).
void reduce_max_bwd_cpu(const float* g, const int64_t* idx, DType dxt, void* dx, int64_t outer, int64_t reduce,
                        int64_t inner);

}  // namespace engine::kernels
