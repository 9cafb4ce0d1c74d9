// Tensor: a shared handle to (storage, shape, strides, offset, dtype, device) plus autograd state.
//
// Layout convention (docs/ARCHITECTURE.md): image activations are 4-D tensors whose DIMS are
// [N, H, W, C] and whose memory is contiguous in that order (channels-last). There is no hidden
// memory-format flag: the channel axis of an activation is always the last one. Convolution
// weights keep the checkpoint order [O, I, kH, kW] of PaddleSeg/PyTorch/darknet.
//
// Views (reshape of contiguous data, permute, transpose, slice, narrow, expand) share storage;
// contiguous() copies only when needed. Copies between devices go through to(Device).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/dtype.h"
#include "base/error.h"
#include "engine/device.h"

namespace engine {

using Shape = std::vector<int64_t>;

struct Storage {
  void* data = nullptr;
  size_t bytes = 0;
  Device device;
  Storage(Device d, size_t n);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
};

class Node;
class Tensor;
using GradReadyHook = std::function<void(Tensor& param)>;

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Shape strides;  // in elements
  int64_t offset = 0;
  DType dtype = DType::F32;
  // autograd
  bool requires_grad = false;
  std::shared_ptr<Node> grad_fn;  // null for leaves
  int output_nr = 0;              // which output of grad_fn this tensor is
  std::shared_ptr<TensorImpl> grad;
  std::vector<GradReadyHook> grad_ready_hooks;
};

int64_t shape_numel(const Shape& s);
Shape contiguous_strides(const Shape& s);

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // ---- factories (uninitialised, filled, from host data)
  static Tensor empty(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor zeros(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor full(const Shape& shape, float value, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor from_vector(const std::vector<float>& v, const Shape& shape, Device device = Device::cpu());
  static Tensor from_vector_i64(const std::vector<int64_t>& v, const Shape& shape, Device device = Device::cpu());
  // Deterministic random fills (CPU generator, then copied): same seed -> same values on any device.
  static Tensor randn(const Shape& shape, uint64_t seed, float stddev = 1.f, Device device = Device::cpu());
  static Tensor uniform(const Shape& shape, uint64_t seed, float lo, float hi, Device device = Device::cpu());

  // ---- metadata
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl().shape; }
  const Shape& strides() const { return impl().strides; }
  int64_t offset() const { return impl().offset; }
  int dim() const { return (int)impl().shape.size(); }
  int64_t size(int d) const;
  int64_t numel() const { return shape_numel(impl().shape); }
  DType dtype() const { return impl().dtype; }
  Device device() const { return impl().storage->device; }
  bool is_contiguous() const;
  size_t nbytes() const { return (size_t)numel() * dtype_size(dtype()); }
  std::string describe() const;  // "f32[2, 3] on cpu" for messages

  // ---- raw data (device pointer for CUDA tensors); points at the first element of the view
  void* raw_data() const;
  template <class T>
  T* data() const {
    return static_cast<T*>(raw_data());
  }
  const std::shared_ptr<Storage>& storage() const { return impl().storage; }

  // ---- views (share storage; differentiable)
  Tensor reshape(const Shape& shape) const;  // view when contiguous, else copies
  Tensor view(const Shape& shape) const;     // contiguous input only
  Tensor permute(const std::vector<int>& dims) const;
  Tensor transpose(int a, int b) const;
  Tensor slice(int dim, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor narrow(int dim, int64_t start, int64_t length) const { return slice(dim, start, start + length); }
  Tensor expand(const Shape& shape) const;  // broadcast view (stride 0)
  Tensor contiguous() const;                // differentiable copy when not contiguous

  // ---- copies
  Tensor to(Device d) const;             // differentiable
  Tensor to(DType t) const;              // cast; differentiable between f32, bf16 and f16
  Tensor clone() const;                  // differentiable
  Tensor detach() const;                 // shares storage, no autograd history
  void copy_(const Tensor& src);         // in place, no autograd; src may be on another device / dtype
  std::vector<float> to_vector() const;  // any dtype/device -> host floats, row-major
  std::vector<int64_t> to_vector_i64() const;
  float item() const;

  // ---- autograd
  bool requires_grad() const { return impl().requires_grad; }
  Tensor& set_requires_grad(bool r);
  Tensor grad() const { return impl().grad ? Tensor(impl().grad) : Tensor(); }
  void zero_grad() { impl().grad.reset(); }
  // Makes `g` (dense f32, this tensor's shape and device) the leaf's gradient buffer: backward then
  // adds into it in place. Data parallel points every parameter's gradient into a bucket this way.
  void set_grad(const Tensor& g);
  const std::shared_ptr<Node>& grad_fn() const { return impl().grad_fn; }
  bool is_leaf() const { return impl().grad_fn == nullptr; }
  // Called once per backward() when this leaf's gradient is complete (data parallel uses it to
  // start the all-reduce of a bucket while the rest of backward runs).
  void register_grad_ready_hook(GradReadyHook h) { impl().grad_ready_hooks.push_back(std::move(h)); }
  void backward(const Tensor& grad = Tensor(), bool retain_graph = false) const;

  TensorImpl& impl() const {
    ENGINE_CHECK(impl_ != nullptr, "use of an undefined tensor");
    return *impl_;
  }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool same(const Tensor& o) const { return impl_ == o.impl_; }

 private:
  std::shared_ptr<TensorImpl> impl_;
};

// A new view of `base`'s storage with the given geometry (no autograd).
Tensor make_view(const Tensor& base, Shape shape, Shape strides, int64_t offset);

}  // namespace engine
