// Direct weight gradients on the CPU for the two kinds of layer that oneDNN 2.6 serves badly in
// bf16 / fp16, computed from x and gy in their storage type. kernels/cpu/conv_cpu.cpp runs them for
// such layers' backward-weights in bf16 and fp16 (docs/BENCHMARKS.md has the numbers):
//  - depthwise layers (one input and one output channel per group, cin == cout == groups): oneDNN's
//    bf16 depthwise backward-weights is slower than its f32 one, which needs x and gy widened into
//    a staging copy first;
//  - thin-input layers (groups == 1, cin < 4: an image's first layer): oneDNN's bf16 kernel is wrong
//    for them on AMX (conv_cpu.cpp), and widening the full-size gy for its f32 kernel cost more than
//    the layer's arithmetic.
//
// Math (ConvParams and layouts as in conv_cpu.h; gw is OIHW):
//   depthwise ([C, 1, kh, kw]):
//     gw[c, 0, r, s] = sum_{n, i, j} gy[n, i, j, c] * x[n, i*sh - ph + r*dh, j*sw - pw + s*dw, c]
//   thin input ([cout, cin, kh, kw]):
//     gw[o, ci, r, s] = sum_{n, i, j} gy[n, i, j, o] * x[n, i*sh - ph + r*dh, j*sw - pw + s*dw, ci]
//   gb[o] = sum_{n, i, j} gy[n, i, j, o]                       (when gb is not null)
// over the taps inside the image. Products and sums in f32: the product of two bf16 / f16 values is
// exact in f32, so only the order of the sums differs from the f32 primitive on widened values.
// The order is fixed by the shape alone (row blocks of the output merged in block order), so the
// result is the same bits for every thread count and on every instruction set.
#pragma once
#include <cstdint>

#include "base/dtype.h"
#include "kernels/cpu/conv_cpu.h"

namespace engine::kernels {

// True for the layers conv2d_dw_bwd_weights_cpu computes: groups == cin == cout.
inline bool conv2d_is_depthwise(const ConvParams& p) { return p.groups > 1 && p.groups == p.cin && p.cout == p.cin; }
// True for the layers conv2d_thin_bwd_weights_cpu computes: groups == 1 and fewer than 4 input channels.
inline bool conv2d_is_thin_input(const ConvParams& p) { return p.groups == 1 && p.cin < 4; }

// gw (and gb when not null) of a depthwise layer; x, gy of storage type dt (f32, bf16 or f16).
// Needs no workspace.
void conv2d_dw_bwd_weights_cpu(DType dt, const ConvParams& p, const void* x, const void* gy, float* gw, float* gb);

// gw (and gb when not null) of a thin-input layer; x, gy of storage type dt (f32, bf16 or f16).
// Needs no workspace.
void conv2d_thin_bwd_weights_cpu(DType dt, const ConvParams& p, const void* x, const void* gy, float* gw, float* gb);

}  // namespace engine::kernels
