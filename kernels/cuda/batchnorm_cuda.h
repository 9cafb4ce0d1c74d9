// CUDA launchers of the batch-norm family (kernels/cuda/batchnorm.cu). Same contracts as the CPU
// kernels in kernels/cpu/batchnorm_cpu.h (x is a contiguous [M, C] matrix, per-channel vectors are
// contiguous f32 [C]); the two-pass reductions need a device workspace that the op layer allocates:
// batch_norm_workspace_floats_cuda(M, C) floats.
#pragma once
#include <cuda_runtime.h>

#include "kernels/cpu/batchnorm_cpu.h"

namespace engine::kernels {

// Floats of device workspace that batch_norm_stats_cuda and batch_norm_bwd_reduce_cuda need.
int64_t batch_norm_workspace_floats_cuda(int64_t M, int64_t C);

// dt: the storage type of the activations x, y, g, dx (f32, bf16 or f16), as in the CPU kernels.
void batch_norm_stats_cuda(DType dt, const void* x, int64_t M, int64_t C, float* mean, float* var, float* running_mean,
                           float* running_var, float momentum, float* workspace, cudaStream_t stream);
// act, slope / BnAct: the fused activation (ReLU or LeakyReLU), as in the CPU kernels
// (batch_norm_bwd_reduce_cuda requires act.mean == mean).
void batch_norm_fwd_cuda(DType dt, const void* x, int64_t M, int64_t C, const float* mean, const float* var,
                         const float* weight, const float* bias, float eps, void* y, cudaStream_t stream,
                         BnActKind act = BnActKind::None, float slope = 0.f);
void batch_norm_bwd_reduce_cuda(DType dt, const void* g, const void* x, int64_t M, int64_t C, const float* mean,
                                const float* var, const float* weight, float eps, bool train, const BnBwdOut& out,
                                float* workspace, cudaStream_t stream, const BnAct& act = {});
void batch_norm_bwd_cuda(DType dt, const void* g, const void* x, int64_t M, int64_t C, const float* m, const float* k1,
                         const float* k2, const float* k3, void* dx, cudaStream_t stream, const BnAct& act = {});
void batch_norm_update_running_cuda(float* running_mean, float* running_var, const float* mean, const float* var,
                                    int64_t C, float momentum, cudaStream_t stream);

}  // namespace engine::kernels
