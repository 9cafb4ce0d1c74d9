// CPU kernel of the optimizer family (kernels/cpu/optim_cpu.cpp).
#pragma once
#include <cstdint>

#include "kernels/loss_math.h"  // UpdateGate

namespace engine::kernels {

// One tensor of a multi-tensor update (also the row of the CUDA kernel's device table). The gradient
// is f32, bf16 or f16 (g_type, a DType; widened as it is read: data-parallel O2's reduced 16-bit
// gradients); parameter and momentum are f32.
struct SgdTensor {
  float* p;
  const void* g;
  float* v;
  int64_t n;            // elements
  int64_t chunk_begin;  // index of this tensor's first chunk in the launch (CUDA)
  int32_t vec4;         // p and v 16-byte aligned, g aligned for 4-element accesses (CUDA vector path)
  int32_t g_type;       // DType of g
};

// Paddle Momentum with coupled L2 decay over every tensor of the table, in place; nothing when the
// gate says so, at the gate's learning rate when it holds one.
void sgd_momentum_fwd_cpu(const SgdTensor* tensors, int64_t count, float lr, float mu, float wd,
                          const UpdateGate& gate);

// One tensor of a multi-tensor scale (also the row of the CUDA kernel's device table):
// dst = src * inv_scale, with src f32, bf16 or f16 (src_type, a DType) and dst f32; in place when
// src == dst (f32).
struct ScaleTensor {
  const void* src;
  float* dst;
  int64_t n;            // elements
  int64_t chunk_begin;  // index of this tensor's first chunk in the launch (CUDA)
  int32_t vec4;         // src and dst aligned for 4-element accesses (CUDA vector path)
  int32_t src_type;     // DType of src
};

// The loss scaler's unscale (Paddle's check_finite_and_unscale): dst = src * inv_scale over every
// tensor of the table; returns 1 when any element of src was inf or nan, else 0.
// inv_scale_at_run: when not null, the factor is read from there (replaces inv_scale).
int unscale_check_finite_cpu(const ScaleTensor* tensors, int64_t count, float inv_scale, const float* inv_scale_at_run);

}  // namespace engine::kernels
