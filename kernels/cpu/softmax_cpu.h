// CPU kernels of the softmax family (kernels/cpu/softmax_cpu.cpp), and the per-element math that
// the CUDA kernels (kernels/cuda/softmax.cu) share with them (ENGINE_HD, so the two backends use
// the same exp/log approximations and the same argmax order).
// Geometry: x is contiguous [outer, L, inner] and the op runs over L (the op layer maps any axis to
// this; the NHWC channel axis is inner == 1).
#pragma once
#include <cstdint>
#if !defined(__CUDA_ARCH__)
#include <bit>
#endif

#include "kernels/shared_math.h"

namespace engine::kernels {

// Bit casts that the host vectoriser understands (memcpy-based ones stop it).
ENGINE_HD float softmax_as_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  return std::bit_cast<float>(u);
#endif
}
ENGINE_HD uint32_t softmax_as_uint(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  return std::bit_cast<uint32_t>(f);
#endif
}

// exp(x) without a libm call, so loops vectorise (and the GPU runs the same arithmetic):
// n = round(x / ln2), r = x - n ln2 (two-constant Cody-Waite), exp(r) by its degree-7 Taylor
// polynomial (|r| <= 0.347: truncation 5e-9 relative), times 2^n built in the exponent bits.
// Max error ~2 ulp on [-87.3, 88.3]; returns 0 below -87.34 (true value < 1.2e-38), +inf above
// 88.72, NaN for NaN. Softmax only calls it on x - max <= 0.
ENGINE_HD float softmax_exp_f(float x) {
  // Selects, not fminf/fmaxf: without -ffast-math those are libm calls on the host (NaN rules),
  // which stop vectorisation. A NaN x is returned as is by the final select.
  float xc = x < -87.33654f ? -87.33654f : x;
  xc = xc > 88.3f ? 88.3f : xc;
  const float t = fmaf(xc, 1.44269504088896341f, 12582912.f);  // + 1.5 * 2^23 rounds to an integer
  const float n = t - 12582912.f;
  float r = fmaf(n, -0.693145751953125f, xc);  // ln2 = 0.693145751953125 + 1.4286068203e-6
  r = fmaf(n, -1.428606820309417e-06f, r);
  float p = 1.f / 5040.f;
  p = fmaf(p, r, 1.f / 720.f);
  p = fmaf(p, r, 1.f / 120.f);
  p = fmaf(p, r, 1.f / 24.f);
  p = fmaf(p, r, 1.f / 6.f);
  p = fmaf(p, r, 0.5f);
  p = fmaf(p, r, 1.f);
  p = fmaf(p, r, 1.f);
  const float scale = softmax_as_float((uint32_t)((int32_t)n + 127) << 23);
  const float e = p * scale;
  return x < -87.33654f ? 0.f : x > 88.72283f ? INFINITY : x != x ? x : e;
}

// log(x) for the softmax normaliser (a sum >= 1): x = 2^e m with m in [0.707, 1.414),
// log m = 2 atanh(s), s = (m - 1) / (m + 1), |s| <= 0.1716, series to s^9 (truncation < 1e-9).
// ~2 ulp for normal positive x; 0 -> -inf, +inf -> +inf, negative or NaN -> NaN. Subnormal inputs
// are not handled exactly (never reached here).
ENGINE_HD float softmax_log_f(float x) {
  const uint32_t u = softmax_as_uint(x);
  int32_t e = (int32_t)((u >> 23) & 0xffu) - 127;
  float m = softmax_as_float((u & 0x7fffffu) | 0x3f800000u);
  const bool big = m > 1.41421356f;
  m = big ? m * 0.5f : m;
  e = big ? e + 1 : e;
  const float s = (m - 1.f) / (m + 1.f);
  const float s2 = s * s;
  float p = fmaf(s2, 1.f / 9.f, 1.f / 7.f);
  p = fmaf(p, s2, 1.f / 5.f);
  p = fmaf(p, s2, 1.f / 3.f);
  const float two_s = 2.f * s;
  const float lm = fmaf(two_s * s2, p, two_s);
  const float fe = (float)e;
  const float r = fmaf(fe, 0.693145751953125f, fmaf(fe, 1.428606820309417e-06f, lm));
  return x == 0.f ? -INFINITY : !(x >= 0.f) ? NAN : x == INFINITY ? INFINITY : r;
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

// y = softmax(x) (log_ = false) or log_softmax(x) over L; numerically stable (max subtracted).
void softmax_fwd_cpu(const float* x, float* y, int64_t outer, int64_t L, int64_t inner, bool log_);
// softmax: dx = y * (g - sum_L(g * y)); log_softmax: dx = g - exp(y) * sum_L(g). All contiguous.
void softmax_bwd_cpu(const float* g, const float* y, float* dx, int64_t outer, int64_t L, int64_t inner, bool log_);
// idx[o, i] = argmax over L of x[o, :, i] (argmax_better order).
void argmax_cpu(const float* x, int64_t* idx, int64_t outer, int64_t L, int64_t inner);

}  // namespace engine::kernels
