// Batch-norm family on CUDA: batch statistics, the fused normalise+affine forward, the backward
// reduction and the backward elementwise pass. Same contracts and per-channel math as the CPU kernels
// (kernels/cpu/batchnorm_cpu.h, whose ENGINE_HD functions this file uses).
// Math (x is a contiguous [M, C] matrix: M = N*H*W rows of an NHWC activation, channels contiguous):
//   stats:    mean[c], var[c] (biased) over the M rows; optional running-stat update (Paddle rule)
//   forward:  y = (x - mean) * w * invstd + b,    invstd = 1/sqrt(var + eps)
//   backward: sg = sum_r g, sgx = sum_r g*(x - mean) -> dw, db, dmean, dvar, k1..k3 (BnBwdOut);
//             dx = k1*g + k2*(x - mean) + k3
//   fused activation (template parameter kAct: BnActKind None / Relu / LeakyRelu, of the forward and
//   both backward passes): the forward stores bn_act(y) (relu, or leaky_relu with the slope); the
//   backward passes replace g by bn_act_grad(g, z) (relu: z > 0 ? g : 0; leaky: z > 0 ? g : g * slope)
//   with z = bn_z(x, ...) recomputed per element from x (the forward's arithmetic; per-channel
//   mean/scale/bias held in registers), so no mask is stored and no pass is added.
// Layout of every tiled kernel: a 256-thread block is bx x by threads; threadIdx.x walks channel
// vectors of V floats (V = 4 with float4 loads when C % 4 == 0 and the pointers are 16-byte aligned,
// else V = 1), threadIdx.y walks rows. bx = min(32, pow2ceil(C / V)), so a warp reads whole 128-512
// byte runs of one row, or (small C) several consecutive rows, which are adjacent in memory: always
// coalesced. blockIdx.x tiles the channels, blockIdx.y (gy blocks) splits the rows; each thread
// grid-strides over rows, so any M works with 64-bit row offsets, issuing kRowBatch rows' loads
// before using them (kernel_types.h batched_strided_loop; the rows are used in the plain loop's order,
// so every sum keeps its bits). Measured on an H200 before that change (bench_kernels, L2 flushed):
// the training forward at 17-38 % of the copy rate, the backward at 30-61 %; [4,128,128,64]'s
// forward took 43.6 us where its normalise pass alone (the eval forward) takes 14.3 us: ~29 us for
// reading x once and a finalize looping over 512 partials per channel on 2 blocks.
//   batch_norm_stats_kernel: per-thread Welford (count, mean, M2) in fp32, merged over the block's
//     rows with Chan's formula in a shared-memory tree (fixed order), one partial per (blockIdx.y,
//     channel) written to the workspace [3, gy, C]; then the last block of each channel tile to
//     finish (an integer arrival counter per tile: last_block_of_tile) merges the tile's gy
//     partials in double (N, sum n*mean -> mean; then sum M2_j + n_j*(mean_j - mean)^2), one channel
//     per thread and a strided slice of the partials, the slices combined by a fixed-order tree; writes
//     mean and biased var and updates the running statistics in place. One launch: a separate
//     finalize kernel cost a launch and its dependency gap per call, which on the models' small
//     tensors is a sizeable part of the op (PP-LiteSeg-B: 144 batch-norm forwards and 144 backwards
//     per step).
//   batch_norm_fwd_kernel: per-thread coefficients (mean, w*invstd, b) then a row loop.
//   batch_norm_bwd_reduce_kernel: as the statistics, with plain sums (fp32 per thread and block
//     tree, double across blocks in the finalizing block), then bn_bwd_finalize_channel.
//   batch_norm_bwd_kernel: dx = k1*g + k2*(x - m) + k3, specialised on which terms exist (and
//     on the fused activation, which reads x for z even when the x term is absent: eval mode).
// Storage (template parameter D: f32, bf16 or f16, mixed precision): the activations x, y, g, dx are
// read as f32 (V = 4: one 16-byte access in f32, one 8-byte access in bf16 / f16) and outputs
// rounded once on store (Storage<D>, kernels/shared_math.h); statistics, parameters and all math are
// f32, the same bits as the CPU kernels. bf16 / f16 halve the bytes of the rooflines below.
// Deterministic: every sum has an order fixed by the shape, whichever block finalizes (the only
// atomics count arrivals). No dynamic shared memory; static shared memory with V = 4: 13 KiB
// (statistics) / 12 KiB (backward reduction), of which 4 KiB are the finalize's double trees.
// Roofline (H100 SXM, ~3.35 TB/s; all kernels memory bound, < 10 flops per element):
//   training forward = stats (read x, 4 B/elem) + normalise (read x, write y, 8 B/elem) = 12 B/elem;
//   [4,128,128,64] (4.2 M elem, 16.8 MB): 50 MB -> ~15 us (less when the second read of x hits the
//   50 MB L2). Backward = reduce (read g, x: 8 B) + dx (read g, x, write dx: 12 B) = 20 B/elem,
//   84 MB -> ~25 us. The finalizes touch O(gy*C) floats (<= 1024 blocks' partials).
// Tested by tests/test_batchnorm.cpp (CPU vs emulated CUDA); benchmarked by bench_kernels
// (bench/bench_batchnorm.cpp).
#include <algorithm>
#include <initializer_list>
#include <map>
#include <mutex>
#include <utility>

