// Batch normalisation: argument checks, output allocation, dispatch to one kernel per device, and the
// backward formulas (per-channel math: kernels/cpu/batchnorm_cpu.h, shared with the CUDA kernels).
// Kernels see x as a contiguous [M, C] matrix (M = N*H*W); non-contiguous inputs are copied first.
// Storage (mixed precision): x may be f32, bf16 or f16; y and dx have x's type (an incoming gradient
// of another float type is cast to it); statistics, parameters and their gradients are f32, and the
// kernels compute in f32.
#include "engine/ops/batchnorm.h"

#include <cmath>

#include "engine/autograd.h"
#include "engine/ops/copy.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/op_utils.h"
#include "kernels/cpu/batchnorm_cpu.h"
#if defined(ENGINE_WITH_CUDA)
#include "kernels/cuda/batchnorm_cuda.h"
#endif

namespace engine {
namespace {

struct Geom {
  int64_t M, C;
};

Geom check_x(const char* op, const Tensor& x) {
  check_float_storage(op, "x", x);
  ENGINE_CHECK(x.dim() == 4 || x.dim() == 2, op, ": x must be [N, H, W, C] or [N, C], got ", x.describe());
  ENGINE_CHECK(x.numel() > 0, op, ": x ", x.describe(), " is empty");
  Geom g;
  g.C = x.shape().back();
  g.M = x.numel() / g.C;
  return g;
}

// An optional per-channel f32 [C] operand on x's device.
void check_channel(const char* op, const char* arg, const Tensor& t, const Tensor& x, int64_t C, bool required) {
  if (!t.defined()) {
    ENGINE_CHECK(!required, op, ": argument '", arg, "' is an undefined tensor");
    return;
  }
  check_f32(op, arg, t);
  ENGINE_CHECK(t.dim() == 1 && t.size(0) == C, op, ": '", arg, "' must be [", C, "] to match the channels of x ",
               x.describe(), ", got ", t.describe());
  check_same_device(op, x, "x", t, arg);
}

// Contiguous data without autograd history (a copy only when needed).
Tensor plain(const Tensor& t) {
  if (!t.defined()) return t;
  return t.is_contiguous() ? t.detach() : t.detach().contiguous();
}

const float* cptr(const Tensor& t) { return t.defined() ? t.data<float>() : nullptr; }
float* mptr(const Tensor& t) { return t.defined() ? t.data<float>() : nullptr; }
const void* act_ptr(const Tensor& t) { return t.defined() ? t.raw_data() : nullptr; }

// A gradient in the activations' storage type dt, contiguous, without history.
Tensor grad_as(const Tensor& g, DType dt) {
  if (g.dtype() == dt) return plain(g);
  NoGradGuard no_grad;
  return copy_contiguous(g, dt);
}

#if defined(ENGINE_WITH_CUDA)
Tensor cuda_workspace(int64_t M, int64_t C, Device d) {
  return Tensor::empty({kernels::batch_norm_workspace_floats_cuda(M, C)}, DType::F32, d);
}
#endif

void run_stats(const char* op, const Tensor& xc, const Geom& g, const Tensor& mean, const Tensor& var, const Tensor& rm,
               const Tensor& rv, float momentum) {
  ENGINE_DISPATCH(op, xc.device(), traffic(xc, mean, var, rm, rv),
                  kernels::batch_norm_stats_cpu(xc.dtype(), xc.raw_data(), g.M, g.C, mptr(mean), mptr(var), mptr(rm),
                                                mptr(rv), momentum),
                  {
                    Tensor ws = cuda_workspace(g.M, g.C, xc.device());
                    kernels::batch_norm_stats_cuda(xc.dtype(), xc.raw_data(), g.M, g.C, mptr(mean), mptr(var), mptr(rm),
                                                   mptr(rv), momentum, ws.data<float>(), compute_stream());
                  });
}

kernels::BnActKind act_kind(const BnActivation& a) {
  switch (a.kind) {
    case BnActivation::Kind::Relu:
      return kernels::BnActKind::Relu;
    case BnActivation::Kind::LeakyRelu:
      return kernels::BnActKind::LeakyRelu;
    default:
      return kernels::BnActKind::None;
  }
}

void run_fwd(const char* op, const Tensor& xc, const Geom& g, const Tensor& mean, const Tensor& var, const Tensor& w,
             const Tensor& b, float eps, const Tensor& y, const BnActivation& act = {}) {
  const kernels::BnActKind k = act_kind(act);
  const float slope = act.negative_slope;
  ENGINE_DISPATCH(op, xc.device(), traffic(xc, mean, var, w, b, y),
                  kernels::batch_norm_fwd_cpu(xc.dtype(), xc.raw_data(), g.M, g.C, cptr(mean), cptr(var), cptr(w),
                                              cptr(b), eps, y.raw_data(), k, slope),
                  kernels::batch_norm_fwd_cuda(xc.dtype(), xc.raw_data(), g.M, g.C, cptr(mean), cptr(var), cptr(w),
                                               cptr(b), eps, y.raw_data(), compute_stream(), k, slope));
}

void run_bwd_reduce(const char* op, const Tensor& gc, const Tensor& xc, const Geom& g, const Tensor& mean,
                    const Tensor& var, const Tensor& w, float eps, bool train, const kernels::BnBwdOut& o,
                    const kernels::BnAct& act) {
  ENGINE_DISPATCH(op, xc.device(), traffic(gc, xc, mean, var, w),
                  kernels::batch_norm_bwd_reduce_cpu(xc.dtype(), gc.raw_data(), xc.raw_data(), g.M, g.C, cptr(mean),
                                                     cptr(var), cptr(w), eps, train, o, act),
                  {
                    Tensor ws = cuda_workspace(g.M, g.C, xc.device());
                    kernels::batch_norm_bwd_reduce_cuda(xc.dtype(), gc.raw_data(), xc.raw_data(), g.M, g.C, cptr(mean),
                                                        cptr(var), cptr(w), eps, train, o, ws.data<float>(),
                                                        compute_stream(), act);
                  });
}

// dx = k1*g + k2*(x - m) + k3 (undefined operands drop their term); g first goes through the fused
// activation's gradient unless act.kind is None.
void run_bwd(const char* op, const Tensor& gc, const Tensor& xc, const Geom& g, const Tensor& m, const float* k1,
             const float* k2, const float* k3, const Tensor& dx, const kernels::BnAct& act = {}) {
  ENGINE_DISPATCH(op, dx.device(), traffic(gc, xc, m, dx),
                  kernels::batch_norm_bwd_cpu(dx.dtype(), act_ptr(gc), act_ptr(xc), g.M, g.C, cptr(m), k1, k2, k3,
                                              dx.raw_data(), act),
                  kernels::batch_norm_bwd_cuda(dx.dtype(), act_ptr(gc), act_ptr(xc), g.M, g.C, cptr(m), k1, k2, k3,
                                               dx.raw_data(), compute_stream(), act));
}

// Gradients of y = (x - mean) * w * invstd + b w.r.t. (x, mean, var, w, b), for the statistics
// either computed from x (train = true: dx includes the path through them; dmean/dvar unused) or
// given (train = false: affine dx, and dmean/dvar when asked). With a fused activation (bias `b`
// defined or not) the incoming gradient first goes through the activation's gradient at the
// recomputed pre-activation.
std::vector<Tensor> bn_backward(const char* op, const Tensor& g_in, const Tensor& xs, const Geom& geo,
                                const Tensor& mean, const Tensor& var, const Tensor& w, float eps, bool train,
                                bool need_x, bool need_mean, bool need_var, bool need_w, bool need_b,
                                const BnActivation& act = {}, const Tensor& b = Tensor()) {
  const Tensor gc = grad_as(g_in, xs.dtype());
  const Device d = gc.device();
  Tensor dx, dmean, dvar, dw, db;
  Tensor coef = Tensor::empty({3, geo.C}, DType::F32, d);
  if (need_mean) dmean = Tensor::empty({geo.C}, DType::F32, d);
  if (need_var) dvar = Tensor::empty({geo.C}, DType::F32, d);
  if (need_w) dw = Tensor::empty({geo.C}, DType::F32, d);
  if (need_b) db = Tensor::empty({geo.C}, DType::F32, d);
  kernels::BnBwdOut o;
  o.dweight = mptr(dw);
  o.dbias = mptr(db);
  o.dmean = mptr(dmean);
  o.dvar = mptr(dvar);
  float* k = coef.data<float>();
  o.k1 = k;
  o.k2 = k + geo.C;
  o.k3 = k + 2 * geo.C;
  kernels::BnAct r;
  const bool fused = act.fused();
  if (fused) {
    r.kind = act_kind(act);
    r.slope = act.negative_slope;
    r.mean = cptr(mean);
    r.var = cptr(var);
    r.weight = cptr(w);
    r.bias = cptr(b);
    r.eps = eps;
  }
  run_bwd_reduce(op, gc, xs, geo, mean, var, w, eps, train, o, r);
  if (need_x) {
    dx = Tensor::empty(xs.shape(), xs.dtype(), d);
    if (train) {
      run_bwd(op, gc, xs, geo, mean, o.k1, o.k2, o.k3, dx, r);
    } else {
      // The fused activation needs x (for z) even though the affine dx has no x term.
      run_bwd(op, gc, fused ? xs : Tensor(), geo, Tensor(), o.k1, nullptr, nullptr, dx, r);
    }
  }
  return {dx, dmean, dvar, dw, db};
}

}  // namespace

Tensor batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                  const Tensor& running_var, const BatchNormArgs& a) {
  const char* op = "batch_norm";
  const Geom geo = check_x(op, x);
  check_channel(op, "weight", weight, x, geo.C, false);
  check_channel(op, "bias", bias, x, geo.C, false);
  check_channel(op, "running_mean", running_mean, x, geo.C, !a.training);
  check_channel(op, "running_var", running_var, x, geo.C, !a.training);
  ENGINE_CHECK(running_mean.defined() == running_var.defined(), op,
               ": running_mean and running_var must both be given or both be undefined");
  ENGINE_CHECK(std::isfinite(a.eps) && a.eps >= 0.f, op, ": eps must be finite and >= 0, got ", a.eps);
  ENGINE_CHECK(std::isfinite(a.momentum), op, ": momentum must be finite, got ", a.momentum);
  ENGINE_CHECK(std::isfinite(a.act.negative_slope), op, ": the leaky_relu negative slope must be finite, got ",
               a.act.negative_slope);
  if (a.training && running_mean.defined()) {
    ENGINE_CHECK(running_mean.is_contiguous() && running_var.is_contiguous(), op,
                 ": running_mean/running_var must be contiguous (they are updated in place), got ",
                 running_mean.describe(), " and ", running_var.describe());
  }
  ENGINE_CHECK(!a.training || geo.M > 1, op, ": training needs more than one value per channel, got x ", x.describe());

  const Tensor xs = plain(x), ws = plain(weight), bs = plain(bias);
  const Device d = x.device();
  Tensor y = Tensor::empty(x.shape(), x.dtype(), d);
  Tensor mean, var;
  if (a.training) {
    mean = Tensor::empty({geo.C}, DType::F32, d);
    var = Tensor::empty({geo.C}, DType::F32, d);
    run_stats(op, xs, geo, mean, var, running_mean, running_var, a.momentum);
  } else {
    mean = plain(running_mean);
    var = plain(running_var);
  }
  run_fwd(op, xs, geo, mean, var, ws, bs, a.eps, y, a.act);

  if (needs_grad({&x, &weight, &bias})) {
    if (!a.training) {  // the running statistics may change before backward runs
      mean = mean.clone();
      var = var.clone();
    }
    const bool need_x = x.requires_grad(), need_w = weight.defined() && weight.requires_grad(),
               need_b = bias.defined() && bias.requires_grad();
    const bool train = a.training;
    const BnActivation act = a.act;
    const float eps = a.eps;
    record_lambda(op, {x, weight, bias}, y, [=](const std::vector<Tensor>& g) {
      auto r = bn_backward("batch_norm_backward", g[0], xs, geo, mean, var, ws, eps, train, need_x, false, false,
                           need_w, need_b, act, bs);
      return std::vector<Tensor>{r[0], r[3], r[4]};
    });
  }
  return y;
}

