// Copy family on CUDA: strided gather with dtype conversion, and fill.
// Math: dst[dl(i)] = cast(src[sl(i)]) row-major over the common shape; fill: dst[i] = value.
// Layout: any strides (broadcast = stride 0), up to kMaxDims dims; 64-bit indices throughout.
// Grid-stride loops, 256 threads. Same-dtype copies move raw elements (bit exact). The casts use
// kernels/shared_math.h, the same functions as the CPU kernel, so f16/bf16 bits agree.
// Tested by tests/test_copy.cpp (CPU vs emulated CUDA); benchmarked by bench_kernels.
#include "base/cuda_context.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/copy_cuda.h"

namespace engine::kernels {
namespace {

template <class T>
__global__ void __launch_bounds__(256) strided_copy_same_kernel(const T* __restrict__ src, StridedLayout sl,
                                                                T* __restrict__ dst, StridedLayout dl, int64_t n) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    dst[dl.contiguous ? i + dl.offset : dl.offset_of(i)] = src[sl.contiguous ? i + sl.offset : sl.offset_of(i)];
}

__global__ void __launch_bounds__(256)
    strided_copy_cast_kernel(const void* __restrict__ src, DType sdt, StridedLayout sl, void* __restrict__ dst,
                             DType ddt, StridedLayout dl, int64_t n) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    store_from_float(dst, ddt, dl.contiguous ? i + dl.offset : dl.offset_of(i),
                     load_as_float(src, sdt, sl.contiguous ? i + sl.offset : sl.offset_of(i)));
}

__global__ void __launch_bounds__(256) fill_kernel(void* __restrict__ dst, DType dt, int64_t n, float value) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    store_from_float(dst, dt, i, value);
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
  GPU_LAUNCH(cuda::grid_for(n, 256), 256, 0, stream, strided_copy_cast_kernel)(src, sdt, l, dst, ddt, dl, n);
  CUDA_CHECK_LAUNCH("strided_copy_cast_kernel");
}

void fill_cuda(void* dst, DType dt, int64_t n, float value, cudaStream_t stream) {
  if (n == 0) return;
  GPU_LAUNCH(cuda::grid_for(n, 256), 256, 0, stream, fill_kernel)(dst, dt, n, value);
  CUDA_CHECK_LAUNCH("fill_kernel");
}

}  // namespace engine::kernels
