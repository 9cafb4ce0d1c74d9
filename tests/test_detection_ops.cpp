// labels: kernel
// yolo_box and multiclass_nms (engine/ops/detection.h), Paddle semantics: hand-made cases worked out
// in the comments (one decoded cell, the confidence threshold, the clip, scale_x_y; NMS overlap within
// and across classes, equal scores, keep_top_k and nms_top_k cuts, score == threshold, IoU ==
// threshold, the adaptive eta threshold, background label, empty input, an image without detections),
// random cases against double-precision references written here (YOLOv3 sizes: 10647 boxes, 80
// classes, batch 2; candidates past the top-k cut, the 64-box mask blocks and the shared-memory sort),
// every result on the CUDA device (emulated in CI) bit-identical to the CPU device, run twice
// bit-identical; and Paddle's own outputs (tests/golden/detection/yolo_box_nms.json, written by
// tools/gen_yolo_box_nms_golden.py with paddlepaddle 3.3.1).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "engine/ops/detection.h"
#include "tests/harness/golden.h"
#include "tests/harness/op_check.h"

using namespace engine;
using engine::testing::have_cuda;

namespace {

std::vector<Device> devices() {
  std::vector<Device> d = {Device::cpu()};
  if (have_cuda()) d.push_back(Device::cuda(0));
  return d;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

// Deterministic hash -> [0, 1).
double urand(uint64_t a, uint64_t b = 0, uint64_t c = 0) {
  uint64_t h =
      a * 0x9E3779B97F4A7C15ull ^ (b + 0x632BE59BD9B4E019ull) * 0xBF58476D1CE4E5B9ull ^ c * 0x94D049BB133111EBull;
  h ^= h >> 31;
  h *= 0xD6E8FEB86659FD93ull;
  h ^= h >> 32;
  h *= 0xD6E8FEB86659FD93ull;
  h ^= h >> 29;
  return (double)(h >> 11) * 0x1.0p-53;
}
double nrand(uint64_t a, uint64_t b, uint64_t c) {  // standard normal (Box-Muller)
  const double u1 = std::max(urand(a, b, 2 * c), 1e-300), u2 = urand(a, b, 2 * c + 1);
  return std::sqrt(-2 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

// ---------------------------------------------------------------------------------- yolo_box reference
struct YoloRef {
  std::vector<double> boxes, scores;
  std::vector<char> near_thresh;  // per prediction: conf within 1e-6 of the threshold (either result is right)
};

double sig(double v) { return 1 / (1 + std::exp(-v)); }

// Paddle's formulas in double; x is [N, H, W, A*(5+C)], predictions anchor-major.
YoloRef ref_yolo_box(const std::vector<float>& x, int64_t N, int64_t H, int64_t W, const YoloBoxArgs& a,
                     const std::vector<int>& img) {
  const int64_t A = (int64_t)a.anchors.size() / 2, C = a.class_num, L = 5 + C, P = A * H * W;
  YoloRef r;
  r.boxes.assign((size_t)(N * P * 4), 0);
  r.scores.assign((size_t)(N * P * C), 0);
  r.near_thresh.assign((size_t)(N * P), 0);
  const double scale = a.scale_x_y, bias = -0.5 * (scale - 1);
  for (int64_t n = 0; n < N; ++n) {
    const double ih = img[2 * n], iw = img[2 * n + 1];
    for (int64_t an = 0; an < A; ++an)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t w = 0; w < W; ++w) {
          const float* t = &x[(size_t)(((n * H + h) * W + w) * A * L + an * L)];
          const int64_t p = n * P + an * H * W + h * W + w;
          const double conf = sig(t[4]);
          r.near_thresh[(size_t)p] = std::fabs(conf - a.conf_thresh) < 1e-6;
          if (conf < a.conf_thresh) continue;
          const double cx = (w + sig(t[0]) * scale + bias) * iw / (double)W;
          const double cy = (h + sig(t[1]) * scale + bias) * ih / (double)H;
          const double bw =
              std::exp((double)t[2]) * a.anchors[(size_t)(2 * an)] * iw / (double)(a.downsample_ratio * W);
          const double bh =
              std::exp((double)t[3]) * a.anchors[(size_t)(2 * an + 1)] * ih / (double)(a.downsample_ratio * H);
          double b[4] = {cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2};
          if (a.clip_bbox) {
            b[0] = std::max(b[0], 0.0);
            b[1] = std::max(b[1], 0.0);
            b[2] = std::min(b[2], iw - 1);
            b[3] = std::min(b[3], ih - 1);
          }
          for (int k = 0; k < 4; ++k) r.boxes[(size_t)(p * 4 + k)] = b[k];
          for (int64_t c = 0; c < C; ++c) r.scores[(size_t)(p * C + c)] = conf * sig(t[5 + c]);
        }
  }
  return r;
}

// ---------------------------------------------------------------------------------- NMS reference
struct NmsOut {
  std::vector<float> rows;  // R x 6
  std::vector<int64_t> index, num;
};

// Paddle's multiclass_nms3 CPU kernel, written out again: std::stable_sort on (score, index) pairs,
// std::map<class, kept list>, IoU in double from the float coordinates then rounded to float as
// Paddle's float kernel rounds its one division (the random boxes below sit on a 1/4-pixel grid, so
// every other step of the IoU is exact in float), the adaptive threshold in float.
NmsOut ref_nms(const std::vector<float>& boxes, const std::vector<float>& scores, int64_t N, int64_t M, int64_t C,
               const MultiClassNmsArgs& a) {
  auto area = [&](const float* b) -> double {
    if (b[2] < b[0] || b[3] < b[1]) return 0;
    const double w = (double)b[2] - b[0], h = (double)b[3] - b[1];
    return a.normalized ? w * h : (w + 1) * (h + 1);
  };
  auto iou = [&](const float* b1, const float* b2) -> float {
    if (b2[0] > b1[2] || b2[2] < b1[0] || b2[1] > b1[3] || b2[3] < b1[1]) return 0.f;
    const double norm = a.normalized ? 0 : 1;
    const double iw = (double)std::min(b1[2], b2[2]) - std::max(b1[0], b2[0]) + norm;
    const double ih = (double)std::min(b1[3], b2[3]) - std::max(b1[1], b2[1]) + norm;
    const double inter = iw * ih;
    return (float)(inter / (area(b1) + area(b2) - inter));
  };
  NmsOut o;
  for (int64_t n = 0; n < N; ++n) {
    const float* nb = &boxes[(size_t)(n * M * 4)];
    auto score = [&](int64_t m, int64_t c) { return scores[(size_t)((n * M + m) * C + c)]; };
    std::map<int64_t, std::vector<int64_t>> idx;
    int64_t det = 0;
    for (int64_t c = 0; c < C; ++c) {
      if (c == a.background_label) continue;
      std::vector<std::pair<float, int64_t>> sorted;
      for (int64_t m = 0; m < M; ++m)
        if (score(m, c) > a.score_threshold) sorted.push_back({score(m, c), m});
      std::stable_sort(sorted.begin(), sorted.end(), [](const auto& x, const auto& y) { return x.first > y.first; });
      if (a.nms_top_k > -1 && a.nms_top_k < (int64_t)sorted.size()) sorted.resize((size_t)a.nms_top_k);
      std::vector<int64_t>& sel = idx[c];
      float thr = a.nms_threshold;
      for (const auto& [s, m] : sorted) {
        bool keep = true;
        for (int64_t k : sel) {
          keep = iou(nb + m * 4, nb + k * 4) <= thr;
          if (!keep) break;
        }
        if (keep) {
          sel.push_back(m);
          if (a.nms_eta < 1 && thr > 0.5) thr *= a.nms_eta;
        }
      }
      det += (int64_t)sel.size();
    }
    if (a.keep_top_k > -1 && det > a.keep_top_k) {
      std::vector<std::pair<float, std::pair<int64_t, int64_t>>> pairs;
      for (const auto& [c, list] : idx)
        for (int64_t m : list) pairs.push_back({score(m, c), {c, m}});
      std::stable_sort(pairs.begin(), pairs.end(), [](const auto& x, const auto& y) { return x.first > y.first; });
      pairs.resize((size_t)a.keep_top_k);
      std::map<int64_t, std::vector<int64_t>> kept;
      for (const auto& pr : pairs) kept[pr.second.first].push_back(pr.second.second);
      idx.swap(kept);
    }
    int64_t R = 0;
    for (const auto& [c, list] : idx)
      for (int64_t m : list) {
        const float* b = nb + m * 4;
        o.rows.insert(o.rows.end(), {(float)c, score(m, c), b[0], b[1], b[2], b[3]});
        o.index.push_back(n * M + m);
        ++R;
      }
    o.num.push_back(R);
  }
  return o;
}

NmsOut run_nms(const std::vector<float>& boxes, const std::vector<float>& scores, int64_t N, int64_t M, int64_t C,
               const MultiClassNmsArgs& a, Device d) {
  const MultiClassNmsResult r =
      multiclass_nms(Tensor::from_vector(boxes, {N, M, 4}, d), Tensor::from_vector(scores, {N, M, C}, d), a);
  EXPECT_EQ(r.out.device(), d);
  EXPECT_EQ(r.out.dtype(), DType::F32);
  EXPECT_EQ(r.out.dim(), 2);
  EXPECT_EQ(r.out.size(1), 6);
  EXPECT_EQ(r.bbox_num.dtype(), DType::I64);
  EXPECT_EQ(r.bbox_num.shape(), (Shape{N}));
  EXPECT_FALSE(r.out.requires_grad());
  return {r.out.to_vector(), r.index.to_vector_i64(), r.bbox_num.to_vector_i64()};
}

void expect_same(const NmsOut& got, const NmsOut& want, const std::string& what) {
  EXPECT_EQ(got.num, want.num) << what;
  EXPECT_EQ(got.index, want.index) << what;
  EXPECT_TRUE(same_bits(got.rows, want.rows)) << what << ": rows differ";
  if (!same_bits(got.rows, want.rows) && got.rows.size() == want.rows.size()) {
    for (size_t i = 0; i < got.rows.size(); ++i)
      if (got.rows[i] != want.rows[i]) {
        ADD_FAILURE() << what << ": first difference at row " << i / 6 << " column " << i % 6 << ": " << got.rows[i]
                      << " vs " << want.rows[i];
        break;
      }
  }
}

// A row for the hand-made expectations.
std::vector<float> row(float label, float score, std::vector<float> b) {
  return {label, score, b[0], b[1], b[2], b[3]};
}
std::vector<float> cat(std::initializer_list<std::vector<float>> rs) {
  std::vector<float> o;
  for (const auto& r : rs) o.insert(o.end(), r.begin(), r.end());
  return o;
}

}  // namespace

// ============================================================================================ yolo_box
TEST(YoloBox, HandDecodedCell) {
  // One image 100 x 200 (h x w), a 2 x 3 grid (H x W), downsample 32 -> input 64 x 96, two anchors
  // (10, 13) and (30, 60), C = 2. Cell row 1, col 2, anchor 1 holds tx = ty = 0 (sigmoid 0.5),
  // tw = 0 (exp 1), th = ln 2 (exp 2), obj = 2 (conf = sigmoid(2) = 0.8807971), class logits 0, 1:
  //   cx = (2 + 0.5) * 200 / 3 = 166.66667      cy = (1 + 0.5) * 100 / 2 = 75
  //   bw = 1 * 30 * 200 / 96 = 62.5              bh = 2 * 60 * 100 / 64 = 187.5
  //   box = (135.41667, -18.75, 197.91667, 168.75) -> clipped (135.41667, 0, 197.91667, 99)
  //   scores = (0.8807971 * 0.5, 0.8807971 * 0.7310586) = (0.44039854, 0.64391426)
  // Its prediction index is anchor-major: p = a*H*W + row*W + col = 6 + 3 + 2 = 11.
  // Every other prediction has obj = -10 (conf 4.5e-5 < 0.005): zero box and scores.
  const int64_t H = 2, W = 3, A = 2, C = 2, L = 5 + C;
  std::vector<float> x((size_t)(H * W * A * L), 0.f);
  for (int64_t i = 0; i < H * W * A; ++i) x[(size_t)(i * L + 4)] = -10.f;
  float* t = &x[(size_t)(((1 * W + 2) * A + 1) * L)];
  t[0] = 0.f, t[1] = 0.f, t[2] = 0.f, t[3] = std::log(2.f), t[4] = 2.f, t[5] = 0.f, t[6] = 1.f;
  YoloBoxArgs a;
  a.anchors = {10, 13, 30, 60};
  a.class_num = 2;
  const double conf = 1 / (1 + std::exp(-2.0)), s1 = 1 / (1 + std::exp(-1.0));
  for (Device d : devices()) {
    for (bool clip : {true, false}) {
      a.clip_bbox = clip;
      for (DType it : {DType::I32, DType::I64}) {
        const YoloBoxResult r = yolo_box(Tensor::from_vector(x, {1, H, W, A * L}, d),
                                         Tensor::from_vector_i64({100, 200}, {1, 2}, d).to(it), a);
        ASSERT_EQ(r.boxes.shape(), (Shape{1, 12, 4}));
        ASSERT_EQ(r.scores.shape(), (Shape{1, 12, 2}));
        const auto b = r.boxes.to_vector(), s = r.scores.to_vector();
        const double want[4] = {166.66666666666666 - 31.25, clip ? 0.0 : -18.75, 166.66666666666666 + 31.25,
                                clip ? 99.0 : 168.75};
        for (int k = 0; k < 4; ++k)
          EXPECT_NEAR(b[11 * 4 + k], want[k], 1e-4) << d.str() << " clip " << clip << " k " << k;
        EXPECT_NEAR(s[22], conf * 0.5, 1e-6);
        EXPECT_NEAR(s[23], conf * s1, 1e-6);
        for (int64_t p = 0; p < 12; ++p) {
          if (p == 11) continue;
          for (int k = 0; k < 4; ++k) EXPECT_EQ(b[(size_t)(p * 4 + k)], 0.f) << "prediction " << p;
          EXPECT_EQ(s[(size_t)(p * 2)], 0.f);
          EXPECT_EQ(s[(size_t)(p * 2 + 1)], 0.f);
        }
      }
    }
    // scale_x_y = 1.05: bias = -0.025, cx = (2 + 0.5 * 1.05 - 0.025) * 200 / 3 = 166.66667 (the
    // terms cancel at sigmoid 0.5); with tx = 2 (sigmoid 0.8807971): cx = (2 + 0.92483696 - 0.025)
    // * 200 / 3 = 193.32246.
    a.clip_bbox = false;
    a.scale_x_y = 1.05f;
    t[0] = 2.f;
    const YoloBoxResult r =
        yolo_box(Tensor::from_vector(x, {1, H, W, A * L}, d), Tensor::from_vector_i64({100, 200}, {1, 2}, d), a);
    const auto b = r.boxes.to_vector();
    const double cx = (2 + conf * 1.05 - 0.025) * 200 / 3;
    EXPECT_NEAR(b[44], cx - 31.25, 1e-4);
    EXPECT_NEAR(b[46], cx + 31.25, 1e-4);
    a.scale_x_y = 1.f;
    t[0] = 0.f;
  }
}

TEST(YoloBox, ConfThreshold) {
  // obj = -5.2 -> conf = 0.0054863 >= 0.005 (decoded); obj = -5.4 -> conf = 0.0044962 < 0.005 (zero);
  // with conf_thresh 0.0054 the first stays, with 0.0055 it goes too.
  const int64_t L = 6;
  std::vector<float> x = {0, 0, 0, 0, -5.2f, 3.f, 0, 0, 0, 0, -5.4f, 3.f};  // 1 x 1 x 2 grid, A = 1, C = 1
  YoloBoxArgs a;
  a.anchors = {16, 16};
  a.class_num = 1;
  a.downsample_ratio = 8;
  for (Device d : devices()) {
    for (float thr : {0.005f, 0.0054f, 0.0055f}) {
      a.conf_thresh = thr;
      const YoloBoxResult r =
          yolo_box(Tensor::from_vector(x, {1, 1, 2, L}, d), Tensor::from_vector_i64({16, 32}, {1, 2}, d), a);
      const auto s = r.scores.to_vector(), b = r.boxes.to_vector();
      const bool first = thr < 0.00548f;
      EXPECT_EQ(s[0] > 0.f, first) << thr;
      EXPECT_EQ(b[2] > 0.f, first) << thr;  // x2 of a 16-pixel box
      EXPECT_EQ(s[1], 0.f);
      for (int k = 4; k < 8; ++k) EXPECT_EQ(b[(size_t)k], 0.f);
      if (first) {
        EXPECT_NEAR(s[0], 1 / (1 + std::exp(5.2)) / (1 + std::exp(-3.0)), 1e-8);
      }
    }
  }
}

TEST(YoloBox, ClipToImage) {
  // A huge box (tw = th = 5: 148 x the anchor) on a 50 x 70 image is clipped to [0, 69] x [0, 49];
  // without clip_bbox it extends past the image on every side.
  std::vector<float> x = {0, 0, 5, 5, 4, 0};
  YoloBoxArgs a;
  a.anchors = {32, 32};
  a.class_num = 1;
  for (Device d : devices()) {
    a.clip_bbox = true;
    auto b = yolo_box(Tensor::from_vector(x, {1, 1, 1, 6}, d), Tensor::from_vector_i64({50, 70}, {1, 2}, d), a)
                 .boxes.to_vector();
    EXPECT_EQ(b, (std::vector<float>{0, 0, 69, 49}));
    a.clip_bbox = false;
    b = yolo_box(Tensor::from_vector(x, {1, 1, 1, 6}, d), Tensor::from_vector_i64({50, 70}, {1, 2}, d), a)
            .boxes.to_vector();
    EXPECT_LT(b[0], -1000.f);
    EXPECT_LT(b[1], -1000.f);
    EXPECT_GT(b[2], 1000.f);
    EXPECT_GT(b[3], 1000.f);
  }
}

TEST(YoloBox, RandomAgainstReferenceAndDevices) {
  // The three YOLOv3 scales of a 416 x 416 input (and odd grids), batch 2, C = 80: double reference,
  // then CPU vs CUDA bit for bit, twice.
  const std::vector<std::vector<int>> anchors = {
      {116, 90, 156, 198, 373, 326}, {30, 61, 62, 45, 59, 119}, {10, 13, 16, 30, 33, 23}};
  struct Scale {
    int64_t H, W;
    int ratio;
  };
  const std::vector<Scale> scales = {{13, 13, 32}, {26, 26, 16}, {52, 52, 8}, {5, 7, 32}};
  const std::vector<int> img = {375, 500, 416, 333};
  const int64_t N = 2, C = 80, A = 3, L = 5 + C;
  for (size_t si = 0; si < scales.size(); ++si) {
    const Scale sc = scales[si];
    YoloBoxArgs a;
    a.anchors = anchors[si % 3];
    a.class_num = (int)C;
    a.downsample_ratio = sc.ratio;
    a.scale_x_y = si == 3 ? 1.05f : 1.f;
    a.clip_bbox = si != 1;
    std::vector<float> x((size_t)(N * sc.H * sc.W * A * L));
    for (size_t i = 0; i < x.size(); ++i) {
      const int64_t k = (int64_t)(i % (size_t)L);
      const double z = nrand(si, i, 7);
      x[i] = (float)(k < 2 ? 1.5 * z : (k < 4 ? 0.7 * z : (k == 4 ? -4 + 3 * z : -2 + 2 * z)));
    }
    const YoloRef ref = ref_yolo_box(x, N, sc.H, sc.W, a, img);
    std::vector<float> first_boxes, first_scores;
    for (Device d : devices()) {
      const Tensor xt = Tensor::from_vector(x, {N, sc.H, sc.W, A * L}, d);
      const Tensor it = Tensor::from_vector_i64({img[0], img[1], img[2], img[3]}, {N, 2}, d);
      const YoloBoxResult r = yolo_box(xt, it, a);
      const auto b = r.boxes.to_vector(), s = r.scores.to_vector();
      int64_t bad = 0, decoded = 0;
      for (size_t p = 0; p < ref.near_thresh.size(); ++p) {
        if (ref.near_thresh[p]) continue;
        decoded += ref.scores[p * C] != 0 || ref.boxes[p * 4 + 2] != 0;
        for (int k = 0; k < 4; ++k) {
          const double w = ref.boxes[p * 4 + k];
          if (!(std::fabs(b[p * 4 + k] - w) <= 2e-4 + 2e-6 * std::fabs(w))) {
            if (bad++ < 5)
              ADD_FAILURE() << d.str() << " scale " << si << " box " << p << "[" << k << "] = " << b[p * 4 + k]
                            << ", want " << w;
          }
        }
        for (int64_t c = 0; c < C; ++c) {
          const double w = ref.scores[(size_t)(p * C + c)];
          if (!(std::fabs(s[(size_t)(p * C + c)] - w) <= 1e-8 + 2e-6 * w)) {
            if (bad++ < 5)
              ADD_FAILURE() << d.str() << " scale " << si << " score " << p << "," << c << " = "
                            << s[(size_t)(p * C + c)] << ", want " << w;
          }
        }
      }
      EXPECT_EQ(bad, 0);
      EXPECT_GT(decoded, (int64_t)ref.near_thresh.size() / 4);  // both branches are exercised
      EXPECT_LT(decoded, (int64_t)ref.near_thresh.size());
      const YoloBoxResult r2 = yolo_box(xt, it, a);
      EXPECT_TRUE(same_bits(r2.boxes.to_vector(), b) && same_bits(r2.scores.to_vector(), s))
          << d.str() << ": run twice";
      if (first_boxes.empty()) {
        first_boxes = b;
        first_scores = s;
      } else {
        EXPECT_TRUE(same_bits(b, first_boxes)) << "boxes: " << d.str() << " differs from the CPU, scale " << si;
        EXPECT_TRUE(same_bits(s, first_scores)) << "scores: " << d.str() << " differs from the CPU, scale " << si;
      }
    }
  }
}

TEST(YoloBox, NonContiguousInput) {
  // A channel slice of a wider tensor (stride 20 instead of 12) gives the same result.
  const int64_t H = 3, W = 4, L = 12;
  std::vector<float> wide((size_t)(H * W * 20)), dense((size_t)(H * W * L));
  for (size_t i = 0; i < wide.size(); ++i) wide[i] = (float)(nrand(9, i, 1) - (i % 20 == 4 || i % 20 == 10 ? 1 : 0));
  for (int64_t q = 0; q < H * W; ++q)
    for (int64_t k = 0; k < L; ++k) dense[(size_t)(q * L + k)] = wide[(size_t)(q * 20 + k)];
  YoloBoxArgs a;
  a.anchors = {10, 20, 30, 40};
  a.class_num = 1;
  for (Device d : devices()) {
    const Tensor img = Tensor::from_vector_i64({90, 120}, {1, 2}, d);
    const auto r1 = yolo_box(Tensor::from_vector(wide, {1, H, W, 20}, d).narrow(3, 0, L), img, a);
    const auto r2 = yolo_box(Tensor::from_vector(dense, {1, H, W, L}, d), img, a);
    EXPECT_TRUE(same_bits(r1.boxes.to_vector(), r2.boxes.to_vector()));
    EXPECT_TRUE(same_bits(r1.scores.to_vector(), r2.scores.to_vector()));
  }
}

TEST(YoloBox, BadInputs) {
  YoloBoxArgs a;
  a.anchors = {10, 13, 16, 30};
  a.class_num = 3;
  const Tensor img = Tensor::from_vector_i64({10, 10}, {1, 2});
  const Tensor x = Tensor::zeros({1, 2, 2, 16});
  EXPECT_NO_THROW(yolo_box(x, img, a));
  try {
    yolo_box(Tensor::zeros({1, 2, 2, 15}), img, a);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("yolo_box"), std::string::npos) << m;
    EXPECT_NE(m.find("A*(5+C)"), std::string::npos) << m;
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
  }
  EXPECT_THROW(yolo_box(Tensor::zeros({2, 2, 16}), img, a), Error);                        // rank
  EXPECT_THROW(yolo_box(x, Tensor::from_vector_i64({10, 10, 10, 10}, {2, 2}), a), Error);  // img N
  EXPECT_THROW(yolo_box(x, Tensor::from_vector({10, 10}, {1, 2}), a), Error);              // img dtype
  EXPECT_THROW(yolo_box(x.to(DType::I64), img, a), Error);                                 // x dtype
  YoloBoxArgs b = a;
  b.anchors = {10, 13, 16};
  EXPECT_THROW(yolo_box(x, img, b), Error);
  b = a;
  b.downsample_ratio = 0;
  EXPECT_THROW(yolo_box(x, img, b), Error);
  if (have_cuda()) {
    EXPECT_THROW(yolo_box(x.to(Device::cuda(0)), img, a), Error);  // devices differ
  }
}

// ======================================================================================= multiclass_nms
namespace {
// 10 x 10 boxes; b1 overlaps b0 with IoU 81 / 119 = 0.68; b2 is far away.
const std::vector<float> kB0 = {0, 0, 10, 10}, kB1 = {1, 1, 11, 11}, kB2 = {20, 20, 30, 30}, kB3 = {40, 0, 50, 10};
std::vector<float> boxes_of(std::initializer_list<std::vector<float>> bs) { return cat(bs); }
}  // namespace

TEST(MultiClassNms, SameClassOverlap) {
  // One class: b0 0.9 kept; b1 0.8 suppressed (IoU 0.68 > 0.45); b2 0.7 kept; b3 0.005 below 0.01.
  const auto boxes = boxes_of({kB0, kB1, kB2, kB3});
  for (Device d : devices()) {
    const NmsOut o = run_nms(boxes, {0.9f, 0.8f, 0.7f, 0.005f}, 1, 4, 1, {}, d);
    expect_same(o, {cat({row(0, 0.9f, kB0), row(0, 0.7f, kB2)}), {0, 2}, {2}}, d.str());
  }
}

TEST(MultiClassNms, DifferentClassesGroupedByClass) {
  // Overlapping b0, b1 in different classes do not suppress each other. Class 0: b0 0.6 (b1 0.1 is
  // suppressed by b0); class 1: b1 0.8 (b0 0.05 suppressed by b1). Rows come grouped by class, so
  // class 0's 0.6 precedes class 1's 0.8.
  const auto boxes = boxes_of({kB0, kB1});
  const std::vector<float> scores = {0.6f, 0.05f, 0.1f, 0.8f};  // [m][c]
  for (Device d : devices()) {
    const NmsOut o = run_nms(boxes, scores, 1, 2, 2, {}, d);
    expect_same(o, {cat({row(0, 0.6f, kB0), row(1, 0.8f, kB1)}), {0, 1}, {2}}, d.str());
  }
}

TEST(MultiClassNms, EqualScoresStableOrder) {
  // Equal scores keep index order: identical boxes 0 and 1 (score 0.5 each) -> box 0 survives; the
  // disjoint boxes 2 and 3 (0.5 too) come after it in index order.
  const auto boxes = boxes_of({kB0, kB0, kB2, kB3});
  for (Device d : devices()) {
    NmsOut o = run_nms(boxes, {0.5f, 0.5f, 0.5f, 0.5f}, 1, 4, 1, {}, d);
    expect_same(o, {cat({row(0, 0.5f, kB0), row(0, 0.5f, kB2), row(0, 0.5f, kB3)}), {0, 2, 3}, {3}}, d.str());
    // Box 1 scored higher instead: it wins over its twin.
    o = run_nms(boxes, {0.5f, 0.6f, 0.5f, 0.5f}, 1, 4, 1, {}, d);
    EXPECT_EQ(o.index, (std::vector<int64_t>{1, 2, 3})) << d.str();
  }
}

TEST(MultiClassNms, KeepTopKCut) {
  // Five disjoint boxes. Class 0: b0 0.9, b1 0.3; class 1: b2 0.8, b3 0.7, b4 0.2. keep_top_k 3 keeps
  // 0.9, 0.8, 0.7 and outputs them grouped by class: (0, 0.9, b0), (1, 0.8, b2), (1, 0.7, b3).
  const std::vector<float> kB4 = {60, 0, 70, 10}, kB5 = {80, 0, 90, 10};
  const auto boxes = boxes_of({kB0, kB2, kB3, kB4, kB5});
  const std::vector<float> scores = {0.9f, 0, 0.3f, 0, 0, 0.8f, 0, 0.7f, 0, 0.2f};
  MultiClassNmsArgs a;
  a.keep_top_k = 3;
  for (Device d : devices()) {
    NmsOut o = run_nms(boxes, scores, 1, 5, 2, a, d);
    expect_same(o, {cat({row(0, 0.9f, kB0), row(1, 0.8f, kB3), row(1, 0.7f, kB4)}), {0, 2, 3}, {3}}, d.str());
    // Ties at the cut: all five at 0.5, class 0 = {b1, b3}, class 1 = {b0, b2, b4}; keep_top_k 3 takes
    // class 0's two, then class 1's first in index order (b0): the stable sort over (class, order).
    const std::vector<float> tie = {0, 0.5f, 0.5f, 0, 0, 0.5f, 0.5f, 0, 0, 0.5f};
    o = run_nms(boxes, tie, 1, 5, 2, a, d);
    expect_same(o, {cat({row(0, 0.5f, kB2), row(0, 0.5f, kB4), row(1, 0.5f, kB0)}), {1, 3, 0}, {3}}, d.str());
    // keep_top_k 0 keeps nothing; -1 keeps all.
    a.keep_top_k = 0;
    EXPECT_EQ(run_nms(boxes, scores, 1, 5, 2, a, d).num, (std::vector<int64_t>{0}));
    a.keep_top_k = -1;
    EXPECT_EQ(run_nms(boxes, scores, 1, 5, 2, a, d).num, (std::vector<int64_t>{5}));
    a.keep_top_k = 3;
  }
}

TEST(MultiClassNms, NmsTopKPerClass) {
  // nms_top_k 2 per class, before NMS: of four disjoint boxes at 0.4, 0.9, 0.4, 0.6 only 0.9 and 0.6
  // are candidates; with equal scores at the cut (0.5, 0.5, 0.5) the lower indices go first.
  const std::vector<float> kB4 = {60, 0, 70, 10};
  const auto boxes = boxes_of({kB0, kB2, kB3, kB4});
  MultiClassNmsArgs a;
  a.nms_top_k = 2;
  for (Device d : devices()) {
    EXPECT_EQ(run_nms(boxes, {0.4f, 0.9f, 0.4f, 0.6f}, 1, 4, 1, a, d).index, (std::vector<int64_t>{1, 3}));
    EXPECT_EQ(run_nms(boxes, {0.2f, 0.5f, 0.5f, 0.5f}, 1, 4, 1, a, d).index, (std::vector<int64_t>{1, 2}));
  }
}

TEST(MultiClassNms, ScoreEqualToThresholdExcluded) {
  // score_threshold 0.01: a score of exactly 0.01f is not a candidate (Paddle: score > threshold); the
  // next float up is.
  const auto boxes = boxes_of({kB0, kB2});
  const float up = std::nextafter(0.01f, 1.f);
  for (Device d : devices()) {
    const NmsOut o = run_nms(boxes, {0.01f, up}, 1, 2, 1, {}, d);
    expect_same(o, {row(0, up, kB2), {1}, {1}}, d.str());
  }
}

TEST(MultiClassNms, IouEqualToThresholdKept) {
  // Height-1 strips b0 = (0, 0, 10, 1), b1 = (1, 0, 20, 1): inter 9, union 10 + 19 - 9 = 20,
  // IoU = 9 / 20 = 0.45f exactly: kept at nms_threshold 0.45 (IoU <= threshold), suppressed at the
  // float below it. With normalized = false (w = x2 - x1 + 1) the strips (0, 0, 9, 0) and (1, 0, 19, 0)
  // give the same 9 / 20. In normalized mode those zero-height strips have area 0 and IoU 0 / 0 =
  // NaN, which suppresses (Paddle's comparison is false for NaN).
  for (Device d : devices()) {
    MultiClassNmsArgs a;
    EXPECT_EQ(run_nms(boxes_of({{0, 0, 10, 1}, {1, 0, 20, 1}}), {0.9f, 0.8f}, 1, 2, 1, a, d).num[0], 2);
    a.nms_threshold = std::nextafter(0.45f, 0.f);
    EXPECT_EQ(run_nms(boxes_of({{0, 0, 10, 1}, {1, 0, 20, 1}}), {0.9f, 0.8f}, 1, 2, 1, a, d).num[0], 1);
    a.nms_threshold = 0.45f;
    a.normalized = false;
    EXPECT_EQ(run_nms(boxes_of({{0, 0, 9, 0}, {1, 0, 19, 0}}), {0.9f, 0.8f}, 1, 2, 1, a, d).num[0], 2);
    a.nms_threshold = std::nextafter(0.45f, 0.f);
    EXPECT_EQ(run_nms(boxes_of({{0, 0, 9, 0}, {1, 0, 19, 0}}), {0.9f, 0.8f}, 1, 2, 1, a, d).num[0], 1);
    a = MultiClassNmsArgs();
    EXPECT_EQ(run_nms(boxes_of({{0, 0, 9, 0}, {1, 0, 19, 0}}), {0.9f, 0.8f}, 1, 2, 1, a, d).num[0], 1);
  }
}

TEST(MultiClassNms, AdaptiveEta) {
  // Height-1 strips of length 100: b0 = [0, 100], b1 = [21, 121] (IoU with b0 79 / 121 = 0.653),
  // b2 = [-25, 75] (IoU 75 / 125 = 0.6 with b0, 54 / 146 = 0.37 with b1); scores 0.9, 0.8, 0.7.
  // nms_threshold 0.7, eta 1: all kept. eta 0.9: after b0 the threshold is 0.63, so b1 (0.653) is
  // suppressed; b2 (0.6) is kept. eta 0.5 is applied once only (0.7 -> 0.35, then not > 0.5).
  const auto boxes = boxes_of({{0, 0, 100, 1}, {21, 0, 121, 1}, {-25, 0, 75, 1}});
  MultiClassNmsArgs a;
  a.nms_threshold = 0.7f;
  for (Device d : devices()) {
    a.nms_eta = 1.f;
    EXPECT_EQ(run_nms(boxes, {0.9f, 0.8f, 0.7f}, 1, 3, 1, a, d).index, (std::vector<int64_t>{0, 1, 2})) << d.str();
    a.nms_eta = 0.9f;
    EXPECT_EQ(run_nms(boxes, {0.9f, 0.8f, 0.7f}, 1, 3, 1, a, d).index, (std::vector<int64_t>{0, 2})) << d.str();
    a.nms_eta = 0.5f;  // 0.35 after b0: b1 and b2 both exceed it
    EXPECT_EQ(run_nms(boxes, {0.9f, 0.8f, 0.7f}, 1, 3, 1, a, d).index, (std::vector<int64_t>{0})) << d.str();
  }
}

TEST(MultiClassNms, BackgroundLabel) {
  // background_label 0 skips class 0 entirely; class 1 lists b2 (0.3) before b0 (0.2).
  const auto boxes = boxes_of({kB0, kB2});
  MultiClassNmsArgs a;
  a.background_label = 0;
  for (Device d : devices()) {
    const NmsOut o = run_nms(boxes, {0.9f, 0.2f, 0.8f, 0.3f}, 1, 2, 2, a, d);
    expect_same(o, {cat({row(1, 0.3f, kB2), row(1, 0.2f, kB0)}), {1, 0}, {2}}, d.str());
  }
}

TEST(MultiClassNms, EmptyInputAndImagesWithoutDetections) {
  for (Device d : devices()) {
    // M = 0: no rows, bbox_num all zero.
    NmsOut o = run_nms({}, {}, 2, 0, 3, {}, d);
    EXPECT_TRUE(o.rows.empty());
    EXPECT_EQ(o.num, (std::vector<int64_t>{0, 0}));
    // Image 0 has one detection, image 1 none, image 2 one: bbox_num 1, 0, 1; index counts n*M + m.
    const auto boxes = boxes_of({kB0, kB2, kB0, kB2, kB0, kB2});
    o = run_nms(boxes, {0.5f, 0.001f, 0.001f, 0.01f, 0.f, 0.7f}, 3, 2, 1, {}, d);
    expect_same(o, {cat({row(0, 0.5f, kB0), row(0, 0.7f, kB2)}), {0, 5}, {1, 0, 1}}, d.str());
    // Nothing anywhere: [0, 6].
    o = run_nms(boxes, std::vector<float>(6, 0.f), 3, 2, 1, {}, d);
    EXPECT_TRUE(o.rows.empty());
    EXPECT_EQ(o.num, (std::vector<int64_t>{0, 0, 0}));
  }
}

TEST(MultiClassNms, BadInputs) {
  const Tensor b = Tensor::zeros({1, 5, 4}), s = Tensor::zeros({1, 5, 3});
  EXPECT_NO_THROW(multiclass_nms(b, s));
  try {
    multiclass_nms(b, Tensor::zeros({1, 6, 3}));
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("multiclass_nms"), std::string::npos) << m;
    EXPECT_NE(m.find("scores"), std::string::npos) << m;
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
  }
  EXPECT_THROW(multiclass_nms(Tensor::zeros({1, 5, 5}), s), Error);
  EXPECT_THROW(multiclass_nms(Tensor::zeros({5, 4}), s), Error);
  EXPECT_THROW(multiclass_nms(b, Tensor::zeros({1, 5, 0})), Error);
  EXPECT_THROW(multiclass_nms(b.to(DType::I64), s), Error);
  MultiClassNmsArgs a;
  a.nms_eta = 0.f;
  EXPECT_THROW(multiclass_nms(b, s, a), Error);
  a = MultiClassNmsArgs();
  a.score_threshold = NAN;
  EXPECT_THROW(multiclass_nms(b, s, a), Error);
  if (have_cuda()) {
    EXPECT_THROW(multiclass_nms(b.to(Device::cuda(0)), s), Error);
  }
}

