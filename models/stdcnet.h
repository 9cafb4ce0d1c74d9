// STDC backbone (STDC1 / STDC2) for segmentation: PaddleSeg backbones/stdcnet.py with type "cat".
// Input [N, H, W, 3]; forward returns the five maps
// [x2 (32 ch), x4 (64), x8 (256), x16 (512), x32 (1024)], each stride-2 step giving ceil(size/2).
// Names: features.{k}.conv / .bn, features.{k}.conv_list.{j}.conv / .bn, features.{k}.avd_layer.{0,1}
// (§2.8). Init: every conv weight ~ Normal(0, 0.001), BN 1/0 (§1.5). Tested by tests/test_models.cpp.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "models/layers.h"

namespace engine::nn {

// CatBottleneck(in, out, block_num 4, stride): 1x1 in->out/2 ("out1"), then 3x3 convs out/2->out/4,
// out/4->out/8, out/8->out/8, concatenated with out1 along channels (out channels, no residual, no
// activation after the concat). Stride 2: a depthwise 3x3 s2 conv + BN (no ReLU) ("avd_layer")
// before the first 3x3 conv, and out1 enters the concat through a 3x3 s2 pad-1 exclusive average
// pool (the 1x1 output is pooled, not the block input).
class CatBottleneck : public Layer {
 public:
  CatBottleneck(int in_channels, int out_channels, int stride);
  Tensor forward(const Tensor& x) override;

 private:
  std::shared_ptr<ModuleList<StdcConvBNRelu>> conv_list_;
  std::shared_ptr<Sequential> avd_layer_;  // null for stride 1
  int stride_;
};

class STDCNet : public Module {
 public:
  // layers: blocks per stage 3/4/5 ({2,2,2} for STDC1, {4,5,3} for STDC2); base 64.
  STDCNet(std::vector<int> layers, int base = 64);
  std::vector<Tensor> forward(const Tensor& x);
  // Channels of the five maps: {base/2, base, 4 base, 8 base, 16 base}.
  const std::vector<int>& feat_channels() const { return feat_channels_; }

 private:
  std::shared_ptr<ModuleList<Layer>> features_;
  std::vector<int> stage_ends_;  // index into features_ of the last layer of each of the 5 maps
  std::vector<int> feat_channels_;
};

// "STDC1" or "STDC2"; anything else is an error naming `where` (e.g. "model.backbone.type").
std::shared_ptr<STDCNet> make_stdcnet(const std::string& name, const std::string& where);

}  // namespace engine::nn
