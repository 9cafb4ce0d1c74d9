// labels: kernel
// Elementwise family: every unary op, scalar variant and broadcasting binary op against naive
// double references, finite differences, CPU vs CUDA device, strided inputs, guards, determinism.
#include <gtest/gtest.h>

#include <cmath>

#include "engine/ops/elementwise.h"
#include "engine/ops/op_utils.h"
#include "kernels/cpu/elementwise_cpu.h"
#include "tests/harness/op_check.h"

using namespace engine;
using namespace engine::testing;

namespace {

// Shapes that are odd, have size-1 dims, and are not multiples of 4 (float4), 32 or 256.
std::vector<OpCase> unary_cases() {
  return {{"scalar", {{1}}},        {"odd1d", {{1027}}},      {"2d", {{7, 33}}}, {"size1dims", {{1, 5, 1, 3}}},
          {"nhwc", {{2, 5, 7, 3}}}, {"5d", {{2, 1, 3, 2, 5}}}};
}

using UnaryFn = Tensor (*)(const Tensor&);
void check_unary(const std::string& name, const std::function<Tensor(const Tensor&)>& fn,
                 const std::function<double(double)>& f, CheckOptions opt = {}) {
  check_op(
      name, unary_cases(), [fn](const std::vector<Tensor>& in) { return std::vector<Tensor>{fn(in[0])}; },
      [f](const RefInputs& in, const std::vector<Shape>&) {
        std::vector<double> out;
        for (double x : in[0]) out.push_back(f(x));
        return std::vector<std::vector<double>>{out};
      },
      opt);
}

// Inputs bounded away from the kinks of relu/leaky_relu/maximum so finite differences are valid.
InputGen away_from_zero(float lo, float hi) {
  return [lo, hi](int input, const Shape& shape, uint64_t seed) {
    std::vector<float> v((size_t)shape_numel(shape));
    uint64_t s = seed * 31 + (uint64_t)input;
    for (float& x : v) {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      const float u = (float)((s >> 33) % 100000) / 100000.f;  // [0, 1)
      float m = lo + (hi - lo) * u;
      if (std::fabs(m) < 0.05f) m = m < 0 ? -0.05f - m : 0.05f + m;
      x = m;
    }
    return v;
  };
}

}  // namespace

TEST(Elementwise, Neg) {
  check_unary(
      "neg", [](const Tensor& x) { return neg(x); }, [](double x) { return -x; });
}
TEST(Elementwise, Exp) {
  check_unary(
      "exp", [](const Tensor& x) { return exp(x); }, [](double x) { return std::exp(x); });
}
TEST(Elementwise, Log) {
  CheckOptions o;
  o.lo = 0.2f;
  o.hi = 3.f;
  check_unary(
      "log", [](const Tensor& x) { return log(x); }, [](double x) { return std::log(x); }, o);
}
TEST(Elementwise, Sqrt) {
  CheckOptions o;
  o.lo = 0.2f;
  o.hi = 3.f;
  check_unary(
      "sqrt", [](const Tensor& x) { return sqrt(x); }, [](double x) { return std::sqrt(x); }, o);
}
TEST(Elementwise, Relu) {
  CheckOptions o;
  o.input_gen = away_from_zero(-2, 2);
  check_unary(
      "relu", [](const Tensor& x) { return relu(x); }, [](double x) { return x > 0 ? x : 0.0; }, o);
}
TEST(Elementwise, LeakyRelu) {
  CheckOptions o;
  o.input_gen = away_from_zero(-2, 2);
  check_unary(
      "leaky_relu", [](const Tensor& x) { return leaky_relu(x, 0.1f); }, [](double x) { return x > 0 ? x : 0.1f * x; },
      o);
}
TEST(Elementwise, Sigmoid) {
  CheckOptions o;
  o.lo = -8;
  o.hi = 8;
  check_unary(
      "sigmoid", [](const Tensor& x) { return sigmoid(x); }, [](double x) { return 1 / (1 + std::exp(-x)); }, o);
}
TEST(Elementwise, Tanh) {
  check_unary(
      "tanh", [](const Tensor& x) { return tanh(x); }, [](double x) { return std::tanh(x); });
}

