// concat / split: argument checks, byte geometry for the kernels, dispatch, backward.
#include "engine/ops/shape_ops.h"

#include "engine/autograd.h"
#include "engine/ops/op_utils.h"
#include "kernels/cpu/shape_ops_cpu.h"
#if defined(ENGINE_WITH_CUDA)
#include "kernels/cuda/shape_ops_cuda.h"
#endif

namespace engine {
namespace {

struct Geometry {
  int64_t outer = 1, inner = 1;  // product of the dims before / after the axis
};
Geometry geometry(const Shape& s, int axis) {
  Geometry g;
  for (int d = 0; d < (int)s.size(); ++d) {
    if (d < axis) g.outer *= s[(size_t)d];
    if (d > axis) g.inner *= s[(size_t)d];
  }
  return g;
}

// Contiguous copies of g's slices [starts[j], starts[j] + sizes[j]) along `axis`, for the pieces
// with want[j]; others are undefined. One kernel pass.
double sum_of(const std::vector<int64_t>& v) {
  double s = 0;
  for (const int64_t x : v) s += (double)x;
  return s;
}

std::vector<Tensor> split_copies(const Tensor& g_in, int axis, const std::vector<int64_t>& starts,
                                 const std::vector<int64_t>& sizes, const std::vector<bool>& want) {
  const Tensor g = g_in.contiguous();
  const Geometry geo = geometry(g.shape(), axis);
  const int64_t es = (int64_t)dtype_size(g.dtype());
  std::vector<Tensor> out(sizes.size());
  std::vector<void*> dst;
  std::vector<int64_t> col, width;
  for (size_t j = 0; j < sizes.size(); ++j) {
    if (!want[j]) continue;
    if (geo.outer == 1 || sizes[j] == 0) {  // the slice is contiguous already: a view
      out[j] = g.narrow(axis, starts[j], sizes[j]);
      continue;
    }
    Shape s = g.shape();
    s[(size_t)axis] = sizes[j];
    out[j] = Tensor::empty(s, g.dtype(), g.device());
    dst.push_back(out[j].raw_data());
    col.push_back(starts[j] * geo.inner * es);
    width.push_back(sizes[j] * geo.inner * es);
  }
  if (!dst.empty()) {
    const int64_t row = g.size(axis) * geo.inner * es;
    ENGINE_DISPATCH(
        "concat_backward", g.device(), traffic_bytes(2.0 * (double)geo.outer * sum_of(width)),
        kernels::concat_bwd_cpu(g.raw_data(), geo.outer, row, dst.data(), col.data(), width.data(), (int)dst.size()),
        kernels::concat_bwd_cuda(g.raw_data(), geo.outer, row, dst.data(), col.data(), width.data(), (int)dst.size(),
                                 compute_stream()));
  }
  return out;
}

}  // namespace

Tensor concat(const std::vector<Tensor>& xs, int axis) {
  const char* op = "concat";
  ENGINE_CHECK(!xs.empty(), op, ": no input tensors");
  for (size_t i = 0; i < xs.size(); ++i) ENGINE_CHECK(xs[i].defined(), op, ": input ", i, " is an undefined tensor");
  const Tensor& x0 = xs[0];
  ENGINE_CHECK(x0.dim() >= 1, op, ": input 0 ", x0.describe(), " is 0-D; concat needs at least 1 dimension");
  const int ax = normalize_axis(op, axis, x0.dim());
  Shape out_shape = x0.shape();
  out_shape[(size_t)ax] = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    const Tensor& x = xs[i];
    ENGINE_CHECK(x.dtype() == x0.dtype(), op, ": input ", i, " ", x.describe(), " has a different dtype from input 0 ",
                 x0.describe());
    ENGINE_CHECK(x.device() == x0.device(), op, ": input ", i, " ", x.describe(), " is on another device than input 0 ",
                 x0.describe());
    ENGINE_CHECK(x.dim() == x0.dim(), op, ": input ", i, " ", x.describe(), " has rank ", x.dim(), " but input 0 ",
                 x0.describe(), " has rank ", x0.dim());
    for (int d = 0; d < x.dim(); ++d)
      ENGINE_CHECK(d == ax || x.size(d) == x0.size(d), op, ": along axis ", axis, ", input ", i, " ",
                   shape_str(x.shape()), " and input 0 ", shape_str(x0.shape()), " differ in dimension ", d);
    out_shape[(size_t)ax] += x.size(ax);
  }
  Tensor out = Tensor::empty(out_shape, x0.dtype(), x0.device());
  const Geometry geo = geometry(out_shape, ax);
  const int64_t es = (int64_t)dtype_size(x0.dtype());
  std::vector<Tensor> keep;  // contiguous sources, alive until the kernel has been queued
  std::vector<const void*> src;
  std::vector<int64_t> col, width, starts;
  int64_t c = 0;
  for (const Tensor& x : xs) {
    starts.push_back(c);
    if (x.size(ax) > 0 && geo.outer * geo.inner > 0) {
      keep.push_back(x.is_contiguous() ? x : x.detach().contiguous());
      src.push_back(keep.back().raw_data());
      col.push_back(c * geo.inner * es);
      width.push_back(x.size(ax) * geo.inner * es);
    }
    c += x.size(ax);
  }
  if (!src.empty()) {
    const int64_t row = out_shape[(size_t)ax] * geo.inner * es;
    ENGINE_DISPATCH(
        op, x0.device(), traffic_bytes(2.0 * (double)geo.outer * sum_of(width)),
        kernels::concat_fwd_cpu(src.data(), col.data(), width.data(), (int)src.size(), out.raw_data(), geo.outer, row),
        kernels::concat_fwd_cuda(src.data(), col.data(), width.data(), (int)src.size(), out.raw_data(), geo.outer, row,
                                 compute_stream()));
  }
  if (needs_grad(xs)) {
    std::vector<int64_t> sizes;
    std::vector<bool> want;
    for (const Tensor& x : xs) {
      sizes.push_back(x.size(ax));
      want.push_back(x.requires_grad());
    }
    record_lambda("concat", xs, out, [ax, starts, sizes, want](const std::vector<Tensor>& g) {
      return split_copies(g[0], ax, starts, sizes, want);
    });
  }
  return out;
}

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes_in, int axis) {
  const char* op = "split";
  check_defined(op, "x", x);
  ENGINE_CHECK(x.dim() >= 1, op, ": x ", x.describe(), " is 0-D");
  const int ax = normalize_axis(op, axis, x.dim());
  ENGINE_CHECK(!sizes_in.empty(), op, ": no sizes given for x ", x.describe());
  std::vector<int64_t> sizes = sizes_in;
  int64_t known = 0;
  int infer = -1;
  for (size_t j = 0; j < sizes.size(); ++j) {
    if (sizes[j] == -1 && infer < 0) {
      infer = (int)j;
      continue;
    }
    ENGINE_CHECK(sizes[j] >= 1, op, ": sizes ", shape_str(sizes_in), " for x ", x.describe(), " along axis ", axis,
                 ": every size must be >= 1 (one may be -1)");
    known += sizes[j];
  }
  const int64_t len = x.size(ax);
  if (infer >= 0) {
    ENGINE_CHECK(len - known >= 1, op, ": sizes ", shape_str(sizes_in), " leave ", len - known,
                 " for the -1 entry along axis ", axis, " of x ", x.describe());
    sizes[(size_t)infer] = len - known;
    known = len;
  }
  ENGINE_CHECK(known == len, op, ": sizes ", shape_str(sizes_in), " sum to ", known, " but x ", x.describe(), " has ",
               len, " along axis ", axis);
  std::vector<Tensor> outs;
  int64_t start = 0;
  for (int64_t s : sizes) {
    Shape shape = x.shape();
    shape[(size_t)ax] = s;
    outs.push_back(make_view(x, shape, x.strides(), x.offset() + start * x.strides()[(size_t)ax]));
    start += s;
  }
  if (needs_grad({&x})) {
    auto node = std::make_shared<LambdaNode>("split", [ax](const std::vector<Tensor>& g) {
      return std::vector<Tensor>{concat(g, ax)};  // missing gradients arrive zero-filled
    });
    record(node, {x}, outs);
  }
  return outs;
}

}  // namespace engine
