// Softmax family on CUDA: softmax / log_softmax forward and backward, argmax.
// Math: over L of a contiguous [outer, L, inner] view (the op layer maps any axis to it):
//   softmax y = exp(x - m) / s; log_softmax y = (x - m) - log(s)   (m = max_L x, s = sum_L exp(x - m))
//   backward: softmax dx = y * (g - sum g*y); log_softmax dx = g - exp(y) * sum g
//   argmax: argmax_better order (first index on ties, NaN wins), shared with the CPU.
// exp/log/argmax order are the ENGINE_HD functions of kernels/cpu/softmax_cpu.h (same arithmetic as
// the CPU kernels; only the summation order differs).
// Kernels (256 threads, grid-stride, 64-bit index math):
//   *_row_kernel<G>  inner == 1 (NHWC channels): a group of G = min(32, pow2ceil(L)) lanes per row,
//                    32 / G rows per warp (L = 19 -> a row per warp; L = 2..4 -> 8 rows per warp);
//                    lanes stride the row, reductions by __shfl_xor_sync inside the group. Loops are
//                    warp-uniform so every lane reaches every shuffle. The normalised values are
//                    recomputed from x rather than re-read from y (no read-after-write traffic).
//   *_col_kernel     inner > 1 (a middle axis): a thread per (outer, inner) column, loops over L at
//                    stride inner, so neighbouring threads read neighbouring addresses (coalesced).
// No atomics, no shared memory: deterministic. Constraints: sizes > 0 (checked by the op layer).
// Roofline (H100 SXM, ~3.35 TB/s): softmax of [4,512,512,19] reads 79.7 MB and writes 79.7 MB =>
//   ~48 us (~20 flops per element, far below the compute roof); its backward reads 159 MB and
//   writes 80 MB => ~71 us; argmax reads 79.7 MB, writes 8.4 MB of i64 => ~26 us.
// Tested by tests/test_softmax.cpp (CPU vs emulated CUDA); benchmarked by bench_kernels --filter softmax.
#include "engine/cuda_context.h"
#include "kernels/cpu/softmax_cpu.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/softmax_cuda.h"

