// labels: kernel
// Golden checks: the engine's ops against values computed by a real framework (PyTorch, plus numpy
// for the Paddle/PaddleSeg semantics PyTorch does not have: BN running variance, PaddleSeg's
// CrossEntropyLoss and OhemCrossEntropyLoss). The files in tests/golden/ are committed; regenerate
// them with `python3 tests/golden/gen_golden.py` (tests/golden/README.md lists every case and the
// semantics each pins). Each case runs on the CPU device and, when one exists, on the CUDA device
// (emulated in CI), comparing forward outputs and gradients for a given upstream gradient.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <optional>

#include "engine/allocator.h"
#include "engine/autograd.h"
#include "engine/ops/batchnorm.h"
#include "engine/ops/conv.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/loss.h"
#include "engine/ops/matmul.h"
#include "engine/ops/metrics.h"
#include "engine/ops/optim.h"
#include "engine/ops/pool.h"
#include "engine/ops/reduce.h"
#include "engine/ops/resize.h"
#include "engine/ops/softmax.h"
#include "tests/harness/golden.h"
#include "tests/harness/op_check.h"

using namespace engine;
using namespace engine::testing;

namespace {

struct Tol {
  double atol, rtol;
};
// The references are float64 computations on the float32 inputs, stored as float32; the tolerances
// cover the engine's float32 arithmetic (accumulation order, exp/log, rsqrt), nothing else.
constexpr Tol kTight{1e-6, 1e-5};  // elementwise, softmax, resize, pooling, SGD
constexpr Tol kConv{1e-4, 1e-4};   // sums of up to a few hundred products
constexpr Tol kBatchNorm{1e-4, 1e-4};
constexpr Tol kLoss{1e-6, 1e-4};  // scalar losses and their (small) logit gradients

std::vector<Device> devices() {
  std::vector<Device> d{Device::cpu()};
  if (have_cuda()) d.push_back(Device::cuda(0));
  return d;
}

using CaseFn = std::function<void(const GoldenFile& g, const std::string& c, Device dev)>;

// Loads tests/golden/<file> and runs fn for every case on every device, with guard bytes on.
void for_each_case(const std::string& file, const CaseFn& fn) {
  const std::filesystem::path path = golden_dir() / file;
  if (!std::filesystem::exists(path)) {
    ADD_FAILURE() << golden_missing_message(path);
    return;
  }
  std::optional<GoldenFile> g;
  try {
    g = GoldenFile::load(path);
  } catch (const std::exception& e) {
    ADD_FAILURE() << e.what();
    return;
  }
  const auto cases = g->cases();
  EXPECT_FALSE(cases.empty()) << path << " holds no cases";
  set_guard_mode(true);
  for (const std::string& c : cases) {
    for (Device dev : devices()) {
      SCOPED_TRACE(file + " [" + c + "] on " + dev.str());
      try {
        fn(*g, c, dev);
      } catch (const std::exception& e) {
        ADD_FAILURE() << "threw: " << e.what();
      }
      EXPECT_EQ(check_guards(), 0) << "a kernel wrote outside its buffers";
    }
  }
  set_guard_mode(false);
}

Tensor input(const GoldenFile& g, const std::string& name, Device dev, bool requires_grad) {
  Tensor t = g.tensor(name, dev);
  if (requires_grad) t.set_requires_grad(true);
  return t;
}

Tensor optional_input(const GoldenFile& g, const std::string& name, Device dev, bool requires_grad) {
  return g.has(name) ? input(g, name, dev, requires_grad) : Tensor();
}

void expect_golden(const Tensor& got, const GoldenFile& g, const std::string& name, Tol tol) {
  EXPECT_TRUE(golden_close(got, g.get(name), tol.atol, tol.rtol, name));
}

void expect_grad(const Tensor& leaf, const GoldenFile& g, const std::string& name, Tol tol) {
  EXPECT_TRUE(leaf.grad().defined()) << name << ": no gradient reached the input";
  if (leaf.grad().defined()) expect_golden(leaf.grad(), g, name, tol);
}

// y.backward(upstream gradient from the file).
void backward_with(const Tensor& y, const GoldenFile& g, const std::string& gy_name, Device dev) {
  y.backward(g.tensor(gy_name, dev));
}

}  // namespace

