// Resize ops: argument checks, output allocation, dispatch, and the backward (a gather kernel per
// device). Math: kernels/resize_math.h. Storage: x may be f32, bf16 or f16 (mixed precision); the
// output and the input gradient have x's type (an incoming gradient of another float type is cast
// to it) and the kernels blend and sum in f32.
#include "engine/ops/resize.h"

#include <cmath>

#include "engine/autograd.h"
#include "engine/ops/copy.h"
#include "engine/ops/op_utils.h"
#include "kernels/cpu/resize_cpu.h"
#if defined(ENGINE_WITH_CUDA)
#include "kernels/cuda/resize_cuda.h"
#endif

namespace engine {
namespace {

using kernels::ResizeArgs;
using kernels::ResizeMode;

void check_input(const char* op, const Tensor& x) {
  check_float_storage(op, "x", x);
  ENGINE_CHECK(x.dim() == 4, op, ": x must be a 4-D [N, H, W, C] tensor, got ", x.describe());
  ENGINE_CHECK(x.numel() > 0, op, ": x ", x.describe(), " is empty");
}

Tensor resize_backward(const ResizeArgs& a, const Tensor& g_in, DType dt) {
  const Tensor g = g_in.dtype() == dt ? g_in.contiguous() : copy_contiguous(g_in, dt);
  Tensor gx = Tensor::empty({a.N, a.h.in, a.w.in, a.C}, dt, g.device());
  auto on_cpu = [&] {
    Tensor ws = Tensor::empty({kernels::resize_bwd_workspace_cpu(a)}, DType::F32, g.device());
    kernels::resize_bwd_cpu(a, dt, g.raw_data(), gx.raw_data(), ws.data<float>());
  };
#if defined(ENGINE_WITH_CUDA)
  auto on_cuda = [&] {
    Tensor ws = Tensor::empty({kernels::resize_bwd_workspace_cuda(a)}, DType::F32, g.device());
    kernels::resize_bwd_cuda(a, dt, g.raw_data(), gx.raw_data(), ws.data<float>(), compute_stream());
  };
#endif
  ENGINE_DISPATCH("resize_backward", g.device(), traffic(g, gx), on_cpu(), on_cuda());
  return gx;
}

Tensor resize_impl(const char* op, const Tensor& x, int64_t out_h, int64_t out_w, ResizeMode mode, float scale_h,
                   float scale_w) {
  ENGINE_CHECK(out_h >= 1 && out_w >= 1, op, ": output size ", out_h, "x", out_w, " for x ", x.describe(),
               " must be at least 1x1");
  ResizeArgs a;
  a.N = x.size(0);
  a.C = x.size(3);
  a.h = kernels::make_resize1d(x.size(1), out_h, mode, scale_h);
  a.w = kernels::make_resize1d(x.size(2), out_w, mode, scale_w);
  a.sn = x.strides()[0];
  a.sh = x.strides()[1];
  a.sw = x.strides()[2];
  a.sc = x.strides()[3];
  const DType dt = x.dtype();
  Tensor out = Tensor::empty({a.N, out_h, out_w, a.C}, dt, x.device());
  ENGINE_DISPATCH(op, x.device(), traffic(x, out), kernels::resize_fwd_cpu(a, dt, x.raw_data(), out.raw_data()),
                  kernels::resize_fwd_cuda(a, dt, x.raw_data(), out.raw_data(), compute_stream()));
  record_lambda(op, {x}, out,
                [a, dt](const std::vector<Tensor>& g) { return std::vector<Tensor>{resize_backward(a, g[0], dt)}; });
  return out;
}

int64_t scaled_size(const char* op, const Tensor& x, int dim, float scale, const char* which) {
  ENGINE_CHECK(std::isfinite(scale) && scale > 0.f, op, ": ", which, " must be finite and > 0, got ", scale, " (x ",
               x.describe(), ")");
  const float s = (float)x.size(dim) * scale;  // Paddle: int(in * scale), float product
  ENGINE_CHECK(s >= 1.f && s < 2147483648.f, op, ": ", which, " ", scale, " gives output size ", s, " for x ",
               x.describe(), "; it must be in [1, 2^31)");
  return (int64_t)s;
}

}  // namespace

Tensor resize_bilinear(const Tensor& x, int out_h, int out_w, bool align_corners) {
  check_input("resize_bilinear", x);
  return resize_impl("resize_bilinear", x, out_h, out_w,
                     align_corners ? ResizeMode::BilinearAlignCorners : ResizeMode::BilinearHalfPixel, 0.f, 0.f);
}

Tensor resize_nearest(const Tensor& x, int out_h, int out_w) {
  check_input("resize_nearest", x);
  return resize_impl("resize_nearest", x, out_h, out_w, ResizeMode::Nearest, 0.f, 0.f);
}

Tensor resize_bilinear_scale(const Tensor& x, float scale_h, float scale_w, bool align_corners) {
  const char* op = "resize_bilinear_scale";
  check_input(op, x);
  const int64_t oh = scaled_size(op, x, 1, scale_h, "scale_h"), ow = scaled_size(op, x, 2, scale_w, "scale_w");
  return resize_impl(op, x, oh, ow, align_corners ? ResizeMode::BilinearAlignCorners : ResizeMode::BilinearHalfPixel,
                     scale_h, scale_w);
}

Tensor resize_nearest_scale(const Tensor& x, float scale_h, float scale_w) {
  const char* op = "resize_nearest_scale";
  check_input(op, x);
  const int64_t oh = scaled_size(op, x, 1, scale_h, "scale_h"), ow = scaled_size(op, x, 2, scale_w, "scale_w");
  return resize_impl(op, x, oh, ow, ResizeMode::Nearest, scale_h, scale_w);
}

}  // namespace engine
