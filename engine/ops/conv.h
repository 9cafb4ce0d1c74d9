// 2-D convolution, differentiable in x, w and b, on CPU (oneDNN) and CUDA (cuDNN in the real
// build; the CPU implementation on the device's host memory in the emulated build). w and b are
// f32; x is f32 (y f32; bf16 / fp16 products under autocast, engine/precision.h) or bf16 / f16 (O2:
// products in x's type, y and x's gradient stored in it, w's and b's gradients f32).
//
//   y = conv2d(x [N, H, W, Cin], w [Cout, Cin/groups, kH, kW], b [Cout] or undefined, args)
//     -> [N, Ho, Wo, Cout],  Ho = (H + 2*pad_h - dilation_h*(kH-1) - 1) / stride_h + 1 (floor), Wo likewise.
//   y[n,i,j,co] = b[co] + sum_{ci,r,s} x[n, i*stride_h - pad_h + r*dilation_h, j*stride_w - pad_w + s*dilation_w,
//                                       g*Cin/groups + ci] * w[co, ci, r, s],   g = co / (Cout/groups)
// i.e. cross-correlation with zero padding, as Paddle's nn.Conv2D / PyTorch's conv2d. Activations are
// channels-last DIMS (the engine's convention); the weight keeps the checkpoint order OIHW, the same
// as Paddle and PyTorch, so .pdparams/.pth weights load unchanged. Depthwise = groups == Cin == Cout
// (weight [C, 1, kH, kW]).
// Paddle vs PyTorch: the same math. Paddle's padding can also be 'SAME'/'VALID' strings or asymmetric
// lists; here padding is symmetric per axis (what PP-LiteSeg and YOLOv3 use: k//2).
// Errors (engine::Error naming conv2d and the shapes): ranks other than 4, other types, tensors on
// different devices, Cin != w.shape[1] * groups, groups not dividing Cin or Cout, bias not [Cout],
// stride/dilation < 1, padding < 0, an (effective, dilated) kernel larger than the padded input,
// empty channel or spatial dims. An empty batch (N == 0) gives an empty output and zero gradients.
#pragma once
#include "engine/tensor.h"

namespace engine {

struct Conv2dArgs {
  int stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, dilation_h = 1, dilation_w = 1, groups = 1;
};

Tensor conv2d(const Tensor& x /*[N,H,W,Cin]*/, const Tensor& w /*[Cout,Cin/groups,kH,kW]*/,
              const Tensor& b /*[Cout] or undefined*/, const Conv2dArgs& a);

}  // namespace engine
