// Loss family on CUDA: softmax cross entropy over the last axis of NHWC logits (CE and OHEM share
// the kernels), the OHEM threshold by radix select, and the mean pointwise losses (BCE with logits,
// BCE on probabilities, L1). Math: kernels/loss_math.h, shared with kernels/cpu/loss_cpu.cpp (the
// same polynomial exp/log and explicit fmaf, so p_gt and the OHEM selection match the CPU bit for bit).
//
// Layout: logits contiguous [P, C] (P = N*H*W pixels, C classes, channels last); labels i64 [P].
// CE forward: one thread per pixel. C <= kStageMaxC (ce_fwd_tile_kernel): blocks of 128 threads on
//   a resident grid take tiles of 128..640 pixels whose logits and labels are fetched into shared
//   memory with asynchronous coalesced copies (common.cuh row tiles: cp.async, 16-byte for odd C
//   when aligned, odd row stride so a warp's rows sit in 32 banks), double-buffered so the next tile
//   streams in while this one is computed. Larger C (ce_fwd_row_kernel): each thread reads its row
//   from global memory (a warp's rows are one contiguous span, so L1 serves the later passes).
//   Forward writes lse[p] (and for OHEM p_gt[p], nll[p]).
// 16-bit logits (bf16 / f16, O2's full-size logits): the same kernels with the tile widened as it is
//   fetched (plain coalesced loads instead of cp.async, which cannot convert; common.cuh
//   row_tile_fetch_as; larger C: each thread widens its row's values as it reads them); the backward
//   stages the widened tile and rounds the gradient once on store. The math is the f32 math of the
//   widened values, so a 16-bit input gives the f32 results of those values (bit for bit against
//   the CPU).
// CE backward (ce_bwd_kernel): tiles of kBlock pixels; for C <= kStageMaxC the tile's logits are
//   staged through a shared-memory row tile (coalesced, 16-byte for odd C when aligned, odd row
//   stride) and the gradient stored back the same way; it
//   recomputes softmax from x and lse in one pass: gx = coef * (exp(x - lse) - onehot).
// Reductions: per-thread double accumulators, warp shuffles, one double pair per block, then
//   loss_finalize_kernel (one block; loads batched, adds in a fixed order) sums the block partials:
//   deterministic, no float atomics. Label errors and OHEM counts use integer atomics only (deterministic);
//   the finalize writes a nan loss when there was a label error (the host check names it).
// OHEM (ohem_mine_cuda) never reads device memory on the host, so a CUDA graph can capture it: the
//   selection, a one-thread gate that decides on the device whether to mine, the sum pass and a
//   finalize that the gate turns off when there is nothing to mine.
// OHEM selection (ohem_hist_kernel + ohem_scan_kernel, 4 passes): the k-th smallest p_gt by an
//   8-bit radix select over the f32 bit patterns (non-negative floats order like their bits): each
//   pass histograms the values matching the prefix found so far (shared-memory histogram, integer
//   atomics), then one thread picks the digit where the running count reaches k. No sort: 4 reads of
//   P floats. Ignored pixels hold p_gt = 2.0 so they rank after every valid probability.
// Pointwise losses: grid-stride, per-thread float partials, block partials in double, finalize.
//
// Roofline (H200, 4.25 TB/s device copy):
//   CE fwd [4,512,1024,19]: reads 2.1M px * (76 B logits + 8 B label), writes 4 B lse: ~185 MB,
//     ~44 us; but ~30 instructions per logit (the bit-exact polynomial exp) make it compute bound:
//     measured (H200, ce_fwd_cuda = forward + finalize kernels, L2 flushed) 0.078 ms, 56 % of the
//     copy rate (was 0.087 ms with single-buffered tiles), OHEM 0.083 ms (was 0.096); ncu: SM
//     throughput 78 %, DRAM 40 %. [4,512,512,2] (21 MB): 0.021 ms, launch/latency bound.
//   CE bwd same shape: reads 76 + 8 + 4 B, writes 76 B per pixel: ~344 MB, ~81 us.
//   OHEM adds 8 B/px of p_gt and nll writes, and when the threshold must be raised 4 select passes
//     of 4 B/px (~34 MB, ~8 us) plus a 16 B/px sum pass.
//   BCE with logits fwd [8,52,52,255] (5.5M elements): 44 MB, ~10 us; bwd 66 MB, ~16 us.
// Upsampled CE / OHEM (resize_ce_fwd_cuda / resize_ce_bwd_cuda: logits [N, h, w, C] bilinearly
//   upsampled to the labels' [N, H, W] inside the loss, PP-LiteSeg's training loss). Forward: the
//   same kernels and grid with the tile made by blending (one thread per pixel from the 4 taps,
//   rounded to the storage type as resize_fwd_kernel stores it), so the same threads add the same
//   values: the bits of the resize followed by the plain forward. Backward: the resize backward's
//   column pass with each full-size gradient element made where it is read (blend, exp, rounded as
//   ce_bwd_kernel stores it), then resize.cu's row pass. Neither the full-size logits nor their
//   gradient exists in memory. Roofline for PP-LiteSeg's [4,64,64,19] -> 512x512 f32: the forward
//   reads 1.2 MB of logits (L2 resident) + 8 B label and writes 4 B lse per pixel: 13 MB, ~3 us of
//   traffic, so it is bound by the ~30-instruction exp per logit like the plain forward (~0.04 ms
//   at the plain forward's measured 0.078 ms for twice the pixels); the backward reads 12 B per
//   pixel and writes and rereads the 10 MB column buffer: ~45 MB, ~11 us, but makes each gradient
//   element ~2 times (a blend and an exp each): ~0.08 ms if the exps bound it as in the forward.
//   The unfused path it replaces moved ~560 MB per call (~0.13 ms at the copy rate).
// Tested by tests/test_loss.cpp (CPU vs emulated CUDA, naive double references); benchmarked by
// bench_kernels --filter loss (bench/bench_loss.cpp).
#include "base/cuda_context.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/loss_cuda.h"
#include "kernels/cuda/resize_cuda.h"

