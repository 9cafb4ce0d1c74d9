// Detection post-processing on CUDA: YOLOv3 box decode (Paddle's yolo_box) and multiclass NMS
// (Paddle's multiclass_nms3 CPU semantics); semantics in engine/ops/detection.h. The per-element
// math is kernels/detection_math.h, shared with kernels/cpu/detection_cpu.cpp: its float operations
// are __fadd_rn / __fmul_rn / __fdiv_rn intrinsics here, so nvcc cannot contract them into FMAs and
// boxes, scores and IoU decisions are bit-identical to the CPU device.
//
// yolo_box_kernel: one thread per output element, grid-stride; scores [N, P, C] (p = a*H*W + h*W + w)
//   and boxes [N, P, 4] written with consecutive threads on consecutive addresses; the input
//   [N, H, W, A*(5+C)] is read along the same channel rows. conf is recomputed per class (cheap next
//   to the memory traffic). 416 x 416, batch 8, C = 80: ~29 MB in, ~28 MB out per call over the three
//   scales (~12 us at 4.8 TB/s).
// multiclass NMS: one segment per (image, class). No float atomics anywhere; every selection is an
//   ordered, integer-counted operation, so results do not depend on scheduling.
//   1. nms_count_kernel (block per segment): candidates score > threshold. The op reads the counts
//      back (sizes of the packed candidate arrays).
//   2. nms_sort_kernel (block per segment): if there are more than nms_top_k candidates, a 4 x 8-bit
//      radix select finds the key of the top_k-th score; an ordered block compaction (warp ballots,
//      one barrier per 256 items) writes the chosen candidates in index order as 64-bit keys
//      (~score_key << 32 | index): ties at the cut are taken in index order, as Paddle's stable sort
//      does; a bitonic network (all comparators ascending, so the length need not be a power of two)
//      sorts them in shared memory (<= 4096) or in a global workspace; then indices, scores and
//      boxes are gathered in sorted order.
//   3a. eta >= 1: nms_mask_kernel: 64 x 64 tiles of the upper triangle, one thread per row, bit j
//      set when IoU(candidate j, candidate i) fails the <= test; nms_scan_mask_kernel: one warp per
//      segment walks the candidates in order, keeping those whose bit is clear in the running
//      "removed" words and OR-ing their rows in (lanes own words).
//   3b. eta < 1 (or a mask above 512 MB): nms_scan_direct_kernel: one warp per segment tests each
//      candidate against the kept boxes (lanes split them; __all_sync) with Paddle's adaptive
//      threshold.
//   4. The op reads back the kept counts; nms_output_kernel (block per image) applies keep_top_k by a
//      radix select over the image's kept scores and an ordered compaction over the (class,
//      selection order) list, writing rows in that order.
// Tested by tests/test_detection_ops.cpp (CPU vs emulated CUDA, bit-exact); benchmarked by
// bench_kernels --filter detection.
#include <algorithm>

#include "base/cuda_context.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/detection_cuda.h"
#include "kernels/detection_math.h"

