// Learning-rate schedules with Paddle's semantics: PolynomialDecay, PiecewiseDecay and the
// LinearWarmup wrapper that PaddleSeg puts around either when warmup_iters is set.
// Semantics: Paddle python/paddle/optimizer/lr.py, PaddleSeg's lr_scheduler builder
// (paddleseg/cvlibs/builder.py). Tested by tests/test_lr_schedule.cpp against worked
// values (quick start, PR #928's log, Cityscapes with warmup).
//
// t is the number of optimizer steps already taken (Paddle's last_epoch, 0-based): the rate used by
// the k-th iteration (1-based), and printed in its log line, is lr_at(k - 1). The schedule is a pure
// function of t, so resuming needs only the step count.
//   PolynomialDecay: lr(t) = (base - end) * (1 - min(t, D) / D)^power + end,
//                    D = decay_steps, or iters - warmup_iters when decay_steps is 0 (at least 1).
//   PiecewiseDecay:  values[i] for the first i with t < boundaries[i], else values.back().
//   LinearWarmup:    t < W: start + (target - start) * t / W; else inner(t - W), where target is
//                    learning_rate (PolynomialDecay) or values[0] (PiecewiseDecay).
//   With WarmupMode::Absolute (PaddleX 1.x's linear_lr_warmup around piecewise_decay, the schedule
//   its docs describe, paddlex/cv/models/ppyolo.py default_optimizer): after warmup inner(t), so
//   the decay boundaries are absolute steps and not shifted by W.
#pragma once
#include <cstdint>
#include <string>

#include "train/config.h"

namespace engine::train {

enum class WarmupMode { ShiftsInner, Absolute };

class LRSchedule {
 public:
  // `iters` is the run's total number of iterations (needed when spec.decay_steps is 0).
  // Throws engine::Error for a spec that load_train_config would have rejected.
  LRSchedule(const LRSpec& spec, int64_t iters, WarmupMode warmup_mode = WarmupMode::ShiftsInner);

  double lr_at(int64_t t) const;
  int64_t decay_steps() const { return decay_steps_; }  // resolved D (PolynomialDecay)
  const LRSpec& spec() const { return spec_; }
  // One line for the training log, e.g. "PolynomialDecay(lr 0.01, end 0, power 0.9, 1000 steps)".
  std::string describe() const;

 private:
  double inner(int64_t t) const;
  LRSpec spec_;
  WarmupMode warmup_mode_;
  int64_t decay_steps_ = 1;
};

}  // namespace engine::train