namespace engine::kernels {
namespace {

constexpr int kBlock = 256;
constexpr int kCeTileBlock = 128;    // threads of the staged CE forward (one per pixel of a tile)
constexpr int kStageMaxC = 40;       // staged up to 2 buffers * 128 px * (41 + 2) * 4 B = 43 KiB
constexpr int kCeTileFloats = 2048;  // logits + labels budget of a CE forward tile (8 KB; C = 19: 128 px)
constexpr int kMaxCeBlocks = 2048;
constexpr int kMaxPointBlocks = 1024;
constexpr int kFinalBlock = 256;

using ull = unsigned long long;

__device__ __forceinline__ ull block_sum_u(ull v, ull* red) {
  v = cuda::warp_reduce_sum(v);
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
  if (lane == 0) red[wid] = v;
  __syncthreads();
  v = threadIdx.x < (blockDim.x >> 5) ? red[threadIdx.x] : 0ull;
  if (wid == 0) v = cuda::warp_reduce_sum(v);
  __syncthreads();
  return v;
}

// Pixels per staged CE forward tile: a multiple of kCeTileBlock (every thread owns the same number
// of pixels) within kCeTileFloats of logits and labels (an i64 label = 2 floats): C = 19 -> 128 px,
// C = 2 -> 384 px, C = 1 -> 640 px. Two such buffers stay under the 48 KB of dynamic shared memory
// a launch gets without opting in (C = 40: 2 * 128 * (41 + 2) * 4 B = 43 KB, plus 512 B static).
int ce_tile_rows(int64_t C) {
  const int k = kCeTileFloats / ((cuda::row_tile_stride((int)C) + 2) * kCeTileBlock);
  return (k < 1 ? 1 : k) * kCeTileBlock;
}

int ce_grid(int64_t P, int tile_rows) {
  const int64_t tiles = (P + tile_rows - 1) / tile_rows;
  return (int)std::min<int64_t>(std::max<int64_t>(tiles, 1), kMaxCeBlocks);
}

// ------------------------------------------------------------------------------ CE forward
// One thread per pixel; the per-pixel arithmetic (sequential max, sum of exp_neg_f, log_f,
// ohem_prob_f) is the CPU's, so lse / p_gt / nll match it bit for bit. logit(c) gives class c's
// logit as an f32 (a staged tile, a widened global row, or an upsampled pixel). Block partials of
// the loss sums (double) go to part[2 * block], the OHEM count of p_gt < thresh to stats[kBelow].
template <bool kOhem, class Logit>
__device__ __forceinline__ void ce_pixel(const Logit& logit, int C, int64_t p, int64_t yp, const float* __restrict__ w,
                                         int64_t ignore, float thresh, float* __restrict__ lse, float* __restrict__ pgt,
                                         float* __restrict__ nll, ull* __restrict__ stats, double& a1, double& a2,
                                         ull& below) {
  float m = -INFINITY;
  for (int c = 0; c < C; ++c) {
    const float v = logit(c);
    m = v > m ? v : m;
  }
  float s = 0.f;
  for (int c = 0; c < C; ++c) s += exp_neg_f(logit(c) - m);
  const float l = m + log_f(s);
  lse[p] = l;
  const bool valid = yp != ignore && yp >= 0 && yp < C;
  if (label_bad(yp, C, ignore)) {
    atomicAdd(&stats[kBadCount], 1ull);
    atomicMin(&stats[kFirstBad], (ull)p);
  }
  const float xy = valid ? logit((int)yp) : 0.f;
  const float wv = valid ? (w ? w[yp] : 1.f) : 0.f;
  const float nl = valid ? l - xy : 0.f;
  a1 += (double)(wv * nl);
  a2 += (double)wv;
  if (kOhem) {
    const float pr = valid ? ohem_prob_f(xy - m, s) : 2.f;
    pgt[p] = pr;
    nll[p] = nl;
    below += (valid && pr < thresh) ? 1ull : 0ull;
  }
}

// ------------------------------------------------------------------------------ upsampled logits
// The logits of one output pixel of the bilinear resize of x (ResizeArgs up: x [N, h, w, C] ->
// [N, H, W, C]), made as resize_fwd_kernel makes and stores them: the 4 taps widened, blended in f32
// (bilinear_blend), rounded to D and widened back. So the upsampled losses read the bits that the
// resize would have written, without the full-size tensor in memory.
template <DType D>
struct UpsampledPixel {
  using S = Storage<D>;
  using T = typename S::T;
  const T *q00, *q01, *q10, *q11;
  int64_t sc;
  float lx, ly;

