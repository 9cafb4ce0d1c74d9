#include "train/seg_task.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <ostream>
#include <sstream>

#include "base/error.h"
#include "data/loader.h"
#include "train/det_task.h"
#include "train/download.h"
#include "train/safetensors.h"
#include "train/seg_metrics.h"
#include "train/trainer.h"
#include "train/weights_file.h"
#include "train/yaml_tree.h"

namespace fs = std::filesystem;

namespace engine::train {
namespace {

void load_pretrained(nn::SegModel& model, const std::string& path, const std::string& key, const std::string& prefix,
                     std::ostream& log) {
  if (path.empty()) return;
  // A URL is downloaded into the cache first (train/download.h), as PaddleSeg's download_pretrained_model.
  const std::string local = is_download_url(path) ? download_to_cache(path, DownloadOptions{}, key, log) : path;
  log << log_prefix(LogStyle::PaddleSeg) << "Loading pretrained model from " << local << std::endl;
  // .safetensors, .pdparams or a .tar.gz holding one (train/weights_file.h). Keys as PaddleSeg's
  // load_pretrained_model (paddleseg/utils/utils.py) compares them: exact names; a backbone file is
  // loaded by the backbone itself there, hence `prefix` here.
  LoadedTensors file = read_weights_file(local, key);
  std::vector<std::pair<std::string, Tensor>> entries;
  for (auto& [name, t] : file.tensors) entries.emplace_back(prefix + name, t);
  model.load_matching(entries, &log);  // logs "There are X/Y variables loaded into ..." and each skip
}

}  // namespace

SegTask::SegTask(const TrainConfig& cfg, uint64_t seed, bool with_eval, Device device, std::ostream& log,
                 int64_t repeats)
    : cfg_(cfg) {
  nn::SegModelSpec mspec = cfg.model;
  mspec.seed = seed;
  model_ = nn::build_seg_model(mspec);
  load_pretrained(*model_, mspec.backbone_pretrained, mspec.where + ".backbone.pretrained", "backbone.", log);
  load_pretrained(*model_, mspec.pretrained, mspec.where + ".pretrained", "", log);
  model_->to(device);
  model_->train();
  model_->set_loss_upsamples(true);  // the loss upsamples the logits (SegLoss)
  const std::shared_ptr<data::SegDataset> train_set = data::make_dataset(cfg.train_dataset);
  if (repeats > 1) train_set->repeat_items(repeats);
  train_set_ = train_set;
  if (with_eval) {
    if (cfg.has_val_dataset)
      val_set_ = data::make_dataset(cfg.val_dataset);
    else
      log << log_prefix(LogStyle::PaddleSeg)
          << "WARNING: --do_eval given but the config has no val_dataset: no evaluation" << std::endl;
  }
  source_ = std::make_shared<data::SegBatchSource>(train_set_);
  loss_fn_ = std::make_unique<SegLoss>(cfg.loss, train_set_->num_classes(), device);
}

std::string SegTask::describe() const {
  return "Model " + cfg_.model.type + " (" + cfg_.model.backbone + ", " + std::to_string(train_set_->num_classes()) +
         " classes): " + std::to_string(model_->num_trainable_parameters()) + " trainable parameters";
}

TaskLoss SegTask::loss(const data::Batch& batch, Device device) {
  const Tensor images = batch.at("images").to(device), labels = batch.at("labels").to(device);
  const std::vector<Tensor> logits = model_->forward(images);
  SegLossValues lv = (*loss_fn_)(logits, labels, model_->loss_upsamples());
  TaskLoss out;
  out.total = lv.total;
  for (size_t i = 0; i < lv.terms.size(); ++i) out.terms.emplace_back("loss_" + std::to_string(i), lv.terms[i]);
  return out;
}

TaskEval SegTask::evaluate(Device device, std::ostream& log, const std::atomic<int>* cancel, Communicator& comm) {
  const InferOptions eval_opt = infer_options(cfg_.test_config);
  const EvalResult r = train::evaluate(*model_, *val_set_, device, eval_opt, log, cancel, &comm);
  TaskEval e;
  e.cancelled = r.cancelled;
  if (r.cancelled) return e;
  std::istringstream lines(format_eval_lines(r.metrics, r.num_images));
  for (std::string l; std::getline(lines, l);) e.log_lines.push_back(l);
  e.key_metric = r.metrics.miou;
  e.scalars = {{"mIoU", r.metrics.miou}, {"Acc", r.metrics.acc}};
  e.record = {{"miou", r.metrics.miou},
              {"acc", r.metrics.acc},
              {"kappa", r.metrics.kappa},
              {"dice", r.metrics.mdice},
              {"class_iou", r.metrics.class_iou},
              {"class_precision", r.metrics.class_precision},
              {"class_recall", r.metrics.class_recall}};
  char acc[64];
  std::snprintf(acc, sizeof acc, "%.17g", r.metrics.acc);
  e.best_model_metadata = {{"acc", acc}};
  return e;
}

namespace {

int64_t flag_int(const std::string& name, const std::string& v, int64_t lo) {
  char* end = nullptr;
  errno = 0;
  const long long x = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || errno != 0 || x < lo)
    throw ConfigError("engine-train: --" + name + ": expected an integer >= " + std::to_string(lo) + ", got '" + v +
                      "'");
  return x;
}

double flag_double(const std::string& name, const std::string& v, double lo, bool strict) {
  char* end = nullptr;
  const double x = std::strtod(v.c_str(), &end);
  if (v.empty() || *end != '\0' || !std::isfinite(x) || (strict ? x <= lo : x < lo))
    throw ConfigError("engine-train: --" + name + ": expected a number " + (strict ? "> " : ">= ") + fmt_double(lo) +
                      ", got '" + v + "'");
  return x;
}

bool flag_bool(const std::string& name, const std::string& v) {
  bool b = false;
  if (!parse_yaml_bool(v, b))
    throw ConfigError("engine-train: --" + name + ": expected True or False, got '" + v + "'");
  return b;
}

// "30,40", "[30, 40]" or "30 40": strictly increasing positive integers.
std::vector<int64_t> flag_epochs(const std::string& name, const std::string& v) {
  std::string t;
  for (char c : v) t += (c == '[' || c == ']' || c == ',') ? ' ' : c;
  std::istringstream in(t);
  std::vector<int64_t> out;
  for (std::string item; in >> item;) {
    out.push_back(flag_int(name, item, 1));
    if (out.size() > 1 && out.back() <= out[out.size() - 2])
      throw ConfigError("engine-train: --" + name + ": expected increasing epochs, got '" + v + "'");
  }
  return out;
}

}  // namespace

