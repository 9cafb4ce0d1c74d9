// labels: kernel
// softmax / log_softmax / argmax over the last and a middle axis: naive double references, finite
// differences, CPU vs CUDA device, strided inputs, guards, determinism (the harness); large logits
// (+-100, where a naive exp overflows); argmax ties and NaN; the exp/log approximations; bf16 / f16
// storage (the f32 results rounded once, bit for bit); errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "engine/ops/softmax.h"
#include "kernels/cpu/softmax_cpu.h"
#include "tests/harness/op_check.h"
#if defined(ENGINE_WITH_CUDA)
#include "base/cuda_context.h"
#include "kernels/cuda/softmax_cuda.h"
#endif

using namespace engine;
using namespace engine::testing;

namespace {

struct Geo {
  int64_t outer = 1, L = 1, inner = 1;
};
Geo geo(const Shape& s, int axis) {
  const int ax = axis < 0 ? axis + (int)s.size() : axis;
  Geo g;
  for (int d = 0; d < (int)s.size(); ++d) (d < ax ? g.outer : d == ax ? g.L : g.inner) *= s[(size_t)d];
  return g;
}

std::vector<double> ref_softmax(const std::vector<double>& x, const Shape& s, int axis, bool log_) {
  const Geo g = geo(s, axis);
  std::vector<double> y(x.size());
  for (int64_t o = 0; o < g.outer; ++o)
    for (int64_t i = 0; i < g.inner; ++i) {
      auto at = [&](int64_t l) { return (size_t)((o * g.L + l) * g.inner + i); };
      double m = -INFINITY;
      for (int64_t l = 0; l < g.L; ++l) m = std::max(m, x[at(l)]);
      double s = 0;
      for (int64_t l = 0; l < g.L; ++l) s += std::exp(x[at(l)] - m);
      for (int64_t l = 0; l < g.L; ++l) y[at(l)] = log_ ? x[at(l)] - m - std::log(s) : std::exp(x[at(l)] - m) / s;
    }
  return y;
}

struct AxisCase {
  std::string name;
  Shape shape;
  int axis;
};
const std::vector<AxisCase>& axis_cases() {
  static const std::vector<AxisCase> cs = {
      {"nhwc_c19", {2, 3, 5, 19}, -1},
      {"c2", {3, 4, 2}, -1},
      {"c5", {7, 5}, -1},
      {"c10", {3, 7, 10}, -1},  // even L that does not divide the block: the tile walk wraps rows
      {"c1", {2, 3, 1}, -1},
      {"c33", {3, 33}, -1},
      {"c100", {2, 100}, 1},
      {"middle_h", {2, 5, 3, 4}, 1},
      {"first", {3, 7, 6}, 0},
      {"middle_neg", {2, 4, 3, 5}, -2},
      {"size1", {1, 1, 1, 1}, -1},
      // Row-tile kernels across several tiles per block (the emulator's resident grid is 2 blocks):
      // 850 rows of 19 = 7 tiles of 128 rows, 5280 rows of 2 = 9 tiles of 640; the last tile partial.
      {"tiles_c19", {2, 25, 17, 19}, -1},
      {"tiles_c2", {4, 40, 33, 2}, -1}};
  return cs;
}

void check_softmax(bool log_, float range, CheckOptions opt = {}) {
  opt.lo = -range;
  opt.hi = range;
  for (const AxisCase& c : axis_cases()) {
    const int axis = c.axis;
    check_op(
        std::string(log_ ? "log_softmax/" : "softmax/") + c.name, {{c.name, {c.shape}}},
        [=](const std::vector<Tensor>& in) {
          return std::vector<Tensor>{log_ ? log_softmax(in[0], axis) : softmax(in[0], axis)};
        },
        [=](const RefInputs& in, const std::vector<Shape>& s) {
          return std::vector<std::vector<double>>{ref_softmax(in[0], s[0], axis, log_)};
        },
        opt);
  }
}

std::vector<double> ref_argmax(const std::vector<double>& x, const Shape& s, int axis) {
  const Geo g = geo(s, axis);
  std::vector<double> out((size_t)(g.outer * g.inner));
  for (int64_t o = 0; o < g.outer; ++o)
    for (int64_t i = 0; i < g.inner; ++i) {
      int64_t best = 0;
      for (int64_t l = 1; l < g.L; ++l)
        if (x[(size_t)((o * g.L + l) * g.inner + i)] > x[(size_t)((o * g.L + best) * g.inner + i)]) best = l;
      out[(size_t)(o * g.inner + i)] = (double)best;
    }
  return out;
}

}  // namespace

TEST(Softmax, Softmax) { check_softmax(false, 3.f); }
TEST(Softmax, LogSoftmax) { check_softmax(true, 3.f); }

