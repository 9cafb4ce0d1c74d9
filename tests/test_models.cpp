// labels: models
// Module system, STDC backbone and PP-LiteSeg (models/): parameter counts of the layers PaddleSeg
// defines (paddleseg/models/backbones/stdcnet.py, paddleseg/models/pp_liteseg.py), PaddleSeg
// state-dict names, the wiring of CatBottleneck (stdcnet.py), SPPM and UAFM (pp_liteseg.py,
// paddleseg/models/layers/tensor_fusion.py) against hand-written compositions of engine ops, output
// shapes for sizes that are not multiples of 32, gradients, BN train/eval behaviour, initialisation
// (stdcnet.py's init_weight, Paddle's nn.Conv2D / nn.BatchNorm2D defaults), state-dict loading and
// its errors, spec validation, and CPU vs CUDA device agreement.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include "engine/autograd.h"
#include "engine/ops/batchnorm.h"
#include "engine/ops/conv.h"
#include "engine/ops/copy.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/loss.h"
#include "engine/ops/pool.h"
#include "engine/ops/reduce.h"
#include "engine/ops/resize.h"
#include "engine/ops/shape_ops.h"
#include "engine/precision.h"
#include "models/layers.h"
#include "models/module.h"
#include "models/pp_liteseg.h"
#include "models/stdcnet.h"
#include "tests/harness/mixed_step.h"

using namespace engine;
using namespace engine::nn;

namespace {

SegModelSpec spec_t(int64_t classes, uint64_t seed = 0) {  // PP-LiteSeg-T (§2.5)
  SegModelSpec s;
  s.backbone = "STDC1";
  s.num_classes = classes;
  s.arm_out_chs = {32, 64, 128};
  s.seg_head_inter_chs = {32, 64, 64};
  s.seed = seed;
  return s;
}

SegModelSpec spec_b(int64_t classes, uint64_t seed = 0) {  // PP-LiteSeg-B: the defaults
  SegModelSpec s;
  s.backbone = "STDC2";
  s.num_classes = classes;
  s.seed = seed;
  return s;
}

std::map<std::string, Tensor> by_name(const Module& m) {
  std::map<std::string, Tensor> out;
  for (auto& [n, t] : m.state_dict()) out[n] = t;
  return out;
}

double sample_std(const std::vector<float>& v) {
  double s = 0, q = 0;
  for (float x : v) s += x;
  const double mean = s / v.size();
  for (float x : v) q += (x - mean) * (x - mean);
  return std::sqrt(q / v.size());
}

// max |a - b| / max |a| (0 when both are zero).
double rel_diff(const Tensor& a, const Tensor& b) {
  const auto va = a.to_vector(), vb = b.to_vector();
  EXPECT_EQ(va.size(), vb.size());
  double d = 0, m = 0;
  for (size_t i = 0; i < va.size() && i < vb.size(); ++i) {
    d = std::max(d, (double)std::fabs(va[i] - vb[i]));
    m = std::max(m, (double)std::fabs(va[i]));
  }
  return m == 0 ? d : d / m;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// loss = sum_k sum(logits_k * w_k) with fixed random w_k (every logit element matters).
Tensor weighted_loss(const std::vector<Tensor>& logits, uint64_t seed) {
  Tensor loss;
  for (size_t k = 0; k < logits.size(); ++k) {
    const Tensor w = Tensor::randn(logits[k].shape(), seed + k, 1.f, logits[k].device());
    const Tensor l = sum(mul(logits[k], w));
    loss = loss.defined() ? add(loss, l) : l;
  }
  return loss;
}

// BN in training mode with batch statistics, written out for the hand-made references.
Tensor bn_train(const Tensor& x, std::map<std::string, Tensor>& p, const std::string& prefix) {
  return batch_norm(x, p[prefix + ".weight"], p[prefix + ".bias"], Tensor(), Tensor(), BatchNormArgs{});
}
Tensor conv(const Tensor& x, const Tensor& w, const Tensor& b, int stride, int pad, int groups = 1) {
  Conv2dArgs a;
  a.stride_h = a.stride_w = stride;
  a.pad_h = a.pad_w = pad;
  a.groups = groups;
  return conv2d(x, w, b, a);
}

}  // namespace

// ------------------------------------------------------------------ sizes (§7.2)
TEST(Models, ParameterCountsMatchTheReference) {
  struct Case {
    SegModelSpec spec;
    int64_t params, backbone, buffers, inference;
  };
  // §7.2 counts every Paddle parameter, the three frozen UAFM `_scale`s included; the trainable
  // count (what the optimizer updates) is 3 less.
  const std::vector<Case> cases = {{spec_t(19), 8141603, 5318304, 11602, 8028323},
                                   {spec_b(19), 12366467, 9348768, 18002, 12234755},
                                   {spec_t(2), 8138883, 5318304, 11602, -1},
                                   {spec_b(2), 12363203, 9348768, 18002, -1}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.spec.backbone + " classes " + std::to_string(c.spec.num_classes));
    auto model = std::make_shared<PPLiteSeg>(c.spec);  // counts need no initialisation
    EXPECT_EQ(model->num_parameters(), c.params);
    EXPECT_EQ(model->num_trainable_parameters(), c.params - 3);
    EXPECT_EQ(model->num_buffer_elements(), c.buffers);
    EXPECT_EQ(model->backbone().num_parameters(), c.backbone);
    EXPECT_EQ(model->backbone().num_trainable_parameters(), c.backbone);
    if (c.inference > 0) {  // the eval graph drops seg_heads.1 and .2
      int64_t aux = 0;
      for (auto& [n, t] : model->named_parameters())
        if (n.rfind("seg_heads.1.", 0) == 0 || n.rfind("seg_heads.2.", 0) == 0) aux += t.numel();
      EXPECT_EQ(c.params - aux, c.inference);
    }
  }
}

