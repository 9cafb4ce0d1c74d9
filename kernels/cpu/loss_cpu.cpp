// Loss family on the CPU: softmax cross entropy over the last axis of NHWC logits (CE and OHEM share
// the kernels), OHEM selection, and the mean pointwise losses (BCE with logits, BCE, L1).
// Math (kernels/loss_math.h, shared with kernels/cuda/loss.cu):
//   lse_p = max_c x[p,c] + log sum_c exp(x[p,c] - max);  nll_p = lse_p - x[p, y_p]
//   CE forward sums  S1 = sum_valid w[y] nll,  S2 = sum_valid w[y]  (the op divides)
//   CE backward      gx[p,c] = coef_p (exp(x[p,c] - lse_p) - [c == y_p])
//   OHEM             p_gt = exp(x_y - max) / sum (f32, as PaddleSeg's softmax-then-pick)
// Layout: logits contiguous [P, C] (P = N*H*W, C = classes, channels last), labels i64 [P].
// Strategy: row tiles of 16 pixels (kernels/cpu/row_tile_cpu.h). Forward: one 16-lane gather per
// class (the next tile prefetched; C == 2: two loads and a deinterleave) feeds the max and the
// exp-sum with the pixels in SIMD lanes; per-lane accumulators, no horizontal work per tile.
// Backward: the tile's 16 C contiguous gradients computed in place (flat view), the per-pixel
// lse / coefficient / label permuted into position. C > 256 runs one pixel at a time. The exp is
// exp_fast_f (shared_math.h): the bits of exp_neg_f for the arguments used here (x - max <= 0,
// x - lse <= 0), so lse, p_gt and the gradients are bit-identical to the CUDA kernels'.
// OHEM selection: a two-pass radix select over the bits of p_gt (no copy, no nth_element).
// Pointwise: BCE with logits uses softplus_neg_f (one division instead of two; within ~2 ulp of
// the CUDA kernel's bce_logits_f, not bit-identical).
// Determinism: work items are fixed chunks of kChunk pixels (never dependent on the thread count),
// per-lane double accumulators, chunk partials added in order. OpenMP static schedule.
// Constraints: P, C > 0 (the op layer rejects empty inputs); C < 2^31.
// Tested by tests/test_loss.cpp (naive double references, finite differences, CPU vs emulated
// CUDA, odd pixel counts around the 16-pixel tiles, C = 1..45); benchmarked by bench_kernels
// --filter loss (bench/bench_loss.cpp).
#include "kernels/cpu/loss_cpu.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

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

constexpr int kLanes = 16;
constexpr int64_t kChunk = 4096;  // pixels (or elements for pointwise losses) per work item
constexpr int64_t kParallelMin = 8192;

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

struct ChunkStats {
  double s1 = 0, s2 = 0;
  int64_t bad = 0, first_bad = -1, below = 0;
};

using row_tile::kRows;
static_assert(kChunk % kRows == 0, "chunks hold whole tiles");

// Per-lane accumulators of a chunk, added up in a fixed order at its end (no horizontal work per
// tile). Bad labels are only counted here; their first position is found by a rescan (an error
// path).
struct LaneAcc {
  alignas(64) double s1[kRows] = {}, s2[kRows] = {};
  alignas(64) int32_t bad[kRows] = {}, below[kRows] = {};
};

