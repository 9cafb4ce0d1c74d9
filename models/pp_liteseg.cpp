// PP-LiteSeg (SPPM, UAFM_SpAtten, seg heads) and build_seg_model(), on engine ops only.
// Semantics: PaddleSeg pp_liteseg.py / tensor_fusion.py;
// see models/pp_liteseg.h. Tested by tests/test_models.cpp (parameter counts
// §7.2, key names §2.8, shapes, gradients, BN modes, loading, CPU vs CUDA device).
#include "models/pp_liteseg.h"

#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "engine/ops/resize.h"
#include "engine/ops/shape_ops.h"
#include "engine/precision.h"

namespace engine::nn {

namespace {

// Resizes an NHWC map to h x w (bilinear, align_corners=false, or nearest). Resizing to the same
// size is the identity for both rules (bilinear's source index is then exactly the destination
// index), so that case skips the op and its copy.
Tensor resize_to(const Tensor& x, int64_t h, int64_t w, const std::string& mode) {
  if (x.size(1) == h && x.size(2) == w) return x;
  if (mode == "nearest") return resize_nearest(x, (int)h, (int)w);
  return resize_bilinear(x, (int)h, (int)w, /*align_corners=*/false);
}

}  // namespace

// ------------------------------------------------------------------ SPPM
PPContextModule::PPContextModule(int in_channels, int inter_channels, int out_channels,
                                 const std::vector<int>& bin_sizes)
    : Module("PPContextModule") {
  stages_ = register_module("stages", std::make_shared<ModuleList<Sequential>>());
  for (int b : bin_sizes) {
    auto stage = std::make_shared<Sequential>();
    stage->add(std::make_shared<AdaptiveAvgPool2d>(b, b));
    stage->add(std::make_shared<ConvBN>(in_channels, inter_channels, 1, /*relu=*/true, /*bias=*/true));
    stages_->add(stage);
  }
  conv_out_ = register_module("conv_out", std::make_shared<ConvBN>(inter_channels, out_channels, 3, true, true));
}

Tensor PPContextModule::forward(const Tensor& x) {
  const int64_t h = x.size(1), w = x.size(2);
  Tensor sum;
  for (size_t i = 0; i < stages_->size(); ++i) {
    const Tensor y = resize_to((*stages_)[i].forward(x), h, w, "bilinear");
    sum = sum.defined() ? add(sum, y) : y;
  }
  return conv_out_->forward(sum);
}

// ------------------------------------------------------------------ UAFM
UafmSpAtten::UafmSpAtten(int x_ch, int y_ch, int out_ch, int ksize, std::string resize_mode)
    : Module("UAFM_SpAtten"), resize_mode_(std::move(resize_mode)) {
  conv_x_ = register_module("conv_x", std::make_shared<ConvBN>(x_ch, y_ch, ksize, true, false));
  conv_out_ = register_module("conv_out", std::make_shared<ConvBN>(y_ch, out_ch, 3, true, false));
  conv_xy_atten_ = register_module("conv_xy_atten", std::make_shared<Sequential>());
  conv_xy_atten_->add(std::make_shared<ConvBN>(4, 2, 3, /*relu=*/true, false));
  conv_xy_atten_->add(std::make_shared<ConvBN>(2, 1, 3, /*relu=*/false, false));  // no ReLU (§10)
  scale_ = register_tensor("_scale", {1}, TensorRole::FrozenParameter, Init::constant(1.f));
}

Tensor UafmSpAtten::forward(const Tensor& low, const Tensor& high) {
  const Tensor x = conv_x_->forward(low);
  const Tensor y = resize_to(high, x.size(1), x.size(2), resize_mode_);
  // Channel order [mean x, max x, mean y, max y]; alpha weights x (the low branch), as the code does.
  const Tensor atten =
      concat({mean(x, {3}, true), max(x, {3}, true).values, mean(y, {3}, true), max(y, {3}, true).values}, 3);
  const Tensor alpha = sigmoid(conv_xy_atten_->forward(atten));  // [N, H, W, 1]
  // Paddle's form x*alpha + y*(scale - alpha), kept as is (scale is 1 but stays in the formula).
  const Tensor fused = add(mul(x, alpha), mul(y, sub(scale_.to(alpha.dtype()), alpha)));
  return conv_out_->forward(fused);
}

// ------------------------------------------------------------------ head
PPLiteSegHead::PPLiteSegHead(const std::vector<int>& in_channels, const std::vector<int>& arm_out_chs, int cm_out_ch,
                             const std::vector<int>& cm_bin_sizes, const std::string& resize_mode)
    : Module("PPLiteSegHead") {
  cm_ =
      register_module("cm", std::make_shared<PPContextModule>(in_channels.back(), cm_out_ch, cm_out_ch, cm_bin_sizes));
  arm_list_ = register_module("arm_list", std::make_shared<ModuleList<UafmSpAtten>>());
  for (size_t i = 0; i < in_channels.size(); ++i) {
    const int high_ch = i + 1 == in_channels.size() ? cm_out_ch : arm_out_chs[i + 1];
    arm_list_->add(std::make_shared<UafmSpAtten>(in_channels[i], high_ch, arm_out_chs[i], 3, resize_mode));
  }
}

std::vector<Tensor> PPLiteSegHead::forward(const std::vector<Tensor>& feats) {
  std::vector<Tensor> out(feats.size());
  Tensor high = cm_->forward(feats.back());
  for (size_t k = feats.size(); k-- > 0;) {
    high = (*arm_list_)[k].forward(feats[k], high);
    out[k] = high;
  }
  return out;
}

SegHead::SegHead(int in_channels, int mid_channels, int num_classes) : Layer("SegHead") {
  conv_ = register_module("conv", std::make_shared<ConvBN>(in_channels, mid_channels, 3, true, false));
  Conv2dOptions o;
  o.bias = false;
  conv_out_ = register_module("conv_out", std::make_shared<Conv2d>(mid_channels, num_classes, 1, o));
}

Tensor SegHead::forward(const Tensor& x) { return conv_out_->forward(conv_->forward(x)); }

// ------------------------------------------------------------------ PP-LiteSeg
PPLiteSeg::PPLiteSeg(const SegModelSpec& spec)
    : SegModel("PPLiteSeg"), backbone_indices_(spec.backbone_indices), num_classes_(spec.num_classes) {
  backbone_ = register_module("backbone", make_stdcnet(spec.backbone, spec.where + ".backbone.type"));
  std::vector<int> in_channels;
  for (int i : backbone_indices_) in_channels.push_back(backbone_->feat_channels()[i]);
  head_ = register_module("ppseg_head", std::make_shared<PPLiteSegHead>(in_channels, spec.arm_out_chs, spec.cm_out_ch,
                                                                        spec.cm_bin_sizes, spec.resize_mode));
  seg_heads_ = register_module("seg_heads", std::make_shared<ModuleList<SegHead>>());
  for (size_t i = 0; i < spec.arm_out_chs.size(); ++i)
    seg_heads_->add(std::make_shared<SegHead>(spec.arm_out_chs[i], spec.seg_head_inter_chs[i], (int)num_classes_));
}

std::vector<Tensor> PPLiteSeg::forward(const Tensor& images) {
  ENGINE_CHECK(images.dim() == 4 && images.size(3) == 3 && images.dtype() == DType::F32,
               "PPLiteSeg.forward: images must be f32 [N, H, W, 3] (channels last), got ", images.describe());
  const int64_t h = images.size(1), w = images.size(2);
  // O2 (engine/precision.h): the activations are stored in the low type from here on. In training
  // the full-size logits stay in it too (as Paddle's O2, whose interpolate runs in the low type):
  // the losses read 16-bit logits with f32 math, and their gradient is 16-bit, which halves the
  // bytes of the largest tensors of the step. Evaluation widens the logits before the resize, so
  // metrics and predictions are those of f32 logits.
  const std::vector<Tensor> maps = backbone_->forward(images.to(activation_dtype()));
  std::vector<Tensor> feats;
  for (int i : backbone_indices_) feats.push_back(maps[i]);
  const std::vector<Tensor> fused = head_->forward(feats);
  // Eval needs only the main (x8) head; training returns every head, main first.
  const size_t heads = training() ? fused.size() : 1;
  std::vector<Tensor> logits;
  for (size_t i = 0; i < heads; ++i) {
    const Tensor small = (*seg_heads_)[i].forward(fused[i]);
    if (training() && loss_upsamples_)
      logits.push_back(small);  // the loss upsamples it (SegModel::set_loss_upsamples)
    else
      logits.push_back(resize_to(training() ? small : small.to(DType::F32), h, w, "bilinear"));
  }
  return logits;
}

// ------------------------------------------------------------------ registry
namespace {

void check_list(const SegModelSpec& s, const char* key, const std::vector<int>& v, size_t n, int lo, int hi) {
  ENGINE_CHECK(v.size() == n, s.where, ".", key, ": expected ", n, " values, got ", v.size(), " ", shape_str(v));
  for (int x : v)
    ENGINE_CHECK(x >= lo && x <= hi, s.where, ".", key, ": values must be in [", lo, ", ", hi, "], got ", shape_str(v));
}

void validate(const SegModelSpec& s) {
  ENGINE_CHECK(s.type == "PPLiteSeg", s.where, ".type: '", s.type, "' is not supported (supported: PPLiteSeg)");
  ENGINE_CHECK(s.backbone == "STDC1" || s.backbone == "STDC2", s.where, ".backbone.type: '", s.backbone,
               "' is not supported (supported: STDC1, STDC2)");
  ENGINE_CHECK(s.num_classes >= 1, s.where, ".num_classes must be >= 1, got ", s.num_classes);
  ENGINE_CHECK(s.num_classes <= (1 << 20), s.where, ".num_classes is implausibly large: ", s.num_classes);
  if (s.arm_type != "UAFM_SpAtten") {
    const bool known = s.arm_type == "UAFM_ChAtten" || s.arm_type == "UAFM_SpAtten_S" ||
                       s.arm_type == "UAFM_ChAtten_S" || s.arm_type == "UAFM" || s.arm_type == "UAFMMobile" ||
                       s.arm_type == "UAFMMobile_SpAtten";
    fail(s.where, ".arm_type: '", s.arm_type, "' ", known ? "is not implemented" : "is not a known UAFM type",
         " (supported: UAFM_SpAtten)");
  }
  check_list(s, "backbone_indices", s.backbone_indices, 3, 0, 4);
  for (size_t i = 1; i < s.backbone_indices.size(); ++i)
    ENGINE_CHECK(s.backbone_indices[i] > s.backbone_indices[i - 1], s.where,
                 ".backbone_indices: must be increasing (shallow to deep), got ", shape_str(s.backbone_indices));
  check_list(s, "arm_out_chs", s.arm_out_chs, 3, 1, 1 << 16);
  check_list(s, "seg_head_inter_chs", s.seg_head_inter_chs, 3, 1, 1 << 16);
  ENGINE_CHECK(!s.cm_bin_sizes.empty(), s.where, ".cm_bin_sizes: expected at least one bin size");
  check_list(s, "cm_bin_sizes", s.cm_bin_sizes, s.cm_bin_sizes.size(), 1, 1 << 10);
  ENGINE_CHECK(s.cm_out_ch >= 1 && s.cm_out_ch <= (1 << 16), s.where, ".cm_out_ch must be >= 1, got ", s.cm_out_ch);
  ENGINE_CHECK(s.resize_mode == "bilinear" || s.resize_mode == "nearest", s.where, ".resize_mode: '", s.resize_mode,
               "' is not supported (supported: bilinear, nearest)");
}

}  // namespace

std::shared_ptr<SegModel> build_seg_model(const SegModelSpec& spec) {
  validate(spec);
  auto model = std::make_shared<PPLiteSeg>(spec);
  model->init_parameters(spec.seed);
  return model;
}

}  // namespace engine::nn