// ------------------------------------------------------------------ names (§2.8)
TEST(Models, StateDictUsesPaddleSegNames) {
  auto model = std::make_shared<PPLiteSeg>(spec_t(19));
  auto sd = by_name(*model);
  const std::vector<std::pair<std::string, Shape>> expected = {
      {"backbone.features.0.conv.weight", {32, 3, 3, 3}},
      {"backbone.features.0.bn.weight", {32}},
      {"backbone.features.0.bn._mean", {32}},
      {"backbone.features.1.bn._variance", {64}},
      {"backbone.features.2.conv_list.0.conv.weight", {128, 64, 1, 1}},
      {"backbone.features.2.conv_list.1.conv.weight", {64, 128, 3, 3}},
      {"backbone.features.2.conv_list.3.bn.bias", {32}},
      {"backbone.features.2.avd_layer.0.weight", {128, 1, 3, 3}},
      {"backbone.features.2.avd_layer.1._mean", {128}},
      {"backbone.features.3.conv_list.0.conv.weight", {128, 256, 1, 1}},
      {"backbone.features.7.conv_list.3.conv.weight", {128, 128, 3, 3}},
      {"ppseg_head.cm.stages.0.1._conv.weight", {128, 1024, 1, 1}},
      {"ppseg_head.cm.stages.0.1._conv.bias", {128}},
      {"ppseg_head.cm.stages.2.1._batch_norm._variance", {128}},
      {"ppseg_head.cm.conv_out._conv.weight", {128, 128, 3, 3}},
      {"ppseg_head.cm.conv_out._conv.bias", {128}},
      {"ppseg_head.arm_list.0.conv_x._conv.weight", {64, 256, 3, 3}},
      {"ppseg_head.arm_list.0.conv_out._conv.weight", {32, 64, 3, 3}},
      {"ppseg_head.arm_list.1.conv_x._conv.weight", {128, 512, 3, 3}},
      {"ppseg_head.arm_list.1.conv_out._batch_norm._mean", {64}},
      {"ppseg_head.arm_list.2.conv_x._conv.weight", {128, 1024, 3, 3}},
      {"ppseg_head.arm_list.0.conv_xy_atten.0._conv.weight", {2, 4, 3, 3}},
      {"ppseg_head.arm_list.0.conv_xy_atten.1._conv.weight", {1, 2, 3, 3}},
      {"ppseg_head.arm_list.0.conv_xy_atten.1._batch_norm._variance", {1}},
      {"ppseg_head.arm_list.2._scale", {1}},
      {"seg_heads.0.conv._conv.weight", {32, 32, 3, 3}},
      {"seg_heads.0.conv._batch_norm.weight", {32}},
      {"seg_heads.0.conv_out.weight", {19, 32, 1, 1}},
      {"seg_heads.2.conv._conv.weight", {64, 128, 3, 3}},
  };
  for (auto& [name, shape] : expected) {
    ASSERT_TRUE(sd.count(name)) << "missing key " << name;
    EXPECT_EQ(sd[name].shape(), shape) << name;
  }
  // Absent by design: no bias on UAFM / seg-head / STDC convs, no avd_layer in stride-1 blocks, no
  // tensors for the pooling layers.
  for (const char* absent :
       {"ppseg_head.arm_list.0.conv_x._conv.bias", "seg_heads.0.conv._conv.bias", "seg_heads.0.conv_out.bias",
        "backbone.features.0.conv.bias", "backbone.features.3.avd_layer.0.weight", "backbone.features.8.conv.weight",
        "ppseg_head.cm.stages.0.0.weight"})
    EXPECT_FALSE(sd.count(absent)) << absent;
  EXPECT_EQ(sd.size(), model->state_dict().size()) << "duplicated keys";

  // _scale: persistent, frozen, equal to 1; BN statistics are buffers.
  std::map<std::string, Tensor> trainable;
  for (auto& [n, t] : model->named_parameters()) {
    trainable[n] = t;
    EXPECT_TRUE(t.requires_grad() && t.is_leaf()) << n;
  }
  for (int i = 0; i < 3; ++i) {
    const std::string k = "ppseg_head.arm_list." + std::to_string(i) + "._scale";
    EXPECT_FALSE(trainable.count(k)) << k;
    EXPECT_FALSE(sd[k].requires_grad());
  }
  EXPECT_FALSE(trainable.count("backbone.features.0.bn._mean"));
  EXPECT_TRUE(trainable.count("backbone.features.0.bn.weight"));
  // Deterministic order: two builds list the same names in the same order.
  auto again = std::make_shared<PPLiteSeg>(spec_t(19));
  const auto a = model->state_dict(), b = again->state_dict();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i].first, b[i].first);
}

// ------------------------------------------------------------------ wiring against hand-made compositions
TEST(Models, CatBottleneckStride2MatchesHandComposition) {
  CatBottleneck block(8, 16, 2);
  block.init_parameters(11);
  // Non-trivial BN affine parameters so a missing or misplaced BN shows.
  for (auto& [n, t] : block.named_parameters())
    if (n.find(".bn.") != std::string::npos || n.find("avd_layer.1") != std::string::npos)
      copy_into(t, Tensor::uniform(t.shape(), std::hash<std::string>{}(n), 0.5f, 1.5f));
  const Tensor x = Tensor::randn({2, 9, 7, 8}, 5);
  const Tensor got = block.forward(x);
  ASSERT_EQ(got.shape(), (Shape{2, 5, 4, 16}));  // ceil(9/2), ceil(7/2); 8 + 4 + 2 + 2 channels

  auto p = by_name(block);
  auto cbr = [&](const Tensor& in, const std::string& pre, int k) {
    return relu(bn_train(conv(in, p[pre + ".conv.weight"], Tensor(), 1, k / 2), p, pre + ".bn"));
  };
  const Tensor out1 = cbr(x, "conv_list.0", 1);
  const Tensor avd = bn_train(conv(out1, p["avd_layer.0.weight"], Tensor(), 2, 1, 8), p, "avd_layer.1");  // no ReLU
  const Tensor c1 = cbr(avd, "conv_list.1", 3);
  const Tensor c2 = cbr(c1, "conv_list.2", 3);
  const Tensor c3 = cbr(c2, "conv_list.3", 3);
  const Tensor skip = avg_pool2d(out1, 3, 2, 1, /*exclusive=*/true);  // pools out1, not the input
  const Tensor want = concat({skip, c1, c2, c3}, 3);
  EXPECT_LE(rel_diff(want, got), 1e-6);
  // The skip branch really is exclusive: a corner cell averages 4 values, not 9.
  EXPECT_GT(rel_diff(concat({avg_pool2d(out1, 3, 2, 1, false), c1, c2, c3}, 3), got), 1e-3);
}

