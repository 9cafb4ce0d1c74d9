// bench_kernels rows for the loss and metrics families at the models' shapes:
//  - cross_entropy fwd / bwd at the quick start [4,512,512,2] and Cityscapes [4,512,1024,19]
//    (PP-LiteSeg evaluates it on 3 full-resolution logits per step), and with bf16 logits at
//    bench_train's [4,512,512,19] (mixed precision O2);
//  - upsampled_cross_entropy fwd / bwd: [4,64,64,19] logits upsampled x8 to 512x512 inside the
//    loss, f32 and bf16 (PP-LiteSeg's training heads);
//  - ohem_cross_entropy fwd / bwd at [4,512,1024,19], min_kept 130000 (the Cityscapes configs), and
//    a row where the threshold must be raised to the k-th probability (the selection path);
//  - bce_with_logits fwd / bwd at the YOLOv3 stride-8 head [8,52,52,255] (416 input, batch 8);
//  - seg_area_counts at [4,512,1024] with 19 classes.
// Every row is validated against a naive double loop on the host (CPU rows) or against the CPU
// device (CUDA rows) before timing. Work.bytes = compulsory traffic of one call.
#include <cmath>
#include <sstream>

#include "bench/bench.h"
#include "engine/autograd.h"
#include "engine/ops/loss.h"
#include "engine/ops/metrics.h"
#include "engine/ops/resize.h"

namespace {

using namespace engine;
using bench::scaled;
using bench::shape_name;

std::string near(double got, double want, double tol, const char* what) {
  if (std::fabs(got - want) <= tol * (1 + std::fabs(want))) return "";
  std::ostringstream o;
  o << what << " is " << got << ", expected " << want;
  return o.str();
}

// Labels: uniform classes with ~5% ignore pixels (255).
std::vector<int64_t> make_labels(int64_t n, int64_t C) {
  std::vector<int64_t> v((size_t)n);
  uint64_t h = 88172645463325252ull;
  for (auto& x : v) {
    h ^= h << 13;
    h ^= h >> 7;
    h ^= h << 17;
    x = (h % 20 == 0) ? 255 : (int64_t)((h >> 8) % (uint64_t)C);
  }
  return v;
}

double ce_ref(const std::vector<float>& x, const std::vector<int64_t>& y, int64_t C) {
  double s = 0, n = 0;
  for (size_t p = 0; p < y.size(); ++p) {
    if (y[p] == 255) continue;
    double m = -1e30, e = 0;
    for (int64_t c = 0; c < C; ++c) m = std::max(m, (double)x[p * C + c]);
    for (int64_t c = 0; c < C; ++c) e += std::exp(x[p * C + c] - m);
    s += m + std::log(e) - x[p * C + y[p]];
    n += 1;
  }
  return s / (n + 1e-8 * (double)y.size());
}

}  // namespace

