// softmax / log_softmax / argmax over one axis (default -1 = the NHWC channel axis), on CPU and
// CUDA. softmax and log_softmax are differentiable; argmax is not (i64 indices).
// Types: x is f32, bf16 or f16 (mixed precision). y and the gradient have x's type; the math is f32
// on the widened values and a 16-bit result is the f32 result rounded once (Paddle / PyTorch keep a
// 16-bit softmax's output in the input's type and accumulate in f32 too).
//
// softmax(x, axis):     y = exp(x - max) / sum(exp(x - max)) — numerically stable for any finite
//                       logits (e.g. +-100, where a naive exp overflows).
// log_softmax(x, axis): y = (x - max) - log(sum(exp(x - max))).
//   Backward: softmax dx = y * (g - sum(g * y)); log_softmax dx = g - softmax(x) * sum(g).
//   Non-finite inputs follow IEEE like PyTorch/Paddle: a NaN in a slice makes the slice NaN; +inf
//   gives NaN (inf - inf); -inf entries get probability 0 (a slice of only -inf is NaN).
//   exp/log are the engine's own vectorisable approximations (~2 ulp; kernels/cpu/softmax_cpu.h),
//   the same on both devices.
// argmax(x, axis, keepdim=false): i64 index of the maximum along `axis`; ties pick the FIRST index
//   (as Paddle, PyTorch and numpy); a NaN counts as the maximum (the first NaN wins), like max() in
//   engine/ops/reduce.h. keepdim keeps the reduced axis with size 1.
// Errors: undefined x or not of a float storage type, 0-D x, axis out of range, an empty reduced axis (argmax/softmax
// of nothing), i.e. one-line messages naming the op, x and the axis.
#pragma once
#include "engine/tensor.h"

namespace engine {

Tensor softmax(const Tensor& x, int axis = -1);
Tensor log_softmax(const Tensor& x, int axis = -1);
Tensor argmax(const Tensor& x, int axis = -1, bool keepdim = false);

}  // namespace engine
