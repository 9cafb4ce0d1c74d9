// YOLOv3 loss on CUDA (semantics: engine/ops/yolo_loss.h; per-prediction math, shared with the
// CPU kernel: kernels/yolo_loss_math.h).
//
// Layout: S heads, each contiguous NHWC [N, gh, gw, na * (5 + C)]; gts box [N, B, 4] (cx, cy, w, h
// normalized), score [N, B], class i32 [N, B]; map i32 [N, P] and gt_pred i32 [N, B] as described
// in yolo_loss_math.h.
// Forward, five launches:
//   yolo_fill_kernel    map <- -1 (grid-stride).
//   yolo_assign_kernel  one thread per (image, gt): the prediction the gt is assigned to.
//   yolo_owner_kernel   one thread per image walks its B gts in order (B is small): the last gt
//                       assigned to a prediction owns it, so the collision rule is the sequential
//                       one of Gt2YoloTarget, with no atomics.
//   yolo_fwd_kernel     grid (blocks, N, S): the block's image's gt boxes are staged in shared
//                       memory; one thread per prediction decodes its box, takes the max IoU over
//                       the B gts (ignore mark -2 in the map), and adds its terms to per-thread
//                       double sums; a warp-shuffle block reduction writes 4 doubles per block.
//   yolo_finalize_kernel one block adds the block partials in a fixed order (strided per thread,
//                       then the block tree) and writes the five scalars (the class and total
//                       losses nan when a valid gt's class is out of range). Deterministic: no
//                       float atomics anywhere.
// Backward (yolo_bwd_kernel): grid (blocks, 1, S), one thread per output element (coalesced
//   stores); negatives cost one map read (and a sigmoid for the objectness channel); positive
//   predictions recompute their targets from the owning gt.
// Roofline: the forward reads 5 of the 5 + C channels of each negative prediction (strided) plus
//   all channels of the few positives, and B IoUs per prediction; the backward writes the whole
//   head once (N=8, 608 input, C=80: 8 * 22743 * 85 * 4 B = 62 MB, ~15 us at 4 TB/s) and reads the
//   objectness logits and the map.
// Tested by tests/test_yolo_loss.cpp (CPU vs emulated CUDA); benchmarked by bench_kernels
// --filter yolo (bench/bench_yolo_loss.cpp).
#include "base/cuda_context.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/yolo_loss_cuda.h"

