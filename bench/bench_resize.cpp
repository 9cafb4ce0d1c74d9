// bench_kernels rows for the resize family at the models' shapes (batch 4, 512x512 input):
//  - PP-LiteSeg final logits upsample, 1/8 -> full: [4,64,64,19] -> 512x512 bilinear, forward and
//    backward (the backward timed through the autograd node);
//  - UAFM upsamples: [4,16,16,128] -> 32x32 and [4,32,32,96] -> 64x64 bilinear;
//  - YOLOv3 FPN nearest 2x: [4,13,13,256] -> 26x26.
// Quick mode divides every spatial size by 8. Each row is validated before timing against a naive
// host loop (forward: gather with the half-pixel / floor rules; backward: a scatter in double, an
// independent formulation of the same gradient). Work.bytes = bytes read + written.
#include <cmath>
#include <sstream>

#include "bench/bench.h"
#include "engine/autograd.h"
#include "engine/ops/resize.h"

namespace {

using namespace engine;
using bench::compare;
using bench::shape_name;

struct Tap {
  int64_t i0, i1;
  double l;
};
Tap tap(int64_t d, int64_t in, int64_t out, bool nearest) {
  const float ratio = (float)in / (float)out;
  if (nearest) {
    const int64_t s = std::min<int64_t>((int64_t)(ratio * (float)d), in - 1);
    return {s, s, 0.0};
  }
  float src = ratio * ((float)d + 0.5f) - 0.5f;
  if (src < 0) src = 0;
  const int64_t i0 = std::min<int64_t>((int64_t)src, in - 1);
  return {i0, std::min<int64_t>(i0 + 1, in - 1), (double)src - (double)i0};
}

// Calls f(out_index, in_index, weight) for every (output element, tap) pair.
template <class F>
void for_each_tap(const Shape& in, int64_t oh, int64_t ow, bool nearest, const F& f) {
  const int64_t N = in[0], H = in[1], W = in[2], C = in[3];
  for (int64_t n = 0; n < N; ++n)
    for (int64_t y = 0; y < oh; ++y) {
      const Tap ty = tap(y, H, oh, nearest);
      for (int64_t z = 0; z < ow; ++z) {
        const Tap tz = tap(z, W, ow, nearest);
        const int64_t o = ((n * oh + y) * ow + z) * C;
        const int64_t hs[2] = {ty.i0, ty.i1}, ws[2] = {tz.i0, tz.i1};
        const double wy[2] = {1 - ty.l, ty.l}, wz[2] = {1 - tz.l, tz.l};
        for (int a = 0; a < (nearest ? 1 : 2); ++a)
          for (int b = 0; b < (nearest ? 1 : 2); ++b) {
            const int64_t i = ((n * H + hs[a]) * W + ws[b]) * C;
            const double w = nearest ? 1.0 : wy[a] * wz[b];
            for (int64_t c = 0; c < C; ++c) f(o + c, i + c, w);
          }
      }
    }
}

}  // namespace

BENCH_REGISTER(resize) {
  const bool q = runner.quick();
  struct Row {
    const char* name;
    Shape in;
    int64_t oh, ow;
    bool nearest, backward;
    DType dt = DType::F32;  // bf16: the activations in bf16 (mixed precision), half the bytes
  };
  const std::vector<Row> rows = {
      {"resize_bilinear_fwd", {4, 64, 64, 19}, 512, 512, false, false},
      {"resize_bilinear_bwd", {4, 64, 64, 19}, 512, 512, false, true},
      {"resize_bilinear_fwd_bf16", {4, 64, 64, 19}, 512, 512, false, false, DType::BF16},
      {"resize_bilinear_bwd_bf16", {4, 64, 64, 19}, 512, 512, false, true, DType::BF16},
      {"resize_bilinear_fwd", {4, 16, 16, 128}, 32, 32, false, false},
      {"resize_bilinear_fwd", {4, 32, 32, 96}, 64, 64, false, false},
      {"resize_nearest_fwd", {4, 13, 13, 256}, 26, 26, true, false},
  };
  for (Device d : runner.devices()) {
    for (const Row& r : rows) {
      Shape s = r.in;
      int64_t oh = r.oh, ow = r.ow;
      if (q) {
        s[1] = std::max<int64_t>(1, s[1] / 8);
        s[2] = std::max<int64_t>(1, s[2] / 8);
        oh = std::max<int64_t>(1, oh / 8);
        ow = std::max<int64_t>(1, ow / 8);
      }
      const bool low = r.dt != DType::F32;
      const Tensor x32 = Tensor::uniform(s, 11, -3.f, 3.f, d).set_requires_grad(r.backward);
      const Tensor x = low ? x32.to(r.dt) : x32;
      auto op = [&] { return r.nearest ? resize_nearest(x, (int)oh, (int)ow) : resize_bilinear(x, (int)oh, (int)ow); };
      const Shape os = {s[0], oh, ow, s[3]};
      const double es = low ? 2.0 : 4.0;
      const double in_bytes = es * (double)x.numel(), out_bytes = es * (double)shape_numel(os);
      const double tol = low ? 1.0 / 128 : 1e-5;  // bf16 keeps 8 significant bits
      const std::string shape = shape_name(s) + " -> " + std::to_string(oh) + "x" + std::to_string(ow);
      const auto xv = x.to_vector();
      if (!r.backward) {
        runner.run(
            r.name, shape, d, {in_bytes + out_bytes, (r.nearest ? 0.0 : 9.0) * (double)shape_numel(os)},
            [&] {
              std::vector<double> want((size_t)shape_numel(os), 0.0);
              for_each_tap(s, oh, ow, r.nearest,
                           [&](int64_t o, int64_t i, double w) { want[(size_t)o] += w * xv[(size_t)i]; });
              return compare(op().to_vector(), want, tol);
            },
            [&] { op(); });
      } else {
        const Tensor y = op();
        const auto node = y.grad_fn();
        const Tensor g = Tensor::uniform(os, 12, -1.f, 1.f, d).to(r.dt);
        const auto gv = g.to_vector();
        runner.run(
            r.name, shape, d, {in_bytes + out_bytes, 8.0 * (double)shape_numel(os)},
            [&] {
              std::vector<double> want((size_t)x.numel(), 0.0);
              for_each_tap(s, oh, ow, r.nearest,
                           [&](int64_t o, int64_t i, double w) { want[(size_t)i] += w * gv[(size_t)o]; });
              return compare(node->apply({g})[0].to_vector(), want, low ? tol : 1e-4);
            },
            [&] { node->apply({g}); });
      }
    }
  }
}
