// Training configuration: PaddleSeg YAML configs loaded with PaddleSeg's merge rules, overridden by
// the command line, validated and turned into typed specs for the trainer, the data pipeline and the
// model builder.
// Semantics: PaddleSeg paddleseg/cvlibs/config.py, builder.py, config_checker.py and tools/train.py.
// Tested by tests/test_config.cpp (the
// reference configs load unchanged, merge rules on hand-written files, every class of bad input).
//
// Order of application (as PaddleSeg): the file and its `_base_` files (recursive, paths relative to
// the including file; dicts merge key by key, lists and scalars replace, `_inherited_: False` in a
// dict drops the base's dict for that key), then `--opts key.sub=value` (value parsed as YAML; list
// elements addressable as `key[i]`), then --iters, --batch_size, --learning_rate
// (= lr_scheduler.learning_rate). Then the sugar and injections of PaddleSeg's config checker: one
// loss type with n coefs is replicated n times; the loss ignore_index comes from the train data set
// (a mismatch is an error); model.num_classes comes from the data sets when absent (disagreeing
// num_classes are an error); Cityscapes has 19 classes.
//
// Every problem is a ConfigError with one line "<file>: <key.path>: <expected, found>", where <file>
// is the file the offending value came from (a `_base_` file, or "--opts" / "--iters" ...).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "data/data_spec.h"
#include "engine/precision.h"
#include "models/model_spec.h"
#include "train/grad_scaler.h"
#include "train/yaml_tree.h"  // ConfigError, did_you_mean and the YAML tree the schema reads

namespace engine::train {

// `optimizer:`. type SGD with a momentum key is Paddle's Momentum (v = mu v + g, p -= lr v);
// "Momentum" is accepted as a synonym. Following PaddleSeg's builder, `type: SGD` without a momentum
// key is plain SGD (momentum 0); `type: Momentum` without one uses Paddle's default 0.9. weight_decay
// is coupled L2 on all parameters.
struct OptimizerSpec {
  std::string type = "SGD";
  double momentum = 0.9;
  double weight_decay = 0;
};

// `lr_scheduler:`. PolynomialDecay(learning_rate, decay_steps, end_lr, power) or
// PiecewiseDecay(boundaries, values); warmup_iters/warmup_start_lr wrap either in a LinearWarmup.
// decay_steps = 0 means iters - warmup_iters (PaddleSeg's default). For PiecewiseDecay,
// learning_rate is set to values[0] (the warmup's target); a learning_rate key is an error there.
struct LRSpec {
  std::string type = "PolynomialDecay";
  double learning_rate = 0.01;
  double end_lr = 0;
  double power = 0.9;
  int64_t decay_steps = 0;  // 0 = iters - warmup_iters
  int64_t warmup_iters = 0;
  double warmup_start_lr = 0;
  std::vector<int64_t> boundaries;
  std::vector<double> values;
};

// One entry of `loss.types`: CrossEntropyLoss (weight, ignore_index, avg_non_ignore,
// top_k_percent_pixels) or OhemCrossEntropyLoss (thresh, min_kept, ignore_index, weight).
// `where` is the key path, e.g. "loss.types[0]". weight empty = no class weights.
struct LossTermSpec {
  std::string type;
  double thresh = 0.7;
  int64_t min_kept = 10000;
  int64_t ignore_index = 255;
  std::vector<double> weight;
  bool avg_non_ignore = true;
  double top_k_percent_pixels = 1.0;
  std::string where;
};

// After the sugar: terms.size() == coef.size(); term i weighs model output i.
struct LossSpec {
  std::vector<LossTermSpec> terms;
  std::vector<double> coef;
};

// `test_config:` (evaluation during training and engine-eval; the eval flags override it).
struct TestConfig {
  bool aug_eval = false;
  std::vector<double> scales{1.0};
  bool flip_horizontal = false, flip_vertical = false;
  bool is_slide = false;
  std::vector<int> crop_size, stride;  // (w, h) each, required when is_slide
};

struct TrainConfig {
  std::string path;         // the config file as given
  std::string merged_yaml;  // after _base_, --opts and the typed flags (before sugar/injection)
  int64_t batch_size = 1;   // per device
  int64_t iters = 0;        // 0 = not given (check_trainable rejects it)
  bool has_train_dataset = false, has_val_dataset = false;
  bool has_model = false;  // a base file such as _base_/cityscapes.yml has no model block
  data::DatasetSpec train_dataset, val_dataset;
  OptimizerSpec optimizer;
  LRSpec lr_scheduler;
  LossSpec loss;  // empty when the config has no loss block
  nn::SegModelSpec model;
  TestConfig test_config;
  // The engine's keys `precision` (fp32 | bf16 ...) and `amp_level` (O1 | O2): PaddleSeg's train.py
  // flags of the same names, as config keys; the flags override them (engine/precision.h).
  Precision precision = Precision::FP32;
  AmpLevel amp_level = AmpLevel::O1;
  GradScalerConfig loss_scaling;  // `loss_scaling`: fp16's dynamic loss scaling (train/grad_scaler.h)
};

// Loads, merges, overrides and validates. `opts` are "key.sub=value" strings (--opts); the optional
// values are the typed flags (unset = keep the file's value). Throws ConfigError.
TrainConfig load_train_config(const std::string& path, const std::vector<std::string>& opts = {},
                              std::optional<int64_t> iters = std::nullopt,
                              std::optional<int64_t> batch_size = std::nullopt,
                              std::optional<double> learning_rate = std::nullopt);

// What training needs: a model, a train_dataset, iters >= 1 and a loss (a config such as
// _base_/cityscapes.yml loads without some of them).
// Throws ConfigError naming the config file and the missing key.
void check_trainable(const TrainConfig& cfg);

}  // namespace engine::train