namespace engine::kernels {
namespace {

constexpr int kBlock = 256;
constexpr int kFinalBlock = 256;
constexpr int kMaxFwdBlocks = 64;  // per (image, scale)

struct Heads {
  const float* p[kYoloMaxScales];
};
struct GradHeads {
  float* p[kYoloMaxScales];
};

__global__ void __launch_bounds__(kBlock) yolo_fill_kernel(int32_t* __restrict__ map, int64_t n) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    map[i] = -1;
}

// One thread per (image, gt): the prediction each gt is assigned to (independent of the others).
__global__ void __launch_bounds__(kBlock)
    yolo_assign_kernel(const YoloGeom g, const float* __restrict__ box, const float* __restrict__ score,
                       int32_t* __restrict__ gt_pred) {
  const int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (k < (int64_t)g.N * g.B) gt_pred[k] = (int32_t)yolo_assign_gt(g, box + k * 4, score[k]);
}

// One thread per image walks its gts in order: the last gt assigned to a prediction owns it.
__global__ void __launch_bounds__(kBlock)
    yolo_owner_kernel(const YoloGeom g, const int32_t* __restrict__ gt_pred, int32_t* __restrict__ map) {
  const int64_t n = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (n >= g.N) return;
  for (int b = 0; b < g.B; ++b) {
    const int32_t p = gt_pred[n * g.B + b];
    if (p >= 0) map[n * g.P + p] = b;
  }
}

// heads.p[s] without dynamic indexing (which would copy the struct to local memory).
template <class T>
__device__ __forceinline__ T pick(const T (&p)[kYoloMaxScales], int s) {
  return s == 0 ? p[0] : (s == 1 ? p[1] : (s == 2 ? p[2] : p[3]));
}

__global__ void __launch_bounds__(kBlock)
    yolo_fwd_kernel(const YoloGeom g, const Heads heads, const float* __restrict__ box, const float* __restrict__ score,
                    const int32_t* __restrict__ cls, int32_t* __restrict__ map, const int32_t* __restrict__ gt_pred,
                    double* __restrict__ part) {
  __shared__ double red[32];
  float* sbox = dynamic_smem<float>();
  const int s = blockIdx.z;
  const int64_t n = blockIdx.y;
  for (int q = threadIdx.x; q < 4 * g.B; q += blockDim.x) sbox[q] = box[n * g.B * 4 + q];
  __syncthreads();
  const int na = g.na[s], gw = g.gw[s], L = 5 + g.C;
  const int64_t cnt = (int64_t)g.gh[s] * gw * na;
  const float* sc = score + n * g.B;
  const int32_t* cl = cls + n * g.B;
  const int32_t* gp = gt_pred + n * g.B;
  int32_t* mp = map + n * g.P;
  const float* head = pick(heads.p, s) + n * cnt * L;
  double acc[4] = {0.0, 0.0, 0.0, 0.0};
  for (int64_t q = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; q < cnt; q += (int64_t)gridDim.x * blockDim.x) {
    const int a = (int)(q % na);
    const int64_t cell = q / na;
    const int i = (int)(cell % gw), j = (int)(cell / gw);
    const int64_t p = g.off[s] + q;
    const float* x = head + q * L;
    int32_t m = mp[p];
    if (m == -1 && yolo_ignored(g, s, a, i, j, x, sbox)) {
      m = -2;
      mp[p] = m;
    }
    float l[4];
    yolo_pred_loss(g, s, a, i, j, p, x, m, sbox, sc, cl, gp, l);
    ENGINE_UNROLL
    for (int t = 0; t < 4; ++t) acc[t] += (double)l[t];
  }
  const int64_t slot = ((n * g.S + s) * gridDim.x + blockIdx.x) * 4;
  ENGINE_UNROLL
  for (int t = 0; t < 4; ++t) {
    const double v = cuda::block_sum(acc[t], red);
    if (threadIdx.x == 0) part[slot + t] = v;
  }
}

__global__ void __launch_bounds__(kFinalBlock)
    yolo_finalize_kernel(const double* __restrict__ part, int64_t nparts, double inv_n, const float* __restrict__ box,
                         const float* __restrict__ score, const int32_t* __restrict__ cls, int64_t ngts,
                         int num_classes, float* o0, float* o1, float* o2, float* o3, float* o4) {
  __shared__ double red[32];
  // A valid gt whose class is outside [0, C) makes the class and total losses nan: in a CUDA graph
  // the host check (engine/ops/yolo_loss.cpp check_classes) runs after the replay, and the step's
  // update, which reads the total when it runs, does nothing on a nan.
  int bad = 0;
  for (int64_t k = threadIdx.x; k < ngts; k += blockDim.x)
    bad |= yolo_gt_valid(box + k * 4, score[k]) && (cls[k] < 0 || cls[k] >= num_classes);
  bad = __syncthreads_or(bad);
  double tot[4];
  ENGINE_UNROLL
  for (int t = 0; t < 4; ++t) {
    double v = 0.0;
    for (int64_t k = threadIdx.x; k < nparts; k += blockDim.x) v += part[k * 4 + t];
    tot[t] = cuda::block_sum(v, red) * inv_n;
  }
  if (threadIdx.x == 0) {
    *o0 = (float)tot[0];
    *o1 = (float)tot[1];
    *o2 = (float)tot[2];
    const float nan = __int_as_float(0x7fc00000);
    *o3 = bad ? nan : (float)tot[3];
    *o4 = bad ? nan : (float)(tot[0] + tot[1] + tot[2] + tot[3]);
  }
}

// I = int32_t when the head has fewer than 2^31 elements (cheaper index division), else int64_t.
template <class I>
__global__ void __launch_bounds__(kBlock)
    yolo_bwd_kernel(const YoloGeom g, const Heads heads, const float* __restrict__ box, const float* __restrict__ score,
                    const int32_t* __restrict__ cls, const int32_t* __restrict__ map,
                    const int32_t* __restrict__ gt_pred, const float* __restrict__ gup, float inv_n, GradHeads gheads) {
  const int s = blockIdx.z;
  const int na = g.na[s], gw = g.gw[s], L = 5 + g.C;
  const I per_image = (I)g.gh[s] * gw * na;
  const I total = per_image * g.N * L;
  const float coef = gup[0] * inv_n;
  const float* head = pick(heads.p, s);
  float* gh = pick(gheads.p, s);
  for (I e = (I)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (I)gridDim.x * blockDim.x) {
    const int k = (int)(e % L);
    const I pr = e / L;  // prediction over the batch
    const I n = pr / per_image, q = pr - n * per_image;
    const int a = (int)(q % na);
    const I cell = q / na;
    const int i = (int)(cell % gw), j = (int)(cell / gw);
    const int64_t p = g.off[s] + q;
    const int32_t m = map[(int64_t)n * g.P + p];
    const float* x = head + (int64_t)pr * L;
    const int64_t gb = (int64_t)n * g.B;
    gh[e] = coef * yolo_channel_grad(g, s, a, i, j, p, k, x, m, box + gb * 4, score + gb, cls + gb, gt_pred + gb);
  }
}

int fwd_blocks(const YoloGeom& g) {
  int64_t mx = 1;
  for (int s = 0; s < g.S; ++s) mx = std::max<int64_t>(mx, (int64_t)g.gh[s] * g.gw[s] * g.na[s]);
  return (int)std::min<int64_t>((mx + kBlock - 1) / kBlock, kMaxFwdBlocks);
}

}  // namespace

