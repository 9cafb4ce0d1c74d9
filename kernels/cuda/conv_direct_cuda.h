// A hand-written backward-data of a convolution (kernels/cuda/conv_direct.cu). Plain C++ declarations.
// Used on a real GPU by conv2d_bwd_data_cudnn (kernels/cudnn/conv_cudnn.cpp) in place of cuDNN's
// algorithm when it measures faster for a shape; run under the emulator in CI by
// tests/test_conv_direct.cpp.
#pragma once
#include <cuda_runtime.h>

#include "kernels/cpu/conv_cpu.h"  // ConvParams

namespace engine::kernels {

// Whether the kernel handles p: groups 1, f32 data (tf32 allowed: the kernel multiplies in full
// fp32), at most 64 taps (kH * kW), sizes within int range.
bool conv2d_bwd_data_direct_supported(const ConvParams& p);

// gx = d loss / d x from gy (conv_cpu.h's math), gy [N, Ho, Wo, Cout] and gx [N, H, W, Cin] NHWC,
// the weight OHWI [Cout, kH, kW, Cin] (cuDNN's NHWC filter layout). Deterministic: every gx element
// is one thread's sum in a fixed order. Asynchronous on `stream`.
void conv2d_bwd_data_direct_cuda(const ConvParams& p, const float* gy, const float* w_ohwi, float* gx,
                                 cudaStream_t stream);

}  // namespace engine::kernels