#include "base/cuda_context.h"
#include "base/error.h"
#include "kernels/cuda/batchnorm_cuda.h"
#include "kernels/cuda/common.cuh"
#include "kernels/kernel_types.h"

namespace engine::kernels {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kTargetBlocks = 1024;  // ~8 resident 256-thread blocks per SM on a 132-SM H100
constexpr int64_t kMinRowsPerThread = 8;
// At most this many row blocks per channel tile: each is one partial row that the tile's finalizing
// block merges in two passes, at kFinBatch floats per thread per round trip. A narrow layer would
// otherwise take 512 row blocks ([4,128,128,64]: 16 finalize round trips per pass, where 256 row
// blocks take 8 and each thread of the partial pass reads 16 rows instead of 8, in 4 batched rounds
// instead of 2). Wide layers reach kTargetBlocks first.
constexpr int64_t kMaxRowBlocks = 256;
// Rows whose loads a thread issues before using them (kernel_types.h batched_strided_loop), and the
// finalize's partials likewise (kFinBatch partials of the thread's channel): a loop that waits for
// each access before the next runs at the memory latency, which the finalize of a narrow layer
// cannot hide with other blocks (PP-LiteSeg's [4,128,128,64]: 256 partials per channel, merged by
// one block).
constexpr int kRowBatch = 4;
constexpr int kFinBatch = 8;

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

struct Tile {
  int bx, by;
  unsigned gx, gy;
};

Tile make_tile(int64_t M, int64_t C, int V) {
  Tile t;
  const int64_t cv = ceil_div(C, V);
  t.bx = 1;
  while (t.bx < cv && t.bx < 32) t.bx <<= 1;
  t.by = kThreads / t.bx;
  t.gx = (unsigned)ceil_div(cv, t.bx);
  int64_t gy = ceil_div(M, (int64_t)t.by * kMinRowsPerThread);
  const int64_t cap = std::max<int64_t>(1, std::min(kMaxRowBlocks, kTargetBlocks / (int64_t)t.gx));
  gy = std::max<int64_t>(1, std::min(gy, cap));
  t.gy = (unsigned)gy;
  return t;
}

// ------------------------------------------------------------------------ last-block finalize
// Whether this block is the last of its channel tile (blockIdx.x) to finish its partials: every
// thread makes its partial stores visible device-wide (__threadfence) before thread 0 counts the
// block in; the block that counts gridDim.y then finalizes the tile and resets the counter, so every
// launch leaves the counters zeroed for the next (no memset per call; a CUDA graph's replays find
// them as its capture did). The CUDA programming guide's __threadfence example (an array summed in
// one launch) uses the same pattern. The last block fences again after its atomic (the acquire
// side: under the PTX memory model observing a relaxed atomic does not by itself order the loads
// that follow it), before the barrier that releases its threads to read the partials. `s_last` is
// a __shared__ flag of the calling kernel.
__device__ __forceinline__ bool last_block_of_tile(unsigned* arrivals, bool& s_last) {
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0 && threadIdx.y == 0) {
    s_last = atomicAdd(&arrivals[blockIdx.x], 1u) == gridDim.y - 1;
    if (s_last) {
      __threadfence();
      atomicExch(&arrivals[blockIdx.x], 0u);  // every other block of the tile has arrived
    }
  }
  __syncthreads();
  return s_last;
}

// The finalizing block's view of itself: one channel per thread. The tile's tc = bx * V channels
// lie along a row, kThreads / tc slices down; slice k merges partial rows k, k + slices, ... of its
// channel, so consecutive threads load consecutive channels of a partial row. The loads are __ldcg
// (through L2 only): other blocks of the launch stored the partials, so no load may be served by a
// non-coherent cache.
struct FinalizeLane {
  int tc, slices, t, slice;
  int64_t c;  // the channel
  bool active;
};
__device__ __forceinline__ FinalizeLane finalize_lane(int V, int64_t C) {
  FinalizeLane l;
  l.tc = (int)blockDim.x * V;
  l.slices = kThreads / l.tc;
  l.t = (int)(threadIdx.y * blockDim.x + threadIdx.x);
  l.slice = l.t / l.tc;
  l.c = (int64_t)blockIdx.x * l.tc + l.t % l.tc;
  l.active = l.c < C;
  return l;
}