namespace {
// Random YOLO-like detections: boxes on a 1/4-pixel grid around 300 cluster centres (heavy overlap),
// scores quantised to 1/512 (many exact ties, some exactly at the 0.01 threshold). Per class the
// fraction above the threshold differs: class 3 and 13 have ~1600 candidates (past nms_top_k 1000),
// class 7 ~5300 (past the 4096-key shared-memory sort), the others 20..350.
void random_detections(int64_t N, int64_t M, int64_t C, uint64_t seed, std::vector<float>* boxes,
                       std::vector<float>* scores) {
  boxes->resize((size_t)(N * M * 4));
  scores->resize((size_t)(N * M * C));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t m = 0; m < M; ++m) {
      const uint64_t k = (uint64_t)(seed * 1000003 + n * M + m);
      const int64_t cl = (int64_t)(urand(k, 1) * 300);
      const double cx = std::floor(urand(seed, cl, 2) * 1600) / 4, cy = std::floor(urand(seed, cl, 3) * 1600) / 4;
      const double w = 4 + std::floor(urand(k, 4) * 300) / 4, h = 4 + std::floor(urand(k, 5) * 300) / 4;
      const double jx = std::floor(urand(k, 6) * 40) / 4 - 5, jy = std::floor(urand(k, 7) * 40) / 4 - 5;
      float* b = &(*boxes)[(size_t)((n * M + m) * 4)];
      b[0] = (float)(cx + jx - std::floor(w * 2) / 4);
      b[1] = (float)(cy + jy - std::floor(h * 2) / 4);
      b[2] = b[0] + (float)w;
      b[3] = b[1] + (float)h;
      for (int64_t c = 0; c < C; ++c) {
        const double p = c == 7 ? 0.5 : ((c % 10) == 3 ? 0.15 : 0.002 + 0.03 * (double)(c % 5) / 4);
        const double r = urand(k, 100 + c);
        float& s = (*scores)[(size_t)((n * M + m) * C + c)];
        if (r < p)
          s = (float)((6 + std::floor(urand(k, 1000 + c) * 500)) / 512);
        else
          s = r < p + 0.01 ? 0.01f : (float)(urand(k, 2000 + c) * 0.01);
      }
    }
}

