// Plain-data types shared by the op layer (engine/ops) and the kernels of both backends.
// Everything here is trivially copyable so it can be passed by value to a CUDA kernel.
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

}  // namespace engine::kernels
