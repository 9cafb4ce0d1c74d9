// One training step of a model at a given precision and AMP level, for the mixed-precision model
// tests (tests/test_models.cpp, tests/test_det_models.cpp): the outputs, the parameters' gradients
// and the memory the forward keeps for the backward.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "engine/allocator.h"
#include "engine/autograd.h"
#include "engine/precision.h"

namespace engine::testing {

struct MixedStep {
  std::vector<float> outputs, grads;  // every output / every parameter's gradient, concatenated
  size_t kept_bytes = 0;              // CPU memory the forward leaves allocated (what the backward keeps)
};

// Runs `model` (freshly built, on the CPU) in eval mode with running statistics close to x's batch
// statistics, set by f32 training-mode forwards first. Why not batch statistics: at initialisation
// they make these graphs so ill-conditioned that any rounding moves the gradients by O(1), and the
// initial running statistics (0, 1) let the activations shrink below fp16's range; the low-precision
// training-mode batch norm is checked bit for bit by tests/test_batchnorm.cpp. Parameters for which
// `has_grad` is false (heads that eval mode does not run) are skipped; every other one must get a
// finite f32 gradient.
template <class Model>
MixedStep mixed_precision_step(Model& model, Precision prec, AmpLevel level, const Tensor& x,
                               const std::function<Tensor(const std::vector<Tensor>&)>& loss_fn,
                               const std::function<bool(const std::string&)>& has_grad) {
  {
    NoGradGuard no_grad;
    for (int i = 0; i < 12; ++i) model.forward(x);
  }
  model.eval();
  const AutocastGuard guard(prec, level);
  MixedStep r;
  const size_t before = memory_stats(Device::cpu()).allocated_current;
  const std::vector<Tensor> outputs = model.forward(x);
  r.kept_bytes = memory_stats(Device::cpu()).allocated_current - before;
  loss_fn(outputs).backward();
  for (const Tensor& o : outputs) {
    EXPECT_EQ(o.dtype(), DType::F32);
    const std::vector<float> v = o.to_vector();
    r.outputs.insert(r.outputs.end(), v.begin(), v.end());
  }
  for (auto& [n, t] : model.named_parameters()) {
    if (!has_grad(n)) continue;
    EXPECT_TRUE(t.grad().defined()) << n;
    if (!t.grad().defined()) continue;
    EXPECT_EQ(t.grad().dtype(), DType::F32) << n;
    const std::vector<float> v = t.grad().to_vector();
    EXPECT_TRUE(std::all_of(v.begin(), v.end(), [](float e) { return std::isfinite(e); })) << n;
    r.grads.insert(r.grads.end(), v.begin(), v.end());
  }
  return r;
}

// O2 against f32 and O1 for each precision this CPU runs (fp16 everywhere: the op level runs it on
// the CPU too; bf16 where the CPU has bf16 math; `step(prec, level)` builds the model and runs
// mixed_precision_step). The relative distance of O2's outputs and gradients from the f32 step's
// must be below max(tolerance, o1_factor x O1's distance): the first bounds the error where the
// model is well conditioned, the second where rounding anywhere (O1's included) moves the result a
// lot. And the forward keeps at most 0.6x the f32 bytes. Tolerances: {fp16 outputs, fp16
// gradients, bf16 outputs, bf16 gradients}.
void expect_o2_close_to_f32(const std::function<MixedStep(Precision, AmpLevel)>& step, const double (&tol)[4],
                            double o1_factor);

}  // namespace engine::testing