namespace engine::kernels {
namespace {

constexpr int kBlock = 256;
constexpr unsigned kFull = 0xffffffffu;

// Warp-uniform iteration over row groups: calls body(row, lane_in_group, valid) for every group of
// 32 / G rows assigned to this warp.
template <int G, class Body>
__device__ __forceinline__ void for_each_row_group(int64_t rows, const Body& body) {
  constexpr int kRowsPerWarp = 32 / G;
  const int lane = threadIdx.x & 31;
  const int64_t warp = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
  const int64_t nwarps = ((int64_t)gridDim.x * blockDim.x) >> 5;
  for (int64_t base = warp * kRowsPerWarp; base < rows; base += nwarps * kRowsPerWarp) {
    const int64_t r = base + lane / G;
    body(r, lane % G, r < rows);
  }
}

template <int G>
__device__ __forceinline__ float group_max(float v) {
  ENGINE_UNROLL
  for (int o = G / 2; o > 0; o >>= 1) v = softmax_max_f(v, __shfl_xor_sync(kFull, v, o));
  return v;
}
template <int G>
__device__ __forceinline__ float group_sum(float v) {
  ENGINE_UNROLL
  for (int o = G / 2; o > 0; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
  return v;
}

template <int G, bool kLog>
__global__ void __launch_bounds__(kBlock) softmax_fwd_row_kernel(const float* __restrict__ x, float* __restrict__ y,
                                                                 int64_t rows, int64_t L) {
  for_each_row_group<G>(rows, [&](int64_t r, int gl, bool valid) {
    const float* xr = x + (valid ? r : 0) * L;
    float* yr = y + (valid ? r : 0) * L;
    float m = -INFINITY;
    if (valid)
      for (int64_t c = gl; c < L; c += G) m = softmax_max_f(m, __ldg(xr + c));
    m = group_max<G>(m);
    float s = 0.f;
    if (valid)
      for (int64_t c = gl; c < L; c += G) s += softmax_exp_f(__ldg(xr + c) - m);
    s = group_sum<G>(s);
    if (!valid) return;
    if constexpr (kLog) {
      const float ls = softmax_log_f(s);
      for (int64_t c = gl; c < L; c += G) yr[c] = (__ldg(xr + c) - m) - ls;
    } else {
      const float inv = 1.f / s;
      for (int64_t c = gl; c < L; c += G) yr[c] = softmax_exp_f(__ldg(xr + c) - m) * inv;
    }
  });
}

template <bool kLog>
__global__ void __launch_bounds__(kBlock) softmax_fwd_col_kernel(const float* __restrict__ x, float* __restrict__ y,
                                                                 int64_t outer, int64_t L, int64_t inner) {
  const int64_t total = outer * inner;
  for (int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
       idx += (int64_t)gridDim.x * blockDim.x) {
    const int64_t o = idx / inner, i = idx - o * inner;
    const float* xc = x + o * L * inner + i;
    float* yc = y + o * L * inner + i;
    float m = -INFINITY;
    for (int64_t l = 0; l < L; ++l) m = softmax_max_f(m, __ldg(xc + l * inner));
    float s = 0.f;
    for (int64_t l = 0; l < L; ++l) s += softmax_exp_f(__ldg(xc + l * inner) - m);
    if constexpr (kLog) {
      const float ls = softmax_log_f(s);
      for (int64_t l = 0; l < L; ++l) yc[l * inner] = (__ldg(xc + l * inner) - m) - ls;
    } else {
      const float inv = 1.f / s;
      for (int64_t l = 0; l < L; ++l) yc[l * inner] = softmax_exp_f(__ldg(xc + l * inner) - m) * inv;
    }
  }
}

template <int G, bool kLog>
__global__ void __launch_bounds__(kBlock) softmax_bwd_row_kernel(const float* __restrict__ g,
                                                                 const float* __restrict__ y,
                                                                 float* __restrict__ dx, int64_t rows, int64_t L) {
  for_each_row_group<G>(rows, [&](int64_t r, int gl, bool valid) {
    const int64_t off = (valid ? r : 0) * L;
    float s = 0.f;
    if (valid)
      for (int64_t c = gl; c < L; c += G) s += kLog ? __ldg(g + off + c) : __ldg(g + off + c) * __ldg(y + off + c);
    s = group_sum<G>(s);
    if (!valid) return;
    for (int64_t c = gl; c < L; c += G) {
      const float gv = __ldg(g + off + c), yv = __ldg(y + off + c);
      dx[off + c] = kLog ? gv - softmax_exp_f(yv) * s : yv * (gv - s);
    }
  });
}

template <bool kLog>
__global__ void __launch_bounds__(kBlock) softmax_bwd_col_kernel(const float* __restrict__ g,
                                                                 const float* __restrict__ y,
                                                                 float* __restrict__ dx, int64_t outer, int64_t L,
                                                                 int64_t inner) {
  const int64_t total = outer * inner;
  for (int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
       idx += (int64_t)gridDim.x * blockDim.x) {
    const int64_t o = idx / inner, i = idx - o * inner;
    const int64_t base = o * L * inner + i;
    float s = 0.f;
    for (int64_t l = 0; l < L; ++l) {
      const int64_t k = base + l * inner;
      s += kLog ? __ldg(g + k) : __ldg(g + k) * __ldg(y + k);
    }
    for (int64_t l = 0; l < L; ++l) {
      const int64_t k = base + l * inner;
      const float gv = __ldg(g + k), yv = __ldg(y + k);
      dx[k] = kLog ? gv - softmax_exp_f(yv) * s : yv * (gv - s);
    }
  }
}

template <int G>
__global__ void __launch_bounds__(kBlock) argmax_row_kernel(const float* __restrict__ x, int64_t* __restrict__ idx,
                                                            int64_t rows, int64_t L) {
  for_each_row_group<G>(rows, [&](int64_t r, int gl, bool valid) {
    const float* xr = x + (valid ? r : 0) * L;
    float bv = NAN;
    int64_t bi = -1;  // "no candidate yet": loses to any real candidate (see the merge below)
    if (valid) {
      for (int64_t c = gl; c < L; c += G) {
        const float v = __ldg(xr + c);
        if (bi < 0 || argmax_better(bv, bi, v, c)) {
          bv = v;
          bi = c;
        }
      }
    }
    ENGINE_UNROLL
    for (int o = G / 2; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(kFull, bv, o);
      const int64_t oi = __shfl_xor_sync(kFull, bi, o);
      if (oi >= 0 && (bi < 0 || argmax_better(bv, bi, ov, oi))) {
        bv = ov;
        bi = oi;
      }
    }
    if (valid && gl == 0) idx[r] = bi;
  });
}

__global__ void __launch_bounds__(kBlock) argmax_col_kernel(const float* __restrict__ x, int64_t* __restrict__ idx,
                                                            int64_t outer, int64_t L, int64_t inner) {
  const int64_t total = outer * inner;
  for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += (int64_t)gridDim.x * blockDim.x) {
    const int64_t o = t / inner, i = t - o * inner;
    const float* xc = x + o * L * inner + i;
    float bv = __ldg(xc);
    int64_t bi = 0;
    for (int64_t l = 1; l < L; ++l) {
      const float v = __ldg(xc + l * inner);
      if (argmax_better(bv, bi, v, l)) {
        bv = v;
        bi = l;
      }
    }
    idx[t] = bi;
  }
}

int group_lanes(int64_t L) { return L <= 4 ? 4 : L <= 8 ? 8 : L <= 16 ? 16 : 32; }

unsigned row_grid(int64_t rows, int G) {
  const int64_t threads = rows * G;  // one group per row
  return cuda::grid_for(threads, kBlock);
}

template <int G>
void launch_fwd_rows(const float* x, float* y, int64_t rows, int64_t L, bool log_, cudaStream_t s) {
  if (log_)
    GPU_LAUNCH(row_grid(rows, G), kBlock, 0, s, softmax_fwd_row_kernel<G, true>)(x, y, rows, L);
  else
    GPU_LAUNCH(row_grid(rows, G), kBlock, 0, s, softmax_fwd_row_kernel<G, false>)(x, y, rows, L);
}

template <int G>
void launch_bwd_rows(const float* g, const float* y, float* dx, int64_t rows, int64_t L, bool log_, cudaStream_t s) {
  if (log_)
    GPU_LAUNCH(row_grid(rows, G), kBlock, 0, s, softmax_bwd_row_kernel<G, true>)(g, y, dx, rows, L);
  else
    GPU_LAUNCH(row_grid(rows, G), kBlock, 0, s, softmax_bwd_row_kernel<G, false>)(g, y, dx, rows, L);
}

template <int G>
void launch_argmax_rows(const float* x, int64_t* idx, int64_t rows, int64_t L, cudaStream_t s) {
  GPU_LAUNCH(row_grid(rows, G), kBlock, 0, s, argmax_row_kernel<G>)(x, idx, rows, L);
}

}  // namespace

void softmax_fwd_cuda(const float* x, float* y, int64_t outer, int64_t L, int64_t inner, bool log_, cudaStream_t s) {
  if (outer * L * inner == 0) return;
  if (inner == 1) {
    switch (group_lanes(L)) {
      case 4: launch_fwd_rows<4>(x, y, outer, L, log_, s); break;
      case 8: launch_fwd_rows<8>(x, y, outer, L, log_, s); break;
      case 16: launch_fwd_rows<16>(x, y, outer, L, log_, s); break;
      default: launch_fwd_rows<32>(x, y, outer, L, log_, s); break;
    }
  } else {
    const unsigned grid = cuda::grid_for(outer * inner, kBlock);
    if (log_)
      GPU_LAUNCH(grid, kBlock, 0, s, softmax_fwd_col_kernel<true>)(x, y, outer, L, inner);
    else
      GPU_LAUNCH(grid, kBlock, 0, s, softmax_fwd_col_kernel<false>)(x, y, outer, L, inner);
  }
  CUDA_CHECK_LAUNCH("softmax_fwd_kernel");
}

void softmax_bwd_cuda(const float* g, const float* y, float* dx, int64_t outer, int64_t L, int64_t inner, bool log_,
                      cudaStream_t s) {
  if (outer * L * inner == 0) return;
  if (inner == 1) {
    switch (group_lanes(L)) {
      case 4: launch_bwd_rows<4>(g, y, dx, outer, L, log_, s); break;
      case 8: launch_bwd_rows<8>(g, y, dx, outer, L, log_, s); break;
      case 16: launch_bwd_rows<16>(g, y, dx, outer, L, log_, s); break;
      default: launch_bwd_rows<32>(g, y, dx, outer, L, log_, s); break;
    }
  } else {
    const unsigned grid = cuda::grid_for(outer * inner, kBlock);
    if (log_)
      GPU_LAUNCH(grid, kBlock, 0, s, softmax_bwd_col_kernel<true>)(g, y, dx, outer, L, inner);
    else
      GPU_LAUNCH(grid, kBlock, 0, s, softmax_bwd_col_kernel<false>)(g, y, dx, outer, L, inner);
  }
  CUDA_CHECK_LAUNCH("softmax_bwd_kernel");
}

void argmax_cuda(const float* x, int64_t* idx, int64_t outer, int64_t L, int64_t inner, cudaStream_t s) {
  if (outer * L * inner == 0) return;
  if (inner == 1) {
    switch (group_lanes(L)) {
      case 4: launch_argmax_rows<4>(x, idx, outer, L, s); break;
      case 8: launch_argmax_rows<8>(x, idx, outer, L, s); break;
      case 16: launch_argmax_rows<16>(x, idx, outer, L, s); break;
      default: launch_argmax_rows<32>(x, idx, outer, L, s); break;
    }
  } else {
    GPU_LAUNCH(cuda::grid_for(outer * inner, kBlock), kBlock, 0, s, argmax_col_kernel)(x, idx, outer, L, inner);
  }
  CUDA_CHECK_LAUNCH("argmax_kernel");
}

}  // namespace engine::kernels
