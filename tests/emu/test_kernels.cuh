// test_kernels.cuh -- correct kernels for the cuemu tests.  Plain CUDA: the same file compiles with
// nvcc (nvcc_check.cu) and, through kernels/emu/cuemu.h, with g++ (kernels_test.cpp).
#pragma once
#include <cuda_fp16.h>

#include "kernels/emu/cuemu.h"

// Block sum: dynamic shared memory, a barrier tree, a warp-shuffle tail and one atomicAdd per block.
__global__ void block_sum(const float* __restrict__ in, float* out, int n) {
  float* s = dynamic_smem<float>();
  const unsigned t = threadIdx.x;
  const int i = static_cast<int>(blockIdx.x * blockDim.x + t);
  s[t] = i < n ? in[i] : 0.f;
  __syncthreads();
  for (unsigned o = blockDim.x / 2; o >= 32; o >>= 1) {
    if (t < o) s[t] += s[t + o];
    __syncthreads();
  }
  if (t < 32) {
    float v = s[t];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    if (t == 0) atomicAdd(out, v);
  }
}

// Tiled transpose: static shared memory and 2-D blocks; rows x cols -> cols x rows.
constexpr int kTile = 32;
__global__ void transpose(const float* in, float* out, int rows, int cols) {
  __shared__ float tile[kTile][kTile + 1];
  int x = static_cast<int>(blockIdx.x * kTile + threadIdx.x), y = static_cast<int>(blockIdx.y * kTile + threadIdx.y);
  if (x < cols && y < rows) tile[threadIdx.y][threadIdx.x] = in[y * cols + x];
  __syncthreads();
  x = static_cast<int>(blockIdx.y * kTile + threadIdx.x);
  y = static_cast<int>(blockIdx.x * kTile + threadIdx.y);
  if (x < rows && y < cols) out[y * rows + x] = tile[threadIdx.x][threadIdx.y];
}

// Inclusive scan within segments of WIDTH lanes (a template: commas inside GPU_LAUNCH).
template <typename T, int WIDTH>
__global__ void warp_scan(const T* in, T* out, int n) {
  const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  T v = i < n ? in[i] : T(0);
  const int lane = static_cast<int>(threadIdx.x) % WIDTH;
  for (int d = 1; d < WIDTH; d <<= 1) {
    const T u = __shfl_up_sync(0xffffffffu, v, static_cast<unsigned>(d), WIDTH);
    if (lane >= d) v += u;
  }
  if (i < n) out[i] = v;
}

// Votes: per warp, ballot/any/all of "lane is odd", "lane < 40" and "value > 0".
__global__ void votes(const int* in, unsigned* out) {
  const unsigned t = threadIdx.x, w = t / 32;
  const unsigned b = __ballot_sync(0xffffffffu, in[t] > 0);
  const int any = __any_sync(0xffffffffu, t % 2);
  const int all = __all_sync(0xffffffffu, t < 40);
  __syncwarp();
  if (t % 32 == 0) {
    out[3 * w] = b;
    out[3 * w + 1] = static_cast<unsigned>(any);
    out[3 * w + 2] = static_cast<unsigned>(all);
  }
  // Half-warp collectives with their own masks, and __syncthreads_count.
  const unsigned half = (t % 32) < 16 ? 0x0000ffffu : 0xffff0000u;
  const int x = __shfl_xor_sync(half, static_cast<int>(t), 1, 16);
  const int c = __syncthreads_count(x == static_cast<int>(t ^ 1u));
  if (t == 0) out[6] = static_cast<unsigned>(c);
}

struct AtomicOut {
  float f;
  double d;
  int i, imin, imax, exch, cas;
  unsigned u, band, bor, bxor, inc;
  unsigned long long ull;
  __half h;
};
__global__ void atomics(AtomicOut* o) {
  const int t = static_cast<int>(threadIdx.x + blockIdx.x * blockDim.x);
  atomicAdd(&o->f, 0.5f);
  atomicAdd(&o->d, 0.25);
  atomicAdd(&o->i, 2);
  atomicSub(&o->i, 1);
  atomicAdd(&o->u, 3u);
  atomicAdd(&o->ull, 1ull << 33);
  atomicMin(&o->imin, -t);
  atomicMax(&o->imax, t);
  atomicAnd(&o->band, ~(1u << (t % 32)));
  atomicOr(&o->bor, 1u << (t % 32));
  atomicXor(&o->bxor, 1u);
  atomicInc(&o->inc, 9u);
  atomicAdd(&o->h, __float2half(1.f));
  if (t == 5) atomicExch(&o->exch, 77);
  int old = 0, prev;  // the classic CAS loop: +1 per thread
  while ((prev = atomicCAS(&o->cas, old, old + 1)) != old) old = prev;
}

// Every thread of a 3-D grid of 3-D blocks writes its global linear id at its position.
__global__ void grid3d(int* out) {
  const unsigned bx = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  const unsigned tx = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  const unsigned id = bx * blockDim.x * blockDim.y * blockDim.z + tx;
  out[id] = static_cast<int>(id);
}

// Uses all of its dynamic shared memory (for the >48 KiB launch limit).
__global__ void big_smem(float* out, int n) {
  float* s = dynamic_smem<float>();
  for (int i = static_cast<int>(threadIdx.x); i < n; i += static_cast<int>(blockDim.x)) s[i] = 1.f;
  __syncthreads();
  if (threadIdx.x == 0) {
    float acc = 0.f;
    for (int i = 0; i < n; ++i) acc += s[i];
    *out = acc;
  }
}

// Grid-stride elementwise kernel and a one-element-per-thread one (speed test).
__global__ void scale_grid_stride(const float* a, float* b, int n) {
  for (int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x); i < n;
       i += static_cast<int>(blockDim.x * gridDim.x))
    b[i] = 2.f * a[i];
}
__global__ void scale(const float* a, float* b, int n) {
  const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) b[i] = 2.f * a[i];
}
__global__ void many_barriers(float* out, int k) {
  __shared__ float s[1024];
  const unsigned t = threadIdx.x;
  s[t] = 0.f;
  for (int i = 0; i < k; ++i) {
    s[t] += 1.f;
    __syncthreads();
  }
  out[t] = s[t];
}
__global__ void many_shuffles(float* out, int k) {
  float v = static_cast<float>(threadIdx.x);
  for (int i = 0; i < k; ++i) v += __shfl_xor_sync(0xffffffffu, v, 1);
  out[threadIdx.x] = v;
}
