// Losses (CPU and CUDA). Every loss returns a scalar tensor of shape {} (one element) and is
// differentiable w.r.t. its first argument (logits / probabilities / a); labels, targets and weights
// get no gradient (l1_loss also differentiates b). Deterministic on both devices (fixed-order
// reductions in double; integer atomics only).
//
// cross_entropy: PaddleSeg CrossEntropyLoss(weight, ignore_index, top_k_percent_pixels=1.0,
//   avg_non_ignore=True) on channels-last logits [..., C] (e.g. [N,H,W,C]) and i64 labels [...]
//   (e.g. [N,H,W]):  nll_p = logsumexp(x_p) - x_p[y_p],  mask_p = (y_p != ignore_index),
//   coef_p = class_weight[y_p] (1 without weights),
//     loss = mean(coef*nll*mask) / (mean(coef*mask) + 1e-8) = sum(coef*nll*mask) / (sum(coef*mask) + 1e-8*P)
//   (P = number of pixels). An all-ignored batch gives 0 (and a zero gradient), as PaddleSeg.
//   Note PyTorch's weighted 'mean' divides by sum(coef*mask) without the 1e-8*P term.
// ohem_cross_entropy: PaddleSeg OhemCrossEntropyLoss(thresh, min_kept, ignore_index), batch-global:
//   p_p = softmax(x_p)[y_p] (f32). If min_kept < num_valid and num_valid > 0: threshold = thresh,
//   raised to p_(k) (the min_kept-th smallest p over valid pixels) when p_(k) > thresh; a valid pixel
//   is kept when p_p < threshold (strict: ties at p_(k) are dropped, so #kept can be < min_kept).
//   Otherwise (num_valid <= min_kept) every valid pixel is kept (no mining). With min_kept == 0
//   PaddleSeg applies no mask at all (its kept-mask sits inside `if min_kept > 0`): plain CE over the
//   valid pixels, whatever thresh is; reproduced here (the reference fact sheet reads otherwise).
//     loss = sum_kept nll / (#kept + 1e-5*P).   The selection gets no gradient.
// upsampled_cross_entropy / upsampled_ohem_cross_entropy: the same losses on the bilinear upsampling
//   of logits [N, h, w, C] to the labels' [N, H, W], half-pixel (Paddle's F.interpolate(...,
//   mode='bilinear', align_corners=False), as PaddleSeg's models upsample their logits), in the
//   logits' storage type: exactly cross_entropy(resize_bilinear(logits, H, W, false), labels, ...),
//   loss and gradient the same bits, the gradient flowing to the small logits. The full-size logits
//   and their gradient are never stored: the CPU makes and consumes them per row block, the CUDA
//   kernels per tile of pixels (forward) and inside the resize backward's column pass (backward).
// bce_with_logits: mean_i w_i * (max(x,0) - x*t + log(1 + exp(-|x|)))  (weight same shape or undefined).
// binary_cross_entropy: mean_i w_i * -(t*max(log p, -100) + (1-t)*max(log(1-p), -100)); Paddle and
//   PyTorch both clamp the logs at -100. Gradient (p - t) / max(p(1-p), 1e-12) as both frameworks.
//   Probabilities outside [0, 1] (or NaN) are an Error (Paddle raises too).
// l1_loss: mean |a - b|; d/da = sign(a - b) with sign(0) = 0.
// Storage: cross_entropy's and ohem_cross_entropy's logits may be f32, bf16 or f16 (mixed precision
//   O2 stores PP-LiteSeg's full-size logits in the low type); the math is f32 on the widened values
//   (Paddle's O2 casts them to f32 before softmax_with_cross_entropy, the same numbers), the loss is
//   f32, and the logits' gradient has their storage type, rounded once from f32. Everything else is f32.
// Errors (engine::Error, one line naming op, tensor and shapes): wrong dtype (logits f32 / bf16 / f16,
//   labels i64, the others f32), shape mismatch, empty inputs, devices differ, labels outside [0, C) other than
//   ignore_index (with the count, the first position and its value; checked on both devices).
#pragma once
#include <cstdint>

#include "engine/tensor.h"

namespace engine {

Tensor cross_entropy(const Tensor& logits, const Tensor& labels, const Tensor& class_weight = Tensor(),
                     int64_t ignore_index = 255);
Tensor ohem_cross_entropy(const Tensor& logits, const Tensor& labels, float thresh = 0.7f, int64_t min_kept = 10000,
                          int64_t ignore_index = 255);
Tensor upsampled_cross_entropy(const Tensor& logits, const Tensor& labels, const Tensor& class_weight = Tensor(),
                               int64_t ignore_index = 255);
Tensor upsampled_ohem_cross_entropy(const Tensor& logits, const Tensor& labels, float thresh = 0.7f,
                                    int64_t min_kept = 10000, int64_t ignore_index = 255);
Tensor bce_with_logits(const Tensor& logits, const Tensor& targets, const Tensor& weight = Tensor());
Tensor binary_cross_entropy(const Tensor& probs, const Tensor& targets, const Tensor& weight = Tensor());
Tensor l1_loss(const Tensor& a, const Tensor& b);

}  // namespace engine
