// Copy family on CUDA: strided gather with dtype conversion, and fill.
// Math: dst[dl(i)] = cast(src[sl(i)]) row-major over the common shape; fill: dst[i] = value.
// Layout: any strides (broadcast = stride 0), up to kMaxDims dims; 64-bit offsets, indices unravelled
// in 32-bit arithmetic below 2^32 elements (StridedLayout::offset_of32).
// Grid-stride loops, 256 threads. Same-dtype copies move raw elements (bit exact). The casts use
// kernels/shared_math.h, the same functions as the CPU kernel, so f16/bf16 bits agree; a contiguous
// conversion between float types moves four elements per access. fill converts the value once on
// the host and writes its bits 16 bytes per store.
// Tested by tests/test_copy.cpp (CPU vs emulated CUDA); benchmarked by bench_kernels.
#include <cstring>

#include "base/cuda_context.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/copy_cuda.h"

namespace engine::kernels {
namespace {

template <class T>
__global__ void __launch_bounds__(256) strided_copy_same_kernel(const T* __restrict__ src, StridedLayout sl,
                                                                T* __restrict__ dst, StridedLayout dl, int64_t n) {
  const bool idx32 = fits_index32(n);
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    dst[dl.contiguous ? i + dl.offset : dl.offset_at(i, idx32)] =
        src[sl.contiguous ? i + sl.offset : sl.offset_at(i, idx32)];
}

__global__ void __launch_bounds__(256)
    strided_copy_cast_kernel(const void* __restrict__ src, DType sdt, StridedLayout sl, void* __restrict__ dst,
                             DType ddt, StridedLayout dl, int64_t n) {
  const bool idx32 = fits_index32(n);
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    store_from_float(dst, ddt, dl.contiguous ? i + dl.offset : dl.offset_at(i, idx32),
                     load_as_float(src, sdt, sl.contiguous ? i + sl.offset : sl.offset_at(i, idx32)));
}

// A contiguous conversion between float storage types (mixed precision's casts of activations and
// weights): four elements per 16-byte (f32) or 8-byte (bf16 / f16) access where both ends are
// aligned, else one; the conversions of Storage<S> / Storage<D>, the same bits as store_from_float
// (load_as_float(...)) in the strided kernel, without its per-element type switch.
template <DType S, DType D>
__global__ void __launch_bounds__(256) cast_contig_kernel(const typename Storage<S>::T* __restrict__ src,
                                                          typename Storage<D>::T* __restrict__ dst, int64_t n) {
  cuda::grid_stride_by4(
      n, cuda::vec4_aligned<S>(src) && cuda::vec4_aligned<D>(dst),
      [&](int64_t i) {
        float f[4];
        cuda::load4<S>(src + i, f);
        cuda::store4<D>(dst + i, f);
      },
      [&](int64_t i) { dst[i] = Storage<D>::store(Storage<S>::load(src[i])); });
}

// T: an unsigned integer of the element's size; `value` holds the element's bits and `pattern` the
// same bits repeated over 16 bytes. The head up to the first 16-byte boundary and the tail are
// element stores, the rest 16-byte stores: a boundary is a whole number of elements past `dst`
// (elements are 1, 2, 4 or 8 bytes and `dst` is aligned to its element), so the pattern is in phase.
template <class T>
__global__ void __launch_bounds__(256) fill_kernel(T* __restrict__ dst, int64_t n, T value, uint4 pattern) {
  constexpr int64_t kPerVector = 16 / sizeof(T);
  const int64_t tid = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  const int64_t misalign = (int64_t)(reinterpret_cast<uintptr_t>(dst) & 15u) / (int64_t)sizeof(T);
  const int64_t head = misalign == 0 ? 0 : (kPerVector - misalign < n ? kPerVector - misalign : n);
  const int64_t vectors = (n - head) / kPerVector;
  if (tid < head) dst[tid] = value;
  uint4* body = reinterpret_cast<uint4*>(dst + head);
  for (int64_t v = tid; v < vectors; v += stride) body[v] = pattern;
  for (int64_t i = head + vectors * kPerVector + tid; i < n; i += stride) dst[i] = value;
}

template <class T>
void launch_fill(void* dst, int64_t n, const unsigned char* element, cudaStream_t stream) {
  T value;
  std::memcpy(&value, element, sizeof(T));
  unsigned char bytes[16];
  for (size_t k = 0; k < sizeof(bytes); k += sizeof(T)) std::memcpy(bytes + k, &value, sizeof(T));
  uint4 pattern;
  std::memcpy(&pattern, bytes, sizeof(pattern));
  GPU_LAUNCH(cuda::grid_for((n + 16 / (int64_t)sizeof(T) - 1) / (16 / (int64_t)sizeof(T)), 256), 256, 0, stream,
             fill_kernel<T>)
  (static_cast<T*>(dst), n, value, pattern);
}

template <class T>
void launch_same(const void* src, const StridedLayout& sl, void* dst, const StridedLayout& dl, int64_t n,
                 cudaStream_t stream) {
  GPU_LAUNCH(cuda::grid_for(n, 256), 256, 0, stream, strided_copy_same_kernel<T>)
  (static_cast<const T*>(src), sl, static_cast<T*>(dst), dl, n);
}

}  // namespace

void strided_copy_cuda(const void* src, DType sdt, const StridedLayout& l, void* dst, DType ddt,
                       const StridedLayout& dl, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  if (sdt == ddt && l.contiguous && dl.contiguous) {
    CUDA_CHECK(cudaMemcpyAsync(static_cast<char*>(dst) + dl.offset * (int64_t)dtype_size(sdt),
                               static_cast<const char*>(src) + l.offset * (int64_t)dtype_size(sdt),
                               (size_t)n * dtype_size(sdt), cudaMemcpyDeviceToDevice, stream));
    return;
  }
  if (sdt == ddt) {
    switch (dtype_size(sdt)) {
      case 1:
        launch_same<uint8_t>(src, l, dst, dl, n, stream);
        break;
      case 2:
        launch_same<uint16_t>(src, l, dst, dl, n, stream);
        break;
      case 4:
        launch_same<uint32_t>(src, l, dst, dl, n, stream);
        break;
      default:
        launch_same<uint64_t>(src, l, dst, dl, n, stream);
        break;
    }
    CUDA_CHECK_LAUNCH("strided_copy_same_kernel");
    return;
  }
  if (l.contiguous && dl.contiguous && is_float_storage(sdt) && is_float_storage(ddt)) {
    with_storage(sdt, "cast kernel", [&]<DType S>() {
      with_storage(ddt, "cast kernel", [&]<DType D>() {
        GPU_LAUNCH(cuda::grid_for((n + 3) / 4, 256), 256, 0, stream, cast_contig_kernel<S, D>)
        (static_cast<const typename Storage<S>::T*>(src) + l.offset,
         static_cast<typename Storage<D>::T*>(dst) + dl.offset, n);
      });
    });
    CUDA_CHECK_LAUNCH("cast_contig_kernel");
    return;
  }
  GPU_LAUNCH(cuda::grid_for(n, 256), 256, 0, stream, strided_copy_cast_kernel)(src, sdt, l, dst, ddt, dl, n);
  CUDA_CHECK_LAUNCH("strided_copy_cast_kernel");
}

void fill_cuda(void* dst, DType dt, int64_t n, float value, cudaStream_t stream) {
  if (n == 0) return;
  alignas(8) unsigned char element[8];
  store_from_float(element, dt, 0, value);  // the element's bits, converted once (saturating for integers)
  switch (dtype_size(dt)) {
    case 1:
      launch_fill<uint8_t>(dst, n, element, stream);
      break;
    case 2:
      launch_fill<uint16_t>(dst, n, element, stream);
      break;
    case 4:
      launch_fill<uint32_t>(dst, n, element, stream);
      break;
    default:
      launch_fill<uint64_t>(dst, n, element, stream);
      break;
  }
  CUDA_CHECK_LAUNCH("fill_kernel");
}

}  // namespace engine::kernels
