// Pooling ops: argument checks, output allocation, dispatch to one kernel per device, and backward
// (window math: kernels/cpu/pool_cpu.h, shared with the CUDA kernels).
#include "engine/ops/pool.h"

#include <limits>

#include "engine/autograd.h"
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
  check_f32(op, "x", x);
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

Tensor avg_pool_impl(const char* op, const Tensor& x, const Pool2dGeom& g) {
  const Tensor xs = plain(x);
  Tensor y = Tensor::empty({g.n, g.oh, g.ow, g.c}, DType::F32, x.device());
  ENGINE_DISPATCH(op, x.device(), traffic(xs, y), kernels::avg_pool2d_fwd_cpu(xs.data<float>(), y.data<float>(), g),
                  kernels::avg_pool2d_fwd_cuda(xs.data<float>(), y.data<float>(), g, compute_stream()));
  const Shape xshape = x.shape();
  record_lambda(op, {x}, y, [g, xshape](const std::vector<Tensor>& grads) {
    const Tensor gy = plain(grads[0]);
    Tensor gx = Tensor::empty(xshape, DType::F32, gy.device());
    ENGINE_DISPATCH("avg_pool2d_backward", gy.device(), traffic(gy, gx),
                    kernels::avg_pool2d_bwd_cpu(gy.data<float>(), gx.data<float>(), g),
                    kernels::avg_pool2d_bwd_cuda(gy.data<float>(), gx.data<float>(), g, compute_stream()));
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
  Tensor y = Tensor::empty({g.n, g.oh, g.ow, g.c}, DType::F32, d);
  Tensor idx = Tensor::empty({g.n, g.oh, g.ow, g.c}, DType::I32, d);
  ENGINE_DISPATCH(
      op, d, traffic(xs, y, idx),
      kernels::max_pool2d_fwd_cpu(xs.data<float>(), y.data<float>(), idx.data<int32_t>(), g),
      kernels::max_pool2d_fwd_cuda(xs.data<float>(), y.data<float>(), idx.data<int32_t>(), g, compute_stream()));
  const Shape xshape = x.shape();
  if (needs_grad({&x})) {
    record_lambda(op, {x}, y, [g, xshape, idx](const std::vector<Tensor>& grads) {
      const Tensor gy = plain(grads[0]);
      Tensor gx = Tensor::empty(xshape, DType::F32, gy.device());
      ENGINE_DISPATCH(
          "max_pool2d_backward", gy.device(), traffic(gy, idx, gx),
          kernels::max_pool2d_bwd_cpu(gy.data<float>(), idx.data<int32_t>(), gx.data<float>(), g),
          kernels::max_pool2d_bwd_cuda(gy.data<float>(), idx.data<int32_t>(), gx.data<float>(), g, compute_stream()));
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
