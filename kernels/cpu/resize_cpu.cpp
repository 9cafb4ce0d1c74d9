// Resize family on the CPU. The kernels are in resize_cpu.inc (math, layout and strategy at its top),
// compiled there once per instruction set; the functions below run the variant of the active one
// (kernels/cpu/cpu_isa.h).
#include "kernels/cpu/resize_cpu.h"

#include <omp.h>

#include <cstring>
#include <utility>
#include <vector>

#include "base/error.h"
#include "kernels/cpu/cpu_isa.h"
#include "kernels/shared_math.h"
#define ENGINE_CPU_KERNELS "kernels/cpu/resize_cpu.inc"
#define ENGINE_CPU_KERNEL_PART "kernels/cpu/resize_rows_cpu.inc"  // shared by the resize and loss kernels
#include "kernels/cpu/isa_variants.inc"

namespace engine::kernels {

void resize_fwd_cpu(const ResizeArgs& a, DType dt, const void* x, void* out) {
  ENGINE_CPU_DISPATCH(resize_fwd_cpu)(a, dt, x, out);
}

void resize_bwd_cpu(const ResizeArgs& a, DType dt, const void* g, void* gx, float* ws) {
  ENGINE_CPU_DISPATCH(resize_bwd_cpu)(a, dt, g, gx, ws);
}

}  // namespace engine::kernels
