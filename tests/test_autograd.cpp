// labels: kernel
// Autograd: tape order, accumulation, NoGradGuard, graph freeing, gradient-ready hooks, views.
#include <gtest/gtest.h>

#include "engine/autograd.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "tests/harness/op_check.h"

using namespace engine;

namespace {
std::vector<Device> devices() {
  std::vector<Device> d{Device::cpu()};
  if (engine::testing::have_cuda()) d.push_back(Device::cuda(0));
  return d;
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
