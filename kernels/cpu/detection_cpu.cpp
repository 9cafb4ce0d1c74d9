// Detection post-processing on the CPU: YOLOv3 box decode (Paddle's yolo_box) and multiclass NMS
// (Paddle's multiclass_nms3 CPU kernel); semantics and Paddle source paths in engine/ops/detection.h,
// shared per-element math in kernels/detection_math.h (the CUDA kernels use the same functions, so
// the two devices agree bit for bit).
//
// yolo_box_cpu: layout x [N, H, W, A*(5+C)] (channels-last head output), one OpenMP task per image
//   row (n, h); for each cell and anchor one box and C scores (p = a*H*W + h*W + w, Paddle's order).
// multiclass_nms_cpu: one OpenMP task per (image, group of 16 classes): a pass over the image's
//   score rows gathers the candidates (score > threshold) of those classes in index order as 64-bit
//   keys (score descending, index ascending), keeps the nms_top_k smallest keys (nth_element, then a
//   sort: the same list as Paddle's stable sort + resize), and runs Paddle's greedy NMS on them
//   (candidate kept when its IoU with every kept box is <= the adaptive threshold). keep_top_k per
//   image is applied afterwards on the (class, selection order) list, as Paddle does.
// Tested by tests/test_detection_ops.cpp; benchmarked by bench_kernels --filter detection.
#include "kernels/cpu/detection_cpu.h"

#include <omp.h>

#include <algorithm>

#include "kernels/detection_math.h"

namespace engine::kernels {

void yolo_box_cpu(const float* x, const int32_t* img_hw, const float* anchors, const YoloBoxGeom& g, float* boxes,
                  float* scores) {
  const int64_t HW = (int64_t)g.H * g.W, P = g.A * HW, L = 5 + (int64_t)g.C, ch = g.A * L;
  const int64_t rows = g.N * g.H;
  const int C = g.C;
#pragma omp parallel for schedule(static) if (rows * g.W * ch >= 65536)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t n = r / g.H;
    const int row = (int)(r % g.H);
    const int img_h = img_hw[2 * n], img_w = img_hw[2 * n + 1];
    for (int col = 0; col < g.W; ++col) {
      const float* px = x + (r * g.W + col) * ch;
      for (int a = 0; a < g.A; ++a) {
        const float* t = px + a * L;
        const int64_t p = n * P + a * HW + (int64_t)row * g.W + col;
        float* b = boxes + p * 4;
        float* s = scores + p * g.C;
        const float conf = sigmoid_f(t[4]);
        if (conf < g.conf_thresh) {
          std::fill(b, b + 4, 0.f);
          std::fill(s, s + g.C, 0.f);
          continue;
        }
        yolo_decode_box(t[0], t[1], t[2], t[3], col, row, anchors[2 * a], anchors[2 * a + 1], img_h, img_w, g.H, g.W,
                        g.input_h, g.input_w, g.scale, g.bias, g.clip, b);
        const float* tc = t + 5;
#pragma omp simd
        for (int c = 0; c < C; ++c) s[c] = mul_rn(conf, sigmoid_f(tc[c]));
      }
    }
  }
}

