// bench_kernels rows for the reduction family at the shapes the models use:
//  - BatchNorm statistics of STDC / PP-LiteSeg at 512x512 batch 4: NHWC per-channel sums over
//    (N, H, W) of [4,128,128,64], [4,64,64,256], [4,32,32,512], [4,16,16,1024];
//  - UAFM spatial attention: channel mean / max over the last axis of [4,64,64,128];
//  - UAFM channel attention: spatial mean / max over (H, W) of [4,64,64,256];
//  - a global sum of 16M elements (loss / metric reductions);
//  - the backward kernels (broadcast for sum/mean, scatter for max), timed through the autograd node.
// Quick mode divides the spatial dims by 8 (the global sum by 64). Every row is validated against a
// naive double loop on the host before timing. Work.bytes = bytes read + written.
#include <cmath>
#include <functional>
#include <sstream>

#include "bench/bench.h"
#include "engine/autograd.h"
#include "engine/ops/reduce.h"

namespace {

using namespace engine;
using bench::compare;
using bench::scaled;
using bench::shape_name;

std::string axes_name(const std::vector<int>& a) {
  std::ostringstream o;
  o << " axes{";
  for (size_t i = 0; i < a.size(); ++i) o << (i ? "," : "") << a[i];
  o << "}";
  return o.str();
}

// Geometry [outer, reduce, inner] of a block reduction of `s` over the adjacent axes [a0, a1].
struct Geo {
  int64_t outer = 1, reduce = 1, inner = 1;
};
Geo geo_of(const Shape& s, int a0, int a1) {
  Geo g;
  for (int d = 0; d < (int)s.size(); ++d) (d < a0 ? g.outer : d <= a1 ? g.reduce : g.inner) *= s[(size_t)d];
  return g;
}

// Naive double references in the same geometry.
std::vector<double> naive_sum(const std::vector<float>& x, Geo g, double scale) {
  std::vector<double> out((size_t)(g.outer * g.inner), 0.0);
  for (int64_t o = 0; o < g.outer; ++o)
    for (int64_t r = 0; r < g.reduce; ++r)
      for (int64_t i = 0; i < g.inner; ++i)
        out[(size_t)(o * g.inner + i)] += x[(size_t)((o * g.reduce + r) * g.inner + i)];
  for (double& v : out) v *= scale;
  return out;
}

std::string check_max(const MaxResult& r, const std::vector<float>& x, Geo g) {
  const auto v = r.values.to_vector();
  const auto id = r.indices.to_vector_i64();
  for (int64_t o = 0; o < g.outer; ++o)
    for (int64_t i = 0; i < g.inner; ++i) {
      float best = -INFINITY;
      int64_t bi = -1;
      for (int64_t rr = 0; rr < g.reduce; ++rr) {
        const float xv = x[(size_t)((o * g.reduce + rr) * g.inner + i)];
        if (bi < 0 || xv > best) {
          best = xv;
          bi = rr;
        }
      }
      const size_t k = (size_t)(o * g.inner + i);
      if (v[k] != best || id[k] != bi)
        return "output " + std::to_string(k) + " is (" + std::to_string(v[k]) + ", " + std::to_string(id[k]) +
               "), expected (" + std::to_string(best) + ", " + std::to_string(bi) + ")";
    }
  return "";
}

}  // namespace

