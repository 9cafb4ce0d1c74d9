// labels: kernel
// YOLOv3 loss (engine/ops/yolo_loss.h): the five terms against a double-precision reference written
// here from the semantics (target assignment included), the gradient of `loss` against central
// finite differences of that reference, CPU vs CUDA device, strided inputs, guard bytes and
// determinism through the op harness. Cases: several gts in a batch of 2, padded boxes, a gt with
// score 0, two gts on one prediction (the later owns tx..tobj, class targets are the union), mixup
// scores < 1, gts on each of the three scales, a centre at the image border, label smoothing,
// i32 and i64 classes, scale_x_y != 1, no gt rows; a PaddleDetection golden; a CPU-only COCO-sized
// case; bad inputs.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <tuple>

#include "engine/autograd.h"
#include "engine/ops/yolo_loss.h"
#include "tests/harness/golden.h"
#include "tests/harness/op_check.h"

using namespace engine;
using namespace engine::testing;

namespace {

// ---------------------------------------------------------------------------- reference (double)
struct RefTarget {
  double tx = 0, ty = 0, tw = 0, th = 0, tscale = 0, tobj = 0;
  std::vector<double> tcls;
};

struct RefResult {
  std::array<double, 5> terms{};   // xy, wh, obj, cls, loss
  std::array<int, 3> positives{};  // per scale
  int ignored = 0;
  std::vector<std::array<int64_t, 5>> pos_at;  // (s, n, j, i, a) of each positive prediction
};

double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }
double bce_logits(double x, double t) { return std::max(x, 0.0) - x * t + std::log1p(std::exp(-std::fabs(x))); }
double clog(double v) { return v > 0 ? std::max(std::log(v), -100.0) : -100.0; }

