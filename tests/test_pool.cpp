// labels: kernel
// Pooling over NHWC: avg_pool2d (exclusive and inclusive), max_pool2d (ties, padding as -inf, NaN),
// adaptive_avg_pool2d (1, 2, 4, 7->4, non-divisible and upsampling bins) and global_avg_pool2d,
// forward and backward, against naive double references and finite differences; check_op also
// compares the emulated CUDA device with the CPU, strided inputs, guard bytes and determinism.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <numeric>

#include "engine/ops/pool.h"
#include "tests/harness/op_check.h"

using namespace engine;
using namespace engine::testing;

namespace {

enum class Kind { AvgExcl, AvgIncl, Max, Adaptive };

// Naive reference: x [N, H, W, C] row-major doubles -> y [N, Ho, Wo, C].
std::vector<double> pool_ref(const std::vector<double>& x, const Shape& s, Kind kind, int k, int st, int p, int oh,
                             int ow) {
  const int64_t N = s[0], H = s[1], W = s[2], C = s[3];
  if (kind != Kind::Adaptive) {
    oh = (int)((H + 2 * p - k) / st + 1);
    ow = (int)((W + 2 * p - k) / st + 1);
  }
  std::vector<double> y((size_t)(N * oh * ow * C));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t i = 0; i < oh; ++i)
      for (int64_t j = 0; j < ow; ++j)
        for (int64_t c = 0; c < C; ++c) {
          int64_t h0, h1, w0, w1;
          if (kind == Kind::Adaptive) {
            h0 = (int64_t)std::floor((double)i * H / oh);
            h1 = (int64_t)std::ceil((double)(i + 1) * H / oh);
            w0 = (int64_t)std::floor((double)j * W / ow);
            w1 = (int64_t)std::ceil((double)(j + 1) * W / ow);
          } else {
            h0 = i * st - p;
            h1 = h0 + k;
            w0 = j * st - p;
            w1 = w0 + k;
          }
          double acc = kind == Kind::Max ? -std::numeric_limits<double>::infinity() : 0.0;
          int64_t cnt = 0;
          for (int64_t h = h0; h < h1; ++h)
            for (int64_t w = w0; w < w1; ++w) {
              if (h < 0 || h >= H || w < 0 || w >= W) continue;  // padding
              const double v = x[(size_t)(((n * H + h) * W + w) * C + c)];
              if (kind == Kind::Max)
                acc = std::max(acc, v);
              else
                acc += v;
              ++cnt;
            }
          if (kind == Kind::AvgExcl || kind == Kind::Adaptive) acc /= (double)cnt;
          if (kind == Kind::AvgIncl) acc /= (double)(k * k);
          y[(size_t)(((n * oh + i) * ow + j) * C + c)] = acc;
        }
  return y;
}

// Windowed cases: odd sizes, a 1-row image, channel counts 1, 3, 17 (scalar path) and 8, 16 (float4).
std::vector<OpCase> window_cases() {
  return {{"c3_7x9", {{2, 7, 9, 3}}},
          {"c17_13x11", {{2, 13, 11, 17}}},
          {"c1_1x9", {{2, 1, 9, 1}}},
          {"c8_5x5", {{1, 5, 5, 8}}},
          {"c16_6x7", {{2, 6, 7, 16}}}};
}

void check_window_pool(const std::string& name, Kind kind, int k, int s, int p, CheckOptions o = {}) {
  std::vector<OpCase> cases;
  for (const OpCase& c : window_cases())
    if (c.shapes[0][1] + 2 * p >= k && c.shapes[0][2] + 2 * p >= k) cases.push_back(c);
  check_op(
      name, cases,
      [=](const std::vector<Tensor>& in) {
        Tensor y;
        switch (kind) {
          case Kind::AvgExcl:
            y = avg_pool2d(in[0], k, s, p, true);
            break;
          case Kind::AvgIncl:
            y = avg_pool2d(in[0], k, s, p, false);
            break;
          default:
            y = max_pool2d(in[0], k, s, p);
            break;
        }
        return std::vector<Tensor>{y};
      },
      [=](const RefInputs& in, const std::vector<Shape>& shapes) {
        return std::vector<std::vector<double>>{pool_ref(in[0], shapes[0], kind, k, s, p, 0, 0)};
      },
      o);
}