TEST(Elementwise, ScalarVariants) {
  check_unary(
      "add_scalar", [](const Tensor& x) { return x + 1.5f; }, [](double x) { return x + 1.5f; });
  check_unary(
      "sub_scalar", [](const Tensor& x) { return x - 0.25f; }, [](double x) { return x - 0.25f; });
  check_unary(
      "mul_scalar", [](const Tensor& x) { return x * -3.f; }, [](double x) { return x * -3.0; });
  check_unary(
      "div_scalar", [](const Tensor& x) { return x / 3.f; }, [](double x) { return x / 3.0; });
  check_unary(
      "rsub_scalar", [](const Tensor& x) { return 2.f - x; }, [](double x) { return 2.0 - x; });
  CheckOptions pos;
  pos.lo = 0.5f;
  pos.hi = 2.f;
  check_unary(
      "rdiv_scalar", [](const Tensor& x) { return 2.f / x; }, [](double x) { return 2.0 / x; }, pos);
  CheckOptions o;
  o.input_gen = away_from_zero(-2, 2);
  check_unary(
      "maximum_scalar", [](const Tensor& x) { return maximum(x, 0.f); }, [](double x) { return std::max(x, 0.0); }, o);
}

namespace {
std::vector<OpCase> binary_cases() {
  return {{"same", {{3, 7, 5}, {3, 7, 5}}},
          {"odd1d", {{1031}, {1031}}},
          {"bias_nhwc", {{2, 3, 5, 7}, {7}}},                // [N,H,W,C] + [C]
          {"attention_nhwc", {{2, 3, 5, 1}, {2, 3, 5, 6}}},  // N x H x W x 1 times N x H x W x C
          {"both_broadcast", {{4, 1, 3}, {1, 5, 1}}},
          {"scalar_tensor", {{1}, {2, 9}}},
          {"lead_dims", {{6}, {2, 3, 1, 6}}}};
}

void check_binary(const std::string& name, const std::function<Tensor(const Tensor&, const Tensor&)>& fn,
                  const std::function<double(double, double)>& f, CheckOptions opt = {}) {
  check_op(
      name, binary_cases(), [fn](const std::vector<Tensor>& in) { return std::vector<Tensor>{fn(in[0], in[1])}; },
      [f](const RefInputs& in, const std::vector<Shape>& shapes) {
        // Naive numpy broadcasting.
        const size_t nd = std::max(shapes[0].size(), shapes[1].size());
        Shape a(nd, 1), b(nd, 1), o(nd);
        std::copy(shapes[0].begin(), shapes[0].end(), a.begin() + (nd - shapes[0].size()));
        std::copy(shapes[1].begin(), shapes[1].end(), b.begin() + (nd - shapes[1].size()));
        for (size_t d = 0; d < nd; ++d) o[d] = std::max(a[d], b[d]);
        std::vector<double> out((size_t)shape_numel(o));
        for (int64_t i = 0; i < (int64_t)out.size(); ++i) {
          auto c = unravel(i, o), ca = c, cb = c;
          for (size_t d = 0; d < nd; ++d) {
            if (a[d] == 1) ca[d] = 0;
            if (b[d] == 1) cb[d] = 0;
          }
          out[(size_t)i] = f(in[0][(size_t)ravel(ca, a)], in[1][(size_t)ravel(cb, b)]);
        }
        return std::vector<std::vector<double>>{out};
      },
      opt);
}
}  // namespace