// Adds the slices of the shared arrays a[slices][tc] (and b, when not null) into slice 0 with a
// fixed-order tree (slices is a power of two). Call after a __syncthreads that follows the stores;
// ends with one.
__device__ __forceinline__ void sum_slices_into_first(const FinalizeLane& l, double* a, double* b) {
  for (int h = l.slices / 2; h > 0; h >>= 1) {
    if (l.slice < h) {
      a[l.t] += a[l.t + h * l.tc];
      if (b) b[l.t] += b[l.t + h * l.tc];
    }
    __syncthreads();
  }
}

// ------------------------------------------------------------------------------- statistics
// (kThreads, 1): without the minimum-blocks hint ptxas spilled the bf16 V = 4 variant at 40
// registers; with it the variant takes 46 and spills nothing (occupancy is unchanged).
// Partials per block, then the last block of each channel tile finalizes the tile's channels: N =
// sum n_j, mean = sum n_j*mean_j / N, then M2 = sum (M2_j + n_j*(mean_j - mean)^2), in double, two
// passes over the partials (no division per partial); thread (tx, ty) takes partial rows ty, ty +
// by, ... of its V channels, and a fixed-order tree combines the by slices.
template <int V, DType D>
__global__ void __launch_bounds__(kThreads, 1)
    batch_norm_stats_kernel(const typename Storage<D>::T* __restrict__ x, int64_t M, int64_t C,
                            float* __restrict__ part, unsigned* __restrict__ arrivals, float* __restrict__ mean,
                            float* __restrict__ var, float* running_mean, float* running_var, float momentum) {
  __shared__ float s_mean[kThreads * V];
  __shared__ float s_m2[kThreads * V];
  __shared__ float s_n[kThreads];
  __shared__ double s_fa[kThreads];
  __shared__ double s_fb[kThreads];
  __shared__ bool s_last;
  const int tx = threadIdx.x, ty = threadIdx.y, bx = blockDim.x, by = blockDim.y;
  const int t = ty * bx + tx;
  const int64_t c0 = ((int64_t)blockIdx.x * bx + tx) * V;
  const bool active = c0 < C;
  const int64_t plane = (int64_t)gridDim.y * C;
  {
    float wmean[V], wm2[V];  // this thread's Welford state
    float n = 0.f;
    ENGINE_UNROLL
    for (int v = 0; v < V; ++v) wmean[v] = wm2[v] = 0.f;
    if (active) {
      float xb[kRowBatch][V];
      batched_strided_loop<kRowBatch>((int64_t)blockIdx.y * by + ty, (int64_t)gridDim.y * by, M,
                                      [&](int64_t r, int k) { cuda::load_vec_as<V, D>(x + r * C + c0, xb[k]); },
                                      [&](int64_t, int k) {
                                        n += 1.f;
                                        const float inv = __frcp_rn(n);
                                        ENGINE_UNROLL
                                        for (int v = 0; v < V; ++v) {
                                          const float d = xb[k][v] - wmean[v];
                                          wmean[v] += d * inv;
                                          wm2[v] += d * (xb[k][v] - wmean[v]);
                                        }
                                      });
    }
    s_n[t] = n;
    ENGINE_UNROLL
    for (int v = 0; v < V; ++v) {
      s_mean[t * V + v] = wmean[v];
      s_m2[t * V + v] = wm2[v];
    }
  }
  __syncthreads();
  for (int s = by / 2; s > 0; s >>= 1) {
    if (ty < s) {
      const int o = (ty + s) * bx + tx;
      const float na = s_n[t], nb = s_n[o];
      if (nb > 0.f) {
        const float nt = na + nb, fb = nb * __frcp_rn(nt), cross = na * fb;
        ENGINE_UNROLL
        for (int v = 0; v < V; ++v) {
          const float delta = s_mean[o * V + v] - s_mean[t * V + v];
          s_mean[t * V + v] += delta * fb;
          s_m2[t * V + v] += s_m2[o * V + v] + delta * delta * cross;
        }
        s_n[t] = nt;
      }
    }
    __syncthreads();
  }
  if (ty == 0 && active) {
    float* p = part + (int64_t)blockIdx.y * C + c0;
    ENGINE_UNROLL
    for (int v = 0; v < V; ++v) {
      p[v] = s_mean[t * V + v];
      p[plane + v] = s_m2[t * V + v];
      p[2 * plane + v] = s_n[t];
    }
  }
  if (!last_block_of_tile(arrivals, s_last)) return;

  // The finalize (this tile's channels), kFinBatch partials' loads in flight per thread.
  const FinalizeLane l = finalize_lane(V, C);
  const int64_t gy = gridDim.y;
  double sn = 0, sm = 0;
  if (l.active) {
    float pn[kFinBatch], pm[kFinBatch];
    batched_strided_loop<kFinBatch>(
        l.slice, l.slices, gy,
        [&](int64_t j, int k) {
          pn[k] = __ldcg(part + 2 * plane + j * C + l.c);
          pm[k] = __ldcg(part + j * C + l.c);
        },
        [&](int64_t, int k) {
          const double nj = (double)pn[k];
          sn += nj;
          sm += nj * (double)pm[k];
        });
  }
  s_fa[l.t] = sn;
  s_fb[l.t] = sm;
  __syncthreads();
  sum_slices_into_first(l, s_fa, s_fb);
  const double n_tot = s_fa[l.t % l.tc];
  const double mu = n_tot > 0 ? s_fb[l.t % l.tc] / n_tot : 0.0;
  __syncthreads();  // everyone has read slice 0 before it is reused
  double sq = 0;
  if (l.active) {
    float pn[kFinBatch], pm[kFinBatch], pq[kFinBatch];
    batched_strided_loop<kFinBatch>(
        l.slice, l.slices, gy,
        [&](int64_t j, int k) {
          pm[k] = __ldcg(part + j * C + l.c);
          pq[k] = __ldcg(part + plane + j * C + l.c);
          pn[k] = __ldcg(part + 2 * plane + j * C + l.c);
        },
        [&](int64_t, int k) {
          const double d = (double)pm[k] - mu;
          sq += (double)pq[k] + (double)pn[k] * d * d;
        });
  }
  s_fa[l.t] = sq;
  __syncthreads();
  sum_slices_into_first(l, s_fa, nullptr);
  if (l.slice == 0 && l.active) {
    const float mf = (float)mu, vf = (float)(s_fa[l.t] / n_tot);
    mean[l.c] = mf;
    var[l.c] = vf;
    if (running_mean) running_mean[l.c] = bn_running_update(running_mean[l.c], mf, momentum);
    if (running_var) running_var[l.c] = bn_running_update(running_var[l.c], vf, momentum);
  }
}