// CE forward of the 16 pixels at x (a full tile; labels y[0..16), lse/pgt/nll written for the
// first n of them). Matches the CUDA kernel's per-pixel arithmetic: m from -inf over c in order, s
// summed in c order, lse = m + log_f(s), p_gt = ohem_prob_f(x_y - m, s): the same bits on both
// devices (exp_fast_f returns exp_neg_f's bits for x - m <= 0).
// kC: the class count when known at compile time (2: the loads become two contiguous vectors and a
// deinterleave instead of gathers), 0 when it is only known at run time (ix.L).
template <int kC, bool kOhem, bool kW>
[[gnu::always_inline]] inline void ce_fwd_tile(const float* x, const int64_t* y, const float* w, int n,
                                               const row_tile::Index& ix, int64_t ignore, float thresh, float* lse,
                                               float* pgt, float* nll, LaneAcc& acc) {
  const int C = kC ? kC : ix.L;
  alignas(64) float t[(kC ? kC : row_tile::kMaxL) * kRows];
  if (kC == 2) {  // two contiguous vectors, deinterleaved by two permutes
    const row_tile::vf16 a = row_tile::load(x), b = row_tile::load(x + kRows);
    row_tile::store(t, __builtin_shuffle(a, b, row_tile::vi16{0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30}));
    row_tile::store(t + kRows,
                    __builtin_shuffle(a, b, row_tile::vi16{1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31}));
  } else {
    row_tile::to_lanes(x, ix, t);
  }
  row_tile::vf16 mv = row_tile::vf16{} - INFINITY;
  for (int c = 0; c < C; ++c) {
    const row_tile::vf16 v = row_tile::load(t + c * kRows);
    mv = v > mv ? v : mv;
  }
  alignas(64) float m[kRows];
  row_tile::store(m, mv);
  // Labels: validity, and the label's logit (read before t is overwritten by the exps).
  alignas(64) int32_t idx[kRows];
  alignas(64) float vf[kRows], xy[kRows];
#pragma omp simd
  for (int j = 0; j < kRows; ++j) {
    const int64_t yj = y[j];
    const int32_t in = (int32_t)((yj >= 0) & (yj < C));
    const int32_t ig = (int32_t)(yj == ignore);
    const int32_t ok = in & (ig ^ 1);
    vf[j] = (float)ok;
    idx[j] = ok ? (int32_t)yj : 0;
    acc.bad[j] += (in | ig) ^ 1;
  }
#pragma omp simd
  for (int j = 0; j < kRows; ++j) xy[j] = t[idx[j] * kRows + j];
  alignas(64) float s[kRows], l16[kRows], nll16[kRows], p16[kRows];
  if (kC == 2) {
    // One exp: d0 + d1 is the smaller of x_c - m exactly (the other is 0), and exp(0) = 1, so
    // s = exp(d0 + d1) + 1 has the bits of exp(d0) + exp(d1); a NaN or an infinite m still gives
    // NaN, as the two-exp sum does.
#pragma omp simd
    for (int j = 0; j < kRows; ++j) s[j] = exp_fast_f((t[j] - m[j]) + (t[kRows + j] - m[j])) + 1.f;
  } else {
    for (int c = 0; c < C; ++c) {
#pragma omp simd
      for (int j = 0; j < kRows; ++j) t[c * kRows + j] = exp_fast_f(t[c * kRows + j] - m[j]);
    }
    row_tile::vf16 sv = {};
    for (int c = 0; c < C; ++c) sv += row_tile::load(t + c * kRows);
    row_tile::store(s, sv);
  }
#pragma omp simd
  for (int j = 0; j < kRows; ++j) {
    const float wj = kW ? w[idx[j]] * vf[j] : vf[j];
    const float l = m[j] + log_f(s[j]);
    const float nl = vf[j] != 0.f ? l - xy[j] : 0.f;
    l16[j] = l;
    nll16[j] = nl;
    acc.s1[j] += (double)(wj * nl);
    acc.s2[j] += (double)wj;
    if (kOhem) {
      // ohem_prob_f's bits (exp_fast_f is exp_neg_f for x_y - m <= 0), computed for every lane and
      // then selected: a conditional division would stop the vectoriser.
      const float pr = exp_fast_f(xy[j] - m[j]) / s[j];
      const float pj = vf[j] != 0.f ? pr : 2.f;
      p16[j] = pj;
      acc.below[j] += (int32_t)((vf[j] != 0.f) & (pj < thresh));
    }
  }
  if (n == kRows) {
#pragma omp simd
    for (int j = 0; j < kRows; ++j) lse[j] = l16[j];
    if (kOhem) {
#pragma omp simd
      for (int j = 0; j < kRows; ++j) {
        pgt[j] = p16[j];
        nll[j] = nll16[j];
      }
    }
  } else {
    for (int j = 0; j < n; ++j) lse[j] = l16[j];
    if (kOhem) {
      for (int j = 0; j < n; ++j) {
        pgt[j] = p16[j];
        nll[j] = nll16[j];
      }
    }
  }
}

