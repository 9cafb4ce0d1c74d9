// labels: kernel
// conv2d (engine/ops/conv.h): forward against a naive double 7-loop reference in NHWC/OIHW, the
// gradients of x, w and b against finite differences, the CUDA device against the CPU (in the
// emulated build that device calls the same oneDNN code on its host memory: this checks dispatch,
// allocation and autograd; tests/test_conv_gpu.cpp checks cuDNN on a real GPU), strided inputs,
// guard bytes and determinism, via the op harness. Shapes: batch 2, odd spatial sizes, channels that
// are not multiples of 8 (or of oneDNN's 16-wide blocks), size-1 dims. Plus the error messages.
#include <gtest/gtest.h>

#include <dnnl.hpp>
#if defined(_OPENMP)
#include <omp.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/ops/conv.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "engine/precision.h"
#include "kernels/cpu/conv_cpu.h"
#include "kernels/cpu/conv_wgrad_cpu.h"
#include "kernels/cpu/cpu_isa.h"
#include "kernels/cpu/weight_reorder_cpu.h"
#include "kernels/shared_math.h"
#include "tests/harness/op_check.h"

using namespace engine;
using namespace engine::testing;

namespace {

int64_t out_size(int64_t in, int64_t k, int stride, int pad, int dil) {
  return (in + 2 * pad - dil * (k - 1) - 1) / stride + 1;
}

// y[n,i,j,co] = b[co] + sum_{ci,r,s} x[n, i*sh-ph+r*dh, j*sw-pw+s*dw, g*cig+ci] * w[co,ci,r,s] in double.
std::vector<double> reference(const RefInputs& in, const std::vector<Shape>& shapes, const Conv2dArgs& a) {
  const Shape& xs = shapes[0];
  const Shape& ws = shapes[1];
  const int64_t N = xs[0], H = xs[1], W = xs[2], C = xs[3];
  const int64_t O = ws[0], CIG = ws[1], KH = ws[2], KW = ws[3];
  const int64_t G = a.groups, OG = O / G;
  const int64_t HO = out_size(H, KH, a.stride_h, a.pad_h, a.dilation_h);
  const int64_t WO = out_size(W, KW, a.stride_w, a.pad_w, a.dilation_w);
  const bool has_b = in.size() > 2;
  std::vector<double> y((size_t)(N * HO * WO * O));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t i = 0; i < HO; ++i)
      for (int64_t j = 0; j < WO; ++j)
        for (int64_t co = 0; co < O; ++co) {
          const int64_t g = co / OG;
          double acc = has_b ? in[2][(size_t)co] : 0.0;
          for (int64_t ci = 0; ci < CIG; ++ci)
            for (int64_t r = 0; r < KH; ++r)
              for (int64_t s = 0; s < KW; ++s) {
                const int64_t hi = i * a.stride_h - a.pad_h + r * a.dilation_h;
                const int64_t wi = j * a.stride_w - a.pad_w + s * a.dilation_w;
                if (hi < 0 || hi >= H || wi < 0 || wi >= W) continue;
                acc += in[0][(size_t)(((n * H + hi) * W + wi) * C + g * CIG + ci)] *
                       in[1][(size_t)(((co * CIG + ci) * KH + r) * KW + s)];
              }
          y[(size_t)(((n * HO + i) * WO + j) * O + co)] = acc;
        }
  (void)C;
  return y;
}

// Runs the harness on one conv configuration: x [N,H,W,Cin], w [Cout,Cin/groups,kH,kW], optional b.
void check_conv(const std::string& name, const Shape& x, const Shape& w, bool bias, const Conv2dArgs& a) {
  std::vector<Shape> shapes = {x, w};
  if (bias) shapes.push_back({w[0]});
  CheckOptions opt;
  opt.fwd_atol = 1e-4;
  opt.fwd_rtol = 1e-4;
  opt.grad_atol = 2e-3;
  opt.grad_rtol = 2e-3;
  opt.lo = -1.f;
  opt.hi = 1.f;
  opt.max_fd_elements = 40;
  check_op(
      "conv2d", {{name, shapes}},
      [a](const std::vector<Tensor>& in) {
        return std::vector<Tensor>{conv2d(in[0], in[1], in.size() > 2 ? in[2] : Tensor(), a)};
      },
      [a](const RefInputs& in, const std::vector<Shape>& s) {
        return std::vector<std::vector<double>>{reference(in, s, a)};
      },
      opt);
}

Conv2dArgs args(int stride, int pad, int dil = 1, int groups = 1) {
  Conv2dArgs a;
  a.stride_h = a.stride_w = stride;
  a.pad_h = a.pad_w = pad;
  a.dilation_h = a.dilation_w = dil;
  a.groups = groups;
  return a;
}

}  // namespace

TEST(Conv2d, K3S1P1Bias) { check_conv("3x3 s1 p1 + bias", {2, 6, 5, 3}, {5, 3, 3, 3}, true, args(1, 1)); }
TEST(Conv2d, K3S1P1NoBias) { check_conv("3x3 s1 p1", {2, 5, 6, 10}, {7, 10, 3, 3}, false, args(1, 1)); }
TEST(Conv2d, K3S2P1Odd) { check_conv("3x3 s2 p1 9x7", {2, 9, 7, 3}, {6, 3, 3, 3}, false, args(2, 1)); }
TEST(Conv2d, K3S2P1OddBias) { check_conv("3x3 s2 p1 9x7 + bias", {2, 9, 7, 5}, {4, 5, 3, 3}, true, args(2, 1)); }
TEST(Conv2d, K1) { check_conv("1x1", {2, 5, 4, 7}, {9, 7, 1, 1}, true, args(1, 0)); }
TEST(Conv2d, K1S2) { check_conv("1x1 s2 (drops the last row/col)", {2, 6, 5, 3}, {4, 3, 1, 1}, false, args(2, 0)); }
TEST(Conv2d, Depthwise3x3S2) { check_conv("depthwise 3x3 s2", {2, 7, 6, 5}, {5, 1, 3, 3}, false, args(2, 1, 1, 5)); }
TEST(Conv2d, Depthwise3x3S1Bias) {
  check_conv("depthwise 3x3 s1 + bias", {2, 5, 5, 6}, {6, 1, 3, 3}, true, args(1, 1, 1, 6));
}
TEST(Conv2d, Grouped2) { check_conv("groups 2", {2, 5, 5, 6}, {4, 3, 3, 3}, true, args(1, 1, 1, 2)); }
TEST(Conv2d, Grouped3S2) { check_conv("groups 3 s2", {2, 7, 7, 9}, {6, 3, 3, 3}, false, args(2, 1, 1, 3)); }
TEST(Conv2d, Dilation2) { check_conv("dilation 2", {2, 8, 7, 3}, {4, 3, 3, 3}, true, args(1, 2, 2)); }
TEST(Conv2d, Dilation2S2NoPad) { check_conv("dilation 2 s2 p0", {2, 9, 8, 2}, {3, 2, 3, 3}, false, args(2, 0, 2)); }
TEST(Conv2d, Size1Spatial) { check_conv("1x1 spatial, 3x3 kernel p1", {2, 1, 1, 4}, {3, 4, 3, 3}, true, args(1, 1)); }
TEST(Conv2d, Batch1Size1Channels) { check_conv("Cin = Cout = 1", {1, 6, 5, 1}, {1, 1, 3, 3}, true, args(1, 1)); }
TEST(Conv2d, Asymmetric) {
  Conv2dArgs a;
  a.stride_h = 1, a.stride_w = 2, a.pad_h = 0, a.pad_w = 1, a.dilation_h = 2, a.dilation_w = 1;
  check_conv("2x3 kernel, stride (1,2), pad (0,1), dilation (2,1)", {2, 7, 9, 3}, {5, 3, 2, 3}, true, a);
}
TEST(Conv2d, WiderChannels) {
  // More channels than one 16-wide oneDNN block, not a multiple of it.
  check_conv("3x3 s1 p1 Cin 21 Cout 19", {2, 5, 4, 21}, {19, 21, 3, 3}, true, args(1, 1));
}