TEST(Models, SppmMatchesHandComposition) {
  PPContextModule cm(8, 4, 6, {1, 2, 4});
  cm.init_parameters(3);
  for (auto& [n, t] : cm.named_parameters())
    if (n.find("_conv.bias") != std::string::npos || n.find("_batch_norm") != std::string::npos)
      copy_into(t, Tensor::uniform(t.shape(), std::hash<std::string>{}(n), 0.5f, 1.5f));
  const Tensor x = Tensor::randn({2, 3, 5, 8}, 9);
  const Tensor got = cm.forward(x);
  ASSERT_EQ(got.shape(), (Shape{2, 3, 5, 6}));
  auto p = by_name(cm);
  Tensor acc;
  const int bins[3] = {1, 2, 4};
  for (int i = 0; i < 3; ++i) {
    const std::string pre = "stages." + std::to_string(i) + ".1";
    const Tensor pooled = adaptive_avg_pool2d(x, bins[i], bins[i]);
    const Tensor y =
        relu(bn_train(conv(pooled, p[pre + "._conv.weight"], p[pre + "._conv.bias"], 1, 0), p, pre + "._batch_norm"));
    const Tensor up = resize_bilinear(y, 3, 5, false);
    acc = acc.defined() ? add(acc, up) : up;  // summed, no concat, no identity branch
  }
  const Tensor want =
      relu(bn_train(conv(acc, p["conv_out._conv.weight"], p["conv_out._conv.bias"], 1, 1), p, "conv_out._batch_norm"));
  EXPECT_LE(rel_diff(want, got), 1e-6);
}

TEST(Models, UafmSpAttenMatchesHandComposition) {
  UafmSpAtten arm(6, 4, 5, 3, "bilinear");
  arm.init_parameters(21);
  for (auto& [n, t] : arm.named_parameters())
    if (n.find("_batch_norm") != std::string::npos)
      copy_into(t, Tensor::uniform(t.shape(), std::hash<std::string>{}(n), 0.5f, 1.5f));
  const Tensor low = Tensor::randn({2, 8, 6, 6}, 1);
  const Tensor high = Tensor::randn({2, 4, 3, 4}, 2);
  const Tensor got = arm.forward(low, high);
  ASSERT_EQ(got.shape(), (Shape{2, 8, 6, 5}));
  auto p = by_name(arm);
  auto cb = [&](const Tensor& in, const std::string& pre, bool r) {
    Tensor y = bn_train(conv(in, p[pre + "._conv.weight"], Tensor(), 1, 1), p, pre + "._batch_norm");
    return r ? relu(y) : y;
  };
  const Tensor x = cb(low, "conv_x", true);
  const Tensor y = resize_bilinear(high, 8, 6, false);
  const Tensor att =
      concat({mean(x, {3}, true), max(x, {3}, true).values, mean(y, {3}, true), max(y, {3}, true).values}, 3);
  const Tensor alpha = sigmoid(cb(cb(att, "conv_xy_atten.0", true), "conv_xy_atten.1", false));
  const Tensor fused = add(mul(x, alpha), mul(y, rsub(1.f, alpha)));  // alpha weights the low branch
  const Tensor want = cb(fused, "conv_out", true);
  EXPECT_LE(rel_diff(want, got), 1e-6);
  const Tensor swapped = cb(add(mul(y, alpha), mul(x, rsub(1.f, alpha))), "conv_out", true);
  EXPECT_GT(rel_diff(swapped, got), 1e-3);
  EXPECT_EQ(p["_scale"].to_vector(), std::vector<float>{1.f});
}

// ------------------------------------------------------------------ forward shapes and gradients
TEST(Models, OutputShapesForSizesNotMultiplesOf32) {
  auto model = build_seg_model(spec_t(5, 1));
  for (const Shape& in : {Shape{2, 100, 75, 3}, Shape{1, 33, 47, 3}}) {
    const Tensor x = Tensor::randn(in, 3);
    model->train();
    const auto train_logits = model->forward(x);
    ASSERT_EQ(train_logits.size(), 3u);
    for (const Tensor& l : train_logits) EXPECT_EQ(l.shape(), (Shape{in[0], in[1], in[2], 5}));
    model->eval();
    const auto eval_logits = model->forward(x);
    ASSERT_EQ(eval_logits.size(), 1u);
    EXPECT_EQ(eval_logits[0].shape(), (Shape{in[0], in[1], in[2], 5}));
  }
  EXPECT_NE(error_of([&] {
              model->forward(Tensor::randn({1, 32, 32, 4}, 1));
            }).find("[N, H, W, 3]"),
            std::string::npos);
}

TEST(Models, BackwardGivesFiniteGradientsForEveryParameter) {
  auto model = build_seg_model(spec_t(3, 2));
  const Tensor x = Tensor::randn({2, 64, 48, 3}, 4);
  weighted_loss(model->forward(x), 77).backward();
  for (auto& [n, t] : model->named_parameters()) {
    const Tensor g = t.grad();
    ASSERT_TRUE(g.defined()) << n << " got no gradient";
    ASSERT_EQ(g.shape(), t.shape()) << n;
    bool finite = true, nonzero = false;
    for (float v : g.to_vector()) {
      finite = finite && std::isfinite(v);
      nonzero = nonzero || v != 0.f;
    }
    EXPECT_TRUE(finite) << n;
    EXPECT_TRUE(nonzero) << n << " has an all-zero gradient";
  }
  for (auto& [n, t] : model->state_dict()) {
    if (!t.requires_grad()) {
      EXPECT_FALSE(t.grad().defined()) << n;
    }
  }
  model->zero_grad();
  for (auto& [n, t] : model->named_parameters()) EXPECT_FALSE(t.grad().defined()) << n;
}