BatchNormStats batch_norm_local_stats(const Tensor& x, const Tensor& shift) {
  const char* op = "batch_norm_local_stats";
  const Geom geo = check_x(op, x);
  check_channel(op, "shift", shift, x, geo.C, false);
  const Tensor xs = plain(x), sh = plain(shift);
  const Device d = x.device();
  Tensor mean = Tensor::empty({geo.C}, DType::F32, d), var = Tensor::empty({geo.C}, DType::F32, d);
  run_stats(op, xs, geo, mean, var, Tensor(), Tensor(), 0.f);
  BatchNormStats st;
  st.count = geo.M;
  {
    // sum = M * (mean - shift), sum_sq = M * (var + (mean - shift)^2): exact identities, computed from
    // the stable statistics so no large sums of squares are ever formed.
    NoGradGuard no_grad;
    const Tensor dm = sh.defined() ? sub(mean, sh) : mean;
    st.sum = mul(dm, (float)geo.M);
    st.sum_sq = mul(add(var, mul(dm, dm)), (float)geo.M);
  }
  if (needs_grad({&x})) {
    // d sum / dx = 1, d sum_sq / dx = 2 (x - shift):  dx = g_sum + 2 * g_sum_sq * (x - shift).
    auto node = std::make_shared<LambdaNode>(op, [xs, sh, geo](const std::vector<Tensor>& g) {
      const Tensor gs = plain(g[0]), gq2 = mul(plain(g[1]), 2.f);
      Tensor dx = Tensor::empty(xs.shape(), xs.dtype(), xs.device());
      run_bwd("batch_norm_local_stats_backward", Tensor(), xs, geo, sh, nullptr, gq2.data<float>(), gs.data<float>(),
              dx);
      return std::vector<Tensor>{dx};
    });
    record(node, {x}, {st.sum, st.sum_sq});
  }
  return st;
}

