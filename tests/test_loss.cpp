// labels: kernel
// Loss family: cross_entropy (ignore pixels, class weights, all-ignored, C = 1/2/19/45), OHEM (no
// mining, threshold raised to the k-th probability, thresh-bound mining, min_kept = 0, ties),
// bce_with_logits (extremes +-50, weights), binary_cross_entropy (p = 0 and 1, clamp at -100),
// l1_loss, and bad inputs. Naive double references, finite differences, CPU vs CUDA device, strided
// inputs, guard bytes and determinism through the op harness.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <numeric>

#include "engine/autograd.h"
#include "engine/ops/loss.h"
#include "engine/ops/resize.h"
#include "tests/harness/op_check.h"

using namespace engine;
using namespace engine::testing;

namespace {

uint64_t mix(uint64_t s) {
  s ^= s >> 33;
  s *= 0xff51afd7ed558ccdull;
  s ^= s >> 33;
  s *= 0xc4ceb9fe1a85ec53ull;
  return s ^ (s >> 33);
}
double unit(uint64_t s) { return (double)(mix(s) >> 11) / 9007199254740992.0; }

std::vector<Device> devices() {
  std::vector<Device> d = {Device::cpu()};
  if (have_cuda()) d.push_back(Device::cuda(0));
  return d;
}

// ---------------------------------------------------------------------------- CE reference
struct CeRef {
  double loss;
};

// Per-pixel log-softmax pieces in double.
void lse_row(const std::vector<double>& x, size_t off, int64_t C, double* lse, double* mx) {
  double m = -INFINITY;
  for (int64_t c = 0; c < C; ++c) m = std::max(m, x[off + c]);
  double s = 0;
  for (int64_t c = 0; c < C; ++c) s += std::exp(x[off + c] - m);
  *lse = m + std::log(s);
  *mx = m;
}

double ce_ref(const std::vector<double>& x, const std::vector<double>& y, const std::vector<double>* w, int64_t C,
              int64_t ignore) {
  const int64_t P = (int64_t)y.size();
  double s1 = 0, s2 = 0;
  for (int64_t p = 0; p < P; ++p) {
    const int64_t yp = (int64_t)y[p];
    if (yp == ignore) continue;
    double l, m;
    lse_row(x, (size_t)(p * C), C, &l, &m);
    const double wv = w ? (*w)[yp] : 1.0;
    s1 += wv * (l - x[(size_t)(p * C + yp)]);
    s2 += wv;
  }
  return s1 / (s2 + 1e-8 * (double)P);
}

double ohem_ref(const std::vector<double>& x, const std::vector<double>& y, int64_t C, double thresh, int64_t min_kept,
                int64_t ignore) {
  const int64_t P = (int64_t)y.size();
  std::vector<double> prob((size_t)P, 2.0), nll((size_t)P, 0.0);
  std::vector<double> valid_p;
  for (int64_t p = 0; p < P; ++p) {
    const int64_t yp = (int64_t)y[p];
    if (yp == ignore) continue;
    double l, m;
    lse_row(x, (size_t)(p * C), C, &l, &m);
    prob[p] = std::exp(x[(size_t)(p * C + yp)] - l);
    nll[p] = l - x[(size_t)(p * C + yp)];
    valid_p.push_back(prob[p]);
  }
  const int64_t nv = (int64_t)valid_p.size();
  double thr = INFINITY;  // PaddleSeg applies the kept-mask only inside `if min_kept > 0`
  if (min_kept > 0 && min_kept < nv && nv > 0) {
    std::sort(valid_p.begin(), valid_p.end());
    const double pk = valid_p[(size_t)(min_kept - 1)];
    thr = pk > thresh ? pk : thresh;
  }
  double s = 0;
  int64_t kept = 0;
  for (int64_t p = 0; p < P; ++p) {
    if ((int64_t)y[p] == ignore) continue;
    if (std::isinf(thr) || prob[p] < thr) {
      s += nll[p];
      ++kept;
    }
  }
  return s / ((double)kept + 1e-5 * (double)P);
}

// Labels in [0, C) with about `ignore_frac` of them ignore_index (255).
std::vector<float> make_labels(int64_t n, int64_t C, double ignore_frac, uint64_t seed) {
  std::vector<float> v((size_t)n);
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t h = mix(seed * 1000003 + (uint64_t)i);
    v[(size_t)i] = unit(h) < ignore_frac ? 255.f : (float)(h % (uint64_t)C);
  }
  return v;
}