// heads: S arrays NHWC; box [N*B*4], cls [N*B], score [N*B].
RefResult yolo_ref(const std::vector<const std::vector<double>*>& heads, const std::vector<Shape>& hshapes,
                   const std::vector<double>& box, const std::vector<double>& cls, const std::vector<double>& score,
                   int64_t N, int64_t B, const YoloLossArgs& args) {
  const int S = (int)heads.size(), C = args.num_classes, A = (int)args.anchors.size();
  const double in_w = (double)(args.downsample[0] * hshapes[0][2]), in_h = (double)(args.downsample[0] * hshapes[0][1]);
  const double delta = std::min(1.0 / C, 1.0 / 40.0);
  RefResult r;
  std::array<double, 4> tot{};
  for (int64_t n = 0; n < N; ++n) {
    std::map<std::tuple<int, int, int, int>, RefTarget> tg;  // (s, a, j, i)
    for (int64_t b = 0; b < B; ++b) {
      const double* q = &box[(size_t)((n * B + b) * 4)];
      const double sc = score[(size_t)(n * B + b)];
      if (q[2] <= 0 || q[3] <= 0 || sc <= 0) continue;
      int best = -1;
      double biou = 0;
      for (int k = 0; k < A; ++k) {
        const double aw = args.anchors[(size_t)k][0] / in_w, ah = args.anchors[(size_t)k][1] / in_h;
        const double inter = std::min(q[2], aw) * std::min(q[3], ah);
        const double iou = inter / (q[2] * q[3] + aw * ah - inter);
        if (iou > biou) {
          biou = iou;
          best = k;
        }
      }
      for (int s = 0; s < S; ++s)
        for (size_t a = 0; a < args.anchor_masks[(size_t)s].size(); ++a) {
          if (args.anchor_masks[(size_t)s][a] != best) continue;
          const int gh = (int)hshapes[(size_t)s][1], gw = (int)hshapes[(size_t)s][2];
          const int gi = std::min((int)(q[0] * gw), gw - 1), gj = std::min((int)(q[1] * gh), gh - 1);
          RefTarget& t = tg[{s, (int)a, gj, gi}];
          t.tx = q[0] * gw - gi;
          t.ty = q[1] * gh - gj;
          t.tw = std::log(q[2] * in_w / args.anchors[(size_t)best][0]);
          t.th = std::log(q[3] * in_h / args.anchors[(size_t)best][1]);
          t.tscale = 2.0 - q[2] * q[3];
          t.tobj = sc;
          t.tcls.resize((size_t)C, 0.0);
          t.tcls[(size_t)cls[(size_t)(n * B + b)]] = 1.0;
        }
    }
    for (int s = 0; s < S; ++s) {
      const auto& mask = args.anchor_masks[(size_t)s];
      const int na = (int)mask.size(), gh = (int)hshapes[(size_t)s][1], gw = (int)hshapes[(size_t)s][2];
      const int L = 5 + C;
      const double sxy = args.scale_x_y;
      for (int j = 0; j < gh; ++j)
        for (int i = 0; i < gw; ++i)
          for (int a = 0; a < na; ++a) {
            const double* x = &(*heads[(size_t)s])[(size_t)((((n * gh + j) * gw + i) * na + a) * L)];
            const double px = sxy * sigmoid(x[0]) - 0.5 * (sxy - 1), py = sxy * sigmoid(x[1]) - 0.5 * (sxy - 1);
            auto it = tg.find({s, a, j, i});
            if (it == tg.end()) {
              // ignore mask from the decoded box
              const double cx = (i + px) / gw, cy = (j + py) / gh;
              const double w =
                  std::exp(x[2]) * args.anchors[(size_t)mask[(size_t)a]][0] / (args.downsample[(size_t)s] * gw);
              const double h =
                  std::exp(x[3]) * args.anchors[(size_t)mask[(size_t)a]][1] / (args.downsample[(size_t)s] * gh);
              double best = 0;
              for (int64_t b = 0; b < B; ++b) {
                const double* q = &box[(size_t)((n * B + b) * 4)];
                const double iw =
                    std::max(0.0, std::min(cx + w / 2, q[0] + q[2] / 2) - std::max(cx - w / 2, q[0] - q[2] / 2));
                const double ih =
                    std::max(0.0, std::min(cy + h / 2, q[1] + q[3] / 2) - std::max(cy - h / 2, q[1] - q[3] / 2));
                const double ov = iw * ih;
                best = std::max(best, ov / (w * h + q[2] * q[3] - ov + 1e-9));
              }
              if (best > args.ignore_thresh) {
                ++r.ignored;
              } else {
                tot[2] += bce_logits(x[4], 0.0);
              }
              continue;
            }
            const RefTarget& t = it->second;
            ++r.positives[(size_t)s];
            r.pos_at.push_back({s, n, j, i, a});
            const double wt = t.tscale * t.tobj;
            if (std::fabs(sxy - 1) < 1e-10)
              tot[0] +=
                  wt * (-(t.tx * clog(px) + (1 - t.tx) * clog(1 - px)) - (t.ty * clog(py) + (1 - t.ty) * clog(1 - py)));
            else
              tot[0] += wt * (std::fabs(px - t.tx) + std::fabs(py - t.ty));
            tot[1] += wt * (std::fabs(x[2] - t.tw) + std::fabs(x[3] - t.th));
            tot[2] += bce_logits(x[4], 1.0) * t.tobj;
            for (int c = 0; c < C; ++c) {
              double tc = t.tcls[(size_t)c];
              if (args.label_smooth) tc = tc > 0 ? 1 - delta : delta;
              tot[3] += bce_logits(x[5 + c], tc) * t.tobj;
            }
          }
    }
  }
  for (int k = 0; k < 4; ++k) r.terms[(size_t)k] = tot[(size_t)k] / (double)N;
  r.terms[4] = r.terms[0] + r.terms[1] + r.terms[2] + r.terms[3];
  return r;
}

// ---------------------------------------------------------------------------- fixed gts
// Normalized (cx, cy, w, h), class, score for a network input of `in` pixels. Sizes in pixels pick
// the best anchor: (12, 14) -> anchor 0 (stride 8), (60, 47) -> 4 (stride 16), (110, 95) -> 6
// (stride 32).
struct Gt {
  double cx, cy, w, h;
  int cls;
  double score;
};

