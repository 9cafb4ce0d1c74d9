// Optimizer family on CUDA: the fused SGD-momentum update (Paddle Momentum, coupled L2 decay) as a
// multi-tensor apply: ONE launch updates every parameter tensor. The loss scaler's unscale (Paddle's
// check_finite_and_unscale) is the same multi-tensor apply over the gradients: x *= inv_scale, and a
// block whose chunk held an inf or nan (__syncthreads_or) sets the flag with one atomicOr.
// Math (kernels/loss_math.h sgd_momentum_f, shared with the CPU):
//   g' = g + wd*p;  v = mu*v + g';  p = p - lr*v
// Layout: the op layer builds a table of SgdTensor rows {p, g, v, n, chunk_begin, vec4} in a small
//   device buffer; tensor i owns chunks [chunk_begin_i, chunk_begin_i + ceil(n_i / kSgdChunk)).
//   Each block takes chunks grid-stride, finds the owning tensor by binary search over chunk_begin
//   (global loads, no local memory), and updates its kSgdChunk elements with 4-element accesses
//   when p, g and v are aligned for them (vec4), else scalar. The gradient is f32, bf16 or f16
//   (g_type; data-parallel O2's reduced 16-bit gradients), widened as it is loaded (8-byte loads);
//   the unscale reads such a source and writes f32. Updates are elementwise: no
//   reductions, no atomics, deterministic.
// Gate (UpdateGate): the learning rate, the loss and the scaler's flag can be read from device memory
//   when the kernel runs (each block reads them first and returns when the step is skipped), so a
//   training step captured in a CUDA graph holds its update and is replayed with the current values.
// Roofline (H100, ~3.35 TB/s): 12.4M parameters (PP-LiteSeg-B) move 20 B each = 248 MB: ~74 us
// (18 B with a 16-bit gradient).
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

// One chunk [b, e) of one tensor, the gradient of storage type D (widened as it is read).
template <DType D>
__device__ void sgd_chunk(const SgdTensor& row, int64_t b, int64_t e, float lr, float mu, float wd) {
  using T = typename Storage<D>::T;
  float* p = row.p;
  const T* g = static_cast<const T*>(row.g);
  float* v = row.v;
  int64_t scalar_from = b;
  if (row.vec4) {
    const int64_t e4 = b + (e - b) / 4 * 4;  // b is a multiple of 4
    float4* p4 = reinterpret_cast<float4*>(p);
    float4* v4 = reinterpret_cast<float4*>(v);
    for (int64_t i = b / 4 + threadIdx.x; i < e4 / 4; i += blockDim.x) {
      float4 pp = p4[i], vv = v4[i];
      float gg[4];
      cuda::load4<D>(g + 4 * i, gg);
      sgd_momentum_f(pp.x, gg[0], vv.x, lr, mu, wd);
      sgd_momentum_f(pp.y, gg[1], vv.y, lr, mu, wd);
      sgd_momentum_f(pp.z, gg[2], vv.z, lr, mu, wd);
      sgd_momentum_f(pp.w, gg[3], vv.w, lr, mu, wd);
      p4[i] = pp;
      v4[i] = vv;
    }
    scalar_from = e4;
  }
  for (int64_t i = scalar_from + threadIdx.x; i < e; i += blockDim.x) {
    float pp = p[i], vv = v[i];
    sgd_momentum_f(pp, Storage<D>::load(g[i]), vv, lr, mu, wd);
    p[i] = pp;
    v[i] = vv;
  }
}

__global__ void __launch_bounds__(kBlock)
    sgd_momentum_fwd_kernel(const SgdTensor* __restrict__ table, int count, int64_t nchunks, float lr_arg, float mu,
                            float wd, UpdateGate gate) {
  if (update_gated_off(gate)) return;
  const float lr = update_lr(gate, lr_arg);
  for (int64_t chunk = blockIdx.x; chunk < nchunks; chunk += gridDim.x) {
    const SgdTensor row = table[chunk_owner(table, count, chunk)];
    const int64_t b = (chunk - row.chunk_begin) * kSgdChunk;
    const int64_t e = min(row.n, b + kSgdChunk);
    switch ((DType)row.g_type) {
      case DType::BF16:
        sgd_chunk<DType::BF16>(row, b, e, lr, mu, wd);
        break;
      case DType::F16:
        sgd_chunk<DType::F16>(row, b, e, lr, mu, wd);
        break;
      default:
        sgd_chunk<DType::F32>(row, b, e, lr, mu, wd);
    }
  }
}

// dst = src * inv_scale over one chunk [b, e), src of storage type D; returns the thread's flag.
template <DType D>
__device__ uint32_t unscale_chunk(const ScaleTensor& row, int64_t b, int64_t e, float inv_scale) {
  using T = typename Storage<D>::T;
  const T* src = static_cast<const T*>(row.src);
  float* dst = row.dst;
  uint32_t f = 0;
  int64_t scalar_from = b;
  if (row.vec4) {
    const int64_t e4 = b + (e - b) / 4 * 4;  // b is a multiple of 4
    for (int64_t i = b / 4 + threadIdx.x; i < e4 / 4; i += blockDim.x) {
      float v[4];
      if constexpr (D == DType::F32) {  // (in place: a plain load, not the read-only path of load4)
        const float4 a = reinterpret_cast<const float4*>(src)[i];
        v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w;
      } else {
        cuda::load4<D>(src + 4 * i, v);
      }
      f |= unscale_f(v[0], inv_scale) | unscale_f(v[1], inv_scale) | unscale_f(v[2], inv_scale) |
           unscale_f(v[3], inv_scale);
      reinterpret_cast<float4*>(dst)[i] = make_float4(v[0], v[1], v[2], v[3]);
    }
    scalar_from = e4;
  }
  for (int64_t i = scalar_from + threadIdx.x; i < e; i += blockDim.x) {
    float v = Storage<D>::load(src[i]);
    f |= unscale_f(v, inv_scale);
    dst[i] = v;
  }
  return f;
}

__global__ void __launch_bounds__(kBlock)
    unscale_check_finite_kernel(const ScaleTensor* __restrict__ table, int count, int64_t nchunks, float inv_scale_arg,
                                const float* inv_scale_at_run, int* found) {
  const float inv_scale = inv_scale_at_run != nullptr ? *inv_scale_at_run : inv_scale_arg;
  for (int64_t chunk = blockIdx.x; chunk < nchunks; chunk += gridDim.x) {
    const ScaleTensor row = table[chunk_owner(table, count, chunk)];
    const int64_t b = (chunk - row.chunk_begin) * kSgdChunk;
    const int64_t e = min(row.n, b + kSgdChunk);
    uint32_t f = 0;
    switch ((DType)row.src_type) {
      case DType::BF16:
        f = unscale_chunk<DType::BF16>(row, b, e, inv_scale);
        break;
      case DType::F16:
        f = unscale_chunk<DType::F16>(row, b, e, inv_scale);
        break;
      default:
        f = unscale_chunk<DType::F32>(row, b, e, inv_scale);
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
