// 2-D convolution on the CPU through oneDNN 2.6 (see conv_cpu.cpp for the design and numbers).
//
// Layouts (the engine's, docs/ARCHITECTURE.md): activations NHWC contiguous, x [N, H, W, Cin],
// y [N, Ho, Wo, Cout]; weights OIHW contiguous [Cout, Cin/groups, kH, kW] (for groups > 1 this is
// the same memory as [groups, Cout/groups, Cin/groups, kH, kW]); bias [Cout].
// Math (cross-correlation, as every framework's "conv"), for g = co / (Cout/groups):
//   y[n,i,j,co] = b[co] + sum_{ci<Cin/groups, r<kH, s<kW} x[n, i*sh - ph + r*dh, j*sw - pw + s*dw, g*Cin/groups + ci]
//                                                        * w[co, ci, r, s]      (out-of-range x = 0)
//   Ho = (H + 2*ph - dh*(kH-1) - 1) / sh + 1 (floor), Wo likewise.
// Each entry point needs a workspace of conv2d_workspace_cpu(pass, p) bytes (64-byte aligned, may be
// null when that is 0) that the caller allocates (the op layer: a Tensor); it holds the weights in
// the primitive's blocked format and the primitive's scratchpad. Calls are synchronous and
// deterministic for a given thread count (oneDNN's reductions are statically partitioned).
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>

namespace engine::kernels {

enum class ConvInput : uint8_t { F32, BF16, F16 };

struct ConvParams {
  int64_t n = 0, h = 0, w = 0, cin = 0;  // input
  int64_t cout = 0, kh = 0, kw = 0;      // weights [cout, cin/groups, kh, kw]
  int64_t ho = 0, wo = 0;                // output
  int64_t stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, dil_h = 1, dil_w = 1, groups = 1;
  bool bias = false;  // forward adds b / backward-weights also produces db
  // The type of the products (mixed precision, --precision bf16 / fp16): x and gy are given as
  // bfloat16 / IEEE half bits, w (f32) is rounded to that type (nearest even); accumulation, gw
  // and gb are f32 in every case, y and gx unless low_out.
  //  - BF16: oneDNN's bf16 primitives. Needs a CPU with AVX512-BF16 or AMX-BF16 (cpu_has_bf16 in
  //    kernels/cpu/cpu_isa.h), else an Error.
  //  - F16: the half inputs are widened to f32 in the workspace and the f32 primitive runs on them.
  //    The product of two halves is exact in f32, so this is the arithmetic of fp16 tensor cores
  //    (half products, f32 accumulation) up to summation order, at f32 speed: conv2d on CPU tensors
  //    under fp16 autocast, not a fast CPU mode (engine-train refuses fp16 on the CPU device).
  ConvInput input = ConvInput::F32;
  // O2 (activations stored in the low type): y and gx are written in the input type too (rounded once
  // from the f32 accumulator, bias included); gw and gb stay f32. Only with a BF16 / F16 input.
  bool low_out = false;
  // fp32 data with TF32 tensor-core math (--precision tf32): the real-GPU (cuDNN) path only; the CPU
  // kernel refuses it (CPUs have no TF32).
  bool tf32 = false;
};

enum class ConvPass : uint8_t { Fwd, BwdData, BwdWeights };

// Everything that identifies a convolution pass: the key of the per-shape caches (oneDNN
// primitives, cuDNN algorithm choices, the roofline's measured ideals).
using ConvKey = std::array<int64_t, 21>;
inline ConvKey conv_key(ConvPass pass, const ConvParams& p) {
  return {(int64_t)pass,
          p.n,
          p.h,
          p.w,
          p.cin,
          p.cout,
          p.kh,
          p.kw,
          p.ho,
          p.wo,
          p.stride_h,
          p.stride_w,
          p.pad_h,
          p.pad_w,
          p.dil_h,
          p.dil_w,
          p.groups,
          (int64_t)p.bias,
          (int64_t)p.input,
          (int64_t)p.low_out,
          (int64_t)p.tf32};
}

// Bytes of workspace the pass needs (weights reorder buffer + scratchpads), 0 when none.
size_t conv2d_workspace_cpu(ConvPass pass, const ConvParams& p);

// y = conv(x, w) (+ b when p.bias).
// x and gy: f32, or bf16 / half bits (uint16) as p.input says; y and gx likewise when p.low_out (else
// f32); w, b, gw and gb f32.
void conv2d_fwd_cpu(const ConvParams& p, const void* x, const float* w, const float* b, void* y, void* workspace);
// gx = d loss / d x from gy.
void conv2d_bwd_data_cpu(const ConvParams& p, const void* gy, const float* w, void* gx, void* workspace);
// gw = d loss / d w (OIHW) and, when p.bias, gb = sum of gy over N, Ho, Wo.
void conv2d_bwd_weights_cpu(const ConvParams& p, const void* x, const void* gy, float* gw, float* gb, void* workspace);

// Number of cached oneDNN primitives (tests/benchmarks).
size_t conv2d_cpu_cache_size();

}  // namespace engine::kernels