std::vector<std::vector<Gt>> batch_gts(int in, int C) {
  auto px = [in](double v) { return v / in; };
  std::vector<Gt> im0 = {
      {0.30, 0.40, px(12), px(14), 1 % C, 1.0},   // stride 8
      {0.55, 0.52, px(60), px(47), 3 % C, 1.0},   // stride 16
      {0.57, 0.54, px(61), px(46), 7 % C, 0.6},   // same stride-16 cell and anchor: collision, mixup score
      {0.58, 0.55, px(59), px(48), 3 % C, 1.0},   // third on that prediction, class 3 again (union stays 1)
      {0.50, 0.50, px(110), px(95), 2 % C, 0.8},  // stride 32, mixup
      {0, 0, 0, 0, 0, 0},                         // padding
  };
  std::vector<Gt> im1 = {
      {0.999, 0.25, px(14), px(12), 5 % C, 1.0},  // centre on the last column
      {0.20, 0.70, px(120), px(100), 0, 0.5},     // stride 32, mixup
      {0.70, 0.30, px(30), px(60), 4 % C, 1.0},   // anchor 3 (stride 16)
      {0.40, 0.60, px(40), px(40), 6 % C, 0.0},   // score 0: not assigned, still in the ignore IoU
      {0, 0, 0, 0, 0, 0},
      {0, 0, 0, 0, 0, 0},
  };
  return {im0, im1};
}

std::vector<float> gt_values(int what, int in, int C) {  // 0 box, 1 cls, 2 score
  std::vector<float> v;
  for (const auto& im : batch_gts(in, C))
    for (const Gt& g : im) {
      if (what == 0) {
        v.push_back((float)g.cx);
        v.push_back((float)g.cy);
        v.push_back((float)g.w);
        v.push_back((float)g.h);
      } else {
        v.push_back(what == 1 ? (float)g.cls : (float)g.score);
      }
    }
  return v;
}

std::vector<Shape> head_shapes(int64_t N, int in, int C) {
  return {{N, in / 32, in / 32, 3 * (5 + C)}, {N, in / 16, in / 16, 3 * (5 + C)}, {N, in / 8, in / 8, 3 * (5 + C)}};
}

std::vector<Device> devices() {
  std::vector<Device> d = {Device::cpu()};
  if (have_cuda()) d.push_back(Device::cuda(0));
  return d;
}

uint64_t mix(uint64_t s) {
  s ^= s >> 33;
  s *= 0xff51afd7ed558ccdull;
  s ^= s >> 33;
  s *= 0xc4ceb9fe1a85ec53ull;
  return s ^ (s >> 33);
}

// Head logits: tx, ty, obj, classes uniform in [-2, 2]; tw, th in [-1.5, 1.5] so decoded boxes are
// anchor-sized and some overlap gts by IoU > 0.7.
std::vector<float> head_values(const Shape& s, int C, uint64_t seed) {
  std::vector<float> v((size_t)shape_numel(s));
  for (size_t k = 0; k < v.size(); ++k) {
    const double u = (double)(mix(seed * 1000003 + k) >> 11) / 9007199254740992.0;
    const int ch = (int)(k % (size_t)(5 + C) == 0 ? 0 : (k % (size_t)s.back()) % (size_t)(5 + C));
    v[k] = (float)((ch == 2 || ch == 3) ? -1.5 + 3 * u : -2 + 4 * u);
  }
  return v;
}

// Plants a negative prediction whose decoded box matches a gt (IoU ~ 1 > ignore_thresh): image n,
// cell (i, j), slot a of a head with L = 5 + C channels per anchor, box (fx, fy) in the cell and
// exp(tw), exp(th) factors over the anchor.
void plant(std::vector<float>& v, const Shape& s, int C, int64_t n, int i, int j, int a, double fx, double fy,
           double ew, double eh) {
  const int64_t L = 5 + C, na = s[3] / L;
  float* x = &v[(size_t)((((n * s[1] + j) * s[2] + i) * na + a) * L)];
  x[0] = (float)std::log(fx / (1 - fx));
  x[1] = (float)std::log(fy / (1 - fy));
  x[2] = (float)std::log(ew);
  x[3] = (float)std::log(eh);
}

