// Batch-norm family on the CPU. The kernels are in batchnorm_cpu.inc (math, layout and strategy at
// its top), compiled there once per instruction set; the functions below run the variant of the
// active one (kernels/cpu/cpu_isa.h).
#include "kernels/cpu/batchnorm_cpu.h"

#include <omp.h>

#include <algorithm>
#include <vector>

#include "base/error.h"
#include "kernels/cpu/cpu_isa.h"

#define ENGINE_CPU_KERNELS "kernels/cpu/batchnorm_cpu.inc"
#include "kernels/cpu/isa_variants.inc"

namespace engine::kernels {

void batch_norm_stats_cpu(DType dt, const void* x, int64_t M, int64_t C, float* mean, float* var, float* running_mean,
                          float* running_var, float momentum) {
  ENGINE_CPU_DISPATCH(batch_norm_stats_cpu)(dt, x, M, C, mean, var, running_mean, running_var, momentum);
}

void batch_norm_fwd_cpu(DType dt, const void* x, int64_t M, int64_t C, const float* mean, const float* var,
                        const float* weight, const float* bias, float eps, void* y, BnActKind act, float slope) {
  ENGINE_CPU_DISPATCH(batch_norm_fwd_cpu)(dt, x, M, C, mean, var, weight, bias, eps, y, act, slope);
}

void batch_norm_bwd_reduce_cpu(DType dt, const void* g, const void* x, int64_t M, int64_t C, const float* mean,
                               const float* var, const float* weight, float eps, bool train, const BnBwdOut& out,
                               const BnAct& act) {
  ENGINE_CPU_DISPATCH(batch_norm_bwd_reduce_cpu)(dt, g, x, M, C, mean, var, weight, eps, train, out, act);
}

void batch_norm_bwd_cpu(DType dt, const void* g, const void* x, int64_t M, int64_t C, const float* m, const float* k1,
                        const float* k2, const float* k3, void* dx, const BnAct& act) {
  ENGINE_CPU_DISPATCH(batch_norm_bwd_cpu)(dt, g, x, M, C, m, k1, k2, k3, dx, act);
}

void batch_norm_update_running_cpu(float* running_mean, float* running_var, const float* mean, const float* var,
                                   int64_t C, float momentum) {
  ENGINE_CPU_DISPATCH(batch_norm_update_running_cpu)(running_mean, running_var, mean, var, C, momentum);
}

}  // namespace engine::kernels