  // The pixel at column ow of the output row whose source rows are row0 / row1 (vertical weight ly).
  __device__ __forceinline__ UpsampledPixel(const ResizeArgs& up, const T* row0, const T* row1, float ly_, int64_t ow)
      : sc(up.sc), ly(ly_) {
    const int64_t iw0 = up.w.lo(ow, &lx), iw1 = up.w.hi(iw0);
    q00 = row0 + iw0 * up.sw;
    q01 = row0 + iw1 * up.sw;
    q10 = row1 + iw0 * up.sw;
    q11 = row1 + iw1 * up.sw;
  }
  __device__ __forceinline__ float operator()(int c) const {
    const int64_t o = c * sc;
    return S::load(
        S::store(bilinear_blend(S::load(q00[o]), S::load(q01[o]), S::load(q10[o]), S::load(q11[o]), lx, ly)));
  }
};

// The source rows of output row r = n * H + oh (n and oh split off r in 32-bit arithmetic: the
// launchers require fewer than 2^32 output pixels, and a 64-bit division, a called routine, made
// the forward spill).
template <DType D>
struct UpsampledRow {
  using T = typename Storage<D>::T;
  const T *row0, *row1;
  float ly;
  __device__ __forceinline__ UpsampledRow(const ResizeArgs& up, const T* x, uint32_t r) {
    const uint32_t n = r / (uint32_t)up.h.out, oh = r - n * (uint32_t)up.h.out;
    const int64_t ih0 = up.h.lo(oh, &ly), ih1 = up.h.hi(ih0);
    row0 = x + n * up.sn + ih0 * up.sh;
    row1 = x + n * up.sn + ih1 * up.sh;
  }
};

// Output pixel p (< 2^32) of the upsampled logits.
template <DType D>
__device__ __forceinline__ UpsampledPixel<D> upsampled_pixel(const ResizeArgs& up, const typename Storage<D>::T* x,
                                                             int64_t p) {
  const uint32_t r = (uint32_t)p / (uint32_t)up.w.out, ow = (uint32_t)p - r * (uint32_t)up.w.out;
  const UpsampledRow<D> row(up, x, r);
  return UpsampledPixel<D>(up, row.row0, row.row1, row.ly, ow);
}

template <bool kOhem>
__device__ __forceinline__ void ce_block_partials(double a1, double a2, ull below, double* __restrict__ part,
                                                  ull* __restrict__ stats) {
  __shared__ double red[32];
  __shared__ ull redu[32];
  a1 = cuda::block_sum(a1, red);
  a2 = cuda::block_sum(a2, red);
  if (kOhem) below = block_sum_u(below, redu);
  if (threadIdx.x == 0) {
    part[2 * blockIdx.x] = a1;
    part[2 * blockIdx.x + 1] = a2;
    if (kOhem && below) atomicAdd(&stats[kBelow], below);
  }
}

// C <= kStageMaxC: a shared-memory row tile per tile_rows pixels (common.cuh: odd row stride, no
// bank conflicts), fetched with asynchronous coalesced copies together with the tile's labels,
// double-buffered on a resident grid (the next tile streams in while this one is computed).
// kUp: the tile holds the upsampled logits of its pixels instead (one thread blends one pixel's
// row; x is the small logits, L1 / L2 resident), with the same tiles, threads and sums, so the loss
// has the bits of this kernel on the stored resize.
// Buffer layout: tile_rows * row_tile_stride(C) floats of logits, then tile_rows i64 labels.
template <bool kOhem, bool kVec, DType D, bool kUp>
__global__ void __launch_bounds__(kCeTileBlock)
    ce_fwd_tile_kernel(const typename Storage<D>::T* __restrict__ x, ResizeArgs up, const int64_t* __restrict__ y,
                       const float* __restrict__ w, int64_t P, int C, int tile_rows, int64_t ignore, float thresh,
                       float* __restrict__ lse, float* __restrict__ pgt, float* __restrict__ nll,
                       double* __restrict__ part, ull* __restrict__ stats) {
  const int lp = cuda::row_tile_stride(C);
  const int label_off = tile_rows * lp;  // floats; a multiple of 4 (tile_rows is)
  double a1 = 0.0, a2 = 0.0;
  ull below = 0;
  const int64_t ntiles = (P + tile_rows - 1) / tile_rows;
  cuda::pipelined_tiles(
      ntiles, dynamic_smem<float>(), label_off + 2 * tile_rows,
      [&](int64_t t, float* buf) {
        const int64_t p0 = t * tile_rows;
        const int np = (int)min((int64_t)tile_rows, P - p0);
        if constexpr (kUp) {
          for (int j = threadIdx.x; j < np; j += blockDim.x) {
            const UpsampledPixel<D> px = upsampled_pixel<D>(up, x, p0 + j);
            float* row = buf + j * lp;
            for (int c = 0; c < C; ++c) row[c] = px(c);
          }
        } else {
          cuda::row_tile_fetch_as<D, kVec>(x + p0 * C, buf, np * C, C);
        }
        int64_t* lab = reinterpret_cast<int64_t*>(buf + label_off);
        for (int j = threadIdx.x; j < np; j += blockDim.x) cuda::cp_async8(lab + j, y + p0 + j);
      },
      [&](int64_t t, float* buf) {
        const int64_t p0 = t * tile_rows;
        const int np = (int)min((int64_t)tile_rows, P - p0);
        const int64_t* lab = reinterpret_cast<const int64_t*>(buf + label_off);
        for (int j = threadIdx.x; j < np; j += blockDim.x) {
          const float* row = buf + j * lp;
          ce_pixel<kOhem>([row](int c) { return row[c]; }, C, p0 + j, lab[j], w, ignore, thresh, lse, pgt, nll, stats,
                          a1, a2, below);
        }
      });
  ce_block_partials<kOhem>(a1, a2, below, part, stats);
}

// Larger C: each thread reads its row from global memory (a warp's rows are one contiguous span, so
// L1 serves the later passes over the row); kUp: each pass blends the pixel's logits again from the
// small logits (the same values each time).
template <bool kOhem, DType D, bool kUp>
__global__ void __launch_bounds__(kBlock)
    ce_fwd_row_kernel(const typename Storage<D>::T* __restrict__ x, ResizeArgs up, const int64_t* __restrict__ y,
                      const float* __restrict__ w, int64_t P, int C, int64_t ignore, float thresh,
                      float* __restrict__ lse, float* __restrict__ pgt, float* __restrict__ nll,
                      double* __restrict__ part, ull* __restrict__ stats) {
  using S = Storage<D>;
  double a1 = 0.0, a2 = 0.0;
  ull below = 0;
  for (int64_t p = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; p < P; p += (int64_t)gridDim.x * blockDim.x) {
    if constexpr (kUp) {
      ce_pixel<kOhem>(upsampled_pixel<D>(up, x, p), C, p, y[p], w, ignore, thresh, lse, pgt, nll, stats, a1, a2, below);
    } else {
      const typename S::T* row = x + p * C;
      ce_pixel<kOhem>([row](int c) { return S::load(row[c]); }, C, p, y[p], w, ignore, thresh, lse, pgt, nll, stats, a1,
                      a2, below);
    }
  }
  ce_block_partials<kOhem>(a1, a2, below, part, stats);
}

// One block: adds the block partials in a fixed order; loss = S1 / (use_s2 * S2 + denom_add).
__global__ void __launch_bounds__(kFinalBlock)
    loss_finalize_kernel(const double* __restrict__ part, int nparts, double denom_add, int use_s2,
                         ull* __restrict__ stats, float* __restrict__ loss, float* __restrict__ inv,
                         const ull* __restrict__ gate) {
  __shared__ double red[32];
  if (gate && gate[0] == 0ull) return;  // OHEM without mining: the CE forward's results stand
  // Partials are loaded kFinalBatch at a time (independent loads in flight) but added in the
  // same order as a plain strided loop: i = tid, tid + blockDim, ...
  constexpr int kFinalBatch = 8;
  double s1 = 0.0, s2 = 0.0;
  for (int i0 = threadIdx.x; i0 < nparts; i0 += kFinalBatch * blockDim.x) {
    double v1[kFinalBatch], v2[kFinalBatch];
    ENGINE_UNROLL
    for (int k = 0; k < kFinalBatch; ++k) {
      const int i = i0 + k * (int)blockDim.x;
      v1[k] = i < nparts ? part[2 * i] : 0.0;
      v2[k] = i < nparts ? part[2 * i + 1] : 0.0;
    }
    ENGINE_UNROLL
    for (int k = 0; k < kFinalBatch; ++k) {
      if (i0 + k * (int)blockDim.x < nparts) {
        s1 += v1[k];
        s2 += v2[k];
      }
    }
  }
  s1 = cuda::block_sum(s1, red);
  s2 = cuda::block_sum(s2, red);
  if (threadIdx.x == 0) {
    stats[kSum1] = (ull)__double_as_longlong(s1);
    stats[kSum2] = (ull)__double_as_longlong(s2);
    const double denom = (use_s2 ? s2 : 0.0) + denom_add;
    // A bad input (a label outside the classes, a probability outside [0, 1]) makes the loss nan: in
    // a CUDA graph the host check runs after the replay, and the step's update, which reads this
    // loss when it runs, does nothing on a nan (engine/ops/optim.h UpdateAtRun).
    loss[0] = stats[kBadCount] ? __int_as_float(0x7fc00000) : (float)(s1 / denom);
    if (inv) inv[0] = (float)(1.0 / denom);
  }
}

// ------------------------------------------------------------------------------ CE backward
// kStaged (C <= kStageMaxC): the tile's logits move through a shared-memory row tile (common.cuh:
// coalesced global accesses, 16-byte ones when kVec, rows at an odd stride so each thread's row
// sits in its own banks: an even C at stride C would have 2..32 threads of a warp on one bank).
template <bool kStaged, bool kVec, DType D>
__global__ void __launch_bounds__(kBlock)
    ce_bwd_kernel(const typename Storage<D>::T* __restrict__ x, const int64_t* __restrict__ y,
                  const float* __restrict__ w, const float* __restrict__ lse, const float* __restrict__ pgt,
                  const float* __restrict__ thr_dev, float thr_host, int64_t P, int C, int64_t ignore,
                  const float* __restrict__ g, const float* __restrict__ inv, typename Storage<D>::T* __restrict__ gx) {
  using S = Storage<D>;
  using T = typename S::T;
  float* tile = dynamic_smem<float>();
  const int lp = cuda::row_tile_stride(C);
  const float gs = g[0] * inv[0];
  const float thr = thr_dev ? thr_dev[0] : thr_host;
  const int64_t ntiles = (P + kBlock - 1) / kBlock;
  for (int64_t t = blockIdx.x; t < ntiles; t += gridDim.x) {
    const int64_t p0 = t * kBlock;
    const int np = (int)min((int64_t)kBlock, P - p0);
    const int ne = np * C;
    if (kStaged) {
      cuda::row_tile_fetch_as<D, kVec>(x + p0 * C, tile, ne, C);
      cuda::cp_async_commit();
      cuda::cp_async_wait<0>();
      __syncthreads();
    }
    if ((int)threadIdx.x < np) {
      const int64_t p = p0 + threadIdx.x;
      const int64_t yp = y[p];
      const bool valid = yp != ignore && yp >= 0 && yp < C;
      const bool keep = valid && (pgt == nullptr || !(pgt[p] >= thr));
      const float coef = keep ? gs * (w ? w[yp] : 1.f) : 0.f;
      const int yi = valid ? (int)yp : -1;
      const float l = lse[p];
      if (kStaged) {
        float* r = tile + threadIdx.x * lp;
        for (int c = 0; c < C; ++c) r[c] = coef * (exp_neg_f(r[c] - l) - (c == yi ? 1.f : 0.f));
      } else {
        const T* xr = x + p * C;
        T* r = gx + p * C;
        for (int c = 0; c < C; ++c) r[c] = S::store(coef * (exp_neg_f(S::load(xr[c]) - l) - (c == yi ? 1.f : 0.f)));
      }
    }
    if (kStaged) {
      __syncthreads();
      cuda::row_tile_store_as<D, kVec>(tile, gx + p0 * C, ne, C);
      __syncthreads();
    }
  }
}

// Upsampled CE backward, the resize backward's column pass fed by the loss gradient of the
// full-size logits as it is made (never stored). One output row r = (n, oh) per grid.y index, one
// thread per (iw, c) of it:
//   col[n, oh, iw, c] = sum over ow in R_w(iw), ascending, of w_w(ow, iw) * G[n, oh, ow, c]
// with G = D-rounded ce_bwd_kernel's gradient of the UpsampledPixel logit, both computed with that
// kernel's and resize_bwd_columns_kernel's arithmetic (fmaf from 0, zero weights skipped), so col
// holds the bits of the unfused column pass. The row pass (resize_bwd_rows_cuda) finishes gx.
// Each G element is made by the ~2 threads whose columns it feeds (a blend and an exp each), in
// place of writing the full-size gradient and reading it back, and of the forward's resize rerun.
template <DType D>
__global__ void __launch_bounds__(kBlock)
    resize_ce_bwd_columns_kernel(ResizeArgs up, const typename Storage<D>::T* __restrict__ x,
                                 const int64_t* __restrict__ y, const float* __restrict__ w,
                                 const float* __restrict__ lse, const float* __restrict__ pgt,
                                 const float* __restrict__ thr_dev, float thr_host, int64_t ignore,
                                 const float* __restrict__ g, const float* __restrict__ inv, float* __restrict__ col) {
  using S = Storage<D>;
  const float gs = g[0] * inv[0];
  const float thr = thr_dev ? thr_dev[0] : thr_host;
  const int C = (int)up.C;
  const uint32_t per_row = (uint32_t)up.w.in * (uint32_t)C;  // < 2^31, checked by the launcher
  const int64_t rows = up.N * up.h.out;
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    const UpsampledRow<D> src(up, x, (uint32_t)r);
    const int64_t p_row = r * up.w.out;  // the row's first output pixel
    float* crow = col + r * up.w.in * C;
    for (uint32_t j = blockIdx.x * blockDim.x + threadIdx.x; j < per_row; j += gridDim.x * blockDim.x) {
      const uint32_t iw = j / (uint32_t)C;
      const int c = (int)(j - iw * (uint32_t)C);
      int64_t wb, we;
      up.w.dst_range(iw, &wb, &we);
      float acc = 0.f;
      for (int64_t ow = wb; ow < we; ++ow) {
        const float ww = up.w.weight(ow, iw);
        if (ww == 0.f) continue;
        const int64_t p = p_row + ow;
        const int64_t yp = y[p];
        const bool valid = yp != ignore && yp >= 0 && yp < C;
        const bool keep = valid && (pgt == nullptr || !(pgt[p] >= thr));
        const float coef = keep ? gs * (w ? w[yp] : 1.f) : 0.f;
        const int yi = valid ? (int)yp : -1;
        const float z = UpsampledPixel<D>(up, src.row0, src.row1, src.ly, ow)(c);
        const float gz = S::load(S::store(coef * (exp_neg_f(z - lse[p]) - (c == yi ? 1.f : 0.f))));
        acc = fmaf(ww, gz, acc);
      }
      crow[j] = acc;
    }
  }
}

// ------------------------------------------------------------------------------ OHEM selection
// Decided on the device from the CE forward's statistics (PaddleSeg: mine when 0 < min_kept <
// #valid; the threshold is raised above thresh only when fewer than min_kept valid pixels lie below
// it, stats[kBelow]).
__device__ __forceinline__ bool ohem_mines(const ull* stats, int64_t min_kept) {
  const int64_t num_valid = (int64_t)__longlong_as_double((long long)stats[kSum2]);
  return min_kept > 0 && min_kept < num_valid && num_valid > 0;
}
__device__ __forceinline__ bool ohem_selects(const ull* stats, int64_t min_kept) {
  return ohem_mines(stats, min_kept) && stats[kBelow] < (ull)min_kept;
}

// state: [0] prefix bits, [1] mask bits, [2] remaining rank k (1-based), [3] mining flag (gate).
// Both kernels return at once when there is nothing to select.
__global__ void __launch_bounds__(kBlock)
    ohem_hist_kernel(const float* __restrict__ v, int64_t n, const ull* __restrict__ state, ull* __restrict__ hist,
                     int shift, const ull* __restrict__ stats, int64_t min_kept) {
  if (!ohem_selects(stats, min_kept)) return;
  __shared__ unsigned int sh[256];
  for (int i = threadIdx.x; i < 256; i += blockDim.x) sh[i] = 0u;
  __syncthreads();
  const unsigned prefix = (unsigned)state[0], mask = (unsigned)state[1];
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const unsigned b = __float_as_uint(v[i]);
    if ((b & mask) == prefix) atomicAdd(&sh[(b >> shift) & 255u], 1u);
  }
  __syncthreads();
  for (int i = threadIdx.x; i < 256; i += blockDim.x)
    if (sh[i]) atomicAdd(&hist[i], (ull)sh[i]);
}

