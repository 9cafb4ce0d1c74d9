// Reduction family on CUDA: sum / mean (scaled sum), max with argmax, and their backward.
// Math:   x is contiguous [outer, reduce, inner] (the op layer coalesces any axis set to this, see
//         engine/ops/reduce.cpp), out is [outer, inner]:
//           sum:  out[o, i] = scale * sum_r x[o, r, i]          (mean: scale = 1 / reduce)
//           max:  vals[o, i] = max_r x[o, r, i], idx[o, i] = first r attaining it (NaN wins, first NaN;
//                 the rule is reduce_max_better() in kernels/cpu/reduce_cpu.h, shared with the CPU)
//           sum backward: dx[o, r, i] = scale * g[o, i];  max backward: dx[o, r, i] = (idx[o, i] == r) * g[o, i]
// Kernels (256 threads, grid-stride loops over "tasks", 64-bit index math throughout):
//   reduce_row_warp_fwd_kernel   inner == 1, segments <= 256 elements: one warp per (row, segment),
//                                lanes stride the segment, __shfl_xor_sync butterfly.
//   reduce_row_block_fwd_kernel  inner == 1, longer segments: one block per (row, segment), 16-byte
//                                aligned float4 loads for the body, warp shuffles + 8 partials in smem.
//   reduce_col_fwd_kernel        inner > 1: a block covers bx = min(32, pow2ceil(inner)) columns x
//                                by = 256 / bx row slices of one (outer, segment) task, so each warp reads
//                                whole 32-float runs (coalesced); lanes of one column are merged with
//                                shuffles, the 8 warps through static shared memory in a fixed order.
//   When outer * inner gives too few tasks for the GPU and `reduce` is long, the reduced axis is split
//   into `splits` segments: pass 1 writes [outer, splits, inner] partials to a workspace (allocated
//   by the op layer), pass 2 reduces the partials with the same kernels. No atomics: every sum is
//   evaluated in an order fixed by the shape, so results are bit-identical run to run.
//   reduce_sum_bwd_kernel / reduce_max_bwd_kernel: one thread per dx element (broadcast / scatter).
// Storage: x (forward) and dx (backward) are f32, bf16 or f16 (Storage<D>, kernels/shared_math.h):
// x widened on load, dx rounded once on store; values, g and partials f32, indices i64. Sizes > 0
// (the op layer handles empty tensors).
// Builds under nvcc (sm_80, sm_90; no spills) and the host compiler through kernels/emu/cuemu.h.
// Tested by tests/test_reduce.cpp (CPU vs emulated CUDA); benchmarked by bench_kernels (bench_reduce.cpp).
#include <algorithm>
#include <cstdint>

#include "base/cuda_context.h"
#include "kernels/cpu/reduce_cpu.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/reduce_cuda.h"
#include "kernels/shared_math.h"

