// Communicator: how data-parallel ranks (one process per device) exchange gradients, batch-norm
// statistics, evaluation results and agreement. Implementations:
//   LocalCommunicator  world size 1: every collective is the identity (this file)
//   MPI                CPU ranks started by mpirun or srun (engine/comm/mpi_communicator.h)
//   NCCL               GPU ranks; the ncclUniqueId travels over MPI or a rendezvous file
//                      (engine/comm/nccl_communicator.h, real CUDA builds only)
// setup_data_parallel (train/data_parallel.h) picks one from the launcher's environment (train/dist_env.h).
//
// Rules every implementation keeps:
//   - Collectives complete in the order they were started, and every rank starts the same collectives
//     in the same order (the trainer's bucket order is fixed, not "whichever is ready first").
//   - A collective that does not complete within timeout_seconds (another rank crashed, hangs or
//     left) ends the whole job: one line "rank R of W: <what> did not complete within T s ..." on
//     stderr, the communicator aborted, exit code kCollectiveTimeoutExit. Never a silent hang.
//   - Tensors are dense f32 on the communicator's device; results are written in place. An all-reduce
//     also takes bf16 and f16 (data-parallel O2's gradient buckets): partial sums are rounded to the
//     type (MPI: each addition in f32, then the mean's division in f32, each rounded once; NCCL:
//     ncclAvg on ncclBfloat16 / ncclFloat16, which multiplies each rank's values by 1/nranks rounded
//     to the type before summing).
//   - Collectives on device tensors may be started while a CUDA graph is captured (engine/cuda_graph.h):
//     the graph then holds them, and every replay runs them. The communicator cannot follow those at
//     capture, so the replay's owner calls follow_enqueued_work after each launch (train/step_graphs.h).
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace engine {

// Exit code of a job ended by a collective timeout (engine-train's own failures use 1..3).
constexpr int kCollectiveTimeoutExit = 4;

enum class ReduceOp { Sum, Mean };

// A collective in flight. wait() returns once its result may be read by the next op of the engine
// (NCCL: the compute stream waits for it; MPI: the data is in place).
class PendingCollective {
 public:
  virtual ~PendingCollective() = default;
  virtual void wait() = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  virtual std::string name() const = 0;  // "local", "mpi", "nccl"

  // Starts an in-place reduction of `t` over the ranks (Mean = Sum / world_size). `what` names it in
  // a timeout message ("gradient bucket 3"). The tensor must not be touched until wait().
  virtual std::unique_ptr<PendingCollective> start_all_reduce(const Tensor& t, ReduceOp op,
                                                              const std::string& what) = 0;
  // In place: `t` becomes rank `root`'s value on every rank.
  virtual void broadcast(const Tensor& t, int root, const std::string& what) = 0;
  // Returns when every rank has called it.
  virtual void barrier(const std::string& what) = 0;
  // Every rank's bytes, in rank order (host data: evaluation results, agreement checks).
  virtual std::vector<std::string> all_gather_bytes(const std::string& mine, const std::string& what) = 0;
  // The work enqueued on the compute stream so far (a CUDA graph's replay, with the collectives it
  // captured) must complete within the collective timeout, or the job ends as on a late collective.
  // NCCL: its watchdog follows an event recorded now. Communicators whose collectives run on the host
  // (local, MPI) never have collectives in a graph, so there is nothing to follow.
  virtual void follow_enqueued_work(const std::string& what) { (void)what; }

  // Blocking conveniences built on start_all_reduce.
  void all_reduce(const std::vector<Tensor>& tensors, ReduceOp op, const std::string& what);
  void all_reduce_sum(const std::vector<Tensor>& tensors) { all_reduce(tensors, ReduceOp::Sum, "all-reduce"); }
  void all_reduce_mean(const std::vector<Tensor>& tensors) { all_reduce(tensors, ReduceOp::Mean, "all-reduce"); }
  bool is_root() const { return rank() == 0; }
};

// World size 1: nothing to exchange.
class LocalCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  std::string name() const override { return "local"; }
  std::unique_ptr<PendingCollective> start_all_reduce(const Tensor&, ReduceOp, const std::string&) override;
  void broadcast(const Tensor&, int, const std::string&) override {}
  void barrier(const std::string&) override {}
  std::vector<std::string> all_gather_bytes(const std::string& mine, const std::string&) override { return {mine}; }
};

inline std::unique_ptr<Communicator> make_local_communicator() { return std::make_unique<LocalCommunicator>(); }

// Runs `work` on a thread of its own and waits at most `seconds` for it: true when it finished. For a
// call that may never return on the way to ending the process (ncclCommAbort while a CUDA graph with
// captured collectives is still alive); `work` must own what it uses, since it may outlive the call.
bool run_with_deadline(std::function<void()> work, double seconds);

// The one line of a collective timeout (shared by the implementations and their tests).
std::string collective_timeout_message(int rank, int world_size, const std::string& what, double timeout_seconds,
                                       const std::string& backend);

}  // namespace engine
