// Batch-norm family on the CPU: batch statistics, the fused normalise+affine forward, the backward
// reduction and the backward elementwise pass (engine/ops/batchnorm.cpp composes them into
// batch_norm, batch_norm_local_stats, batch_norm_apply).
// Math (x is [M, C], channels contiguous; per-channel math shared with CUDA in batchnorm_cpu.h):
//   stats:    mean[c] = 1/M sum_r x[r,c],  var[c] = 1/M sum_r (x[r,c] - mean[c])^2   (biased)
//   forward:  y = (x - mean) * w * invstd + b,            invstd = 1/sqrt(var + eps)
//   backward: sg = sum_r g,  sgx = sum_r g*(x - mean)  ->  dw, db, dmean, dvar, k1..k3 (BnBwdOut)
//             dx = k1*g + k2*(x - mean) + k3
//   fused ReLU (a bool template parameter of each elementwise loop): the forward stores max(0, y);
//   both backward passes first replace g by (z > 0 ? g : 0), z = the forward's y recomputed from x
//   (bn_z, identical bits), so no mask or output is kept and no extra pass is made.
// Strategy: the rows are cut into work blocks fixed by the shape alone (never by the thread count),
// so results are bit-identical whatever OMP_NUM_THREADS is; OpenMP static schedule over blocks.
// A block walks its rows in chunks of ~32 KiB (L1-resident): statistics take two passes over the
// chunk (sum -> chunk mean -> sum of squared deviations, all vectorised over channels), and the chunk
// (count, mean, M2) is merged into the block's double accumulators with Chan's formula. Block
// partials are merged in block order, in double. So the statistics read x from memory once and are
// stable even when |mean| >> std. The elementwise passes are plain row loops over channels with
// per-channel coefficients precomputed in L1-resident arrays.
// Memory traffic per element: training forward 12 B (stats read + normalise read/write), backward
// 20 B (reduction reads g, x; dx pass reads g, x and writes dx).
// Tested by tests/test_batchnorm.cpp; benchmarked by bench_kernels --filter batch_norm.
#include "kernels/cpu/batchnorm_cpu.h"

#include <omp.h>

#include <algorithm>
#include <vector>

#include "engine/error.h"

namespace engine::kernels {
namespace {

constexpr int64_t kChunkElems = 8192;       // floats per L1 chunk (32 KiB)
constexpr int64_t kBlockElems = 1 << 16;    // minimum floats per work block
constexpr int64_t kMaxBlocks = 64;
constexpr int64_t kParallelMin = 1 << 15;   // below this many elements: one thread

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Fixed partition of M rows: chunks of chunk_rows, blocks of block_rows (a multiple of chunk_rows).
struct RowBlocks {
  int64_t chunk_rows, block_rows, nblocks;
  RowBlocks(int64_t M, int64_t C) {
    chunk_rows = std::max<int64_t>(1, kChunkElems / std::max<int64_t>(C, 1));
    const int64_t min_rows = std::max<int64_t>(chunk_rows, ceil_div(kBlockElems, std::max<int64_t>(C, 1)));
    block_rows = std::max(min_rows, ceil_div(M, kMaxBlocks));
    block_rows = ceil_div(block_rows, chunk_rows) * chunk_rows;
    nblocks = std::max<int64_t>(1, ceil_div(M, block_rows));
  }
};

bool parallel_ok(int64_t elems) { return elems >= kParallelMin && omp_get_max_threads() > 1; }

// Rows [r0, r1) of [M, C] in parallel (static schedule) when the tensor is large enough.
template <class Body>
void parallel_rows(int64_t M, int64_t C, const Body& body) {
  if (!parallel_ok(M * C)) {
    body(0, M);
    return;
  }
#pragma omp parallel
  {
    const int nt = omp_get_num_threads(), t = omp_get_thread_num();
    const int64_t per = ceil_div(M, nt);
    const int64_t r0 = std::min<int64_t>(M, per * t), r1 = std::min<int64_t>(M, r0 + per);
    if (r0 < r1) body(r0, r1);
  }
}

}  // namespace

void batch_norm_stats_cpu(const float* x, int64_t M, int64_t C, float* mean, float* var, float* running_mean,
                          float* running_var, float momentum) {
  const RowBlocks P(M, C);
  // Block partials: count (same for every channel), mean and M2 per channel, in double.
  std::vector<double> pmean((size_t)(P.nblocks * C)), pm2((size_t)(P.nblocks * C));
  std::vector<double> pn((size_t)P.nblocks);
#pragma omp parallel if (parallel_ok(M * C) && P.nblocks > 1)
  {
    std::vector<float> s((size_t)C), q((size_t)C);
#pragma omp for schedule(static)
    for (int64_t b = 0; b < P.nblocks; ++b) {
      double* bm = pmean.data() + b * C;
      double* bq = pm2.data() + b * C;
      double bn = 0;
      std::fill(bm, bm + C, 0.0);
      std::fill(bq, bq + C, 0.0);
      const int64_t rb = b * P.block_rows, re = std::min(M, rb + P.block_rows);
      for (int64_t r0 = rb; r0 < re; r0 += P.chunk_rows) {
        const int64_t r1 = std::min(re, r0 + P.chunk_rows), n = r1 - r0;
        float* sp = s.data();
        float* qp = q.data();
        const float* xr = x + r0 * C;
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) sp[c] = xr[c];
        for (int64_t r = 1; r < n; ++r) {
          const float* xp = xr + r * C;
#pragma omp simd
          for (int64_t c = 0; c < C; ++c) sp[c] += xp[c];
        }
        const float inv_n = 1.f / (float)n;
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) {
          sp[c] *= inv_n;  // chunk mean
          qp[c] = 0.f;
        }
        for (int64_t r = 0; r < n; ++r) {
          const float* xp = xr + r * C;
#pragma omp simd
          for (int64_t c = 0; c < C; ++c) {
            const float d = xp[c] - sp[c];
            qp[c] += d * d;
          }
        }
        // Chan merge of the chunk (n, s, q) into the block (bn, bm, bq); the counts are per row.
        const double nb = (double)n, ntot = bn + nb, fb = nb / ntot, cross = bn * fb;
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) {
          const double delta = (double)sp[c] - bm[c];
          bm[c] += delta * fb;
          bq[c] += (double)qp[c] + delta * delta * cross;
        }
        bn = ntot;
      }
      pn[(size_t)b] = bn;
    }
  }
  for (int64_t c = 0; c < C; ++c) {
    double n = 0, m = 0, m2 = 0;
    for (int64_t b = 0; b < P.nblocks; ++b)
      bn_welford_merge<double>(n, m, m2, pn[(size_t)b], pmean[(size_t)(b * C + c)], pm2[(size_t)(b * C + c)]);
    mean[c] = (float)m;
    var[c] = (float)(m2 / n);
    if (running_mean) running_mean[c] = bn_running_update(running_mean[c], mean[c], momentum);
    if (running_var) running_var[c] = bn_running_update(running_var[c], var[c], momentum);
  }
}