int64_t yolo_part_doubles(const YoloGeom& g) { return (int64_t)fwd_blocks(g) * g.N * g.S * 4; }

void yolo_loss_fwd_cuda(const YoloGeom& g, const float* const* heads, const float* box, const float* score,
                        const int32_t* cls, int32_t* map, int32_t* gt_pred, double* part, float* const* out,
                        cudaStream_t stream) {
  Heads h{};
  for (int s = 0; s < g.S; ++s) h.p[s] = heads[s];
  const int64_t nmap = g.N * g.P;
  GPU_LAUNCH(cuda::grid_for(nmap, kBlock, 4096), kBlock, 0, stream, yolo_fill_kernel)(map, nmap);
  CUDA_CHECK_LAUNCH("yolo_fill_kernel");
  if (g.B > 0) {
    GPU_LAUNCH(cuda::grid_for((int64_t)g.N * g.B, kBlock), kBlock, 0, stream, yolo_assign_kernel)
    (g, box, score, gt_pred);
    CUDA_CHECK_LAUNCH("yolo_assign_kernel");
    GPU_LAUNCH(cuda::grid_for(g.N, kBlock), kBlock, 0, stream, yolo_owner_kernel)(g, gt_pred, map);
    CUDA_CHECK_LAUNCH("yolo_owner_kernel");
  }
  const int bx = fwd_blocks(g);
  const dim3 grid((unsigned)bx, (unsigned)g.N, (unsigned)g.S);
  const size_t smem = (size_t)g.B * 4 * sizeof(float);
  GPU_LAUNCH(grid, kBlock, smem, stream, yolo_fwd_kernel)(g, h, box, score, cls, map, gt_pred, part);
  CUDA_CHECK_LAUNCH("yolo_fwd_kernel");
  GPU_LAUNCH(1, kFinalBlock, 0, stream, yolo_finalize_kernel)
  (part, (int64_t)bx * g.N * g.S, 1.0 / (double)g.N, box, score, cls, (int64_t)g.N * g.B, g.C, out[0], out[1], out[2],
   out[3], out[4]);
  CUDA_CHECK_LAUNCH("yolo_finalize_kernel");
}

void yolo_loss_bwd_cuda(const YoloGeom& g, const float* const* heads, const float* box, const float* score,
                        const int32_t* cls, const int32_t* map, const int32_t* gt_pred, const float* gup, float inv_n,
                        float* const* gheads, cudaStream_t stream) {
  Heads h{};
  GradHeads gh{};
  int64_t mx = 1;
  for (int s = 0; s < g.S; ++s) {
    h.p[s] = heads[s];
    gh.p[s] = gheads[s];
    mx = std::max<int64_t>(mx, (int64_t)g.N * g.gh[s] * g.gw[s] * g.na[s] * (5 + g.C));
  }
  const dim3 grid(cuda::grid_for(mx, kBlock, 8192), 1, (unsigned)g.S);
  if (mx < ((int64_t)1 << 31) - (int64_t)grid.x * kBlock)
    GPU_LAUNCH(grid, kBlock, 0, stream, yolo_bwd_kernel<int32_t>)(g, h, box, score, cls, map, gt_pred, gup, inv_n, gh);
  else
    GPU_LAUNCH(grid, kBlock, 0, stream, yolo_bwd_kernel<int64_t>)(g, h, box, score, cls, map, gt_pred, gup, inv_n, gh);
  CUDA_CHECK_LAUNCH("yolo_bwd_kernel");
}

}  // namespace engine::kernels
