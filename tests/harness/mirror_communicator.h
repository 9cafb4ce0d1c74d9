// A communicator for data-parallel tests in one process: rank 0 of a world of two identical ranks.
// Every collective returns what this rank gave (the mean of two equal gradients is the gradient), so
// the data-parallel code paths run without a second process. Its collectives are device ops on an
// (emulated) GPU's tensors, so a CUDA graph can capture them.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "engine/comm/communicator.h"
#include "engine/ops/copy.h"
#include "engine/ops/elementwise.h"

namespace engine::testing {

class MirrorCommunicator final : public Communicator {
 public:
  std::vector<DType> all_reduced;  // the type of every all-reduced tensor
  int followed = 0;                // follow_enqueued_work calls
  // When set (one f32 element on the tensors' device, read when the sum runs): the other rank's stop
  // request, added to the stop flag of the loss all-reduce.
  Tensor peer_stop;

  int rank() const override { return 0; }
  int world_size() const override { return 2; }
  std::string name() const override { return "mirror"; }
  std::unique_ptr<PendingCollective> start_all_reduce(const Tensor& t, ReduceOp op, const std::string& what) override {
    all_reduced.push_back(t.dtype());
    if (op == ReduceOp::Sum) copy_into(t, mul(t, 2.f));  // (two ranks' equal values; exact in every float type)
    if (peer_stop.defined() && what.rfind("loss of ", 0) == 0) {
      const Tensor flag = t.narrow(0, t.numel() - 1, 1);
      copy_into(flag, add(mul(flag, 0.5f), peer_stop));  // (the doubled flag is this rank's alone)
    }
    return make_local_communicator()->start_all_reduce(t, op, "");
  }
  void follow_enqueued_work(const std::string&) override { ++followed; }
  void broadcast(const Tensor&, int, const std::string&) override {}
  void barrier(const std::string&) override {}
  std::vector<std::string> all_gather_bytes(const std::string& mine, const std::string&) override {
    return {mine, mine};
  }
};

}  // namespace engine::testing
