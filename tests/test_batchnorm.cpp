// labels: kernel
// Batch norm (NHWC and [N, C]): training forward/backward against a naive double reference and
// finite differences, eval mode, batch_norm_apply with gradients through mean/var, local statistics,
// the simulated two-rank sync-BN path against batch_norm on the whole batch, running statistics
// after three steps (Paddle momentum, biased variance), numerical stability with |mean| >> std, and
// bad inputs. The fused activations (BatchNormArgs::act: ReLU and LeakyReLU(0.1)): train and eval
// against the activation of the double reference and finite differences (inputs kept away from
// z = 0), bit-exact equality with relu(batch_norm(...)) / leaky_relu(batch_norm(...), slope)
// including exact z == 0 elements (gradient 0 for ReLU, slope for LeakyReLU), and
// BatchNorm2d::forward(x, act) on every path (fused, one value per channel, synchronised, eval).
// check_op also compares the emulated CUDA device with the CPU, strided inputs, guard bytes and
// run-to-run determinism.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "engine/autograd.h"
#include "engine/ops/batchnorm.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "kernels/cpu/batchnorm_cpu.h"
#include "kernels/kernel_types.h"
#include "models/layers.h"
#include "tests/harness/op_check.h"
#if defined(ENGINE_WITH_CUDA)
#include "base/cuda_context.h"
#include "kernels/cuda/batchnorm_cuda.h"
#endif

using namespace engine;
using namespace engine::testing;

namespace {

constexpr double kEps = 1e-5;

// Odd spatial sizes, size-1 dims, channel counts 1, 3, 17 (scalar path) and 8, 64 (float4 path).
std::vector<OpCase> train_cases() {
  return {{"c3_7x9", {{2, 7, 9, 3}, {3}, {3}}},
          {"c17_13x11", {{2, 13, 11, 17}, {17}, {17}}},
          {"c1_1x9", {{2, 1, 9, 1}, {1}, {1}}},
          {"c8_5x3", {{2, 5, 3, 8}, {8}, {8}}},
          {"c64_4x4", {{2, 4, 4, 64}, {64}, {64}}},
          {"nc_6x5", {{6, 5}, {5}, {5}}},
          {"nc_2x12", {{2, 12}, {12}, {12}}},
          // Several row blocks per channel tile and several tiles (the CUDA kernels' last-block
          // finalize): 4-channel vectors in 2 tiles of 4 row blocks, single channels in 3 tiles of 2.
          {"c160_10x10", {{2, 10, 10, 160}, {160}, {160}}},
          {"c67_8x8", {{2, 8, 8, 67}, {67}, {67}}}};
}

// Per-channel mean and biased variance of x viewed as [M, C], in double.
void moments(const std::vector<double>& x, int64_t C, std::vector<double>& mean, std::vector<double>& var) {
  const int64_t M = (int64_t)x.size() / C;
  mean.assign((size_t)C, 0.0);
  var.assign((size_t)C, 0.0);
  for (int64_t r = 0; r < M; ++r)
    for (int64_t c = 0; c < C; ++c) mean[(size_t)c] += x[(size_t)(r * C + c)];
  for (double& m : mean) m /= (double)M;
  for (int64_t r = 0; r < M; ++r)
    for (int64_t c = 0; c < C; ++c) {
      const double d = x[(size_t)(r * C + c)] - mean[(size_t)c];
      var[(size_t)c] += d * d;
    }
  for (double& v : var) v /= (double)M;
}

std::vector<double> normalize(const std::vector<double>& x, const std::vector<double>& mean,
                              const std::vector<double>& var, const std::vector<double>& w,
                              const std::vector<double>& b, double eps) {
  const int64_t C = (int64_t)mean.size();
  std::vector<double> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const size_t c = i % (size_t)C;
    y[i] = (x[i] - mean[c]) / std::sqrt(var[c] + eps) * w[c] + b[c];
  }
  return y;
}

// Uniform values from an LCG; input `positive_input` (if >= 0) gets [0.5, 2] (variances).
InputGen gen_with_positive(int positive_input) {
  return [positive_input](int input, const Shape& shape, uint64_t seed) {
    std::vector<float> v((size_t)shape_numel(shape));
    uint64_t s = seed * 1000003 + (uint64_t)input * 7919 + 17;
    for (float& x : v) {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      const float u = (float)((s >> 33) % 1000000) / 1000000.f;
      x = input == positive_input ? 0.5f + 1.5f * u : -2.f + 4.f * u;
    }
    return v;
  };
}

}  // namespace

TEST(BatchNorm, TrainForwardBackward) {
  CheckOptions o;
  o.fwd_atol = 1e-4;
  o.fwd_rtol = 1e-4;
  o.device_atol = 1e-4;
  o.device_rtol = 1e-4;
  check_op(
      "batch_norm_train", train_cases(),
      [](const std::vector<Tensor>& in) {
        const int64_t C = in[0].shape().back();
        Tensor rm = Tensor::zeros({C}, DType::F32, in[0].device());
        Tensor rv = Tensor::full({C}, 1.f, DType::F32, in[0].device());
        return std::vector<Tensor>{batch_norm(in[0], in[1], in[2], rm, rv, BatchNormArgs{})};
      },
      [](const RefInputs& in, const std::vector<Shape>& shapes) {
        std::vector<double> mean, var;
        moments(in[0], shapes[0].back(), mean, var);
        return std::vector<std::vector<double>>{normalize(in[0], mean, var, in[1], in[2], kEps)};
      },
      o);
}

TEST(BatchNorm, TrainWithoutAffineOrRunningStats) {
  CheckOptions o;
  o.fwd_atol = 1e-4;
  o.device_atol = 1e-4;
  o.device_rtol = 1e-4;
  check_op(
      "batch_norm_plain", {{"c5", {{2, 3, 7, 5}}}, {"c4", {{3, 4}}}},
      [](const std::vector<Tensor>& in) {
        return std::vector<Tensor>{batch_norm(in[0], Tensor(), Tensor(), Tensor(), Tensor(), BatchNormArgs{})};
      },
      [](const RefInputs& in, const std::vector<Shape>& shapes) {
        const int64_t C = shapes[0].back();
        std::vector<double> mean, var;
        moments(in[0], C, mean, var);
        return std::vector<std::vector<double>>{normalize(in[0], mean, var, std::vector<double>((size_t)C, 1.0),
                                                          std::vector<double>((size_t)C, 0.0), kEps)};
      },
      o);
}

