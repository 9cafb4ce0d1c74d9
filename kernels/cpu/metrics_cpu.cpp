// Metrics family on the CPU: per-class intersection / prediction / label pixel counts
// (PaddleSeg calculate_area; semantics in engine/ops/metrics.h).
// Layout: pred and label i64 [n] contiguous; counts i64 [3, C].
// Strategy: fixed chunks of kChunk pixels (independent of the thread count); each OpenMP thread
// keeps a private 3*C histogram and merges it once at the end. Integer counts: the result is exact
// and so independent of the merge order.
// Tested by tests/test_metrics.cpp (hand-made confusion cases, naive reference, CPU vs emulated
// CUDA); benchmarked by bench_kernels --filter metrics (bench/bench_loss.cpp).
#include "kernels/cpu/metrics_cpu.h"

#include <omp.h>

#include <algorithm>
#include <vector>

namespace engine::kernels {

void seg_area_counts_cpu(const int64_t* pred, const int64_t* label, int64_t n, int64_t C, int64_t ignore,
                         int64_t* counts, int64_t* bad) {
  constexpr int64_t kChunk = 16384;
  std::fill(counts, counts + 3 * C, 0);
  int64_t nbad = 0, first = -1;
  const int64_t nchunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel if (n >= 2 * kChunk)
  {
    std::vector<int64_t> h((size_t)(3 * C), 0);
    int64_t* hi = h.data();
    int64_t* hp = hi + C;
    int64_t* hl = hi + 2 * C;
    int64_t my_bad = 0, my_first = -1;
#pragma omp for schedule(static)
    for (int64_t k = 0; k < nchunks; ++k) {
      const int64_t b = k * kChunk, e = std::min(n, b + kChunk);
      for (int64_t i = b; i < e; ++i) {
        const int64_t p = pred[i], l = label[i];
        const bool lbad = l != ignore && (l < 0 || l >= C);
        const bool pbad = p < 0 || p >= C;
        if (lbad || pbad) {
          if (my_first < 0) my_first = i;
          ++my_bad;
          continue;
        }
        if (l != ignore) {
          ++hp[p];
          hi[p] += p == l;
        }
        if (l >= 0 && l < C) ++hl[l];
      }
    }
#pragma omp critical(seg_area_merge)
    {
      for (int64_t c = 0; c < 3 * C; ++c) counts[c] += h[(size_t)c];
      nbad += my_bad;
      if (my_first >= 0 && (first < 0 || my_first < first)) first = my_first;
    }
  }
  bad[0] = nbad;
  bad[1] = first;
}

}  // namespace engine::kernels
