// Layers (Conv2d, BatchNorm2d, the conv-BN units, containers) on engine ops. Semantics: Paddle's
// nn.Conv2D / nn.BatchNorm2D defaults and PaddleSeg's layer_libs names
// (paddleseg/models/layers/layer_libs.py); see models/layers.h. Tested by tests/test_models.cpp.
#include "models/layers.h"

#include <cmath>

#include "base/error.h"
#include "engine/autograd.h"
#include "engine/ops/batchnorm.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/pool.h"
#include "engine/ops/shape_ops.h"

namespace engine::nn {

// ------------------------------------------------------------------ Conv2d
float Conv2d::paddle_default_std(int in_channels, int kernel) {
  return std::sqrt(2.f / (float)(kernel * kernel * in_channels));
}

Conv2d::Conv2d(int in_channels, int out_channels, int kernel, Conv2dOptions o) : Layer("Conv2D") {
  ENGINE_CHECK(in_channels >= 1 && out_channels >= 1 && kernel >= 1 && o.groups >= 1 && in_channels % o.groups == 0 &&
                   out_channels % o.groups == 0,
               "Conv2D: bad geometry in=", in_channels, " out=", out_channels, " kernel=", kernel,
               " groups=", o.groups);
  const float std = o.weight_std >= 0.f ? o.weight_std : paddle_default_std(in_channels, kernel);
  weight_ = register_parameter("weight", {out_channels, in_channels / o.groups, kernel, kernel}, Init::normal_std(std));
  if (o.bias) bias_ = register_parameter("bias", {out_channels}, Init::constant(0.f));
  args_.stride_h = args_.stride_w = o.stride;
  args_.pad_h = args_.pad_w = o.padding;
  args_.dilation_h = args_.dilation_w = o.dilation;
  args_.groups = o.groups;
}

Tensor Conv2d::forward(const Tensor& x) { return conv2d(x, weight_, bias_, args_); }

// ------------------------------------------------------------------ BatchNorm2d
BatchNorm2d::BatchNorm2d(int channels, float momentum, float eps)
    : Layer("BatchNorm2D"), momentum_(momentum), eps_(eps) {
  weight_ = register_parameter("weight", {channels}, Init::constant(1.f));
  bias_ = register_parameter("bias", {channels}, Init::constant(0.f));
  mean_ = register_tensor("_mean", {channels}, TensorRole::Buffer, Init::constant(0.f));
  var_ = register_tensor("_variance", {channels}, TensorRole::Buffer, Init::constant(1.f));
}

Tensor apply_activation(const Tensor& x, const BnActivation& act) {
  switch (act.kind) {
    case BnActivation::Kind::Relu:
      return relu(x);
    case BnActivation::Kind::LeakyRelu:
      return leaky_relu(x, act.negative_slope);
    default:
      return x;
  }
}

Tensor BatchNorm2d::forward(const Tensor& x) { return forward(x, BnActivation::none()); }

Tensor BatchNorm2d::forward(const Tensor& x, const BnActivation& act) {
  if (training() && sync_) return apply_activation(forward_synced(x), act);
  const int64_t values_per_channel = x.numel() / std::max<int64_t>(x.size(-1), 1);
  if (training() && values_per_channel == 1) {
    // One value per channel: mean = x, biased variance 0 (see layers.h). batch_norm_apply with
    // mean = x itself gives y = bias and a gradient to x that cancels exactly, as the BN formula does.
    const Tensor m = x.reshape({x.size(-1)}).to(DType::F32);  // statistics are f32 at O2 too
    const Tensor v = Tensor::zeros({x.size(-1)}, DType::F32, x.device());
    const Tensor y = batch_norm_apply(x, m, v, weight_, bias_, eps_);
    batch_norm_update_running(mean_, var_, m.detach(), v, momentum_);
    return apply_activation(y, act);
  }
  BatchNormArgs a;
  a.momentum = momentum_;
  a.eps = eps_;
  a.training = training();
  a.act = act;  // fused: saves the activation's forward and backward memory passes
  return batch_norm(x, weight_, bias_, mean_, var_, a);
}

namespace {

// Sum over ranks of a statistics vector; the backward sums the gradient over ranks as well, because
// every rank's loss depends on the global statistics.
Tensor all_reduce_sum_op(const Tensor& t, const StatsAllReduce& reduce) {
  Tensor out = t.detach().clone();
  reduce({out});
  record_lambda("AllReduceSumBackward", {t}, out, [reduce](const std::vector<Tensor>& g) {
    Tensor gs = g[0].detach().clone();
    reduce({gs});
    return std::vector<Tensor>{gs};
  });
  return out;
}

}  // namespace

Tensor BatchNorm2d::forward_synced(const Tensor& x) {
  const int64_t c = x.size(-1);
  // The running mean as the shift keeps Q - S^2/n well conditioned; it is identical on every rank.
  // A copy: the running mean is updated in place below, the backward must see this value.
  const Tensor shift = mean_.detach().clone();
  const BatchNormStats local = batch_norm_local_stats(x, shift);
  // Every rank has at least one row, so with two or more ranks the global count is above one: the
  // count travels in the same all-reduce as the sums and is never read on the host.
  ENGINE_CHECK(local.count >= 1, "BatchNorm2d (sync): no values per channel on this rank (", x.describe(), ")");
  const Tensor count = Tensor::full({1}, (float)local.count, DType::F32, x.device());
  const Tensor global = all_reduce_sum_op(concat({local.sum, local.sum_sq, count}, 0), sync_);
  const BatchNormMoments m =
      batch_norm_moments(global.narrow(0, 0, c), global.narrow(0, c, c), global.narrow(0, 2 * c, 1), shift);
  Tensor y = batch_norm_apply(x, m.mean, m.var, weight_, bias_, eps_);
  batch_norm_update_running(mean_, var_, m.mean.detach(), m.var.detach(), momentum_);
  return y;
}

int set_sync_batch_norm(Module& m, const StatsAllReduce& reduce) {
  int n = 0;
  if (auto* bn = dynamic_cast<BatchNorm2d*>(&m)) {
    bn->set_sync(reduce);
    ++n;
  }
  for (const auto& [name, child] : m.children()) n += set_sync_batch_norm(*child, reduce);
  return n;
}

// ------------------------------------------------------------------ conv-BN units
StdcConvBNRelu::StdcConvBNRelu(int in_channels, int out_channels, int kernel, int stride, float weight_std)
    : Layer("ConvBNRelu") {
  Conv2dOptions o;
  o.stride = stride;
  o.padding = kernel / 2;
  o.bias = false;
  o.weight_std = weight_std;
  conv_ = register_module("conv", std::make_shared<Conv2d>(in_channels, out_channels, kernel, o));
  bn_ = register_module("bn", std::make_shared<BatchNorm2d>(out_channels));
}

Tensor StdcConvBNRelu::forward(const Tensor& x) { return bn_->forward(conv_->forward(x), BnActivation::relu()); }

ConvBN::ConvBN(int in_channels, int out_channels, int kernel, bool relu, bool bias)
    : Layer(relu ? "ConvBNReLU" : "ConvBN"), relu_(relu) {
  Conv2dOptions o;
  o.padding = kernel / 2;  // 'same' at stride 1
  o.bias = bias;
  conv_ = register_module("_conv", std::make_shared<Conv2d>(in_channels, out_channels, kernel, o));
  bn_ = register_module("_batch_norm", std::make_shared<BatchNorm2d>(out_channels));
}

Tensor ConvBN::forward(const Tensor& x) {
  return bn_->forward(conv_->forward(x), relu_ ? BnActivation::relu() : BnActivation::none());
}

// ------------------------------------------------------------------ containers and pooling
void Sequential::add(std::shared_ptr<Layer> layer) {
  layers_.push_back(register_module(std::to_string(layers_.size()), std::move(layer)));
}

Tensor Sequential::forward(const Tensor& x) {
  Tensor y = x;
  for (auto& l : layers_) y = l->forward(y);
  return y;
}

Tensor AdaptiveAvgPool2d::forward(const Tensor& x) { return adaptive_avg_pool2d(x, out_h_, out_w_); }

}  // namespace engine::nn