void check_yolo(const std::string& name, int in, int C, const YoloLossArgs& base, DType cls_dtype) {
  const int64_t N = 2, B = 6;
  YoloLossArgs args = base;
  args.num_classes = C;
  std::vector<Shape> shapes = head_shapes(N, in, C);
  shapes.push_back({N, B, 4});
  shapes.push_back({N, B});
  shapes.push_back({N, B});
  CheckOptions o;
  o.differentiable = {true, true, true, false, false, false};
  o.input_gen = [in, C](int input, const Shape& s, uint64_t seed) {
    if (input < 3) {
      std::vector<float> v = head_values(s, C, seed + (uint64_t)input);
      const int g = s[1];
      // Image 0, gt 1 ((60, 47) px at (0.55, 0.52)) seen by slot 0 (anchor 3, 30x61) of the stride-16
      // head; image 1, gt 2 ((30, 60) px at (0.7, 0.3)) by slot 2 (anchor 2, 33x23) of the stride-8 head.
      auto frac = [g](double c) { return c * g - std::floor(c * g); };
      if (input == 1)
        plant(v, s, C, 0, (int)(0.55 * g), (int)(0.52 * g), 0, frac(0.55), frac(0.52), 60.0 / 30, 47.0 / 61);
      if (input == 2)
        plant(v, s, C, 1, (int)(0.70 * g), (int)(0.30 * g), 2, frac(0.70), frac(0.30), 30.0 / 33, 60.0 / 23);
      return v;
    }
    return gt_values(input - 3, in, C);
  };
  auto ref_of = [args, N, B](const RefInputs& x, const std::vector<Shape>& sh) {
    return yolo_ref({&x[0], &x[1], &x[2]}, {sh[0], sh[1], sh[2]}, x[3], x[4], x[5], N, B, args);
  };
  // The reference covers what the case is meant to: positives on every scale, some ignored negatives.
  {
    RefInputs x;
    for (int k = 0; k < 6; ++k) {
      const auto f = o.input_gen(k, shapes[(size_t)k], o.seed);
      x.emplace_back(f.begin(), f.end());
    }
    const RefResult r = ref_of(x, shapes);
    for (int s = 0; s < 3; ++s) EXPECT_GT(r.positives[(size_t)s], 0) << name << " scale " << s;
    EXPECT_GT(r.ignored, 0) << name;
  }
  // The five terms (no gradient check: only `loss` has a gradient path).
  CheckOptions o5 = o;
  o5.check_grad = false;
  check_op(
      name + "_terms", {{name, shapes}},
      [args, cls_dtype](const std::vector<Tensor>& t) {
        const YoloLossOutput r = yolov3_loss({t[0], t[1], t[2]}, t[3], t[4].to(cls_dtype), t[5], args);
        return std::vector<Tensor>{r.loss_xy, r.loss_wh, r.loss_obj, r.loss_cls, r.loss};
      },
      [ref_of](const RefInputs& x, const std::vector<Shape>& sh) {
        const RefResult r = ref_of(x, sh);
        std::vector<std::vector<double>> out;
        for (double v : r.terms) out.push_back({v});
        return out;
      },
      o5);
  // `loss` and its gradient w.r.t. the three heads.
  check_op(
      name + "_grad", {{name, shapes}},
      [args, cls_dtype](const std::vector<Tensor>& t) {
        return std::vector<Tensor>{yolov3_loss({t[0], t[1], t[2]}, t[3], t[4].to(cls_dtype), t[5], args).loss};
      },
      [ref_of](const RefInputs& x, const std::vector<Shape>& sh) {
        return std::vector<std::vector<double>>{{ref_of(x, sh).terms[4]}};
      },
      o);
}

}  // namespace

TEST(Yolov3Loss, Input128Classes20) { check_yolo("yolo_128_c20", 128, 20, {}, DType::I64); }

TEST(Yolov3Loss, LabelSmoothI32Classes) {
  YoloLossArgs a;
  a.label_smooth = true;
  check_yolo("yolo_128_c20_ls", 128, 20, a, DType::I32);
}

TEST(Yolov3Loss, ScaleXY) {
  YoloLossArgs a;
  a.scale_x_y = 1.05f;
  check_yolo("yolo_96_c3_sxy", 96, 3, a, DType::I64);
}

