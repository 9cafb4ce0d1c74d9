// Reductions (f32) over any set of axes, differentiable, on CPU and CUDA. Deterministic on both
// devices (no atomics): the same input gives bit-identical results run to run.
//  sum, mean: axes empty = all axes.
//  max: values and argmax indices (i64). With several reduced axes the index is the row-major
//       flat index within the reduced axes. Ties pick the first (lowest) index, as PyTorch/numpy.
//       NaN propagates: a NaN in a slice makes the max NaN and its index the first NaN.
//  The gradient of max flows only to the argmax element.
//  A bf16 / f16 x is read by the kernels as it is and reduced in f32 (the sums of a widened copy);
//  the result is stored in x's type, rounded once, and x's gradient is written in x's type.
#pragma once
#include <vector>

#include "engine/tensor.h"

namespace engine {

Tensor sum(const Tensor& x, const std::vector<int>& axes = {}, bool keepdim = false);
// The f32 sum whatever x's storage type: a bf16 / f16 x's sum is not rounded back to x's type (a
// bias gradient of 16-bit activations, which stays f32 and must not overflow f16's range).
Tensor sum_f32(const Tensor& x, const std::vector<int>& axes = {}, bool keepdim = false);
Tensor mean(const Tensor& x, const std::vector<int>& axes = {}, bool keepdim = false);

struct MaxResult {
  Tensor values;
  Tensor indices;  // i64, same shape as values
};
MaxResult max(const Tensor& x, const std::vector<int>& axes = {}, bool keepdim = false);

// Sums g over the dimensions that broadcasting added or expanded, giving a tensor of `shape`
// (the backward of broadcasting). Differentiable.
Tensor sum_to_shape(const Tensor& g, const Shape& shape);

}  // namespace engine