BENCH_REGISTER(loss) {
  const bool q = runner.quick();
  for (Device d : runner.devices()) {
    // ------------------------------------------------------------------ cross entropy
    // bf16: PP-LiteSeg's O2 logits (the kernels widen them; f32 math).
    struct CeRow {
      Shape shape;
      DType dt;
    };
    for (const CeRow& row : {CeRow{{4, 512, 512, 2}, DType::F32}, CeRow{{4, 512, 1024, 19}, DType::F32},
                             CeRow{{4, 512, 512, 19}, DType::BF16}}) {
      const Shape s = scaled(row.shape, q);
      const int64_t C = s[3], P = s[0] * s[1] * s[2];
      const bool low = row.dt != DType::F32;
      const double es = low ? 2.0 : 4.0;  // bytes per logit
      const std::string sfx = low ? "_bf16" : "";
      const Tensor x32 = Tensor::uniform(s, 11, -3.f, 3.f, d).set_requires_grad(true);
      const Tensor x = low ? x32.to(row.dt) : x32;
      const auto yv = make_labels(P, C);
      const Tensor y = Tensor::from_vector_i64(yv, {s[0], s[1], s[2]}, d);
      const auto xv = x.to_vector();
      const double want = ce_ref(xv, yv, C);
      runner.run(
          "cross_entropy_fwd" + sfx, shape_name(s), d, {(double)P * (es * C + 12), 0},
          [&] { return near(cross_entropy(x, y).item(), want, 1e-5, "loss"); },
          [&] {
            NoGradGuard ng;
            cross_entropy(x, y);
          });
      const Tensor loss = cross_entropy(x, y);
      const auto node = loss.grad_fn();
      const Tensor g = Tensor::full({}, 1.f, DType::F32, d);
      runner.run(
          "cross_entropy_bwd" + sfx, shape_name(s), d, {(double)P * (2 * es * C + 12), 0},
          [&] {
            // Gradient rows sum to zero; check pixel 0 against softmax - onehot.
            const auto gx = node->apply({g})[0].to_vector();
            double m = -1e30, e = 0, nv = 0;
            for (int64_t c = 0; c < C; ++c) m = std::max(m, (double)xv[c]);
            for (int64_t c = 0; c < C; ++c) e += std::exp(xv[c] - m);
            for (int64_t v : yv) nv += v != 255;
            std::string err;
            for (int64_t c = 0; c < C && err.empty(); ++c) {
              const double sm = std::exp(xv[c] - m) / e;
              // Compared times the denominator (the gradient is of order 1 / P): relative error.
              const double denom = nv + 1e-8 * (double)P, w = yv[0] == 255 ? 0 : sm - (c == yv[0]);
              err = near(gx[c] * denom, w, low ? 1.0 / 128 : 1e-4, "gradient of pixel 0 (times the denominator)");
            }
            return err;
          },
          [&] { node->apply({g}); });
    }
    // ------------------------------------------------------------------ upsampled cross entropy
    // PP-LiteSeg's x8 logits [4,64,64,19] upsampled to 512x512 inside the loss (the training step's
    // three heads), f32 and bf16 (O2); against the resize + cross_entropy rows above it saves the
    // full-size logits and their gradient. Validated against the unfused ops (the same bits).
    for (const DType dt : {DType::F32, DType::BF16}) {
      const Shape s = scaled({4, 64, 64, 19}, q);
      const int64_t H = s[1] * 8, W = s[2] * 8, C = s[3], P = s[0] * H * W;
      const double es = dt == DType::F32 ? 4.0 : 2.0;
      const std::string sfx = dt == DType::F32 ? "" : "_bf16";
      const std::string tag = shape_name(s) + " to " + std::to_string(H) + "x" + std::to_string(W);
      const Tensor x32 = Tensor::uniform(s, 14, -3.f, 3.f, d).set_requires_grad(true);
      const Tensor x = dt == DType::F32 ? x32 : x32.to(dt);
      const Tensor y = Tensor::from_vector_i64(make_labels(P, C), {s[0], H, W}, d);
      const Tensor unfused = cross_entropy(resize_bilinear(x.detach(), (int)H, (int)W, false), y);
      runner.run(
          "upsampled_cross_entropy_fwd" + sfx, tag, d, {(double)s[0] * s[1] * s[2] * C * es + P * 12.0, 0},
          [&] { return near(upsampled_cross_entropy(x, y).item(), unfused.item(), 0, "loss"); },
          [&] {
            NoGradGuard ng;
            upsampled_cross_entropy(x, y);
          });
      const auto node = upsampled_cross_entropy(x, y).grad_fn();
      const Tensor g = Tensor::full({}, 1.f, DType::F32, d);
      runner.run(
          "upsampled_cross_entropy_bwd" + sfx, tag, d, {(double)s[0] * s[1] * s[2] * C * es * 2 + P * 12.0, 0},
          [&] {
            Tensor xr = x32.detach().set_requires_grad(true);  // an f32 leaf cast to x's type: its gradient is x's
            cross_entropy(resize_bilinear(dt == DType::F32 ? xr : xr.to(dt), (int)H, (int)W, false), y).backward();
            const auto want = xr.grad().to_vector(), got = node->apply({g})[0].to_vector();
            for (size_t i = 0; i < want.size(); i += 97) {
              const std::string e = near(got[i], want[i], 0, "gradient");
              if (!e.empty()) return e;
            }
            return std::string();
          },
          [&] { node->apply({g}); });
    }
    // ------------------------------------------------------------------ OHEM
    {
      const Shape s = scaled({4, 512, 1024, 19}, q);
      const int64_t C = s[3], P = s[0] * s[1] * s[2];
      const int64_t min_kept = q ? 130000 / 64 : 130000;
      const Tensor x = Tensor::uniform(s, 12, -3.f, 3.f, d).set_requires_grad(true);
      const Tensor y = Tensor::from_vector_i64(make_labels(P, C), {s[0], s[1], s[2]}, d);
      const Tensor x_cpu = x.to(Device::cpu()), y_cpu = y.to(Device::cpu());
      for (float thresh : {0.7f, 0.001f}) {  // 0.001: fewer than min_kept pixels below -> k-th value selection
        const std::string tag = shape_name(s) + (thresh > 0.5f ? " thresh 0.7" : " thresh 0.001 (select)");
        const double want = ohem_cross_entropy(x_cpu.detach(), y_cpu, thresh, min_kept).item();
        runner.run(
            "ohem_ce_fwd", tag, d, {(double)P * (4.0 * C + 20), 0},
            [&] { return near(ohem_cross_entropy(x, y, thresh, min_kept).item(), want, 1e-5, "loss"); },
            [&] {
              NoGradGuard ng;
              ohem_cross_entropy(x, y, thresh, min_kept);
            });
      }
      const auto node = ohem_cross_entropy(x, y, 0.7f, min_kept).grad_fn();
      const Tensor g = Tensor::full({}, 1.f, DType::F32, d);
      runner.run(
          "ohem_ce_bwd", shape_name(s), d, {(double)P * (8.0 * C + 16), 0},
          [&] {
            Tensor xc = x_cpu.detach().set_requires_grad(true);
            ohem_cross_entropy(xc, y_cpu, 0.7f, min_kept).backward();
            const auto want = xc.grad().to_vector(), got = node->apply({g})[0].to_vector();
            for (size_t i = 0; i < want.size(); i += 997) {
              const std::string e = near(got[i], want[i], 1e-4, "gradient");
              if (!e.empty()) return e;
            }
            return std::string();
          },
          [&] { node->apply({g}); });
    }
    // ------------------------------------------------------------------ BCE with logits (YOLOv3 head)
    {
      const Shape s = scaled({8, 52, 52, 255}, q);
      const Tensor x = Tensor::uniform(s, 13, -8.f, 8.f, d).set_requires_grad(true);
      const Tensor t = Tensor::uniform(s, 14, 0.f, 1.f, d);
      const auto xv = x.to_vector(), tv = t.to_vector();
      double want = 0;
      for (size_t i = 0; i < xv.size(); ++i)
        want += std::max((double)xv[i], 0.0) - (double)xv[i] * tv[i] + std::log1p(std::exp(-std::fabs((double)xv[i])));
      want /= (double)xv.size();
      const double n = (double)x.numel();
      runner.run(
          "bce_with_logits_fwd", shape_name(s), d, {8 * n, 0},
          [&] { return near(bce_with_logits(x, t, Tensor()).item(), want, 1e-5, "loss"); },
          [&] {
            NoGradGuard ng;
            bce_with_logits(x, t, Tensor());
          });
      const auto node = bce_with_logits(x, t, Tensor()).grad_fn();
      const Tensor g = Tensor::full({}, 1.f, DType::F32, d);
      runner.run(
          "bce_with_logits_bwd", shape_name(s), d, {12 * n, 0},
          [&] {
            const auto gx = node->apply({g})[0].to_vector();
            for (size_t i = 0; i < gx.size(); i += 1013) {
              const double sg = 1 / (1 + std::exp(-(double)xv[i]));
              const std::string e = near(gx[i] * n, sg - tv[i], 1e-4, "gradient");
              if (!e.empty()) return e;
            }
            return std::string();
          },
          [&] { node->apply({g}); });
    }
  }
}

