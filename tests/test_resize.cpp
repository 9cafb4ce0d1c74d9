// labels: kernel
// Resize family: bilinear (half-pixel and align-corners) and nearest, by size and by scale, against
// a naive reference written here (Paddle's formulas: float ratio and source index, double blend),
// finite differences, CPU vs CUDA device, strided inputs, guards, determinism; plus a few exact
// values that pin the semantics and the argument errors.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "engine/ops/resize.h"
#include "tests/harness/op_check.h"

using namespace engine;
using namespace engine::testing;

namespace {

enum class Mode { Nearest, Half, Corners };

// One axis, Paddle's phi interpolate kernel written out independently of kernels/resize_math.h.
struct Axis {
  std::vector<int64_t> i0, i1;
  std::vector<double> l;
};
Axis axis_taps(int64_t in, int64_t out, Mode m, float scale) {
  Axis a;
  float ratio;
  if (m == Mode::Corners)
    ratio = out > 1 ? (float)(in - 1) / (float)(out - 1) : 0.f;
  else
    ratio = scale > 0 ? 1.f / scale : (float)in / (float)out;
  for (int64_t d = 0; d < out; ++d) {
    if (m == Mode::Nearest) {
      int64_t s = (int64_t)(ratio * (float)d);
      s = std::min(s, in - 1);
      a.i0.push_back(s);
      a.i1.push_back(s);
      a.l.push_back(0);
      continue;
    }
    float src = m == Mode::Half ? ratio * ((float)d + 0.5f) - 0.5f : ratio * (float)d;
    if (src < 0) src = 0;
    int64_t i0 = std::min<int64_t>((int64_t)src, in - 1);
    a.i0.push_back(i0);
    a.i1.push_back(std::min<int64_t>(i0 + 1, in - 1));
    a.l.push_back(std::min(1.0, (double)src - (double)i0));
  }
  return a;
}

std::vector<double> ref_resize(const std::vector<double>& x, const Shape& s, int64_t oh, int64_t ow, Mode m,
                               float sh = 0, float sw = 0) {
  const int64_t N = s[0], H = s[1], W = s[2], C = s[3];
  const Axis ah = axis_taps(H, oh, m, sh), aw = axis_taps(W, ow, m, sw);
  std::vector<double> out((size_t)(N * oh * ow * C));
  auto X = [&](int64_t n, int64_t h, int64_t w, int64_t c) { return x[(size_t)(((n * H + h) * W + w) * C + c)]; };
  for (int64_t n = 0; n < N; ++n)
    for (int64_t y = 0; y < oh; ++y)
      for (int64_t z = 0; z < ow; ++z)
        for (int64_t c = 0; c < C; ++c) {
          const double ly = ah.l[(size_t)y], lx = aw.l[(size_t)z];
          const int64_t h0 = ah.i0[(size_t)y], h1 = ah.i1[(size_t)y], w0 = aw.i0[(size_t)z], w1 = aw.i1[(size_t)z];
          double v;
          if (m == Mode::Nearest)
            v = X(n, h0, w0, c);
          else
            v = (1 - ly) * ((1 - lx) * X(n, h0, w0, c) + lx * X(n, h0, w1, c)) +
                ly * ((1 - lx) * X(n, h1, w0, c) + lx * X(n, h1, w1, c));
          out[(size_t)(((n * oh + y) * ow + z) * C + c)] = v;
        }
  return out;
}

struct SizeCase {
  std::string name;
  Shape in;
  int oh, ow;
};

void check_sizes(const std::string& op, Mode m, const std::vector<SizeCase>& cs) {
  for (const SizeCase& sc : cs) {
    const int oh = sc.oh, ow = sc.ow;
    CheckOptions opt;
    opt.fwd_atol = opt.fwd_rtol = 2e-5;
    check_op(
        op + "/" + sc.name, {{sc.name, {sc.in}}},
        [=](const std::vector<Tensor>& in) {
          Tensor y =
              m == Mode::Nearest ? resize_nearest(in[0], oh, ow) : resize_bilinear(in[0], oh, ow, m == Mode::Corners);
          return std::vector<Tensor>{y};
        },
        [=](const RefInputs& in, const std::vector<Shape>& shapes) {
          return std::vector<std::vector<double>>{ref_resize(in[0], shapes[0], oh, ow, m)};
        },
        opt);
  }
}

const std::vector<SizeCase>& bilinear_cases() {
  static const std::vector<SizeCase> cs = {{"up_5x7_to_11x13", {2, 5, 7, 3}, 11, 13},
                                           {"up2x_c4", {1, 4, 6, 4}, 8, 12},
                                           {"down_13x11_to_6x5", {1, 13, 11, 5}, 6, 5},
                                           {"down_c8", {2, 9, 10, 8}, 4, 3},
                                           {"identity", {1, 4, 3, 2}, 4, 3},
                                           {"to_1x1", {1, 3, 4, 1}, 1, 1},
                                           {"from_1x1", {2, 1, 1, 3}, 3, 2},
                                           {"mixed", {1, 3, 9, 1}, 7, 2},
                                           {"c19_up8x", {1, 2, 3, 19}, 16, 24}};
  return cs;
}

}  // namespace

