// Communicator: how the trainer reduces gradients and BN statistics across data-parallel ranks.
// The trainer is written against this interface from the start: one process per device, gradients
// summed and averaged across ranks after backward (buckets can start from the per-parameter
// gradient-ready hooks of engine/tensor.h), and sync-BN statistics all-reduced between
// batch_norm_local_stats and batch_norm_apply (engine/ops/batchnorm.h). This file has the
// single-process implementation (world size 1: every reduction is the identity); NCCL (GPUs) and
// MPI (CPUs) implementations come with the multi-process launcher.
#pragma once
#include <memory>
#include <vector>

#include "engine/tensor.h"

namespace engine::train {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  // In place: every tensor becomes the element-wise sum over ranks.
  virtual void all_reduce_sum(const std::vector<Tensor>& tensors) = 0;
  // In place: the mean over ranks (gradients).
  virtual void all_reduce_mean(const std::vector<Tensor>& tensors) = 0;
};

// World size 1: nothing to exchange.
class LocalCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  void all_reduce_sum(const std::vector<Tensor>&) override {}
  void all_reduce_mean(const std::vector<Tensor>&) override {}
};

inline std::unique_ptr<Communicator> make_local_communicator() { return std::make_unique<LocalCommunicator>(); }

}  // namespace engine::train