namespace engine::kernels {
namespace {

constexpr int kWarp = cuda::kWarp;
constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr unsigned kFull = 0xffffffffu;
constexpr int64_t kTargetTasks = 1024;  // enough blocks to fill a large GPU several times over
constexpr int64_t kRowMinSeg = 2048;    // shortest row segment worth a block of its own
constexpr int64_t kMaxGrid = 1 << 20;

__host__ __device__ __forceinline__ int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

struct SumOp {
  struct Acc {
    float v;
  };
  static __device__ __forceinline__ Acc init() {
    Acc a;
    a.v = 0.f;
    return a;
  }
  static __device__ __forceinline__ void step(Acc& a, float x, int64_t) { a.v += x; }
  static __device__ __forceinline__ void merge(Acc& a, const Acc& b) { a.v += b.v; }
  static __device__ __forceinline__ Acc shfl_xor(const Acc& a, int o) {
    Acc b;
    b.v = __shfl_xor_sync(kFull, a.v, o);
    return b;
  }
  static __device__ __forceinline__ void store(const Acc& a, float scale, float* ov, int64_t*, int64_t k) {
    ov[k] = a.v * scale;
  }
};

struct MaxOp {
  struct Acc {
    float v;
    int64_t i;
  };
  static __device__ __forceinline__ Acc init() {
    Acc a;
    a.v = -INFINITY;
    a.i = INT64_MAX;  // any real element wins a tie against the empty accumulator
    return a;
  }
  static __device__ __forceinline__ void step(Acc& a, float x, int64_t r) {
    if (reduce_max_better(a.v, a.i, x, r)) {
      a.v = x;
      a.i = r;
    }
  }
  static __device__ __forceinline__ void merge(Acc& a, const Acc& b) { step(a, b.v, b.i); }
  static __device__ __forceinline__ Acc shfl_xor(const Acc& a, int o) {
    Acc b;
    b.v = __shfl_xor_sync(kFull, a.v, o);
    b.i = (int64_t)__shfl_xor_sync(kFull, (long long)a.i, o);
    return b;
  }
  static __device__ __forceinline__ void store(const Acc& a, float, float* ov, int64_t* oi, int64_t k) {
    ov[k] = a.v;
    oi[k] = a.i;
  }
};

// This thread's share (lane, lane + nlanes, ...) of elements [b, e) of row `row` (rows of `len`).
// Plain input (xi == null): element j has index j, and 16-byte aligned float4 loads are used for the
// body. Partial input (pass 2 of max): indices come from xi.
template <class Op, DType D>
__device__ __forceinline__ typename Op::Acc row_segment(const typename Storage<D>::T* __restrict__ x,
                                                        const int64_t* __restrict__ xi, int64_t row, int64_t len,
                                                        int64_t b, int64_t e, int lane, int nlanes) {
  using S = Storage<D>;
  typename Op::Acc acc = Op::init();
  const typename S::T* p = x + row * len;
  if (xi != nullptr) {
    const int64_t* pi = xi + row * len;
    for (int64_t j = b + lane; j < e; j += nlanes) Op::step(acc, S::load(p[j]), pi[j]);
    return acc;
  }
  // f32: floats past a 16-byte boundary. 16-bit x takes the same partition as a widened f32 copy of
  // it would (allocations are 256-byte aligned), so it sums in the same order, to the same bits.
  int64_t mis;
  if constexpr (D == DType::F32)
    mis = (int64_t)(reinterpret_cast<uintptr_t>(p + b) & 15u) / 4;
  else
    mis = (row * len + b) & 3;
  const int64_t head = min64((4 - mis) & 3, e - b);
  for (int64_t j = b + lane; j < b + head; j += nlanes) Op::step(acc, S::load(p[j]), j);
  const int64_t vb = b + head, nv = (e - vb) / 4;
  for (int64_t k = lane; k < nv; k += nlanes) {
    const int64_t j = vb + 4 * k;
    float4 v;
    if constexpr (D == DType::F32) {
      v = reinterpret_cast<const float4*>(p + vb)[k];
    } else {
      v = make_float4(S::load(p[j]), S::load(p[j + 1]), S::load(p[j + 2]), S::load(p[j + 3]));
    }
    Op::step(acc, v.x, j);
    Op::step(acc, v.y, j + 1);
    Op::step(acc, v.z, j + 2);
    Op::step(acc, v.w, j + 3);
  }
  for (int64_t j = vb + 4 * nv + lane; j < e; j += nlanes) Op::step(acc, S::load(p[j]), j);
  return acc;
}

// Butterfly over the lanes that differ in bits >= `from` (from = 1: the whole warp).
template <class Op>
__device__ __forceinline__ void warp_merge(typename Op::Acc& a, int from) {
  for (int o = kWarp / 2; o >= from; o >>= 1) Op::merge(a, Op::shfl_xor(a, o));
}

// Task t = row * splits + s reduces elements [s * seg, min(len, (s + 1) * seg)) of row `row`.
template <class Op, DType D>
__global__ void __launch_bounds__(kThreads)
    reduce_row_warp_fwd_kernel(const typename Storage<D>::T* __restrict__ x, const int64_t* __restrict__ xi,
                               int64_t len, int64_t splits, int64_t seg, int64_t tasks, float scale,
                               float* __restrict__ ov, int64_t* __restrict__ oi) {
  const int warp = (int)threadIdx.x / kWarp, lane = (int)threadIdx.x % kWarp;
  for (int64_t t = (int64_t)blockIdx.x * kWarps + warp; t < tasks; t += (int64_t)gridDim.x * kWarps) {
    const int64_t row = t / splits, s = t % splits;
    const int64_t b = s * seg, e = min64(len, b + seg);
    typename Op::Acc acc = row_segment<Op, D>(x, xi, row, len, b, e, lane, kWarp);
    warp_merge<Op>(acc, 1);
    if (lane == 0) Op::store(acc, scale, ov, oi, t);
  }
}

template <class Op, DType D>
__global__ void __launch_bounds__(kThreads)
    reduce_row_block_fwd_kernel(const typename Storage<D>::T* __restrict__ x, const int64_t* __restrict__ xi,
                                int64_t len, int64_t splits, int64_t seg, int64_t tasks, float scale,
                                float* __restrict__ ov, int64_t* __restrict__ oi) {
  __shared__ typename Op::Acc sm[kWarps];
  const int warp = (int)threadIdx.x / kWarp, lane = (int)threadIdx.x % kWarp;
  for (int64_t t = blockIdx.x; t < tasks; t += gridDim.x) {
    const int64_t row = t / splits, s = t % splits;
    const int64_t b = s * seg, e = min64(len, b + seg);
    typename Op::Acc acc = row_segment<Op, D>(x, xi, row, len, b, e, (int)threadIdx.x, kThreads);
    warp_merge<Op>(acc, 1);
    if (lane == 0) sm[warp] = acc;
    __syncthreads();
    if (warp == 0) {
      typename Op::Acc a = lane < kWarps ? sm[lane] : Op::init();
      for (int o = kWarps / 2; o >= 1; o >>= 1) Op::merge(a, Op::shfl_xor(a, o));
      if (lane == 0) Op::store(a, scale, ov, oi, t);
    }
    __syncthreads();  // sm is reused by the next task
  }
}

// Task t = (o * splits + s) * tiles + tile: columns [tile * bx, tile * bx + bx) of outer slice o, rows
// [s * seg, min(reduce, (s + 1) * seg)). Output at (o * splits + s) * inner + i.
template <class Op, DType D>
__global__ void __launch_bounds__(kThreads)
    reduce_col_fwd_kernel(const typename Storage<D>::T* __restrict__ x, const int64_t* __restrict__ xi, int64_t reduce,
                          int64_t inner, int64_t splits, int64_t seg, int64_t tiles, int64_t tasks, int bx_log2,
                          float scale, float* __restrict__ ov, int64_t* __restrict__ oi) {
  __shared__ typename Op::Acc sm[kWarps][kWarp];
  const int bx = 1 << bx_log2, by = kThreads >> bx_log2;
  const int tx = (int)threadIdx.x & (bx - 1), ty = (int)threadIdx.x >> bx_log2;
  const int warp = (int)threadIdx.x / kWarp, lane = (int)threadIdx.x % kWarp;
  for (int64_t t = blockIdx.x; t < tasks; t += gridDim.x) {
    const int64_t tile = t % tiles, q = t / tiles, s = q % splits, o = q / splits;
    const int64_t i = tile * bx + tx;
    const int64_t b = s * seg, e = min64(reduce, b + seg);
    typename Op::Acc acc = Op::init();
    if (i < inner) {
      const int64_t base = o * reduce * inner + i;
      for (int64_t r = b + ty; r < e; r += by) {
        const int64_t p = base + r * inner;
        Op::step(acc, Storage<D>::load(x[p]), xi != nullptr ? xi[p] : r);
      }
    }
    warp_merge<Op>(acc, bx);  // lanes of one column inside the warp
    if (lane < bx) sm[warp][lane] = acc;
    __syncthreads();
    if ((int)threadIdx.x < bx && i < inner) {  // warp 0, lane == tx
      typename Op::Acc a = sm[0][tx];
      for (int w = 1; w < kWarps; ++w) Op::merge(a, sm[w][tx]);
      Op::store(a, scale, ov, oi, (o * splits + s) * inner + i);
    }
    __syncthreads();
  }
}

// The backward kernels view x as [outer, reduce, inner]: for element (o, r, i), the layout `reduced`
// gives g's (and the max's indices') offset o * inner + i, and `along` gives r.
// StridedLayout::offset_at unravels in 32-bit arithmetic below 2^32 elements (64-bit division is a
// called routine on a GPU).
template <DType D>
__global__ void __launch_bounds__(kThreads)
    reduce_sum_bwd_kernel(const float* __restrict__ g, typename Storage<D>::T* __restrict__ dx, int64_t n,
                          StridedLayout reduced, float scale) {
  const bool idx32 = fits_index32(n);
  for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x)
    dx[e] = Storage<D>::store(g[reduced.offset_at(e, idx32)] * scale);
}

template <DType D>
__global__ void __launch_bounds__(kThreads)
    reduce_max_bwd_kernel(const float* __restrict__ g, const int64_t* __restrict__ idx,
                          typename Storage<D>::T* __restrict__ dx, int64_t n, StridedLayout reduced,
                          StridedLayout along) {
  const bool idx32 = fits_index32(n);
  for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t k = reduced.offset_at(e, idx32);
    dx[e] = Storage<D>::store(idx[k] == along.offset_at(e, idx32) ? g[k] : 0.f);
  }
}

