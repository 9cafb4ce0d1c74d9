// Reduction family on the CPU. The kernels are in reduce_cpu.inc (math, layout and strategy at its top),
// compiled there once per instruction set; the functions below run the variant of the active one
// (kernels/cpu/cpu_isa.h).
#include "kernels/cpu/reduce_cpu.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/cpu/cpu_isa.h"
#include "kernels/shared_math.h"

#define ENGINE_CPU_KERNELS "kernels/cpu/reduce_cpu.inc"
#include "kernels/cpu/isa_variants.inc"

namespace engine::kernels {

void reduce_sum_fwd_cpu(DType xt, const void* x, float* out, int64_t outer, int64_t reduce, int64_t inner,
                        float scale) {
  ENGINE_CPU_DISPATCH(reduce_sum_fwd_cpu)(xt, x, out, outer, reduce, inner, scale);
}

void reduce_max_fwd_cpu(DType xt, const void* x, float* vals, int64_t* idx, int64_t outer, int64_t reduce,
                        int64_t inner) {
  ENGINE_CPU_DISPATCH(reduce_max_fwd_cpu)(xt, x, vals, idx, outer, reduce, inner);
}

void reduce_sum_bwd_cpu(const float* g, DType dxt, void* dx, int64_t outer, int64_t reduce, int64_t inner,
                        float scale) {
  ENGINE_CPU_DISPATCH(reduce_sum_bwd_cpu)(g, dxt, dx, outer, reduce, inner, scale);
}

void reduce_max_bwd_cpu(const float* g, const int64_t* idx, DType dxt, void* dx, int64_t outer, int64_t reduce,
                        int64_t inner) {
  ENGINE_CPU_DISPATCH(reduce_max_bwd_cpu)(g, idx, dxt, dx, outer, reduce, inner);
}

}  // namespace engine::kernels