TEST(Resize, BilinearHalfPixel) { check_sizes("resize_bilinear", Mode::Half, bilinear_cases()); }
TEST(Resize, BilinearAlignCorners) { check_sizes("resize_bilinear_ac", Mode::Corners, bilinear_cases()); }

TEST(Resize, Nearest) {
  check_sizes("resize_nearest", Mode::Nearest,
              {{"x2", {2, 3, 5, 4}, 6, 10},
               {"x2_odd_c", {1, 4, 3, 3}, 8, 6},
               {"arbitrary_up", {1, 7, 5, 2}, 9, 11},
               {"arbitrary_down", {2, 7, 5, 3}, 3, 2},
               {"identity", {1, 3, 3, 5}, 3, 3}});
}

TEST(Resize, ScaleOverloads) {
  struct C {
    std::string name;
    Shape in;
    float sh, sw;
    Mode m;
  };
  // 13 * 0.5 -> 6 rows read with ratio 2 (1 / scale), not 13 / 6; 5 * 1.5 -> 7 with ratio 2/3.
  const std::vector<C> cs = {{"bilinear_half", {1, 13, 11, 2}, 0.5f, 0.5f, Mode::Half},
                             {"bilinear_1p5", {2, 5, 4, 3}, 1.5f, 2.f, Mode::Half},
                             {"bilinear_ac", {1, 5, 4, 3}, 1.5f, 0.75f, Mode::Corners},
                             {"nearest_x2", {2, 3, 4, 5}, 2.f, 2.f, Mode::Nearest},
                             {"nearest_0p5", {1, 7, 5, 2}, 0.5f, 0.6f, Mode::Nearest}};
  for (const C& c : cs) {
    const int64_t oh = (int64_t)((float)c.in[1] * c.sh), ow = (int64_t)((float)c.in[2] * c.sw);
    const Mode m = c.m;
    const float sh = c.sh, sw = c.sw;
    check_op(
        "resize_scale/" + c.name, {{c.name, {c.in}}},
        [=](const std::vector<Tensor>& in) {
          Tensor y = m == Mode::Nearest ? resize_nearest_scale(in[0], sh, sw)
                                        : resize_bilinear_scale(in[0], sh, sw, m == Mode::Corners);
          return std::vector<Tensor>{y};
        },
        [=](const RefInputs& in, const std::vector<Shape>& shapes) {
          return std::vector<std::vector<double>>{ref_resize(in[0], shapes[0], oh, ow, m, sh, sw)};
        });
  }
}

TEST(Resize, ExactValues) {
  // PyTorch F.interpolate([0, 1], size=4, mode='bilinear', align_corners=False) = [0, .25, .75, 1].
  const Tensor x = Tensor::from_vector({0, 1}, {1, 1, 2, 1});
  EXPECT_EQ(resize_bilinear(x, 1, 4).to_vector(), (std::vector<float>{0.f, 0.25f, 0.75f, 1.f}));
  // align_corners=True: [0, 1/3, 2/3, 1].
  const auto ac = resize_bilinear(x, 1, 4, true).to_vector();
  EXPECT_NEAR(ac[1], 1.0 / 3, 1e-7);
  EXPECT_NEAR(ac[2], 2.0 / 3, 1e-7);
  EXPECT_EQ(ac[3], 1.f);
  // Nearest 3 -> 5 (ratio 0.6): floor(0, .6, 1.2, 1.8, 2.4) = 0 0 1 1 2; 'nearest-exact' would give 0 1 1 2 2.
  const Tensor y = Tensor::from_vector({10, 20, 30}, {1, 1, 3, 1});
  EXPECT_EQ(resize_nearest(y, 1, 5).to_vector(), (std::vector<float>{10, 10, 20, 20, 30}));
  // Half-pixel downsample by 2 averages pairs: [1, 3, 5, 7] -> [2, 6].
  const Tensor z = Tensor::from_vector({1, 3, 5, 7}, {1, 1, 4, 1});
  EXPECT_EQ(resize_bilinear(z, 1, 2).to_vector(), (std::vector<float>{2, 6}));
  EXPECT_EQ(resize_bilinear_scale(z, 1.f, 0.5f).to_vector(), (std::vector<float>{2, 6}));
}

