// Source-index math of the resize family, shared by kernels/cpu/resize_cpu.cpp and
// kernels/cuda/resize.cu so both backends pick the same input pixels with the same weights.
//
// One axis of a resize (in -> out pixels) is a Resize1D. Paddle's interpolate kernels
// (phi interpolate_kernel / interpolate_function) compute, per axis, in float:
//   ratio = align_corners ? (out > 1 ? (in - 1) / (out - 1) : 0)
//                         : (scale > 0 ? 1 / scale : in / out)     (scale = the user's scale_factor)
//   bilinear, align_corners=False, align_mode=0 (half-pixel, = PyTorch align_corners=False):
//       src = max(ratio * (dst + 0.5) - 0.5, 0);  i0 = floor(src);  i1 = min(i0 + 1, in - 1);  l = src - i0
//   bilinear, align_corners=True:  src = ratio * dst, same i0 / i1 / l
//   nearest, align_corners=False:  src = min(floor(ratio * dst), in - 1)
//       This is Paddle 'nearest' and PyTorch 'nearest' (the legacy floor rule). PyTorch's
//       'nearest-exact' uses floor((dst + 0.5) * ratio) instead; we do not implement it. For an
//       integer upsampling factor (YOLOv3's 2x) both rules pick the same pixels.
// fmaf is spelled out so the host compiler and nvcc (which would contract a*b+c) round identically.
//
// Backward as a gather: i0(dst) is non-decreasing in dst (fmaf, max, floor and the float product
// are monotone), and i1(dst) = i0(dst) + 1 except at the border, so the output pixels that read
// input i are one contiguous range of dst: those with i0(dst) in [i - 1, i] (bilinear) or
// i0(dst) == i (nearest). first_dst_with_lo_at_least() finds the range ends by binary search on the
// exact forward formula, so forward and backward can never disagree about a footprint.
#pragma once
#include <cstdint>

#include "kernels/shared_math.h"

namespace engine::kernels {

enum class ResizeMode : int { Nearest = 0, BilinearHalfPixel = 1, BilinearAlignCorners = 2 };

ENGINE_HD float resize_ratio(int64_t in, int64_t out, ResizeMode mode, float scale) {
  if (mode == ResizeMode::BilinearAlignCorners) return out > 1 ? (float)(in - 1) / (float)(out - 1) : 0.f;
  return scale > 0.f ? 1.f / scale : (float)in / (float)out;
}

struct Resize1D {
  int64_t in = 1, out = 1;
  float ratio = 1.f;
  ResizeMode mode = ResizeMode::Nearest;

  // Lower source index i0 and the weight l of the upper neighbour i1 = hi(i0).
  ENGINE_HD int64_t lo(int64_t dst, float* l) const {
    if (mode == ResizeMode::Nearest) {
      int64_t s = (int64_t)(ratio * (float)dst);
      *l = 0.f;
      return s < in - 1 ? s : in - 1;
    }
    float src = mode == ResizeMode::BilinearHalfPixel ? fmaf(ratio, (float)dst + 0.5f, -0.5f) : ratio * (float)dst;
    src = src > 0.f ? src : 0.f;
    int64_t i0 = (int64_t)src;
    if (i0 > in - 1) i0 = in - 1;
    const float f = src - (float)i0;
    *l = f < 1.f ? f : 1.f;
    return i0;
  }
  ENGINE_HD int64_t hi(int64_t i0) const { return i0 + 1 < in ? i0 + 1 : in - 1; }

  // Smallest dst in [0, out] with lo(dst) >= k (out when none).
  ENGINE_HD int64_t first_dst_with_lo_at_least(int64_t k) const {
    int64_t a = 0, b = out;
    while (a < b) {
      const int64_t m = a + (b - a) / 2;
      float l;
      if (lo(m, &l) >= k)
        b = m;
      else
        a = m + 1;
    }
    return a;
  }
  // The output indices [*b, *e) that read input index i.
  ENGINE_HD void dst_range(int64_t i, int64_t* b, int64_t* e) const {
    *b = first_dst_with_lo_at_least(mode == ResizeMode::Nearest ? i : i - 1);
    *e = first_dst_with_lo_at_least(i + 1);
  }
  // Weight of input index i in output index dst (0 when dst does not read i).
  ENGINE_HD float weight(int64_t dst, int64_t i) const {
    float l;
    const int64_t i0 = lo(dst, &l);
    if (mode == ResizeMode::Nearest) return i0 == i ? 1.f : 0.f;
    float w = 0.f;
    if (i0 == i) w += 1.f - l;
    if (hi(i0) == i) w += l;
    return w;
  }
};

ENGINE_HD Resize1D make_resize1d(int64_t in, int64_t out, ResizeMode mode, float scale) {
  Resize1D r;
  r.in = in;
  r.out = out;
  r.mode = mode;
  r.ratio = resize_ratio(in, out, mode, scale);
  return r;
}

// Bilinear blend of four neighbours (a, b on the upper row i0; c, d on the lower row i1), with
// lx / ly the weights of the right / lower neighbour. Two horizontal lerps, then a vertical one.
ENGINE_HD float bilinear_blend(float a, float b, float c, float d, float lx, float ly) {
  const float top = fmaf(lx, b, (1.f - lx) * a);
  const float bot = fmaf(lx, d, (1.f - lx) * c);
  return fmaf(ly, bot, (1.f - ly) * top);
}

}  // namespace engine::kernels

namespace engine::kernels {

// Geometry of one resize call: x is [N, in_h, in_w, C] with element strides (sn, sh, sw, sc)
// (any non-negative strides; the forward reads x through them), the output and the gradients are
// contiguous [N, out_h, out_w, C] / [N, in_h, in_w, C]. Plain data: passed by value to kernels.
struct ResizeArgs {
  int64_t N = 0, C = 0;
  Resize1D h, w;
  int64_t sn = 0, sh = 0, sw = 0, sc = 0;
};

}  // namespace engine::kernels
