// Command-line parsing for engine-train / engine-eval / engine-predict: PaddleSeg's flag names and
// defaults (tools/train.py, val.py, predict.py), plus PaddleX's train() parameters as engine-train
// flags for detection configs (paddlex/cv/models/yolo_v3.py / ppyolo.py in 1.x, detector.py in 2.x).
// The command line is first cut into flags with their values (everything up to the next "--flag"),
// then each flag is checked against a table: takes no value, one value, at most one, two values or a list.
// Tested by tests/test_config.cpp.
#include "train/cli_args.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <sstream>

namespace engine::train {
namespace {

struct Token {
  std::string name;  // "--iters"
  std::vector<std::string> values;
};

bool is_flag(const std::string& a) { return a.rfind("--", 0) == 0 || a == "-h"; }

std::vector<Token> tokenize(const std::string& prog, int argc, char** argv) {
  std::vector<Token> out;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (is_flag(a)) {
      Token t;
      const size_t eq = a.find('=');
      t.name = a.substr(0, eq);
      if (eq != std::string::npos) t.values.push_back(a.substr(eq + 1));
      out.push_back(t);
    } else if (out.empty() && i == 1) {
      // `engine-train config.yml [flags]`: a leading argument is the config, as --config.
      Token t;
      t.name = "--config";
      t.values.push_back(a);
      out.push_back(t);
    } else {
      out.back().values.push_back(a);
    }
  }
  int configs = 0;
  for (const Token& t : out) configs += t.name == "--config";
  if (configs > 1) throw ConfigError(prog + ": the config is given more than once (--config or the first argument)");
  return out;
}

enum class Arity { None, One, Optional, Two, List };

struct FlagDef {
  std::string name;
  Arity arity;
  std::function<void(const std::vector<std::string>&)> set;
};

class Parser {
 public:
  explicit Parser(std::string prog) : prog_(std::move(prog)) {}

  void flag(const std::string& name, Arity arity, std::function<void(const std::vector<std::string>&)> set) {
    defs_.push_back({name, arity, std::move(set)});
  }
  void unsupported(const std::string& name) { unsupported_.push_back(name); }

  // Returns false when --help / -h was given (nothing else is checked then).
  bool parse(int argc, char** argv) {
    const std::vector<Token> tokens = tokenize(prog_, argc, argv);
    for (const Token& t : tokens)
      if (t.name == "--help" || t.name == "-h") return false;
    for (const Token& t : tokens) {
      const FlagDef* def = nullptr;
      for (const FlagDef& d : defs_)
        if (d.name == t.name) def = &d;
      if (!def) {
        for (const std::string& u : unsupported_)
          if (u == t.name) fail_flag(t.name, "PaddleSeg's flag ", t.name, " is not supported by this engine");
        std::vector<std::string> names;
        for (const FlagDef& d : defs_) names.push_back(d.name);
        throw ConfigError(prog_ + ": unknown flag '" + t.name + "'" + did_you_mean(t.name, names) + "; see --help");
      }
      const size_t n = t.values.size();
      switch (def->arity) {
        case Arity::None:
          if (n) fail_flag(t.name, "takes no value, got '", t.values[0], "'");
          break;
        case Arity::One:
          if (n != 1) fail_flag(t.name, n ? "takes one value, got " + std::to_string(n) : std::string("needs a value"));
          break;
        case Arity::Optional:
          if (n > 1) fail_flag(t.name, "takes at most one value, got ", n);
          break;
        case Arity::Two:
          if (n != 2) fail_flag(t.name, "needs two values (width height), got ", n);
          break;
        case Arity::List:
          if (n == 0) fail_flag(t.name, "needs at least one value");
          break;
      }
      current_ = t.name;
      given_.push_back(t.name);
      def->set(t.values);
    }
    return true;
  }

  template <class... A>
  [[noreturn]] void fail_flag(const std::string& flag, const A&... what) const {
    std::ostringstream s;
    s << prog_ << ": " << flag << ": ";
    (s << ... << what);
    throw ConfigError(s.str());
  }