TEST(BatchNorm, EvalModeIsAffine) {
  CheckOptions o;
  o.input_gen = gen_with_positive(4);
  o.differentiable = {true, true, true, false, false};
  check_op(
      "batch_norm_eval",
      {{"c3", {{2, 7, 9, 3}, {3}, {3}, {3}, {3}}},
       {"c17", {{2, 5, 3, 17}, {17}, {17}, {17}, {17}}},
       {"c8", {{1, 1, 1, 8}, {8}, {8}, {8}, {8}}},
       {"nc", {{4, 6}, {6}, {6}, {6}, {6}}}},
      [](const std::vector<Tensor>& in) {
        BatchNormArgs a;
        a.training = false;
        return std::vector<Tensor>{batch_norm(in[0], in[1], in[2], in[3], in[4], a)};
      },
      [](const RefInputs& in, const std::vector<Shape>&) {
        return std::vector<std::vector<double>>{normalize(in[0], in[3], in[4], in[1], in[2], kEps)};
      },
      o);
}

TEST(BatchNorm, EvalDoesNotTouchRunningStats) {
  for (Device d : {Device::cpu(), have_cuda() ? Device::cuda(0) : Device::cpu()}) {
    Tensor x = Tensor::uniform({2, 3, 3, 4}, 5, -1.f, 1.f, d);
    Tensor rm = Tensor::from_vector({0.1f, 0.2f, 0.3f, 0.4f}, {4}, d), rv = Tensor::full({4}, 2.f, DType::F32, d);
    BatchNormArgs a;
    a.training = false;
    batch_norm(x, Tensor(), Tensor(), rm, rv, a);
    EXPECT_EQ(rm.to_vector(), (std::vector<float>{0.1f, 0.2f, 0.3f, 0.4f}));
    EXPECT_EQ(rv.to_vector(), (std::vector<float>{2.f, 2.f, 2.f, 2.f}));
  }
}

TEST(BatchNorm, ApplyDifferentiatesThroughMeanAndVar) {
  CheckOptions o;
  o.input_gen = gen_with_positive(2);
  check_op(
      "batch_norm_apply",
      {{"c3", {{2, 7, 9, 3}, {3}, {3}, {3}, {3}}},
       {"c17", {{2, 3, 5, 17}, {17}, {17}, {17}, {17}}},
       {"c8", {{3, 8}, {8}, {8}, {8}, {8}}}},
      [](const std::vector<Tensor>& in) {
        return std::vector<Tensor>{batch_norm_apply(in[0], in[1], in[2], in[3], in[4], (float)kEps)};
      },
      [](const RefInputs& in, const std::vector<Shape>&) {
        return std::vector<std::vector<double>>{normalize(in[0], in[1], in[2], in[3], in[4], kEps)};
      },
      o);
}

TEST(BatchNorm, LocalStats) {
  CheckOptions o;
  o.differentiable = {true, false};
  o.fwd_rtol = 1e-5;
  o.fwd_atol = 1e-3;
  o.device_atol = 1e-3;
  o.device_rtol = 1e-5;
  check_op(
      "batch_norm_local_stats", {{"c3", {{2, 7, 9, 3}, {3}}}, {"c17", {{2, 3, 5, 17}, {17}}}, {"c8", {{5, 8}, {8}}}},
      [](const std::vector<Tensor>& in) {
        const BatchNormStats st = batch_norm_local_stats(in[0], in[1]);
        EXPECT_EQ(st.count, in[0].numel() / in[0].shape().back());
        return std::vector<Tensor>{st.sum, st.sum_sq};
      },
      [](const RefInputs& in, const std::vector<Shape>& shapes) {
        const size_t C = (size_t)shapes[0].back();
        std::vector<double> s(C, 0.0), q(C, 0.0);
        for (size_t i = 0; i < in[0].size(); ++i) {
          const double d = in[0][i] - in[1][i % C];
          s[i % C] += d;
          q[i % C] += d * d;
        }
        return std::vector<std::vector<double>>{s, q};
      },
      o);
}

// Two simulated ranks holding 1 and 3 images: local stats -> sum ("all-reduce") -> moments -> apply
// must equal batch_norm on the whole batch, forward and backward (x, weight, bias).
TEST(BatchNorm, SyncBuildingBlocksMatchWholeBatch) {
  for (Device d : {Device::cpu(), have_cuda() ? Device::cuda(0) : Device::cpu()}) {
    const Shape shape{4, 5, 3, 6};
    const int64_t C = 6;
    const Tensor xv = Tensor::uniform(shape, 11, -1.f, 3.f, d), wv = Tensor::uniform({C}, 12, 0.5f, 1.5f, d),
                 bv = Tensor::uniform({C}, 13, -1.f, 1.f, d), gw = Tensor::uniform(shape, 14, -1.f, 1.f, d);
    // Reference: plain batch_norm.
    Tensor x0 = xv.clone().set_requires_grad(true), w0 = wv.clone().set_requires_grad(true),
           b0 = bv.clone().set_requires_grad(true);
    Tensor rm0 = Tensor::zeros({C}, DType::F32, d), rv0 = Tensor::full({C}, 1.f, DType::F32, d);
    const Tensor y0 = batch_norm(x0, w0, b0, rm0, rv0, BatchNormArgs{});
    sum(mul(y0, gw)).backward();
    // Sync path.
    Tensor x1 = xv.clone().set_requires_grad(true), w1 = wv.clone().set_requires_grad(true),
           b1 = bv.clone().set_requires_grad(true);
    const Tensor shift = Tensor::full({C}, 0.9f, DType::F32, d);  // e.g. the running mean
    const Tensor xa = x1.narrow(0, 0, 1), xb = x1.narrow(0, 1, 3);
    const BatchNormStats sa = batch_norm_local_stats(xa, shift), sb = batch_norm_local_stats(xb, shift);
    const BatchNormMoments mv =
        batch_norm_moments(add(sa.sum, sb.sum), add(sa.sum_sq, sb.sum_sq), sa.count + sb.count, shift);
    const Tensor ya = batch_norm_apply(xa, mv.mean, mv.var, w1, b1, 1e-5f);
    const Tensor yb = batch_norm_apply(xb, mv.mean, mv.var, w1, b1, 1e-5f);
    add(sum(mul(ya, gw.narrow(0, 0, 1))), sum(mul(yb, gw.narrow(0, 1, 3)))).backward();
    Tensor rm1 = Tensor::zeros({C}, DType::F32, d), rv1 = Tensor::full({C}, 1.f, DType::F32, d);
    batch_norm_update_running(rm1, rv1, mv.mean, mv.var, 0.9f);

    auto expect_near = [](const std::vector<float>& a, const std::vector<float>& b, float tol, const char* what) {
      ASSERT_EQ(a.size(), b.size()) << what;
      for (size_t i = 0; i < a.size(); ++i)
        EXPECT_NEAR(a[i], b[i], tol * (1 + std::fabs(b[i]))) << what << " [" << i << "]";
    };
    const auto y0v = y0.to_vector();
    auto yav = ya.to_vector(), ybv = yb.to_vector();
    yav.insert(yav.end(), ybv.begin(), ybv.end());
    expect_near(yav, y0v, 1e-4f, "forward");
    expect_near(x1.grad().to_vector(), x0.grad().to_vector(), 1e-4f, "dx");
    expect_near(w1.grad().to_vector(), w0.grad().to_vector(), 1e-4f, "dweight");
    expect_near(b1.grad().to_vector(), b0.grad().to_vector(), 1e-4f, "dbias");
    expect_near(rm1.to_vector(), rm0.to_vector(), 1e-5f, "running_mean");
    expect_near(rv1.to_vector(), rv0.to_vector(), 1e-5f, "running_var");
  }
}