__global__ void __launch_bounds__(32)
    ohem_scan_kernel(ull* __restrict__ hist, ull* __restrict__ state, int shift, const ull* __restrict__ stats,
                     int64_t min_kept, float thresh, float* __restrict__ thr_out) {
  if (threadIdx.x != 0 || !ohem_selects(stats, min_kept)) return;
  const ull k_first = (ull)min_kept;
  ull k = shift == 24 ? k_first : state[2], cum = 0;
  int d = 0;
  for (; d < 255; ++d) {
    if (cum + hist[d] >= k) break;
    cum += hist[d];
  }
  state[2] = k - cum;
  state[0] |= (ull)d << shift;
  state[1] |= 255ull << shift;
  for (int i = 0; i < 256; ++i) hist[i] = 0ull;
  if (shift == 0) {
    const float pk = __uint_as_float((unsigned)state[0]);
    thr_out[0] = pk > thresh ? pk : thresh;
  }
}

// The threshold when the select did not run: thresh when mining, +inf otherwise (the sum pass and
// the backward then keep every valid pixel, and the finalize gate, state[3] = 0, keeps the CE
// forward's loss).
__global__ void __launch_bounds__(32) ohem_gate_kernel(const ull* __restrict__ stats, int64_t min_kept, float thresh,
                                                       ull* __restrict__ state, float* __restrict__ thr) {
  if (threadIdx.x != 0) return;
  const bool mining = ohem_mines(stats, min_kept);
  state[3] = mining ? 1ull : 0ull;
  if (!mining)
    thr[0] = __int_as_float(0x7f800000);  // +inf
  else if (!ohem_selects(stats, min_kept))
    thr[0] = thresh;  // at least min_kept valid pixels below thresh: the k-th smallest is below it
}

