// STDC1/STDC2 backbone on engine ops (PaddleSeg paddleseg/models/backbones/stdcnet.py).
// See models/stdcnet.h. Tested by tests/test_models.cpp (parameter counts, key names, init).
#include "models/stdcnet.h"

#include "engine/ops/pool.h"
#include "engine/ops/shape_ops.h"

namespace engine::nn {

namespace {
constexpr float kStdcConvStd = 0.001f;  // STDCNet.init_weight
}

CatBottleneck::CatBottleneck(int in_channels, int out_channels, int stride) : Layer("CatBottleneck"), stride_(stride) {
  ENGINE_CHECK(out_channels % 8 == 0 && (stride == 1 || stride == 2), "CatBottleneck: out_channels ", out_channels,
               " must be a multiple of 8 and stride 1 or 2, got stride ", stride);
  const int half = out_channels / 2;
  // Paddle registers conv_list before avd_layer; the order only affects state_dict ordering.
  conv_list_ = register_module("conv_list", std::make_shared<ModuleList<StdcConvBNRelu>>());
  conv_list_->add(std::make_shared<StdcConvBNRelu>(in_channels, half, 1, 1, kStdcConvStd));
  conv_list_->add(std::make_shared<StdcConvBNRelu>(half, out_channels / 4, 3, 1, kStdcConvStd));
  conv_list_->add(std::make_shared<StdcConvBNRelu>(out_channels / 4, out_channels / 8, 3, 1, kStdcConvStd));
  conv_list_->add(std::make_shared<StdcConvBNRelu>(out_channels / 8, out_channels / 8, 3, 1, kStdcConvStd));
  if (stride == 2) {
    Conv2dOptions o;  // depthwise 3x3 s2, BN, no ReLU
    o.stride = 2;
    o.padding = 1;
    o.groups = half;
    o.bias = false;
    o.weight_std = kStdcConvStd;
    avd_layer_ = register_module("avd_layer", std::make_shared<Sequential>());
    avd_layer_->add(std::make_shared<Conv2d>(half, half, 3, o));
    avd_layer_->add(std::make_shared<BatchNorm2d>(half));
  }
}

Tensor CatBottleneck::forward(const Tensor& x) {
  const Tensor out1 = (*conv_list_)[0].forward(x);
  const Tensor c1 = (*conv_list_)[1].forward(stride_ == 2 ? avd_layer_->forward(out1) : out1);
  const Tensor c2 = (*conv_list_)[2].forward(c1);
  const Tensor c3 = (*conv_list_)[3].forward(c2);
  const Tensor skip = stride_ == 2 ? avg_pool2d(out1, 3, 2, 1, /*exclusive=*/true) : out1;
  return concat({skip, c1, c2, c3}, 3);
}

STDCNet::STDCNet(std::vector<int> layers, int base) : Module("STDCNet") {
  ENGINE_CHECK(layers.size() == 3, "STDCNet: layers must list 3 stages, got ", layers.size());
  feat_channels_ = {base / 2, base, base * 4, base * 8, base * 16};
  features_ = register_module("features", std::make_shared<ModuleList<Layer>>());
  features_->add(std::make_shared<StdcConvBNRelu>(3, base / 2, 3, 2, kStdcConvStd));
  stage_ends_.push_back(0);
  features_->add(std::make_shared<StdcConvBNRelu>(base / 2, base, 3, 2, kStdcConvStd));
  stage_ends_.push_back(1);
  int in = base;
  for (int s = 0; s < 3; ++s) {
    ENGINE_CHECK(layers[s] >= 1, "STDCNet: stage ", s + 3, " needs at least one block, got ", layers[s]);
    const int out = base * (4 << s);
    for (int b = 0; b < layers[s]; ++b) {
      features_->add(std::make_shared<CatBottleneck>(b == 0 ? in : out, out, b == 0 ? 2 : 1));
    }
    in = out;
    stage_ends_.push_back((int)features_->size() - 1);
  }
}

std::vector<Tensor> STDCNet::forward(const Tensor& x) {
  std::vector<Tensor> maps;
  Tensor y = x;
  size_t next = 0;
  for (size_t k = 0; k < features_->size(); ++k) {
    y = (*features_)[k].forward(y);
    if ((int)k == stage_ends_[next]) {
      maps.push_back(y);
      ++next;
    }
  }
  return maps;
}

std::shared_ptr<STDCNet> make_stdcnet(const std::string& name, const std::string& where) {
  if (name == "STDC1") return std::make_shared<STDCNet>(std::vector<int>{2, 2, 2});
  if (name == "STDC2") return std::make_shared<STDCNet>(std::vector<int>{4, 5, 3});
  fail(where, ": backbone '", name, "' is not supported (supported: STDC1, STDC2)");
}

}  // namespace engine::nn
