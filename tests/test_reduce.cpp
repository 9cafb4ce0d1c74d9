// labels: kernel
// Tests of the reduction family (engine/ops/reduce.h): sum, mean, max (+argmax), sum_to_shape, on
// the CPU device and the CUDA device (emulated in CI), forward against naive double references and
// backward against finite differences (tests/harness/op_check.h).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <numeric>
#include <random>
#include <string>

#include "engine/autograd.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "kernels/cpu/reduce_cpu.h"
#include "tests/harness/op_check.h"
#if defined(ENGINE_WITH_CUDA)
#include "base/cuda_context.h"
#include "kernels/cuda/reduce_cuda.h"
#endif
#if defined(_OPENMP)
#include <omp.h>
#endif

namespace engine {
namespace {

using testing::check_op;
using testing::CheckOptions;
using testing::OpCase;
using testing::ravel;
using testing::unravel;

enum class RKind { Sum, Mean, Max };

// Which dims of `shape` the axes reduce (empty = all).
std::vector<bool> mask_of(const Shape& shape, const std::vector<int>& axes) {
  const int n = (int)shape.size();
  std::vector<bool> m(n, axes.empty());
  for (int a : axes) m[a < 0 ? a + n : a] = true;
  return m;
}

// Naive double reference: every input element goes to its output (row-major over the kept dims) at
// its row-major flat position within the reduced dims.
std::vector<std::vector<double>> ref_reduce(RKind kind, const std::vector<double>& x, const Shape& shape,
                                            const std::vector<int>& axes) {
  const auto m = mask_of(shape, axes);
  Shape kept, red;
  for (size_t d = 0; d < shape.size(); ++d) (m[d] ? red : kept).push_back(shape[d]);
  const int64_t nout = shape_numel(kept), count = shape_numel(red);
  std::vector<double> val((size_t)nout, kind == RKind::Max ? -INFINITY : 0.0), idx((size_t)nout, -1.0);
  for (int64_t e = 0; e < (int64_t)x.size(); ++e) {
    const auto c = unravel(e, shape);
    std::vector<int64_t> kc, rc;
    for (size_t d = 0; d < shape.size(); ++d) (m[d] ? rc : kc).push_back(c[d]);
    const size_t o = (size_t)ravel(kc, kept);
    const double r = (double)ravel(rc, red);
    if (kind == RKind::Max) {
      const double v = x[(size_t)e];
      const bool take = idx[o] < 0 || (std::isnan(v) && !std::isnan(val[o])) || (!std::isnan(val[o]) && v > val[o]);
      if (take) {
        val[o] = v;
        idx[o] = r;
      }
    } else {
      val[o] += x[(size_t)e];
    }
  }
  if (kind == RKind::Mean)
    for (double& v : val) v /= (double)count;
  if (kind == RKind::Max) return {val, idx};
  return {val};
}

struct RCase {
  std::string name;
  Shape shape;
  std::vector<int> axes;
  bool keepdim;
};

std::string describe(const RCase& c) {
  return c.name + " " + shape_str(c.shape) + " axes " + shape_str(c.axes) + (c.keepdim ? " keepdim" : "");
}

// Every axis-combination class, 1-D to 5-D, odd sizes, size-1 dims, NHWC per-channel.
std::vector<RCase> common_cases() {
  return {
      {"scalar", {}, {}, false},
      {"1d all", {7}, {}, false},
      {"1d axis0 keep", {7}, {0}, true},
      {"1d 257", {257}, {-1}, false},
      {"2d last", {33, 257}, {-1}, false},
      {"2d first", {33, 257}, {0}, false},
      {"2d all keep", {33, 7}, {}, true},
      {"3d middle", {4, 33, 6}, {1}, false},
      {"3d first+last", {4, 5, 33}, {0, 2}, false},
      {"3d negative keep", {4, 5, 6}, {-1, -3}, true},
      {"3d leading two", {7, 5, 6}, {0, 1}, false},
      {"3d trailing two keep", {3, 7, 9}, {1, 2}, true},
      {"size1 dims", {5, 1, 7}, {0, 2}, false},
      {"size1 reduced", {5, 1}, {1}, false},
      {"all ones", {1, 1, 1}, {}, true},
      {"4d nhwc per-channel", {2, 5, 7, 33}, {0, 1, 2}, false},
      {"4d nhwc per-channel keep", {2, 3, 5, 9}, {0, 1, 2}, true},
      {"4d nhwc spatial", {2, 5, 7, 3}, {1, 2}, true},
      {"4d channel last", {2, 3, 5, 33}, {3}, true},
      {"5d non-adjacent", {2, 3, 1, 5, 7}, {0, 2, 4}, false},
      {"5d alternate", {3, 2, 4, 3, 5}, {1, 3}, true},
      {"5d all", {2, 3, 4, 3, 5}, {}, false},
  };
}

// Long reductions: split over several blocks on CUDA (rows >= 4096, columns >= 2 * 8 * 256 / bx)
// and over several work items on the CPU (rows > 16384, columns > 16384 / min(inner, 512)).
std::vector<RCase> long_cases() {
  return {
      {"long row", {3, 5000}, {-1}, false},        {"long global", {4100}, {}, false},
      {"long column", {5000, 3}, {0}, false},      {"long nhwc", {2, 40, 40, 33}, {0, 1, 2}, true},
      {"very long row", {2, 20000}, {-1}, false},   // several CPU row chunks
      {"very long column", {20000, 2}, {0}, true},  // several CPU column chunks
  };
}

// Distinct values 0.01 apart in random order: no ties, so finite differences of max are safe.
std::vector<float> distinct_values(const Shape& shape, uint64_t seed) {
  const int64_t n = shape_numel(shape);
  std::vector<float> v((size_t)n);
  std::iota(v.begin(), v.end(), 0.f);
  std::mt19937_64 rng(seed);
  std::shuffle(v.begin(), v.end(), rng);
  for (float& x : v) x = (x - (float)n / 2) * 0.01f;
  return v;
}

void run_case(RKind kind, const RCase& c, CheckOptions opt = {}) {
  const std::string op = kind == RKind::Sum ? "sum" : kind == RKind::Mean ? "mean" : "max";
  const auto axes = c.axes;
  const bool keep = c.keepdim;
  auto fn = [kind, axes, keep](const std::vector<Tensor>& in) -> std::vector<Tensor> {
    if (kind == RKind::Sum) return {sum(in[0], axes, keep)};
    if (kind == RKind::Mean) return {mean(in[0], axes, keep)};
    MaxResult r = max(in[0], axes, keep);
    return {r.values, r.indices};
  };
  auto ref = [kind, axes](const testing::RefInputs& in, const std::vector<Shape>& shapes) {
    return ref_reduce(kind, in[0], shapes[0], axes);
  };
  if (kind == RKind::Max && !opt.input_gen)
    opt.input_gen = [](int, const Shape& s, uint64_t seed) { return distinct_values(s, seed); };
  check_op(op + " " + describe(c), {OpCase{c.name, {c.shape}}}, fn, ref, opt);
}

// Expected output shapes (keepdim both ways) without the harness.
TEST(Reduce, OutputShapes) {
  Tensor x = Tensor::zeros({2, 3, 4});
  EXPECT_EQ(sum(x).shape(), Shape{});
  EXPECT_EQ(sum(x, {}, true).shape(), (Shape{1, 1, 1}));
  EXPECT_EQ(mean(x, {1}).shape(), (Shape{2, 4}));
  EXPECT_EQ(mean(x, {-2}, true).shape(), (Shape{2, 1, 4}));
  MaxResult r = max(x, {0, 2});
  EXPECT_EQ(r.values.shape(), Shape{3});
  EXPECT_EQ(r.indices.shape(), Shape{3});
  EXPECT_EQ(r.indices.dtype(), DType::I64);
  EXPECT_FALSE(r.indices.requires_grad());
}

TEST(Reduce, Sum) {
  for (const RCase& c : common_cases()) run_case(RKind::Sum, c);
}

TEST(Reduce, Mean) {
  for (const RCase& c : common_cases()) run_case(RKind::Mean, c);
}

TEST(Reduce, Max) {
  for (const RCase& c : common_cases()) run_case(RKind::Max, c);
}

TEST(Reduce, LongReductions) {
  CheckOptions opt;
  // fp32 blocked/tree sums of ~5000 terms of |x| <= 2: a few ulps of the partial sums.
  opt.fwd_atol = 1e-4;
  opt.device_atol = 1e-4;
  opt.max_fd_elements = 16;
  for (const RCase& c : long_cases()) {
    run_case(RKind::Sum, c, opt);
    run_case(RKind::Mean, c, opt);
    run_case(RKind::Max, c, opt);
  }
}

// Max with many ties: values and indices must pick the first (lowest) index. No finite
// differences (max is not differentiable at ties).
TEST(Reduce, MaxTies) {
  CheckOptions opt;
  opt.check_grad = false;
  opt.input_gen = [](int, const Shape& s, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::vector<float> v((size_t)shape_numel(s));
    for (float& x : v) x = (float)(rng() % 3);  // 0, 1, 2: ties everywhere
    return v;
  };
  for (const RCase& c : common_cases()) run_case(RKind::Max, c, opt);
  for (const RCase& c : long_cases()) run_case(RKind::Max, c, opt);
  // All equal, including all -inf: index 0 everywhere.
  for (float fillv : {3.f, -INFINITY}) {
    opt.input_gen = [fillv](int, const Shape& s, uint64_t) {
      return std::vector<float>((size_t)shape_numel(s), fillv);
    };
    run_case(RKind::Max, {"constant", {3, 70, 5}, {1}, false}, opt);
    run_case(RKind::Max, {"constant rows", {3, 5000}, {1}, false}, opt);
  }
}

// NaN propagates: the max is NaN and the index is the first NaN.
TEST(Reduce, MaxNaN) {
  CheckOptions opt;
  opt.check_grad = false;
  opt.input_gen = [](int, const Shape& s, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<float> d(-2.f, 2.f);
    std::vector<float> v((size_t)shape_numel(s));
    for (float& x : v) x = rng() % 7 == 0 ? NAN : d(rng);
    return v;
  };
  for (const RCase& c : common_cases()) run_case(RKind::Max, c, opt);
  for (const RCase& c : long_cases()) run_case(RKind::Max, c, opt);
  // Sum and mean propagate NaN too.
  opt.input_gen = [](int, const Shape& s, uint64_t) {
    std::vector<float> v((size_t)shape_numel(s), 1.f);
    v[v.size() / 2] = NAN;
    return v;
  };
  run_case(RKind::Sum, {"nan", {4, 9}, {}, false}, opt);
  run_case(RKind::Mean, {"nan", {4, 9}, {0}, false}, opt);
}

// The backward of max at ties sends the whole gradient to the first index, on every device.
TEST(Reduce, MaxBackwardAtTies) {
  std::vector<Device> devs{Device::cpu()};
  if (testing::have_cuda()) devs.push_back(Device::cuda(0));
  for (Device dev : devs) {
    Tensor x = Tensor::from_vector({1, 5, 5, 2, 7, 7, 7, 0}, {2, 4}, dev).set_requires_grad(true);
    MaxResult r = max(x, {1});
    EXPECT_EQ(r.indices.to_vector_i64(), (std::vector<int64_t>{1, 0}));
    r.values.backward(Tensor::from_vector({10, 20}, {2}, dev));
    EXPECT_EQ(x.grad().to_vector(), (std::vector<float>{0, 10, 0, 0, 20, 0, 0, 0})) << dev.str();
  }
}

// sum_to_shape: the backward of broadcasting; itself differentiable (its backward is an expand).
TEST(Reduce, SumToShape) {
  struct C {
    Shape from, to;
  };
  const std::vector<C> cases = {
      {{4, 5, 6}, {5, 6}},    {{4, 5, 6}, {1, 6}},
      {{4, 5, 6}, {4, 1, 6}}, {{4, 5, 6}, {6}},
      {{4, 5, 6}, {1, 1, 1}}, {{4, 5, 6}, {4, 5, 6}},
      {{4, 5, 6}, {5, 1}},    {{4, 5, 6}, {}},
      {{2, 5, 7, 33}, {33}},  {{2, 3, 1, 5, 7}, {3, 1, 1, 7}},
      {{3, 1}, {1}},          {{7}, {1}},
      {{2, 3000}, {3000}},    {{3000, 2}, {1, 2}},
  };
  for (const C& c : cases) {
    const Shape to = c.to;
    auto fn = [to](const std::vector<Tensor>& in) -> std::vector<Tensor> { return {sum_to_shape(in[0], to)}; };
    auto ref = [to](const testing::RefInputs& in, const std::vector<Shape>& shapes) {
      const Shape& from = shapes[0];
      const size_t lead = from.size() - to.size();
      std::vector<double> out((size_t)shape_numel(to), 0.0);
      for (int64_t e = 0; e < (int64_t)in[0].size(); ++e) {
        const auto cf = unravel(e, from);
        std::vector<int64_t> ct;
        for (size_t d = lead; d < from.size(); ++d) ct.push_back(to[d - lead] == 1 ? 0 : cf[d]);
        out[(size_t)ravel(ct, to)] += in[0][(size_t)e];
      }
      return std::vector<std::vector<double>>{out};
    };
    CheckOptions opt;
    opt.fwd_atol = opt.device_atol = 1e-4;
    check_op("sum_to_shape " + shape_str(c.from) + " -> " + shape_str(c.to), {OpCase{"case", {c.from}}}, fn, ref, opt);
  }
}

// The expand of a tensor and its backward (sum_to_shape) round trip through autograd.
TEST(Reduce, SumToShapeIsExpandBackward) {
  Tensor b = Tensor::from_vector({1, 2, 3}, {3}).set_requires_grad(true);
  Tensor y = sum(b.expand({4, 2, 3}));
  y.backward();
  EXPECT_EQ(b.grad().to_vector(), (std::vector<float>{8, 8, 8}));
  EXPECT_FLOAT_EQ(y.item(), 48.f);
}

// Empty tensors: sum of nothing is 0, mean of nothing NaN, max of nothing an error.
TEST(Reduce, EmptyTensors) {
  std::vector<Device> devs{Device::cpu()};
  if (testing::have_cuda()) devs.push_back(Device::cuda(0));
  for (Device dev : devs) {
    Tensor x = Tensor::zeros({0, 3}, DType::F32, dev);
    EXPECT_EQ(sum(x, {0}).to_vector(), (std::vector<float>{0, 0, 0}));
    EXPECT_EQ(sum(x, {1}).shape(), Shape{0});
    for (float v : mean(x, {0}).to_vector()) EXPECT_TRUE(std::isnan(v));
    EXPECT_EQ(max(x, {1}).values.shape(), Shape{0});
    EXPECT_THROW(max(x, {0}), Error);
  }
}

// Errors are one line naming the op and the tensor's shape.
constexpr auto expect_error = &engine::testing::expect_one_line_error;

TEST(Reduce, Errors) {
  Tensor x = Tensor::zeros({2, 3});
  expect_error([&] { sum(x, {2}); }, {"sum", "axis 2", "[2, 3]"});
  expect_error([&] { mean(x, {-3}); }, {"mean", "axis -3", "[2, 3]"});
  expect_error([&] { max(x, {5}); }, {"max", "[2, 3]"});
  expect_error([&] { sum(x, {1, -1}); }, {"sum", "more than once", "[2, 3]"});
  expect_error([&] { max(x, {0, 0}); }, {"max", "more than once", "[2, 3]"});
  Tensor xi = Tensor::zeros({2, 3}, DType::I64);
  expect_error([&] { sum(xi); }, {"sum", "f32", "[2, 3]"});
  expect_error([&] { mean(xi); }, {"mean", "f32", "[2, 3]"});
  expect_error([&] { max(xi); }, {"max", "f32", "[2, 3]"});
  expect_error([&] { max(Tensor::empty({2, 0, 3}), {1}); }, {"max", "zero elements", "[2, 0, 3]"});
  expect_error([&] { sum_to_shape(x, {4}); }, {"sum_to_shape", "[2, 3]", "[4]"});
  expect_error([&] { sum_to_shape(x, {1, 2, 3}); }, {"sum_to_shape", "[2, 3]", "[1, 2, 3]"});
  expect_error([&] { sum(Tensor()); }, {"sum"});
}

// Results do not depend on the number of OpenMP threads (fixed partitioning).
TEST(Reduce, CpuDeterministicAcrossThreadCounts) {
  const Shape shapes[] = {{1 << 18}, {64, 40, 40}, {8, 9000}};
  for (const Shape& s : shapes) {
    Tensor x = Tensor::randn(s, 7);
    const std::vector<std::vector<int>> axes_list = {{}, {0}, {-1}};
    for (const auto& axes : axes_list) {
      if (axes.size() == 1 && axes[0] >= (int)s.size()) continue;
      std::vector<float> a, b;
      { a = sum(x, axes).to_vector(); }
#if defined(_OPENMP)
      const int prev = omp_get_max_threads();
      omp_set_num_threads(1);
      b = sum(x, axes).to_vector();
      omp_set_num_threads(prev);
      ASSERT_EQ(a.size(), b.size());
      EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * 4)) << shape_str(s) << " axes " << shape_str(axes);
#endif
    }
  }
}

}  // namespace
}  // namespace engine