BENCH_REGISTER(reduce) {
  const bool q = runner.quick();
  struct FwdRow {
    const char* kernel;  // sum_fwd, mean_fwd, max_fwd
    Shape shape;
    int a0, a1;  // reduced axes a0..a1 (adjacent)
    bool keepdim;
  };
  const std::vector<FwdRow> rows = {
      {"sum_fwd", {4, 128, 128, 64}, 0, 2, false},  // BN statistics (per channel)
      {"sum_fwd", {4, 64, 64, 256}, 0, 2, false},
      {"sum_fwd", {4, 32, 32, 512}, 0, 2, false},
      {"sum_fwd", {4, 16, 16, 1024}, 0, 2, false},
      {"mean_fwd", {4, 64, 64, 128}, 3, 3, true},  // UAFM spatial attention: channel mean
      {"max_fwd", {4, 64, 64, 128}, 3, 3, true},   // ... and channel max
      {"mean_fwd", {4, 64, 64, 256}, 1, 2, true},  // UAFM channel attention: spatial mean
      {"max_fwd", {4, 64, 64, 256}, 1, 2, true},   // ... and spatial max
      {"sum_fwd", {16 << 20}, 0, 0, false},        // global sum
  };
  for (Device d : runner.devices()) {
    for (const FwdRow& r : rows) {
      const Shape s = scaled(r.shape, q);
      std::vector<int> axes;
      for (int a = r.a0; a <= r.a1; ++a) axes.push_back(a);
      const Geo g = geo_of(s, r.a0, r.a1);
      const Tensor x = Tensor::uniform(s, 11, -1.f, 1.f, d);
      const auto xv = x.to_vector();
      const double n = (double)x.numel(), nout = (double)(g.outer * g.inner);
      const std::string name = shape_name(s) + axes_name(axes);
      const std::string k = r.kernel;
      if (k == "max_fwd") {
        runner.run(
            k, name, d, {4 * n + 12 * nout, 0}, [&] { return check_max(max(x, axes, r.keepdim), xv, g); },
            [&] { max(x, axes, r.keepdim); });
      } else {
        const bool is_mean = k == "mean_fwd";
        const double scale = is_mean ? 1.0 / (double)g.reduce : 1.0;
        auto op = [&] { return is_mean ? mean(x, axes, r.keepdim) : sum(x, axes, r.keepdim); };
        runner.run(
            k, name, d, {4 * n + 4 * nout, 0}, [&] { return compare(op().to_vector(), naive_sum(xv, g, scale), 1e-4); },
            [&] { op(); });
      }
    }
    // Backward kernels through the recorded nodes: broadcast (sum / mean) and scatter (max).
    {
      const Shape s = scaled({4, 128, 128, 64}, q);
      const Tensor x = Tensor::uniform(s, 12, -1.f, 1.f, d).set_requires_grad(true);
      const Tensor y = sum(x, {0, 1, 2});
      const Tensor gy = Tensor::uniform(y.shape(), 13, -1.f, 1.f, d);
      const auto node = y.grad_fn();
      const auto gv = gy.to_vector();
      const int64_t c = s[3];
      runner.run(
          "sum_bwd", shape_name(s) + " axes{0,1,2}", d, {4.0 * (double)x.numel() + 4.0 * (double)c, 0},
          [&] {
            const auto dx = node->apply({gy})[0].to_vector();
            for (size_t i = 0; i < dx.size(); ++i)
              if (dx[i] != gv[i % (size_t)c]) return "element " + std::to_string(i) + " is wrong";
            return std::string();
          },
          [&] { node->apply({gy}); });
    }
    {
      const Shape s = scaled({4, 64, 64, 128}, q);
      const Tensor x = Tensor::uniform(s, 14, -1.f, 1.f, d).set_requires_grad(true);
      const int64_t c = s[3];
      const double n = (double)x.numel(), nout = n / (double)c;
      const Tensor ym = mean(x, {3}, true);
      const Tensor gm = Tensor::uniform(ym.shape(), 15, -1.f, 1.f, d);
      const auto mnode = ym.grad_fn();
      const auto gmv = gm.to_vector();
      runner.run(
          "mean_bwd", shape_name(s) + " axes{3}", d, {4 * n + 4 * nout, 0},
          [&] {
            const auto dx = mnode->apply({gm})[0].to_vector();
            for (size_t i = 0; i < dx.size(); ++i)
              if (std::fabs(dx[i] - gmv[i / (size_t)c] / (float)c) > 1e-6f)
                return "element " + std::to_string(i) + " is wrong";
            return std::string();
          },
          [&] { mnode->apply({gm}); });
      const MaxResult mx = max(x, {3}, true);
      const Tensor gx = Tensor::uniform(mx.values.shape(), 16, -1.f, 1.f, d);
      const auto xnode = mx.values.grad_fn();
      const auto gxv = gx.to_vector();
      const auto idv = mx.indices.to_vector_i64();
      runner.run(
          "max_bwd", shape_name(s) + " axes{3}", d, {4 * n + 12 * nout, 0},
          [&] {
            const auto dx = xnode->apply({gx})[0].to_vector();
            for (size_t i = 0; i < dx.size(); ++i) {
              const size_t o = i / (size_t)c;
              const float want = (int64_t)(i % (size_t)c) == idv[o] ? gxv[o] : 0.f;
              if (dx[i] != want) return "element " + std::to_string(i) + " is wrong";
            }
            return std::string();
          },
          [&] { xnode->apply({gx}); });
    }
  }
}
