// Plain-data types shared by the op layer (engine/ops) and the kernels of both backends (everything
// here is trivially copyable so it can be passed by value to a CUDA kernel), and host / device
// index and loop helpers.
#pragma once
#include <cstdint>

#include "base/dtype.h"
#include "kernels/shared_math.h"

namespace engine::kernels {

constexpr int kMaxDims = 6;

// Shape and element strides of a (possibly non-contiguous or broadcast) operand, aligned to the
// output's shape: a broadcast dimension has stride 0. `offset` is in elements.
struct StridedLayout {
  int ndim = 0;
  int64_t shape[kMaxDims] = {};
  int64_t stride[kMaxDims] = {};
  int64_t offset = 0;
  bool contiguous = false;  // stride is the row-major stride of shape (offset still applies)

  // Element offset of the idx-th element in row-major order of `shape`. The loop is unrolled over
  // kMaxDims with constant indices so that, in a CUDA kernel, the arrays stay in parameter space
  // (a runtime index would copy them to local memory).
  ENGINE_HD int64_t offset_of(int64_t idx) const {
    int64_t off = offset;
    ENGINE_UNROLL
    for (int d = kMaxDims - 1; d >= 0; --d) {
      if (d < ndim) {
        const int64_t i = idx % shape[d];
        idx /= shape[d];
        off += i * stride[d];
      }
    }
    return off;
  }
  // offset_of with 32-bit index arithmetic, for a tensor of fewer than 2^32 elements (so every dim
  // fits too). A GPU divides 32-bit integers inline in ~20 instructions; 64-bit division is a called
  // routine several times longer, and the strided kernels spend most of their time in it.
  ENGINE_HD int64_t offset_of32(uint32_t idx) const {
    int64_t off = offset;
    ENGINE_UNROLL
    for (int d = kMaxDims - 1; d >= 0; --d) {
      if (d < ndim) {
        const uint32_t extent = (uint32_t)shape[d], q = idx / extent;
        off += (int64_t)(idx - q * extent) * stride[d];
        idx = q;
      }
    }
    return off;
  }
  // The element offset of idx through offset_of32 when idx32 (the caller's n < 2^32), else offset_of.
  ENGINE_HD int64_t offset_at(int64_t idx, bool idx32) const {
    return idx32 ? offset_of32((uint32_t)idx) : offset_of(idx);
  }
};

// True when a kernel over n elements may index them with 32-bit arithmetic (StridedLayout::offset_of32).
ENGINE_HD bool fits_index32(int64_t n) { return n <= (int64_t)0xffffffffu; }

// The loop `for (i = first; i < n; i += stride) use(i)`, with the loads of kBatch iterations issued
// before any of them is used: load(i, k) reads iteration i's operands into the caller's slot k,
// use(i, k) consumes them, in the plain loop's order (so sums keep their bits). A thread that waits
// for each load before the next (a short row loop, a loop over a few hundred partials) keeps one
// access in flight and runs at the memory latency, not its bandwidth. Host and device (the host
// side is what tests/test_batchnorm.cpp checks the order on).
template <int kBatch, class Load, class Use>
ENGINE_HD void batched_strided_loop(int64_t first, int64_t stride, int64_t n, const Load& load, const Use& use) {
  int64_t i = first;
  for (; i + (kBatch - 1) * stride < n; i += kBatch * stride) {
    ENGINE_UNROLL
    for (int k = 0; k < kBatch; ++k) load(i + k * stride, k);
    ENGINE_UNROLL
    for (int k = 0; k < kBatch; ++k) use(i + k * stride, k);
  }
  for (; i < n; i += stride) {
    load(i, 0);
    use(i, 0);
  }
}

}  // namespace engine::kernels
