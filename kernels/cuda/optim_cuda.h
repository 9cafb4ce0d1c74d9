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
// The gate (kernels/loss_math.h) is read by the kernel when it runs: a CUDA graph replays it with the
// values of the moment.
void sgd_momentum_fwd_cuda(const SgdTensor* table, int64_t count, int64_t nchunks, float lr, float mu, float wd,
                           const UpdateGate& gate, cudaStream_t stream);

// One launch: dst = src * inv_scale over every tensor of `table` (ScaleTensor rows, chunked as above);
// *found (a device int the caller zeroed) becomes 1 when any element of src was inf or nan.
// inv_scale_at_run: when not null, a device float the kernel reads the factor from (replaces inv_scale).
void unscale_check_finite_cuda(const ScaleTensor* table, int64_t count, int64_t nchunks, float inv_scale,
                               const float* inv_scale_at_run, int* found, cudaStream_t stream);

}  // namespace engine::kernels
