// NCCL communicator (CUDA builds; see nccl_communicator.h for how it runs).
#include "engine/comm/nccl_communicator.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

#include "base/cuda_context.h"
#include "base/error.h"
#include "engine/cuda_graph.h"
#include "engine/device.h"

namespace engine {
namespace {

using Clock = std::chrono::steady_clock;
using Event = std::shared_ptr<std::remove_pointer_t<cudaEvent_t>>;

void nccl_check(ncclResult_t r, const char* what, const char* file, int line) {
  if (r == ncclSuccess) return;
  fail("NCCL error ", ncclGetErrorString(r), " (", ncclGetLastError(nullptr), ") in ", what, " at ", file, ":", line);
}
#define NCCL_CHECK(expr) nccl_check((expr), #expr, __FILE__, __LINE__)

// Seconds as a clock duration; very long limits are capped so the conversion cannot overflow.
Clock::duration as_duration(double s) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(std::min(s, 1e8)));
}

// Ends the job from any thread: the one line, the communicator aborted (its work on this GPU stopped;
// peers on a network transport see the connection drop, peers on the same node wait for their own
// timeout or the launcher), then exit without unwinding: other threads may be blocked in CUDA or NCCL.
// The abort gets kAbortSeconds: NCCL's abort waits until every CUDA graph holding a captured
// collective of the communicator is destroyed (NCCL 2.28 commDestroySync), and a graph whose replay
// hangs stays alive, held by the thread that waits for it.
constexpr double kAbortSeconds = 10;
[[noreturn]] void end_job(const std::string& line, ncclComm_t comm) {
  std::fprintf(stderr, "%s\n", line.c_str());
  std::fflush(stderr);
  if (comm && !run_with_deadline([comm] { ncclCommAbort(comm); }, kAbortSeconds)) {
    std::fprintf(stderr, "(ncclCommAbort did not return within %g s; exiting without it)\n", kAbortSeconds);
    std::fflush(stderr);
  }
  std::_Exit(kCollectiveTimeoutExit);
}

// Completion events are reused: a collective per gradient bucket and step would otherwise create one each.
class EventPool : public std::enable_shared_from_this<EventPool> {
 public:
  ~EventPool() {
    for (cudaEvent_t e : free_) cudaEventDestroy(e);
  }
  Event get() {
    cudaEvent_t e = nullptr;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!free_.empty()) {
        e = free_.back();
        free_.pop_back();
      }
    }
    if (!e) CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    std::shared_ptr<EventPool> self = shared_from_this();
    return Event(e, [self](cudaEvent_t ev) {
      std::lock_guard<std::mutex> lock(self->mu_);
      self->free_.push_back(ev);
    });
  }

 private:
  std::mutex mu_;
  std::vector<cudaEvent_t> free_;
};

// Ends the job if not dismissed within the limit: guards calls that block on the host until every
// rank joins (ncclCommInitRank).
class HostDeadline {
 public:
  HostDeadline(std::string line, double timeout_seconds)
      : thread_([this, line = std::move(line), timeout_seconds] {
          std::unique_lock<std::mutex> lock(mu_);
          if (!cv_.wait_for(lock, as_duration(timeout_seconds), [this] { return dismissed_; })) end_job(line, nullptr);
        }) {}
  ~HostDeadline() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      dismissed_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool dismissed_ = false;
  std::thread thread_;  // last: starts after the members it uses
};

class NcclPending final : public PendingCollective {
 public:
  NcclPending(Event done, Tensor keep) : done_(std::move(done)), keep_(std::move(keep)) {}
  // Not waited for: the compute stream still must not reuse the tensor's memory before the collective ends.
  ~NcclPending() override {
    try {
      if (done_) cudaStreamWaitEvent(compute_stream(), done_.get(), 0);
    } catch (const std::exception&) {
    }
  }
  void wait() override {
    if (!done_) return;
    CUDA_CHECK(cudaStreamWaitEvent(compute_stream(), done_.get(), 0));
    done_.reset();
    keep_ = Tensor();
  }

 private:
  Event done_;
  Tensor keep_;  // the storage outlives the collective
};

