// The training loop of engine-train (PaddleSeg core/train.py semantics, reference/ppliteseg.md §5),
// with the gotchas fixed: resume restores the best metric, the checkpoint list, the loader position
// (epoch and batch) and the schedule position, so a resumed run continues bit for bit.
//
// Per iteration: wait for a batch (reader_cost) -> logits = model(images) -> loss = sum coef_i * L_i
// -> backward -> gradients through the Communicator -> fused SGD momentum with coupled L2 decay at
// lr_at(iter - 1) -> clear gradients. Every log_iters: one [TRAIN] line (averages over the window).
// Every save_interval and at the last iteration: evaluate (with --do_eval and a val data set), save
// iter_N/ (model.safetensors + optimizer.safetensors, each written atomically) and drop the oldest
// beyond keep_checkpoint_max; best_model/ on a strictly higher mIoU.
// A non-finite loss stops training with TrainingDiverged (exit code 3 in engine-train) before the
// optimizer step, so every checkpoint on disk is from a finite state.
#pragma once
#include <cstdint>
#include <iosfwd>
#include <string>

#include "engine/device.h"
#include "engine/error.h"
#include "train/config.h"

namespace engine::train {

struct TrainOptions {
  std::string save_dir = "./output";
  int num_workers = 0;
  bool use_vdl = false;
  int64_t save_interval = 1000;
  bool do_eval = false;
  int64_t log_iters = 10;
  std::string resume_model;
  int keep_checkpoint_max = 5;
  uint64_t seed = 0;
  bool seed_given = false;
  Device device = Device::cpu();
  bool profile = false;  // print the per-op time breakdown of the logged windows
};

class TrainingDiverged : public Error {
 public:
  using Error::Error;
};

struct TrainSummary {
  int64_t iters_done = 0;
  double last_loss = 0;      // mean loss of the last log window
  double best_miou = -1;     // -1 when never evaluated
  int64_t best_iter = -1;
};

TrainSummary run_training(const TrainConfig& cfg, const TrainOptions& opt, std::ostream& log);

// Checkpoint file names inside iter_N/ and best_model/.
inline constexpr const char* kModelFile = "model.safetensors";
inline constexpr const char* kOptimizerFile = "optimizer.safetensors";

}  // namespace engine::train