TEST(Conv2d, EmptyBatch) {
  for (Device dev : {Device::cpu(), Device::cuda(0)}) {
    if (dev.is_cuda() && !have_cuda()) continue;
    Tensor x = Tensor::zeros({0, 5, 5, 3}, DType::F32, dev).set_requires_grad(true);
    Tensor w = Tensor::randn({4, 3, 3, 3}, 1, 1.f, dev).set_requires_grad(true);
    Tensor b = Tensor::randn({4}, 2, 1.f, dev).set_requires_grad(true);
    Tensor y = conv2d(x, w, b, args(2, 1));
    EXPECT_EQ(y.shape(), (Shape{0, 3, 3, 4}));
    y.backward(Tensor::zeros(y.shape(), DType::F32, dev));
    EXPECT_EQ(w.grad().shape(), w.shape());
    for (float v : w.grad().to_vector()) EXPECT_EQ(v, 0.f);
    for (float v : b.grad().to_vector()) EXPECT_EQ(v, 0.f);
  }
}

TEST(Conv2d, PrimitivesAreCached) {
  const Tensor x = Tensor::randn({1, 11, 13, 5}, 3), w = Tensor::randn({7, 5, 3, 3}, 4);
  conv2d(x, w, Tensor(), args(1, 1));
  const size_t n = kernels::conv2d_cpu_cache_size();
  for (int i = 0; i < 3; ++i) conv2d(x, w, Tensor(), args(1, 1));
  EXPECT_EQ(kernels::conv2d_cpu_cache_size(), n);
  conv2d(x, w, Tensor(), args(2, 1));  // new args -> one new primitive
  EXPECT_EQ(kernels::conv2d_cpu_cache_size(), n + 1);
}

TEST(Conv2d, WeightUpdatedInPlaceIsSeen) {
  // The op must not cache reordered weights by pointer: an in-place update changes the result.
  const Tensor x = Tensor::randn({1, 6, 6, 4}, 5);
  Tensor w = Tensor::randn({8, 4, 3, 3}, 6);
  const auto y1 = conv2d(x, w, Tensor(), args(1, 1)).to_vector();
  w.copy_(Tensor::full(w.shape(), 0.f));
  for (float v : conv2d(x, w, Tensor(), args(1, 1)).to_vector()) ASSERT_EQ(v, 0.f);
  EXPECT_NE(y1[0], 0.f);
}

// ---------------------------------------------------------------------------------- errors
namespace {
constexpr auto expect_error = &engine::testing::expect_one_line_error;
}  // namespace

TEST(Conv2d, Errors) {
  const Tensor x = Tensor::randn({2, 5, 5, 6}, 1), w = Tensor::randn({4, 6, 3, 3}, 2), b = Tensor::randn({4}, 3);
  // rank
  expect_error([&] { conv2d(Tensor::randn({5, 5, 6}, 1), w, b, args(1, 1)); }, {"conv2d", "4-D", "[5, 5, 6]"});
  expect_error([&] { conv2d(x, Tensor::randn({4, 6, 3}, 1), b, args(1, 1)); }, {"conv2d", "w", "[4, 6, 3]"});
  // Cin mismatch
  expect_error(
      [&] {
        conv2d(x, Tensor::randn({4, 5, 3, 3}, 1), b, args(1, 1));
      },
      {"conv2d", "Cin", "[2, 5, 5, 6]", "[4, 5, 3, 3]"});
  // groups not dividing the channels
  expect_error(
      [&] {
        conv2d(x, Tensor::randn({4, 2, 3, 3}, 1), b, args(1, 1, 1, 4));
      },
      {"conv2d", "groups 4", "[2, 5, 5, 6]"});
  expect_error(
      [&] {
        conv2d(x, Tensor::randn({5, 3, 3, 3}, 1), Tensor(), args(1, 1, 1, 2));
      },
      {"conv2d", "groups 2", "Cout = 5"});
  expect_error([&] { conv2d(x, w, b, args(1, 1, 1, 0)); }, {"conv2d", "groups 0"});
  // bias shape
  expect_error([&] { conv2d(x, w, Tensor::randn({5}, 1), args(1, 1)); }, {"conv2d", "b", "[5]", "[4]"});
  expect_error([&] { conv2d(x, w, Tensor::randn({1, 4}, 1), args(1, 1)); }, {"conv2d", "b", "[1, 4]"});
  // kernel larger than the padded input
  expect_error(
      [&] {
        conv2d(x, Tensor::randn({4, 6, 7, 7}, 1), b, args(1, 0));
      },
      {"conv2d", "larger than the padded input", "[2, 5, 5, 6]", "[4, 6, 7, 7]"});
  expect_error([&] { conv2d(x, w, b, args(1, 0, 3)); }, {"conv2d", "7 x 7 after dilation", "5 x 5"});
  // non-f32
  expect_error([&] { conv2d(x, w.to(DType::BF16), b, args(1, 1)); }, {"conv2d", "w and b f32", "bf16"});
  expect_error([&] { conv2d(x.to(DType::I32), w, b, args(1, 1)); }, {"conv2d", "x must be f32, bf16 or f16", "i32"});
  expect_error([&] { conv2d(x, w, b.to(DType::I32), args(1, 1)); }, {"conv2d", "f32"});
  // bad stride / padding / dilation
  expect_error([&] { conv2d(x, w, b, args(0, 1)); }, {"conv2d", "stride (0, 0)"});
  expect_error([&] { conv2d(x, w, b, args(1, -1)); }, {"conv2d", "padding (-1, -1)"});
  // empty channels / spatial dims
  expect_error([&] { conv2d(Tensor::zeros({2, 0, 5, 6}), w, b, args(1, 1)); }, {"conv2d", "empty", "[2, 0, 5, 6]"});
  // undefined
  expect_error([&] { conv2d(Tensor(), w, b, args(1, 1)); }, {"conv2d", "'x'"});
  // devices
  if (have_cuda()) expect_error([&] { conv2d(x, w.to(Device::cuda(0)), b, args(1, 1)); }, {"conv2d", "cuda"});
}

