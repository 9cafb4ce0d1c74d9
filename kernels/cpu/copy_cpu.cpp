// Copy family on the CPU.
// Math: dst[dl(i)] = cast(src[sl(i)]) row-major over the common shape; fill: dst[i] = value.
// Same-dtype copies move raw bytes (bit exact for every type, including i64 beyond 2^24).
// Tested by tests/test_copy.cpp; benchmarked by bench_kernels (copy rows).
#include "kernels/cpu/copy_cpu.h"

#include <cstring>

namespace engine::kernels {
namespace {

template <class T>
void copy_same(const T* src, const StridedLayout& sl, T* dst, const StridedLayout& dl, int64_t n) {
  if (sl.contiguous && dl.contiguous) {
    std::memcpy(dst + dl.offset, src + sl.offset, (size_t)n * sizeof(T));
    return;
  }
  // Rows of the last dimension: keeps transposes and slices vectorisable.
  const int nd = sl.ndim;
  const int64_t inner = nd ? sl.shape[nd - 1] : 1;
  const int64_t ss = nd ? sl.stride[nd - 1] : 0, ds = nd ? dl.stride[nd - 1] : 0;
  const int64_t rows = inner ? n / inner : 0;
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t r = 0; r < rows; ++r) {
    const T* s = src + sl.offset_of(r * inner);
    T* d = dst + dl.offset_of(r * inner);
    if (ss == 1 && ds == 1) {
      std::memcpy(d, s, (size_t)inner * sizeof(T));
    } else {
      for (int64_t j = 0; j < inner; ++j) d[j * ds] = s[j * ss];
    }
  }
}

}  // namespace

void strided_copy_cpu(const void* src, DType sdt, const StridedLayout& sl, void* dst, DType ddt,
                      const StridedLayout& dl, int64_t n) {
  if (n == 0) return;
  if (sdt == ddt) {
    switch (dtype_size(sdt)) {
      case 1: return copy_same(static_cast<const uint8_t*>(src), sl, static_cast<uint8_t*>(dst), dl, n);
      case 2: return copy_same(static_cast<const uint16_t*>(src), sl, static_cast<uint16_t*>(dst), dl, n);
      case 4: return copy_same(static_cast<const uint32_t*>(src), sl, static_cast<uint32_t*>(dst), dl, n);
      case 8: return copy_same(static_cast<const uint64_t*>(src), sl, static_cast<uint64_t*>(dst), dl, n);
    }
  }
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) {
    const int64_t si = sl.contiguous ? i + sl.offset : sl.offset_of(i);
    const int64_t di = dl.contiguous ? i + dl.offset : dl.offset_of(i);
    store_from_float(dst, ddt, di, load_as_float(src, sdt, si));
  }
}

void fill_cpu(void* dst, DType dtype, int64_t n, float value) {
  if (dtype == DType::F32) {
    float* d = static_cast<float*>(dst);
#pragma omp parallel for simd schedule(static) if (n > (1 << 16))
    for (int64_t i = 0; i < n; ++i) d[i] = value;
    return;
  }
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) store_from_float(dst, dtype, i, value);
}

}  // namespace engine::kernels