// Three training steps on different batches: running stats follow running = 0.9*running + 0.1*batch
// with the biased batch variance (Paddle's CUDA kernel; see engine/ops/batchnorm.h).
TEST(BatchNorm, RunningStatsAfterThreeSteps) {
  const int64_t C = 5;
  std::vector<double> rm(C, 0.0), rv(C, 1.0);
  std::vector<Tensor> batches;
  for (int s = 0; s < 3; ++s) {
    const Tensor x = Tensor::uniform({2, 3 + s, 4, C}, 100 + (uint64_t)s, -1.f + (float)s, 2.f + 0.5f * (float)s);
    batches.push_back(x);
    std::vector<double> mean, var;
    const auto xv = x.to_vector();
    moments(std::vector<double>(xv.begin(), xv.end()), C, mean, var);
    for (int64_t c = 0; c < C; ++c) {
      rm[(size_t)c] = 0.9 * rm[(size_t)c] + 0.1 * mean[(size_t)c];
      rv[(size_t)c] = 0.9 * rv[(size_t)c] + 0.1 * var[(size_t)c];
    }
  }
  for (Device d : {Device::cpu(), have_cuda() ? Device::cuda(0) : Device::cpu()}) {
    Tensor trm = Tensor::zeros({C}, DType::F32, d), trv = Tensor::full({C}, 1.f, DType::F32, d);
    for (const Tensor& x : batches) batch_norm(x.to(d), Tensor(), Tensor(), trm, trv, BatchNormArgs{});
    const auto gm = trm.to_vector(), gv = trv.to_vector();
    for (int64_t c = 0; c < C; ++c) {
      EXPECT_NEAR(gm[(size_t)c], rm[(size_t)c], 1e-5) << d.str() << " running_mean[" << c << "]";
      EXPECT_NEAR(gv[(size_t)c], rv[(size_t)c], 1e-5) << d.str() << " running_var[" << c << "]";
    }
  }
}

// |mean| = 1000 * std: the statistics must not cancel (a naive E[x^2] - E[x]^2 in fp32 would).
TEST(BatchNorm, StableWithLargeMean) {
  for (Device d : {Device::cpu(), have_cuda() ? Device::cuda(0) : Device::cpu()}) {
    for (int64_t C : {3, 8}) {
      const Tensor x = add(Tensor::uniform({2, 33, 17, C}, 7, -1.f, 1.f, d), 1000.f);
      Tensor rm = Tensor::zeros({C}, DType::F32, d), rv = Tensor::zeros({C}, DType::F32, d);
      const Tensor y = batch_norm(x, Tensor(), Tensor(), rm, rv, BatchNormArgs{});
      const auto xv = x.to_vector(), yv = y.to_vector();
      std::vector<double> mean, var;
      moments(std::vector<double>(xv.begin(), xv.end()), C, mean, var);
      const auto want = normalize(std::vector<double>(xv.begin(), xv.end()), mean, var,
                                  std::vector<double>((size_t)C, 1.0), std::vector<double>((size_t)C, 0.0), kEps);
      double worst = 0;
      for (size_t i = 0; i < yv.size(); ++i) worst = worse_of(worst, std::fabs(yv[i] - want[i]));
      EXPECT_LT(worst, 2e-3) << d.str() << " C=" << C;
      const auto gv = rv.to_vector();
      for (int64_t c = 0; c < C; ++c)
        EXPECT_NEAR(gv[(size_t)c], 0.1 * var[(size_t)c], 1e-4 * var[(size_t)c]) << d.str();
    }
  }
}

namespace {
void expect_error(const std::function<void()>& f, const std::string& what) {
  try {
    f();
    ADD_FAILURE() << "expected an error containing '" << what << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
  }
}
}  // namespace

