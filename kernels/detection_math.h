// Per-element math of the detection post-processing family (yolo_box decode, multiclass NMS), shared
// by the CPU kernels (kernels/cpu/detection_cpu.cpp) and the CUDA kernels (kernels/cuda/detection.cu)
// so that both devices evaluate the same rounding sequence and give bit-identical boxes, scores and
// NMS decisions.
//
// Every float operation that nvcc could fuse into an FMA (a product followed by an add) goes through
// add_rn / sub_rn / mul_rn / div_rn (kernels/shared_math.h). The IoU comparison decides which boxes
// survive NMS, so one contracted a1 + a2 - inter would change results.
//
// The expressions follow Paddle's CPU kernels operation by operation (left to right, in float):
//   paddle/phi/kernels/funcs/yolo_box_util.h           GetYoloBox, CalcDetectionBox, CalcLabelScore
//   paddle/phi/kernels/cpu/multiclass_nms3_kernel.cc   BBoxArea, JaccardOverlap
// except sigmoid/exp, which are the engine's own (kernels/shared_math.h: ~1 ulp from libm; Paddle's
// sigmoid rounds 1.0 / (1.0 + expf(-x)) from double), so decoded values may differ from Paddle's in
// the last bits.
#pragma once
#include <cstdint>

#include "kernels/shared_math.h"

namespace engine::kernels {

// std::max / std::min exactly (first argument on ties and on NaN), unlike fmaxf / fminf.
ENGINE_HD float std_max_f(float a, float b) { return a < b ? b : a; }
ENGINE_HD float std_min_f(float a, float b) { return b < a ? b : a; }

// ------------------------------------------------------------------------------------ yolo_box
// One prediction of one scale. t = (tx, ty, tw, th) logits; (col, row) the cell; anchor in pixels of
// the network input; img_h/img_w the original image size; grid_h/grid_w = H/W of the head;
// input_h/input_w = downsample_ratio * grid size (Paddle's input_size); bias = -0.5 * (scale - 1).
// Writes x1, y1, x2, y2 (original-image pixels), clipped to [0, img_w - 1] x [0, img_h - 1] if clip.
ENGINE_HD void yolo_decode_box(float tx, float ty, float tw, float th, int col, int row, float anchor_w, float anchor_h,
                               int img_h, int img_w, int grid_h, int grid_w, int input_h, int input_w, float scale,
                               float bias, bool clip, float* out) {
  const float fw = (float)img_w, fh = (float)img_h;
  // box[0] = (col + sigmoid(tx) * scale + bias) * img_w / grid_w   (left to right)
  const float cx = div_rn(mul_rn(add_rn(add_rn((float)col, mul_rn(sigmoid_f(tx), scale)), bias), fw), (float)grid_w);
  const float cy = div_rn(mul_rn(add_rn(add_rn((float)row, mul_rn(sigmoid_f(ty), scale)), bias), fh), (float)grid_h);
  // box[2] = exp(tw) * anchor_w * img_w / input_w
  const float bw = div_rn(mul_rn(mul_rn(exp_f(tw), anchor_w), fw), (float)input_w);
  const float bh = div_rn(mul_rn(mul_rn(exp_f(th), anchor_h), fh), (float)input_h);
  float x1 = sub_rn(cx, div_rn(bw, 2.f)), y1 = sub_rn(cy, div_rn(bh, 2.f));
  float x2 = add_rn(cx, div_rn(bw, 2.f)), y2 = add_rn(cy, div_rn(bh, 2.f));
  if (clip) {
    x1 = x1 > 0.f ? x1 : 0.f;
    y1 = y1 > 0.f ? y1 : 0.f;
    const float xm = (float)(img_w - 1), ym = (float)(img_h - 1);
    x2 = x2 < xm ? x2 : xm;
    y2 = y2 < ym ? y2 : ym;
  }
  out[0] = x1;
  out[1] = y1;
  out[2] = x2;
  out[3] = y2;
}

// ------------------------------------------------------------------------------------ NMS
// Paddle's BBoxArea: 0 for an inverted box, else w * h (normalized) or (w + 1) * (h + 1).
ENGINE_HD float nms_box_area(float x1, float y1, float x2, float y2, bool normalized) {
  if (x2 < x1 || y2 < y1) return 0.f;
  const float w = sub_rn(x2, x1), h = sub_rn(y2, y1);
  return normalized ? mul_rn(w, h) : mul_rn(add_rn(w, 1.f), add_rn(h, 1.f));
}

// One box (x1, y1, x2, y2), passed by value so that it stays in registers on the GPU.
struct NmsBox {
  float x1, y1, x2, y2;
};
ENGINE_HD NmsBox nms_load_box(const float* p) { return {p[0], p[1], p[2], p[3]}; }

// Paddle's JaccardOverlap(box1 = the candidate being tested, box2 = an already kept box). The
// argument order matters only for NaN coordinates (std::max semantics); both backends use this one.
ENGINE_HD float nms_iou(NmsBox b1, NmsBox b2, bool normalized) {
  if (b2.x1 > b1.x2 || b2.x2 < b1.x1 || b2.y1 > b1.y2 || b2.y2 < b1.y1) return 0.f;
  const float ix1 = std_max_f(b1.x1, b2.x1), iy1 = std_max_f(b1.y1, b2.y1);
  const float ix2 = std_min_f(b1.x2, b2.x2), iy2 = std_min_f(b1.y2, b2.y2);
  const float norm = normalized ? 0.f : 1.f;
  const float iw = add_rn(sub_rn(ix2, ix1), norm), ih = add_rn(sub_rn(iy2, iy1), norm);
  const float inter = mul_rn(iw, ih);
  const float a1 = nms_box_area(b1.x1, b1.y1, b1.x2, b1.y2, normalized);
  const float a2 = nms_box_area(b2.x1, b2.y1, b2.x2, b2.y2, normalized);
  return div_rn(inter, sub_rn(add_rn(a1, a2), inter));
}

// Paddle keeps a candidate when overlap <= threshold with every kept box; NaN overlaps suppress.
ENGINE_HD bool nms_suppresses(float iou, float thr) { return !(iou <= thr); }

// Order-preserving 32-bit key of a score (larger score -> larger key; -0 and +0 equal). NaN scores
// never become candidates (score > threshold is false), so they need no place in the order.
ENGINE_HD uint32_t nms_score_key(float s) {
  const uint32_t u = f2u(s == 0.f ? 0.f : s);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// Sort key of candidate m: ascending order of the key = score descending, then index ascending
// (what Paddle's std::stable_sort by score gives for candidates listed in index order).
ENGINE_HD uint64_t nms_sort_key(float s, uint32_t m) { return ((uint64_t)(~nms_score_key(s)) << 32) | m; }

}  // namespace engine::kernels
