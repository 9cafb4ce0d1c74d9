// Per-prediction math of the YOLOv3 loss (engine/ops/yolo_loss.h has the semantics), shared by
// the CPU kernel (kernels/cpu/yolo_loss_cpu.cpp) and the CUDA kernels (kernels/cuda/yolo_loss.cu)
// so both devices evaluate the same expressions with the same polynomial exp/log (shared_math.h,
// loss_math.h) and the same rounding sequence: every product that feeds an add goes through
// mul_rn / add_rn / sub_rn (shared_math.h), which nvcc does not fuse into an FMA.
//
// Layout: head s is NHWC [N, gh_s, gw_s, na_s * (5 + C)]; prediction (j, i, a) of image n has its
// 5 + C channels contiguous at ((n * gh + j) * gw + i) * na * (5 + C) + a * (5 + C). Predictions of
// one image are numbered over all scales: p = off[s] + (j * gw_s + i) * na_s + a. The per-image map
// int32 map[n * P + p] holds the owning gt (>= 0, the last gt assigned to that prediction), -1 for
// a negative, -2 for a negative whose decoded box overlaps a gt by IoU > ignore_thresh (set by the
// forward, read by the backward). gt_pred[n * B + b] is the prediction gt b was assigned to, or -1.
#pragma once
#include <cmath>
#include <cstdint>

#include "kernels/loss_math.h"

