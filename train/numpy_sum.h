// numpy's float64 np.add.reduce (numpy/_core/src/umath/loops_utils.h.src, pairwise_sum): in order
// below 8 elements; up to 128 with eight interleaved accumulators combined as
// ((r0+r1)+(r2+r3))+((r4+r5)+(r6+r7)) and the rest added in order; above that, split in halves cut
// at a multiple of 8. np.mean = this / n. Metrics that PaddleSeg / PaddleDetection / pycocotools
// compute with numpy use it so that they match bit for bit.
#pragma once
#include <cstddef>

namespace engine::train {

inline double numpy_pairwise_sum(const double* a, size_t n) {
  if (n < 8) {
    double res = 0.;
    for (size_t i = 0; i < n; ++i) res += a[i];
    return res;
  }
  if (n <= 128) {
    double r[8];
    for (int j = 0; j < 8; ++j) r[j] = a[j];
    size_t i = 8;
    for (; i < n - n % 8; i += 8)
      for (int j = 0; j < 8; ++j) r[j] += a[i + j];
    double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) res += a[i];
    return res;
  }
  size_t n2 = n / 2;
  n2 -= n2 % 8;
  return numpy_pairwise_sum(a, n2) + numpy_pairwise_sum(a + n2, n - n2);
}

}  // namespace engine::train