namespace engine::kernels {
namespace {

constexpr int kBlock = 256;
constexpr int kWarps = kBlock / 32;
constexpr int kSortCap = 4096;  // keys sorted in shared memory: 32 KB
constexpr int kTile = 64;
using ull = unsigned long long;

// ------------------------------------------------------------------------------------ yolo_box
// I = uint32_t when every index fits (the usual case: 64-bit divisions cost ~3x the memory time at
// YOLOv3 sizes), else int64_t.
template <class I>
__global__ void __launch_bounds__(kBlock)
    yolo_box_kernel(const float* __restrict__ x, const int32_t* __restrict__ img_hw, const float* __restrict__ anchors,
                    YoloBoxGeom g, float* __restrict__ boxes, float* __restrict__ scores) {
  const I HW = (I)g.H * (I)g.W, P = (I)g.A * HW, L = 5 + (I)g.C, C = (I)g.C;
  const I npred = (I)g.N * P, nscore = npred * C;
  const I stride = (I)gridDim.x * blockDim.x;
  for (I e = (I)blockIdx.x * blockDim.x + threadIdx.x; e < nscore; e += stride) {
    const I q = e / C, c = e - q * C;
    const I n = q / P, p = q - n * P, a = p / HW, hw = p - a * HW;
    const float* t = x + ((n * HW + hw) * (I)g.A + a) * L;
    const float conf = sigmoid_f(t[4]);
    scores[e] = conf < g.conf_thresh ? 0.f : mul_rn(conf, sigmoid_f(t[5 + c]));
  }
  for (I q = (I)blockIdx.x * blockDim.x + threadIdx.x; q < npred; q += stride) {
    const I n = q / P, p = q - n * P, a = p / HW, hw = p - a * HW;
    const I row = hw / (I)g.W, col = hw - row * (I)g.W;
    const float* t = x + ((n * HW + hw) * (I)g.A + a) * L;
    float* b = boxes + (int64_t)q * 4;
    if (sigmoid_f(t[4]) < g.conf_thresh) {
      b[0] = b[1] = b[2] = b[3] = 0.f;
      continue;
    }
    yolo_decode_box(t[0], t[1], t[2], t[3], (int)col, (int)row, anchors[2 * a], anchors[2 * a + 1], img_hw[2 * n],
                    img_hw[2 * n + 1], g.H, g.W, g.input_h, g.input_w, g.scale, g.bias, g.clip, b);
  }
}

// ------------------------------------------------------------------------------------ block helpers
// Radix select over items [0, n) (every thread of the block calls it): get(i, &key) says whether item
// i takes part and gives its 32-bit key. Finds T = the k-th largest key (1 <= k <= #items taking
// part) and ties = how many items with key == T belong to the top k (the rest of the top k have key >
// T). Four passes of 8 bits with a 256-bin shared histogram (integer counts: exact).
template <class Get>
__device__ __forceinline__ void radix_select(int64_t n, int64_t k, const Get& get, unsigned* hist, int64_t* s_sel,
                                             uint32_t* T, int64_t* ties) {
  const int tid = (int)threadIdx.x;
  uint32_t prefix = 0u, pmask = 0u;
  int64_t rem = k;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int b = tid; b < 256; b += kBlock) hist[b] = 0u;
    __syncthreads();
    for (int64_t i = tid; i < n; i += kBlock) {
      uint32_t key = 0u;
      if (get(i, &key) && (key & pmask) == prefix) atomicAdd(&hist[(key >> shift) & 255u], 1u);
    }
    __syncthreads();
    if (tid == 0) {
      int64_t acc = 0;
      int d = 255;
      for (; d > 0; --d) {
        if (acc + (int64_t)hist[d] >= rem) break;
        acc += hist[d];
      }
      s_sel[0] = d;
      s_sel[1] = rem - acc;
    }
    __syncthreads();
    prefix |= (uint32_t)s_sel[0] << shift;
    pmask |= 255u << shift;
    rem = s_sel[1];
  }
  *T = prefix;
  *ties = rem;
}

// Ordered compaction over items [0, n) (every thread of the block calls it): the items taking part
// (get) that are in the selection -- all of them when !cut, else key > T, or key == T among the first
// `ties` such items -- get dense positions 0, 1, ... in item order; emit(i, pos) is called for each.
// Warp ballots give in-warp prefixes; per-warp totals go through shared memory, double-buffered so
// that one barrier per 256 items suffices.
template <class Get, class Emit>
__device__ __forceinline__ void ordered_select(int64_t n, bool cut, uint32_t T, int64_t ties, const Get& get,
                                               const Emit& emit, unsigned (*s_a)[kWarps], unsigned (*s_t)[kWarps]) {
  const int tid = (int)threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const unsigned lt = (1u << lane) - 1u;
  int64_t base_a = 0, base_t = 0;
  int buf = 0;
  for (int64_t i0 = 0; i0 < n; i0 += kBlock, buf ^= 1) {
    const int64_t i = i0 + tid;
    uint32_t key = 0u;
    const bool in = i < n && get(i, &key);
    const bool fa = in && (!cut || key > T);
    const bool ft = in && cut && key == T;
    const unsigned ba = __ballot_sync(0xffffffffu, fa), bt = __ballot_sync(0xffffffffu, ft);
    if (lane == 0) {
      s_a[buf][warp] = (unsigned)__popc(ba);
      s_t[buf][warp] = (unsigned)__popc(bt);
    }
    __syncthreads();
    int64_t pa = __popc(ba & lt), pt = __popc(bt & lt), ta = 0, tt = 0;
    for (int w = 0; w < kWarps; ++w) {
      const unsigned xa = s_a[buf][w], xt = s_t[buf][w];
      if (w < warp) {
        pa += xa;
        pt += xt;
      }
      ta += xa;
      tt += xt;
    }
    const int64_t ra = base_a + pa, rt = base_t + pt;
    if (fa) emit(i, ra + (rt < ties ? rt : ties));
    if (ft && rt < ties) emit(i, ra + rt);
    base_a += ta;
    base_t += tt;
  }
}

