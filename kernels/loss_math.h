// Per-element math of the loss, metrics and optimizer families, shared by the CPU kernels
// (kernels/cpu/loss_cpu.cpp, optim_cpu.cpp) and the CUDA kernels (kernels/cuda/loss.cu, optim.cu),
// so the two backends compute the same expressions.
//
// log_f / log1p_f (and exp_neg_f, in shared_math.h) are branch-free polynomial versions (selects only) so that the CPU
// loops over pixels vectorise with AVX-512 (glibc's vector expf/logf need -ffast-math, which the
// engine does not use). Every multiply-add is an explicit fmaf or goes through mul_rn / add_rn /
// sub_rn (shared_math.h), so gcc (-ffp-contract=off) and nvcc (contracts by default) evaluate the
// same rounding sequence: the OHEM probabilities, and with them the mined pixel set, come out
// bit-identical on both devices.
#pragma once
#include <array>
#include <cstdint>

#include "kernels/shared_math.h"

namespace engine::kernels {

// log(x) for finite x > 0 (normal floats). x = m * 2^k with m in [sqrt(1/2), sqrt(2)),
// log(m) = 2 atanh(s), s = (m-1)/(m+1), |s| <= 0.1716: odd series to s^11 (error < 1e-9 relative).
// NaN propagates (+inf is not supported); x <= 0 or subnormal is not supported (callers never pass it).
ENGINE_HD float log_f(float x) {
  const uint32_t u = f2u(x);
  const int32_t k0 = (int32_t)(u >> 23) - 127;
  const float m0 = u2f((u & 0x007fffffu) | 0x3f800000u);  // [1, 2)
  const float big = m0 > 1.41421356f ? 1.f : 0.f;         // arithmetic, not a branch: loops vectorise
  const float m = m0 * (1.f - 0.5f * big);
  const float k = (float)k0 + big;
  const float s = (m - 1.f) / (m + 1.f);
  const float s2 = s * s;
  float q = 2.f / 11.f;
  q = fmaf(q, s2, 2.f / 9.f);
  q = fmaf(q, s2, 2.f / 7.f);
  q = fmaf(q, s2, 2.f / 5.f);
  q = fmaf(q, s2, 2.f / 3.f);
  q = fmaf(q, s2, 2.f);
  const float lm = q * s;
  const float y = fmaf(k, 0.693145751953125f, fmaf(k, 1.428606765330187e-06f, lm));
  return std::isnan(x) ? x : y;  // (a comparison-based test would stop gcc from vectorising)
}

// log(1 + z) for z >= 0, accurate for tiny z (u = 1 + z rounded; log(u) * z / (u - 1)).
ENGINE_HD float log1p_f(float z) {
  const float u = 1.f + z;
  const float d = u - 1.f;
  const float l = log_f(u);
  return d == 0.f ? z : l * (z / d);
}

// ------------------------------------------------------------------------------- pointwise losses
// Kinds of the "mean of a per-element loss" family (bce_with_logits, binary_cross_entropy, l1_loss).
enum class PointLoss : uint8_t { BceLogits, Bce, L1 };

// BCE with logits, stable form: max(x,0) - x*t + log(1 + exp(-|x|)).
ENGINE_HD float bce_logits_f(float x, float t) {
  const float ax = x < 0.f ? -x : x;
  return add_rn(sub_rn(x > 0.f ? x : 0.f, mul_rn(x, t)), log1p_f(exp_neg_f(-ax)));
}
// log(1 + exp(-a)) for a >= 0 (or NaN), with one division: e = exp(-a) in (0, 1], s = e / (2 + e)
// in (0, 1/3], log(1 + e) = 2 atanh(s) = 2 (s + s^3/3 + ... + s^17/17) (truncation < 1e-10
// relative; no cancellation for tiny e, where the result is ~2s = e). ~2 ulp. Used by the CPU's BCE
// forward: log1p_f(exp_neg_f(-a)) costs two divisions and a full log_f.
ENGINE_HD float softplus_neg_f(float a) {
  const float e = exp_neg_f(-a);
  const float s = e / (2.f + e);
  const float s2 = s * s;
  float q = 2.f / 17.f;
  q = fmaf(q, s2, 2.f / 15.f);
  q = fmaf(q, s2, 2.f / 13.f);
  q = fmaf(q, s2, 2.f / 11.f);
  q = fmaf(q, s2, 2.f / 9.f);
  q = fmaf(q, s2, 2.f / 7.f);
  q = fmaf(q, s2, 2.f / 5.f);
  q = fmaf(q, s2, 2.f / 3.f);
  q = fmaf(q, s2, 2.f);
  return q * s;
}
// bce_logits_f on softplus_neg_f (CPU forward; within ~2 ulp of bce_logits_f, not bit-identical).
ENGINE_HD float bce_logits_fast_f(float x, float t) {
  const float ax = x < 0.f ? -x : x;
  return add_rn(sub_rn(x > 0.f ? x : 0.f, mul_rn(x, t)), softplus_neg_f(ax));
}
// d/dx: sigmoid(x) - t.
ENGINE_HD float bce_logits_grad_f(float x, float t) {
  const float e = exp_neg_f(x < 0.f ? x : -x);
  const float sg = x >= 0.f ? 1.f / (1.f + e) : e / (1.f + e);
  return sg - t;
}

// max(log(x), -100) for x in [0, 1] (log(0) -> -100; subnormal x handled by scaling by 2^24).
ENGINE_HD float clamped_log_f(float x) {
  const float sub = x < 1.17549435e-38f ? 1.f : 0.f;
  const float xs = x * (1.f + sub * 16777215.f);  // x * 2^24 when subnormal
  const float l = log_f(xs) - sub * 16.6355323f;  // 24 ln 2; log_f(0) is finite garbage, masked below
  const float lc = l > -100.f ? l : -100.f;
  return x > 0.f ? lc : -100.f;
}

// BCE on probabilities with Paddle's (and PyTorch's) clamp of each log at -100:
// -(t*max(log p, -100) + (1-t)*max(log(1-p), -100)). log(0) -> -100 without evaluating log(0).
ENGINE_HD float bce_prob_f(float p, float t) {
  const float lp = clamped_log_f(p);
  const float lq = clamped_log_f(1.f - p);
  return -add_rn(mul_rn(t, lp), mul_rn(1.f - t, lq));
}
// d/dp: (p - t) / max(p*(1-p), 1e-12) (Paddle bce_loss_grad and PyTorch use this eps).
ENGINE_HD float bce_prob_grad_f(float p, float t) {
  const float d = p * (1.f - p);
  return (p - t) / (d > 1e-12f ? d : 1e-12f);
}

ENGINE_HD float l1_f(float a, float b) {
  const float d = a - b;
  return d < 0.f ? -d : d;
}
// sign(a - b), 0 at a == b (Paddle's abs grad and PyTorch's sign(0) = 0).
ENGINE_HD float l1_grad_f(float a, float b) { return a > b ? 1.f : (a < b ? -1.f : 0.f); }

template <PointLoss k>
ENGINE_HD float point_loss_f(float a, float b) {
  if (k == PointLoss::BceLogits) return bce_logits_f(a, b);
  if (k == PointLoss::Bce) return bce_prob_f(a, b);
  return l1_f(a, b);
}
template <PointLoss k>
ENGINE_HD float point_loss_grad_f(float a, float b) {
  if (k == PointLoss::BceLogits) return bce_logits_grad_f(a, b);
  if (k == PointLoss::Bce) return bce_prob_grad_f(a, b);
  return l1_grad_f(a, b);
}
// Inputs a binary_cross_entropy cannot take: p outside [0, 1] or NaN (Paddle raises too).
ENGINE_HD bool bce_prob_bad(float p) { return !((p >= 0.f) & (p <= 1.f)); }

// ------------------------------------------------------------------------------ cross entropy
// A label the CE / OHEM / metrics kernels cannot take: not ignore_index and outside [0, C).
ENGINE_HD bool label_bad(int64_t y, int64_t C, int64_t ignore) { return y != ignore && (y < 0 || y >= C); }

// Probability of the true class as PaddleSeg's OHEM computes it (softmax in f32, then pick):
// exp(x_y - max) / sum_c exp(x_c - max).
ENGINE_HD float ohem_prob_f(float xy_minus_max, float sum) { return exp_neg_f(xy_minus_max) / sum; }

// ------------------------------------------------------------------------------ SGD momentum
// Paddle Momentum with coupled L2 decay: g' = g + wd*p; v = mu*v + g'; p = p - lr*v.
ENGINE_HD void sgd_momentum_f(float& p, float g, float& v, float lr, float mu, float wd) {
  const float gd = fmaf(wd, p, g);
  const float vn = fmaf(mu, v, gd);
  v = vn;
  p = fmaf(-lr, vn, p);
}

// Operands an update reads from memory when it runs, instead of values taken when it is enqueued: a
// step held in a CUDA graph is replayed with the ones of the moment. Each pointer may be null (not
// used); they point into the memory of the updated tensors' device.
struct UpdateGate {
  const float* lr;           // the learning rate (replaces the lr argument)
  const float* loss;         // the update does nothing when the loss is not finite
  const int32_t* found_inf;  // the update does nothing when this is nonzero (the loss scaler's flag)
  // For the CUDA emulator's launch check (kernels/emu/cuemu.h PointerArg): each must be device memory.
  std::array<const void*, 3> device_pointers() const { return {lr, loss, found_inf}; }
};
ENGINE_HD bool update_gated_off(const UpdateGate& g) {
  if (g.found_inf != nullptr && *g.found_inf != 0) return true;
  return g.loss != nullptr && (f2u(*g.loss) & 0x7f800000u) == 0x7f800000u;
}
ENGINE_HD float update_lr(const UpdateGate& g, float lr) { return g.lr != nullptr ? *g.lr : lr; }

// ------------------------------------------------------------------------------ loss-scaling unscale
// Paddle's check_finite_and_unscale, one element: x = x * inv_scale; returns 1 when the input was inf
// or nan (an all-ones exponent), else 0. Integer test, so it vectorises and ignores -ffast-math.
ENGINE_HD uint32_t unscale_f(float& x, float inv_scale) {
  const uint32_t nonfinite = (f2u(x) & 0x7f800000u) == 0x7f800000u ? 1u : 0u;
  x *= inv_scale;
  return nonfinite;
}

}  // namespace engine::kernels
