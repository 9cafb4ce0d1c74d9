// The forward and backward of training steps as CUDA graphs (engine/cuda_graph.h), one graph per
// batch shape: the first batch of a shape runs eagerly (warm-up: cuDNN's algorithm search and
// every lazy initialisation happen outside the graph), the second is captured, and every later one
// is a replay, so a step costs a few launches instead of one per kernel. The graphs share one memory
// pool (a capture reuses the blocks earlier captures freed). What runs outside the graphs: copying the batch into the
// tensors the graph reads, reading the loss, and the optimizer step, which waits for the host's decision on the loss (a
// non-finite loss stops training before it; fp16 skips it). A step whose ops cannot be captured (an op that reads
// device memory on the host) fails its capture: a WARNING names the call CUDA refused, and that shape runs eagerly from
// then on.
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

class StepGraphs {
 public:
  // `log_line` writes one log line (the loop's prefix added).
  StepGraphs(Task& task, std::vector<Tensor> params, Device device, std::function<void(const std::string&)> log_line);
  ~StepGraphs();

  struct Result {
    TaskLoss loss;              // device tensors, valid until the next call
    std::vector<Tensor> grads;  // the parameters' gradients (of loss * loss_scale)
  };
  // Forward and backward of `batch` (its tensors on the CPU) through its shape's graph, the loss
  // multiplied by loss_scale before the backward (fp16; a new scale is a new capture). nullopt: run
  // this step eagerly (the shape's warm-up step, or a shape whose capture failed).
  std::optional<Result> forward_backward(const data::Batch& batch, float loss_scale);

  int64_t captures() const { return captures_; }
  int64_t replays() const { return replays_; }

 private:
  struct Entry {
    bool warm = false;    // its eager warm-up step ran
    bool failed = false;  // capture failed: eager from now on
    float scale = 0;
    data::Batch inputs;  // the device tensors the graph reads
    std::unique_ptr<CudaGraph> graph;
    TaskLoss loss;
    std::vector<Tensor> grads;
  };
  Task& task_;
  std::vector<Tensor> params_;
  Device device_;
  std::function<void(const std::string&)> log_line_;
  std::shared_ptr<GraphPool> pool_;
  std::map<std::string, Entry> entries_;  // by batch shape
  int64_t captures_ = 0, replays_ = 0;
};

}  // namespace engine::train