template <int kC, bool kOhem, bool kW>
void ce_fwd_chunk(const float* x, const int64_t* y, const float* w, int64_t pb, int64_t pe, const row_tile::Index& ix,
                  int64_t ignore, float thresh, float* lse, float* pgt, float* nll, ChunkStats& st) {
  const int C = kC ? kC : ix.L;
  LaneAcc acc;
  int64_t p0 = pb;
  for (; p0 + kRows <= pe; p0 += kRows) {
    row_tile::prefetch_next(x + p0 * C, C);
    ce_fwd_tile<kC, kOhem, kW>(x + p0 * C, y + p0, w, kRows, ix, ignore, thresh, lse + p0, kOhem ? pgt + p0 : nullptr,
                               kOhem ? nll + p0 : nullptr, acc);
  }
  if (p0 < pe) {  // the last partial tile, padded with ignored pixels
    const int n = (int)(pe - p0);
    alignas(64) float xin[row_tile::kMaxL * kRows];
    int64_t yin[kRows];
    row_tile::pad_rows(x + p0 * C, n, C, 0.f, xin);
    for (int j = 0; j < kRows; ++j) yin[j] = j < n ? y[p0 + j] : ignore;
    ce_fwd_tile<kC, kOhem, kW>(xin, yin, w, n, ix, ignore, thresh, lse + p0, kOhem ? pgt + p0 : nullptr,
                               kOhem ? nll + p0 : nullptr, acc);
  }
  for (int j = 0; j < kRows; ++j) {  // fixed order
    st.s1 += acc.s1[j];
    st.s2 += acc.s2[j];
    st.bad += acc.bad[j];
    st.below += acc.below[j];
  }
  if (st.bad) {
    for (int64_t p = pb; p < pe && st.first_bad < 0; ++p)
      if (label_bad(y[p], C, ignore)) st.first_bad = p;
  }
}

// Pixels with more than row_tile::kMaxL classes: one pixel at a time, the CUDA kernel's arithmetic
// in the same order.
template <bool kOhem>
void ce_fwd_pixels(const float* x, const int64_t* y, const float* w, int64_t pb, int64_t pe, int64_t C, int64_t ignore,
                   float thresh, float* lse, float* pgt, float* nll, ChunkStats& st) {
  for (int64_t p = pb; p < pe; ++p) {
    const float* row = x + p * C;
    float m = -INFINITY;
    for (int64_t c = 0; c < C; ++c) m = row[c] > m ? row[c] : m;
    float s = 0.f;
    for (int64_t c = 0; c < C; ++c) s += exp_fast_f(row[c] - m);
    const float l = m + log_f(s);
    lse[p] = l;
    const int64_t yp = y[p];
    if (label_bad(yp, C, ignore)) {
      if (st.bad == 0) st.first_bad = p;
      ++st.bad;
    }
    const bool valid = yp != ignore && yp >= 0 && yp < C;
    const float xy = valid ? row[yp] : 0.f;
    const float wv = valid ? (w ? w[yp] : 1.f) : 0.f;
    const float nl = valid ? l - xy : 0.f;
    st.s1 += (double)(wv * nl);
    st.s2 += (double)wv;
    if (kOhem) {
      const float pr = valid ? ohem_prob_f(xy - m, s) : 2.f;
      pgt[p] = pr;
      nll[p] = nl;
      st.below += (valid && pr < thresh) ? 1 : 0;
    }
  }
}

// CE backward of the 16 pixels at x (a full tile) into g (16 C floats), computed in the flat view:
// g = coef * (exp(x - lse) - [c == label]), the per-pixel coef / lse / label permuted into place.
// kPgt / kW: OHEM keep test and class weights present (template flags: a conditional load would
// keep the lane loop scalar).
template <bool kPgt, bool kW>
[[gnu::always_inline]] inline void ce_bwd_tile(const float* x, const int64_t* y, const float* w, const float* lse,
                                               const float* pgt, float thr, const row_tile::Index& ix, int64_t ignore,
                                               float scale, float* g) {
  const int C = ix.L;
  alignas(64) float coef[kRows], l16[kRows];
  alignas(64) int32_t y16[kRows];
#pragma omp simd
  for (int j = 0; j < kRows; ++j) {
    const int64_t yj = y[j];
    const int32_t valid = (int32_t)((yj != ignore) & (yj >= 0) & (yj < C));
    const int32_t keep = kPgt ? valid & (pgt[j] >= thr ? 0 : 1) : valid;
    const int32_t yi = valid ? (int32_t)yj : 0;
    const float wy = kW ? w[yi] : 1.f;
    coef[j] = keep ? scale * wy : 0.f;
    y16[j] = valid ? yi : -1;
    l16[j] = lse[j];
  }
  for (int q = 0; q < C; ++q) {
    const int32_t* pq = ix.pix.data() + q * kRows;
    const int32_t* cq = ix.cls.data() + q * kRows;
    alignas(64) float cf[kRows], lf[kRows];
    alignas(64) int32_t yq[kRows];
    row_tile::spread(coef, pq, cf);
    row_tile::spread(l16, pq, lf);
    row_tile::spread(y16, pq, yq);
    const float* xq = x + q * kRows;
    float* gq = g + q * kRows;
#pragma omp simd
    for (int i = 0; i < kRows; ++i) gq[i] = cf[i] * (exp_fast_f(xq[i] - lf[i]) - (cq[i] == yq[i] ? 1.f : 0.f));
  }
}