// The collision rule: the third gt on the shared prediction owns its tx..tobj (score 1.0 replaces
// 0.6), and the class targets are {3, 7}.
TEST(Yolov3Loss, CollisionOwnerAndClassUnion) {
  const int in = 128, C = 20;
  const int64_t N = 2, B = 6;
  YoloLossArgs args;
  args.num_classes = C;
  const auto shapes = head_shapes(N, in, C);
  std::vector<Tensor> heads;
  for (const Shape& s : shapes) heads.push_back(Tensor::zeros(s));
  heads[1].set_requires_grad(true);
  const Tensor box = Tensor::from_vector(gt_values(0, in, C), {N, B, 4});
  const Tensor cls = Tensor::from_vector(gt_values(1, in, C), {N, B}).to(DType::I64);
  const Tensor score = Tensor::from_vector(gt_values(2, in, C), {N, B});
  const YoloLossOutput r = yolov3_loss(heads, box, cls, score, args);
  r.loss.backward();
  // The shared prediction: stride 16 (8x8 grid), cell (4, 4), anchor 4 = slot 1.
  const std::vector<float> g = heads[1].grad().to_vector();
  const int64_t base = ((0 * 8 + 4) * 8 + 4) * 3 * 25 + 1 * 25;
  // All logits 0: d obj = (0.5 - 1) * tobj / N with tobj = 1 (the last gt), classes (0.5 - t) / N.
  EXPECT_FLOAT_EQ(g[(size_t)(base + 4)], -0.25f);
  for (int c = 0; c < C; ++c) EXPECT_FLOAT_EQ(g[(size_t)(base + 5 + c)], (c == 3 || c == 7) ? -0.25f : 0.25f) << c;
  // tx target of the last gt: 0.58 * 8 - 4 = 0.64; d/dx BCE(sigmoid(0), 0.64) = 0.5 - 0.64.
  const float wts = 2.f - (59.f / 128) * (48.f / 128);
  EXPECT_NEAR(g[(size_t)(base + 0)], wts * (0.5f - (0.58f * 8 - 4)) / 2, 1e-6);
}

// CPU vs CUDA device: gradients bit-identical (the same per-element function), terms within 1 ulp-ish.
// At 128 every grid is a power of two, so a box times its grid size is exact; at 608 (grids 19, 38,
// 76), with label smoothing (soft class targets), the products are not, so a multiply-add that one
// compiler fuses and the other does not (nvcc, and the emulated kernels, contract; the CPU does not)
// changes the bits.
TEST(Yolov3Loss, DevicesAgreeAndRunsRepeat) {
  if (!have_cuda()) GTEST_SKIP() << "no CUDA device";
  for (const int in : {128, 608}) {
    SCOPED_TRACE("input " + std::to_string(in));
    const int C = 20;
    const int64_t N = 2, B = 6;
    YoloLossArgs args;
    args.num_classes = C;
    args.label_smooth = in == 608;
    const auto shapes = head_shapes(N, in, C);
    std::vector<std::vector<float>> grads[2];
    std::vector<float> terms[2];
    int k = 0;
    for (Device d : {Device::cpu(), Device::cuda(0)}) {
      for (int rep = 0; rep < 2; ++rep) {
        std::vector<Tensor> heads;
        for (size_t s = 0; s < shapes.size(); ++s)
          heads.push_back(Tensor::from_vector(head_values(shapes[s], C, 5 + s), shapes[s], d).set_requires_grad(true));
        const YoloLossOutput r = yolov3_loss(heads, Tensor::from_vector(gt_values(0, in, C), {N, B, 4}, d),
                                             Tensor::from_vector(gt_values(1, in, C), {N, B}, d).to(DType::I32),
                                             Tensor::from_vector(gt_values(2, in, C), {N, B}, d), args);
        r.loss.backward();
        std::vector<float> t = {r.loss_xy.item(), r.loss_wh.item(), r.loss_obj.item(), r.loss_cls.item(),
                                r.loss.item()};
        std::vector<std::vector<float>> gs;
        for (const Tensor& h : heads) gs.push_back(h.grad().to_vector());
        if (rep == 0) {
          grads[k] = gs;
          terms[k] = t;
        } else {
          EXPECT_EQ(gs, grads[k]) << d.str();
          EXPECT_EQ(t, terms[k]) << d.str();
        }
      }
      ++k;
    }
    EXPECT_EQ(grads[0], grads[1]);
    for (int i = 0; i < 5; ++i)
      EXPECT_NEAR(terms[1][(size_t)i], terms[0][(size_t)i], 1e-6 * (1 + std::fabs(terms[0][(size_t)i])));
  }
}