// --------------------------------------------------------------------------------- forward
// Per-thread coefficients of z = bn_z(x, m, s, b) for channels c0 .. c0+V-1 (the forward's scale).
template <int V>
__device__ __forceinline__ void load_affine(int64_t c0, const float* __restrict__ mean, const float* __restrict__ var,
                                            const float* __restrict__ weight, const float* __restrict__ bias, float eps,
                                            float (&m)[V], float (&s)[V], float (&b)[V]) {
  ENGINE_UNROLL
  for (int v = 0; v < V; ++v) {
    m[v] = mean[c0 + v];
    s[v] = bn_scale(var[c0 + v], weight, c0 + v, eps);
    b[v] = bias ? bias[c0 + v] : 0.f;
  }
}

template <int V, BnActKind kAct, DType D>
__global__ void __launch_bounds__(kThreads)
    batch_norm_fwd_kernel(const typename Storage<D>::T* __restrict__ x, int64_t M, int64_t C,
                          const float* __restrict__ mean, const float* __restrict__ var,
                          const float* __restrict__ weight, const float* __restrict__ bias, float eps, float slope,
                          typename Storage<D>::T* __restrict__ y) {
  const int64_t c0 = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * V;
  if (c0 >= C) return;
  float m[V], s[V], b[V];
  load_affine<V>(c0, mean, var, weight, bias, eps, m, s, b);
  float xb[kRowBatch][V];
  batched_strided_loop<kRowBatch>((int64_t)blockIdx.y * blockDim.y + threadIdx.y, (int64_t)gridDim.y * blockDim.y, M,
                                  [&](int64_t r, int k) { cuda::load_vec_as<V, D>(x + r * C + c0, xb[k]); },
                                  [&](int64_t r, int k) {
                                    ENGINE_UNROLL
                                    for (int v = 0; v < V; ++v)
                                      xb[k][v] = bn_act<kAct>(bn_z(xb[k][v], m[v], s[v], b[v]), slope);
                                    cuda::store_vec_as<V, D>(y + r * C + c0, xb[k]);
                                  });
}