TEST(Resize, BackwardSumsToOutputGradient) {
  // Each output pixel's weights sum to 1, so sum(gx) == sum(g) for any resize.
  for (Device d : {Device::cpu(), have_cuda() ? Device::cuda(0) : Device::cpu()}) {
    Tensor x = Tensor::uniform({2, 8, 8, 19}, 3, -1, 1, d).set_requires_grad(true);
    Tensor y = resize_bilinear(x, 64, 64);
    y.backward(Tensor::full(y.shape(), 1.f, DType::F32, d));
    double s = 0;
    for (float v : x.grad().to_vector()) s += v;
    EXPECT_NEAR(s, 2.0 * 64 * 64 * 19, 1e-2);
  }
}

TEST(Resize, ForwardBitIdenticalAcrossDevices) {
  // The CPU forward is separable for few channels or large upsampling factors and one-pass otherwise
  // (resize_cpu.inc); CUDA is one-pass. All give bilinear_blend's bits.
  if (!have_cuda()) GTEST_SKIP() << "no CUDA device";
  struct Case {
    Shape xs;
    int oh, ow;
  };
  const std::vector<Case> cases = {{{2, 5, 7, 6}, 13, 10},   // separable (C < 32)
                                   {{1, 6, 5, 40}, 11, 9},   // one pass (C >= 32, under x4)
                                   {{1, 3, 4, 40}, 24, 32},  // separable (x8)
                                   {{2, 9, 8, 33}, 4, 3}};   // one pass, downsampling
  for (const Case& c : cases)
    for (bool ac : {false, true})
      for (DType dt : {DType::F32, DType::BF16}) {
        SCOPED_TRACE(shape_str(c.xs) + " -> " + std::to_string(c.oh) + "x" + std::to_string(c.ow) +
                     (ac ? " align_corners " : " ") + dtype_name(dt));
        std::vector<float> ys[2];
        int k = 0;
        for (Device d : {Device::cpu(), Device::cuda(0)})
          ys[k++] = resize_bilinear(Tensor::uniform(c.xs, 6, -2, 2, d).to(dt), c.oh, c.ow, ac).to_vector();
        expect_same_bits(ys[0], ys[1], "forward");
      }
}

TEST(Resize, BackwardBitIdenticalAcrossDevices) {
  // The CPU and CUDA backward run the same two separable passes (columns, then rows) in the same order.
  // Channel counts: 6 (the CPU column buffer holds C lanes), 19 and 40 (rounded up to 32 and 48
  // lanes, resize_bwd_column_lanes; the last tap of the tensor takes the C-lane path).
  if (!have_cuda()) GTEST_SKIP() << "no CUDA device";
  for (int64_t C : {6, 19, 40})
    for (bool ac : {false, true}) {
      SCOPED_TRACE("C " + std::to_string(C) + (ac ? " align_corners" : ""));
      std::vector<float> grads[2];
      int k = 0;
      for (Device d : {Device::cpu(), Device::cuda(0)}) {
        Tensor x = Tensor::uniform({2, 5, 7, C}, 4, -1, 1, d).set_requires_grad(true);
        Tensor y = resize_bilinear(x, 13, 10, ac);
        y.backward(Tensor::uniform(y.shape(), 5, -1, 1, d));
        grads[k++] = x.grad().to_vector();
      }
      EXPECT_EQ(grads[0], grads[1]);
    }
}

// The CUDA kernels take one image row per grid.y index, at most 65535 of them, and stride past that:
// 70000 output rows (forward, backward's column pass) and as many input rows (its row pass) give
// the CPU's bits.
TEST(Resize, MoreRowsThanOneGridGiveTheCpuBits) {
  if (!have_cuda()) GTEST_SKIP() << "no CUDA device";
  for (const bool up : {true, false}) {
    SCOPED_TRACE(up ? "70000 output rows" : "70000 input rows");
    std::vector<float> ys[2], grads[2];
    int k = 0;
    for (Device d : {Device::cpu(), Device::cuda(0)}) {
      Tensor x = Tensor::uniform(up ? Shape{2, 3, 2, 1} : Shape{2, 35000, 1, 2}, 8, -1, 1, d).set_requires_grad(true);
      Tensor y = up ? resize_bilinear(x, 35000, 1) : resize_bilinear(x, 3, 2);
      y.backward(Tensor::uniform(y.shape(), 9, -1, 1, d));
      ys[k] = y.to_vector();
      grads[k++] = x.grad().to_vector();
    }
    expect_same_bits(ys[0], ys[1], "forward");
    expect_same_bits(grads[0], grads[1], "backward");
  }
}

