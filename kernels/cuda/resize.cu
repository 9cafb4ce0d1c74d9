// Resize family on CUDA: bilinear (half-pixel / align-corners) and nearest, forward and backward,
// NHWC. Math: kernels/resize_math.h (Resize1D, bilinear_blend), shared with the CPU kernels.
//   forward:  out[n,oh,ow,c] = bilinear_blend of the 4 taps of (oh, ow), or the nearest tap.
//   backward: gx[n,ih,iw,c] = sum_{oh in R_h(ih)} sum_{ow in R_w(iw)} w_h(oh,ih) w_w(ow,iw) g[n,oh,ow,c]
// Kernels (256 threads; grid.y strides over images, grid.x grid-strides within one image with
// 32-bit index math — 64-bit division is an out-of-line call that made ptxas spill on sm_90 — and
// 64-bit element offsets; one image must have < 2^31 elements, checked by the launchers):
//   resize_fwd_kernel<nearest, V>: one thread per (n, oh, ow, V channels); V = 4 (float4 loads and
//     stores) when the channel stride is 1, C % 4 == 0 and every pixel address is 16-byte aligned,
//     else V = 1 with any x strides. Neighbouring threads read neighbouring channels: coalesced.
//   resize_bwd_kernel<V>: DETERMINISTIC GATHER, one thread per (n, ih, iw, V channels) of gx. The
//     output pixels that read input row ih are a contiguous range R_h(ih) (Resize1D::dst_range,
//     binary search on the exact forward formula); the thread sums sum_oh w_h * (sum_ow w_w * g) in
//     a fixed order (ow then oh ascending, fmaf, zero weights skipped) — the arithmetic of
//     resize_bwd_cpu's two separable passes,
//     so CPU and CUDA gradients are bit-identical and run-to-run stable. The alternative, a scatter
//     from each output pixel with 4 atomicAdds per channel, is NOT deterministic (float addition
//     order depends on scheduling) and is also slower here: for the 8x logits upsample every input
//     pixel receives ~17 x 17 contributions, so the atomics would serialise on a 1.2 MB target.
//     No atomic path is provided (ENGINE_DETERMINISTIC has nothing to switch).
// Roofline (H100 SXM, ~3.35 TB/s; every kernel is memory bound, <= 12 flops per output element):
//   PP-LiteSeg logits [4,64,64,19] -> 512x512 fwd: writes 79.7 MB + reads 1.2 MB => ~24 us.
//   its backward: reads g 79.7 MB (each element by up to 4 threads; the re-reads hit L1/L2) + writes
//     1.2 MB => ~24 us ideal, expected 30-50 us.
//   UAFM [4,16,16,128] -> 32x32: 2.1 MB + 0.5 MB => ~1 us (launch bound, ~3 us);
//   [4,32,32,96] -> 64x64: 6.3 MB + 1.6 MB => ~2.4 us.  YOLOv3 nearest 2x [4,13,13,256]: 2.8 MB => ~1 us.
// Storage (template parameter D: f32, bf16 or f16, mixed precision): loads widen to f32 (V = 4: one
// 16-byte access in f32, 8 bytes in bf16 / f16), blends and sums are f32, stores round once
// (Storage<D>); nearest copies the stored bits. bf16 / f16 halve the bytes above.
// Tested by tests/test_resize.cpp (CPU vs emulated CUDA, bitwise determinism); benchmarked by
// bench_kernels --filter resize.
#include <algorithm>

#include "base/cuda_context.h"
#include "base/error.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/resize_cuda.h"

