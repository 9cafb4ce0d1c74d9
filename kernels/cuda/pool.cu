// Pooling family on CUDA: average (exclusive / inclusive / adaptive, incl. global) and max pooling,
// forward and backward, on contiguous NHWC tensors. Same contracts and window math as the CPU kernels
// (Pool2dGeom and pool_max_better in kernels/cpu/pool_cpu.h).
// Math:
//   avg:  y[n,oh,ow,c] = scale(oh,ow) * sum_{(h,w) in window(oh,ow)} x[n,h,w,c]
//   max:  y = max over the window (ties: first in row-major order; NaN wins), idx = h*W + w (int32)
//   backward in gather form, one thread per dx element (no atomics, deterministic):
//     avg: dx[n,h,w,c] = sum_{(oh,ow) covering (h,w)} scale(oh,ow) * gy[n,oh,ow,c]
//     max: dx[n,h,w,c] = sum_{(oh,ow) covering (h,w), idx == h*W+w} gy[n,oh,ow,c]
// Kernels (256 threads; V = 4 channels per thread with float4/int4 accesses when C % 4 == 0 and the
// pointers are 16-byte aligned, else V = 1; 32-bit window math (sizes checked by the op layer),
// 64-bit element offsets; grid-stride loops):
//   avg_pool2d_fwd_kernel, max_pool2d_fwd_kernel: blocks of bx x by threads, threadIdx.x = channel
//     vector (bx = min(32, pow2ceil(C/V)), blockIdx.y tiles the channels), threadIdx.y = output
//     pixel (grid-stride over N*Ho*Wo pixels, 32-bit pixel math): a warp reads whole channel runs of
//     one pixel, or several adjacent pixels when C is small: coalesced. Overlapping 3x3/s2 windows
//     re-read x from L1/L2, not DRAM.
//   avg_pool2d_fwd_window_kernel: windows of >= 32 cells (adaptive/global pooling of SPPM): one block
//     per output pixel and channel tile, threadIdx.y splits the window's cells, a shared-memory tree
//     (fixed order) adds the partial sums; keeps the GPU busy when there are few outputs.
//   avg_pool2d_bwd_kernel, max_pool2d_bwd_kernel: the same layout over input pixels; each thread
//     loops over the <= ceil(k/s)^2 covering outputs.
// Roofline (H100 SXM, ~3.35 TB/s; memory bound): avg 3x3 s2 on [4,128,128,128] reads x (33.5 MB)
// and writes y (8.4 MB): ~42 MB -> ~13 us; max 3x3 s2 on [4,128,128,64] reads 16.8 MB, writes y +
// idx 8.4 MB -> ~7.5 us; adaptive/global on [4,16,16,1024] reads 4.2 MB -> ~1.3 us (launch bound).
// Backward: avg reads gy, writes dx (~1.25x forward bytes); max also reads idx.
// Storage (template parameter D: f32, bf16 or f16, mixed precision): x, y, gy, gx are loaded as f32
// (V = 4: one 16-byte access in f32, 8 bytes in bf16 / f16), sums and comparisons are f32, stores
// round once (Storage<D>); max indices stay int32.
// Tested by tests/test_pool.cpp (CPU vs emulated CUDA); benchmarked by bench_kernels (bench_pool.cpp).
#include <algorithm>
#include <initializer_list>

#include "base/cuda_context.h"
#include "base/error.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/pool_cuda.h"