// [outer, reduce, inner] with the given strides (elements).
StridedLayout reduce_bwd_layout(int64_t outer, int64_t reduce, int64_t inner, int64_t s_outer, int64_t s_reduce,
                                int64_t s_inner) {
  StridedLayout l;
  l.ndim = 3;
  l.shape[0] = outer, l.shape[1] = reduce, l.shape[2] = inner;
  l.stride[0] = s_outer, l.stride[1] = s_reduce, l.stride[2] = s_inner;
  return l;
}

// ---------------------------------------------------------------- host side
struct Plan {
  bool rows = true;
  int64_t splits = 1, seg = 0, tiles = 1;
  int bx_log2 = 5;
};

// Depends on the shape only (never on the device), so every run uses the same summation order.
Plan make_plan(int64_t outer, int64_t reduce, int64_t inner) {
  Plan p;
  p.rows = inner == 1;
  int64_t base = outer, min_seg = kRowMinSeg;
  if (!p.rows) {
    int bx = 1;
    p.bx_log2 = 0;
    while (bx < inner && bx < kWarp) {
      bx *= 2;
      ++p.bx_log2;
    }
    p.tiles = ceil_div(inner, bx);
    base = outer * p.tiles;
    min_seg = (int64_t)(kThreads / bx) * 8;  // 8 rows per thread at least
  }
  if (base < kTargetTasks / 2 && reduce >= 2 * min_seg)
    p.splits = std::min(ceil_div(reduce, min_seg), std::max<int64_t>(1, kTargetTasks / base));
  p.seg = ceil_div(reduce, p.splits);
  if (p.rows && p.splits > 1) p.seg = (p.seg + 3) / 4 * 4;  // keeps segment starts 16-byte aligned
  p.splits = ceil_div(reduce, p.seg);
  return p;
}

