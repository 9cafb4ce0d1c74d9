#include "engine/tensor.h"

#include <random>
#include <sstream>

#include "engine/allocator.h"
#include "engine/autograd.h"
#include "engine/ops/copy.h"
#include "engine/ops/reduce.h"

namespace engine {

Storage::Storage(Device d, size_t n) : bytes(n), device(d) { data = device_allocate(d, n); }
Storage::~Storage() { device_free(device, data, bytes); }

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

Shape contiguous_strides(const Shape& s) {
  Shape st(s.size());
  int64_t acc = 1;
  for (int i = (int)s.size() - 1; i >= 0; --i) {
    st[i] = acc;
    acc *= std::max<int64_t>(s[i], 1);
  }
  return st;
}

namespace {
void check_shape(const Shape& shape) {
  for (int64_t d : shape) ENGINE_CHECK(d >= 0, "invalid shape ", shape_str(shape), ": negative dimension");
}
}  // namespace

// ------------------------------------------------------------------ factories
Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  check_shape(shape);
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(device, (size_t)shape_numel(shape) * dtype_size(dtype));
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) { return full(shape, 0.f, dtype, device); }

Tensor Tensor::full(const Shape& shape, float value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  fill_(t, value);
  return t;
}

Tensor Tensor::from_vector(const std::vector<float>& v, const Shape& shape, Device device) {
  check_shape(shape);
  ENGINE_CHECK((int64_t)v.size() == shape_numel(shape), "from_vector: ", v.size(), " values for shape ",
               shape_str(shape));
  Tensor t = empty(shape, DType::F32, Device::cpu());
  std::copy(v.begin(), v.end(), t.data<float>());
  return device.is_cpu() ? t : copy_to_device(t, device);
}

Tensor Tensor::from_vector_i64(const std::vector<int64_t>& v, const Shape& shape, Device device) {
  check_shape(shape);
  ENGINE_CHECK((int64_t)v.size() == shape_numel(shape), "from_vector_i64: ", v.size(), " values for shape ",
               shape_str(shape));
  Tensor t = empty(shape, DType::I64, Device::cpu());
  std::copy(v.begin(), v.end(), t.data<int64_t>());
  return device.is_cpu() ? t : copy_to_device(t, device);
}

Tensor Tensor::randn(const Shape& shape, uint64_t seed, float stddev, Device device) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.f, stddev);
  std::vector<float> v((size_t)shape_numel(shape));
  for (float& x : v) x = dist(rng);
  return from_vector(v, shape, device);
}

Tensor Tensor::uniform(const Shape& shape, uint64_t seed, float lo, float hi, Device device) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v((size_t)shape_numel(shape));
  for (float& x : v) x = dist(rng);
  return from_vector(v, shape, device);
}

// ------------------------------------------------------------------ metadata
int64_t Tensor::size(int d) const {
  const int n = dim();
  ENGINE_CHECK(d >= -n && d < n, "size(", d, ") out of range for ", describe());
  return shape()[d < 0 ? d + n : d];
}

bool Tensor::is_contiguous() const {
  const TensorImpl& t = impl();
  if (shape_numel(t.shape) == 0) return true;  // nothing to lay out
  int64_t expected = 1;
  for (int i = (int)t.shape.size() - 1; i >= 0; --i) {
    if (t.shape[i] == 1) continue;
    if (t.strides[i] != expected) return false;
    expected *= t.shape[i];
  }
  return true;
}

std::string Tensor::describe() const {
  if (!defined()) return "undefined tensor";
  std::ostringstream s;
  s << dtype_name(dtype()) << shape_str(shape()) << " on " << device().str();
  return s.str();
}

void* Tensor::raw_data() const {
  return static_cast<char*>(impl().storage->data) + impl().offset * (int64_t)dtype_size(dtype());
}

Tensor& Tensor::set_requires_grad(bool r) {
  ENGINE_CHECK(!r || dtype() == DType::F32, "requires_grad needs an f32 tensor, got ", describe());
  ENGINE_CHECK(is_leaf(), "set_requires_grad on a non-leaf tensor ", describe());
  impl().requires_grad = r;
  return *this;
}

