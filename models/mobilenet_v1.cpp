// MobileNetV1 (PaddleDetection mobilenet_v1.py, scale 1.0) on engine ops; layout, names and inits in
// models/mobilenet_v1.h. Tested by tests/test_det_models.cpp.
#include "models/mobilenet_v1.h"

#include <cmath>

namespace engine::nn {

MobileConvBNLayer::MobileConvBNLayer(int in_channels, int out_channels, int kernel, int stride, int padding, int groups)
    : Layer("ConvBNLayer") {
  Conv2dOptions o;
  o.stride = stride;
  o.padding = padding;
  o.groups = groups;
  o.bias = false;
  o.weight_std = std::sqrt(2.f / (float)((in_channels / groups) * kernel * kernel));  // KaimingNormal
  conv_ = register_module("_conv", std::make_shared<Conv2d>(in_channels, out_channels, kernel, o));
  bn_ = register_module("_batch_norm", std::make_shared<BatchNorm2d>(out_channels));
}

Tensor MobileConvBNLayer::forward(const Tensor& x) { return bn_->forward(conv_->forward(x), BnActivation::relu()); }

DepthwiseSeparable::DepthwiseSeparable(int in_channels, int out_channels, int stride) : Layer("DepthwiseSeparable") {
  depthwise_ = register_module(
      "_depthwise_conv", std::make_shared<MobileConvBNLayer>(in_channels, in_channels, 3, stride, 1, in_channels));
  pointwise_ =
      register_module("_pointwise_conv", std::make_shared<MobileConvBNLayer>(in_channels, out_channels, 1, 1, 0));
}

Tensor DepthwiseSeparable::forward(const Tensor& x) { return pointwise_->forward(depthwise_->forward(x)); }

MobileNetV1::MobileNetV1() : DetBackbone("MobileNet") {
  conv1_ = register_module("conv1", std::make_shared<MobileConvBNLayer>(3, 32, 3, 2, 1));
  struct Block {
    const char* name;
    int in, out, stride;
  };
  const Block table[] = {{"conv2_1", 32, 64, 1},   {"conv2_2", 64, 128, 2},  {"conv3_1", 128, 128, 1},
                         {"conv3_2", 128, 256, 2}, {"conv4_1", 256, 256, 1}, {"conv4_2", 256, 512, 2},
                         {"conv5_1", 512, 512, 1}, {"conv5_2", 512, 512, 1}, {"conv5_3", 512, 512, 1},
                         {"conv5_4", 512, 512, 1}, {"conv5_5", 512, 512, 1}, {"conv5_6", 512, 1024, 2},
                         {"conv6", 1024, 1024, 1}};
  for (const Block& b : table)
    blocks_.push_back(register_module(b.name, std::make_shared<DepthwiseSeparable>(b.in, b.out, b.stride)));
}

std::vector<Tensor> MobileNetV1::forward(const Tensor& images) {
  ENGINE_CHECK(images.dim() == 4 && images.size(3) == 3 && is_float_storage(images.dtype()),
               "MobileNet.forward: images must be [N, H, W, 3] (channels last) in f32, or bf16 / f16 at O2, got ",
               images.describe());
  Tensor y = conv1_->forward(images);
  std::vector<Tensor> outs;
  for (size_t i = 0; i < blocks_.size(); ++i) {
    y = blocks_[i]->forward(y);
    if (i + 1 == 4 || i + 1 == 6 || i + 1 == 13) outs.push_back(y);  // feature_maps [4, 6, 13]
  }
  return outs;
}

}  // namespace engine::nn
