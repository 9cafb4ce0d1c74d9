// labels: models
// YOLOv3 with the DarkNet53 and MobileNetV1 backbones (models/darknet.h, mobilenet_v1.h, yolov3.h):
// parameter counts computed here from the layers of PaddleDetection 666f597f's
// ppdet/modeling/backbones/darknet.py, mobilenet_v1.py, necks/yolo_fpn.py and heads/yolo_head.py
// (and equal to what PaddleDetection builds), PaddleDetection state-dict names and shapes (~35 per model here;
// the complete lists, 366 and 241 keys with shapes, were compared with PaddleDetection's once and
// matched; only the order of state_dict() differs, see models/darknet.h), the wiring of
// BasicBlock, the FPN (concat order, nearest 2x upsample, LeakyReLU 0.1) and the depthwise-separable
// block against hand-written compositions of engine ops, output shapes at 320 and 416, the
// initialisation rules, spec errors, and a training step on the CPU against the CUDA device
// (emulated in CI, skipped without one).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>

#include "engine/autograd.h"
#include "engine/ops/batchnorm.h"
#include "engine/ops/conv.h"
#include "engine/ops/copy.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "engine/ops/resize.h"
#include "engine/ops/shape_ops.h"
#include "models/darknet.h"
#include "models/det_model.h"
#include "models/mobilenet_v1.h"
#include "models/yolov3.h"
#include "tests/harness/mixed_step.h"

using namespace engine;
using namespace engine::nn;

