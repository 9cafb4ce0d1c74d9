// Softmax family on the CPU. The kernels are in softmax_cpu.inc (math, layout and strategy at its top),
// compiled there once per instruction set; the functions below run the variant of the active one
// (kernels/cpu/cpu_isa.h).
#include "kernels/cpu/softmax_cpu.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "kernels/cpu/cpu_isa.h"
#include "kernels/cpu/row_tile_cpu.h"

#define ENGINE_CPU_KERNELS "kernels/cpu/softmax_cpu.inc"
#include "kernels/cpu/isa_variants.inc"

namespace engine::kernels {

void softmax_fwd_cpu(DType dt, const void* x, void* y, int64_t outer, int64_t L, int64_t inner, bool log_) {
  ENGINE_CPU_DISPATCH(softmax_fwd_cpu)(dt, x, y, outer, L, inner, log_);
}

void softmax_bwd_cpu(DType dt, const void* g, const void* y, void* dx, int64_t outer, int64_t L, int64_t inner,
                     bool log_) {
  ENGINE_CPU_DISPATCH(softmax_bwd_cpu)(dt, g, y, dx, outer, L, inner, log_);
}

void argmax_cpu(DType dt, const void* x, int64_t* idx, int64_t outer, int64_t L, int64_t inner) {
  ENGINE_CPU_DISPATCH(argmax_cpu)(dt, x, idx, outer, L, inner);
}

}  // namespace engine::kernels
