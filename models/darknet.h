// DarkNet-53 as PaddleDetection builds it (ppdet/modeling/backbones/darknet.py, commit 666f597f),
// on engine ops, channels-last:
//   conv0         ConvBNLayer 3 -> 32, 3x3 s1 p1
//   downsample0   DownSample 32 -> 64 (ConvBNLayer 3x3 s2 p1)
//   stage.i       Blocks: stages [1, 2, 8, 8, 4] BasicBlocks, i = 0..4, at 64 * 2^i channels
//   stage.i.downsample (i = 0..3): DownSample 64 * 2^i -> 128 * 2^i after stage i
//   forward returns stages 2, 3, 4 (return_idx [2, 3, 4]): C3 256 ch stride 8, C4 512 ch stride 16,
//   C5 1024 ch stride 32.
// ConvBNLayer = Conv2D (no bias, padding as given) -> BatchNorm2D (momentum 0.9, eps 1e-5) ->
// LeakyReLU(0.1), the activation fused into the batch norm (BatchNormArgs::act). BasicBlock(c_in, c):
// conv1 1x1 c_in -> c, conv2 3x3 c -> 2c, out = input + conv2 (plain add, no activation after it).
// Tensor names are PaddleDetection's state_dict keys under "backbone.", e.g.
//   backbone.conv0.conv.weight                          [32, 3, 3, 3]
//   backbone.downsample0.conv_bn_layer.batch_norm._mean [64]
//   backbone.stage.0.basicblock0.conv1.conv.weight      [32, 64, 1, 1]
//   backbone.stage.2.stage.2.7.conv2.batch_norm.weight  [256]   (Blocks adds block j >= 1 as "stage.i.j")
//   backbone.stage.3.downsample.conv_bn_layer.conv.weight [1024, 512, 3, 3]
// (Paddle lists the four stage.i.downsample layers after all stages; here each sits in its stage's
// scope, so only the state_dict order differs.)
// Initialisation (PaddleDetection sets none for these layers, so Paddle's defaults apply): conv weight
// Normal(0, sqrt(2 / (k*k*in_channels))) (paddle.nn.Conv2D's default initializer,
// python/paddle/nn/layer/conv.py); BN weight 1, bias 0, _mean 0, _variance 1 (paddle.nn.BatchNorm2D;
// ppdet/modeling/ops.py::batch_norm passes initializer=None). BN weight/bias have L2Decay(0) in
// PaddleDetection (no weight decay): the optimizer's concern, not recorded here.
// Tested by tests/test_det_models.cpp.
#pragma once
#include <memory>
#include <vector>

#include "models/det_model.h"
#include "models/layers.h"

namespace engine::nn {

// PaddleDetection darknet.py ConvBNLayer: .conv / .batch_norm, then the activation (LeakyReLU 0.1 by
// default; YOLOv3's FPN uses it too).
class DarkConvBNLayer : public Layer {
 public:
  DarkConvBNLayer(int ch_in, int ch_out, int kernel, int stride, int padding,
                  BnActivation act = BnActivation::leaky_relu(0.1f));
  Tensor forward(const Tensor& x) override;

 private:
  std::shared_ptr<Conv2d> conv_;
  std::shared_ptr<BatchNorm2d> bn_;
  BnActivation act_;
};

// DownSample: .conv_bn_layer = ConvBNLayer 3x3 stride 2 padding 1.
class DarkDownSample : public Layer {
 public:
  DarkDownSample(int ch_in, int ch_out);
  Tensor forward(const Tensor& x) override;

 private:
  std::shared_ptr<DarkConvBNLayer> conv_bn_layer_;
};

// BasicBlock(ch_in, ch_out): conv1 1x1 ch_in -> ch_out, conv2 3x3 ch_out -> 2*ch_out, input + conv2.
class DarkBasicBlock : public Layer {
 public:
  DarkBasicBlock(int ch_in, int ch_out);
  Tensor forward(const Tensor& x) override;

 private:
  std::shared_ptr<DarkConvBNLayer> conv1_, conv2_;
};

// Blocks `stage.i`: basicblock0 (ch_in -> ch_out -> 2*ch_out), then count-1 BasicBlocks named
// "stage.i.j" (j = 1..count-1; scopes stage -> i -> j); with down_out > 0 also the DarkNet's
// "stage.i.downsample" (2*ch_out -> down_out), which forward() does not run (see downsample()).
class DarkBlocks : public Layer {
 public:
  DarkBlocks(int index, int ch_in, int ch_out, int count, int down_out);
  Tensor forward(const Tensor& x) override;
  DarkDownSample* downsample() const { return downsample_.get(); }

 private:
  std::vector<std::shared_ptr<DarkBasicBlock>> blocks_;
  std::shared_ptr<DarkDownSample> downsample_;
};

class DarkNet53 : public DetBackbone {
 public:
  DarkNet53();
  std::vector<Tensor> forward(const Tensor& images) override;  // C3, C4, C5
  std::vector<int> out_channels() const override { return {256, 512, 1024}; }

 private:
  std::shared_ptr<DarkConvBNLayer> conv0_;
  std::shared_ptr<DarkDownSample> downsample0_;
  std::vector<std::shared_ptr<DarkBlocks>> stages_;
};

}  // namespace engine::nn