// ------------------------------------------------------------------ mixed precision O2
// At O2 (engine/precision.h) the model stores its activations in the low type: the forward keeps
// about half the bytes, the eval-mode logits come back in f32, every parameter gets a finite f32 gradient,
// and logits and gradients stay close to the f32 model's (the low type's rounding; an error in a
// kernel would decorrelate them).
TEST(Models, O2StoresActivationsInTheLowTypeAndStaysCloseToF32) {
  const Tensor x = Tensor::randn({2, 64, 48, 3}, 4);
  auto step = [&](Precision prec, AmpLevel level) {
    auto model = build_seg_model(spec_t(3, 2));
    return engine::testing::mixed_precision_step(
        *model, prec, level, x, [](const std::vector<Tensor>& logits) { return weighted_loss(logits, 77); },
        // eval mode runs the main head only
        [](const std::string& name) { return name.rfind("seg_heads.", 0) != 0 || name.rfind("seg_heads.0", 0) == 0; });
  };
  // Measured (O2 / O1 against f32): fp16 logits 9.6e-4 / 7.6e-4, gradients 1.5e-2 / 3.5e-4; bf16
  // 6.3e-3 / 4.0e-3 and 3.2e-2 / 2.4e-2. fp16's O2 gradients move further than its O1 ones because
  // rounding the stored pre-activations flips ReLU masks (a chain of convolutions alone gives the
  // same result at O1 and O2).
  engine::testing::expect_o2_close_to_f32(step, {5e-3, 5e-2, 2e-2, 1e-1}, 2.0);
}

// In training at O2 the full-size logits stay in the low type (the losses read them with f32
// math, engine/ops/loss.h); evaluation widens them before the resize. fp16 runs on the CPU at the op
// level, so this runs on every CPU.
TEST(Models, O2TrainingLogitsStayInTheLowTypeEvalLogitsAreF32) {
  auto model = build_seg_model(spec_t(3, 2));
  const Tensor x = Tensor::randn({2, 64, 48, 3}, 4);
  std::vector<int64_t> lab(2 * 64 * 48);
  for (size_t i = 0; i < lab.size(); ++i) lab[i] = (int64_t)(i * 7 % 3);
  const Tensor labels = Tensor::from_vector_i64(lab, {2, 64, 48});
  model->train();
  {
    const AutocastGuard fp16(Precision::FP16, AmpLevel::O2);
    const std::vector<Tensor> logits = model->forward(x);
    ASSERT_EQ(logits.size(), 3u);
    Tensor loss;
    for (const Tensor& l : logits) {
      EXPECT_EQ(l.dtype(), DType::F16);
      EXPECT_EQ(l.shape(), (Shape{2, 64, 48, 3}));
      loss = loss.defined() ? add(loss, ohem_cross_entropy(l, labels, 0.7f, 1000)) : cross_entropy(l, labels);
    }
    EXPECT_TRUE(std::isfinite(loss.item()));
    loss.backward();
  }
  // Every parameter gets an f32 gradient. Finite ones are required of the seg heads only, which the
  // loss reaches first: deeper in, fp16 at initialisation with batch statistics over the 2x2 maps of
  // the last stage can overflow (at 32x32 it does), which is what loss scaling is for.
  size_t with_grad = 0, heads = 0;
  for (auto& [n, t] : model->named_parameters()) {
    if (!t.grad().defined()) continue;
    ++with_grad;
    EXPECT_EQ(t.grad().dtype(), DType::F32) << n;
    if (n.rfind("seg_heads.", 0) != 0) continue;
    ++heads;
    const std::vector<float> v = t.grad().to_vector();
    EXPECT_TRUE(std::all_of(v.begin(), v.end(), [](float e) { return std::isfinite(e); })) << n;
  }
  EXPECT_GT(with_grad, 100u);
  EXPECT_GT(heads, 6u);
  model->eval();
  const AutocastGuard fp16(Precision::FP16, AmpLevel::O2);
  const std::vector<Tensor> eval_logits = model->forward(x);
  ASSERT_EQ(eval_logits.size(), 1u);
  EXPECT_EQ(eval_logits[0].dtype(), DType::F32);
}

// ------------------------------------------------------------------ BatchNorm modes
TEST(Models, BatchNormTrainingUpdatesStatsAndEvalUsesThem) {
  auto model = build_seg_model(spec_t(4, 3));
  auto sd = by_name(*model);
  const Tensor x = Tensor::randn({2, 64, 64, 3}, 8);
  const Tensor rm = sd["backbone.features.0.bn._mean"], rv = sd["ppseg_head.cm.stages.0.1._batch_norm._variance"];
  const auto rm0 = rm.to_vector(), rv0 = rv.to_vector();
  model->train();
  Tensor train_out;
  {
    NoGradGuard ng;
    train_out = model->forward(x)[0];
  }
  EXPECT_NE(rm.to_vector(), rm0) << "training did not update the running mean";
  EXPECT_NE(rv.to_vector(), rv0) << "training did not update the SPPM running variance";
  model->eval();
  const auto rm1 = rm.to_vector();
  const Tensor e1 = model->forward(x)[0], e2 = model->forward(x)[0];
  EXPECT_EQ(rm.to_vector(), rm1) << "eval changed the running statistics";
  EXPECT_EQ(e1.to_vector(), e2.to_vector()) << "eval is not deterministic";
  EXPECT_GT(rel_diff(train_out, e1), 1e-3) << "eval output equals training output";
}

