// Shared helpers for the hand-written CUDA kernels. Every kernels/cuda/*.cu includes this first.
// Under nvcc it is plain CUDA; under the host compiler (ENGINE_CUDA_EMULATED) kernels/emu/cuemu.h
// maps the CUDA built-ins onto the CPU, so the same source runs in CI without a GPU.
// Holds: grid sizing, 16-byte vector access, reductions, cp.async wrappers, and the shared-memory
// "row tiles" (one thread per short row) with their double-buffered tile loop, used by softmax.cu
// and loss.cu. Tested through those kernels (tests/test_softmax.cpp, tests/test_loss.cpp).
#pragma once
#include <cstdint>
#include <cstring>

#include "kernels/emu/cuemu.h"
#include "kernels/shared_math.h"
#if !defined(__CUDACC__)
#include <algorithm>
// Under the host compiler `#pragma unroll` is unknown; it is only a hint, so do not warn.
#pragma GCC diagnostic ignored "-Wunknown-pragmas"
#endif

namespace engine::kernels::cuda {

constexpr int kWarp = 32;

// Grid size for a grid-stride loop over n items: enough blocks to fill the machine, capped so
// index math stays cheap; each thread then strides by gridDim.x * blockDim.x.
inline unsigned grid_for(int64_t n, int block, int64_t max_blocks = 65535 * 4) {
  int64_t g = (n + block - 1) / block;
  if (g < 1) g = 1;
  if (g > max_blocks) g = max_blocks;
  return (unsigned)g;
}

// True when p is 16-byte aligned, i.e. float4/int4 accesses are legal. Host and device.
ENGINE_HD bool is_aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// V = 4: one 16-byte access (p must be 16-byte aligned); V = 1: a scalar one. For float and int32.
template <class T>
struct Vec4Of;
template <>
struct Vec4Of<float> {
  using type = float4;
};
template <>
struct Vec4Of<int32_t> {
  using type = int4;
};

template <int V, class T>
__device__ __forceinline__ void load_vec(const T* p, T (&v)[V]) {
  if constexpr (V == 4) {
    const typename Vec4Of<T>::type a = *reinterpret_cast<const typename Vec4Of<T>::type*>(p);
    v[0] = a.x;
    v[1] = a.y;
    v[2] = a.z;
    v[3] = a.w;
  } else {
    v[0] = *p;
  }
}

template <int V, class T>
__device__ __forceinline__ void store_vec(T* p, const T (&v)[V]) {
  if constexpr (V == 4) {
    typename Vec4Of<T>::type a;
    a.x = v[0];
    a.y = v[1];
    a.z = v[2];
    a.w = v[3];
    *reinterpret_cast<typename Vec4Of<T>::type*>(p) = a;
  } else {
    *p = v[0];
  }
}

// The grid-stride loop of the contiguous elementwise kernels: four(i) for i = 0, 4, 8, ... below
// n / 4 * 4 when `vectorised` (every operand aligned for 4-element accesses), then one(i) for each
// remaining element (all of them when not vectorised). Launch with grid_for((n + 3) / 4, block).
template <class Four, class One>
__device__ __forceinline__ void grid_stride_by4(int64_t n, bool vectorised, const Four& four, const One& one) {
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  const int64_t tid = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  const int64_t vec_end = vectorised ? n / 4 * 4 : 0;
  for (int64_t v = tid; v < vec_end / 4; v += stride) four(4 * v);
  for (int64_t i = vec_end + tid; i < n; i += stride) one(i);
}

// Four consecutive elements of storage type D (f32, bf16, f16; Storage<D> in shared_math.h) as one
// access, widened to / rounded from f32: 16 bytes for f32, 8 bytes for the 16-bit types (element 0 in
// the low half of the first word). p must be aligned to that size (vec4_aligned<D>).
template <DType D>
ENGINE_HD bool vec4_aligned(const void* p) {
  return (reinterpret_cast<uintptr_t>(p) & (D == DType::F32 ? 15u : 7u)) == 0;
}
template <DType D>
__device__ __forceinline__ void load4(const typename Storage<D>::T* p, float (&v)[4]) {
  if constexpr (D == DType::F32) {
    const float4 a = __ldg(reinterpret_cast<const float4*>(p));
    v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w;
  } else {
    const uint2 a = __ldg(reinterpret_cast<const uint2*>(p));
    v[0] = Storage<D>::load((uint16_t)(a.x & 0xffffu));
    v[1] = Storage<D>::load((uint16_t)(a.x >> 16));
    v[2] = Storage<D>::load((uint16_t)(a.y & 0xffffu));
    v[3] = Storage<D>::load((uint16_t)(a.y >> 16));
  }
}
template <DType D>
__device__ __forceinline__ void store4(typename Storage<D>::T* p, const float (&v)[4]) {
  if constexpr (D == DType::F32) {
    *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
  } else {
    uint2 a;
    a.x = (uint32_t)Storage<D>::store(v[0]) | ((uint32_t)Storage<D>::store(v[1]) << 16);
    a.y = (uint32_t)Storage<D>::store(v[2]) | ((uint32_t)Storage<D>::store(v[3]) << 16);
    *reinterpret_cast<uint2*>(p) = a;
  }
}

// V = 4 (load4 / store4 above) or V = 1 elements of storage type D, as f32.
// Plain loads (no __ldg), as load_vec: the batch-norm kernels that use them sit at their register
// budget.
template <int V, DType D>
__device__ __forceinline__ void load_vec_as(const typename Storage<D>::T* p, float (&v)[V]) {
  if constexpr (D == DType::F32) {
    load_vec<V>(p, v);
  } else if constexpr (V == 4 && D == DType::BF16) {
    // bf16 is the high half of an f32: two masks and two shifts unpack four.
    const uint2 a = *reinterpret_cast<const uint2*>(p);
    v[0] = bits_float(a.x << 16);
    v[1] = bits_float(a.x & 0xffff0000u);
    v[2] = bits_float(a.y << 16);
    v[3] = bits_float(a.y & 0xffff0000u);
  } else if constexpr (V == 4) {
    const ushort4 a = *reinterpret_cast<const ushort4*>(p);
    v[0] = Storage<D>::load(a.x);
    v[1] = Storage<D>::load(a.y);
    v[2] = Storage<D>::load(a.z);
    v[3] = Storage<D>::load(a.w);
  } else {
    v[0] = Storage<D>::load(*p);
  }
}
template <int V, DType D>
__device__ __forceinline__ void store_vec_as(typename Storage<D>::T* p, const float (&v)[V]) {
  if constexpr (D == DType::F32)
    store_vec<V>(p, v);
  else if constexpr (V == 4)
    store4<D>(p, v);
  else
    *p = Storage<D>::store(v[0]);
}

// ---------------------------------------------------------------- asynchronous copies
// cp.async (sm_80+): a global -> shared copy that does not pass through registers and completes
// later, so a block can request its next tile while it computes on the current one. Copies are
// grouped by cp_async_commit; cp_async_wait<N> waits until at most the N newest groups of THIS
// thread are pending (a __syncthreads must follow before other threads read the data). In the
// emulator (and nvcc's host pass) the copy happens at once and commit / wait do nothing.
// __CUDA_ARCH__ rather than __CUDACC__: the PTX exists only in the device pass.
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem) {  // both 16-byte aligned
#if defined(__CUDA_ARCH__)
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"((unsigned)__cvta_generic_to_shared(smem)), "l"(gmem)
               : "memory");
