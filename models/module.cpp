// Module tree: registration, traversal in a fixed order, device moves that keep each TensorImpl,
// strict and lenient state-dict loading, seeded initialisation. See models/module.h; the lenient
// loader's messages follow PaddleSeg's utils.load_pretrained_model (paddleseg/utils/utils.py).
// Tested by tests/test_models.cpp.
#include "models/module.h"

#include <algorithm>
#include <iostream>
#include <sstream>
#include <unordered_map>

#include "engine/autograd.h"
#include "engine/ops/copy.h"

namespace engine::nn {

namespace {

std::string join_name(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

// "a, b, c (and 7 more)" - keeps one-line messages readable when hundreds of keys are involved.
std::string list_keys(const std::vector<std::string>& keys) {
  std::ostringstream s;
  const size_t shown = std::min<size_t>(keys.size(), 5);
  for (size_t i = 0; i < shown; ++i) s << (i ? ", " : "") << "'" << keys[i] << "'";
  if (keys.size() > shown) s << " (and " << keys.size() - shown << " more)";
  return s.str();
}

std::string geometry(const Tensor& t) { return std::string(dtype_name(t.dtype())) + shape_str(t.shape()); }

// Index of each checkpoint key; a key given twice is an error (a corrupt or merged checkpoint).
std::unordered_map<std::string, size_t> index_entries(const StateDict& entries, const std::string& what) {
  std::unordered_map<std::string, size_t> index;
  for (size_t i = 0; i < entries.size(); ++i) {
    ENGINE_CHECK(entries[i].second.defined(), what, ": checkpoint key '", entries[i].first, "' holds no tensor");
    ENGINE_CHECK(index.emplace(entries[i].first, i).second, what, ": checkpoint key '", entries[i].first,
                 "' appears more than once");
  }
  return index;
}

}  // namespace

// ------------------------------------------------------------------ registration
void Module::check_new_name(const std::string& name) const {
  ENGINE_CHECK(!name.empty() && name.find('.') == std::string::npos, type_name_, ": bad member name '", name,
               "' (must be non-empty, without '.')");
  for (const Entry& e : entries_) ENGINE_CHECK(e.name != name, type_name_, ": member '", name, "' registered twice");
  for (const auto& c : children_) ENGINE_CHECK(c.first != name, type_name_, ": member '", name, "' registered twice");
}

Tensor Module::register_tensor(const std::string& name, const Shape& shape, TensorRole role, Init init) {
  check_new_name(name);
  Tensor t = Tensor::full(shape, init.normal ? 0.f : init.value);
  if (role == TensorRole::Parameter) t.set_requires_grad(true);
  entries_.push_back({name, t, role, init});
  return t;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> m) {
  ENGINE_CHECK(m != nullptr, type_name_, ": child '", name, "' is null");
  check_new_name(name);
  m->train(training_);
  children_.emplace_back(name, std::move(m));
}

template <class F>
void Module::visit(const std::string& prefix, F&& f) const {
  for (const Entry& e : entries_) f(join_name(prefix, e.name), e);
  for (const auto& c : children_) c.second->visit(join_name(prefix, c.first), f);
}

// ------------------------------------------------------------------ mode and device
void Module::train(bool on) {
  training_ = on;
  for (auto& c : children_) c.second->train(on);
}

void Module::to(Device d) {
  visit("", [&](const std::string&, const Entry& e) {
    const Tensor& t = e.tensor;
    if (t.device() == d) return;
    const Tensor moved = t.detach().to(d);  // a contiguous copy on d, no autograd
    TensorImpl& impl = t.impl();            // same impl: holders of the Tensor follow the move
    impl.storage = moved.storage();
    impl.strides = moved.strides();
    impl.offset = moved.offset();
    impl.grad.reset();
  });
}

Device Module::device() const {
  bool found = false;
  Device d = Device::cpu();
  visit("", [&](const std::string&, const Entry& e) {
    if (!found) d = e.tensor.device();
    found = true;
  });
  return d;
}

// ------------------------------------------------------------------ traversal
std::vector<NamedTensor> Module::named_parameters() const {
  std::vector<NamedTensor> out;
  visit("", [&](const std::string& n, const Entry& e) {
    if (e.role == TensorRole::Parameter) out.emplace_back(n, e.tensor);
  });
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  visit("", [&](const std::string&, const Entry& e) {
    if (e.role == TensorRole::Parameter) out.push_back(e.tensor);
  });
  return out;
}

StateDict Module::state_dict() const {
  StateDict out;
  visit("", [&](const std::string& n, const Entry& e) { out.emplace_back(n, e.tensor); });
  return out;
}

std::vector<std::pair<NamedTensor, TensorRole>> Module::named_tensors() const {
  std::vector<std::pair<NamedTensor, TensorRole>> out;
  visit("", [&](const std::string& n, const Entry& e) { out.push_back({{n, e.tensor}, e.role}); });
  return out;
}

int64_t Module::num_trainable_parameters() const {
  int64_t n = 0;
  visit("", [&](const std::string&, const Entry& e) {
    if (e.role == TensorRole::Parameter) n += e.tensor.numel();
  });
  return n;
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  visit("", [&](const std::string&, const Entry& e) {
    if (e.role != TensorRole::Buffer) n += e.tensor.numel();
  });
  return n;
}

int64_t Module::num_buffer_elements() const {
  int64_t n = 0;
  visit("", [&](const std::string&, const Entry& e) {
    if (e.role == TensorRole::Buffer) n += e.tensor.numel();
  });
  return n;
}

void Module::zero_grad() {
  visit("", [&](const std::string&, const Entry& e) {
    Tensor t = e.tensor;
    t.zero_grad();
  });
}

// ------------------------------------------------------------------ loading
void Module::load_state_dict(const StateDict& entries, bool strict) {
  const std::string what = "load_state_dict into " + type_name_;
  const auto index = index_entries(entries, what);
  const StateDict mine = state_dict();
  std::vector<std::string> missing, unexpected;
  std::vector<bool> used(entries.size(), false);
  for (const auto& [name, t] : mine) {
    auto it = index.find(name);
    if (it == index.end()) {
      missing.push_back(name);
      continue;
    }
    used[it->second] = true;
    const Tensor& src = entries[it->second].second;
    ENGINE_CHECK(src.shape() == t.shape() && src.dtype() == t.dtype(), what, ": key '", name, "' is ", geometry(src),
                 " in the checkpoint, the model expects ", geometry(t));
  }
  for (size_t i = 0; i < entries.size(); ++i)
    if (!used[i]) unexpected.push_back(entries[i].first);
  if (strict) {
    ENGINE_CHECK(missing.empty(), what, ": missing key ", list_keys(missing), " (", missing.size(), " of ", mine.size(),
                 " model tensors absent from the checkpoint)");
    ENGINE_CHECK(unexpected.empty(), what, ": unexpected key ", list_keys(unexpected), " (", unexpected.size(),
                 " checkpoint entries the model does not have)");
  }
  NoGradGuard no_grad;
  for (const auto& [name, t] : mine) {
    auto it = index.find(name);
    if (it != index.end()) copy_into(t, entries[it->second].second);
  }
}

LoadReport Module::load_matching(const StateDict& entries, std::ostream* log) {
  const auto index = index_entries(entries, "load_matching into " + type_name_);
  LoadReport r;
  NoGradGuard no_grad;
  for (const auto& [name, t] : state_dict()) {
    ++r.total;
    auto it = index.find(name);
    if (it == index.end()) {
      r.warnings.push_back(name + " is not in pretrained model");
      continue;
    }
    const Tensor& src = entries[it->second].second;
    if (src.shape() != t.shape() || src.dtype() != t.dtype()) {
      r.warnings.push_back("[SKIP] Shape of pretrained params " + name +
                           " doesn't match.(Pretrained: " + geometry(src) + ", Actual: " + geometry(t) + ")");
      continue;
    }
    copy_into(t, src);
    ++r.loaded;
  }
  r.summary = "There are " + std::to_string(r.loaded) + "/" + std::to_string(r.total) + " variables loaded into " +
              type_name_ + ".";
  if (log) {
    for (const auto& w : r.warnings) *log << "WARNING: " << w << "\n";
    *log << r.summary << "\n";
  }
  return r;
}

LoadReport Module::load_matching(const StateDict& entries) { return load_matching(entries, &std::cerr); }

// ------------------------------------------------------------------ initialisation
uint64_t Module::param_seed(uint64_t seed, uint64_t index) {
  // splitmix64 of (seed, index): neighbouring seeds and indices give unrelated streams.
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + index + 0x632BE59BD9B4E019ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

void Module::init_parameters(uint64_t seed) {
  NoGradGuard no_grad;
  uint64_t i = 0;
  visit("", [&](const std::string&, const Entry& e) {
    const Tensor& t = e.tensor;
    if (e.init.normal)
      copy_into(t, Tensor::randn(t.shape(), param_seed(seed, i), e.init.value));
    else
      fill_(t, e.init.value);
    ++i;
  });
}

}  // namespace engine::nn