namespace engine::kernels {

constexpr int kYoloMaxScales = 4;
constexpr int kYoloMaxAnchors = 16;

// Geometry and options, passed by value to every kernel.
struct YoloGeom {
  int S = 0, A = 0, C = 0, N = 0, B = 0;
  float anchor_w[kYoloMaxAnchors] = {}, anchor_h[kYoloMaxAnchors] = {};  // pixels of the network input
  int na[kYoloMaxScales] = {};
  int mask[kYoloMaxScales][kYoloMaxAnchors] = {};  // global anchor index of slot a of scale s
  int gh[kYoloMaxScales] = {}, gw[kYoloMaxScales] = {}, ds[kYoloMaxScales] = {};
  int64_t off[kYoloMaxScales] = {};  // first prediction index of scale s within an image
  int64_t P = 0;                     // predictions per image, all scales
  int in_w = 0, in_h = 0;            // network input = ds * grid
  float ignore_thresh = 0.7f;
  float scale_xy = 1.f;
  int xy_bce = 1;        // |scale_xy - 1| < 1e-10: BCE on sigmoid; else L1 on the scaled sigmoid
  int label_smooth = 0;  // class targets t > 0 -> ls_pos, else ls_neg
  float ls_pos = 1.f, ls_neg = 0.f;
};

// Index of the best of all A anchors for a gt of normalized size (w, h): shape-only IoU with both
// boxes at the origin, in double as numpy does (an_hw = anchors / [W_in, H_in] is float64); strict >
// keeps the lower index on ties; -1 only when no IoU is > 0.
ENGINE_HD int yolo_best_anchor(const YoloGeom& g, float w, float h) {
  double best = 0.0;
  int idx = -1;
  for (int k = 0; k < g.A; ++k) {
    const double aw = (double)g.anchor_w[k] / (double)g.in_w, ah = (double)g.anchor_h[k] / (double)g.in_h;
    const double gw = (double)w, gh = (double)h;
    const double iw = gw < aw ? gw : aw, ih = gh < ah ? gh : ah;
    const double inter = iw * ih;
    const double iou = inter / sub_rn(add_rn(mul_rn(gw, gh), mul_rn(aw, ah)), inter);
    if (iou > best) {
      best = iou;
      idx = k;
    }
  }
  return idx;
}

// A gt takes part in the assignment unless w <= 0, h <= 0 or score <= 0 (Gt2YoloTarget's test).
ENGINE_HD bool yolo_gt_valid(const float* box, float score) {
  return !(box[2] <= 0.f || box[3] <= 0.f || score <= 0.f);
}

// Clamped grid index int(v * n): v = 1.0 would index one past the grid in Gt2YoloTarget (an
// IndexError there); clamping keeps such a gt on the last cell.
ENGINE_HD int yolo_cell(float v, int n) {
  int c = (int)(v * (float)n);
  return c < 0 ? 0 : (c >= n ? n - 1 : c);
}

// Gt b of image n (box [4], score) assigned to prediction p_out (or -1) and, if so, the map written.
ENGINE_HD int64_t yolo_assign_gt(const YoloGeom& g, const float* box, float score) {
  if (!yolo_gt_valid(box, score)) return -1;
  const int best = yolo_best_anchor(g, box[2], box[3]);
  if (best < 0) return -1;
  for (int s = 0; s < g.S; ++s)
    for (int a = 0; a < g.na[s]; ++a)
      if (g.mask[s][a] == best) {
        const int gi = yolo_cell(box[0], g.gw[s]), gj = yolo_cell(box[1], g.gh[s]);
        return g.off[s] + ((int64_t)gj * g.gw[s] + gi) * g.na[s] + a;
      }
  return -1;
}

// Targets of a positive prediction from its owning gt (float32 as Gt2YoloTarget's numpy code).
struct YoloTarget {
  float tx, ty, tw, th, tscale, tobj;
};
ENGINE_HD YoloTarget yolo_target(const YoloGeom& g, int s, int a, int i, int j, const float* box, float score) {
  YoloTarget t;
  const int k = g.mask[s][a];
  t.tx = sub_rn(mul_rn(box[0], (float)g.gw[s]), (float)i);
  t.ty = sub_rn(mul_rn(box[1], (float)g.gh[s]), (float)j);
  t.tw = log_f(box[2] * (float)g.in_w / g.anchor_w[k]);
  t.th = log_f(box[3] * (float)g.in_h / g.anchor_h[k]);
  t.tscale = sub_rn(2.f, mul_rn(box[2], box[3]));
  t.tobj = score;
  return t;
}

// Class target of class c at prediction p: 1 when any gt assigned to p has class c (Gt2YoloTarget
// sets target[6 + cls] = 1 per gt, so the one-hots of colliding gts form a union), then smoothing.
ENGINE_HD float yolo_class_target(const YoloGeom& g, int64_t p, int c, const int32_t* gt_pred, const int32_t* cls) {
  float t = 0.f;
  for (int b = 0; b < g.B; ++b) t = (gt_pred[b] == (int32_t)p && cls[b] == c) ? 1.f : t;
  if (g.label_smooth) t = t > 0.f ? g.ls_pos : g.ls_neg;
  return t;
}

// max(log(v), -100) as F.binary_cross_entropy (log(0) = -inf is clamped).
ENGINE_HD float yolo_clamped_log(float v) {
  if (!(v > 0.f)) return -100.f;
  const float l = log_f(v);
  return l > -100.f ? l : -100.f;
}

// F.binary_cross_entropy(p, t) on a float probability.
ENGINE_HD float yolo_bce_prob(float p, float t) {
  return -add_rn(mul_rn(t, yolo_clamped_log(p)), mul_rn(1.f - t, yolo_clamped_log(1.f - p)));
}
// d/dx of yolo_bce_prob(sigmoid(x), t) as Paddle's two backward kernels chain it:
// (p - t) / max(p(1-p), 1e-12) * p(1-p).
ENGINE_HD float yolo_bce_prob_grad(float p, float t) {
  const float d = p * (1.f - p);
  return (p - t) / (d > 1e-12f ? d : 1e-12f) * d;
}
ENGINE_HD float yolo_sign(float v) { return v > 0.f ? 1.f : (v < 0.f ? -1.f : 0.f); }
// scale_xy * sigmoid - 0.5 * (scale_xy - 1): the offset of a cell's centre.
ENGINE_HD float yolo_scaled_xy(const YoloGeom& g, float sig) {
  return sub_rn(mul_rn(g.scale_xy, sig), mul_rn(0.5f, g.scale_xy - 1.f));
}

// Decoded box of a prediction (normalized xyxy) and its largest IoU with the image's gts
// (iou_similarity: union + 1e-9; padded gts give 0). True when the prediction is ignored.
ENGINE_HD bool yolo_ignored(const YoloGeom& g, int s, int a, int i, int j, const float* x, const float* box) {
  const int k = g.mask[s][a];
  const float sx = yolo_scaled_xy(g, sigmoid_f(x[0]));
  const float sy = yolo_scaled_xy(g, sigmoid_f(x[1]));
  const float cx = (sx + (float)i) / (float)g.gw[s];
  const float cy = (sy + (float)j) / (float)g.gh[s];
  const float w = exp_f(x[2]) * g.anchor_w[k] / (float)(g.ds[s] * g.gw[s]);
  const float h = exp_f(x[3]) * g.anchor_h[k] / (float)(g.ds[s] * g.gh[s]);
  const float px1 = sub_rn(cx, mul_rn(w, 0.5f)), py1 = sub_rn(cy, mul_rn(h, 0.5f));
  const float px2 = add_rn(cx, mul_rn(w, 0.5f)), py2 = add_rn(cy, mul_rn(h, 0.5f));
  const float pw = px2 - px1 > 0.f ? px2 - px1 : 0.f, ph = py2 - py1 > 0.f ? py2 - py1 : 0.f;
  const float a1 = pw * ph;
  float best = 0.f;
  for (int b = 0; b < g.B; ++b) {
    const float* q = box + 4 * b;
    if (!(q[2] > 0.f && q[3] > 0.f)) continue;  // padding: IoU 0 (or NaN), which never raises best
    const float gx1 = sub_rn(q[0], mul_rn(q[2], 0.5f)), gy1 = sub_rn(q[1], mul_rn(q[3], 0.5f));
    const float gx2 = add_rn(q[0], mul_rn(q[2], 0.5f)), gy2 = add_rn(q[1], mul_rn(q[3], 0.5f));
    const float ix1 = px1 > gx1 ? px1 : gx1, iy1 = py1 > gy1 ? py1 : gy1;
    const float ix2 = px2 < gx2 ? px2 : gx2, iy2 = py2 < gy2 ? py2 : gy2;
    const float iw = ix2 - ix1 > 0.f ? ix2 - ix1 : 0.f, ih = iy2 - iy1 > 0.f ? iy2 - iy1 : 0.f;
    const float ov = iw * ih;
    const float gwc = gx2 - gx1 > 0.f ? gx2 - gx1 : 0.f, ghc = gy2 - gy1 > 0.f ? gy2 - gy1 : 0.f;
    const float iou = ov / add_rn(sub_rn(add_rn(a1, mul_rn(gwc, ghc)), ov), 1e-9f);
    best = iou > best ? iou : best;
  }
  return !(best <= g.ignore_thresh);
}

// Loss terms of one prediction (x: its 5 + C channels; m: its map entry; box/score/cls/gt_pred: the
// image's gts). l[0..3] += xy, wh, obj, cls (per-prediction values in float).
ENGINE_HD void yolo_pred_loss(const YoloGeom& g, int s, int a, int i, int j, int64_t p, const float* x, int32_t m,
                              const float* box, const float* score, const int32_t* cls, const int32_t* gt_pred,
                              float* l) {
  if (m < 0) {
    l[2] = m == -1 ? bce_logits_f(x[4], 0.f) : 0.f;
    l[0] = l[1] = l[3] = 0.f;
    return;
  }
  const YoloTarget t = yolo_target(g, s, a, i, j, box + 4 * m, score[m]);
  const float wts = t.tscale * t.tobj;
  const float px = sigmoid_f(x[0]), py = sigmoid_f(x[1]);
  float lx, ly;
  if (g.xy_bce) {
    lx = yolo_bce_prob(px, t.tx);
    ly = yolo_bce_prob(py, t.ty);
  } else {
    const float sx = yolo_scaled_xy(g, px), sy = yolo_scaled_xy(g, py);
    lx = fabsf(sx - t.tx);
    ly = fabsf(sy - t.ty);
  }
  l[0] = wts * (lx + ly);
  l[1] = wts * (fabsf(x[2] - t.tw) + fabsf(x[3] - t.th));
  l[2] = bce_logits_f(x[4], 1.f) * t.tobj;
  float lc = 0.f;
  for (int c = 0; c < g.C; ++c) lc += bce_logits_f(x[5 + c], yolo_class_target(g, p, c, gt_pred, cls));
  l[3] = lc * t.tobj;
}

// d loss / d x[k] of one prediction's channel k (unscaled: the op multiplies by upstream / N).
ENGINE_HD float yolo_channel_grad(const YoloGeom& g, int s, int a, int i, int j, int64_t p, int k, const float* x,
                                  int32_t m, const float* box, const float* score, const int32_t* cls,
                                  const int32_t* gt_pred) {
  if (m < 0) return (k == 4 && m == -1) ? sigmoid_f(x[4]) : 0.f;
  const float* q = box + 4 * m;
  const float tobj = score[m];
  if (k == 4) return (sigmoid_f(x[4]) - 1.f) * tobj;
  if (k >= 5) return (sigmoid_f(x[k]) - yolo_class_target(g, p, k - 5, gt_pred, cls)) * tobj;
  const YoloTarget t = yolo_target(g, s, a, i, j, q, tobj);
  const float wts = t.tscale * t.tobj;
  if (k >= 2) return wts * yolo_sign(x[k] - (k == 2 ? t.tw : t.th));
  const float pr = sigmoid_f(x[k]), tt = k == 0 ? t.tx : t.ty;
  if (g.xy_bce) return wts * yolo_bce_prob_grad(pr, tt);
  const float sv = yolo_scaled_xy(g, pr);
  return wts * yolo_sign(sv - tt) * g.scale_xy * (pr * (1.f - pr));
}

}  // namespace engine::kernels
