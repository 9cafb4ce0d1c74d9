// The precision keys shared by the segmentation and detection configs: `precision` and `amp_level`
// (PaddleSeg's train.py flags of the same names, engine/precision.h) and `loss_scaling` (fp16's
// dynamic loss scaling, paddle.amp.GradScaler's arguments, train/grad_scaler.h), e.g.
//   precision: fp16
//   loss_scaling: {init_loss_scaling: 1024, incr_every_n_steps: 2000}
#pragma once
#include <string>
#include <vector>

#include "engine/precision.h"
#include "train/grad_scaler.h"
#include "train/yaml_tree.h"

namespace engine::train {

struct PrecisionKeys {
  Precision precision = Precision::FP32;
  AmpLevel amp_level = AmpLevel::O1;
  GradScalerConfig loss_scaling;
};

// The top-level keys parse_precision_keys reads (for the configs' allowed-key lists).
const std::vector<std::string>& precision_key_names();

// Reads the keys from the config's top-level mapping; a bad value is a ConfigError naming the key.
PrecisionKeys parse_precision_keys(const ConfigMap& top);

}  // namespace engine::train
