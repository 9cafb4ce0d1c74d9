// Shape family on the CPU: concat (one pass writing every input into its columns of the output)
// and the backward split copy (one pass reading the gradient into every piece).
// Layout: all tensors contiguous, seen as rows of bytes ([outer, row_bytes], pieces [outer, width]);
// the op layer (engine/ops/shape_ops.cpp) makes inputs contiguous and computes the geometry, so
// any axis and any dtype reduce to these two loops of memcpy. NHWC channel concat (axis -1, the
// STDC CatBottleneck) is outer = N*H*W rows of C_j * 4 bytes each.
// Parallelism: static split of the rows over the OpenMP threads when there are many rows; with few
// rows (axis 0 concat: outer == 1) each row copy is split into byte chunks instead. Pure copies, so
// the result never depends on the schedule.
// Tested by tests/test_shape_ops.cpp; benchmarked by bench_kernels --filter concat (bench_softmax.cpp).
#include "kernels/cpu/shape_ops_cpu.h"

#include <omp.h>

#include <algorithm>
#include <cstring>

namespace engine::kernels {
namespace {

constexpr int64_t kParallelBytes = 1 << 17;  // below this one thread is faster
constexpr int64_t kChunk = 1 << 16;          // byte chunk when a single row is split

// copy(piece, row, byte_begin, byte_end) for every (row, piece) pair, partitioned statically.
template <class Copy>
void for_each_piece_row(int64_t outer, int64_t row_bytes, const int64_t* width, int pieces, const Copy& copy) {
  const int64_t total = outer * row_bytes;
  const int nt = omp_get_max_threads();
  if (total < kParallelBytes || nt == 1) {
    for (int64_t o = 0; o < outer; ++o)
      for (int j = 0; j < pieces; ++j) copy(j, o, 0, width[j]);
    return;
  }
  if (outer >= 4 * nt) {
#pragma omp parallel for schedule(static)
    for (int64_t o = 0; o < outer; ++o)
      for (int j = 0; j < pieces; ++j) copy(j, o, 0, width[j]);
    return;
  }
  for (int64_t o = 0; o < outer; ++o)
    for (int j = 0; j < pieces; ++j) {
      const int64_t chunks = (width[j] + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static)
      for (int64_t c = 0; c < chunks; ++c) copy(j, o, c * kChunk, std::min(width[j], (c + 1) * kChunk));
    }
}

}  // namespace

void concat_fwd_cpu(const void* const* src, const int64_t* col, const int64_t* width, int pieces, void* out,
                    int64_t outer, int64_t row_bytes) {
  char* o8 = static_cast<char*>(out);
  for_each_piece_row(outer, row_bytes, width, pieces, [&](int j, int64_t o, int64_t b, int64_t e) {
    std::memcpy(o8 + o * row_bytes + col[j] + b, static_cast<const char*>(src[j]) + o * width[j] + b, (size_t)(e - b));
  });
}

void concat_bwd_cpu(const void* g, int64_t outer, int64_t row_bytes, void* const* dst, const int64_t* col,
                    const int64_t* width, int pieces) {
  const char* g8 = static_cast<const char*>(g);
  for_each_piece_row(outer, row_bytes, width, pieces, [&](int j, int64_t o, int64_t b, int64_t e) {
    std::memcpy(static_cast<char*>(dst[j]) + o * width[j] + b, g8 + o * row_bytes + col[j] + b, (size_t)(e - b));
  });
}

}  // namespace engine::kernels