// Sorts n unique u64 keys ascending (every thread of the block calls it). Bitonic network in the
// form whose comparators all put the smaller key first (a "flip" stage, then half-cleaners), so the
// missing elements of a non-power-of-two length behave as +infinity and are simply skipped.
__device__ __forceinline__ void bitonic_sort(uint64_t* keys, int64_t n) {
  int64_t np2 = 1;
  while (np2 < n) np2 <<= 1;
  for (int64_t k = 2; k <= np2; k <<= 1) {
    for (int64_t h = k >> 1; h > 0; h >>= 1) {
      const bool flip = h == (k >> 1);
      for (int64_t t = threadIdx.x; t < (np2 >> 1); t += kBlock) {
        const int64_t i = ((t & ~(h - 1)) << 1) | (t & (h - 1));
        const int64_t j = flip ? (i ^ (2 * h - 1)) : (i + h);
        if (j < n) {
          const uint64_t a = keys[i], b = keys[j];
          if (b < a) {
            keys[i] = b;
            keys[j] = a;
          }
        }
      }
      __syncthreads();
    }
  }
}

// ------------------------------------------------------------------------------------ NMS kernels
__global__ void __launch_bounds__(kBlock) nms_count_kernel(const float* __restrict__ scores, int64_t M, int64_t C,
                                                           float thr, int64_t background, int64_t* __restrict__ cnt) {
  __shared__ unsigned s_part[kWarps];
  const int64_t s = blockIdx.x, n = s / C, c = s - n * C;
  unsigned local = 0u;
  if (c != background) {
    const float* sc = scores + n * M * C + c;
    for (int64_t m = threadIdx.x; m < M; m += kBlock) local += sc[m * C] > thr ? 1u : 0u;
  }
  local = cuda::warp_reduce_sum(local);
  if ((threadIdx.x & 31) == 0) s_part[threadIdx.x >> 5] = local;
  __syncthreads();
  if (threadIdx.x == 0) {
    int64_t total = 0;
    for (int w = 0; w < kWarps; ++w) total += s_part[w];
    cnt[s] = total;
  }
}

__global__ void __launch_bounds__(kBlock)
    nms_sort_kernel(const float* __restrict__ boxes, const float* __restrict__ scores, int64_t M, int64_t C, float thr,
                    const int64_t* __restrict__ cnt, const int64_t* __restrict__ seg_off, uint64_t* __restrict__ gkeys,
                    int32_t* __restrict__ cand_idx, float* __restrict__ cand_score, float* __restrict__ cand_box) {
  __shared__ unsigned s_hist[256];
  __shared__ int64_t s_sel[2];
  __shared__ unsigned s_a[2][kWarps], s_t[2][kWarps];
  const int64_t s = blockIdx.x, n = s / C, c = s - n * C;
  const int64_t off = seg_off[s], L = seg_off[s + 1] - off;
  if (L == 0) return;
  const float* sc = scores + n * M * C + c;
  auto get = [&](int64_t m, uint32_t* key) {
    const float v = sc[m * C];
    *key = nms_score_key(v);
    return v > thr;
  };
  const bool cut = cnt[s] > L;
  uint32_t T = 0u;
  int64_t ties = 0;
  if (cut) radix_select(M, L, get, s_hist, s_sel, &T, &ties);
  uint64_t* keys = L <= kSortCap ? dynamic_smem<uint64_t>() : gkeys + off;
  ordered_select(
      M, cut, T, ties, get, [&](int64_t m, int64_t pos) { keys[pos] = nms_sort_key(sc[m * C], (uint32_t)m); }, s_a,
      s_t);
  __syncthreads();
  bitonic_sort(keys, L);
  const float* nb = boxes + n * M * 4;
  for (int64_t p = threadIdx.x; p < L; p += kBlock) {
    const uint32_t m = (uint32_t)keys[p];
    cand_idx[off + p] = (int32_t)m;
    cand_score[off + p] = sc[(int64_t)m * C];
    const float* b = nb + (int64_t)m * 4;
    float* d = cand_box + (off + p) * 4;
    d[0] = b[0];
    d[1] = b[1];
    d[2] = b[2];
    d[3] = b[3];
  }
}

