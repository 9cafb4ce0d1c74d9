// Elementwise family on the CPU. The kernels are in elementwise_cpu.inc (math, layout and strategy at its top),
// compiled there once per instruction set; the functions below run the variant of the active one
// (kernels/cpu/cpu_isa.h).
#include "kernels/cpu/elementwise_cpu.h"

#include <omp.h>

#include <algorithm>

#include "base/error.h"
#include "kernels/cpu/cpu_isa.h"
#include "kernels/shared_math.h"

#define ENGINE_CPU_KERNELS "kernels/cpu/elementwise_cpu.inc"
#include "kernels/cpu/isa_variants.inc"

namespace engine::kernels {

void unary_fwd_cpu(UnaryOp op, DType dt, const void* x, const StridedLayout& xl, void* out, int64_t n, float alpha) {
  ENGINE_CPU_DISPATCH(unary_fwd_cpu)(op, dt, x, xl, out, n, alpha);
}

void unary_bwd_cpu(UnaryOp op, DType dt, const void* g, const void* x, const void* y, void* gx, int64_t n,
                   float alpha) {
  ENGINE_CPU_DISPATCH(unary_bwd_cpu)(op, dt, g, x, y, gx, n, alpha);
}

void binary_fwd_cpu(BinaryOp op, DType dt, const void* a, const StridedLayout& al, const void* b,
                    const StridedLayout& bl, void* out, int64_t n) {
  ENGINE_CPU_DISPATCH(binary_fwd_cpu)(op, dt, a, al, b, bl, out, n);
}

void binary_bwd_cpu(BinaryOp op, DType dt, const void* g, const void* a, const StridedLayout& al, const void* b,
                    const StridedLayout& bl, void* ga, void* gb, int64_t n) {
  ENGINE_CPU_DISPATCH(binary_bwd_cpu)(op, dt, g, a, al, b, bl, ga, gb, n);
}

}  // namespace engine::kernels
