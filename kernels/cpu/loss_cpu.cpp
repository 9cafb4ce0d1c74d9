// Loss family on the CPU: softmax cross entropy over the last axis of NHWC logits (CE and OHEM share
// the kernels), OHEM selection, and the mean pointwise losses (BCE with logits, BCE, L1).
// Math (kernels/loss_math.h, shared with kernels/cuda/loss.cu):
//   lse_p = max_c x[p,c] + log sum_c exp(x[p,c] - max);  nll_p = lse_p - x[p, y_p]
//   CE forward sums  S1 = sum_valid w[y] nll,  S2 = sum_valid w[y]  (the op divides)
//   CE backward      gx[p,c] = coef_p (exp(x[p,c] - lse_p) - [c == y_p])
//   OHEM             p_gt = exp(x_y - max) / sum (f32, as PaddleSeg's softmax-then-pick)
// Layout: logits contiguous [P, C] (P = N*H*W, C = classes, channels last), labels i64 [P].
// Strategy: pixels in tiles of 16 (one AVX-512 register of lanes). Forward: per class one 16-lane
// gather (stride C) feeds the max and the exp-sum, all lane-parallel, with the branch-free
// polynomial exp/log of loss_math.h so the loops vectorise. Backward: the tile's 16*C contiguous
// elements in one flat vector loop; the per-pixel lse / coefficient / label are looked up through
// small index tables (k / C, k % C) in L1.
// Determinism: work items are fixed chunks of kChunk pixels (never dependent on the thread count),
// per-lane double accumulators, chunk partials added in order. OpenMP static schedule.
// Constraints: P, C > 0 (the op layer rejects empty inputs); C < 2^31.
// Tested by tests/test_loss.cpp (naive double references, finite differences, CPU vs emulated
// CUDA); benchmarked by bench_kernels --filter loss (bench/bench_loss.cpp).
#include "kernels/cpu/loss_cpu.h"

#include <omp.h>

#include <algorithm>
#include <limits>
#include <vector>

// 512-bit vectors for the lane loops (g++ -march=native defaults to 256 on AVX-512 parts).
#if defined(__AVX512F__) && !defined(__clang__)
#pragma GCC target("prefer-vector-width=512")
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

// Loads the tile of pixels [p0, p0 + 16) transposed: t[c * 16 + j] = x[(p0 + j) * C + c] (one 16-lane
// gather per class, 32-bit indices); lanes past the end repeat the last pixel.
inline void load_tile(const float* x, int64_t p0, int L, int64_t C, float* t) {
  const float* xb = x + p0 * C;
  int32_t ro[kLanes];
  for (int j = 0; j < kLanes; ++j) ro[j] = (int32_t)((j < L ? j : L - 1) * C);
  for (int64_t c = 0; c < C; ++c) {
#pragma omp simd
    for (int j = 0; j < kLanes; ++j) t[c * kLanes + j] = xb[ro[j] + c];
  }
}