TEST(BatchNorm, BadInputs) {
  const Tensor x = Tensor::zeros({2, 3, 3, 4}), w = Tensor::zeros({4}), rm = Tensor::zeros({4}),
               rv = Tensor::zeros({4});
  expect_error(
      [&] {
        batch_norm(Tensor::zeros({2, 3, 4}), w, w, rm, rv, {});
      },
      "batch_norm: x must be [N, H, W, C] or [N, C], got f32[2, 3, 4]");
  expect_error([&] { batch_norm(x, Tensor::zeros({5}), w, rm, rv, {}); },
               "batch_norm: 'weight' must be [4] to match the channels of x f32[2, 3, 3, 4]");
  expect_error([&] { batch_norm(x, w, w, Tensor::zeros({3}), rv, {}); }, "batch_norm: 'running_mean' must be [4]");
  expect_error(
      [&] {
        batch_norm(Tensor::zeros({1, 1, 1, 4}), w, w, rm, rv, {});
      },
      "batch_norm: training needs more than one value per channel");
  expect_error(
      [&] {
        batch_norm(Tensor::zeros({1, 4}), w, w, rm, rv, {});
      },
      "batch_norm: training needs more than one value per channel");
  BatchNormArgs ev;
  ev.training = false;
  expect_error([&] { batch_norm(x, w, w, Tensor(), Tensor(), ev); },
               "batch_norm: argument 'running_mean' is an undefined tensor");
  expect_error([&] { batch_norm(x, w, w, rm, Tensor(), {}); }, "both be given or both be undefined");
  expect_error(
      [&] {
        batch_norm(Tensor::zeros({2, 3, 3, 4}, DType::I64), w, w, rm, rv, {});
      },
      "batch_norm: argument 'x' must be f32");
  expect_error(
      [&] {
        batch_norm(Tensor::zeros({0, 3, 3, 4}), w, w, rm, rv, {});
      },
      "batch_norm: x f32[0, 3, 3, 4] on cpu is empty");
  BatchNormArgs bad_eps;
  bad_eps.eps = -1.f;
  expect_error([&] { batch_norm(x, w, w, rm, rv, bad_eps); }, "batch_norm: eps must be finite and >= 0");
  expect_error([&] { batch_norm_apply(x, Tensor::zeros({3}), rv, w, w, 1e-5f); },
               "batch_norm_apply: 'mean' must be [4]");
  expect_error([&] { batch_norm_local_stats(Tensor::zeros({4})); }, "batch_norm_local_stats: x must be");
  expect_error([&] { batch_norm_moments(w, Tensor::zeros({3}), 4); },
               "batch_norm_moments: sum and sum_sq must be the same");
  expect_error([&] { batch_norm_moments(w, w, 0); }, "batch_norm_moments: count must be positive");
  expect_error([&] { batch_norm_update_running(Tensor::zeros({3}), rv, w, w, 0.9f); },
               "batch_norm_update_running: running statistics must be contiguous f32[4]");
  if (have_cuda()) {
    expect_error([&] { batch_norm(x, Tensor::zeros({4}, DType::F32, Device::cuda(0)), w, rm, rv, {}); },
                 "batch_norm: 'x' is on cpu but 'weight' is on cuda:0");
  }
}

// Tensors large enough for several CPU work blocks, OpenMP threads and many CUDA row blocks:
// forward, running statistics and all gradients against the closed-form double reference.
TEST(BatchNorm, LargeBatchMatchesReference) {
  struct Case {
    Shape shape;
  };
  for (const Shape& shape : {Shape{4, 64, 80, 5}, Shape{2, 48, 64, 16}}) {
    const int64_t C = shape.back();
    const Tensor xh = Tensor::uniform(shape, 21, -1.f, 3.f), gh = Tensor::uniform(shape, 22, -1.f, 1.f);
    const Tensor wh = Tensor::uniform({C}, 23, 0.5f, 1.5f), bh = Tensor::uniform({C}, 24, -1.f, 1.f);
    const auto xv = xh.to_vector(), gv = gh.to_vector(), wv = wh.to_vector(), bv = bh.to_vector();
    const std::vector<double> x(xv.begin(), xv.end()), g(gv.begin(), gv.end()), w(wv.begin(), wv.end()),
        b(bv.begin(), bv.end());
    std::vector<double> mean, var;
    moments(x, C, mean, var);
    const auto y_ref = normalize(x, mean, var, w, b, kEps);
    const int64_t M = (int64_t)x.size() / C;
    std::vector<double> sg((size_t)C, 0.0), sgxh((size_t)C, 0.0);
    for (size_t i = 0; i < x.size(); ++i) {
      const size_t c = i % (size_t)C;
      sg[c] += g[i];
      sgxh[c] += g[i] * (x[i] - mean[c]) / std::sqrt(var[c] + kEps);
    }
    std::vector<double> dx_ref(x.size());
    for (size_t i = 0; i < x.size(); ++i) {
      const size_t c = i % (size_t)C;
      const double is = 1 / std::sqrt(var[c] + kEps), xhat = (x[i] - mean[c]) * is;
      dx_ref[i] = w[c] * is * (g[i] - sg[c] / (double)M - xhat * sgxh[c] / (double)M);
    }
    for (Device d : {Device::cpu(), have_cuda() ? Device::cuda(0) : Device::cpu()}) {
      Tensor xt = xh.to(d).detach().set_requires_grad(true), wt = wh.to(d).detach().set_requires_grad(true),
             bt = bh.to(d).detach().set_requires_grad(true);
      Tensor rm = Tensor::zeros({C}, DType::F32, d), rv = Tensor::full({C}, 1.f, DType::F32, d);
      const Tensor y = batch_norm(xt, wt, bt, rm, rv, BatchNormArgs{});
      y.backward(gh.to(d));
      auto near = [&](const std::vector<float>& got, const std::vector<double>& want, double tol, const char* what) {
        ASSERT_EQ(got.size(), want.size());
        double worst = 0;
        for (size_t i = 0; i < got.size(); ++i)
          worst = worse_of(worst, std::fabs(got[i] - want[i]) / (1 + std::fabs(want[i])));
        EXPECT_LT(worst, tol) << what << " on " << d.str() << " " << shape_str(shape);
      };
      near(y.to_vector(), y_ref, 1e-5, "y");
      near(xt.grad().to_vector(), dx_ref, 1e-5, "dx");
      near(wt.grad().to_vector(), sgxh, 5e-5, "dweight");
      near(bt.grad().to_vector(), sg, 5e-5, "dbias");
      std::vector<double> rm_ref(mean), rv_ref(var);
      for (int64_t c = 0; c < C; ++c) {
        rm_ref[(size_t)c] = 0.1 * mean[(size_t)c];
        rv_ref[(size_t)c] = 0.9 + 0.1 * var[(size_t)c];
      }
      near(rm.to_vector(), rm_ref, 1e-6, "running_mean");
      near(rv.to_vector(), rv_ref, 1e-6, "running_var");
    }
  }
}

