// Spatial resize of NHWC activations (f32, [N, H, W, C] -> [N, out_h, out_w, C]), differentiable,
// on CPU and CUDA. The source-index math is kernels/resize_math.h (shared by both backends).
//
// resize_bilinear(x, out_h, out_w, align_corners=false)
//   align_corners=false: Paddle interpolate(mode='bilinear', align_corners=False, align_mode=0), the
//   half-pixel rule src = max((dst + 0.5) * in / out - 0.5, 0), upper neighbour clamped to in - 1.
//   Identical to PyTorch F.interpolate(mode='bilinear', align_corners=False). Every resize in
//   PP-LiteSeg uses this (F.interpolate in paddleseg/models/pp_liteseg.py).
//   align_corners=true: src = dst * (in - 1) / (out - 1) (0 when out == 1), as Paddle and PyTorch.
// resize_nearest(x, out_h, out_w)
//   Paddle interpolate(mode='nearest', align_corners=False): src = min(floor(dst * in / out), in - 1).
//   This is PyTorch's 'nearest' (NOT 'nearest-exact', which uses floor((dst + 0.5) * in / out)).
//   YOLOv3's FPN upsample is the scale-2 case (PaddleDetection ppdet/modeling/necks/yolo_fpn.py).
// resize_bilinear_scale(x, scale_h, scale_w, align_corners=false) / resize_nearest_scale(x, sh, sw)
//   Paddle's scale_factor path: out = floor(in * scale) (computed as int(float(in) * scale)), and
//   the source ratio is 1 / scale, not in / out (phi interpolate kernel: ratio = 1 / scale when a
//   scale is given; PyTorch does the same unless recompute_scale_factor=True). The two differ when
//   in * scale is not an integer, e.g. 13 * 0.5 -> out 6, ratio 2 (not 13 / 6). With
//   align_corners=true the ratio is (in - 1) / (out - 1) whatever the scale, as in Paddle.
//
// Backward (both devices) is a deterministic gather: each input pixel sums, in a fixed order, the
// weighted gradients of the contiguous range of output pixels that read it. No atomics; CPU and
// CUDA give bit-identical gradients (see kernels/cuda/resize.cu).
// Errors: x not 4-D f32, an empty x, out sizes < 1, scales that are not finite and > 0 or give an
// output size < 1.
#pragma once
#include "engine/tensor.h"

namespace engine {

Tensor resize_bilinear(const Tensor& x, int out_h, int out_w, bool align_corners = false);
Tensor resize_nearest(const Tensor& x, int out_h, int out_w);
Tensor resize_bilinear_scale(const Tensor& x, float scale_h, float scale_w, bool align_corners = false);
Tensor resize_nearest_scale(const Tensor& x, float scale_h, float scale_w);

}  // namespace engine
