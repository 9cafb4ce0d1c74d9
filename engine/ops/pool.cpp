// Pooling ops: argument checks, output allocation, dispatch to one kernel per device, and backward
// (window math: kernels/cpu/pool_cpu.h, shared with the CUDA kernels). Storage: x may be f32, bf16
// or f16 (mixed precision); y and dx have x's type and the kernels sum and compare in f32.
#include "engine/ops/pool.h"

#include <limits>

#include "engine/autograd.h"
#include "engine/ops/copy.h"
#include "engine/ops/op_utils.h"
#include "kernels/cpu/pool_cpu.h"
#if defined(ENGINE_WITH_CUDA)
#include "kernels/cuda/pool_cuda.h"
#endif

namespace engine {
namespace {

using kernels::Pool2dGeom;
using kernels::PoolMode;

constexpr int64_t kMaxPixels = int64_t(1) << 30;  // 32-bit pixel math in the kernels (with headroom)

Pool2dGeom input_geom(const char* op, const Tensor& x) {
  check_float_storage(op, "x", x);
  ENGINE_CHECK(x.dim() == 4, op, ": x must be a 4-D [N, H, W, C] tensor, got ", x.describe());
  ENGINE_CHECK(x.size(1) >= 1 && x.size(2) >= 1, op, ": x ", x.describe(), " has an empty spatial dimension");
  ENGINE_CHECK(x.size(0) * x.size(1) * x.size(2) < kMaxPixels && x.size(3) < kMaxPixels, op, ": x ", x.describe(),
               " is too large (N*H*W and C must be below 2^30)");
  Pool2dGeom g{};
  g.n = (int)x.size(0);
  g.h = (int)x.size(1);
  g.w = (int)x.size(2);
  g.c = (int)x.size(3);
  return g;
}

Pool2dGeom window_geom(const char* op, const Tensor& x, int kernel, int stride, int padding, PoolMode mode) {
  Pool2dGeom g = input_geom(op, x);
  ENGINE_CHECK(kernel >= 1 && stride >= 1 && padding >= 0, op,
               ": kernel, stride must be >= 1 and padding >= 0, got kernel ", kernel, ", stride ", stride, ", padding ",
               padding);
  ENGINE_CHECK(padding <= kernel / 2, op, ": padding ", padding, " must be at most half the kernel size ", kernel);
  ENGINE_CHECK((int64_t)g.h + 2 * (int64_t)padding >= kernel && (int64_t)g.w + 2 * (int64_t)padding >= kernel, op,
               ": kernel ", kernel, " is larger than the padded input of x ", x.describe(), " (padding ", padding, ")");
  g.kh = g.kw = kernel;
  g.sh = g.sw = stride;
  g.ph = g.pw = padding;
  g.oh = Pool2dGeom::out_size(g.h, kernel, stride, padding);
  g.ow = Pool2dGeom::out_size(g.w, kernel, stride, padding);
  g.mode = mode;
  return g;
}

Pool2dGeom adaptive_geom(const char* op, const Tensor& x, int out_h, int out_w) {
  Pool2dGeom g = input_geom(op, x);
  ENGINE_CHECK(out_h >= 1 && out_w >= 1, op, ": output size must be >= 1, got ", out_h, "x", out_w, " for x ",
               x.describe());
  ENGINE_CHECK((int64_t)g.n * out_h * out_w < kMaxPixels && (int64_t)g.h * out_h < kMaxPixels &&
                   (int64_t)g.w * out_w < kMaxPixels,
               op, ": output size ", out_h, "x", out_w, " is too large for x ", x.describe());
  g.oh = out_h;
  g.ow = out_w;
  g.kh = g.kw = g.sh = g.sw = 1;
  g.ph = g.pw = 0;
  g.mode = PoolMode::Adaptive;
  return g;
}

Tensor plain(const Tensor& t) { return t.is_contiguous() ? t.detach() : t.detach().contiguous(); }

// A gradient in the storage type dt of the pooled tensor, contiguous (another float type is cast).
Tensor grad_as(const Tensor& g, DType dt) {
  if (g.dtype() == dt) return plain(g);
  NoGradGuard no_grad;
  return copy_contiguous(g, dt);
}

Tensor avg_pool_impl(const char* op, const Tensor& x, const Pool2dGeom& g) {
  const Tensor xs = plain(x);
  const DType dt = x.dtype();
  Tensor y = Tensor::empty({g.n, g.oh, g.ow, g.c}, dt, x.device());
  ENGINE_DISPATCH(op, x.device(), traffic(xs, y), kernels::avg_pool2d_fwd_cpu(dt, xs.raw_data(), y.raw_data(), g),
                  kernels::avg_pool2d_fwd_cuda(dt, xs.raw_data(), y.raw_data(), g, compute_stream()));
  const Shape xshape = x.shape();
  record_lambda(op, {x}, y, [g, xshape, dt](const std::vector<Tensor>& grads) {
    const Tensor gy = grad_as(grads[0], dt);
    Tensor gx = Tensor::empty(xshape, dt, gy.device());
    ENGINE_DISPATCH("avg_pool2d_backward", gy.device(), traffic(gy, gx),
                    kernels::avg_pool2d_bwd_cpu(dt, gy.raw_data(), gx.raw_data(), g),
                    kernels::avg_pool2d_bwd_cuda(dt, gy.raw_data(), gx.raw_data(), g, compute_stream()));
    return std::vector<Tensor>{gx};
  });
  return y;
}

}  // namespace

Tensor avg_pool2d(const Tensor& x, int kernel, int stride, int padding, bool exclusive) {
  const char* op = "avg_pool2d";
  const Pool2dGeom g =
      window_geom(op, x, kernel, stride, padding, exclusive ? PoolMode::AvgExclusive : PoolMode::AvgInclusive);
  return avg_pool_impl(op, x, g);
}

Tensor max_pool2d(const Tensor& x, int kernel, int stride, int padding) {
  const char* op = "max_pool2d";
  const Pool2dGeom g = window_geom(op, x, kernel, stride, padding, PoolMode::Max);
  const Tensor xs = plain(x);
  const Device d = x.device();
  const DType dt = x.dtype();
  Tensor y = Tensor::empty({g.n, g.oh, g.ow, g.c}, dt, d);
  Tensor idx = Tensor::empty({g.n, g.oh, g.ow, g.c}, DType::I32, d);
  ENGINE_DISPATCH(
      op, d, traffic(xs, y, idx), kernels::max_pool2d_fwd_cpu(dt, xs.raw_data(), y.raw_data(), idx.data<int32_t>(), g),
      kernels::max_pool2d_fwd_cuda(dt, xs.raw_data(), y.raw_data(), idx.data<int32_t>(), g, compute_stream()));
  const Shape xshape = x.shape();
  if (needs_grad({&x})) {
    record_lambda(op, {x}, y, [g, xshape, idx, dt](const std::vector<Tensor>& grads) {
      const Tensor gy = grad_as(grads[0], dt);
      Tensor gx = Tensor::empty(xshape, dt, gy.device());
      ENGINE_DISPATCH(
          "max_pool2d_backward", gy.device(), traffic(gy, idx, gx),
          kernels::max_pool2d_bwd_cpu(dt, gy.raw_data(), idx.data<int32_t>(), gx.raw_data(), g),
          kernels::max_pool2d_bwd_cuda(dt, gy.raw_data(), idx.data<int32_t>(), gx.raw_data(), g, compute_stream()));
      return std::vector<Tensor>{gx};
    });
  }
  return y;
}

Tensor adaptive_avg_pool2d(const Tensor& x, int out_h, int out_w) {
  const char* op = "adaptive_avg_pool2d";
  return avg_pool_impl(op, x, adaptive_geom(op, x, out_h, out_w));
}

Tensor global_avg_pool2d(const Tensor& x) {
  const char* op = "global_avg_pool2d";
  return avg_pool_impl(op, x, adaptive_geom(op, x, 1, 1));
}

}  // namespace engine