  int64_t to_int(const std::string& v, int64_t min, const char* expected) const {
    errno = 0;
    char* end = nullptr;
    const long long x = std::strtoll(v.c_str(), &end, 10);
    if (v.empty() || *end != '\0' || errno != 0 || x < min)
      fail_flag(current_, "expected ", expected, ", got '", v, "'");
    return x;
  }
  double to_double(const std::string& v, double min, bool min_allowed, const char* expected) const {
    char* end = nullptr;
    const double x = std::strtod(v.c_str(), &end);
    if (v.empty() || *end != '\0' || !std::isfinite(x) || x < min || (x == min && !min_allowed))
      fail_flag(current_, "expected ", expected, ", got '", v, "'");
    return x;
  }
  std::string device(const std::string& v) const {
    const bool indexed = v.rfind("gpu:", 0) == 0 && v.size() > 4 &&
                         v.find_first_not_of("0123456789", 4) == std::string::npos && v.size() < 12;
    if (v != "cpu" && v != "gpu" && !indexed) fail_flag(current_, "expected cpu, gpu or gpu:N, got '", v, "'");
    return v;
  }
  std::vector<int> pair(const std::vector<std::string>& v) const {
    return {(int)to_int(v[0], 1, "a positive integer"), (int)to_int(v[1], 1, "a positive integer")};
  }
  std::vector<double> scales(const std::vector<std::string>& v) const {
    std::vector<double> out;
    for (const std::string& s : v) out.push_back(to_double(s, 0.0, false, "a scale > 0"));
    return out;
  }
  void opts(std::vector<std::string>& dst, const std::vector<std::string>& v) const {
    for (const std::string& s : v) {
      if (s.find('=') == std::string::npos || s[0] == '=') fail_flag(current_, "expected key=value, got '", s, "'");
      dst.push_back(s);
    }
  }
  const std::string& prog() const { return prog_; }
  const std::vector<std::string>& given() const { return given_; }

 private:
  std::string prog_;
  std::vector<FlagDef> defs_;
  std::vector<std::string> unsupported_;
  std::string current_;
  std::vector<std::string> given_;
};

using Vals = const std::vector<std::string>&;

// PaddleX train() parameters that are also PaddleSeg flags (one flag sets both).
const std::vector<std::string> kSharedFlags = {"learning_rate", "save_dir", "num_workers", "seed", "use_vdl"};

// PaddleSeg-only flags and what a detection config uses instead.
const std::vector<std::pair<std::string, std::string>> kSegOnlyFlags = {
    {"--iters", "--num_epochs"},
    {"--batch_size", "--train_batch_size"},
    {"--save_interval", "--save_interval_epochs"},
    {"--do_eval", "an eval_dataset in the config"},
    {"--log_iters", "--log_interval_steps"},
    {"--resume_model", "--resume_checkpoint"},
    {"--repeats", "a file list that names the images more than once"},
    {"--early_stop_intervals", "--early_stop True --early_stop_patience N"},
    {"--use_ema", "a segmentation config: PaddleX trains YOLOv3 without EMA"}};

}  // namespace

