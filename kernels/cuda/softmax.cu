// Softmax family on CUDA: softmax / log_softmax forward and backward, argmax.
// Math: over L of a contiguous [outer, L, inner] view (the op layer maps any axis to it):
//   softmax y = exp(x - m) / s; log_softmax y = (x - m) - log(s)   (m = max_L x, s = sum_L exp(x - m))
//   backward: softmax dx = y * (g - sum g*y); log_softmax dx = g - exp(y) * sum g
//   argmax: argmax_better order (first index on ties, NaN wins), shared with the CPU.
// exp/log/argmax order are the ENGINE_HD functions of kernels/cpu/softmax_cpu.h (same arithmetic as
// the CPU kernels; only the summation order differs).
// Kernels (64-bit index math; no atomics: deterministic; sizes > 0, checked by the op layer):
//   *_tile_kernel    inner == 1 and L <= 32 (NHWC logits: millions of short contiguous rows). One
//                    THREAD per row: a block of 128 threads works on tiles of 128..2048 consecutive
//                    rows staged in shared memory (common.cuh row tiles: cp.async fetches, 16-byte
//                    when L is odd and the pointers aligned; odd row stride, so the 32 rows a warp
//                    reads sit in 32 banks). Each thread reduces its row sequentially from the tile,
//                    writes its outputs into the tile, and the block stores the tile coalesced. The
//                    forward computes exp once per element (kept in the tile, then scaled). Forward
//                    and argmax are double-buffered on a resident grid (cuda::pipelined_tiles: the
//                    next tile streams in while this one is computed); the backward fetches its g and
//                    y tiles together, one tile per block. Argmax writes its i64 per row directly.
//   *_row_kernel<G>  inner == 1, L > 32: a group of G = 32 lanes per row, lanes stride the row,
//                    reductions by __shfl_xor_sync; loops are warp-uniform so every lane reaches
//                    every shuffle.
//   *_col_kernel     inner > 1 (a middle axis): a thread per (outer, inner) column, loops over L at
//                    stride inner, so neighbouring threads read neighbouring addresses (coalesced).
// Why tiles: the earlier warp-per-row kernels left 13 of 32 lanes idle on 19-float rows and paid 10
// shuffles per row; they were latency bound at 8-14 % of bandwidth.
// Roofline (H200, 4.25 TB/s device copy): softmax of [4,512,512,19] reads and writes 79.7 MB each
//   => ~38 us (~25 instructions per element, under the issue roof); its backward moves 239 MB =>
//   ~56 us; argmax reads 79.7 MB, writes 8.4 MB => ~21 us.
// Measured on an H200 (kernel only, L2 flushed, median of 20; tile kernels vs the warp-per-row ones
//   they replace): [4,512,512,19] softmax / log_softmax fwd 0.052 ms (72 % of the copy rate; was
//   0.284 ms, 13 %), bwd 0.061 ms (92 %; was 0.190 ms), argmax 0.034 ms (62 %; was 0.254 ms, 8 %).
//   L = 21: the same ratios. L = 2 (21 MB, launch/latency bound): fwd 0.016 ms (was 0.041), bwd
//   0.014 ms (was 0.028), argmax 0.009 ms (was 0.025). compute-sanitizer memcheck / racecheck /
//   synccheck clean.
// Tested by tests/test_softmax.cpp (CPU vs emulated CUDA; its tiles_c19 / tiles_c2 cases run the double-buffered loop
// with 2 blocks, so every block takes several tiles); benchmarked by bench_kernels --filter softmax.
#include "base/cuda_context.h"
#include "kernels/cpu/softmax_cpu.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/softmax_cuda.h"