// Index of the segment whose range [off[s], off[s+1]) holds v (off non-decreasing, s in [lo, hi)).
__device__ __forceinline__ int64_t find_segment(const int64_t* off, int64_t lo, int64_t hi, int64_t v) {
  while (hi - lo > 1) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (off[mid] <= v)
      lo = mid;
    else
      hi = mid;
  }
  return lo;
}

__global__ void __launch_bounds__(kTile)
    nms_mask_kernel(const float* __restrict__ cand_box, const int64_t* __restrict__ seg_off,
                    const int64_t* __restrict__ mask_off, const int64_t* __restrict__ tile_off, int64_t nseg, float thr,
                    bool normalized, ull* __restrict__ mask) {
  __shared__ float s_box[kTile * 4];
  const int64_t b = blockIdx.x;
  const int64_t s = find_segment(tile_off, 0, nseg, b);
  const int64_t off = seg_off[s], L = seg_off[s + 1] - off, nb = (L + kTile - 1) / kTile;
  int64_t t = b - tile_off[s], rb = 0;
  while (t >= nb - rb) {
    t -= nb - rb;
    ++rb;
  }
  const int64_t cb = rb + t;
  const int tid = (int)threadIdx.x;
  const int64_t col = cb * kTile + tid;
  if (col < L) {
    const float* p = cand_box + (off + col) * 4;
    s_box[tid * 4 + 0] = p[0];
    s_box[tid * 4 + 1] = p[1];
    s_box[tid * 4 + 2] = p[2];
    s_box[tid * 4 + 3] = p[3];
  }
  __syncthreads();
  const int64_t row = rb * kTile + tid;
  if (row >= L) return;
  const NmsBox kept = nms_load_box(cand_box + (off + row) * 4);
  const int64_t ncol = L - cb * kTile < kTile ? L - cb * kTile : kTile;
  ull bits = 0ull;
  for (int j = 0; j < (int)ncol; ++j) {
    if (cb * kTile + j <= row) continue;
    const NmsBox cand = nms_load_box(s_box + j * 4);
    if (nms_suppresses(nms_iou(cand, kept, normalized), thr)) bits |= 1ull << j;
  }
  mask[mask_off[s] + row * nb + cb] = bits;
}

__global__ void __launch_bounds__(32)
    nms_scan_mask_kernel(const int64_t* __restrict__ seg_off, const int64_t* __restrict__ mask_off,
                         const ull* __restrict__ mask, int32_t* __restrict__ keep_pos, int64_t* __restrict__ kept) {
  ull* removed = dynamic_smem<ull>();
  const int64_t s = blockIdx.x, off = seg_off[s], L = seg_off[s + 1] - off, nb = (L + kTile - 1) / kTile;
  const int lane = (int)threadIdx.x;
  for (int64_t w = lane; w < nb; w += 32) removed[w] = 0ull;
  __syncwarp();
  const ull* mk = mask + mask_off[s];
  int64_t nk = 0;
  for (int64_t b = 0; b < nb; ++b) {
    ull cur = removed[b];
    const int ncol = (int)(L - b * kTile < kTile ? L - b * kTile : kTile);
    for (int j = 0; j < ncol; ++j) {
      if ((cur >> j) & 1ull) continue;
      const int64_t i = b * kTile + j;
      if (lane == 0) keep_pos[off + nk] = (int32_t)i;
      ++nk;
      const ull* row = mk + i * nb;
      cur |= row[b];
      for (int64_t w = b + 1 + lane; w < nb; w += 32) removed[w] |= row[w];
    }
    __syncwarp();
  }
  if (lane == 0) kept[s] = nk;
}