void check_ce(const std::string& name, const Shape& xs, double ignore_frac, bool weighted) {
  const int64_t C = xs.back();
  Shape ys(xs.begin(), xs.end() - 1);
  std::vector<Shape> shapes = {xs, ys};
  if (weighted) shapes.push_back({C});
  CheckOptions o;
  o.differentiable = {true, false, false};
  o.input_gen = [C, ignore_frac](int input, const Shape& s, uint64_t seed) {
    const int64_t n = shape_numel(s);
    if (input == 1) return make_labels(n, C, ignore_frac, seed);
    std::vector<float> v((size_t)n);
    for (int64_t i = 0; i < n; ++i)
      v[(size_t)i] = input == 0 ? (float)(unit(seed * 77 + (uint64_t)i) * 6 - 3)
                                : (float)(0.25 + 2 * unit(seed + 99 * (uint64_t)i));
    return v;
  };
  check_op(
      name, {{name, shapes}},
      [weighted](const std::vector<Tensor>& in) {
        const Tensor y = in[1].to(DType::I64);
        return std::vector<Tensor>{cross_entropy(in[0], y, weighted ? in[2] : Tensor(), 255)};
      },
      [C, weighted](const RefInputs& in, const std::vector<Shape>&) {
        return std::vector<std::vector<double>>{{ce_ref(in[0], in[1], weighted ? &in[2] : nullptr, C, 255)}};
      },
      o);
}

}  // namespace

TEST(CrossEntropy, TwoClassesWithIgnore) { check_ce("ce_c2", {2, 3, 5, 2}, 0.2, false); }
TEST(CrossEntropy, NineteenClasses) { check_ce("ce_c19", {1, 4, 7, 19}, 0.1, false); }
TEST(CrossEntropy, ClassWeights) {
  check_ce("ce_weighted_c19", {2, 3, 3, 19}, 0.15, true);
  check_ce("ce_weighted_c2", {1, 5, 5, 2}, 0.3, true);
}
TEST(CrossEntropy, ManyTilesAndOddSizes) {
  check_ce("ce_tiles", {1, 17, 19, 3}, 0.1, false);       // 323 pixels: two 256-pixel tiles of the CUDA
                                                          // backward (the CUDA forward's C = 3 tile: 384)
  check_ce("ce_2d", {7, 5}, 0.0, false);                  // [N, C]
  check_ce("ce_c1", {2, 1, 3, 1}, 0.2, false);            // one class: zero loss
  check_ce("ce_unstaged_c45", {1, 3, 5, 45}, 0.1, true);  // C above the shared-memory staging limit
}

TEST(CrossEntropy, AllIgnoredGivesZero) {
  for (Device d : devices()) {
    Tensor x = Tensor::uniform({2, 3, 4, 5}, 3, -2.f, 2.f, d).set_requires_grad(true);
    Tensor y = Tensor::from_vector_i64(std::vector<int64_t>(24, 255), {2, 3, 4}, d);
    Tensor l = cross_entropy(x, y, Tensor(), 255);
    EXPECT_EQ(l.shape(), Shape{});
    EXPECT_EQ(l.item(), 0.f) << d.str();
    l.backward();
    for (float g : x.grad().to_vector()) EXPECT_EQ(g, 0.f);
    Tensor lo = ohem_cross_entropy(x, y, 0.7f, 3, 255);
    EXPECT_EQ(lo.item(), 0.f) << d.str();
  }
}

TEST(CrossEntropy, IgnoreIndexInsideClassRange) {
  // ignore_index = 1 with C = 3: pixels labelled 1 are ignored, others count.
  const std::vector<float> xv = {0.1f, 0.5f, -0.3f, 1.0f, 0.2f, 0.3f, -1.f, 2.f, 0.f};
  const std::vector<double> xd(xv.begin(), xv.end());
  const double want = ce_ref(xd, {0, 1, 2}, nullptr, 3, 1);
  for (Device d : devices()) {
    Tensor l =
        cross_entropy(Tensor::from_vector(xv, {3, 3}, d), Tensor::from_vector_i64({0, 1, 2}, {3}, d), Tensor(), 1);
    EXPECT_NEAR(l.item(), want, 1e-6) << d.str();
  }
}

TEST(CrossEntropy, StridedLabels) {
  for (Device d : devices()) {
    Tensor x = Tensor::uniform({2, 4, 3}, 5, -2.f, 2.f, d);
    Tensor ywide = Tensor::from_vector_i64({0, 9, 1, 9, 2, 9, 255, 9, 1, 9, 0, 9, 2, 9, 2, 9}, {2, 8}, d);
    Tensor y = ywide.slice(1, 0, 8, 2);
    Tensor yc = Tensor::from_vector_i64({0, 1, 2, 255, 1, 0, 2, 2}, {2, 4}, d);
    EXPECT_EQ(cross_entropy(x, y).item(), cross_entropy(x, yc).item());
  }
}