TEST(Models, BatchNormOneValuePerChannel) {
  // SPPM's 1x1 bin at batch 1: mean = x, variance 0, output = bias, no gradient to x.
  BatchNorm2d bn(3);
  bn.init_parameters(0);
  copy_into(bn.bias(), Tensor::from_vector({0.5f, -1.f, 2.f}, {3}));
  Tensor x = Tensor::from_vector({1.f, 2.f, 3.f}, {1, 1, 1, 3}).set_requires_grad(true);
  const Tensor y = bn.forward(x);
  EXPECT_EQ(y.to_vector(), (std::vector<float>{0.5f, -1.f, 2.f}));
  sum(mul(y, Tensor::from_vector({1.f, 2.f, 3.f}, {1, 1, 1, 3}))).backward();
  EXPECT_EQ(x.grad().to_vector(), (std::vector<float>{0.f, 0.f, 0.f}));
  EXPECT_TRUE(bn.weight().grad().defined());
  const auto m = bn.running_mean().to_vector(), v = bn.running_var().to_vector();
  for (int c = 0; c < 3; ++c) {
    EXPECT_NEAR(m[c], 0.1f * (c + 1), 1e-6);
    EXPECT_NEAR(v[c], 0.9f, 1e-6);
  }
}

// ------------------------------------------------------------------ initialisation (§1.5, §2.7)
TEST(Models, InitialisationFollowsPaddleAndTheSeed) {
  auto model = build_seg_model(spec_t(19, 42));
  auto sd = by_name(*model);
  // Head conv: Paddle's default Normal(0, sqrt(2 / (k*k*in))).
  const auto head = sd["ppseg_head.arm_list.0.conv_x._conv.weight"].to_vector();  // [64, 256, 3, 3]
  EXPECT_NEAR(sample_std(head), std::sqrt(2.0 / (9 * 256)), 0.02 * std::sqrt(2.0 / (9 * 256)));
  const auto sppm = sd["ppseg_head.cm.stages.1.1._conv.weight"].to_vector();  // [128, 1024, 1, 1]
  EXPECT_NEAR(sample_std(sppm), std::sqrt(2.0 / 1024), 0.02 * std::sqrt(2.0 / 1024));
  // STDC convs (depthwise included): Normal(0, 0.001).
  EXPECT_NEAR(sample_std(sd["backbone.features.4.conv_list.1.conv.weight"].to_vector()), 0.001, 0.00003);
  EXPECT_NEAR(sample_std(sd["backbone.features.6.avd_layer.0.weight"].to_vector()), 0.001, 0.0001);
  // Constants.
  auto all_equal = [](const Tensor& t, float v) {
    for (float x : t.to_vector())
      if (x != v) return false;
    return true;
  };
  EXPECT_TRUE(all_equal(sd["ppseg_head.cm.stages.0.1._conv.bias"], 0.f));
  EXPECT_TRUE(all_equal(sd["backbone.features.2.avd_layer.1.weight"], 1.f));
  EXPECT_TRUE(all_equal(sd["seg_heads.1.conv._batch_norm.bias"], 0.f));
  EXPECT_TRUE(all_equal(sd["seg_heads.1.conv._batch_norm._mean"], 0.f));
  EXPECT_TRUE(all_equal(sd["seg_heads.1.conv._batch_norm._variance"], 1.f));
  EXPECT_TRUE(all_equal(sd["ppseg_head.arm_list.1._scale"], 1.f));
  // Paddle's default std uses in_channels, not in_channels / groups.
  Conv2dOptions dw;
  dw.groups = 64;
  Conv2d depthwise(64, 64, 3, dw);
  depthwise.init_parameters(5);
  EXPECT_NEAR(sample_std(depthwise.weight().to_vector()), std::sqrt(2.0 / (9 * 64)), 0.1 * std::sqrt(2.0 / (9 * 64)));
  // Same seed -> same weights; another seed -> other weights.
  auto same = build_seg_model(spec_t(19, 42));
  auto other = build_seg_model(spec_t(19, 43));
  const std::string k = "seg_heads.0.conv_out.weight";
  EXPECT_EQ(by_name(*same)[k].to_vector(), sd[k].to_vector());
  EXPECT_EQ(by_name(*same)["backbone.features.0.conv.weight"].to_vector(),
            sd["backbone.features.0.conv.weight"].to_vector());
  EXPECT_NE(by_name(*other)[k].to_vector(), sd[k].to_vector());
  // Two tensors of one model never share a random stream.
  EXPECT_NE(sd["ppseg_head.arm_list.0.conv_xy_atten.0._conv.weight"].to_vector(),
            sd["ppseg_head.arm_list.1.conv_xy_atten.0._conv.weight"].to_vector());
}

