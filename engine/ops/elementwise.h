// Elementwise ops (f32), each differentiable, on CPU and CUDA.
//  unary:  neg exp log sqrt relu leaky_relu sigmoid tanh
//  binary: add sub mul div maximum, with numpy broadcasting; scalar variants.
// Semantics where frameworks differ:
//  - relu'(0) = 0; leaky_relu'(0) = slope (x > 0 ? 1 : slope), as PyTorch and Paddle.
//  - maximum: on ties the gradient is split evenly between a and b (as PyTorch).
//  - log/sqrt/div follow IEEE (log(0) = -inf, sqrt(-1) = NaN); no silent clamping.
#pragma once
#include "engine/tensor.h"

namespace engine {

Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor relu(const Tensor& x);
Tensor leaky_relu(const Tensor& x, float negative_slope);
Tensor sigmoid(const Tensor& x);
Tensor tanh(const Tensor& x);

Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor maximum(const Tensor& a, const Tensor& b);

Tensor add(const Tensor& a, float s);
Tensor sub(const Tensor& a, float s);
Tensor mul(const Tensor& a, float s);
Tensor div(const Tensor& a, float s);
Tensor maximum(const Tensor& a, float s);
Tensor rsub(float s, const Tensor& a);  // s - a
Tensor rdiv(float s, const Tensor& a);  // s / a

// dst += src in place (same shape, contiguous dst, f32). Not recorded by autograd: used for
// gradient accumulation and optimizer-side arithmetic.
void add_inplace(const Tensor& dst, const Tensor& src);

inline Tensor operator-(const Tensor& x) { return neg(x); }
inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator+(const Tensor& a, float s) { return add(a, s); }
inline Tensor operator-(const Tensor& a, float s) { return sub(a, s); }
inline Tensor operator*(const Tensor& a, float s) { return mul(a, s); }
inline Tensor operator/(const Tensor& a, float s) { return div(a, s); }
inline Tensor operator+(float s, const Tensor& a) { return add(a, s); }
inline Tensor operator-(float s, const Tensor& a) { return rsub(s, a); }
inline Tensor operator*(float s, const Tensor& a) { return mul(a, s); }
inline Tensor operator/(float s, const Tensor& a) { return rdiv(s, a); }

}  // namespace engine
