// Command-line flags of engine-train, engine-eval and engine-predict, with the names and defaults of
// PaddleSeg's tools/train.py, tools/val.py and tools/predict.py;
// engine-train also takes PaddleX's train() parameters for detection configs (TrainArgs::det_flags,
// checked later by load_det_train_config).
// Both "--flag value" and "--flag=value" work; list flags (--opts, --scales) take values up to the
// next "--flag". Every problem is a ConfigError naming the program and the flag (exit code 2);
// --help sets `help` (the program prints the usage and exits 0; nothing else is checked then).
// Tested by tests/test_config.cpp.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "train/config.h"
#include "train/det_config.h"

namespace engine::train {

struct TrainArgs {
  std::string config;
  std::optional<int64_t> iters, batch_size;  // override the config when set
  std::optional<double> learning_rate;       // overrides lr_scheduler.learning_rate
  std::string save_dir = "./output";
  int num_workers = 0;
  bool use_vdl = false;
  int64_t save_interval = 1000;
  bool do_eval = false;
  int64_t log_iters = 10;
  int64_t repeats = 1;                          // the train file list this many times over
  bool use_ema = false;                         // evaluate and save an average of the weights too
  std::optional<int64_t> early_stop_intervals;  // stop after this many evaluations below the best
  std::string resume_model;                     // a checkpoint directory such as output/iter_500
  int keep_checkpoint_max = 5;                  // <= 0 keeps every checkpoint (PaddleSeg)
  std::optional<uint64_t> seed;
  std::string device;                    // "cpu" | "gpu" | "gpu:N" | "" (= the engine's default device)
  std::vector<std::string> opts;         // "key.sub=value"
  std::string precision;                 // "" = the config's `precision` key (default fp32)
  std::string amp_level;                 // "" = the config's `amp_level` key (default O1)
  bool profile = false;                  // engine's own flag: per-op time breakdown with each log line
  bool overwrite = false;                // engine's own flag: replace an earlier run's results in save_dir
  bool save_on_stop = true;              // engine's own flag --no_save_on_stop turns it off
  double dist_timeout = 1800;            // engine's own flag: seconds a collective may take before the job is ended
  std::string cuda_graph = "auto";       // engine's own flag: auto | on | off (TrainOptions::cuda_graph)
  std::string sync_bn = "auto";          // engine's own flag: auto | on | off (train/trainer.h TrainOptions::sync_bn)
  std::string allreduce_dtype = "auto";  // engine's own flag: auto | fp32 | bf16 | fp16 (TrainOptions::allreduce_dtype)
  // Detection configs: every PaddleX train() parameter given as a flag (--num_epochs 20 ...), in the
  // order given, as written. --learning_rate, --save_dir, --num_workers, --seed and --use_vdl are
  // shared with the PaddleSeg flags above: they set those fields and are also listed here.
  DetFlagOverrides det_flags;
  std::vector<std::string> given_flags;  // every flag given, in order, e.g. {"--config", "--iters"}
  bool help = false;
};

struct EvalArgs {
  std::string config;
  std::string model_path;  // weights file or checkpoint directory; empty = the config's pretrained
  bool aug_eval = false;
  std::vector<double> scales{1.0};
  bool flip_horizontal = false, flip_vertical = false;
  bool is_slide = false;
  std::vector<int> crop_size, stride;  // (w, h), required with --is_slide
  std::string device;
  int num_workers = 0;
  std::vector<std::string> opts;
  std::string precision;  // "" = the config's `precision` key (default fp32)
  std::string amp_level;  // "" = the config's `amp_level` key (default O1)
  bool help = false;
};

struct PredictArgs {
  std::string config;
  std::string model_path;
  std::string image_path;  // an image, a folder of images, or a .txt list of image paths
  std::string save_dir = "./output/result";
  bool aug_pred = false;
  std::vector<double> scales{1.0};
  bool flip_horizontal = false, flip_vertical = false;
  bool is_slide = false;
  std::vector<int> crop_size, stride;
  std::string device;
  std::vector<std::string> opts;
  std::vector<int> custom_color;  // R G B values replacing the start of the colour map (data/color_map.h)
  bool save_logits = false;       // engine's own flag: also <save_dir>/logits/<name>.npy (f32 [H, W, classes])
  bool help = false;
};

TrainArgs parse_train_args(int argc, char** argv);
// Refuses flags that belong to the other kind of config: for "detection", the PaddleSeg-only
// --iters, --batch_size, --save_interval, --do_eval, --log_iters, --resume_model, --repeats,
// --early_stop_intervals (naming PaddleX's equivalent); for "segmentation", --metric (PaddleX's epoch
// parameters work for segmentation too, see apply_paddlex_params in train/seg_task.h), and
// --early_stop_intervals without --do_eval (it counts evaluations) or with PaddleX's --early_stop.
// `task` as config_task().
void check_train_args_for_task(const TrainArgs& args, const std::string& task);
EvalArgs parse_eval_args(int argc, char** argv);
PredictArgs parse_predict_args(int argc, char** argv);

std::string train_usage();
std::string eval_usage();
std::string predict_usage();

// tools/val.py's get_test_config: --aug_eval replaces aug_eval, scales and the flips of the config's
// test_config; --is_slide replaces is_slide, crop_size and stride. Without those flags the config's
// test_config stays as it is. Same for --aug_pred in predict.py.
TestConfig apply_eval_args(const TestConfig& from_config, const EvalArgs& args);
TestConfig apply_predict_args(const TestConfig& from_config, const PredictArgs& args);

}  // namespace engine::train