// ------------------------------------------------------------------ loading
TEST(Models, LoadStateDictRoundTripAndErrors) {
  auto a = build_seg_model(spec_t(3, 1));
  auto b = build_seg_model(spec_t(3, 2));
  a->eval();
  b->eval();
  const Tensor x = Tensor::randn({1, 40, 56, 3}, 6);
  const auto ya = a->forward(x)[0].to_vector();
  EXPECT_NE(b->forward(x)[0].to_vector(), ya);
  // Running statistics must travel too: give a's some non-default values first.
  copy_into(by_name(*a)["backbone.features.1.bn._mean"], Tensor::randn({64}, 3, 0.1f));
  const auto ya2 = a->forward(x)[0].to_vector();
  EXPECT_NE(ya2, ya);

  std::vector<const TensorImpl*> impls;
  for (auto& [n, t] : b->state_dict()) impls.push_back(t.impl_ptr().get());
  b->load_state_dict(a->state_dict());
  EXPECT_EQ(b->forward(x)[0].to_vector(), ya2);
  const auto after = b->state_dict();
  for (size_t i = 0; i < after.size(); ++i) EXPECT_EQ(after[i].second.impl_ptr().get(), impls[i]) << after[i].first;
  EXPECT_TRUE(by_name(*b)["seg_heads.0.conv_out.weight"].requires_grad());

  // Errors name the key; nothing is copied when the check fails.
  const auto good = a->state_dict();
  auto wrong_shape = good;
  for (auto& e : wrong_shape)
    if (e.first == "seg_heads.0.conv_out.weight") e.second = Tensor::zeros({2, 32, 1, 1});
  const std::string e1 = error_of([&] { b->load_state_dict(wrong_shape); });
  EXPECT_NE(e1.find("'seg_heads.0.conv_out.weight'"), std::string::npos) << e1;
  EXPECT_NE(e1.find("f32[2, 32, 1, 1]"), std::string::npos) << e1;
  EXPECT_NE(e1.find("f32[3, 32, 1, 1]"), std::string::npos) << e1;

  auto missing = good;
  missing.erase(missing.begin() + 5);
  const std::string e2 = error_of([&] { b->load_state_dict(missing); });
  EXPECT_NE(e2.find("missing key '" + good[5].first + "'"), std::string::npos) << e2;
  EXPECT_NO_THROW(b->load_state_dict(missing, /*strict=*/false));

  auto extra = good;
  extra.emplace_back("ppseg_head.arm_list.3._scale", Tensor::zeros({1}));
  const std::string e3 = error_of([&] { b->load_state_dict(extra); });
  EXPECT_NE(e3.find("unexpected key 'ppseg_head.arm_list.3._scale'"), std::string::npos) << e3;

  auto dup = good;
  dup.push_back(good[0]);
  EXPECT_NE(error_of([&] { b->load_state_dict(dup); }).find("appears more than once"), std::string::npos);

  auto wrong_dtype = good;
  wrong_dtype[0].second = wrong_dtype[0].second.to(DType::F16);
  EXPECT_NE(error_of([&] { b->load_state_dict(wrong_dtype); }).find("f16"), std::string::npos);
  EXPECT_EQ(b->forward(x)[0].to_vector(), ya2) << "a failed load modified the model";
}

TEST(Models, LoadMatchingCountsAndSkips) {
  // A 19-class checkpoint into a 2-class model: only the three classifier convs differ.
  auto src = build_seg_model(spec_t(19, 1));
  auto dst = build_seg_model(spec_t(2, 2));
  std::ostringstream log;
  const LoadReport r = dst->load_matching(src->state_dict(), &log);
  const int64_t total = (int64_t)dst->state_dict().size();
  EXPECT_EQ(r.total, total);
  EXPECT_EQ(r.loaded, total - 3);
  ASSERT_EQ(r.warnings.size(), 3u);
  EXPECT_NE(r.warnings[0].find("seg_heads.0.conv_out.weight"), std::string::npos) << r.warnings[0];
  EXPECT_NE(r.warnings[0].find("Pretrained: f32[19, 32, 1, 1], Actual: f32[2, 32, 1, 1]"), std::string::npos)
      << r.warnings[0];
  EXPECT_EQ(r.summary, "There are " + std::to_string(total - 3) + "/" + std::to_string(total) +
                           " variables loaded into PPLiteSeg.");
  EXPECT_NE(log.str().find(r.summary), std::string::npos);
  const std::string k = "ppseg_head.arm_list.1.conv_x._conv.weight";
  EXPECT_EQ(by_name(*dst)[k].to_vector(), by_name(*src)[k].to_vector());

  // Backbone pretrained weights: an ImageNet checkpoint has extra classifier keys (ignored) and here
  // also lacks one key (skipped with a warning).
  auto stdc = make_stdcnet("STDC1", "model.backbone.type");
  auto donor = make_stdcnet("STDC1", "model.backbone.type");
  donor->init_parameters(9);
  StateDict ckpt = donor->state_dict();
  ckpt.erase(ckpt.begin());
  ckpt.emplace_back("fc.weight", Tensor::zeros({1000, 1024}));
  const LoadReport rb = stdc->load_matching(ckpt, nullptr);
  EXPECT_EQ(rb.total, (int64_t)stdc->state_dict().size());
  EXPECT_EQ(rb.loaded, rb.total - 1);
  ASSERT_EQ(rb.warnings.size(), 1u);
  EXPECT_EQ(rb.warnings[0], "features.0.conv.weight is not in pretrained model");
  EXPECT_NE(rb.summary.find("loaded into STDCNet."), std::string::npos);
}

// ------------------------------------------------------------------ spec validation
TEST(Models, BuildSegModelValidatesTheSpec) {
  auto msg = [](SegModelSpec s) { return error_of([&] { build_seg_model(s); }); };
  SegModelSpec s = spec_b(0);
  s.where = "configs/x.yml:model";
  EXPECT_NE(msg(s).find("configs/x.yml:model.num_classes must be >= 1, got 0"), std::string::npos) << msg(s);
  s = spec_b(2);
  s.arm_type = "UAFM_ChAtten";
  EXPECT_NE(msg(s).find("model.arm_type: 'UAFM_ChAtten' is not implemented"), std::string::npos) << msg(s);
  s.arm_type = "Foo";
  EXPECT_NE(msg(s).find("model.arm_type: 'Foo' is not a known UAFM type"), std::string::npos) << msg(s);
  s = spec_b(2);
  s.backbone = "STDC3";
  EXPECT_NE(msg(s).find("model.backbone.type: 'STDC3' is not supported"), std::string::npos) << msg(s);
  s = spec_b(2);
  s.type = "BiSeNetV2";
  EXPECT_NE(msg(s).find("model.type: 'BiSeNetV2'"), std::string::npos) << msg(s);
  s = spec_b(2);
  s.arm_out_chs = {64, 96};
  EXPECT_NE(msg(s).find("model.arm_out_chs: expected 3 values, got 2"), std::string::npos) << msg(s);
  s = spec_b(2);
  s.seg_head_inter_chs = {64, 0, 64};
  EXPECT_NE(msg(s).find("model.seg_head_inter_chs: values must be in"), std::string::npos) << msg(s);
  s = spec_b(2);
  s.backbone_indices = {2, 4, 3};
  EXPECT_NE(msg(s).find("model.backbone_indices: must be increasing"), std::string::npos) << msg(s);
  s = spec_b(2);
  s.cm_bin_sizes = {1, 0};
  EXPECT_NE(msg(s).find("model.cm_bin_sizes"), std::string::npos) << msg(s);
  s = spec_b(2);
  s.resize_mode = "bicubic";
  EXPECT_NE(msg(s).find("model.resize_mode: 'bicubic'"), std::string::npos) << msg(s);
}

