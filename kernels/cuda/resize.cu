// Resize family on CUDA: bilinear (half-pixel / align-corners) and nearest, forward and backward,
// NHWC. Math: kernels/resize_math.h (Resize1D, bilinear_blend), shared with the CPU kernels.
//   forward:  out[n,oh,ow,c] = bilinear_blend of the 4 taps of (oh, ow), or the nearest tap.
//   backward: gx[n,ih,iw,c] = sum_{oh in R_h(ih)} w_h(oh,ih) sum_{ow in R_w(iw)} w_w(ow,iw) g[n,oh,ow,c]
// Kernels (256 threads; grid.y strides over image rows, grid.x grid-strides within one row with
// 32-bit index math — 64-bit division is an out-of-line call that made ptxas spill on sm_90 — and
// 64-bit element offsets; one row must have < 2^31 elements, checked by the launchers). Per-row
// quantities (the source rows and vertical weight, the backward's row range) are computed once per
// row; a thread only splits its index into (column, channel group):
//   resize_fwd_kernel<nearest, V>: one thread per (ow, V channels) of an output row; V = 4 (float4
//     loads and stores) when the channel stride is 1, C % 4 == 0 and every pixel address is 16-byte
//     aligned, else V = 1 with any x strides. Neighbouring threads read neighbouring channels.
//   backward: DETERMINISTIC GATHER in two separable passes, the order of resize_bwd_cpu, so CPU and
//     CUDA gradients are bit-identical and run-to-run stable. The output pixels that read input
//     column iw are a contiguous range R_w(iw) (Resize1D::dst_range, binary search on the exact
//     forward formula), likewise R_h(ih) for rows.
//     resize_bwd_columns_kernel: col[n,oh,iw,c] = sum over R_w(iw), ascending, fmaf, zero weights
//       skipped; col is an f32 workspace [N, out_h, in_w, C] (resize_bwd_workspace_cuda).
//     resize_bwd_rows_kernel: gx[n,ih,iw,c] = the same sum over R_h(ih) of col, rounded once.
//     Each thread's chain is one range long (~17 taps for the 8x logits upsample) instead of the
//     product of both (~289 taps, a serial fmaf chain per thread in a one-pass gather), and each
//     g element is read by ~2 threads instead of ~4. The alternative, a scatter from each output
//     pixel with 4 atomicAdds per channel, is NOT deterministic (float addition order depends on
//     scheduling); no atomic path is provided (ENGINE_DETERMINISTIC has nothing to switch).
// Roofline (H100 SXM, ~3.35 TB/s; every kernel is memory bound, <= 12 flops per output element):
//   PP-LiteSeg logits [4,64,64,19] -> 512x512 fwd: writes 79.7 MB + reads 1.2 MB => ~24 us.
//   its backward: reads g 79.7 MB, writes and re-reads the 10 MB column buffer, writes 1.2 MB
//     => ~30 us. (Measured on an H200 with the earlier per-element-index forward and one-pass
//     backward: 165 us and 277 us, docs/GPU.md.)
//   UAFM [4,16,16,128] -> 32x32: 2.1 MB + 0.5 MB => ~1 us (launch bound, ~3 us);
//   [4,32,32,96] -> 64x64: 6.3 MB + 1.6 MB => ~2.4 us.  YOLOv3 nearest 2x [4,13,13,256]: 2.8 MB => ~1 us.
// Storage (template parameter D: f32, bf16 or f16, mixed precision): loads widen to f32 (V = 4: one
// 16-byte access in f32, 8 bytes in bf16 / f16), blends and sums are f32 (the column buffer too),
// stores round once (Storage<D>); nearest copies the stored bits. bf16 / f16 halve the bytes above.
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

