// Softmax family on the CPU: softmax / log_softmax forward and backward, argmax.
// Math (over L of a contiguous [outer, L, inner] view; kernels/cpu/softmax_cpu.h holds the shared
// ENGINE_HD exp/log/argmax-order functions):
//   softmax:      y = exp(x - m) / s,          m = max_L x, s = sum_L exp(x - m)
//   log_softmax:  y = (x - m) - log(s)
//   backward:     softmax dx = y * (g - sum_L g*y);  log_softmax dx = g - exp(y) * sum_L g
//   argmax:       first index of the maximum; NaN counts as the maximum (first NaN wins).
// exp is the shared polynomial (exp_fast_f in the forward loops: the bits of exp_f for x - m <= 0),
// log the shared log_f; both branch-free so every loop vectorises.
// Two loop shapes:
//   inner == 1 (the NHWC channel axis; segmentation logits have L = 2..19): row tiles of 16 rows
//     (kernels/cpu/row_tile_cpu.h): max and sum with the rows in SIMD lanes (one gather per value
//     of the row, the next tile prefetched), outputs computed and stored contiguously with the
//     per-row max and 1/s (or log s) permuted into place. L <= 64; longer rows run one row at a
//     time with `omp simd` loops over L. Rows past the last full tile run the tile code on a padded
//     copy. argmax uses the same tiles (any L), the backward (memory bound, no exp for softmax) runs
//     row by row. Tiles / rows split statically over the threads.
//   inner > 1 (a middle axis): for a block of up to 512 columns, the reductions run over L with
//     vectorised loops across the contiguous columns.
// Sums are evaluated in an order fixed by the shape and the build, so results are deterministic.
// Tested by tests/test_softmax.cpp; benchmarked by bench_kernels --filter softmax.
#include "kernels/cpu/softmax_cpu.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/cpu/row_tile_cpu.h"

// 512-bit vectors for the lane loops (g++ -march=native defaults to 256 on AVX-512 parts).
#if defined(__AVX512F__) && !defined(__clang__)
#pragma GCC target("prefer-vector-width=512")
#endif
// The row-tile vector helpers (64-byte GCC vectors) are inline and never cross a library ABI;
// without AVX-512 GCC would warn that returning them "changes the ABI".
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

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

// Short rows (L <= kSoftmaxTileMaxL, e.g. 19 classes): tiles of 16 rows, reductions with the rows
// in SIMD lanes, outputs written contiguously (kernels/cpu/row_tile_cpu.h). Longer rows vectorise
// well along the row and take the per-row path below.
using row_tile::kRows;
constexpr int64_t kSoftmaxTileMaxL = 64;

template <bool log_>
void softmax_tile(const float* x, float* y, const row_tile::Index& ix) {
  const int L = ix.L;
  alignas(64) float t[kSoftmaxTileMaxL * kRows];
  alignas(64) float m[kRows], a[kRows];
  row_tile::to_lanes(x, ix, t);
  row_tile::vf16 mv = row_tile::load(t);
  for (int c = 1; c < L; ++c) {
    const row_tile::vf16 v = row_tile::load(t + c * kRows);
    mv = v > mv ? v : mv;  // softmax_max_f: a NaN is skipped here and poisons the sum below
  }
  row_tile::store(m, mv);
  for (int c = 0; c < L; ++c) {
#pragma omp simd
    for (int j = 0; j < kRows; ++j) t[c * kRows + j] = exp_fast_f(t[c * kRows + j] - m[j]);
  }
  row_tile::vf16 sv = row_tile::load(t);  // summed in c order, like the per-row path
  for (int c = 1; c < L; ++c) sv += row_tile::load(t + c * kRows);
  row_tile::store(a, sv);
#pragma omp simd
  for (int j = 0; j < kRows; ++j) a[j] = log_ ? softmax_log_f(a[j]) : 1.f / a[j];
  // Flat view. Recomputing the exp here measured no slower than storing it in the lanes view and
  // gathering that back into row order.
  for (int q = 0; q < L; ++q) {
    alignas(64) float mq[kRows], aq[kRows];
    row_tile::spread(m, ix.pix.data() + q * kRows, mq);
    row_tile::spread(a, ix.pix.data() + q * kRows, aq);
    const float* xq = x + q * kRows;
    float* yq = y + q * kRows;
#pragma omp simd
    for (int i = 0; i < kRows; ++i) {
      const float d = xq[i] - mq[i];
      yq[i] = log_ ? d - aq[i] : exp_fast_f(d) * aq[i];
    }
  }
}