// Distinct values (a permutation of a grid with spacing >= 4/numel) so max pooling has no near-ties
// within the finite-difference step.
InputGen distinct_values() {
  return [](int, const Shape& shape, uint64_t seed) {
    const size_t n = (size_t)shape_numel(shape);
    std::vector<float> v(n);
    size_t mult = 7919 + 2 * (size_t)seed;
    while (std::gcd(mult, n) != 1) mult += 2;
    for (size_t i = 0; i < n; ++i) v[i] = -2.f + 4.f * (float)((i * mult + seed) % n) / (float)n;
    return v;
  };
}

}  // namespace

TEST(Pool, AvgPool3x3s2p1Exclusive) { check_window_pool("avg_pool2d_k3s2p1_excl", Kind::AvgExcl, 3, 2, 1); }
TEST(Pool, AvgPool3x3s2p1Inclusive) { check_window_pool("avg_pool2d_k3s2p1_incl", Kind::AvgIncl, 3, 2, 1); }
TEST(Pool, AvgPool2x2s2) { check_window_pool("avg_pool2d_k2s2p0", Kind::AvgExcl, 2, 2, 0); }
TEST(Pool, AvgPool3x3s1p1) { check_window_pool("avg_pool2d_k3s1p1", Kind::AvgExcl, 3, 1, 1); }
TEST(Pool, AvgPool5x5s3p2Inclusive) { check_window_pool("avg_pool2d_k5s3p2_incl", Kind::AvgIncl, 5, 3, 2); }

TEST(Pool, MaxPool3x3s2p1) {
  CheckOptions o;
  o.input_gen = distinct_values();
  o.fd_eps = 1e-4;
  check_window_pool("max_pool2d_k3s2p1", Kind::Max, 3, 2, 1, o);
}
TEST(Pool, MaxPool2x2s2) {
  CheckOptions o;
  o.input_gen = distinct_values();
  o.fd_eps = 1e-4;
  check_window_pool("max_pool2d_k2s2p0", Kind::Max, 2, 2, 0, o);
}
TEST(Pool, MaxPool3x3s1p1) {
  CheckOptions o;
  o.input_gen = distinct_values();
  o.fd_eps = 1e-4;
  check_window_pool("max_pool2d_k3s1p1", Kind::Max, 3, 1, 1, o);
}

TEST(Pool, AdaptiveAvgPool) {
  struct Out {
    int h, w;
  };
  for (const Out out : {Out{1, 1}, Out{2, 2}, Out{4, 4}, Out{3, 5}, Out{9, 11}}) {
    const std::string name = "adaptive_avg_pool2d_" + std::to_string(out.h) + "x" + std::to_string(out.w);
    check_op(
        name,
        {{"c3_7x9", {{2, 7, 9, 3}}},  // 7 -> 4: overlapping bins
         {"c17_13x11", {{2, 13, 11, 17}}},
         {"c8_16x16", {{2, 16, 16, 8}}},  // SPPM-like: 1/2/4 bins, block-per-output kernel for 1 and 2
         {"c1_5x1", {{1, 5, 1, 1}}}},
        [out](const std::vector<Tensor>& in) { return std::vector<Tensor>{adaptive_avg_pool2d(in[0], out.h, out.w)}; },
        [out](const RefInputs& in, const std::vector<Shape>& shapes) {
          return std::vector<std::vector<double>>{pool_ref(in[0], shapes[0], Kind::Adaptive, 0, 0, 0, out.h, out.w)};
        });
  }
}

TEST(Pool, GlobalAvgPool) {
  check_op(
      "global_avg_pool2d",
      {{"c17_13x11", {{2, 13, 11, 17}}},
       {"c3_7x9", {{2, 7, 9, 3}}},
       {"c32_9x8", {{2, 9, 8, 32}}},
       {"c1_1x1", {{3, 1, 1, 1}}}},
      [](const std::vector<Tensor>& in) {
        const Tensor y = global_avg_pool2d(in[0]);
        EXPECT_EQ(y.shape(), (Shape{in[0].size(0), 1, 1, in[0].size(3)}));
        return std::vector<Tensor>{y};
      },
      [](const RefInputs& in, const std::vector<Shape>& shapes) {
        return std::vector<std::vector<double>>{pool_ref(in[0], shapes[0], Kind::Adaptive, 0, 0, 0, 1, 1)};
      });
}

