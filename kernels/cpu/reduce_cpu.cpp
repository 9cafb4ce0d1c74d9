// Reduction family on the CPU: sum / mean (scaled sum), max with argmax, and their backward.
// Math:   x is contiguous [outer, reduce, inner], out is [outer, inner]
//           sum:  out[o, i] = scale * sum_r x[o, r, i]          (mean: scale = 1 / reduce)
//           max:  vals[o, i] = max_r x[o, r, i], idx[o, i] = first r attaining it (NaN wins, first NaN)
//           sum backward: dx[o, r, i] = scale * g[o, i];  max backward: dx[o, r, i] = (idx[o, i] == r) * g[o, i]
// Strategy:
//   inner == 1 (rows; e.g. reductions over the last axis, global sums): each row is cut into fixed
//     chunks of kRowChunk elements; a chunk is summed with 4 x 16-lane vector accumulators in blocks of
//     2048 elements whose totals are added in double. Chunk partials are combined in order in double.
//   inner > 1 (columns; e.g. NHWC per-channel statistics = reduce over N*H*W with inner = C): work
//     items are (outer, chunk of rows, tile of <= kTile columns); a tile accumulator lives in L1 and
//     each row adds into it with a vectorised loop; chunk partials are combined in order in double.
//   Work items are fixed by the shape alone (never by the thread count), so results are bit-identical
//   whatever OMP_NUM_THREADS is. OpenMP static schedule over work items.
// Constraints: f32, sizes > 0 (the op layer handles empty tensors); indices are i64.
// Tested by tests/test_reduce.cpp (naive double references, CPU vs emulated CUDA);
// benchmarked by bench_kernels (bench/bench_reduce.cpp: BatchNorm statistics, UAFM channel mean/max,
// a global sum).
#include "kernels/cpu/reduce_cpu.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

// The 64-byte vector helpers below are internal (never cross a library ABI); without AVX-512 GCC
// would warn that passing them by value "changes the ABI".
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

