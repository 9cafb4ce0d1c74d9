// PP-LiteSeg (PaddleSeg models/pp_liteseg.py + layers/tensor_fusion.py)
// on an STDC backbone, built only from engine ops:
//   backbone (STDCNet) -> maps at backbone_indices (x8, x16, x32: 256/512/1024 channels)
//   ppseg_head.cm (SPPM): for each bin b: adaptive avg pool b -> ConvBNReLU 1x1 (with bias) -> bilinear
//       up to the x32 size; the branches are summed, then ConvBNReLU 3x3 (with bias)
//   ppseg_head.arm_list.{2,1,0} (UAFM_SpAtten), deep to shallow: x = conv_x(low); y = resize(high to
//       x's size); alpha = sigmoid(ConvBN(ConvBNReLU(concat[mean_c x, max_c x, mean_c y, max_c y])));
//       out = conv_out(x * alpha + y * (_scale - alpha)), _scale a frozen [1] parameter equal to 1
//   seg_heads.{i}: ConvBNReLU 3x3 (no bias) -> Conv2D 1x1 (no bias) -> bilinear to the input size
// Training returns the 3 logits [x8 main, x16, x32]; eval only the x8 one. Every resize is bilinear
// with align_corners=false (UAFM's follows resize_mode). Names are PaddleSeg's (§2.8); the head has
// Paddle's default init (§2.7), the backbone STDC's (§1.5).
// build_seg_model() (models/module.h) validates the spec and builds this. Tested by tests/test_models.cpp.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "models/layers.h"
#include "models/model_spec.h"
#include "models/stdcnet.h"

namespace engine::nn {

// SPPM (PaddleSeg PPContextModule).
class PPContextModule : public Module {
 public:
  PPContextModule(int in_channels, int inter_channels, int out_channels, const std::vector<int>& bin_sizes);
  Tensor forward(const Tensor& x);

 private:
  std::shared_ptr<ModuleList<Sequential>> stages_;
  std::shared_ptr<ConvBN> conv_out_;
};

// UAFM with spatial attention (PaddleSeg UAFM_SpAtten); low has x_ch channels, high y_ch.
class UafmSpAtten : public Module {
 public:
  UafmSpAtten(int x_ch, int y_ch, int out_ch, int ksize, std::string resize_mode);
  Tensor forward(const Tensor& low, const Tensor& high);
  const Tensor& scale() const { return scale_; }

 private:
  std::shared_ptr<ConvBN> conv_x_, conv_out_;
  std::shared_ptr<Sequential> conv_xy_atten_;
  Tensor scale_;
  std::string resize_mode_;
};

class PPLiteSegHead : public Module {
 public:
  // in_channels: backbone channels at the selected indices (shallow to deep).
  PPLiteSegHead(const std::vector<int>& in_channels, const std::vector<int>& arm_out_chs, int cm_out_ch,
                const std::vector<int>& cm_bin_sizes, const std::string& resize_mode);
  // feats shallow to deep -> fused maps shallow to deep (arm_out_chs channels).
  std::vector<Tensor> forward(const std::vector<Tensor>& feats);

 private:
  std::shared_ptr<PPContextModule> cm_;
  std::shared_ptr<ModuleList<UafmSpAtten>> arm_list_;
};

class SegHead : public Layer {
 public:
  SegHead(int in_channels, int mid_channels, int num_classes);
  Tensor forward(const Tensor& x) override;

 private:
  std::shared_ptr<ConvBN> conv_;
  std::shared_ptr<Conv2d> conv_out_;
};

class PPLiteSeg : public SegModel {
 public:
  // `spec` must be valid (build_seg_model checks it); weights stay zero until init_parameters().
  explicit PPLiteSeg(const SegModelSpec& spec);
  std::vector<Tensor> forward(const Tensor& images) override;
  int64_t num_classes() const override { return num_classes_; }
  STDCNet& backbone() const { return *backbone_; }

 private:
  std::shared_ptr<STDCNet> backbone_;
  std::shared_ptr<PPLiteSegHead> head_;
  std::shared_ptr<ModuleList<SegHead>> seg_heads_;
  std::vector<int> backbone_indices_;
  int64_t num_classes_;
};

}  // namespace engine::nn
