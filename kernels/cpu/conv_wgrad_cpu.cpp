// Direct weight gradients on the CPU (depthwise and thin-input layers). The kernels are
// conv_wgrad_cpu.inc (strategy at its top), compiled there once per instruction set; the functions
// below run the variant of the active one (kernels/cpu/cpu_isa.h).
#include "kernels/cpu/conv_wgrad_cpu.h"

#include <algorithm>
#include <vector>

#include "base/error.h"
#include "kernels/cpu/cpu_isa.h"
#include "kernels/shared_math.h"

#define ENGINE_CPU_KERNELS "kernels/cpu/conv_wgrad_cpu.inc"
#include "kernels/cpu/isa_variants.inc"

namespace engine::kernels {

void conv2d_dw_bwd_weights_cpu(DType dt, const ConvParams& p, const void* x, const void* gy, float* gw, float* gb) {
  ENGINE_CHECK(conv2d_is_depthwise(p), "conv2d_dw_bwd_weights_cpu: not a depthwise layer (groups ", p.groups, ", cin ",
               p.cin, ", cout ", p.cout, ")");
  ENGINE_CPU_DISPATCH(conv2d_dw_bwd_weights_cpu)(dt, p, x, gy, gw, gb);
}

void conv2d_thin_bwd_weights_cpu(DType dt, const ConvParams& p, const void* x, const void* gy, float* gw, float* gb) {
  ENGINE_CHECK(conv2d_is_thin_input(p), "conv2d_thin_bwd_weights_cpu: not a thin-input layer (groups ", p.groups,
               ", cin ", p.cin, "; expected groups 1 and cin < 4)");
  ENGINE_CPU_DISPATCH(conv2d_thin_bwd_weights_cpu)(dt, p, x, gy, gw, gb);
}

}  // namespace engine::kernels