TEST(Elementwise, Add) {
  check_binary(
      "add", [](const Tensor& a, const Tensor& b) { return a + b; }, std::plus<double>());
}
TEST(Elementwise, Sub) {
  check_binary(
      "sub", [](const Tensor& a, const Tensor& b) { return a - b; }, std::minus<double>());
}
TEST(Elementwise, Mul) {
  check_binary(
      "mul", [](const Tensor& a, const Tensor& b) { return a * b; }, std::multiplies<double>());
}
TEST(Elementwise, Div) {
  CheckOptions o;
  o.input_gen = [](int input, const Shape& shape, uint64_t seed) {
    std::vector<float> v((size_t)shape_numel(shape));
    for (size_t i = 0; i < v.size(); ++i)
      v[i] = input == 1 ? 0.5f + (float)((i * 7 + seed) % 13) / 8.f : (float)((i * 5 + seed) % 11) / 4.f - 1.f;
    return v;
  };
  check_binary(
      "div", [](const Tensor& a, const Tensor& b) { return a / b; }, std::divides<double>(), o);
}
TEST(Elementwise, Maximum) {
  CheckOptions o;
  // Distinct values so the maximum is differentiable everywhere in the sample.
  o.input_gen = [](int input, const Shape& shape, uint64_t seed) {
    std::vector<float> v((size_t)shape_numel(shape));
    for (size_t i = 0; i < v.size(); ++i)
      v[i] = (float)(((i * 37 + seed * 11 + (size_t)input * 5) % 97)) / 10.f + 0.05f * (float)input;
    return v;
  };
  check_binary(
      "maximum", [](const Tensor& a, const Tensor& b) { return maximum(a, b); },
      [](double a, double b) { return std::max(a, b); }, o);
}

TEST(Elementwise, MaximumTieSplitsGradient) {
  Tensor a = Tensor::from_vector({1, 2, 3}, {3}).set_requires_grad(true);
  Tensor b = Tensor::from_vector({1, 5, 0}, {3}).set_requires_grad(true);
  maximum(a, b).backward(Tensor::from_vector({1, 1, 1}, {3}));
  EXPECT_EQ(a.grad().to_vector(), (std::vector<float>{0.5f, 0.f, 1.f}));
  EXPECT_EQ(b.grad().to_vector(), (std::vector<float>{0.5f, 1.f, 0.f}));
}

TEST(Elementwise, NaNPropagatesThroughMaximum) {
  const Tensor a = Tensor::from_vector({NAN, 1.f}, {2}), b = Tensor::from_vector({0.f, NAN}, {2});
  const auto r = maximum(a, b).to_vector();
  EXPECT_TRUE(std::isnan(r[0]));
  EXPECT_TRUE(std::isnan(r[1]));
}

TEST(Elementwise, AddInplaceAccumulates) {
  for (Device d : {Device::cpu(), have_cuda() ? Device::cuda(0) : Device::cpu()}) {
    Tensor dst = Tensor::from_vector({1, 2, 3, 4, 5, 6}, {2, 3}, d);
    add_inplace(dst, Tensor::from_vector({10, 20, 30}, {3}, d));
    EXPECT_EQ(dst.to_vector(), (std::vector<float>{11, 22, 33, 14, 25, 36}));
  }
}

// add_inplace into contiguous destinations (a gradient, a bucket view): on the (emulated) GPU the
// in-place kernel's vector body and scalar tail, and its scalar path for a misaligned view, give the
// CPU's bits in every float type; the elements around the view are untouched; a tensor added into
// itself doubles.
TEST(Elementwise, AddInplaceIntoContiguousViewsMatchesTheCpu) {
  if (!have_cuda()) GTEST_SKIP() << "no CUDA device (real or emulated)";
  for (DType dt : {DType::F32, DType::BF16, DType::F16})
    for (int64_t n : {1, 3, 4, 7, 1027, 4100})
      for (int64_t offset : {0, 1, 4}) {
        const std::string what =
            std::string(dtype_name(dt)) + " n " + std::to_string(n) + " offset " + std::to_string(offset);
        std::vector<float> got[2];
        for (const Device d : {Device::cpu(), Device::cuda(0)}) {
          const Tensor base = Tensor::uniform({n + 8}, 11, -2.f, 2.f, d).to(dt);
          const Tensor src = Tensor::uniform({n + 8}, 12, -2.f, 2.f, d).to(dt).narrow(0, 8 - offset, n);
          add_inplace(base.narrow(0, offset, n), src);
          got[d.is_cuda()] = base.to_vector();
        }
        expect_same_bits(got[1], got[0], what);
        const auto before = Tensor::uniform({n + 8}, 11, -2.f, 2.f).to(dt).to_vector();
        for (int64_t i = 0; i < n + 8; ++i)
          if (i < offset || i >= offset + n) {
            ASSERT_EQ(got[1][(size_t)i], before[(size_t)i]) << what << " at " << i;
          }
      }
  const Tensor x = Tensor::uniform({1029}, 13, -1.f, 1.f, Device::cuda(0));
  const auto twice = mul(x, 2.f).to_vector();
  add_inplace(x, x);
  expect_same_bits(x.to_vector(), twice, "x += x");
}

