// A hand-written backward-data of a convolution (kernels/cuda/conv_direct.cu). Plain C++ declarations.
// Used on a real GPU by conv2d_bwd_data_cudnn (kernels/cudnn/conv_cudnn.cpp) in place of cuDNN's
// algorithm when it measures faster for a shape; run under the emulator in CI by
// tests/test_conv_direct.cpp.
#pragma once
#include <cuda_runtime.h>

#include "kernels/cpu/conv_cpu.h"  // ConvParams

namespace engine::kernels {

// Whether the kernel handles p: groups 1, at most 64 taps (kH * kW), sizes within int range; any
// p.input (tf32 included: the kernel multiplies f32 data in full fp32).
bool conv2d_bwd_data_direct_supported(const ConvParams& p);

// gx = d loss / d x from gy (conv_cpu.h's math), gy [N, Ho, Wo, Cout] and gx [N, H, W, Cin] NHWC,
// the weight OHWI [Cout, kH, kW, Cin] (cuDNN's NHWC filter layout), all three of p.input's type (f32,
// or bf16 / f16: f32 products and sums, gx rounded once). Deterministic: every gx element is one
// thread's sum in a fixed order. Asynchronous on `stream`.
void conv2d_bwd_data_direct_cuda(const ConvParams& p, const void* gy, const void* w_ohwi, void* gx,
                                 cudaStream_t stream);

}  // namespace engine::kernels