TrainArgs parse_train_args(int argc, char** argv) {
  TrainArgs a;
  Parser p("engine-train");
  p.flag("--config", Arity::One, [&](Vals v) { a.config = v[0]; });
  p.flag("--iters", Arity::One, [&](Vals v) { a.iters = p.to_int(v[0], 1, "a positive integer"); });
  p.flag("--batch_size", Arity::One, [&](Vals v) { a.batch_size = p.to_int(v[0], 1, "a positive integer"); });
  p.flag("--learning_rate", Arity::One, [&](Vals v) {
    a.learning_rate = p.to_double(v[0], 0.0, true, "a learning rate >= 0");
    a.det_flags.emplace_back("learning_rate", v[0]);
  });
  p.flag("--save_dir", Arity::One, [&](Vals v) {
    a.save_dir = v[0];
    a.det_flags.emplace_back("save_dir", v[0]);
  });
  p.flag("--num_workers", Arity::One, [&](Vals v) {
    a.num_workers = (int)p.to_int(v[0], 0, "an integer >= 0");
    a.det_flags.emplace_back("num_workers", v[0]);
  });
  // PaddleSeg's --use_vdl takes no value; PaddleX's use_vdl is a boolean (--use_vdl False).
  p.flag("--use_vdl", Arity::Optional, [&](Vals v) {
    bool on = true;
    if (!v.empty() && !parse_yaml_bool(v[0], on)) p.fail_flag("--use_vdl", "expected True or False, got '", v[0], "'");
    a.use_vdl = on;
    a.det_flags.emplace_back("use_vdl", on ? "True" : "False");
  });
  p.flag("--save_interval", Arity::One, [&](Vals v) { a.save_interval = p.to_int(v[0], 1, "a positive integer"); });
  p.flag("--do_eval", Arity::None, [&](Vals) { a.do_eval = true; });
  p.flag("--profile", Arity::None, [&](Vals) { a.profile = true; });
  p.flag("--overwrite", Arity::None, [&](Vals) { a.overwrite = true; });
  p.flag("--no_save_on_stop", Arity::None, [&](Vals) { a.save_on_stop = false; });
  p.flag("--dist_timeout", Arity::One, [&](Vals v) { a.dist_timeout = p.to_double(v[0], 0.0, false, "seconds > 0"); });
  p.flag("--sync_bn", Arity::One, [&](Vals v) {
    if (v[0] != "auto" && v[0] != "on" && v[0] != "off")
      p.fail_flag("--sync_bn", "expected auto, on or off, got '", v[0], "'");
    a.sync_bn = v[0];
  });
  p.flag("--allreduce_dtype", Arity::One, [&](Vals v) {
    if (v[0] != "auto" && v[0] != "fp32" && v[0] != "bf16" && v[0] != "fp16")
      p.fail_flag("--allreduce_dtype", "expected auto, fp32, bf16 or fp16, got '", v[0], "'");
    a.allreduce_dtype = v[0];
  });
  p.flag("--cuda_graph", Arity::One, [&](Vals v) {
    if (v[0] != "auto" && v[0] != "on" && v[0] != "off")
      p.fail_flag("--cuda_graph", "expected auto, on or off, got '", v[0], "'");
    a.cuda_graph = v[0];
  });
  p.flag("--log_iters", Arity::One, [&](Vals v) { a.log_iters = p.to_int(v[0], 1, "a positive integer"); });
  p.flag("--repeats", Arity::One, [&](Vals v) { a.repeats = p.to_int(v[0], 1, "a positive integer"); });
  p.flag("--use_ema", Arity::None, [&](Vals) { a.use_ema = true; });
  p.flag("--early_stop_intervals", Arity::One,
         [&](Vals v) { a.early_stop_intervals = p.to_int(v[0], 1, "a positive integer"); });
  p.flag("--resume_model", Arity::One, [&](Vals v) { a.resume_model = v[0]; });
  p.flag("--keep_checkpoint_max", Arity::One,
         [&](Vals v) { a.keep_checkpoint_max = (int)p.to_int(v[0], -(1LL << 30), "an integer"); });
  p.flag("--seed", Arity::One, [&](Vals v) {
    a.seed = (uint64_t)p.to_int(v[0], 0, "an integer >= 0");
    a.det_flags.emplace_back("seed", v[0]);
  });
  p.flag("--device", Arity::One, [&](Vals v) { a.device = p.device(v[0]); });
  p.flag("--opts", Arity::List, [&](Vals v) { p.opts(a.opts, v); });
  p.flag("--precision", Arity::One, [&](Vals v) {
    if (v[0] != "fp32" && v[0] != "tf32" && v[0] != "bf16" && v[0] != "fp16")
      p.fail_flag("--precision", "expected fp32, tf32, bf16 or fp16, got '", v[0], "'");
    a.precision = v[0];
  });
  p.flag("--amp_level", Arity::One, [&](Vals v) {
    if (v[0] != "O1" && v[0] != "O2") p.fail_flag("--amp_level", "expected O1 or O2, got '", v[0], "'");
    a.amp_level = v[0];
  });
  for (const char* u : {"--profiler_options", "--data_format", "--print_mem_info"}) p.unsupported(u);
  // The detection flags: values as written, checked by load_det_train_config like the file's keys.
  for (const std::string& key : det_train_param_keys())
    if (std::find(kSharedFlags.begin(), kSharedFlags.end(), key) == kSharedFlags.end())
      p.flag("--" + key, Arity::One, [&a, key](Vals v) { a.det_flags.emplace_back(key, v[0]); });
  const bool run = p.parse(argc, argv);
  a.given_flags = p.given();
  if (!run) {
    a.help = true;
    return a;
  }
  if (a.config.empty())
    throw ConfigError("engine-train: --config is required (a PaddleSeg or PaddleX detection YAML config); see --help");
  return a;
}

