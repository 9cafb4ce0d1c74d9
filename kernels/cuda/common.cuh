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

template <class T>
__device__ __forceinline__ T warp_reduce_sum(T v) {
  for (int o = kWarp / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

}  // namespace engine::kernels::cuda