// Every channel of every positive prediction (few among thousands, so the harness' sampled finite
// differences rarely reach them) against central differences of the reference, on each device.
TEST(Yolov3Loss, GradientAtPositives) {
  for (bool smooth : {false, true}) {
    const int in = 128, C = 20;
    const int64_t N = 2, B = 6, L = 5 + C;
    YoloLossArgs args;
    args.num_classes = C;
    args.label_smooth = smooth;
    const auto shapes = head_shapes(N, in, C);
    std::vector<std::vector<double>> hd;
    for (size_t s = 0; s < 3; ++s) {
      const auto v = head_values(shapes[s], C, 21 + s);
      hd.emplace_back(v.begin(), v.end());
    }
    const auto bf = gt_values(0, in, C), cf = gt_values(1, in, C), sf = gt_values(2, in, C);
    const std::vector<double> bx(bf.begin(), bf.end()), cl(cf.begin(), cf.end()), sc(sf.begin(), sf.end());
    auto ref = [&](const std::vector<std::vector<double>>& h) {
      return yolo_ref({&h[0], &h[1], &h[2]}, {shapes[0], shapes[1], shapes[2]}, bx, cl, sc, N, B, args);
    };
    const RefResult r0 = ref(hd);
    ASSERT_GE(r0.pos_at.size(), 6u);
    std::vector<std::vector<double>> fd(3);
    std::vector<std::vector<int64_t>> where(3);
    for (const auto& q : r0.pos_at) {
      const int64_t s = q[0];
      const int64_t base = (((q[1] * shapes[(size_t)s][1] + q[2]) * shapes[(size_t)s][2] + q[3]) * 3 + q[4]) * L;
      for (int64_t k = 0; k < L; ++k) {
        auto h = hd;
        const double eps = 1e-4;
        h[(size_t)s][(size_t)(base + k)] += eps;
        const double up = ref(h).terms[4];
        h[(size_t)s][(size_t)(base + k)] -= 2 * eps;
        const double dn = ref(h).terms[4];
        fd[(size_t)s].push_back((up - dn) / (2 * eps));
        where[(size_t)s].push_back(base + k);
      }
    }
    for (Device d : devices()) {
      std::vector<Tensor> heads;
      for (size_t s = 0; s < 3; ++s)
        heads.push_back(
            Tensor::from_vector(std::vector<float>(hd[s].begin(), hd[s].end()), shapes[s], d).set_requires_grad(true));
      yolov3_loss(heads, Tensor::from_vector(bf, {N, B, 4}, d), Tensor::from_vector(cf, {N, B}, d).to(DType::I64),
                  Tensor::from_vector(sf, {N, B}, d), args)
          .loss.backward();
      for (size_t s = 0; s < 3; ++s) {
        const std::vector<float> g = heads[s].grad().to_vector();
        for (size_t k = 0; k < where[s].size(); ++k)
          EXPECT_NEAR(g[(size_t)where[s][k]], fd[s][k], 2e-4 + 1e-3 * std::fabs(fd[s][k]))
              << d.str() << " scale " << s << " element " << where[s][k] << " channel " << where[s][k] % L << " smooth "
              << smooth;
      }
    }
  }
}

