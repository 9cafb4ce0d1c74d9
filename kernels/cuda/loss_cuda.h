// CUDA launchers of the loss family (kernels/cuda/loss.cu). Same math as kernels/cpu/loss_cpu.h.
// All pointers are device pointers; every launcher runs on `stream` and never synchronises.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/loss_math.h"

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

// Softmax-CE forward over x [P, C] (contiguous), labels y [P], class weights w [C] or null.
// Writes lse [P]; with pgt non-null (OHEM) also pgt [P] (2.0 for ignored pixels) and nll [P].
// Fills stats (see CeStat) and writes loss[0] = S1 / (S2 + denom_add) and inv[0] = 1 / (S2 +
// denom_add) (the backward scale). `part` is workspace of ce_part_doubles(P) doubles.
int64_t ce_part_doubles(int64_t P);
void ce_fwd_cuda(const float* x, const int64_t* y, const float* w, int64_t P, int64_t C, int64_t ignore, float thresh,
                 float* lse, float* pgt, float* nll, double* part, int64_t* stats, double denom_add, float* loss,
                 float* inv, cudaStream_t stream);

// gx[p, c] = g[0] * inv[0] * coef_p * (exp(x[p,c] - lse[p]) - [c == y_p]); coef_p = w[y_p] for
// valid pixels and, with pgt non-null, the OHEM keep test !(pgt[p] >= thr) where
// thr = thr_dev ? *thr_dev : thr_host.
void ce_bwd_cuda(const float* x, const int64_t* y, const float* w, const float* lse, const float* pgt,
                 const float* thr_dev, float thr_host, int64_t P, int64_t C, int64_t ignore, const float* g,
                 const float* inv, float* gx, cudaStream_t stream);

// OHEM threshold by radix select (4 passes of 8 bits over the f32 bits of pgt, no sort):
// *thr_out = max(thresh, k-th smallest of pgt[0..P)) (k 1-based). Ignored pixels hold 2.0 and so
// rank after every valid one; the caller guarantees k <= #valid. `state` is 4 u64 of workspace,
// `hist` 256 u64 of workspace.
void ohem_select_cuda(const float* pgt, int64_t P, int64_t k, float thresh, uint64_t* state, uint64_t* hist,
                      float* thr_out, cudaStream_t stream);

// OHEM loss over kept pixels (valid and !(pgt >= thr)): fills stats[kSum1], stats[kSum2] and writes
// loss[0] = S1 / (S2 + denom_add), inv[0] = 1 / (S2 + denom_add).
void ohem_sum_cuda(const float* pgt, const float* nll, const int64_t* y, int64_t P, int64_t C, int64_t ignore,
                   const float* thr_dev, float thr_host, double* part, int64_t* stats, double denom_add, float* loss,
                   float* inv, cudaStream_t stream);

// Mean pointwise loss: loss[0] = sum_i point_loss(a[i], b[i]) * (w ? w[i] : 1) / n; for Bce counts
// probabilities outside [0, 1] into stats[kBadCount] (the op zero-fills stats).
void point_loss_fwd_cuda(PointLoss kind, const float* a, const float* b, const float* w, int64_t n, double* part,
                         int64_t* stats, float* loss, cudaStream_t stream);
// ga[i] = g[0] * scale * point_loss_grad(a[i], b[i]) * (w ? w[i] : 1).
void point_loss_bwd_cuda(PointLoss kind, const float* a, const float* b, const float* w, int64_t n, const float* g,
                         float scale, float* ga, cudaStream_t stream);

}  // namespace engine::kernels
