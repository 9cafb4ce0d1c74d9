// Copy family on CUDA: strided gather with dtype conversion, and fill.
// Math: dst[dl(i)] = cast(src[sl(i)]) row-major over the common shape; fill: dst[i] = value.
// Layout: any strides (broadcast = stride 0), up to kMaxDims dims; 64-bit offsets, indices unravelled
// in 32-bit arithmetic below 2^32 elements (StridedLayout::offset_of32).
// Grid-stride loops, 256 threads. A transpose of two dims, one of them short (conv weights' layout
// changes), runs as rows of that dim (copy_rows_kernel). Same-dtype copies move raw elements (bit
// exact). The casts use kernels/shared_math.h, the same functions as the CPU kernel, so f16/bf16
// bits agree; a contiguous conversion between float types moves four elements per access. fill converts the value once
// on the host and writes its bits 16 bytes per store. Tested by tests/test_copy.cpp (CPU vs emulated CUDA); benchmarked
// by bench_kernels.
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

// A copy over an index space [B, L, S] where S is short (transpose_walks: the op's coalesced
// transposes, e.g. a conv weight's OIHW -> OHWI, [O, kH*kW, I] from [O, I, kH*kW], S = kH*kW): one
// thread per (b, l) row walks its S elements, consecutive threads take consecutive l. L is the dim one
// operand holds at unit stride, so that side is coalesced across the warp; the other side's runs of
// S are strided per thread and their cache sectors serve the next iterations. One division per row,
// none per element (the generic strided kernel unravels every element in every dim).
struct Walk3 {
  int64_t offset, b, l, s;  // element offset and strides along B, L, S
};
struct SameBits {
  template <class T>
  static __device__ T apply(T v) {
    return v;
  }
};
template <DType S, DType D>
struct CastStorage {
  static __device__ typename Storage<D>::T apply(typename Storage<S>::T v) {
    return Storage<D>::store(Storage<S>::load(v));
  }
};

template <class TS, class TD, class Convert>
__global__ void __launch_bounds__(256) copy_rows_kernel(const TS* __restrict__ src, Walk3 sw, TD* __restrict__ dst,
                                                        Walk3 dw, int64_t l_count, int64_t rows, int64_t s_count) {
  for (int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; r < rows; r += (int64_t)gridDim.x * blockDim.x) {
    const int64_t b = r / l_count, l = r - b * l_count;
    const TS* s = src + sw.offset + b * sw.b + l * sw.l;
    TD* d = dst + dw.offset + b * dw.b + l * dw.l;
    for (int64_t k = 0; k < s_count; ++k) d[k * dw.s] = Convert::apply(s[k * sw.s]);
  }
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

// Blocks of the strided kernels' grid-stride loops: about two waves of 256-thread blocks on a
// 132-SM GPU (2048 threads per SM), so a large copy runs several elements per thread.
constexpr int64_t kStridedMaxBlocks = 2048;

template <class T>
void launch_same(const void* src, const StridedLayout& sl, void* dst, const StridedLayout& dl, int64_t n,
                 cudaStream_t stream) {
  GPU_LAUNCH(cuda::grid_for(n, 256, kStridedMaxBlocks), 256, 0, stream, strided_copy_same_kernel<T>)
  (static_cast<const T*>(src), sl, static_cast<T*>(dst), dl, n);
}

// Longest run a copy_rows_kernel thread walks.
constexpr int64_t kMaxRowRun = 64;

// The coalesced layouts as a transpose of their last two dims [.., R, C] with src at unit stride
// along R and dst along C (B = the leading dim, or 1), and the shorter of R and C at most
// kMaxRowRun: the walks over [B, L, S] (S = the shorter) for copy_rows_kernel, else false.
struct RowWalks {
  Walk3 src, dst;
  int64_t l_count, rows, s_count;
};
bool transpose_walks(const StridedLayout& sl, const StridedLayout& dl, RowWalks& w) {
  const int nd = sl.ndim;
  if (nd < 2 || nd > 3) return false;
  const int r = nd - 2, c = nd - 1;
  if (sl.stride[r] != 1 || dl.stride[c] != 1) return false;
  const int64_t b_count = nd == 3 ? sl.shape[0] : 1;
  const int64_t sb = nd == 3 ? sl.stride[0] : 0, db = nd == 3 ? dl.stride[0] : 0;
  const bool walk_c = sl.shape[c] <= sl.shape[r];  // S = C: threads along R (src coalesced)
  const int ld = walk_c ? r : c, sd = walk_c ? c : r;
  if (sl.shape[sd] > kMaxRowRun) return false;
  w.src = {sl.offset, sb, sl.stride[ld], sl.stride[sd]};
  w.dst = {dl.offset, db, dl.stride[ld], dl.stride[sd]};
  w.l_count = sl.shape[ld];
  w.rows = b_count * w.l_count;
  w.s_count = sl.shape[sd];
  return true;
}

template <class TS, class TD, class Convert>
void launch_rows(const void* src, void* dst, const RowWalks& w, cudaStream_t stream) {
  GPU_LAUNCH(cuda::grid_for(w.rows, 256, kStridedMaxBlocks), 256, 0, stream, copy_rows_kernel<TS, TD, Convert>)
  (static_cast<const TS*>(src), w.src, static_cast<TD*>(dst), w.dst, w.l_count, w.rows, w.s_count);
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
  RowWalks walks;
  if (transpose_walks(l, dl, walks)) {
    if (sdt == ddt) {
      switch (dtype_size(sdt)) {
        case 1:
          launch_rows<uint8_t, uint8_t, SameBits>(src, dst, walks, stream);
          break;
        case 2:
          launch_rows<uint16_t, uint16_t, SameBits>(src, dst, walks, stream);
          break;
        case 4:
          launch_rows<uint32_t, uint32_t, SameBits>(src, dst, walks, stream);
          break;
        default:
          launch_rows<uint64_t, uint64_t, SameBits>(src, dst, walks, stream);
          break;
      }
      CUDA_CHECK_LAUNCH("copy_rows_kernel");
      return;
    }
    if (is_float_storage(sdt) && is_float_storage(ddt)) {
      with_storage(sdt, "copy rows kernel", [&]<DType S>() {
        with_storage(ddt, "copy rows kernel", [&]<DType D>() {
          launch_rows<typename Storage<S>::T, typename Storage<D>::T, CastStorage<S, D>>(src, dst, walks, stream);
        });
      });
      CUDA_CHECK_LAUNCH("copy_rows_kernel");
      return;
    }
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
  GPU_LAUNCH(cuda::grid_for(n, 256, kStridedMaxBlocks), 256, 0, stream, strided_copy_cast_kernel)
  (src, sdt, l, dst, ddt, dl, n);
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
