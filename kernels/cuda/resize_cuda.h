// CUDA launchers of the resize family (kernels/cuda/resize.cu). Same contracts as
// kernels/cpu/resize_cpu.h (and bit-identical results).
#pragma once
#include <cuda_runtime.h>

#include "kernels/resize_math.h"

namespace engine::kernels {

// dt: the storage type of x, out, g and gx (f32, bf16 or f16), as the CPU kernels.
void resize_fwd_cuda(const ResizeArgs& a, DType dt, const void* x, void* out, cudaStream_t stream);
// ws: resize_bwd_workspace_cuda(a) floats of device memory (the column pass's buffer).
void resize_bwd_cuda(const ResizeArgs& a, DType dt, const void* g, void* gx, float* ws, cudaStream_t stream);
// The backward's second pass alone, gx from a column buffer ws that a fused producer filled (the
// upsampled cross entropy, kernels/cuda/loss.cu): ws [N, a.h.out, a.w.in, C] f32, gx of type dt.
void resize_bwd_rows_cuda(const ResizeArgs& a, DType dt, const float* ws, void* gx, cudaStream_t stream);
inline int64_t resize_bwd_workspace_cuda(const ResizeArgs& a) { return a.N * a.h.out * a.w.in * a.C; }

}  // namespace engine::kernels
