// Pooling family on the CPU: average (exclusive / inclusive / adaptive, incl. global) and max pooling,
// forward and backward, on contiguous NHWC tensors.
// Math (window math shared with CUDA: Pool2dGeom in kernels/cpu/pool_cpu.h):
//   avg:  y[n,oh,ow,c] = scale(oh,ow) * sum_{(h,w) in window(oh,ow)} x[n,h,w,c]
//   max:  y = max over the window (ties: first in row-major order; NaN wins), idx = h*W + w
//   backward (gather form, one writer per dx element, deterministic):
//     avg: dx[n,h,w,c] = sum_{(oh,ow) covering (h,w)} scale(oh,ow) * gy[n,oh,ow,c]
//     max: dx[n,h,w,c] = sum_{(oh,ow) covering (h,w), idx[n,oh,ow,c] == h*W+w} gy[n,oh,ow,c]
// Strategy: OpenMP static over output rows (n, oh) (forward) or input rows (n, h) (backward); the
// inner loops run over the C contiguous channels of one pixel and vectorise. Sums are accumulated in
// the window's row-major order, the same order as the CUDA kernels.
// Memory traffic per element: avg/max forward read x once (window overlap is served from cache) and
// write y (+ idx for max); backward reads gy (+ idx) and writes dx.
// Tested by tests/test_pool.cpp; benchmarked by bench_kernels --filter pool.
#include "kernels/cpu/pool_cpu.h"

#include <omp.h>

#include <algorithm>

namespace engine::kernels {
namespace {

constexpr int64_t kParallelMin = 1 << 14;  // below this many output elements: one thread

bool parallel_ok(int64_t elems) { return elems >= kParallelMin && omp_get_max_threads() > 1; }

}  // namespace

void avg_pool2d_fwd_cpu(const float* x, float* y, const Pool2dGeom& g) {
  const int64_t C = g.c, rows = (int64_t)g.n * g.oh;
#pragma omp parallel for schedule(static) if (parallel_ok(rows * g.ow * C))
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t n = r / g.oh;
    const int oh = (int)(r % g.oh);
    int hb, he;
    g.window_h(oh, hb, he);
    for (int ow = 0; ow < g.ow; ++ow) {
      int wb, we;
      g.window_w(ow, wb, we);
      float* o = y + g.offset(n, oh, ow, g.oh, g.ow);
      std::fill(o, o + C, 0.f);
      for (int h = hb; h < he; ++h)
        for (int w = wb; w < we; ++w) {
          const float* xp = x + g.offset(n, h, w, g.h, g.w);
#pragma omp simd
          for (int64_t c = 0; c < C; ++c) o[c] += xp[c];
        }
      const float s = g.avg_scale(hb, he, wb, we);
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) o[c] *= s;
    }
  }
}

void avg_pool2d_bwd_cpu(const float* gy, float* gx, const Pool2dGeom& g) {
  const int64_t C = g.c, rows = (int64_t)g.n * g.h;
#pragma omp parallel for schedule(static) if (parallel_ok(rows * g.w * C))
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t n = r / g.h;
    const int h = (int)(r % g.h);
    int ohl, ohh;
    g.covering_h(h, ohl, ohh);
    for (int w = 0; w < g.w; ++w) {
      int owl, owh;
      g.covering_w(w, owl, owh);
      float* o = gx + g.offset(n, h, w, g.h, g.w);
      std::fill(o, o + C, 0.f);
      for (int oh = ohl; oh <= ohh; ++oh) {
        int hb, he;
        g.window_h(oh, hb, he);
        for (int ow = owl; ow <= owh; ++ow) {
          int wb, we;
          g.window_w(ow, wb, we);
          const float s = g.avg_scale(hb, he, wb, we);
          const float* gp = gy + g.offset(n, oh, ow, g.oh, g.ow);
#pragma omp simd
          for (int64_t c = 0; c < C; ++c) o[c] += gp[c] * s;
        }
      }
    }
  }
}

void max_pool2d_fwd_cpu(const float* x, float* y, int32_t* idx, const Pool2dGeom& g) {
  const int64_t C = g.c, rows = (int64_t)g.n * g.oh;
#pragma omp parallel for schedule(static) if (parallel_ok(rows * g.ow * C))
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t n = r / g.oh;
    const int oh = (int)(r % g.oh);
    int hb, he;
    g.window_h(oh, hb, he);
    for (int ow = 0; ow < g.ow; ++ow) {
      int wb, we;
      g.window_w(ow, wb, we);
      const int64_t off = g.offset(n, oh, ow, g.oh, g.ow);
      float* o = y + off;
      int32_t* io = idx + off;
      {
        const float* xp = x + g.offset(n, hb, wb, g.h, g.w);
        const int32_t pos = hb * g.w + wb;
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) {
          o[c] = xp[c];
          io[c] = pos;
        }
      }
      for (int h = hb; h < he; ++h)
        for (int w = (h == hb ? wb + 1 : wb); w < we; ++w) {
          const float* xp = x + g.offset(n, h, w, g.h, g.w);
          const int32_t pos = h * g.w + w;
#pragma omp simd
          for (int64_t c = 0; c < C; ++c) {
            const bool b = pool_max_better(xp[c], o[c]);
            o[c] = b ? xp[c] : o[c];
            io[c] = b ? pos : io[c];
          }
        }
    }
  }
}

void max_pool2d_bwd_cpu(const float* gy, const int32_t* idx, float* gx, const Pool2dGeom& g) {
  const int64_t C = g.c, rows = (int64_t)g.n * g.h;
#pragma omp parallel for schedule(static) if (parallel_ok(rows * g.w * C))
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t n = r / g.h;
    const int h = (int)(r % g.h);
    int ohl, ohh;
    g.covering_h(h, ohl, ohh);
    for (int w = 0; w < g.w; ++w) {
      int owl, owh;
      g.covering_w(w, owl, owh);
      float* o = gx + g.offset(n, h, w, g.h, g.w);
      const int32_t pos = h * g.w + w;
      std::fill(o, o + C, 0.f);
      for (int oh = ohl; oh <= ohh; ++oh)
        for (int ow = owl; ow <= owh; ++ow) {
          const int64_t off = g.offset(n, oh, ow, g.oh, g.ow);
          const float* gp = gy + off;
          const int32_t* ip = idx + off;
#pragma omp simd
          for (int64_t c = 0; c < C; ++c) o[c] += ip[c] == pos ? gp[c] : 0.f;
        }
    }
  }
}

}  // namespace engine::kernels
