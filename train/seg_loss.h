// The segmentation loss of a config's `loss:` block: loss = sum_i coef_i * L_i(logits_i, labels)
// over the model's logits (PaddleSeg loss_computation, paddleseg/core/train.py). The config
// layer has already expanded the one-type-n-coefs sugar, so terms and coefs have the same length
// as the logits list.
//   CrossEntropyLoss      -> engine::cross_entropy (mean over non-ignored pixels, optional class weights)
//   OhemCrossEntropyLoss  -> engine::ohem_cross_entropy (thresh, min_kept, batch-global selection)
// Options PaddleSeg has but the configs in use do not set (top_k_percent_pixels < 1,
// avg_non_ignore: False, class weights on OHEM) are refused with a clear error rather than ignored.
#pragma once
#include <string>
#include <vector>

#include "engine/tensor.h"
#include "train/config.h"

namespace engine::train {

struct SegLossValues {
  Tensor total;               // scalar, differentiable
  std::vector<Tensor> terms;  // coef_i * L_i, scalars (for logging)
};

class SegLoss {
 public:
  SegLoss(const LossSpec& spec, int64_t num_classes, Device device);
  // upsample: the logits are at their heads' sizes and each loss upsamples them to the labels' size
  // (bilinear, half-pixel: upsampled_cross_entropy; SegModel::set_loss_upsamples); otherwise they
  // are at the labels' size already.
  SegLossValues operator()(const std::vector<Tensor>& logits, const Tensor& labels, bool upsample = false) const;
  size_t num_terms() const { return spec_.terms.size(); }

 private:
  LossSpec spec_;
  std::vector<Tensor> class_weights_;  // per term; undefined = none
};

}  // namespace engine::train