TEST(Softmax, LargeLogitsAreStable) {
  CheckOptions o;
  o.fwd_rtol = 2e-5;
  o.device_rtol = 2e-5;
  o.fd_eps = 1e-4;
  check_softmax(false, 100.f, o);
  check_softmax(true, 100.f, o);
  const Tensor x = Tensor::from_vector({100, -100, 99, 1000, 1000, -1000}, {2, 3});
  for (Device d : {Device::cpu(), have_cuda() ? Device::cuda(0) : Device::cpu()}) {
    const auto p = softmax(x.to(d)).to_vector();
    EXPECT_NEAR(p[0], 1 / (1 + std::exp(-1.0)), 1e-6);
    EXPECT_EQ(p[1], 0.f);
    EXPECT_NEAR(p[3], 0.5, 1e-7);
    EXPECT_NEAR(p[4], 0.5, 1e-7);
    const auto l = log_softmax(x.to(d)).to_vector();
    EXPECT_NEAR(l[1], -200 - std::log(1 + std::exp(-1.0)), 1e-4);
    EXPECT_NEAR(l[5], -2000 - std::log(2.0), 1e-3);
  }
}

TEST(Softmax, NonFiniteFollowsIeee) {
  const Tensor x = Tensor::from_vector({0, -INFINITY, 1, NAN, 2, 3}, {2, 3});
  for (Device d : {Device::cpu(), have_cuda() ? Device::cuda(0) : Device::cpu()}) {
    const auto p = softmax(x.to(d)).to_vector();
    EXPECT_EQ(p[1], 0.f);  // -inf gets probability 0
    EXPECT_NEAR(p[0] + p[2], 1.0, 1e-6);
    for (int i = 3; i < 6; ++i) EXPECT_TRUE(std::isnan(p[i]));  // a NaN poisons its slice
  }
}

TEST(Softmax, ExpLogApproximations) {
  double worst_exp = 0, worst_log = 0;
  for (double v = -87.0; v <= 88.0; v += 0.0137) {
    const float f = (float)v;
    const double want = std::exp((double)f);
    worst_exp = worse_of(worst_exp, std::fabs(kernels::softmax_exp_f(f) - want) / want);
  }
  for (double v = 1e-30; v < 1e30; v *= 1.37) {
    const float f = (float)v;
    const double want = std::log((double)f);
    worst_log = worse_of(worst_log, std::fabs(kernels::softmax_log_f(f) - want) / std::max(1.0, std::fabs(want)));
  }
  EXPECT_LT(worst_exp, 3e-7);
  EXPECT_LT(worst_log, 3e-7);
  EXPECT_EQ(kernels::softmax_exp_f(-100.f), 0.f);
  EXPECT_EQ(kernels::softmax_exp_f(0.f), 1.f);
  EXPECT_TRUE(std::isinf(kernels::softmax_exp_f(100.f)));
  EXPECT_TRUE(std::isnan(kernels::softmax_exp_f(NAN)));
  EXPECT_EQ(kernels::softmax_log_f(1.f), 0.f);
  EXPECT_TRUE(std::isinf(kernels::softmax_log_f(0.f)));
  EXPECT_TRUE(std::isnan(kernels::softmax_log_f(-1.f)));
}

TEST(Softmax, Argmax) {
  CheckOptions o;
  o.check_grad = false;
  // Values from {0, 1, 2}: many ties, so "first index wins" is exercised everywhere.
  o.input_gen = [](int, const Shape& shape, uint64_t seed) {
    std::vector<float> v((size_t)shape_numel(shape));
    for (size_t i = 0; i < v.size(); ++i) v[i] = (float)((i * 7 + seed * 3 + i / 5) % 3);
    return v;
  };
  for (const AxisCase& c : axis_cases()) {
    const int axis = c.axis;
    check_op(
        "argmax/" + c.name, {{c.name, {c.shape}}},
        [=](const std::vector<Tensor>& in) { return std::vector<Tensor>{argmax(in[0], axis)}; },
        [=](const RefInputs& in, const std::vector<Shape>& s) {
          return std::vector<std::vector<double>>{ref_argmax(in[0], s[0], axis)};
        },
        o);
  }
  o.input_gen = nullptr;  // distinct random values
  check_op(
      "argmax/random", {{"c19", {{3, 4, 5, 19}}}},
      [](const std::vector<Tensor>& in) { return std::vector<Tensor>{argmax(in[0], -1)}; },
      [](const RefInputs& in, const std::vector<Shape>& s) {
        return std::vector<std::vector<double>>{ref_argmax(in[0], s[0], -1)};
      },
      o);
}

TEST(Softmax, ArgmaxTiesNaNAndKeepdim) {
  const Tensor x = Tensor::from_vector({1, 3, 3, 2,      // tie: first (1)
                                        NAN, 5, NAN, 1,  // NaN wins, first NaN (0)
                                        -1, -1, -1, -1,  // all equal (0)
                                        0, 1, 7, NAN},   // NaN beats 7 (3)
                                       {4, 4});
  for (Device d : {Device::cpu(), have_cuda() ? Device::cuda(0) : Device::cpu()}) {
    const Tensor xd = x.to(d);
    EXPECT_EQ(argmax(xd).to_vector_i64(), (std::vector<int64_t>{1, 0, 0, 3}));
    EXPECT_EQ(argmax(xd, 0).to_vector_i64(), (std::vector<int64_t>{1, 1, 1, 3}));  // columns: NaN, 5, NaN, NaN
    const Tensor k = argmax(xd, -1, true);
    EXPECT_EQ(k.shape(), (Shape{4, 1}));
    EXPECT_EQ(k.dtype(), DType::I64);
    EXPECT_EQ(argmax(Tensor::zeros({2, 3, 4, 5}, DType::F32, d), 1).shape(), (Shape{2, 4, 5}));
  }
}