namespace {

// Per-channel (mean, scale, bias) of the forward's affine map z = bn_z(x, mean, scale, bias), in
// L1-resident arrays; m/var may be null (then that part is left 0, e.g. an unused relu mask).
struct Affine {
  std::vector<float> m, s, b;
  Affine(int64_t C, const float* mean, const float* var, const float* weight, const float* bias, float eps)
      : m((size_t)C, 0.f), s((size_t)C, 0.f), b((size_t)C, 0.f) {
    if (!mean || !var) return;
    for (int64_t c = 0; c < C; ++c) {
      m[(size_t)c] = mean[c];
      s[(size_t)c] = bn_scale(var[c], weight, c, eps);
      b[(size_t)c] = bias ? bias[c] : 0.f;
    }
  }
};

template <bool kRelu>
void fwd_rows(const float* x, int64_t r0, int64_t r1, int64_t C, const Affine& a, float* y) {
  const float* mp = a.m.data();
  const float* sp = a.s.data();
  const float* bp = a.b.data();
  for (int64_t r = r0; r < r1; ++r) {
    const float* xr = x + r * C;
    float* yr = y + r * C;
    if constexpr (kRelu) {
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) yr[c] = bn_relu(bn_z(xr[c], mp[c], sp[c], bp[c]));
    } else {
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) yr[c] = bn_z(xr[c], mp[c], sp[c], bp[c]);
    }
  }
}

}  // namespace

void batch_norm_fwd_cpu(const float* x, int64_t M, int64_t C, const float* mean, const float* var, const float* weight,
                        const float* bias, float eps, float* y, bool relu) {
  const Affine a(C, mean, var, weight, bias, eps);
  parallel_rows(M, C, [&](int64_t r0, int64_t r1) {
    if (relu) fwd_rows<true>(x, r0, r1, C, a, y);
    else fwd_rows<false>(x, r0, r1, C, a, y);
  });
}

namespace {

// Adds rows [r0, r1) into sp[c] += g', qp[c] += g' * (x - mean), g' = g or its ReLU-masked value.
template <bool kRelu>
void bwd_reduce_rows(const float* g, const float* x, int64_t r0, int64_t r1, int64_t C, const float* mean,
                     const Affine& z, float* sp, float* qp) {
  const float* zm = z.m.data();
  const float* zs = z.s.data();
  const float* zb = z.b.data();
  for (int64_t r = r0; r < r1; ++r) {
    const float* gr = g + r * C;
    const float* xr = x + r * C;
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) {
      float gv = gr[c];
      if constexpr (kRelu) gv = bn_relu_grad(gv, bn_z(xr[c], zm[c], zs[c], zb[c]));
      sp[c] += gv;
      qp[c] += gv * (xr[c] - mean[c]);
    }
  }
}

}  // namespace