// bf16 / f16 x (O2 activations): reduced in f32, the result stored in x's type, rounded once; the
// gradient reaches x in its type. Bit for bit against the f32 reduction of the same values.
namespace engine {
using testing::expect_same_bits;
using testing::test_devices;

TEST(Reduce, LowPrecisionIsTheF32ResultRoundedOnce) {
  using Fn = std::function<Tensor(const Tensor&)>;
  const std::vector<std::pair<std::string, Fn>> ops = {
      {"channel mean (UAFM)", [](const Tensor& x) { return mean(x, {3}, true); }},
      {"channel max (UAFM)", [](const Tensor& x) { return max(x, {3}, true).values; }},
      {"sum over N, H, W",
       [](const Tensor& x) {
         return sum(x, {0, 1, 2});
       }},
      {"mean over H and C (permuted)",
       [](const Tensor& x) {
         return mean(x, {1, 3});
       }},
      {"sum of everything", [](const Tensor& x) { return sum(x, {}); }}};
  // Channel counts below one vector, with vector bodies and tails (161: rows that start at every
  // offset modulo 4, as the GPU's aligned loads see them), and a whole-tensor sum long enough for the
  // GPU to split it.
  const std::vector<Shape> shapes = {{2, 5, 7, 24}, {2, 3, 4, 161}, {1, 4, 40, 50}};
  for (Device d : test_devices())
    for (DType dt : {DType::BF16, DType::F16})
      for (const Shape& shape : shapes)
        for (const auto& [name, fn] : ops) {
          const std::string what = name + " " + dtype_name(dt) + " " + shape_str(shape) + " on " + d.str();
          SCOPED_TRACE(what);
          auto leaf = [&] {
            // Magnitudes from e^-10 to e^10, so that sums of the 16-bit values need more bits than f32
            // has and the order of the additions shows.
            NoGradGuard no_grad;
            const Tensor mag = exp(Tensor::uniform(shape, 5, -10.f, 10.f, d));
            Tensor t = mul(Tensor::uniform(shape, 3, -2.f, 2.f, d), mag).to(dt).to(DType::F32).detach();
            t.set_requires_grad(true);
            return t;
          };
          const Tensor lo = leaf(), hi = leaf();
          const Tensor y = fn(lo.to(dt));
          ASSERT_EQ(y.dtype(), dt);
          const Tensor g = Tensor::uniform(y.shape(), 4, -1.f, 1.f, d).to(dt);
          y.backward(g);
          const Tensor y32 = fn(hi);
          y32.backward(g.to(DType::F32));
          expect_same_bits(y.to(DType::F32).to_vector(), y32.to(dt).to(DType::F32).to_vector(), what + " forward");
          expect_same_bits(lo.grad().to_vector(), hi.grad().to(dt).to(DType::F32).to_vector(), what + " backward");
        }
}

// sum_f32: the f32 sum of a 16-bit x, not rounded back to x's type (a bias gradient of O2
// activations); an f16 sum beyond f16's range stays finite. The gradient reaches x in its type.
TEST(Reduce, SumF32KeepsTheSumOfSixteenBitValuesInF32) {
  for (Device d : test_devices())
    for (DType dt : {DType::BF16, DType::F16}) {
      const std::string what = std::string(dtype_name(dt)) + " on " + d.str();
      SCOPED_TRACE(what);
      // [2, 3, 4, 5]: 24 values of 4000 + i per channel sum to about 96000 > 65504 (f16's largest).
      std::vector<float> v(120);
      for (size_t i = 0; i < v.size(); ++i) v[i] = 4000.f + (float)(i % 7) * 0.5f - (float)(i % 5);
      Tensor x32 = Tensor::from_vector(v, {2, 3, 4, 5}, d).to(dt).to(DType::F32).detach();
      x32.set_requires_grad(true);
      const Tensor x = x32.to(dt);
      const Tensor s = sum_f32(x, {0, 1, 2});
      ASSERT_EQ(s.dtype(), DType::F32);
      expect_same_bits(s.to_vector(), sum(x32.detach(), {0, 1, 2}).to_vector(), what + " forward");
      for (float f : s.to_vector()) EXPECT_GT(f, 65504.f);
      if (dt == DType::F16) {  // what sum() gives: the sum rounded to f16 overflows
        EXPECT_TRUE(std::isinf(sum(x.detach(), {0, 1, 2}).to(DType::F32).to_vector()[0]));
      }
      s.backward(Tensor::full({5}, 1.5f, DType::F32, d));
      for (float g : x32.grad().to_vector()) EXPECT_EQ(g, 1.5f);
    }
}

}  // namespace engine