TEST(Pool, OutputShapes) {
  EXPECT_EQ(avg_pool2d(Tensor::zeros({2, 7, 9, 3}), 3, 2, 1).shape(), (Shape{2, 4, 5, 3}));
  EXPECT_EQ(avg_pool2d(Tensor::zeros({2, 8, 8, 3}), 3, 2, 1).shape(), (Shape{2, 4, 4, 3}));  // ceil(H/2), STDC
  EXPECT_EQ(max_pool2d(Tensor::zeros({2, 7, 9, 3}), 2, 2, 0).shape(), (Shape{2, 3, 4, 3}));
  EXPECT_EQ(adaptive_avg_pool2d(Tensor::zeros({2, 7, 9, 3}), 4, 2).shape(), (Shape{2, 4, 2, 3}));
  EXPECT_EQ(avg_pool2d(Tensor::zeros({0, 4, 4, 3}), 2, 2, 0).shape(), (Shape{0, 2, 2, 3}));
  EXPECT_EQ(global_avg_pool2d(Tensor::zeros({2, 4, 4, 0})).shape(), (Shape{2, 1, 1, 0}));
}

// Ties: the first cell of the window (row-major) wins and alone receives the gradient; padding is
// -inf for max (all-negative inputs do not become 0); a NaN propagates.
TEST(Pool, MaxPoolTiesPaddingAndNaN) {
  for (Device d : {Device::cpu(), have_cuda() ? Device::cuda(0) : Device::cpu()}) {
    Tensor x = Tensor::full({1, 2, 2, 1}, 3.f, DType::F32, d).set_requires_grad(true);
    max_pool2d(x, 2, 2, 0).backward(Tensor::full({1, 1, 1, 1}, 1.f, DType::F32, d));
    EXPECT_EQ(x.grad().to_vector(), (std::vector<float>{1.f, 0.f, 0.f, 0.f})) << d.str();

    const Tensor neg = Tensor::from_vector({-5, -4, -3, -2, -9, -6, -7, -8, -1}, {1, 3, 3, 1}, d);
    EXPECT_EQ(max_pool2d(neg, 3, 2, 1).to_vector(), (std::vector<float>{-2, -3, -2, -1})) << d.str();

    const Tensor nan = Tensor::from_vector({1, NAN, 2, 3}, {1, 2, 2, 1}, d);
    EXPECT_TRUE(std::isnan(max_pool2d(nan, 2, 2, 0).to_vector()[0])) << d.str();

    // Exclusive vs inclusive corner: 3x3 s2 p1 on a 2x2 image of ones.
    const Tensor ones = Tensor::full({1, 2, 2, 1}, 1.f, DType::F32, d);
    EXPECT_EQ(avg_pool2d(ones, 3, 2, 1, true).to_vector(), (std::vector<float>{1.f})) << d.str();
    EXPECT_NEAR(avg_pool2d(ones, 3, 2, 1, false).to_vector()[0], 4.f / 9.f, 1e-7) << d.str();
  }
}

namespace {
void expect_error(const std::function<void()>& f, const std::string& what) {
  try {
    f();
    ADD_FAILURE() << "expected an error containing '" << what << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
  }
}
}  // namespace

TEST(Pool, BadInputs) {
  const Tensor x = Tensor::zeros({2, 5, 5, 3});
  expect_error(
      [&] {
        avg_pool2d(Tensor::zeros({5, 5, 3}), 3, 2, 1);
      },
      "avg_pool2d: x must be a 4-D [N, H, W, C] tensor, got f32[5, 5, 3]");
  expect_error([&] { max_pool2d(x, 3, 2, 2); }, "max_pool2d: padding 2 must be at most half the kernel size 3");
  expect_error([&] { avg_pool2d(x, 0, 1, 0); }, "avg_pool2d: kernel, stride must be >= 1");
  expect_error([&] { max_pool2d(x, 3, 0, 1); }, "max_pool2d: kernel, stride must be >= 1");
  expect_error(
      [&] {
        avg_pool2d(Tensor::zeros({1, 2, 2, 3}), 5, 1, 1);
      },
      "avg_pool2d: kernel 5 is larger than the padded input");
  expect_error([&] { adaptive_avg_pool2d(x, 0, 2); }, "adaptive_avg_pool2d: output size must be >= 1");
  expect_error(
      [&] {
        global_avg_pool2d(Tensor::zeros({2, 0, 5, 3}));
      },
      "global_avg_pool2d: x f32[2, 0, 5, 3] on cpu has an empty spatial dimension");
  expect_error(
      [&] {
        max_pool2d(Tensor::zeros({2, 5, 5, 3}, DType::I64), 3, 2, 1);
      },
      "max_pool2d: argument 'x' must be f32");
}