// One output row (n, oh) per grid.y index: its source rows and vertical weight are computed once
// per row instead of per element, and a thread only splits its index into (ow, channel group).
template <bool kNearest, int V, DType D>
__global__ void __launch_bounds__(kBlock)
    resize_fwd_kernel(ResizeArgs a, const Elem<D>* __restrict__ x, Elem<D>* __restrict__ out) {
  const uint32_t CV = (uint32_t)(a.C / V);
  const uint32_t per_row = (uint32_t)a.w.out * CV;  // < 2^31, checked by the launcher
  const int64_t rows = a.N * a.h.out;
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    const int64_t n = r / a.h.out, oh = r - n * a.h.out;
    float ly;
    const int64_t ih0 = a.h.lo(oh, &ly), ih1 = a.h.hi(ih0);
    const Elem<D>* row0 = x + n * a.sn + ih0 * a.sh;
    const Elem<D>* row1 = x + n * a.sn + ih1 * a.sh;
    Elem<D>* orow = out + r * a.w.out * a.C;
    for (uint32_t j = blockIdx.x * blockDim.x + threadIdx.x; j < per_row; j += gridDim.x * blockDim.x) {
      const uint32_t ow = j / CV, cv = j - ow * CV;
      float lx;
      const int64_t iw0 = a.w.lo(ow, &lx);
      const int64_t c0 = (int64_t)cv * V * a.sc;
      if constexpr (kNearest) {
        copy_vec<V, D>(row0 + iw0 * a.sw + c0, orow + (int64_t)j * V);
        continue;
      }
      const int64_t iw1 = a.w.hi(iw0);
      float q00[V], q01[V], q10[V], q11[V];
      cuda::load_vec_as<V, D>(row0 + iw0 * a.sw + c0, q00);
      cuda::load_vec_as<V, D>(row0 + iw1 * a.sw + c0, q01);
      cuda::load_vec_as<V, D>(row1 + iw0 * a.sw + c0, q10);
      cuda::load_vec_as<V, D>(row1 + iw1 * a.sw + c0, q11);
      ENGINE_UNROLL
      for (int v = 0; v < V; ++v) q00[v] = bilinear_blend(q00[v], q01[v], q10[v], q11[v], lx, ly);
      cuda::store_vec_as<V, D>(orow + (int64_t)j * V, q00);
    }
  }
}

// Backward pass 1 (columns), one row (n, oh) of g per grid.y index:
//   col[n, oh, iw, c] = sum over ow in R_w(iw), ascending, of w_w(ow, iw) * g[n, oh, ow, c]
// (fmaf from 0, zero weights skipped), kept in f32.
template <int V, DType D>
__global__ void __launch_bounds__(kBlock)
    resize_bwd_columns_kernel(ResizeArgs a, const Elem<D>* __restrict__ g, float* __restrict__ col) {
  const uint32_t CV = (uint32_t)(a.C / V);
  const uint32_t per_row = (uint32_t)a.w.in * CV;  // < 2^31, checked by the launcher
  const int64_t rows = a.N * a.h.out;
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    const Elem<D>* grow = g + r * a.w.out * a.C;
    float* crow = col + r * a.w.in * a.C;
    for (uint32_t j = blockIdx.x * blockDim.x + threadIdx.x; j < per_row; j += gridDim.x * blockDim.x) {
      const uint32_t iw = j / CV, cv = j - iw * CV;
      int64_t wb, we;
      a.w.dst_range(iw, &wb, &we);
      float acc[V];
      ENGINE_UNROLL
      for (int v = 0; v < V; ++v) acc[v] = 0.f;
      for (int64_t ow = wb; ow < we; ++ow) {
        const float ww = a.w.weight(ow, iw);
        if (ww == 0.f) continue;
        float q[V];
        cuda::load_vec_as<V, D>(grow + ow * a.C + (int64_t)cv * V, q);
        ENGINE_UNROLL
        for (int v = 0; v < V; ++v) acc[v] = fmaf(ww, q[v], acc[v]);
      }
      cuda::store_vec_as<V, DType::F32>(crow + (int64_t)j * V, acc);
    }
  }
}

// Backward pass 2 (rows), one row (n, ih) of gx per grid.y index:
//   gx[n, ih, iw, c] = sum over oh in R_h(ih), ascending, of w_h(oh, ih) * col[n, oh, iw, c]
// (fmaf from 0, zero weights skipped), rounded once to gx's type. Pass 1 then pass 2 is the order of
// resize_bwd_cpu, so the bits are the CPU's.
template <int V, DType D>
__global__ void __launch_bounds__(kBlock)
    resize_bwd_rows_kernel(ResizeArgs a, const float* __restrict__ col, Elem<D>* __restrict__ gx) {
  const uint32_t per_row = (uint32_t)(a.w.in * a.C / V);  // < 2^31, checked by the launcher
  const int64_t rows = a.N * a.h.in, col_row = a.w.in * a.C;
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    const int64_t n = r / a.h.in, ih = r - n * a.h.in;
    int64_t hb, he;
    a.h.dst_range(ih, &hb, &he);
    const float* cimg = col + n * a.h.out * col_row;
    for (uint32_t j = blockIdx.x * blockDim.x + threadIdx.x; j < per_row; j += gridDim.x * blockDim.x) {
      float acc[V];
      ENGINE_UNROLL
      for (int v = 0; v < V; ++v) acc[v] = 0.f;
      for (int64_t oh = hb; oh < he; ++oh) {
        const float wh = a.h.weight(oh, ih);
        if (wh == 0.f) continue;
        float q[V];
        cuda::load_vec_as<V, DType::F32>(cimg + oh * col_row + (int64_t)j * V, q);
        ENGINE_UNROLL
        for (int v = 0; v < V; ++v) acc[v] = fmaf(wh, q[v], acc[v]);
      }
      cuda::store_vec_as<V, D>(gx + r * col_row + (int64_t)j * V, acc);
    }
  }
}