void multiclass_nms_cpu(const float* boxes, const float* scores, int64_t N, int64_t M, int64_t C, const NmsParams& p,
                        std::vector<float>* rows, std::vector<int64_t>* index, std::vector<int64_t>* bbox_num) {
  constexpr int64_t kGroup = 16;  // classes per task: one 64-byte line of each score row
  const int64_t ngroups = (C + kGroup - 1) / kGroup;
  std::vector<std::vector<uint32_t>> kept((size_t)(N * C));  // per (n, c): box indices in selection order
#pragma omp parallel for schedule(dynamic, 1) if (N * ngroups > 1 && N * M * C >= 65536)
  for (int64_t task = 0; task < N * ngroups; ++task) {
    const int64_t n = task / ngroups, c0 = (task % ngroups) * kGroup, c1 = std::min(C, c0 + kGroup);
    std::vector<std::vector<uint64_t>> cand((size_t)(c1 - c0));
    std::vector<float> kx1, ky1, kx2, ky2;  // the kept boxes of the class, one array per coordinate
    for (int64_t m = 0; m < M; ++m) {
      const float* s = scores + (n * M + m) * C;
      for (int64_t c = c0; c < c1; ++c)
        if (c != p.background_label && s[c] > p.score_threshold)
          cand[(size_t)(c - c0)].push_back(nms_sort_key(s[c], (uint32_t)m));
    }
    const float* nb = boxes + n * M * 4;
    for (int64_t c = c0; c < c1; ++c) {
      std::vector<uint64_t>& k = cand[(size_t)(c - c0)];
      if (p.nms_top_k >= 0 && (int64_t)k.size() > p.nms_top_k) {
        std::nth_element(k.begin(), k.begin() + p.nms_top_k, k.end());
        k.resize((size_t)p.nms_top_k);
      }
      std::sort(k.begin(), k.end());
      std::vector<uint32_t>& out = kept[(size_t)(n * C + c)];
      kx1.clear(), ky1.clear(), kx2.clear(), ky2.clear();
      float thr = p.nms_threshold;
      const bool norm = p.normalized;
      for (uint64_t key : k) {
        const uint32_t m = (uint32_t)key;
        const NmsBox b = nms_load_box(nb + (int64_t)m * 4);
        // Paddle stops at the first kept box that suppresses; only whether one does matters, so the
        // kept boxes are tested 64 at a time in SIMD lanes (the same float operations per pair).
        bool keep = true;
        const float *x1 = kx1.data(), *y1 = ky1.data(), *x2 = kx2.data(), *y2 = ky2.data();
        for (size_t j0 = 0; j0 < out.size() && keep; j0 += 64) {
          const size_t j1 = std::min(out.size(), j0 + 64);
          int sup = 0;
#pragma omp simd reduction(| : sup)
          for (size_t j = j0; j < j1; ++j)
            sup |= nms_suppresses(nms_iou(b, NmsBox{x1[j], y1[j], x2[j], y2[j]}, norm), thr) ? 1 : 0;
          keep = sup == 0;
        }
        if (keep) {
          out.push_back(m);
          kx1.push_back(b.x1), ky1.push_back(b.y1), kx2.push_back(b.x2), ky2.push_back(b.y2);
          if (p.nms_eta < 1.f && thr > 0.5f) thr *= p.nms_eta;
        }
      }
    }
  }
  // keep_top_k per image over the (class ascending, selection order) list: the first keep_top_k of
  // a stable sort by score descending are kept, and the output keeps the list order.
  bbox_num->assign((size_t)N, 0);
  std::vector<uint64_t> order;
  std::vector<char> take;
  for (int64_t n = 0; n < N; ++n) {
    int64_t D = 0;
    for (int64_t c = 0; c < C; ++c) D += (int64_t)kept[(size_t)(n * C + c)].size();
    take.assign((size_t)D, 1);
    if (p.keep_top_k >= 0 && D > p.keep_top_k) {
      order.clear();
      int64_t f = 0;
      for (int64_t c = 0; c < C; ++c)
        for (uint32_t m : kept[(size_t)(n * C + c)])
          order.push_back(nms_sort_key(scores[(n * M + m) * C + c], (uint32_t)f++));
      std::nth_element(order.begin(), order.begin() + p.keep_top_k, order.end());
      take.assign((size_t)D, 0);
      for (int64_t i = 0; i < p.keep_top_k; ++i) take[(uint32_t)order[(size_t)i]] = 1;
    }
    int64_t f = 0, R = 0;
    for (int64_t c = 0; c < C; ++c)
      for (uint32_t m : kept[(size_t)(n * C + c)]) {
        if (take[(size_t)f++]) {
          const float* b = boxes + (n * M + m) * 4;
          rows->insert(rows->end(), {(float)c, scores[(n * M + m) * C + c], b[0], b[1], b[2], b[3]});
          index->push_back(n * M + m);
          ++R;
        }
      }
    (*bbox_num)[(size_t)n] = R;
  }
}

}  // namespace engine::kernels