void check_random_nms(int64_t N, int64_t M, int64_t C, const std::vector<MultiClassNmsArgs>& variants) {
  std::vector<float> boxes, scores;
  random_detections(N, M, C, 5, &boxes, &scores);
  for (size_t v = 0; v < variants.size(); ++v) {
    const MultiClassNmsArgs& a = variants[v];
    const NmsOut ref = ref_nms(boxes, scores, N, M, C, a);
    const std::string what =
        "variant " + std::to_string(v) + " (M " + std::to_string(M) + ", C " + std::to_string(C) + ")";
    EXPECT_GT(ref.rows.size(), 0u) << what;
    for (Device d : devices()) {
      const NmsOut o = run_nms(boxes, scores, N, M, C, a, d);
      expect_same(o, ref, what + " on " + d.str());
      expect_same(run_nms(boxes, scores, N, M, C, a, d), o, what + " on " + d.str() + ", second run");
    }
  }
}
}  // namespace

TEST(MultiClassNms, RandomAgainstReferenceYoloV3Size) {
  // M = 3 * (13^2 + 26^2 + 52^2) = 10647, C = 80, batch 2: PaddleDetection's YOLOv3 settings, and
  // keep_top_k -1 (the full per-class lists: hundreds of kept boxes across many 64-box blocks).
  MultiClassNmsArgs yolo;
  MultiClassNmsArgs all = yolo;
  all.keep_top_k = -1;
  check_random_nms(2, 10647, 80, {yolo, all});
}

