#include "engine/comm/communicator.h"

#include <cstdio>

#include "base/error.h"

namespace engine {

namespace {
class DonePending final : public PendingCollective {
 public:
  void wait() override {}
};
}  // namespace

std::unique_ptr<PendingCollective> LocalCommunicator::start_all_reduce(const Tensor&, ReduceOp, const std::string&) {
  return std::make_unique<DonePending>();
}

void Communicator::all_reduce(const std::vector<Tensor>& tensors, ReduceOp op, const std::string& what) {
  std::vector<std::unique_ptr<PendingCollective>> pending;
  pending.reserve(tensors.size());
  for (const Tensor& t : tensors) pending.push_back(start_all_reduce(t, op, what));
  for (auto& p : pending) p->wait();
}

std::string collective_timeout_message(int rank, int world_size, const std::string& what, double timeout_seconds,
                                       const std::string& backend) {
  char secs[32];
  std::snprintf(secs, sizeof secs, "%g", timeout_seconds);
  return "rank " + std::to_string(rank) + " of " + std::to_string(world_size) + ": " + what + " (" + backend +
         ") did not complete within " + secs +
         " s: another rank crashed, hangs or left the job; aborting every rank (--dist_timeout sets the limit)";
}

}  // namespace engine
