// The precision keys of the configs (train/precision_config.h).
#include "train/precision_config.h"

#include <cmath>
#include <limits>

namespace engine::train {

const std::vector<std::string>& precision_key_names() {
  static const std::vector<std::string> names = {"precision", "amp_level", "loss_scaling"};
  return names;
}

PrecisionKeys parse_precision_keys(const ConfigMap& top) {
  PrecisionKeys k;
  if (auto v = top.string("precision")) {
    if (*v != "fp32" && *v != "tf32" && *v != "bf16" && *v != "fp16")
      top.bad("precision", "expected fp32, tf32, bf16 or fp16, got '", *v, "'");
    k.precision = parse_precision(*v, "precision");
  }
  if (auto v = top.string("amp_level")) {
    if (*v != "O1" && *v != "O2") top.bad("amp_level", "expected O1 or O2, got '", *v, "'");
    k.amp_level = parse_amp_level(*v, "amp_level");
  }
  if (const ConfigValue* v = top.value("loss_scaling")) {
    if (v->kind != ConfigValue::Kind::Map)
      top.bad("loss_scaling",
              "expected a mapping of paddle.amp.GradScaler arguments (init_loss_scaling, "
              "incr_ratio, decr_ratio, incr_every_n_steps, decr_every_n_nan_or_inf, "
              "use_dynamic_loss_scaling)");
    const ConfigMap m(*v, top.at("loss_scaling"));
    m.check_keys({"init_loss_scaling", "incr_ratio", "decr_ratio", "incr_every_n_steps", "decr_every_n_nan_or_inf",
                  "use_dynamic_loss_scaling"});
    GradScalerConfig& c = k.loss_scaling;
    const double f32_max = std::numeric_limits<float>::max();
    if (auto x = m.number("init_loss_scaling")) {
      if (!(*x >= 1 && *x <= f32_max)) m.bad("init_loss_scaling", "expected a number in [1, 3.4e38], got ", *x);
      c.init_loss_scaling = *x;
    }
    if (auto x = m.number("incr_ratio")) {
      if (!(*x > 1 && std::isfinite(*x))) m.bad("incr_ratio", "expected a number > 1, got ", *x);
      c.incr_ratio = *x;
    }
    if (auto x = m.number("decr_ratio")) {
      if (!(*x > 0 && *x < 1)) m.bad("decr_ratio", "expected a number in (0, 1), got ", *x);
      c.decr_ratio = *x;
    }
    if (auto x = m.integer("incr_every_n_steps")) {
      if (*x < 1) m.bad("incr_every_n_steps", "expected a positive integer, got ", *x);
      c.incr_every_n_steps = *x;
    }
    if (auto x = m.integer("decr_every_n_nan_or_inf")) {
      if (*x < 1) m.bad("decr_every_n_nan_or_inf", "expected a positive integer, got ", *x);
      c.decr_every_n_nan_or_inf = *x;
    }
    if (auto x = m.boolean("use_dynamic_loss_scaling")) c.use_dynamic_loss_scaling = *x;
  }
  return k;
}

}  // namespace engine::train