// -------------------------------------------------------------------------------- backward
// (kThreads, 1) here and on batch_norm_bwd_kernel: with the batched row loads ptxas spilled 8 bytes
// of a V = 4 variant on sm_80 at the 40 registers it picked without the hint.
template <int V, BnActKind kAct, DType D>
__global__ void __launch_bounds__(kThreads, 1)
    batch_norm_bwd_reduce_kernel(const typename Storage<D>::T* __restrict__ g,
                                 const typename Storage<D>::T* __restrict__ x, int64_t M, int64_t C,
                                 const float* __restrict__ mean, float* __restrict__ part,
                                 unsigned* __restrict__ arrivals, const float* __restrict__ var,
                                 const float* __restrict__ weight, float eps, bool train, BnBwdOut out, BnAct act) {
  __shared__ float s_g[kThreads * V];
  __shared__ float s_gx[kThreads * V];
  __shared__ double s_fa[kThreads];
  __shared__ double s_fb[kThreads];
  __shared__ bool s_last;
  const int tx = threadIdx.x, ty = threadIdx.y, bx = blockDim.x, by = blockDim.y;
  const int t = ty * bx + tx;
  const int64_t c0 = ((int64_t)blockIdx.x * bx + tx) * V;
  const bool active = c0 < C;
  float sg[V], sgx[V], m[V];
  // The activation's affine map z = bn_z(x, ...); its mean is m (act.mean == mean, checked by the
  // launcher), which saves the registers of a second mean (the V = 4 variants take 70-84 registers
  // with kRowBatch rows of g and x in flight: 3 blocks per SM, each thread 4 rows' loads ahead).
  constexpr bool kFused = kAct != BnActKind::None;
  float zs[kFused ? V : 1], zb[kFused ? V : 1];
  ENGINE_UNROLL
  for (int v = 0; v < V; ++v) {
    sg[v] = sgx[v] = 0.f;
    m[v] = active ? mean[c0 + v] : 0.f;
  }
  if constexpr (kFused) {
    if (active) {
      float zm[V];
      load_affine<V>(c0, act.mean, act.var, act.weight, act.bias, act.eps, zm, zs, zb);
    }
  }
  if (active) {
    float gb[kRowBatch][V], xb[kRowBatch][V];
    batched_strided_loop<kRowBatch>((int64_t)blockIdx.y * by + ty, (int64_t)gridDim.y * by, M,
                                    [&](int64_t r, int k) {
                                      cuda::load_vec_as<V, D>(g + r * C + c0, gb[k]);
                                      cuda::load_vec_as<V, D>(x + r * C + c0, xb[k]);
                                    },
                                    [&](int64_t, int k) {
                                      ENGINE_UNROLL
                                      for (int v = 0; v < V; ++v) {
                                        float gv = gb[k][v];
                                        if constexpr (kFused)
                                          gv = bn_act_grad<kAct>(gv, bn_z(xb[k][v], m[v], zs[v], zb[v]), act.slope);
                                        bn_bwd_accumulate(gv, xb[k][v], m[v], sg[v], sgx[v]);
                                      }
                                    });
  }
  ENGINE_UNROLL
  for (int v = 0; v < V; ++v) {
    s_g[t * V + v] = sg[v];
    s_gx[t * V + v] = sgx[v];
  }
  __syncthreads();
  for (int s = by / 2; s > 0; s >>= 1) {
    if (ty < s) {
      const int o = (ty + s) * bx + tx;
      ENGINE_UNROLL
      for (int v = 0; v < V; ++v) {
        s_g[t * V + v] += s_g[o * V + v];
        s_gx[t * V + v] += s_gx[o * V + v];
      }
    }
    __syncthreads();
  }
  const int64_t plane = (int64_t)gridDim.y * C;
  if (ty == 0 && active) {
    float* p = part + (int64_t)blockIdx.y * C + c0;
    ENGINE_UNROLL
    for (int v = 0; v < V; ++v) {
      p[v] = s_g[t * V + v];
      p[plane + v] = s_gx[t * V + v];
    }
  }
  if (!last_block_of_tile(arrivals, s_last)) return;

  // The finalize (this tile's channels): the partials summed in double, laid out as the statistics'
  // finalize, then bn_bwd_finalize_channel.
  const FinalizeLane l = finalize_lane(V, C);
  double dg = 0, dgx = 0;
  if (l.active) {
    float pg[kFinBatch], pgx[kFinBatch];
    batched_strided_loop<kFinBatch>(
        l.slice, l.slices, (int64_t)gridDim.y,
        [&](int64_t j, int k) {
          pg[k] = __ldcg(part + j * C + l.c);
          pgx[k] = __ldcg(part + plane + j * C + l.c);
        },
        [&](int64_t, int k) {
          dg += (double)pg[k];
          dgx += (double)pgx[k];
        });
  }
  s_fa[l.t] = dg;
  s_fb[l.t] = dgx;
  __syncthreads();
  sum_slices_into_first(l, s_fa, s_fb);
  if (l.slice == 0 && l.active)
    bn_bwd_finalize_channel(out, l.c, s_fa[l.t], s_fb[l.t], M, var[l.c], weight, eps, train);
}