// A collective the watchdog follows. `done` is null while the NCCL call is being issued (it may block
// on the host while connecting to peers); `abandoned` when issuing it threw.
struct InFlight {
  Event done;
  std::string what;
  Clock::time_point start;
  bool abandoned = false;
};

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(int rank, int world_size, int device_index,
                   const std::function<std::string(const std::string&)>& exchange_root_bytes, double timeout_seconds)
      : rank_(rank), world_(world_size), device_(device_index), timeout_(timeout_seconds) {
    ENGINE_CHECK(world_size >= 1 && rank >= 0 && rank < world_size, "NCCL communicator: rank ", rank, " of world size ",
                 world_size, " is out of range");
    ENGINE_CHECK(timeout_seconds > 0, "NCCL communicator: timeout ", timeout_seconds, " s must be positive");
    ENGINE_CHECK(device_index == selected_cuda_device(), "NCCL communicator: rank ", rank, " of ", world_size,
                 ": device cuda:", device_index, " is not this process's device cuda:", selected_cuda_device(),
                 " (call select_cuda_device first; one process per device)");
    (void)compute_stream();  // this thread on the process's device, where the communicator is created
    // The library found at run time (the cluster's may be older than the one built against):
    // ncclAvg and ncclBfloat16 came in NCCL 2.10.
    int version = 0;  // X * 10000 + Y * 100 + Z from 2.9 on, X * 1000 + Y * 100 + Z before (nccl.h)
    NCCL_CHECK(ncclGetVersion(&version));
    const bool old_code = version < 10000;
    ENGINE_CHECK(version >= 21000, "NCCL communicator: the NCCL library loaded is version ",
                 old_code ? version / 1000 : version / 10000, ".", old_code ? version / 100 % 10 : version / 100 % 100,
                 ".", version % 100,
                 "; the engine needs 2.10 or newer (ncclAvg, ncclBfloat16): put a newer libnccl first on the "
                 "library path");

    ncclUniqueId id{};
    std::string mine;
    if (rank == 0) {
      NCCL_CHECK(ncclGetUniqueId(&id));
      mine.assign(reinterpret_cast<const char*>(&id), sizeof id);
    }
    const std::string root = exchange_root_bytes(mine);
    ENGINE_CHECK(root.size() == sizeof id, "NCCL communicator: rank ", rank, " of ", world_size,
                 ": the rendezvous returned ", root.size(), " bytes, expected a ", sizeof id, "-byte ncclUniqueId");
    std::memcpy(&id, root.data(), sizeof id);
    {
      HostDeadline deadline(
          collective_timeout_message(rank, world_size, "NCCL communicator initialisation", timeout_seconds, "nccl"),
          timeout_seconds);
      NCCL_CHECK(ncclCommInitRank(&comm_, world_size, id, rank));
    }
    try {
      CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
      CUDA_CHECK(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming));
    } catch (...) {
      if (stream_) cudaStreamDestroy(stream_);
      ncclCommDestroy(comm_);
      throw;
    }
    watchdog_ = std::thread([this] { watch(); });
  }

  ~NcclCommunicator() override {
    // Collectives still in flight end first, under the watchdog (a peer that left ends the job with
    // the timeout line instead of a hang in ncclCommDestroy); after a CUDA error, abort.
    bool drained = false;
    try {
      host_wait(enqueue("communicator shutdown", [] {}));
      drained = true;
    } catch (const std::exception&) {
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    watchdog_.join();
    cudaSetDevice(device_);
    if (drained)
      ncclCommDestroy(comm_);
    else
      ncclCommAbort(comm_);
    cudaStreamDestroy(stream_);
    cudaEventDestroy(ready_);
  }

  int rank() const override { return rank_; }
  int world_size() const override { return world_; }
  std::string name() const override { return "nccl"; }

  std::unique_ptr<PendingCollective> start_all_reduce(const Tensor& t, ReduceOp op, const std::string& what) override {
    check_tensor(t, "all-reduce", what, /*any_float=*/true);
    if (t.numel() == 0) return std::make_unique<NcclPending>(nullptr, t);  // the same on every rank
    void* p = t.raw_data();
    // 16-bit: data-parallel O2's gradient buckets (half the bytes on the wire)
    const ncclDataType_t type = t.dtype() == DType::BF16  ? ncclBfloat16
                                : t.dtype() == DType::F16 ? ncclFloat16
                                                          : ncclFloat32;
    Event done = enqueue(what, [&] {
      NCCL_CHECK(
          ncclAllReduce(p, p, (size_t)t.numel(), type, op == ReduceOp::Mean ? ncclAvg : ncclSum, comm_, stream_));
    });
    return std::make_unique<NcclPending>(std::move(done), t);
  }

  void broadcast(const Tensor& t, int root, const std::string& what) override {
    check_tensor(t, "broadcast", what);
    ENGINE_CHECK(root >= 0 && root < world_, "NCCL broadcast '", what, "': root ", root, " is not a rank of ", world_);
    if (t.numel() == 0) return;
    float* p = t.data<float>();
    Event done =
        enqueue(what, [&] { NCCL_CHECK(ncclBroadcast(p, p, (size_t)t.numel(), ncclFloat32, root, comm_, stream_)); });
    CUDA_CHECK(cudaStreamWaitEvent(compute_stream(), done.get(), 0));
  }

  void barrier(const std::string& what) override {
    if (!barrier_buf_.defined()) barrier_buf_ = Tensor::zeros({1}, DType::F32, Device::cuda(device_));
    float* p = barrier_buf_.data<float>();
    host_wait(enqueue(what, [&] { NCCL_CHECK(ncclAllReduce(p, p, 1, ncclFloat32, ncclSum, comm_, stream_)); }));
  }

  void follow_enqueued_work(const std::string& what) override {
    Event done = pool_->get();
    CUDA_CHECK(cudaEventRecord(done.get(), compute_stream()));
    {
      std::lock_guard<std::mutex> lock(mu_);
      inflight_.push_back(InFlight{std::move(done), what, Clock::now()});
    }
    cv_.notify_one();
  }

  std::vector<std::string> all_gather_bytes(const std::string& mine, const std::string& what) override {
    const Device dev = Device::cuda(device_);
    // The sizes first, so every rank knows the padded slot size.
    Tensor sizes = Tensor::empty({world_}, DType::I64, dev);
    int64_t* s = sizes.data<int64_t>();
    const int64_t my_size = (int64_t)mine.size();
    host_wait(enqueue(what + " (sizes)", [&] {
      CUDA_CHECK(cudaMemcpyAsync(s + rank_, &my_size, sizeof my_size, cudaMemcpyHostToDevice, stream_));
      NCCL_CHECK(ncclAllGather(s + rank_, s, 1, ncclInt64, comm_, stream_));
    }));
    std::vector<int64_t> n(world_);
    CUDA_CHECK(cudaMemcpy(n.data(), s, world_ * sizeof(int64_t), cudaMemcpyDeviceToHost));
    const int64_t slot = *std::max_element(n.begin(), n.end());
    std::vector<std::string> out(world_);
    if (slot == 0) return out;

    Tensor buf = Tensor::empty({world_ * slot}, DType::U8, dev);
    auto* b = buf.data<uint8_t>();
    host_wait(enqueue(what, [&] {
      if (my_size > 0)
        CUDA_CHECK(cudaMemcpyAsync(b + rank_ * slot, mine.data(), mine.size(), cudaMemcpyHostToDevice, stream_));
      NCCL_CHECK(ncclAllGather(b + rank_ * slot, b, (size_t)slot, ncclUint8, comm_, stream_));
    }));
    std::string all((size_t)(world_ * slot), '\0');
    CUDA_CHECK(cudaMemcpy(all.data(), b, all.size(), cudaMemcpyDeviceToHost));
    for (int r = 0; r < world_; ++r) out[r] = all.substr((size_t)(r * slot), (size_t)n[r]);
    return out;
  }

 private:
  void check_tensor(const Tensor& t, const char* op, const std::string& what, bool any_float = false) const {
    ENGINE_CHECK(t.defined(), "NCCL ", op, " '", what, "': undefined tensor");
    const bool type_ok = any_float ? is_float_storage(t.dtype()) : t.dtype() == DType::F32;
    ENGINE_CHECK(type_ok && t.device() == Device::cuda(device_) && t.is_contiguous(), "NCCL ", op, " '", what,
                 "': the tensor must be dense ", any_float ? "f32, bf16 or f16" : "f32", " on cuda:", device_, ", got ",
                 t.describe(), t.is_contiguous() ? "" : " (not contiguous)");
  }

  // Issues `issue` (NCCL calls) on the communication stream after the work queued so far on the
  // compute stream, under the watchdog from before the call on; returns the event of its end.
  // Serialised, so every rank issues its collectives in its program order.
  // While a CUDA graph is captured the same calls fork the capture onto the communication stream
  // and back (NCCL captures its kernels), and nothing runs: the watchdog must not see those events
  // (querying an event recorded in a capture is an error), so the graph's owner follows each replay
  // instead (follow_enqueued_work).
  template <class F>
  Event enqueue(const std::string& what, const F& issue) {
    std::lock_guard<std::mutex> order(enqueue_mu_);
    if (capturing_cuda_graph()) {
      CUDA_CHECK(cudaEventRecord(ready_, compute_stream()));
      CUDA_CHECK(cudaStreamWaitEvent(stream_, ready_, 0));
      issue();
      Event done = pool_->get();
      CUDA_CHECK(cudaEventRecord(done.get(), stream_));
      return done;
    }
    InFlight* op = nullptr;
    {
      std::lock_guard<std::mutex> lock(mu_);
      inflight_.push_back(InFlight{nullptr, what, Clock::now()});
      op = &inflight_.back();  // deque: stays valid while later entries are added
    }
    cv_.notify_one();
    Event done;
    try {
      CUDA_CHECK(cudaEventRecord(ready_, compute_stream()));
      CUDA_CHECK(cudaStreamWaitEvent(stream_, ready_, 0));
      issue();
      done = pool_->get();
      CUDA_CHECK(cudaEventRecord(done.get(), stream_));
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu_);
      op->abandoned = true;
      throw;
    }
    std::lock_guard<std::mutex> lock(mu_);
    op->done = done;
    return done;
  }

  // Host wait for `done`; a peer that never comes ends the job through the watchdog.
  void host_wait(const Event& done) {
    for (;;) {
      const cudaError_t q = cudaEventQuery(done.get());
      if (q == cudaSuccess) return;
      if (q != cudaErrorNotReady) CUDA_CHECK(q);
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }

  void watch() {
    cudaSetDevice(device_);  // the current device is per thread
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_) {
      // Collectives complete in order: the oldest one is the one that can be late.
      while (!inflight_.empty()) {
        const InFlight& f = inflight_.front();
        if (!f.abandoned) {
          if (!f.done) break;
          const cudaError_t q = cudaEventQuery(f.done.get());
          if (q == cudaErrorNotReady) break;
          if (q != cudaSuccess)
            end_job(prefix() + f.what + " (nccl) failed: CUDA error " + cudaGetErrorName(q) + " (" +
                        cudaGetErrorString(q) + "); aborting every rank",
                    comm_);
        }
        inflight_.pop_front();
      }
      ncclResult_t async = ncclSuccess;
      if (ncclCommGetAsyncError(comm_, &async) == ncclSuccess && async != ncclSuccess && async != ncclInProgress)
        end_job(prefix() + (inflight_.empty() ? std::string("communicator") : inflight_.front().what) +
                    " (nccl) failed: " + ncclGetErrorString(async) + " (" + ncclGetLastError(comm_) +
                    "): another rank crashed or left the job; aborting every rank",
                comm_);
      if (!inflight_.empty() && Clock::now() - inflight_.front().start > as_duration(timeout_))
        end_job(collective_timeout_message(rank_, world_, inflight_.front().what, timeout_, "nccl"), comm_);
      cv_.wait_for(lock, std::chrono::milliseconds(inflight_.empty() ? 100 : 10));
    }
  }

  std::string prefix() const { return "rank " + std::to_string(rank_) + " of " + std::to_string(world_) + ": "; }

  const int rank_, world_, device_;
  const double timeout_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;  // the communication stream
  cudaEvent_t ready_ = nullptr;    // compute stream -> communication stream; used under enqueue_mu_
  std::shared_ptr<EventPool> pool_ = std::make_shared<EventPool>();
  Tensor barrier_buf_;
  std::mutex enqueue_mu_;
  std::mutex mu_;  // inflight_, stop_
  std::condition_variable cv_;
  std::deque<InFlight> inflight_;
  bool stop_ = false;
  std::thread watchdog_;
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(
    int rank, int world_size, int device_index,
    const std::function<std::string(const std::string& root_bytes)>& exchange_root_bytes, double timeout_seconds) {
  return std::make_unique<NcclCommunicator>(rank, world_size, device_index, exchange_root_bytes, timeout_seconds);
}

}  // namespace engine
