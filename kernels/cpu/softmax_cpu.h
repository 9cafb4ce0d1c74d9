// CPU kernels of the softmax family (kernels/cpu/softmax_cpu.cpp), and the per-element math that
// the CUDA kernels (kernels/cuda/softmax.cu) share with them (ENGINE_HD, so the two backends use
// the same exp/log approximations, which are the engine's one polynomial exp and log, and the same
// argmax order).
// Geometry: x is contiguous [outer, L, inner] and the op runs over L (the op layer maps any axis to
// this; the NHWC channel axis is inner == 1).
#pragma once
#include <cstdint>

#include "kernels/loss_math.h"
#include "kernels/shared_math.h"

namespace engine::kernels {

// exp(x) for the softmax family on both devices: the shared exp_f (kernels/shared_math.h; ~1 ulp,
// 0 below -87.3, +inf above 88.72, NaN propagates). The CPU's hot loops call exp_fast_f, which
// returns the same bits for the arguments they pass (x - max <= 0).
ENGINE_HD float softmax_exp_f(float x) { return exp_f(x); }

// log(x) for the softmax normaliser (a sum >= 1): the shared log_f (kernels/loss_math.h, ~1 ulp for
// normal x) with the IEEE edge values it leaves out: 0 -> -inf, +inf -> +inf, negative or NaN -> NaN.
// Branch-free (selects), so it vectorises. Subnormal inputs are not handled exactly (never reached).
ENGINE_HD float softmax_log_f(float x) {
  const float l = log_f(x);
  return x == 0.f ? -INFINITY : !(x >= 0.f) ? NAN : x == INFINITY ? INFINITY : l;
}

// max for the softmax shift: a select (vectorises on the host, unlike fmaxf); a NaN v is skipped,
// which is harmless because exp(NaN - m) then poisons the slice anyway.
ENGINE_HD float softmax_max_f(float m, float v) { return v > m ? v : m; }

// Argmax order: true when candidate (v, i) beats the current best (best_v, best_i). NaN beats every
// number (like max), the first NaN wins among NaNs, and the lowest index wins ties. A total order,
// so merging partial results in any order (the CUDA shuffles) gives the same answer.
ENGINE_HD bool argmax_better(float best_v, int64_t best_i, float v, int64_t i) {
  const bool vn = v != v, bn = best_v != best_v;
  if (vn || bn) return vn && (!bn || i < best_i);
  return v > best_v || (v == best_v && i < best_i);
}

// Storage: x, y, g and dx of a call are all of type dt (f32, bf16 or f16); the math is f32 on the
// widened values and a 16-bit output is the f32 result rounded once (the same bits as the f32 op on
// the widened input, then a cast).
// y = softmax(x) (log_ = false) or log_softmax(x) over L; numerically stable (max subtracted).
void softmax_fwd_cpu(DType dt, const void* x, void* y, int64_t outer, int64_t L, int64_t inner, bool log_);
// softmax: dx = y * (g - sum_L(g * y)); log_softmax: dx = g - exp(y) * sum_L(g). All contiguous.
void softmax_bwd_cpu(DType dt, const void* g, const void* y, void* dx, int64_t outer, int64_t L, int64_t inner,
                     bool log_);
// idx[o, i] = argmax over L of x[o, :, i] (argmax_better order; widening is exact, so a 16-bit x
// gives the f32 answer for its values).
void argmax_cpu(DType dt, const void* x, int64_t* idx, int64_t outer, int64_t L, int64_t inner);

}  // namespace engine::kernels