// ------------------------------------------------------------------------------ OHEM sum pass
__global__ void __launch_bounds__(kBlock)
    ohem_sum_kernel(const float* __restrict__ pgt, const float* __restrict__ nll, const int64_t* __restrict__ y,
                    int64_t P, int C, int64_t ignore, const float* __restrict__ thr_dev, float thr_host,
                    double* __restrict__ part) {
  __shared__ double red[32];
  const float thr = thr_dev ? thr_dev[0] : thr_host;
  double a1 = 0.0, a2 = 0.0;
  for (int64_t p = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; p < P; p += (int64_t)gridDim.x * blockDim.x) {
    const int64_t yp = y[p];
    const bool keep = yp != ignore && yp >= 0 && yp < C && !(pgt[p] >= thr);
    if (keep) {
      a1 += (double)nll[p];
      a2 += 1.0;
    }
  }
  a1 = cuda::block_sum(a1, red);
  a2 = cuda::block_sum(a2, red);
  if (threadIdx.x == 0) {
    part[2 * blockIdx.x] = a1;
    part[2 * blockIdx.x + 1] = a2;
  }
}

// ------------------------------------------------------------------------------ pointwise losses
template <PointLoss K>
__global__ void __launch_bounds__(kBlock)
    point_fwd_kernel(const float* __restrict__ a, const float* __restrict__ b, const float* __restrict__ w, int64_t n,
                     double* __restrict__ part, ull* __restrict__ stats) {
  __shared__ double red[32];
  float acc = 0.f;
  unsigned bad = 0;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const float av = a[i];
    const float v = point_loss_f<K>(av, b[i]);
    acc += w ? v * w[i] : v;
    if (K == PointLoss::Bce) bad += bce_prob_bad(av) ? 1u : 0u;
  }
  const double s = cuda::block_sum((double)acc, red);
  if (K == PointLoss::Bce && bad) atomicAdd(&stats[kBadCount], (ull)bad);
  if (threadIdx.x == 0) {
    part[2 * blockIdx.x] = s;
    part[2 * blockIdx.x + 1] = 0.0;
  }
}