// ------------------------------------------------------------------ fused activations
namespace {

// The two fused activations every test below runs: ReLU, and LeakyReLU with DarkNet's slope 0.1.
struct ActCase {
  const char* name;
  BnActivation act;
};
std::vector<ActCase> act_cases() {
  return {{"relu", BnActivation::relu()}, {"leaky_relu", BnActivation::leaky_relu(0.1f)}};
}

std::vector<double> act_ref(std::vector<double> y, const BnActivation& act) {
  const double k = act.kind == BnActivation::Kind::Relu ? 0.0 : (double)act.negative_slope;
  for (double& v : y) v = v > 0 ? v : v * k;
  return y;
}

// relu(y) / leaky_relu(y, slope) with the engine's elementwise ops.
Tensor unfused_act(const Tensor& y, const BnActivation& act) {
  return act.kind == BnActivation::Kind::Relu ? relu(y) : leaky_relu(y, act.negative_slope);
}

// Inputs whose pre-activation z stays >= ~0.1 away from 0, so that finite differences (step 1e-3)
// never cross the activation's kink. x (input 0): alternating rows of -(1 + u/2) and +(1 + u/2), u in
// [0, 1): with an even number of rows the batch mean is within +-0.25 and |x - mean| >= 0.75, the
// std <= 1.5, so |x_hat| >= 0.5. weight (input 1): +-(0.5 + u), random signs (both sides of the
// kink). bias (input 2): [-0.15, 0.15]. Eval (inputs 3, 4): running mean [-0.1, 0.1], running var
// [0.5, 2] (|x_hat| >= 0.9 / sqrt(2) > 0.63). So |w * x_hat| >= 0.25 > |b| + 0.1.
std::vector<float> act_gen(int input, const Shape& shape, uint64_t seed) {
  std::vector<float> v((size_t)shape_numel(shape));
  const int64_t C = shape.back();
  uint64_t s = seed * 1000003 + (uint64_t)input * 7919 + 29;
  for (size_t i = 0; i < v.size(); ++i) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    const float u = (float)((s >> 33) % 1000000) / 1000000.f;
    const bool flip = (s >> 20) & 1;
    switch (input) {
      case 0:
        v[i] = ((int64_t)i / C) % 2 ? 1.f + 0.5f * u : -1.f - 0.5f * u;
        break;
      case 1:
        v[i] = flip ? -(0.5f + u) : 0.5f + u;
        break;
      case 2:
        v[i] = -0.15f + 0.3f * u;
        break;
      case 3:
        v[i] = -0.1f + 0.2f * u;
        break;
      default:
        v[i] = 0.5f + 1.5f * u;
        break;
    }
  }
  return v;
}

}  // namespace

TEST(BatchNorm, FusedActivationTrainForwardBackward) {
  for (const ActCase& ac : act_cases()) {
    CheckOptions o;
    o.input_gen = act_gen;
    o.fwd_atol = 1e-4;
    o.fwd_rtol = 1e-4;
    o.device_atol = 1e-4;
    o.device_rtol = 1e-4;
    const BnActivation act = ac.act;
    check_op(
        std::string("batch_norm_") + ac.name + "_train", train_cases(),
        [act](const std::vector<Tensor>& in) {
          const int64_t C = in[0].shape().back();
          Tensor rm = Tensor::zeros({C}, DType::F32, in[0].device());
          Tensor rv = Tensor::full({C}, 1.f, DType::F32, in[0].device());
          BatchNormArgs a;
          a.act = act;
          return std::vector<Tensor>{batch_norm(in[0], in[1], in[2], rm, rv, a)};
        },
        [act](const RefInputs& in, const std::vector<Shape>& shapes) {
          std::vector<double> mean, var;
          moments(in[0], shapes[0].back(), mean, var);
          return std::vector<std::vector<double>>{act_ref(normalize(in[0], mean, var, in[1], in[2], kEps), act)};
        },
        o);
  }
}

TEST(BatchNorm, FusedActivationEval) {
  for (const ActCase& ac : act_cases()) {
    CheckOptions o;
    o.input_gen = act_gen;
    o.differentiable = {true, true, true, false, false};
    const BnActivation act = ac.act;
    check_op(
        std::string("batch_norm_") + ac.name + "_eval",
        {{"c3", {{2, 7, 9, 3}, {3}, {3}, {3}, {3}}},
         {"c17", {{2, 5, 3, 17}, {17}, {17}, {17}, {17}}},
         {"c8", {{2, 1, 1, 8}, {8}, {8}, {8}, {8}}},
         {"c64", {{2, 3, 2, 64}, {64}, {64}, {64}, {64}}},
         {"nc", {{4, 6}, {6}, {6}, {6}, {6}}}},
        [act](const std::vector<Tensor>& in) {
          BatchNormArgs a;
          a.training = false;
          a.act = act;
          return std::vector<Tensor>{batch_norm(in[0], in[1], in[2], in[3], in[4], a)};
        },
        [act](const RefInputs& in, const std::vector<Shape>&) {
          return std::vector<std::vector<double>>{act_ref(normalize(in[0], in[3], in[4], in[1], in[2], kEps), act)};
        },
        o);
  }
}

namespace {

struct BnResult {
  std::vector<float> y, dx, dw, db;
};

// batch_norm with the fused activation, or the activation op after batch_norm(...), forward and
// backward with gradient g.
BnResult run_bn_act(const Tensor& x0, const Tensor& w0, const Tensor& b0, const Tensor& rm0, const Tensor& rv0,
                    const Tensor& g, bool training, const BnActivation& act, bool fused) {
  Tensor x = x0.clone().set_requires_grad(true), w = w0.clone().set_requires_grad(true),
         b = b0.clone().set_requires_grad(true), rm = rm0.clone(), rv = rv0.clone();
  BatchNormArgs a;
  a.training = training;
  if (fused) a.act = act;
  Tensor y = batch_norm(x, w, b, rm, rv, a);
  if (!fused) y = unfused_act(y, act);
  y.backward(g);
  return {y.to_vector(), x.grad().to_vector(), w.grad().to_vector(), b.grad().to_vector()};
}

void expect_bits(const std::vector<float>& a, const std::vector<float>& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  int bad = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    uint32_t ua, ub;
    std::memcpy(&ua, &a[i], 4);
    std::memcpy(&ub, &b[i], 4);
    if (ua != ub && ++bad <= 5) ADD_FAILURE() << what << "[" << i << "]: " << a[i] << " vs " << b[i];
  }
  EXPECT_EQ(bad, 0) << what;
}

}  // namespace

