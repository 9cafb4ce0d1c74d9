// 2-D pooling over channels-last activations x = [N, H, W, C] (f32), differentiable, on CPU and CUDA.
// Outputs are [N, Ho, Wo, C]. Backward is deterministic on both devices (gather form, no atomics).
//
// Semantics (Paddle's AvgPool2D / MaxPool2D / AdaptiveAvgPool2D with ceil_mode=False):
//  - Output size: Ho = floor((H + 2*padding - kernel) / stride) + 1 (same for W). Requires
//    kernel >= 1, stride >= 1, 0 <= padding <= kernel / 2 (as PyTorch) and H + 2*padding >= kernel.
//  - avg_pool2d, exclusive = true (Paddle's default, == PyTorch count_include_pad=False): the divisor
//    is the number of in-bounds cells of each window. exclusive = false: the divisor is
//    kernel*kernel (padding counts as zeros; with ceil_mode=False no window passes the padded edge).
//    STDC's stride-2 skip branch is avg_pool2d(x, 3, 2, 1) with exclusive = true.
//  - max_pool2d: padding acts as -inf (only in-bounds cells compete). Ties pick the first cell in
//    row-major window order and the gradient goes to that cell only (as PyTorch). A NaN in a window
//    makes the output NaN (the first NaN's cell receives the gradient).
//  - adaptive_avg_pool2d: output bin i along an axis of length L covers [floor(i*L/out),
//    ceil((i+1)*L/out)) (Paddle == PyTorch); bins may overlap when L % out != 0, and out > L works.
//  - global_avg_pool2d(x) = adaptive_avg_pool2d(x, 1, 1) -> [N, 1, 1, C].
// N == 0 or C == 0 gives an empty output; H, W must be >= 1.
#pragma once
#include "engine/tensor.h"

namespace engine {

Tensor avg_pool2d(const Tensor& x, int kernel, int stride, int padding, bool exclusive = true);
Tensor max_pool2d(const Tensor& x, int kernel, int stride, int padding);
Tensor adaptive_avg_pool2d(const Tensor& x, int out_h, int out_w);
Tensor global_avg_pool2d(const Tensor& x);

}  // namespace engine