template <PointLoss K>
__global__ void __launch_bounds__(kBlock)
    point_bwd_kernel(const float* __restrict__ a, const float* __restrict__ b, const float* __restrict__ w, int64_t n,
                     const float* __restrict__ g, float scale, float* __restrict__ ga) {
  const float gs = g[0] * scale;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const float d = point_loss_grad_f<K>(a[i], b[i]);
    ga[i] = w ? gs * w[i] * d : gs * d;
  }
}

int point_grid(int64_t n) { return (int)cuda::grid_for(n, kBlock, kMaxPointBlocks); }

void finalize(const double* part, int nparts, double denom_add, int use_s2, int64_t* stats, float* loss, float* inv,
              cudaStream_t s, const ull* gate = nullptr) {
  GPU_LAUNCH(1, kFinalBlock, 0, s, loss_finalize_kernel)(part, nparts, denom_add, use_s2, (ull*)stats, loss, inv, gate);
  CUDA_CHECK_LAUNCH("loss_finalize_kernel");
}

}  // namespace

// ce_grid(P, kCeTileBlock) bounds the forward's grid for every C (a block has >= kCeTileBlock pixels).
int64_t ce_part_doubles(int64_t P) {
  return 2 * (int64_t)std::max(ce_grid(P, kCeTileBlock), (int)cuda::grid_for(P, kBlock, kMaxPointBlocks));
}