namespace {

DetModelSpec spec(const std::string& backbone, int64_t classes, uint64_t seed = 0) {
  DetModelSpec s;
  s.backbone = backbone;
  s.num_classes = classes;
  s.seed = seed;
  return s;
}

std::map<std::string, Tensor> by_name(const Module& m) {
  std::map<std::string, Tensor> out;
  for (auto& [n, t] : m.state_dict()) out[n] = t;
  return out;
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

double sample_std(const std::vector<float>& v) {
  double s = 0, q = 0;
  for (float x : v) s += x;
  const double mean = s / (double)v.size();
  for (float x : v) q += (x - mean) * (x - mean);
  return std::sqrt(q / (double)v.size());
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// ------------------------------------------------------------------ counts from the layer tables
// Independent of the model code: a k x k conv from ci to co channels in g groups has co * (ci / g) *
// k * k weights (no bias in any conv-BN unit); a BN over c channels has 2c trainable tensors (weight,
// bias) and 2c running statistics (_mean, _variance, which Paddle's parameters() also lists).
struct Count {
  int64_t trainable = 0, stats = 0;
  void conv_bn(int64_t ci, int64_t co, int64_t k, int64_t g = 1) {
    trainable += co * (ci / g) * k * k + 2 * co;
    stats += 2 * co;
  }
};

// DarkNet-53 (PaddleDetection ppdet/modeling/backbones/darknet.py): conv0 3->32 3x3, downsample0 32->64 3x3;
// stage i (i = 0..4, [1, 2, 8, 8, 4] blocks, c = 32 << i, input 64 << i): BasicBlock = 1x1 in->c +
// 3x3 c->2c; a 3x3 downsample 2c->4c after stages 0..3.
Count darknet53_count() {
  Count n;
  n.conv_bn(3, 32, 3);
  n.conv_bn(32, 64, 3);
  const int blocks[5] = {1, 2, 8, 8, 4};
  for (int i = 0; i < 5; ++i) {
    const int64_t c = 32 << i;
    for (int j = 0; j < blocks[i]; ++j) {
      n.conv_bn(2 * c, c, 1);  // basicblock0's input (64 << i) is 2c as well
      n.conv_bn(c, 2 * c, 3);
    }
    if (i < 4) n.conv_bn(2 * c, 4 * c, 3);
  }
  return n;
}

// MobileNetV1 1.0: conv1 3->32 3x3 s2, then 13 depthwise-separable blocks (3x3 depthwise in->in,
// groups in; 1x1 pointwise in->out) with the (in, out) of mobilenet_v1.py.
Count mobilenet_v1_count() {
  Count n;
  n.conv_bn(3, 32, 3);
  const int64_t io[13][2] = {{32, 64},   {64, 128},  {128, 128}, {128, 256}, {256, 256},  {256, 512},  {512, 512},
                             {512, 512}, {512, 512}, {512, 512}, {512, 512}, {512, 1024}, {1024, 1024}};
  for (const auto& b : io) {
    n.conv_bn(b[0], b[0], 3, b[0]);
    n.conv_bn(b[0], b[1], 1);
  }
  return n;
}

// YOLOv3FPN (§2): YoloDetBlock(in, c) for (in, c) = (1024, 512), (512 + 256, 256), (256 + 128, 128):
// 1x1 in->c, 3x3 c->2c, 1x1 2c->c, 3x3 c->2c, 1x1 2c->c (route), 3x3 c->2c (tip); transitions 1x1
// 512->256 and 256->128. YOLOv3Head: 1x1 convs with bias from 1024/512/256 to 3 * (5 + C).
Count yolov3_count(Count backbone, int64_t classes) {
  Count n = backbone;
  const int64_t in[3] = {1024, 768, 384};
  for (int i = 0; i < 3; ++i) {
    const int64_t c = 512 >> i;
    n.conv_bn(in[i], c, 1);
    n.conv_bn(c, 2 * c, 3);
    n.conv_bn(2 * c, c, 1);
    n.conv_bn(c, 2 * c, 3);
    n.conv_bn(2 * c, c, 1);
    n.conv_bn(c, 2 * c, 3);
    if (i < 2) n.conv_bn(c, c / 2, 1);
    const int64_t out = 3 * (5 + classes);
    n.trainable += (1024 >> i) * out + out;
  }
  return n;
}

// BN in training mode (batch statistics, no running update) followed by the activation, written
// out for the hand-made references.
Tensor bn_act(const Tensor& x, std::map<std::string, Tensor>& p, const std::string& prefix, BnActivation act) {
  const Tensor y = batch_norm(x, p[prefix + ".weight"], p[prefix + ".bias"], Tensor(), Tensor(), BatchNormArgs{});
  return apply_activation(y, act);
}
Tensor conv(const Tensor& x, const Tensor& w, const Tensor& b, int stride, int pad, int groups = 1) {
  Conv2dArgs a;
  a.stride_h = a.stride_w = stride;
  a.pad_h = a.pad_w = pad;
  a.groups = groups;
  return conv2d(x, w, b, a);
}
// darknet.py ConvBNLayer by hand: conv (no bias) -> BN -> leaky_relu(0.1), unfused.
Tensor dark_cbl(const Tensor& x, std::map<std::string, Tensor>& p, const std::string& pre, int k, int stride = 1) {
  const Tensor y =
      batch_norm(conv(x, p[pre + ".conv.weight"], Tensor(), stride, (k - 1) / 2), p[pre + ".batch_norm.weight"],
                 p[pre + ".batch_norm.bias"], Tensor(), Tensor(), BatchNormArgs{});
  return leaky_relu(y, 0.1f);
}

// Non-trivial BN affine parameters, so a missing or misplaced BN or activation shows.
void randomise_bn(Module& m) {
  for (auto& [n, t] : m.named_parameters())
    if (n.find("batch_norm") != std::string::npos)
      copy_into(t, Tensor::uniform(t.shape(), std::hash<std::string>{}(n), 0.5f, 1.5f));
}

// Initialising DarkNet53-YOLOv3 draws 62 M normal values (~3 s here): each test below that needs an
// initialised model at the default spec (80 classes, seed 1) shares one per backbone, read-only
// (tests may switch its train/eval mode).
YOLOv3& initialised(const std::string& backbone) {
  static std::map<std::string, std::shared_ptr<DetModel>> cache;
  auto& m = cache[backbone];
  if (!m) m = build_det_model(spec(backbone, 80, 1));
  return dynamic_cast<YOLOv3&>(*m);
}

// A copy of `m`'s state: building another model of the same spec and loading this is much cheaper
// than initialising it again.
StateDict snapshot(const Module& m) {
  StateDict s;
  for (auto& [n, t] : m.state_dict()) s.emplace_back(n, t.detach().clone());
  return s;
}

}  // namespace

// ------------------------------------------------------------------ sizes
// PaddleDetection (666f597f, PaddlePaddle 3.3) gives the same numbers for the same four models:
// sum(p.numel() for p in parameters() if not p.stop_gradient) = trainable, sum over all parameters
// (Paddle's BN _mean/_variance are parameters) = trainable + statistics; 366 / 241 state-dict keys.
TEST(DetModels, ParameterCountsFromTheLayerTables) {
  struct Case {
    std::string backbone;
    int64_t classes;
    Count table;
    int64_t trainable, stats, backbone_trainable, keys;
  };
  const std::vector<Case> cases = {
      {"DarkNet53", 80, yolov3_count(darknet53_count(), 80), 61949149, 52608, 40584928, 366},
      {"DarkNet53", 20, yolov3_count(darknet53_count(), 20), 61626049, 52608, 40584928, 366},
      {"MobileNetV1", 80, yolov3_count(mobilenet_v1_count(), 80), 24571197, 38784, 3206976, 241},
      {"MobileNetV1", 20, yolov3_count(mobilenet_v1_count(), 20), 24248097, 38784, 3206976, 241}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.backbone + " classes " + std::to_string(c.classes));
    EXPECT_EQ(c.table.trainable, c.trainable);  // the table and PaddleDetection agree
    EXPECT_EQ(c.table.stats, c.stats);
    YOLOv3 model(spec(c.backbone, c.classes));  // counts need no initialisation
    EXPECT_EQ(model.num_trainable_parameters(), c.trainable);
    EXPECT_EQ(model.num_parameters(), c.trainable);  // no frozen parameters
    EXPECT_EQ(model.num_buffer_elements(), c.stats);
    EXPECT_EQ(model.num_trainable_parameters() + model.num_buffer_elements(), c.trainable + c.stats);
    EXPECT_EQ(model.backbone().num_trainable_parameters(), c.backbone_trainable);
    EXPECT_EQ((int64_t)model.state_dict().size(), c.keys);
  }
  EXPECT_EQ(darknet53_count().trainable, 40584928);
  EXPECT_EQ(mobilenet_v1_count().trainable, 3206976);
}

// ------------------------------------------------------------------ names
namespace {
void expect_keys(const Module& model, const std::vector<std::pair<std::string, Shape>>& expected) {
  auto sd = by_name(model);
  EXPECT_EQ(sd.size(), model.state_dict().size()) << "duplicated keys";
  for (auto& [name, shape] : expected) {
    ASSERT_TRUE(sd.count(name)) << "missing key " << name;
    EXPECT_EQ(sd[name].shape(), shape) << name;
  }
}
}  // namespace

TEST(DetModels, DarkNet53YoloV3UsesPaddleDetectionNames) {
  for (int64_t classes : {80, 20}) {
    YOLOv3 model(spec("DarkNet53", classes));
    const int64_t o = 3 * (5 + classes);
    expect_keys(model, {
                           {"backbone.conv0.conv.weight", {32, 3, 3, 3}},
                           {"backbone.conv0.batch_norm._variance", {32}},
                           {"backbone.downsample0.conv_bn_layer.conv.weight", {64, 32, 3, 3}},
                           {"backbone.downsample0.conv_bn_layer.batch_norm._mean", {64}},
                           {"backbone.stage.0.basicblock0.conv1.conv.weight", {32, 64, 1, 1}},
                           {"backbone.stage.0.basicblock0.conv2.conv.weight", {64, 32, 3, 3}},
                           {"backbone.stage.0.basicblock0.conv2.batch_norm.bias", {64}},
                           {"backbone.stage.1.stage.1.1.conv1.conv.weight", {64, 128, 1, 1}},
                           {"backbone.stage.2.basicblock0.conv1.conv.weight", {128, 256, 1, 1}},
                           {"backbone.stage.2.stage.2.7.conv2.conv.weight", {256, 128, 3, 3}},
                           {"backbone.stage.2.stage.2.7.conv2.batch_norm.weight", {256}},
                           {"backbone.stage.3.stage.3.7.conv1.batch_norm._variance", {256}},
                           {"backbone.stage.4.basicblock0.conv1.conv.weight", {512, 1024, 1, 1}},
                           {"backbone.stage.4.stage.4.3.conv2.conv.weight", {1024, 512, 3, 3}},
                           {"backbone.stage.0.downsample.conv_bn_layer.conv.weight", {128, 64, 3, 3}},
                           {"backbone.stage.3.downsample.conv_bn_layer.conv.weight", {1024, 512, 3, 3}},
                           {"backbone.stage.3.downsample.conv_bn_layer.batch_norm._mean", {1024}},
                           {"neck.yolo_block.0.conv_module.conv0.conv.weight", {512, 1024, 1, 1}},
                           {"neck.yolo_block.0.conv_module.conv1.conv.weight", {1024, 512, 3, 3}},
                           {"neck.yolo_block.0.conv_module.route.conv.weight", {512, 1024, 1, 1}},
                           {"neck.yolo_block.0.tip.conv.weight", {1024, 512, 3, 3}},
                           {"neck.yolo_block.0.tip.batch_norm._variance", {1024}},
                           {"neck.yolo_transition.0.conv.weight", {256, 512, 1, 1}},
                           {"neck.yolo_transition.1.conv.weight", {128, 256, 1, 1}},
                           {"neck.yolo_transition.1.batch_norm.bias", {128}},
                           {"neck.yolo_block.1.conv_module.conv0.conv.weight", {256, 768, 1, 1}},
                           {"neck.yolo_block.1.conv_module.conv3.conv.weight", {512, 256, 3, 3}},
                           {"neck.yolo_block.2.conv_module.conv0.conv.weight", {128, 384, 1, 1}},
                           {"neck.yolo_block.2.tip.conv.weight", {256, 128, 3, 3}},
                           {"neck.yolo_block.2.tip.batch_norm._mean", {256}},
                           {"yolo_head.yolo_output.0.weight", {o, 1024, 1, 1}},
                           {"yolo_head.yolo_output.0.bias", {o}},
                           {"yolo_head.yolo_output.1.weight", {o, 512, 1, 1}},
                           {"yolo_head.yolo_output.2.weight", {o, 256, 1, 1}},
                           {"yolo_head.yolo_output.2.bias", {o}},
                       });
    // No bias in a conv-BN unit; no stage.0.stage (one block), no stage.4.downsample, no third
    // transition, no head BN.
    auto sd = by_name(model);
    for (const char* absent :
         {"backbone.conv0.conv.bias", "neck.yolo_block.0.tip.conv.bias", "neck.yolo_transition.0.conv.bias",
          "backbone.stage.0.stage.0.1.conv1.conv.weight", "backbone.stage.4.downsample.conv_bn_layer.conv.weight",
          "backbone.stage.2.stage.2.8.conv1.conv.weight", "neck.yolo_transition.2.conv.weight",
          "yolo_head.yolo_output.0.batch_norm.weight"})
      EXPECT_FALSE(sd.count(absent)) << absent;
    for (auto& [n, t] : sd) {
      const bool stat = n.size() > 6 && (n.find("._mean") == n.size() - 6 || n.find("._variance") == n.size() - 10);
      const bool trainable = t.requires_grad();
      EXPECT_NE(stat, trainable) << n;
    }
  }
}

TEST(DetModels, MobileNetV1YoloV3UsesPaddleDetectionNames) {
  YOLOv3 model(spec("MobileNetV1", 80));
  expect_keys(model, {
                         {"backbone.conv1._conv.weight", {32, 3, 3, 3}},
                         {"backbone.conv1._batch_norm.weight", {32}},
                         {"backbone.conv1._batch_norm._variance", {32}},
                         {"backbone.conv2_1._depthwise_conv._conv.weight", {32, 1, 3, 3}},
                         {"backbone.conv2_1._depthwise_conv._batch_norm._mean", {32}},
                         {"backbone.conv2_1._pointwise_conv._conv.weight", {64, 32, 1, 1}},
                         {"backbone.conv2_2._depthwise_conv._conv.weight", {64, 1, 3, 3}},
                         {"backbone.conv2_2._pointwise_conv._conv.weight", {128, 64, 1, 1}},
                         {"backbone.conv3_2._pointwise_conv._conv.weight", {256, 128, 1, 1}},
                         {"backbone.conv4_2._pointwise_conv._batch_norm.bias", {512}},
                         {"backbone.conv5_1._depthwise_conv._conv.weight", {512, 1, 3, 3}},
                         {"backbone.conv5_5._pointwise_conv._conv.weight", {512, 512, 1, 1}},
                         {"backbone.conv5_6._depthwise_conv._conv.weight", {512, 1, 3, 3}},
                         {"backbone.conv5_6._pointwise_conv._conv.weight", {1024, 512, 1, 1}},
                         {"backbone.conv6._depthwise_conv._conv.weight", {1024, 1, 3, 3}},
                         {"backbone.conv6._pointwise_conv._conv.weight", {1024, 1024, 1, 1}},
                         {"backbone.conv6._pointwise_conv._batch_norm._variance", {1024}},
                         {"neck.yolo_block.0.conv_module.conv0.conv.weight", {512, 1024, 1, 1}},
                         {"neck.yolo_block.1.conv_module.conv0.conv.weight", {256, 768, 1, 1}},
                         {"neck.yolo_transition.1.conv.weight", {128, 256, 1, 1}},
                         {"yolo_head.yolo_output.0.weight", {255, 1024, 1, 1}},
                         {"yolo_head.yolo_output.2.bias", {255}},
                     });
  auto sd = by_name(model);
  for (const char* absent : {"backbone.conv1._conv.bias", "backbone.conv7_1.pointwise_conv._conv.weight",
                             "backbone.conv2_1._depthwise_conv._conv.bias"})
    EXPECT_FALSE(sd.count(absent)) << absent;
}

// ------------------------------------------------------------------ wiring against hand-made compositions
TEST(DetModels, DarkNetBasicBlockAndDownSampleMatchHandComposition) {
  DarkBlocks blocks(1, 16, 8, 2, 32);  // basicblock0 16->8->16, stage.1.1 16->8->16, downsample 16->32
  blocks.init_parameters(4);
  randomise_bn(blocks);
  const Tensor x = Tensor::randn({2, 7, 9, 16}, 3);
  const Tensor got = blocks.downsample()->forward(blocks.forward(x));
  ASSERT_EQ(got.shape(), (Shape{2, 4, 5, 32}));
  auto p = by_name(blocks);
  Tensor y = add(x, dark_cbl(dark_cbl(x, p, "basicblock0.conv1", 1), p, "basicblock0.conv2", 3));  // no act after
  y = add(y, dark_cbl(dark_cbl(y, p, "stage.1.1.conv1", 1), p, "stage.1.1.conv2", 3));
  const Tensor want = dark_cbl(y, p, "downsample.conv_bn_layer", 3, 2);
  EXPECT_LE(rel_diff(want, got), 1e-6);
  // Leaky slope 0.1, not ReLU: a ReLU would lose every negative pre-activation.
  EXPECT_GT(rel_diff(relu(want), got), 1e-3);
}

TEST(DetModels, FpnMatchesHandComposition) {
  // The real channel counts at the spatial sizes of a 64x32 input: C3 8x4, C4 4x2, C5 2x1.
  YOLOv3FPN fpn({256, 512, 1024});
  fpn.init_parameters(6);
  randomise_bn(fpn);
  const std::vector<Tensor> feats = {Tensor::randn({1, 8, 4, 256}, 1), Tensor::randn({1, 4, 2, 512}, 2),
                                     Tensor::randn({1, 2, 1, 1024}, 3)};
  const std::vector<Tensor> got = fpn.forward(feats);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].shape(), (Shape{1, 2, 1, 1024}));
  EXPECT_EQ(got[1].shape(), (Shape{1, 4, 2, 512}));
  EXPECT_EQ(got[2].shape(), (Shape{1, 8, 4, 256}));
  EXPECT_EQ(fpn.out_channels(), (std::vector<int>{1024, 512, 256}));
  auto p = by_name(fpn);
  // YoloDetBlock i by hand: returns the tip, sets the route.
  auto det_block = [&](const Tensor& x, int i, Tensor& route) {
    const std::string pre = "yolo_block." + std::to_string(i);
    Tensor r = x;
    const char* names[5] = {"conv0", "conv1", "conv2", "conv3", "route"};
    const int ks[5] = {1, 3, 1, 3, 1};
    for (int k = 0; k < 5; ++k) r = dark_cbl(r, p, pre + ".conv_module." + names[k], ks[k]);
    route = r;
    return dark_cbl(r, p, pre + ".tip", 3);
  };
  // Nearest 2x upsample by hand: out[y, x] = in[y / 2, x / 2].
  auto up2 = [](const Tensor& t) {
    const Shape s = t.shape();
    const auto v = t.to_vector();
    std::vector<float> o((size_t)(s[0] * s[1] * 2 * s[2] * 2 * s[3]));
    for (int64_t y = 0; y < 2 * s[1]; ++y)
      for (int64_t x = 0; x < 2 * s[2]; ++x)
        for (int64_t c = 0; c < s[3]; ++c)
          o[(size_t)((y * 2 * s[2] + x) * s[3] + c)] = v[(size_t)(((y / 2) * s[2] + x / 2) * s[3] + c)];
    return Tensor::from_vector(o, {s[0], 2 * s[1], 2 * s[2], s[3]});
  };
  Tensor route;
  const Tensor tip0 = det_block(feats[2], 0, route);
  const Tensor r0 = up2(dark_cbl(route, p, "yolo_transition.0", 1));
  const Tensor tip1 = det_block(concat({r0, feats[1]}, 3), 1, route);  // route first, backbone map second
  const Tensor r1 = up2(dark_cbl(route, p, "yolo_transition.1", 1));
  const Tensor tip2 = det_block(concat({r1, feats[0]}, 3), 2, route);
  EXPECT_LE(rel_diff(tip0, got[0]), 1e-6);
  EXPECT_LE(rel_diff(tip1, got[1]), 1e-6);
  EXPECT_LE(rel_diff(tip2, got[2]), 1e-6);
  // The other concatenation order gives something else (both have 768 input channels).
  Tensor unused;
  EXPECT_GT(rel_diff(det_block(concat({feats[1], r0}, 3), 1, unused), got[1]), 1e-3);
}

