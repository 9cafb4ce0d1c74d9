// CPU kernel of the optimizer family (kernels/cpu/optim_cpu.cpp).
#pragma once
#include <cstdint>

#include "kernels/loss_math.h"  // UpdateGate

namespace engine::kernels {

// One tensor of a multi-tensor update (also the row of the CUDA kernel's device table).
struct SgdTensor {
  float* p;
  const float* g;
  float* v;
  int64_t n;            // elements
  int64_t chunk_begin;  // index of this tensor's first chunk in the launch (CUDA)
  int32_t vec4;         // p, g, v all 16-byte aligned (CUDA float4 path)
  int32_t pad;
};

// Paddle Momentum with coupled L2 decay over every tensor of the table, in place; nothing when the
// gate says so, at the gate's learning rate when it holds one.
void sgd_momentum_fwd_cpu(const SgdTensor* tensors, int64_t count, float lr, float mu, float wd,
                          const UpdateGate& gate);

// One tensor of a multi-tensor in-place scale (also the row of the CUDA kernel's device table).
struct ScaleTensor {
  float* x;
  int64_t n;            // elements
  int64_t chunk_begin;  // index of this tensor's first chunk in the launch (CUDA)
  int32_t vec4;         // x 16-byte aligned (CUDA float4 path)
  int32_t pad;
};

// The loss scaler's unscale (Paddle's check_finite_and_unscale): x *= inv_scale over every tensor of
// the table, in place; returns 1 when any element was inf or nan before scaling, else 0.
// inv_scale_at_run: when not null, the factor is read from there (replaces inv_scale).
int unscale_check_finite_cpu(const ScaleTensor* tensors, int64_t count, float inv_scale, const float* inv_scale_at_run);

}  // namespace engine::kernels