BatchNormMoments batch_norm_moments(const Tensor& sum, const Tensor& sum_sq, int64_t count, const Tensor& shift) {
  const char* op = "batch_norm_moments";
  check_f32(op, "sum", sum);
  check_f32(op, "sum_sq", sum_sq);
  ENGINE_CHECK(sum.dim() == 1 && sum_sq.shape() == sum.shape(), op, ": sum and sum_sq must be the same [C], got ",
               sum.describe(), " and ", sum_sq.describe());
  check_same_device(op, sum, "sum", sum_sq, "sum_sq");
  ENGINE_CHECK(count > 0, op, ": count must be positive, got ", count);
  if (shift.defined()) {
    check_f32(op, "shift", shift);
    ENGINE_CHECK(shift.shape() == sum.shape(), op, ": shift must be ", sum.describe(), ", got ", shift.describe());
    check_same_device(op, sum, "sum", shift, "shift");
  }
  const float n = (float)count;
  const Tensor ms = div(sum, n);  // mean - shift
  BatchNormMoments mv;
  mv.mean = shift.defined() ? add(ms, shift.detach()) : ms;
  mv.var = maximum(sub(div(sum_sq, n), mul(ms, ms)), 0.f);
  return mv;
}

BatchNormMoments batch_norm_moments(const Tensor& sum, const Tensor& sum_sq, const Tensor& count, const Tensor& shift) {
  const char* op = "batch_norm_moments";
  check_f32(op, "sum", sum);
  check_f32(op, "sum_sq", sum_sq);
  check_f32(op, "count", count);
  ENGINE_CHECK(sum.dim() == 1 && sum_sq.shape() == sum.shape(), op, ": sum and sum_sq must be the same [C], got ",
               sum.describe(), " and ", sum_sq.describe());
  ENGINE_CHECK(count.numel() == 1 && count.dim() == 1, op, ": count must be f32[1], got ", count.describe());
  check_same_device(op, sum, "sum", sum_sq, "sum_sq");
  check_same_device(op, sum, "sum", count, "count");
  if (shift.defined()) {
    check_f32(op, "shift", shift);
    ENGINE_CHECK(shift.shape() == sum.shape(), op, ": shift must be ", sum.describe(), ", got ", shift.describe());
    check_same_device(op, sum, "sum", shift, "shift");
  }
  const Tensor n = count.detach();
  const Tensor ms = div(sum, n);  // mean - shift
  BatchNormMoments mv;
  mv.mean = shift.defined() ? add(ms, shift.detach()) : ms;
  mv.var = maximum(sub(div(sum_sq, n), mul(ms, ms)), 0.f);
  return mv;
}