void Tensor::set_grad(const Tensor& g) {
  ENGINE_CHECK(is_leaf() && requires_grad(), "set_grad: ", describe(), " is not a leaf that requires grad");
  ENGINE_CHECK(g.shape() == shape() && g.dtype() == DType::F32 && g.device() == device() && g.is_contiguous() &&
                   !g.requires_grad(),
               "set_grad: the gradient of ", describe(), " must be a dense f32 tensor of its shape and device, got ",
               g.describe());
  impl().grad = g.impl_ptr();
}

// ------------------------------------------------------------------ views
Tensor make_view(const Tensor& base, Shape shape, Shape strides, int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = base.storage();
  impl->shape = std::move(shape);
  impl->strides = std::move(strides);
  impl->offset = offset;
  impl->dtype = base.dtype();
  return Tensor(std::move(impl));
}

Tensor Tensor::view(const Shape& new_shape) const {
  Shape s = new_shape;
  int infer = -1;
  int64_t known = 1;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      ENGINE_CHECK(infer < 0, "view: more than one -1 in ", shape_str(new_shape));
      infer = (int)i;
    } else {
      ENGINE_CHECK(s[i] >= 0, "view: invalid shape ", shape_str(new_shape));
      known *= s[i];
    }
  }
  if (infer >= 0) {
    ENGINE_CHECK(known != 0 && numel() % known == 0, "view: cannot infer -1 in ", shape_str(new_shape), " for ",
                 describe());
    s[infer] = numel() / known;
  }
  ENGINE_CHECK(shape_numel(s) == numel(), "view/reshape: shape ", shape_str(new_shape), " does not match ", numel(),
               " elements of ", describe());
  ENGINE_CHECK(is_contiguous(), "view: tensor ", describe(), " is not contiguous; use reshape()");
  Tensor out = make_view(*this, s, contiguous_strides(s), offset());
  const Shape in_shape = shape();
  record_lambda("ViewBackward", {*this}, out,
                [in_shape](const std::vector<Tensor>& g) { return std::vector<Tensor>{g[0].reshape(in_shape)}; });
  return out;
}

Tensor Tensor::reshape(const Shape& new_shape) const {
  return is_contiguous() ? view(new_shape) : contiguous().view(new_shape);
}

Tensor Tensor::permute(const std::vector<int>& dims) const {
  const int n = dim();
  ENGINE_CHECK((int)dims.size() == n, "permute: ", dims.size(), " dims given for ", describe());
  std::vector<bool> seen(n, false);
  Shape s(n), st(n);
  std::vector<int> inverse(n);
  for (int i = 0; i < n; ++i) {
    int d = dims[i] < 0 ? dims[i] + n : dims[i];
    ENGINE_CHECK(d >= 0 && d < n && !seen[d], "permute: invalid permutation ", shape_str(dims), " for ", describe());
    seen[d] = true;
    s[i] = shape()[d];
    st[i] = strides()[d];
    inverse[d] = i;
  }
  Tensor out = make_view(*this, s, st, offset());
  record_lambda("PermuteBackward", {*this}, out,
                [inverse](const std::vector<Tensor>& g) { return std::vector<Tensor>{g[0].permute(inverse)}; });
  return out;
}

Tensor Tensor::transpose(int a, int b) const {
  const int n = dim();
  ENGINE_CHECK(a >= -n && a < n && b >= -n && b < n, "transpose(", a, ", ", b, ") out of range for ", describe());
  std::vector<int> p(n);
  for (int i = 0; i < n; ++i) p[i] = i;
  std::swap(p[a < 0 ? a + n : a], p[b < 0 ? b + n : b]);
  return permute(p);
}

