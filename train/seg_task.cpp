#include "train/seg_task.h"

#include <filesystem>
#include <ostream>
#include <sstream>

#include "data/loader.h"
#include "engine/error.h"
#include "train/safetensors.h"
#include "train/seg_metrics.h"
#include "train/trainer.h"

namespace fs = std::filesystem;

namespace engine::train {
namespace {

bool is_url(const std::string& s) { return s.rfind("http://", 0) == 0 || s.rfind("https://", 0) == 0; }

void load_pretrained(nn::SegModel& model, const std::string& path, const std::string& key, const std::string& prefix,
                     std::ostream& log) {
  if (path.empty()) return;
  if (is_url(path)) {
    log << log_prefix(LogStyle::PaddleSeg) << "WARNING: " << key << " is a URL (" << path
        << "); this engine does not download weights, so training starts from random initialisation. "
        << "To start from pretrained weights, convert them to a .safetensors file and give its local path." << std::endl;
    return;
  }
  ENGINE_CHECK(fs::exists(path), key, ": pretrained weights file not found: ", path);
  LoadedTensors file = load_safetensors(path);
  std::vector<std::pair<std::string, Tensor>> entries;
  for (auto& [name, t] : file.tensors) entries.emplace_back(prefix + name, t);
  model.load_matching(entries, &log);  // logs "There are X/Y variables loaded into ..." and each skip
}

}  // namespace

SegTask::SegTask(const TrainConfig& cfg, uint64_t seed, bool with_eval, Device device, std::ostream& log)
    : cfg_(cfg) {
  nn::SegModelSpec mspec = cfg.model;
  mspec.seed = seed;
  model_ = nn::build_seg_model(mspec);
  load_pretrained(*model_, mspec.backbone_pretrained, mspec.where + ".backbone.pretrained", "backbone.", log);
  load_pretrained(*model_, mspec.pretrained, mspec.where + ".pretrained", "", log);
  model_->to(device);
  model_->train();
  train_set_ = data::make_dataset(cfg.train_dataset);
  if (with_eval) {
    if (cfg.has_val_dataset)
      val_set_ = data::make_dataset(cfg.val_dataset);
    else
      log << log_prefix(LogStyle::PaddleSeg) << "WARNING: --do_eval given but the config has no val_dataset: no evaluation"
          << std::endl;
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
  SegLossValues lv = (*loss_fn_)(logits, labels);
  TaskLoss out;
  out.total = lv.total;
  for (size_t i = 0; i < lv.terms.size(); ++i) out.terms.emplace_back("loss_" + std::to_string(i), lv.terms[i]);
  return out;
}

TaskEval SegTask::evaluate(Device device, std::ostream& log, const std::atomic<int>* cancel) {
  const InferOptions eval_opt{cfg_.test_config.aug_eval, cfg_.test_config.scales, cfg_.test_config.flip_horizontal,
                              cfg_.test_config.flip_vertical};
  const EvalResult r = train::evaluate(*model_, *val_set_, device, eval_opt, log, cancel);
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

}  // namespace engine::train
