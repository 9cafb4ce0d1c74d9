#include "engine/ops/op_utils.h"

namespace engine {

kernels::StridedLayout layout_of(const Tensor& t) {
  ENGINE_CHECK(t.dim() <= kernels::kMaxDims, "tensor ", t.describe(), " has more than ", kernels::kMaxDims,
               " dimensions, which the kernels do not support");
  kernels::StridedLayout l;
  l.ndim = t.dim();
  for (int d = 0; d < l.ndim; ++d) {
    l.shape[d] = t.shape()[d];
    l.stride[d] = t.strides()[d];
  }
  l.offset = t.offset();
  l.contiguous = t.is_contiguous();
  return l;
}

kernels::StridedLayout broadcast_layout(const Tensor& t, const Shape& out) {
  ENGINE_CHECK((int)out.size() <= kernels::kMaxDims, "broadcast shape ", shape_str(out), " has more than ",
               kernels::kMaxDims, " dimensions");
  kernels::StridedLayout l;
  l.ndim = (int)out.size();
  const int lead = l.ndim - t.dim();
  bool same = lead == 0;
  for (int d = 0; d < l.ndim; ++d) {
    l.shape[d] = out[d];
    const int td = d - lead;
    if (td < 0 || t.shape()[td] == 1) {
      l.stride[d] = 0;
      if (td < 0 || out[d] != 1) same = false;
    } else {
      l.stride[d] = t.strides()[td];
    }
  }
  l.offset = t.offset();
  l.contiguous = same && t.is_contiguous();
  return l;
}

void coalesce(std::initializer_list<kernels::StridedLayout*> layouts) {
  kernels::StridedLayout& first = **layouts.begin();
  const int nd = first.ndim;
  int out_nd = 0;
  for (int d = 0; d < nd; ++d) {
    if (first.shape[d] == 1) continue;
    bool merge = out_nd > 0;
    for (kernels::StridedLayout* l : layouts) merge = merge && l->stride[out_nd - 1] == l->stride[d] * l->shape[d];
    for (kernels::StridedLayout* l : layouts) {
      if (merge) {
        l->shape[out_nd - 1] *= l->shape[d];
        l->stride[out_nd - 1] = l->stride[d];
      } else {
        l->shape[out_nd] = l->shape[d];
        l->stride[out_nd] = l->stride[d];
      }
    }
    if (!merge) ++out_nd;
  }
  for (kernels::StridedLayout* l : layouts) {
    for (int d = out_nd; d < kernels::kMaxDims; ++d) {
      l->shape[d] = 0;
      l->stride[d] = 0;
    }
    l->ndim = out_nd;
    l->contiguous = out_nd == 0 || (out_nd == 1 && l->stride[0] == 1);
  }
}

Shape broadcast_shapes(const char* op, const Shape& a, const Shape& b) {
  const size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    const int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    const int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    ENGINE_CHECK(da == db || da == 1 || db == 1, op, ": shapes ", shape_str(a), " and ", shape_str(b),
                 " cannot be broadcast together (dimension ", i, ": ", da, " vs ", db, ")");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

int normalize_axis(const char* op, int d, int ndim) {
  ENGINE_CHECK(d >= -ndim && d < ndim, op, ": axis ", d, " is out of range for a ", ndim, "-D tensor");
  return d < 0 ? d + ndim : d;
}

void check_defined(const char* op, const char* arg, const Tensor& t) {
  ENGINE_CHECK(t.defined(), op, ": argument '", arg, "' is an undefined tensor");
}

void check_f32(const char* op, const char* arg, const Tensor& t) {
  check_defined(op, arg, t);
  ENGINE_CHECK(t.dtype() == DType::F32, op, ": argument '", arg, "' must be f32, got ", t.describe(),
               " (cast storage types with .to(DType::F32))");
}

void check_float_storage(const char* op, const char* arg, const Tensor& t) {
  check_defined(op, arg, t);
  ENGINE_CHECK(is_float_storage(t.dtype()), op, ": argument '", arg, "' must be f32, bf16 or f16, got ", t.describe(),
               " (cast storage types with .to(DType::F32))");
}

void check_same_device(const char* op, const Tensor& a, const char* an, const Tensor& b, const char* bn) {
  ENGINE_CHECK(a.device() == b.device(), op, ": '", an, "' is on ", a.device().str(), " but '", bn, "' is on ",
               b.device().str(), "; move one with .to(device)");
}

void no_kernel(const char* op, Device d) {
  fail(op, ": no kernel for device ", d.str(),
#if defined(ENGINE_WITH_CUDA)
       ""
#else
       " (this build has no CUDA backend)"
#endif
  );
}

}  // namespace engine
