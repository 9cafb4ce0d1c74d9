// MobileNetV1 (scale 1.0) as PaddleDetection builds it for YOLOv3
// (ppdet/modeling/backbones/mobilenet_v1.py class MobileNet, commit 666f597f;
// configs/yolov3/_base_/yolov3_mobilenet_v1.yml: feature_maps [4, 6, 13], no extra blocks), on engine
// ops, channels-last:
//   conv1                ConvBNLayer 3 -> 32, 3x3 s2 p1                              (stride 2)
//   conv2_1 .. conv6     13 DepthwiseSeparable blocks; block (in, out, stride):
//     conv2_1 (32, 64, 1)   conv2_2 (64, 128, 2)   conv3_1 (128, 128, 1)  conv3_2 (128, 256, 2)
//     conv4_1 (256, 256, 1) conv4_2 (256, 512, 2)  conv5_1..conv5_5 (512, 512, 1)
//     conv5_6 (512, 1024, 2) conv6 (1024, 1024, 1)
//   DepthwiseSeparable = _depthwise_conv: ConvBNLayer in -> in, 3x3, stride s, p1, groups = in
//                        _pointwise_conv: ConvBNLayer in -> out, 1x1 s1 p0
//   forward returns the outputs of blocks 4, 6, 13 (1-based: conv3_2, conv4_2, conv6): 256 ch
//   stride 8, 512 ch stride 16, 1024 ch stride 32.
// ConvBNLayer = Conv2D (no bias, groups) -> BatchNorm2D (momentum 0.9, eps 1e-5) -> ReLU (act='relu',
// the default; relu6 only in the unused extra blocks), the ReLU fused into the batch norm.
// Tensor names are PaddleDetection's state_dict keys under "backbone.", e.g.
//   backbone.conv1._conv.weight                            [32, 3, 3, 3]
//   backbone.conv1._batch_norm._variance                   [32]
//   backbone.conv2_1._depthwise_conv._conv.weight          [32, 1, 3, 3]
//   backbone.conv5_6._pointwise_conv._conv.weight          [1024, 512, 1, 1]
//   backbone.conv6._pointwise_conv._batch_norm.bias        [1024]
// Initialisation: conv weight KaimingNormal (PaddleDetection sets weight_attr initializer=
// KaimingNormal()): Normal(0, sqrt(2 / fan_in)) with fan_in = weight.shape[1] * k * k =
// (in_channels / groups) * k * k (python/paddle/nn/initializer/kaiming.py, initializer.py
// _compute_fans), so depthwise 3x3 weights get sqrt(2 / 9). BN weight 1, bias 0, _mean 0, _variance 1
// (paddle.nn.BatchNorm2D defaults). Conv and BN have L2Decay(0) (conv_decay = norm_decay = 0): the
// optimizer's concern, not recorded here.
// Tested by tests/test_det_models.cpp.
#pragma once
#include <memory>
#include <vector>

#include "models/det_model.h"
#include "models/layers.h"

namespace engine::nn {

// PaddleDetection mobilenet_v1.py ConvBNLayer: ._conv (KaimingNormal) / ._batch_norm, then ReLU.
class MobileConvBNLayer : public Layer {
 public:
  MobileConvBNLayer(int in_channels, int out_channels, int kernel, int stride, int padding, int groups = 1);
  Tensor forward(const Tensor& x) override;

 private:
  std::shared_ptr<Conv2d> conv_;
  std::shared_ptr<BatchNorm2d> bn_;
};

class DepthwiseSeparable : public Layer {
 public:
  DepthwiseSeparable(int in_channels, int out_channels, int stride);
  Tensor forward(const Tensor& x) override;

 private:
  std::shared_ptr<MobileConvBNLayer> depthwise_, pointwise_;
};

class MobileNetV1 : public DetBackbone {
 public:
  MobileNetV1();
  std::vector<Tensor> forward(const Tensor& images) override;  // blocks 4, 6, 13
  std::vector<int> out_channels() const override { return {256, 512, 1024}; }

 private:
  std::shared_ptr<MobileConvBNLayer> conv1_;
  std::vector<std::shared_ptr<DepthwiseSeparable>> blocks_;
};

}  // namespace engine::nn