namespace engine::kernels {
namespace {

constexpr int kBlock = 256;

template <DType D>
using Elem = typename Storage<D>::T;

// Copies V stored elements unchanged (nearest): one 16- (f32) or 8-byte (bf16 / f16) access for V = 4.
template <int V, DType D>
__device__ __forceinline__ void copy_vec(const Elem<D>* src, Elem<D>* dst) {
  if constexpr (V == 1) {
    *dst = __ldg(src);
  } else if constexpr (D == DType::F32) {
    *reinterpret_cast<float4*>(dst) = __ldg(reinterpret_cast<const float4*>(src));
  } else {
    *reinterpret_cast<uint2*>(dst) = __ldg(reinterpret_cast<const uint2*>(src));
  }
}

template <bool kNearest, int V, DType D>
__global__ void __launch_bounds__(kBlock)
    resize_fwd_kernel(ResizeArgs a, const Elem<D>* __restrict__ x, Elem<D>* __restrict__ out) {
  const uint32_t CV = (uint32_t)(a.C / V), Wo = (uint32_t)a.w.out, Ho = (uint32_t)a.h.out;
  const uint32_t per_image = Ho * Wo * CV;  // < 2^31, checked by the launcher
  for (int64_t n = blockIdx.y; n < a.N; n += gridDim.y)
    for (uint32_t j = blockIdx.x * blockDim.x + threadIdx.x; j < per_image; j += gridDim.x * blockDim.x) {
      const int64_t idx = n * per_image + j;
      const uint32_t cv = j % CV, p = j / CV;
      const uint32_t ow = p % Wo, oh = p / Wo;
      float lx, ly;
      const int64_t ih0 = a.h.lo(oh, &ly), iw0 = a.w.lo(ow, &lx);
      const Elem<D>* base = x + n * a.sn + cv * V * a.sc;
      if constexpr (kNearest) {
        copy_vec<V, D>(base + ih0 * a.sh + iw0 * a.sw, out + idx * V);
        continue;
      }
      const int64_t ih1 = a.h.hi(ih0), iw1 = a.w.hi(iw0);
      float q00[V], q01[V], q10[V], q11[V];
      cuda::load_vec_as<V, D>(base + ih0 * a.sh + iw0 * a.sw, q00);
      cuda::load_vec_as<V, D>(base + ih0 * a.sh + iw1 * a.sw, q01);
      cuda::load_vec_as<V, D>(base + ih1 * a.sh + iw0 * a.sw, q10);
      cuda::load_vec_as<V, D>(base + ih1 * a.sh + iw1 * a.sw, q11);
      ENGINE_UNROLL
      for (int v = 0; v < V; ++v) q00[v] = bilinear_blend(q00[v], q01[v], q10[v], q11[v], lx, ly);
      cuda::store_vec_as<V, D>(out + idx * V, q00);
    }
}

// (kBlock, 1): without the minimum-blocks hint ptxas spilled the f16 V = 1 variant; with it nothing
// spills (occupancy is set by the registers either way).
template <int V, DType D>
__global__ void __launch_bounds__(kBlock, 1)
    resize_bwd_kernel(ResizeArgs a, const Elem<D>* __restrict__ g, Elem<D>* __restrict__ gx) {
  const int64_t C = a.C, Wo = a.w.out, Ho = a.h.out;
  const uint32_t CV = (uint32_t)(a.C / V), Wi = (uint32_t)a.w.in, Hi = (uint32_t)a.h.in;
  const uint32_t per_image = Hi * Wi * CV;  // < 2^31, checked by the launcher
  for (int64_t n = blockIdx.y; n < a.N; n += gridDim.y)
    for (uint32_t j = blockIdx.x * blockDim.x + threadIdx.x; j < per_image; j += gridDim.x * blockDim.x) {
      const int64_t idx = n * per_image + j;
      const uint32_t cv = j % CV, p = j / CV;
      const uint32_t iw = p % Wi, ih = p / Wi;
      int64_t hb, he, wb, we;
      a.h.dst_range(ih, &hb, &he);
      a.w.dst_range(iw, &wb, &we);
      float acc[V];
      ENGINE_UNROLL
      for (int v = 0; v < V; ++v) acc[v] = 0.f;
      for (int64_t oh = hb; oh < he; ++oh) {
        const float wh = a.h.weight(oh, ih);
        if (wh == 0.f) continue;
        const Elem<D>* grow = g + (n * Ho + oh) * Wo * C + cv * V;
        float col[V];  // sum over the row's ow range first: the CPU's pass 1, same order
        ENGINE_UNROLL
        for (int v = 0; v < V; ++v) col[v] = 0.f;
        for (int64_t ow = wb; ow < we; ++ow) {
          const float ww = a.w.weight(ow, iw);
          if (ww == 0.f) continue;
          float q[V];
          cuda::load_vec_as<V, D>(grow + ow * C, q);
          ENGINE_UNROLL
          for (int v = 0; v < V; ++v) col[v] = fmaf(ww, q[v], col[v]);
        }
        ENGINE_UNROLL
        for (int v = 0; v < V; ++v) acc[v] = fmaf(wh, col[v], acc[v]);
      }
      cuda::store_vec_as<V, D>(gx + idx * V, acc);
    }
}

}  // namespace

void resize_fwd_cuda(const ResizeArgs& a, DType dt, const void* x, void* out, cudaStream_t s) {
  const int64_t pixels = a.N * a.h.out * a.w.out;
  if (pixels == 0 || a.C == 0) return;
  const bool nearest = a.h.mode == ResizeMode::Nearest;
  with_storage(dt, "resize kernel", [&]<DType D>() {
    const bool vec = a.sc == 1 && a.C % 4 == 0 && a.sn % 4 == 0 && a.sh % 4 == 0 && a.sw % 4 == 0 &&
                     cuda::vec4_aligned<D>(x) && cuda::vec4_aligned<D>(out);
    const int64_t per_image = a.h.out * a.w.out * (vec ? a.C / 4 : a.C);
    ENGINE_CHECK(per_image < (int64_t(1) << 31), "resize: one output image of ", a.h.out, "x", a.w.out, "x", a.C,
                 " elements is too large for the CUDA kernel (2^31 limit)");
    const dim3 grid(cuda::grid_for(per_image, kBlock, 65535), (unsigned)std::min<int64_t>(a.N, 65535));
    const Elem<D>* xp = static_cast<const Elem<D>*>(x);
    Elem<D>* op = static_cast<Elem<D>*>(out);
    if (nearest && vec) {
      GPU_LAUNCH(grid, kBlock, 0, s, resize_fwd_kernel<true, 4, D>)(a, xp, op);
    } else if (nearest) {
      GPU_LAUNCH(grid, kBlock, 0, s, resize_fwd_kernel<true, 1, D>)(a, xp, op);
    } else if (vec) {
      GPU_LAUNCH(grid, kBlock, 0, s, resize_fwd_kernel<false, 4, D>)(a, xp, op);
    } else {
      GPU_LAUNCH(grid, kBlock, 0, s, resize_fwd_kernel<false, 1, D>)(a, xp, op);
    }
    CUDA_CHECK_LAUNCH("resize_fwd_kernel");
  });
}

void resize_bwd_cuda(const ResizeArgs& a, DType dt, const void* g, void* gx, cudaStream_t s) {
  const int64_t pixels = a.N * a.h.in * a.w.in;
  if (pixels == 0 || a.C == 0) return;
  with_storage(dt, "resize kernel", [&]<DType D>() {
    const bool vec = a.C % 4 == 0 && cuda::vec4_aligned<D>(g) && cuda::vec4_aligned<D>(gx);
    const int64_t per_image = a.h.in * a.w.in * (vec ? a.C / 4 : a.C);
    ENGINE_CHECK(per_image < (int64_t(1) << 31), "resize backward: one input image of ", a.h.in, "x", a.w.in, "x", a.C,
                 " elements is too large for the CUDA kernel (2^31 limit)");
    const dim3 grid(cuda::grid_for(per_image, kBlock, 65535), (unsigned)std::min<int64_t>(a.N, 65535));
    const Elem<D>* gp = static_cast<const Elem<D>*>(g);
    Elem<D>* gxp = static_cast<Elem<D>*>(gx);
    if (vec) {
      GPU_LAUNCH(grid, kBlock, 0, s, resize_bwd_kernel<4, D>)(a, gp, gxp);
    } else {
      GPU_LAUNCH(grid, kBlock, 0, s, resize_bwd_kernel<1, D>)(a, gp, gxp);
    }
    CUDA_CHECK_LAUNCH("resize_bwd_kernel");
  });
}

}  // namespace engine::kernels