unsigned grid_of(int64_t tasks, int64_t per_block) { return (unsigned)std::min(ceil_div(tasks, per_block), kMaxGrid); }

template <class Op, DType D>
void launch_rows(const typename Storage<D>::T* x, const int64_t* xi, int64_t rows, int64_t len, int64_t splits,
                 int64_t seg, float scale, float* ov, int64_t* oi, cudaStream_t stream) {
  const int64_t tasks = rows * splits;
  if (seg <= 256) {
    GPU_LAUNCH(grid_of(tasks, kWarps), kThreads, 0, stream, reduce_row_warp_fwd_kernel<Op, D>)
    (x, xi, len, splits, seg, tasks, scale, ov, oi);
    CUDA_CHECK_LAUNCH("reduce_row_warp_fwd_kernel");
  } else {
    GPU_LAUNCH(grid_of(tasks, 1), kThreads, 0, stream, reduce_row_block_fwd_kernel<Op, D>)
    (x, xi, len, splits, seg, tasks, scale, ov, oi);
    CUDA_CHECK_LAUNCH("reduce_row_block_fwd_kernel");
  }
}

template <class Op, DType D>
void launch_cols(const typename Storage<D>::T* x, const int64_t* xi, int64_t outer, int64_t reduce, int64_t inner,
                 int64_t splits, int64_t seg, const Plan& p, float scale, float* ov, int64_t* oi, cudaStream_t stream) {
  const int64_t tasks = outer * splits * p.tiles;
  GPU_LAUNCH(grid_of(tasks, 1), kThreads, 0, stream, reduce_col_fwd_kernel<Op, D>)
  (x, xi, reduce, inner, splits, seg, p.tiles, tasks, p.bx_log2, scale, ov, oi);
  CUDA_CHECK_LAUNCH("reduce_col_fwd_kernel");
}