// batch_norm(act) == act(batch_norm(...)) bit for bit for ReLU and LeakyReLU(0.1): output and the x,
// weight and bias gradients, train and eval, scalar and vector channel counts, one and several work
// blocks. Pre-activations exactly 0 get what the elementwise op's backward gives - ReLU 0, LeakyReLU
// the slope: channel 0 is constant with bias 0 (train: x - mean == 0, so z == 0 everywhere, dweight
// == 0 and dbias == 0 for ReLU, slope * sum(g) for LeakyReLU); channel 1 holds -1, 0, 1 with running
// mean 0 and bias 0 (eval: z == 0 exactly where x == 0).
TEST(BatchNorm, FusedActivationEqualsActivationOfBatchNormBitwise) {
  for (const ActCase& ac : act_cases()) {
    const bool leaky = ac.act.kind == BnActivation::Kind::LeakyRelu;
    const double slope = leaky ? (double)ac.act.negative_slope : 0.0;
    for (const Shape& shape : {Shape{2, 5, 3, 3}, Shape{2, 9, 7, 8}, Shape{4, 64, 80, 16}, Shape{30, 12}}) {
      const int64_t C = shape.back(), n = shape_numel(shape);
      std::vector<float> xv = Tensor::uniform(shape, 31, -2.f, 2.f).to_vector();
      for (int64_t i = 0; i < n; i += C) {
        xv[(size_t)i] = 0.5f;
        xv[(size_t)i + 1] = (float)((i / C) % 3) - 1.f;
      }
      std::vector<float> bv = Tensor::uniform({C}, 33, -0.5f, 0.5f).to_vector();
      bv[0] = bv[1] = 0.f;
      std::vector<float> rmv = Tensor::uniform({C}, 34, -0.3f, 0.3f).to_vector();
      rmv[1] = 0.f;
      const Tensor x = Tensor::from_vector(xv, shape), w = Tensor::uniform({C}, 32, -1.5f, 1.5f),
                   b = Tensor::from_vector(bv, {C}), rm = Tensor::from_vector(rmv, {C}),
                   rv = Tensor::uniform({C}, 35, 0.5f, 2.f), g = Tensor::uniform(shape, 36, -1.f, 1.f);
      const auto gv = g.to_vector();
      for (Device d : {Device::cpu(), have_cuda() ? Device::cuda(0) : Device::cpu()}) {
        for (bool training : {true, false}) {
          const std::string where =
              std::string(ac.name) + " " + d.str() + (training ? " train " : " eval ") + shape_str(shape);
          const BnResult f = run_bn_act(x.to(d), w.to(d), b.to(d), rm.to(d), rv.to(d), g.to(d), training, ac.act, true);
          const BnResult u =
              run_bn_act(x.to(d), w.to(d), b.to(d), rm.to(d), rv.to(d), g.to(d), training, ac.act, false);
          expect_bits(f.y, u.y, "y " + where);
          expect_bits(f.dx, u.dx, "dx " + where);
          expect_bits(f.dw, u.dw, "dweight " + where);
          expect_bits(f.db, u.db, "dbias " + where);
          // The exact zeros really occur and get the activation's gradient at 0.
          if (training) {
            double sum_g0 = 0;
            for (int64_t i = 0; i < n; i += C) {
              ASSERT_EQ(f.y[(size_t)i], 0.f) << where;
              sum_g0 += gv[(size_t)i];
            }
            EXPECT_NEAR(f.db[0], slope * sum_g0, 1e-4 * (1 + std::fabs(sum_g0))) << where;
            if (!leaky) {
              EXPECT_EQ(f.db[0], 0.f) << where;
            }
            EXPECT_EQ(f.dw[0], 0.f) << where;
          } else {  // channel 1: x == 1 (w > 0) or x == -1 (w < 0) pass g, the rest (x == 0 too) slope * g
            const float w1 = w.to_vector()[1];
            double want = 0;
            int64_t zeros = 0;
            for (int64_t i = 1; i < n; i += C) {
              if (xv[(size_t)i] == 0.f && f.y[(size_t)i] == 0.f) ++zeros;
              want += xv[(size_t)i] * w1 > 0.f ? gv[(size_t)i] : slope * gv[(size_t)i];
            }
            EXPECT_EQ(zeros, (n / C + 1) / 3) << where;
            EXPECT_NEAR(f.db[1], want, 1e-4 * (1 + std::fabs(want))) << where;
          }
        }
      }
    }
  }
}

// BatchNorm2d::forward(x, act) == act(forward(x)) on the fused path, the one-value-per-channel path,
// the synchronised path (both apply the activation op after BN) and in eval; the running statistics
// advance alike. ReLU and LeakyReLU(0.1).
TEST(BatchNorm, LayerForwardWithActivation) {
  for (const ActCase& ac : act_cases()) {
    for (Device d : {Device::cpu(), have_cuda() ? Device::cuda(0) : Device::cpu()}) {
      for (const Shape& shape : {Shape{2, 5, 4, 6}, Shape{1, 1, 1, 6}}) {
        for (int mode = 0; mode < 3; ++mode) {       // 0 train, 1 train synced (world size 1), 2 eval
          if (mode == 1 && shape[1] == 1) continue;  // sync BN needs more than one value per channel
          nn::BatchNorm2d fused(6), plain(6);
          for (nn::BatchNorm2d* bn : {&fused, &plain}) {
            bn->to(d);
            Tensor wt = bn->weight(), bt = bn->bias();
            wt.copy_(Tensor::uniform({6}, 41, -1.5f, 1.5f));
            bt.copy_(Tensor::uniform({6}, 42, -0.5f, 0.5f));
            if (mode == 1) bn->set_sync([](const std::vector<Tensor>&) {});
            if (mode == 2) bn->eval();
          }
          const Tensor x = Tensor::uniform(shape, 43, -2.f, 2.f, d), g = Tensor::uniform(shape, 44, -1.f, 1.f, d);
          Tensor xf = x.clone().set_requires_grad(true), xp = x.clone().set_requires_grad(true);
          const Tensor yf = fused.forward(xf, ac.act), yp = unfused_act(plain.forward(xp), ac.act);
          yf.backward(g);
          yp.backward(g);
          const std::string where =
              std::string(ac.name) + " " + d.str() + " mode " + std::to_string(mode) + " " + shape_str(shape);
          expect_bits(yf.to_vector(), yp.to_vector(), "y " + where);
          expect_bits(xf.grad().to_vector(), xp.grad().to_vector(), "dx " + where);
          expect_bits(fused.weight().grad().to_vector(), plain.weight().grad().to_vector(), "dweight " + where);
          expect_bits(fused.bias().grad().to_vector(), plain.bias().grad().to_vector(), "dbias " + where);
          expect_bits(fused.running_mean().to_vector(), plain.running_mean().to_vector(), "running_mean " + where);
          expect_bits(fused.running_var().to_vector(), plain.running_var().to_vector(), "running_var " + where);
        }
      }
    }
  }
}

