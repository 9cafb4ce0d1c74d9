// Depthwise backward-weights on the CPU. The kernel is conv_dw_cpu.inc (strategy at its top),
// compiled there once per instruction set; the function below runs the variant of the active one
// (kernels/cpu/cpu_isa.h).
#include "kernels/cpu/conv_dw_cpu.h"

#include <algorithm>
#include <vector>

#include "base/error.h"
#include "kernels/cpu/cpu_isa.h"
#include "kernels/shared_math.h"

#define ENGINE_CPU_KERNELS "kernels/cpu/conv_dw_cpu.inc"
#include "kernels/cpu/isa_variants.inc"

namespace engine::kernels {

void conv2d_dw_bwd_weights_cpu(DType dt, const ConvParams& p, const void* x, const void* gy, float* gw, float* gb) {
  ENGINE_CHECK(conv2d_is_depthwise(p), "conv2d_dw_bwd_weights_cpu: not a depthwise layer (groups ", p.groups, ", cin ",
               p.cin, ", cout ", p.cout, ")");
  ENGINE_CPU_DISPATCH(conv2d_dw_bwd_weights_cpu)(dt, p, x, gy, gw, gb);
}

}  // namespace engine::kernels
