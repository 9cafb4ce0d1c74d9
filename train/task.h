// A training task: what the task-agnostic loop of train/trainer.cpp needs from segmentation or
// detection. The loop owns batches, the optimizer step, the learning-rate schedule, logging, the
// evaluation cadence, the best model, checkpoints, resume, the divergence stop and early stop; a task
// owns its model, its data (as a loader BatchSource), its loss with named terms and its evaluation
// with named metrics, one of which is the key metric the best model is chosen by.
// Implementations: train/seg_task.h (PP-LiteSeg, PaddleSeg semantics), train/det_task.h (YOLOv3,
// PaddleX semantics).
#pragma once
#include <atomic>
#include <iosfwd>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "data/loader.h"
#include "engine/comm/communicator.h"
#include "engine/device.h"
#include "models/module.h"

namespace engine::train {

// The loss of one batch: `total` is differentiated; the terms (name, scalar) are for the logs.
struct TaskLoss {
  Tensor total;
  std::vector<std::pair<std::string, Tensor>> terms;
};

struct TaskEval {
  bool cancelled = false;                               // stopped by a stop request: nothing below is valid
  double key_metric = 0;                                // the value the best model is chosen by (strictly higher wins)
  std::vector<std::pair<std::string, double>> scalars;  // for VisualDL/TensorBoard ("Evaluate/<name>")
  nlohmann::json record;                                // fields of the metrics.jsonl "eval" record
  std::vector<std::string> log_lines;                   // the task's own result lines (logged with the prefix)
  std::map<std::string, std::string> best_model_metadata;  // extra metadata of best_model/
};

class Task {
 public:
  virtual ~Task() = default;
  virtual nn::Module& model() = 0;
  // One line for the start of the log: model, classes, parameter count, data set sizes.
  virtual std::string describe() const = 0;
  virtual std::shared_ptr<const data::BatchSource> train_source() const = 0;
  virtual bool can_evaluate() const = 0;
  virtual int64_t eval_size() const = 0;  // images of the evaluation set (0 when there is none)
  // Forward and loss of a batch on `device` (the batch's tensors are on the CPU).
  virtual TaskLoss loss(const data::Batch& batch, Device device) = 0;
  // Evaluates the model on the evaluation set (eval mode inside, the previous mode restored). Called
  // on every rank of a data-parallel job; the loop uses rank 0's result everywhere. A task either
  // evaluates a shard per rank and merges (segmentation: the area counts) or evaluates on rank 0
  // alone (detection) while the others wait.
  virtual TaskEval evaluate(Device device, std::ostream& log, const std::atomic<int>* cancel, Communicator& comm) = 0;
  // The key metric: its name in logs ("mIoU", "bbox_map") and its metadata key ("miou", "bbox_map").
  virtual std::string key_metric_name() const = 0;
  virtual std::string key_metric_key() const = 0;
  // Whether the optimizer's L2 decay applies to the parameter (PaddleX: not to BN parameters and the
  // detection head's biases; PaddleSeg: every parameter).
  virtual bool decays(const std::string& parameter_name) const = 0;
};

}  // namespace engine::train
