// engine-eval: PaddleSeg's tools/val.py for this engine: evaluates saved weights on the config's
// val_dataset and prints PaddleSeg's [EVAL] lines.
//   engine-eval --config configs/pp_liteseg_synthetic_256x256.yml --model_path output/best_model
//               [--aug_eval --scales 0.75 1.0 1.25 --flip_horizontal --flip_vertical]
//               [--is_slide --crop_size W H --stride W H] [--device cpu|gpu]
// Without --aug_eval / --is_slide the config's test_config applies (as val.py). Exit codes: 0, 2 bad flags or config,
// 1 other errors (missing/corrupt weights or data: the message names the file).
#include <cstdio>
#include <iostream>
#include <sstream>

#include "base/error.h"
#include "data/dataset.h"
#include "engine/device.h"
#include "train/cli_args.h"
#include "train/cli_common.h"
#include "train/config.h"
#include "train/evaluate.h"

int main(int argc, char** argv) {
  using namespace engine;
  using namespace engine::train;
  try {
    const EvalArgs a = parse_eval_args(argc, argv);
    if (a.help) {
      std::printf("%s", eval_usage().c_str());
      return 0;
    }
    const TrainConfig cfg = load_train_config(a.config, a.opts, std::nullopt, std::nullopt, std::nullopt);
    if (!cfg.has_val_dataset) throw ConfigError(a.config + ": val_dataset: missing (engine-eval evaluates on it)");
    if (!cfg.has_model) throw ConfigError(a.config + ": model: missing");
    const Device device = device_from_flag(a.device);
    const std::string precision = apply_precision(a.precision, a.amp_level, cfg.precision, cfg.amp_level, device);
    if (!precision.empty()) std::cout << "engine-eval: " << precision << "\n";
    const TestConfig tc = apply_eval_args(cfg.test_config, a);
    const InferOptions io = infer_options(tc);
    const auto model = load_trained_model(cfg, a.model_path, device);
    const auto val = data::make_dataset(cfg.val_dataset);
    const EvalResult r = evaluate(*model, *val, device, io, std::cout);
    std::cout << format_eval_lines(r.metrics, r.num_images) << std::flush;
    return 0;
  } catch (const ConfigError& e) {
    report_error("engine-eval", e);
    return 2;
  } catch (const std::exception& e) {
    report_error("engine-eval", e);
    return 1;
  }
}