// ----------------------------------------------------------------- ops that exist from the start
// (also the loader's own check: a wrong byte order, dim order or name would fail here first)
TEST(Golden, LoaderAndBasicOps) {
  for_each_case("basic.golden", [](const GoldenFile& g, const std::string& c, Device dev) {
    const std::string p = c + "/";
    if (c == "matmul" || c == "add_bcast") {
      Tensor a = input(g, p + "a", dev, true), b = input(g, p + "b", dev, true);
      Tensor y = c == "matmul" ? matmul(a, b) : add(a, b);
      expect_golden(y, g, p + "y", kTight);
      backward_with(y, g, p + "gy", dev);
      expect_grad(a, g, p + "ga", kTight);
      expect_grad(b, g, p + "gb", kTight);
    } else if (c == "sigmoid" || c == "tanh" || c == "sum_axis1") {
      Tensor x = input(g, p + "x", dev, true);
      Tensor y = c == "sigmoid" ? sigmoid(x) : c == "tanh" ? engine::tanh(x) : sum(x, {1}, true);
      expect_golden(y, g, p + "y", kTight);
      backward_with(y, g, p + "gy", dev);
      expect_grad(x, g, p + "gx", kTight);
    } else if (c == "mean_all") {
      Tensor x = input(g, p + "x", dev, true);
      Tensor y = mean(x);
      EXPECT_EQ(y.numel(), 1);
      EXPECT_NEAR(y.item(), g.f32(p + "y"), 1e-6);
      y.backward();
      expect_grad(x, g, p + "gx", kTight);
    } else if (c == "max_last") {
      Tensor x = input(g, p + "x", dev, true);
      MaxResult m = max(x, {-1});
      expect_golden(m.values, g, p + "y", kTight);
      expect_golden(m.indices, g, p + "indices", kTight);
      backward_with(m.values, g, p + "gy", dev);
      expect_grad(x, g, p + "gx", kTight);
    } else {
      ADD_FAILURE() << "unknown case " << c << " (update test_golden.cpp with the script)";
    }
  });
}

TEST(Golden, LoaderRejectsBadFiles) {
  const std::filesystem::path dir = std::filesystem::temp_directory_path();
  const std::filesystem::path missing = dir / "engine_golden_no_such_file.golden";
  try {
    GoldenFile::load(missing);
    ADD_FAILURE() << "loading a missing file did not throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("gen_golden.py"), std::string::npos) << e.what();
  }
  // A truncated copy of a real file: an Error naming the file, never a crash.
  const std::filesystem::path src = golden_dir() / "basic.golden";
  ASSERT_TRUE(std::filesystem::exists(src)) << golden_missing_message(src);
  const std::filesystem::path cut = dir / ("engine_golden_truncated_" + std::to_string(::getpid()) + ".golden");
  std::filesystem::copy_file(src, cut, std::filesystem::copy_options::overwrite_existing);
  std::filesystem::resize_file(cut, std::filesystem::file_size(src) - 7);
  EXPECT_THROW(GoldenFile::load(cut), Error);
  std::filesystem::remove(cut);
  const GoldenFile g = GoldenFile::load(src);
  EXPECT_THROW(g.get("matmul/nonexistent"), Error);
  EXPECT_THROW(g.i64("matmul/a"), Error);  // f32 tensor read as i64
}

// ------------------------------------------------------------------------------------------ conv2d
TEST(Golden, Conv2d) {
  for_each_case("conv2d.golden", [](const GoldenFile& g, const std::string& c, Device dev) {
    const std::string p = c + "/";
    Conv2dArgs a;
    a.stride_h = (int)g.i64(p + "args", 0);
    a.stride_w = (int)g.i64(p + "args", 1);
    a.pad_h = (int)g.i64(p + "args", 2);
    a.pad_w = (int)g.i64(p + "args", 3);
    a.dilation_h = (int)g.i64(p + "args", 4);
    a.dilation_w = (int)g.i64(p + "args", 5);
    a.groups = (int)g.i64(p + "args", 6);
    Tensor x = input(g, p + "x", dev, true), w = input(g, p + "w", dev, true);
    Tensor b = optional_input(g, p + "b", dev, true);
    Tensor y = conv2d(x, w, b, a);
    expect_golden(y, g, p + "y", kConv);
    backward_with(y, g, p + "gy", dev);
    expect_grad(x, g, p + "gx", kConv);
    expect_grad(w, g, p + "gw", kConv);
    if (b.defined()) expect_grad(b, g, p + "gb", kConv);
  });
}