namespace {

// The CE forward of the logits x [P, C], or (up non-null) of the bilinear resize *up of x. The grid
// is a function of P, C, D and OHEM alone (the occupancy of the plain staged kernel), so the fused
// and the unfused forward give the same tiles to the same threads: the same sums, bit for bit.
void ce_fwd_launch(const void* xv, DType xt, const ResizeArgs* up, const int64_t* y, const float* w, int64_t P,
                   int64_t C, int64_t ignore, float thresh, float* lse, float* pgt, float* nll, double* part,
                   int64_t* stats, double denom_add, float* loss, float* inv, cudaStream_t s) {
  ull* st = reinterpret_cast<ull*>(stats);
  const int c = (int)C;
  const ResizeArgs ra = up ? *up : ResizeArgs();
  int grid = 0;
  with_storage(xt, "cross_entropy kernel", [&]<DType D>() {
    using T = typename Storage<D>::T;
    const T* x = static_cast<const T*>(xv);
    if (C <= kStageMaxC) {
      const int rows = ce_tile_rows(C);
      const size_t smem = 2 * ((size_t)rows * (size_t)cuda::row_tile_stride(c) + 2 * (size_t)rows) * sizeof(float);
      const bool vec = !up && cuda::row_tile_vec_ok_as<D>(C, x);
      grid = (int)cuda::resident_grid(
          pgt ? ce_fwd_tile_kernel<true, false, D, false> : ce_fwd_tile_kernel<false, false, D, false>, kCeTileBlock,
          smem, (P + rows - 1) / rows, kMaxCeBlocks);
      auto* k = up    ? (pgt ? ce_fwd_tile_kernel<true, false, D, true> : ce_fwd_tile_kernel<false, false, D, true>)
                : pgt ? (vec ? ce_fwd_tile_kernel<true, true, D, false> : ce_fwd_tile_kernel<true, false, D, false>)
                      : (vec ? ce_fwd_tile_kernel<false, true, D, false> : ce_fwd_tile_kernel<false, false, D, false>);
      GPU_LAUNCH(grid, kCeTileBlock, smem, s, k)(x, ra, y, w, P, c, rows, ignore, thresh, lse, pgt, nll, part, st);
    } else {
      grid = ce_grid(P, kBlock);
      auto* k = up ? (pgt ? ce_fwd_row_kernel<true, D, true> : ce_fwd_row_kernel<false, D, true>)
                   : (pgt ? ce_fwd_row_kernel<true, D, false> : ce_fwd_row_kernel<false, D, false>);
      GPU_LAUNCH(grid, kBlock, 0, s, k)(x, ra, y, w, P, c, ignore, thresh, lse, pgt, nll, part, st);
    }
  });
  CUDA_CHECK_LAUNCH("ce_fwd_kernel");
  finalize(part, grid, denom_add, 1, stats, loss, inv, s);
}

}  // namespace

void ce_fwd_cuda(const void* x, DType xt, const int64_t* y, const float* w, int64_t P, int64_t C, int64_t ignore,
                 float thresh, float* lse, float* pgt, float* nll, double* part, int64_t* stats, double denom_add,
                 float* loss, float* inv, cudaStream_t s) {
  ce_fwd_launch(x, xt, nullptr, y, w, P, C, ignore, thresh, lse, pgt, nll, part, stats, denom_add, loss, inv, s);
}

void resize_ce_fwd_cuda(const ResizeArgs& a, DType xt, const void* x, const int64_t* y, const float* w, int64_t ignore,
                        float thresh, float* lse, float* pgt, float* nll, double* part, int64_t* stats,
                        double denom_add, float* loss, float* inv, cudaStream_t s) {
  const int64_t P = a.N * a.h.out * a.w.out;
  ENGINE_CHECK(P <= (int64_t)UINT32_MAX, "upsampled_cross_entropy: ", P,
               " output pixels are too many for the CUDA kernels (2^32 limit)");
  ce_fwd_launch(x, xt, &a, y, w, P, a.C, ignore, thresh, lse, pgt, nll, part, stats, denom_add, loss, inv, s);
}

void ce_bwd_cuda(const void* xv, DType xt, const int64_t* y, const float* w, const float* lse, const float* pgt,
                 const float* thr_dev, float thr_host, int64_t P, int64_t C, int64_t ignore, const float* g,
                 const float* inv, void* gxv, cudaStream_t s) {
  const int grid = ce_grid(P, kBlock);
  const bool staged = C <= kStageMaxC;
  const size_t smem = staged ? (size_t)kBlock * (size_t)cuda::row_tile_stride((int)C) * sizeof(float) : 0;
  with_storage(xt, "cross_entropy kernel", [&]<DType D>() {
    using T = typename Storage<D>::T;
    const T* x = static_cast<const T*>(xv);
    T* gx = static_cast<T*>(gxv);
    const bool vec = cuda::row_tile_vec_ok_as<D>(C, x) && cuda::row_tile_vec_ok_as<D>(C, gx);
    auto* k = !staged ? ce_bwd_kernel<false, false, D>
              : vec   ? ce_bwd_kernel<true, true, D>
                      : ce_bwd_kernel<true, false, D>;
    GPU_LAUNCH(grid, kBlock, smem, s, k)(x, y, w, lse, pgt, thr_dev, thr_host, P, (int)C, ignore, g, inv, gx);
  });
  CUDA_CHECK_LAUNCH("ce_bwd_kernel");
}