template <bool kPgt, bool kW>
void ce_bwd_chunk(const float* x, const int64_t* y, const float* w, const float* lse, const float* pgt, float thr,
                  int64_t pb, int64_t pe, const row_tile::Index& ix, int64_t ignore, float scale, float* gx) {
  const int C = ix.L;
  int64_t p0 = pb;
  for (; p0 + kRows <= pe; p0 += kRows) {
    row_tile::prefetch_next(x + p0 * C, C);
    ce_bwd_tile<kPgt, kW>(x + p0 * C, y + p0, w, lse + p0, kPgt ? pgt + p0 : nullptr, thr, ix, ignore, scale,
                          gx + p0 * C);
  }
  if (p0 < pe) {  // the last partial tile, padded with ignored pixels
    const int n = (int)(pe - p0);
    alignas(64) float xin[row_tile::kMaxL * kRows], gout[row_tile::kMaxL * kRows];
    alignas(64) float lin[kRows] = {}, pin[kRows] = {};
    int64_t yin[kRows];
    row_tile::pad_rows(x + p0 * C, n, C, 0.f, xin);
    for (int j = 0; j < kRows; ++j) {
      yin[j] = j < n ? y[p0 + j] : ignore;
      if (j < n) {
        lin[j] = lse[p0 + j];
        if (kPgt) pin[j] = pgt[p0 + j];
      }
    }
    ce_bwd_tile<kPgt, kW>(xin, yin, w, lin, pin, thr, ix, ignore, scale, gout);
    std::memcpy(gx + p0 * C, gout, sizeof(float) * (size_t)(n * C));
  }
}

// Rows longer than row_tile::kMaxL: one pixel at a time, vectorised along the row.
void ce_bwd_pixels(const float* x, const int64_t* y, const float* w, const float* lse, const float* pgt, float thr,
                   int64_t pb, int64_t pe, int64_t C, int64_t ignore, float scale, float* gx) {
  for (int64_t p = pb; p < pe; ++p) {
    const int64_t yp = y[p];
    const bool valid = yp != ignore && yp >= 0 && yp < C;
    const bool keep = valid && (pgt == nullptr || !(pgt[p] >= thr));
    const float coef = keep ? scale * (w ? w[yp] : 1.f) : 0.f;
    const int64_t yi = valid ? yp : -1;
    const float l = lse[p];
    const float* xr = x + p * C;
    float* gr = gx + p * C;
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) gr[c] = coef * (exp_fast_f(xr[c] - l) - (c == yi ? 1.f : 0.f));
  }
}

}  // namespace

void ce_fwd_cpu(const float* x, const int64_t* y, const float* w, int64_t P, int64_t C, int64_t ignore, float thresh,
                float* lse, float* pgt, float* nll, CeFwdStats* stats) {
  const int64_t nchunks = ceil_div(P, kChunk);
  std::vector<ChunkStats> parts((size_t)nchunks);
  const bool tiled = C <= row_tile::kMaxL;
  const row_tile::Index ix(tiled ? (int)C : 1);
#pragma omp parallel for schedule(static) if (P * C >= kParallelMin)
  for (int64_t k = 0; k < nchunks; ++k) {
    const int64_t b = k * kChunk, e = std::min(P, b + kChunk);
    ChunkStats& st = parts[(size_t)k];
    if (!tiled) {
      if (pgt)
        ce_fwd_pixels<true>(x, y, w, b, e, C, ignore, thresh, lse, pgt, nll, st);
      else
        ce_fwd_pixels<false>(x, y, w, b, e, C, ignore, thresh, lse, pgt, nll, st);
    } else if (pgt) {
      ce_fwd_chunk<0, true, false>(x, y, w, b, e, ix, ignore, thresh, lse, pgt, nll, st);
    } else if (w) {
      ce_fwd_chunk<0, false, true>(x, y, w, b, e, ix, ignore, thresh, lse, pgt, nll, st);
    } else if (C == 2) {  // PP-LiteSeg's 2-class runs: three of these per training step
      ce_fwd_chunk<2, false, false>(x, y, w, b, e, ix, ignore, thresh, lse, pgt, nll, st);
    } else {
      ce_fwd_chunk<0, false, false>(x, y, w, b, e, ix, ignore, thresh, lse, pgt, nll, st);
    }
  }
  CeFwdStats out;
  for (const ChunkStats& st : parts) {
    out.sum_loss += st.s1;
    out.sum_w += st.s2;
    if (st.bad && out.n_bad == 0) out.first_bad = st.first_bad;
    out.n_bad += st.bad;
    out.n_below += st.below;
  }
  *stats = out;
}

