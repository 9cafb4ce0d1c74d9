// Gradient buckets of data-parallel training (as PyTorch DDP's, docs/source/notes/ddp.rst): every
// parameter's gradient is a view into one of a few preallocated contiguous f32 buffers of about
// bucket_bytes, filled in reverse parameter order (backward produces the last layers' gradients
// first), so the last bucket is usually the small remainder. When the last gradient of a bucket is
// complete (the parameters' grad-ready hooks, engine/tensor.h) the bucket's all-reduce (mean) starts
// while backward goes on; buckets are started strictly in index order, so every rank issues the same
// collectives in the same order whatever order its hooks fire in. finish_step() starts the buckets
// whose parameters got no gradient this step (their part stays zero) and waits for every bucket.
//
// Per step: begin_step() (zero the buffers, point the gradients into them) -> backward ->
// finish_step() -> the optimizer reads the averaged gradients (has_grad() tells which parameters
// had one on this rank) -> begin_step() of the next step.
// The buckets must outlive the backward passes they serve; the hooks they leave on the parameters
// do nothing once the buckets are destroyed. Tested by tests/test_grad_buckets.cpp and, across MPI
// ranks, tests/test_distributed.cpp.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/comm/communicator.h"
#include "engine/tensor.h"

namespace engine::train {

class GradBuckets {
 public:
  static constexpr int64_t kDefaultBucketBytes = int64_t(25) << 20;

  // `params`: the trainable parameters in model order, all dense f32 on one device.
  GradBuckets(const std::vector<Tensor>& params, Communicator& comm, int64_t bucket_bytes = kDefaultBucketBytes);
  ~GradBuckets();
  GradBuckets(const GradBuckets&) = delete;
  GradBuckets& operator=(const GradBuckets&) = delete;

  void begin_step();
  void finish_step();
  bool has_grad(size_t param_index) const;

  size_t num_buckets() const;
  int64_t bucket_numel(size_t bucket) const;
  // The bucket holding parameter i's gradient.
  size_t bucket_of(size_t param_index) const;
  // Buckets started during backward (before finish_step) in the last step: the overlapped ones.
  size_t started_during_backward() const;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace engine::train