TEST(CrossEntropy, BadInputs) {
  for (Device d : devices()) {
    Tensor x = Tensor::uniform({1, 2, 3, 4}, 1, -1.f, 1.f, d);
    Tensor y_ok = Tensor::from_vector_i64({0, 1, 2, 3, 255, 0}, {1, 2, 3}, d);
    Tensor y_bad = Tensor::from_vector_i64({0, 1, 7, 3, 255, -1}, {1, 2, 3}, d);
    try {
      cross_entropy(x, y_bad);
      ADD_FAILURE() << "expected an error";
    } catch (const Error& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find("cross_entropy"), std::string::npos) << m;
      EXPECT_NE(m.find("2 value(s)"), std::string::npos) << m;
      EXPECT_NE(m.find("first is 7"), std::string::npos) << m;
      EXPECT_NE(m.find("[0, 0, 2]"), std::string::npos) << m;
    }
    EXPECT_THROW(ohem_cross_entropy(x, y_bad, 0.7f, 1), Error);
    EXPECT_THROW(cross_entropy(x, y_ok.to(DType::F32)), Error);                          // labels dtype
    EXPECT_THROW(cross_entropy(x.to(DType::I32), y_ok), Error);                          // logits dtype
    EXPECT_THROW(cross_entropy(x, Tensor::from_vector_i64({0, 1}, {1, 2}, d)), Error);   // shape
    EXPECT_THROW(cross_entropy(x, y_ok, Tensor::full({3}, 1.f, DType::F32, d)), Error);  // weight shape
    EXPECT_THROW(cross_entropy(Tensor::empty({0, 4}, DType::F32, d), Tensor::empty({0}, DType::I64, d)), Error);
    EXPECT_THROW(ohem_cross_entropy(x, y_ok, NAN, 1), Error);
    EXPECT_THROW(ohem_cross_entropy(x, y_ok, 0.7f, -1), Error);
  }
  if (have_cuda()) {
    Tensor x = Tensor::uniform({2, 3}, 1, -1.f, 1.f, Device::cpu());
    Tensor y = Tensor::from_vector_i64({0, 1}, {2}, Device::cuda(0));
    EXPECT_THROW(cross_entropy(x, y), Error);  // devices differ
  }
}

// ---------------------------------------------------------------------------- OHEM
namespace {

// Logits whose true-class probabilities are well separated (FD-safe for the selection): pixel i has
// x[true] = a_i (a permutation of an even grid) and x[c] = 0.1 c elsewhere.
std::vector<float> ohem_logits(const Shape& s, const std::vector<float>& labels, uint64_t seed) {
  const int64_t C = s.back(), P = shape_numel(s) / C;
  std::vector<int64_t> perm((size_t)P);
  std::iota(perm.begin(), perm.end(), 0);
  for (int64_t i = P - 1; i > 0; --i)
    std::swap(perm[(size_t)i], perm[(size_t)(mix(seed + (uint64_t)i) % (uint64_t)(i + 1))]);
  std::vector<float> v((size_t)(P * C));
  for (int64_t p = 0; p < P; ++p) {
    const int64_t y = (int64_t)labels[(size_t)p];
    for (int64_t c = 0; c < C; ++c) v[(size_t)(p * C + c)] = 0.1f * (float)c;
    const float a = -3.f + 7.f * (float)perm[(size_t)p] / (float)P;
    v[(size_t)(p * C + (y >= 0 && y < C ? y : 0))] = a;
  }
  return v;
}

void check_ohem(const std::string& name, const Shape& xs, double ignore_frac, float thresh, int64_t min_kept) {
  const int64_t C = xs.back();
  Shape ys(xs.begin(), xs.end() - 1);
  CheckOptions o;
  o.differentiable = {true, false};
  o.input_gen = [C, ignore_frac, xs, ys](int input, const Shape&, uint64_t seed) {
    const auto lab = make_labels(shape_numel(ys), C, ignore_frac, seed);
    return input == 1 ? lab : ohem_logits(xs, lab, seed);
  };
  check_op(
      name, {{name, {xs, ys}}},
      [thresh, min_kept](const std::vector<Tensor>& in) {
        return std::vector<Tensor>{ohem_cross_entropy(in[0], in[1].to(DType::I64), thresh, min_kept, 255)};
      },
      [C, thresh, min_kept](const RefInputs& in, const std::vector<Shape>&) {
        return std::vector<std::vector<double>>{{ohem_ref(in[0], in[1], C, thresh, min_kept, 255)}};
      },
      o);
}

}  // namespace