void check_train_args_for_task(const TrainArgs& a, const std::string& task) {
  if (task == "detection") {
    for (const std::string& f : a.given_flags)
      for (const auto& [seg, det] : kSegOnlyFlags)
        if (f == seg)
          throw ConfigError("engine-train: " + f + ": is a PaddleSeg flag; " + a.config +
                            " is a detection config (use " + det + ")");
  } else {
    // PaddleX's epoch parameters also drive a segmentation run (train/seg_task.h apply_paddlex_params);
    // only the detection metric has no meaning there.
    for (const auto& [name, value] : a.det_flags) {
      if (name == "metric")
        throw ConfigError("engine-train: --metric: is a detection (PaddleX) flag; " + a.config +
                          " is a segmentation config (evaluated by mIoU)");
      bool on = false;
      if (name == "early_stop" && a.early_stop_intervals && parse_yaml_bool(value, on) && on)
        throw ConfigError("engine-train: --early_stop_intervals: PaddleX's --early_stop is given too; use one of them");
    }
    if (a.early_stop_intervals && !a.do_eval)
      throw ConfigError("engine-train: --early_stop_intervals: counts evaluations, so it needs --do_eval");
  }
}

namespace {
// A stride larger than the crop leaves pixels in no window (PaddleSeg fails there at run time).
std::string slide_stride_error(const std::string& program, const std::vector<int>& crop,
                               const std::vector<int>& stride) {
  return program +
         ": --stride: expected at most --crop_size on each side (a larger stride leaves pixels in no "
         "window), got " +
         std::to_string(stride[0]) + " " + std::to_string(stride[1]) + " with --crop_size " + std::to_string(crop[0]) +
         " " + std::to_string(crop[1]);
}
}  // namespace

EvalArgs parse_eval_args(int argc, char** argv) {
  EvalArgs a;
  Parser p("engine-eval");
  p.flag("--config", Arity::One, [&](Vals v) { a.config = v[0]; });
  p.flag("--model_path", Arity::One, [&](Vals v) { a.model_path = v[0]; });
  p.flag("--aug_eval", Arity::None, [&](Vals) { a.aug_eval = true; });
  p.flag("--scales", Arity::List, [&](Vals v) { a.scales = p.scales(v); });
  p.flag("--flip_horizontal", Arity::None, [&](Vals) { a.flip_horizontal = true; });
  p.flag("--flip_vertical", Arity::None, [&](Vals) { a.flip_vertical = true; });
  p.flag("--is_slide", Arity::None, [&](Vals) { a.is_slide = true; });
  p.flag("--crop_size", Arity::Two, [&](Vals v) { a.crop_size = p.pair(v); });
  p.flag("--stride", Arity::Two, [&](Vals v) { a.stride = p.pair(v); });
  p.flag("--device", Arity::One, [&](Vals v) { a.device = p.device(v[0]); });
  p.flag("--num_workers", Arity::One, [&](Vals v) { a.num_workers = (int)p.to_int(v[0], 0, "an integer >= 0"); });
  p.flag("--opts", Arity::List, [&](Vals v) { p.opts(a.opts, v); });
  p.flag("--precision", Arity::One, [&](Vals v) {
    if (v[0] != "fp32" && v[0] != "tf32" && v[0] != "bf16" && v[0] != "fp16")
      p.fail_flag("--precision", "expected fp32, tf32, bf16 or fp16, got '", v[0], "'");
    a.precision = v[0];
  });
  p.flag("--amp_level", Arity::One, [&](Vals v) {
    if (v[0] != "O1" && v[0] != "O2") p.fail_flag("--amp_level", "expected O1 or O2, got '", v[0], "'");
    a.amp_level = v[0];
  });
  for (const char* u : {"--data_format", "--auc_roc", "--print_detail"}) p.unsupported(u);
  if (!p.parse(argc, argv)) {
    a.help = true;
    return a;
  }
  if (a.config.empty()) throw ConfigError("engine-eval: --config is required (a PaddleSeg YAML config); see --help");
  if (a.is_slide && (a.crop_size.empty() || a.stride.empty()))
    throw ConfigError("engine-eval: --is_slide: needs --crop_size w h and --stride w h");
  if (a.is_slide && (a.stride[0] > a.crop_size[0] || a.stride[1] > a.crop_size[1]))
    throw ConfigError(slide_stride_error("engine-eval", a.crop_size, a.stride));
  return a;
}