namespace engine::kernels {
namespace {

constexpr int kThreads = 256;

// Keeps the covering-output loops of the backward kernels rolled: unrolling them with the window
// math inside raises register pressure past what ptxas fits without spilling (sm_90).
#if defined(__CUDACC__)
#define POOL_NO_UNROLL _Pragma("unroll 1")
#else
#define POOL_NO_UNROLL
#endif
constexpr int64_t kWindowBlockMin = 32;  // window cells from which the block-per-output kernel is used

template <DType D>
using Elem = typename Storage<D>::T;

// Thread layout of the per-pixel kernels: blockDim = (bx, by), threadIdx.x = channel vector within
// the tile blockIdx.y, threadIdx.y + blockIdx.x * by = pixel (grid-stride). Pixel indices fit in
// int32 (checked by the op layer), so the decomposition uses fast 32-bit integer math.
struct PixTile {
  int bx, by;
  unsigned gx, gy;
};

PixTile pix_tile(int64_t pixels, int64_t cv) {
  PixTile t;
  t.bx = 1;
  while (t.bx < cv && t.bx < 32) t.bx <<= 1;
  t.by = kThreads / t.bx;
  t.gy = (unsigned)((cv + t.bx - 1) / t.bx);
  t.gx = cuda::grid_for(pixels, t.by, std::max<int64_t>(1, 4096 / (int64_t)t.gy));
  return t;
}

// ------------------------------------------------------------------------------------ forward
template <int V, DType D>
__global__ void __launch_bounds__(kThreads)
    avg_pool2d_fwd_kernel(const Elem<D>* __restrict__ x, Elem<D>* __restrict__ y, Pool2dGeom g) {
  const int cvi = blockIdx.y * blockDim.x + threadIdx.x;
  if (cvi * V >= g.c) return;
  const int c0 = cvi * V;
  const int pixels = g.n * g.oh * g.ow;
  for (int p = blockIdx.x * blockDim.y + threadIdx.y; p < pixels; p += gridDim.x * blockDim.y) {
    const int ow = p % g.ow, q = p / g.ow, oh = q % g.oh, n = q / g.oh;
    int hb, he, wb, we;
    g.window_h(oh, hb, he);
    g.window_w(ow, wb, we);
    float acc[V];
    ENGINE_UNROLL
    for (int v = 0; v < V; ++v) acc[v] = 0.f;
    for (int h = hb; h < he; ++h)
      for (int w = wb; w < we; ++w) {
        float xv[V];
        cuda::load_vec_as<V, D>(x + g.offset(n, h, w, g.h, g.w) + c0, xv);
        ENGINE_UNROLL
        for (int v = 0; v < V; ++v) acc[v] += xv[v];
      }
    const float s = g.avg_scale(hb, he, wb, we);
    ENGINE_UNROLL
    for (int v = 0; v < V; ++v) acc[v] *= s;
    cuda::store_vec_as<V, D>(y + (int64_t)p * g.c + c0, acc);
  }
}

template <int V, DType D>
__global__ void __launch_bounds__(kThreads)
    avg_pool2d_fwd_window_kernel(const Elem<D>* __restrict__ x, Elem<D>* __restrict__ y, Pool2dGeom g) {
  __shared__ float s_acc[kThreads * V];
  const int tx = threadIdx.x, ty = threadIdx.y, bx = blockDim.x, by = blockDim.y;
  const int t = ty * bx + tx;
  const int c0 = (blockIdx.y * bx + tx) * V;
  const bool active = c0 < g.c;
  const int p = blockIdx.x;
  const int ow = p % g.ow, q = p / g.ow, oh = q % g.oh, n = q / g.oh;
  int hb, he, wb, we;
  g.window_h(oh, hb, he);
  g.window_w(ow, wb, we);
  const int ww = we - wb, cells = (he - hb) * ww;
  float acc[V];
  ENGINE_UNROLL
  for (int v = 0; v < V; ++v) acc[v] = 0.f;
  if (active) {
    for (int k = ty; k < cells; k += by) {
      const int h = hb + k / ww, w = wb + k % ww;
      float xv[V];
      cuda::load_vec_as<V, D>(x + g.offset(n, h, w, g.h, g.w) + c0, xv);
      ENGINE_UNROLL
      for (int v = 0; v < V; ++v) acc[v] += xv[v];
    }
  }
  ENGINE_UNROLL
  for (int v = 0; v < V; ++v) s_acc[t * V + v] = acc[v];
  __syncthreads();
  for (int s = by / 2; s > 0; s >>= 1) {
    if (ty < s) {
      ENGINE_UNROLL
      for (int v = 0; v < V; ++v) s_acc[t * V + v] += s_acc[(t + s * bx) * V + v];
    }
    __syncthreads();
  }
  if (ty == 0 && active) {
    const float sc = g.avg_scale(hb, he, wb, we);
    ENGINE_UNROLL
    for (int v = 0; v < V; ++v) acc[v] = s_acc[t * V + v] * sc;
    cuda::store_vec_as<V, D>(y + (int64_t)p * g.c + c0, acc);
  }
}

template <int V, DType D>
__global__ void __launch_bounds__(kThreads)
    max_pool2d_fwd_kernel(const Elem<D>* __restrict__ x, Elem<D>* __restrict__ y, int32_t* __restrict__ idx,
                          Pool2dGeom g) {
  const int cvi = blockIdx.y * blockDim.x + threadIdx.x;
  if (cvi * V >= g.c) return;
  const int c0 = cvi * V;
  const int pixels = g.n * g.oh * g.ow;
  for (int p = blockIdx.x * blockDim.y + threadIdx.y; p < pixels; p += gridDim.x * blockDim.y) {
    const int ow = p % g.ow, q = p / g.ow, oh = q % g.oh, n = q / g.oh;
    int hb, he, wb, we;
    g.window_h(oh, hb, he);
    g.window_w(ow, wb, we);
    float best[V];
    int32_t bi[V];
    cuda::load_vec_as<V, D>(x + g.offset(n, hb, wb, g.h, g.w) + c0, best);
    ENGINE_UNROLL
    for (int v = 0; v < V; ++v) bi[v] = hb * g.w + wb;
    for (int h = hb; h < he; ++h)
      for (int w = (h == hb ? wb + 1 : wb); w < we; ++w) {
        float xv[V];
        cuda::load_vec_as<V, D>(x + g.offset(n, h, w, g.h, g.w) + c0, xv);
        const int32_t pos = h * g.w + w;
        ENGINE_UNROLL
        for (int v = 0; v < V; ++v) {
          const bool b = pool_max_better(xv[v], best[v]);
          best[v] = b ? xv[v] : best[v];
          bi[v] = b ? pos : bi[v];
        }
      }
    const int64_t off = (int64_t)p * g.c + c0;
    cuda::store_vec_as<V, D>(y + off, best);
    cuda::store_vec<V>(idx + off, bi);
  }
}

// ----------------------------------------------------------------------------------- backward
template <int V, DType D>
__global__ void __launch_bounds__(kThreads)
    avg_pool2d_bwd_kernel(const Elem<D>* __restrict__ gy, Elem<D>* __restrict__ gx, Pool2dGeom g) {
  const int cvi = blockIdx.y * blockDim.x + threadIdx.x;
  if (cvi * V >= g.c) return;
  const int c0 = cvi * V;
  const int pixels = g.n * g.h * g.w;
  for (int p = blockIdx.x * blockDim.y + threadIdx.y; p < pixels; p += gridDim.x * blockDim.y) {
    const int w = p % g.w, q = p / g.w, h = q % g.h, n = q / g.h;
    int ohl, ohh, owl, owh;
    g.covering_h(h, ohl, ohh);
    g.covering_w(w, owl, owh);
    float acc[V];
    ENGINE_UNROLL
    for (int v = 0; v < V; ++v) acc[v] = 0.f;
    POOL_NO_UNROLL
    for (int oh = ohl; oh <= ohh; ++oh) {
      int hb, he;
      g.window_h(oh, hb, he);
      POOL_NO_UNROLL
      for (int ow = owl; ow <= owh; ++ow) {
        int wb, we;
        g.window_w(ow, wb, we);
        const float s = g.avg_scale(hb, he, wb, we);
        float gv[V];
        cuda::load_vec_as<V, D>(gy + g.offset(n, oh, ow, g.oh, g.ow) + c0, gv);
        ENGINE_UNROLL
        for (int v = 0; v < V; ++v) acc[v] += gv[v] * s;
      }
    }
    cuda::store_vec_as<V, D>(gx + (int64_t)p * g.c + c0, acc);
  }
}

template <int V, DType D>
__global__ void __launch_bounds__(kThreads)
    max_pool2d_bwd_kernel(const Elem<D>* __restrict__ gy, const int32_t* __restrict__ idx, Elem<D>* __restrict__ gx,
                          Pool2dGeom g) {
  const int cvi = blockIdx.y * blockDim.x + threadIdx.x;
  if (cvi * V >= g.c) return;
  const int c0 = cvi * V;
  const int pixels = g.n * g.h * g.w;
  for (int p = blockIdx.x * blockDim.y + threadIdx.y; p < pixels; p += gridDim.x * blockDim.y) {
    const int w = p % g.w, q = p / g.w, h = q % g.h, n = q / g.h;
    const int32_t pos = h * g.w + w;
    int ohl, ohh, owl, owh;
    g.covering_h(h, ohl, ohh);
    g.covering_w(w, owl, owh);
    float acc[V];
    ENGINE_UNROLL
    for (int v = 0; v < V; ++v) acc[v] = 0.f;
    POOL_NO_UNROLL
    for (int oh = ohl; oh <= ohh; ++oh) POOL_NO_UNROLL
    for (int ow = owl; ow <= owh; ++ow) {
      const int64_t off = g.offset(n, oh, ow, g.oh, g.ow) + c0;
      float gv[V];
      int32_t iv[V];
      cuda::load_vec_as<V, D>(gy + off, gv);
      cuda::load_vec<V>(idx + off, iv);
      ENGINE_UNROLL
      for (int v = 0; v < V; ++v) acc[v] += iv[v] == pos ? gv[v] : 0.f;
    }
    cuda::store_vec_as<V, D>(gx + (int64_t)p * g.c + c0, acc);
  }
}

// ---------------------------------------------------------------------------------- launchers
// 4 when C % 4 == 0 and the data pointers (storage D) and the index pointer (int32, may be null)
// allow 4-element accesses.
template <DType D>
int vec_width(int64_t C, std::initializer_list<const void*> ptrs, const int32_t* idx = nullptr) {
  if (C % 4 != 0 || (idx && !cuda::is_aligned16(idx))) return 1;
  for (const void* p : ptrs)
    if (!cuda::vec4_aligned<D>(p)) return 1;
  return 4;
}

template <int V, DType D>
void launch_avg_fwd(const Elem<D>* x, Elem<D>* y, const Pool2dGeom& g, cudaStream_t s) {
  // Largest window: adaptive bins are at most ceil(L/out) + 1 cells long; regular windows kh x kw.
  const int64_t wh = g.mode == PoolMode::Adaptive ? (g.h + g.oh - 1) / g.oh + 1 : g.kh;
  const int64_t wwid = g.mode == PoolMode::Adaptive ? (g.w + g.ow - 1) / g.ow + 1 : g.kw;
  const int64_t pixels = (int64_t)g.n * g.oh * g.ow, cv = g.c / V;
  if (wh * wwid >= kWindowBlockMin) {
    int bx = 1;
    while (bx < cv && bx < 32) bx <<= 1;
    const int by = kThreads / bx;
    const int64_t gy = (cv + bx - 1) / bx;
    GPU_LAUNCH(dim3((unsigned)pixels, (unsigned)gy), dim3(bx, by), 0, s, avg_pool2d_fwd_window_kernel<V, D>)(x, y, g);
    CUDA_CHECK_LAUNCH("avg_pool2d_fwd_window_kernel");
    return;
  }
  const PixTile t = pix_tile(pixels, cv);
  GPU_LAUNCH(dim3(t.gx, t.gy), dim3(t.bx, t.by), 0, s, avg_pool2d_fwd_kernel<V, D>)(x, y, g);
  CUDA_CHECK_LAUNCH("avg_pool2d_fwd_kernel");
}

}  // namespace

void avg_pool2d_fwd_cuda(DType dt, const void* xv, void* yv, const Pool2dGeom& g, cudaStream_t s) {
  if ((int64_t)g.n * g.oh * g.ow * g.c == 0) return;
  with_storage(dt, "pool kernel", [&]<DType D>() {
    const Elem<D>* x = static_cast<const Elem<D>*>(xv);
    Elem<D>* y = static_cast<Elem<D>*>(yv);
    if (vec_width<D>(g.c, {x, y}) == 4)
      launch_avg_fwd<4, D>(x, y, g, s);
    else
      launch_avg_fwd<1, D>(x, y, g, s);
  });
}

void avg_pool2d_bwd_cuda(DType dt, const void* gyv, void* gxv, const Pool2dGeom& g, cudaStream_t s) {
  const int64_t pixels = (int64_t)g.n * g.h * g.w;
  if (pixels * g.c == 0) return;
  with_storage(dt, "pool kernel", [&]<DType D>() {
    const Elem<D>* gy = static_cast<const Elem<D>*>(gyv);
    Elem<D>* gx = static_cast<Elem<D>*>(gxv);
    if (vec_width<D>(g.c, {gy, gx}) == 4) {
      const PixTile t = pix_tile(pixels, g.c / 4);
      GPU_LAUNCH(dim3(t.gx, t.gy), dim3(t.bx, t.by), 0, s, avg_pool2d_bwd_kernel<4, D>)(gy, gx, g);
    } else {
      const PixTile t = pix_tile(pixels, g.c);
      GPU_LAUNCH(dim3(t.gx, t.gy), dim3(t.bx, t.by), 0, s, avg_pool2d_bwd_kernel<1, D>)(gy, gx, g);
    }
    CUDA_CHECK_LAUNCH("avg_pool2d_bwd_kernel");
  });
}

void max_pool2d_fwd_cuda(DType dt, const void* xv, void* yv, int32_t* idx, const Pool2dGeom& g, cudaStream_t s) {
  const int64_t pixels = (int64_t)g.n * g.oh * g.ow;
  if (pixels * g.c == 0) return;
  with_storage(dt, "pool kernel", [&]<DType D>() {
    const Elem<D>* x = static_cast<const Elem<D>*>(xv);
    Elem<D>* y = static_cast<Elem<D>*>(yv);
    if (vec_width<D>(g.c, {x, y}, idx) == 4) {
      const PixTile t = pix_tile(pixels, g.c / 4);
      GPU_LAUNCH(dim3(t.gx, t.gy), dim3(t.bx, t.by), 0, s, max_pool2d_fwd_kernel<4, D>)(x, y, idx, g);
    } else {
      const PixTile t = pix_tile(pixels, g.c);
      GPU_LAUNCH(dim3(t.gx, t.gy), dim3(t.bx, t.by), 0, s, max_pool2d_fwd_kernel<1, D>)(x, y, idx, g);
    }
    CUDA_CHECK_LAUNCH("max_pool2d_fwd_kernel");
  });
}

void max_pool2d_bwd_cuda(DType dt, const void* gyv, const int32_t* idx, void* gxv, const Pool2dGeom& g,
                         cudaStream_t s) {
  const int64_t pixels = (int64_t)g.n * g.h * g.w;
  if (pixels * g.c == 0) return;
  with_storage(dt, "pool kernel", [&]<DType D>() {
    const Elem<D>* gy = static_cast<const Elem<D>*>(gyv);
    Elem<D>* gx = static_cast<Elem<D>*>(gxv);
    if (vec_width<D>(g.c, {gy, gx}, idx) == 4) {
      const PixTile t = pix_tile(pixels, g.c / 4);
      GPU_LAUNCH(dim3(t.gx, t.gy), dim3(t.bx, t.by), 0, s, max_pool2d_bwd_kernel<4, D>)(gy, idx, gx, g);
    } else {
      const PixTile t = pix_tile(pixels, g.c);
      GPU_LAUNCH(dim3(t.gx, t.gy), dim3(t.bx, t.by), 0, s, max_pool2d_bwd_kernel<1, D>)(gy, idx, gx, g);
    }
    CUDA_CHECK_LAUNCH("max_pool2d_bwd_kernel");
  });
}

}  // namespace engine::kernels