Tensor Tensor::slice(int d, int64_t start, int64_t end, int64_t step) const {
  const int n = dim();
  ENGINE_CHECK(d >= -n && d < n, "slice: dim ", d, " out of range for ", describe());
  if (d < 0) d += n;
  ENGINE_CHECK(step > 0, "slice: step must be positive, got ", step);
  const int64_t len = shape()[d];
  if (start < 0) start += len;
  if (end < 0) end += len;
  start = std::clamp<int64_t>(start, 0, len);
  end = std::clamp<int64_t>(end, start, len);
  Shape s = shape(), st = strides();
  s[d] = (end - start + step - 1) / step;
  st[d] = strides()[d] * step;
  Tensor out = make_view(*this, s, st, offset() + start * strides()[d]);
  const Shape in_shape = shape();
  const Device dev = device();
  record_lambda("SliceBackward", {*this}, out, [in_shape, dev, d, start, end, step](const std::vector<Tensor>& g) {
    Tensor full = Tensor::zeros(in_shape, DType::F32, dev);
    copy_into(full.slice(d, start, end, step), g[0]);
    return std::vector<Tensor>{full};
  });
  return out;
}

Tensor Tensor::expand(const Shape& new_shape) const {
  const int n = (int)new_shape.size(), lead = n - dim();
  ENGINE_CHECK(lead >= 0, "expand: cannot expand ", describe(), " to fewer dims ", shape_str(new_shape));
  Shape st(n);
  for (int i = 0; i < n; ++i) {
    const int td = i - lead;
    if (td < 0) {
      st[i] = 0;
    } else if (shape()[td] == new_shape[i]) {
      st[i] = strides()[td];
    } else {
      ENGINE_CHECK(shape()[td] == 1, "expand: ", describe(), " cannot be expanded to ", shape_str(new_shape));
      st[i] = 0;
    }
  }
  Tensor out = make_view(*this, new_shape, st, offset());
  const Shape in_shape = shape();
  record_lambda("ExpandBackward", {*this}, out,
                [in_shape](const std::vector<Tensor>& g) { return std::vector<Tensor>{sum_to_shape(g[0], in_shape)}; });
  return out;
}

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  Tensor out = copy_contiguous(*this, dtype());
  record_lambda("ContiguousBackward", {*this}, out,
                [](const std::vector<Tensor>& g) { return std::vector<Tensor>{g[0]}; });
  return out;
}

// ------------------------------------------------------------------ copies
Tensor Tensor::to(Device d) const {
  if (d == device()) return *this;
  Tensor out = copy_to_device(*this, d);
  const Device src = device();
  record_lambda("ToDeviceBackward", {*this}, out,
                [src](const std::vector<Tensor>& g) { return std::vector<Tensor>{copy_to_device(g[0], src)}; });
  return out;
}

Tensor Tensor::to(DType t) const {
  if (t == dtype()) return *this;
  Tensor out = copy_contiguous(*this, t);
  // Casts between the float types carry gradients (mixed precision), cast back to the source type;
  // casts to or from integer types do not.
  if (is_float_storage(dtype()) && is_float_storage(t)) {
    const DType src = dtype();
    record_lambda("CastBackward", {*this}, out,
                  [src](const std::vector<Tensor>& g) { return std::vector<Tensor>{g[0].to(src)}; });
  }
  return out;
}

Tensor Tensor::clone() const {
  Tensor out = copy_contiguous(*this, dtype());
  record_lambda("CloneBackward", {*this}, out, [](const std::vector<Tensor>& g) { return std::vector<Tensor>{g[0]}; });
  return out;
}

Tensor Tensor::detach() const { return make_view(*this, shape(), strides(), offset()); }

void Tensor::copy_(const Tensor& src) { copy_into(*this, src); }

std::vector<float> Tensor::to_vector() const {
  Tensor host = copy_to_device(*this, Device::cpu());
  if (host.dtype() != DType::F32) host = copy_contiguous(host, DType::F32);
  const float* p = host.data<float>();
  return std::vector<float>(p, p + host.numel());
}

std::vector<int64_t> Tensor::to_vector_i64() const {
  Tensor host = copy_to_device(*this, Device::cpu());
  if (host.dtype() != DType::I64) host = copy_contiguous(host, DType::I64);
  const int64_t* p = host.data<int64_t>();
  return std::vector<int64_t>(p, p + host.numel());
}

float Tensor::item() const {
  ENGINE_CHECK(numel() == 1, "item(): tensor ", describe(), " has ", numel(), " elements, expected 1");
  return to_vector()[0];
}

}  // namespace engine