TEST(Elementwise, BadInputErrors) {
  const Tensor a = Tensor::zeros({2, 3}), b = Tensor::zeros({4, 3});
  try {
    add(a, b);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("add: shapes [2, 3] and [4, 3] cannot be broadcast"), std::string::npos)
        << e.what();
  }
  const Tensor i = Tensor::zeros({2, 3}, DType::I64);
  try {
    relu(i);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("relu: argument 'x' must be f32"), std::string::npos) << e.what();
  }
  if (have_cuda()) {
    try {
      mul(a, Tensor::zeros({2, 3}, DType::F32, Device::cuda(0)));
      FAIL() << "expected an error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("mul: 'a' is on cpu but 'b' is on cuda:0"), std::string::npos) << e.what();
    }
  }
}

TEST(Elementwise, EmptyTensors) {
  const Tensor a = Tensor::zeros({0, 3});
  EXPECT_EQ(relu(a).shape(), (Shape{0, 3}));
  EXPECT_EQ((a + Tensor::zeros({3})).shape(), (Shape{0, 3}));
}

TEST(Elementwise, ExpAndSigmoidAtTheExtremes) {
  for (Device d : {Device::cpu(), have_cuda() ? Device::cuda(0) : Device::cpu()}) {
    const Tensor x = Tensor::from_vector({100.f, -100.f, NAN, 88.f, -87.f, 0.f}, {6}, d);
    const auto e = exp(x).to_vector();
    EXPECT_TRUE(std::isinf(e[0]) && e[0] > 0);
    EXPECT_EQ(e[1], 0.f);
    EXPECT_TRUE(std::isnan(e[2]));
    EXPECT_NEAR(e[3], std::exp(88.0), 1e-6 * std::exp(88.0));
    EXPECT_NEAR(e[4], std::exp(-87.0), 1e-6 * std::exp(-87.0));
    EXPECT_EQ(e[5], 1.f);
    const auto s = sigmoid(x).to_vector();
    EXPECT_EQ(s[0], 1.f);
    EXPECT_EQ(s[1], 0.f);
    EXPECT_TRUE(std::isnan(s[2]));
    EXPECT_EQ(s[5], 0.5f);
  }
}

