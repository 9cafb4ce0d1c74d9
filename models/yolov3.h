// YOLOv3 (PaddleDetection ppdet/modeling/architectures/yolo.py YOLOv3 = backbone + neck + yolo_head,
// necks/yolo_fpn.py YOLOv3FPN, heads/yolo_head.py YOLOv3Head, commit 666f597f)
// on engine ops, channels-last (NHWC, docs/ARCHITECTURE.md):
//   backbone   DarkNet53 or MobileNetV1 -> C3, C4, C5 (256, 512, 1024 ch; strides 8, 16, 32)
//   neck       YOLOv3FPN, coarse to fine, i = 0, 1, 2 on C5, C4, C3 (c_i = 512 >> i):
//                x = i == 0 ? C5 : concat([route, C_{5-i}], channels)   (route first)
//                yolo_block.i (YoloDetBlock(ch_in, c_i)): conv_module = conv0 1x1 ch_in -> c,
//                  conv1 3x3 c -> 2c, conv2 1x1 2c -> c, conv3 3x3 c -> 2c, route 1x1 2c -> c;
//                  tip 3x3 c -> 2c; outputs (route, tip)
//                for i < 2: route = nearest 2x upsample(yolo_transition.i(route)), a ConvBNLayer
//                  1x1 c -> c/2; upsample = F.interpolate(scale_factor=2) (mode nearest,
//                  align_corners False): engine resize_nearest_scale(x, 2, 2)
//              every conv is darknet.py's ConvBNLayer (no bias, BN, LeakyReLU 0.1; padding (k-1)/2).
//              Tips: 1024, 512, 256 channels.
//   yolo_head  yolo_output.i: Conv2D 1x1 with bias, tip_i -> len(anchor_masks[i]) * (5 + C), no BN,
//              no activation.
// forward(images [N, H, W, 3]) returns the three raw head outputs, stride 32 first:
// [N, H/32, W/32, A0*(5+C)], [N, H/16, W/16, A1*(5+C)], [N, H/8, W/8, A2*(5+C)] (A_i =
// anchor_masks[i].size(), 3 by default: 255 channels for COCO). This is Paddle's NCHW output
// [N, A*(5+C), H, W] transposed to channels-last; channel a*(5+C) + k of anchor slot a holds k = 0 tx,
// 1 ty, 2 tw, 3 th, 4 objectness, 5.. class logits. H and W must be multiples of 32 (otherwise the
// upsampled route and the backbone map differ in size, as in Paddle).
// Names: PaddleDetection's state_dict keys, e.g. neck.yolo_block.0.conv_module.conv0.conv.weight
// [512, 1024, 1, 1], neck.yolo_block.1.conv_module.conv0.conv.weight [256, 768, 1, 1],
// neck.yolo_block.2.tip.batch_norm._mean [256], neck.yolo_transition.0.conv.weight [256, 512, 1, 1],
// yolo_head.yolo_output.0.weight [255, 1024, 1, 1], yolo_head.yolo_output.2.bias [255]. (Paddle lists
// yolo_transition.i right after yolo_block.i; here all blocks come first: only the order differs.)
// Initialisation (PaddleDetection sets no initializer in the neck and head, so Paddle's defaults):
// neck convs as darknet.h (Normal(0, sqrt(2 / (k*k*in_channels))), BN 1/0/0/1); head conv weight
// Normal(0, sqrt(2 / in_channels)) (paddle.nn.Conv2D's default, k = 1), head bias 0 (Paddle's default
// bias initializer; yolo_head.py only sets L2Decay(0) on it: no weight decay, the optimizer's
// concern). Backbone inits: models/darknet.h, models/mobilenet_v1.h.
// build_det_model() (models/det_model.h) validates a DetModelSpec and builds this.
// Tested by tests/test_det_models.cpp.
#pragma once
#include <array>
#include <memory>
#include <vector>

#include "models/darknet.h"
#include "models/det_model.h"

namespace engine::nn {

class YoloDetBlock : public Module {
 public:
  YoloDetBlock(int ch_in, int channel);
  struct Out {
    Tensor route, tip;
  };
  Out forward(const Tensor& x);

 private:
  std::vector<std::shared_ptr<DarkConvBNLayer>> conv_module_;  // conv0, conv1, conv2, conv3, route
  std::shared_ptr<DarkConvBNLayer> tip_;
};

class YOLOv3FPN : public Module {
 public:
  explicit YOLOv3FPN(const std::vector<int>& in_channels = {256, 512, 1024});
  // Backbone maps shallow to deep -> tips deep to shallow (1024, 512, 256 channels).
  std::vector<Tensor> forward(const std::vector<Tensor>& feats);
  std::vector<int> out_channels() const;

 private:
  std::vector<std::shared_ptr<YoloDetBlock>> blocks_;
  std::vector<std::shared_ptr<DarkConvBNLayer>> transitions_;
};

class YOLOv3Head : public Module {
 public:
  // in_channels: the neck's tips (1024, 512, 256); one output per entry of out_channels.
  YOLOv3Head(const std::vector<int>& in_channels, const std::vector<int>& out_channels);
  std::vector<Tensor> forward(const std::vector<Tensor>& feats);

 private:
  std::shared_ptr<ModuleList<Conv2d>> yolo_output_;
};

class YOLOv3 : public DetModel {
 public:
  // `spec` must be valid (build_det_model checks it); weights stay zero until init_parameters().
  explicit YOLOv3(const DetModelSpec& spec);
  std::vector<Tensor> forward(const Tensor& images) override;
  int64_t num_classes() const override { return num_classes_; }
  const std::vector<std::array<int, 2>>& anchors() const override { return anchors_; }
  const std::vector<std::vector<int>>& anchor_masks() const override { return anchor_masks_; }
  std::vector<int> downsample_ratios() const override { return {32, 16, 8}; }
  DetBackbone& backbone() const { return *backbone_; }
  YOLOv3FPN& neck() const { return *neck_; }
  YOLOv3Head& head() const { return *head_; }

 private:
  std::shared_ptr<DetBackbone> backbone_;
  std::shared_ptr<YOLOv3FPN> neck_;
  std::shared_ptr<YOLOv3Head> head_;
  int64_t num_classes_;
  std::vector<std::array<int, 2>> anchors_;
  std::vector<std::vector<int>> anchor_masks_;
};

}  // namespace engine::nn