void batch_norm_bwd_reduce_cpu(const float* g, const float* x, int64_t M, int64_t C, const float* mean,
                               const float* var, const float* weight, float eps, bool train, const BnBwdOut& out,
                               const BnRelu& relu) {
  const RowBlocks P(M, C);
  const Affine z = relu.on ? Affine(C, relu.mean, relu.var, relu.weight, relu.bias, relu.eps)
                           : Affine(C, nullptr, nullptr, nullptr, nullptr, 0.f);
  std::vector<double> psg((size_t)(P.nblocks * C)), psgx((size_t)(P.nblocks * C));
#pragma omp parallel if (parallel_ok(M * C) && P.nblocks > 1)
  {
    std::vector<float> s((size_t)C), q((size_t)C);
#pragma omp for schedule(static)
    for (int64_t b = 0; b < P.nblocks; ++b) {
      double* bs = psg.data() + b * C;
      double* bq = psgx.data() + b * C;
      std::fill(bs, bs + C, 0.0);
      std::fill(bq, bq + C, 0.0);
      const int64_t rb = b * P.block_rows, re = std::min(M, rb + P.block_rows);
      for (int64_t r0 = rb; r0 < re; r0 += P.chunk_rows) {
        const int64_t r1 = std::min(re, r0 + P.chunk_rows);
        float* sp = s.data();
        float* qp = q.data();
        std::fill(sp, sp + C, 0.f);
        std::fill(qp, qp + C, 0.f);
        if (relu.on) bwd_reduce_rows<true>(g, x, r0, r1, C, mean, z, sp, qp);
        else bwd_reduce_rows<false>(g, x, r0, r1, C, mean, z, sp, qp);
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) {
          bs[c] += (double)sp[c];
          bq[c] += (double)qp[c];
        }
      }
    }
  }
  for (int64_t c = 0; c < C; ++c) {
    double sg = 0, sgx = 0;
    for (int64_t b = 0; b < P.nblocks; ++b) {
      sg += psg[(size_t)(b * C + c)];
      sgx += psgx[(size_t)(b * C + c)];
    }
    bn_bwd_finalize_channel(out, c, sg, sgx, M, var[c], weight, eps, train);
  }
}

void batch_norm_bwd_cpu(const float* g, const float* x, int64_t M, int64_t C, const float* m, const float* k1,
                        const float* k2, const float* k3, float* dx, const BnRelu& relu) {
  // Missing terms become zero coefficients so a single loop shape serves every case.
  std::vector<float> a((size_t)C, 0.f), b((size_t)C, 0.f), mm((size_t)C, 0.f), d((size_t)C, 0.f);
  for (int64_t c = 0; c < C; ++c) {
    if (k1) a[(size_t)c] = k1[c];
    if (k2) b[(size_t)c] = k2[c];
    if (m) mm[(size_t)c] = m[c];
    if (k3) d[(size_t)c] = k3[c];
  }
  const bool use_g = g && k1, use_x = x && k2;
  const float* ap = a.data();
  const float* bp = b.data();
  const float* mp = mm.data();
  const float* dp = d.data();
  if (relu.on) {
    ENGINE_CHECK(use_g && x, "batch_norm_bwd_cpu: the fused ReLU needs g, k1 and x");
    const Affine z(C, relu.mean, relu.var, relu.weight, relu.bias, relu.eps);
    const float* zm = z.m.data();
    const float* zs = z.s.data();
    const float* zb = z.b.data();
    parallel_rows(M, C, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        float* o = dx + r * C;
        const float* gr = g + r * C;
        const float* xr = x + r * C;
        if (use_x) {
#pragma omp simd
          for (int64_t c = 0; c < C; ++c)
            o[c] = ap[c] * bn_relu_grad(gr[c], bn_z(xr[c], zm[c], zs[c], zb[c])) + bp[c] * (xr[c] - mp[c]) + dp[c];
        } else {
#pragma omp simd
          for (int64_t c = 0; c < C; ++c) o[c] = ap[c] * bn_relu_grad(gr[c], bn_z(xr[c], zm[c], zs[c], zb[c])) + dp[c];
        }
      }
    });
    return;
  }
  parallel_rows(M, C, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      float* o = dx + r * C;
      if (use_g && use_x) {
        const float* gr = g + r * C;
        const float* xr = x + r * C;
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) o[c] = ap[c] * gr[c] + bp[c] * (xr[c] - mp[c]) + dp[c];
      } else if (use_g) {
        const float* gr = g + r * C;
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) o[c] = ap[c] * gr[c] + dp[c];
      } else if (use_x) {
        const float* xr = x + r * C;
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) o[c] = bp[c] * (xr[c] - mp[c]) + dp[c];
      } else {
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) o[c] = dp[c];
      }
    }
  });
}

void batch_norm_update_running_cpu(float* running_mean, float* running_var, const float* mean, const float* var,
                                   int64_t C, float momentum) {
  for (int64_t c = 0; c < C; ++c) {
    if (running_mean) running_mean[c] = bn_running_update(running_mean[c], mean[c], momentum);
    if (running_var) running_var[c] = bn_running_update(running_var[c], var[c], momentum);
  }
}

}  // namespace engine::kernels
