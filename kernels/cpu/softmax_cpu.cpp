// Softmax family on the CPU: softmax / log_softmax forward and backward, argmax.
// Math (over L of a contiguous [outer, L, inner] view; kernels/cpu/softmax_cpu.h holds the shared
// ENGINE_HD exp/log/argmax-order functions):
//   softmax:      y = exp(x - m) / s,          m = max_L x, s = sum_L exp(x - m)
//   log_softmax:  y = (x - m) - log(s)
//   backward:     softmax dx = y * (g - sum_L g*y);  log_softmax dx = g - exp(y) * sum_L g
//   argmax:       first index of the maximum; NaN counts as the maximum (first NaN wins).
// Two loop shapes:
//   inner == 1 (the NHWC channel axis; segmentation logits have L = 2..19): tiles of 16 rows are
//     transposed into a small buffer and processed with the rows in SIMD lanes (L <= 64; longer
//     rows and the last partial tile run one row at a time with `omp simd` loops over L); argmax
//     uses the same row tiles (rows in lanes, strided loads); the backward (memory bound, no exp
//     for softmax) runs row by row. Tiles / rows split statically over the threads.
//   inner > 1 (a middle axis): for a block of up to 512 columns, the reductions run over L with
//     vectorised loops across the contiguous columns.
// Sums are evaluated in an order fixed by the shape and the build, so results are deterministic.
// Tested by tests/test_softmax.cpp; benchmarked by bench_kernels --filter softmax.
#include "kernels/cpu/softmax_cpu.h"

#include <omp.h>

#include <algorithm>
#include <cmath>