TEST(Softmax, BadInputErrors) {
  auto expect_error = [](const std::function<void()>& f, const std::string& what) {
    try {
      f();
      ADD_FAILURE() << "expected an error containing: " << what;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  expect_error([] { softmax(Tensor::zeros({2, 3}), 2); }, "softmax: axis 2 is out of range for a 2-D tensor");
  expect_error(
      [] {
        log_softmax(Tensor::zeros({2, 3}, DType::I64));
      },
      "log_softmax: argument 'x' must be f32, bf16 or f16, got i64[2, 3]");
  expect_error([] { argmax(Tensor::zeros({2, 0}), -1); }, "argmax: axis -1 of x f32[2, 0]");
  expect_error([] { softmax(Tensor::zeros({})); }, "softmax: x f32[] on cpu is 0-D");
}

namespace {

// The backward kernel of `d` in f32 on (g, y), as the reference of the 16-bit backward: the same
// device's arithmetic on the widened values.
Tensor softmax_bwd_f32_on(const Tensor& g, const Tensor& y, const Geo& gm, bool log_) {
  const Tensor gw = g.to(DType::F32), yw = y.to(DType::F32);
  Tensor dx = Tensor::empty(y.shape(), DType::F32, y.device());
  if (y.device().is_cpu()) {
    kernels::softmax_bwd_cpu(DType::F32, gw.raw_data(), yw.raw_data(), dx.raw_data(), gm.outer, gm.L, gm.inner, log_);
  } else {
#if defined(ENGINE_WITH_CUDA)
    kernels::softmax_bwd_cuda(DType::F32, gw.raw_data(), yw.raw_data(), dx.raw_data(), gm.outer, gm.L, gm.inner, log_,
                              compute_stream());
    CUDA_CHECK(cudaStreamSynchronize(compute_stream()));
#endif
  }
  return dx;
}

size_t bits_differ(const std::vector<float>& a, const std::vector<float>& b) {
  size_t n = a.size() == b.size() ? 0 : std::max(a.size(), b.size());
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) n += std::memcmp(&a[i], &b[i], sizeof(float)) != 0;
  return n;
}

}  // namespace

// bf16 / f16 x (mixed precision): y has x's type and is the f32 op's result on the widened x rounded
// once; the gradient (through autograd: the cast's backward rounds the incoming f32 gradient to the
// low type) is the f32 backward kernel of the same device on the widened (g, y), rounded once;
// argmax equals the f32 argmax of the widened values. Bit for bit, over every kernel shape of both
// devices: row tiles (L = 2, 19, 33 on the CPU's tile and the GPU's row path, several tiles per
// block), long rows (L = 100), middle and first axes (column kernels).
TEST(Softmax, LowPrecisionIsTheF32ResultRoundedOnce) {
  for (Device d : test_devices()) {
    for (const DType low : {DType::BF16, DType::F16}) {
      for (const AxisCase& c : axis_cases()) {
        for (const bool log_ : {false, true}) {
          SCOPED_TRACE(std::string(dtype_name(low)) + (log_ ? " log_softmax/" : " softmax/") + c.name + " on " +
                       d.str());
          const Geo gm = geo(c.shape, c.axis);
          const Tensor xw = Tensor::uniform(c.shape, 11, -6.f, 6.f, d).to(low).to(DType::F32);
          Tensor xa = xw.clone().set_requires_grad(true);
          const Tensor yl = log_ ? log_softmax(xa.to(low), c.axis) : softmax(xa.to(low), c.axis);
          ASSERT_EQ(yl.dtype(), low);
          const Tensor y32 = log_ ? log_softmax(xw, c.axis) : softmax(xw, c.axis);
          EXPECT_EQ(bits_differ(yl.to(DType::F32).to_vector(), y32.to(low).to(DType::F32).to_vector()), 0u)
              << "forward elements that are not the f32 result rounded once";

          const Tensor r = Tensor::uniform(c.shape, 12, -1.f, 1.f, d);
          sum(yl.to(DType::F32) * r).backward();
          const Tensor want = softmax_bwd_f32_on(r.to(low), yl, gm, log_).to(low).to(DType::F32);
          const std::vector<float> got = xa.grad().to_vector();
          EXPECT_EQ(bits_differ(got, want.to_vector()), 0u)
              << "gradient elements that are not the f32 backward rounded once";
          if (gm.L > 1) {
            EXPECT_GT(std::count_if(got.begin(), got.end(), [](float v) { return v != 0.f; }), (long)got.size() / 2)
                << "the gradient is mostly zero";
          }

          if (!log_) {
            const std::vector<float> il = argmax(xa.detach().to(low), c.axis).to(DType::F32).to_vector();
            EXPECT_EQ(il, argmax(xw, c.axis).to(DType::F32).to_vector());
          }
        }
      }
    }
  }
}
