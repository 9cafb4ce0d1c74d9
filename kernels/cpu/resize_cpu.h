// CPU kernels of the resize family (kernels/cpu/resize_cpu.cpp). Math: kernels/resize_math.h.
#pragma once
#include "kernels/resize_math.h"

namespace engine::kernels {

// dt: the storage type of x, out, g and gx (f32, bf16 or f16); blends and sums are f32, stores round
// once (nearest copies the stored bits).
// out[n, oh, ow, c] = resize of x (mode in a.h.mode == a.w.mode); x read through a's strides,
// out contiguous [N, out_h, out_w, C].
void resize_fwd_cpu(const ResizeArgs& a, DType dt, const void* x, void* out);
// gx[n, ih, iw, c] = sum over the output pixels that read (ih, iw) of weight * g (gather, fixed
// order: oh ascending, then ow ascending). g contiguous [N, out_h, out_w, C], gx contiguous
// [N, in_h, in_w, C]. Deterministic.
void resize_bwd_cpu(const ResizeArgs& a, DType dt, const void* g, void* gx);

}  // namespace engine::kernels
