// bench_kernels rows for the optimizer family: the fused SGD-momentum update (Paddle Momentum with
// coupled L2 decay) over the 12,366,467 trainable parameters of PP-LiteSeg-B (PaddleSeg's
// pp_liteseg.py with backbones/stdcnet.py STDC2; the count models/ builds and tests/test_models.cpp
// checks) split into ~300 tensors of realistic sizes: conv weights [O, I, k, k] of the STDC2 backbone
// and the head, plus BN gamma/beta and conv-bias vectors. One call = one optimizer step (one CUDA
// launch), and the loss scaler's unscale over the same gradients; then the same with bf16 gradients
// (data-parallel O2) and the unscale from f16 into f32. Validated against a host computation of one
// step on sampled elements, the 16-bit rows against the update of the widened gradients.
#include <cmath>
#include <sstream>

#include "bench/bench.h"
#include "engine/ops/optim.h"

namespace {

using namespace engine;

std::vector<int64_t> liteseg_b_sizes(bool quick) {
  // Conv weight shapes typical of STDC2 + PP-LiteSeg head (O, I, k), repeated; then BN vectors.
  const int64_t convs[][3] = {{32, 3, 3},    {64, 32, 3},    {128, 64, 1},   {64, 128, 3},   {32, 64, 3},
                              {32, 32, 3},   {128, 128, 1},  {256, 128, 1},  {128, 256, 3},  {64, 128, 3},
                              {64, 64, 3},   {256, 256, 1},  {512, 256, 1},  {256, 512, 3},  {128, 256, 3},
                              {128, 128, 3}, {512, 512, 1},  {1024, 512, 1}, {512, 1024, 3}, {256, 512, 3},
                              {256, 256, 3}, {128, 1024, 1}, {128, 128, 3},  {128, 512, 3},  {96, 256, 3},
                              {64, 96, 3},   {4, 2, 3},      {64, 64, 3},    {19, 64, 1}};
  std::vector<int64_t> s;
  int64_t total = 0;
  const int64_t target = quick ? 12366467 / 16 : 12366467;
  const int64_t budget = target * 9 / 10;
  for (bool added = true; added;) {  // passes over the list while something still fits
    added = false;
    for (const auto& c : convs) {
      int64_t n = c[0] * c[1] * c[2] * c[2];
      if (quick) n = std::max<int64_t>(1, n / 16);
      if (total + n + 2 * c[0] > budget || s.size() >= 280) continue;
      s.push_back(n);
      s.push_back(c[0]);  // BN gamma
      s.push_back(c[0]);  // BN beta
      total += n + 2 * c[0];
      added = true;
    }
  }
  while (s.size() < 300) {  // conv biases / small vectors
    s.push_back(128);
    total += 128;
  }
  if (total < target) s.push_back(target - total);  // the remainder as one tensor
  return s;
}

}  // namespace

BENCH_REGISTER(optim) {
  const bool q = runner.quick();
  const auto sizes = liteseg_b_sizes(q);
  int64_t total = 0;
  for (int64_t n : sizes) total += n;
  for (Device d : runner.devices()) {
    std::vector<Tensor> p, g, v;
    for (size_t i = 0; i < sizes.size(); ++i) {
      p.push_back(Tensor::uniform({sizes[i]}, 100 + i, -0.1f, 0.1f, d));
      g.push_back(Tensor::uniform({sizes[i]}, 900 + i, -0.01f, 0.01f, d));
      v.push_back(Tensor::uniform({sizes[i]}, 1700 + i, -0.01f, 0.01f, d));
    }
    const float lr = 0.01f, mu = 0.9f, wd = 5e-4f;
    std::ostringstream shape;
    shape << total << " params in " << sizes.size() << " tensors";
    runner.run(
        "sgd_momentum_update", shape.str(), d, {20.0 * (double)total, 0},
        [&] {
          for (size_t i = 0; i < sizes.size(); i += 37) {
            const auto p0 = p[i].to_vector(), g0 = g[i].to_vector(), v0 = v[i].to_vector();
            sgd_momentum_update({p[i]}, {g[i]}, {v[i]}, lr, mu, wd);
            const auto p1 = p[i].to_vector(), v1 = v[i].to_vector();
            for (size_t j = 0; j < p0.size(); j += 101) {
              const double vv = mu * (double)v0[j] + g0[j] + wd * (double)p0[j];
              const double pp = p0[j] - lr * vv;
              if (std::fabs(vv - v1[j]) > 1e-6 || std::fabs(pp - p1[j]) > 1e-6)
                return "tensor " + std::to_string(i) + " element " + std::to_string(j) + " differs";
            }
          }
          return std::string();
        },
        [&] { sgd_momentum_update(p, g, v, lr, mu, wd); });
    // The loss scaler's unscale over the same gradients (8 B per element, read and written in place);
    // a power-of-two scale and its inverse alternate, so the values stay where they are.
    float inv = 0.5f;
    runner.run(
        "unscale_grads_check_finite", shape.str(), d, {8.0 * (double)total, 0},
        [&] {
          const auto g0 = g[7].to_vector();
          if (unscale_grads_check_finite(g, 0.5f)) return std::string("finite gradients reported as non-finite");
          const auto g1 = g[7].to_vector();
          for (size_t j = 0; j < g0.size(); j += 11)
            if (g1[j] != g0[j] * 0.5f) return "element " + std::to_string(j) + " was not halved";
          unscale_grads_check_finite(g, 2.f);
          return std::string();
        },
        [&] {
          unscale_grads_check_finite(g, inv);
          inv = inv == 0.5f ? 2.f : 0.5f;
        });
    // Data-parallel O2's reduced 16-bit gradients: the update reading bf16 ones (18 B per element),
    // and the fp16 loss scaler's unscale from f16 into the f32 buffers (6 B per element).
    std::vector<Tensor> g16, h16;
    for (const Tensor& t : g) g16.push_back(t.to(DType::BF16)), h16.push_back(t.to(DType::F16));
    runner.run(
        "sgd_momentum_update_bf16_grads", shape.str(), d, {18.0 * (double)total, 0},
        [&] {
          for (size_t i = 0; i < sizes.size(); i += 37) {
            const Tensor p0 = p[i].clone(), v0 = v[i].clone();
            sgd_momentum_update({p[i]}, {g16[i]}, {v[i]}, lr, mu, wd);
            sgd_momentum_update({p0}, {g16[i].to(DType::F32)}, {v0}, lr, mu, wd);  // the f32 widening: same bits
            if (p[i].to_vector() != p0.to_vector() || v[i].to_vector() != v0.to_vector())
              return "tensor " + std::to_string(i) + " differs from the update of its widened gradient";
          }
          return std::string();
        },
        [&] { sgd_momentum_update(p, g16, v, lr, mu, wd); });
    runner.run(
        "unscale_grads_f16_into_f32", shape.str(), d, {6.0 * (double)total, 0},
        [&] {
          if (unscale_grads_check_finite(h16, 0.5f, g)) return std::string("finite gradients reported as non-finite");
          const auto want = h16[7].to(DType::F32).to_vector(), got = g[7].to_vector();
          for (size_t j = 0; j < want.size(); j += 11)
            if (got[j] != want[j] * 0.5f) return "element " + std::to_string(j) + " is not half the f16 gradient";
          return std::string();
        },
        [&] { unscale_grads_check_finite(h16, 0.5f, g); });
  }
}
