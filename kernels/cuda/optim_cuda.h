// CUDA launcher of the optimizer family (kernels/cuda/optim.cu).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cpu/optim_cpu.h"  // SgdTensor

namespace engine::kernels {

// Elements per chunk: tensor i owns chunks [chunk_begin, chunk_begin + ceil(n / kSgdChunk)).
constexpr int64_t kSgdChunk = 8192;

// One launch for all tensors: `table` is a device array of `count` SgdTensor rows (chunk_begin
// ascending, filled by the op layer), `nchunks` the total number of chunks.
void sgd_momentum_fwd_cuda(const SgdTensor* table, int64_t count, int64_t nchunks, float lr, float mu, float wd,
                           cudaStream_t stream);

// One launch: x *= inv_scale over every tensor of `table` (ScaleTensor rows, chunked as above);
// *found (a device int the caller zeroed) becomes 1 when any element was inf or nan.
void unscale_check_finite_cuda(const ScaleTensor* table, int64_t count, int64_t nchunks, float inv_scale, int* found,
                               cudaStream_t stream);

}  // namespace engine::kernels