template <int V, bool kG, bool kX, BnActKind kAct, DType D>
__global__ void __launch_bounds__(kThreads, 1)
    batch_norm_bwd_kernel(const typename Storage<D>::T* __restrict__ g, const typename Storage<D>::T* __restrict__ x,
                          int64_t M, int64_t C, const float* __restrict__ mc, const float* __restrict__ k1,
                          const float* __restrict__ k2, const float* __restrict__ k3,
                          typename Storage<D>::T* __restrict__ dx, BnAct act) {
  constexpr bool kFused = kAct != BnActKind::None;
  static_assert(!kFused || kG, "the fused activation acts on g");
  const int64_t c0 = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * V;
  if (c0 >= C) return;
  float a[V], b[V], m[V], d[V];
  float zm[kFused ? V : 1], zs[kFused ? V : 1], zb[kFused ? V : 1];  // the activation's affine map
  ENGINE_UNROLL
  for (int v = 0; v < V; ++v) {
    a[v] = kG ? k1[c0 + v] : 0.f;
    b[v] = kX ? k2[c0 + v] : 0.f;
    m[v] = (kX && mc) ? mc[c0 + v] : 0.f;
    d[v] = k3 ? k3[c0 + v] : 0.f;
  }
  if constexpr (kFused) load_affine<V>(c0, act.mean, act.var, act.weight, act.bias, act.eps, zm, zs, zb);
  constexpr bool kReadX = kX || kFused;
  float xb[kReadX ? kRowBatch : 1][V], gb[kG ? kRowBatch : 1][V];
  batched_strided_loop<kRowBatch>((int64_t)blockIdx.y * blockDim.y + threadIdx.y, (int64_t)gridDim.y * blockDim.y, M,
                                  [&](int64_t r, int k) {
                                    if constexpr (kReadX) cuda::load_vec_as<V, D>(x + r * C + c0, xb[k]);
                                    if constexpr (kG) cuda::load_vec_as<V, D>(g + r * C + c0, gb[k]);
                                  },
                                  [&](int64_t r, int k) {
                                    // dx = bn_dx_x(x, m, b, bn_dx_g(g, a, d)), the terms that exist, as the CPU kernel.
                                    float o[V];
                                    ENGINE_UNROLL
                                    for (int v = 0; v < V; ++v) o[v] = d[v];
                                    if constexpr (kG) {
                                      ENGINE_UNROLL
                                      for (int v = 0; v < V; ++v) {
                                        float gv = gb[k][v];
                                        if constexpr (kFused)
                                          gv = bn_act_grad<kAct>(gv, bn_z(xb[k][v], zm[v], zs[v], zb[v]), act.slope);
                                        o[v] = bn_dx_g(gv, a[v], o[v]);
                                      }
                                    }
                                    if constexpr (kX) {
                                      ENGINE_UNROLL
                                      for (int v = 0; v < V; ++v) o[v] = bn_dx_x(xb[k][v], m[v], b[v], o[v]);
                                    }
                                    cuda::store_vec_as<V, D>(dx + r * C + c0, o);
                                  });
}

__global__ void __launch_bounds__(kThreads)
    batch_norm_update_running_kernel(float* running_mean, float* running_var, const float* __restrict__ mean,
                                     const float* __restrict__ var, int64_t C, float momentum) {
  for (int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; c < C; c += (int64_t)gridDim.x * blockDim.x) {
    if (running_mean) running_mean[c] = bn_running_update(running_mean[c], mean[c], momentum);
    if (running_var) running_var[c] = bn_running_update(running_var[c], var[c], momentum);
  }
}

template <DType D>
int vec_width(int64_t C, std::initializer_list<const void*> ptrs) {
  if (C % 4 != 0) return 1;
  for (const void* p : ptrs)
    if (!(p == nullptr || cuda::vec4_aligned<D>(p))) return 1;
  return 4;
}

template <DType D>
using Act = typename Storage<D>::T;

// Arrival counters (last_block_of_tile) for launches on stream `s`, at least `tiles` of them: zeroed
// device memory that every launch leaves zeroed. One buffer per (device, stream), so launches that
// can overlap (on other streams) never share a counter. 4096 counters cover 131072 channels; a wider
// layer gets a larger buffer, allocated outside a stream capture only (a shape's first, eager step
// precedes its capture). A smaller buffer it replaces stays allocated: a CUDA graph captured earlier
// may still use it (each replay leaves it zeroed too).
unsigned* arrival_counters(unsigned tiles, cudaStream_t s) {
  struct Buffer {
    unsigned* counters = nullptr;
    unsigned capacity = 0;
  };
  static std::mutex mutex;
  // Never destroyed: the buffers live as long as the process (a leak checker that runs after static
  // destructors would otherwise see them lost).
  static auto& buffers = *new std::map<std::pair<int, cudaStream_t>, Buffer>;
  int device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  std::lock_guard<std::mutex> lock(mutex);
  Buffer& b = buffers[{device, s}];
  if (b.capacity >= tiles) return b.counters;
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  CUDA_CHECK(cudaStreamIsCapturing(s, &capture));
  if (capture != cudaStreamCaptureStatusNone)
    fail_capture("batch_norm (CUDA): a launch of ", tiles,
                 " channel tiles needs a larger counter buffer, which cannot be allocated during a stream capture; "
                 "run this shape once outside the capture");
  const unsigned n = std::max(tiles, 4096u);
  unsigned* counters = nullptr;
  CUDA_CHECK(cudaMalloc(&counters, n * sizeof(unsigned)));
  CUDA_CHECK(cudaMemsetAsync(counters, 0, n * sizeof(unsigned), s));
  b = {counters, n};
  return counters;
}

