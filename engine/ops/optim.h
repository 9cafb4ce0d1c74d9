// Fused optimizer updates (in place, no autograd), CPU and CUDA.
//
// sgd_momentum_update: paddle.optimizer.Momentum(momentum, use_nesterov=False, weight_decay=float)
// as PaddleSeg builds it: coupled L2 decay (added to the gradient) on every parameter passed in,
//   g' = g + weight_decay * p;   v = momentum * v + g';   p = p - lr * v
// (= PyTorch SGD(momentum, dampening=0, weight_decay) with its buffer initialised to zero: Paddle's
// first step also starts from v = 0, so no first-step special case). A parameter whose gradient is
// undefined is skipped entirely (Paddle only updates parameters that have a gradient; e.g. a fixed
// scale with stop_gradient). params and velocities must be contiguous f32; grads f32, bf16 or f16
// of the same shape (any strides), widened as the update reads them (data-parallel O2 hands it the
// reduced 16-bit gradients). All tensors on one device. CUDA: one kernel launch for all tensors.
#pragma once
#include <vector>

#include "engine/tensor.h"

namespace engine {

// Operands of an update that it reads when it runs rather than when it is called: what a CUDA graph
// holding the whole training step needs (train/step_graphs.h), since a replay reruns the captured
// kernels with their captured arguments. Each is a one-element tensor on the parameters' device, or
// undefined (not used).
struct UpdateAtRun {
  Tensor lr;         // f32: the learning rate (replaces the lr argument)
  Tensor loss;       // f32: the update does nothing (weights and momentum unchanged) when it is not finite
  Tensor found_inf;  // i32: the update does nothing when it is nonzero (unscale_grads_check_finite's flag)
};

void sgd_momentum_update(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                         const std::vector<Tensor>& velocities, float lr, float momentum, float weight_decay,
                         const UpdateAtRun& at_run = {});

// unscale_grads_check_finite: Paddle's check_finite_and_unscale, the loss scaler's unscale_ step
// (train/grad_scaler.h): every defined gradient is multiplied in place by inv_scale (1 / loss
// scaling) and the result says whether any of them held an inf or nan before scaling. Every tensor
// is scaled even when one is not finite (the step is then skipped, so it does not matter, but Paddle
// does the same). Undefined tensors are skipped. grads: contiguous f32 on one device. CUDA: one
// launch for all tensors, then a 4-byte read of the flag (the caller needs it to decide the step).
// With `into` (one per gradient): the gradients (contiguous f32, bf16 or f16) are read, not written,
// and into[i] (contiguous f32, the same shape) receives grads[i] * inv_scale, so 16-bit gradients
// (data-parallel fp16 O2's reduced ones) are unscaled into f32 without an fp16 rounding of the small
// unscaled values.
bool unscale_grads_check_finite(const std::vector<Tensor>& grads, float inv_scale,
                                const std::vector<Tensor>& into = {});
// The same with no host read: the factor is read when it runs from inv_scale (f32, one element, on
// the gradients' device) and the result is a one-element i32 tensor there, 1 when a gradient held an
// inf or nan, else 0 (for UpdateAtRun::found_inf).
Tensor unscale_grads_check_finite(const std::vector<Tensor>& grads, const Tensor& inv_scale,
                                  const std::vector<Tensor>& into = {});

}  // namespace engine
