// Pooling family: the CPU kernels (kernels/cpu/pool_cpu.cpp) and the window math shared with the
// CUDA kernels (kernels/cuda/pool.cu includes this header for the ENGINE_HD functions, so the two
// backends cannot drift apart).
//
// x is a contiguous [N, H, W, C] tensor (NHWC), y a contiguous [N, Ho, Wo, C] tensor.
#pragma once
#include <cstdint>

#include "kernels/shared_math.h"

namespace engine::kernels {

// How output windows are formed and how an average is divided.
enum class PoolMode : uint8_t {
  AvgExclusive,  // kernel/stride/padding windows, divisor = number of in-bounds cells (Paddle exclusive=True)
  AvgInclusive,  // same windows, divisor = kh*kw (Paddle exclusive=False; padding counts as zeros)
  Adaptive,      // bin i of n over L: [floor(i*L/n), ceil((i+1)*L/n)), divisor = cells in the bin
  Max,           // kernel/stride/padding windows, max over in-bounds cells (padding acts as -inf)
};

// Geometry of one pooling op; trivially copyable (passed by value to CUDA kernels). Sizes are 32-bit
// (the op layer checks N*H*W, N*Ho*Wo, C and the adaptive products H*Ho, W*Wo fit in int32) so the
// window math compiles to inline 32-bit integer ops on the GPU; element offsets are 64-bit.
struct Pool2dGeom {
  int n, h, w, c;  // input [N, H, W, C]
  int oh, ow;      // output spatial size
  int kh, kw, sh, sw, ph, pw;
  PoolMode mode;

  // Output size of a kernel/stride/padding pooling (Paddle/PyTorch ceil_mode=False):
  // floor((in + 2p - k) / s) + 1. The op layer checks in + 2p >= k.
  static ENGINE_HD int out_size(int in, int k, int s, int p) { return (in + 2 * p - k) / s + 1; }

  // In-bounds input range [b, e) of output index o along one axis.
  ENGINE_HD void window(int o, int in, int out, int k, int s, int p, int& b, int& e) const {
    if (mode == PoolMode::Adaptive) {
      b = (o * in) / out;
      e = ((o + 1) * in + out - 1) / out;
    } else {
      b = o * s - p;
      e = b + k;
      if (b < 0) b = 0;
      if (e > in) e = in;
    }
  }
  ENGINE_HD void window_h(int o, int& b, int& e) const { window(o, h, oh, kh, sh, ph, b, e); }
  ENGINE_HD void window_w(int o, int& b, int& e) const { window(o, w, ow, kw, sw, pw, b, e); }

  // Inclusive range [lo, hi] of the outputs whose window contains input index i along one axis
  // (empty when lo > hi): the inverse of window(), used by the gather-form backward.
  ENGINE_HD void covering(int i, int in, int out, int k, int s, int p, int& lo, int& hi) const {
    if (mode == PoolMode::Adaptive) {
      // start(o) <= i  <=>  o < (i+1)*out/in;  end(o) > i  <=>  o >= floor(i*out/in)
      lo = (i * out) / in;
      hi = ((i + 1) * out + in - 1) / in - 1;
    } else {
      // o*s - p <= i <= o*s - p + k - 1
      const int num = i + p - k + 1;
      lo = num <= 0 ? 0 : (num + s - 1) / s;
      hi = (i + p) / s;
    }
    if (hi > out - 1) hi = out - 1;
    if (lo < 0) lo = 0;
  }
  ENGINE_HD void covering_h(int i, int& lo, int& hi) const { covering(i, h, oh, kh, sh, ph, lo, hi); }
  ENGINE_HD void covering_w(int i, int& lo, int& hi) const { covering(i, w, ow, kw, sw, pw, lo, hi); }

  // 1 / divisor of the average over the in-bounds window [hb, he) x [wb, we). On the GPU the fast
  // reciprocal (within 2 ulp of the CPU's correctly rounded one) avoids the IEEE division's slow-path
  // subroutine call, which makes ptxas spill in the backward kernels on sm_80.
  ENGINE_HD float avg_scale(int hb, int he, int wb, int we) const {
    const int cnt = mode == PoolMode::AvgInclusive ? kh * kw : (he - hb) * (we - wb);
#if defined(__CUDA_ARCH__)
    return __fdividef(1.f, (float)cnt);
#else
    return 1.f / (float)cnt;
#endif
  }

  // Element offset of (n, y, x, 0) in an [N, Y, X, C] tensor.
  ENGINE_HD int64_t offset(int64_t ni, int yi, int xi, int Y, int X) const {
    return ((ni * Y + yi) * (int64_t)X + xi) * (int64_t)c;
  }
};

// Max pooling's comparison: strictly greater wins (ties keep the first cell in row-major window
// order, as PyTorch); a NaN beats any number and the first NaN is kept (NaN propagates).
ENGINE_HD bool pool_max_better(float v, float best) { return v > best || (v != v && best == best); }

// ---------------------------------------------------------------------------- CPU kernels
// dt: the storage type of x, y, gy, gx (f32, bf16 or f16; mixed precision); sums and comparisons are
// f32 and stores round once (Storage<D>); max indices are int32.
// Average pooling (AvgExclusive, AvgInclusive, Adaptive): y = sum over the window / divisor.
void avg_pool2d_fwd_cpu(DType dt, const void* x, void* y, const Pool2dGeom& g);
// dx[n,h,w,c] = sum over the outputs covering (h, w) of gy * scale(output). Gather form, deterministic.
void avg_pool2d_bwd_cpu(DType dt, const void* gy, void* gx, const Pool2dGeom& g);
// Max pooling: y = max over the window, idx = h*W + w of the chosen cell (int32, [N, Ho, Wo, C]).
void max_pool2d_fwd_cpu(DType dt, const void* x, void* y, int32_t* idx, const Pool2dGeom& g);
// dx[n,h,w,c] = sum over the outputs covering (h, w) whose idx is h*W + w of gy.
void max_pool2d_bwd_cpu(DType dt, const void* gy, const int32_t* idx, void* gx, const Pool2dGeom& g);

}  // namespace engine::kernels
