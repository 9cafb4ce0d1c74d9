// bench_kernels rows for the elementwise and copy families, at activation shapes of the models:
// STDC/PP-LiteSeg at 512x512 batch 4 ([4,128,128,64], [4,64,64,256]), DarkNet53 at 416x416
// ([4,104,104,128] with leaky_relu 0.1), and UAFM's attention broadcast [4,64,64,1] x [4,64,64,128].
// Each row is validated against a naive loop on the host before timing.
#include <cmath>
#include <sstream>

#include "bench/bench.h"
#include "engine/autograd.h"
#include "engine/ops/copy.h"
#include "engine/ops/elementwise.h"

namespace {

using namespace engine;
using bench::scaled;
using bench::shape_name;

// Compares `got` with `want(i)` on every element; returns "" or the first mismatch.
template <class F>
std::string check(const Tensor& got, const F& want, float tol = 1e-5f) {
  const auto v = got.to_vector();
  for (size_t i = 0; i < v.size(); ++i) {
    const float w = want(i);
    if (!(std::fabs(v[i] - w) <= tol * (1 + std::fabs(w))))
      return "element " + std::to_string(i) + " is " + std::to_string(v[i]) + ", expected " + std::to_string(w);
  }
  return "";
}

}  // namespace

BENCH_REGISTER(elementwise) {
  const bool q = runner.quick();
  struct UnaryRow {
    const char* name;
    Shape shape;
    std::function<Tensor(const Tensor&)> op;
    std::function<float(float)> ref;
  };
  const std::vector<UnaryRow> unary_rows = {
      {"relu_fwd", {4, 128, 128, 64}, [](const Tensor& x) { return relu(x); }, [](float x) { return x > 0 ? x : 0; }},
      {"relu_fwd", {4, 64, 64, 256}, [](const Tensor& x) { return relu(x); }, [](float x) { return x > 0 ? x : 0; }},
      {"leaky_relu_fwd",
       {4, 104, 104, 128},
       [](const Tensor& x) { return leaky_relu(x, 0.1f); },
       [](float x) { return x > 0 ? x : 0.1f * x; }},
      {"sigmoid_fwd",
       {4, 64, 64, 128},
       [](const Tensor& x) { return sigmoid(x); },
       [](float x) { return 1.f / (1.f + std::exp(-x)); }},
      {"exp_fwd", {4, 64, 64, 128}, [](const Tensor& x) { return exp(x); }, [](float x) { return std::exp(x); }},
  };
  for (Device d : runner.devices()) {
    for (const UnaryRow& r : unary_rows) {
      const Shape s = scaled(r.shape, q);
      const Tensor x = Tensor::uniform(s, 1, -3.f, 3.f, d);
      const auto xv = x.to_vector();
      const double bytes = 2.0 * 4 * (double)x.numel();
      runner.run(
          r.name, shape_name(s), d, {bytes, 0}, [&] { return check(r.op(x), [&](size_t i) { return r.ref(xv[i]); }); },
          [&] { r.op(x); });
    }
    // Backward kernels, timed through the recorded node (what autograd runs).
    struct BwdRow {
      const char* name;
      Shape shape;
      std::function<Tensor(const Tensor&)> op;
      std::function<float(float, float)> ref;  // (x, g) -> dx
    };
    const std::vector<BwdRow> bwd_rows = {
        {"relu_bwd",
         {4, 128, 128, 64},
         [](const Tensor& x) { return relu(x); },
         [](float x, float g) { return x > 0 ? g : 0.f; }},
        {"leaky_relu_bwd",
         {4, 104, 104, 128},
         [](const Tensor& x) { return leaky_relu(x, 0.1f); },
         [](float x, float g) { return x > 0 ? g : 0.1f * g; }},
        {"sigmoid_bwd",
         {4, 64, 64, 128},
         [](const Tensor& x) { return sigmoid(x); },
         [](float x, float g) {
           const float y = 1.f / (1.f + std::exp(-x));
           return g * y * (1 - y);
         }},
    };
    for (const BwdRow& r : bwd_rows) {
      const Shape s = scaled(r.shape, q);
      const Tensor x = Tensor::uniform(s, 2, -2.f, 2.f, d).set_requires_grad(true);
      const Tensor g = Tensor::uniform(s, 3, -1.f, 1.f, d);
      const Tensor y = r.op(x);
      const auto node = y.grad_fn();
      const auto xv = x.to_vector(), gv = g.to_vector();
      runner.run(
          r.name, shape_name(s), d, {3.0 * 4 * (double)x.numel(), 0},
          [&] {
            return check(
                node->apply({g})[0], [&](size_t i) { return r.ref(xv[i], gv[i]); }, 1e-4f);
          },
          [&] { node->apply({g}); });
    }
    // Binary ops: same-shape add, NHWC bias add [C], UAFM attention mul [N,H,W,1] x [N,H,W,C].
    {
      const Shape s = scaled({4, 128, 128, 64}, q);
      const Tensor a = Tensor::uniform(s, 4, -1.f, 1.f, d), b = Tensor::uniform(s, 5, -1.f, 1.f, d);
      const auto av = a.to_vector(), bv = b.to_vector();
      runner.run(
          "add_fwd", shape_name(s) + " + same", d, {3.0 * 4 * (double)a.numel(), 0},
          [&] { return check(add(a, b), [&](size_t i) { return av[i] + bv[i]; }); }, [&] { add(a, b); });
      // In place, as autograd accumulates a gradient (into a data-parallel bucket, for one), and the
      // fill that zeroes such a bucket.
      const Tensor acc = a.clone();
      runner.run(
          "add_inplace", shape_name(s) + " += same", d, {3.0 * 4 * (double)a.numel(), 0},
          [&] {
            copy_into(acc, a);
            add_inplace(acc, b);
            return check(acc, [&](size_t i) { return av[i] + bv[i]; });
          },
          [&] { add_inplace(acc, b); });
      runner.run(
          "fill", shape_name(s), d, {4.0 * (double)a.numel(), 0},
          [&] {
            fill_(acc, 0.5f);
            return check(acc, [](size_t) { return 0.5f; });
          },
          [&] { fill_(acc, 0.f); });
      const Tensor bias = Tensor::uniform({s[3]}, 6, -1.f, 1.f, d);
      const auto cv = bias.to_vector();
      runner.run(
          "add_fwd", shape_name(s) + " + [C]", d, {2.0 * 4 * (double)a.numel(), 0},
          [&] { return check(add(a, bias), [&](size_t i) { return av[i] + cv[i % (size_t)s[3]]; }); },
          [&] { add(a, bias); });
    }
    {
      const Shape s = scaled({4, 64, 64, 128}, q);
      Shape s1 = s;
      s1[3] = 1;
      const Tensor x = Tensor::uniform(s, 7, -1.f, 1.f, d), alpha = Tensor::uniform(s1, 8, 0.f, 1.f, d);
      const auto xv = x.to_vector(), av = alpha.to_vector();
      runner.run(
          "mul_fwd", shape_name(s) + " * " + shape_name(s1), d, {2.0 * 4 * (double)x.numel(), 0},
          [&] { return check(mul(x, alpha), [&](size_t i) { return xv[i] * av[i / (size_t)s[3]]; }); },
          [&] { mul(x, alpha); });
    }
    // bf16 storage (mixed precision): half the bytes of the f32 rows above, f32 math. Checked against
    // the f32 op on the same (widened) values within bf16's rounding.
    {
      const Shape s = scaled({4, 128, 128, 64}, q);
      const Tensor a = Tensor::uniform(s, 4, -1.f, 1.f, d).to(DType::BF16);
      const Tensor b = Tensor::uniform(s, 5, -1.f, 1.f, d).to(DType::BF16);
      const auto av = a.to_vector(), bv = b.to_vector();
      runner.run(
          "relu_fwd_bf16", shape_name(s), d, {2.0 * 2 * (double)a.numel(), 0},
          [&] { return check(relu(a), [&](size_t i) { return av[i] > 0 ? av[i] : 0.f; }); }, [&] { relu(a); });
      runner.run(
          "add_fwd_bf16", shape_name(s) + " + same", d, {3.0 * 2 * (double)a.numel(), 0},
          [&] {
            return check(
                add(a, b), [&](size_t i) { return av[i] + bv[i]; }, 1.f / 256);
          },
          [&] { add(a, b); });
      const Shape s2 = scaled({4, 64, 64, 128}, q);
      Shape s1 = s2;
      s1[3] = 1;
      const Tensor x = Tensor::uniform(s2, 7, -1.f, 1.f, d).to(DType::BF16);
      const Tensor alpha = Tensor::uniform(s1, 8, 0.f, 1.f, d).to(DType::BF16);
      const auto xv = x.to_vector(), alv = alpha.to_vector();
      runner.run(
          "mul_fwd_bf16", shape_name(s2) + " * " + shape_name(s1), d, {2.0 * 2 * (double)x.numel(), 0},
          [&] {
            return check(
                mul(x, alpha), [&](size_t i) { return xv[i] * alv[i / (size_t)s2[3]]; }, 1.f / 256);
          },
          [&] { mul(x, alpha); });
    }
    // Copy family: NCHW -> NHWC style permute (a real transpose), and the f32 -> bf16 cast.
    {
      const Shape s = scaled({4, 64, 128, 128}, q);  // viewed as [N, C, H, W]
      const Tensor x = Tensor::uniform(s, 9, -1.f, 1.f, d);
      const auto xv = x.to_vector();
      const Tensor p = x.permute({0, 2, 3, 1});
      const Shape ps = p.shape();
      runner.run(
          "permute_contiguous", shape_name(s) + " -> NHWC", d, {2.0 * 4 * (double)x.numel(), 0},
          [&] {
            return check(p.contiguous(), [&](size_t i) {
              // output [n, h, w, c] <- input [n, c, h, w]
              const int64_t c = (int64_t)i % ps[3], w = (int64_t)i / ps[3] % ps[2],
                            h = (int64_t)i / (ps[3] * ps[2]) % ps[1], n = (int64_t)i / (ps[3] * ps[2] * ps[1]);
              return xv[(size_t)(((n * s[1] + c) * s[2] + h) * s[3] + w)];
            });
          },
          [&] { p.contiguous(); });
      runner.run(
          "cast_f32_bf16", shape_name(s), d, {6.0 * (double)x.numel(), 0},
          [&] {
            return check(
                x.to(DType::BF16).to(DType::F32), [&](size_t i) { return xv[i]; }, 1e-2f);
          },
          [&] { x.to(DType::BF16); });
    }
    // The conv op's weight layout changes on a GPU (engine/ops/conv.cpp): OIHW -> OHWI before cuDNN,
    // also cast to bf16 at O1 / O2, and the OHWI weight gradient back, on DarkNet53's largest 3x3
    // layer (a batched transpose with kH*kW = 9 on one side).
    {
      const Shape s = q ? Shape{256, 128, 3, 3} : Shape{1024, 512, 3, 3};  // OIHW
      const Tensor w = Tensor::uniform(s, 10, -1.f, 1.f, d);
      const auto wv = w.to_vector();
      const Tensor ohwi_view = w.permute({0, 2, 3, 1});
      // element i of the OHWI copy: [o, h, w, i] <- OIHW [o, i, h, w]
      auto ohwi_ref = [&](size_t i) {
        const int64_t ci = (int64_t)i % s[1], kw = (int64_t)i / s[1] % s[3], kh = (int64_t)i / (s[1] * s[3]) % s[2],
                      o = (int64_t)i / (s[1] * s[3] * s[2]);
        return wv[(size_t)(((o * s[1] + ci) * s[2] + kh) * s[3] + kw)];
      };
      runner.run(
          "permute_contiguous", shape_name(s) + " OIHW -> OHWI", d, {2.0 * 4 * (double)w.numel(), 0},
          [&] { return check(ohwi_view.contiguous(), ohwi_ref); }, [&] { ohwi_view.contiguous(); });
      runner.run(
          "permute_cast_bf16", shape_name(s) + " OIHW -> OHWI", d, {6.0 * (double)w.numel(), 0},
          [&] { return check(copy_contiguous(ohwi_view, DType::BF16).to(DType::F32), ohwi_ref, 1e-2f); },
          [&] { copy_contiguous(ohwi_view, DType::BF16); });
      const Tensor ohwi = ohwi_view.contiguous();
      const Tensor back_view = ohwi.permute({0, 3, 1, 2});
      runner.run(
          "permute_contiguous", shape_name(s) + " OHWI -> OIHW", d, {2.0 * 4 * (double)w.numel(), 0},
          [&] { return check(back_view.contiguous(), [&](size_t i) { return wv[i]; }); },
          [&] { back_view.contiguous(); });
    }
  }
}