void resize_ce_bwd_cuda(const ResizeArgs& a, DType xt, const void* xv, const int64_t* y, const float* w,
                        const float* lse, const float* pgt, const float* thr_dev, float thr_host, int64_t ignore,
                        const float* g, const float* inv, void* gx, float* ws, cudaStream_t s) {
  const int64_t per_row = a.w.in * a.C;
  ENGINE_CHECK(a.N * a.h.out * a.w.out <= (int64_t)UINT32_MAX,
               "upsampled_cross_entropy backward: ", a.N * a.h.out * a.w.out,
               " output pixels are too many for the CUDA kernels (2^32 limit)");
  ENGINE_CHECK(per_row < (int64_t(1) << 31), "upsampled_cross_entropy backward: one input row of ", a.w.in, "x", a.C,
               " elements is too large for the CUDA kernel (2^31 limit)");
  const int64_t rows = a.N * a.h.out;
  const dim3 grid(cuda::grid_for(per_row, kBlock, 65535), (unsigned)std::min<int64_t>(rows, 65535));
  with_storage(xt, "cross_entropy kernel", [&]<DType D>() {
    GPU_LAUNCH(grid, kBlock, 0, s, resize_ce_bwd_columns_kernel<D>)
    (a, static_cast<const typename Storage<D>::T*>(xv), y, w, lse, pgt, thr_dev, thr_host, ignore, g, inv, ws);
  });
  CUDA_CHECK_LAUNCH("resize_ce_bwd_columns_kernel");
  resize_bwd_rows_cuda(a, xt, ws, gx, s);
}

void ohem_mine_cuda(const float* pgt, const float* nll, const int64_t* y, int64_t P, int64_t C, int64_t ignore,
                    int64_t min_kept, float thresh, uint64_t* state, uint64_t* hist, double* part, int64_t* stats,
                    double denom_add, float* loss, float* inv, float* thr, cudaStream_t s) {
  ull* st = reinterpret_cast<ull*>(state);
  CUDA_CHECK(cudaMemsetAsync(st, 0, 4 * sizeof(ull), s));
  CUDA_CHECK(cudaMemsetAsync(hist, 0, 256 * sizeof(ull), s));
  const int grid = (int)cuda::grid_for(P, kBlock, 1024);
  for (int shift = 24; shift >= 0; shift -= 8) {
    GPU_LAUNCH(grid, kBlock, 0, s, ohem_hist_kernel)
    (pgt, P, (const ull*)st, (ull*)hist, shift, (const ull*)stats, min_kept);
    CUDA_CHECK_LAUNCH("ohem_hist_kernel");
    GPU_LAUNCH(1, 32, 0, s, ohem_scan_kernel)((ull*)hist, st, shift, (const ull*)stats, min_kept, thresh, thr);
    CUDA_CHECK_LAUNCH("ohem_scan_kernel");
  }
  GPU_LAUNCH(1, 32, 0, s, ohem_gate_kernel)((const ull*)stats, min_kept, thresh, st, thr);
  CUDA_CHECK_LAUNCH("ohem_gate_kernel");
  const int sgrid = (int)cuda::grid_for(P, kBlock, kMaxPointBlocks);
  GPU_LAUNCH(sgrid, kBlock, 0, s, ohem_sum_kernel)(pgt, nll, y, P, (int)C, ignore, thr, 0.f, part);
  CUDA_CHECK_LAUNCH("ohem_sum_kernel");
  finalize(part, sgrid, denom_add, 1, stats, loss, inv, s, st + 3);
}

void point_loss_fwd_cuda(PointLoss kind, const float* a, const float* b, const float* w, int64_t n, double* part,
                         int64_t* stats, float* loss, cudaStream_t s) {
  const int grid = point_grid(n);
  ull* st = reinterpret_cast<ull*>(stats);
  switch (kind) {
    case PointLoss::BceLogits:
      GPU_LAUNCH(grid, kBlock, 0, s, point_fwd_kernel<PointLoss::BceLogits>)(a, b, w, n, part, st);
      break;
    case PointLoss::Bce:
      GPU_LAUNCH(grid, kBlock, 0, s, point_fwd_kernel<PointLoss::Bce>)(a, b, w, n, part, st);
      break;
    case PointLoss::L1:
      GPU_LAUNCH(grid, kBlock, 0, s, point_fwd_kernel<PointLoss::L1>)(a, b, w, n, part, st);
      break;
  }
  CUDA_CHECK_LAUNCH("point_fwd_kernel");
  finalize(part, grid, (double)n, 0, stats, loss, nullptr, s);
}

void point_loss_bwd_cuda(PointLoss kind, const float* a, const float* b, const float* w, int64_t n, const float* g,
                         float scale, float* ga, cudaStream_t s) {
  const int grid = point_grid(n);
  switch (kind) {
    case PointLoss::BceLogits:
      GPU_LAUNCH(grid, kBlock, 0, s, point_bwd_kernel<PointLoss::BceLogits>)(a, b, w, n, g, scale, ga);
      break;
    case PointLoss::Bce:
      GPU_LAUNCH(grid, kBlock, 0, s, point_bwd_kernel<PointLoss::Bce>)(a, b, w, n, g, scale, ga);
      break;
    case PointLoss::L1:
      GPU_LAUNCH(grid, kBlock, 0, s, point_bwd_kernel<PointLoss::L1>)(a, b, w, n, g, scale, ga);
      break;
  }
  CUDA_CHECK_LAUNCH("point_bwd_kernel");
}

}  // namespace engine::kernels