namespace engine::kernels {
namespace {

// GCC/Clang vector extensions: 16 lanes (one AVX-512 register; split by the compiler elsewhere).
typedef float vf16 __attribute__((vector_size(64)));
typedef int32_t vi16 __attribute__((vector_size(64)));

inline vf16 load16(const float* p) {
  vf16 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

constexpr int64_t kRowChunk = 16384;   // elements of a row per work item
constexpr int64_t kBlock = 2048;       // elements summed in float before adding into the double total
constexpr int64_t kTile = 512;         // columns per work item (accumulator of 2 KiB)
constexpr int64_t kColChunk = 16384;   // elements (rows x tile) per column work item
constexpr int64_t kParallelMin = 32768;  // below this many elements the kernels run on one thread

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Fixed-order horizontal sum of 16 lanes (a tree: 8 + 4 + 2 + 1).
inline float hsum(vf16 v) {
  v += __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7);
  v += __builtin_shufflevector(v, v, 4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11);
  v += __builtin_shufflevector(v, v, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13);
  v += __builtin_shufflevector(v, v, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14);
  return v[0];
}

// Sum of n contiguous floats: blocks of <= kBlock elements with 64 float accumulators, block totals in double.
double sum_contig(const float* p, int64_t n) {
  double total = 0;
  int64_t j = 0;
  while (n - j >= 64) {
    const int64_t end = j + std::min<int64_t>((n - j) & ~int64_t(63), kBlock);
    vf16 a0 = {}, a1 = {}, a2 = {}, a3 = {};
    for (; j < end; j += 64) {
      a0 += load16(p + j);
      a1 += load16(p + j + 16);
      a2 += load16(p + j + 32);
      a3 += load16(p + j + 48);
    }
    total += (double)hsum((a0 + a1) + (a2 + a3));
  }
  if (j < n) {
    float t = 0;
    for (; j < n; ++j) t += p[j];
    total += (double)t;
  }
  return total;
}

// Max / first argmax of n contiguous floats (n > 0); the index is relative to p. Two passes: a vector
// max (and NaN detection), then a scan for the first element equal to it (or the first NaN) -- for
// the short rows of channel reductions the second pass runs in L1.
void max_contig(const float* p, int64_t n, float& best_v, int64_t& best_i) {
  float mx = p[0];
  bool nan = mx != mx;
  int64_t j = 0;
  if (n >= 32) {
    vf16 m0 = load16(p), m1 = load16(p + 16);
#if defined(__AVX512F__)
    __mmask16 bad = _mm512_cmp_ps_mask(m0, m0, _CMP_UNORD_Q) | _mm512_cmp_ps_mask(m1, m1, _CMP_UNORD_Q);
#else
    vi16 bad = (m0 != m0) | (m1 != m1);
#endif
    for (j = 32; j + 32 <= n; j += 32) {
      const vf16 x0 = load16(p + j), x1 = load16(p + j + 16);
      m0 = x0 > m0 ? x0 : m0;
      m1 = x1 > m1 ? x1 : m1;
#if defined(__AVX512F__)
      bad |= _mm512_cmp_ps_mask(x0, x0, _CMP_UNORD_Q) | _mm512_cmp_ps_mask(x1, x1, _CMP_UNORD_Q);
#else
      bad |= (x0 != x0) | (x1 != x1);
#endif
    }
    vf16 m = m0 > m1 ? m0 : m1;  // a tree over the lanes (NaN lanes do not matter: then nan is set)
    vf16 t = __builtin_shufflevector(m, m, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7);
    m = t > m ? t : m;
    t = __builtin_shufflevector(m, m, 4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11);
    m = t > m ? t : m;
    t = __builtin_shufflevector(m, m, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13);
    m = t > m ? t : m;
    t = __builtin_shufflevector(m, m, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14);
    m = t > m ? t : m;
    mx = m[0] > mx ? m[0] : mx;
#if defined(__AVX512F__)
    nan = bad != 0;
#else
    for (int l = 0; l < 16; ++l) nan = nan || bad[l] != 0;
#endif
  }
  for (; j < n; ++j) {
    mx = p[j] > mx ? p[j] : mx;
    nan = nan || p[j] != p[j];
  }
  // First position holding the max (or the first NaN). Without NaNs mx is exact, so it is found.
  int64_t k = 0;
#if defined(__AVX512F__)
  const vf16 target = vf16{} + mx;
  for (; k + 16 <= n; k += 16) {
    const vf16 x = load16(p + k);
    const __mmask16 hit = nan ? _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q) : _mm512_cmp_ps_mask(x, target, _CMP_EQ_OQ);
    if (hit) {
      k += __builtin_ctz((unsigned)hit);
      best_v = p[k];
      best_i = k;
      return;
    }
  }
#endif
  if (nan) {
    while (p[k] == p[k]) ++k;
  } else {
    while (p[k] != mx) ++k;
  }
  best_v = p[k];  // the first of equal values (-0 vs +0) decides the sign
  best_i = k;
}

// ---------------------------------------------------------------- sum
void sum_rows(const float* x, float* out, int64_t outer, int64_t reduce, float scale) {
  const int64_t chunks = ceil_div(reduce, kRowChunk);
  const bool par = outer * reduce > kParallelMin;
  if (chunks == 1) {
#pragma omp parallel for schedule(static) if (par)
    for (int64_t o = 0; o < outer; ++o) out[o] = (float)(sum_contig(x + o * reduce, reduce) * (double)scale);
    return;
  }
  std::vector<double> part((size_t)(outer * chunks));
#pragma omp parallel for schedule(static) if (par)
  for (int64_t t = 0; t < outer * chunks; ++t) {
    const int64_t o = t / chunks, c = t % chunks;
    const int64_t b = c * kRowChunk, e = std::min(reduce, b + kRowChunk);
    part[(size_t)t] = sum_contig(x + o * reduce + b, e - b);
  }
  for (int64_t o = 0; o < outer; ++o) {
    double s = 0;
    for (int64_t c = 0; c < chunks; ++c) s += part[(size_t)(o * chunks + c)];
    out[o] = (float)(s * (double)scale);
  }
}

struct ColPlan {
  int64_t tile, tiles, rows, chunks, items;
};
ColPlan col_plan(int64_t outer, int64_t reduce, int64_t inner) {
  ColPlan p;
  p.tile = std::min(inner, kTile);
  p.tiles = ceil_div(inner, p.tile);
  p.rows = std::max<int64_t>(1, kColChunk / p.tile);
  p.chunks = ceil_div(reduce, p.rows);
  p.rows = ceil_div(reduce, p.chunks);  // balance the chunks
  p.items = outer * p.chunks * p.tiles;
  return p;
}

void sum_cols(const float* x, float* out, int64_t outer, int64_t reduce, int64_t inner, float scale) {
  const ColPlan p = col_plan(outer, reduce, inner);
  const bool direct = p.chunks == 1;
  std::vector<float> part(direct ? 0 : (size_t)(outer * p.chunks * inner));
  const bool par = outer * reduce * inner > kParallelMin;
#pragma omp parallel for schedule(static) if (par)
  for (int64_t t = 0; t < p.items; ++t) {
    const int64_t tl = t % p.tiles, q = t / p.tiles, c = q % p.chunks, o = q / p.chunks;
    const int64_t i0 = tl * p.tile, w = std::min(p.tile, inner - i0);
    const int64_t r0 = c * p.rows, r1 = std::min(reduce, r0 + p.rows);
    alignas(64) float acc[kTile];
    const float* base = x + (o * reduce + r0) * inner + i0;
    // Blocks of 64 columns: four register accumulators per block, streaming down the rows.
    const int64_t w64 = w / 64 * 64;
    for (int64_t k0 = 0; k0 < w64; k0 += 64) {
      vf16 a0 = {}, a1 = {}, a2 = {}, a3 = {};
      const float* col = base + k0;
      for (int64_t r = r0; r < r1; ++r, col += inner) {
        a0 += load16(col);
        a1 += load16(col + 16);
        a2 += load16(col + 32);
        a3 += load16(col + 48);
      }
      std::memcpy(acc + k0, &a0, 64);
      std::memcpy(acc + k0 + 16, &a1, 64);
      std::memcpy(acc + k0 + 32, &a2, 64);
      std::memcpy(acc + k0 + 48, &a3, 64);
    }
    if (w64 < w) {  // remaining columns: an accumulator row in L1
      for (int64_t k = w64; k < w; ++k) acc[k] = 0.f;
      for (int64_t r = r0; r < r1; ++r) {
        const float* row = base + (r - r0) * inner;
#pragma omp simd
        for (int64_t k = w64; k < w; ++k) acc[k] += row[k];
      }
    }
    float* dst = direct ? out + o * inner + i0 : part.data() + (o * p.chunks + c) * inner + i0;
    const float s = direct ? scale : 1.f;
#pragma omp simd
    for (int64_t k = 0; k < w; ++k) dst[k] = acc[k] * s;
  }
  if (direct) return;
#pragma omp parallel for schedule(static) if (outer * inner * p.chunks > kParallelMin)
  for (int64_t t = 0; t < outer * inner; ++t) {
    const int64_t o = t / inner, i = t % inner;
    double s = 0;
    for (int64_t c = 0; c < p.chunks; ++c) s += part[(size_t)((o * p.chunks + c) * inner + i)];
    out[t] = (float)(s * (double)scale);
  }
}

// ---------------------------------------------------------------- max
void max_rows(const float* x, float* vals, int64_t* idx, int64_t outer, int64_t reduce) {
  const int64_t chunks = ceil_div(reduce, kRowChunk);
  const bool par = outer * reduce > kParallelMin;
  if (chunks == 1) {
#pragma omp parallel for schedule(static) if (par)
    for (int64_t o = 0; o < outer; ++o) max_contig(x + o * reduce, reduce, vals[o], idx[o]);
    return;
  }
  std::vector<float> pv((size_t)(outer * chunks));
  std::vector<int64_t> pi((size_t)(outer * chunks));
#pragma omp parallel for schedule(static) if (par)
  for (int64_t t = 0; t < outer * chunks; ++t) {
    const int64_t o = t / chunks, c = t % chunks;
    const int64_t b = c * kRowChunk, e = std::min(reduce, b + kRowChunk);
    max_contig(x + o * reduce + b, e - b, pv[(size_t)t], pi[(size_t)t]);
    pi[(size_t)t] += b;
  }
  for (int64_t o = 0; o < outer; ++o) {
    float bv = pv[(size_t)(o * chunks)];
    int64_t bi = pi[(size_t)(o * chunks)];
    for (int64_t c = 1; c < chunks; ++c) {
      const size_t k = (size_t)(o * chunks + c);
      if (reduce_max_better(bv, bi, pv[k], pi[k])) {
        bv = pv[k];
        bi = pi[k];
      }
    }
    vals[o] = bv;
    idx[o] = bi;
  }
}

void max_cols(const float* x, float* vals, int64_t* idx, int64_t outer, int64_t reduce, int64_t inner) {
  const ColPlan p = col_plan(outer, reduce, inner);
  const bool direct = p.chunks == 1;
  std::vector<float> pv(direct ? 0 : (size_t)(outer * p.chunks * inner));
  std::vector<int64_t> pi(pv.size());
  const bool par = outer * reduce * inner > kParallelMin;
#pragma omp parallel for schedule(static) if (par)
  for (int64_t t = 0; t < p.items; ++t) {
    const int64_t tl = t % p.tiles, q = t / p.tiles, c = q % p.chunks, o = q / p.chunks;
    const int64_t i0 = tl * p.tile, w = std::min(p.tile, inner - i0);
    const int64_t r0 = c * p.rows, r1 = std::min(reduce, r0 + p.rows);
    // Vector part: 16 columns per register, indices relative to r0 in int32 lanes.
    constexpr int64_t kV = kTile / 16;
    vf16 m[kV];
    vi16 id[kV];
    const int64_t wv = w / 16;
    const float* first = x + (o * reduce + r0) * inner + i0;
    for (int64_t kb = 0; kb < wv; ++kb) {
      m[kb] = load16(first + 16 * kb);
      id[kb] = vi16{};
    }
    for (int64_t r = r0 + 1; r < r1; ++r) {
      const float* row = x + (o * reduce + r) * inner + i0;
      const vi16 rr = vi16{} + (int32_t)(r - r0);
      for (int64_t kb = 0; kb < wv; ++kb) {
        const vf16 v = load16(row + 16 * kb);
        const vi16 take = (v > m[kb]) | ((v != v) & (m[kb] == m[kb]));
        m[kb] = take ? v : m[kb];
        id[kb] = take ? rr : id[kb];
      }
    }
    const int64_t base = direct ? o * inner + i0 : (o * p.chunks + c) * inner + i0;
    float* dv = direct ? vals + base : pv.data() + base;
    int64_t* di = direct ? idx + base : pi.data() + base;
    for (int64_t kb = 0; kb < wv; ++kb)
      for (int l = 0; l < 16; ++l) {
        dv[16 * kb + l] = m[kb][l];
        di[16 * kb + l] = r0 + id[kb][l];
      }
    // Scalar tail columns.
    for (int64_t k = 16 * wv; k < w; ++k) {
      float bv = first[k];
      int64_t bi = r0;
      for (int64_t r = r0 + 1; r < r1; ++r) {
        const float v = x[(o * reduce + r) * inner + i0 + k];
        if (reduce_max_better(bv, bi, v, r)) {
          bv = v;
          bi = r;
        }
      }
      dv[k] = bv;
      di[k] = bi;
    }
  }
  if (direct) return;
#pragma omp parallel for schedule(static) if (outer * inner * p.chunks > kParallelMin)
  for (int64_t t = 0; t < outer * inner; ++t) {
    const int64_t o = t / inner, i = t % inner;
    size_t k = (size_t)(o * p.chunks * inner + i);
    float bv = pv[k];
    int64_t bi = pi[k];
    for (int64_t c = 1; c < p.chunks; ++c) {
      k = (size_t)((o * p.chunks + c) * inner + i);
      if (reduce_max_better(bv, bi, pv[k], pi[k])) {
        bv = pv[k];
        bi = pi[k];
      }
    }
    vals[t] = bv;
    idx[t] = bi;
  }
}

// Backward kernels walk dx in fixed blocks of kBwdBlock elements, tracking (o, r, i) incrementally.
constexpr int64_t kBwdBlock = 16384;

}  // namespace

