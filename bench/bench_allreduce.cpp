// All-reduce (mean, in place) between the ranks of an MPI launch: `mpirun -np N bench_kernels
// --filter allreduce` (CPU ranks through MPI; GPU ranks through NCCL in the real CUDA build, the
// unique id sent over MPI). Sizes: 1 MB, one 25 MB gradient bucket, and the 100 MB of a few
// buckets, as f32 and as the bf16 buckets of data-parallel O2. GB/s is the bus bandwidth of nccl-tests (bytes * 2 (n -
// 1) / n per second: what each rank sends and receives in a ring), so it compares across world sizes. Started without
// an MPI launcher there is nobody to reduce with and the family prints nothing.
#include <cstdlib>
#include <memory>
#include <string>

#include "bench/bench.h"
#include "engine/comm/mpi_communicator.h"
#include "engine/comm/nccl_communicator.h"

namespace engine::bench {
namespace {

Communicator& mpi_world() {
  static std::unique_ptr<Communicator> comm = make_mpi_communicator(/*timeout_seconds=*/300);
  return *comm;
}

std::unique_ptr<Communicator> communicator_for(Device d) {
  Communicator& mpi = mpi_world();
  if (d.is_cpu()) return nullptr;  // the MPI world itself
#if defined(ENGINE_WITH_CUDA)
  return make_nccl_communicator(
      mpi.rank(), mpi.world_size(), d.index,
      [&mpi](const std::string& root_bytes) { return mpi.all_gather_bytes(root_bytes, "NCCL unique id")[0]; }, 300);
#else
  (void)mpi;
  return nullptr;
#endif
}

}  // namespace

BENCH_REGISTER(allreduce) {
  if (!started_by_mpi_launcher()) return;
  Communicator& mpi = mpi_world();
  const int n = mpi.world_size();
  for (Device d : runner.devices()) {
    if (d.is_cuda() && cuda_is_emulated()) continue;  // no NCCL in the emulated build
    std::unique_ptr<Communicator> own = communicator_for(d);
    Communicator& comm = own ? *own : mpi;
    // f32, and bf16 (data-parallel O2's gradient buckets: the same gradients in half the bytes); the
    // row's size is that of the f32 gradients, its GB/s counts the bytes that travel.
    for (const DType dt : {DType::F32, DType::BF16})
      for (const int64_t mb : {1, 25, 100}) {
        const int64_t numel = (runner.quick() ? mb / 25 + 1 : mb) * (int64_t(1) << 20) / 4;
        Tensor t = Tensor::full({numel}, (float)(comm.rank() + 1), dt, d);
        const double bytes = (double)numel * (double)dtype_size(dt);
        runner.run(
            dt == DType::F32 ? "all_reduce_mean" : "all_reduce_mean_bf16",
            std::to_string(numel * 4 >> 20) + " MB of f32 gradients x " + std::to_string(n) + " ranks (" + comm.name() +
                ")",
            d, {bytes * 2.0 * (n - 1) / n, 0},
            [&] {
              t.copy_(Tensor::full({numel}, (float)(comm.rank() + 1), dt, d));
              comm.all_reduce({t}, ReduceOp::Mean, "bench all-reduce");
              const std::vector<float> v = t.to(DType::F32).to_vector();
              const float want = (float)(n + 1) / 2.f;  // (exact in bf16 for small n)
              for (int64_t i = 0; i < numel; i += 4099)
                if (v[(size_t)i] != want)
                  return "element " + std::to_string(i) + " is " + std::to_string(v[(size_t)i]) + ", expected " +
                         std::to_string(want);
              return std::string();
            },
            [&] { comm.all_reduce({t}, ReduceOp::Mean, "bench all-reduce"); });
      }
  }
}

}  // namespace engine::bench