// grid.x covers one row of `per_row` threads, grid.y the rows (grid-strided past 65535).
dim3 row_grid(int64_t rows, int64_t per_row) {
  return dim3(cuda::grid_for(per_row, kBlock, 65535), (unsigned)std::min<int64_t>(rows, 65535));
}

}  // namespace

void resize_fwd_cuda(const ResizeArgs& a, DType dt, const void* x, void* out, cudaStream_t s) {
  const int64_t pixels = a.N * a.h.out * a.w.out;
  if (pixels == 0 || a.C == 0) return;
  const bool nearest = a.h.mode == ResizeMode::Nearest;
  with_storage(dt, "resize kernel", [&]<DType D>() {
    const bool vec = a.sc == 1 && a.C % 4 == 0 && a.sn % 4 == 0 && a.sh % 4 == 0 && a.sw % 4 == 0 &&
                     cuda::vec4_aligned<D>(x) && cuda::vec4_aligned<D>(out);
    const int64_t per_row = a.w.out * (vec ? a.C / 4 : a.C);
    ENGINE_CHECK(per_row < (int64_t(1) << 31), "resize: one output row of ", a.w.out, "x", a.C,
                 " elements is too large for the CUDA kernel (2^31 limit)");
    const dim3 grid = row_grid(a.N * a.h.out, per_row);
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

void resize_bwd_cuda(const ResizeArgs& a, DType dt, const void* g, void* gx, float* ws, cudaStream_t s) {
  const int64_t pixels = a.N * a.h.in * a.w.in;
  if (pixels == 0 || a.C == 0) return;
  with_storage(dt, "resize kernel", [&]<DType D>() {
    const bool vec = a.C % 4 == 0 && cuda::vec4_aligned<D>(g) && cuda::vec4_aligned<DType::F32>(ws);
    const int64_t per_row = a.w.in * (vec ? a.C / 4 : a.C);
    ENGINE_CHECK(per_row < (int64_t(1) << 31), "resize backward: one input row of ", a.w.in, "x", a.C,
                 " elements is too large for the CUDA kernel (2^31 limit)");
    const Elem<D>* gp = static_cast<const Elem<D>*>(g);
    const dim3 columns = row_grid(a.N * a.h.out, per_row);
    if (vec) {
      GPU_LAUNCH(columns, kBlock, 0, s, resize_bwd_columns_kernel<4, D>)(a, gp, ws);
    } else {
      GPU_LAUNCH(columns, kBlock, 0, s, resize_bwd_columns_kernel<1, D>)(a, gp, ws);
    }
    CUDA_CHECK_LAUNCH("resize_bwd_columns_kernel");
  });
  resize_bwd_rows_cuda(a, dt, ws, gx, s);
}

void resize_bwd_rows_cuda(const ResizeArgs& a, DType dt, const float* ws, void* gx, cudaStream_t s) {
  const int64_t pixels = a.N * a.h.in * a.w.in;
  if (pixels == 0 || a.C == 0) return;
  with_storage(dt, "resize kernel", [&]<DType D>() {
    const bool vec = a.C % 4 == 0 && cuda::vec4_aligned<D>(gx) && cuda::vec4_aligned<DType::F32>(ws);
    const int64_t per_row = a.w.in * (vec ? a.C / 4 : a.C);
    ENGINE_CHECK(per_row < (int64_t(1) << 31), "resize backward: one input row of ", a.w.in, "x", a.C,
                 " elements is too large for the CUDA kernel (2^31 limit)");
    Elem<D>* gxp = static_cast<Elem<D>*>(gx);
    const dim3 rows = row_grid(a.N * a.h.in, per_row);
    if (vec) {
      GPU_LAUNCH(rows, kBlock, 0, s, resize_bwd_rows_kernel<4, D>)(a, ws, gxp);
    } else {
      GPU_LAUNCH(rows, kBlock, 0, s, resize_bwd_rows_kernel<1, D>)(a, ws, gxp);
    }
    CUDA_CHECK_LAUNCH("resize_bwd_rows_kernel");
  });
}

}  // namespace engine::kernels
