// CPU kernels of the detection post-processing family (kernels/cpu/detection_cpu.cpp); semantics in
// engine/ops/detection.h.
#pragma once
#include <cstdint>
#include <vector>

namespace engine::kernels {

// Geometry of one yolo_box call (one head scale).
struct YoloBoxGeom {
  int64_t N = 0;                 // images
  int H = 0, W = 0;              // grid
  int A = 0;                     // anchors of this scale
  int C = 0;                     // classes
  int input_h = 0, input_w = 0;  // downsample_ratio * H, downsample_ratio * W
  float conf_thresh = 0.f, scale = 1.f, bias = 0.f;
  bool clip = true;
};

// x: f32 [N, H, W, A*(5+C)] contiguous; img_hw: i32 [N, 2] (h, w); anchors: f32 [2A] (w, h pairs).
// boxes: f32 [N, A*H*W, 4], scores: f32 [N, A*H*W, C], every element written (prediction p = a*H*W +
// h*W + w).
void yolo_box_cpu(const float* x, const int32_t* img_hw, const float* anchors, const YoloBoxGeom& g, float* boxes,
                  float* scores);

struct NmsParams {
  float score_threshold = 0.01f;
  int64_t nms_top_k = 1000;  // < 0: no limit
  float nms_threshold = 0.45f;
  float nms_eta = 1.f;
  int64_t keep_top_k = 100;  // < 0: no limit
  int64_t background_label = -1;
  bool normalized = true;
};

// boxes: f32 [N, M, 4], scores: f32 [N, M, C], contiguous. Appends the detection rows (label, score,
// x1, y1, x2, y2) of every image to rows, their n*M + m to index, and sets bbox_num[n] (size N).
void multiclass_nms_cpu(const float* boxes, const float* scores, int64_t N, int64_t M, int64_t C, const NmsParams& p,
                        std::vector<float>* rows, std::vector<int64_t>* index, std::vector<int64_t>* bbox_num);

}  // namespace engine::kernels