BENCH_REGISTER(metrics) {
  const bool q = runner.quick();
  for (Device d : runner.devices()) {
    const Shape s = scaled({4, 512, 1024}, q);
    const int64_t n = s[0] * s[1] * s[2], C = 19;
    const auto lv = make_labels(n, C);
    std::vector<int64_t> pv(lv.size());
    for (size_t i = 0; i < pv.size(); ++i) pv[i] = (i % 3 == 0) ? (int64_t)((i * 7) % C) : (lv[i] == 255 ? 0 : lv[i]);
    const Tensor pred = Tensor::from_vector_i64(pv, s, d), label = Tensor::from_vector_i64(lv, s, d);
    std::vector<int64_t> wi(C, 0), wp(C, 0), wl(C, 0);
    for (size_t i = 0; i < pv.size(); ++i) {
      if (lv[i] == 255) continue;
      ++wp[pv[i]];
      ++wl[lv[i]];
      wi[pv[i]] += pv[i] == lv[i];
    }
    runner.run(
        "seg_area_counts", shape_name(s) + " C=19", d, {16.0 * (double)n, 0},
        [&] {
          const SegAreas a = seg_area_counts(pred, label, C, 255);
          if (a.intersect.to_vector_i64() != wi || a.pred.to_vector_i64() != wp || a.label.to_vector_i64() != wl)
            return std::string("area counts differ from the naive loop");
          return std::string();
        },
        [&] { seg_area_counts(pred, label, C, 255); });
  }
}