void reduce_sum_fwd_cpu(const float* x, float* out, int64_t outer, int64_t reduce, int64_t inner, float scale) {
  if (outer <= 0 || reduce <= 0 || inner <= 0) return;
  if (inner == 1) {
    sum_rows(x, out, outer, reduce, scale);
  } else {
    sum_cols(x, out, outer, reduce, inner, scale);
  }
}

void reduce_max_fwd_cpu(const float* x, float* vals, int64_t* idx, int64_t outer, int64_t reduce, int64_t inner) {
  if (outer <= 0 || reduce <= 0 || inner <= 0) return;
  if (inner == 1) {
    max_rows(x, vals, idx, outer, reduce);
  } else {
    max_cols(x, vals, idx, outer, reduce, inner);
  }
}

void reduce_sum_bwd_cpu(const float* g, float* dx, int64_t outer, int64_t reduce, int64_t inner, float scale) {
  const int64_t n = outer * reduce * inner;
  if (n <= 0) return;
  const int64_t blocks = ceil_div(n, kBwdBlock);
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t b = 0; b < blocks; ++b) {
    int64_t e = b * kBwdBlock;
    const int64_t e1 = std::min(n, e + kBwdBlock);
    int64_t i = e % inner, q = e / inner;
    int64_t r = q % reduce, o = q / reduce;
    while (e < e1) {
      if (inner == 1) {  // a run of one output value over r
        const int64_t len = std::min(reduce - r, e1 - e);
        const float v = g[o] * scale;
        float* d = dx + e;
#pragma omp simd
        for (int64_t k = 0; k < len; ++k) d[k] = v;
        e += len;
        r = 0;
        ++o;
      } else {  // a (partial) row of inner values
        const int64_t len = std::min(inner - i, e1 - e);
        const float* gs = g + o * inner + i;
        float* d = dx + e;
#pragma omp simd
        for (int64_t k = 0; k < len; ++k) d[k] = gs[k] * scale;
        e += len;
        i = 0;
        if (++r == reduce) {
          r = 0;
          ++o;
        }
      }
    }
  }
}

