// bench_kernels rows for the detection post-processing family (engine/ops/detection.h):
//  - yolo_box over the three YOLOv3 head scales (strides 32, 16, 8; 3 anchors; C = 80) of a batch of
//    8 at 416 x 416 (13^2 + 26^2 + 52^2 cells, 10647 predictions per image) and 608 x 608 (22743);
//  - multiclass_nms with PaddleDetection's YOLOv3 settings (score 0.01, nms_top_k 1000, IoU 0.45,
//    keep_top_k 100) on batch 8 x 10647 boxes x 80 classes: boxes around 400 cluster centres of a
//    416 x 416 image (heavy overlap, as a detector's), scores sigmoid(N(-7, 1.5)) (~560 boxes per
//    class pass 0.01, about what a trained model leaves after conf 0.005) and, denser,
//    sigmoid(N(-6, 2)) (~2600 per class: the nms_top_k cut to 1000 is active).
// Quick mode (tests, emulated build): batch 2, inputs 128 and 192, NMS on 1008 boxes.
// CPU rows are validated against naive loops here (yolo_box: double decode of every 97th
// prediction; NMS: Paddle's greedy algorithm written out in float), CUDA rows against the CPU device
// bit for bit. Work.bytes: input + output of one call.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <sstream>

#include "bench/bench.h"
#include "engine/ops/detection.h"

