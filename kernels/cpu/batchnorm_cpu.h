// Batch-norm family: the CPU kernels (kernels/cpu/batchnorm_cpu.cpp) and the per-channel math shared
// with the CUDA kernels (kernels/cuda/batchnorm.cu includes this header for the ENGINE_HD functions,
// so the two backends cannot drift apart).
//
// Every kernel sees x as a contiguous [M, C] matrix: M = N*H*W rows (NHWC activations) or M = N
// ([N, C] features), channels contiguous. Per-channel vectors ([C]) are contiguous f32.
#pragma once
#include <cstdint>

#include "kernels/shared_math.h"

namespace engine::kernels {

// ---------------------------------------------------------------------------- shared math
// 1 / sqrt(var + eps), IEEE-rounded on both backends.
ENGINE_HD float bn_invstd(float var, float eps) { return 1.f / sqrt_f(var + eps); }

// Paddle's running-statistic rule (momentum 0.9 by default, == PyTorch momentum 0.1):
//   running = momentum * running + (1 - momentum) * batch.
ENGINE_HD float bn_running_update(float running, float batch, float momentum) {
  return fmaf(momentum, running, (1.f - momentum) * batch);
}

// Chan et al.'s parallel merge of two (count, mean, M2) partial statistics into (na, ma, m2a).
// An empty side leaves the other unchanged.
template <class T>
ENGINE_HD void bn_welford_merge(T& na, T& ma, T& m2a, T nb, T mb, T m2b) {
  if (nb == T(0)) return;
  if (na == T(0)) {
    na = nb;
    ma = mb;
    m2a = m2b;
    return;
  }
  const T n = na + nb;
  const T delta = mb - ma;
  const T fb = nb / n;
  ma = ma + delta * fb;
  m2a = m2a + m2b + delta * delta * na * fb;
  na = n;
}

// The forward's per-channel scale (w * invstd; w = 1 when weight is null) and pre-activation
// z = (x - mean) * scale + bias. The forward kernels and the fused-activation backward (which
// recomputes z for the activation's gradient) both use these, so the recomputed z is the forward's
// z bit for bit.
// Every multiply-add below is an explicit fmaf: the kernels are compiled with contraction off on
// the host (and nvcc has nothing left to contract), so the fused and the unfused paths, the CPU's
// instruction sets and the compilers all round alike.
ENGINE_HD float bn_scale(float var, const float* weight, int64_t c, float eps) {
  return bn_invstd(var, eps) * (weight ? weight[c] : 1.f);
}
ENGINE_HD float bn_z(float x, float mean, float scale, float bias) { return fmaf(x - mean, scale, bias); }
// The activation fused into the forward (BatchNormArgs::act) applied to z, and its gradient, the
// same arithmetic as the engine's relu / leaky_relu ops (kernels/elementwise_math.h), so fused and
// unfused paths give the same bits:
//   Relu:      y = z > 0 ? z : 0,          g' = z > 0 ? g : 0          (relu'(0) = 0)
//   LeakyRelu: y = z > 0 ? z : z * slope,  g' = z > 0 ? g : g * slope  (leaky_relu'(0) = slope)
// The gradient tests the pre-activation z (the op's input), as the elementwise ops test their input.
enum class BnActKind : int { None = 0, Relu = 1, LeakyRelu = 2 };
template <BnActKind A>
ENGINE_HD float bn_act(float z, float slope) {
  if constexpr (A == BnActKind::Relu)
    return z > 0.f ? z : 0.f;
  else if constexpr (A == BnActKind::LeakyRelu)
    return leaky_relu_f(z, slope);
  else
    return z;
}
template <BnActKind A>
ENGINE_HD float bn_act_grad(float g, float z, float slope) {
  if constexpr (A == BnActKind::Relu)
    return z > 0.f ? g : 0.f;
  else if constexpr (A == BnActKind::LeakyRelu)
    return z > 0.f ? g : g * slope;
  else
    return g;
}

// One element of the backward reduction: sg += g, sgx += g * (x - mean).
ENGINE_HD void bn_bwd_accumulate(float g, float x, float mean, float& sg, float& sgx) {
  sg += g;
  sgx = fmaf(g, x - mean, sgx);
}
// The backward's dx = k1*g + k2*(x - m) + k3, always evaluated as bn_dx_x(x, m, k2, bn_dx_g(g, k1, k3));
// a term that does not exist (no g, or no x) is skipped rather than multiplied by 0.
ENGINE_HD float bn_dx_g(float g, float k1, float acc) { return fmaf(k1, g, acc); }
ENGINE_HD float bn_dx_x(float x, float m, float k2, float acc) { return fmaf(k2, x - m, acc); }

// Fused activation (BatchNormArgs::act) for the backward kernels: unless kind is None, the incoming
// gradient g is replaced by bn_act_grad<kind>(g, z, slope) with z recomputed from x and the
// statistics the forward used (mean, var, weight, bias, eps); nothing from the forward output is kept.
struct BnAct {
  BnActKind kind = BnActKind::None;
  float slope = 0.f;  // LeakyRelu's negative slope
  const float* mean = nullptr;
  const float* var = nullptr;
  const float* weight = nullptr;  // null = 1
  const float* bias = nullptr;    // null = 0
  float eps = 0.f;
};

// Per-channel results of the backward reduction (each pointer optional):
//   sg = sum_r g[r, c],   sgx = sum_r g[r, c] * (x[r, c] - mean[c]),   invstd = 1/sqrt(var + eps)
//   dweight = sgx * invstd                 dbias = sg
//   dmean   = -w * invstd * sg              dvar  = -0.5 * w * invstd^3 * sgx      (batch_norm_apply)
//   k1, k2, k3: coefficients of dx = k1*g + k2*(x - mean) + k3 for batch_norm_bwd_*:
//     train mode (gradient through the batch statistics, M rows):
//       k1 = w*invstd, k2 = -w*invstd^3*sgx/M, k3 = -w*invstd*sg/M
//     affine mode (eval mode, or batch_norm_apply where mean/var are separate inputs):
//       k1 = w*invstd, k2 = 0, k3 = 0
// w is 1 when the weight pointer is null.
struct BnBwdOut {
  float* dweight = nullptr;
  float* dbias = nullptr;
  float* dmean = nullptr;
  float* dvar = nullptr;
  float* k1 = nullptr;
  float* k2 = nullptr;
  float* k3 = nullptr;
};

// The per-channel finalisation above, from sums accumulated in double.
ENGINE_HD void bn_bwd_finalize_channel(const BnBwdOut& o, int64_t c, double sg, double sgx, int64_t M, float var,
                                       const float* weight, float eps, bool train) {
  const double invstd = (double)bn_invstd(var, eps);
  const double w = weight ? (double)weight[c] : 1.0;
  if (o.dweight) o.dweight[c] = (float)(sgx * invstd);
  if (o.dbias) o.dbias[c] = (float)sg;
  if (o.dmean) o.dmean[c] = (float)(-w * invstd * sg);
  if (o.dvar) o.dvar[c] = (float)(-0.5 * w * invstd * invstd * invstd * sgx);
  if (o.k1) o.k1[c] = (float)(w * invstd);
  if (o.k2) o.k2[c] = train ? (float)(-w * invstd * invstd * invstd * sgx / (double)M) : 0.f;
  if (o.k3) o.k3[c] = train ? (float)(-w * invstd * sg / (double)M) : 0.f;
}

// ---------------------------------------------------------------------------- CPU kernels
// Storage: the activations of a call (x, y, g, dx) are all of type dt: f32, bf16 or f16 (mixed
// precision); statistics, parameters and coefficients are f32, and so is the math.
// Per-channel batch mean and biased variance of x [M, C] (M >= 1). Numerically stable: two passes
// over each cache-resident chunk of rows, chunks merged in double with Chan's formula, per-thread
// partials merged in thread order (deterministic). When running_mean/running_var are non-null they
// are updated in place with bn_running_update (variance: the biased batch variance, as Paddle's CUDA
// kernel; see engine/ops/batchnorm.h).
void batch_norm_stats_cpu(DType dt, const void* x, int64_t M, int64_t C, float* mean, float* var, float* running_mean,
                          float* running_var, float momentum);

// y[r, c] = (x[r, c] - mean[c]) * weight[c] / sqrt(var[c] + eps) + bias[c]   (weight/bias may be null = 1/0)
// act: y = bn_act<act>(that, slope) (ReLU or LeakyReLU), in the same pass.
void batch_norm_fwd_cpu(DType dt, const void* x, int64_t M, int64_t C, const float* mean, const float* var,
                        const float* weight, const float* bias, float eps, void* y, BnActKind act = BnActKind::None,
                        float slope = 0.f);

// The backward reduction (sg, sgx, see BnBwdOut) followed by the per-channel finalisation. With a
// fused activation, g is first replaced by its gradient at the recomputed pre-activation (BnAct).
void batch_norm_bwd_reduce_cpu(DType dt, const void* g, const void* x, int64_t M, int64_t C, const float* mean,
                               const float* var, const float* weight, float eps, bool train, const BnBwdOut& out,
                               const BnAct& act = {});

// dx[r, c] = k1[c]*g[r, c] + k2[c]*(x[r, c] - m[c]) + k3[c]. g/k1 may be null (term dropped); x/k2
// may be null (term dropped); m may be null (= 0); k3 may be null (= 0). With a fused activation, g
// is first replaced by its gradient at the recomputed pre-activation (BnAct); then g, k1 and x are
// required.
void batch_norm_bwd_cpu(DType dt, const void* g, const void* x, int64_t M, int64_t C, const float* m, const float* k1,
                        const float* k2, const float* k3, void* dx, const BnAct& act = {});

// running = bn_running_update(running, batch, momentum) for mean and variance, C channels.
void batch_norm_update_running_cpu(float* running_mean, float* running_var, const float* mean, const float* var,
                                   int64_t C, float momentum);

}  // namespace engine::kernels