TEST(BatchNorm, LeakySlopeMustBeFinite) {
  const Tensor x = Tensor::uniform({2, 3, 3, 4}, 5, -1.f, 1.f);
  BatchNormArgs a;
  a.act = BnActivation::leaky_relu(std::nanf(""));
  try {
    batch_norm(x, Tensor(), Tensor(), Tensor(), Tensor(), a);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("batch_norm: the leaky_relu negative slope must be finite"), std::string::npos)
        << e.what();
  }
}

// The dx kernel's operand combinations, called directly: dx = k1*g + k2*(x - m) + k3 with g/k1 and
// x/k2 each present or dropped. The ops always pass g, so "no g" and "neither g nor x" (dx = k3, a
// per-channel broadcast) are reached only here. CPU against the formula in double, the CUDA device
// against the CPU, for the float4 (C = 8) and the scalar (C = 7) paths.
// The CUDA batch-norm kernels read their rows (and their finalizing blocks the partials) through
// kernels::batched_strided_loop: every iteration of the plain grid-strided loop used exactly once,
// in the plain loop's order (the Welford updates and sums keep their bits), each with the operands
// loaded for it, and the loads of a whole batch issued before its first use. Counts around the
// batch boundaries, strides 1 and 3, starts 0 and 2.
TEST(BatchNorm, BatchedRowLoopUsesRowsInThePlainLoopOrder) {
  constexpr int kBatch = 4;
  for (int64_t first : {0, 2}) {
    for (int64_t stride : {1, 3}) {
      for (int64_t n = 0; n < 40; ++n) {
        std::vector<int64_t> plain, used;
        for (int64_t i = first; i < n; i += stride) plain.push_back(i);
        int64_t slot[kBatch];
        int pending = 0, max_pending = 0;
        bool ok = true;
        kernels::batched_strided_loop<kBatch>(
            first, stride, n,
            [&](int64_t i, int k) {
              slot[k] = i;
              max_pending = std::max(max_pending, ++pending);
            },
            [&](int64_t i, int k) {
              ok = ok && slot[k] == i;
              --pending;
              used.push_back(i);
            });
        SCOPED_TRACE("first " + std::to_string(first) + " stride " + std::to_string(stride) + " n " +
                     std::to_string(n));
        EXPECT_TRUE(ok) << "an iteration used operands loaded for another";
        EXPECT_EQ(used, plain);
        EXPECT_EQ(pending, 0);
        EXPECT_EQ(max_pending, plain.size() >= (size_t)kBatch ? kBatch : (plain.empty() ? 0 : 1));
      }
    }
  }
}

TEST(BatchNorm, BwdKernelOperandCombinations) {
  const int64_t M = 37;
  for (const int64_t C : {int64_t{8}, int64_t{7}}) {
    const std::vector<float> g = Tensor::uniform({M, C}, 11, -1.f, 1.f).to_vector();
    const std::vector<float> x = Tensor::uniform({M, C}, 12, -2.f, 2.f).to_vector();
    const std::vector<float> m = Tensor::uniform({C}, 13, -0.5f, 0.5f).to_vector();
    const std::vector<float> k1 = Tensor::uniform({C}, 14, 0.5f, 1.5f).to_vector();
    const std::vector<float> k2 = Tensor::uniform({C}, 15, -1.f, 1.f).to_vector();
    const std::vector<float> k3 = Tensor::uniform({C}, 16, -1.f, 1.f).to_vector();
    for (int combo = 0; combo < 4; ++combo) {
      const bool use_g = combo & 1, use_x = combo & 2;
      const std::string where = "C " + std::to_string(C) + (use_g ? " g" : "") + (use_x ? " x" : "");
      std::vector<float> dx((size_t)(M * C), NAN);
      kernels::batch_norm_bwd_cpu(DType::F32, use_g ? g.data() : nullptr, use_x ? x.data() : nullptr, M, C, m.data(),
                                  use_g ? k1.data() : nullptr, use_x ? k2.data() : nullptr, k3.data(), dx.data());
      for (int64_t r = 0; r < M; ++r)
        for (int64_t c = 0; c < C; ++c) {
          const size_t i = (size_t)(r * C + c);
          double want = k3[(size_t)c];
          if (use_g) want += (double)k1[(size_t)c] * g[i];
          if (use_x) want += (double)k2[(size_t)c] * ((double)x[i] - m[(size_t)c]);
          ASSERT_NEAR(dx[i], want, 1e-5) << where << " at " << r << ", " << c;
        }
#if defined(ENGINE_WITH_CUDA)
      if (!have_cuda()) continue;
      const Device dev = Device::cuda(0);
      const Tensor tg = Tensor::from_vector(g, {M, C}, dev), tx = Tensor::from_vector(x, {M, C}, dev);
      const Tensor tm = Tensor::from_vector(m, {C}, dev), tk1 = Tensor::from_vector(k1, {C}, dev);
      const Tensor tk2 = Tensor::from_vector(k2, {C}, dev), tk3 = Tensor::from_vector(k3, {C}, dev);
      const Tensor tdx = Tensor::from_vector(std::vector<float>((size_t)(M * C), NAN), {M, C}, dev);
      kernels::batch_norm_bwd_cuda(DType::F32, use_g ? tg.data<float>() : nullptr, use_x ? tx.data<float>() : nullptr,
                                   M, C, tm.data<float>(), use_g ? tk1.data<float>() : nullptr,
                                   use_x ? tk2.data<float>() : nullptr, tk3.data<float>(), tdx.data<float>(),
                                   compute_stream(), kernels::BnAct{});
      CUDA_CHECK(cudaStreamSynchronize(compute_stream()));
      const std::vector<float> got = tdx.to_vector();
      for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], dx[i], 1e-6) << where << " CUDA at " << i;
#endif
    }
  }
}