namespace {

using namespace engine;

const std::vector<std::vector<int>> kAnchors = {
    {116, 90, 156, 198, 373, 326}, {30, 61, 62, 45, 59, 119}, {10, 13, 16, 30, 33, 23}};
constexpr int kRatios[3] = {32, 16, 8};

double urand(uint64_t a, uint64_t b) {
  uint64_t h = a * 0x9E3779B97F4A7C15ull ^ (b + 0x632BE59BD9B4E019ull) * 0xBF58476D1CE4E5B9ull;
  h ^= h >> 31;
  h *= 0xD6E8FEB86659FD93ull;
  h ^= h >> 32;
  return (double)(h >> 11) * 0x1.0p-53;
}
double nrand(uint64_t a, uint64_t b) {
  const double u1 = std::max(urand(a, 2 * b), 1e-300), u2 = urand(a, 2 * b + 1);
  return std::sqrt(-2 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

std::string check_decode(const std::vector<float>& x, int64_t N, int64_t H, int64_t W, const YoloBoxArgs& a,
                         const std::vector<int64_t>& img, const std::vector<float>& boxes,
                         const std::vector<float>& scores) {
  const int64_t A = 3, C = a.class_num, L = 5 + C, P = A * H * W;
  auto sg = [](double v) { return 1 / (1 + std::exp(-v)); };
  for (int64_t q = 0; q < N * P; q += 97) {
    const int64_t n = q / P, p = q % P, an = p / (H * W), h = p % (H * W) / W, w = p % W;
    const float* t = &x[(size_t)(((n * H + h) * W + w) * A * L + an * L)];
    const double conf = sg(t[4]), iw = (double)img[2 * n + 1], ih = (double)img[2 * n];
    if (std::fabs(conf - a.conf_thresh) < 1e-6) continue;
    double want[4] = {0, 0, 0, 0}, s0 = 0;
    if (conf >= a.conf_thresh) {
      const double cx = (w + sg(t[0])) * iw / W, cy = (h + sg(t[1])) * ih / H;
      const double bw = std::exp((double)t[2]) * a.anchors[(size_t)(2 * an)] * iw / (a.downsample_ratio * W);
      const double bh = std::exp((double)t[3]) * a.anchors[(size_t)(2 * an + 1)] * ih / (a.downsample_ratio * H);
      want[0] = std::max(cx - bw / 2, 0.0), want[1] = std::max(cy - bh / 2, 0.0);
      want[2] = std::min(cx + bw / 2, iw - 1), want[3] = std::min(cy + bh / 2, ih - 1);
      s0 = conf * sg(t[5]);
    }
    for (int k = 0; k < 4; ++k)
      if (!(std::fabs(boxes[(size_t)(q * 4 + k)] - want[k]) <= 2e-4 + 2e-6 * std::fabs(want[k])))
        return "box " + std::to_string(q) + " differs from the double decode";
    if (!(std::fabs(scores[(size_t)(q * C)] - s0) <= 1e-8 + 2e-6 * s0))
      return "score " + std::to_string(q) + " differs from the double decode";
  }
  return "";
}

// Paddle's multiclass_nms3 CPU algorithm, written out naively in float (std::stable_sort, greedy
// loop, std::stable_sort for keep_top_k), rows grouped by class.
std::vector<float> naive_nms(const std::vector<float>& boxes, const std::vector<float>& scores, int64_t N, int64_t M,
                             int64_t C, const MultiClassNmsArgs& a) {
  auto area = [](const float* b) { return (b[2] < b[0] || b[3] < b[1]) ? 0.f : (b[2] - b[0]) * (b[3] - b[1]); };
  auto iou = [&](const float* b1, const float* b2) {
    if (b2[0] > b1[2] || b2[2] < b1[0] || b2[1] > b1[3] || b2[3] < b1[1]) return 0.f;
    const float inter =
        (std::min(b1[2], b2[2]) - std::max(b1[0], b2[0])) * (std::min(b1[3], b2[3]) - std::max(b1[1], b2[1]));
    return inter / (area(b1) + area(b2) - inter);
  };
  std::vector<float> rows;
  for (int64_t n = 0; n < N; ++n) {
    auto sc = [&](int64_t m, int64_t c) { return scores[(size_t)((n * M + m) * C + c)]; };
    const float* nb = &boxes[(size_t)(n * M * 4)];
    std::vector<std::pair<float, std::pair<int64_t, int64_t>>> all;  // (score, (class, box)), class order
    for (int64_t c = 0; c < C; ++c) {
      std::vector<std::pair<float, int64_t>> cand;
      for (int64_t m = 0; m < M; ++m)
        if (sc(m, c) > a.score_threshold) cand.push_back({sc(m, c), m});
      std::stable_sort(cand.begin(), cand.end(), [](const auto& x, const auto& y) { return x.first > y.first; });
      if ((int64_t)cand.size() > a.nms_top_k) cand.resize((size_t)a.nms_top_k);
      std::vector<int64_t> kept;
      for (const auto& [s, m] : cand) {
        bool keep = true;
        for (int64_t k : kept) keep = keep && iou(nb + m * 4, nb + k * 4) <= a.nms_threshold;
        if (keep) kept.push_back(m);
      }
      for (int64_t m : kept) all.push_back({sc(m, c), {c, m}});
    }
    if ((int64_t)all.size() > a.keep_top_k) {
      std::vector<std::pair<float, std::pair<int64_t, int64_t>>> top = all;
      std::stable_sort(top.begin(), top.end(), [](const auto& x, const auto& y) { return x.first > y.first; });
      top.resize((size_t)a.keep_top_k);
      std::stable_sort(top.begin(), top.end(),
                       [](const auto& x, const auto& y) { return x.second.first < y.second.first; });
      all = top;
    }
    for (const auto& [s, cm] : all) {
      const float* b = nb + cm.second * 4;
      rows.insert(rows.end(), {(float)cm.first, s, b[0], b[1], b[2], b[3]});
    }
  }
  return rows;
}

}  // namespace

BENCH_REGISTER(detection) {
  const bool q = runner.quick();
  const int64_t N = q ? 2 : 8, C = 80, A = 3, L = 5 + C;
  // ------------------------------------------------------------------ yolo_box (three scales)
  for (int64_t size : {q ? 128 : 416, q ? 192 : 608}) {
    std::vector<std::vector<float>> xs(3);
    std::vector<std::vector<float>> cpu_boxes(3), cpu_scores(3);
    int64_t cells = 0;
    for (int s = 0; s < 3; ++s) {
      const int64_t G = size / kRatios[s];
      cells += G * G;
      xs[(size_t)s].resize((size_t)(N * G * G * A * L));
      for (size_t i = 0; i < xs[(size_t)s].size(); ++i) {
        const int64_t k = (int64_t)(i % (size_t)L);
        const double z = nrand(size * 10 + s, i);
        xs[(size_t)s][i] = (float)(k < 4 ? z : (k == 4 ? -6 + 2 * z : -4 + 2 * z));
      }
    }
    std::vector<int64_t> img;
    for (int64_t n = 0; n < N; ++n) img.insert(img.end(), {375 + 10 * n, 500 - 7 * n});
    const double bytes = (double)N * cells * A * (4.0 * L + 4.0 * (4 + C));
    const std::string shape = std::to_string(N) + "x" + std::to_string(size) + "x" + std::to_string(size) +
                              " (3 scales, " + std::to_string(cells * A) + " boxes/img) C=80";
    for (Device d : runner.devices()) {
      std::vector<Tensor> xt;
      for (int s = 0; s < 3; ++s) {
        const int64_t G = size / kRatios[s];
        xt.push_back(Tensor::from_vector(xs[(size_t)s], {N, G, G, A * L}, d));
      }
      const Tensor it = Tensor::from_vector_i64(img, {N, 2}, d);
      auto args = [&](int s) {
        YoloBoxArgs a;
        a.anchors = kAnchors[(size_t)s];
        a.class_num = (int)C;
        a.downsample_ratio = kRatios[s];
        return a;
      };
      runner.run(
          "yolo_box", shape, d, {bytes, 0},
          [&] {
            for (int s = 0; s < 3; ++s) {
              const YoloBoxResult r = yolo_box(xt[(size_t)s], it, args(s));
              const auto b = r.boxes.to_vector(), sc = r.scores.to_vector();
              if (d.is_cpu()) {
                const int64_t G = size / kRatios[s];
                const std::string e = check_decode(xs[(size_t)s], N, G, G, args(s), img, b, sc);
                if (!e.empty()) return "stride " + std::to_string(kRatios[s]) + ": " + e;
                cpu_boxes[(size_t)s] = b;
                cpu_scores[(size_t)s] = sc;
              } else if (!same_bits(b, cpu_boxes[(size_t)s]) || !same_bits(sc, cpu_scores[(size_t)s])) {
                return "stride " + std::to_string(kRatios[s]) + ": differs from the CPU device";
              }
            }
            return std::string();
          },
          [&] {
            for (int s = 0; s < 3; ++s) yolo_box(xt[(size_t)s], it, args(s));
          });
    }
  }
  // ------------------------------------------------------------------ multiclass_nms
  {
    const int64_t M = q ? 3 * (16 + 64 + 256) : 10647;
    std::vector<float> boxes((size_t)(N * M * 4));
    for (int64_t i = 0; i < N * M; ++i) {
      const uint64_t cl = (uint64_t)(urand(i, 1) * 400);
      const double cx = urand(cl, 2) * 416, cy = urand(cl, 3) * 416;
      const double w = 8 + urand(i, 4) * 150, h = 8 + urand(i, 5) * 150;
      const double jx = (urand(i, 6) - 0.5) * 20, jy = (urand(i, 7) - 0.5) * 20;
      float* b = &boxes[(size_t)(i * 4)];
      b[0] = (float)std::max(0.0, cx + jx - w / 2), b[1] = (float)std::max(0.0, cy + jy - h / 2);
      b[2] = (float)std::min(415.0, cx + jx + w / 2), b[3] = (float)std::min(415.0, cy + jy + h / 2);
    }
    struct Dist {
      double mean, sd;
      const char* name;
    };
    for (const Dist& dist : {Dist{-7, 1.5, "sigmoid(N(-7,1.5))"}, Dist{-6, 2, "sigmoid(N(-6,2))"}}) {
      std::vector<float> scores((size_t)(N * M * C));
      for (size_t i = 0; i < scores.size(); ++i)
        scores[i] = (float)(1 / (1 + std::exp(-(dist.mean + dist.sd * nrand(77, i)))));
      const MultiClassNmsArgs a;  // PaddleDetection's YOLOv3 settings
      const std::vector<float> want = naive_nms(boxes, scores, N, M, C, a);
      const std::string shape = std::to_string(N) + "x" + std::to_string(M) + "x80 " + dist.name;
      const double bytes = (double)N * M * (4.0 * C + 16) + (double)want.size() * 4;
      for (Device d : runner.devices()) {
        const Tensor bt = Tensor::from_vector(boxes, {N, M, 4}, d), st = Tensor::from_vector(scores, {N, M, C}, d);
        runner.run(
            "multiclass_nms", shape, d, {bytes, 0},
            [&] {
              const MultiClassNmsResult r = multiclass_nms(bt, st, a);
              if (!same_bits(r.out.to_vector(), want)) {
                std::ostringstream o;
                o << "rows differ from the naive NMS (" << r.out.size(0) << " vs " << want.size() / 6 << " rows)";
                return o.str();
              }
              return std::string();
            },
            [&] { multiclass_nms(bt, st, a); });
      }
    }
  }
}