// -------------------------------------------------------------------------------------- batch_norm
// Train cases: three steps on fresh batches sharing weight, bias and running statistics; the
// running statistics after the steps follow Paddle (momentum 0.9 on the running value, running
// variance updated with the BIASED batch variance). Eval: running statistics, left unchanged.
TEST(Golden, BatchNorm) {
  for_each_case("batch_norm.golden", [](const GoldenFile& g, const std::string& c, Device dev) {
    const std::string p = c + "/";
    BatchNormArgs a;
    a.momentum = g.f32(p + "args", 0);
    a.eps = g.f32(p + "args", 1);
    a.training = g.f32(p + "args", 2) != 0.f;
    Tensor w = input(g, p + "weight", dev, true), b = input(g, p + "bias", dev, true);
    Tensor rm = g.tensor(p + "running_mean_init", dev), rv = g.tensor(p + "running_var_init", dev);
    for (int s = 0; g.has(p + "x" + std::to_string(s)); ++s) {
      const std::string k = std::to_string(s);
      SCOPED_TRACE("step " + k);
      Tensor x = input(g, p + "x" + k, dev, true);
      Tensor y = batch_norm(x, w, b, rm, rv, a);
      expect_golden(y, g, p + "y" + k, kBatchNorm);
      backward_with(y, g, p + "gy" + k, dev);
      expect_grad(x, g, p + "gx" + k, kBatchNorm);
      expect_grad(w, g, p + "gw" + k, kBatchNorm);
      expect_grad(b, g, p + "gb" + k, kBatchNorm);
      w.zero_grad();
      b.zero_grad();
    }
    expect_golden(rm, g, p + "running_mean", kBatchNorm);
    expect_golden(rv, g, p + "running_var", kBatchNorm);  // Paddle: biased batch variance
  });
}

// ------------------------------------------------------------------------------------------ resize
TEST(Golden, Resize) {
  for_each_case("resize.golden", [](const GoldenFile& g, const std::string& c, Device dev) {
    const std::string p = c + "/";
    const int oh = (int)g.i64(p + "args", 0), ow = (int)g.i64(p + "args", 1);
    const bool align_corners = g.i64(p + "args", 2) != 0;
    Tensor x = input(g, p + "x", dev, true);
    Tensor y;
    switch (g.i64(p + "mode")) {
      case 0:
        y = resize_bilinear(x, oh, ow, align_corners);
        break;
      case 1:
        y = resize_nearest(x, oh, ow);
        break;
      case 2:
        y = resize_bilinear_scale(x, g.f32(p + "scale", 0), g.f32(p + "scale", 1));
        break;
      case 3:
        y = resize_nearest_scale(x, g.f32(p + "scale", 0), g.f32(p + "scale", 1));
        break;
      default:
        FAIL() << "unknown resize mode";
    }
    expect_golden(y, g, p + "y", kTight);
    backward_with(y, g, p + "gy", dev);
    expect_grad(x, g, p + "gx", kTight);
  });
}

// -------------------------------------------------------------------------------------------- pool
TEST(Golden, Pool) {
  for_each_case("pool.golden", [](const GoldenFile& g, const std::string& c, Device dev) {
    const std::string p = c + "/";
    auto arg = [&](int i) { return (int)g.i64(p + "args", i); };
    Tensor x = input(g, p + "x", dev, true);
    Tensor y;
    switch (g.i64(p + "mode")) {
      case 0:
        y = avg_pool2d(x, arg(0), arg(1), arg(2), arg(3) != 0);
        break;
      case 1:
        y = max_pool2d(x, arg(0), arg(1), arg(2));
        break;
      case 2:
        y = adaptive_avg_pool2d(x, arg(0), arg(1));
        break;
      case 3:
        y = global_avg_pool2d(x);
        break;
      default:
        FAIL() << "unknown pool mode";
    }
    expect_golden(y, g, p + "y", kTight);
    backward_with(y, g, p + "gy", dev);
    expect_grad(x, g, p + "gx", kTight);
  });
}

// ----------------------------------------------------------------------------------------- softmax
TEST(Golden, Softmax) {
  for_each_case("softmax.golden", [](const GoldenFile& g, const std::string& c, Device dev) {
    const std::string p = c + "/";
    const int axis = (int)g.i64(p + "args", 0);
    const int64_t mode = g.i64(p + "mode");
    if (mode == 2) {
      expect_golden(argmax(g.tensor(p + "x", dev), axis, g.i64(p + "args", 1) != 0), g, p + "y", kTight);
      return;
    }
    Tensor x = input(g, p + "x", dev, true);
    Tensor y = mode == 0 ? softmax(x, axis) : log_softmax(x, axis);
    expect_golden(y, g, p + "y", kTight);
    backward_with(y, g, p + "gy", dev);
    expect_grad(x, g, p + "gx", kTight);
  });
}

// ------------------------------------------------------------------------------------------ losses
namespace {
void check_scalar_loss(const Tensor& loss, const GoldenFile& g, const std::string& name) {
  EXPECT_EQ(loss.shape(), Shape{}) << name << ": losses are 0-d tensors of shape {}";
  expect_golden(loss, g, name, kLoss);
}
}  // namespace

