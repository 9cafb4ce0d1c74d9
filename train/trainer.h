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
// optimizer step, so every checkpoint on disk is from a finite state; its message names the newest
// complete checkpoint (of this run, or the one it resumed from).
// The save_dir is locked for the run and never clobbered (train/run_dir.h). A resume checks the
// checkpoint's batch_size, train set size and data position against this run (refused when they
// differ) and warns when the optimizer settings or the learning-rate schedule differ. A stop
// request (a signal) ends the loop between iterations, after writing iter_N/ unless save_on_stop
// is off; the summary then names the signal and the checkpoint to resume from.
#pragma once
#include <atomic>
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
  bool overwrite = false;     // --overwrite: delete an earlier run's results in save_dir (train/run_dir.h)
  bool save_on_stop = true;   // write iter_N/ when stopped by a signal (--no_save_on_stop turns it off)
  // Non-zero = stop (a signal number, train/stop_signal.h): checked before each iteration and
  // between evaluation images; nullptr = never.
  const std::atomic<int>* stop_request = nullptr;
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
  int stopped_by_signal = 0;             // the signal that stopped training early; 0 = ran to the end
  bool stop_checkpoint_written = false;  // iter_N/ written at the stop
  std::string last_checkpoint;           // the newest complete iter_N/ to resume from; empty = none
};

TrainSummary run_training(const TrainConfig& cfg, const TrainOptions& opt, std::ostream& log);

// Checkpoint file names inside iter_N/ and best_model/.
inline constexpr const char* kModelFile = "model.safetensors";
inline constexpr const char* kOptimizerFile = "optimizer.safetensors";

}  // namespace engine::train
