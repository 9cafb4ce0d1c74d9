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
// finish_step() -> the optimizer reads the averaged gradients, reduced_grad() (has_grad() tells
// which parameters had one on this rank) -> begin_step() of the next step.
// The wire type: f32, or bf16 / f16 (data-parallel O2, as Paddle's O2 all-reduces its 16-bit
// gradients): half the bytes on the wire. Backward still accumulates in the f32 buffers; a bucket
// is rounded once into its 16-bit twin when it starts, and that twin is all-reduced. reduced_grad()
// is then a view into the twin, which the fused SGD update reads as it is (engine/ops/optim.h).
// The buckets must outlive the backward passes they serve; the hooks they leave on the parameters
// do nothing once the buckets are destroyed. Tested by tests/test_grad_buckets.cpp and, across MPI
// ranks, tests/test_distributed.cpp.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/comm/communicator.h"
#include "engine/tensor.h"
#include "train/grad_scaler.h"

namespace engine::train {

// --allreduce_dtype: "auto" (nullopt), "fp32", "bf16" or "fp16"; anything else is an Error naming
// `what` (the flag).
std::optional<DType> parse_allreduce_dtype(const std::string& s, const std::string& what);
// The flag's spelling of a wire type: "fp32", "bf16", "fp16".
std::string allreduce_dtype_name(DType wire);
// The wire type of a data-parallel run: the one asked for, or by default (auto) the activations'
// 16-bit type at O2 on GPU ranks (NCCL reduces bf16 / f16 natively: half the bytes, as Paddle's O2
// all-reduces its 16-bit gradients) and f32 otherwise (CPU ranks: MPI has no 16-bit sum, and the
// engine's was measured slower than MPI's f32 sum on one machine, docs/DISTRIBUTED.md).
DType allreduce_dtype(std::optional<DType> requested, Device device);

class GradBuckets {
 public:
  static constexpr int64_t kDefaultBucketBytes = int64_t(25) << 20;

  // `params`: the trainable parameters in model order, all dense f32 on one device.
  GradBuckets(const std::vector<Tensor>& params, Communicator& comm, int64_t bucket_bytes = kDefaultBucketBytes,
              DType wire = DType::F32);
  ~GradBuckets();
  GradBuckets(const GradBuckets&) = delete;
  GradBuckets& operator=(const GradBuckets&) = delete;

  void begin_step();
  void finish_step();
  bool has_grad(size_t param_index) const;
  // After finish_step: parameter i's averaged gradient, in the wire type (f32: its grad() itself).
  Tensor reduced_grad(size_t param_index) const;
  DType wire_dtype() const;
  // After finish_step: what the optimizer reads, one per parameter: reduced_grad(i), undefined for a
  // parameter that had no gradient on this rank.
  std::vector<Tensor> grads_for_update() const;
  // fp16 loss scaling of grads_for_update()'s gradients: unscaled in place (f32 wire) or, 16-bit,
  // into the f32 buffers, which `grads` then holds (no fp16 rounding of the small unscaled values).
  // True when one held an inf or nan (the step is skipped).
  bool unscale(const GradScaler& scaler, std::vector<Tensor>& grads) const;
  // The same with no host read (a CUDA graph's step): the factor is read from inv_scale (f32, one
  // element) when it runs, and the flag is returned as a one-element i32 tensor, 1 for an inf or nan.
  Tensor unscale(const Tensor& inv_scale, std::vector<Tensor>& grads) const;

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
