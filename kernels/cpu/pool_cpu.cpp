// Pooling family on the CPU. The kernels are in pool_cpu.inc (math, layout and strategy at its top),
// compiled there once per instruction set; the functions below run the variant of the active one
// (kernels/cpu/cpu_isa.h).
#include "kernels/cpu/pool_cpu.h"

#include <omp.h>

#include <algorithm>
#include <vector>

#include "base/error.h"
#include "kernels/cpu/cpu_isa.h"
#define ENGINE_CPU_KERNELS "kernels/cpu/pool_cpu.inc"
#include "kernels/cpu/isa_variants.inc"

namespace engine::kernels {

void avg_pool2d_fwd_cpu(DType dt, const void* x, void* y, const Pool2dGeom& g) {
  ENGINE_CPU_DISPATCH(avg_pool2d_fwd_cpu)(dt, x, y, g);
}

void avg_pool2d_bwd_cpu(DType dt, const void* gy, void* gx, const Pool2dGeom& g) {
  ENGINE_CPU_DISPATCH(avg_pool2d_bwd_cpu)(dt, gy, gx, g);
}

void max_pool2d_fwd_cpu(DType dt, const void* x, void* y, int32_t* idx, const Pool2dGeom& g) {
  ENGINE_CPU_DISPATCH(max_pool2d_fwd_cpu)(dt, x, y, idx, g);
}

void max_pool2d_bwd_cpu(DType dt, const void* gy, const int32_t* idx, void* gx, const Pool2dGeom& g) {
  ENGINE_CPU_DISPATCH(max_pool2d_bwd_cpu)(dt, gy, idx, gx, g);
}

}  // namespace engine::kernels