// PaddleDetection itself (tests/golden/yolo_loss/yolo_loss.json, written by
// tools/gen_yolo_loss_golden.py from Gt2YoloTarget + YOLOv3Loss): the five terms with and without
// label smoothing, and the gradient of `loss` w.r.t. every head element, on each device.
TEST(Yolov3Loss, PaddleDetectionGolden) {
  const auto path = golden_dir() / "yolo_loss" / "yolo_loss.json";
  std::ifstream f(path);
  ASSERT_TRUE(f.good()) << "golden file " << path.string()
                        << " missing; regenerate with 'python3 tools/gen_yolo_loss_golden.py > "
                           "tests/golden/yolo_loss/yolo_loss.json'";
  const nlohmann::json j = nlohmann::json::parse(f);
  const int in = j["input"], C = j["num_classes"];
  const int64_t N = j["batch"], B = j["gts_per_image"], L = 3 * (5 + C);
  const auto shapes = head_shapes(N, in, C);
  std::vector<std::vector<float>> hv;
  for (size_t s = 0; s < 3; ++s) {
    std::vector<float> v((size_t)shape_numel(shapes[s]));
    for (int64_t k = 0; k < (int64_t)v.size(); ++k) {
      double x = (double)((k * 7919 + (int64_t)s * 104729) % 4001 - 2000) / 1000.0;
      const int64_t ch = (k % L) % (5 + C);
      if (ch == 2 || ch == 3) x *= 0.75;
      v[(size_t)k] = (float)x;
    }
    hv.push_back(v);
  }
  for (const auto& p : j["plants"]) hv[p[0].get<size_t>()][p[1].get<size_t>()] = (float)p[2].get<double>();
  const std::vector<float> box = j["gt_box"].get<std::vector<float>>(), score = j["gt_score"].get<std::vector<float>>();
  const std::vector<int64_t> cls = j["gt_class"].get<std::vector<int64_t>>();
  for (Device d : devices()) {
    for (const char* name : {"default", "label_smooth"}) {
      const auto& c = j["cases"][name];
      YoloLossArgs args;
      args.num_classes = C;
      args.label_smooth = std::string(name) == "label_smooth";
      std::vector<Tensor> heads;
      for (size_t s = 0; s < 3; ++s) heads.push_back(Tensor::from_vector(hv[s], shapes[s], d).set_requires_grad(true));
      const YoloLossOutput r =
          yolov3_loss(heads, Tensor::from_vector(box, {N, B, 4}, d), Tensor::from_vector_i64(cls, {N, B}, d),
                      Tensor::from_vector(score, {N, B}, d), args);
      const std::pair<const char*, Tensor> terms[5] = {{"loss_xy", r.loss_xy},
                                                       {"loss_wh", r.loss_wh},
                                                       {"loss_obj", r.loss_obj},
                                                       {"loss_cls", r.loss_cls},
                                                       {"loss", r.loss}};
      for (const auto& [k, t] : terms) {
        const double want = c[k].get<double>();
        EXPECT_NEAR(t.item(), want, 1e-5 * std::fabs(want) + 1e-6) << d.str() << " " << name << " " << k;
      }
      if (!c.contains("grad")) continue;
      r.loss.backward();
      double worst = 0;
      for (size_t s = 0; s < 3; ++s) {
        const std::vector<float> got = heads[s].grad().to_vector();
        const std::vector<double> want = c["grad"][s].get<std::vector<double>>();
        ASSERT_EQ(got.size(), want.size());
        for (size_t k = 0; k < got.size(); ++k) {
          worst = std::max(worst, std::fabs(got[k] - want[k]));
          EXPECT_NEAR(got[k], want[k], 1e-6 + 1e-5 * std::fabs(want[k]))
              << d.str() << " head " << s << " element " << k << " channel " << k % L;
        }
      }
      std::printf("[golden %s %s] max |grad - PaddleDetection| = %.3g\n", d.str().c_str(), name, worst);
    }
  }
}

// COCO-sized on the CPU device only: 416 input, C = 80, B = 50 with 8 real gts per image.
TEST(Yolov3Loss, Coco416OnCpu) {
  const int in = 416, C = 80;
  const int64_t N = 2, B = 50;
  YoloLossArgs args;
  args.num_classes = C;
  const auto shapes = head_shapes(N, in, C);
  std::vector<float> box((size_t)(N * B * 4), 0.f), cls((size_t)(N * B), 0.f), score((size_t)(N * B), 0.f);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t b = 0; b < 8; ++b) {
      const uint64_t h = mix((uint64_t)(n * 100 + b));
      const size_t q = (size_t)(n * B + b);
      box[q * 4 + 0] = 0.05f + 0.9f * (float)((h & 1023) / 1023.0);
      box[q * 4 + 1] = 0.05f + 0.9f * (float)(((h >> 10) & 1023) / 1023.0);
      box[q * 4 + 2] = 0.02f + 0.6f * (float)(((h >> 20) & 1023) / 1023.0);
      box[q * 4 + 3] = 0.02f + 0.6f * (float)(((h >> 30) & 1023) / 1023.0);
      cls[q] = (float)((h >> 40) % (uint64_t)C);
      score[q] = b == 3 ? 0.7f : 1.f;
    }
  std::vector<Tensor> heads;
  std::vector<std::vector<double>> hd;
  for (size_t s = 0; s < shapes.size(); ++s) {
    const auto v = head_values(shapes[s], C, 11 + s);
    hd.emplace_back(v.begin(), v.end());
    heads.push_back(Tensor::from_vector(v, shapes[s]));
  }
  const YoloLossOutput r =
      yolov3_loss(heads, Tensor::from_vector(box, {N, B, 4}), Tensor::from_vector(cls, {N, B}).to(DType::I64),
                  Tensor::from_vector(score, {N, B}), args);
  const RefResult ref = yolo_ref(
      {&hd[0], &hd[1], &hd[2]}, {shapes[0], shapes[1], shapes[2]}, std::vector<double>(box.begin(), box.end()),
      std::vector<double>(cls.begin(), cls.end()), std::vector<double>(score.begin(), score.end()), N, B, args);
  const float got[5] = {r.loss_xy.item(), r.loss_wh.item(), r.loss_obj.item(), r.loss_cls.item(), r.loss.item()};
  for (int i = 0; i < 5; ++i)
    EXPECT_NEAR(got[i], ref.terms[(size_t)i], 1e-5 * (1 + std::fabs(ref.terms[(size_t)i]))) << i;
}

