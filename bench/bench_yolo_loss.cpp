// bench_kernels rows for yolov3_loss (engine/ops/yolo_loss.h) at YOLOv3 training shapes: 416 and
// 608 input, batch 8, COCO's 80 classes, B = 50 gt rows per image of which 8 are real (the rest
// padding), forward (assignment + ignore mask + terms) and backward (gradient of the three heads).
// Quick mode: 64 and 96 input, batch 2. CPU rows are validated by invariants (loss = sum of the
// terms, all finite; the objectness gradient of a negative is sigmoid(x) / N or 0 when ignored);
// CUDA rows against the CPU device. Work.bytes: forward reads 5 channels of each prediction and
// writes / reads the int32 map; backward writes every channel and reads the objectness logit, the
// map and the channels of the positives.
#include <cmath>
#include <sstream>

#include "bench/bench.h"
#include "engine/autograd.h"
#include "engine/ops/yolo_loss.h"

namespace {

using namespace engine;

std::string near(double got, double want, double tol, const char* what) {
  if (std::fabs(got - want) <= tol * (1 + std::fabs(want)) && std::isfinite(got)) return "";
  std::ostringstream o;
  o << what << " is " << got << ", expected " << want;
  return o.str();
}

struct Gts {
  std::vector<float> box, cls, score;
};

Gts make_gts(int64_t N, int64_t B) {
  Gts g;
  g.box.assign((size_t)(N * B * 4), 0.f);
  g.cls.assign((size_t)(N * B), 0.f);
  g.score.assign((size_t)(N * B), 0.f);
  uint64_t h = 88172645463325252ull;
  auto next = [&h] {
    h ^= h << 13;
    h ^= h >> 7;
    h ^= h << 17;
    return (double)(h >> 11) / 9007199254740992.0;
  };
  for (int64_t n = 0; n < N; ++n)
    for (int64_t b = 0; b < 8 && b < B; ++b) {
      const size_t q = (size_t)(n * B + b);
      g.box[q * 4 + 0] = (float)(0.05 + 0.9 * next());
      g.box[q * 4 + 1] = (float)(0.05 + 0.9 * next());
      g.box[q * 4 + 2] = (float)(0.02 + 0.5 * next());
      g.box[q * 4 + 3] = (float)(0.02 + 0.5 * next());
      g.cls[q] = (float)(int)(80 * next());
      g.score[q] = 1.f;
    }
  return g;
}

}  // namespace

BENCH_REGISTER(yolo_loss) {
  const bool q = runner.quick();
  const int64_t N = q ? 2 : 8, B = 50, C = 80, L = 3 * (5 + C);
  const Gts gts = make_gts(N, B);
  for (int in : q ? std::vector<int>{64, 96} : std::vector<int>{416, 608}) {
    const std::vector<Shape> shapes = {{N, in / 32, in / 32, L}, {N, in / 16, in / 16, L}, {N, in / 8, in / 8, L}};
    int64_t P = 0;
    for (const Shape& s : shapes) P += s[1] * s[2] * 3;
    const std::string tag =
        "N" + std::to_string(N) + " " + std::to_string(in) + "x" + std::to_string(in) + " C80 B50 (8 real)";
    YoloLossArgs args;
    args.num_classes = (int)C;
    std::vector<Tensor> cpu_heads;
    for (size_t s = 0; s < shapes.size(); ++s) cpu_heads.push_back(Tensor::uniform(shapes[s], 31 + s, -2.f, 2.f));
    for (Device d : runner.devices()) {
      std::vector<Tensor> heads;
      for (const Tensor& h : cpu_heads) heads.push_back(h.to(d).detach().set_requires_grad(true));
      const Tensor box = Tensor::from_vector(gts.box, {N, B, 4}, d);
      const Tensor cls = Tensor::from_vector(gts.cls, {N, B}, d).to(DType::I64);
      const Tensor score = Tensor::from_vector(gts.score, {N, B}, d);
      const YoloLossOutput cpu_out =
          yolov3_loss(cpu_heads, box.to(Device::cpu()), cls.to(Device::cpu()), score.to(Device::cpu()), args);
      runner.run(
          "yolov3_loss_fwd", tag, d, {(double)N * P * (5 * 4 + 8), 0},
          [&] {
            const YoloLossOutput r = yolov3_loss(heads, box, cls, score, args);
            const double sum = (double)r.loss_xy.item() + r.loss_wh.item() + r.loss_obj.item() + r.loss_cls.item();
            std::string e = near(r.loss.item(), sum, 1e-5, "loss vs the sum of its terms");
            if (e.empty() && d.is_cuda()) e = near(r.loss.item(), cpu_out.loss.item(), 1e-5, "loss vs the CPU device");
            return e;
          },
          [&] {
            NoGradGuard ng;
            yolov3_loss(heads, box, cls, score, args);
          });
      const auto node = yolov3_loss(heads, box, cls, score, args).loss.grad_fn();
      const Tensor g = Tensor::full({}, 1.f, DType::F32, d);
      runner.run(
          "yolov3_loss_bwd", tag, d, {(double)N * P * ((5 + C) * 4 + 12), 0},
          [&] {
            const std::vector<Tensor> gx = node->apply({g});
            if (d.is_cuda()) {
              Tensor h0 = cpu_heads[0].detach().set_requires_grad(true);
              std::vector<Tensor> hc = {h0, cpu_heads[1].detach().set_requires_grad(true),
                                        cpu_heads[2].detach().set_requires_grad(true)};
              yolov3_loss(hc, box.to(Device::cpu()), cls.to(Device::cpu()), score.to(Device::cpu()), args)
                  .loss.backward();
              for (size_t s = 0; s < 3; ++s) {
                const auto want = hc[s].grad().to_vector(), got = gx[s].to_vector();
                for (size_t i = 0; i < want.size(); i += 131) {
                  const std::string e = near(got[i], want[i], 1e-5, "gradient vs the CPU device");
                  if (!e.empty()) return e;
                }
              }
              return std::string();
            }
            // Objectness channel of the first prediction of the stride-32 head (no gt there).
            const float x = cpu_heads[0].to_vector()[4], got = gx[0].to_vector()[4];
            const double sig = 1.0 / (1.0 + std::exp(-(double)x)) / (double)N;
            return got == 0.f ? std::string() : near(got, sig, 1e-5, "objectness gradient");
          },
          [&] { node->apply({g}); });
    }
  }
}
