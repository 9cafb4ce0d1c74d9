#include "engine/comm/mpi_communicator.h"

// The C API only: the deprecated C++ bindings would need libmpi_cxx.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <thread>

#include "base/error.h"
#include "kernels/shared_math.h"

namespace engine {

bool started_by_mpi_launcher() { return std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMIX_RANK"); }

namespace {

// MPI_Init_thread once per process, MPI_Finalize at exit (after every communicator is gone).
int init_mpi_once() {
  static int provided = [] {
    int initialized = 0;
    MPI_Initialized(&initialized);
    int level = MPI_THREAD_SINGLE;
    if (!initialized) {
      // MULTIPLE: MPI runs on the communication thread while the main thread may call MPI_Abort.
      ENGINE_CHECK(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &level) == MPI_SUCCESS,
                   "MPI_Init_thread failed (was the program started by mpirun or srun?)");
      std::atexit([] {
        int finalized = 0;
        MPI_Finalized(&finalized);
        if (!finalized) MPI_Finalize();
      });
    } else {
      MPI_Query_thread(&level);
    }
    return level;
  }();
  return provided;
}

void check_mpi(int rc, const char* call, const std::string& what) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  throw Error(std::string(call) + " (" + what + "): " + std::string(msg, (size_t)len));
}

// Sums of 16-bit floats (data-parallel O2's gradient buckets): MPI has no bf16 or f16 type, so such
// a tensor travels as MPI_UINT16_T with these user ops, each addition made in f32 and rounded once
// to the type.
template <DType D>
void sum_16bit(void* in, void* inout, int* len, MPI_Datatype*) {
  using S = kernels::Storage<D>;
  const uint16_t* __restrict__ a = static_cast<const uint16_t*>(in);
  uint16_t* __restrict__ b = static_cast<uint16_t*>(inout);
  const int n = *len;
#pragma omp simd
  for (int i = 0; i < n; ++i) b[i] = S::store(S::load(a[i]) + S::load(b[i]));
}

MPI_Op make_sum_op(MPI_User_function* f) {
  MPI_Op op = MPI_OP_NULL;
  check_mpi(MPI_Op_create(f, /*commute=*/1, &op), "MPI_Op_create", "16-bit sum");
  return op;
}

// (Created once per process, after MPI_Init; MPI frees them at MPI_Finalize.)
MPI_Op sum_op_16bit(DType t) {
  static const MPI_Op bf16 = make_sum_op(sum_16bit<DType::BF16>);
  static const MPI_Op f16 = make_sum_op(sum_16bit<DType::F16>);
  return t == DType::BF16 ? bf16 : f16;
}

class MpiCommunicator;

class MpiPending final : public PendingCollective {
 public:
  MpiPending(MpiCommunicator* comm, std::shared_future<void> done, std::string what)
      : comm_(comm), done_(std::move(done)), what_(std::move(what)) {}
  // The communication thread may still be writing the tensor: never let it go unwaited.
  ~MpiPending() override {
    try {
      wait();
    } catch (...) {
    }
  }
  void wait() override;