Tensor batch_norm_apply(const Tensor& x, const Tensor& mean, const Tensor& var, const Tensor& weight,
                        const Tensor& bias, float eps) {
  const char* op = "batch_norm_apply";
  const Geom geo = check_x(op, x);
  check_channel(op, "mean", mean, x, geo.C, true);
  check_channel(op, "var", var, x, geo.C, true);
  check_channel(op, "weight", weight, x, geo.C, false);
  check_channel(op, "bias", bias, x, geo.C, false);
  ENGINE_CHECK(std::isfinite(eps) && eps >= 0.f, op, ": eps must be finite and >= 0, got ", eps);
  const Tensor xs = plain(x), ms = plain(mean), vs = plain(var), ws = plain(weight), bs = plain(bias);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  run_fwd(op, xs, geo, ms, vs, ws, bs, eps, y);
  if (needs_grad({&x, &mean, &var, &weight, &bias})) {
    auto rg = [](const Tensor& t) { return t.defined() && t.requires_grad(); };
    const bool nx = rg(x), nm = rg(mean), nv = rg(var), nw = rg(weight), nb = rg(bias);
    record_lambda(op, {x, mean, var, weight, bias}, y, [=](const std::vector<Tensor>& g) {
      return bn_backward("batch_norm_apply_backward", g[0], xs, geo, ms, vs, ws, eps, false, nx, nm, nv, nw, nb);
    });
  }
  return y;
}