PredictArgs parse_predict_args(int argc, char** argv) {
  PredictArgs a;
  Parser p("engine-predict");
  p.flag("--config", Arity::One, [&](Vals v) { a.config = v[0]; });
  p.flag("--model_path", Arity::One, [&](Vals v) { a.model_path = v[0]; });
  p.flag("--image_path", Arity::One, [&](Vals v) { a.image_path = v[0]; });
  p.flag("--save_dir", Arity::One, [&](Vals v) { a.save_dir = v[0]; });
  p.flag("--aug_pred", Arity::None, [&](Vals) { a.aug_pred = true; });
  p.flag("--scales", Arity::List, [&](Vals v) { a.scales = p.scales(v); });
  p.flag("--flip_horizontal", Arity::None, [&](Vals) { a.flip_horizontal = true; });
  p.flag("--flip_vertical", Arity::None, [&](Vals) { a.flip_vertical = true; });
  p.flag("--is_slide", Arity::None, [&](Vals) { a.is_slide = true; });
  p.flag("--crop_size", Arity::Two, [&](Vals v) { a.crop_size = p.pair(v); });
  p.flag("--stride", Arity::Two, [&](Vals v) { a.stride = p.pair(v); });
  p.flag("--device", Arity::One, [&](Vals v) { a.device = p.device(v[0]); });
  p.flag("--opts", Arity::List, [&](Vals v) { p.opts(a.opts, v); });
  p.flag("--save_logits", Arity::None, [&](Vals) { a.save_logits = true; });
  p.flag("--custom_color", Arity::List, [&](Vals v) {
    for (const std::string& s : v) a.custom_color.push_back((int)p.to_int(s, 0, "a colour value 0..255"));
    for (int c : a.custom_color)
      if (c > 255) p.fail_flag("--custom_color", "expected colour values 0..255, got ", c);
    if (a.custom_color.size() % 3 != 0 || a.custom_color.size() > 256 * 3)
      p.fail_flag("--custom_color", "expected R G B triples (a multiple of 3 values, at most 768), got ",
                  a.custom_color.size(), " values");
  });
  for (const char* u : {"--data_format", "--precision", "--amp_level"}) p.unsupported(u);
  if (!p.parse(argc, argv)) {
    a.help = true;
    return a;
  }
  if (a.config.empty()) throw ConfigError("engine-predict: --config is required (a PaddleSeg YAML config); see --help");
  if (a.image_path.empty())
    throw ConfigError("engine-predict: --image_path is required (an image, a folder or a .txt list); see --help");
  if (a.is_slide && (a.crop_size.empty() || a.stride.empty()))
    throw ConfigError("engine-predict: --is_slide: needs --crop_size w h and --stride w h");
  if (a.is_slide && (a.stride[0] > a.crop_size[0] || a.stride[1] > a.crop_size[1]))
    throw ConfigError(slide_stride_error("engine-predict", a.crop_size, a.stride));
  return a;
}