 private:
  MpiCommunicator* comm_;
  std::shared_future<void> done_;
  std::string what_;
  bool waited_ = false;
};

class MpiCommunicator final : public Communicator {
 public:
  explicit MpiCommunicator(double timeout_seconds) : timeout_(timeout_seconds) {
    ENGINE_CHECK(timeout_seconds > 0, "MPI communicator: the collective timeout must be positive, got ",
                 timeout_seconds);
    thread_level_ = init_mpi_once();
    ENGINE_CHECK(thread_level_ >= MPI_THREAD_SERIALIZED, "MPI provides thread level ", thread_level_,
                 "; the engine needs MPI_THREAD_SERIALIZED or more");
    check_mpi(MPI_Comm_dup(MPI_COMM_WORLD, &comm_), "MPI_Comm_dup", "communicator setup");
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &world_);
    worker_ = std::thread([this] { run(); });
  }
  ~MpiCommunicator() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    worker_.join();
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Comm_free(&comm_);
  }

  int rank() const override { return rank_; }
  int world_size() const override { return world_; }
  std::string name() const override { return "mpi"; }

  std::unique_ptr<PendingCollective> start_all_reduce(const Tensor& t, ReduceOp op, const std::string& what) override {
    ENGINE_CHECK(t.device().is_cpu() && is_float_storage(t.dtype()) && t.is_contiguous(), what,
                 ": the MPI communicator all-reduces dense f32, bf16 or f16 CPU tensors, got ", t.describe());
    const DType dt = t.dtype();
    void* data = t.raw_data();
    const int64_t n = t.numel();
    const int world = world_;
    return std::make_unique<MpiPending>(
        this,
        submit(
            [this, dt, data, n, op, world, what] {
              const bool f32 = dt == DType::F32;
              const MPI_Datatype type = f32 ? MPI_FLOAT : MPI_UINT16_T;
              const MPI_Op sum = f32 ? MPI_SUM : sum_op_16bit(dt);
              const size_t elem = f32 ? sizeof(float) : sizeof(uint16_t);
              // MPI counts are int: large tensors go in chunks.
              constexpr int64_t kChunk = int64_t(1) << 30;
              for (int64_t off = 0; off < n; off += kChunk) {
                const int count = (int)std::min(kChunk, n - off);
                check_mpi(
                    MPI_Allreduce(MPI_IN_PLACE, static_cast<char*>(data) + (size_t)off * elem, count, type, sum, comm_),
                    "MPI_Allreduce", what);
              }
              if (op == ReduceOp::Mean) {
                const float inv = 1.f / (float)world;
                kernels::with_storage(dt, "MPI all-reduce mean", [&]<DType D>() {
                  using S = kernels::Storage<D>;
                  auto* __restrict__ x = static_cast<typename S::T*>(data);
#pragma omp simd
                  for (int64_t i = 0; i < n; ++i) x[i] = S::store(S::load(x[i]) * inv);
                });
              }
            },
            what),
        what);
  }

  void broadcast(const Tensor& t, int root, const std::string& what) override {
    check_tensor(t, what);
    ENGINE_CHECK(root >= 0 && root < world_, what, ": broadcast root ", root, " is not a rank of ", world_);
    float* data = t.data<float>();
    const int64_t n = t.numel();
    ENGINE_CHECK(n < (int64_t(1) << 31), what, ": broadcast of ", n, " elements is too large");
    MpiPending(this,
               submit([this, data, n, root,
                       what] { check_mpi(MPI_Bcast(data, (int)n, MPI_FLOAT, root, comm_), "MPI_Bcast", what); },
                      what),
               what)
        .wait();
  }

  void barrier(const std::string& what) override {
    MpiPending(this, submit([this, what] { check_mpi(MPI_Barrier(comm_), "MPI_Barrier", what); }, what), what).wait();
  }

  std::vector<std::string> all_gather_bytes(const std::string& mine, const std::string& what) override {
    std::vector<std::string> out((size_t)world_);
    ENGINE_CHECK(mine.size() < (size_t(1) << 31), what, ": ", mine.size(), " bytes are too many to gather");
    MpiPending(this,
               submit(
                   [this, &mine, &out, what] {
                     std::vector<int> sizes((size_t)world_);
                     const int my_size = (int)mine.size();
                     check_mpi(MPI_Allgather(&my_size, 1, MPI_INT, sizes.data(), 1, MPI_INT, comm_), "MPI_Allgather",
                               what);
                     std::vector<int> displs((size_t)world_);
                     int64_t total = 0;
                     for (int r = 0; r < world_; ++r) {
                       displs[(size_t)r] = (int)total;
                       total += sizes[(size_t)r];
                     }
                     ENGINE_CHECK(total < (int64_t(1) << 31), what, ": ", total, " bytes are too many to gather");
                     std::string all((size_t)total, '\0');
                     check_mpi(MPI_Allgatherv(mine.data(), my_size, MPI_BYTE, all.data(), sizes.data(), displs.data(),
                                              MPI_BYTE, comm_),
                               "MPI_Allgatherv", what);
                     for (int r = 0; r < world_; ++r)
                       out[(size_t)r] = all.substr((size_t)displs[(size_t)r], (size_t)sizes[(size_t)r]);
                   },
                   what),
               what)
        .wait();
    return out;
  }

  // Waits for a collective; past the timeout the whole job is ended (never a silent hang).
  void wait_for(const std::shared_future<void>& done, const std::string& what) {
    if (done.wait_for(std::chrono::duration<double>(timeout_)) == std::future_status::timeout) {
      std::string stuck;  // the collective the communication thread is in (queued ones wait behind it)
      {
        std::lock_guard<std::mutex> lock(mu_);
        stuck = running_.empty() ? what : running_;
      }
      std::fprintf(stderr, "%s\n", collective_timeout_message(rank_, world_, stuck, timeout_, "mpi").c_str());
      std::fflush(stderr);
      if (thread_level_ >= MPI_THREAD_MULTIPLE) MPI_Abort(MPI_COMM_WORLD, kCollectiveTimeoutExit);
      std::_Exit(kCollectiveTimeoutExit);
    }
    done.get();  // rethrows an MPI error of the communication thread
  }

 private:
  void check_tensor(const Tensor& t, const std::string& what) const {
    ENGINE_CHECK(t.device().is_cpu() && t.dtype() == DType::F32 && t.is_contiguous(), what,
                 ": the MPI communicator takes dense f32 CPU tensors, got ", t.describe());
  }

  std::shared_future<void> submit(std::function<void()> job, const std::string& what) {
    auto task = std::make_shared<std::packaged_task<void()>>(std::move(job));
    std::shared_future<void> f = task->get_future().share();
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back({[task] { (*task)(); }, what});
    }
    cv_.notify_one();
    return f;
  }

  void run() {
    for (;;) {
      Job job;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;  // stopping with nothing left
        job = std::move(queue_.front());
        queue_.pop_front();
        running_ = job.what;
      }
      job.run();
      std::lock_guard<std::mutex> lock(mu_);
      running_.clear();
    }
  }

  double timeout_;
  int thread_level_ = MPI_THREAD_SINGLE;
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, world_ = 1;
  std::mutex mu_;
  std::condition_variable cv_;
  struct Job {
    std::function<void()> run;
    std::string what;
  };
  std::deque<Job> queue_;
  std::string running_;  // what the communication thread is doing now
  bool stopping_ = false;
  std::thread worker_;
};

void MpiPending::wait() {
  if (waited_) return;
  waited_ = true;
  comm_->wait_for(done_, what_);
}

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator(double timeout_seconds) {
  return std::make_unique<MpiCommunicator>(timeout_seconds);
}

}  // namespace engine
