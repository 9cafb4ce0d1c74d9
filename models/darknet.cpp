// DarkNet-53 (PaddleDetection darknet.py) on engine ops; layout, names and inits in models/darknet.h.
// Tested by tests/test_det_models.cpp.
#include "models/darknet.h"

#include <string>

#include "engine/ops/elementwise.h"

namespace engine::nn {

namespace {
constexpr int kStages[5] = {1, 2, 8, 8, 4};  // DarkNet_cfg[53]
}  // namespace

DarkConvBNLayer::DarkConvBNLayer(int ch_in, int ch_out, int kernel, int stride, int padding, BnActivation act)
    : Layer("ConvBNLayer"), act_(act) {
  Conv2dOptions o;
  o.stride = stride;
  o.padding = padding;
  o.bias = false;  // Paddle default init (Conv2dOptions::weight_std < 0)
  conv_ = register_module("conv", std::make_shared<Conv2d>(ch_in, ch_out, kernel, o));
  bn_ = register_module("batch_norm", std::make_shared<BatchNorm2d>(ch_out));
}

Tensor DarkConvBNLayer::forward(const Tensor& x) { return bn_->forward(conv_->forward(x), act_); }

DarkDownSample::DarkDownSample(int ch_in, int ch_out) : Layer("DownSample") {
  conv_bn_layer_ = register_module("conv_bn_layer", std::make_shared<DarkConvBNLayer>(ch_in, ch_out, 3, 2, 1));
}

Tensor DarkDownSample::forward(const Tensor& x) { return conv_bn_layer_->forward(x); }

DarkBasicBlock::DarkBasicBlock(int ch_in, int ch_out) : Layer("BasicBlock") {
  conv1_ = register_module("conv1", std::make_shared<DarkConvBNLayer>(ch_in, ch_out, 1, 1, 0));
  conv2_ = register_module("conv2", std::make_shared<DarkConvBNLayer>(ch_out, ch_out * 2, 3, 1, 1));
}

Tensor DarkBasicBlock::forward(const Tensor& x) { return add(x, conv2_->forward(conv1_->forward(x))); }

DarkBlocks::DarkBlocks(int index, int ch_in, int ch_out, int count, int down_out) : Layer("Blocks") {
  blocks_.push_back(register_module("basicblock0", std::make_shared<DarkBasicBlock>(ch_in, ch_out)));
  if (count > 1) {
    NameScope& path = register_module("stage", std::make_shared<NameScope>())->scope(std::to_string(index));
    for (int j = 1; j < count; ++j)
      blocks_.push_back(path.add(std::to_string(j), std::make_shared<DarkBasicBlock>(ch_out * 2, ch_out)));
  }
  if (down_out > 0) downsample_ = register_module("downsample", std::make_shared<DarkDownSample>(ch_out * 2, down_out));
}

Tensor DarkBlocks::forward(const Tensor& x) {
  Tensor y = x;
  for (auto& b : blocks_) y = b->forward(y);
  return y;
}

DarkNet53::DarkNet53() : DetBackbone("DarkNet") {
  conv0_ = register_module("conv0", std::make_shared<DarkConvBNLayer>(3, 32, 3, 1, 1));
  downsample0_ = register_module("downsample0", std::make_shared<DarkDownSample>(32, 64));
  auto stage = register_module("stage", std::make_shared<NameScope>());
  const int ch_in[5] = {64, 128, 256, 512, 1024};
  for (int i = 0; i < 5; ++i) {
    const int ch_out = 32 << i;
    const int down_out = i < 4 ? 32 << (i + 2) : 0;
    stages_.push_back(
        stage->add(std::to_string(i), std::make_shared<DarkBlocks>(i, ch_in[i], ch_out, kStages[i], down_out)));
  }
}

std::vector<Tensor> DarkNet53::forward(const Tensor& images) {
  ENGINE_CHECK(images.dim() == 4 && images.size(3) == 3 && is_float_storage(images.dtype()),
               "DarkNet.forward: images must be [N, H, W, 3] (channels last) in f32, or bf16 / f16 at O2, got ",
               images.describe());
  Tensor out = downsample0_->forward(conv0_->forward(images));
  std::vector<Tensor> feats;
  for (size_t i = 0; i < stages_.size(); ++i) {
    out = stages_[i]->forward(out);
    if (i >= 2) feats.push_back(out);  // return_idx [2, 3, 4]
    if (stages_[i]->downsample()) out = stages_[i]->downsample()->forward(out);
  }
  return feats;
}

}  // namespace engine::nn
