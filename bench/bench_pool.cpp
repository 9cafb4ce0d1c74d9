// bench_kernels rows for the pooling family at the models' shapes: STDC's 3x3/s2 exclusive avg-pool
// skip branch ([4,128,128,128] is the first stage-3 block at 512x512 batch 4), SPPM's adaptive
// average pools to 1/2/4 bins on the 1/32 map [4,16,16,1024], and a 3x3/s2 max pool at
// [4,128,128,64]. Work.bytes = compulsory traffic: forward reads x once and writes y (+ the int32
// argmax for max pooling); backward reads gy (+ argmax) and writes dx.
// Each row is validated against a naive double loop on the host before timing.
#include <cmath>
#include <limits>
#include <sstream>

#include "bench/bench.h"
#include "engine/autograd.h"
#include "engine/ops/pool.h"

namespace {

using namespace engine;
using bench::compare;
using bench::scaled;
using bench::shape_name;

enum class Kind { Avg, Max, Adaptive };

// Naive forward: k/s/p windows (avg exclusive or max) or adaptive bins (oh x ow).
std::vector<double> pool_ref(const std::vector<float>& x, const Shape& s, Kind kind, int k, int st, int p, int64_t oh,
                             int64_t ow) {
  const int64_t N = s[0], H = s[1], W = s[2], C = s[3];
  if (kind != Kind::Adaptive) {
    oh = (H + 2 * p - k) / st + 1;
    ow = (W + 2 * p - k) / st + 1;
  }
  std::vector<double> y((size_t)(N * oh * ow * C));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t i = 0; i < oh; ++i)
      for (int64_t j = 0; j < ow; ++j) {
        int64_t h0 = i * st - p, h1 = h0 + k, w0 = j * st - p, w1 = w0 + k;
        if (kind == Kind::Adaptive) {
          h0 = i * H / oh;
          h1 = ((i + 1) * H + oh - 1) / oh;
          w0 = j * W / ow;
          w1 = ((j + 1) * W + ow - 1) / ow;
        }
        h0 = std::max<int64_t>(h0, 0);
        w0 = std::max<int64_t>(w0, 0);
        h1 = std::min(h1, H);
        w1 = std::min(w1, W);
        for (int64_t c = 0; c < C; ++c) {
          double acc = kind == Kind::Max ? -std::numeric_limits<double>::infinity() : 0.0;
          for (int64_t h = h0; h < h1; ++h)
            for (int64_t w = w0; w < w1; ++w) {
              const double v = x[(size_t)(((n * H + h) * W + w) * C + c)];
              acc = kind == Kind::Max ? std::max(acc, v) : acc + v;
            }
          if (kind != Kind::Max) acc /= (double)((h1 - h0) * (w1 - w0));
          y[(size_t)(((n * oh + i) * ow + j) * C + c)] = acc;
        }
      }
  return y;
}

}  // namespace

BENCH_REGISTER(pool) {
  const bool q = runner.quick();
  for (Device d : runner.devices()) {
    // STDC skip branch: avg_pool2d 3x3 s2 p1, exclusive.
    {
      const Shape s = scaled({4, 128, 128, 128}, q);
      const Tensor x = Tensor::uniform(s, 1, -1.f, 1.f, d);
      const auto xv = x.to_vector();
      const auto want = pool_ref(xv, s, Kind::Avg, 3, 2, 1, 0, 0);
      const double in_b = 4.0 * (double)x.numel(), out_b = 4.0 * (double)want.size();
      runner.run(
          "avg_pool2d_fwd", shape_name(s) + " k3s2p1", d, {in_b + out_b, 0},
          [&] { return compare(avg_pool2d(x, 3, 2, 1).to_vector(), want, 1e-5); }, [&] { avg_pool2d(x, 3, 2, 1); });
      const Tensor xg = x.detach().set_requires_grad(true);
      const Tensor y = avg_pool2d(xg, 3, 2, 1);
      const auto node = y.grad_fn();
      const Tensor gy = Tensor::full(y.shape(), 1.f, DType::F32, d);
      runner.run(
          "avg_pool2d_bwd", shape_name(s) + " k3s2p1", d, {in_b + out_b, 0},
          [&] {
            const auto dx = node->apply({gy})[0].to_vector();
            double total = 0;
            for (float v : dx) total += v;
            // Each output distributes exactly 1 over its window: sum(dx) == #outputs.
            const double outputs = (double)want.size();
            return std::fabs(total - outputs) <= 1e-4 * outputs
                       ? std::string()
                       : "sum(dx) " + std::to_string(total) + " != " + std::to_string(outputs);
          },
          [&] { node->apply({gy}); });
    }
    // SPPM: adaptive average pools of the 1/32 map.
    {
      const Shape s = scaled({4, 16, 16, 1024}, q);
      const Tensor x = Tensor::uniform(s, 2, -1.f, 1.f, d);
      const auto xv = x.to_vector();
      for (int bins : {1, 2, 4}) {
        const auto want = pool_ref(xv, s, Kind::Adaptive, 0, 0, 0, bins, bins);
        runner.run(
            "adaptive_avg_pool2d_fwd", shape_name(s) + " -> " + std::to_string(bins), d,
            {4.0 * (double)x.numel() + 4.0 * (double)want.size(), 0},
            [&] { return compare(adaptive_avg_pool2d(x, bins, bins).to_vector(), want, 1e-5); },
            [&] { adaptive_avg_pool2d(x, bins, bins); });
      }
    }
    // max_pool2d 3x3 s2 p1.
    {
      const Shape s = scaled({4, 128, 128, 64}, q);
      const Tensor x = Tensor::uniform(s, 3, -1.f, 1.f, d);
      const auto xv = x.to_vector();
      const auto want = pool_ref(xv, s, Kind::Max, 3, 2, 1, 0, 0);
      const double in_b = 4.0 * (double)x.numel(), out_b = 4.0 * (double)want.size();
      runner.run(
          "max_pool2d_fwd", shape_name(s) + " k3s2p1", d, {in_b + 2 * out_b, 0},
          [&] { return compare(max_pool2d(x, 3, 2, 1).to_vector(), want, 0); }, [&] { max_pool2d(x, 3, 2, 1); });
      const Tensor xg = x.detach().set_requires_grad(true);
      const Tensor y = max_pool2d(xg, 3, 2, 1);
      const auto node = y.grad_fn();
      const Tensor gy = Tensor::full(y.shape(), 1.f, DType::F32, d);
      runner.run(
          "max_pool2d_bwd", shape_name(s) + " k3s2p1", d, {in_b + 2 * out_b, 0},
          [&] {
            const auto dx = node->apply({gy})[0].to_vector();
            double total = 0;
            for (float v : dx) total += v;
            const double outputs = (double)want.size();  // each output routes exactly 1 to one cell
            return total == outputs ? std::string()
                                    : "sum(dx) " + std::to_string(total) + " != " + std::to_string(outputs);
          },
          [&] { node->apply({gy}); });
    }
  }
}
