// bench_kernels rows for the softmax family and for concat, at the models' shapes:
//  - softmax / log_softmax over 19 classes of full-resolution logits [4,512,512,19] (inference
//    softmax output, the losses' log-softmax), the softmax backward, and argmax at the same shape
//    (eval / export); softmax forward and backward on bf16 logits (mixed precision);
//  - family "concat": STDC CatBottleneck channel concat [4,64,64,128] + [4,64,64,64] + [4,64,64,32]
//    + [4,64,64,32] -> [4,64,64,256] (one kernel pass), and its backward (the split copy).
// Quick mode divides the spatial dims by 8. Every row is validated against a naive host loop
// (double) before timing. Work.bytes = bytes read + written.
#include <cmath>
#include <sstream>

#include "bench/bench.h"
#include "engine/autograd.h"
#include "engine/ops/shape_ops.h"
#include "engine/ops/softmax.h"

namespace {

using namespace engine;
using bench::compare;
using bench::scaled;
using bench::shape_name;

// Row-wise softmax / log_softmax of contiguous rows of length L, in double.
std::vector<double> ref_rows(const std::vector<float>& x, int64_t L, bool log_) {
  std::vector<double> y(x.size());
  for (size_t r = 0; r < x.size() / (size_t)L; ++r) {
    const float* xr = x.data() + r * (size_t)L;
    double m = -INFINITY, s = 0;
    for (int64_t c = 0; c < L; ++c) m = std::max(m, (double)xr[c]);
    for (int64_t c = 0; c < L; ++c) s += std::exp(xr[c] - m);
    for (int64_t c = 0; c < L; ++c)
      y[r * (size_t)L + (size_t)c] = log_ ? xr[c] - m - std::log(s) : std::exp(xr[c] - m) / s;
  }
  return y;
}

// The softmax backward y * (g - sum g * y) over rows of L, in double.
std::vector<double> ref_softmax_bwd_rows(const std::vector<float>& g, const std::vector<float>& y, int64_t L) {
  std::vector<double> want(g.size());
  for (size_t r = 0; r < g.size() / (size_t)L; ++r) {
    double dot = 0;
    for (int64_t c = 0; c < L; ++c) dot += (double)g[r * L + c] * y[r * L + c];
    for (int64_t c = 0; c < L; ++c) want[r * L + c] = y[r * L + c] * (g[r * L + c] - dot);
  }
  return want;
}

}  // namespace

