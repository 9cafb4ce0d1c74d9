// Optimizer family on the CPU. The kernels are in optim_cpu.inc (math, layout and strategy at its top),
// compiled there once per instruction set; the functions below run the variant of the active one
// (kernels/cpu/cpu_isa.h).
#include "kernels/cpu/optim_cpu.h"

#include <vector>

#include "kernels/cpu/cpu_isa.h"
#include "kernels/loss_math.h"
#define ENGINE_CPU_KERNELS "kernels/cpu/optim_cpu.inc"
#include "kernels/cpu/isa_variants.inc"

namespace engine::kernels {

void sgd_momentum_fwd_cpu(const SgdTensor* t, int64_t count, float lr, float mu, float wd, const UpdateGate& gate) {
  ENGINE_CPU_DISPATCH(sgd_momentum_fwd_cpu)(t, count, lr, mu, wd, gate);
}

int unscale_check_finite_cpu(const ScaleTensor* t, int64_t count, float inv_scale, const float* inv_scale_at_run) {
  return ENGINE_CPU_DISPATCH(unscale_check_finite_cpu)(t, count, inv_scale, inv_scale_at_run);
}

}  // namespace engine::kernels
