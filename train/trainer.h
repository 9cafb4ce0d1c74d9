// The training loop of engine-train, task-agnostic: segmentation (train/seg_task.h, PaddleSeg's
// core/train.py semantics) and detection (train/det_task.h, PaddleX's
// train_loop in paddlex/cv/models/base.py) plug into it through train/task.h. The gotchas of both
// originals are fixed: resume restores the best metric, the checkpoint list, the loader position
// (epoch and batch), the schedule position and the early-stop state, so a resumed run continues bit
// for bit.
//
// Per iteration: wait for a batch (reader_cost) -> task loss (forward, named terms) -> backward ->
// gradients through the Communicator -> fused SGD momentum with coupled L2 decay at lr_at(iter - 1)
// (the task says which parameters decay) -> clear gradients. fp16 (spec.loss_scaling): the backward
// starts from loss * scale, the gradients are unscaled and checked, and a step whose gradients hold
// an inf or nan is skipped with a WARNING line (Paddle's GradScaler, train/grad_scaler.h); with
// several ranks the all-reduced gradients carry any rank's inf, so all ranks skip together. Log lines every log_every
// iterations (averages over the window), in PaddleSeg's or PaddleX's format. Checkpoints: iteration-based (PaddleSeg:
// every save_interval iterations and at the last, iter_N/) or epoch-based (PaddleX: at the end of every
// save_interval-th epoch and of the last, epoch_N/). At each checkpoint: evaluate (when the task can), best_model/ on a
// strictly higher key metric, then the checkpoint folder (model.safetensors + optimizer.safetensors, written
// atomically), dropping the oldest beyond keep_checkpoint_max; then early stop (PaddleX's EarlyStop
// or PaddleSeg's --early_stop_intervals, train/early_stop.h). A non-finite loss stops training with TrainingDiverged
// (exit code 3 in engine-train) before the optimizer step, so every checkpoint on disk is from a finite state; its
// message names the newest complete checkpoint (of this run, or the one it resumed from). Under fp16 loss scaling a
// non-finite loss is a skipped step instead, until ten come in a row. The save_dir is locked for the run and never
// clobbered (train/run_dir.h). A resume checks the checkpoint's batch_size, train set size and data position against
// this run (refused when they differ) and warns when the optimizer settings or the learning-rate schedule differ. A
// stop request (a signal) ends the loop between iterations, after writing a checkpoint unless save_on_stop is off; the
// summary then names the signal and the checkpoint to resume from.
#pragma once
#include <atomic>
#include <cstdint>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>

#include "base/error.h"
#include "engine/comm/communicator.h"
#include "engine/device.h"
#include "train/config.h"
#include "train/early_stop.h"
#include "train/grad_scaler.h"
#include "train/lr_schedule.h"
#include "train/safetensors.h"
#include "train/task.h"

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
  bool profile = false;      // print the per-op time breakdown of the logged windows
  bool overwrite = false;    // --overwrite: delete an earlier run's results in save_dir (train/run_dir.h)
  bool save_on_stop = true;  // write iter_N/ when stopped by a signal (--no_save_on_stop turns it off)
  // Non-zero = stop (a signal number, train/stop_signal.h): checked before each iteration and
  // between evaluation images; nullptr = never.
  const std::atomic<int>* stop_request = nullptr;
  // PaddleX's parameters given to a segmentation run (train/seg_task.h apply_paddlex_params):
  bool early_stop = false;  // PaddleX's EarlyStop over the evaluations (mIoU)
  int64_t early_stop_patience = 5;
  // PaddleSeg's own flags: --early_stop_intervals N (0 = off; EarlyStop::Rule::PaddleSeg over the
  // evaluations) and --repeats N (the train file list N times over).
  int64_t early_stop_intervals = 0;
  int64_t repeats = 1;
  bool use_ema = false;  // --use_ema: an average of the weights evaluated and saved beside them (train/model_ema.h)
  bool absolute_warmup = false;  // lr_scheduler's decay boundaries are absolute steps (PaddleX 1.x)
  // Data parallel (docs/DISTRIBUTED.md): the job's communicator (nullptr = one process). Rank 0
  // alone writes the run folder and checkpoints; the others train their shard of every batch.
  Communicator* comm = nullptr;
  // Synchronised batch norm: Auto = on for GPU ranks of a job with more than one rank (PaddleSeg's
  // rule), off on CPU ranks; On / Off force it (--sync_bn on|off).
  enum class SyncBn { Auto, On, Off } sync_bn = SyncBn::Auto;
  int64_t bucket_bytes = int64_t(25) << 20;  // gradient bucket size of data-parallel training
  // The gradients' type in the all-reduce (--allreduce_dtype): nullopt = auto (train/grad_buckets.h
  // allreduce_dtype: the low type at O2 on GPU ranks, else f32).
  std::optional<DType> allreduce_dtype;
  // CUDA graphs of the training step on a GPU (train/step_graphs.h). Auto: with one rank; with
  // several ranks only On captures the step with its all-reduces (docs/TRAINING.md says why); Off
  // launches every kernel eagerly.
  enum class CudaGraph { Auto, On, Off } cuda_graph = CudaGraph::Auto;
};