void ce_bwd_cpu(const float* x, const int64_t* y, const float* w, const float* lse, const float* pgt, float thr,
                int64_t P, int64_t C, int64_t ignore, float scale, float* gx) {
  const int64_t nchunks = ceil_div(P, kChunk);
  const bool tiled = C <= row_tile::kMaxL;
  const row_tile::Index ix(tiled ? (int)C : 1);
#pragma omp parallel for schedule(static) if (P * C >= kParallelMin)
  for (int64_t k = 0; k < nchunks; ++k) {
    const int64_t pb = k * kChunk, pe = std::min(P, pb + kChunk);
    if (!tiled)
      ce_bwd_pixels(x, y, w, lse, pgt, thr, pb, pe, C, ignore, scale, gx);
    else if (pgt && w)
      ce_bwd_chunk<true, true>(x, y, w, lse, pgt, thr, pb, pe, ix, ignore, scale, gx);
    else if (pgt)
      ce_bwd_chunk<true, false>(x, y, w, lse, pgt, thr, pb, pe, ix, ignore, scale, gx);
    else if (w)
      ce_bwd_chunk<false, true>(x, y, w, lse, pgt, thr, pb, pe, ix, ignore, scale, gx);
    else
      ce_bwd_chunk<false, false>(x, y, w, lse, pgt, thr, pb, pe, ix, ignore, scale, gx);
  }
}