// ---- bf16 autocast (engine/precision.h): on CPUs with AVX512-BF16 or AMX-BF16, x, w and gy are
// rounded to bfloat16 (nearest even) for the products and everything is accumulated in f32. The
// reference is the double-precision convolution of the rounded values, so the result must match it
// to f32 accumulation error, and differ from the f32 convolution by bf16 rounding error.
namespace {

float round_bf16(float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  u = (u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u;
  float r;
  std::memcpy(&r, &u, 4);
  return r;
}

struct ConvRef {
  std::vector<double> y, gx, gw, gb;
};

// The forward and the gradients of sum(y * g) in double, from the given (already rounded) values.
ConvRef conv_ref(const std::vector<float>& x, const Shape& xs, const std::vector<float>& w, const Shape& ws,
                 const std::vector<float>& b, const std::vector<float>& g, const Conv2dArgs& a) {
  const int64_t n = xs[0], h = xs[1], wd = xs[2], cin = xs[3], cout = ws[0], cg = ws[1], kh = ws[2], kw = ws[3];
  const int64_t ho = out_size(h, kh, a.stride_h, a.pad_h, a.dilation_h),
                wo = out_size(wd, kw, a.stride_w, a.pad_w, a.dilation_w);
  const int64_t og = cout / a.groups;
  ConvRef r;
  r.y.assign(n * ho * wo * cout, 0.0);
  r.gx.assign(x.size(), 0.0);
  r.gw.assign(w.size(), 0.0);
  r.gb.assign(cout, 0.0);
  for (int64_t in = 0; in < n; ++in)
    for (int64_t i = 0; i < ho; ++i)
      for (int64_t j = 0; j < wo; ++j)
        for (int64_t co = 0; co < cout; ++co) {
          const int64_t yi = ((in * ho + i) * wo + j) * cout + co;
          double acc = b.empty() ? 0.0 : b[co];
          const double gy = g[yi];
          r.gb[co] += gy;
          for (int64_t ci = 0; ci < cg; ++ci)
            for (int64_t rr = 0; rr < kh; ++rr)
              for (int64_t ss = 0; ss < kw; ++ss) {
                const int64_t hh = i * a.stride_h - a.pad_h + rr * a.dilation_h;
                const int64_t ww = j * a.stride_w - a.pad_w + ss * a.dilation_w;
                if (hh < 0 || hh >= h || ww < 0 || ww >= wd) continue;
                const int64_t xi = ((in * h + hh) * wd + ww) * cin + (co / og) * cg + ci;
                const int64_t wi = ((co * cg + ci) * kh + rr) * kw + ss;
                acc += (double)x[xi] * w[wi];
                r.gx[xi] += gy * w[wi];
                r.gw[wi] += gy * x[xi];
              }
          r.y[yi] = acc;
        }
  return r;
}

// Largest |got - want| / (1e-3 + max |want|) over the tensor.
double rel_err(const std::vector<float>& got, const std::vector<double>& want) {
  double max_abs = 0, err = 0;
  for (double v : want) max_abs = std::max(max_abs, std::fabs(v));
  for (size_t i = 0; i < got.size(); ++i) err = std::max(err, std::fabs(got[i] - want[i]));
  return err / (1e-3 + max_abs);
}

float round_half(float v) { return kernels::half_bits_to_float(kernels::float_to_half_bits(v)); }

// `prec` is BF16 or FP16; `round` rounds an f32 to that type. `min_diff` / `max_diff`: the band the
// distance from the f32 convolution must fall in (the type's rounding error).
// `tol`: the relative error allowed against the double reference of the rounded inputs (f32
// accumulation; sums of hundreds of thousands of terms need more than the default).
void check_conv_low(Precision prec, float (*round)(float), double min_diff, double max_diff, const Shape& xs,
                    const Shape& ws, bool bias, const Conv2dArgs& a, Device dev, double tol = 2e-6) {
  SCOPED_TRACE(std::string(precision_name(prec)) + " conv x " + shape_str(xs) + " w " + shape_str(ws) + " on " +
               dev.str());
  Tensor x = Tensor::uniform(xs, 11, -1, 1, dev).set_requires_grad(true);
  Tensor w = Tensor::uniform(ws, 12, -1, 1, dev).set_requires_grad(true);
  Tensor b = bias ? Tensor::uniform({ws[0]}, 13, -1, 1, dev).set_requires_grad(true) : Tensor();
  Tensor y32;
  {
    NoGradGuard no_grad;
    y32 = conv2d(x, w, b, a);
  }
  Tensor y;
  {
    AutocastGuard low(prec);
    y = conv2d(x, w, b, a);
  }
  const Tensor g = Tensor::uniform(y.shape(), 14, -1, 1, dev);
  sum(y * g).backward();  // after the guard: the backward keeps the forward's precision
  auto rounded = [round](std::vector<float> v) {
    for (float& e : v) e = round(e);
    return v;
  };
  const ConvRef ref = conv_ref(rounded(x.to_vector()), xs, rounded(w.to_vector()), ws,
                               bias ? b.to_vector() : std::vector<float>{}, rounded(g.to_vector()), a);
  // A GPU (cuDNN) computes in the low type end to end: y, gx and gw come back rounded to it (y before
  // the bias is added), so they are off by up to half an ulp of it (2^-9 / 2^-12 relative); the CPU
  // keeps its f32 accumulators.
  const bool gpu = dev.is_cuda();
  const double out_tol = tol + (gpu ? (prec == Precision::BF16 ? 0x1p-8 : 0x1p-11) : 0.0);
  EXPECT_LT(rel_err(y.to_vector(), ref.y), out_tol) << "forward";
  EXPECT_LT(rel_err(x.grad().to_vector(), ref.gx), out_tol) << "backward-data";
  EXPECT_LT(rel_err(w.grad().to_vector(), ref.gw), out_tol) << "backward-weights";
  if (gpu) {
    const std::vector<float> gx = x.grad().to_vector(), gw = w.grad().to_vector();
    EXPECT_EQ(gx, rounded(gx)) << "the GPU's gx is not in the low type";
    EXPECT_EQ(gw, rounded(gw)) << "the GPU's gw is not in the low type";
  }
  // The bias gradient is the f32 sum of gy: on the CPU of the rounded gy (oneDNN's low-type
  // backward-weights sums it, as under PyTorch's autocast); on a GPU of gy as it arrived (f32 here).
  if (bias) {
    std::vector<double> gb(ref.gb.size(), 0.0);
    const std::vector<float> gv = g.to_vector();
    for (size_t i = 0; i < gv.size(); ++i) gb[i % gb.size()] += gv[i];
    EXPECT_LT(rel_err(b.grad().to_vector(), gpu ? gb : ref.gb), tol) << "bias gradient";
  }
  // And it really is the low type: the f32 convolution differs from it by that type's rounding error.
  const double d = rel_err(y32.to_vector(), std::vector<double>(ref.y.begin(), ref.y.end()));
  EXPECT_GT(d, min_diff) << "the low-precision result equals the f32 one";
  EXPECT_LT(d, max_diff) << "the low-precision result is further from f32 than rounding explains";
}

void check_conv_bf16(const Shape& xs, const Shape& ws, bool bias, const Conv2dArgs& a, Device dev, double tol = 2e-6) {
  check_conv_low(Precision::BF16, round_bf16, 1e-4, 2e-2, xs, ws, bias, a, dev, tol);
}

void check_conv_fp16(const Shape& xs, const Shape& ws, bool bias, const Conv2dArgs& a, Device dev) {
  check_conv_low(Precision::FP16, round_half, 1e-5, 3e-3, xs, ws, bias, a, dev);
}

}  // namespace

TEST(Conv2dBf16, MatchesRoundedReference) {
  if (!kernels::cpu_has_bf16()) GTEST_SKIP() << "this CPU has no AVX512-BF16 / AMX-BF16";
  std::vector<Device> devices = {Device::cpu()};
  if (have_cuda() && cuda_is_emulated()) devices.push_back(Device::cuda(0));
  for (const Device dev : devices) {
    check_conv_bf16({2, 9, 8, 19}, {21, 19, 3, 3}, true, args(1, 1), dev);
    check_conv_bf16({2, 9, 7, 16}, {32, 16, 3, 3}, false, args(2, 1), dev);
    check_conv_bf16({2, 6, 5, 24}, {8, 24, 1, 1}, true, args(1, 0), dev);
    check_conv_bf16({1, 7, 6, 16}, {16, 1, 3, 3}, false, args(1, 1, 1, 16), dev);  // depthwise
    // 1x1 without bias: the weight gradient is a matmul gy^T x (conv_cpu.cpp), cout != cin.
    check_conv_bf16({2, 6, 5, 24}, {40, 24, 1, 1}, false, args(1, 0), dev);
  }
}

// A 1x1 layer of STDC's size class (P = 8192 pixels per weight gradient) through the same matmul.
TEST(Conv2dBf16, PointwiseLayerWeightGradient) {
  if (!kernels::cpu_has_bf16()) GTEST_SKIP() << "this CPU has no AVX512-BF16 / AMX-BF16";
  check_conv_bf16({2, 64, 64, 48}, {96, 48, 1, 1}, false, args(1, 0), Device::cpu(), 2e-5);
}

// Depthwise layers at full size (their bf16 backward-weights runs in f32 from the bf16 values,
// conv_cpu.cpp): STDC's stride-2 "avd" layer of stage 3 and a MobileNetV1 stride-1 layer. Each
// weight gradient sums up to 8192 products in f32.
TEST(Conv2dBf16, DepthwiseLayersAtFullSize) {
  if (!kernels::cpu_has_bf16()) GTEST_SKIP() << "this CPU has no AVX512-BF16 / AMX-BF16";
  check_conv_bf16({2, 128, 128, 128}, {128, 1, 3, 3}, false, args(2, 1, 1, 128), Device::cpu(), 2e-5);
  check_conv_bf16({2, 52, 52, 256}, {256, 1, 3, 3}, false, args(1, 1, 1, 256), Device::cpu(), 2e-5);
}

// The direct weight-gradient kernels (kernels/cpu/conv_wgrad_cpu.inc, bf16 / fp16).
// Depthwise: 3x3 layers of whole 32-channel blocks take the register kernel (bf16 in interleaved
// lanes), a last block of fewer channels and other kernel sizes the plain loop, and the columns
// whose taps leave the image are the checked ones.
// Thin input (groups 1, cin < 4): 3x3 layers of 3 input channels and whole 32-output-channel blocks
// take the register kernel, the rest the plain loop.
// Each case against the double reference, and its weight gradient the same bits with one thread as
// with all (row blocks fixed by the shape).
namespace {
struct WgradCase {
  Shape xs, ws;
  bool bias;
  Conv2dArgs a;
  double tol;
};

void check_wgrad_paths(Precision prec, const std::vector<WgradCase>& cases) {
  float (*round)(float) = prec == Precision::BF16 ? round_bf16 : round_half;
  for (const WgradCase& c : cases) {
    if (prec == Precision::BF16)
      check_conv_low(prec, round, 1e-4, 2e-2, c.xs, c.ws, c.bias, c.a, Device::cpu(), c.tol);
    else
      check_conv_low(prec, round, 1e-5, 3e-3, c.xs, c.ws, c.bias, c.a, Device::cpu(), c.tol);
#if defined(_OPENMP)
    auto weight_grad = [&] {
      Tensor x = Tensor::uniform(c.xs, 21, -1, 1);
      Tensor w = Tensor::uniform(c.ws, 22, -1, 1).set_requires_grad(true);
      Tensor b = c.bias ? Tensor::uniform({c.ws[0]}, 24, -1, 1).set_requires_grad(true) : Tensor();
      Tensor y;
      {
        AutocastGuard low(prec);
        y = conv2d(x, w, b, c.a);
      }
      sum(y * Tensor::uniform(y.shape(), 23, -1, 1)).backward();
      std::vector<float> out = w.grad().to_vector();
      if (c.bias) {
        const std::vector<float> gb = b.grad().to_vector();
        out.insert(out.end(), gb.begin(), gb.end());
      }
      return out;
    };
    const std::vector<float> all = weight_grad();
    const int prev = omp_get_max_threads();
    omp_set_num_threads(1);
    const std::vector<float> one = weight_grad();
    omp_set_num_threads(prev);
    ASSERT_EQ(all.size(), one.size());
    EXPECT_EQ(0, std::memcmp(all.data(), one.data(), all.size() * 4)) << "x " << shape_str(c.xs) << ": threads";
#endif
  }
}

std::vector<WgradCase> depthwise_cases() {
  return {
      {{2, 9, 11, 40}, {40, 1, 3, 3}, true, args(1, 1, 1, 40), 2e-6},    // a 32-channel block and an 8-channel tail
      {{2, 13, 12, 64}, {64, 1, 3, 3}, false, args(2, 2, 2, 64), 2e-6},  // stride 2, dilation 2, padding 2
      {{1, 3, 3, 32}, {32, 1, 3, 3}, true, args(1, 1, 1, 32), 2e-6},     // one unchecked column
      {{2, 2, 2, 32}, {32, 1, 3, 3}, false, args(1, 1, 1, 32), 2e-6},    // every column checked
      {{2, 8, 9, 32}, {32, 1, 5, 5}, false, args(1, 2, 1, 32), 2e-6},    // 5x5: the plain loop
      {{1, 6, 7, 96}, {96, 1, 3, 3}, true, args(1, 0, 1, 96), 2e-6},     // no padding
      {{2, 40, 40, 64}, {64, 1, 3, 3}, false, args(1, 1, 1, 64), 2e-5},  // several row blocks
  };
}

std::vector<WgradCase> thin_input_cases() {
  return {
      {{2, 17, 19, 3}, {32, 3, 3, 3}, true, args(1, 1), 2e-6},     // the register kernel, stride 1
      {{2, 18, 21, 3}, {64, 3, 3, 3}, false, args(2, 1), 2e-6},    // stride 2, two output blocks
      {{1, 13, 12, 3}, {40, 3, 3, 3}, true, args(2, 2, 2), 2e-6},  // dilation 2; a block and an 8-channel tail
      {{2, 2, 2, 3}, {32, 3, 3, 3}, false, args(1, 1), 2e-6},      // every column checked
      {{1, 7, 8, 3}, {32, 3, 3, 3}, true, args(1, 0), 2e-6},       // no padding
      {{2, 9, 10, 2}, {4, 2, 3, 3}, true, args(1, 1), 2e-6},       // 2 input channels: the plain loop
      {{2, 8, 9, 1}, {33, 1, 5, 5}, false, args(1, 2), 2e-6},      // 5x5, 1 input channel
      {{2, 64, 64, 3}, {32, 3, 3, 3}, false, args(1, 1), 2e-5},    // several row blocks
  };
}
}  // namespace

TEST(Conv2dBf16, DepthwiseWeightGradientPaths) {
  if (!kernels::cpu_has_bf16()) GTEST_SKIP() << "this CPU has no AVX512-BF16 / AMX-BF16";
  check_wgrad_paths(Precision::BF16, depthwise_cases());
}

TEST(Conv2dFp16, DepthwiseWeightGradientPaths) { check_wgrad_paths(Precision::FP16, depthwise_cases()); }

TEST(Conv2dBf16, ThinInputWeightGradientPaths) {
  if (!kernels::cpu_has_bf16()) GTEST_SKIP() << "this CPU has no AVX512-BF16 / AMX-BF16";
  check_wgrad_paths(Precision::BF16, thin_input_cases());
}

TEST(Conv2dFp16, ThinInputWeightGradientPaths) { check_wgrad_paths(Precision::FP16, thin_input_cases()); }

// The direct weight-gradient kernels also take f32 x and gy (the convolution op gives f32 layers
// to oneDNN; these call the kernels themselves): 3x3 layers with a 32-channel block and a tail, and
// the bias, against the double reference; a layer of the other kind is refused.
namespace {
using WgradKernel = void (*)(DType, const kernels::ConvParams&, const void*, const void*, float*, float*);
void check_f32_wgrad(WgradKernel kernel, const Shape& xs, const Shape& ws, int stride, int groups,
                     kernels::ConvParams refused, const std::vector<std::string>& refusal) {
  const Conv2dArgs a = args(stride, 1, 1, groups);
  kernels::ConvParams p;
  p.n = xs[0], p.h = xs[1], p.w = xs[2], p.cin = xs[3], p.cout = ws[0], p.groups = groups;
  p.kh = p.kw = 3;
  p.stride_h = p.stride_w = stride;
  p.ho = out_size(p.h, 3, stride, 1, 1), p.wo = out_size(p.w, 3, stride, 1, 1);
  p.pad_h = p.pad_w = 1;
  p.bias = true;
  const std::vector<float> x = Tensor::uniform(xs, 41, -1, 1).to_vector();
  const std::vector<float> g = Tensor::uniform({p.n, p.ho, p.wo, p.cout}, 42, -1, 1).to_vector();
  const size_t wn = (size_t)shape_numel(ws);
  const std::vector<float> w(wn, 0.f), b((size_t)p.cout, 0.f);
  std::vector<float> gw(wn), gb((size_t)p.cout);
  kernel(DType::F32, p, x.data(), g.data(), gw.data(), gb.data());
  const ConvRef ref = conv_ref(x, xs, w, ws, b, g, a);
  EXPECT_LT(rel_err(gw, ref.gw), 2e-6);
  EXPECT_LT(rel_err(gb, ref.gb), 2e-6);
  expect_error([&] { kernel(DType::F32, refused, x.data(), g.data(), gw.data(), nullptr); }, refusal);
}
}  // namespace

TEST(Conv2dDepthwiseKernel, F32WeightGradientMatchesReference) {
  kernels::ConvParams grouped;
  grouped.cin = grouped.cout = 40, grouped.groups = 20;
  check_f32_wgrad(kernels::conv2d_dw_bwd_weights_cpu, {2, 9, 11, 40}, {40, 1, 3, 3}, 1, 40, grouped,
                  {"conv2d_dw_bwd_weights_cpu", "not a depthwise layer"});
}

TEST(Conv2dThinInputKernel, F32WeightGradientMatchesReference) {
  kernels::ConvParams four;
  four.cin = 4, four.cout = 40, four.groups = 1;
  check_f32_wgrad(kernels::conv2d_thin_bwd_weights_cpu, {2, 11, 13, 3}, {40, 3, 3, 3}, 2, 1, four,
                  {"conv2d_thin_bwd_weights_cpu", "not a thin-input layer"});
}

// A grouped layer with fewer than 4 input channels per group that is neither depthwise nor thin
// (groups 2 of 2 channels): its bf16 weight gradient widens x and gy for oneDNN's f32 kernel
// (conv_cpu.cpp bwd_weights_in_f32).
TEST(Conv2dBf16, GroupedLayerWithFewChannelsPerGroup) {
  if (!kernels::cpu_has_bf16()) GTEST_SKIP() << "this CPU has no AVX512-BF16 / AMX-BF16";
  check_conv_bf16({2, 9, 10, 4}, {8, 2, 3, 3}, true, args(1, 1, 1, 2), Device::cpu());
}

// An image input layer (3 channels) at full size, as YOLOv3-DarkNet53's first layer: oneDNN's bf16
// backward-weights on AMX returned a weight gradient with relative error 1.55 for it (and crashed in
// the whole model); conv_cpu.cpp runs its weight gradient in the thin-input kernel instead. Each weight gradient sums
// 346112 products in f32, hence the wider tolerance.
TEST(Conv2dBf16, ThreeChannelInputLayerAtFullSize) {
  if (!kernels::cpu_has_bf16()) GTEST_SKIP() << "this CPU has no AVX512-BF16 / AMX-BF16";
  check_conv_bf16({2, 416, 416, 3}, {32, 3, 3, 3}, false, args(1, 1), Device::cpu(), 5e-5);
  check_conv_bf16({2, 512, 512, 3}, {32, 3, 3, 3}, false, args(2, 1), Device::cpu(), 5e-5);  // STDC's
}

// fp16 (the emulated GPU's stand-in for cuDNN's fp16 convolution; the op runs on the CPU device too,
// and the programs refuse fp16 there). Runs on every CPU: no special instructions are needed.
TEST(Conv2dFp16, MatchesRoundedReference) {
  std::vector<Device> devices = {Device::cpu()};
  if (have_cuda() && cuda_is_emulated()) devices.push_back(Device::cuda(0));
  for (const Device dev : devices) {
    check_conv_fp16({2, 9, 8, 19}, {21, 19, 3, 3}, true, args(1, 1), dev);
    check_conv_fp16({2, 9, 7, 16}, {32, 16, 3, 3}, false, args(2, 1), dev);
    check_conv_fp16({2, 6, 5, 24}, {8, 24, 1, 1}, true, args(1, 0), dev);
    check_conv_fp16({1, 7, 6, 16}, {16, 1, 3, 3}, false, args(1, 1, 1, 16), dev);  // depthwise
  }
}

// What loss scaling exists for: an output gradient beyond fp16's range (65504) becomes inf in the
// backward (inf or nan once infs of both signs meet), and one below its smallest subnormal (2^-24)
// becomes zero.
TEST(Conv2dFp16, GradientOverflowAndUnderflow) {
  for (const float gscale : {1e5f, 1e-9f}) {
    SCOPED_TRACE("gy scale " + std::to_string(gscale));
    Tensor x = Tensor::uniform({1, 5, 5, 4}, 21, -1, 1).set_requires_grad(true);
    Tensor w = Tensor::uniform({6, 4, 3, 3}, 22, -1, 1).set_requires_grad(true);
    Tensor y;
    {
      AutocastGuard fp16(Precision::FP16);
      y = conv2d(x, w, Tensor(), args(1, 1));
    }
    sum(y * Tensor::full(y.shape(), gscale)).backward();
    const std::vector<float> gx = x.grad().to_vector(), gw = w.grad().to_vector();
    if (gscale > 1) {
      EXPECT_TRUE(std::none_of(gx.begin(), gx.end(), [](float v) { return std::isfinite(v); }));
      EXPECT_TRUE(std::none_of(gw.begin(), gw.end(), [](float v) { return std::isfinite(v); }));
    } else {
      EXPECT_TRUE(std::all_of(gx.begin(), gx.end(), [](float v) { return v == 0.f; }));
      EXPECT_TRUE(std::all_of(gw.begin(), gw.end(), [](float v) { return v == 0.f; }));
    }
  }
}

TEST(Conv2dBf16, PrecisionNamesAndAvailability) {
  EXPECT_EQ(parse_precision("bf16", "--precision"), Precision::BF16);
  EXPECT_EQ(parse_amp_level("O2", "--amp_level"), AmpLevel::O2);
  expect_error([] { parse_precision("half", "--precision"); },
               {"--precision", "expected fp32, tf32, bf16 or fp16", "'half'"});
  expect_error([] { check_precision_available(Precision::FP16, AmpLevel::O1, Device::cpu()); },
               {"--precision fp16", "GPU precision", "bf16"});
  // The emulated GPU computes every precision, whatever the CPU (its cuDNN widens to f32).
  if (have_cuda() && cuda_is_emulated()) {
    check_precision_available(Precision::FP16, AmpLevel::O1, Device::cuda(0));
    check_precision_available(Precision::BF16, AmpLevel::O2, Device::cuda(0));
    check_precision_available(Precision::TF32, AmpLevel::O1, Device::cuda(0));
  }
  // TF32 is a tensor-core math mode: refused on the CPU, by the programs' check and by the ops
  // themselves.
  expect_error([] { check_precision_available(Precision::TF32, AmpLevel::O1, Device::cpu()); },
               {"--precision tf32", "CPUs have no TF32"});
  {
    const AutocastGuard tf32(Precision::TF32);
    expect_error(
        [] {
          conv2d(Tensor::zeros({1, 4, 4, 2}), Tensor::zeros({3, 2, 3, 3}), Tensor(), args(1, 1));
        },
        {"conv2d", "tf32 autocast needs a GPU"});
  }
  expect_error([] { check_precision_available(Precision::TF32, AmpLevel::O2, Device::cpu()); },
               {"--precision tf32", "--amp_level O2", "does not apply"});
  check_precision_available(Precision::FP32, AmpLevel::O1, Device::cpu());
  check_precision_available(Precision::FP32, AmpLevel::O2, Device::cpu());  // Paddle: O2 has no effect on fp32
  if (kernels::cpu_has_bf16()) {
    check_precision_available(Precision::BF16, AmpLevel::O1, Device::cpu());
    check_precision_available(Precision::BF16, AmpLevel::O2, Device::cpu());
  } else {
    expect_error([] { check_precision_available(Precision::BF16, AmpLevel::O1, Device::cpu()); },
                 {"AVX512-BF16", "--precision fp32"});
  }
}

// ---- O2: a bf16 / f16 x is multiplied in its own type, and y and gx are stored in it too (rounded
// once from the f32 accumulator, bias included); gw and gb stay f32. Against the O1 convolution of
// the same (exactly representable) values: y and gx are its f32 results rounded once, gw and gb are
// its results, bit for bit.
namespace {

// train_w false: a frozen weight, so the bias gradient is the op's sum of gy alone (no weight-gradient
// kernel), which must stay f32 as well.
void check_conv_o2(DType low, const Shape& xs, const Shape& ws, bool bias, const Conv2dArgs& a, Device dev,
                   bool train_w = true) {
  SCOPED_TRACE(std::string(dtype_name(low)) + " O2 conv x " + shape_str(xs) + " w " + shape_str(ws) + " on " +
               dev.str() + (train_w ? "" : ", frozen weight"));
  const Precision prec = low == DType::BF16 ? Precision::BF16 : Precision::FP16;
  // Leaves are f32: x_leaf's gradient is the conv's low gx, widened by the cast's backward.
  const Tensor x_leaf = Tensor::uniform(xs, 31, -1, 1, dev).to(low).to(DType::F32).set_requires_grad(true);
  const Tensor x_low = x_leaf.to(low);
  const Tensor x_o1 = x_leaf.detach().clone().set_requires_grad(true);
  const Tensor w = Tensor::uniform(ws, 32, -1, 1, dev).set_requires_grad(train_w);
  const Tensor w_o1 = w.detach().clone().set_requires_grad(train_w);
  const Tensor b = bias ? Tensor::uniform({ws[0]}, 33, -1, 1, dev).set_requires_grad(true) : Tensor();
  const Tensor b_o1 = bias ? b.detach().clone().set_requires_grad(true) : Tensor();
  Tensor y, y_o1;
  {
    AutocastGuard guard(prec, AmpLevel::O2);
    y = conv2d(x_low, w, b, a);
    y_o1 = conv2d(x_o1, w_o1, b_o1, a);
  }
  ASSERT_EQ(y.dtype(), low);
  ASSERT_EQ(y_o1.dtype(), DType::F32);
  const Tensor g_low = Tensor::uniform(y.shape(), 34, -1, 1, dev).to(low);
  sum(mul(y, g_low)).backward();  // the gradient reaching y is g_low itself
  sum(mul(y_o1, g_low.to(DType::F32))).backward();
  if (!bias || dev.is_cpu()) {
    expect_same_bits(y.to(DType::F32).to_vector(), y_o1.to(low).to(DType::F32).to_vector(), "y");
  } else {
    // A GPU: cuDNN's y is in the low type before the bias is added (the O1 y too), and at O2 the bias
    // is rounded to that type first, so y = low(y_without_bias + low(b)), each sum rounded to f32 and
    // then to the low type.
    NoGradGuard no_grad;
    const AutocastGuard guard(prec, AmpLevel::O2);
    const std::vector<float> nb = conv2d(x_o1, w_o1, Tensor(), a).to_vector(),
                             bv = b.to(low).to(DType::F32).to_vector();
    std::vector<float> want(nb.size());
    for (size_t i = 0; i < nb.size(); ++i) want[i] = nb[i] + bv[i % bv.size()];
    expect_same_bits(y.to(DType::F32).to_vector(),
                     Tensor::from_vector(want, y.shape()).to(low).to(DType::F32).to_vector(), "y");
  }
  expect_same_bits(x_leaf.grad().to_vector(), x_o1.grad().to(low).to(DType::F32).to_vector(), "gx");
  if (train_w) expect_same_bits(w.grad().to_vector(), w_o1.grad().to_vector(), "gw");
  if (bias) {
    ASSERT_EQ(b.grad().dtype(), DType::F32);
    expect_same_bits(b.grad().to_vector(), b_o1.grad().to_vector(), "gb");
  }
}

}  // namespace

TEST(Conv2dO2, LowActivationsInAndOut) {
  for (const Device dev : test_devices()) {
    for (const DType low : {DType::BF16, DType::F16}) {
      if (low == DType::BF16 && dev.is_cpu() && !kernels::cpu_has_bf16()) continue;  // oneDNN's bf16 kernels
      check_conv_o2(low, {2, 9, 8, 19}, {21, 19, 3, 3}, true, args(1, 1), dev);
      check_conv_o2(low, {2, 9, 7, 16}, {32, 16, 3, 3}, false, args(2, 1), dev);
      check_conv_o2(low, {2, 6, 5, 24}, {8, 24, 1, 1}, true, args(1, 0), dev);
      check_conv_o2(low, {1, 7, 6, 16}, {16, 1, 3, 3}, false, args(1, 1, 1, 16), dev);  // depthwise
      // depthwise with more than 32 channels, stride 1 with a bias and stride 2
      check_conv_o2(low, {2, 9, 8, 40}, {40, 1, 3, 3}, true, args(1, 1, 1, 40), dev);
      check_conv_o2(low, {1, 11, 10, 64}, {64, 1, 3, 3}, false, args(2, 1, 1, 64), dev);
      check_conv_o2(low, {2, 9, 8, 19}, {21, 19, 3, 3}, true, args(1, 1), dev, false);
    }
  }
}

// An empty batch gives empty results in the right types; a non-contiguous low x is read as it is.
TEST(Conv2dO2, EmptyBatchAndStridedInput) {
  const AutocastGuard guard(Precision::FP16, AmpLevel::O2);
  for (const Device dev : test_devices()) {
    const Tensor x = Tensor::zeros({0, 5, 5, 4}, DType::F32, dev).set_requires_grad(true);
    const Tensor w = Tensor::uniform({3, 4, 3, 3}, 1, -1, 1, dev).set_requires_grad(true);
    const Tensor y = conv2d(x.to(DType::F16), w, Tensor(), args(1, 1));
    EXPECT_EQ(y.dtype(), DType::F16);
    EXPECT_EQ(y.shape(), (Shape{0, 5, 5, 3}));
    sum(y).backward();
    EXPECT_EQ(x.grad().shape(), (Shape{0, 5, 5, 4}));
    EXPECT_EQ(w.grad().dtype(), DType::F32);

    const Tensor wide = Tensor::uniform({1, 5, 5, 8}, 2, -1, 1, dev).to(DType::F16);
    const Tensor strided = wide.narrow(3, 2, 4);  // every pixel's channels 2..5
    ASSERT_FALSE(strided.is_contiguous());
    NoGradGuard no_grad;
    expect_same_bits(conv2d(strided, w, Tensor(), args(1, 1)).to(DType::F32).to_vector(),
                     conv2d(strided.contiguous(), w, Tensor(), args(1, 1)).to(DType::F32).to_vector(), "strided x");
  }
}

// The engine's reorder of a blocked weight gradient into OIHW (kernels/cpu/weight_reorder_cpu.h)
// against oneDNN's own reorder, bit for bit: the layouts oneDNN's backward-weights picks on this CPU
// (f32 and, where the CPU has it, bf16 primitives; full and partial blocks, 1x1 and 3x3), and named
// blocked layouts with partial blocks in O and I.
namespace {

// Reorders md (a blocked f32 weight layout) to OIHW both ways and compares; counts the layouts the
// engine's kernel takes (conv_cpu.cpp keeps oneDNN's reorder for the others).
void check_gradient_reorder(const dnnl::memory::desc& md, const std::string& what, int& checked) {
  using namespace engine::kernels;
  BlockedWeights b;
  if (!blocked_weights_of(md.data, b)) return;
  ++checked;
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream s(eng);
  const dnnl_dims_t& d = md.data.dims;
  const dnnl::memory::desc plain({d[0], d[1], d[2], d[3]}, dnnl::memory::data_type::f32,
                                 dnnl::memory::format_tag::oihw);
  std::vector<float> src(md.get_size() / sizeof(float)), want(plain.get_size() / sizeof(float), -1.f),
      got(want.size(), -2.f);
  for (size_t i = 0; i < src.size(); ++i) src[i] = (float)((i * 2654435761u) % 1000003u) * 1e-3f - 500.f;
  dnnl::memory from(md, eng, src.data()), to(plain, eng, want.data());
  dnnl::reorder(from, to).execute(s, from, to);
  s.wait();
  weights_from_blocked_cpu(src.data(), b, got.data());
  size_t bad = 0;
  for (size_t i = 0; i < want.size(); ++i) bad += std::memcmp(&want[i], &got[i], sizeof(float)) != 0;
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << want.size() << " elements differ";
}

}  // namespace

TEST(WeightGradientReorder, MatchesOneDnnBitForBit) {
  using dnnl::memory;
  using tag = memory::format_tag;
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  int checked = 0;
  struct Shape {
    int64_t cout, cin, k, stride, hw;
  };
  const Shape shapes[] = {{64, 32, 3, 2, 32}, {32, 64, 3, 1, 16},   {19, 64, 1, 1, 8},
                          {96, 256, 3, 1, 8}, {128, 1024, 1, 1, 4}, {512, 512, 3, 1, 4},
                          {24, 40, 3, 1, 8},  {1000, 17, 1, 1, 2},  {48, 80, 3, 2, 9}};
  for (const Shape& sh : shapes)
    for (memory::data_type in : {memory::data_type::f32, memory::data_type::bf16}) {
      const std::string what = "gradient of " + std::to_string(sh.cout) + "x" + std::to_string(sh.cin) + "x" +
                               std::to_string(sh.k) + "x" + std::to_string(sh.k) +
                               (in == memory::data_type::bf16 ? " (bf16 primitive)" : " (f32 primitive)");
      const int64_t pad = sh.k / 2, ho = (sh.hw + 2 * pad - sh.k) / sh.stride + 1;
      const memory::desc src({2, sh.cin, sh.hw, sh.hw}, in, tag::nhwc), dst({2, sh.cout, ho, ho}, in, tag::nhwc);
      const memory::desc w_any({sh.cout, sh.cin, sh.k, sh.k}, in, tag::any);
      const memory::desc dw_any({sh.cout, sh.cin, sh.k, sh.k}, memory::data_type::f32, tag::any);
      const memory::dims strides = {sh.stride, sh.stride}, pads = {pad, pad};
      try {
        dnnl::convolution_forward::desc fd(dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct, src,
                                           w_any, dst, strides, pads, pads);
        dnnl::convolution_forward::primitive_desc fpd(fd, eng);
        dnnl::convolution_backward_weights::desc bd(dnnl::algorithm::convolution_direct, src, dw_any, dst, strides,
                                                    pads, pads);
        dnnl::convolution_backward_weights::primitive_desc bpd(bd, eng, fpd);
        check_gradient_reorder(bpd.diff_weights_desc(), what, checked);
      } catch (const dnnl::error&) {
        // No bf16 convolution on this CPU: nothing of this precision to check here.
        EXPECT_EQ(in, memory::data_type::bf16) << what << ": oneDNN has no f32 backward-weights";
      }
    }
  for (tag t : {tag::OIhw16i16o, tag::OIhw16o16i, tag::Ohwi16o, tag::OIhw8i8o, tag::OIhw4i16o4i, tag::OIhw8i16o2i})
    for (const memory::dims& dims :
         {memory::dims{19, 21, 3, 3}, memory::dims{32, 48, 1, 1}, memory::dims{5, 3, 3, 3}}) {
      const int before = checked;
      check_gradient_reorder(memory::desc(dims, memory::data_type::f32, t),
                             "named layout " + std::to_string((int)t) + " of " + std::to_string(dims[0]) + "x" +
                                 std::to_string(dims[1]) + "x" + std::to_string(dims[2]) + "x" +
                                 std::to_string(dims[3]),
                             checked);
      EXPECT_EQ(checked, before + 1) << "the engine's reorder refused named layout " << (int)t;
    }
  // Layouts it refuses: plain ones, and bf16 data.
  engine::kernels::BlockedWeights b;
  EXPECT_FALSE(
      engine::kernels::blocked_weights_of(memory::desc({8, 8, 3, 3}, memory::data_type::f32, tag::oihw).data, b));
  EXPECT_FALSE(engine::kernels::blocked_weights_of(
      memory::desc({32, 32, 3, 3}, memory::data_type::bf16, tag::OIhw16i16o).data, b));
}