// Shapes past the kernels' fast paths: more than 256 classes (the CPU's one-pixel-at-a-time path),
// more than 8192 pixels (the multi-threaded CPU paths) and, for OHEM, the CPU's two selections (they
// run only when fewer than min_kept valid pixels lie below the threshold): the sampled bracket, which
// needs at least 64 candidates among every 256th pixel (so at least 16384 pixels), and the radix
// select it falls back to. The value against the double reference on every device, the gradient of
// every device against the CPU's.
static void check_large(const Shape& xs, bool ohem, float thresh, int64_t min_kept) {
  const int64_t C = xs.back(), P = shape_numel(xs) / C;
  const std::vector<float> lab = make_labels(P, C, 0.05, 11);
  const std::vector<float> x = ohem ? ohem_logits(xs, lab, 12) : [&] {
    std::vector<float> v((size_t)(P * C));
    for (size_t i = 0; i < v.size(); ++i) v[i] = (float)(unit(13 * 1000003 + i) * 8 - 4);
    return v;
  }();
  const std::vector<double> xd(x.begin(), x.end()), yd(lab.begin(), lab.end());
  const double want = ohem ? ohem_ref(xd, yd, C, thresh, min_kept, 255) : ce_ref(xd, yd, nullptr, C, 255);
  std::vector<float> cpu_grad;
  for (Device d : devices()) {
    Tensor logits = Tensor::from_vector(x, xs, d).set_requires_grad(true);
    Shape ys(xs.begin(), xs.end() - 1);
    const Tensor labels = Tensor::from_vector(lab, ys, d).to(DType::I64);
    Tensor loss = ohem ? ohem_cross_entropy(logits, labels, thresh, min_kept, 255) : cross_entropy(logits, labels);
    EXPECT_NEAR(loss.item(), want, 2e-5 * std::fabs(want) + 1e-6) << d.str() << " " << shape_str(xs);
    loss.backward();
    const std::vector<float> g = logits.grad().to_vector();
    if (d.is_cpu()) {
      cpu_grad = g;
    } else {
      for (size_t i = 0; i < g.size(); ++i)
        ASSERT_NEAR(g[i], cpu_grad[i], 1e-6f + 1e-4f * std::fabs(cpu_grad[i])) << d.str() << " grad " << i;
    }
  }
}

TEST(CrossEntropy, LargeShapesPastTheFastPaths) {
  check_large({1, 3, 5, 300}, false, 0, 0);    // C > 256
  check_large({2, 80, 110, 2}, false, 0, 0);   // 17600 pixels, two classes
  check_large({1, 70, 130, 19}, false, 0, 0);  // 9100 pixels, 19 classes
}

TEST(Ohem, LargeShapesPastTheFastPaths) {
  // 18200 pixels, about 11500 of the 17400 valid ones below 0.7 > min_kept: no selection, the
  // threshold stays 0.7 (the multi-threaded masked sum)
  check_large({1, 130, 140, 3}, true, 0.7f, 5000);
  // threshold raised to the k-th probability: selection on 18200 pixels, by the sampled bracket
  check_large({1, 130, 140, 19}, true, 0.001f, 9000);
  // selection on 9100 pixels: under 64 samples, so the bracket gives up and the (multi-threaded)
  // radix select runs
  check_large({1, 70, 130, 19}, true, 0.001f, 5000);
}

TEST(Ohem, NoMiningWhenFewValid) { check_ohem("ohem_no_mining", {2, 4, 5, 19}, 0.3, 0.7f, 1000); }
TEST(Ohem, ThresholdRaisedToKth) {
  // min_kept close to num_valid: fewer than min_kept pixels below 0.7, so the threshold becomes the
  // min_kept-th smallest probability (the radix select runs on CUDA).
  check_ohem("ohem_kth", {1, 6, 7, 19}, 0.1, 0.05f, 30);
  check_ohem("ohem_kth_low_thresh", {2, 5, 5, 3}, 0.2, 0.05f, 11);
  check_ohem("ohem_kth_tiles", {1, 19, 17, 2}, 0.05, 0.3f, 250);  // 323 pixels
}
TEST(Ohem, ThreshBound) { check_ohem("ohem_thresh", {1, 6, 7, 19}, 0.1, 0.7f, 3); }
TEST(Ohem, MinKeptZero) { check_ohem("ohem_min_kept_0", {2, 3, 5, 4}, 0.1, 0.5f, 0); }