// ------------------------------------------------------------------ devices
TEST(Models, ToDeviceKeepsTensorIdentity) {
  auto model = build_seg_model(spec_t(3, 1));
  std::vector<const TensorImpl*> impls;
  for (auto& [n, t] : model->state_dict()) impls.push_back(t.impl_ptr().get());
  model->to(Device::cpu());  // no-op
  EXPECT_EQ(model->device(), Device::cpu());
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  const auto before = by_name(*model)["seg_heads.0.conv_out.weight"].to_vector();
  model->to(Device::cuda(0));
  EXPECT_EQ(model->device(), Device::cuda(0));
  const auto sd = model->state_dict();
  for (size_t i = 0; i < sd.size(); ++i) {
    EXPECT_EQ(sd[i].second.impl_ptr().get(), impls[i]) << sd[i].first;
    EXPECT_EQ(sd[i].second.device(), Device::cuda(0)) << sd[i].first;
  }
  for (auto& [n, t] : model->named_parameters()) EXPECT_TRUE(t.requires_grad() && t.is_leaf()) << n;
  EXPECT_EQ(by_name(*model)["seg_heads.0.conv_out.weight"].to_vector(), before);
}

TEST(Models, CpuAndCudaDevicesAgree) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  // PP-LiteSeg-T, 3 classes, [1, 64, 64, 3], training mode (batch statistics; SPPM's 1x1 bin then
  // has one value per channel). At initialisation this graph is ill-conditioned: on the CPU alone,
  // a 1e-7 relative perturbation of the input moves logits by ~1e-4 and some gradients (sums with
  // heavy cancellation, e.g. the 1-channel attention BN) by ~1e-3. So each tensor must agree within
  // max(stated tolerance, 10 x that rounding-level sensitivity): a real kernel bug is O(1).
  struct Run {
    std::vector<Tensor> logits, grads;
    std::vector<std::string> names;
  };
  auto run = [](SegModel& m, const Tensor& x) {
    Run r;
    m.zero_grad();
    const auto logits = m.forward(x);
    weighted_loss(logits, 31).backward();
    for (const Tensor& l : logits) r.logits.push_back(l.detach().to(Device::cpu()));
    for (auto& [n, t] : m.named_parameters()) {
      EXPECT_TRUE(t.grad().defined()) << n;
      r.grads.push_back(t.grad().to(Device::cpu()));
      r.names.push_back(n);
    }
    return r;
  };
  auto cpu = build_seg_model(spec_t(3, 5));
  auto gpu = build_seg_model(spec_t(3, 5));
  std::vector<const TensorImpl*> impls;
  for (auto& [n, t] : gpu->named_parameters()) impls.push_back(t.impl_ptr().get());
  gpu->to(Device::cuda(0));
  const Tensor x = Tensor::randn({1, 64, 64, 3}, 12);
  const Run ref = run(*cpu, x);
  const Run dev = run(*gpu, x.to(Device::cuda(0)));
  auto cpu2 = build_seg_model(spec_t(3, 5));  // a separate model: running statistics stay comparable
  const Run sens = run(*cpu2, add(x, mul(x, Tensor::randn(x.shape(), 99, 1e-7f))));
  ASSERT_EQ(ref.logits.size(), 3u);
  ASSERT_EQ(dev.logits.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    const double tol = std::max(1e-4, 10 * rel_diff(ref.logits[i], sens.logits[i]));
    EXPECT_LE(rel_diff(ref.logits[i], dev.logits[i]), tol) << "logit " << i;
  }
  ASSERT_EQ(ref.grads.size(), dev.grads.size());
  std::map<std::string, size_t> at;
  for (size_t i = 0; i < ref.grads.size(); ++i) {
    at[ref.names[i]] = i;
    EXPECT_EQ(dev.names[i], ref.names[i]);
    const double tol = std::max(1e-3, 10 * rel_diff(ref.grads[i], sens.grads[i]));
    EXPECT_LE(rel_diff(ref.grads[i], dev.grads[i]), tol) << ref.names[i];
  }
  // A conv bias right before a training-mode BN gets a zero gradient (BN removes any per-channel
  // shift): only rounding is left, on both devices.
  auto max_abs = [](const Tensor& t) {
    double m = 0;
    for (float v : t.to_vector()) m = std::max(m, (double)std::fabs(v));
    return m;
  };
  for (const char* conv :
       {"ppseg_head.cm.stages.0.1._conv", "ppseg_head.cm.stages.2.1._conv", "ppseg_head.cm.conv_out._conv"}) {
    const std::string b = std::string(conv) + ".bias", w = std::string(conv) + ".weight";
    EXPECT_LE(max_abs(ref.grads[at[b]]), 1e-3 * max_abs(ref.grads[at[w]])) << b;
    EXPECT_LE(max_abs(dev.grads[at[b]]), 1e-3 * max_abs(dev.grads[at[w]])) << b;
  }
  // The parameters the optimizer would hold are the same objects, now on the device.
  const auto moved = gpu->named_parameters();
  for (size_t i = 0; i < moved.size(); ++i) EXPECT_EQ(moved[i].second.impl_ptr().get(), impls[i]) << moved[i].first;
  // Running statistics were updated alike; eval (running statistics) agrees too.
  auto sc = by_name(*cpu), sg = by_name(*gpu);
  const std::string rv = "ppseg_head.arm_list.0.conv_out._batch_norm._variance";
  EXPECT_LE(rel_diff(sc[rv], sg[rv]), 1e-3);
  cpu->eval();
  gpu->eval();
  NoGradGuard ng;
  EXPECT_LE(rel_diff(cpu->forward(x)[0], gpu->forward(x.to(Device::cuda(0)))[0]), 1e-4);
}