std::string train_usage() {
  return "usage: engine-train [--config] FILE.yml [options]\n"
         "Trains a segmentation model from a PaddleSeg YAML config (flags as PaddleSeg's tools/train.py) or a\n"
         "detector from a detection YAML config (model.type YOLOv3; flags as PaddleX's train() parameters).\n"
         "  --config FILE           the YAML config (required)\n"
         "  --iters N               override iters\n"
         "  --batch_size N          override batch_size (per device)\n"
         "  --learning_rate X       override lr_scheduler.learning_rate\n"
         "  --save_dir DIR          where checkpoints and logs go (default ./output); a folder holding\n"
         "                          another run's results is refused (see --overwrite)\n"
         "  --num_workers N         data loading threads (default 0: load in the training thread)\n"
         "  --use_vdl               write TensorBoard event files to save_dir\n"
         "  --save_interval N       save (and evaluate with --do_eval) every N iterations (default 1000)\n"
         "  --do_eval               evaluate on val_dataset at each save and keep best_model/\n"
         "  --log_iters N           log every N iterations (default 10)\n"
         "  --repeats N             the train file list N times over per epoch (default 1)\n"
         "  --use_ema               also average the weights (decay 0.999), evaluate and save the average\n"
         "  --early_stop_intervals N  with --do_eval: stop after N evaluations below the best mIoU\n"
         "  --resume_model DIR      resume from a checkpoint directory such as output/iter_500\n"
         "  --keep_checkpoint_max N keep the N newest iter_* directories (default 5; <= 0 keeps all)\n"
         "  --seed N                random seed (weights, data order, augmentation)\n"
         "  --device cpu|gpu|gpu:N  default: gpu when a usable CUDA device exists, else cpu\n"
         "  --precision P           fp32 (default); bf16: convolutions multiply in bfloat16 with f32\n"
         "                          accumulation (CPUs with AVX512-BF16 or AMX, GPUs); fp16: the same in\n"
         "                          half with loss scaling (GPUs); tf32 (real GPUs); docs/TRAINING.md\n"
         "  --amp_level O1|O2       O1 (default): only convolutions multiply in the low type; O2: the\n"
         "                          activations are stored in it too (docs/TRAINING.md)\n"
         "  --opts K=V [K=V ...]    override config keys, e.g. --opts batch_size=2 model.num_classes=3\n"
         "  --profile               print the per-op time breakdown with each log line (engine-train only)\n"
         "  --overwrite             delete the results of an earlier run in --save_dir before training\n"
         "  --no_save_on_stop       on SIGINT/SIGTERM stop without writing a final iter_N/ checkpoint\n"
         "  --cuda_graph auto|on|off\n"
         "                          each batch shape's whole step (forward, backward, update) is captured\n"
         "                          once as a CUDA graph and replayed on a GPU; auto (default): with one rank,\n"
         "                          on: with several ranks too, all-reduces included (docs/TRAINING.md)\n"
         "Data parallel (one process per device, started by mpirun, srun or engine-launch; docs/DISTRIBUTED.md):\n"
         "  --sync_bn auto|on|off   synchronised batch norm; auto = on for GPU ranks, off for CPU ranks\n"
         "  --dist_timeout S        seconds a collective may wait for the other ranks before the job is\n"
         "                          ended with exit code 4 (default 1800)\n"
         "  --allreduce_dtype auto|fp32|bf16|fp16\n"
         "                          the gradients' type in the all-reduce; auto (default): GPU ranks at O2\n"
         "                          use the low type (half the bytes, as Paddle's O2), otherwise fp32\n"
         "  --help                  print this help\n"
         "Detection (PaddleX train() parameters; each overrides the config key of the same name, after --opts):\n"
         "  --num_epochs N                  epochs to train (default 270)\n"
         "  --train_batch_size N            total batch size over all devices (default 8)\n"
         "  --learning_rate X               base learning rate (default 0.000125; shared with PaddleSeg)\n"
         "  --warmup_steps N                linear warmup steps (default 1000)\n"
         "  --warmup_start_lr X             learning rate at the start of the warmup (default 0)\n"
         "  --lr_decay_epochs E,E           epochs where the rate is multiplied by lr_decay_gamma, \"30,40\" or\n"
         "                                  \"[30, 40]\" (default 213,240)\n"
         "  --lr_decay_gamma X              decay factor (default 0.1)\n"
         "  --momentum X                    SGD momentum (default 0.9)\n"
         "  --weight_decay X                L2 coefficient (default 0.0005)\n"
         "  --save_interval_epochs N        save (and evaluate) every N epochs (default 20)\n"
         "  --log_interval_steps N          log every N steps (default 2)\n"
         "  --early_stop True|False         stop when the eval metric stops improving (default False)\n"
         "  --early_stop_patience N         evaluations without improvement before stopping (default 5)\n"
         "  --pretrain_weights PATH|None    weights to start from (default None)\n"
         "  --resume_checkpoint DIR|None    a saved epoch_N directory to resume (not with pretrain_weights)\n"
         "  --use_vdl [True|False]          write TensorBoard event files (shared with PaddleSeg)\n"
         "  --metric VOC|COCO|auto          evaluation metric (default auto: by the eval set's type)\n"
         "  --save_dir DIR                  output folder (default output; shared with PaddleSeg)\n"
         "  --num_workers N                 data loading threads (default 2; shared with PaddleSeg)\n"
         "  --seed N                        random seed (shared with PaddleSeg)\n";
}

