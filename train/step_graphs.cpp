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
                       std::function<void(const std::string&)> log_line, bool several_ranks)
    : params_(std::move(params)),
      device_(device),
      enqueue_step_(std::move(step)),
      launched_(std::move(launched)),
      log_line_(std::move(log_line)),
      several_ranks_(several_ranks),
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
      if (several_ranks_)
        fail("this step cannot be a CUDA graph (", err.what(),
             "); with several ranks every rank must capture its steps alike (NCCL), so the run stops: rerun with "
             "--cuda_graph off");
      for (Tensor& p : params_) p.zero_grad();
      e = Entry();
      // The failed capture's blocks stay in the pool, which eager steps cannot use. While no graph
      // holds the pool, a fresh one replaces it, and the old one's memory is freed with this graph
      // (an out-of-memory capture then leaves eager steps the memory they had).
      if (captures_ == 0) pool_ = std::make_shared<GraphPool>();
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

void StepGraphs::not_warmed(const data::Batch& batch) {
  const auto it = entries_.find(shape_key(batch));
  if (it != entries_.end() && !it->second.graph && !it->second.failed) it->second.warm = false;
}

}  // namespace engine::train