#else
  std::memcpy(smem, gmem, 16);
#endif
}
__device__ __forceinline__ void cp_async8(void* smem, const void* gmem) {  // both 8-byte aligned
#if defined(__CUDA_ARCH__)
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8;\n" ::"r"((unsigned)__cvta_generic_to_shared(smem)), "l"(gmem)
               : "memory");
#else
  std::memcpy(smem, gmem, 8);
#endif
}
__device__ __forceinline__ void cp_async4(void* smem, const void* gmem) {
#if defined(__CUDA_ARCH__)
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"((unsigned)__cvta_generic_to_shared(smem)), "l"(gmem)
               : "memory");
#else
  std::memcpy(smem, gmem, 4);
#endif
}
__device__ __forceinline__ void cp_async_commit() {
#if defined(__CUDA_ARCH__)
  asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
#if defined(__CUDA_ARCH__)
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#endif
}

// ---------------------------------------------------------------- row tiles in shared memory
// Short rows (channels-last logits: L = 2..40 floats per pixel) are processed one THREAD per row
// from a tile of consecutive rows staged in shared memory, instead of a warp per row with shuffle
// reductions. A tile of `rows` * L contiguous floats moves between global and shared memory with
// coalesced accesses (16-byte when row_tile_vec_ok); in shared memory row j starts at
// j * row_tile_stride(L). The stride is odd (L for odd L, L + 1 for even L), so the 32 threads of a
// warp reading column c of their rows j, j + 1, ... hit 32 different banks.
ENGINE_HD int row_tile_stride(int L) { return L | 1; }