// ------------------------------------------------------------------ synchronised batch norm
namespace {

// Two "ranks" as two threads: reduce() sums each tensor with the other rank's (a barrier-based
// stand-in for NCCL/MPI all-reduce, so sync BN is tested without a second process).
class TwoRankReducer {
 public:
  void reduce(int rank, const std::vector<Tensor>& ts) {
    for (const Tensor& t : ts) {
      std::vector<float> mine = t.to_vector();
      std::unique_lock<std::mutex> lock(m_);
      slot_[rank] = mine;
      arrive(lock);
      std::vector<float> sum = slot_[0];
      for (size_t i = 0; i < sum.size(); ++i) sum[i] += slot_[1][i];
      arrive(lock);  // both have read before the slots are reused
      lock.unlock();
      Tensor dst = t;  // a handle: writes into the caller's tensor
      dst.copy_(Tensor::from_vector(sum, t.shape()));
    }
  }

 private:
  void arrive(std::unique_lock<std::mutex>& lock) {
    const int gen = gen_;
    if (++arrived_ == 2) {
      arrived_ = 0;
      ++gen_;
      cv_.notify_all();
    } else {
      cv_.wait(lock, [&] { return gen_ != gen; });
    }
  }
  std::mutex m_;
  std::condition_variable cv_;
  int arrived_ = 0, gen_ = 0;
  std::vector<float> slot_[2];
};

struct BnRun {
  std::vector<float> y, gx, gw, gb, running_mean, running_var;
};

BnRun run_bn(BatchNorm2d& bn, const Tensor& x0, const Tensor& r) {
  Tensor x = x0.detach().clone().set_requires_grad(true);
  Tensor y = bn.forward(x);
  sum(mul(y, r)).backward();
  BnRun out{y.to_vector(),
            x.grad().to_vector(),
            bn.weight().grad().to_vector(),
            bn.bias().grad().to_vector(),
            bn.running_mean().to_vector(),
            bn.running_var().to_vector()};
  return out;
}

void expect_close(const std::vector<float>& a, const std::vector<float>& b, float tol, const char* what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], tol * (1 + std::fabs(b[i]))) << what << " " << i;
}

}  // namespace

TEST(SyncBatchNorm, OneRankEqualsPlainBatchNorm) {
  const Tensor x = add(mul(Tensor::randn({2, 5, 7, 6}, 1), 3.f), 10.f);  // |mean| >> std: the shift matters
  const Tensor r = Tensor::randn({2, 5, 7, 6}, 2);
  BatchNorm2d plain(6), synced(6);
  synced.set_sync([](const std::vector<Tensor>&) {});  // world size 1
  const BnRun a = run_bn(plain, x, r), b = run_bn(synced, x, r);
  expect_close(b.y, a.y, 1e-4f, "y");
  expect_close(b.gx, a.gx, 1e-3f, "grad x");
  expect_close(b.gw, a.gw, 1e-3f, "grad weight");
  expect_close(b.gb, a.gb, 1e-4f, "grad bias");
  expect_close(b.running_mean, a.running_mean, 1e-5f, "running mean");
  expect_close(b.running_var, a.running_var, 1e-4f, "running var");
}

TEST(SyncBatchNorm, TwoRanksEqualOneBatchOfBoth) {
  // Plain BN on a batch of 4 == two ranks with 2 images each and synchronised statistics: the same
  // outputs, input gradients, running statistics, and per-rank weight gradients that sum to the
  // plain ones (data parallel then averages them).
  const Tensor x = add(Tensor::randn({4, 6, 5, 3}, 3), 2.f), r = Tensor::randn({4, 6, 5, 3}, 4);
  BatchNorm2d plain(3);
  const BnRun whole = run_bn(plain, x, r);
  TwoRankReducer reducer;
  BatchNorm2d rank_bn[2] = {BatchNorm2d(3), BatchNorm2d(3)};
  BnRun part[2];
  std::thread threads[2];
  for (int k = 0; k < 2; ++k) {
    rank_bn[k].set_sync([&reducer, k](const std::vector<Tensor>& ts) { reducer.reduce(k, ts); });
    threads[k] = std::thread([&, k] { part[k] = run_bn(rank_bn[k], x.narrow(0, 2 * k, 2), r.narrow(0, 2 * k, 2)); });
  }
  for (auto& t : threads) t.join();
  std::vector<float> y = part[0].y, gx = part[0].gx;
  y.insert(y.end(), part[1].y.begin(), part[1].y.end());
  gx.insert(gx.end(), part[1].gx.begin(), part[1].gx.end());
  expect_close(y, whole.y, 1e-4f, "y");
  expect_close(gx, whole.gx, 1e-3f, "grad x");
  std::vector<float> gw(3), gb(3);
  for (int c = 0; c < 3; ++c) {
    gw[(size_t)c] = part[0].gw[(size_t)c] + part[1].gw[(size_t)c];
    gb[(size_t)c] = part[0].gb[(size_t)c] + part[1].gb[(size_t)c];
  }
  expect_close(gw, whole.gw, 1e-3f, "grad weight (sum over ranks)");
  expect_close(gb, whole.gb, 1e-4f, "grad bias (sum over ranks)");
  for (int k = 0; k < 2; ++k) {
    expect_close(part[k].running_mean, whole.running_mean, 1e-5f, "running mean");
    expect_close(part[k].running_var, whole.running_var, 1e-4f, "running var");
  }
}

TEST(SyncBatchNorm, ConvertsEveryLayerOfTheModel) {
  SegModelSpec spec;
  spec.backbone = "STDC1";
  spec.num_classes = 2;
  spec.arm_out_chs = {32, 64, 128};
  spec.seg_head_inter_chs = {32, 64, 64};
  auto model = build_seg_model(spec);
  int bn_count = 0;
  for (const auto& [name, t] : model->state_dict())
    bn_count += name.size() > 6 && name.compare(name.size() - 6, 6, "._mean") == 0;
  EXPECT_EQ(set_sync_batch_norm(*model, [](const std::vector<Tensor>&) {}), bn_count);
  EXPECT_EQ(set_sync_batch_norm(*model, nullptr), bn_count);
}