TEST(Resize, BadInputErrors) {
  auto expect_error = [](const std::function<void()>& f, const std::string& what) {
    try {
      f();
      ADD_FAILURE() << "expected an error containing: " << what;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  const Tensor x3 = Tensor::zeros({2, 3, 4});
  expect_error([&] { resize_bilinear(x3, 4, 4); },
               "resize_bilinear: x must be a 4-D [N, H, W, C] tensor, got f32[2, 3, 4]");
  expect_error(
      [&] {
        resize_nearest(Tensor::zeros({1, 2, 2, 1}, DType::I64), 4, 4);
      },
      "resize_nearest: argument 'x' must be f32");
  expect_error([&] { resize_bilinear(Tensor::zeros({1, 2, 2, 1}), 0, 4); }, "resize_bilinear: output size 0x4");
  expect_error([&] { resize_bilinear(Tensor::zeros({0, 2, 2, 1}), 4, 4); }, "is empty");
  expect_error(
      [&] {
        resize_nearest_scale(Tensor::zeros({1, 2, 2, 1}), -2.f, 2.f);
      },
      "resize_nearest_scale: scale_h must be finite and > 0");
  expect_error(
      [&] {
        resize_bilinear_scale(Tensor::zeros({1, 2, 2, 1}), 0.25f, 1.f);
      },
      "resize_bilinear_scale: scale_h 0.25 gives output size 0.5");
}

// bf16 / f16 storage (mixed precision): blends and sums are f32 and stores round once, so with inputs
// exact in the low type the output and the input gradient equal the f32 op's rounded once, bit for
// bit (nearest copies the stored bits). Upsampling and downsampling, half-pixel and align-corners,
// channel counts on the vector (8) and scalar (3) paths and on the CPU forward's one-pass path (40
// channels at less than x4), a channel-strided input view, CPU and CUDA.
TEST(Resize, LowPrecisionIsTheF32ResultRoundedOnce) {
  const std::vector<Device> devices = test_devices();
  using Fn = std::function<Tensor(const Tensor&)>;
  const std::vector<std::pair<std::string, Fn>> ops = {
      {"bilinear up", [](const Tensor& x) { return resize_bilinear(x, 13, 17); }},
      {"bilinear down align_corners", [](const Tensor& x) { return resize_bilinear(x, 3, 4, true); }},
      {"bilinear x8", [](const Tensor& x) { return resize_bilinear_scale(x, 8.f, 8.f); }},
      {"nearest up", [](const Tensor& x) { return resize_nearest(x, 11, 9); }}};
  for (Device d : devices)
    for (DType dt : {DType::BF16, DType::F16})
      for (int64_t C : {8, 3, 40})
        for (bool strided : {false, true})
          for (const auto& [name, fn] : ops) {
            const std::string what = name + " " + dtype_name(dt) + " on " + d.str() + " C " + std::to_string(C) +
                                     (strided ? " strided" : "");
            SCOPED_TRACE(what);
            auto leaf = [&] {
              // Strided: a [2, 5, C, 6] tensor seen as [2, 5, 6, C] (channel stride 6).
              Tensor t = Tensor::uniform(strided ? Shape{2, 5, C, 6} : Shape{2, 5, 6, C}, 1, -2.f, 2.f, d)
                             .to(dt)
                             .to(DType::F32)
                             .detach();
              t.set_requires_grad(true);
              return t;
            };
            auto view = [&](const Tensor& t) { return strided ? t.permute({0, 1, 3, 2}) : t; };
            const Tensor lo = leaf(), hi = leaf();
            const Tensor y = fn(view(lo.to(dt)));
            ASSERT_EQ(y.dtype(), dt);
            const Tensor g = Tensor::uniform(y.shape(), 2, -1.f, 1.f, d).to(dt);
            y.backward(g);
            const Tensor y32 = fn(view(hi));
            y32.backward(g.to(DType::F32));
            expect_same_bits(y.to_vector(), y32.to(dt).to(DType::F32).to_vector(), what + " forward");
            expect_same_bits(lo.grad().to_vector(), hi.grad().to(dt).to(DType::F32).to_vector(), what + " backward");
          }
}