namespace engine::kernels {
namespace {

constexpr int64_t kParallelGrain = 1 << 14;  // elements below which one thread is faster
constexpr int64_t kColBlock = 512;

// Calls f(o, i0, i1) for every [o, column block] task, in parallel (static).
template <class F>
void for_each_col_block(int64_t outer, int64_t L, int64_t inner, const F& f) {
  const int64_t blocks = (inner + kColBlock - 1) / kColBlock;
  const int64_t tasks = outer * blocks;
#pragma omp parallel for schedule(static) if (outer * L * inner >= kParallelGrain)
  for (int64_t t = 0; t < tasks; ++t) {
    const int64_t o = t / blocks, b = t % blocks;
    f(o, b * kColBlock, std::min(inner, (b + 1) * kColBlock));
  }
}

// Short rows (L <= kTileMaxL, e.g. 19 classes): vectorising along a row of 19 leaves most lanes
// idle and pays horizontal reductions per row, so a tile of kTile rows is transposed into a
// [L][kTile] buffer and every step runs across the 16 rows in SIMD lanes. Rows beyond the last
// full tile (and longer rows) take the per-row path below.
constexpr int kTile = 16;
constexpr int64_t kTileMaxL = 64;

template <bool log_>
__attribute__((target("prefer-vector-width=512"))) void softmax_tile(const float* xt, float* yt, int64_t L) {
  alignas(64) float buf[kTileMaxL * kTile];
  alignas(64) float m[kTile], s[kTile];
  for (int64_t c = 0; c < L; ++c) {
#pragma omp simd
    for (int j = 0; j < kTile; ++j) buf[c * kTile + j] = xt[j * L + c];
  }
#pragma omp simd
  for (int j = 0; j < kTile; ++j) {
    m[j] = -INFINITY;
    s[j] = 0.f;
  }
  for (int64_t c = 0; c < L; ++c) {
#pragma omp simd
    for (int j = 0; j < kTile; ++j) m[j] = softmax_max_f(m[j], buf[c * kTile + j]);
  }
  for (int64_t c = 0; c < L; ++c) {
#pragma omp simd
    for (int j = 0; j < kTile; ++j) {
      const float d = buf[c * kTile + j] - m[j];
      const float e = softmax_exp_f(d);
      buf[c * kTile + j] = log_ ? d : e;
      s[j] += e;
    }
  }
#pragma omp simd
  for (int j = 0; j < kTile; ++j) s[j] = log_ ? softmax_log_f(s[j]) : 1.f / s[j];
  for (int j = 0; j < kTile; ++j) {
    const float sj = s[j];
    float* yr = yt + j * L;
#pragma omp simd
    for (int64_t c = 0; c < L; ++c) yr[c] = log_ ? buf[c * kTile + j] - sj : buf[c * kTile + j] * sj;
  }
}

void softmax_row(const float* xr, float* yr, int64_t L, bool log_) {
  float m = -INFINITY;
#pragma omp simd reduction(max : m)
  for (int64_t c = 0; c < L; ++c) m = softmax_max_f(m, xr[c]);
  float s = 0.f;
  if (log_) {
#pragma omp simd reduction(+ : s)
    for (int64_t c = 0; c < L; ++c) s += softmax_exp_f(xr[c] - m);
    const float ls = softmax_log_f(s);
#pragma omp simd
    for (int64_t c = 0; c < L; ++c) yr[c] = (xr[c] - m) - ls;
  } else {
#pragma omp simd reduction(+ : s)
    for (int64_t c = 0; c < L; ++c) {
      const float e = softmax_exp_f(xr[c] - m);
      yr[c] = e;
      s += e;
    }
    const float inv = 1.f / s;
#pragma omp simd
    for (int64_t c = 0; c < L; ++c) yr[c] *= inv;
  }
}

void softmax_rows(const float* x, float* y, int64_t rows, int64_t L, bool log_) {
  const int64_t tiles = L <= kTileMaxL ? rows / kTile : 0;
#pragma omp parallel for schedule(static) if (rows * L >= kParallelGrain)
  for (int64_t t = 0; t < tiles; ++t) {
    if (log_)
      softmax_tile<true>(x + t * kTile * L, y + t * kTile * L, L);
    else
      softmax_tile<false>(x + t * kTile * L, y + t * kTile * L, L);
  }
  for (int64_t r = tiles * kTile; r < rows; ++r) softmax_row(x + r * L, y + r * L, L, log_);
}

void softmax_cols(const float* x, float* y, int64_t outer, int64_t L, int64_t inner, bool log_) {
  for_each_col_block(outer, L, inner, [&](int64_t o, int64_t i0, int64_t i1) {
    float m[kColBlock], s[kColBlock];
    const int64_t n = i1 - i0;
    const float* xo = x + o * L * inner + i0;
    float* yo = y + o * L * inner + i0;
    for (int64_t i = 0; i < n; ++i) {
      m[i] = -INFINITY;
      s[i] = 0.f;
    }
    for (int64_t l = 0; l < L; ++l) {
      const float* xl = xo + l * inner;
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) m[i] = softmax_max_f(m[i], xl[i]);
    }
    for (int64_t l = 0; l < L; ++l) {
      const float* xl = xo + l * inner;
      float* yl = yo + l * inner;
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) {
        const float e = softmax_exp_f(xl[i] - m[i]);
        if (!log_) yl[i] = e;
        s[i] += e;
      }
    }
    if (log_) {
      for (int64_t i = 0; i < n; ++i) s[i] = softmax_log_f(s[i]);
      for (int64_t l = 0; l < L; ++l) {
        const float* xl = xo + l * inner;
        float* yl = yo + l * inner;
#pragma omp simd
        for (int64_t i = 0; i < n; ++i) yl[i] = (xl[i] - m[i]) - s[i];
      }
    } else {
      for (int64_t i = 0; i < n; ++i) s[i] = 1.f / s[i];
      for (int64_t l = 0; l < L; ++l) {
        float* yl = yo + l * inner;
#pragma omp simd
        for (int64_t i = 0; i < n; ++i) yl[i] *= s[i];
      }
    }
  });
}

}  // namespace

void softmax_fwd_cpu(const float* x, float* y, int64_t outer, int64_t L, int64_t inner, bool log_) {
  if (inner == 1)
    softmax_rows(x, y, outer, L, log_);
  else
    softmax_cols(x, y, outer, L, inner, log_);
}

