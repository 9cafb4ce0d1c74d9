// labels: kernel
// Autograd: tape order, accumulation, NoGradGuard, graph freeing, gradient-ready hooks, views,
// exclusively owned leaf gradients.
#include <gtest/gtest.h>

#include <functional>

#include "engine/autograd.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "engine/ops/shape_ops.h"
#include "tests/harness/op_check.h"

using namespace engine;

namespace {
std::vector<Device> devices() {
  std::vector<Device> d{Device::cpu()};
  if (engine::testing::have_cuda()) d.push_back(Device::cuda(0));
  return d;
}

bool overlap(const Tensor& a, const Tensor& b) {
  const char* pa = static_cast<const char*>(a.storage()->data);
  const char* pb = static_cast<const char*>(b.storage()->data);
  return a.storage() == b.storage() || (pa < pb + b.storage()->bytes && pb < pa + a.storage()->bytes);
}

// The rule of engine/autograd.h: every leaf's gradient is dense and shares memory with nothing else
// (no other gradient, no leaf, no tensor of the caller in `others`), so an in-place all-reduce of
// each gradient changes that gradient, once, and nothing else.
void expect_exclusive_grads(const std::string& what, const std::vector<Tensor>& leaves,
                            const std::vector<Tensor>& others = {}) {
  SCOPED_TRACE(what);
  std::vector<Tensor> grads;
  for (const Tensor& l : leaves) {
    const Tensor g = l.grad();
    ASSERT_TRUE(g.defined());
    EXPECT_TRUE(g.is_contiguous() && g.offset() == 0 && g.storage()->bytes == g.nbytes()) << g.describe();
    for (const Tensor& o : others) EXPECT_FALSE(overlap(g, o)) << "gradient shares memory with " << o.describe();
    for (const Tensor& l2 : leaves) EXPECT_FALSE(overlap(g, l2)) << "gradient shares memory with a leaf";
    for (const Tensor& h : grads) EXPECT_FALSE(overlap(g, h)) << "two leaves share one gradient buffer";
    grads.push_back(g);
  }
  std::vector<std::vector<float>> before, others_before;
  for (const Tensor& g : grads) before.push_back(g.to_vector());
  for (const Tensor& o : others) others_before.push_back(o.to_vector());
  for (size_t i = 0; i < grads.size(); ++i) grads[i].copy_(grads[i] * 2.f);  // each doubled in place, once
  for (size_t i = 0; i < grads.size(); ++i) {
    std::vector<float> want = before[i];
    for (float& v : want) v *= 2.f;
    EXPECT_EQ(leaves[i].grad().to_vector(), want) << "leaf " << i;
  }
  for (size_t i = 0; i < others.size(); ++i) EXPECT_EQ(others[i].to_vector(), others_before[i]) << "other " << i;
}
}  // namespace

TEST(Autograd, DiamondGraphAccumulates) {
  for (Device d : devices()) {
    Tensor x = Tensor::from_vector({1, 2, 3}, {3}, d).set_requires_grad(true);
    const Tensor a = x * 2.f, b = x * x;  // y = sum(2x + x^2) -> dy/dx = 2 + 2x
    sum(a + b).backward();
    EXPECT_EQ(x.grad().to_vector(), (std::vector<float>{4, 6, 8}));
  }
}

TEST(Autograd, GradientsAccumulateAcrossBackwardCalls) {
  Tensor x = Tensor::from_vector({1, 2}, {2}).set_requires_grad(true);
  sum(x * 3.f).backward();
  sum(x * 3.f).backward();
  EXPECT_EQ(x.grad().to_vector(), (std::vector<float>{6, 6}));
  x.zero_grad();
  EXPECT_FALSE(x.grad().defined());
}

TEST(Autograd, NoGradGuardRecordsNothing) {
  Tensor x = Tensor::from_vector({1, 2}, {2}).set_requires_grad(true);
  {
    NoGradGuard g;
    const Tensor y = x * 2.f;
    EXPECT_FALSE(y.requires_grad());
    EXPECT_EQ(y.grad_fn(), nullptr);
  }
  EXPECT_TRUE((x * 2.f).requires_grad());
  EXPECT_TRUE(grad_mode_enabled());
}