BENCH_REGISTER(softmax) {
  const bool q = runner.quick();
  for (Device d : runner.devices()) {
    const Shape s = scaled({4, 512, 512, 19}, q);
    const int64_t L = s[3];
    const double n = (double)shape_numel(s);
    const Tensor x = Tensor::uniform(s, 21, -10.f, 10.f, d);
    const auto xv = x.to_vector();
    for (bool log_ : {false, true}) {
      runner.run(
          log_ ? "log_softmax_fwd" : "softmax_fwd", shape_name(s) + " axis -1", d, {8.0 * n, 20.0 * n},
          [&] { return compare((log_ ? log_softmax(x) : softmax(x)).to_vector(), ref_rows(xv, L, log_), 1e-5); },
          [&] { log_ ? log_softmax(x) : softmax(x); });
    }
    {
      const Tensor xg = x.detach().set_requires_grad(true);
      const Tensor y = softmax(xg);
      const auto node = y.grad_fn();
      const Tensor g = Tensor::uniform(s, 22, -1.f, 1.f, d);
      const auto gv = g.to_vector(), yv = y.to_vector();
      runner.run(
          "softmax_bwd", shape_name(s) + " axis -1", d, {12.0 * n, 4.0 * n},
          [&] { return compare(node->apply({g})[0].to_vector(), ref_softmax_bwd_rows(gv, yv, L), 1e-5); },
          [&] { node->apply({g}); });
    }
    runner.run(
        "argmax", shape_name(s) + " axis -1", d, {4.0 * n + 8.0 * n / (double)L, 0},
        [&] {
          const auto got = argmax(x).to_vector_i64();
          for (size_t r = 0; r < got.size(); ++r) {
            int64_t b = 0;
            for (int64_t c = 1; c < L; ++c)
              if (xv[r * L + c] > xv[r * L + b]) b = c;
            if (got[r] != b)
              return "row " + std::to_string(r) + ": " + std::to_string(got[r]) + " vs " + std::to_string(b);
          }
          return std::string();
        },
        [&] { argmax(x); });
    // bf16 logits (mixed precision): half the bytes; validated against the double softmax of the
    // bf16 values, within bf16's rounding of results <= 1.
    const Tensor xb = x.to(DType::BF16);
    const auto xbv = xb.to(DType::F32).to_vector();
    runner.run(
        "softmax_fwd_bf16", shape_name(s) + " axis -1", d, {4.0 * n, 20.0 * n},
        [&] { return compare(softmax(xb).to(DType::F32).to_vector(), ref_rows(xbv, L, false), 4e-3); },
        [&] { softmax(xb); });
    {
      const Tensor xl = x.detach().set_requires_grad(true);  // (leaves are f32; the cast makes the bf16 input)
      const Tensor yb = softmax(xl.to(DType::BF16));
      const auto node = yb.grad_fn();
      const Tensor gb = Tensor::uniform(s, 23, -1.f, 1.f, d).to(DType::BF16);
      const auto gv = gb.to(DType::F32).to_vector(), yv = yb.to(DType::F32).to_vector();
      runner.run(
          "softmax_bwd_bf16", shape_name(s) + " axis -1", d, {6.0 * n, 4.0 * n},
          [&] {
            return compare(node->apply({gb})[0].to(DType::F32).to_vector(), ref_softmax_bwd_rows(gv, yv, L), 8e-3);
          },
          [&] { node->apply({gb}); });
    }
  }
}

BENCH_REGISTER(concat) {
  const bool q = runner.quick();
  for (Device d : runner.devices()) {
    std::vector<Tensor> xs;
    std::vector<std::vector<float>> xv;
    int64_t total_c = 0;
    std::string name;
    for (int64_t c : {128, 64, 32, 32}) {
      const Shape s = scaled({4, 64, 64, c}, q);
      xs.push_back(Tensor::uniform(s, 30 + (uint64_t)c, -1.f, 1.f, d).set_requires_grad(true));
      xv.push_back(xs.back().to_vector());
      name += (name.empty() ? "" : " + ") + shape_name(s);
      total_c += c;
    }
    const int64_t pixels = xs[0].numel() / 128;
    const double bytes = 2.0 * 4 * (double)(pixels * total_c);
    auto want = [&] {
      std::vector<double> w((size_t)(pixels * total_c));
      for (int64_t p = 0; p < pixels; ++p) {
        int64_t off = 0;
        for (size_t k = 0; k < xs.size(); ++k) {
          const int64_t c = xs[k].size(3);
          for (int64_t j = 0; j < c; ++j) w[(size_t)(p * total_c + off + j)] = xv[k][(size_t)(p * c + j)];
          off += c;
        }
      }
      return w;
    };
    runner.run(
        "concat_fwd", name + " axis -1", d, {bytes, 0}, [&] { return compare(concat(xs, -1).to_vector(), want(), 0); },
        [&] { concat(xs, -1); });
    const Tensor y = concat(xs, -1);
    const auto node = y.grad_fn();
    const Tensor g = Tensor::uniform(y.shape(), 40, -1.f, 1.f, d);
    const auto gv = g.to_vector();
    runner.run(
        "concat_bwd", name + " axis -1", d, {bytes, 0},
        [&] {
          const auto gs = node->apply({g});
          int64_t off = 0;
          for (size_t k = 0; k < gs.size(); ++k) {
            const auto v = gs[k].to_vector();
            const int64_t c = xs[k].size(3);
            for (int64_t p = 0; p < pixels; ++p)
              for (int64_t j = 0; j < c; ++j)
                if (v[(size_t)(p * c + j)] != gv[(size_t)(p * total_c + off + j)])
                  return std::string("mismatch in piece ") + std::to_string(k);
            off += c;
          }
          return std::string();
        },
        [&] { node->apply({g}); });
  }
}