class TrainingDiverged : public Error {
 public:
  using Error::Error;
};

struct TrainSummary {
  int64_t iters_done = 0;
  double last_loss = 0;     // mean loss of the last log window
  double best_metric = -1;  // the task's key metric (mIoU, bbox_map); -1 when never evaluated
  std::string best_metric_name;
  int64_t best_iter = -1;
  std::string best_checkpoint;  // iter_N / epoch_N of the best evaluation ("" when never evaluated)
  bool early_stopped = false;
  int stopped_by_signal = 0;             // the signal that stopped training early; 0 = ran to the end
  bool stop_checkpoint_written = false;  // iter_N/ written at the stop
  std::string last_checkpoint;           // the newest complete iter_N/ to resume from; empty = none
  int64_t skipped_steps = 0;             // fp16: optimizer steps skipped for inf / nan gradients
  double loss_scaling = 0;               // fp16: the loss scaling at the end (0 = no loss scaling)
};

// Segmentation: PaddleSeg's tools/train.py.
TrainSummary run_training(const TrainConfig& cfg, const TrainOptions& opt, std::ostream& log);

// ---- the task-agnostic loop

enum class LogStyle { PaddleSeg, PaddleX };

struct LoopSpec {
  int64_t total_iters = 0;
  int64_t batch_size = 1;  // samples per iteration of one rank (the global batch is batch_size * world size)
  const LRSchedule* schedule = nullptr;
  double momentum = 0.9;
  double weight_decay = 0;       // L2 on the parameters task.decays() accepts
  bool by_epoch = false;         // epoch_N/ checkpoints at epoch ends (PaddleX) instead of iter_N/
  int64_t save_interval = 1000;  // iterations, or epochs when by_epoch
  int keep_checkpoint_max = 5;   // <= 0 keeps every checkpoint
  int64_t log_every = 10;        // iterations per [TRAIN] line
  LogStyle log_style = LogStyle::PaddleSeg;
  bool early_stop = false;  // early stop over the evaluations (train/early_stop.h), by this rule:
  int64_t early_stop_patience = 5;
  EarlyStop::Rule early_stop_rule = EarlyStop::Rule::PaddleX;
  bool use_ema = false;                        // PaddleSeg's --use_ema (train/model_ema.h)
  std::string resume_flag = "--resume_model";  // how users name the checkpoint to resume (messages)
  std::string fresh_start_hint;  // how to start a new run from a checkpoint's weights, e.g. "--opts model.pretrained="
  // fp16 training: Paddle's dynamic loss scaling (train/grad_scaler.h); absent = no scaling.
  std::optional<GradScalerConfig> loss_scaling;
};

// The checkpoint named by --resume_model / resume_checkpoint, opened and checked for consistency.
struct ResumePoint {
  std::string dir;  // empty: a fresh run
  std::shared_ptr<LoadedTensors> model, optimizer;
  int64_t iter = 0;
};
ResumePoint open_resume_point(const std::string& dir, const std::string& flag);
// The run's seed: the checkpoint's when resuming (a different --seed is warned about), else opt.seed.
uint64_t resolve_seed(const ResumePoint& resume, const TrainOptions& opt, LogStyle style, std::ostream& log);

TrainSummary run_task(Task& task, const LoopSpec& spec, const TrainOptions& opt, uint64_t seed,
                      const ResumePoint& resume, std::ostream& log);

// "[2025/04/15 15:01:15] INFO: " (PaddleSeg) or "2025-04-15 15:01:15 [INFO]\t" (PaddleX).
std::string log_prefix(LogStyle style);

// Checkpoint file names inside iter_N/ and best_model/.
inline constexpr const char* kModelFile = "model.safetensors";
inline constexpr const char* kOptimizerFile = "optimizer.safetensors";

}  // namespace engine::train
