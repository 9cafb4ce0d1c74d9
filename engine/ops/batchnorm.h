// Batch normalisation over channels-last activations (f32), differentiable, on CPU and CUDA.
//
// x is [N, H, W, C] (NHWC, docs/ARCHITECTURE.md) or [N, C]; statistics are per channel over every
// other axis (M = N*H*W values per channel). weight, bias, running_mean, running_var are [C].
//
// Semantics (Paddle's nn.BatchNorm2D):
//  - training: normalise with the batch mean and the BIASED batch variance (divide by M), plus eps:
//      y = (x - mean) / sqrt(var + eps) * weight + bias
//    and update the running statistics in place with Paddle's momentum convention
//      running = momentum * running + (1 - momentum) * batch      (momentum 0.9 == PyTorch's 0.1)
//    The running VARIANCE is updated with the BIASED batch variance, as Paddle's CUDA kernel
//    (BNForwardTraining) does. PyTorch (and Paddle's cuDNN path) use the unbiased M/(M-1) variance
//    there; the difference is negligible for M in the thousands but visible in tests with tiny M.
//    Training needs M > 1 (as PyTorch: one value per channel has no variance).
//  - eval (training = false): normalise with running_mean / running_var; they are not modified.
//  - backward: training mode differentiates through the batch statistics (dx, dweight, dbias);
//    eval mode is an affine op (dx = g * weight / sqrt(running_var + eps)). Running statistics get
//    no gradient.
//  - weight / bias may be undefined (= 1 / 0, PyTorch's affine=False). running_mean / running_var
//    must both be defined or both undefined; undefined is allowed only in training (no update).
//  - Running statistics must be contiguous f32 [C] on x's device (they are updated in place).
//  - act (BatchNormArgs::act, default none): an activation applied to z, the BN output above, in the
//    same pass (train and eval):
//      relu:               y = z > 0 ? z : 0           gradient g * (z > 0 ? 1 : 0)      (relu'(0) = 0)
//      leaky_relu(slope):  y = z > 0 ? z : z * slope   gradient g * (z > 0 ? 1 : slope)  (leaky'(0) = slope)
//    It equals relu(batch_norm(...)) / leaky_relu(batch_norm(...), slope) exactly - forward bits and
//    gradients, including the gradient at z == 0, which is what the engine's relu / leaky_relu
//    backward gives (PyTorch/Paddle convention, engine/ops/elementwise.h). The backward does not keep
//    y or a mask: its kernels recompute z from x and the saved statistics with the forward's own
//    arithmetic (same bits) and scale the incoming gradient as above (a NaN z counts as z <= 0, as in
//    the elementwise ops), then run the usual BN backward. Like the weight, the bias is read again at
//    backward time, so it must not be changed in place between forward and backward (the optimizer
//    steps after backward). PyTorch and Paddle have no such fused op; it exists to save the
//    activation's two memory passes per conv-BN-activation unit (forward and backward): ReLU for
//    STDC / PP-LiteSeg / MobileNetV1, LeakyReLU(0.1) for DarkNet53 and the YOLOv3 neck.
// Results are deterministic on both devices (no atomics; fixed reduction orders).
//
// Sync-BN building blocks (data parallel composes them; each piece is differentiable):
//   st = batch_norm_local_stats(x_local, shift)        // per-rank sums over the local rows
//   S = all_reduce_sum(st.sum), Q = all_reduce_sum(st.sum_sq), n = all_reduce_sum(st.count)
//   mv = batch_norm_moments(S, Q, n, shift)             // global mean and biased variance
//   y = batch_norm_apply(x_local, mv.mean, mv.var, weight, bias, eps)
//   batch_norm_update_running(running_mean, running_var, mv.mean, mv.var, momentum)  // no grad
// The all-reduce op's backward must itself all-reduce (sum) the gradients of S and Q: every rank's
// loss depends on the global statistics. `shift` (e.g. running_mean, identical on every rank; or an
// undefined tensor = 0) is subtracted before summing, so Q - S^2/n does not cancel catastrophically
// when |mean| >> std; the results do not depend on it mathematically and it receives no gradient.
#pragma once
#include <cstdint>

#include "engine/tensor.h"

namespace engine {

// The activation fused into batch_norm (see `act` above).
struct BnActivation {
  enum class Kind { None, Relu, LeakyRelu };
  Kind kind = Kind::None;
  float negative_slope = 0.f;  // LeakyRelu only
  static BnActivation none() { return {}; }
  static BnActivation relu() { return {Kind::Relu, 0.f}; }
  static BnActivation leaky_relu(float negative_slope) { return {Kind::LeakyRelu, negative_slope}; }
  bool fused() const { return kind != Kind::None; }
};

struct BatchNormArgs {
  float momentum = 0.9f;
  float eps = 1e-5f;
  bool training = true;
  BnActivation act;  // y = act(BN(x)), see above; none by default
};

Tensor batch_norm(const Tensor& x /*[N,H,W,C] or [N,C]*/, const Tensor& weight, const Tensor& bias,
                  const Tensor& running_mean, const Tensor& running_var, const BatchNormArgs& a);

// Per-channel local statistics for sync BN: sum = sum_r (x[r,c] - shift[c]), sum_sq = sum_r (x[r,c] -
// shift[c])^2, both f32 [C] on x's device and differentiable w.r.t. x; count = M (rows of this rank).
struct BatchNormStats {
  Tensor sum;
  Tensor sum_sq;
  int64_t count = 0;
};
BatchNormStats batch_norm_local_stats(const Tensor& x, const Tensor& shift = Tensor());

// Global mean and biased variance from all-reduced sums: mean = shift + S/n, var = max(Q/n - (S/n)^2, 0).
// Differentiable w.r.t. S and Q (built from elementwise ops).
struct BatchNormMoments {
  Tensor mean;
  Tensor var;
};
BatchNormMoments batch_norm_moments(const Tensor& sum, const Tensor& sum_sq, int64_t count,
                                    const Tensor& shift = Tensor());
// The same with the count as a one-element f32 tensor on the statistics' device (all-reduced with
// them by sync BN, so no rank reads it on the host).
BatchNormMoments batch_norm_moments(const Tensor& sum, const Tensor& sum_sq, const Tensor& count,
                                    const Tensor& shift = Tensor());

// y = (x - mean) / sqrt(var + eps) * weight + bias with mean, var [C] as INPUTS: differentiable w.r.t.
// x, mean, var, weight and bias (so gradients reach the statistics and, through them, every rank's x).
Tensor batch_norm_apply(const Tensor& x, const Tensor& mean, const Tensor& var, const Tensor& weight,
                        const Tensor& bias, float eps);

// running = momentum * running + (1 - momentum) * batch for the mean and the (biased) variance, in
// place, no autograd. Either running tensor may be undefined (skipped).
void batch_norm_update_running(const Tensor& running_mean, const Tensor& running_var, const Tensor& mean,
                               const Tensor& var, float momentum);

}  // namespace engine
