#include "engine/autograd.h"

#include <atomic>
#include <queue>
#include <unordered_map>

#include "engine/ops/copy.h"
#include "engine/ops/elementwise.h"

namespace engine {
namespace {
thread_local bool t_grad_mode = true;
std::atomic<uint64_t> g_sequence{0};
}  // namespace

bool grad_mode_enabled() { return t_grad_mode; }
NoGradGuard::NoGradGuard() : prev_(t_grad_mode) { t_grad_mode = false; }
NoGradGuard::~NoGradGuard() { t_grad_mode = prev_; }

bool needs_grad(std::initializer_list<const Tensor*> inputs) {
  if (!t_grad_mode) return false;
  for (const Tensor* t : inputs)
    if (t && t->defined() && t->requires_grad()) return true;
  return false;
}

bool needs_grad(const std::vector<Tensor>& inputs) {
  if (!t_grad_mode) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

void record(const std::shared_ptr<Node>& node, const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs) {
  node->sequence = g_sequence.fetch_add(1);
  node->next.clear();
  for (const Tensor& in : inputs) {
    Edge e;
    if (in.defined() && in.requires_grad()) {
      if (in.grad_fn()) {
        e.fn = in.grad_fn();
        e.output_nr = in.impl().output_nr;
      } else {
        e.leaf = in.impl_ptr();
      }
    }
    node->next.push_back(std::move(e));
  }
  node->out_shapes.clear();
  node->out_dtypes.clear();
  for (size_t i = 0; i < outputs.size(); ++i) {
    TensorImpl& o = outputs[i].impl();
    o.requires_grad = true;
    o.grad_fn = node;
    o.output_nr = (int)i;
    node->out_shapes.push_back(o.shape);
    node->out_dtypes.push_back(o.dtype);
    node->out_device = outputs[i].device();
  }
}

void record_lambda(const char* name, const std::vector<Tensor>& inputs, const Tensor& output, LambdaNode::Fn fn) {
  if (!needs_grad(inputs)) return;
  record(std::make_shared<LambdaNode>(name, std::move(fn)), inputs, {output});
}

namespace {
// Adds `g` into the gradient buffer of a node output (allocating on first use). The sum is a fresh
// tensor, never written in place: the buffer may be the very tensor that another backward formula
// returned to another input as well (add hands one gradient to both of its inputs).
void accumulate(Tensor& slot, const Tensor& g) {
  if (!slot.defined()) {
    slot = g;
  } else {
    slot = add(slot, g);
  }
}

// True when `g` is the only handle to its TensorImpl, that impl the only user of its storage, and
// the storage exactly g's dense elements: then no other gradient, saved tensor or caller can see it.
// A gradient that a backward formula hands to two inputs (add, sub's first input) or that also sits
// in another node's buffer fails it, and so do views of such a gradient (reshape, permute, concat's
// slices); one passed on that nobody else holds (a view of a dropped temporary) is adopted.
bool sole_owner(const Tensor& g) {
  return g.impl_ptr().use_count() == 1 && g.storage().use_count() == 1 && g.offset() == 0 && g.is_contiguous() &&
         g.storage()->bytes == g.nbytes() && g.dtype() == DType::F32 && !g.requires_grad();
}

// Adds `g` (the caller's only handle, moved in) into a leaf's gradient, keeping the rule of
// autograd.h: a leaf's gradient is a dense buffer the leaf owns exclusively. The first contribution
// is adopted when nobody else holds it and copied otherwise; later ones are added into that buffer in
// place (add_inplace computes grad + g element by element, the same bits as add(grad, g)).
void accumulate_leaf(TensorImpl& leaf, Tensor g) {
  // A leaf's gradient is f32 whatever the leaf's storage type (mixed precision: bf16 / f16 gradients
  // of a low-precision leaf are summed in f32, the master copy).
  if (g.dtype() != DType::F32 && leaf.grad) g = copy_contiguous(g, DType::F32);
  if (!leaf.grad) {
    if (!sole_owner(g)) g = copy_contiguous(g, DType::F32);
    leaf.grad = g.impl_ptr();
  } else {
    add_inplace(Tensor(leaf.grad), g);
  }
}
}  // namespace

void run_backward(const Tensor& root, const Tensor& grad_in, bool retain_graph) {
  NoGradGuard no_grad;  // backward formulas are not themselves recorded
  ENGINE_CHECK(root.requires_grad(), "backward(): the tensor ", root.describe(),
               " does not require grad (no input of its graph has requires_grad)");
  Tensor grad = grad_in;
  if (!grad.defined()) {
    ENGINE_CHECK(root.numel() == 1, "backward(): implicit gradient needs a one-element tensor, got ", root.describe());
    grad = Tensor::full(root.shape(), 1.f, DType::F32, root.device());
  }
  ENGINE_CHECK(grad.shape() == root.shape(), "backward(): gradient shape ", shape_str(grad.shape()),
               " does not match tensor shape ", shape_str(root.shape()));

  if (!root.grad_fn()) {  // a leaf: its gradient is the seed
    TensorImpl& leaf = root.impl();
    accumulate_leaf(leaf, std::move(grad));
    Tensor self(root.impl_ptr());
    for (auto& h : leaf.grad_ready_hooks) h(self);
    return;
  }

  // Pass 1: dependency counts of nodes and leaves reachable from the root.
  std::unordered_map<Node*, int> deps;
  std::unordered_map<TensorImpl*, int> leaf_deps;
  {
    std::vector<Node*> stack{root.grad_fn().get()};
    deps[root.grad_fn().get()] = 0;
    std::unordered_map<Node*, bool> seen{{root.grad_fn().get(), true}};
    while (!stack.empty()) {
      Node* n = stack.back();
      stack.pop_back();
      ENGINE_CHECK(!n->released, "backward(): the graph through ", n->name(),
                   " was already freed by an earlier backward(); pass retain_graph=true to backward twice");
      for (const Edge& e : n->next) {
        if (e.fn) {
          ++deps[e.fn.get()];
          if (!seen[e.fn.get()]) {
            seen[e.fn.get()] = true;
            stack.push_back(e.fn.get());
          }
        } else if (e.leaf) {
          ++leaf_deps[e.leaf.get()];
        }
      }
    }
  }

  // Pass 2: run nodes whose gradients are complete, newest first (deterministic).
  auto newer = [](const std::shared_ptr<Node>& a, const std::shared_ptr<Node>& b) { return a->sequence < b->sequence; };
  std::priority_queue<std::shared_ptr<Node>, std::vector<std::shared_ptr<Node>>, decltype(newer)> ready(newer);
  std::unordered_map<Node*, std::vector<Tensor>> buffers;
  buffers[root.grad_fn().get()].resize(root.grad_fn()->out_shapes.size());
  buffers[root.grad_fn().get()][root.impl().output_nr] = grad;
  ready.push(root.grad_fn());

  while (!ready.empty()) {
    std::shared_ptr<Node> node = ready.top();
    ready.pop();
    std::vector<Tensor> grads = std::move(buffers[node.get()]);
    buffers.erase(node.get());
    grads.resize(node->out_shapes.size());
    for (size_t i = 0; i < grads.size(); ++i)
      if (!grads[i].defined())  // in the output's type: a 16-bit output's gradient is 16-bit too
        grads[i] = Tensor::zeros(node->out_shapes[i], node->out_dtypes[i], node->out_device);

    std::vector<Tensor> in_grads = node->apply(grads);
    grads.clear();  // a gradient passed on unchanged is then held by in_grads alone (see sole_owner)
    ENGINE_CHECK(in_grads.size() == node->next.size(), "internal: ", node->name(), " returned ", in_grads.size(),
                 " gradients for ", node->next.size(), " inputs");
    for (size_t i = 0; i < node->next.size(); ++i) {
      const Edge& e = node->next[i];
      if (!e.active()) continue;
      Tensor g = std::move(in_grads[i]);  // so that a leaf can tell whether it would be the sole owner
      if (e.fn) {
        auto& buf = buffers[e.fn.get()];
        buf.resize(e.fn->out_shapes.size());
        if (g.defined()) accumulate(buf[e.output_nr], g);
        if (--deps[e.fn.get()] == 0) ready.push(e.fn);
      } else {
        TensorImpl& leaf = *e.leaf;
        if (g.defined()) {
          ENGINE_CHECK(g.shape() == leaf.shape, "internal: ", node->name(), " produced gradient ", shape_str(g.shape()),
                       " for a leaf of shape ", shape_str(leaf.shape));
          accumulate_leaf(leaf, std::move(g));
        }
        if (--leaf_deps[e.leaf.get()] == 0 && leaf.grad) {
          Tensor self(e.leaf);
          for (auto& h : leaf.grad_ready_hooks) h(self);
        }
      }
    }
    if (!retain_graph) {
      node->release();
      node->released = true;
    }
  }
}

void Tensor::backward(const Tensor& grad, bool retain_graph) const { run_backward(*this, grad, retain_graph); }

}  // namespace engine
