// Copy family on the CPU.
// Math: dst[dl(i)] = cast(src[sl(i)]) row-major over the common shape; fill: dst[i] = value.
// Same-dtype copies move raw bytes (bit exact for every type, including i64 beyond 2^24).
// Casts between f32 and bf16 / f16 of contiguous tensors run as one typed loop per pair (the f32 ->
// bf16 rounding written branch-free so it vectorises); the bits are those of the shared
// conversions in kernels/shared_math.h, which the CUDA cast kernels use too.
// Tested by tests/test_copy.cpp and tests/test_tensor.cpp (dtype round trips); benchmarked by
// bench_kernels (copy rows, cast_f32_bf16).
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

// f32 -> bf16 bits, round to nearest even, quiet NaN: the bits of float_to_bf16_bits (shared_math.h)
// written with selects only, so the loop vectorises (16 lanes per AVX-512 instruction).
inline uint16_t f32_to_bf16_vec(float f) {
  const uint32_t u = f2u(f);
  const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  const uint32_t nan = (u >> 16) | 0x40u;
  return (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? nan : rounded);
}

// Contiguous conversions between the float types, the common casts (mixed precision, checkpoints):
// one vectorisable loop instead of the per-element dtype switch. Returns false for other pairs.
bool convert_contiguous(const void* src, DType sdt, void* dst, DType ddt, int64_t n) {
  if (sdt == DType::F32 && ddt == DType::BF16) {
    const float* s = static_cast<const float*>(src);
    uint16_t* d = static_cast<uint16_t*>(dst);
#pragma omp parallel for simd schedule(static) if (n > (1 << 16))
    for (int64_t i = 0; i < n; ++i) d[i] = f32_to_bf16_vec(s[i]);
    return true;
  }
  if (sdt == DType::BF16 && ddt == DType::F32) {
    const uint16_t* s = static_cast<const uint16_t*>(src);
    float* d = static_cast<float*>(dst);
#pragma omp parallel for simd schedule(static) if (n > (1 << 16))
    for (int64_t i = 0; i < n; ++i) d[i] = u2f((uint32_t)s[i] << 16);
    return true;
  }
  if (sdt == DType::F16 && ddt == DType::F32) {
    const uint16_t* s = static_cast<const uint16_t*>(src);
    float* d = static_cast<float*>(dst);
#pragma omp parallel for schedule(static) if (n > (1 << 16))
    for (int64_t i = 0; i < n; ++i) d[i] = half_bits_to_float(s[i]);
    return true;
  }
  if (sdt == DType::F32 && ddt == DType::F16) {
    const float* s = static_cast<const float*>(src);
    uint16_t* d = static_cast<uint16_t*>(dst);
#pragma omp parallel for schedule(static) if (n > (1 << 16))
    for (int64_t i = 0; i < n; ++i) d[i] = float_to_half_bits(s[i]);
    return true;
  }
  return false;
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
  if (sl.contiguous && dl.contiguous) {
    const void* s0 = static_cast<const char*>(src) + sl.offset * (int64_t)dtype_size(sdt);
    void* d0 = static_cast<char*>(dst) + dl.offset * (int64_t)dtype_size(ddt);
    if (convert_contiguous(s0, sdt, d0, ddt, n)) return;
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
