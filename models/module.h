// Module: the tree of named layers that every model is built from. Each module owns named tensors
// (trainable parameters, frozen parameters, buffers) and named children; a tensor's dotted path in
// the tree (e.g. "backbone.features.0.conv.weight") is its checkpoint key, spelled as PaddleSeg
// spells it (its layers' attribute names), so Paddle .pdparams and our safetensors use the same keys.
//
// Tensor identity: a registered tensor's TensorImpl is created once, at registration, and never
// replaced. Loading copies values into it, init_parameters() writes into it, and even to(Device)
// keeps it: it swaps the impl's storage for one on the new device. So an optimizer (or a
// data-parallel gradient hook) can hold the parameter Tensors for the whole run, whenever it was
// created. to(Device) drops gradients (they live on the old device).
//
// Also here: SegModel (images -> logits, the interface the trainer uses) and build_seg_model().
// Tested by tests/test_models.cpp (state-dict keys, loading errors, counts, device moves).
#pragma once
#include <cstdint>
#include <iosfwd>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/tensor.h"
#include "models/model_spec.h"

namespace engine::nn {

using NamedTensor = std::pair<std::string, Tensor>;
using StateDict = std::vector<NamedTensor>;  // in registration order (deterministic)

// What a registered tensor is:
//  Parameter: trainable (requires_grad); in named_parameters() and state_dict().
//  FrozenParameter: a Paddle parameter with stop_gradient=True (UAFM's `_scale`): state_dict() only.
//  Buffer: running statistics (BN `_mean`, `_variance`): state_dict() only.
enum class TensorRole { Parameter, FrozenParameter, Buffer };

// How init_parameters() fills a tensor: a constant, or Normal(0, stddev).
struct Init {
  bool normal = false;
  float value = 0.f;  // constant value, or the normal's stddev
  static Init constant(float v) { return {false, v}; }
  static Init normal_std(float stddev) { return {true, stddev}; }
};

// Result of load_matching(): X of Y model tensors were loaded; one warning per skipped key.
struct LoadReport {
  int64_t loaded = 0;
  int64_t total = 0;
  std::vector<std::string> warnings;
  std::string summary;  // "There are X/Y variables loaded into <Model>."
};

class Module {
 public:
  explicit Module(std::string type_name) : type_name_(std::move(type_name)) {}
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  const std::string& type_name() const { return type_name_; }

  // Mode (recursive). Modules start in training mode, as in Paddle.
  void train(bool on = true);
  void eval() { train(false); }
  bool training() const { return training_; }

  // Moves every registered tensor to `d`, keeping each TensorImpl (see the file comment).
  void to(Device d);
  // Device of the first registered tensor in the tree (CPU when there is none).
  Device device() const;

  // Trainable parameters with their dotted names, own tensors first, then children in registration
  // order (recursive). Deterministic: the same model gives the same order every time.
  std::vector<NamedTensor> named_parameters() const;
  std::vector<Tensor> parameters() const;
  // Every persistent tensor: trainable and frozen parameters and buffers, same ordering rule.
  StateDict state_dict() const;
  // Each tensor with its role, in state_dict() order.
  std::vector<std::pair<NamedTensor, TensorRole>> named_tensors() const;

  int64_t num_trainable_parameters() const;  // elements of named_parameters()
  int64_t num_parameters() const;            // + frozen parameters (what Paddle's parameters() counts)
  int64_t num_buffer_elements() const;       // BN running statistics
  void zero_grad();

  // Copies `entries` into the model's tensors (no reallocation; dtype conversion is refused).
  // Everything is checked before anything is copied. Errors (one line, naming the model and the key):
  // a shape or dtype mismatch; with strict, also keys the model has and `entries` lacks ("missing")
  // and keys `entries` has and the model lacks ("unexpected"); a duplicated key in `entries`.
  void load_state_dict(const StateDict& entries, bool strict = true);
  // Lenient loading for pretrained weights (PaddleSeg's load_pretrained_model): copies every entry
  // whose key, shape and dtype match; each model key that is absent or mismatched is skipped with a
  // warning line; unused checkpoint keys are ignored. Writes the warnings and the summary line
  // "There are X/Y variables loaded into <type_name>." to `log` (if not null) and returns them.
  LoadReport load_matching(const StateDict& entries, std::ostream* log);
  LoadReport load_matching(const StateDict& entries);  // logs to std::cerr

  // (Re)initialises every tensor by its Init rule. The i-th tensor of state_dict() (0-based) with a
  // Normal rule is drawn by Tensor::randn with seed param_seed(seed, i), so weights depend only on the
  // seed and the tree, never on construction side effects. Values are written in place.
  void init_parameters(uint64_t seed);
  static uint64_t param_seed(uint64_t seed, uint64_t index);

  // Direct children with their names (registration order).
  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& children() const { return children_; }

 protected:
  // Registers a tensor of `shape` (f32, CPU) and returns it. Constant-rule tensors get their value
  // now; Normal-rule ones stay zero until init_parameters() (build_seg_model calls it), so building
  // does not draw every weight twice. Names are unique within a module.
  Tensor register_tensor(const std::string& name, const Shape& shape, TensorRole role, Init init);
  Tensor register_parameter(const std::string& name, const Shape& shape, Init init) {
    return register_tensor(name, shape, TensorRole::Parameter, init);
  }
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    add_child(name, m);
    return m;
  }

 private:
  struct Entry {
    std::string name;
    Tensor tensor;
    TensorRole role;
    Init init;
  };
  void add_child(const std::string& name, std::shared_ptr<Module> m);
  void check_new_name(const std::string& name) const;
  template <class F>
  void visit(const std::string& prefix, F&& f) const;  // f(full_name, const Entry&) in state_dict order

  std::string type_name_;
  bool training_ = true;
  std::vector<Entry> entries_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
};

// A module with one input and one output (the element type of Sequential).
class Layer : public Module {
 public:
  using Module::Module;
  virtual Tensor forward(const Tensor& x) = 0;
};

// A segmentation network: images f32 [N, H, W, 3] (normalised, channels-last) -> logits
// [N, H, W, num_classes] at the input size. Training mode returns every head's logits (PP-LiteSeg:
// x8 main first, then the x16 and x32 auxiliaries); eval mode returns only the main one.
class SegModel : public Module {
 public:
  using Module::Module;
  virtual std::vector<Tensor> forward(const Tensor& images) = 0;
  virtual int64_t num_classes() const = 0;
  // With this on, training mode returns each head's logits at the head's own size instead of
  // upsampled to the input size, for a loss that upsamples them itself (bilinear, half-pixel:
  // upsampled_cross_entropy, engine/ops/loss.h), the same numbers without the full-size logits and
  // their gradient in memory. Off by default; the segmentation trainer and bench_train turn it on.
  void set_loss_upsamples(bool on) { loss_upsamples_ = on; }
  bool loss_upsamples() const { return loss_upsamples_; }

 protected:
  bool loss_upsamples_ = false;
};

// Builds and initialises (from spec.seed) the network a YAML `model:` block describes. Types:
// "PPLiteSeg" (backbone "STDC1" | "STDC2"). Invalid specs are one-line errors naming spec.where and
// the key, e.g. "model.arm_type: 'UAFM_ChAtten' is not implemented (supported: UAFM_SpAtten)".
// Defined in models/pp_liteseg.cpp.
std::shared_ptr<SegModel> build_seg_model(const SegModelSpec& spec);

}  // namespace engine::nn
