// softmax / log_softmax / argmax: checks, [outer, L, inner] geometry, dispatch, backward.
#include "engine/ops/softmax.h"

#include "engine/autograd.h"
#include "engine/ops/copy.h"
#include "engine/ops/op_utils.h"
#include "kernels/cpu/softmax_cpu.h"
#if defined(ENGINE_WITH_CUDA)
#include "kernels/cuda/softmax_cuda.h"
#endif

namespace engine {
namespace {

struct Geo {
  int64_t outer = 1, L = 1, inner = 1;
};

Geo check_and_geometry(const char* op, const Tensor& x, int axis, int* ax_out) {
  check_float_storage(op, "x", x);
  ENGINE_CHECK(x.dim() >= 1, op, ": x ", x.describe(), " is 0-D; it needs an axis to run over");
  const int ax = normalize_axis(op, axis, x.dim());
  ENGINE_CHECK(x.size(ax) > 0, op, ": axis ", axis, " of x ", x.describe(), " is empty");
  Geo g;
  for (int d = 0; d < x.dim(); ++d) (d < ax ? g.outer : d == ax ? g.L : g.inner) *= x.size(d);
  *ax_out = ax;
  return g;
}

// dx has y's storage type; an incoming gradient of another float type is cast to it first.
Tensor softmax_backward(const Tensor& g_in, const Tensor& y, Geo geo, bool log_) {
  const Tensor g = g_in.dtype() == y.dtype() ? g_in.contiguous() : copy_contiguous(g_in, y.dtype());
  Tensor dx = Tensor::empty(y.shape(), y.dtype(), y.device());
  ENGINE_DISPATCH(
      log_ ? "log_softmax_backward" : "softmax_backward", y.device(), traffic(g, y, dx),
      kernels::softmax_bwd_cpu(y.dtype(), g.raw_data(), y.raw_data(), dx.raw_data(), geo.outer, geo.L, geo.inner, log_),
      kernels::softmax_bwd_cuda(y.dtype(), g.raw_data(), y.raw_data(), dx.raw_data(), geo.outer, geo.L, geo.inner, log_,
                                compute_stream()));
  return dx;
}

Tensor softmax_impl(const char* op, const Tensor& x, int axis, bool log_) {
  int ax;
  const Geo geo = check_and_geometry(op, x, axis, &ax);
  const Tensor xc = x.is_contiguous() ? x : x.detach().contiguous();
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (y.numel() > 0) {
    ENGINE_DISPATCH(op, x.device(), traffic(xc, y),
                    kernels::softmax_fwd_cpu(x.dtype(), xc.raw_data(), y.raw_data(), geo.outer, geo.L, geo.inner, log_),
                    kernels::softmax_fwd_cuda(x.dtype(), xc.raw_data(), y.raw_data(), geo.outer, geo.L, geo.inner, log_,
                                              compute_stream()));
  }
  if (needs_grad({&x})) {
    const Tensor ys = y.detach();  // y (contiguous) is all the backward needs
    record_lambda(op, {x}, y, [ys, geo, log_](const std::vector<Tensor>& g) {
      return std::vector<Tensor>{softmax_backward(g[0], ys, geo, log_)};
    });
  }
  return y;
}

}  // namespace

Tensor softmax(const Tensor& x, int axis) { return softmax_impl("softmax", x, axis, false); }
Tensor log_softmax(const Tensor& x, int axis) { return softmax_impl("log_softmax", x, axis, true); }

Tensor argmax(const Tensor& x, int axis, bool keepdim) {
  const char* op = "argmax";
  int ax;
  const Geo geo = check_and_geometry(op, x, axis, &ax);
  const Tensor xc = x.is_contiguous() ? x : x.detach().contiguous();
  Shape s;
  for (int d = 0; d < x.dim(); ++d) {
    if (d != ax)
      s.push_back(x.size(d));
    else if (keepdim)
      s.push_back(1);
  }
  Tensor idx = Tensor::empty(s, DType::I64, x.device());
  if (idx.numel() > 0) {
    ENGINE_DISPATCH(op, x.device(), traffic(xc, idx),
                    kernels::argmax_cpu(x.dtype(), xc.raw_data(), idx.data<int64_t>(), geo.outer, geo.L, geo.inner),
                    kernels::argmax_cuda(x.dtype(), xc.raw_data(), idx.data<int64_t>(), geo.outer, geo.L, geo.inner,
                                         compute_stream()));
  }
  return idx;
}

}  // namespace engine
