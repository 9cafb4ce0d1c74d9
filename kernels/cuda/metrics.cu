// Metrics family on CUDA: per-class intersection / prediction / label pixel counts (PaddleSeg
// calculate_area; semantics in engine/ops/metrics.h).
// Layout: pred and label i64 [n] contiguous; counts u64 [3, C] (intersect, pred, label).
// seg_area_kernel: each block keeps a 3*C shared-memory histogram (u32, dynamic smem), walks the
//   pixels grid-stride with shared-memory integer atomics, then adds its non-zero bins into the
//   global u64 counts with integer atomics (exact, so deterministic whatever the order).
//   Invalid pixels (label neither ignore nor in [0, C); pred outside [0, C)) are counted and the
//   lowest index kept with atomicMin; the op reads them back and raises.
// Constraints: C <= kMaxC (48 KiB of shared memory); a block covers < 2^32 pixels per bin.
// Roofline (H100, ~3.35 TB/s): [4,512,1024] = 2.1M pixels reads 16 B/px = 33.6 MB, ~10 us; shared
//   atomics on 19 bins collide heavily for uniform images, so expect 2-3x that.
// Tested by tests/test_metrics.cpp (CPU vs emulated CUDA); benchmarked by bench_kernels
// --filter metrics (bench/bench_loss.cpp).
#include "base/cuda_context.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/metrics_cuda.h"

namespace engine::kernels {
namespace {

constexpr int kBlock = 256;
using ull = unsigned long long;

__global__ void __launch_bounds__(kBlock)
    seg_area_kernel(const int64_t* __restrict__ pred, const int64_t* __restrict__ label, int64_t n, int C,
                    int64_t ignore, ull* __restrict__ counts, ull* __restrict__ bad) {
  unsigned* h = dynamic_smem<unsigned>();
  for (int i = threadIdx.x; i < 3 * C; i += blockDim.x) h[i] = 0u;
  __syncthreads();
  unsigned my_bad = 0;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t p = pred[i], l = label[i];
    const bool lbad = l != ignore && (l < 0 || l >= C);
    const bool pbad = p < 0 || p >= C;
    if (lbad || pbad) {
      ++my_bad;
      atomicMin(&bad[1], (ull)i);
      continue;
    }
    if (l != ignore) {
      atomicAdd(&h[C + (int)p], 1u);
      if (p == l) atomicAdd(&h[(int)p], 1u);
    }
    if (l >= 0 && l < C) atomicAdd(&h[2 * C + (int)l], 1u);
  }
  if (my_bad) atomicAdd(&bad[0], (ull)my_bad);
  __syncthreads();
  for (int i = threadIdx.x; i < 3 * C; i += blockDim.x)
    if (h[i]) atomicAdd(&counts[i], (ull)h[i]);
}

}  // namespace

void seg_area_counts_cuda(const int64_t* pred, const int64_t* label, int64_t n, int64_t C, int64_t ignore,
                          int64_t* counts, int64_t* bad, cudaStream_t s) {
  const unsigned grid = cuda::grid_for(n, kBlock, 1024);
  const size_t smem = (size_t)(3 * C) * sizeof(unsigned);
  GPU_LAUNCH(grid, kBlock, smem, s, seg_area_kernel)
  (pred, label, n, (int)C, ignore, reinterpret_cast<ull*>(counts), reinterpret_cast<ull*>(bad));
  CUDA_CHECK_LAUNCH("seg_area_kernel");
}

}  // namespace engine::kernels