TEST(Yolov3Loss, BadInputs) {
  const int in = 64, C = 2;
  const int64_t N = 1, B = 2;
  YoloLossArgs args;
  args.num_classes = C;
  const auto shapes = head_shapes(N, in, C);
  std::vector<Tensor> heads;
  for (const Shape& s : shapes) heads.push_back(Tensor::zeros(s));
  const Tensor box = Tensor::from_vector({0.5f, 0.5f, 0.2f, 0.2f, 0, 0, 0, 0}, {N, B, 4});
  const Tensor score = Tensor::from_vector({1.f, 0.f}, {N, B});
  const Tensor cls = Tensor::from_vector_i64({1, 0}, {N, B});
  EXPECT_NO_THROW(yolov3_loss(heads, box, cls, score, args));
  try {
    yolov3_loss(heads, box, Tensor::from_vector_i64({2, 0}, {N, B}), score, args);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("gt_class[0, 0] = 2"), std::string::npos) << e.what();
  }
  // A padded row may hold any class id.
  EXPECT_NO_THROW(yolov3_loss(heads, box, Tensor::from_vector_i64({1, 99}, {N, B}), score, args));
  EXPECT_THROW(yolov3_loss(heads, box, cls.to(DType::F32), score, args), Error);            // class dtype
  EXPECT_THROW(yolov3_loss({heads[0], heads[1]}, box, cls, score, args), Error);            // scale count
  EXPECT_THROW(yolov3_loss({heads[0], heads[2], heads[1]}, box, cls, score, args), Error);  // input sizes
  EXPECT_THROW(yolov3_loss(heads, Tensor::zeros({N, B, 5}), cls, score, args), Error);      // box shape
  YoloLossArgs bad = args;
  bad.num_classes = 3;  // channels no longer 3 * (5 + C)
  EXPECT_THROW(yolov3_loss(heads, box, cls, score, bad), Error);
  bad = args;
  bad.anchor_masks[0] = {6, 7, 9};
  EXPECT_THROW(yolov3_loss(heads, box, cls, score, bad), Error);
}

// No gt rows at all (B = 0): only the objectness of negatives, nothing ignored.
TEST(Yolov3Loss, NoGts) {
  const int in = 64, C = 3;
  const int64_t N = 2;
  YoloLossArgs args;
  args.num_classes = C;
  const auto shapes = head_shapes(N, in, C);
  for (Device d : devices()) {
    std::vector<Tensor> heads;
    std::vector<std::vector<double>> hd;
    for (size_t s = 0; s < 3; ++s) {
      const auto v = head_values(shapes[s], C, 41 + s);
      hd.emplace_back(v.begin(), v.end());
      heads.push_back(Tensor::from_vector(v, shapes[s], d).set_requires_grad(true));
    }
    const YoloLossOutput r =
        yolov3_loss(heads, Tensor::zeros({N, 0, 4}, DType::F32, d), Tensor::zeros({N, 0}, DType::I64, d),
                    Tensor::zeros({N, 0}, DType::F32, d), args);
    const RefResult ref = yolo_ref({&hd[0], &hd[1], &hd[2]}, {shapes[0], shapes[1], shapes[2]}, {}, {}, {}, N, 0, args);
    EXPECT_EQ(r.loss_xy.item(), 0.f);
    EXPECT_EQ(r.loss_wh.item(), 0.f);
    EXPECT_EQ(r.loss_cls.item(), 0.f);
    EXPECT_NEAR(r.loss.item(), ref.terms[4], 1e-5 * ref.terms[4]) << d.str();
    r.loss.backward();
    const std::vector<float> g = heads[0].grad().to_vector();
    EXPECT_NEAR(g[4], 1.0 / (1.0 + std::exp(-hd[0][4])) / N, 1e-6);
    EXPECT_EQ(g[0], 0.f);
  }
}
