// Elementwise ops: argument checks, output allocation, dispatch to one kernel per device, and the
// backward formulas (kernels/elementwise_math.h holds the per-element math of both directions).
// Storage types (mixed precision): the operands of one op are all f32, all bf16 or all f16; the
// result and the gradients have that type and the kernels compute in f32 (engine/ops/elementwise.h).
#include "engine/ops/elementwise.h"

#include "engine/autograd.h"
#include "engine/ops/copy.h"
#include "engine/ops/op_utils.h"
#include "engine/ops/reduce.h"
#include "kernels/cpu/elementwise_cpu.h"
#if defined(ENGINE_WITH_CUDA)
#include "kernels/cuda/elementwise_cuda.h"
#endif

namespace engine {
namespace {

using kernels::BinaryOp;
using kernels::UnaryOp;

// Which saved values the backward of a unary op reads.
bool bwd_needs_x(UnaryOp op) {
  return op == UnaryOp::Log || op == UnaryOp::Relu || op == UnaryOp::LeakyRelu || op == UnaryOp::MaxScalar ||
         op == UnaryOp::RDivScalar;
}
bool bwd_needs_y(UnaryOp op) {
  return op == UnaryOp::Exp || op == UnaryOp::Sqrt || op == UnaryOp::Sigmoid || op == UnaryOp::Tanh ||
         op == UnaryOp::RDivScalar;
}

// A gradient in the storage type of the tensor it belongs to (a gradient may arrive in another float
// type, e.g. f32 from a loss for a bf16 activation); contiguous.
Tensor grad_as(const Tensor& g, DType dt) {
  if (g.dtype() == dt) return g.contiguous();
  NoGradGuard no_grad;
  return copy_contiguous(g, dt);
}

const void* data_or_null(const Tensor& t) { return t.defined() ? t.raw_data() : nullptr; }

Tensor unary_backward(UnaryOp op, const Tensor& g_in, const Tensor& x, const Tensor& y, float alpha, DType dt) {
  const Tensor g = grad_as(g_in, dt);
  const Tensor xc = x.defined() ? x.contiguous() : x;
  const Tensor yc = y.defined() ? y.contiguous() : y;
  Tensor gx = Tensor::empty(g.shape(), dt, g.device());
  const void* xp = data_or_null(xc);
  const void* yp = data_or_null(yc);
  ENGINE_DISPATCH(
      "unary_backward", g.device(), traffic(g, xc, yc, gx),
      kernels::unary_bwd_cpu(op, dt, g.raw_data(), xp, yp, gx.raw_data(), g.numel(), alpha),
      kernels::unary_bwd_cuda(op, dt, g.raw_data(), xp, yp, gx.raw_data(), g.numel(), alpha, compute_stream()));
  return gx;
}

Tensor unary(const char* name, UnaryOp op, const Tensor& x, float alpha = 0.f) {
  check_float_storage(name, "x", x);
  const DType dt = x.dtype();
  Tensor out = Tensor::empty(x.shape(), dt, x.device());
  kernels::StridedLayout xl = layout_of(x);
  coalesce({&xl});
  const void* base = x.storage()->data;
  ENGINE_DISPATCH(name, x.device(), traffic(x, out),
                  kernels::unary_fwd_cpu(op, dt, base, xl, out.raw_data(), out.numel(), alpha),
                  kernels::unary_fwd_cuda(op, dt, base, xl, out.raw_data(), out.numel(), alpha, compute_stream()));
  if (needs_grad({&x})) {
    // Saved values are detached: saving `out` itself would make a cycle out -> node -> out.
    const Tensor xs = bwd_needs_x(op) ? x.detach() : Tensor();
    const Tensor ys = bwd_needs_y(op) ? out.detach() : Tensor();
    record_lambda(name, {x}, out, [op, xs, ys, alpha, dt](const std::vector<Tensor>& g) {
      return std::vector<Tensor>{unary_backward(op, g[0], xs, ys, alpha, dt)};
    });
  }
  return out;
}

// Full-shape gradients of mul/div/maximum, then summed over each operand's broadcast dims.
std::vector<Tensor> binary_backward(BinaryOp op, const Tensor& g_in, const Tensor& a, const Tensor& b, bool need_a,
                                    bool need_b) {
  const DType dt = a.dtype();
  const Tensor g = grad_as(g_in, dt);
  Tensor ga, gb;
  {
    const Shape& shape = g.shape();
    kernels::StridedLayout al = broadcast_layout(a, shape), bl = broadcast_layout(b, shape);
    kernels::StridedLayout gl = layout_of(g);
    coalesce({&gl, &al, &bl});
    if (need_a) ga = Tensor::empty(shape, dt, g.device());
    if (need_b) gb = Tensor::empty(shape, dt, g.device());
    void* gap = need_a ? ga.raw_data() : nullptr;
    void* gbp = need_b ? gb.raw_data() : nullptr;
    const void* ab = a.storage()->data;
    const void* bb = b.storage()->data;
    ENGINE_DISPATCH(
        "binary_backward", g.device(), traffic(g, a, b, ga, gb),
        kernels::binary_bwd_cpu(op, dt, g.raw_data(), ab, al, bb, bl, gap, gbp, g.numel()),
        kernels::binary_bwd_cuda(op, dt, g.raw_data(), ab, al, bb, bl, gap, gbp, g.numel(), compute_stream()));
  }
  if (ga.defined() && ga.shape() != a.shape()) ga = sum_to_shape(ga, a.shape());
  if (gb.defined() && gb.shape() != b.shape()) gb = sum_to_shape(gb, b.shape());
  return {ga, gb};
}

// The one storage type of a binary op's operands, or an Error naming both.
DType common_storage(const char* name, const Tensor& a, const char* an, const Tensor& b, const char* bn) {
  check_float_storage(name, an, a);
  check_float_storage(name, bn, b);
  ENGINE_CHECK(a.dtype() == b.dtype(), name, ": ", an, " ", a.describe(), " and ", bn, " ", b.describe(),
               " have different float types; cast one (.to(DType)) so both are f32, bf16 or f16");
  return a.dtype();
}

Tensor binary(const char* name, BinaryOp op, const Tensor& a, const Tensor& b) {
  const DType dt = common_storage(name, a, "a", b, "b");
  check_same_device(name, a, "a", b, "b");
  const Shape shape = broadcast_shapes(name, a.shape(), b.shape());
  Tensor out = Tensor::empty(shape, dt, a.device());
  kernels::StridedLayout ol = layout_of(out), al = broadcast_layout(a, shape), bl = broadcast_layout(b, shape);
  coalesce({&ol, &al, &bl});
  const void* ab = a.storage()->data;
  const void* bb = b.storage()->data;
  ENGINE_DISPATCH(name, a.device(), traffic(a, b, out),
                  kernels::binary_fwd_cpu(op, dt, ab, al, bb, bl, out.raw_data(), out.numel()),
                  kernels::binary_fwd_cuda(op, dt, ab, al, bb, bl, out.raw_data(), out.numel(), compute_stream()));
  if (needs_grad({&a, &b})) {
    const bool need_a = a.requires_grad(), need_b = b.requires_grad();
    const bool save = op != BinaryOp::Add && op != BinaryOp::Sub;
    const Tensor as = save ? a.detach() : Tensor(), bs = save ? b.detach() : Tensor();
    const Shape a_shape = a.shape(), b_shape = b.shape();
    record_lambda(name, {a, b}, out, [=](const std::vector<Tensor>& g) {
      if (!save) {  // add/sub only need the shapes
        const Tensor gd = grad_as(g[0], dt);
        Tensor ga = need_a ? gd : Tensor(), gb = need_b ? (op == BinaryOp::Add ? gd : neg(gd)) : Tensor();
        if (ga.defined() && ga.shape() != a_shape) ga = sum_to_shape(ga, a_shape);
        if (gb.defined() && gb.shape() != b_shape) gb = sum_to_shape(gb, b_shape);
        return std::vector<Tensor>{ga, gb};
      }
      return binary_backward(op, g[0], as, bs, need_a, need_b);
    });
  }
  return out;
}

}  // namespace

Tensor neg(const Tensor& x) { return unary("neg", UnaryOp::Neg, x); }
Tensor exp(const Tensor& x) { return unary("exp", UnaryOp::Exp, x); }
Tensor log(const Tensor& x) { return unary("log", UnaryOp::Log, x); }
Tensor sqrt(const Tensor& x) { return unary("sqrt", UnaryOp::Sqrt, x); }
Tensor relu(const Tensor& x) { return unary("relu", UnaryOp::Relu, x); }
Tensor leaky_relu(const Tensor& x, float slope) { return unary("leaky_relu", UnaryOp::LeakyRelu, x, slope); }
Tensor sigmoid(const Tensor& x) { return unary("sigmoid", UnaryOp::Sigmoid, x); }
Tensor tanh(const Tensor& x) { return unary("tanh", UnaryOp::Tanh, x); }

Tensor add(const Tensor& a, const Tensor& b) { return binary("add", BinaryOp::Add, a, b); }
Tensor sub(const Tensor& a, const Tensor& b) { return binary("sub", BinaryOp::Sub, a, b); }
Tensor mul(const Tensor& a, const Tensor& b) { return binary("mul", BinaryOp::Mul, a, b); }
Tensor div(const Tensor& a, const Tensor& b) { return binary("div", BinaryOp::Div, a, b); }
Tensor maximum(const Tensor& a, const Tensor& b) { return binary("maximum", BinaryOp::Max, a, b); }

Tensor add(const Tensor& a, float s) { return unary("add_scalar", UnaryOp::AddScalar, a, s); }
Tensor sub(const Tensor& a, float s) { return unary("sub_scalar", UnaryOp::AddScalar, a, -s); }
Tensor mul(const Tensor& a, float s) { return unary("mul_scalar", UnaryOp::MulScalar, a, s); }
Tensor div(const Tensor& a, float s) { return unary("div_scalar", UnaryOp::DivScalar, a, s); }
Tensor maximum(const Tensor& a, float s) { return unary("maximum_scalar", UnaryOp::MaxScalar, a, s); }
Tensor rsub(float s, const Tensor& a) { return unary("rsub_scalar", UnaryOp::RSubScalar, a, s); }
Tensor rdiv(float s, const Tensor& a) { return unary("rdiv_scalar", UnaryOp::RDivScalar, a, s); }

void add_inplace(const Tensor& dst, const Tensor& src) {
  const DType dt = common_storage("add_inplace", dst, "dst", src, "src");
  check_same_device("add_inplace", dst, "dst", src, "src");
  ENGINE_CHECK(dst.is_contiguous(), "add_inplace: destination ", dst.describe(), " must be contiguous");
  const Shape shape = broadcast_shapes("add_inplace", dst.shape(), src.shape());
  ENGINE_CHECK(shape == dst.shape(), "add_inplace: ", src.describe(), " does not broadcast to ", dst.describe());
  kernels::StridedLayout dl = layout_of(dst), sl = broadcast_layout(src, shape);
  coalesce({&dl, &sl});
  const void* db = dst.storage()->data;
  const void* sb = src.storage()->data;
  ENGINE_DISPATCH(
      "add_inplace", dst.device(), traffic(dst, src, dst),
      kernels::binary_fwd_cpu(BinaryOp::Add, dt, db, dl, sb, sl, dst.raw_data(), dst.numel()),
      kernels::binary_fwd_cuda(BinaryOp::Add, dt, db, dl, sb, sl, dst.raw_data(), dst.numel(), compute_stream()));
}

}  // namespace engine