std::string eval_usage() {
  return "usage: engine-eval [--config] FILE.yml [--model_path PATH] [options]\n"
         "Evaluates a model on the config's val_dataset (flags as PaddleSeg's tools/val.py).\n"
         "  --config FILE           the YAML config (required)\n"
         "  --model_path PATH       weights (a model file or a checkpoint directory)\n"
         "  --aug_eval              multi-scale / flip evaluation (sums the logits)\n"
         "  --scales S [S ...]      scales for --aug_eval (default 1.0)\n"
         "  --flip_horizontal       add horizontally flipped inputs (with --aug_eval)\n"
         "  --flip_vertical         add vertically flipped inputs (with --aug_eval)\n"
         "  --is_slide              sliding-window inference\n"
         "  --crop_size W H         window size for --is_slide\n"
         "  --stride W H            window stride for --is_slide\n"
         "  --device cpu|gpu|gpu:N  default: gpu when a usable CUDA device exists, else cpu\n"
         "  --num_workers N         data loading threads (default 0)\n"
         "  --precision P           fp32 (default), bf16 (CPUs with AVX512-BF16 or AMX, GPUs), fp16 or\n"
         "                          tf32 (GPUs): the convolutions' math, as engine-train\n"
         "  --amp_level O1|O2       O1 (default), or O2 (activations in the low type, as engine-train)\n"
         "  --opts K=V [K=V ...]    override config keys\n"
         "  --help                  print this help\n";
}

std::string predict_usage() {
  return "usage: engine-predict [--config] FILE.yml --model_path PATH --image_path PATH [options]\n"
         "Predicts label images (flags as PaddleSeg's tools/predict.py).\n"
         "  --config FILE           the YAML config (required)\n"
         "  --model_path PATH       weights (a model file or a checkpoint directory)\n"
         "  --image_path PATH       an image, a folder of images, or a .txt list of images (required)\n"
         "  --save_dir DIR          where the results go (default ./output/result)\n"
         "  --aug_pred              multi-scale / flip prediction\n"
         "  --scales S [S ...]      scales for --aug_pred (default 1.0)\n"
         "  --flip_horizontal       add horizontally flipped inputs (with --aug_pred)\n"
         "  --flip_vertical         add vertically flipped inputs (with --aug_pred)\n"
         "  --is_slide              sliding-window inference\n"
         "  --crop_size W H         window size for --is_slide\n"
         "  --stride W H            window stride for --is_slide\n"
         "  --device cpu|gpu|gpu:N  default: gpu when a usable CUDA device exists, else cpu\n"
         "  --opts K=V [K=V ...]    override config keys\n"
         "  --custom_color R G B ...  colours of the first classes (default: PaddleSeg's colour map)\n"
         "  --save_logits           also write the raw logits: <save_dir>/logits/<name>.npy (f32 [H, W, C])\n"
         "  --help                  print this help\n";
}

namespace {
TestConfig apply_aug(const TestConfig& from_config, bool aug, const std::vector<double>& scales, bool fh, bool fv,
                     bool is_slide, const std::vector<int>& crop, const std::vector<int>& stride) {
  TestConfig t = from_config;
  if (aug) {
    t.aug_eval = true;
    t.scales = scales;
    t.flip_horizontal = fh;
    t.flip_vertical = fv;
  }
  if (is_slide) {
    t.is_slide = true;
    t.crop_size = crop;
    t.stride = stride;
  }
  return t;
}
}  // namespace

TestConfig apply_eval_args(const TestConfig& from_config, const EvalArgs& a) {
  return apply_aug(from_config, a.aug_eval, a.scales, a.flip_horizontal, a.flip_vertical, a.is_slide, a.crop_size,
                   a.stride);
}

TestConfig apply_predict_args(const TestConfig& from_config, const PredictArgs& a) {
  return apply_aug(from_config, a.aug_pred, a.scales, a.flip_horizontal, a.flip_vertical, a.is_slide, a.crop_size,
                   a.stride);
}

}  // namespace engine::train