namespace {

// OHEM selection. Candidates are the pixels with !(p_gt < thresh); they are ordered by the unsigned
// value of their float bits, which for p >= 0 is the order of the values (NaN above everything).
// Ignored pixels hold 2.0, above every probability, so with k at most the number of valid
// candidates they never reach the k-th place and the labels need not be read (the CUDA select
// relies on the same marker).
//
// Radix select: a histogram of the high 16 bits, then one of the low 16 bits among the candidates
// of the chosen high bin; two streaming passes. Blocks of 1024 pixels: a vectorised loop turns them
// into bin numbers, a scalar loop counts them (pass 1 into 4 interleaved histograms, so runs of one
// bin do not serialise on one counter; pass 2 only the pixels of the chosen bin). Histograms are
// merged by integer sums: the result does not depend on the thread count.
uint32_t ohem_radix_select(const float* pgt, int64_t P, float thresh, int64_t k) {
  constexpr int kBins = 1 << 16;
  constexpr uint32_t kNone = kBins;  // bin of the non-candidates (an extra counter, never read)
  constexpr int kStride = kBins + 1;
  constexpr int kCopies = 4;
  constexpr int kBlock = 1024;
  const int nblocks = P >= kParallelMin ? std::max(1, omp_get_max_threads()) : 1;
  std::vector<uint32_t> hist((size_t)nblocks * kCopies * kStride);
  std::vector<int64_t> merged(kBins);
  auto pass = [&](bool low, uint32_t hi_bits) {
    std::fill(hist.begin(), hist.end(), 0u);
#pragma omp parallel for schedule(static) num_threads(nblocks) if (nblocks > 1)
    for (int b = 0; b < nblocks; ++b) {
      uint32_t* h = hist.data() + (size_t)b * kCopies * kStride;
      alignas(64) uint32_t bins[kBlock];
      const int64_t pe = P * (b + 1) / nblocks;
      for (int64_t p0 = P * b / nblocks; p0 < pe; p0 += kBlock) {
        const int n = (int)std::min<int64_t>(kBlock, pe - p0);
#pragma omp simd
        for (int i = 0; i < n; ++i) {
          const float v = pgt[p0 + i];
          const uint32_t u = f2u(v);
          const bool cand = !(v < thresh);
          bins[i] = low ? (cand & ((u >> 16) == hi_bits) ? (u & 0xffffu) : kNone) : (cand ? (u >> 16) : kNone);
        }
        if (low) {  // nearly all pixels miss the chosen bin: a predictable branch, no counter traffic
          for (int i = 0; i < n; ++i)
            if (bins[i] != kNone) ++h[bins[i]];
        } else {
          for (int i = 0; i < n; ++i) ++h[(size_t)(i & (kCopies - 1)) * kStride + bins[i]];
        }
      }
    }
    for (int i = 0; i < kBins; ++i) {
      int64_t c = 0;
      for (int b = 0; b < nblocks * kCopies; ++b) c += hist[(size_t)b * kStride + (size_t)i];
      merged[(size_t)i] = c;
    }
  };
  // The bin holding the rank-th (1-based) candidate; rank becomes the rank inside that bin.
  auto find = [&](int64_t& rank) {
    int i = 0;
    for (; i < kBins - 1 && rank > merged[(size_t)i]; ++i) rank -= merged[(size_t)i];
    return (uint32_t)i;
  };
  pass(false, 0);
  int64_t total = 0;
  for (int i = 0; i < kBins; ++i) total += merged[(size_t)i];
  int64_t rank = std::clamp<int64_t>(k, 1, std::max<int64_t>(total, 1));
  const uint32_t hi = find(rank);
  pass(true, hi);
  const uint32_t lo = find(rank);
  return (hi << 16) | lo;
}

// Counts the candidates of pgt[p0, p1) whose bits are below lo and stores those in [lo, hi] into
// out, whose size on entry is only a capacity (grown when needed; the result size on return).
// AVX-512: compare masks and branch-free compress-stores, 16 pixels per step.
int64_t ohem_bracket_block(const float* pgt, int64_t p0, int64_t p1, float thresh, uint32_t lo, uint32_t hi,
                           std::vector<uint32_t>& out) {
  int64_t below = 0;
  int64_t p = p0;
  size_t n = 0;
#if defined(__AVX512F__)
  const __m512 vt = _mm512_set1_ps(thresh);
  const __m512i vlo = _mm512_set1_epi32((int32_t)lo), vhi = _mm512_set1_epi32((int32_t)hi);
  for (; p + 16 <= p1; p += 16) {
    if (n + 16 > out.size()) out.resize(2 * out.size() + 1024);
    const __m512 v = _mm512_loadu_ps(pgt + p);
    const __m512i u = _mm512_castps_si512(v);
    const __mmask16 cand = _mm512_cmp_ps_mask(v, vt, _CMP_NLT_UQ);  // !(v < thresh), NaN included
    const __mmask16 lt = _mm512_mask_cmp_epu32_mask(cand, u, vlo, _MM_CMPINT_LT);
    const __mmask16 in = _mm512_mask_cmp_epu32_mask((__mmask16)(cand & ~lt), u, vhi, _MM_CMPINT_LE);
    below += __builtin_popcount(lt);
    _mm512_mask_compressstoreu_epi32(out.data() + n, in, u);
    n += (size_t)__builtin_popcount(in);
  }
#endif
  for (; p < p1; ++p) {
    const float v = pgt[p];
    const uint32_t u = f2u(v);
    if (n + 1 > out.size()) out.resize(2 * out.size() + 1024);
    const bool cand = !(v < thresh);
    below += cand & (u < lo);
    out[n] = u;
    n += cand & (u >= lo) & (u <= hi);
  }
  out.resize(n);
  return below;
}

// Sampled bracket: the k-th candidate's rank in a regular sample of the pixels gives bounds [lo, hi]
// that hold it with overwhelming probability; one pass then counts the candidates below lo and
// collects those inside (a few percent), and nth_element on that small set finds the exact k-th.
// When the bracket misses (a skewed distribution) the caller falls back to the radix select.
bool ohem_bracket_select(const float* pgt, int64_t P, float thresh, int64_t k, uint32_t* result) {
  constexpr int64_t kSampleStride = 256;
  std::vector<uint32_t> sample;
  sample.reserve((size_t)(P / kSampleStride + 1));
  for (int64_t p = kSampleStride / 2; p < P; p += kSampleStride) {
    // Each sample is a cache miss: keep 16 in flight.
    if (p + 16 * kSampleStride < P) __builtin_prefetch(pgt + p + 16 * kSampleStride, 0, 0);
    if (!(pgt[p] < thresh)) sample.push_back(f2u(pgt[p]));
  }
  if (sample.size() < 64) return false;
  const double r = (double)(k - 1) / (double)kSampleStride;  // expected rank in the sample
  const double margin = 3.5 * std::sqrt(r + 1.0) + 4.0;  // ~3.5 sigma of the sample rank
  const int64_t ns = (int64_t)sample.size();
  const int64_t rl = (int64_t)std::floor(r - margin), rh = (int64_t)std::ceil(r + margin);
  uint32_t lo = 0, hi = 0xffffffffu;
  if (rl >= 0 && rl < ns) {
    std::nth_element(sample.begin(), sample.begin() + rl, sample.end());
    lo = sample[(size_t)rl];
  }
  if (rh < ns) {
    std::nth_element(sample.begin(), sample.begin() + rh, sample.end());
    hi = sample[(size_t)rh];
  }
  if (rl >= ns) return false;
  const int nblocks = P >= kParallelMin ? std::max(1, omp_get_max_threads()) : 1;
  std::vector<std::vector<uint32_t>> inside((size_t)nblocks);
  for (auto& v : inside) v.resize((size_t)((rh - std::max<int64_t>(rl, 0)) * kSampleStride * 2 / nblocks + 1024));
  std::vector<int64_t> below((size_t)nblocks);
#pragma omp parallel for schedule(static) num_threads(nblocks) if (nblocks > 1)
  for (int b = 0; b < nblocks; ++b)
    below[(size_t)b] = ohem_bracket_block(pgt, P * b / nblocks, P * (b + 1) / nblocks, thresh, lo, hi,
                                          inside[(size_t)b]);
  int64_t nbelow = 0;
  std::vector<uint32_t> all;
  for (int b = 0; b < nblocks; ++b) {
    nbelow += below[(size_t)b];
    all.insert(all.end(), inside[(size_t)b].begin(), inside[(size_t)b].end());
  }
  if (k <= nbelow || k > nbelow + (int64_t)all.size()) return false;
  std::nth_element(all.begin(), all.begin() + (k - nbelow - 1), all.end());
  *result = all[(size_t)(k - nbelow - 1)];
  return true;
}

}  // namespace