TEST(Ohem, TiesAtKthAreDropped) {
  // p_gt of the 6 pixels: one low, three identical, two high. min_kept = 3 -> p_(3) is the tied
  // value > thresh, so threshold = p_(3) and the strict "<" keeps only the low pixel.
  const int64_t C = 4;
  const std::vector<std::vector<float>> rows = {{0.f, 3.f, 0.f, 0.f},  {-1.f, 0.f, 0.f, 0.f}, {-1.f, 0.f, 0.f, 0.f},
                                                {-1.f, 0.f, 0.f, 0.f}, {-3.f, 0.f, 0.f, 0.f}, {0.f, 5.f, 0.f, 0.f}};
  const std::vector<int64_t> y = {1, 0, 0, 0, 0, 255};
  std::vector<float> x;
  for (const auto& r : rows) x.insert(x.end(), r.begin(), r.end());
  const std::vector<double> xd(x.begin(), x.end()), yd(y.begin(), y.end());
  const double want = ohem_ref(xd, yd, C, 0.05, 3, 255);
  // By hand: pixel 4 (x = -3 vs three zeros) has the lowest p and is the only one kept.
  const double nll4 = std::log(std::exp(-3.0) + 3.0) + 3.0;
  EXPECT_NEAR(want, nll4 / (1 + 6e-5), 1e-12);
  for (Device d : devices()) {
    Tensor xt = Tensor::from_vector(x, {6, C}, d).set_requires_grad(true);
    Tensor l = ohem_cross_entropy(xt, Tensor::from_vector_i64(y, {6}, d), 0.05f, 3, 255);
    EXPECT_NEAR(l.item(), want, 1e-6) << d.str();
    l.backward();
    const auto g = xt.grad().to_vector();
    for (int64_t i = 0; i < 6 * C; ++i) {
      if (i / C != 4) {
        EXPECT_EQ(g[(size_t)i], 0.f) << "element " << i << " on " << d.str();
      }
    }
  }
}

TEST(Ohem, MatchesCeWhenEverythingKept) {
  // thresh > 1 keeps every valid pixel: OHEM = sum nll / (#valid + 1e-5 P).
  for (Device d : devices()) {
    Tensor x = Tensor::uniform({2, 5, 3, 6}, 8, -2.f, 2.f, d);
    const auto lab = make_labels(30, 6, 0.2, 4);
    std::vector<int64_t> li(lab.begin(), lab.end());
    Tensor y = Tensor::from_vector_i64(li, {2, 5, 3}, d);
    const std::vector<float> xv = x.to_vector();
    const std::vector<double> xd(xv.begin(), xv.end()), yd(lab.begin(), lab.end());
    EXPECT_NEAR(ohem_cross_entropy(x, y, 1.5f, 2).item(), ohem_ref(xd, yd, 6, 1.5, 2, 255), 1e-5);
  }
}

// ---------------------------------------------------------------------------- 16-bit logits
// bf16 / f16 logits (O2): the loss is the f32 op's on the widened values, bit for bit, and the
// gradient is the f32 op's gradient rounded once to the logits' type. Shapes: 2 classes (the C == 2
// path), 19 over 3 full 16-pixel tiles plus a partial one, 300 classes (one pixel at a time); CE with
// and without class weights, and OHEM with the threshold raised to the k-th probability.
TEST(CrossEntropy, LowPrecisionLogitsMatchWidenedF32) {
  struct Case {
    Shape xs;
    bool ohem, weighted;
  };
  const std::vector<Case> cases = {{{2, 5, 7, 2}, false, false},
                                   {{1, 7, 9, 19}, false, false},
                                   {{1, 7, 9, 19}, false, true},
                                   {{1, 7, 9, 19}, true, false},
                                   {{1, 2, 3, 300}, false, false},
                                   {{1, 2, 3, 300}, true, false},
                                   // 850 pixels: 7 staged tiles, several per block on the emulated GPU
                                   {{2, 25, 17, 19}, true, false}};
  for (Device d : devices()) {
    for (const DType low : {DType::BF16, DType::F16}) {
      for (const Case& c : cases) {
        SCOPED_TRACE(std::string(dtype_name(low)) + " logits " + shape_str(c.xs) + (c.ohem ? " ohem" : " ce") +
                     (c.weighted ? " weighted" : "") + " on " + d.str());
        const int64_t C = c.xs.back(), P = shape_numel(c.xs) / C;
        const auto lab = make_labels(P, C, 0.1, 5);
        const Tensor y = Tensor::from_vector_i64(std::vector<int64_t>(lab.begin(), lab.end()),
                                                 Shape(c.xs.begin(), c.xs.end() - 1), d);
        const Tensor w = c.weighted ? Tensor::uniform({C}, 6, 0.5f, 2.f, d) : Tensor();
        const Tensor x32 = Tensor::uniform(c.xs, 7, -4.f, 4.f, d);
        // Two f32 leaves holding the low type's values: one reaches the loss through a cast to the
        // low type (whose backward widens the low gradient exactly), the other directly.
        Tensor xa = x32.to(low).to(DType::F32).set_requires_grad(true);
        Tensor xb = xa.detach().clone().set_requires_grad(true);
        auto loss = [&](const Tensor& x) {
          return c.ohem ? ohem_cross_entropy(x, y, 0.05f, P / 2, 255) : cross_entropy(x, y, w, 255);
        };
        const Tensor xl = xa.to(low);
        ASSERT_EQ(xl.dtype(), low);
        Tensor ll = loss(xl), lw = loss(xb);
        EXPECT_EQ(ll.dtype(), DType::F32);
        EXPECT_EQ(ll.item(), lw.item());
        ll.backward();
        lw.backward();
        const std::vector<float> got = xa.grad().to_vector(), want = xb.grad().to(low).to_vector();
        size_t differ = 0;
        for (size_t i = 0; i < got.size(); ++i) differ += got[i] != want[i];
        EXPECT_EQ(differ, 0u) << "gradient elements that are not the f32 gradient rounded once";
        EXPECT_GT(std::count_if(got.begin(), got.end(), [](float v) { return v != 0.f; }), (long)P)
            << "the gradient is mostly zero";
      }
    }
  }
}