void softmax_bwd_cpu(const float* g, const float* y, float* dx, int64_t outer, int64_t L, int64_t inner, bool log_) {
  if (inner == 1) {
#pragma omp parallel for schedule(static) if (outer * L >= kParallelGrain)
    for (int64_t r = 0; r < outer; ++r) {
      const float* gr = g + r * L;
      const float* yr = y + r * L;
      float* dr = dx + r * L;
      float s = 0.f;
      if (log_) {
#pragma omp simd reduction(+ : s)
        for (int64_t c = 0; c < L; ++c) s += gr[c];
#pragma omp simd
        for (int64_t c = 0; c < L; ++c) dr[c] = gr[c] - softmax_exp_f(yr[c]) * s;
      } else {
#pragma omp simd reduction(+ : s)
        for (int64_t c = 0; c < L; ++c) s += gr[c] * yr[c];
#pragma omp simd
        for (int64_t c = 0; c < L; ++c) dr[c] = yr[c] * (gr[c] - s);
      }
    }
    return;
  }
  for_each_col_block(outer, L, inner, [&](int64_t o, int64_t i0, int64_t i1) {
    float s[kColBlock];
    const int64_t n = i1 - i0, base = o * L * inner + i0;
    for (int64_t i = 0; i < n; ++i) s[i] = 0.f;
    for (int64_t l = 0; l < L; ++l) {
      const float* gl = g + base + l * inner;
      const float* yl = y + base + l * inner;
      if (log_) {
#pragma omp simd
        for (int64_t i = 0; i < n; ++i) s[i] += gl[i];
      } else {
#pragma omp simd
        for (int64_t i = 0; i < n; ++i) s[i] += gl[i] * yl[i];
      }
    }
    for (int64_t l = 0; l < L; ++l) {
      const float* gl = g + base + l * inner;
      const float* yl = y + base + l * inner;
      float* dl = dx + base + l * inner;
      if (log_) {
#pragma omp simd
        for (int64_t i = 0; i < n; ++i) dl[i] = gl[i] - softmax_exp_f(yl[i]) * s[i];
      } else {
#pragma omp simd
        for (int64_t i = 0; i < n; ++i) dl[i] = yl[i] * (gl[i] - s[i]);
      }
    }
  });
}

void argmax_cpu(const float* x, int64_t* idx, int64_t outer, int64_t L, int64_t inner) {
  if (inner == 1) {
    // Tiles of kTile rows, the rows in SIMD lanes; c only grows, so "better" is: strictly greater,
    // or the first NaN.
    const int64_t tiles = (outer + kTile - 1) / kTile;
#pragma omp parallel for schedule(static) if (outer * L >= kParallelGrain)
    for (int64_t t = 0; t < tiles; ++t) {
      const int64_t r0 = t * kTile;
      const int nr = (int)std::min<int64_t>(kTile, outer - r0);
      const float* xt = x + r0 * L;
      alignas(64) float bv[kTile];
      alignas(64) int64_t bi[kTile];
      for (int j = 0; j < nr; ++j) {
        bv[j] = xt[j * L];
        bi[j] = 0;
      }
      for (int64_t c = 1; c < L; ++c) {
#pragma omp simd
        for (int j = 0; j < nr; ++j) {
          const float v = xt[j * L + c];
          const bool take = (v > bv[j]) || (v != v && bv[j] == bv[j]);
          bv[j] = take ? v : bv[j];
          bi[j] = take ? c : bi[j];
        }
      }
      for (int j = 0; j < nr; ++j) idx[r0 + j] = bi[j];
    }
    return;
  }
  for_each_col_block(outer, L, inner, [&](int64_t o, int64_t i0, int64_t i1) {
    float bv[kColBlock];
    int64_t bi[kColBlock];
    const int64_t n = i1 - i0;
    const float* xo = x + o * L * inner + i0;
    for (int64_t i = 0; i < n; ++i) {
      bv[i] = xo[i];
      bi[i] = 0;
    }
    for (int64_t l = 1; l < L; ++l) {
      const float* xl = xo + l * inner;
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) {
        // l only grows, so "better" reduces to: strictly greater, or the first NaN.
        const bool take = (xl[i] > bv[i]) || (xl[i] != xl[i] && bv[i] == bv[i]);
        bv[i] = take ? xl[i] : bv[i];
        bi[i] = take ? l : bi[i];
      }
    }
    for (int64_t i = 0; i < n; ++i) idx[o * inner + i0 + i] = bi[i];
  });
}

}  // namespace engine::kernels
