// CUDA launcher of the metrics family (kernels/cuda/metrics.cu). Same contract as
// kernels/cpu/metrics_cpu.h, with device pointers; counts (3*C) and bad (2) must be pre-filled by
// the caller with zeros and {0, INT64_MAX}.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace engine::kernels {

void seg_area_counts_cuda(const int64_t* pred, const int64_t* label, int64_t n, int64_t C, int64_t ignore,
                          int64_t* counts, int64_t* bad, cudaStream_t stream);

}  // namespace engine::kernels