// Rows per tile: a multiple of `block` (every thread owns the same number of rows), as many as
// keep a tile within `budget_floats` of shared memory, at least `block`. Block 128, budget 2048:
// L = 19 -> 128 rows (9.7 KB), L = 2 -> 640 rows (7.5 KB). A multiple of 4 rows keeps every
// tile's start as aligned as the tensor.
inline int row_tile_rows(int L, int block, int budget_floats) {
  const int k = budget_floats / (row_tile_stride(L) * block);
  return (k < 1 ? 1 : k) * block;
}

// True when a row tile can move with 16-byte accesses: odd L (no padding, so the tile is a plain
// copy of the contiguous rows) and a 16-byte aligned global pointer (the tile always is).
inline bool row_tile_vec_ok(int64_t L, const void* p) { return (L & 1) != 0 && is_aligned16(p); }

// Calls f(e, k) for the elements e = tid, tid + nt, ... < n of n contiguous values in rows of L, with
// k = e's place in a row tile (row e / L at stride row_tile_stride(L)); (e / L, e % L) advance
// incrementally, without a division per element.
template <class F>
__device__ __forceinline__ void for_each_tile_element(int n, int L, const F& f) {
  const int nt = (int)blockDim.x, tid = (int)threadIdx.x, lp = row_tile_stride(L);
  const int dq = nt / L, dr = nt - dq * L;
  int q = tid / L, r = tid - (tid / L) * L;
  for (int e = tid; e < n; e += nt) {
    f(e, q * lp + r);
    q += dq;
    r += dr;
    if (r >= L) {
      r -= L;
      ++q;
    }
  }
}

// Issues the asynchronous copies of n contiguous floats (rows of L) from global src into a row tile
// (every thread of the block calls it; completion: cp_async_commit / cp_async_wait + __syncthreads).
// kVec: the caller checked row_tile_vec_ok. Otherwise element e goes to (e / L) * lp + e % L
// (for_each_tile_element); consecutive threads take consecutive elements, so the global reads stay
// coalesced.
template <bool kVec>
__device__ __forceinline__ void row_tile_fetch(const float* __restrict__ src, float* tile, int n, int L) {
  if constexpr (kVec) {
    const int nt = (int)blockDim.x, tid = (int)threadIdx.x, n4 = n >> 2;
    for (int i = tid; i < n4; i += nt) cp_async16(tile + 4 * i, src + 4 * i);
    for (int e = (n4 << 2) + tid; e < n; e += nt) cp_async4(tile + e, src + e);
  } else {
    for_each_tile_element(n, L, [&](int e, int k) { cp_async4(tile + k, src + e); });
  }
}

// How many values each thread keeps in flight while storing a tile back (one round trip of shared
// loads before the global stores).
constexpr int kStoreBatch4 = 4;  // float4 (kVec)
constexpr int kStoreBatch1 = 8;  // floats

