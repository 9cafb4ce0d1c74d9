#include "tests/harness/mixed_step.h"

#include <algorithm>
#include <cstdio>

#include "kernels/cpu/cpu_isa.h"
#include "tests/harness/op_check.h"

namespace engine::testing {

void expect_o2_close_to_f32(const std::function<MixedStep(Precision, AmpLevel)>& step, const double (&tol)[4],
                            double o1_factor) {
  const MixedStep f32 = step(Precision::FP32, AmpLevel::O1);
  std::vector<Precision> precisions = {Precision::FP16};
  if (kernels::cpu_has_bf16()) precisions.push_back(Precision::BF16);
  for (const Precision prec : precisions) {
    SCOPED_TRACE(precision_name(prec));
    const double out_tol = prec == Precision::FP16 ? tol[0] : tol[2];
    const double grad_tol = prec == Precision::FP16 ? tol[1] : tol[3];
    const MixedStep o1 = step(prec, AmpLevel::O1), o2 = step(prec, AmpLevel::O2);
    ASSERT_EQ(o2.outputs.size(), f32.outputs.size());
    ASSERT_EQ(o2.grads.size(), f32.grads.size());
    const double d_out = relative_l2_distance(o2.outputs, f32.outputs);
    const double d_grad = relative_l2_distance(o2.grads, f32.grads);
    const double o1_out = relative_l2_distance(o1.outputs, f32.outputs);
    const double o1_grad = relative_l2_distance(o1.grads, f32.grads);
    std::printf(
        "%s against f32: O2 outputs %.2e, gradients %.2e; O1 %.2e, %.2e; kept by the forward %.2f MB (O1 %.2f, "
        "f32 %.2f)\n",
        precision_name(prec), d_out, d_grad, o1_out, o1_grad, o2.kept_bytes / 1e6, o1.kept_bytes / 1e6,
        f32.kept_bytes / 1e6);
    EXPECT_GT(d_out, 0.0);  // really computed in the low type
    EXPECT_LT(d_out, std::max(out_tol, o1_factor * o1_out));
    EXPECT_LT(d_grad, std::max(grad_tol, o1_factor * o1_grad));
    // The activations the backward keeps take about half the bytes of f32 ones.
    EXPECT_LT((double)o2.kept_bytes, 0.6 * (double)f32.kept_bytes);
  }
}

}  // namespace engine::testing