// Large enough for the OpenMP paths on the CPU and many CUDA blocks: forward vs the reference,
// backward CPU vs CUDA.
TEST(Pool, LargerTensorsCpuVsCuda) {
  const Shape s{2, 64, 66, 16};
  const Tensor xh = Tensor::uniform(s, 31, -2.f, 2.f);
  const auto xv = xh.to_vector();
  const std::vector<double> x(xv.begin(), xv.end());
  struct Row {
    const char* name;
    std::function<Tensor(const Tensor&)> op;
    std::vector<double> ref;
  };
  const std::vector<Row> rows = {
      {"avg3s2", [](const Tensor& t) { return avg_pool2d(t, 3, 2, 1); }, pool_ref(x, s, Kind::AvgExcl, 3, 2, 1, 0, 0)},
      {"max3s2", [](const Tensor& t) { return max_pool2d(t, 3, 2, 1); }, pool_ref(x, s, Kind::Max, 3, 2, 1, 0, 0)},
      {"adaptive4", [](const Tensor& t) { return adaptive_avg_pool2d(t, 4, 4); },
       pool_ref(x, s, Kind::Adaptive, 0, 0, 0, 4, 4)},
      {"global", [](const Tensor& t) { return global_avg_pool2d(t); }, pool_ref(x, s, Kind::Adaptive, 0, 0, 0, 1, 1)},
  };
  for (const Row& r : rows) {
    std::vector<std::vector<float>> grads;
    for (Device d : {Device::cpu(), have_cuda() ? Device::cuda(0) : Device::cpu()}) {
      Tensor xt = xh.to(d).detach().set_requires_grad(true);
      const Tensor y = r.op(xt);
      const auto yv = y.to_vector();
      ASSERT_EQ(yv.size(), r.ref.size()) << r.name;
      double worst = 0;
      for (size_t i = 0; i < yv.size(); ++i) worst = worse_of(worst, std::fabs(yv[i] - r.ref[i]));
      EXPECT_LT(worst, 1e-5) << r.name << " on " << d.str();
      y.backward(Tensor::uniform(y.shape(), 32, -1.f, 1.f, d));
      grads.push_back(xt.grad().to_vector());
    }
    for (size_t i = 0; i < grads[0].size(); ++i) {
      ASSERT_NEAR(grads[0][i], grads.back()[i], 1e-5) << r.name << " dx[" << i << "]";
    }
  }
}

// bf16 / f16 storage (mixed precision): sums and comparisons are f32 and stores round once, so with
// inputs exact in the low type the outputs and input gradients equal the f32 op's rounded once, bit
// for bit: average (exclusive, inclusive, adaptive, global), max; channel counts on the vector (8)
// and scalar (3) paths; CPU and CUDA.
TEST(Pool, LowPrecisionIsTheF32ResultRoundedOnce) {
  const std::vector<Device> devices = test_devices();
  using Fn = std::function<Tensor(const Tensor&)>;
  const std::vector<std::pair<std::string, Fn>> ops = {
      {"avg 3x3 s2 p1 exclusive", [](const Tensor& x) { return avg_pool2d(x, 3, 2, 1, true); }},
      {"avg 3x3 s2 p1 inclusive", [](const Tensor& x) { return avg_pool2d(x, 3, 2, 1, false); }},
      {"adaptive 3x2", [](const Tensor& x) { return adaptive_avg_pool2d(x, 3, 2); }},
      {"global", [](const Tensor& x) { return global_avg_pool2d(x); }},
      {"max 3x3 s2 p1", [](const Tensor& x) { return max_pool2d(x, 3, 2, 1); }}};
  for (Device d : devices)
    for (DType dt : {DType::BF16, DType::F16})
      for (int64_t C : {8, 3})
        for (const auto& [name, fn] : ops) {
          const std::string what = name + " " + dtype_name(dt) + " on " + d.str() + " C " + std::to_string(C);
          SCOPED_TRACE(what);
          auto leaf = [&] {
            Tensor t = Tensor::uniform({2, 7, 9, C}, 1, -2.f, 2.f, d).to(dt).to(DType::F32).detach();
            t.set_requires_grad(true);
            return t;
          };
          const Tensor lo = leaf(), hi = leaf();
          const Tensor y = fn(lo.to(dt));
          ASSERT_EQ(y.dtype(), dt);
          const Tensor g = Tensor::uniform(y.shape(), 2, -1.f, 1.f, d).to(dt);
          y.backward(g);
          const Tensor y32 = fn(hi);
          y32.backward(g.to(DType::F32));
          expect_same_bits(y.to_vector(), y32.to(dt).to(DType::F32).to_vector(), what + " forward");
          expect_same_bits(lo.grad().to_vector(), hi.grad().to(dt).to(DType::F32).to_vector(), what + " backward");
        }
}