void reduce_max_bwd_cpu(const float* g, const int64_t* idx, float* dx, int64_t outer, int64_t reduce,
                        int64_t inner) {
  const int64_t n = outer * reduce * inner;
  if (n <= 0) return;
  const int64_t blocks = ceil_div(n, kBwdBlock);
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t b = 0; b < blocks; ++b) {
    int64_t e = b * kBwdBlock;
    const int64_t e1 = std::min(n, e + kBwdBlock);
    int64_t i = e % inner, q = e / inner;
    int64_t r = q % reduce, o = q / reduce;
    while (e < e1) {
      if (inner == 1) {
        const int64_t len = std::min(reduce - r, e1 - e);
        const int64_t want = idx[o];
        const float v = g[o];
        float* d = dx + e;
#pragma omp simd
        for (int64_t k = 0; k < len; ++k) d[k] = (r + k == want) ? v : 0.f;
        e += len;
        r = 0;
        ++o;
      } else {
        const int64_t len = std::min(inner - i, e1 - e);
        const float* gs = g + o * inner + i;
        const int64_t* is = idx + o * inner + i;
        float* d = dx + e;
#pragma omp simd
        for (int64_t k = 0; k < len; ++k) d[k] = (is[k] == r) ? gs[k] : 0.f;
        e += len;
        i = 0;
        if (++r == reduce) {
          r = 0;
          ++o;
        }
      }
    }
  }
}

}  // namespace engine::kernels