template <int V, DType D>
void launch_stats(const void* x, int64_t M, int64_t C, float* mean, float* var, float* rm, float* rv, float momentum,
                  float* ws, cudaStream_t s) {
  const Tile t = make_tile(M, C, V);
  unsigned* arrivals = arrival_counters(t.gx, s);
  GPU_LAUNCH(dim3(t.gx, t.gy), dim3(t.bx, t.by), 0, s, batch_norm_stats_kernel<V, D>)
  (static_cast<const Act<D>*>(x), M, C, ws, arrivals, mean, var, rm, rv, momentum);
  CUDA_CHECK_LAUNCH("batch_norm_stats_kernel");
}

template <int V, BnActKind kAct, DType D>
void launch_fwd(const void* x, int64_t M, int64_t C, const float* mean, const float* var, const float* w,
                const float* b, float eps, float slope, void* y, cudaStream_t s) {
  const Tile t = make_tile(M, C, V);
  GPU_LAUNCH(dim3(t.gx, t.gy), dim3(t.bx, t.by), 0, s, batch_norm_fwd_kernel<V, kAct, D>)
  (static_cast<const Act<D>*>(x), M, C, mean, var, w, b, eps, slope, static_cast<Act<D>*>(y));
  CUDA_CHECK_LAUNCH("batch_norm_fwd_kernel");
}

template <int V, DType D>
void launch_bwd_reduce(const void* gv, const void* xv, int64_t M, int64_t C, const float* mean, const float* var,
                       const float* w, float eps, bool train, const BnBwdOut& out, float* ws, cudaStream_t s,
                       const BnAct& act) {
  const Tile t = make_tile(M, C, V);
  const dim3 grid(t.gx, t.gy), block(t.bx, t.by);
  const Act<D>* g = static_cast<const Act<D>*>(gv);
  const Act<D>* x = static_cast<const Act<D>*>(xv);
  unsigned* arrivals = arrival_counters(t.gx, s);
  if (act.kind == BnActKind::Relu) GPU_LAUNCH(grid, block, 0, s, batch_norm_bwd_reduce_kernel<V, BnActKind::Relu, D>)
  (g, x, M, C, mean, ws, arrivals, var, w, eps, train, out, act);
  else if (act.kind == BnActKind::LeakyRelu)
      GPU_LAUNCH(grid, block, 0, s, batch_norm_bwd_reduce_kernel<V, BnActKind::LeakyRelu, D>)(
          g, x, M, C, mean, ws, arrivals, var, w, eps, train, out, act);
  else GPU_LAUNCH(grid, block, 0, s, batch_norm_bwd_reduce_kernel<V, BnActKind::None, D>)(
      g, x, M, C, mean, ws, arrivals, var, w, eps, train, out, act);
  CUDA_CHECK_LAUNCH("batch_norm_bwd_reduce_kernel");
}

template <int V, bool kG, bool kX, BnActKind kAct, DType D>
void launch_bwd(const void* g, const void* x, int64_t M, int64_t C, const float* m, const float* k1, const float* k2,
                const float* k3, void* dx, cudaStream_t s, const BnAct& act) {
  const Tile t = make_tile(M, C, V);
  GPU_LAUNCH(dim3(t.gx, t.gy), dim3(t.bx, t.by), 0, s, batch_norm_bwd_kernel<V, kG, kX, kAct, D>)
  (static_cast<const Act<D>*>(g), static_cast<const Act<D>*>(x), M, C, m, k1, k2, k3, static_cast<Act<D>*>(dx), act);
  CUDA_CHECK_LAUNCH("batch_norm_bwd_kernel");
}

template <int V, DType D>
void dispatch_bwd(bool use_g, bool use_x, const void* g, const void* x, int64_t M, int64_t C, const float* m,
                  const float* k1, const float* k2, const float* k3, void* dx, cudaStream_t s, const BnAct& act) {
  constexpr BnActKind kNone = BnActKind::None, kRelu = BnActKind::Relu, kLeaky = BnActKind::LeakyRelu;
  if (act.kind == kRelu) {  // use_g is checked by the caller
    if (use_x)
      launch_bwd<V, true, true, kRelu, D>(g, x, M, C, m, k1, k2, k3, dx, s, act);
    else
      launch_bwd<V, true, false, kRelu, D>(g, x, M, C, m, k1, k2, k3, dx, s, act);
  } else if (act.kind == kLeaky) {
    if (use_x)
      launch_bwd<V, true, true, kLeaky, D>(g, x, M, C, m, k1, k2, k3, dx, s, act);
    else
      launch_bwd<V, true, false, kLeaky, D>(g, x, M, C, m, k1, k2, k3, dx, s, act);
  } else if (use_g && use_x) {
    launch_bwd<V, true, true, kNone, D>(g, x, M, C, m, k1, k2, k3, dx, s, act);
  } else if (use_g) {
    launch_bwd<V, true, false, kNone, D>(g, x, M, C, m, k1, k2, k3, dx, s, act);
  } else if (use_x) {
    launch_bwd<V, false, true, kNone, D>(g, x, M, C, m, k1, k2, k3, dx, s, act);
  } else {
    launch_bwd<V, false, false, kNone, D>(g, x, M, C, m, k1, k2, k3, dx, s, act);
  }
}

}  // namespace

