// CPU kernels of the elementwise family (kernels/cpu/elementwise_cpu.cpp).
// Storage: every operand and result of one call has the type dt (f32, bf16 or f16; mixed precision),
// the math is f32 (kernels/shared_math.h Storage). Pointers are of that type.
#pragma once
#include "base/dtype.h"
#include "kernels/elementwise_math.h"
#include "kernels/kernel_types.h"

namespace engine::kernels {

// out[i] = f(x[xl(i)]), out contiguous with n elements.
void unary_fwd_cpu(UnaryOp op, DType dt, const void* x_base, const StridedLayout& xl, void* out, int64_t n,
                   float alpha);
// gx[i] = f'(g[i], x[i], y[i]); all contiguous; x or y null when the op's derivative does not read it.
void unary_bwd_cpu(UnaryOp op, DType dt, const void* g, const void* x, const void* y, void* gx, int64_t n, float alpha);
// out[i] = a[al(i)] (op) b[bl(i)]; layouts already broadcast to the output shape; out contiguous.
void binary_fwd_cpu(BinaryOp op, DType dt, const void* a_base, const StridedLayout& al, const void* b_base,
                    const StridedLayout& bl, void* out, int64_t n);
// Full-shape gradients: ga[i], gb[i] from g[i], a[al(i)], b[bl(i)]. ga or gb may be null.
void binary_bwd_cpu(BinaryOp op, DType dt, const void* g, const void* a_base, const StridedLayout& al,
                    const void* b_base, const StridedLayout& bl, void* ga, void* gb, int64_t n);

}  // namespace engine::kernels
