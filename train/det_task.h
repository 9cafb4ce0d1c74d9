// Detection as a training task (train/task.h), trained the PaddleX way: YOLOv3 (DarkNet53 or
// MobileNetV1, models/det_model.h) on a VOC or COCO data set (data/det_dataset.h) with PaddleX 2.x's
// transforms (data/det_transforms.h) and batch collate (data/det_loader.h), the yolov3_loss op with
// its four terms logged (loss_xy, loss_wh, loss_obj, loss_cls), and evaluation by yolo_box +
// multiclass NMS + VOC mAP (bbox_map, percent) or COCO AP (bbox_mmap, fraction), as PaddleX reports
// them. L2 decay skips batch-norm parameters and the head's output biases (PaddleX's L2Decay(0)).
// The schedule is PaddleX 1.x's (paddlex/cv/models/ppyolo.py default_optimizer, which YOLOv3
// inherits): linear warmup over warmup_steps from warmup_start_lr, then learning_rate * gamma^i at the absolute epoch
// boundaries lr_decay_epochs[i] * num_steps_each_epoch, num_steps_each_epoch = num_samples // train_batch_size; the
// constraint warmup_steps <= lr_decay_epochs[0] * num_steps_each_epoch is checked before anything is written (PaddleX's
// message, ConfigError: exit code 2). Tested by tests/test_det_train.cpp.
#pragma once
#include <iosfwd>
#include <memory>
#include <set>

#include "data/det_dataset.h"
#include "data/det_loader.h"
#include "engine/ops/yolo_loss.h"
#include "models/det_model.h"
#include "train/det_config.h"
#include "train/lr_schedule.h"
#include "train/task.h"
#include "train/trainer.h"

namespace engine::train {

// The data set spec of a config entry.
data::DetDatasetSpec det_dataset_spec(const DetDataConfig& c);

// PaddleX's num_steps_each_epoch and the schedule of the parameters (LRSpec PiecewiseDecay with
// absolute boundaries). Throws ConfigError for the warmup constraint, naming `config_path`.
int64_t det_steps_per_epoch(int64_t num_samples, int64_t train_batch_size);
void check_warmup_constraint(const DetTrainParams& p, int64_t steps_per_epoch, const std::string& config_path);
LRSchedule det_lr_schedule(const DetTrainParams& p, int64_t steps_per_epoch);

class DetTask : public Task {
 public:
  // Builds the model (seed), loads pretrain_weights, parses both data sets and builds their
  // pipelines; the model is moved to `device`.
  DetTask(const DetTrainConfig& cfg, uint64_t seed, Device device, std::ostream& log);

  nn::Module& model() override { return *model_; }
  std::string describe() const override;
  std::shared_ptr<const data::BatchSource> train_source() const override { return train_source_; }
  bool can_evaluate() const override { return eval_source_ != nullptr; }
  int64_t eval_size() const override { return eval_source_ ? eval_source_->size() : 0; }
  TaskLoss loss(const data::Batch& batch, Device device) override;
  TaskEval evaluate(Device device, std::ostream& log, const std::atomic<int>* cancel, Communicator& comm) override;
  std::string key_metric_name() const override { return metric_ == "COCO" ? "bbox_mmap" : "bbox_map"; }
  std::string key_metric_key() const override { return key_metric_name(); }
  bool decays(const std::string& parameter_name) const override { return !no_decay_.count(parameter_name); }

  nn::DetModel& det_model() { return *model_; }
  const data::DetDataset& train_set() const { return *train_set_; }
  const std::string& metric() const { return metric_; }  // VOC | COCO

 private:
  const DetTrainConfig& cfg_;
  std::shared_ptr<nn::DetModel> model_;
  std::shared_ptr<const data::DetDataset> train_set_, eval_set_;
  std::shared_ptr<const data::DetBatchSource> train_source_, eval_source_;
  YoloLossArgs loss_args_;
  std::string metric_;
  std::set<std::string> no_decay_;
};

// engine-train for a detection config: the PaddleX parameters of cfg.params (save_dir, num_workers,
// seed, use_vdl, resume_checkpoint there) with the run options of `opt` (device, profile,
// overwrite, save_on_stop, stop_request); opt's save_dir/num_workers/seed/use_vdl/resume_model are
// ignored.
TrainSummary run_det_training(const DetTrainConfig& cfg, const TrainOptions& opt, std::ostream& log);

}  // namespace engine::train
