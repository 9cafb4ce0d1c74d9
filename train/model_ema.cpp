#include "train/model_ema.h"

#include <algorithm>

#include "base/error.h"
#include "engine/autograd.h"
#include "engine/ops/elementwise.h"

namespace engine::train {

ModelEma::ModelEma(const nn::Module& model) {
  NoGradGuard no_grad;
  for (const auto& [name, t] : model.state_dict()) state_.emplace_back(name, t.detach().clone());
}

void ModelEma::update(const nn::Module& model, int64_t step) {
  NoGradGuard no_grad;
  const double decay = std::min(1.0 - 1.0 / (double)(step + 1), 0.999);
  const nn::StateDict current = model.state_dict();
  ENGINE_CHECK(current.size() == state_.size(), "EMA: the model has ", current.size(), " state tensors, the average ",
               state_.size());
  for (size_t i = 0; i < state_.size(); ++i) {
    Tensor& e = state_[i].second;
    if (!is_float_storage(e.dtype())) continue;
    // Paddle: v *= decay; v += (1 - decay) * m, each rounded to the tensor's type.
    e.copy_(add(mul(e, (float)decay), mul(current[i].second.detach(), (float)(1.0 - decay))));
  }
}

void ModelEma::load(const LoadedTensors& saved, const std::string& file) {
  check_tensors_match(saved, state_, "EMA weights " + file);
  for (auto& [name, t] : state_) t.copy_(*saved.find(name));
}

void ModelEma::swap_with(nn::Module& model) {
  NoGradGuard no_grad;
  const nn::StateDict current = model.state_dict();
  ENGINE_CHECK(current.size() == state_.size(), "EMA: the model has ", current.size(), " state tensors, the average ",
               state_.size());
  for (size_t i = 0; i < state_.size(); ++i) {
    Tensor m = current[i].second.detach();
    const Tensor saved = m.clone();
    m.copy_(state_[i].second);
    state_[i].second.copy_(saved);
  }
}

}  // namespace engine::train
