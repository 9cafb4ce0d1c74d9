// Optimizer family on CUDA: the fused SGD-momentum update (Paddle Momentum, coupled L2 decay) as a
// multi-tensor apply: ONE launch updates every parameter tensor. The loss scaler's unscale (Paddle's
// check_finite_and_unscale) is the same multi-tensor apply over the gradients: x *= inv_scale, and a
// block whose chunk held an inf or nan (__syncthreads_or) sets the flag with one atomicOr.
// Math (kernels/loss_math.h sgd_momentum_f, shared with the CPU):
//   g' = g + wd*p;  v = mu*v + g';  p = p - lr*v
// Layout: the op layer builds a table of SgdTensor rows {p, g, v, n, chunk_begin, vec4} in a small
//   device buffer; tensor i owns chunks [chunk_begin_i, chunk_begin_i + ceil(n_i / kSgdChunk)).
//   Each block takes chunks grid-stride, finds the owning tensor by binary search over chunk_begin
//   (global loads, no local memory), and updates its kSgdChunk elements with float4 loads/stores
//   when p, g and v are all 16-byte aligned (vec4), else scalar. Updates are elementwise: no
//   reductions, no atomics, deterministic.
// Gate (UpdateGate): the learning rate, the loss and the scaler's flag can be read from device memory
//   when the kernel runs (each block reads them first and returns when the step is skipped), so a
//   training step captured in a CUDA graph holds its update and is replayed with the current values.
// Roofline (H100, ~3.35 TB/s): 12.4M parameters (PP-LiteSeg-B) move 20 B each = 248 MB: ~74 us.
// Tested by tests/test_optim.cpp (CPU vs emulated CUDA, hand computation); benchmarked by
// bench_kernels --filter optim (bench/bench_optim.cpp).
#include "base/cuda_context.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/optim_cuda.h"
#include "kernels/loss_math.h"

namespace engine::kernels {
namespace {

constexpr int kBlock = 256;

// The table row owning `chunk`: the last row with chunk_begin <= chunk (binary search, global loads).
template <typename Row>
__device__ int chunk_owner(const Row* __restrict__ table, int count, int64_t chunk) {
  int lo = 0, hi = count - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) >> 1;
    if (table[mid].chunk_begin <= chunk)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

__global__ void __launch_bounds__(kBlock)
    sgd_momentum_fwd_kernel(const SgdTensor* __restrict__ table, int count, int64_t nchunks, float lr_arg, float mu,
                            float wd, UpdateGate gate) {
  if (update_gated_off(gate)) return;
  const float lr = update_lr(gate, lr_arg);
  for (int64_t chunk = blockIdx.x; chunk < nchunks; chunk += gridDim.x) {
    const int lo = chunk_owner(table, count, chunk);
    float* p = table[lo].p;
    const float* g = table[lo].g;
    float* v = table[lo].v;
    const int64_t n = table[lo].n;
    const int64_t b = (chunk - table[lo].chunk_begin) * kSgdChunk;
    const int64_t e = min(n, b + kSgdChunk);
    if (table[lo].vec4) {
      const int64_t e4 = b + (e - b) / 4 * 4;  // b is a multiple of 4
      float4* p4 = reinterpret_cast<float4*>(p);
      const float4* g4 = reinterpret_cast<const float4*>(g);
      float4* v4 = reinterpret_cast<float4*>(v);
      for (int64_t i = b / 4 + threadIdx.x; i < e4 / 4; i += blockDim.x) {
        float4 pp = p4[i], vv = v4[i];
        const float4 gg = g4[i];
        sgd_momentum_f(pp.x, gg.x, vv.x, lr, mu, wd);
        sgd_momentum_f(pp.y, gg.y, vv.y, lr, mu, wd);
        sgd_momentum_f(pp.z, gg.z, vv.z, lr, mu, wd);
        sgd_momentum_f(pp.w, gg.w, vv.w, lr, mu, wd);
        p4[i] = pp;
        v4[i] = vv;
      }
      for (int64_t i = e4 + threadIdx.x; i < e; i += blockDim.x) {
        float pp = p[i], vv = v[i];
        sgd_momentum_f(pp, g[i], vv, lr, mu, wd);
        p[i] = pp;
        v[i] = vv;
      }
    } else {
      for (int64_t i = b + threadIdx.x; i < e; i += blockDim.x) {
        float pp = p[i], vv = v[i];
        sgd_momentum_f(pp, g[i], vv, lr, mu, wd);
        p[i] = pp;
        v[i] = vv;
      }
    }
  }
}

__global__ void __launch_bounds__(kBlock)
    unscale_check_finite_kernel(const ScaleTensor* __restrict__ table, int count, int64_t nchunks, float inv_scale_arg,
                                const float* inv_scale_at_run, int* found) {
  const float inv_scale = inv_scale_at_run != nullptr ? *inv_scale_at_run : inv_scale_arg;
  for (int64_t chunk = blockIdx.x; chunk < nchunks; chunk += gridDim.x) {
    const int row = chunk_owner(table, count, chunk);
    float* x = table[row].x;
    const int64_t n = table[row].n;
    const int64_t b = (chunk - table[row].chunk_begin) * kSgdChunk;
    const int64_t e = min(n, b + kSgdChunk);
    uint32_t f = 0;
    int64_t scalar_from = b;
    if (table[row].vec4) {
      const int64_t e4 = b + (e - b) / 4 * 4;  // b is a multiple of 4
      float4* x4 = reinterpret_cast<float4*>(x);
      for (int64_t i = b / 4 + threadIdx.x; i < e4 / 4; i += blockDim.x) {
        float4 v = x4[i];
        f |= unscale_f(v.x, inv_scale) | unscale_f(v.y, inv_scale) | unscale_f(v.z, inv_scale) |
             unscale_f(v.w, inv_scale);
        x4[i] = v;
      }
      scalar_from = e4;
    }
    for (int64_t i = scalar_from + threadIdx.x; i < e; i += blockDim.x) {
      float v = x[i];
      f |= unscale_f(v, inv_scale);
      x[i] = v;
    }
    if (__syncthreads_or((int)f) && threadIdx.x == 0) atomicOr(found, 1);
  }
}

}  // namespace

void unscale_check_finite_cuda(const ScaleTensor* table, int64_t count, int64_t nchunks, float inv_scale,
                               const float* inv_scale_at_run, int* found, cudaStream_t s) {
  if (count == 0 || nchunks == 0) return;
  const unsigned grid = (unsigned)std::min<int64_t>(nchunks, 65535);
  GPU_LAUNCH(grid, kBlock, 0, s, unscale_check_finite_kernel)
  (table, (int)count, nchunks, inv_scale, inv_scale_at_run, found);
  CUDA_CHECK_LAUNCH("unscale_check_finite_kernel");
}

void sgd_momentum_fwd_cuda(const SgdTensor* table, int64_t count, int64_t nchunks, float lr, float mu, float wd,
                           const UpdateGate& gate, cudaStream_t s) {
  if (count == 0 || nchunks == 0) return;
  const unsigned grid = (unsigned)std::min<int64_t>(nchunks, 65535);
  GPU_LAUNCH(grid, kBlock, 0, s, sgd_momentum_fwd_kernel)(table, (int)count, nchunks, lr, mu, wd, gate);
  CUDA_CHECK_LAUNCH("sgd_momentum_fwd_kernel");
}

}  // namespace engine::kernels
