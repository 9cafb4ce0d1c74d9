// Shape family on CUDA: concat and its backward (the split copy), ONE kernel launch writing every
// piece (up to kMaxPieces = 8 per launch; more pieces take ceil(pieces / 8) launches).
// Math: out[o, col[j] + t] = src[j][o, t] (forward); dst[j][o, t] = g[o, col[j] + t] (backward), for
//   rows o < outer and t < width[j]. The op layer (engine/ops/shape_ops.cpp) reduces any axis and
//   dtype to this byte geometry (contiguous pieces [outer, width[j]], output rows of row_bytes).
// Kernel concat_kernel<U, I, bwd>: grid-stride over outer x (sum of the launch's widths) in units
//   of U = the widest of 16 / 4 / 2 / 1 bytes that divides every width, column and row and aligns
//   every pointer (STDC's channel concat of 128/64/32/32 floats runs on 16-byte uint4 copies). The
//   piece of a column is found with an unrolled compare chain over the by-value parameter arrays
//   (constant indices only, so the arrays stay in parameter space: no local memory). I = uint32_t
//   index math when the launch has < 2^32 units, else uint64_t. Pure copies: deterministic.
// Roofline (H100 SXM, ~3.35 TB/s): STDC block concat [4,64,64,{128,64,32,32}] -> [4,64,64,256]
//   reads 16.8 MB and writes 16.8 MB => ~10 us; no flops.
// Tested by tests/test_shape_ops.cpp (CPU vs emulated CUDA); benchmarked by bench_kernels
// --filter concat.
#include <algorithm>

#include "base/cuda_context.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/shape_ops_cuda.h"

namespace engine::kernels {
namespace {

constexpr int kBlock = 256;
constexpr int kMaxPieces = 8;

struct CatLaunch {
  char* piece[kMaxPieces];     // source (forward) or destination (backward) of each piece
  uint64_t col[kMaxPieces];    // first column of the piece in a big row, in units
  uint64_t vcol[kMaxPieces];   // first column of the piece in this launch's packed row, in units
  uint64_t width[kMaxPieces];  // units
  int n;
  uint64_t vrow;  // sum of the widths
  uint64_t row;   // units per big row
};

template <class U, class I, bool kBwd>
__global__ void __launch_bounds__(kBlock) concat_kernel(CatLaunch a, char* big, I total) {
  const I stride = (I)gridDim.x * blockDim.x;
  for (I idx = (I)blockIdx.x * blockDim.x + threadIdx.x; idx < total; idx += stride) {
    const I o = idx / (I)a.vrow, v = idx - o * (I)a.vrow;
    char* p = a.piece[0];
    I vcol = 0, col = (I)a.col[0], w = (I)a.width[0];
    ENGINE_UNROLL
    for (int j = 1; j < kMaxPieces; ++j) {
      if (j < a.n && v >= (I)a.vcol[j]) {
        p = a.piece[j];
        vcol = (I)a.vcol[j];
        col = (I)a.col[j];
        w = (I)a.width[j];
      }
    }
    const I t = v - vcol;
    U* piece = reinterpret_cast<U*>(p) + o * w + t;
    U* wide = reinterpret_cast<U*>(big) + o * (I)a.row + col + t;
    if constexpr (kBwd) {
      *piece = *wide;
    } else {
      *wide = *piece;
    }
  }
}

template <class U, bool kBwd>
void launch_group(const CatLaunch& a, char* big, uint64_t outer, cudaStream_t s) {
  const uint64_t total = outer * a.vrow;
  if (total == 0) return;
  const unsigned grid = cuda::grid_for((int64_t)total, kBlock);
  // 32-bit indices when neither the loop index (up to total + one grid stride) nor an address in the
  // big rows (up to outer * row, which a launch of some of the pieces does not cover) can wrap.
  const uint64_t stride = (uint64_t)grid * kBlock;
  if (total + stride < (1ull << 32) && outer * a.row < (1ull << 32)) {
    GPU_LAUNCH(grid, kBlock, 0, s, concat_kernel<U, uint32_t, kBwd>)(a, big, (uint32_t)total);
  } else {
    GPU_LAUNCH(grid, kBlock, 0, s, concat_kernel<U, uint64_t, kBwd>)(a, big, total);
  }
  CUDA_CHECK_LAUNCH(kBwd ? "concat_bwd_kernel" : "concat_fwd_kernel");
}

template <bool kBwd>
void concat_any(void* const* pieces, const int64_t* col, const int64_t* width, int n, void* big, int64_t outer,
                int64_t row_bytes, cudaStream_t s) {
  // Widest unit that divides every size and aligns every pointer.
  uint64_t g = (uint64_t)row_bytes | reinterpret_cast<uintptr_t>(big) | 16u;
  for (int j = 0; j < n; ++j) g |= (uint64_t)col[j] | (uint64_t)width[j] | reinterpret_cast<uintptr_t>(pieces[j]);
  const int unit = (g & 15u) == 0 ? 16 : (g & 3u) == 0 ? 4 : (g & 1u) == 0 ? 2 : 1;
  for (int first = 0; first < n; first += kMaxPieces) {
    CatLaunch a{};
    a.n = std::min(kMaxPieces, n - first);
    a.row = (uint64_t)row_bytes / unit;
    uint64_t v = 0;
    for (int j = 0; j < a.n; ++j) {
      a.piece[j] = static_cast<char*>(pieces[first + j]);
      a.col[j] = (uint64_t)col[first + j] / unit;
      a.width[j] = (uint64_t)width[first + j] / unit;
      a.vcol[j] = v;
      v += a.width[j];
    }
    a.vrow = v;
    char* b = static_cast<char*>(big);
    switch (unit) {
      case 16:
        launch_group<uint4, kBwd>(a, b, (uint64_t)outer, s);
        break;
      case 4:
        launch_group<uint32_t, kBwd>(a, b, (uint64_t)outer, s);
        break;
      case 2:
        launch_group<uint16_t, kBwd>(a, b, (uint64_t)outer, s);
        break;
      default:
        launch_group<uint8_t, kBwd>(a, b, (uint64_t)outer, s);
        break;
    }
  }
}

}  // namespace

void concat_fwd_cuda(const void* const* src, const int64_t* col, const int64_t* width, int pieces, void* out,
                     int64_t outer, int64_t row_bytes, cudaStream_t s) {
  // The kernel only reads the pieces in the forward direction; one pointer type serves both.
  concat_any<false>(const_cast<void* const*>(src), col, width, pieces, out, outer, row_bytes, s);
}

void concat_bwd_cuda(const void* g, int64_t outer, int64_t row_bytes, void* const* dst, const int64_t* col,
                     const int64_t* width, int pieces, cudaStream_t s) {
  concat_any<true>(dst, col, width, pieces, const_cast<void*>(g), outer, row_bytes, s);
}

}  // namespace engine::kernels