TEST(DetModels, DepthwiseSeparableMatchesHandComposition) {
  DepthwiseSeparable block(8, 12, 2);
  block.init_parameters(8);
  for (auto& [n, t] : block.named_parameters())
    if (n.find("_batch_norm") != std::string::npos)
      copy_into(t, Tensor::uniform(t.shape(), std::hash<std::string>{}(n), 0.5f, 1.5f));
  const Tensor x = Tensor::randn({2, 9, 6, 8}, 4);
  const Tensor got = block.forward(x);
  ASSERT_EQ(got.shape(), (Shape{2, 5, 3, 12}));
  auto p = by_name(block);
  const Tensor dw = bn_act(conv(x, p["_depthwise_conv._conv.weight"], Tensor(), 2, 1, /*groups=*/8), p,
                           "_depthwise_conv._batch_norm", BnActivation::relu());
  const Tensor want = bn_act(conv(dw, p["_pointwise_conv._conv.weight"], Tensor(), 1, 0), p,
                             "_pointwise_conv._batch_norm", BnActivation::relu());
  EXPECT_LE(rel_diff(want, got), 1e-6);
}

// ------------------------------------------------------------------ shapes
TEST(DetModels, OutputShapesAt320And416) {
  NoGradGuard ng;
  for (const char* bb : {"DarkNet53", "MobileNetV1"}) {
    YOLOv3* model = &initialised(bb);
    model->eval();
    for (int64_t s : {320, 416}) {
      SCOPED_TRACE(std::string(bb) + " " + std::to_string(s));
      const Tensor x = Tensor::randn({1, s, s, 3}, 2);
      const std::vector<Tensor> feats = model->backbone().forward(x);
      ASSERT_EQ(feats.size(), 3u);
      EXPECT_EQ(feats[0].shape(), (Shape{1, s / 8, s / 8, 256}));
      EXPECT_EQ(feats[1].shape(), (Shape{1, s / 16, s / 16, 512}));
      EXPECT_EQ(feats[2].shape(), (Shape{1, s / 32, s / 32, 1024}));
      const std::vector<Tensor> out = model->head().forward(model->neck().forward(feats));
      ASSERT_EQ(out.size(), 3u);
      EXPECT_EQ(out[0].shape(), (Shape{1, s / 32, s / 32, 255}));  // stride 32 first
      EXPECT_EQ(out[1].shape(), (Shape{1, s / 16, s / 16, 255}));
      EXPECT_EQ(out[2].shape(), (Shape{1, s / 8, s / 8, 255}));
      for (const Tensor& t : out)
        for (float v : t.to_vector()) ASSERT_TRUE(std::isfinite(v));
    }
    EXPECT_EQ(model->downsample_ratios(), (std::vector<int>{32, 16, 8}));
  }
  // Custom masks set the per-level channel count: 2 and 4 anchors, 20 classes.
  DetModelSpec s = spec("MobileNetV1", 20, 3);
  s.anchor_masks = {{7, 8}, {2, 3, 4, 5}, {0, 1, 6}};
  auto model = build_det_model(s);
  model->eval();
  const auto out = model->forward(Tensor::randn({2, 64, 96, 3}, 5));
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0].shape(), (Shape{2, 2, 3, 50}));
  EXPECT_EQ(out[1].shape(), (Shape{2, 4, 6, 100}));
  EXPECT_EQ(out[2].shape(), (Shape{2, 8, 12, 75}));
  EXPECT_EQ(model->anchor_masks(), s.anchor_masks);
  EXPECT_EQ(model->anchors().size(), 9u);
  EXPECT_EQ(model->num_classes(), 20);
}

