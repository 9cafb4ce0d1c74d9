// Define-by-run autograd. Each differentiable op, when any input requires grad and grad mode is on,
// creates a Node that holds what its backward needs and links to the nodes of its inputs.
// backward() on a scalar runs the nodes in reverse creation order (a valid reverse topological
// order, and deterministic), accumulates gradients into leaves with +=, fires each leaf's
// gradient-ready hooks once its gradient is complete, and frees the graph unless retain_graph.
//
// Rule: a leaf's .grad() is a dense (contiguous, offset 0) buffer that the leaf owns exclusively: no
// other leaf's gradient, node buffer, saved tensor or caller's tensor (e.g. the seed passed to
// backward()) shares its storage, so an in-place all-reduce of every parameter's gradient (data
// parallel buckets) or an in-place update of one gradient touches that gradient alone, once. Backward
// formulas may return one tensor for two inputs (add) or views of a gradient (reshape, permute,
// contiguous, clone, concat); the engine copies a leaf's first contribution unless it holds the only
// reference to it, and adds later contributions (also those of later backward() calls) into that
// buffer in place, with the same bits as the out-of-place sum. Non-leaf gradients stay out of place.
// Test: Autograd.LeafGradientsAreOwnedExclusively and LaterGradientContributionsAccumulateInPlace
// (tests/test_autograd.cpp).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace engine {

struct Edge {
  std::shared_ptr<Node> fn;          // producer of this input, or null for a leaf / no-grad input
  int output_nr = 0;                 // which output of fn
  std::shared_ptr<TensorImpl> leaf;  // the leaf to accumulate into (when fn is null)
  bool active() const { return fn != nullptr || leaf != nullptr; }
};

class Node {
 public:
  virtual ~Node() = default;
  // grad_outputs[i] is the gradient of output i (undefined if that output got none; such entries
  // are zero-filled by the engine before apply). Returns one gradient per input (undefined = none).
  virtual std::vector<Tensor> apply(const std::vector<Tensor>& grad_outputs) = 0;
  virtual const char* name() const = 0;
  // Drops saved tensors after backward.
  virtual void release() {}

  std::vector<Edge> next;         // one per input
  std::vector<Shape> out_shapes;  // to zero-fill missing output gradients
  std::vector<DType> out_dtypes;
  Device out_device;
  uint64_t sequence = 0;
  bool released = false;
};

// Grad mode (thread-local). NoGradGuard disables recording in its scope.
bool grad_mode_enabled();
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

// True when an op with these inputs must record a node.
bool needs_grad(std::initializer_list<const Tensor*> inputs);
bool needs_grad(const std::vector<Tensor>& inputs);

// Links `node` to `inputs` and makes it the grad_fn of `outputs`.
void record(const std::shared_ptr<Node>& node, const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs);

// Runs backward from `root` (a one-element tensor unless `grad` is given).
void run_backward(const Tensor& root, const Tensor& grad, bool retain_graph);

// A Node defined by a lambda, for simple ops: saves what the lambda captures.
class LambdaNode : public Node {
 public:
  using Fn = std::function<std::vector<Tensor>(const std::vector<Tensor>&)>;
  LambdaNode(const char* name, Fn fn) : name_(name), fn_(std::move(fn)) {}
  std::vector<Tensor> apply(const std::vector<Tensor>& g) override { return fn_(g); }
  const char* name() const override { return name_; }
  void release() override { fn_ = nullptr; }

 private:
  const char* name_;
  Fn fn_;
};

// Records a LambdaNode for a one-output op when needed. Saved tensors live in the lambda capture.
void record_lambda(const char* name, const std::vector<Tensor>& inputs, const Tensor& output, LambdaNode::Fn fn);

}  // namespace engine