// ---- bf16 / f16 storage (mixed precision): the kernels compute in f32 and round once, so a
// low-precision result is the f32 op's result on the widened inputs, rounded to the type: compared
// bit for bit (NaN matching NaN), forward and, for ops whose derivative does not read the rounded
// output, backward. Derivatives that read the output (exp, sqrt, sigmoid, tanh, rdiv) see the rounded
// output, so they are compared with a tolerance: 2 ulps of the type relative to |gx| + |g| max(1, |y|).
// Shapes: odd lengths (vector body and scalar tail), a misaligned view (scalar path only), a
// transposed view (strided kernels) and a broadcast operand (backward through sum_to_shape).
namespace {

// v rounded to dt and widened back (the cast kernels' bits).
std::vector<float> rounded(const std::vector<float>& v, DType dt, Device d) {
  return Tensor::from_vector(v, {(int64_t)v.size()}, d).to(dt).to_vector();
}

double ulp_of(DType dt) { return dt == DType::BF16 ? std::ldexp(1.0, -7) : std::ldexp(1.0, -10); }

// A leaf f32 tensor whose values are exact in dt, in [lo, hi).
Tensor exact_leaf(const Shape& shape, uint64_t seed, float lo, float hi, DType dt, Device d) {
  Tensor t = Tensor::uniform(shape, seed, lo, hi, d).to(dt).to(DType::F32).detach();
  t.set_requires_grad(true);
  return t;
}

struct LowUnary {
  const char* name;
  std::function<Tensor(const Tensor&)> fn;
  float lo, hi;
  bool reads_output;  // the derivative reads the (rounded) output
};

std::vector<LowUnary> low_unary_ops() {
  return {{"neg", [](const Tensor& x) { return neg(x); }, -3.f, 3.f, false},
          {"exp", [](const Tensor& x) { return exp(x); }, -3.f, 3.f, true},
          {"log", [](const Tensor& x) { return log(x); }, 0.1f, 4.f, false},
          {"sqrt", [](const Tensor& x) { return sqrt(x); }, 0.1f, 4.f, true},
          {"relu", [](const Tensor& x) { return relu(x); }, -3.f, 3.f, false},
          {"leaky_relu", [](const Tensor& x) { return leaky_relu(x, 0.1f); }, -3.f, 3.f, false},
          {"sigmoid", [](const Tensor& x) { return sigmoid(x); }, -6.f, 6.f, true},
          {"tanh", [](const Tensor& x) { return tanh(x); }, -3.f, 3.f, true},
          {"add_scalar", [](const Tensor& x) { return add(x, 0.37f); }, -3.f, 3.f, false},
          {"mul_scalar", [](const Tensor& x) { return mul(x, -1.7f); }, -3.f, 3.f, false},
          {"div_scalar", [](const Tensor& x) { return div(x, 3.f); }, -3.f, 3.f, false},
          {"maximum_scalar", [](const Tensor& x) { return maximum(x, 0.25f); }, -3.f, 3.f, false},
          {"rsub_scalar", [](const Tensor& x) { return rsub(2.f, x); }, -3.f, 3.f, false},
          {"rdiv_scalar", [](const Tensor& x) { return rdiv(2.f, x); }, 0.2f, 4.f, true}};
}

// The input views of one case: the tensor itself, a misaligned slice or a transpose of it.
Tensor view_of(const Tensor& base, int kind) {
  if (kind == 1) return base.reshape({base.numel()}).slice(0, 1, base.numel());
  if (kind == 2) return base.permute({1, 0});
  return base;
}

}  // namespace

TEST(ElementwiseLowPrecision, UnaryIsTheF32ResultRoundedOnce) {
  for (Device d : test_devices())
    for (DType dt : {DType::BF16, DType::F16})
      for (const LowUnary& op : low_unary_ops())
        for (int kind : {0, 1, 2}) {
          const std::string what =
              std::string(op.name) + " " + dtype_name(dt) + " on " + d.str() + " view " + std::to_string(kind);
          SCOPED_TRACE(what);
          const Shape shape = kind == 2 ? Shape{33, 31} : Shape{1027};
          const Tensor base = exact_leaf(kind == 1 ? Shape{1028} : shape, 5, op.lo, op.hi, dt, d);
          const Tensor x32 = view_of(base, kind);
          // Low precision: the cast is differentiable, so the gradient reaches the f32 leaf (widened).
          const Tensor y = op.fn(x32.to(dt));
          ASSERT_EQ(y.dtype(), dt);
          const Tensor g = Tensor::uniform(y.shape(), 9, -1.f, 1.f, d).to(dt);
          y.backward(g);
          // Reference: the f32 op on the same (exact) values, then rounded.
          Tensor ref_leaf = base.detach().clone().detach();
          ref_leaf.set_requires_grad(true);
          const Tensor y32 = op.fn(view_of(ref_leaf, kind));
          y32.backward(g.to(DType::F32));
          expect_same_bits(y.to_vector(), rounded(y32.to_vector(), dt, d), what + " forward");
          const std::vector<float> gx = base.grad().to_vector(), gx32 = ref_leaf.grad().to_vector();
          if (!op.reads_output) {
            expect_same_bits(gx, rounded(gx32, dt, d), what + " backward");
            continue;
          }
          // |g| <= 1, so |g| max(1, |y|) <= max(1, max |y|).
          double ymax = 1.0;
          for (float v : y32.to_vector()) ymax = std::max(ymax, (double)std::fabs(v));
          for (size_t i = 0; i < gx.size(); ++i)
            ASSERT_LE(std::fabs((double)gx[i] - gx32[i]), 2 * ulp_of(dt) * (std::fabs(gx32[i]) + ymax))
                << what << " backward element " << i << ": " << gx[i] << " vs " << gx32[i];
        }
}

