// Paddle's dynamic loss scaling (semantics in train/grad_scaler.h).
#include "train/grad_scaler.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>

#include "base/error.h"
#include "engine/ops/optim.h"
#include "train/yaml_tree.h"

namespace engine::train {

namespace {
constexpr const char* kScale = "loss_scaling";
constexpr const char* kGood = "loss_scaling_good_steps";
constexpr const char* kBad = "loss_scaling_bad_steps";
}  // namespace

GradScaler::GradScaler(const GradScalerConfig& cfg) : cfg_(cfg), scale_(cfg.init_loss_scaling) {}

bool GradScaler::unscale(const std::vector<Tensor>& grads, const std::vector<Tensor>& into) const {
  return unscale_grads_check_finite(grads, (float)(1.0 / scale_), into);
}

void GradScaler::update(bool found_inf) {
  if (!cfg_.use_dynamic_loss_scaling) return;
  if (found_inf) {
    good_ = 0;
    bad_ += 1;
    if (bad_ == cfg_.decr_every_n_nan_or_inf) {
      scale_ = std::max(scale_ * cfg_.decr_ratio, 1.0);
      bad_ = 0;
    }
  } else {
    bad_ = 0;
    good_ += 1;
    if (good_ == cfg_.incr_every_n_steps) {
      const double grown = scale_ * cfg_.incr_ratio;
      // The scale multiplies an f32 loss: it must stay a finite f32, as Paddle's f32 scale tensor does.
      if (std::isfinite((float)grown)) scale_ = grown;
      good_ = 0;
    }
  }
}

std::map<std::string, std::string> GradScaler::state() const {
  return {{kScale, fmt_double(scale_)}, {kGood, std::to_string(good_)}, {kBad, std::to_string(bad_)}};
}

bool GradScaler::has_state(const std::map<std::string, std::string>& meta) { return meta.count(kScale) != 0; }

void GradScaler::load_state(const std::map<std::string, std::string>& meta, const std::string& source) {
  auto get = [&](const char* key) -> const std::string& {
    auto it = meta.find(key);
    ENGINE_CHECK(it != meta.end(), "checkpoint '", source, "': metadata has '", kScale, "' but no '", key, "'");
    return it->second;
  };
  const std::string& s = get(kScale);
  char* end = nullptr;
  errno = 0;
  const double scale = std::strtod(s.c_str(), &end);
  ENGINE_CHECK(!s.empty() && *end == '\0' && errno == 0 && std::isfinite(scale) && scale > 0, "checkpoint '", source,
               "': metadata '", kScale, "' is '", s, "', expected a positive number");
  auto count = [&](const char* key) {
    const std::string& v = get(key);
    char* e = nullptr;
    errno = 0;
    const long long n = std::strtoll(v.c_str(), &e, 10);
    ENGINE_CHECK(!v.empty() && *e == '\0' && errno == 0 && n >= 0, "checkpoint '", source, "': metadata '", key,
                 "' is '", v, "', expected a count >= 0");
    return (int64_t)n;
  };
  scale_ = scale;
  good_ = count(kGood);
  bad_ = count(kBad);
}

}  // namespace engine::train