TEST(Autograd, GraphIsFreedAfterBackward) {
  Tensor x = Tensor::from_vector({1, 2}, {2}).set_requires_grad(true);
  const Tensor y = sum(exp(x));
  y.backward(Tensor(), /*retain_graph=*/true);
  y.backward();  // allowed: the graph was retained once
  EXPECT_THROW(y.backward(), Error);
  try {
    y.backward();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("already freed"), std::string::npos) << e.what();
  }
}

TEST(Autograd, SavedOutputsDoNotLeakTheGraph) {
  // A node that saves its own output must not keep itself alive through it (no reference cycle).
  std::weak_ptr<Node> node;
  {
    Tensor x = Tensor::from_vector({1, 2}, {2}).set_requires_grad(true);
    const Tensor y = sigmoid(x);
    node = y.grad_fn();
    EXPECT_FALSE(node.expired());
  }
  EXPECT_TRUE(node.expired());
}

TEST(Autograd, GradReadyHooksFireOncePerBackwardWithCompleteGradient) {
  Tensor w = Tensor::from_vector({1, 2, 3}, {3}).set_requires_grad(true);
  Tensor v = Tensor::from_vector({1, 1, 1}, {3}).set_requires_grad(true);
  std::vector<std::vector<float>> seen;
  int v_calls = 0;
  w.register_grad_ready_hook([&](Tensor& p) { seen.push_back(p.grad().to_vector()); });
  v.register_grad_ready_hook([&](Tensor&) { ++v_calls; });
  // w is used three times: the hook must see the sum of all three contributions.
  sum(w * v + w * 2.f + w).backward();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0], (std::vector<float>{4, 4, 4}));
  EXPECT_EQ(v_calls, 1);
}

TEST(Autograd, HooksFireInReverseOrderOfUse) {
  // Data parallel relies on late layers' gradients being ready first.
  Tensor w1 = Tensor::from_vector({1}, {1}).set_requires_grad(true);
  Tensor w2 = Tensor::from_vector({1}, {1}).set_requires_grad(true);
  std::vector<int> order;
  w1.register_grad_ready_hook([&](Tensor&) { order.push_back(1); });
  w2.register_grad_ready_hook([&](Tensor&) { order.push_back(2); });
  const Tensor x = Tensor::from_vector({3}, {1});
  const Tensor h = tanh(x * w1);
  sum(tanh(h * w2)).backward();
  EXPECT_EQ(order, (std::vector<int>{2, 1}));
}

TEST(Autograd, ViewsPropagateGradients) {
  for (Device d : devices()) {
    Tensor x = Tensor::from_vector({1, 2, 3, 4, 5, 6}, {2, 3}, d).set_requires_grad(true);
    const Tensor y = x.transpose(0, 1).slice(0, 1, 3).reshape({4});  // rows 1..2 of x^T
    sum(y * Tensor::from_vector({1, 2, 3, 4}, {4}, d)).backward();
    // x^T = [[1,4],[2,5],[3,6]]; y = [2,5,3,6] from x[0][1], x[1][1], x[0][2], x[1][2]
    EXPECT_EQ(x.grad().to_vector(), (std::vector<float>{0, 1, 3, 0, 2, 4}));
    Tensor b = Tensor::from_vector({1, 2}, {2, 1}, d).set_requires_grad(true);
    sum(b.expand({2, 5})).backward();
    EXPECT_EQ(b.grad().to_vector(), (std::vector<float>{5, 5}));
  }
}

TEST(Autograd, DeviceTransfersAreDifferentiable) {
  if (!engine::testing::have_cuda()) GTEST_SKIP() << "no CUDA device";
  Tensor x = Tensor::from_vector({1, 2}, {2}).set_requires_grad(true);
  sum(x.to(Device::cuda(0)) * 3.f).backward();
  EXPECT_EQ(x.grad().device(), Device::cpu());
  EXPECT_EQ(x.grad().to_vector(), (std::vector<float>{3, 3}));
}

TEST(Autograd, Errors) {
  const Tensor x = Tensor::from_vector({1, 2}, {2});
  EXPECT_THROW(sum(x).backward(), Error);  // nothing requires grad
  Tensor w = Tensor::from_vector({1, 2}, {2}).set_requires_grad(true);
  EXPECT_THROW((w * 2.f).backward(), Error);  // implicit gradient needs a scalar
  EXPECT_THROW(Tensor::zeros({2}, DType::I64).set_requires_grad(true), Error);
}

