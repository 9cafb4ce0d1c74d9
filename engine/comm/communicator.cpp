#include "engine/comm/communicator.h"

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>

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

bool run_with_deadline(std::function<void()> work, double seconds) {
  struct State {
    std::mutex m;
    std::condition_variable cv;
    bool done = false;
  };
  auto state = std::make_shared<State>();
  std::thread([state, work = std::move(work)] {
    try {
      work();
    } catch (...) {  // (finished all the same; a detached thread must not throw)
    }
    std::lock_guard<std::mutex> lock(state->m);
    state->done = true;
    state->cv.notify_all();
  }).detach();
  std::unique_lock<std::mutex> lock(state->m);
  return state->cv.wait_for(lock, std::chrono::duration<double>(seconds), [&] { return state->done; });
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
