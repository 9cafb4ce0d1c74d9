// Dynamic loss scaling for fp16 training: Paddle's paddle.amp.GradScaler, which PaddleSeg's
// core/train.py creates for `--precision fp16` (init_loss_scaling=1024, the other arguments at
// Paddle's defaults: incr_ratio 2, decr_ratio 0.5, incr_every_n_steps 2000,
// decr_every_n_nan_or_inf 1, use_dynamic_loss_scaling True; paddle/amp/grad_scaler.py).
// Per iteration (GradScaler.scale / minimize):
//   1. backward of loss * scale (so small fp16 gradients do not flush to zero);
//   2. unscale: every gradient *= 1 / scale, and found_inf = any gradient held an inf or nan
//      (check_finite_and_unscale, engine/ops/optim.h);
//   3. the optimizer step runs only when found_inf is false (the momentum is left alone too);
//   4. update (Paddle's update_loss_scaling):
//        found_inf: good = 0, bad += 1; when bad == decr_every_n_nan_or_inf:
//                   scale = max(scale * decr_ratio, 1), bad = 0
//        else:      bad = 0, good += 1; when good == incr_every_n_steps:
//                   scale = scale * incr_ratio if that is finite, good = 0
//      With use_dynamic_loss_scaling false the scale stays fixed (steps are still skipped).
// The state (scale, good and bad step counts) is saved with the optimizer checkpoint, so a resumed
// run continues with the same scale (train/trainer.cpp).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace engine::train {

// The config key `loss_scaling` (a mapping with paddle.amp.GradScaler's argument names).
struct GradScalerConfig {
  double init_loss_scaling = 1024;  // PaddleSeg's value (Paddle's own default is 65536)
  double incr_ratio = 2.0;
  double decr_ratio = 0.5;
  int64_t incr_every_n_steps = 2000;
  int64_t decr_every_n_nan_or_inf = 1;
  bool use_dynamic_loss_scaling = true;
};

class GradScaler {
 public:
  explicit GradScaler(const GradScalerConfig& cfg);

  double scale() const { return scale_; }
  int64_t good_steps() const { return good_; }
  int64_t bad_steps() const { return bad_; }

  // Step 2: unscales the gradients in place, or into `into` (f32, one per gradient: 16-bit reduced
  // gradients of data-parallel fp16 O2); true when one held an inf or nan (skip the step).
  bool unscale(const std::vector<Tensor>& grads, const std::vector<Tensor>& into = {}) const;
  // Step 4, after the step was taken or skipped.
  void update(bool found_inf);

  // Checkpoint metadata (strings, exact round trip) and back; load_state checks the values and
  // names `source` (the checkpoint) in its errors.
  std::map<std::string, std::string> state() const;
  void load_state(const std::map<std::string, std::string>& meta, const std::string& source);
  // True when `meta` holds a scaler state (checkpoints of fp32 / bf16 runs do not).
  static bool has_state(const std::map<std::string, std::string>& meta);

 private:
  GradScalerConfig cfg_;
  double scale_;
  int64_t good_ = 0, bad_ = 0;
};

}  // namespace engine::train