// upsampled_cross_entropy / upsampled_ohem_cross_entropy: the loss and the small logits' gradient
// are the bits of the unfused resize_bilinear + loss in every storage type, on each device. Cases:
// PP-LiteSeg's x8 (C = 19), several 4096-pixel chunks whose boundaries cut output rows (odd sizes,
// non-integer ratios), C = 2 (its own tile path), C = 300 (one pixel at a time), a downsampling,
// class weights and OHEM with mining; output widths that are multiples of 16 (the CPU forward's rows
// kept in the lanes view) and others, for CE, weighted CE, OHEM and C = 2; 2 x 32800 output rows (more
// than one CUDA grid's 65535 rows; f32 only: the row striding does not depend on the type, and each
// run is 65535 emulated blocks).
TEST(UpsampledCrossEntropy, MatchesResizeThenLossBitForBit) {
  struct Case {
    Shape xs;
    int64_t H, W;
    bool ohem, weighted;
    bool f32_only = false;
  };
  const std::vector<Case> cases = {{{1, 8, 8, 19}, 64, 64, false, false}, {{2, 9, 11, 19}, 70, 83, false, true},
                                   {{2, 9, 11, 19}, 70, 83, true, false}, {{2, 5, 7, 2}, 37, 29, false, false},
                                   {{1, 2, 3, 300}, 5, 7, true, false},   {{1, 9, 10, 4}, 4, 5, false, false},
                                   {{2, 4, 4, 19}, 32, 32, true, false},  {{2, 9, 11, 19}, 70, 80, false, true},
                                   {{2, 9, 11, 19}, 70, 80, true, false}, {{2, 6, 6, 2}, 70, 96, false, false},
                                   {{1, 5, 6, 5}, 33, 48, false, false},  {{2, 3, 1, 3}, 32800, 1, true, false, true}};
  for (Device d : devices()) {
    for (const DType dt : {DType::F32, DType::BF16, DType::F16}) {
      for (const Case& c : cases) {
        if (c.f32_only && dt != DType::F32) continue;
        SCOPED_TRACE(std::string(dtype_name(dt)) + " logits " + shape_str(c.xs) + " to " + std::to_string(c.H) + "x" +
                     std::to_string(c.W) + (c.ohem ? " ohem" : " ce") + (c.weighted ? " weighted" : "") + " on " +
                     d.str());
        const int64_t N = c.xs[0], C = c.xs[3], P = N * c.H * c.W;
        const auto lab = make_labels(P, C, 0.1, 11);
        const Tensor y = Tensor::from_vector_i64(std::vector<int64_t>(lab.begin(), lab.end()), {N, c.H, c.W}, d);
        const Tensor w = c.weighted ? Tensor::uniform({C}, 12, 0.5f, 2.f, d) : Tensor();
        const Tensor x0 = Tensor::uniform(c.xs, 13, -4.f, 4.f, d).to(dt).to(DType::F32);
        Tensor xa = x0.clone().set_requires_grad(true), xb = x0.clone().set_requires_grad(true);
        Tensor fused, unfused;
        if (c.ohem) {
          fused = upsampled_ohem_cross_entropy(xa.to(dt), y, 0.05f, P / 2, 255);
          unfused = ohem_cross_entropy(resize_bilinear(xb.to(dt), (int)c.H, (int)c.W, false), y, 0.05f, P / 2, 255);
        } else {
          fused = upsampled_cross_entropy(xa.to(dt), y, w, 255);
          unfused = cross_entropy(resize_bilinear(xb.to(dt), (int)c.H, (int)c.W, false), y, w, 255);
        }
        const float lf = fused.item(), lu = unfused.item();
        EXPECT_EQ(0, std::memcmp(&lf, &lu, 4)) << "loss " << lf << " against " << lu;
        fused.backward();
        unfused.backward();
        const std::vector<float> ga = xa.grad().to_vector(), gb = xb.grad().to_vector();
        ASSERT_EQ(ga.size(), gb.size());
        size_t differ = 0;
        for (size_t i = 0; i < ga.size(); ++i) differ += std::memcmp(&ga[i], &gb[i], 4) != 0;
        EXPECT_EQ(differ, 0u) << "gradient elements differ";
        EXPECT_GT(std::count_if(ga.begin(), ga.end(), [](float v) { return v != 0.f; }), (long)(ga.size() / 2))
            << "the gradient is mostly zero";
      }
    }
  }
}

