// CUDA launchers of the loss family (kernels/cuda/loss.cu). Same math as kernels/cpu/loss_cpu.h.
// All pointers are device pointers; every launcher runs on `stream` and never synchronises.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "base/dtype.h"
#include "kernels/loss_math.h"
#include "kernels/resize_math.h"

namespace engine::kernels {

// Layout of the i64 statistics buffer the CE forward fills (kCeStatsLen elements, device memory).
// The op layer zero-fills it (and sets kFirstBad to INT64_MAX) before the launch and reads it back.
enum CeStat : int {
  kBadCount = 0,  // labels neither ignore_index nor in [0, C)
  kFirstBad = 1,  // lowest pixel index with such a label (INT64_MAX if none)
  kBelow = 2,     // valid pixels with p_gt < thresh (OHEM)
  kSum1 = 3,      // double bits: sum_valid w[y] * nll      (OHEM sum pass: sum_kept nll)
  kSum2 = 4,      // double bits: sum_valid w[y]             (OHEM sum pass: #kept)
  kCeStatsLen = 5
};

// Softmax-CE forward over x [P, C] (contiguous; f32, bf16 or f16 as xt says, the math f32 on the
// widened values), labels y [P], class weights w [C] or null.
// Writes lse [P]; with pgt non-null (OHEM) also pgt [P] (2.0 for ignored pixels) and nll [P].
// Fills stats (see CeStat) and writes loss[0] = S1 / (S2 + denom_add) and inv[0] = 1 / (S2 +
// denom_add) (the backward scale). `part` is workspace of ce_part_doubles(P) doubles.
int64_t ce_part_doubles(int64_t P);
void ce_fwd_cuda(const void* x, DType xt, const int64_t* y, const float* w, int64_t P, int64_t C, int64_t ignore,
                 float thresh, float* lse, float* pgt, float* nll, double* part, int64_t* stats, double denom_add,
                 float* loss, float* inv, cudaStream_t stream);

// gx[p, c] = g[0] * inv[0] * coef_p * (exp(x[p,c] - lse[p]) - [c == y_p]); coef_p = w[y_p] for
// valid pixels and, with pgt non-null, the OHEM keep test !(pgt[p] >= thr) where
// thr = thr_dev ? *thr_dev : thr_host. gx has x's storage type xt (rounded once from f32).
void ce_bwd_cuda(const void* x, DType xt, const int64_t* y, const float* w, const float* lse, const float* pgt,
                 const float* thr_dev, float thr_host, int64_t P, int64_t C, int64_t ignore, const float* g,
                 const float* inv, void* gx, cudaStream_t stream);

// The same two passes on the bilinear upsampling of smaller logits, as resize_ce_fwd_cpu /
// resize_ce_bwd_cpu: x [N, a.h.in, a.w.in, C] contiguous (a.C = C, a's strides x's, a.h / a.w
// bilinear) of storage type xt; the logits the loss sees are its resize to [N, a.h.out, a.w.out, C]
// rounded to xt; y, lse, pgt, nll are per output pixel (P = N * a.h.out * a.w.out). The results are
// the bits of ce_fwd_cuda / ce_bwd_cuda on resize_fwd_cuda's output followed (backward) by
// resize_bwd_cuda, and so the CPU's, without the full-size logits or their gradient in memory. The
// backward writes gx, the gradient of x (xt, x's shape), and needs ws: resize_bwd_workspace_cuda(a)
// floats.
void resize_ce_fwd_cuda(const ResizeArgs& a, DType xt, const void* x, const int64_t* y, const float* w, int64_t ignore,
                        float thresh, float* lse, float* pgt, float* nll, double* part, int64_t* stats,
                        double denom_add, float* loss, float* inv, cudaStream_t stream);
void resize_ce_bwd_cuda(const ResizeArgs& a, DType xt, const void* x, const int64_t* y, const float* w,
                        const float* lse, const float* pgt, const float* thr_dev, float thr_host, int64_t ignore,
                        const float* g, const float* inv, void* gx, float* ws, cudaStream_t stream);

// OHEM after ce_fwd_cuda (with pgt and nll), decided on the device, without a host read:
//  - mining (PaddleSeg: 0 < min_kept < #valid, #valid from stats[kSum2]): *thr = max(thresh, the
//    min_kept-th smallest pgt), by radix select (4 passes of 8 bits over the f32 bits; ignored pixels
//    hold 2.0 and rank last) when fewer than min_kept valid pixels lie below thresh (stats[kBelow];
//    otherwise the select's kernels return at once and *thr = thresh), then loss[0] = S1 / (S2 + denom_add) and inv[0]
//    = 1 / (S2 + denom_add) over the kept pixels (valid and !(pgt >= thr)), filling stats[kSum1], stats[kSum2];
//  - otherwise *thr = +inf (the backward keeps every valid pixel) and loss, inv and stats keep the
//    CE forward's values.
// `state` is 4 u64 of workspace, `hist` 256 u64, `part` ce_part_doubles(P) doubles.
void ohem_mine_cuda(const float* pgt, const float* nll, const int64_t* y, int64_t P, int64_t C, int64_t ignore,
                    int64_t min_kept, float thresh, uint64_t* state, uint64_t* hist, double* part, int64_t* stats,
                    double denom_add, float* loss, float* inv, float* thr, cudaStream_t stream);

// Mean pointwise loss: loss[0] = sum_i point_loss(a[i], b[i]) * (w ? w[i] : 1) / n; for Bce counts
// probabilities outside [0, 1] into stats[kBadCount] (the op zero-fills stats).
void point_loss_fwd_cuda(PointLoss kind, const float* a, const float* b, const float* w, int64_t n, double* part,
                         int64_t* stats, float* loss, cudaStream_t stream);
// ga[i] = g[0] * scale * point_loss_grad(a[i], b[i]) * (w ? w[i] : 1).
void point_loss_bwd_cuda(PointLoss kind, const float* a, const float* b, const float* w, int64_t n, const float* g,
                         float scale, float* ga, cudaStream_t stream);

}  // namespace engine::kernels