TEST(Autograd, LeafGradientsAreOwnedExclusively) {
  // Backward formulas may hand the incoming gradient on unchanged (add, sub's first input, views,
  // contiguous, clone, a sum_to_shape that sums nothing) or as views of one buffer (concat): the
  // leaves must still end up with gradients of their own.
  for (Device d : devices()) {
    SCOPED_TRACE(d.str());
    const Tensor c = Tensor::from_vector({1, 2, 3, 4, 5, 6}, {2, 3}, d);
    auto leaf = [&](std::vector<float> v, Shape s) { return Tensor::from_vector(v, s, d).set_requires_grad(true); };
    using Case = std::function<Tensor(const std::vector<Tensor>&)>;
    const std::vector<std::pair<std::string, Case>> cases = {
        {"add", [](const std::vector<Tensor>& l) { return sum(add(l[0], l[1])); }},
        {"add then mul", [&](const std::vector<Tensor>& l) { return sum(add(l[0], l[1]) * c); }},
        {"sub", [&](const std::vector<Tensor>& l) { return sum(sub(l[0], l[1]) * c); }},
        {"add, one leaf broadcast",
         [&](const std::vector<Tensor>& l) { return sum(add(l[0], l[1].slice(0, 0, 1)) * c); }},
        {"reshape",
         [&](const std::vector<Tensor>& l) { return sum(add(l[0].reshape({6}), l[1].reshape({6})) * c.reshape({6})); }},
        {"transpose",
         [&](const std::vector<Tensor>& l) {
           return sum(add(l[0].transpose(0, 1), l[1].transpose(0, 1)).contiguous() * c.transpose(0, 1));
         }},
        {"clone", [&](const std::vector<Tensor>& l) { return sum(add(l[0].clone(), l[1]) * c); }},
        {"concat",
         [&](const std::vector<Tensor>& l) {
           return sum(concat({l[0], l[1]}, 0) * concat({c, c * 2.f}, 0));
         }},
        {"split",
         [&](const std::vector<Tensor>& l) {
           const auto parts = split(add(l[0], l[1]), {1, 1}, 0);
           return sum(parts[0] * c.slice(0, 0, 1)) + sum(parts[1]);
         }},
    };
    for (const auto& [name, loss] : cases) {
      const std::vector<Tensor> leaves = {leaf({1, 2, 3, 4, 5, 6}, {2, 3}), leaf({6, 5, 4, 3, 2, 1}, {2, 3})};
      loss(leaves).backward();
      expect_exclusive_grads(name, leaves, {c});
    }

    // The seed of backward() must not become a leaf's gradient, whether the root is the leaf itself or a view of it.
    const Tensor seed = Tensor::from_vector({1, 2, 3}, {3}, d);
    Tensor a = leaf({1, 1, 1}, {3});
    a.backward(seed);
    expect_exclusive_grads("seed into the root leaf", {a}, {seed});
    Tensor b = leaf({1, 1, 1}, {3});
    b.reshape({3, 1}).backward(seed.reshape({3, 1}));
    expect_exclusive_grads("seed through a view", {b}, {seed});
    Tensor s = leaf({2}, {1});
    s.backward();
    expect_exclusive_grads("implicit seed", {s});
    EXPECT_EQ(s.grad().to_vector(), (std::vector<float>{2}));  // 1, doubled by the check
  }
}

TEST(Autograd, LaterGradientContributionsAccumulateInPlace) {
  for (Device d : devices()) {
    SCOPED_TRACE(d.str());
    Tensor w = Tensor::from_vector({1, 2}, {2}, d).set_requires_grad(true);
    const Tensor x = Tensor::from_vector({3, 4}, {2}, d);
    sum(add(w, w) * x + w).backward();  // three contributions to w, two of them one tensor
    EXPECT_EQ(w.grad().to_vector(), (std::vector<float>{7, 9}));
    const Tensor first = w.grad();
    const void* data = first.raw_data();
    sum(w * x).backward();  // a second backward adds into the buffer the leaf already owns
    EXPECT_TRUE(w.grad().same(first));
    EXPECT_EQ(w.grad().raw_data(), data);
    EXPECT_EQ(w.grad().to_vector(), (std::vector<float>{10, 13}));
    expect_exclusive_grads("after two backward calls", {w}, {x});
  }
}