// Stores a row tile (stride row_tile_stride(L)) back to n contiguous floats at dst (every thread of
// the block calls it, after a __syncthreads that follows the last write to the tile).
template <bool kVec>
__device__ __forceinline__ void row_tile_store(const float* tile, float* __restrict__ dst, int n, int L) {
  const int nt = (int)blockDim.x, tid = (int)threadIdx.x;
  if constexpr (kVec) {
    const int n4 = n >> 2;
    const float4* s4 = reinterpret_cast<const float4*>(tile);
    float4* d4 = reinterpret_cast<float4*>(dst);
    for (int i0 = tid; i0 < n4; i0 += kStoreBatch4 * nt) {
      float4 v[kStoreBatch4];
      ENGINE_UNROLL
      for (int k = 0; k < kStoreBatch4; ++k)
        if (i0 + k * nt < n4) v[k] = s4[i0 + k * nt];
      ENGINE_UNROLL
      for (int k = 0; k < kStoreBatch4; ++k)
        if (i0 + k * nt < n4) d4[i0 + k * nt] = v[k];
    }
    for (int e = (n4 << 2) + tid; e < n; e += nt) dst[e] = tile[e];
  } else {
    const int lp = row_tile_stride(L);
    const int dq = nt / L, dr = nt - dq * L;
    int q = tid / L, r = tid - (tid / L) * L;
    for (int e0 = tid; e0 < n; e0 += kStoreBatch1 * nt) {
      float v[kStoreBatch1];
      ENGINE_UNROLL
      for (int k = 0; k < kStoreBatch1; ++k) {
        if (e0 + k * nt < n) v[k] = tile[q * lp + r];
        q += dq;
        r += dr;
        if (r >= L) {
          r -= L;
          ++q;
        }
      }
      ENGINE_UNROLL
      for (int k = 0; k < kStoreBatch1; ++k)
        if (e0 + k * nt < n) dst[e0 + k * nt] = v[k];
    }
  }
}

// The row-tile moves for a storage type D (f32, bf16, f16; Storage<D>): f32 tiles move with the
// asynchronous copies above; a 16-bit tile is widened to f32 by plain loads (cp.async copies bytes,
// it cannot convert: completion is the __syncthreads that follows) and rounded once on the store.
// The tile layout and the coalescing of the global accesses are the same. kVec: the caller checked
// row_tile_vec_ok_as<D> (odd L, so the tile is a plain copy, and 4-element aligned pointers; every
// tile starts a multiple of 4 rows in): 16-bit values then move 4 at a time (8-byte accesses).
template <DType D>
inline bool row_tile_vec_ok_as(int64_t L, const void* p) {
  return (L & 1) != 0 && vec4_aligned<D>(p);
}
template <DType D, bool kVec>
__device__ __forceinline__ void row_tile_fetch_as(const typename Storage<D>::T* __restrict__ src, float* tile, int n,
                                                  int L) {
  if constexpr (D == DType::F32) {
    row_tile_fetch<kVec>(src, tile, n, L);
  } else if constexpr (kVec) {
    const int nt = (int)blockDim.x, tid = (int)threadIdx.x, n4 = n >> 2;
    for (int i = tid; i < n4; i += nt) {
      float v[4];
      load4<D>(src + 4 * i, v);
      ENGINE_UNROLL
      for (int k = 0; k < 4; ++k) tile[4 * i + k] = v[k];
    }
    for (int e = (n4 << 2) + tid; e < n; e += nt) tile[e] = Storage<D>::load(__ldg(src + e));
  } else {
    for_each_tile_element(n, L, [&](int e, int k) { tile[k] = Storage<D>::load(__ldg(src + e)); });
  }
}
template <DType D, bool kVec>
__device__ __forceinline__ void row_tile_store_as(const float* tile, typename Storage<D>::T* __restrict__ dst, int n,
                                                  int L) {
  if constexpr (D == DType::F32) {
    row_tile_store<kVec>(tile, dst, n, L);
  } else if constexpr (kVec) {
    const int nt = (int)blockDim.x, tid = (int)threadIdx.x, n4 = n >> 2;
    for (int i = tid; i < n4; i += nt) {
      const float v[4] = {tile[4 * i], tile[4 * i + 1], tile[4 * i + 2], tile[4 * i + 3]};
      store4<D>(dst + 4 * i, v);
    }
    for (int e = (n4 << 2) + tid; e < n; e += nt) dst[e] = Storage<D>::store(tile[e]);
  } else {
    for_each_tile_element(n, L, [&](int e, int k) { dst[e] = Storage<D>::store(tile[k]); });
  }
}

