// YOLOv3 (YOLOv3FPN neck, YOLOv3Head, the model) and build_det_model(), on engine ops only.
// Semantics: PaddleDetection yolo_fpn.py / yolo_head.py / yolo.py;
// see models/yolov3.h. Tested by tests/test_det_models.cpp.
#include "models/yolov3.h"

#include <sstream>
#include <string>

#include "engine/ops/resize.h"
#include "engine/ops/shape_ops.h"
#include "engine/precision.h"
#include "models/mobilenet_v1.h"

namespace engine::nn {

// ------------------------------------------------------------------ neck
YoloDetBlock::YoloDetBlock(int ch_in, int channel) : Module("YoloDetBlock") {
  ENGINE_CHECK(channel % 2 == 0, "YoloDetBlock: channel ", channel, " cannot be divided by 2");
  struct Def {
    const char* name;
    int in, out, k;
  };
  const Def defs[] = {{"conv0", ch_in, channel, 1},
                      {"conv1", channel, channel * 2, 3},
                      {"conv2", channel * 2, channel, 1},
                      {"conv3", channel, channel * 2, 3},
                      {"route", channel * 2, channel, 1}};
  auto conv_module = register_module("conv_module", std::make_shared<NameScope>());
  for (const Def& d : defs)
    conv_module_.push_back(
        conv_module->add(d.name, std::make_shared<DarkConvBNLayer>(d.in, d.out, d.k, 1, (d.k - 1) / 2)));
  tip_ = register_module("tip", std::make_shared<DarkConvBNLayer>(channel, channel * 2, 3, 1, 1));
}

YoloDetBlock::Out YoloDetBlock::forward(const Tensor& x) {
  Tensor route = x;
  for (auto& c : conv_module_) route = c->forward(route);
  return {route, tip_->forward(route)};
}

YOLOv3FPN::YOLOv3FPN(const std::vector<int>& in_channels) : Module("YOLOv3FPN") {
  const int n = (int)in_channels.size();
  ENGINE_CHECK(n >= 1 && n <= 3, "YOLOv3FPN: expected 1 to 3 input levels, got ", n);
  // Scopes "yolo_block" -> i and "yolo_transition" -> i (Paddle: add_sublayer("yolo_block.{i}", ...)).
  auto blocks = register_module("yolo_block", std::make_shared<NameScope>());
  std::shared_ptr<NameScope> transitions;
  for (int i = 0; i < n; ++i) {
    const int channel = 512 >> i;
    const int in_channel = in_channels[n - 1 - i] + (i > 0 ? 512 >> i : 0);
    blocks_.push_back(blocks->add(std::to_string(i), std::make_shared<YoloDetBlock>(in_channel, channel)));
    if (i < n - 1) {
      if (!transitions) transitions = register_module("yolo_transition", std::make_shared<NameScope>());
      transitions_.push_back(
          transitions->add(std::to_string(i), std::make_shared<DarkConvBNLayer>(channel, 256 >> i, 1, 1, 0)));
    }
  }
}

std::vector<int> YOLOv3FPN::out_channels() const {
  std::vector<int> c;
  for (size_t i = 0; i < blocks_.size(); ++i) c.push_back(1024 >> i);
  return c;
}

std::vector<Tensor> YOLOv3FPN::forward(const std::vector<Tensor>& feats) {
  ENGINE_CHECK(feats.size() == blocks_.size(), "YOLOv3FPN.forward: expected ", blocks_.size(), " maps, got ",
               feats.size());
  std::vector<Tensor> tips;
  Tensor route;
  for (size_t i = 0; i < blocks_.size(); ++i) {
    Tensor x = feats[feats.size() - 1 - i];
    if (i > 0) {
      ENGINE_CHECK(route.size(1) == x.size(1) && route.size(2) == x.size(2), "YOLOv3FPN.forward: the upsampled route ",
                   route.describe(), " and the backbone map ", x.describe(),
                   " differ in size (the input height and width must be multiples of 32)");
      x = concat({route, x}, 3);  // route first, backbone feature second
    }
    const YoloDetBlock::Out o = blocks_[i]->forward(x);
    tips.push_back(o.tip);
    if (i + 1 < blocks_.size()) route = resize_nearest_scale(transitions_[i]->forward(o.route), 2.f, 2.f);
  }
  return tips;
}

// ------------------------------------------------------------------ head
YOLOv3Head::YOLOv3Head(const std::vector<int>& in_channels, const std::vector<int>& out_channels)
    : Module("YOLOv3Head") {
  ENGINE_CHECK(in_channels.size() == out_channels.size(), "YOLOv3Head: ", in_channels.size(), " inputs but ",
               out_channels.size(), " outputs");
  yolo_output_ = register_module("yolo_output", std::make_shared<ModuleList<Conv2d>>());
  for (size_t i = 0; i < in_channels.size(); ++i) {
    Conv2dOptions o;  // bias (initialised to 0), Paddle's default weight init
    yolo_output_->add(std::make_shared<Conv2d>(in_channels[i], out_channels[i], 1, o));
  }
}

std::vector<Tensor> YOLOv3Head::forward(const std::vector<Tensor>& feats) {
  ENGINE_CHECK(feats.size() == yolo_output_->size(), "YOLOv3Head.forward: expected ", yolo_output_->size(),
               " maps, got ", feats.size());
  std::vector<Tensor> out;
  for (size_t i = 0; i < feats.size(); ++i) out.push_back((*yolo_output_)[i].forward(feats[i]));
  return out;
}

// ------------------------------------------------------------------ model
namespace {
std::shared_ptr<DetBackbone> make_backbone(const std::string& type) {
  if (type == "DarkNet53") return std::make_shared<DarkNet53>();
  if (type == "MobileNetV1") return std::make_shared<MobileNetV1>();
  fail("YOLOv3: backbone '", type, "' is not supported (supported: DarkNet53, MobileNetV1)");
}
}  // namespace

YOLOv3::YOLOv3(const DetModelSpec& spec)
    : DetModel("YOLOv3"), num_classes_(spec.num_classes), anchors_(spec.anchors), anchor_masks_(spec.anchor_masks) {
  backbone_ = register_module("backbone", make_backbone(spec.backbone));
  neck_ = register_module("neck", std::make_shared<YOLOv3FPN>(backbone_->out_channels()));
  std::vector<int> outs;
  for (const auto& m : anchor_masks_) outs.push_back((int)(m.size() * (size_t)(5 + num_classes_)));
  head_ = register_module("yolo_head", std::make_shared<YOLOv3Head>(neck_->out_channels(), outs));
}

std::vector<Tensor> YOLOv3::forward(const Tensor& images) {
  ENGINE_CHECK(images.dim() == 4 && images.size(3) == 3 && images.dtype() == DType::F32,
               "YOLOv3.forward: images must be f32 [N, H, W, 3] (channels last), got ", images.describe());
  ENGINE_CHECK(images.size(1) % 32 == 0 && images.size(2) % 32 == 0,
               "YOLOv3.forward: the input height and width must be multiples of 32, got ", images.describe());
  // O2 (engine/precision.h): activations in the low type, the head's outputs back in f32 for the
  // loss and the box decoding.
  std::vector<Tensor> out = head_->forward(neck_->forward(backbone_->forward(images.to(activation_dtype()))));
  for (Tensor& t : out) t = t.to(DType::F32);
  return out;
}

// ------------------------------------------------------------------ registry
namespace {

std::string masks_str(const std::vector<std::vector<int>>& masks) {
  std::ostringstream s;
  s << "[";
  for (size_t i = 0; i < masks.size(); ++i) s << (i ? ", " : "") << shape_str(masks[i]);
  s << "]";
  return s.str();
}

void validate(const DetModelSpec& s) {
  ENGINE_CHECK(s.type == "YOLOv3", s.where, ".type: '", s.type, "' is not supported (supported: YOLOv3)");
  ENGINE_CHECK(s.backbone == "DarkNet53" || s.backbone == "MobileNetV1", s.where, ".backbone: '", s.backbone,
               "' is not supported (supported: DarkNet53, MobileNetV1)");
  ENGINE_CHECK(s.num_classes >= 1, s.where, ".num_classes must be >= 1, got ", s.num_classes);
  ENGINE_CHECK(s.num_classes <= (1 << 20), s.where, ".num_classes is implausibly large: ", s.num_classes);
  ENGINE_CHECK(!s.anchors.empty(), s.where, ".anchors: expected at least one anchor");
  for (size_t i = 0; i < s.anchors.size(); ++i)
    ENGINE_CHECK(s.anchors[i][0] > 0 && s.anchors[i][1] > 0, s.where, ".anchors[", i,
                 "]: width and height must be > 0, got [", s.anchors[i][0], ", ", s.anchors[i][1], "]");
  ENGINE_CHECK(s.anchor_masks.size() == 3, s.where, ".anchor_masks: expected 3 groups (one per output, strides 32, ",
               "16, 8), got ", s.anchor_masks.size(), " ", masks_str(s.anchor_masks));
  for (const auto& m : s.anchor_masks) {
    ENGINE_CHECK(!m.empty(), s.where, ".anchor_masks: every group needs an anchor, got ", masks_str(s.anchor_masks));
    for (int a : m)
      ENGINE_CHECK(a >= 0 && (size_t)a < s.anchors.size(), s.where, ".anchor_masks: index ", a, " is out of range for ",
                   s.anchors.size(), " anchors (anchor mask index overflow), got ", masks_str(s.anchor_masks));
  }
}

}  // namespace

std::shared_ptr<DetModel> build_det_model(const DetModelSpec& spec) {
  validate(spec);
  auto model = std::make_shared<YOLOv3>(spec);
  model->init_parameters(spec.seed);
  return model;
}

}  // namespace engine::nn