template <bool kOhem, bool kW>
void ce_fwd_chunk(const float* x, const int64_t* y, const float* w, int64_t p_begin, int64_t p_end, int64_t C,
                  int64_t ignore, float thresh, float* lse, float* pgt, float* nll, float* t, ChunkStats& st) {
  double acc1[kLanes] = {}, acc2[kLanes] = {};
  int64_t below = 0;
  for (int64_t p0 = p_begin; p0 < p_end; p0 += kLanes) {
    const int L = (int)std::min<int64_t>(kLanes, p_end - p0);
    load_tile(x, p0, L, C, t);
    float m[kLanes], s[kLanes];
#pragma omp simd
    for (int j = 0; j < kLanes; ++j) m[j] = t[j];
    for (int64_t c = 1; c < C; ++c) {
#pragma omp simd
      for (int j = 0; j < kLanes; ++j) {
        const float v = t[c * kLanes + j];
        m[j] = v > m[j] ? v : m[j];
      }
    }
#pragma omp simd
    for (int j = 0; j < kLanes; ++j) s[j] = 0.f;
    for (int64_t c = 0; c < C; ++c) {
#pragma omp simd
      for (int j = 0; j < kLanes; ++j) s[j] += exp_neg_f(t[c * kLanes + j] - m[j]);
    }
    const int64_t* yb = y + p0;
    int32_t idx[kLanes], bad[kLanes];
    float vf[kLanes];
    int32_t any_bad = 0;
#pragma omp simd reduction(| : any_bad)
    for (int j = 0; j < kLanes; ++j) {
      const int64_t yj = yb[j < L ? j : L - 1];
      const int32_t in = (int32_t)((yj >= 0) & (yj < C));
      const int32_t ig = (int32_t)(yj == ignore);
      const int32_t live = (int32_t)(j < L);
      const int32_t ok = in & (ig ^ 1) & live;
      vf[j] = (float)ok;
      idx[j] = ok ? (int32_t)yj : 0;
      bad[j] = (in | ig) ^ 1;
      bad[j] &= live;
      any_bad |= bad[j];
    }
    if (any_bad) {
      for (int j = 0; j < L; ++j) {
        if (bad[j]) {
          if (st.bad == 0) st.first_bad = p0 + j;
          ++st.bad;
        }
      }
    }
    float l16[kLanes], nll16[kLanes], p16[kLanes], w16[kLanes];
#pragma omp simd
    for (int j = 0; j < kLanes; ++j) {
      const float xy = t[idx[j] * kLanes + j];
      const float wj = kW ? w[idx[j]] * vf[j] : vf[j];
      const float l = m[j] + log_f(s[j]);
      l16[j] = l;
      nll16[j] = vf[j] != 0.f ? l - xy : 0.f;
      w16[j] = wj;
      if (kOhem) p16[j] = vf[j] != 0.f ? ohem_prob_f(xy - m[j], s[j]) : 2.f;
    }
#pragma omp simd
    for (int j = 0; j < kLanes; ++j) {
      acc1[j] += (double)(w16[j] * nll16[j]);
      acc2[j] += (double)w16[j];
    }
    for (int j = 0; j < L; ++j) lse[p0 + j] = l16[j];
    if (kOhem) {
      for (int j = 0; j < L; ++j) {
        pgt[p0 + j] = p16[j];
        nll[p0 + j] = nll16[j];
      }
      int64_t b = 0;
#pragma omp simd reduction(+ : b)
      for (int j = 0; j < kLanes; ++j) b += (vf[j] != 0.f) & (p16[j] < thresh);
      below += b;
    }
  }
  for (int j = 0; j < kLanes; ++j) {  // fixed order
    st.s1 += acc1[j];
    st.s2 += acc2[j];
  }
  st.below = below;
}

}  // namespace

