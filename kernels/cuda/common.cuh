// Shared helpers for the hand-written CUDA kernels. Every kernels/cuda/*.cu includes this first.
// Under nvcc it is plain CUDA; under the host compiler (ENGINE_CUDA_EMULATED) kernels/emu/cuemu.h
// maps the CUDA built-ins onto the CPU, so the same source runs in CI without a GPU.
#pragma once
#include <cstdint>

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

template <class T>
__device__ __forceinline__ T warp_reduce_sum(T v) {
  for (int o = kWarp / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

}  // namespace engine::kernels::cuda