// ------------------------------------------------------------------ initialisation
TEST(DetModels, InitialisationFollowsPaddle) {
  for (const char* bb : {"DarkNet53", "MobileNetV1"}) {
    SCOPED_TRACE(bb);
    auto p = by_name(initialised(bb));
    // Sample std within 4 standard errors (1 / sqrt(2n) relative) of the rule's.
    auto expect_std = [&](const std::string& key, double want) {
      ASSERT_TRUE(p.count(key)) << key;
      const auto v = p[key].to_vector();
      EXPECT_NEAR(sample_std(v), want, 4 * want / std::sqrt(2.0 * (double)v.size())) << key;
    };
    std::vector<std::pair<std::string, double>> stds = {
        // Paddle's Conv2D default: sqrt(2 / (k * k * in_channels))
        {"neck.yolo_block.0.conv_module.conv1.conv.weight", std::sqrt(2.0 / (9 * 512))},
        {"neck.yolo_transition.1.conv.weight", std::sqrt(2.0 / 256)},
        {"yolo_head.yolo_output.0.weight", std::sqrt(2.0 / 1024)},
        {"yolo_head.yolo_output.2.weight", std::sqrt(2.0 / 256)}};
    if (std::string(bb) == "DarkNet53") {
      stds.push_back({"backbone.conv0.conv.weight", std::sqrt(2.0 / 27)});
      stds.push_back({"backbone.stage.4.stage.4.3.conv2.conv.weight", std::sqrt(2.0 / (9 * 512))});
      stds.push_back({"backbone.stage.2.downsample.conv_bn_layer.conv.weight", std::sqrt(2.0 / (9 * 256))});
    } else {  // KaimingNormal: fan_in = (in_channels / groups) * k * k
      stds.push_back({"backbone.conv1._conv.weight", std::sqrt(2.0 / 27)});
      stds.push_back({"backbone.conv6._depthwise_conv._conv.weight", std::sqrt(2.0 / 9)});
      stds.push_back({"backbone.conv6._pointwise_conv._conv.weight", std::sqrt(2.0 / 1024)});
    }
    for (auto& [k, v] : stds) expect_std(k, v);
    // Constants: BN weight 1, bias 0, _mean 0, _variance 1; head bias 0.
    int constants = 0;
    for (auto& [n, t] : p) {
      const auto ends = [&](const std::string& suf) {
        return n.size() >= suf.size() && n.compare(n.size() - suf.size(), suf.size(), suf) == 0;
      };
      float want = -1.f;
      if (ends("norm.weight") || ends("._variance")) want = 1.f;
      if (ends("norm.bias") || ends("._mean") || (n.rfind("yolo_head.", 0) == 0 && ends(".bias"))) want = 0.f;
      if (want < 0.f) continue;
      ++constants;
      for (float x : t.to_vector()) ASSERT_EQ(x, want) << n;
    }
    EXPECT_EQ(constants, (int)p.size() - (std::string(bb) == "DarkNet53" ? 72 : 47) - 3)
        << "all but the conv weights (52 or 27 in the backbone, 20 in the neck, 3 in the head)";
  }
  // The seed decides the weights (MobileNetV1, the cheaper one to initialise).
  auto again = build_det_model(spec("MobileNetV1", 80, 1)), other = build_det_model(spec("MobileNetV1", 80, 2));
  const std::string k = "neck.yolo_block.2.tip.conv.weight";
  const auto want = by_name(initialised("MobileNetV1"))[k].to_vector();
  EXPECT_EQ(by_name(*again)[k].to_vector(), want);
  EXPECT_NE(by_name(*other)[k].to_vector(), want);
}