// Pass 1 reads x in its storage type D; pass 2 (split reductions) reads the f32 partials.
template <class Op, DType D>
void reduce_fwd(const typename Storage<D>::T* x, float* ov, int64_t* oi, int64_t outer, int64_t reduce, int64_t inner,
                float scale, float* wv, int64_t* wi, cudaStream_t stream) {
  if (outer <= 0 || reduce <= 0 || inner <= 0) return;
  const Plan p = make_plan(outer, reduce, inner);
  if (p.rows) {
    if (p.splits == 1) return launch_rows<Op, D>(x, nullptr, outer, reduce, 1, reduce, scale, ov, oi, stream);
    launch_rows<Op, D>(x, nullptr, outer, reduce, p.splits, p.seg, 1.f, wv, wi, stream);
    return launch_rows<Op, DType::F32>(wv, wi, outer, p.splits, 1, p.splits, scale, ov, oi, stream);
  }
  if (p.splits == 1) return launch_cols<Op, D>(x, nullptr, outer, reduce, inner, 1, reduce, p, scale, ov, oi, stream);
  launch_cols<Op, D>(x, nullptr, outer, reduce, inner, p.splits, p.seg, p, 1.f, wv, wi, stream);
  launch_cols<Op, DType::F32>(wv, wi, outer, p.splits, inner, 1, p.splits, p, scale, ov, oi, stream);
}

}  // namespace

int64_t reduce_workspace_cuda(int64_t outer, int64_t reduce, int64_t inner) {
  if (outer <= 0 || reduce <= 0 || inner <= 0) return 0;
  const Plan p = make_plan(outer, reduce, inner);
  return p.splits > 1 ? outer * p.splits * inner : 0;
}

void reduce_sum_fwd_cuda(DType xt, const void* x, float* out, int64_t outer, int64_t reduce, int64_t inner, float scale,
                         float* ws, cudaStream_t stream) {
  with_storage(xt, "reduce_sum_fwd_cuda", [&]<DType D>() {
    reduce_fwd<SumOp, D>(static_cast<const typename Storage<D>::T*>(x), out, nullptr, outer, reduce, inner, scale, ws,
                         nullptr, stream);
  });
}

void reduce_max_fwd_cuda(DType xt, const void* x, float* vals, int64_t* idx, int64_t outer, int64_t reduce,
                         int64_t inner, float* ws_v, int64_t* ws_i, cudaStream_t stream) {
  with_storage(xt, "reduce_max_fwd_cuda", [&]<DType D>() {
    reduce_fwd<MaxOp, D>(static_cast<const typename Storage<D>::T*>(x), vals, idx, outer, reduce, inner, 1.f, ws_v,
                         ws_i, stream);
  });
}

void reduce_sum_bwd_cuda(const float* g, DType dxt, void* dx, int64_t outer, int64_t reduce, int64_t inner, float scale,
                         cudaStream_t stream) {
  const int64_t n = outer * reduce * inner;
  if (n <= 0) return;
  with_storage(dxt, "reduce_sum_bwd_cuda", [&]<DType D>() {
    GPU_LAUNCH(cuda::grid_for(n, kThreads), kThreads, 0, stream, reduce_sum_bwd_kernel<D>)
    (g, static_cast<typename Storage<D>::T*>(dx), n, reduce_bwd_layout(outer, reduce, inner, inner, 0, 1), scale);
    CUDA_CHECK_LAUNCH("reduce_sum_bwd_kernel");
  });
}

void reduce_max_bwd_cuda(const float* g, const int64_t* idx, DType dxt, void* dx, int64_t outer, int64_t reduce,
                         int64_t inner, cudaStream_t stream) {
  const int64_t n = outer * reduce * inner;
  if (n <= 0) return;
  with_storage(dxt, "reduce_max_bwd_cuda", [&]<DType D>() {
    GPU_LAUNCH(cuda::grid_for(n, kThreads), kThreads, 0, stream, reduce_max_bwd_kernel<D>)
    (g, idx, static_cast<typename Storage<D>::T*>(dx), n, reduce_bwd_layout(outer, reduce, inner, inner, 0, 1),
     reduce_bwd_layout(outer, reduce, inner, 0, 1, 0));
    CUDA_CHECK_LAUNCH("reduce_max_bwd_kernel");
  });
}

}  // namespace engine::kernels
