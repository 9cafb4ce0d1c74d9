// Reductions: sum, mean, max (+argmax), sum_to_shape; forward and backward on CPU and CUDA.
//
// Every reduction is coalesced to a contiguous x viewed as [outer, reduce, inner]:
//  - "block" case: ignoring size-1 dims, the reduced axes are one run of adjacent axes. Then outer =
//    product of the axes before the run, inner = product after it (NHWC per-channel statistics:
//    outer = 1, inner = C; reductions over the last axis: inner = 1). A non-contiguous x is first
//    copied to contiguous (same logical order), so strided inputs take the same path as contiguous ones.
//  - otherwise x is permuted to (kept axes..., reduced axes...) and made contiguous: inner = 1. The
//    row-major flat index within the reduced axes (max's argmax) is unchanged by this permutation.
// Backward uses dedicated kernels in the same geometry (in the permuted case the gradient is built
// in permuted order and permuted back with one copy).
#include "engine/ops/reduce.h"

#include <limits>

#include "engine/autograd.h"
#include "engine/ops/copy.h"
#include "engine/ops/op_utils.h"
#include "kernels/cpu/reduce_cpu.h"
#if defined(ENGINE_WITH_CUDA)
#include "kernels/cuda/reduce_cuda.h"
#endif

namespace engine {
namespace {

enum class Kind { Sum, Max };

struct Plan {
  Shape in_shape;
  Shape out_shape;           // keepdim or not, as asked
  DType dtype = DType::F32;  // x's storage type (f32, bf16 or f16); the kernels' outputs are f32
  std::vector<bool> reduced;
  int64_t count = 1;  // elements reduced into each output
  bool block = true;
  int64_t outer = 1, reduce = 1, inner = 1;
  std::vector<int> perm;     // (kept..., reduced...) when !block
  std::vector<int> inverse;  // inverse of perm
};

std::string axes_str(const std::vector<int>& axes) { return shape_str(axes); }

Plan make_plan(const Tensor& x, const std::vector<bool>& reduced, const Shape& out_shape) {
  Plan p;
  p.in_shape = x.shape();
  p.dtype = x.dtype();
  p.out_shape = out_shape;
  p.reduced = reduced;
  const int n = x.dim();
  // Non-size-1 dims: are the reduced ones a single run?
  int first = -1, last = -1;
  for (int d = 0; d < n; ++d) {
    if (reduced[d]) p.count *= p.in_shape[d];
    if (p.in_shape[d] == 1 || !reduced[d]) continue;
    if (first < 0) first = d;
    last = d;
  }
  if (first >= 0)
    for (int d = first; d <= last; ++d)
      if (!reduced[d] && p.in_shape[d] != 1) p.block = false;
  if (p.block) {
    if (first < 0) {  // nothing of size > 1 is reduced: a copy
      p.outer = shape_numel(p.in_shape);
    } else {
      for (int d = 0; d < first; ++d) p.outer *= p.in_shape[d];
      for (int d = last + 1; d < n; ++d) p.inner *= p.in_shape[d];
    }
    p.reduce = p.count;
  } else {
    for (int d = 0; d < n; ++d)
      if (!reduced[d]) {
        p.perm.push_back(d);
        p.outer *= p.in_shape[d];
      }
    for (int d = 0; d < n; ++d)
      if (reduced[d]) p.perm.push_back(d);
    p.inverse.resize(n);
    for (int i = 0; i < n; ++i) p.inverse[p.perm[i]] = i;
    p.reduce = p.count;
    p.inner = 1;
  }
  return p;
}

// Parses `axes` (empty = all; negative from the end) into a per-dim mask, with errors naming op and x.
std::vector<bool> reduced_mask(const char* op, const Tensor& x, const std::vector<int>& axes) {
  const int n = x.dim();
  std::vector<bool> mask(n, axes.empty());
  for (int a : axes) {
    ENGINE_CHECK(a >= -n && a < n, op, ": axis ", a, " is out of range for x ", x.describe(), " (axes ", axes_str(axes),
                 ")");
    const int d = a < 0 ? a + n : a;
    ENGINE_CHECK(!mask[d], op, ": axis ", a, " appears more than once in axes ", axes_str(axes), " for x ",
                 x.describe());
    mask[d] = true;
  }
  return mask;
}

Shape reduced_shape(const Shape& in, const std::vector<bool>& mask, bool keepdim) {
  Shape s;
  for (size_t d = 0; d < in.size(); ++d) {
    if (!mask[d]) {
      s.push_back(in[d]);
    } else if (keepdim) {
      s.push_back(1);
    }
  }
  return s;
}

// x in the plan's [outer, reduce, inner] geometry, contiguous (a copy when needed). No autograd.
Tensor coalesced_input(const Tensor& x, const Plan& p) {
  NoGradGuard no_grad;
  if (p.block) return x.is_contiguous() ? x : copy_contiguous(x, x.dtype());
  Tensor v = x.detach().permute(p.perm);
  return v.is_contiguous() ? v : copy_contiguous(v, v.dtype());
}

// Runs the forward kernel: values into `out` (outer*inner elements, contiguous), indices into `idx`
// for max.
void run_forward(const char* op, Kind kind, const Tensor& xc, const Plan& p, float scale, const Tensor& out,
                 const Tensor& idx) {
  const Device dev = xc.device();
  const DType xt = xc.dtype();
  const void* x = xc.raw_data();
  float* o = out.data<float>();
  if (kind == Kind::Sum) {
#if defined(ENGINE_WITH_CUDA)
    Tensor ws;
    if (dev.is_cuda()) {
      const int64_t n = kernels::reduce_workspace_cuda(p.outer, p.reduce, p.inner);
      if (n > 0) ws = Tensor::empty({n}, DType::F32, dev);
    }
#endif
    ENGINE_DISPATCH(op, dev, traffic(xc, out), kernels::reduce_sum_fwd_cpu(xt, x, o, p.outer, p.reduce, p.inner, scale),
                    kernels::reduce_sum_fwd_cuda(xt, x, o, p.outer, p.reduce, p.inner, scale,
                                                 ws.defined() ? ws.data<float>() : nullptr, compute_stream()));
  } else {
    int64_t* oi = idx.data<int64_t>();
#if defined(ENGINE_WITH_CUDA)
    Tensor wv, wi;
    if (dev.is_cuda()) {
      const int64_t n = kernels::reduce_workspace_cuda(p.outer, p.reduce, p.inner);
      if (n > 0) {
        wv = Tensor::empty({n}, DType::F32, dev);
        wi = Tensor::empty({n}, DType::I64, dev);
      }
    }
#endif
    ENGINE_DISPATCH(op, dev, traffic(xc, out, idx),
                    kernels::reduce_max_fwd_cpu(xt, x, o, oi, p.outer, p.reduce, p.inner),
                    kernels::reduce_max_fwd_cuda(xt, x, o, oi, p.outer, p.reduce, p.inner,
                                                 wv.defined() ? wv.data<float>() : nullptr,
                                                 wv.defined() ? wi.data<int64_t>() : nullptr, compute_stream()));
  }
}

// dx (shape p.in_shape, contiguous, in x's storage type p.dtype) from the output gradient g
// (p.outer * p.inner elements in output order, f32) and, for max, the indices.
Tensor run_backward_kernel(const char* op, Kind kind, const Plan& p, const Tensor& g_in, const Tensor& idx,
                           float scale) {
  NoGradGuard no_grad;
  const Tensor g = g_in.is_contiguous() && g_in.dtype() == DType::F32 ? g_in : copy_contiguous(g_in, DType::F32);
  const Device dev = g.device();
  Shape work_shape = p.in_shape;
  if (!p.block)
    for (size_t i = 0; i < p.perm.size(); ++i) work_shape[i] = p.in_shape[p.perm[i]];
  Tensor dx = Tensor::empty(work_shape, p.dtype, dev);
  if (dx.numel() > 0) {
    const float* gp = g.data<float>();
    void* d = dx.raw_data();
    if (kind == Kind::Sum) {
      ENGINE_DISPATCH(
          op, dev, traffic(g, dx), kernels::reduce_sum_bwd_cpu(gp, p.dtype, d, p.outer, p.reduce, p.inner, scale),
          kernels::reduce_sum_bwd_cuda(gp, p.dtype, d, p.outer, p.reduce, p.inner, scale, compute_stream()));
    } else {
      const int64_t* ip = idx.data<int64_t>();
      ENGINE_DISPATCH(op, dev, traffic(g, idx, dx),
                      kernels::reduce_max_bwd_cpu(gp, ip, p.dtype, d, p.outer, p.reduce, p.inner),
                      kernels::reduce_max_bwd_cuda(gp, ip, p.dtype, d, p.outer, p.reduce, p.inner, compute_stream()));
    }
  }
  if (p.block) return dx;
  return copy_contiguous(dx.permute(p.inverse), p.dtype);
}

// Sum (scale = 1) or mean (scale = 1/count) of x over the mask, into a tensor of out_shape.
Tensor sum_impl(const char* op, const char* node_name, const Tensor& x, const std::vector<bool>& mask,
                const Shape& out_shape, bool mean) {
  const Plan p = make_plan(x, mask, out_shape);
  const float scale = mean ? (p.count > 0 ? 1.f / (float)p.count : std::numeric_limits<float>::quiet_NaN()) : 1.f;
  Tensor out = Tensor::empty(out_shape, DType::F32, x.device());
  if (out.numel() > 0) {
    if (p.count == 0) {
      fill_(out, mean ? std::numeric_limits<float>::quiet_NaN() : 0.f);  // numpy: sum of nothing 0, mean NaN
    } else {
      run_forward(op, Kind::Sum, coalesced_input(x, p), p, scale, out, Tensor());
    }
  }
  record_lambda(node_name, {x}, out, [p, scale, op](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{run_backward_kernel(op, Kind::Sum, p, g[0], Tensor(), scale)};
  });
  return out;
}

}  // namespace

// A bf16 / f16 x (O2 activations, e.g. UAFM's channel mean and max): the kernels widen x as they
// read it and reduce in f32 (the sums of a widened f32 copy, in the same order); the f32 result is
// rounded once to x's type by a recorded cast, and x's gradient is written in x's type, rounded once.
Tensor sum(const Tensor& x, const std::vector<int>& axes, bool keepdim) {
  check_float_storage("sum", "x", x);
  const auto mask = reduced_mask("sum", x, axes);
  const Tensor r = sum_impl("sum", "SumBackward", x, mask, reduced_shape(x.shape(), mask, keepdim), false);
  return x.dtype() == DType::F32 ? r : r.to(x.dtype());
}

Tensor sum_f32(const Tensor& x, const std::vector<int>& axes, bool keepdim) {
  check_float_storage("sum_f32", "x", x);
  const auto mask = reduced_mask("sum_f32", x, axes);
  return sum_impl("sum_f32", "SumBackward", x, mask, reduced_shape(x.shape(), mask, keepdim), false);
}

Tensor mean(const Tensor& x, const std::vector<int>& axes, bool keepdim) {
  check_float_storage("mean", "x", x);
  const auto mask = reduced_mask("mean", x, axes);
  const Tensor r = sum_impl("mean", "MeanBackward", x, mask, reduced_shape(x.shape(), mask, keepdim), true);
  return x.dtype() == DType::F32 ? r : r.to(x.dtype());
}

MaxResult max(const Tensor& x, const std::vector<int>& axes, bool keepdim) {
  check_float_storage("max", "x", x);
  const auto mask = reduced_mask("max", x, axes);
  const Shape out_shape = reduced_shape(x.shape(), mask, keepdim);
  const Plan p = make_plan(x, mask, out_shape);
  ENGINE_CHECK(p.count > 0, "max: cannot reduce over zero elements (axes ", axes_str(axes), " of x ", x.describe(),
               ")");
  MaxResult r;
  r.values = Tensor::empty(out_shape, DType::F32, x.device());
  r.indices = Tensor::empty(out_shape, DType::I64, x.device());
  if (r.values.numel() > 0) run_forward("max", Kind::Max, coalesced_input(x, p), p, 1.f, r.values, r.indices);
  const Tensor idx = r.indices;
  record_lambda("MaxBackward", {x}, r.values, [p, idx](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{run_backward_kernel("max", Kind::Max, p, g[0], idx, 1.f)};
  });
  // The maximum of the widened values is one of them: rounding it back is exact.
  if (x.dtype() != DType::F32) r.values = r.values.to(x.dtype());
  return r;
}

Tensor sum_to_shape(const Tensor& g, const Shape& shape) {
  check_float_storage("sum_to_shape", "g", g);
  const int n = g.dim(), m = (int)shape.size();
  ENGINE_CHECK(m <= n, "sum_to_shape: cannot sum ", g.describe(), " to shape ", shape_str(shape),
               ", which has more dimensions");
  const int lead = n - m;
  std::vector<bool> mask(n, false);
  bool any = false;
  for (int d = 0; d < n; ++d) {
    if (d < lead) {
      mask[d] = true;
    } else {
      const int64_t want = shape[d - lead], have = g.shape()[d];
      ENGINE_CHECK(want == have || want == 1, "sum_to_shape: cannot sum ", g.describe(), " to shape ", shape_str(shape),
                   " (dimension ", d, ": ", have, " vs ", want, ")");
      mask[d] = want != have;
    }
    any = any || mask[d];
  }
  if (!any && lead == 0) return g;
  // The kept dims are in order and every reduced dim is 1 (or absent) in `shape`, so the output of
  // the reduction is `shape` as it stands. Backward: the gradient expanded back to g's shape. A
  // 16-bit g is reduced as sum() does.
  const Tensor r = sum_impl("sum_to_shape", "SumToShapeBackward", g, mask, shape, false);
  return g.dtype() == DType::F32 ? r : r.to(g.dtype());
}

}  // namespace engine
