// Layers built from engine ops, with Paddle's defaults and PaddleSeg's attribute names (so that the
// dotted tensor names are the .pdparams keys of paddleseg/models/layers/layer_libs.py):
//   Conv2d            weight [O, I/groups, kH, kW], bias [O]            (paddle.nn.Conv2D)
//   BatchNorm2d       weight, bias, _mean, _variance                    (paddle.nn.BatchNorm2D)
//   StdcConvBNRelu    .conv / .bn   (the STDC backbone's own ConvBNRelu: conv without bias, BN, ReLU)
//   ConvBN            ._conv / ._batch_norm   (PaddleSeg layers.ConvBNReLU when relu, layers.ConvBN when not)
//   Sequential        children "0", "1", ... run in order             (paddle.nn.Sequential)
//   ModuleList<T>     children "0", "1", ...                           (paddle.nn.LayerList)
//   AdaptiveAvgPool2d no tensors                                         (paddle.nn.AdaptiveAvgPool2D)
// Initialisation (applied by Module::init_parameters; Paddle's nn layer defaults):
//   Conv2d weight ~ Normal(0, sqrt(2 / (k*k*in_channels))) - Paddle's default; in_channels, NOT
//   in/groups - unless Conv2dOptions::weight_std says otherwise (STDC uses 0.001, §1.5); bias 0.
//   BatchNorm2d weight 1, bias 0, _mean 0, _variance 1; momentum 0.9 (Paddle's convention:
//   running = 0.9 running + 0.1 batch), eps 1e-5.
// Activations are [N, H, W, C]. Tested by tests/test_models.cpp.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/ops/batchnorm.h"
#include "engine/ops/conv.h"
#include "models/module.h"

namespace engine::nn {

struct Conv2dOptions {
  int stride = 1;
  int padding = 0;
  int dilation = 1;
  int groups = 1;
  bool bias = true;         // Paddle's Conv2D has a bias unless bias_attr=False
  float weight_std = -1.f;  // < 0: Paddle's default sqrt(2 / (k*k*in_channels))
};

class Conv2d : public Layer {
 public:
  Conv2d(int in_channels, int out_channels, int kernel, Conv2dOptions o = {});
  Tensor forward(const Tensor& x) override;
  const Tensor& weight() const { return weight_; }
  const Tensor& bias() const { return bias_; }  // undefined without bias
  static float paddle_default_std(int in_channels, int kernel);

 private:
  Tensor weight_, bias_;
  Conv2dArgs args_;
};

// Sums each tensor element-wise over the data-parallel ranks, in place (the trainer passes its
// Communicator's all_reduce_sum). Used by synchronised batch norm.
using StatsAllReduce = std::function<void(const std::vector<Tensor>&)>;

class BatchNorm2d : public Layer {
 public:
  explicit BatchNorm2d(int channels, float momentum = 0.9f, float eps = 1e-5f);
  // Synchronised BN (Paddle's SyncBatchNorm): in training the per-channel sums of every rank are
  // all-reduced before normalising, so each rank normalises with the global batch statistics; the
  // backward all-reduces the statistics' gradients too. An empty function turns it off.
  void set_sync(StatsAllReduce reduce) { sync_ = std::move(reduce); }
  bool synced() const { return (bool)sync_; }
  // Training: batch statistics, running statistics updated in place. Eval: running statistics.
  // With one value per channel in training (e.g. SPPM's 1x1 bin at batch 1) the engine's batch_norm
  // refuses (as PyTorch does); this layer then computes what the BN formula gives - mean = x,
  // variance 0, output = bias, no gradient to x - and updates the running statistics with them, so
  // PP-LiteSeg trains at batch 1.
  Tensor forward(const Tensor& x) override;
  // act(forward(x)) for act = relu or leaky_relu(slope); the common path fuses the activation into
  // batch_norm (BatchNormArgs::act), the one-value-per-channel and synchronised paths apply relu() /
  // leaky_relu() after BN. Same result either way.
  Tensor forward(const Tensor& x, const BnActivation& act);
  const Tensor& weight() const { return weight_; }
  const Tensor& bias() const { return bias_; }
  const Tensor& running_mean() const { return mean_; }
  const Tensor& running_var() const { return var_; }

 private:
  Tensor forward_synced(const Tensor& x);
  Tensor weight_, bias_, mean_, var_;
  float momentum_, eps_;
  StatsAllReduce sync_;
};

// Turns synchronised BN on (or off, with an empty function) for every BatchNorm2d in `m`'s tree, as
// Paddle's convert_sync_batchnorm. Returns how many layers were switched.
int set_sync_batch_norm(Module& m, const StatsAllReduce& reduce);

// relu(x), leaky_relu(x, slope) or x: the engine's elementwise ops (what BatchNorm2d's unfused paths use).
Tensor apply_activation(const Tensor& x, const BnActivation& act);

// The STDC backbone's ConvBNRelu: conv k x k (stride s, padding k/2, no bias) -> BN -> ReLU.
class StdcConvBNRelu : public Layer {
 public:
  StdcConvBNRelu(int in_channels, int out_channels, int kernel = 3, int stride = 1, float weight_std = 0.001f);
  Tensor forward(const Tensor& x) override;

 private:
  std::shared_ptr<Conv2d> conv_;
  std::shared_ptr<BatchNorm2d> bn_;
};

// PaddleSeg layers.ConvBNReLU (relu = true) / layers.ConvBN (relu = false): conv with padding
// 'same' (= k/2 at stride 1) and Paddle's default init, then BN (then ReLU).
class ConvBN : public Layer {
 public:
  ConvBN(int in_channels, int out_channels, int kernel, bool relu, bool bias);
  Tensor forward(const Tensor& x) override;

 private:
  std::shared_ptr<Conv2d> conv_;
  std::shared_ptr<BatchNorm2d> bn_;
  bool relu_;
};

class Sequential : public Layer {
 public:
  Sequential() : Layer("Sequential") {}
  void add(std::shared_ptr<Layer> layer);  // named by its position: "0", "1", ...
  Tensor forward(const Tensor& x) override;
  size_t size() const { return layers_.size(); }

 private:
  std::vector<std::shared_ptr<Layer>> layers_;
};

template <class T>
class ModuleList : public Module {
 public:
  ModuleList() : Module("LayerList") {}
  void add(std::shared_ptr<T> m) { items_.push_back(register_module(std::to_string(items_.size()), std::move(m))); }
  T& operator[](size_t i) const { return *items_.at(i); }
  size_t size() const { return items_.size(); }

 private:
  std::vector<std::shared_ptr<T>> items_;
};

class AdaptiveAvgPool2d : public Layer {
 public:
  AdaptiveAvgPool2d(int out_h, int out_w) : Layer("AdaptiveAvgPool2D"), out_h_(out_h), out_w_(out_w) {}
  Tensor forward(const Tensor& x) override;

 private:
  int out_h_, out_w_;
};

}  // namespace engine::nn