// PaddleSeg CrossEntropyLoss: mean(loss*mask) / (mean(mask*coef) + 1e-8), coef = class_weight[label].
TEST(Golden, CrossEntropy) {
  for_each_case("cross_entropy.golden", [](const GoldenFile& g, const std::string& c, Device dev) {
    const std::string p = c + "/";
    Tensor x = input(g, p + "logits", dev, true);
    Tensor loss = cross_entropy(x, g.tensor(p + "labels", dev), optional_input(g, p + "class_weight", dev, false),
                                g.i64(p + "ignore_index"));
    check_scalar_loss(loss, g, p + "loss");
    loss.backward();
    expect_grad(x, g, p + "glogits", kLoss);
  });
}

// PaddleSeg OhemCrossEntropyLoss (batch-global selection, strict <, denominator mean(kept) + 1e-5).
TEST(Golden, OhemCrossEntropy) {
  for_each_case("ohem.golden", [](const GoldenFile& g, const std::string& c, Device dev) {
    const std::string p = c + "/";
    Tensor x = input(g, p + "logits", dev, true);
    Tensor loss = ohem_cross_entropy(x, g.tensor(p + "labels", dev), g.f32(p + "thresh"), g.i64(p + "min_kept"),
                                     g.i64(p + "ignore_index"));
    SCOPED_TRACE("expected kept pixels in '" + p + "kept', threshold " + std::to_string(g.f32(p + "threshold")) +
                 " (-1 = no mining)");
    check_scalar_loss(loss, g, p + "loss");
    loss.backward();
    expect_grad(x, g, p + "glogits", kLoss);
  });
}

TEST(Golden, BceAndL1) {
  for_each_case("bce_l1.golden", [](const GoldenFile& g, const std::string& c, Device dev) {
    const std::string p = c + "/";
    const int64_t mode = g.i64(p + "mode");
    if (mode == 2) {
      Tensor a = input(g, p + "a", dev, true), b = input(g, p + "b", dev, true);
      Tensor loss = l1_loss(a, b);
      check_scalar_loss(loss, g, p + "loss");
      loss.backward();
      expect_grad(a, g, p + "ga", kLoss);
      expect_grad(b, g, p + "gb", kLoss);
      return;
    }
    Tensor x = input(g, p + "x", dev, true);
    Tensor t = g.tensor(p + "targets", dev), w = optional_input(g, p + "weight", dev, false);
    Tensor loss = mode == 0 ? bce_with_logits(x, t, w) : binary_cross_entropy(x, t, w);
    check_scalar_loss(loss, g, p + "loss");
    loss.backward();
    expect_grad(x, g, p + "gx", kLoss);
  });
}

// ----------------------------------------------------------------------------------------- metrics
TEST(Golden, SegAreaCounts) {
  for_each_case("metrics.golden", [](const GoldenFile& g, const std::string& c, Device dev) {
    const std::string p = c + "/";
    SegAreas a = seg_area_counts(g.tensor(p + "pred", dev), g.tensor(p + "label", dev), g.i64(p + "args", 0),
                                 g.i64(p + "args", 1));
    expect_golden(a.intersect, g, p + "intersect", kTight);
    expect_golden(a.pred, g, p + "pred_area", kTight);
    expect_golden(a.label, g, p + "label_area", kTight);
  });
}

// --------------------------------------------------------------------------------------------- SGD
// Three steps of torch.optim.SGD(momentum, dampening 0, weight_decay) = Paddle Momentum with coupled
// L2 decay: g' = g + wd*p; v = mu*v + g'; p -= lr*v.
TEST(Golden, SgdMomentum) {
  const std::filesystem::path path = golden_dir() / "sgd.golden";
  if (!std::filesystem::exists(path)) {
    ADD_FAILURE() << golden_missing_message(path);
    return;
  }
  const GoldenFile g = GoldenFile::load(path);
  const float lr = g.f32("args", 0), mu = g.f32("args", 1), wd = g.f32("args", 2);
  for (Device dev : devices()) {
    SCOPED_TRACE("sgd.golden on " + dev.str());
    std::vector<Tensor> params, vels;
    for (int i = 0; g.has("param" + std::to_string(i) + "_init"); ++i) {
      params.push_back(g.tensor("param" + std::to_string(i) + "_init", dev));
      vels.push_back(Tensor::zeros(params.back().shape(), DType::F32, dev));
    }
    ASSERT_FALSE(params.empty());
    for (int s = 0; g.has("step" + std::to_string(s) + "/grad0"); ++s) {
      const std::string k = "step" + std::to_string(s) + "/";
      std::vector<Tensor> grads;
      for (size_t i = 0; i < params.size(); ++i) grads.push_back(g.tensor(k + "grad" + std::to_string(i), dev));
      sgd_momentum_update(params, grads, vels, lr, mu, wd);
      for (size_t i = 0; i < params.size(); ++i) {
        expect_golden(params[i], g, k + "param" + std::to_string(i), kTight);
        expect_golden(vels[i], g, k + "velocity" + std::to_string(i), kTight);
      }
    }
  }
}
