// Segmentation as a training task (train/task.h): PP-LiteSeg built from the PaddleSeg config, the
// PaddleSeg data set and transforms, the weighted sum of the config's losses (one per model output;
// terms logged as loss_0, loss_1, ...), evaluation by mIoU (train/evaluate.h). Every parameter gets
// the L2 decay, as PaddleSeg's optimizer applies it. Tested through tests/test_trainer.cpp.
#pragma once
#include <iosfwd>
#include <memory>

#include "data/dataset.h"
#include "models/pp_liteseg.h"
#include "train/config.h"
#include "train/det_config.h"
#include "train/evaluate.h"
#include "train/seg_loss.h"
#include "train/task.h"
#include "train/trainer.h"

namespace engine::train {

class SegTask : public Task {
 public:
  // Builds the model from cfg.model with `seed`, loads its pretrained weights (logged to `log`), and
  // the data sets (the val set only with `with_eval` and a val_dataset in the config; without one a
  // warning is logged). The model is moved to `device`.
  // repeats: PaddleSeg's --repeats (the train file list that many times over).
  SegTask(const TrainConfig& cfg, uint64_t seed, bool with_eval, Device device, std::ostream& log, int64_t repeats = 1);

  nn::Module& model() override { return *model_; }
  std::string describe() const override;
  std::shared_ptr<const data::BatchSource> train_source() const override { return source_; }
  bool can_evaluate() const override { return val_set_ != nullptr; }
  int64_t eval_size() const override { return val_set_ ? val_set_->size() : 0; }
  TaskLoss loss(const data::Batch& batch, Device device) override;
  TaskEval evaluate(Device device, std::ostream& log, const std::atomic<int>* cancel, Communicator& comm) override;
  std::string key_metric_name() const override { return "mIoU"; }
  std::string key_metric_key() const override { return "miou"; }
  bool decays(const std::string&) const override { return true; }

  nn::SegModel& seg_model() { return *model_; }

 private:
  const TrainConfig& cfg_;
  std::shared_ptr<nn::SegModel> model_;
  std::shared_ptr<const data::SegDataset> train_set_, val_set_;
  std::shared_ptr<const data::BatchSource> source_;
  std::unique_ptr<SegLoss> loss_fn_;
};

// PaddleX's train() parameters given as engine-train flags to a segmentation config: epochs become
// iterations with num_steps_each_epoch = train_images // batch size (PaddleX's count), so
//   --train_batch_size B         -> batch_size B
//   --num_epochs N               -> iters N * steps_each_epoch
//   --save_interval_epochs E     -> save_interval E * steps_each_epoch
//   --log_interval_steps K       -> log_iters K
//   --warmup_steps, --warmup_start_lr, --lr_decay_epochs, --lr_decay_gamma (any of them) -> the
//       learning rate follows PaddleX's schedule (train/det_task.h: linear warmup, then
//       learning_rate * gamma^i at the absolute boundaries lr_decay_epochs[i] * steps_each_epoch)
//       instead of the config's lr_scheduler, with PaddleX's warmup constraint checked
//   --momentum, --weight_decay   -> optimizer.momentum / weight_decay
//   --early_stop, --early_stop_patience -> PaddleX's EarlyStop on the mIoU of the evaluations
//   --resume_checkpoint DIR      -> --resume_model DIR;  --pretrain_weights FILE -> model.pretrained
// (--learning_rate, --save_dir, --num_workers, --seed and --use_vdl are shared with PaddleSeg's
// flags.) --metric is refused (segmentation reports mIoU), and so is mixing an epoch flag with its
// PaddleSeg counterpart (--num_epochs with --iters ...). Throws ConfigError naming the flag.
// Tested by tests/test_trainer.cpp (PaddleXEpochParameters).
void apply_paddlex_params(TrainConfig& cfg, TrainOptions& opt, const DetFlagOverrides& flags, int64_t train_images,
                          const std::vector<std::string>& given_flags);

}  // namespace engine::train