__global__ void __launch_bounds__(32)
    nms_scan_direct_kernel(const float* __restrict__ cand_box, const int64_t* __restrict__ seg_off, float thr,
                           float eta, bool normalized, int32_t* __restrict__ keep_pos, int64_t* __restrict__ kept) {
  const int64_t s = blockIdx.x, off = seg_off[s], L = seg_off[s + 1] - off;
  const int lane = (int)threadIdx.x;
  const float* bx = cand_box + off * 4;
  float adaptive = thr;
  int64_t nk = 0;
  for (int64_t i = 0; i < L; ++i) {
    const NmsBox cand = nms_load_box(bx + i * 4);
    bool ok = true;
    for (int64_t j = lane; j < nk && ok; j += 32)
      ok = !nms_suppresses(nms_iou(cand, nms_load_box(bx + (int64_t)keep_pos[off + j] * 4), normalized), adaptive);
    if (__all_sync(0xffffffffu, ok)) {
      if (lane == 0) keep_pos[off + nk] = (int32_t)i;
      ++nk;
      if (eta < 1.f && adaptive > 0.5f) adaptive = mul_rn(adaptive, eta);
    }
    __syncwarp();
  }
  if (lane == 0) kept[s] = nk;
}

__global__ void __launch_bounds__(kBlock)
    nms_output_kernel(const float* __restrict__ cand_box, const float* __restrict__ cand_score,
                      const int32_t* __restrict__ cand_idx, const int32_t* __restrict__ keep_pos,
                      const int64_t* __restrict__ seg_off, const int64_t* __restrict__ det_off,
                      const int64_t* __restrict__ out_off, int64_t M, int64_t C, float* __restrict__ out,
                      int64_t* __restrict__ index) {
  __shared__ unsigned s_hist[256];
  __shared__ int64_t s_sel[2];
  __shared__ unsigned s_a[2][kWarps], s_t[2][kWarps];
  const int64_t n = blockIdx.x, s0 = n * C, f0 = det_off[s0], D = det_off[s0 + C] - f0;
  const int64_t o0 = out_off[n], R = out_off[n + 1] - o0;
  if (D == 0 || R == 0) return;
  // Item f of the image: the (f - det_off[s])-th kept candidate of segment s; returns its packed position.
  auto elem = [&](int64_t f, int64_t* seg) {
    const int64_t g = f0 + f, s = find_segment(det_off, s0, s0 + C, g);
    *seg = s;
    return seg_off[s] + keep_pos[seg_off[s] + (g - det_off[s])];
  };
  auto get = [&](int64_t f, uint32_t* key) {
    int64_t s;
    *key = nms_score_key(cand_score[elem(f, &s)]);
    return true;
  };
  const bool cut = R < D;
  uint32_t T = 0u;
  int64_t ties = 0;
  if (cut) radix_select(D, R, get, s_hist, s_sel, &T, &ties);
  ordered_select(
      D, cut, T, ties, get,
      [&](int64_t f, int64_t pos) {
        int64_t s;
        const int64_t e = elem(f, &s);
        float* o = out + (o0 + pos) * 6;
        o[0] = (float)(s - s0);
        o[1] = cand_score[e];
        o[2] = cand_box[e * 4 + 0];
        o[3] = cand_box[e * 4 + 1];
        o[4] = cand_box[e * 4 + 2];
        o[5] = cand_box[e * 4 + 3];
        index[o0 + pos] = n * M + cand_idx[e];
      },
      s_a, s_t);
}

}  // namespace

