// Elementwise family on the CPU. The kernels are in elementwise_cpu.inc (math, layout and strategy at its top),
// compiled there once per instruction set; the functions below run the variant of the active one
// (kernels/cpu/cpu_isa.h).
#include "kernels/cpu/elementwise_cpu.h"

#include <omp.h>

#include <algorithm>

#include "kernels/cpu/cpu_isa.h"
#define ENGINE_CPU_KERNELS "kernels/cpu/elementwise_cpu.inc"
#include "kernels/cpu/isa_variants.inc"

namespace engine::kernels {

void unary_fwd_cpu(UnaryOp op, const float* x, const StridedLayout& xl, float* out, int64_t n, float alpha) {
  ENGINE_CPU_DISPATCH(unary_fwd_cpu)(op, x, xl, out, n, alpha);
}

void unary_bwd_cpu(UnaryOp op, const float* g, const float* x, const float* y, float* gx, int64_t n, float alpha) {
  ENGINE_CPU_DISPATCH(unary_bwd_cpu)(op, g, x, y, gx, n, alpha);
}

void binary_fwd_cpu(BinaryOp op, const float* a, const StridedLayout& al, const float* b, const StridedLayout& bl,
                    float* out, int64_t n) {
  ENGINE_CPU_DISPATCH(binary_fwd_cpu)(op, a, al, b, bl, out, n);
}

void binary_bwd_cpu(BinaryOp op, const float* g, const float* a, const StridedLayout& al, const float* b,
                    const StridedLayout& bl, float* ga, float* gb, int64_t n) {
  ENGINE_CPU_DISPATCH(binary_bwd_cpu)(op, g, a, al, b, bl, ga, gb, n);
}

}  // namespace engine::kernels
