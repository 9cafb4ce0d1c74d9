// Resize family on the CPU. The kernels are in resize_cpu.inc (math, layout and strategy at its top),
// compiled there once per instruction set; the functions below run the variant of the active one
// (kernels/cpu/cpu_isa.h).
#include "kernels/cpu/resize_cpu.h"

#include <omp.h>

#include <cstring>
#include <vector>

#include "kernels/cpu/cpu_isa.h"
#define ENGINE_CPU_KERNELS "kernels/cpu/resize_cpu.inc"
#include "kernels/cpu/isa_variants.inc"

namespace engine::kernels {

void resize_fwd_cpu(const ResizeArgs& a, const float* x, float* out) { ENGINE_CPU_DISPATCH(resize_fwd_cpu)(a, x, out); }

void resize_bwd_cpu(const ResizeArgs& a, const float* g, float* gx) { ENGINE_CPU_DISPATCH(resize_bwd_cpu)(a, g, gx); }

}  // namespace engine::kernels