TEST(UpsampledCrossEntropy, BadInputs) {
  auto expect_msg = [](const std::function<void()>& f, const std::vector<std::string>& parts) {
    try {
      f();
      ADD_FAILURE() << "expected an error";
    } catch (const Error& e) {
      const std::string m = e.what();
      for (const std::string& p : parts) EXPECT_NE(m.find(p), std::string::npos) << m;
    }
  };
  const Tensor x = Tensor::uniform({2, 4, 4, 3}, 1, -1.f, 1.f);
  auto labels = [](const Shape& s) { return Tensor::zeros(s, DType::I64); };
  expect_msg([&] { upsampled_cross_entropy(x, labels({2, 16})); }, {"upsampled_cross_entropy", "labels"});
  expect_msg(
      [&] {
        upsampled_cross_entropy(x, Tensor::zeros({2, 16, 16}));
      },
      {"upsampled_cross_entropy", "labels must be i64"});
  expect_msg(
      [&] {
        upsampled_cross_entropy(x, labels({3, 16, 16}));
      },
      {"upsampled_cross_entropy", "labels", "N of logits"});
  expect_msg(
      [&] {
        upsampled_ohem_cross_entropy(Tensor::uniform({2, 4, 3}, 1, -1.f, 1.f), labels({2, 16, 16}));
      },
      {"upsampled_ohem_cross_entropy", "logits must be [N, h, w, C]"});
  std::vector<int64_t> lab(2 * 16 * 16, 1);
  lab[37] = 7;
  expect_msg(
      [&] {
        upsampled_cross_entropy(x, Tensor::from_vector_i64(lab, {2, 16, 16}));
      },
      {"upsampled_cross_entropy", "outside [0, 3)", "the first is 7"});
}

// ---------------------------------------------------------------------------- pointwise losses
namespace {

std::vector<OpCase> point_cases(bool weighted) {
  auto c = [weighted](std::string n, Shape s) {
    std::vector<Shape> v = {s, s};
    if (weighted) v.push_back(s);
    return OpCase{n, v};
  };
  return {c("scalar", {1}), c("odd", {1031}), c("yolo_like", {2, 3, 5, 17}), c("size1", {1, 7, 1, 3})};
}

}  // namespace

TEST(BceWithLogits, ExtremesAndWeights) {
  for (bool weighted : {false, true}) {
    CheckOptions o;
    o.differentiable = {true, false, false};
    o.input_gen = [](int input, const Shape& s, uint64_t seed) {
      const int64_t n = shape_numel(s);
      std::vector<float> v((size_t)n);
      const float ext[] = {50.f, -50.f, 20.f, -20.f, 0.f, 1e-4f};
      for (int64_t i = 0; i < n; ++i) {
        const double u = unit(seed * 31 + (uint64_t)i + 1000 * (uint64_t)input);
        if (input == 0)
          v[(size_t)i] = i % 5 == 0 ? ext[(i / 5) % 6] : (float)(u * 12 - 6);
        else if (input == 1)
          v[(size_t)i] = i % 3 == 0 ? (float)(i % 2) : (float)u;  // hard and soft targets
        else
          v[(size_t)i] = (float)(0.1 + 2 * u);
      }
      return v;
    };
    check_op(
        weighted ? "bce_with_logits_w" : "bce_with_logits", point_cases(weighted),
        [weighted](const std::vector<Tensor>& in) {
          return std::vector<Tensor>{bce_with_logits(in[0], in[1], weighted ? in[2] : Tensor())};
        },
        [weighted](const RefInputs& in, const std::vector<Shape>&) {
          double s = 0;
          for (size_t i = 0; i < in[0].size(); ++i) {
            const double x = in[0][i], t = in[1][i];
            const double l = std::max(x, 0.0) - x * t + std::log1p(std::exp(-std::fabs(x)));
            s += weighted ? l * in[2][i] : l;
          }
          return std::vector<std::vector<double>>{{s / (double)in[0].size()}};
        },
        o);
  }
}

