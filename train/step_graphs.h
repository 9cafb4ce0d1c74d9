// Training steps as CUDA graphs (engine/cuda_graph.h), one graph per batch shape, each holding the
// whole step: forward, backward (of the loss times the loss scale, fp16), the loss scaler's unscale
// and the optimizer update. The first batch of a shape runs eagerly (warm-up: cuDNN's algorithm
// search and every lazy initialisation happen outside the graph), the second is captured, and every
// later one is a replay, so a step costs a few launches instead of one per kernel. The graphs share
// one memory pool (a capture reuses the blocks earlier captures freed).
// What a replay cannot take as captured arguments it reads from device memory when it runs: the
// learning rate, the loss scale and its inverse (tensors the caller writes before each step), the
// loss (the update does nothing when it is not finite) and the scaler's inf/nan flag (nor when that
// is set). So the host decides nothing between the backward and the update: it reads the loss and the
// flag after the replay, as it would have before an eager update, and acts on them (stops on a
// non-finite loss, updates the loss scale, logs a skipped step); the weights are those the eager step
// would leave, bit for bit. What runs outside the graphs: copying the batch into the tensors the
// graph reads, and writing those scalars. A host check of the batch (a label outside the classes) runs
// after the replay; the loss kernels make such a batch's loss nan on the device, so its update did
// nothing, and the check's error ends the run with the weights of the step before. A step whose ops cannot be captured
// (an op that reads device memory on the host) fails its capture: a WARNING names the call CUDA refused, and that shape
// runs eagerly from then on.
#pragma once
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/cuda_graph.h"
#include "train/task.h"

namespace engine::train {

// The device scalars a captured step reads when it runs (one-element f32 tensors on the step's
// device); the caller writes them before every step.
struct StepScalars {
  Tensor lr;          // the learning rate
  Tensor loss_scale;  // fp16: the loss scale (undefined without loss scaling)
  Tensor inv_scale;   // fp16: 1 / the loss scale, as the eager unscale computes it
};

// Enqueues the step's optimizer update on `grads` (of loss * loss_scale), with no host read: its
// operands are read when it runs (engine/ops/optim.h UpdateAtRun). Returns the loss scaler's inf/nan
// flag (undefined without loss scaling).
using EnqueueUpdate = std::function<Tensor(const TaskLoss& loss, const std::vector<Tensor>& grads)>;

class StepGraphs {
 public:
  // `log_line` writes one log line (the loop's prefix added).
  StepGraphs(Task& task, std::vector<Tensor> params, Device device, StepScalars scalars, EnqueueUpdate update,
             std::function<void(const std::string&)> log_line);
  ~StepGraphs();

  struct Result {
    TaskLoss loss;     // device tensors, valid until the next call
    Tensor found_inf;  // the scaler's flag (i32, one element), undefined without loss scaling
  };
  // The whole step of `batch` (its tensors on the CPU) through its shape's graph: forward, backward
  // and update. nullopt: nothing ran; run this step eagerly (the shape's warm-up step, or a shape
  // whose capture failed).
  std::optional<Result> step(const data::Batch& batch);

  int64_t captures() const { return captures_; }
  int64_t replays() const { return replays_; }

 private:
  struct Entry {
    bool warm = false;    // its eager warm-up step ran
    bool failed = false;  // capture failed: eager from now on
    data::Batch inputs;   // the device tensors the graph reads
    std::unique_ptr<CudaGraph> graph;
    TaskLoss loss;
    Tensor found_inf;
    std::vector<Tensor> grads;  // kept with the graph, which writes them
  };
  Task& task_;
  std::vector<Tensor> params_;
  Device device_;
  StepScalars scalars_;
  EnqueueUpdate update_;
  std::function<void(const std::string&)> log_line_;
  std::shared_ptr<GraphPool> pool_;
  std::map<std::string, Entry> entries_;  // by batch shape
  int64_t captures_ = 0, replays_ = 0;
};

}  // namespace engine::train
