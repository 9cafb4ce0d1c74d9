// labels: kernel tsan
// Every CUDA kernel family on tiny shapes: under ThreadSanitizer (OS-thread emulation, one thread per
// CUDA thread) this finds missing barriers and shared-memory races; elsewhere it is a quick
// CPU-vs-CUDA smoke test. Shapes stay small because every emulated CUDA thread is an OS thread.
#include <gtest/gtest.h>

#include <cmath>

#include "engine/autograd.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/matmul.h"
#include "engine/ops/reduce.h"
#include "tests/harness/op_check.h"

using namespace engine;

namespace {

void expect_same_on_devices(const std::function<std::vector<Tensor>(Device)>& fn) {
  if (!engine::testing::have_cuda()) GTEST_SKIP() << "no CUDA device";
  const auto c = fn(Device::cpu());
  const auto g = fn(Device::cuda(0));
  ASSERT_EQ(c.size(), g.size());
  for (size_t k = 0; k < c.size(); ++k) {
    const auto a = c[k].to_vector(), b = g[k].to_vector();
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-5 + 1e-5 * std::fabs(a[i])) << "output " << k << " element " << i;
  }
}

}  // namespace

TEST(KernelsTsan, ElementwiseForwardBackward) {
  expect_same_on_devices([](Device d) {
    Tensor x = Tensor::uniform({3, 37}, 1, -1, 1, d).set_requires_grad(true);
    Tensor b = Tensor::uniform({37}, 2, -1, 1, d).set_requires_grad(true);
    const Tensor y = sigmoid(x * b) + relu(x - b);
    y.backward(Tensor::full({3, 37}, 1.f, DType::F32, d));
    return std::vector<Tensor>{y, x.grad(), b.grad(), x.transpose(0, 1).contiguous()};
  });
}

TEST(KernelsTsan, Reductions) {
  expect_same_on_devices([](Device d) {
    Tensor x = Tensor::uniform({4, 3, 70}, 3, -1, 1, d).set_requires_grad(true);
    const Tensor s = sum(x, {2});
    const MaxResult m = max(x, {0, 1});
    (sum(s) + sum(m.values) + sum(mean(x, {0}))).backward();
    return std::vector<Tensor>{s, m.values, m.indices.to(DType::F32), x.grad()};
  });
}

TEST(KernelsTsan, Matmul) {
  expect_same_on_devices([](Device d) {
    Tensor a = Tensor::uniform({9, 13}, 4, -1, 1, d).set_requires_grad(true);
    Tensor b = Tensor::uniform({13, 7}, 5, -1, 1, d).set_requires_grad(true);
    const Tensor c = matmul(a, b);
    sum(c).backward();
    return std::vector<Tensor>{c, a.grad(), b.grad()};
  });
}