// Double-buffered loop over this block's tiles (grid-stride over ntiles): the copies of the next
// tile are issued before the current one is processed, so loads stream while the block computes.
// fetch(t, buf) issues the async copies of tile t into buf; process(t, buf) uses the landed tile
// (it may __syncthreads itself, all threads call it). The two buffers are `buf_floats` apart.
template <class Fetch, class Process>
__device__ __forceinline__ void pipelined_tiles(int64_t ntiles, float* smem, int buf_floats, const Fetch& fetch,
                                                const Process& process) {
  int64_t t = blockIdx.x;
  if (t < ntiles) fetch(t, smem);
  cp_async_commit();
  for (int b = 0; t < ntiles; t += gridDim.x, b ^= 1) {
    if (t + gridDim.x < ntiles) fetch(t + gridDim.x, smem + (b ^ 1) * buf_floats);
    cp_async_commit();
    cp_async_wait<1>();  // this thread's copies of tile t are in
    __syncthreads();     // ... and everyone's
    process(t, smem + b * buf_floats);
    __syncthreads();  // the buffer is refilled by the next iteration's fetch
  }
}

// Multiprocessors of the current device (cached on first use; the engine uses one device).
inline int sm_count() {
  static const int n = [] {
    int d = 0, v = 0;
    if (cudaGetDevice(&d) != cudaSuccess ||
        cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, d) != cudaSuccess) {
      (void)cudaGetLastError();
      v = 1;
    }
    return v > 0 ? v : 1;
  }();
  return n;
}

// Grid for a loop over `tiles` work tiles in which every block stays resident and takes several
// tiles (what pipelined_tiles needs to overlap anything): as many blocks as the device holds at
// once for this kernel, block size and shared memory, never more than tiles or cap. Under the
// emulator (one "multiprocessor") 2 blocks, so the tests run the multi-tile path.
template <class Kernel>
unsigned resident_grid(Kernel kernel, int block, size_t smem, int64_t tiles, int64_t cap) {
  int per_sm = 2;
#if defined(__CUDACC__)
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, block, smem) != cudaSuccess) {
    (void)cudaGetLastError();  // not sticky: keep it from being reported as the launch's error
    per_sm = 1;
  }
#else
  (void)kernel;
  (void)block;
  (void)smem;
#endif
  int64_t g = (int64_t)sm_count() * (per_sm < 1 ? 1 : per_sm);
  if (g > tiles) g = tiles;
  if (g > cap) g = cap;
  return (unsigned)(g < 1 ? 1 : g);
}

template <class T>
__device__ __forceinline__ T warp_reduce_sum(T v) {
  for (int o = kWarp / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Sum of `v` over the block in a fixed order (warps, then the warp sums): deterministic. The result
// is valid in thread 0 (warp 0 holds it). `red` is __shared__ double[32]; every thread must call.
__device__ __forceinline__ double block_sum(double v, double* red) {
  v = warp_reduce_sum(v);
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
  if (lane == 0) red[wid] = v;
  __syncthreads();
  v = threadIdx.x < (blockDim.x >> 5) ? red[threadIdx.x] : 0.0;
  if (wid == 0) v = warp_reduce_sum(v);
  __syncthreads();
  return v;
}

}  // namespace engine::kernels::cuda
