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
// [N, in_h, in_w, C]. Deterministic. ws: resize_bwd_workspace_cpu(a) floats (the column pass's
// buffer; the op takes it from the caching allocator, so a call does not page-fault a fresh one).
void resize_bwd_cpu(const ResizeArgs& a, DType dt, const void* g, void* gx, float* ws);

// The backward's column buffer keeps this many lanes per (output row, input column): C rounded up
// to whole 16-lane vectors when C is between 16 and 64 and not a multiple of 16 (PP-LiteSeg's 19
// classes: 32), C otherwise, so that each tap runs whole vectors instead of a vector and a scalar
// tail (resize_cpu.inc).
inline int64_t resize_bwd_column_lanes(int64_t C) { return (C > 16 && C < 64 && C % 16 != 0) ? (C + 15) / 16 * 16 : C; }
inline int64_t resize_bwd_workspace_cpu(const ResizeArgs& a) {
  return a.N * a.h.out * a.w.in * resize_bwd_column_lanes(a.C);
}

}  // namespace engine::kernels