// ------------------------------------------------------------------ spec validation
TEST(DetModels, BuildDetModelValidatesTheSpec) {
  auto msg = [](const DetModelSpec& s) { return error_of([&] { build_det_model(s); }); };
  DetModelSpec s = spec("ResNet34", 80);
  EXPECT_NE(msg(s).find("model.backbone: 'ResNet34' is not supported (supported: DarkNet53, MobileNetV1)"),
            std::string::npos)
      << msg(s);
  s = spec("DarkNet53", 0);
  EXPECT_NE(msg(s).find("model.num_classes must be >= 1, got 0"), std::string::npos) << msg(s);
  s = spec("DarkNet53", 80);
  s.type = "PPYOLO";
  EXPECT_NE(msg(s).find("model.type: 'PPYOLO' is not supported (supported: YOLOv3)"), std::string::npos) << msg(s);
  s = spec("DarkNet53", 80);
  s.anchor_masks = {{6, 7, 9}, {3, 4, 5}, {0, 1, 2}};
  EXPECT_NE(msg(s).find("model.anchor_masks: index 9 is out of range for 9 anchors"), std::string::npos) << msg(s);
  s.anchor_masks = {{6, 7, 8}, {3, 4, 5}};
  EXPECT_NE(msg(s).find("model.anchor_masks: expected 3 groups"), std::string::npos) << msg(s);
  s.anchor_masks = {{6, 7, 8}, {}, {0, 1, 2}};
  EXPECT_NE(msg(s).find("model.anchor_masks: every group needs an anchor"), std::string::npos) << msg(s);
  s = spec("DarkNet53", 80);
  s.anchors[3] = {30, 0};
  EXPECT_NE(msg(s).find("model.anchors[3]: width and height must be > 0, got [30, 0]"), std::string::npos) << msg(s);
  s = spec("DarkNet53", 80);
  s.where = "architecture";
  s.backbone = "VGG";
  EXPECT_NE(msg(s).find("architecture.backbone: 'VGG'"), std::string::npos) << msg(s);
  // Inputs: channels-last images whose sides are multiples of 32.
  auto model = build_det_model(spec("MobileNetV1", 3));
  EXPECT_NE(error_of([&] {
              model->forward(Tensor::zeros({1, 3, 64, 64}));
            }).find("YOLOv3.forward: images must be f32 [N, H, W, 3] (channels last)"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              model->forward(Tensor::zeros({1, 64, 80, 3}));
            }).find("the input height and width must be multiples of 32"),
            std::string::npos);
}