void yolo_box_cuda(const float* x, const int32_t* img_hw, const float* anchors, const YoloBoxGeom& g, float* boxes,
                   float* scores, cudaStream_t s) {
  const int64_t nscore = g.N * g.A * (int64_t)g.H * g.W * g.C;
  if (nscore == 0) return;
  const unsigned grid = cuda::grid_for(nscore, kBlock);
  // 32-bit indices when the largest index, plus a grid stride of slack, stays below 2^32.
  const int64_t in_elems = g.N * (int64_t)g.H * g.W * g.A * (5 + (int64_t)g.C);
  if (std::max(nscore, in_elems) + (int64_t)grid * kBlock < ((int64_t)1 << 32))
    GPU_LAUNCH(grid, kBlock, 0, s, yolo_box_kernel<uint32_t>)(x, img_hw, anchors, g, boxes, scores);
  else
    GPU_LAUNCH(grid, kBlock, 0, s, yolo_box_kernel<int64_t>)(x, img_hw, anchors, g, boxes, scores);
  CUDA_CHECK_LAUNCH("yolo_box_kernel");
}

void nms_count_cuda(const float* scores, int64_t N, int64_t M, int64_t C, float thr, int64_t background, int64_t* cnt,
                    cudaStream_t s) {
  GPU_LAUNCH((unsigned)(N * C), kBlock, 0, s, nms_count_kernel)(scores, M, C, thr, background, cnt);
  CUDA_CHECK_LAUNCH("nms_count_kernel");
}

int64_t nms_sort_smem_cap() { return kSortCap; }

void nms_sort_cuda(const float* boxes, const float* scores, int64_t N, int64_t M, int64_t C, float thr,
                   const int64_t* cnt, const int64_t* seg_off, int64_t max_L, uint64_t* gkeys, int32_t* cand_idx,
                   float* cand_score, float* cand_box, cudaStream_t s) {
  const size_t smem = (size_t)(max_L < kSortCap ? (max_L > 0 ? max_L : 1) : kSortCap) * sizeof(uint64_t);
  GPU_LAUNCH((unsigned)(N * C), kBlock, smem, s, nms_sort_kernel)
  (boxes, scores, M, C, thr, cnt, seg_off, gkeys, cand_idx, cand_score, cand_box);
  CUDA_CHECK_LAUNCH("nms_sort_kernel");
}

void nms_mask_cuda(const float* cand_box, const int64_t* seg_off, const int64_t* mask_off, const int64_t* tile_off,
                   int64_t nseg, int64_t ntiles, float thr, bool normalized, uint64_t* mask, cudaStream_t s) {
  if (ntiles == 0) return;
  GPU_LAUNCH((unsigned)ntiles, kTile, 0, s, nms_mask_kernel)
  (cand_box, seg_off, mask_off, tile_off, nseg, thr, normalized, reinterpret_cast<ull*>(mask));
  CUDA_CHECK_LAUNCH("nms_mask_kernel");
}

void nms_scan_mask_cuda(const int64_t* seg_off, const int64_t* mask_off, const uint64_t* mask, int64_t nseg,
                        int64_t max_nb, int32_t* keep_pos, int64_t* kept, cudaStream_t s) {
  const size_t smem = (size_t)(max_nb > 0 ? max_nb : 1) * sizeof(ull);
  GPU_LAUNCH((unsigned)nseg, 32, smem, s, nms_scan_mask_kernel)
  (seg_off, mask_off, reinterpret_cast<const ull*>(mask), keep_pos, kept);
  CUDA_CHECK_LAUNCH("nms_scan_mask_kernel");
}

void nms_scan_direct_cuda(const float* cand_box, const int64_t* seg_off, int64_t nseg, float thr, float eta,
                          bool normalized, int32_t* keep_pos, int64_t* kept, cudaStream_t s) {
  GPU_LAUNCH((unsigned)nseg, 32, 0, s, nms_scan_direct_kernel)(cand_box, seg_off, thr, eta, normalized, keep_pos, kept);
  CUDA_CHECK_LAUNCH("nms_scan_direct_kernel");
}

void nms_output_cuda(const float* cand_box, const float* cand_score, const int32_t* cand_idx, const int32_t* keep_pos,
                     const int64_t* seg_off, const int64_t* det_off, const int64_t* out_off, int64_t N, int64_t M,
                     int64_t C, float* out, int64_t* index, cudaStream_t s) {
  GPU_LAUNCH((unsigned)N, kBlock, 0, s, nms_output_kernel)
  (cand_box, cand_score, cand_idx, keep_pos, seg_off, det_off, out_off, M, C, out, index);
  CUDA_CHECK_LAUNCH("nms_output_kernel");
}

}  // namespace engine::kernels