TEST(ElementwiseLowPrecision, BinaryIsTheF32ResultRoundedOnce) {
  using BinaryFn = Tensor (*)(const Tensor&, const Tensor&);
  const std::vector<std::pair<const char*, BinaryFn>> ops = {
      {"add", &add}, {"sub", &sub}, {"mul", &mul}, {"div", &div}, {"maximum", &maximum}};
  for (Device d : test_devices())
    for (DType dt : {DType::BF16, DType::F16})
      for (const auto& [name, fn] : ops)
        for (bool broadcast : {false, true}) {
          const std::string what =
              std::string(name) + " " + dtype_name(dt) + " on " + d.str() + (broadcast ? " broadcast" : " same shape");
          SCOPED_TRACE(what);
          const Shape as = {2, 5, 7, 3}, bs = broadcast ? Shape{3} : as;
          const Tensor a = exact_leaf(as, 1, -3.f, 3.f, dt, d), b = exact_leaf(bs, 2, 0.5f, 3.f, dt, d);
          const Tensor y = fn(a.to(dt), b.to(dt));
          ASSERT_EQ(y.dtype(), dt);
          const Tensor g = Tensor::uniform(y.shape(), 9, -1.f, 1.f, d).to(dt);
          y.backward(g);
          Tensor a32 = a.detach().clone().detach(), b32 = b.detach().clone().detach();
          a32.set_requires_grad(true);
          b32.set_requires_grad(true);
          const Tensor y32 = fn(a32, b32);
          y32.backward(g.to(DType::F32));
          expect_same_bits(y.to_vector(), rounded(y32.to_vector(), dt, d), what + " forward");
          // Full-shape gradients are rounded once; a broadcast operand's is then summed in f32 and
          // rounded again, exact for add / sub (the summands are exact) and within the summands'
          // rounding (half an ulp each) otherwise.
          expect_same_bits(a.grad().to_vector(), rounded(a32.grad().to_vector(), dt, d), what + " grad a");
          const std::vector<float> gb = b.grad().to_vector(), gb32 = b32.grad().to_vector();
          if (!broadcast || std::string(name) == "add" || std::string(name) == "sub") {
            expect_same_bits(gb, rounded(gb32, dt, d), what + " grad b");
          } else {
            const double terms = (double)(as[0] * as[1] * as[2]);  // summands per element of b
            for (size_t i = 0; i < gb.size(); ++i)
              ASSERT_LE(std::fabs((double)gb[i] - gb32[i]), ulp_of(dt) * (std::fabs(gb32[i]) + terms * 9.0))
                  << what << " grad b element " << i << ": " << gb[i] << " vs " << gb32[i];
          }
        }
}

TEST(ElementwiseLowPrecision, MixedTypesAndIntegerTensorsAreRefused) {
  const Tensor a = Tensor::uniform({4}, 1, -1.f, 1.f, Device::cpu());
  expect_one_line_error([&] { add(a, a.to(DType::BF16)); }, {"add", "different float types", "bf16"});
  expect_one_line_error([&] { relu(a.to(DType::I32)); }, {"relu", "f32, bf16 or f16"});
  // The kernels' own guard (the ops check first): a storage type that is not a float type.
  std::vector<int32_t> ints(4, 1), out(4, 0);
  kernels::StridedLayout l = layout_of(Tensor::zeros({4}, DType::I32, Device::cpu()));
  expect_one_line_error(
      [&] { kernels::unary_fwd_cpu(kernels::UnaryOp::Relu, DType::I32, ints.data(), l, out.data(), 4, 0.f); },
      {"elementwise kernel", "i32", "is not f32, bf16 or f16"});
  Tensor acc = Tensor::zeros({4}, DType::F16, Device::cpu());
  add_inplace(acc, a.to(DType::F16));
  expect_same_bits(acc.to_vector(), rounded(a.to_vector(), DType::F16, Device::cpu()), "add_inplace f16");
}
