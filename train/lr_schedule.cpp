// Learning-rate schedules (Paddle's PolynomialDecay, PiecewiseDecay, LinearWarmup) in double
// precision, as Paddle computes them in Python floats. Semantics and the formulas: lr_schedule.h.
// Tested by tests/test_lr_schedule.cpp.
#include "train/lr_schedule.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "base/error.h"

namespace engine::train {

LRSchedule::LRSchedule(const LRSpec& spec, int64_t iters, WarmupMode warmup_mode)
    : spec_(spec), warmup_mode_(warmup_mode) {
  ENGINE_CHECK(spec.warmup_iters >= 0, "lr_scheduler: warmup_iters must be >= 0, got ", spec.warmup_iters);
  if (spec.type == "PolynomialDecay") {
    ENGINE_CHECK(spec.power > 0, "lr_scheduler: power must be > 0, got ", spec.power);
    if (spec.decay_steps > 0) {
      decay_steps_ = spec.decay_steps;
    } else {
      ENGINE_CHECK(iters >= 1, "lr_scheduler: PolynomialDecay needs decay_steps or the run's iters, got iters ", iters);
      // PaddleSeg: decay_steps = max(iters - warmup_iters, 1).
      decay_steps_ = std::max<int64_t>(iters - spec.warmup_iters, 1);
    }
  } else if (spec.type == "PiecewiseDecay") {
    ENGINE_CHECK(spec.values.size() == spec.boundaries.size() + 1,
                 "lr_scheduler: PiecewiseDecay needs one more value than boundaries, got ", spec.values.size(),
                 " values and ", spec.boundaries.size(), " boundaries");
  } else {
    fail("lr_scheduler: unknown type '", spec.type, "' (supported: PolynomialDecay, PiecewiseDecay)");
  }
}

double LRSchedule::inner(int64_t t) const {
  if (spec_.type == "PiecewiseDecay") {
    for (size_t i = 0; i < spec_.boundaries.size(); ++i)
      if (t < spec_.boundaries[i]) return spec_.values[i];
    return spec_.values.back();
  }
  const double D = (double)decay_steps_;
  const double frac = 1.0 - (double)std::min<int64_t>(t, decay_steps_) / D;
  return (spec_.learning_rate - spec_.end_lr) * std::pow(frac, spec_.power) + spec_.end_lr;
}

double LRSchedule::lr_at(int64_t t) const {
  ENGINE_CHECK(t >= 0, "LRSchedule::lr_at: step must be >= 0, got ", t);
  const int64_t W = spec_.warmup_iters;
  if (t < W) {
    const double target = spec_.type == "PiecewiseDecay" ? spec_.values[0] : spec_.learning_rate;
    return spec_.warmup_start_lr + (target - spec_.warmup_start_lr) * (double)t / (double)W;
  }
  return inner(warmup_mode_ == WarmupMode::Absolute ? t : t - W);
}

std::string LRSchedule::describe() const {
  std::ostringstream s;
  if (spec_.type == "PiecewiseDecay") {
    s << "PiecewiseDecay(boundaries " << shape_str(spec_.boundaries) << ", values " << shape_str(spec_.values) << ")";
  } else {
    s << "PolynomialDecay(lr " << spec_.learning_rate << ", end " << spec_.end_lr << ", power " << spec_.power << ", "
      << decay_steps_ << " steps)";
  }
  if (spec_.warmup_iters > 0)
    s << " after LinearWarmup(" << spec_.warmup_iters << " steps from " << spec_.warmup_start_lr
      << (warmup_mode_ == WarmupMode::Absolute ? ", absolute boundaries)" : ")");
  return s.str();
}

}  // namespace engine::train
