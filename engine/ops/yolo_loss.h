// YOLOv3 loss as one op (f32, CPU and CUDA): target assignment, the four loss terms and their
// gradient, following PaddleDetection's dygraph YOLOv3Loss (ppdet/modeling/losses/yolo_loss.py)
// with the targets of its Gt2YoloTarget (ppdet/data/transform/batch_operators.py) computed inside
// the op. Kernels: kernels/cpu/yolo_loss_cpu.*, kernels/cuda/yolo_loss.cu; shared per-prediction
// math kernels/yolo_loss_math.h.
//
// Inputs: heads[s] NHWC [N, gh_s, gw_s, na_s * (5 + C)] (channel a * (5 + C) + k: 0 tx, 1 ty, 2 tw,
//   3 th, 4 objectness, 5.. class logits), ordered as anchor_masks / downsample (stride 32 first);
//   gt_box f32 [N, B, 4] normalized (cx, cy, w, h); gt_class i32 or i64 [N, B]; gt_score f32 [N, B]
//   (1, a mixup weight, or 0 for padding). The network input is W_in = downsample_s * gw_s and
//   H_in = downsample_s * gh_s, which must agree over the scales (PaddleDetection reads it from the
//   batch's image shape; the heads are int(input / stride)).
// Assignment (Gt2YoloTarget, iou_thresh = 1, i.e. its optional extra-anchor branch is not offered):
//   a gt with w <= 0, h <= 0 or score <= 0 is skipped. Its best anchor is the argmax over all anchors
//   of the shape IoU of (w, h) and (aw / W_in, ah / H_in) (double, strict >, ties keep the lower
//   index); only the scale whose mask holds it gets the target, at slot = position in that mask and
//   cell gi = int(cx * gw), gj = int(cy * gh) (clamped to the grid: cx = 1.0 raises IndexError in
//   the Python code). tx = cx * gw - gi, ty = cy * gh - gj, tw = ln(w * W_in / aw), th = ln(h * H_in
//   / ah), tscale = 2 - w * h, tobj = score. Gts are processed in order and a later gt on the same
//   (scale, slot, cell) overwrites tx..tobj. Class targets: Gt2YoloTarget writes target[6 + cls] = 1
//   per gt, so colliding gts give the union of their one-hots (values stay 1, they are not summed;
//   the reference fact sheet says "accumulate"). The shape IoU is computed in double; numpy mixes
//   float32 gt sizes with float64 anchors there, which can only matter for exact ties.
// Terms per scale (x̂ = scale_x_y * sigmoid(tx) - (scale_x_y - 1) / 2):
//   loss_xy  = sum tscale * tobj * [BCE(x̂, tx) + BCE(ŷ, ty)], F.binary_cross_entropy on the float
//              probability with its logs clamped at -100 (as Paddle); its gradient is Paddle's chain
//              (p - t) / max(p(1-p), 1e-12) * p(1-p). scale_x_y != 1 (|s - 1| >= 1e-10): L1 |x̂ - t|.
//   loss_wh  = sum tscale * tobj * (|tw_pred - tw| + |th_pred - th|)  (d|v|/dv = sign, sign(0) = 0)
//   loss_obj = sum BCEWithLogits(obj, pos) * tobj + BCEWithLogits(obj, 0) * (1 - pos) * iou_mask,
//              pos = tobj > 0; iou_mask = (max IoU of the decoded box with the image's gts <=
//              ignore_thresh). Decoded box: cx = (i + x̂) / gw, w = exp(tw_pred) * aw / (ds * gw),
//              IoU as ppdet bbox_utils.iou_similarity (union + 1e-9, every gt row of the image,
//              padded rows give 0). No gradient through the mask; positives are never ignored.
//   loss_cls = sum tobj * sum_c BCEWithLogits(cls_c, t_c), label_smooth: t = t > 0 ? 1 - d : d with
//              d = min(1 / C, 1 / 40).
//   Each term is summed per image, averaged over the batch, and summed over the scales; loss is the
//   sum of the four. Only `loss` is differentiable (w.r.t. the heads); the other four are for logs.
// exp, log and sigmoid are the engine's polynomial versions (kernels/shared_math.h, loss_math.h; a
// few ulp from libm), identical on both devices. Checked against PaddleDetection itself by
// tests/golden/yolo_loss/yolo_loss.json (tools/gen_yolo_loss_golden.py).
// Deterministic on both devices (fixed-order double reductions, no float atomics).
// Errors (engine::Error, one line): wrong dtypes or shapes, heads on different devices, more than
//   4 scales or 16 anchors, B > 2048, inconsistent input sizes, class ids of valid gts outside [0, C).
#pragma once
#include <array>
#include <vector>

#include "engine/tensor.h"

namespace engine {

struct YoloLossArgs {
  std::vector<std::array<float, 2>> anchors = {{10, 13},  {16, 30},  {33, 23},   {30, 61},  {62, 45},
                                               {59, 119}, {116, 90}, {156, 198}, {373, 326}};
  std::vector<std::vector<int>> anchor_masks = {{6, 7, 8}, {3, 4, 5}, {0, 1, 2}};
  std::vector<int> downsample = {32, 16, 8};
  int num_classes = 80;
  float ignore_thresh = 0.7f;
  bool label_smooth = false;
  float scale_x_y = 1.f;
};

struct YoloLossOutput {
  Tensor loss_xy, loss_wh, loss_obj, loss_cls;  // scalars {}, no gradient
  Tensor loss;                                  // scalar {}, differentiable w.r.t. the heads
};

YoloLossOutput yolov3_loss(const std::vector<Tensor>& heads, const Tensor& gt_box, const Tensor& gt_class,
                           const Tensor& gt_score, const YoloLossArgs& args = {});

}  // namespace engine