TEST(BinaryCrossEntropy, Interior) {
  CheckOptions o;
  o.differentiable = {true, false, false};
  o.input_gen = [](int input, const Shape& s, uint64_t seed) {
    std::vector<float> v((size_t)shape_numel(s));
    for (size_t i = 0; i < v.size(); ++i) {
      const double u = unit(seed * 17 + i + 7777 * (uint64_t)input);
      v[i] = input == 0 ? (float)(0.03 + 0.94 * u) : input == 1 ? (float)u : (float)(0.5 + u);
    }
    return v;
  };
  check_op(
      "binary_cross_entropy", point_cases(true),
      [](const std::vector<Tensor>& in) { return std::vector<Tensor>{binary_cross_entropy(in[0], in[1], in[2])}; },
      [](const RefInputs& in, const std::vector<Shape>&) {
        double s = 0;
        for (size_t i = 0; i < in[0].size(); ++i) {
          const double p = in[0][i], t = in[1][i];
          s += -in[2][i] * (t * std::log(p) + (1 - t) * std::log(1 - p));
        }
        return std::vector<std::vector<double>>{{s / (double)in[0].size()}};
      },
      o);
}

TEST(BinaryCrossEntropy, ProbabilitiesAtZeroAndOne) {
  // log(0) is clamped to -100 (Paddle and PyTorch); grad = (p - t) / max(p(1-p), 1e-12).
  const std::vector<float> p = {0.f, 1.f, 0.f, 1.f, 0.5f};
  const std::vector<float> t = {0.f, 1.f, 1.f, 0.f, 0.25f};
  const double l4 = -(0.25 * std::log(0.5) + 0.75 * std::log(0.5));
  const double want = (0 + 0 + 100 + 100 + l4) / 5;
  for (Device d : devices()) {
    Tensor pt = Tensor::from_vector(p, {5}, d).set_requires_grad(true);
    Tensor l = binary_cross_entropy(pt, Tensor::from_vector(t, {5}, d), Tensor());
    EXPECT_NEAR(l.item(), want, 1e-5) << d.str();
    l.backward();
    const auto g = pt.grad().to_vector();
    const float want_g[] = {0.f, 0.f, -1e12f / 5, 1e12f / 5, (float)((0.5 - 0.25) / 0.25 / 5)};
    for (int i = 0; i < 5; ++i) EXPECT_NEAR(g[(size_t)i], want_g[i], 1e-6 * std::fabs(want_g[i]) + 1e-7) << i;
    EXPECT_THROW(binary_cross_entropy(Tensor::from_vector({0.5f, 1.5f}, {2}, d),
                                      Tensor::from_vector({0.f, 1.f}, {2}, d), Tensor()),
                 Error);
    EXPECT_THROW(binary_cross_entropy(Tensor::from_vector({0.5f, NAN}, {2}, d), Tensor::from_vector({0.f, 1.f}, {2}, d),
                                      Tensor()),
                 Error);
  }
}

TEST(L1Loss, MeanAbs) {
  CheckOptions o;
  o.input_gen = [](int input, const Shape& s, uint64_t seed) {
    std::vector<float> v((size_t)shape_numel(s));
    for (size_t i = 0; i < v.size(); ++i) {
      const float a = (float)(unit(seed * 13 + i) * 4 - 2);
      const float off = (float)(0.05 + unit(seed * 29 + i)) * (i % 2 ? 1.f : -1.f);  // |a - b| >= 0.05
      v[i] = input == 0 ? a : a + off;
    }
    return v;
  };
  check_op(
      "l1_loss", point_cases(false),
      [](const std::vector<Tensor>& in) { return std::vector<Tensor>{l1_loss(in[0], in[1])}; },
      [](const RefInputs& in, const std::vector<Shape>&) {
        double s = 0;
        for (size_t i = 0; i < in[0].size(); ++i) s += std::fabs(in[0][i] - in[1][i]);
        return std::vector<std::vector<double>>{{s / (double)in[0].size()}};
      },
      o);
}

TEST(PointLosses, BadInputs) {
  for (Device d : devices()) {
    Tensor a = Tensor::uniform({2, 3}, 1, -1.f, 1.f, d);
    EXPECT_THROW(bce_with_logits(a, Tensor::uniform({3, 2}, 2, 0.f, 1.f, d), Tensor()), Error);
    EXPECT_THROW(bce_with_logits(a, a, Tensor::uniform({6}, 2, 0.f, 1.f, d)), Error);
    EXPECT_THROW(l1_loss(a, a.to(DType::F16)), Error);
    EXPECT_THROW(l1_loss(Tensor::empty({0}, DType::F32, d), Tensor::empty({0}, DType::F32, d)), Error);
  }
}
