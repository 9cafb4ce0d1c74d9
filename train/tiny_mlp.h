// A two-layer perceptron trained with plain SGD on generated data: the smallest end-to-end use of
// the core (tensors, autograd, matmul, elementwise, reductions) on one device. engine-demo runs it
// from the command line; tests/test_tiny_mlp.cpp checks that the CPU and the CUDA device produce
// the same loss curve.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/device.h"

namespace engine {

struct TinyMlpConfig {
  int samples = 512;
  int hidden = 64;
  int steps = 300;
  float lr = 0.05f;
  uint64_t seed = 7;
};

// Fits y = sin(2 x0) * cos(3 x1) + 0.5 x0 x1 on `samples` points of [-1, 1]^2 with
// Linear(2, hidden) -> tanh -> Linear(hidden, hidden) -> relu -> Linear(hidden, 1) and MSE loss,
// full-batch SGD. Returns the loss of every step.
std::vector<float> train_tiny_mlp(const TinyMlpConfig& cfg, Device device);

}  // namespace engine