void batch_norm_update_running(const Tensor& running_mean, const Tensor& running_var, const Tensor& mean,
                               const Tensor& var, float momentum) {
  const char* op = "batch_norm_update_running";
  check_f32(op, "mean", mean);
  check_f32(op, "var", var);
  ENGINE_CHECK(mean.dim() == 1 && var.shape() == mean.shape(), op, ": mean and var must be the same [C], got ",
               mean.describe(), " and ", var.describe());
  check_same_device(op, mean, "mean", var, "var");
  ENGINE_CHECK(std::isfinite(momentum), op, ": momentum must be finite, got ", momentum);
  const int64_t C = mean.size(0);
  for (const Tensor* r : {&running_mean, &running_var}) {
    if (!r->defined()) continue;
    check_f32(op, r == &running_mean ? "running_mean" : "running_var", *r);
    ENGINE_CHECK(r->shape() == mean.shape() && r->is_contiguous(), op, ": running statistics must be contiguous ",
                 mean.describe(), ", got ", r->describe());
    check_same_device(op, mean, "mean", *r, r == &running_mean ? "running_mean" : "running_var");
  }
  const Tensor ms = plain(mean), vs = plain(var);
  ENGINE_DISPATCH(op, mean.device(), traffic(running_mean, running_var, ms, vs, running_mean, running_var),
                  kernels::batch_norm_update_running_cpu(mptr(running_mean), mptr(running_var), ms.data<float>(),
                                                         vs.data<float>(), C, momentum),
                  kernels::batch_norm_update_running_cuda(mptr(running_mean), mptr(running_var), ms.data<float>(),
                                                          vs.data<float>(), C, momentum, compute_stream()));
}

}  // namespace engine