void ce_fwd_cpu(const float* x, const int64_t* y, const float* w, int64_t P, int64_t C, int64_t ignore, float thresh,
                float* lse, float* pgt, float* nll, CeFwdStats* stats) {
  const int64_t nchunks = ceil_div(P, kChunk);
  std::vector<ChunkStats> parts((size_t)nchunks);
#pragma omp parallel for schedule(static) if (P * C >= kParallelMin)
  for (int64_t k = 0; k < nchunks; ++k) {
    const int64_t b = k * kChunk, e = std::min(P, b + kChunk);
    std::vector<float> tile((size_t)(C * kLanes));
    ChunkStats& st = parts[(size_t)k];
    if (pgt)
      ce_fwd_chunk<true, false>(x, y, w, b, e, C, ignore, thresh, lse, pgt, nll, tile.data(), st);
    else if (w)
      ce_fwd_chunk<false, true>(x, y, w, b, e, C, ignore, thresh, lse, pgt, nll, tile.data(), st);
    else
      ce_fwd_chunk<false, false>(x, y, w, b, e, C, ignore, thresh, lse, pgt, nll, tile.data(), st);
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
#pragma omp parallel for schedule(static) if (P * C >= kParallelMin)
  for (int64_t k = 0; k < nchunks; ++k) {
    const int64_t pb = k * kChunk, pe = std::min(P, pb + kChunk);
    std::vector<float> tile((size_t)(C * kLanes));
    float* t = tile.data();
    for (int64_t p0 = pb; p0 < pe; p0 += kLanes) {
      const int L = (int)std::min<int64_t>(kLanes, pe - p0);
      float coef[kLanes], l16[kLanes];
      int32_t y16[kLanes];
#pragma omp simd
      for (int j = 0; j < kLanes; ++j) {
        const int64_t p = p0 + (j < L ? j : L - 1);
        const int64_t yj = y[p];
        const int32_t valid = (int32_t)((yj != ignore) & (yj >= 0) & (yj < C));
        const int32_t keep = pgt ? valid & (int32_t)(!(pgt[p] >= thr)) : valid;
        const int32_t yi = valid ? (int32_t)yj : 0;
        coef[j] = keep ? scale * (w ? w[yi] : 1.f) : 0.f;
        y16[j] = valid ? yi : -1;
        l16[j] = lse[p];
      }
      load_tile(x, p0, L, C, t);
      for (int64_t c = 0; c < C; ++c) {
        float* tc = t + c * kLanes;
#pragma omp simd
        for (int j = 0; j < kLanes; ++j)
          tc[j] = coef[j] * (exp_neg_f(tc[j] - l16[j]) - (y16[j] == (int32_t)c ? 1.f : 0.f));
      }
      // Store back untransposed: row j of the tile is gx[(p0 + j) * C + 0 .. C).
      float* gs = gx + p0 * C;
      if (L == kLanes) {
        for (int64_t c = 0; c < C; ++c) {
          const float* tc = t + c * kLanes;
#pragma omp simd
          for (int j = 0; j < kLanes; ++j) gs[(int32_t)(j * C + c)] = tc[j];  // 16-lane scatter
        }
      } else {
        for (int j = 0; j < L; ++j) {
          float* gr = gs + (int64_t)j * C;
          for (int64_t c = 0; c < C; ++c) gr[c] = t[c * kLanes + j];
        }
      }
    }
  }
}

float ohem_select_cpu(const float* pgt, const int64_t* y, int64_t P, int64_t C, int64_t ignore, float thresh,
                      int64_t k) {
  std::vector<float> v;
  for (int64_t p = 0; p < P; ++p) {
    const int64_t yp = y[p];
    if (yp != ignore && yp >= 0 && yp < C && !(pgt[p] < thresh)) v.push_back(pgt[p]);
  }
  const int64_t kk = std::clamp<int64_t>(k, 1, (int64_t)v.size());
  std::nth_element(v.begin(), v.begin() + (kk - 1), v.end());
  return v[(size_t)(kk - 1)];
}

void ohem_sum_cpu(const float* pgt, const float* nll, const int64_t* y, int64_t P, int64_t C, int64_t ignore, float thr,
                  double* sum, int64_t* count) {
  const int64_t nchunks = ceil_div(P, kChunk);
  std::vector<double> ps((size_t)nchunks);
  std::vector<int64_t> pc((size_t)nchunks);
#pragma omp parallel for schedule(static) if (P >= kParallelMin)
  for (int64_t k = 0; k < nchunks; ++k) {
    const int64_t b = k * kChunk, e = std::min(P, b + kChunk);
    double acc[kLanes] = {};
    int64_t cnt = 0;
    for (int64_t p0 = b; p0 < e; p0 += kLanes) {
      const int L = (int)std::min<int64_t>(kLanes, e - p0);
      for (int j = 0; j < L; ++j) {
        const int64_t yp = y[p0 + j];
        const bool keep = yp != ignore && yp >= 0 && yp < C && !(pgt[p0 + j] >= thr);
        acc[j] += keep ? (double)nll[p0 + j] : 0.0;
        cnt += keep ? 1 : 0;
      }
    }
    double s = 0;
    for (int j = 0; j < kLanes; ++j) s += acc[j];
    ps[(size_t)k] = s;
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
          const float v = point_loss_f<K>(a[i + j], b[i + j]);
          lane[j] += kW ? v * w[i + j] : v;
        }
      }
      for (int64_t i = i0 + nv; i < i1; ++i) {
        const float v = point_loss_f<K>(a[i], b[i]);
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
