// YOLOv3 post-processing: box decode (yolo_box) and multiclass NMS, with the semantics of Paddle's
// CPU kernels as PaddleDetection uses them (ppdet/modeling/layers.py YOLOBox + MultiClassNMS; the
// YOLOv3 configs: conf_thresh 0.005, score_threshold 0.01, nms_top_k 1000, nms_threshold 0.45,
// keep_top_k 100, normalized, background_label -1). CPU and CUDA, bit-identical; inference only: no
// gradient is recorded (the outputs never require grad). Kernels: kernels/cpu/detection_cpu.cpp,
// kernels/cuda/detection.cu, shared math kernels/detection_math.h; tests/test_detection_ops.cpp.
//
// yolo_box(x, img_size, args) -- one head scale. [paddle/phi/kernels/cpu/yolo_box_kernel.cc,
// paddle/phi/kernels/funcs/yolo_box_util.h]
//   x: f32 [N, H, W, A*(5+C)] (the engine's channels-last head output; channel a*(5+C)+k, k = 0 tx,
//      1 ty, 2 tw, 3 th, 4 objectness, 5.. class logits); img_size: i32 or i64 [N, 2] = original
//      (h, w) of each image (PaddleDetection passes int32(im_shape / scale_factor)), same device.
//   Predictions are ordered ANCHOR-MAJOR, p = a*H*W + h*W + w, as Paddle's kernel (it reads NCHW
//   input and writes box (i*box_num + j*H*W + k*W + l)), so outputs compare one to one with
//   PaddleDetection's. For prediction p of image n:
//     conf = sigmoid(obj); if conf < conf_thresh: box = 0 and scores = 0 (Paddle leaves them zero).
//     cx = (w + sigmoid(tx)*scale_x_y + bias) * img_w / W,  cy likewise with h, img_h, H,
//       bias = -0.5*(scale_x_y - 1);
//     bw = exp(tw) * anchor_w * img_w / input_w, input_w = downsample_ratio * W (Paddle's input_size),
//       bh likewise;
//     box = (cx - bw/2, cy - bh/2, cx + bw/2, cy + bh/2), with clip_bbox: x1, y1 = max(., 0),
//       x2 = min(., img_w - 1), y2 = min(., img_h - 1);
//     scores[c] = conf * sigmoid(cls_c).
//   Returns boxes f32 [N, A*H*W, 4] and scores f32 [N, A*H*W, C]. PaddleDetection concatenates the
//   three scales along dim 1 (scales in head order, stride 32 first) before NMS: concat(.., 1).
//   sigmoid/exp are the engine's (kernels/shared_math.h, ~1 ulp from libm), so values can differ from
//   Paddle's in the last bits; no check of img_size values (0 or negative sizes clip to -1 like Paddle).
//   Scope: YOLOv3 heads only. PP-YOLO's iou_aware heads (A*(6+C) channels, IoU logits first) are
//   another layout; the channel check refuses them with the expected count.
//
// multiclass_nms(boxes, scores, args) [paddle/phi/kernels/cpu/multiclass_nms3_kernel.cc: NMSFast,
// GetMaxScoreIndex, JaccardOverlap, MultiClassNMS, MultiClassOutput]
//   boxes: f32 [N, M, 4] (x1, y1, x2, y2), scores: f32 [N, M, C] (Paddle takes scores as [N, C, M];
//   this op takes the yolo_box layout), same device. Per image, per class c != background_label:
//     1. candidates: score > score_threshold (strictly; NaN never), stably sorted by score
//        descending (ties: lower box index first), the first nms_top_k kept (< 0: all);
//     2. greedy: walking the candidates in that order, one is kept when its IoU with EVERY kept box
//        of the class is <= the adaptive threshold (IoU == threshold is kept; a NaN IoU suppresses);
//        the threshold starts at nms_threshold and, after each kept box, is multiplied by nms_eta
//        when nms_eta < 1 and it is still > 0.5;
//        IoU = inter / (area1 + area2 - inter) with w = x2 - x1 (normalized) or x2 - x1 + 1, area 0
//        for an inverted box, 0 for disjoint boxes (Paddle's JaccardOverlap, float, in that order);
//     3. keep_top_k (< 0: no limit): when the image has more detections, the list (class ascending,
//        selection order within a class) is stably sorted by score descending and cut to keep_top_k
//        -- at equal scores the lower class, then the earlier-selected box, wins;
//     4. output rows [label, score, x1, y1, x2, y2] GROUPED BY CLASS ascending, within a class in
//        selection order (score descending, ties by box index) -- Paddle's std::map iteration order,
//        not a global score order.
//   Returns out f32 [R, 6] (all images' rows, image after image), bbox_num i64 [N] (rows per image;
//   0 for an image without detections) and index i64 [R] = n*M + m (Paddle's Index output). With no
//   detection at all out is [0, 6] (Paddle returns the same when Index is requested, as dygraph does;
//   PaddleDetection's BBoxPostProcess then adds one dummy row [-1, 0, 0, 0, 0, 0] for such a batch;
//   callers that mirror it do so themselves, this op returns Paddle's kernel output).
//   Paddle's GPU multiclass_nms3 is a different algorithm (radix sort of shifted scores); this op
//   follows the CPU kernel, which is the reference semantics, on both devices.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/tensor.h"

namespace engine {

struct YoloBoxArgs {
  std::vector<int> anchors;  // (w, h) pairs of this scale, pixels of the network input
  int class_num = 80;
  float conf_thresh = 0.005f;
  int downsample_ratio = 32;
  bool clip_bbox = true;
  float scale_x_y = 1.f;
};

struct YoloBoxResult {
  Tensor boxes;   // f32 [N, A*H*W, 4]
  Tensor scores;  // f32 [N, A*H*W, C]
};

YoloBoxResult yolo_box(const Tensor& x, const Tensor& img_size, const YoloBoxArgs& args);

struct MultiClassNmsArgs {
  float score_threshold = 0.01f;
  int64_t nms_top_k = 1000;
  float nms_threshold = 0.45f;
  float nms_eta = 1.f;
  int64_t keep_top_k = 100;
  int64_t background_label = -1;
  bool normalized = true;
};

struct MultiClassNmsResult {
  Tensor out;       // f32 [R, 6]: label, score, x1, y1, x2, y2
  Tensor bbox_num;  // i64 [N]
  Tensor index;     // i64 [R]: n*M + m
};

MultiClassNmsResult multiclass_nms(const Tensor& boxes, const Tensor& scores, const MultiClassNmsArgs& args = {});

}  // namespace engine
