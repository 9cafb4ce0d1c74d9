#include "train/step_graphs.h"

#include "engine/allocator.h"
#include "engine/ops/copy.h"

namespace engine::train {
namespace {

// The batch's tensor names, types and shapes: the graph's key.
std::string shape_key(const data::Batch& b) {
  std::string key;
  for (const auto& [name, t] : b.tensors) key += name + ":" + dtype_name(t.dtype()) + shape_str(t.shape()) + ";";
  return key;
}

}  // namespace

StepGraphs::StepGraphs(std::vector<Tensor> params, Device device, EnqueueStep step, std::function<void()> launched,
                       std::function<void(const std::string&)> log_line)
    : params_(std::move(params)),
      device_(device),
      enqueue_step_(std::move(step)),
      launched_(std::move(launched)),
      log_line_(std::move(log_line)),
      pool_(std::make_shared<GraphPool>()) {}

StepGraphs::~StepGraphs() {
  entries_.clear();  // the graphs before their pool
  pool_.reset();
}

std::optional<StepOutputs> StepGraphs::step(const data::Batch& batch) {
  const std::string key = shape_key(batch);
  Entry& e = entries_[key];
  if (e.failed) return std::nullopt;
  if (!e.warm) {
    e.warm = true;
    return std::nullopt;
  }
  if (!e.graph) {
    e.inputs = batch;
    for (auto& [name, t] : e.inputs.tensors) t = t.to(device_);
    for (Tensor& p : params_) p.zero_grad();  // the captured backward writes them afresh, not into old ones
    auto graph = std::make_unique<CudaGraph>(pool_);
    try {
      graph->capture([&] { e.outputs = enqueue_step_(e.inputs); });
    } catch (const CaptureFailed& err) {
      for (Tensor& p : params_) p.zero_grad();
      e = Entry();
      e.warm = e.failed = true;
      log_line_("WARNING: this step cannot be a CUDA graph (" + std::string(err.what()) +
                "); steps of this batch shape run without one");
      return std::nullopt;
    }
    for (Tensor& p : params_) p.zero_grad();
    e.graph = std::move(graph);
    ++captures_;
    empty_cache();  // the warm-up step's blocks: the graph has its own pool now
  } else {
    for (auto& [name, t] : batch.tensors) copy_into(e.inputs.tensors.at(name), t);
  }
  e.graph->replay(launched_);
  ++replays_;
  return e.outputs;
}

}  // namespace engine::train
