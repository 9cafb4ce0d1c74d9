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
#include "train/evaluate.h"
#include "train/seg_loss.h"
#include "train/task.h"

namespace engine::train {

class SegTask : public Task {
 public:
  // Builds the model from cfg.model with `seed`, loads its pretrained weights (logged to `log`), and
  // the data sets (the val set only with `with_eval` and a val_dataset in the config; without one a
  // warning is logged). The model is moved to `device`.
  SegTask(const TrainConfig& cfg, uint64_t seed, bool with_eval, Device device, std::ostream& log);

  nn::Module& model() override { return *model_; }
  std::string describe() const override;
  std::shared_ptr<const data::BatchSource> train_source() const override { return source_; }
  bool can_evaluate() const override { return val_set_ != nullptr; }
  int64_t eval_size() const override { return val_set_ ? val_set_->size() : 0; }
  TaskLoss loss(const data::Batch& batch, Device device) override;
  TaskEval evaluate(Device device, std::ostream& log, const std::atomic<int>* cancel) override;
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

}  // namespace engine::train
