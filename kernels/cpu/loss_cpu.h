// CPU kernels of the loss family (kernels/cpu/loss_cpu.cpp): softmax cross entropy over the last
// axis (CE and OHEM), OHEM k-th value selection, and the mean pointwise losses (BCE with logits,
// BCE on probabilities, L1). Per-element math: kernels/loss_math.h (shared with kernels/cuda/loss.cu).
#pragma once
#include <cstdint>

#include "base/dtype.h"
#include "kernels/cpu/resize_cpu.h"
#include "kernels/loss_math.h"

namespace engine::kernels {

// Host-side results of the softmax-CE forward pass.
struct CeFwdStats {
  double sum_loss = 0;     // sum over valid pixels of w[y] * nll  (nll = lse - x_y)
  double sum_w = 0;        // sum over valid pixels of w[y] (the valid count without class weights)
  int64_t n_bad = 0;       // labels that are neither ignore_index nor in [0, C)
  int64_t first_bad = -1;  // lowest pixel index holding such a label, -1 if none
  int64_t n_below = 0;     // valid pixels whose p_gt < thresh (only when pgt is requested)
};

// x: logits [P, C] contiguous, of storage type xt (f32, bf16 or f16: the math is f32 on the widened
// values); y: labels [P]; w: class weights [C] or null.
// Writes lse[P] (log-sum-exp of each pixel). With pgt non-null also p_gt[P] (softmax probability of
// the label, 2.0 for ignored pixels) and nll[P] (lse - x_y, 0 for ignored pixels).
void ce_fwd_cpu(const void* x, DType xt, const int64_t* y, const float* w, int64_t P, int64_t C, int64_t ignore,
                float thresh, float* lse, float* pgt, float* nll, CeFwdStats* stats);

// gx[p, c] = coef_p * (exp(x[p, c] - lse[p]) - [c == y_p]) with coef_p = scale * w[y_p] for valid
// pixels (times the OHEM keep test !(pgt[p] >= thr) when pgt is non-null), 0 for ignored pixels.
// gx has x's storage type xt (computed in f32, rounded once).
void ce_bwd_cpu(const void* x, DType xt, const int64_t* y, const float* w, const float* lse, const float* pgt,
                float thr, int64_t P, int64_t C, int64_t ignore, float scale, void* gx);

// The same two passes on the bilinear upsampling of smaller logits: x is [N, a.h.in, a.w.in, C]
// contiguous (a.C = C; a's strides those of a contiguous x; a.h / a.w bilinear), the logits the
// loss sees are its resize to [N, a.h.out, a.w.out, C] in x's storage type, P = N * a.h.out * a.w.out,
// and y, lse, pgt, nll are per output pixel. Results are the bits of ce_fwd_cpu / ce_bwd_cpu on
// resize_fwd_cpu's output followed (backward) by resize_bwd_cpu, without the full-size logits or
// their gradient in memory. The backward writes the gradient of x (x's type, [N, a.h.in, a.w.in, C])
// and needs ws: resize_bwd_workspace_cpu(a) floats.
void resize_ce_fwd_cpu(const ResizeArgs& a, DType xt, const void* x, const int64_t* y, const float* w, int64_t ignore,
                       float thresh, float* lse, float* pgt, float* nll, CeFwdStats* stats);
void resize_ce_bwd_cpu(const ResizeArgs& a, DType xt, const void* x, const int64_t* y, const float* w, const float* lse,
                       const float* pgt, float thr, int64_t ignore, float scale, void* gx, float* ws);

// The k-th smallest (1-based) p_gt among valid pixels whose p_gt >= thresh (a radix select on the
// bits). Requires pgt and nll as ce_fwd_cpu wrote them (ignored pixels: p_gt = 2.0, nll = 0; the
// op has already rejected bad labels) and 1 <= k <= that count: the 2.0 marks then rank above every
// candidate, so the labels are not read (y, C, ignore describe them for the reader).
float ohem_select_cpu(const float* pgt, const int64_t* y, int64_t P, int64_t C, int64_t ignore, float thresh,
                      int64_t k);

// Sum of nll and count over kept pixels (valid and !(pgt >= thr)); valid = p_gt != 2.0, the same
// contract as ohem_select_cpu (y is not read).
void ohem_sum_cpu(const float* pgt, const float* nll, const int64_t* y, int64_t P, int64_t C, int64_t ignore, float thr,
                  double* sum, int64_t* count);

// Sum over i of point_loss(a[i], b[i]) * (w ? w[i] : 1), in double; all contiguous [n].
// For Bce also counts probabilities outside [0, 1] (NaN included) into *n_bad.
double point_loss_fwd_cpu(PointLoss kind, const float* a, const float* b, const float* w, int64_t n, int64_t* n_bad);
// ga[i] = scale * point_loss_grad(a[i], b[i]) * (w ? w[i] : 1).
void point_loss_bwd_cpu(PointLoss kind, const float* a, const float* b, const float* w, int64_t n, float scale,
                        float* ga);

}  // namespace engine::kernels