TEST(MultiClassNms, RandomAgainstReferenceVariants) {
  // Smaller, to cover the other paths: no nms_top_k (class 7 sorts > 4096 keys in global memory),
  // eta < 1 (direct warp scan), the +1 IoU, a background class, a tight keep_top_k with ties.
  MultiClassNmsArgs no_topk;
  no_topk.nms_top_k = -1;
  no_topk.keep_top_k = 300;
  MultiClassNmsArgs eta;
  eta.nms_eta = 0.95f;
  eta.nms_threshold = 0.7f;
  eta.keep_top_k = -1;
  MultiClassNmsArgs plus1;
  plus1.normalized = false;
  plus1.background_label = 3;
  plus1.keep_top_k = 37;
  check_random_nms(1, 10647, 9, {no_topk, eta, plus1});
}

TEST(MultiClassNms, CutsThroughLargeTieGroups) {
  // 3000 disjoint 10 x 10 boxes (no suppression at all), scores on 8 levels: every cut -- nms_top_k
  // 1000 per class, keep_top_k per image -- falls inside a group of hundreds of equal scores, so
  // exactly which boxes survive is decided by the tie order (index within a class; class, then
  // selection order across classes).
  const int64_t N = 2, M = 3000, C = 3;
  std::vector<float> boxes((size_t)(N * M * 4)), scores((size_t)(N * M * C));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t m = 0; m < M; ++m) {
      const float x = (float)(m % 60) * 20, y = (float)(m / 60) * 20;
      float* b = &boxes[(size_t)((n * M + m) * 4)];
      b[0] = x, b[1] = y, b[2] = x + 10, b[3] = y + 10;
      for (int64_t c = 0; c < C; ++c)
        scores[(size_t)((n * M + m) * C + c)] = (float)(int)(urand(n, m, c) * 9) / 16;  // 0 (below) .. 0.5
    }
  for (int64_t top_k : {1000, 2500, -1})
    for (int64_t keep : {-1, 1700, 333, 1}) {
      MultiClassNmsArgs a;
      a.nms_top_k = top_k;
      a.keep_top_k = keep;
      const NmsOut ref = ref_nms(boxes, scores, N, M, C, a);
      for (Device d : devices())
        expect_same(run_nms(boxes, scores, N, M, C, a, d), ref,
                    "nms_top_k " + std::to_string(top_k) + " keep_top_k " + std::to_string(keep) + " on " + d.str());
    }
}