// ------------------------------------------------------------------ training step, CPU vs CUDA device
namespace {
// loss = sum_k sum(out_k * w_k) with fixed random w_k (every output element matters).
Tensor weighted_loss(const std::vector<Tensor>& outs, uint64_t seed) {
  Tensor loss;
  for (size_t k = 0; k < outs.size(); ++k) {
    const Tensor w = Tensor::randn(outs[k].shape(), seed + k, 1.f, outs[k].device());
    const Tensor l = sum(mul(outs[k], w));
    loss = loss.defined() ? add(loss, l) : l;
  }
  return loss;
}
}  // namespace

TEST(DetModels, ForwardBackwardAgreeOnCpuAndCudaDevices) {
  // Batch 1, 64x64: forward, a weighted sum of the three outputs, backward. Every parameter gets a
  // finite, non-zero gradient on the CPU; without a CUDA device the rest is skipped.
  //  - Eval mode (running statistics, as initialised): under emulation the devices run the same
  //    arithmetic (convs are the CPU's; BN, LeakyReLU, ReLU, concat and the nearest upsample kernels
  //    match the CPU's bit for bit), so the outputs are identical (within 1e-4 on a real GPU, whose
  //    convs are cuDNN's); gradients agree within 1e-4 (measured 4e-7: reductions in BN's backward
  //    run in another order).
  //  - Training mode (batch statistics): at initialisation and batch 1 this graph is chaotic - C5 is
  //    2x2, so its BNs normalise over 4 values, and pre-activations within rounding of 0 fall on the
  //    other side of a ReLU / LeakyReLU kink. On the CPU alone, a 1e-7 relative perturbation of the
  //    input moves the outputs by ~1e-3 and most gradients by 4-15% (relative L2 norm). So outputs
  //    must agree within max(1e-4, 10 x that sensitivity) (max norm), gradients within max(0.05,
  //    3 x it) (relative L2 norm; measured on the emulated device: at most 0.13 where the
  //    sensitivity is 0.15, and 0.03 where it is 0.001). A wrong kernel differs by O(1); the eval
  //    check above is the sharp one.
  struct Run {
    std::vector<Tensor> outs, grads;
    std::vector<std::string> names;
  };
  auto run = [](DetModel& m, const Tensor& x) {
    Run r;
    m.zero_grad();
    const auto outs = m.forward(x);
    weighted_loss(outs, 31).backward();
    for (const Tensor& o : outs) r.outs.push_back(o.detach().to(Device::cpu()));
    for (auto& [n, t] : m.named_parameters()) {
      EXPECT_TRUE(t.grad().defined()) << n;
      r.grads.push_back(t.grad().to(Device::cpu()));
      r.names.push_back(n);
    }
    return r;
  };
  auto l2_diff = [](const Tensor& a, const Tensor& b) {
    const auto va = a.to_vector(), vb = b.to_vector();
    double d = 0, m = 0;
    for (size_t i = 0; i < va.size() && i < vb.size(); ++i) {
      d += ((double)va[i] - vb[i]) * ((double)va[i] - vb[i]);
      m += (double)va[i] * va[i];
    }
    return m == 0 ? std::sqrt(d) : std::sqrt(d / m);
  };
  for (const char* bb : {"DarkNet53", "MobileNetV1"}) {
    SCOPED_TRACE(bb);
    const Tensor x = Tensor::randn({1, 64, 64, 3}, 12);
    auto cpu = build_det_model(spec(bb, 4, 5));
    const StateDict init = snapshot(*cpu);
    auto copy = [&] {  // the same initialised model, built again
      auto m = std::make_shared<YOLOv3>(spec(bb, 4, 5));
      m->load_state_dict(init);
      return m;
    };
    const Run ref = run(*cpu, x);  // training mode
    ASSERT_EQ(ref.outs.size(), 3u);
    EXPECT_EQ(ref.outs[0].shape(), (Shape{1, 2, 2, 27}));
    EXPECT_EQ(ref.outs[2].shape(), (Shape{1, 8, 8, 27}));
    for (size_t i = 0; i < ref.grads.size(); ++i) {
      double mx = 0;
      for (float v : ref.grads[i].to_vector()) {
        ASSERT_TRUE(std::isfinite(v)) << ref.names[i];
        mx = std::max(mx, (double)std::fabs(v));
      }
      EXPECT_GT(mx, 0.0) << ref.names[i];
    }
    if (!cuda_available()) continue;
    auto gpu = copy();
    gpu->to(Device::cuda(0));
    {  // eval first, while the running statistics are the initial ones on both devices
      auto cpu_eval = copy();
      cpu_eval->eval();
      gpu->eval();
      const Run a = run(*cpu_eval, x), b = run(*gpu, x.to(Device::cuda(0)));
      for (size_t i = 0; i < 3; ++i) {
#if defined(ENGINE_CUDA_EMULATED)
        EXPECT_EQ(a.outs[i].to_vector(), b.outs[i].to_vector()) << "eval output " << i;
#else
        EXPECT_LE(rel_diff(a.outs[i], b.outs[i]), 1e-4) << "eval output " << i;  // cuDNN's convs
#endif
      }
      ASSERT_EQ(a.grads.size(), b.grads.size());
      for (size_t i = 0; i < a.grads.size(); ++i) EXPECT_LE(rel_diff(a.grads[i], b.grads[i]), 1e-4) << a.names[i];
      gpu->train();
    }
    const Run dev = run(*gpu, x.to(Device::cuda(0)));
    auto cpu2 = copy();
    const Run sens = run(*cpu2, add(x, mul(x, Tensor::randn(x.shape(), 99, 1e-7f))));
    ASSERT_EQ(dev.outs.size(), 3u);
    for (size_t i = 0; i < 3; ++i) {
      const double tol = std::max(1e-4, 10 * rel_diff(ref.outs[i], sens.outs[i]));
      EXPECT_LE(rel_diff(ref.outs[i], dev.outs[i]), tol) << "output " << i;
    }
    ASSERT_EQ(ref.grads.size(), dev.grads.size());
    for (size_t i = 0; i < ref.grads.size(); ++i) {
      EXPECT_EQ(dev.names[i], ref.names[i]);
      const double tol = std::max(0.05, 3 * l2_diff(ref.grads[i], sens.grads[i]));
      EXPECT_LE(l2_diff(ref.grads[i], dev.grads[i]), tol) << ref.names[i];
    }
    // Running statistics were updated alike.
    auto sc = by_name(*cpu), sg = by_name(*gpu);
    for (const char* rv : {"neck.yolo_block.2.tip.batch_norm._variance", "neck.yolo_block.0.tip.batch_norm._mean"})
      EXPECT_LE(l2_diff(sc[rv], sg[rv]), 1e-2) << rv;
  }
}

// ------------------------------------------------------------------ mixed precision O2
// YOLOv3 (MobileNetV1 and DarkNet53 backbones) with activations in the low type: the forward keeps
// about half the bytes, the head's outputs come back in f32, and outputs and gradients stay close
// to the f32 model's (tests/harness/mixed_step.h).
TEST(DetModels, O2StoresActivationsInTheLowTypeAndStaysCloseToF32) {
  const Tensor x = Tensor::randn({2, 64, 64, 3}, 6);
  for (const std::string backbone : {"MobileNetV1", "DarkNet53"}) {
    SCOPED_TRACE(backbone);
    auto step = [&](Precision prec, AmpLevel level) {
      auto model = build_det_model(spec(backbone, 4, 3));
      return engine::testing::mixed_precision_step(
          *model, prec, level, x, [](const std::vector<Tensor>& outs) { return weighted_loss(outs, 21); },
          [](const std::string&) { return true; });
    };
    engine::testing::expect_o2_close_to_f32(step, {5e-3, 5e-2, 2e-2, 1e-1}, 2.0);
  }
}