namespace engine {

// The sum kernels read a 16-bit x in place of a widened f32 copy: the same additions in the same
// order, so the f32 sums (before the op rounds them) are the same bits. At kernel level, because the
// op's rounding to 16 bits would hide an order difference. Rows of 161 start at every offset
// modulo 4 (the GPU's aligned 4-element loads), long rows are split into chunks / segments, and
// columns cover vector bodies and tails.
TEST(Reduce, SixteenBitSumKernelsAddInTheOrderOfAWidenedCopy) {
  struct Geometry {
    int64_t outer, reduce, inner;
  };
  const Geometry geometries[] = {{24, 161, 1}, {1, 40000, 1}, {3, 40, 161}, {1, 9000, 24}, {2, 33, 70}};
  for (Device d : test_devices())
    for (DType dt : {DType::BF16, DType::F16})
      for (const Geometry& g : geometries) {
        const std::string what = std::string(dtype_name(dt)) + " [" + std::to_string(g.outer) + ", " +
                                 std::to_string(g.reduce) + ", " + std::to_string(g.inner) + "] on " + d.str();
        NoGradGuard no_grad;
        const int64_t n = g.outer * g.reduce * g.inner;
        const Tensor mag = exp(Tensor::uniform({n}, 5, -10.f, 10.f, d));
        const Tensor x16 = mul(Tensor::uniform({n}, 3, -2.f, 2.f, d), mag).to(dt);
        const Tensor x32 = x16.to(DType::F32);
        const Tensor out16 = Tensor::empty({g.outer * g.inner}, DType::F32, d);
        const Tensor out32 = Tensor::empty({g.outer * g.inner}, DType::F32, d);
        const float scale = 0.75f;
        if (d.is_cpu()) {
          kernels::reduce_sum_fwd_cpu(dt, x16.raw_data(), out16.data<float>(), g.outer, g.reduce, g.inner, scale);
          kernels::reduce_sum_fwd_cpu(DType::F32, x32.raw_data(), out32.data<float>(), g.outer, g.reduce, g.inner,
                                      scale);
        } else {
#if defined(ENGINE_WITH_CUDA)
          const int64_t wn = kernels::reduce_workspace_cuda(g.outer, g.reduce, g.inner);
          const Tensor ws = Tensor::empty({std::max<int64_t>(wn, 1)}, DType::F32, d);
          kernels::reduce_sum_fwd_cuda(dt, x16.raw_data(), out16.data<float>(), g.outer, g.reduce, g.inner, scale,
                                       ws.data<float>(), compute_stream());
          kernels::reduce_sum_fwd_cuda(DType::F32, x32.raw_data(), out32.data<float>(), g.outer, g.reduce, g.inner,
                                       scale, ws.data<float>(), compute_stream());
          CUDA_CHECK(cudaStreamSynchronize(compute_stream()));
#endif
        }
        expect_same_bits(out16.to_vector(), out32.to_vector(), what);
      }
}

}  // namespace engine