namespace engine::kernels {
namespace {

constexpr int kBlock = 256;
constexpr int kTileBlock = 128;    // threads of the row-tile kernels
constexpr int kTileMaxL = 32;      // longer rows: a group of lanes per row
constexpr int kTileFloats = 2048;  // shared-memory budget per tile (8 KB; L = 19: 128 rows, 9.7 KB)
constexpr int64_t kMaxTileBlocks = 1 << 20;
constexpr unsigned kFull = 0xffffffffu;

// Storage (f32, bf16, f16; Storage<D>, kernels/shared_math.h): loads widen to f32, stores round once.
template <DType D>
using Elem = typename Storage<D>::T;
template <DType D>
__device__ __forceinline__ float ld(const Elem<D>* p) {
  return Storage<D>::load(__ldg(p));
}
template <DType D>
__device__ __forceinline__ Elem<D> st(float v) {
  return Storage<D>::store(v);
}

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

template <int G, bool kLog, DType D>
__global__ void __launch_bounds__(kBlock)
    softmax_fwd_row_kernel(const Elem<D>* __restrict__ x, Elem<D>* __restrict__ y, int64_t rows, int64_t L) {
  for_each_row_group<G>(rows, [&](int64_t r, int gl, bool valid) {
    const Elem<D>* xr = x + (valid ? r : 0) * L;
    Elem<D>* yr = y + (valid ? r : 0) * L;
    float m = -INFINITY;
    if (valid)
      for (int64_t c = gl; c < L; c += G) m = softmax_max_f(m, ld<D>(xr + c));
    m = group_max<G>(m);
    float s = 0.f;
    if (valid)
      for (int64_t c = gl; c < L; c += G) s += softmax_exp_f(ld<D>(xr + c) - m);
    s = group_sum<G>(s);
    if (!valid) return;
    if constexpr (kLog) {
      const float ls = softmax_log_f(s);
      for (int64_t c = gl; c < L; c += G) yr[c] = st<D>((ld<D>(xr + c) - m) - ls);
    } else {
      const float inv = 1.f / s;
      for (int64_t c = gl; c < L; c += G) yr[c] = st<D>(softmax_exp_f(ld<D>(xr + c) - m) * inv);
    }
  });
}

template <bool kLog, DType D>
__global__ void __launch_bounds__(kBlock) softmax_fwd_col_kernel(const Elem<D>* __restrict__ x, Elem<D>* __restrict__ y,
                                                                 int64_t outer, int64_t L, int64_t inner) {
  const int64_t total = outer * inner;
  for (int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
       idx += (int64_t)gridDim.x * blockDim.x) {
    const int64_t o = idx / inner, i = idx - o * inner;
    const Elem<D>* xc = x + o * L * inner + i;
    Elem<D>* yc = y + o * L * inner + i;
    float m = -INFINITY;
    for (int64_t l = 0; l < L; ++l) m = softmax_max_f(m, ld<D>(xc + l * inner));
    float s = 0.f;
    for (int64_t l = 0; l < L; ++l) s += softmax_exp_f(ld<D>(xc + l * inner) - m);
    if constexpr (kLog) {
      const float ls = softmax_log_f(s);
      for (int64_t l = 0; l < L; ++l) yc[l * inner] = st<D>((ld<D>(xc + l * inner) - m) - ls);
    } else {
      const float inv = 1.f / s;
      for (int64_t l = 0; l < L; ++l) yc[l * inner] = st<D>(softmax_exp_f(ld<D>(xc + l * inner) - m) * inv);
    }
  }
}

template <int G, bool kLog, DType D>
__global__ void __launch_bounds__(kBlock)
    softmax_bwd_row_kernel(const Elem<D>* __restrict__ g, const Elem<D>* __restrict__ y, Elem<D>* __restrict__ dx,
                           int64_t rows, int64_t L) {
  for_each_row_group<G>(rows, [&](int64_t r, int gl, bool valid) {
    const int64_t off = (valid ? r : 0) * L;
    float s = 0.f;
    if (valid)
      for (int64_t c = gl; c < L; c += G) s += kLog ? ld<D>(g + off + c) : ld<D>(g + off + c) * ld<D>(y + off + c);
    s = group_sum<G>(s);
    if (!valid) return;
    for (int64_t c = gl; c < L; c += G) {
      const float gv = ld<D>(g + off + c), yv = ld<D>(y + off + c);
      dx[off + c] = st<D>(kLog ? gv - softmax_exp_f(yv) * s : yv * (gv - s));
    }
  });
}

template <bool kLog, DType D>
__global__ void __launch_bounds__(kBlock)
    softmax_bwd_col_kernel(const Elem<D>* __restrict__ g, const Elem<D>* __restrict__ y, Elem<D>* __restrict__ dx,
                           int64_t outer, int64_t L, int64_t inner) {
  const int64_t total = outer * inner;
  for (int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
       idx += (int64_t)gridDim.x * blockDim.x) {
    const int64_t o = idx / inner, i = idx - o * inner;
    const int64_t base = o * L * inner + i;
    float s = 0.f;
    for (int64_t l = 0; l < L; ++l) {
      const int64_t k = base + l * inner;
      s += kLog ? ld<D>(g + k) : ld<D>(g + k) * ld<D>(y + k);
    }
    for (int64_t l = 0; l < L; ++l) {
      const int64_t k = base + l * inner;
      const float gv = ld<D>(g + k), yv = ld<D>(y + k);
      dx[k] = st<D>(kLog ? gv - softmax_exp_f(yv) * s : yv * (gv - s));
    }
  }
}

template <int G, DType D>
__global__ void __launch_bounds__(kBlock)
    argmax_row_kernel(const Elem<D>* __restrict__ x, int64_t* __restrict__ idx, int64_t rows, int64_t L) {
  for_each_row_group<G>(rows, [&](int64_t r, int gl, bool valid) {
    const Elem<D>* xr = x + (valid ? r : 0) * L;
    float bv = NAN;
    int64_t bi = -1;  // "no candidate yet": loses to any real candidate (see the merge below)
    if (valid) {
      for (int64_t c = gl; c < L; c += G) {
        const float v = ld<D>(xr + c);
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

template <DType D>
__global__ void __launch_bounds__(kBlock) argmax_col_kernel(const Elem<D>* __restrict__ x, int64_t* __restrict__ idx,
                                                            int64_t outer, int64_t L, int64_t inner) {
  const int64_t total = outer * inner;
  for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += (int64_t)gridDim.x * blockDim.x) {
    const int64_t o = t / inner, i = t - o * inner;
    const Elem<D>* xc = x + o * L * inner + i;
    float bv = ld<D>(xc);
    int64_t bi = 0;
    for (int64_t l = 1; l < L; ++l) {
      const float v = ld<D>(xc + l * inner);
      if (argmax_better(bv, bi, v, l)) {
        bv = v;
        bi = l;
      }
    }
    idx[t] = bi;
  }
}

// ------------------------------------------------------------------ row tiles (inner == 1, L <= 32)
// One thread per row of a shared-memory row tile (common.cuh): the block fetches tile_rows
// consecutive rows with asynchronous coalesced copies (16-byte when aligned), each thread computes
// its rows from the tile, and the forward stores the tile back coalesced. Forward and argmax are
// double-buffered (cuda::pipelined_tiles on a resident grid): the next tile's copies are in flight
// while the current one is computed.
__device__ __forceinline__ int tile_count(int64_t t, int tile_rows, int64_t rows) {
  return (int)min((int64_t)tile_rows, rows - t * tile_rows);
}

template <bool kLog, bool kVec, DType D>
__global__ void __launch_bounds__(kTileBlock)
    softmax_fwd_tile_kernel(const Elem<D>* __restrict__ x, Elem<D>* __restrict__ y, int64_t rows, int L,
                            int tile_rows) {
  const int lp = cuda::row_tile_stride(L);
  const int64_t ntiles = (rows + tile_rows - 1) / tile_rows;
  cuda::pipelined_tiles(
      ntiles, dynamic_smem<float>(), tile_rows * lp,
      [&](int64_t t, float* buf) {
        cuda::row_tile_fetch_as<D, kVec>(x + t * tile_rows * L, buf, tile_count(t, tile_rows, rows) * L, L);
      },
      [&](int64_t t, float* tile) {
        const int nr = tile_count(t, tile_rows, rows);
        for (int j = threadIdx.x; j < nr; j += blockDim.x) {
          float* row = tile + j * lp;
          float m = -INFINITY;
          for (int c = 0; c < L; ++c) m = softmax_max_f(m, row[c]);
          float s = 0.f;
          if constexpr (kLog) {
            for (int c = 0; c < L; ++c) s += softmax_exp_f(row[c] - m);
            const float ls = softmax_log_f(s);
            for (int c = 0; c < L; ++c) row[c] = (row[c] - m) - ls;
          } else {
            for (int c = 0; c < L; ++c) {
              const float e = softmax_exp_f(row[c] - m);
              row[c] = e;  // exp once per element: the output pass only scales
              s += e;
            }
            const float inv = 1.f / s;
            for (int c = 0; c < L; ++c) row[c] *= inv;
          }
        }
        __syncthreads();
        cuda::row_tile_store_as<D, kVec>(tile, y + t * tile_rows * L, nr * L, L);
      });
}

// Two tiles (g and y) fetched together; dx is written over the g tile and stored from there.
// Single-buffered (four tiles of L = 32 would not fit 48 KB); it is the least compute-bound kernel.
template <bool kLog, bool kVec, DType D>
__global__ void __launch_bounds__(kTileBlock)
    softmax_bwd_tile_kernel(const Elem<D>* __restrict__ g, const Elem<D>* __restrict__ y, Elem<D>* __restrict__ dx,
                            int64_t rows, int L, int tile_rows) {
  const int lp = cuda::row_tile_stride(L);
  float* tg = dynamic_smem<float>();
  float* ty = tg + tile_rows * lp;
  const int64_t ntiles = (rows + tile_rows - 1) / tile_rows;
  for (int64_t t = blockIdx.x; t < ntiles; t += gridDim.x) {
    const int64_t r0 = t * tile_rows;
    const int nr = tile_count(t, tile_rows, rows);
    cuda::row_tile_fetch_as<D, kVec>(g + r0 * L, tg, nr * L, L);
    cuda::row_tile_fetch_as<D, kVec>(y + r0 * L, ty, nr * L, L);
    cuda::cp_async_commit();
    cuda::cp_async_wait<0>();
    __syncthreads();
    for (int j = threadIdx.x; j < nr; j += blockDim.x) {
      float* gr = tg + j * lp;
      const float* yr = ty + j * lp;
      float s = 0.f;
      for (int c = 0; c < L; ++c) s += kLog ? gr[c] : gr[c] * yr[c];
      for (int c = 0; c < L; ++c) {
        const float gv = gr[c], yv = yr[c];
        gr[c] = kLog ? gv - softmax_exp_f(yv) * s : yv * (gv - s);
      }
    }
    __syncthreads();
    cuda::row_tile_store_as<D, kVec>(tg, dx + r0 * L, nr * L, L);
    __syncthreads();
  }
}

// One thread per row scans it in index order with argmax_better (the CPU's order); i64 results are
// written straight from the thread (consecutive threads, consecutive rows: coalesced).
template <bool kVec, DType D>
__global__ void __launch_bounds__(kTileBlock)
    argmax_tile_kernel(const Elem<D>* __restrict__ x, int64_t* __restrict__ idx, int64_t rows, int L, int tile_rows) {
  const int lp = cuda::row_tile_stride(L);
  const int64_t ntiles = (rows + tile_rows - 1) / tile_rows;
  cuda::pipelined_tiles(
      ntiles, dynamic_smem<float>(), tile_rows * lp,
      [&](int64_t t, float* buf) {
        cuda::row_tile_fetch_as<D, kVec>(x + t * tile_rows * L, buf, tile_count(t, tile_rows, rows) * L, L);
      },
      [&](int64_t t, float* tile) {
        const int nr = tile_count(t, tile_rows, rows);
        for (int j = threadIdx.x; j < nr; j += blockDim.x) {
          const float* row = tile + j * lp;
          float bv = row[0];
          int bi = 0;
          for (int c = 1; c < L; ++c) {
            const float v = row[c];
            if (argmax_better(bv, bi, v, c)) {
              bv = v;
              bi = c;
            }
          }
          idx[t * tile_rows + j] = bi;
        }
      });
}

// Rows per tile and dynamic shared memory of a tile launch (`buffers` tiles of tile_rows rows).
struct TileShape {
  int rows;
  size_t smem;
};
TileShape tile_shape(int L, int buffers) {
  TileShape t;
  t.rows = cuda::row_tile_rows(L, kTileBlock, kTileFloats);
  t.smem = (size_t)buffers * (size_t)t.rows * (size_t)cuda::row_tile_stride(L) * sizeof(float);
  return t;
}
int64_t tile_count_host(int64_t rows, const TileShape& t) { return (rows + t.rows - 1) / t.rows; }

unsigned row_grid(int64_t rows, int G) {
  const int64_t threads = rows * G;  // one group per row
  return cuda::grid_for(threads, kBlock);
}

}  // namespace

void softmax_fwd_cuda(DType dt, const void* xv, void* yv, int64_t outer, int64_t L, int64_t inner, bool log_,
                      cudaStream_t s) {
  if (outer * L * inner == 0) return;
  with_storage(dt, "softmax kernel", [&]<DType D>() {
    const Elem<D>* x = static_cast<const Elem<D>*>(xv);
    Elem<D>* y = static_cast<Elem<D>*>(yv);
    if (inner == 1 && L <= kTileMaxL) {
      const TileShape t = tile_shape((int)L, 2);
      const bool vec = cuda::row_tile_vec_ok_as<D>(L, x) && cuda::row_tile_vec_ok_as<D>(L, y);
      auto* k = log_ ? (vec ? softmax_fwd_tile_kernel<true, true, D> : softmax_fwd_tile_kernel<true, false, D>)
                     : (vec ? softmax_fwd_tile_kernel<false, true, D> : softmax_fwd_tile_kernel<false, false, D>);
      const unsigned grid = cuda::resident_grid(k, kTileBlock, t.smem, tile_count_host(outer, t), kMaxTileBlocks);
      GPU_LAUNCH(grid, kTileBlock, t.smem, s, k)(x, y, outer, (int)L, t.rows);
    } else if (inner == 1) {  // L > kTileMaxL: a warp per row
      auto* k = log_ ? softmax_fwd_row_kernel<32, true, D> : softmax_fwd_row_kernel<32, false, D>;
      GPU_LAUNCH(row_grid(outer, 32), kBlock, 0, s, k)(x, y, outer, L);
    } else {
      auto* k = log_ ? softmax_fwd_col_kernel<true, D> : softmax_fwd_col_kernel<false, D>;
      GPU_LAUNCH(cuda::grid_for(outer * inner, kBlock), kBlock, 0, s, k)(x, y, outer, L, inner);
    }
  });
  CUDA_CHECK_LAUNCH("softmax_fwd_kernel");
}

void softmax_bwd_cuda(DType dt, const void* gv, const void* yv, void* dxv, int64_t outer, int64_t L, int64_t inner,
                      bool log_, cudaStream_t s) {
  if (outer * L * inner == 0) return;
  with_storage(dt, "softmax kernel", [&]<DType D>() {
    const Elem<D>* g = static_cast<const Elem<D>*>(gv);
    const Elem<D>* y = static_cast<const Elem<D>*>(yv);
    Elem<D>* dx = static_cast<Elem<D>*>(dxv);
    if (inner == 1 && L <= kTileMaxL) {
      // One tile per block (not resident-grid): single-buffered, so blocks overlap each other.
      const TileShape t = tile_shape((int)L, 2);
      const bool vec =
          cuda::row_tile_vec_ok_as<D>(L, g) && cuda::row_tile_vec_ok_as<D>(L, y) && cuda::row_tile_vec_ok_as<D>(L, dx);
      auto* k = log_ ? (vec ? softmax_bwd_tile_kernel<true, true, D> : softmax_bwd_tile_kernel<true, false, D>)
                     : (vec ? softmax_bwd_tile_kernel<false, true, D> : softmax_bwd_tile_kernel<false, false, D>);
      const unsigned grid = (unsigned)std::min<int64_t>(tile_count_host(outer, t), kMaxTileBlocks);
      GPU_LAUNCH(grid, kTileBlock, t.smem, s, k)(g, y, dx, outer, (int)L, t.rows);
    } else if (inner == 1) {  // L > kTileMaxL: a warp per row
      auto* k = log_ ? softmax_bwd_row_kernel<32, true, D> : softmax_bwd_row_kernel<32, false, D>;
      GPU_LAUNCH(row_grid(outer, 32), kBlock, 0, s, k)(g, y, dx, outer, L);
    } else {
      auto* k = log_ ? softmax_bwd_col_kernel<true, D> : softmax_bwd_col_kernel<false, D>;
      GPU_LAUNCH(cuda::grid_for(outer * inner, kBlock), kBlock, 0, s, k)(g, y, dx, outer, L, inner);
    }
  });
  CUDA_CHECK_LAUNCH("softmax_bwd_kernel");
}

void argmax_cuda(DType dt, const void* xv, int64_t* idx, int64_t outer, int64_t L, int64_t inner, cudaStream_t s) {
  if (outer * L * inner == 0) return;
  with_storage(dt, "argmax kernel", [&]<DType D>() {
    const Elem<D>* x = static_cast<const Elem<D>*>(xv);
    if (inner == 1 && L <= kTileMaxL) {
      const TileShape t = tile_shape((int)L, 2);
      auto* k = cuda::row_tile_vec_ok_as<D>(L, x) ? argmax_tile_kernel<true, D> : argmax_tile_kernel<false, D>;
      const unsigned grid = cuda::resident_grid(k, kTileBlock, t.smem, tile_count_host(outer, t), kMaxTileBlocks);
      GPU_LAUNCH(grid, kTileBlock, t.smem, s, k)(x, idx, outer, (int)L, t.rows);
    } else if (inner == 1) {  // L > kTileMaxL: a warp per row
      GPU_LAUNCH(row_grid(outer, 32), kBlock, 0, s, argmax_row_kernel<32, D>)(x, idx, outer, L);
    } else {
      GPU_LAUNCH(cuda::grid_for(outer * inner, kBlock), kBlock, 0, s, argmax_col_kernel<D>)(x, idx, outer, L, inner);
    }
  });
  CUDA_CHECK_LAUNCH("argmax_kernel");
}

}  // namespace engine::kernels
