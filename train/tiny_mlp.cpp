#include "train/tiny_mlp.h"

#include <cmath>
#include <random>

#include "engine/autograd.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/matmul.h"
#include "engine/ops/reduce.h"

namespace engine {

std::vector<float> train_tiny_mlp(const TinyMlpConfig& cfg, Device device) {
  // Data, generated on the host from the seed so every device sees the same values.
  std::mt19937_64 rng(cfg.seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<float> xs((size_t)cfg.samples * 2), ys((size_t)cfg.samples);
  for (int i = 0; i < cfg.samples; ++i) {
    const float a = u(rng), b = u(rng);
    xs[2 * i] = a;
    xs[2 * i + 1] = b;
    ys[i] = std::sin(2 * a) * std::cos(3 * b) + 0.5f * a * b;
  }
  const Tensor x = Tensor::from_vector(xs, {cfg.samples, 2}, device);
  const Tensor y = Tensor::from_vector(ys, {cfg.samples, 1}, device);

  // Parameters: Kaiming-style normal init, zero biases.
  const int h = cfg.hidden;
  std::vector<Tensor> params = {
      Tensor::randn({2, h}, cfg.seed + 1, std::sqrt(2.f / 2), device), Tensor::zeros({h}, DType::F32, device),
      Tensor::randn({h, h}, cfg.seed + 2, std::sqrt(2.f / h), device), Tensor::zeros({h}, DType::F32, device),
      Tensor::randn({h, 1}, cfg.seed + 3, std::sqrt(1.f / h), device), Tensor::zeros({1}, DType::F32, device)};
  for (Tensor& p : params) p.set_requires_grad(true);

  std::vector<float> losses;
  for (int step = 0; step < cfg.steps; ++step) {
    const Tensor h1 = tanh(matmul(x, params[0]) + params[1]);
    const Tensor h2 = relu(matmul(h1, params[2]) + params[3]);
    const Tensor pred = matmul(h2, params[4]) + params[5];
    const Tensor diff = pred - y;
    const Tensor loss = mean(diff * diff);
    loss.backward();
    losses.push_back(loss.item());
    NoGradGuard no_grad;
    for (Tensor& p : params) {
      add_inplace(p, mul(p.grad(), -cfg.lr));  // p -= lr * grad
      p.zero_grad();
    }
  }
  return losses;
}

}  // namespace engine
