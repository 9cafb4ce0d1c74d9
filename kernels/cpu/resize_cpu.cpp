// Resize family on the CPU: bilinear (half-pixel or align-corners) and nearest, forward and backward,
// NHWC.
// Math: kernels/resize_math.h (Resize1D: the source-index formula, shared with kernels/cuda/resize.cu).
//   forward:  out[n,oh,ow,c] = blend of x[n, i0/i1(oh), i0/i1(ow), c] (bilinear) or
//             x[n, src(oh), src(ow), c] (nearest).
//   backward: gx[n,ih,iw,c] = sum_{oh in R_h(ih)} w_h(oh,ih) * [sum_{ow in R_w(iw)} w_w(ow,iw) * g[n,oh,ow,c]]
//             where R(i) is the contiguous range of output indices that read input i. This is a
//             gather in two separable passes (columns into a [N, out_h, in_w, C] buffer, then rows):
//             every element is owned by one thread and summed in a fixed order (ow, then oh,
//             ascending; fmaf; zero weights skipped), the same arithmetic as the one-pass CUDA
//             kernel, so results are deterministic and bit-identical across devices. g is read once.
// Layout: x [N, H, W, C] with any strides (vectorised inner loop when the channel stride is 1);
// out, g and gx contiguous. Work is split statically over (n, output row) in the forward and over
// (n, input row) in the backward; the inner loops run over C contiguous channels.
// Per-axis tables (source taps for the forward, CSR lists of (dst, weight) for the backward) are
// built once per call, O(out_h + out_w).
// Tested by tests/test_resize.cpp; benchmarked by bench_kernels --filter resize.
#include "kernels/cpu/resize_cpu.h"

#include <omp.h>

#include <cstring>
#include <vector>

namespace engine::kernels {
namespace {

constexpr int64_t kParallelGrain = 1 << 14;  // output elements below which one thread is faster

struct Taps {
  std::vector<int64_t> i0, i1;
  std::vector<float> l;
  explicit Taps(const Resize1D& r) : i0((size_t)r.out), i1((size_t)r.out), l((size_t)r.out) {
    for (int64_t o = 0; o < r.out; ++o) {
      float lw;
      i0[(size_t)o] = r.lo(o, &lw);
      i1[(size_t)o] = r.hi(i0[(size_t)o]);
      l[(size_t)o] = lw;
    }
  }
};

// For each input index i: the (dst, weight) pairs of the outputs that read it, ascending dst.
struct Csr {
  std::vector<int64_t> start, dst;
  std::vector<float> w;
  explicit Csr(const Resize1D& r) : start((size_t)r.in + 1) {
    for (int64_t i = 0; i < r.in; ++i) {
      int64_t b, e;
      r.dst_range(i, &b, &e);
      start[(size_t)i] = (int64_t)dst.size();
      for (int64_t o = b; o < e; ++o) {
        const float wt = r.weight(o, i);
        if (wt == 0.f) continue;  // an exact tap (l == 0) adds nothing (the CUDA kernel skips it too)
        dst.push_back(o);
        w.push_back(wt);
      }
    }
    start[(size_t)r.in] = (int64_t)dst.size();
  }
};

}  // namespace

void resize_fwd_cpu(const ResizeArgs& a, const float* x, float* out) {
  const int64_t Ho = a.h.out, Wo = a.w.out, C = a.C;
  const Taps th(a.h), tw(a.w);
  const bool nearest = a.h.mode == ResizeMode::Nearest;
  const int64_t rows = a.N * Ho;
#pragma omp parallel for schedule(static) if (rows * Wo * C >= kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t n = r / Ho, oh = r % Ho;
    const float ly = th.l[(size_t)oh];
    const float* row0 = x + n * a.sn + th.i0[(size_t)oh] * a.sh;
    const float* row1 = x + n * a.sn + th.i1[(size_t)oh] * a.sh;
    float* po = out + r * Wo * C;
    for (int64_t ow = 0; ow < Wo; ++ow, po += C) {
      const float* p00 = row0 + tw.i0[(size_t)ow] * a.sw;
      if (nearest) {
        if (a.sc == 1) {
          std::memcpy(po, p00, (size_t)C * sizeof(float));
        } else {
          for (int64_t c = 0; c < C; ++c) po[c] = p00[c * a.sc];
        }
        continue;
      }
      const float* p01 = row0 + tw.i1[(size_t)ow] * a.sw;
      const float* p10 = row1 + tw.i0[(size_t)ow] * a.sw;
      const float* p11 = row1 + tw.i1[(size_t)ow] * a.sw;
      const float lx = tw.l[(size_t)ow];
      if (a.sc == 1) {
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) po[c] = bilinear_blend(p00[c], p01[c], p10[c], p11[c], lx, ly);
      } else {
        const int64_t s = a.sc;
        for (int64_t c = 0; c < C; ++c) po[c] = bilinear_blend(p00[c * s], p01[c * s], p10[c * s], p11[c * s], lx, ly);
      }
    }
  }
}

void resize_bwd_cpu(const ResizeArgs& a, const float* g, float* gx) {
  const int64_t Hi = a.h.in, Wi = a.w.in, Wo = a.w.out, Ho = a.h.out, C = a.C;
  const Csr ch(a.h), cw(a.w);
  // Pass 1 (columns): t[n, oh, iw, c] = sum_{ow in R_w(iw)} w_w(ow, iw) * g[n, oh, ow, c].
  std::vector<float> t((size_t)(a.N * Ho * Wi * C));
  const int64_t grows = a.N * Ho;
#pragma omp parallel for schedule(static) if (a.N * Ho * Wo * C >= kParallelGrain)
  for (int64_t r = 0; r < grows; ++r) {
    const float* grow = g + r * Wo * C;
    float* trow = t.data() + r * Wi * C;
    for (int64_t iw = 0; iw < Wi; ++iw) {
      float* pt = trow + iw * C;
      for (int64_t c = 0; c < C; ++c) pt[c] = 0.f;
      for (int64_t jw = cw.start[(size_t)iw]; jw < cw.start[(size_t)iw + 1]; ++jw) {
        const float ww = cw.w[(size_t)jw];
        const float* pg = grow + cw.dst[(size_t)jw] * C;
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) pt[c] = fmaf(ww, pg[c], pt[c]);
      }
    }
  }
  // Pass 2 (rows): gx[n, ih, iw, c] = sum_{oh in R_h(ih)} w_h(oh, ih) * t[n, oh, iw, c].
  const int64_t rows = a.N * Hi;
#pragma omp parallel for schedule(static) if (a.N * Ho * Wi * C >= kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t n = r / Hi, ih = r % Hi;
    float* acc = gx + r * Wi * C;
    std::memset(acc, 0, (size_t)(Wi * C) * sizeof(float));
    for (int64_t jh = ch.start[(size_t)ih]; jh < ch.start[(size_t)ih + 1]; ++jh) {
      const float wh = ch.w[(size_t)jh];
      const float* trow = t.data() + (n * Ho + ch.dst[(size_t)jh]) * Wi * C;
#pragma omp simd
      for (int64_t k = 0; k < Wi * C; ++k) acc[k] = fmaf(wh, trow[k], acc[k]);
    }
  }
}

}  // namespace engine::kernels