void softmax_row(const float* xr, float* yr, int64_t L, bool log_) {
  float m = -INFINITY;
#pragma omp simd reduction(max : m)
  for (int64_t c = 0; c < L; ++c) m = softmax_max_f(m, xr[c]);
  float s = 0.f;
  if (log_) {
#pragma omp simd reduction(+ : s)
    for (int64_t c = 0; c < L; ++c) s += exp_fast_f(xr[c] - m);
    const float ls = softmax_log_f(s);
#pragma omp simd
    for (int64_t c = 0; c < L; ++c) yr[c] = (xr[c] - m) - ls;
  } else {
#pragma omp simd reduction(+ : s)
    for (int64_t c = 0; c < L; ++c) {
      const float e = exp_fast_f(xr[c] - m);
      yr[c] = e;
      s += e;
    }
    const float inv = 1.f / s;
#pragma omp simd
    for (int64_t c = 0; c < L; ++c) yr[c] *= inv;
  }
}

template <bool log_>
void softmax_rows_tiled(const float* x, float* y, int64_t rows, int L) {
  const row_tile::Index ix(L);
  const int64_t tiles = rows / kRows, tile_elems = (int64_t)kRows * L;
#pragma omp parallel for schedule(static) if (rows * L >= kParallelGrain)
  for (int64_t t = 0; t < tiles; ++t) {
    const float* xt = x + t * tile_elems;
    row_tile::prefetch_next(xt, L);
    softmax_tile<log_>(xt, y + t * tile_elems, ix);
  }
  const int rest = (int)(rows - tiles * kRows);
  if (rest > 0) {
    alignas(64) float xin[kSoftmaxTileMaxL * kRows], yout[kSoftmaxTileMaxL * kRows];
    row_tile::pad_rows(x + tiles * tile_elems, rest, L, 0.f, xin);
    softmax_tile<log_>(xin, yout, ix);
    std::memcpy(y + tiles * tile_elems, yout, sizeof(float) * (size_t)(rest * L));
  }
}

void softmax_rows(const float* x, float* y, int64_t rows, int64_t L, bool log_) {
  if (L <= kSoftmaxTileMaxL) {
    if (log_)
      softmax_rows_tiled<true>(x, y, rows, (int)L);
    else
      softmax_rows_tiled<false>(x, y, rows, (int)L);
    return;
  }
#pragma omp parallel for schedule(static) if (rows * L >= kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) softmax_row(x + r * L, y + r * L, L, log_);
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
        const float e = exp_fast_f(xl[i] - m[i]);
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

namespace {

// Argmax of 16 rows at xt (rows in SIMD lanes, one gather per c). c only grows, so "better" is:
// strictly greater, or the first NaN.
void argmax_tile(const float* xt, int64_t L, int64_t* out) {
  alignas(64) int32_t off[kRows];
  for (int j = 0; j < kRows; ++j) off[j] = (int32_t)(j * L);
  if (L <= kSoftmaxTileMaxL) row_tile::prefetch_next(xt, (int)L);
  alignas(64) float v[kRows];
#pragma omp simd
  for (int j = 0; j < kRows; ++j) v[j] = xt[off[j]];
  row_tile::vf16 bv = row_tile::load(v);
  row_tile::vi16 bi = {};
  for (int64_t c = 1; c < L; ++c) {
#pragma omp simd
    for (int j = 0; j < kRows; ++j) v[j] = xt[off[j] + c];
    const row_tile::vf16 vv = row_tile::load(v);
    const row_tile::vi16 take = (vv > bv) | ((vv != vv) & (bv == bv));
    bv = take ? vv : bv;
    bi = take ? row_tile::vi16{} + (int32_t)c : bi;
  }
  alignas(64) int32_t b[kRows];
  row_tile::store(b, bi);
#pragma omp simd
  for (int j = 0; j < kRows; ++j) out[j] = b[j];
}

int64_t argmax_row(const float* xr, int64_t L) {
  float bv = xr[0];
  int64_t bi = 0;
  for (int64_t c = 1; c < L; ++c) {
    const float v = xr[c];
    if ((v > bv) || (v != v && bv == bv)) {
      bv = v;
      bi = c;
    }
  }
  return bi;
}

}  // namespace

void argmax_cpu(const float* x, int64_t* idx, int64_t outer, int64_t L, int64_t inner) {
  if (inner == 1 && L * kRows < ((int64_t)1 << 31)) {  // 32-bit gather offsets
    const int64_t tiles = outer / kRows;
#pragma omp parallel for schedule(static) if (outer * L >= kParallelGrain)
    for (int64_t t = 0; t < tiles; ++t) argmax_tile(x + t * kRows * L, L, idx + t * kRows);
    for (int64_t r = tiles * kRows; r < outer; ++r) idx[r] = argmax_row(x + r * L, L);
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
