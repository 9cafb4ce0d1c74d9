// CPU kernels of the elementwise family (kernels/cpu/elementwise_cpu.cpp).
#pragma once
#include "kernels/elementwise_math.h"
#include "kernels/kernel_types.h"

namespace engine::kernels {

// out[i] = f(x[xl(i)]), out contiguous with n elements.
void unary_fwd_cpu(UnaryOp op, const float* x_base, const StridedLayout& xl, float* out, int64_t n, float alpha);
// gx[i] = f'(g[i], x[i], y[i]); all contiguous.
void unary_bwd_cpu(UnaryOp op, const float* g, const float* x, const float* y, float* gx, int64_t n, float alpha);
// out[i] = a[al(i)] (op) b[bl(i)]; layouts already broadcast to the output shape; out contiguous.
void binary_fwd_cpu(BinaryOp op, const float* a_base, const StridedLayout& al, const float* b_base,
                    const StridedLayout& bl, float* out, int64_t n);
// Full-shape gradients: ga[i], gb[i] from g[i], a[al(i)], b[bl(i)]. ga or gb may be null.
void binary_bwd_cpu(BinaryOp op, const float* g, const float* a_base, const StridedLayout& al, const float* b_base,
                    const StridedLayout& bl, float* ga, float* gb, int64_t n);

}  // namespace engine::kernels
