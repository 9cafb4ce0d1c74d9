// Optimizer family on the CPU: the fused SGD-momentum update (Paddle Momentum, coupled L2 decay).
// Math (kernels/loss_math.h sgd_momentum_f, shared with kernels/cuda/optim.cu):
//   g' = g + wd*p;  v = mu*v + g';  p = p - lr*v     (explicit fmaf: the same rounding on both devices)
// Layout: contiguous f32 tensors, updated in place.
// Strategy: all tensors are cut into chunks of kChunk elements and one OpenMP static loop runs over
// the chunks of every tensor (one pass over each tensor, one parallel region per call, good balance
// with ~300 tensors of very different sizes); the inner loop vectorises (AVX-512 FMA).
// Memory bound: 12 B read + 8 B written per parameter.
// Tested by tests/test_optim.cpp; benchmarked by bench_kernels --filter optim (bench/bench_optim.cpp).
#include "kernels/cpu/optim_cpu.h"

#include <vector>

#include "kernels/loss_math.h"

namespace engine::kernels {

void sgd_momentum_fwd_cpu(const SgdTensor* t, int64_t count, float lr, float mu, float wd) {
  constexpr int64_t kChunk = 32768;
  std::vector<std::pair<int32_t, int64_t>> work;  // (tensor, start)
  int64_t total = 0;
  for (int64_t i = 0; i < count; ++i) {
    for (int64_t s = 0; s < t[i].n; s += kChunk) work.push_back({(int32_t)i, s});
    total += t[i].n;
  }
  const int64_t nw = (int64_t)work.size();
#pragma omp parallel for schedule(static) if (total >= 65536)
  for (int64_t k = 0; k < nw; ++k) {
    const SgdTensor& e = t[work[(size_t)k].first];
    const int64_t b = work[(size_t)k].second, end = b + kChunk < e.n ? b + kChunk : e.n;
    float* __restrict__ p = e.p;
    const float* __restrict__ g = e.g;
    float* __restrict__ v = e.v;
#pragma omp simd
    for (int64_t j = b; j < end; ++j) {
      float pj = p[j], vj = v[j];
      sgd_momentum_f(pj, g[j], vj, lr, mu, wd);
      p[j] = pj;
      v[j] = vj;
    }
  }
}

}  // namespace engine::kernels