float ohem_select_cpu(const float* pgt, const int64_t* /*y*/, int64_t P, int64_t /*C*/, int64_t /*ignore*/,
                      float thresh, int64_t k) {
  uint32_t bits;
  if (k < 1 || !ohem_bracket_select(pgt, P, thresh, k, &bits)) bits = ohem_radix_select(pgt, P, thresh, k);
  return u2f(bits);
}

// Kept: a valid pixel (p_gt != 2.0, the forward's mark of an ignored one: valid probabilities are
// <= 1) with !(p_gt >= thr). Reads p_gt and nll only.
void ohem_sum_cpu(const float* pgt, const float* nll, const int64_t* /*y*/, int64_t P, int64_t /*C*/,
                  int64_t /*ignore*/, float thr, double* sum, int64_t* count) {
  const int64_t nchunks = ceil_div(P, kChunk);
  std::vector<double> ps((size_t)nchunks);
  std::vector<int64_t> pc((size_t)nchunks);
#pragma omp parallel for schedule(static) if (P >= kParallelMin)
  for (int64_t k = 0; k < nchunks; ++k) {
    const int64_t b = k * kChunk, e = std::min(P, b + kChunk);
    double acc = 0;
    int64_t cnt = 0;
    // Integer masks and a bitwise select: gcc turns `keep ? v : 0.0` into control flow here.
#pragma omp simd reduction(+ : acc, cnt)
    for (int64_t p = b; p < e; ++p) {
      const double v = (double)nll[p];
      const float pg = pgt[p];
      const int64_t keep = ((pg == 2.f) | (pg >= thr)) ? 0 : 1;
      acc += __builtin_bit_cast(double, __builtin_bit_cast(uint64_t, v) & (uint64_t)(-keep));
      cnt += keep;
    }
    ps[(size_t)k] = acc;
    pc[(size_t)k] = cnt;
  }
  double s = 0;
  int64_t c = 0;
  for (int64_t k = 0; k < nchunks; ++k) {
    s += ps[(size_t)k];
    c += pc[(size_t)k];
  }
  *sum = s;
  *count = c;
}

