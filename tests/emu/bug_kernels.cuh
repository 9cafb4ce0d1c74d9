// bug_kernels.cuh -- kernels with classic GPU bugs; bugs_test.cpp checks that cuemu catches each.
// Plain CUDA (nvcc compiles it in nvcc_check.cu). Tests match "file:line" of each BUG-LINE: unformatted.
// clang-format off
#pragma once
#include "kernels/emu/cuemu.h"

__global__ void missing_sync(const float* in, float* out) {  // no barrier between store and load
  __shared__ float s[64];
  const unsigned t = threadIdx.x;
  s[t] = in[t];
  out[t] = s[t] + s[(t + 1) % 64];  // reads a neighbour's slot that may not be written yet
}
__global__ void reduce_race(const float* in, float* out) {  // barrier missing inside the tree loop
  __shared__ float s[64];
  const unsigned t = threadIdx.x;
  s[t] = in[t];
  __syncthreads();
  for (unsigned o = 32; o > 0; o >>= 1)
    if (t < o) s[t] += s[t + o];  // races with the writes of the previous round
  if (t == 0) *out = s[0];
}
__global__ void global_oob(const float* in, float* out, int n) {  // missing bounds check
  const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  (void)n;
  out[i] = 2.f * in[i];  // grid covers more than n
}
__global__ void smem_oob(float* out) {  // reads one past a static shared array
  __shared__ float s[64];
  const unsigned t = threadIdx.x;
  s[t] = static_cast<float>(t);
  __syncthreads();
  out[t] = s[t + 1];
}
__global__ void dyn_smem_oob(float* out) {  // reads one past the dynamic shared memory
  float* s = dynamic_smem<float>();
  const unsigned t = threadIdx.x;
  s[t] = 1.f;
  __syncthreads();
  out[t] = s[t + 1];
}
__global__ void divergent_barrier(float* out) {
  if (threadIdx.x < 16) __syncthreads();  // BUG-LINE divergent
  out[threadIdx.x] = 1.f;
}
__global__ void two_barriers(float* out) {  // if/else with a barrier in each branch
  if (threadIdx.x % 2) { __syncthreads(); } else { __syncthreads(); }  // BUG-LINE ifelse
  out[threadIdx.x] = 0.f;
}
__global__ void early_return(const float* in, float* out, int n) {
  const int i = static_cast<int>(threadIdx.x);
  if (i >= n) return;
  __shared__ float s[64];
  s[i] = in[i];
  __syncthreads();  // BUG-LINE early
  out[i] = s[(i + 1) % n];
}
__global__ void full_mask_after_exit(const float* in, float* out, int n) {
  const int i = static_cast<int>(threadIdx.x);
  if (i >= n) return;
  float v = in[i];
  v += __shfl_down_sync(0xffffffffu, v, 1);  // BUG-LINE fullmask
  out[i] = v;
}
__global__ void shfl_outside_mask(const float* in, float* out) {
  const unsigned t = threadIdx.x;
  float v = in[t];
  if (t < 16) v += __shfl_down_sync(0x0000ffffu, v, 8);  // BUG-LINE outside: lane 8..15 read 16..23
  out[t] = v;
}
__global__ void shfl_vs_barrier(float* out) {  // half the warp shuffles, the other half waits at a barrier
  float v = static_cast<float>(threadIdx.x);
  if (threadIdx.x < 16) v += __shfl_xor_sync(0xffffffffu, v, 1);  // BUG-LINE deadlock
  else __syncthreads();
  out[threadIdx.x] = v;
}
__global__ void spin_on_other_block(volatile int* flag) {  // needs co-resident blocks
  if (blockIdx.x == 0) {
    while (*flag == 0) {
    }
  } else if (threadIdx.x == 0) {
    *flag = 1;
  }
}
__global__ void order_dependent(int* out) {  // assumes block b-1 ran before block b
  if (threadIdx.x == 0) out[blockIdx.x] = blockIdx.x == 0 ? 1 : out[blockIdx.x - 1] + 1;
}
__global__ void accumulate(const float* in, float* out) { atomicAdd(out, in[threadIdx.x]); }
__global__ void partial_tile(const float* in, float* out, int n) {  // reads shared memory nobody wrote
  __shared__ float tile[64];
  const int t = static_cast<int>(threadIdx.x);
  if (t < n) tile[t] = in[t];
  __syncthreads();
  float acc = 0.f;
  for (int k = 0; k < 64; ++k) acc += tile[k];  // all 64, but only n were written
  if (t == 0) *out = acc;
}
__global__ void bounded_scale(const float* in, float* out, int n) {  // correct: the host-pointer tests' kernel
  const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) out[i] = 2.f * in[i];
}
#include <array>  // (here: the kernels above keep their line numbers, which the tests match)
struct ScaleArgs {  // pointers inside a struct argument, listed for the launch check
  const float* in;
  float* out;
  int n;
  std::array<const void*, 2> device_pointers() const { return {in, out}; }
};
__global__ void bounded_scale_struct(ScaleArgs a) {  // correct
  const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < a.n) a.out[i] = 2.f * a.in[i];
}
// clang-format on
