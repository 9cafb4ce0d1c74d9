// concat / split along any axis, on CPU and CUDA, differentiable (f32; other dtypes are copied
// without autograd).
//
// concat(xs, axis): all inputs have the same dtype, device and rank, and equal sizes except along
//   `axis` (negative axes count from the end; -1 is the NHWC channel axis). The output is a new
//   contiguous tensor written by ONE kernel pass over all inputs (non-contiguous inputs are first
//   made contiguous). Inputs with size 0 along `axis` contribute nothing. Backward: the split of
//   the output gradient, as contiguous copies made by one kernel pass (a view of the gradient when
//   the piece is already contiguous, i.e. when everything before `axis` has size 1).
// split(x, sizes, axis): the pieces are VIEWS of x (narrow along `axis`: no copy; for a channel
//   split they are non-contiguous, so a consumer that needs contiguous data pays the copy then).
//   sizes must be >= 1 and sum to x.size(axis); at most one entry may be -1, meaning "the rest"
//   (Paddle's num_or_sections convention). Backward: one node for all pieces, whose gradient is the
//   concat of the pieces' gradients (missing ones are zeros), so the cost is one kernel pass, not one
//   full-size zero tensor per piece as chained narrow() backwards would give.
// Errors (one line, naming op, argument and shapes): no inputs, undefined inputs, mixed dtypes or
// devices, rank mismatch, size mismatch off the axis, axis out of range, bad split sizes.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/tensor.h"

namespace engine {

Tensor concat(const std::vector<Tensor>& xs, int axis);
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int axis);

}  // namespace engine
