// Training steps as CUDA graphs (engine/cuda_graph.h), one graph per batch shape, each holding the
// whole step the caller enqueues (train/trainer.cpp): forward, backward (of the loss times the loss
// scale, fp16), with several ranks the gradient buckets' and the loss's all-reduces and the
// synchronised batch norms' ones, the loss scaler's unscale and the optimizer update. The first
// batch of a shape runs eagerly (warm-up: cuDNN's algorithm search, every lazy initialisation and
// NCCL's connections happen outside the graph; a warm-up that skipped its backward does not count),
// the second is captured, and every later one is a
// replay, so a step costs a few launches instead of one per kernel. The graphs share one memory pool
// (a capture reuses the blocks earlier captures freed).
// What a replay cannot take as captured arguments it reads from device memory when it runs: the
// learning rate, the loss scale and its inverse and this rank's stop request (tensors the caller
// writes before each step), the loss (the update does nothing when it is not finite; with several
// ranks the loss summed over them, so every rank decides alike) and the scaler's inf/nan flag (nor
// when that is set). So the host decides nothing between the backward and the update: it reads the
// loss and the flag after the replay, as it would have before an eager update, and acts on them
// (stops on a non-finite loss, updates the loss scale, logs a skipped step); the weights are those
// the eager step would leave, bit for bit. What runs outside the graphs: copying the batch into the
// tensors the graph reads, and writing those scalars. A host check of the batch (a label outside the
// classes) runs after the replay; the loss kernels make such a batch's loss nan on the device, so its
// update did nothing, and the check's error ends the run with the weights of the step before. A step
// whose ops cannot be captured (an op that reads device memory on the host, memory the capture
// cannot get) fails its capture: a WARNING names the call CUDA refused, and that shape runs eagerly
// from then on. With several ranks a failed capture ends the run instead (an error naming it):
// NCCL needs every rank's collectives captured alike or issued eagerly alike, and a rank cannot
// know that another one's capture failed without a collective of its own.
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

// The device scalars a captured step reads when it runs (one-element tensors on the step's device);
// the caller writes them before every step.
struct StepScalars {
  Tensor lr;          // f32: the learning rate
  Tensor loss_scale;  // f32: fp16's loss scale (undefined without loss scaling)
  Tensor inv_scale;   // f32: 1 / the loss scale, as the eager unscale computes it
  Tensor stop;        // f32: several ranks: 1 when this rank was asked to stop, else 0
};

// What a step leaves on the device; a replay rewrites these tensors.
struct StepOutputs {
  TaskLoss loss;             // this rank's loss and its terms
  Tensor found_inf;          // the scaler's flag (i32, one element), undefined without loss scaling
  Tensor rank_sums;          // several ranks: {loss, its terms..., stop requests} summed over the ranks
  std::vector<Tensor> keep;  // tensors the graph writes that nothing else holds
};

// Enqueues the whole step of `inputs` (device tensors) with no host read: its operands are read
// when it runs (engine/ops/optim.h UpdateAtRun).
using EnqueueStep = std::function<StepOutputs(const data::Batch& inputs)>;

class StepGraphs {
 public:
  // `params`: their gradients are cleared around a capture. `launched`: runs after each replay's
  // launch (the communicator's follow_enqueued_work). `log_line` writes one log line (the loop's
  // prefix added). `several_ranks`: a failed capture throws (see above) instead of falling back.
  StepGraphs(std::vector<Tensor> params, Device device, EnqueueStep step, std::function<void()> launched,
             std::function<void(const std::string&)> log_line, bool several_ranks = false);
  ~StepGraphs();

  // The whole step of `batch` (its tensors on the CPU) through its shape's graph. nullopt: nothing
  // ran; run this step eagerly (the shape's warm-up step, or a shape whose capture failed). The
  // tensors returned are valid until the next call.
  std::optional<StepOutputs> step(const data::Batch& batch);
  // The eager step of `batch` that step() asked for did not run the whole step (one rank, fp16: a
  // non-finite loss skips the backward): its shape is not warm yet, so it is not captured next time,
  // when the backward's first uses (cuDNN's algorithm choice) would fall inside the capture.
  void not_warmed(const data::Batch& batch);

  int64_t captures() const { return captures_; }
  int64_t replays() const { return replays_; }

 private:
  struct Entry {
    bool warm = false;    // its eager warm-up step ran
    bool failed = false;  // capture failed: eager from now on
    data::Batch inputs;   // the device tensors the graph reads
    std::unique_ptr<CudaGraph> graph;
    StepOutputs outputs;
  };
  std::vector<Tensor> params_;
  Device device_;
  EnqueueStep enqueue_step_;
  std::function<void()> launched_;
  std::function<void(const std::string&)> log_line_;
  bool several_ranks_;
  std::shared_ptr<GraphPool> pool_;
  std::map<std::string, Entry> entries_;  // by batch shape
  int64_t captures_ = 0, replays_ = 0;
};

}  // namespace engine::train