int64_t batch_norm_workspace_floats_cuda(int64_t M, int64_t C) {
  const int64_t gy = std::max<int64_t>(make_tile(M, C, 1).gy, C % 4 == 0 ? make_tile(M, C, 4).gy : 1);
  return 3 * gy * C;
}

void batch_norm_stats_cuda(DType dt, const void* x, int64_t M, int64_t C, float* mean, float* var, float* running_mean,
                           float* running_var, float momentum, float* workspace, cudaStream_t s) {
  if (M <= 0 || C <= 0) return;
  with_storage(dt, "batch_norm kernel", [&]<DType D>() {
    if (vec_width<D>(C, {x}) == 4)
      launch_stats<4, D>(x, M, C, mean, var, running_mean, running_var, momentum, workspace, s);
    else
      launch_stats<1, D>(x, M, C, mean, var, running_mean, running_var, momentum, workspace, s);
  });
}

void batch_norm_fwd_cuda(DType dt, const void* x, int64_t M, int64_t C, const float* mean, const float* var,
                         const float* weight, const float* bias, float eps, void* y, cudaStream_t s, BnActKind act,
                         float slope) {
  if (M <= 0 || C <= 0) return;
  with_storage(dt, "batch_norm kernel", [&]<DType D>() {
    const bool v4 = vec_width<D>(C, {x, y}) == 4;
    constexpr BnActKind kNone = BnActKind::None, kRelu = BnActKind::Relu, kLeaky = BnActKind::LeakyRelu;
    if (act == kRelu) {
      if (v4)
        launch_fwd<4, kRelu, D>(x, M, C, mean, var, weight, bias, eps, slope, y, s);
      else
        launch_fwd<1, kRelu, D>(x, M, C, mean, var, weight, bias, eps, slope, y, s);
    } else if (act == kLeaky) {
      if (v4)
        launch_fwd<4, kLeaky, D>(x, M, C, mean, var, weight, bias, eps, slope, y, s);
      else
        launch_fwd<1, kLeaky, D>(x, M, C, mean, var, weight, bias, eps, slope, y, s);
    } else {
      if (v4)
        launch_fwd<4, kNone, D>(x, M, C, mean, var, weight, bias, eps, slope, y, s);
      else
        launch_fwd<1, kNone, D>(x, M, C, mean, var, weight, bias, eps, slope, y, s);
    }
  });
}

void batch_norm_bwd_reduce_cuda(DType dt, const void* g, const void* x, int64_t M, int64_t C, const float* mean,
                                const float* var, const float* weight, float eps, bool train, const BnBwdOut& out,
                                float* workspace, cudaStream_t s, const BnAct& act) {
  if (M <= 0 || C <= 0) return;
  ENGINE_CHECK(act.kind == BnActKind::None || act.mean == mean,
               "batch_norm_bwd_reduce_cuda: the fused activation's mean must be `mean`");
  with_storage(dt, "batch_norm kernel", [&]<DType D>() {
    if (vec_width<D>(C, {g, x}) == 4)
      launch_bwd_reduce<4, D>(g, x, M, C, mean, var, weight, eps, train, out, workspace, s, act);
    else
      launch_bwd_reduce<1, D>(g, x, M, C, mean, var, weight, eps, train, out, workspace, s, act);
  });
}

void batch_norm_bwd_cuda(DType dt, const void* g, const void* x, int64_t M, int64_t C, const float* m, const float* k1,
                         const float* k2, const float* k3, void* dx, cudaStream_t s, const BnAct& act) {
  if (M <= 0 || C <= 0) return;
  const bool use_g = g && k1, use_x = x && k2, fused = act.kind != BnActKind::None;
  ENGINE_CHECK(!fused || (use_g && x), "batch_norm_bwd_cuda: the fused activation needs g, k1 and x");
  const bool read_x = use_x || fused;
  with_storage(dt, "batch_norm kernel", [&]<DType D>() {
    if (vec_width<D>(C, {use_g ? g : nullptr, read_x ? x : nullptr, dx}) == 4)
      dispatch_bwd<4, D>(use_g, use_x, g, x, M, C, m, k1, k2, k3, dx, s, act);
    else
      dispatch_bwd<1, D>(use_g, use_x, g, x, M, C, m, k1, k2, k3, dx, s, act);
  });
}

void batch_norm_update_running_cuda(float* running_mean, float* running_var, const float* mean, const float* var,
                                    int64_t C, float momentum, cudaStream_t s) {
  if (C <= 0) return;
  GPU_LAUNCH(cuda::grid_for(C, kThreads), kThreads, 0, s, batch_norm_update_running_kernel)
  (running_mean, running_var, mean, var, C, momentum);
  CUDA_CHECK_LAUNCH("batch_norm_update_running_kernel");
}

}  // namespace engine::kernels
