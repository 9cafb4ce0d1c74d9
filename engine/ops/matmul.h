// Matrix multiply (f32), differentiable, on CPU (OpenBLAS sgemm) and CUDA (cuBLAS in the real
// build; the hand-written tiled GEMM of kernels/cuda/matmul.cu in the emulated build, and on a GPU
// when ENGINE_GEMM=tiled).
//  a [M, K] x b [K, N] -> [M, N]
//  a [B, M, K] x b [B, K, N] -> [B, M, N]; a 2-D operand is broadcast over the batch.
// Transposed views (e.g. x.transpose(0, 1)) are passed to the GEMM as transpose flags, not copied.
#pragma once
#include "engine/tensor.h"

namespace engine {

Tensor matmul(const Tensor& a, const Tensor& b);

}  // namespace engine
