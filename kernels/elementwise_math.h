// The per-element math of the elementwise family, shared by the CPU and CUDA kernels (one
// definition, so the backends cannot drift apart). With `op` a compile-time constant after
// inlining, each switch folds to one expression.
#pragma once
#include "kernels/shared_math.h"

namespace engine::kernels {

enum class UnaryOp : uint8_t {
  Neg,
  Exp,
  Log,
  Sqrt,
  Relu,
  LeakyRelu,
  Sigmoid,
  Tanh,
  AddScalar,
  MulScalar,
  DivScalar,
  MaxScalar,
  RSubScalar,
  RDivScalar,
};
enum class BinaryOp : uint8_t { Add, Sub, Mul, Div, Max };

// y = f(x; alpha)
template <UnaryOp op>
ENGINE_HD float unary_fwd(float x, float alpha) {
  switch (op) {
    case UnaryOp::Neg:
      return -x;
    case UnaryOp::Exp:
      return exp_f(x);
    case UnaryOp::Log:
      return logf(x);
    case UnaryOp::Sqrt:
      return sqrt_f(x);
    case UnaryOp::Relu:
      return x > 0.f ? x : 0.f;
    case UnaryOp::LeakyRelu:
      return leaky_relu_f(x, alpha);
    case UnaryOp::Sigmoid:
      return sigmoid_f(x);
    case UnaryOp::Tanh:
      return tanhf(x);
    case UnaryOp::AddScalar:
      return x + alpha;
    case UnaryOp::MulScalar:
      return x * alpha;
    case UnaryOp::DivScalar:
      return x / alpha;
    case UnaryOp::MaxScalar:
      return x > alpha ? x : (x == alpha ? x : (x != x ? x : alpha));  // NaN propagates
    case UnaryOp::RSubScalar:
      return alpha - x;
    case UnaryOp::RDivScalar:
      return alpha / x;
  }
  return 0.f;
}

// dL/dx from g = dL/dy, the input x and the output y.
template <UnaryOp op>
ENGINE_HD float unary_bwd(float g, float x, float y, float alpha) {
  switch (op) {
    case UnaryOp::Neg:
      return -g;
    case UnaryOp::Exp:
      return g * y;
    case UnaryOp::Log:
      return g / x;
    case UnaryOp::Sqrt:
      return g * 0.5f / y;
    case UnaryOp::Relu:
      return x > 0.f ? g : 0.f;
    case UnaryOp::LeakyRelu:
      return x > 0.f ? g : g * alpha;
    case UnaryOp::Sigmoid:
      return g * y * (1.f - y);
    case UnaryOp::Tanh:
      return g * sub_rn(1.f, mul_rn(y, y));
    case UnaryOp::AddScalar:
      return g;
    case UnaryOp::MulScalar:
      return g * alpha;
    case UnaryOp::DivScalar:
      return g / alpha;
    case UnaryOp::MaxScalar:
      return x > alpha ? g : (x == alpha ? 0.5f * g : 0.f);
    case UnaryOp::RSubScalar:
      return -g;
    case UnaryOp::RDivScalar:
      return -g * y / x;
  }
  return 0.f;
}

template <BinaryOp op>
ENGINE_HD float binary_fwd(float a, float b) {
  switch (op) {
    case BinaryOp::Add:
      return a + b;
    case BinaryOp::Sub:
      return a - b;
    case BinaryOp::Mul:
      return a * b;
    case BinaryOp::Div:
      return a / b;
    case BinaryOp::Max:
      return (a > b || a != a) ? a : b;  // NaN in either propagates
  }
  return 0.f;
}

// Full-shape gradients of a and b (before summing over broadcast dims).
template <BinaryOp op>
ENGINE_HD void binary_bwd(float g, float a, float b, float* ga, float* gb) {
  switch (op) {
    case BinaryOp::Add:
      *ga = g;
      *gb = g;
      break;
    case BinaryOp::Sub:
      *ga = g;
      *gb = -g;
      break;
    case BinaryOp::Mul:
      *ga = g * b;
      *gb = g * a;
      break;
    case BinaryOp::Div:
      *ga = g / b;
      *gb = -g * a / (b * b);
      break;
    case BinaryOp::Max:  // ties split the gradient evenly, as PyTorch
      *ga = a > b ? g : (a == b ? 0.5f * g : 0.f);
      *gb = b > a ? g : (a == b ? 0.5f * g : 0.f);
      break;
  }
}

}  // namespace engine::kernels