// bf16 / f16 activations (mixed precision): statistics, parameters and math stay f32 and the
// activations are widened on load and rounded once on store, so with inputs exact in the low type
// every result equals the f32 op's on the same values: y and dx rounded once, the batch statistics,
// running statistics and parameter gradients identical. Compared bit for bit, training and eval,
// with and without the fused activation, channel counts on the vector (64) and scalar (3) paths, CPU
// and CUDA; also batch_norm_local_stats + batch_norm_apply (the sync-BN pair).
TEST(BatchNorm, LowPrecisionActivationsAreTheF32ResultRoundedOnce) {
  const std::vector<Device> devices = test_devices();
  for (Device d : devices)
    for (DType dt : {DType::BF16, DType::F16})
      for (int64_t C : {64, 3})
        for (int act = 0; act < 3; ++act)
          for (bool training : {true, false}) {
            const std::string what = std::string(dtype_name(dt)) + " on " + d.str() + " C " + std::to_string(C) +
                                     " act " + std::to_string(act) + (training ? " train" : " eval");
            SCOPED_TRACE(what);
            BatchNormArgs a;
            a.training = training;
            a.act = act == 0 ? BnActivation::none() : act == 1 ? BnActivation::relu() : BnActivation::leaky_relu(0.1f);
            auto rounded = [&](const Tensor& t) { return t.to(dt).to(DType::F32).to_vector(); };
            // Two identical sets of f32 leaves; x's values are exact in dt.
            auto leaves = [&] {
              std::vector<Tensor> v = {Tensor::uniform({2, 5, 7, C}, 1, -2.f, 3.f, d).to(dt).to(DType::F32).detach(),
                                       Tensor::uniform({C}, 2, 0.5f, 1.5f, d), Tensor::uniform({C}, 3, -0.5f, 0.5f, d)};
              for (Tensor& t : v) t.set_requires_grad(true);
              v.push_back(Tensor::uniform({C}, 4, -0.2f, 0.2f, d));  // running mean
              v.push_back(Tensor::uniform({C}, 5, 0.5f, 2.f, d));    // running var
              return v;
            };
            std::vector<Tensor> lo = leaves(), hi = leaves();
            const Tensor y = batch_norm(lo[0].to(dt), lo[1], lo[2], lo[3], lo[4], a);
            ASSERT_EQ(y.dtype(), dt);
            const Tensor g = Tensor::uniform(y.shape(), 6, -1.f, 1.f, d).to(dt);
            y.backward(g);
            const Tensor y32 = batch_norm(hi[0], hi[1], hi[2], hi[3], hi[4], a);
            y32.backward(g.to(DType::F32));
            expect_same_bits(y.to_vector(), rounded(y32), what + " y");
            expect_same_bits(lo[3].to_vector(), hi[3].to_vector(), what + " running mean");
            expect_same_bits(lo[4].to_vector(), hi[4].to_vector(), what + " running var");
            expect_same_bits(lo[0].grad().to_vector(), rounded(hi[0].grad()), what + " dx");
            expect_same_bits(lo[1].grad().to_vector(), hi[1].grad().to_vector(), what + " dweight");
            expect_same_bits(lo[2].grad().to_vector(), hi[2].grad().to_vector(), what + " dbias");
          }
  // The sync-BN pair on bf16 activations.
  for (Device d : devices) {
    SCOPED_TRACE(d.str());
    Tensor x = Tensor::uniform({3, 4, 5, 16}, 7, -1.f, 2.f, d).to(DType::BF16).to(DType::F32).detach();
    Tensor x32 = x.clone().detach();
    x.set_requires_grad(true);
    x32.set_requires_grad(true);
    const Tensor shift = Tensor::uniform({16}, 8, -0.1f, 0.1f, d);
    const BatchNormStats s = batch_norm_local_stats(x.to(DType::BF16), shift), s32 = batch_norm_local_stats(x32, shift);
    expect_same_bits(s.sum.to_vector(), s32.sum.to_vector(), "local sum");
    expect_same_bits(s.sum_sq.to_vector(), s32.sum_sq.to_vector(), "local sum_sq");
    const BatchNormMoments m = batch_norm_moments(s.sum, s.sum_sq, s.count, shift),
                           m32 = batch_norm_moments(s32.sum, s32.sum_sq, s32.count, shift);
    const Tensor y = batch_norm_apply(x.to(DType::BF16), m.mean, m.var, Tensor(), Tensor(), 1e-5f);
    const Tensor y32 = batch_norm_apply(x32, m32.mean, m32.var, Tensor(), Tensor(), 1e-5f);
    ASSERT_EQ(y.dtype(), DType::BF16);
    expect_same_bits(y.to_vector(), y32.to(DType::BF16).to(DType::F32).to_vector(), "apply y");
    const Tensor g = Tensor::uniform(y.shape(), 9, -1.f, 1.f, d).to(DType::BF16);
    y.backward(g);
    y32.backward(g.to(DType::F32));
    // dx sums the apply path and the statistics path, each rounded to bf16 once: within a bf16
    // rounding of each, relative to the larger.
    const auto dx = x.grad().to_vector(), dx32 = x32.grad().to_vector();
    for (size_t i = 0; i < dx.size(); ++i)
      ASSERT_NEAR(dx[i], dx32[i], std::ldexp(1.0, -7) * (std::fabs(dx32[i]) + 1.0)) << "sync dx element " << i;
  }
}