void apply_paddlex_params(TrainConfig& cfg, TrainOptions& opt, const DetFlagOverrides& flags, int64_t train_images,
                          const std::vector<std::string>& given_flags) {
  auto given = [&](const std::string& f) {
    return std::find(given_flags.begin(), given_flags.end(), f) != given_flags.end();
  };
  const std::vector<std::pair<std::string, std::string>> clashes = {{"num_epochs", "--iters"},
                                                                    {"train_batch_size", "--batch_size"},
                                                                    {"save_interval_epochs", "--save_interval"},
                                                                    {"log_interval_steps", "--log_iters"},
                                                                    {"resume_checkpoint", "--resume_model"}};
  std::map<std::string, std::string> v;
  for (const auto& [name, value] : flags) {
    if (name == "learning_rate" || name == "save_dir" || name == "num_workers" || name == "seed" || name == "use_vdl")
      continue;  // shared with PaddleSeg's flags: already applied
    if (name == "metric")
      throw ConfigError(
          "engine-train: --metric: a segmentation config is evaluated by mIoU; --metric is for detection");
    for (const auto& [px, seg] : clashes)
      if (name == px && given(seg))
        throw ConfigError("engine-train: --" + px + " and " + seg + " both given; use one of them");
    v[name] = value;
  }
  if (v.empty()) return;
  if (v.count("train_batch_size")) cfg.batch_size = flag_int("train_batch_size", v["train_batch_size"], 1);
  const int64_t steps = train_images / cfg.batch_size;
  if (steps < 1)
    throw ConfigError("engine-train: " + cfg.train_dataset.where + " has " + std::to_string(train_images) +
                      " images, fewer than one batch of " + std::to_string(cfg.batch_size));
  if (v.count("num_epochs")) cfg.iters = flag_int("num_epochs", v["num_epochs"], 1) * steps;
  if (v.count("save_interval_epochs"))
    opt.save_interval = flag_int("save_interval_epochs", v["save_interval_epochs"], 1) * steps;
  if (v.count("log_interval_steps")) opt.log_iters = flag_int("log_interval_steps", v["log_interval_steps"], 1);
  if (v.count("momentum")) cfg.optimizer.momentum = flag_double("momentum", v["momentum"], 0, false);
  if (v.count("weight_decay")) cfg.optimizer.weight_decay = flag_double("weight_decay", v["weight_decay"], 0, false);
  if (v.count("early_stop")) opt.early_stop = flag_bool("early_stop", v["early_stop"]);
  if (v.count("early_stop_patience"))
    opt.early_stop_patience = flag_int("early_stop_patience", v["early_stop_patience"], 1);
  if (v.count("resume_checkpoint")) opt.resume_model = v["resume_checkpoint"];
  if (v.count("pretrain_weights")) cfg.model.pretrained = v["pretrain_weights"];
  if (v.count("warmup_steps") || v.count("warmup_start_lr") || v.count("lr_decay_epochs") ||
      v.count("lr_decay_gamma")) {
    DetTrainParams p;
    p.learning_rate = cfg.lr_scheduler.type == "PiecewiseDecay" && !cfg.lr_scheduler.values.empty()
                          ? cfg.lr_scheduler.values[0]
                          : cfg.lr_scheduler.learning_rate;
    p.warmup_steps = v.count("warmup_steps") ? flag_int("warmup_steps", v["warmup_steps"], 0) : 0;
    p.warmup_start_lr =
        v.count("warmup_start_lr") ? flag_double("warmup_start_lr", v["warmup_start_lr"], 0, false) : 0.0;
    p.lr_decay_epochs =
        v.count("lr_decay_epochs") ? flag_epochs("lr_decay_epochs", v["lr_decay_epochs"]) : std::vector<int64_t>{};
    p.lr_decay_gamma = v.count("lr_decay_gamma") ? flag_double("lr_decay_gamma", v["lr_decay_gamma"], 0, true) : 0.1;
    p.num_epochs = std::max<int64_t>(1, cfg.iters / steps);
    check_warmup_constraint(p, steps, "engine-train");
    LRSpec s;
    s.type = "PiecewiseDecay";
    s.learning_rate = p.learning_rate;
    s.warmup_iters = p.warmup_steps;
    s.warmup_start_lr = p.warmup_start_lr;
    double lr = p.learning_rate;
    s.values = {lr};
    for (int64_t e : p.lr_decay_epochs) {
      s.boundaries.push_back(e * steps);
      lr *= p.lr_decay_gamma;
      s.values.push_back(lr);
    }
    cfg.lr_scheduler = s;
    opt.absolute_warmup = true;
  }
}

}  // namespace engine::train