// ============================================================================================ golden
TEST(DetectionGolden, PaddleYoloBoxAndNms) {
  const auto path = engine::testing::golden_dir() / "detection" / "yolo_box_nms.json";
  std::ifstream f(path);
  ASSERT_TRUE(f.good()) << "missing " << path
                        << "; regenerate with 'python3 tools/gen_yolo_box_nms_golden.py > "
                           "tests/golden/detection/yolo_box_nms.json' (needs paddlepaddle)";
  const nlohmann::json doc = nlohmann::json::parse(f);
  auto floats = [](const nlohmann::json& j) {
    std::vector<float> v;
    for (const auto& e : j) v.push_back((float)e.get<double>());
    return v;
  };
  ASSERT_GE(doc["cases"].size(), 2u);
  for (const auto& cs : doc["cases"]) {
    const std::string name = cs["name"];
    const int64_t N = cs["N"], C = cs["class_num"];
    std::vector<int64_t> img;
    for (const auto& hw : cs["img_size"]) img.insert(img.end(), {hw[0].get<int64_t>(), hw[1].get<int64_t>()});
    // NMS input: Paddle's yolo_box outputs concatenated over the scales, per image.
    std::vector<std::vector<float>> nb((size_t)N), ns((size_t)N);
    int64_t M = 0;
    for (Device d : devices()) {
      for (const auto& s : cs["scales"]) {
        YoloBoxArgs a;
        for (const auto& v : s["anchors"]) a.anchors.push_back(v.get<int>());
        a.class_num = (int)C;
        a.conf_thresh = cs["conf_thresh"].get<float>();
        a.downsample_ratio = s["downsample_ratio"];
        a.clip_bbox = cs["clip_bbox"];
        a.scale_x_y = cs["scale_x_y"].get<float>();
        const int64_t H = s["H"], W = s["W"], A = (int64_t)a.anchors.size() / 2, P = A * H * W;
        const YoloBoxResult r = yolo_box(Tensor::from_vector(floats(s["x"]), {N, H, W, A * (5 + C)}, d),
                                         Tensor::from_vector_i64(img, {N, 2}, d), a);
        const auto wb = floats(s["boxes"]), wsc = floats(s["scores"]);
        const auto gb = r.boxes.to_vector(), gs = r.scores.to_vector();
        ASSERT_EQ(gb.size(), wb.size());
        ASSERT_EQ(gs.size(), wsc.size());
        for (size_t i = 0; i < wb.size(); ++i)
          ASSERT_NEAR(gb[i], wb[i], 2e-4 + 2e-6 * std::fabs(wb[i]))
              << name << " stride " << s["downsample_ratio"] << " box value " << i << " on " << d.str();
        for (size_t i = 0; i < wsc.size(); ++i)
          ASSERT_NEAR(gs[i], wsc[i], 1e-8 + 2e-6 * std::fabs(wsc[i])) << name << " score " << i << " on " << d.str();
        if (d.is_cpu()) {
          for (int64_t n = 0; n < N; ++n) {
            nb[(size_t)n].insert(nb[(size_t)n].end(), wb.begin() + n * P * 4, wb.begin() + (n + 1) * P * 4);
            ns[(size_t)n].insert(ns[(size_t)n].end(), wsc.begin() + n * P * C, wsc.begin() + (n + 1) * P * C);
          }
          M += P;
        }
      }
    }
    std::vector<float> boxes, scores;
    for (int64_t n = 0; n < N; ++n) {
      boxes.insert(boxes.end(), nb[(size_t)n].begin(), nb[(size_t)n].end());
      scores.insert(scores.end(), ns[(size_t)n].begin(), ns[(size_t)n].end());
    }
    for (const auto& e : cs["nms"]) {
      MultiClassNmsArgs a;
      a.score_threshold = e["score_threshold"].get<float>();
      a.nms_top_k = e["nms_top_k"];
      a.keep_top_k = e["keep_top_k"];
      a.nms_threshold = e["nms_threshold"].get<float>();
      a.normalized = e["normalized"];
      a.nms_eta = e["nms_eta"].get<float>();
      a.background_label = e["background_label"];
      NmsOut want;
      want.num = e["bbox_num"].get<std::vector<int64_t>>();
      want.index = e["index"].get<std::vector<int64_t>>();
      const auto labels = e["labels"].get<std::vector<int64_t>>();
      ASSERT_EQ(labels.size(), want.index.size());
      for (size_t r = 0; r < labels.size(); ++r) {
        const int64_t g = want.index[r], n = g / M, m = g % M;
        const float* b = &boxes[(size_t)(g * 4)];
        want.rows.insert(want.rows.end(),
                         {(float)labels[r], scores[(size_t)((n * M + m) * C + labels[r])], b[0], b[1], b[2], b[3]});
      }
      for (Device d : devices()) {
        const std::string what = name + " nms (keep_top_k " + std::to_string(a.keep_top_k) + ", nms_top_k " +
                                 std::to_string(a.nms_top_k) + ", eta " + std::to_string(a.nms_eta) + ") on " + d.str();
        expect_same(run_nms(boxes, scores, N, M, C, a, d), want, what);
      }
    }
  }
}
