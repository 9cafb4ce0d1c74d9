// PaddleSeg's --use_ema (paddleseg/utils/ema.py init_ema_params / update_ema_model, used by
// paddleseg/core/train.py): an exponential moving average of every floating-point tensor of the
// model's state (the weights and the batch-norm statistics), started from the model's values; after
// iteration `step` (1, 2, ...):
//   decay = min(1 - 1 / (step + 1), 0.999);   ema = ema * decay + model * (1 - decay)
// so early iterations weigh the new values heavily (decay 0.5 at step 1, 0.999 from step 999 on).
// The trainer evaluates the averaged model beside the model at each evaluation, keeps its best in
// ema_best_model/ and writes it into every checkpoint as ema_model.safetensors, from which a resume
// continues the average (PaddleSeg restarts it from the resumed weights; the engine's resume stays
// exact). Tested by tests/test_trainer.cpp (ModelEma.*, Trainer.UseEma*).
#pragma once
#include <cstdint>
#include <string>

#include "models/module.h"
#include "train/safetensors.h"

namespace engine::train {

class ModelEma {
 public:
  explicit ModelEma(const nn::Module& model);  // a copy of the model's state

  void update(const nn::Module& model, int64_t step);
  // The averaged state, named and ordered as model.state_dict() (integer tensors are copies of the
  // model's at the start, as PaddleSeg's deepcopy keeps them).
  const nn::StateDict& state() const { return state_; }
  // Restores a saved average (names, shapes and dtypes checked; `file` names it in errors).
  void load(const LoadedTensors& saved, const std::string& file);
  // Exchanges the averaged values with the model's, in place (captured CUDA graphs keep their
  // pointers): call before evaluating the average and again after, to put the model back.
  void swap_with(nn::Module& model);

 private:
  nn::StateDict state_;
};

inline constexpr const char* kEmaModelFile = "ema_model.safetensors";

}  // namespace engine::train