// ------------------------------------------------------------------------------ pointwise losses
namespace {

// The CPU's per-element forward loss: BCE with logits through the one-division softplus.
template <PointLoss K>
inline float point_loss_cpu_f(float a, float b) {
  if (K == PointLoss::BceLogits) return bce_logits_fast_f(a, b);
  return point_loss_f<K>(a, b);
}

template <PointLoss K, bool kW>
double point_fwd_impl(const float* a, const float* b, const float* w, int64_t n, int64_t* n_bad) {
  const int64_t nchunks = ceil_div(n, kChunk);
  std::vector<double> ps((size_t)nchunks);
  std::vector<int64_t> pb((size_t)nchunks);
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t k = 0; k < nchunks; ++k) {
    const int64_t lo = k * kChunk, hi = std::min(n, lo + kChunk);
    // 16 lanes of float partials over <= 256 elements each, then double.
    double acc = 0;
    int64_t bad = 0;
    for (int64_t i0 = lo; i0 < hi; i0 += 256) {
      const int64_t i1 = std::min(hi, i0 + 256);
      float lane[kLanes] = {};
      const int64_t nv = (i1 - i0) / kLanes * kLanes;
      for (int64_t i = i0; i < i0 + nv; i += kLanes) {
#pragma omp simd
        for (int j = 0; j < kLanes; ++j) {
          const float v = point_loss_cpu_f<K>(a[i + j], b[i + j]);
          lane[j] += kW ? v * w[i + j] : v;
        }
      }
      for (int64_t i = i0 + nv; i < i1; ++i) {
        const float v = point_loss_cpu_f<K>(a[i], b[i]);
        lane[i - i0 - nv] += kW ? v * w[i] : v;
      }
      if (K == PointLoss::Bce) {
        int32_t nb = 0;
#pragma omp simd reduction(+ : nb)
        for (int64_t i = i0; i < i1; ++i) nb += bce_prob_bad(a[i]) ? 1 : 0;
        bad += nb;
      }
      double t = 0;
      for (int j = 0; j < kLanes; ++j) t += lane[j];
      acc += t;
    }
    ps[(size_t)k] = acc;
    pb[(size_t)k] = bad;
  }
  double s = 0;
  int64_t bad = 0;
  for (int64_t k = 0; k < nchunks; ++k) {
    s += ps[(size_t)k];
    bad += pb[(size_t)k];
  }
  if (n_bad) *n_bad = bad;
  return s;
}

template <PointLoss K>
void point_bwd_impl(const float* a, const float* b, const float* w, int64_t n, float scale, float* ga) {
  const int64_t nchunks = ceil_div(n, kChunk);
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t k = 0; k < nchunks; ++k) {
    const int64_t lo = k * kChunk, hi = std::min(n, lo + kChunk);
    if (w) {
#pragma omp simd
      for (int64_t i = lo; i < hi; ++i) ga[i] = scale * w[i] * point_loss_grad_f<K>(a[i], b[i]);
    } else {
#pragma omp simd
      for (int64_t i = lo; i < hi; ++i) ga[i] = scale * point_loss_grad_f<K>(a[i], b[i]);
    }
  }
}

}  // namespace

double point_loss_fwd_cpu(PointLoss kind, const float* a, const float* b, const float* w, int64_t n, int64_t* n_bad) {
  if (n_bad) *n_bad = 0;
  switch (kind) {
    case PointLoss::BceLogits:
      return w ? point_fwd_impl<PointLoss::BceLogits, true>(a, b, w, n, n_bad)
               : point_fwd_impl<PointLoss::BceLogits, false>(a, b, w, n, n_bad);
    case PointLoss::Bce:
      return w ? point_fwd_impl<PointLoss::Bce, true>(a, b, w, n, n_bad)
               : point_fwd_impl<PointLoss::Bce, false>(a, b, w, n, n_bad);
    case PointLoss::L1:
      return w ? point_fwd_impl<PointLoss::L1, true>(a, b, w, n, n_bad)
               : point_fwd_impl<PointLoss::L1, false>(a, b, w, n, n_bad);
  }
  return 0;
}

void point_loss_bwd_cpu(PointLoss kind, const float* a, const float* b, const float* w, int64_t n, float scale,
                        float* ga) {
  switch (kind) {
    case PointLoss::BceLogits: return point_bwd_impl<PointLoss::BceLogits>(a, b, w, n, scale, ga);
    case PointLoss::Bce: return point_bwd_impl<PointLoss::Bce>(a, b, w, n, scale, ga);
    case PointLoss::L1: return point_bwd_impl<PointLoss::L1>(a, b, w, n, scale, ga);
  }
}

}  // namespace engine::kernels
